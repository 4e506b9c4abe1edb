//! Rules that make the first real deployment succeed (issue 13 §1), one function per point, each
//! named after what it protects and citing the documentation that rules it:
//!
//! 1. alerts on tables that may not exist yet skip query validation;
//! 2. a new table declares no column over 45 characters by default;
//! 3. the DCR is in its workspace's region, taken from the workspace resource;
//! 4. the existing-table path never deletes or retypes a column;
//! 5. with the legacy sink no DCR-based table, DCR or DCR grant is deployed;
//! 6. on a Basic table no log alert reads the table;
//! 7. probes check the process only (`/healthz`);
//! 8. the ops job's example YAML has the job's template shape;
//! 9. storage grants use custom roles equal to the README's operation table;
//! 10. names from any prefix, Key Vault recover, the cloud's audiences, AcrPull before the apps,
//!     the DCR after its table.
//!
//! Most of them evaluate the templates as an operator would configure them (a parameter
//! override, see `Ctx::with`) rather than matching text, so a rewrite that keeps the behaviour
//! passes and one that changes it fails.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{json, Value};
use tree_sitter::Node;

use crate::infra::catalog::{MANIFEST, MAX_COLUMN_NAME};
use crate::infra::eval::eval;
use crate::infra::rules::columns::EXISTING_TABLE_PARAM;
use crate::infra::rules::roles::Grant;
use crate::infra::sources::resolve;
use crate::infra::tree::{
    all_nodes, body_object, collect_idents, literal, named, path_prop, pos, prop, text, Ctx,
};

/// The root template, whose parameters the operator sets.
const MAIN: &str = "infra/main.bicep";
/// The example YAML of one ops-job execution.
pub(crate) const OPS_YAML: &str = "infra/shipper-ops.example.yaml";
/// The operator guide holding the storage operation → data action table.
pub(crate) const README: &str = "infra/README.md";
/// Heading of that table's section.
const OPERATIONS_SECTION: &str = "## Storage operations and data actions";

pub(crate) fn deployment(ctx: &Ctx, grants: &[Grant], problems: &mut Vec<String>) {
    alerts_skip_query_validation(ctx, problems);
    new_table_has_no_overlong_column(ctx, problems);
    dcr_in_the_workspace_region(ctx, problems);
    existing_table_only_adds(ctx, problems);
    legacy_sink_deploys_no_dcr(ctx, problems);
    basic_table_has_no_log_alert(ctx, problems);
    probes_check_the_process_only(ctx, problems);
    ops_yaml_matches_the_job(ctx, problems);
    doctor_jobs_equal_their_apps(ctx, problems);
    storage_roles_equal_the_operation_table(ctx, grants, problems);
    names_from_any_prefix(ctx, problems);
    key_vault_can_recover(ctx, problems);
    audiences_come_from_the_cloud(ctx, problems);
    deployment_order(ctx, problems);
}

// ------------------------------------------------------------------ helpers

/// A resource declaration: file index, symbol, `type@version`, body object, whether `existing`,
/// the `if` condition if any, and the declaration node.
struct Res<'t> {
    fi: usize,
    sym: String,
    ty: String,
    body: Node<'t>,
    existing: bool,
    condition: Option<Node<'t>>,
    decl: Node<'t>,
}

fn resources<'t>(ctx: &Ctx<'t>, type_prefix: &str) -> Vec<Res<'t>> {
    let mut out = Vec::new();
    for (fi, f) in ctx.files.iter().enumerate() {
        for (sym, d) in &ctx.decls[fi] {
            if !(d.kind == "resource" || d.kind == "module") {
                continue;
            }
            let ty = if d.kind == "module" {
                format!("module:{}", resolve(&f.path, &d.target))
            } else {
                d.target.clone()
            };
            if !ty.starts_with(type_prefix) {
                continue;
            }
            let Some(value) = d.value else { continue };
            let Some(body) = body_object(value) else {
                continue;
            };
            let decl = value.parent().unwrap_or(value);
            let existing = (0..decl.child_count())
                .filter_map(|i| decl.child(i))
                .any(|c| c.kind() == "existing");
            let condition = (value.kind() == "if_statement")
                .then(|| named(value).into_iter().next())
                .flatten();
            out.push(Res {
                fi,
                sym: sym.clone(),
                ty,
                body,
                existing,
                condition,
                decl,
            });
        }
    }
    out.sort_by_key(|r| (r.fi, r.decl.start_byte()));
    out
}

fn at(ctx: &Ctx, fi: usize, n: Node) -> String {
    format!("{}:{}", ctx.files[fi].path, pos(n))
}

/// Whether a declaration with this condition is deployed (no condition: always).
fn deployed(ctx: &Ctx, r: &Res) -> Result<bool, String> {
    match r.condition {
        None => Ok(true),
        Some(c) => eval(ctx, r.fi, c, &HashMap::new())?
            .as_bool()
            .ok_or_else(|| "condition is not a bool".to_string()),
    }
}

/// Modules of `main.bicep` whose file declares (non-existing) resources of `type_prefix`.
fn modules_deploying<'t>(ctx: &Ctx<'t>, type_prefix: &str) -> Vec<Res<'t>> {
    let deploying: BTreeSet<String> = resources(ctx, type_prefix)
        .into_iter()
        .filter(|r| !r.existing)
        .map(|r| ctx.files[r.fi].path.clone())
        .collect();
    resources(ctx, "module:")
        .into_iter()
        .filter(|m| deploying.contains(m.ty.trim_start_matches("module:")))
        .collect()
}

/// Symbols a module or resource lists in `dependsOn`.
fn depends_on(ctx: &Ctx, r: &Res) -> BTreeSet<String> {
    let f = ctx.files[r.fi];
    prop(f, r.body, "dependsOn")
        .map(|a| {
            named(a)
                .into_iter()
                .map(|n| text(f, n).to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The node a parameter without default gets from the module call in another file.
fn caller_arg<'t>(ctx: &Ctx<'t>, fi: usize, name: &str) -> Option<(usize, Node<'t>)> {
    let me = &ctx.files[fi].path;
    for m in resources(ctx, "module:") {
        if m.ty.trim_start_matches("module:") == me {
            let arg = path_prop(ctx.files[m.fi], m.body, &["params", name])?;
            return Some((m.fi, arg));
        }
    }
    None
}

fn manifest_columns(ctx: &Ctx) -> Vec<(String, String)> {
    let v: Value = ctx
        .sources
        .files
        .get(MANIFEST)
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null);
    v["columns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or("").to_string(),
                c["type"].as_str().unwrap_or("").to_ascii_lowercase(),
            )
        })
        .collect()
}

fn table_columns(ctx: &Ctx, r: &Res) -> Result<Vec<(String, String)>, String> {
    let f = ctx.files[r.fi];
    let node = path_prop(f, r.body, &["properties", "schema", "columns"])
        .ok_or("the table declares no columns")?;
    let v = eval(ctx, r.fi, node, &HashMap::new())?;
    Ok(v.as_array()
        .ok_or("columns are not an array")?
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or("").to_string(),
                c["type"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect())
}

fn is_extend_path(ctx: &Ctx, fi: usize) -> bool {
    ctx.decls[fi]
        .get(EXISTING_TABLE_PARAM)
        .is_some_and(|d| d.kind == "param")
}

// ------------------------------------------------------------------ 1. skipQueryValidation

/// A log alert's query is validated when the rule is created, and neither
/// ContainerAppConsoleLogs_CL (after the environment's first logs) nor the Okta table (same
/// deployment) exists then: every scheduled query rule skips that validation
/// (https://learn.microsoft.com/en-us/azure/templates/microsoft.insights/scheduledqueryrules).
fn alerts_skip_query_validation(ctx: &Ctx, problems: &mut Vec<String>) {
    for r in resources(ctx, "Microsoft.Insights/scheduledQueryRules@") {
        let f = ctx.files[r.fi];
        let skip = path_prop(f, r.body, &["properties", "skipQueryValidation"]);
        if skip.is_none_or(|n| text(f, n) != "true") {
            problems.push(format!(
                "{}: scheduled query rule {} must set skipQueryValidation: true (its table may not exist when the rule is created)",
                at(ctx, r.fi, r.decl),
                r.sym
            ));
        }
    }
}

// ------------------------------------------------------------------ 2. 45 characters

/// Custom columns are 2–45 characters
/// (https://learn.microsoft.com/en-us/azure/azure-monitor/logs/logs-ingestion-api-overview): with
/// the default parameters a brand-new table declares none longer.
fn new_table_has_no_overlong_column(ctx: &Ctx, problems: &mut Vec<String>) {
    for r in resources(ctx, "Microsoft.OperationalInsights/workspaces/tables@") {
        if r.existing || is_extend_path(ctx, r.fi) {
            continue;
        }
        let Ok(cols) = table_columns(ctx, &r) else {
            continue; // reported by the columns rule
        };
        for (name, _) in cols
            .iter()
            .filter(|(n, _)| n.chars().count() > MAX_COLUMN_NAME)
        {
            problems.push(format!(
                "{}: a new table must not declare {name} ({} characters; custom columns have at most {MAX_COLUMN_NAME}): overlongColumns 'auto' leaves it out of a new table",
                at(ctx, r.fi, r.decl),
                name.chars().count()
            ));
        }
    }
    // A migrated classic table has the column: with existingTable=true, 'auto' keeps it in the
    // DCR stream, so its values keep arriving.
    let migrated = ctx.with(MAIN, "existingTable", json!(true));
    let overlong: Vec<String> = manifest_columns(ctx)
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.chars().count() > MAX_COLUMN_NAME)
        .collect();
    for r in resources(ctx, "Microsoft.Insights/dataCollectionRules@") {
        if r.existing {
            continue;
        }
        let f = ctx.files[r.fi];
        let Some(cols) = path_prop(f, r.body, &["properties", "streamDeclarations"])
            .and_then(|o| named(o).into_iter().find(|p| p.kind() == "object_property"))
            .and_then(|p| named(p).get(1).copied())
            .and_then(|v| prop(f, v, "columns"))
        else {
            continue;
        };
        let Ok(Value::Array(cols)) = eval(&migrated, r.fi, cols, &HashMap::new()) else {
            continue;
        };
        for name in &overlong {
            if !cols.iter().any(|c| c["name"] == name.as_str()) {
                problems.push(format!(
                    "{}: with existingTable=true and overlongColumns 'auto' the DCR stream must keep {name}: a migrated classic table has it",
                    at(ctx, r.fi, r.decl)
                ));
            }
        }
    }
}

// ------------------------------------------------------------------ 3. DCR region

/// A DCR must be in its destination workspace's region
/// (https://learn.microsoft.com/en-us/azure/azure-monitor/essentials/data-collection-rule-overview):
/// its `location` is the workspace resource's `.location`, never a free parameter.
fn dcr_in_the_workspace_region(ctx: &Ctx, problems: &mut Vec<String>) {
    for r in resources(ctx, "Microsoft.Insights/dataCollectionRules@") {
        if r.existing {
            continue;
        }
        let f = ctx.files[r.fi];
        let Some(mut loc) = prop(f, r.body, "location") else {
            problems.push(format!(
                "{}: the DCR has no location",
                at(ctx, r.fi, r.decl)
            ));
            continue;
        };
        let mut fi = r.fi;
        // Follow a default-less parameter to the module call that sets it.
        while loc.kind() == "identifier"
            && ctx.decls[fi]
                .get(text(ctx.files[fi], loc))
                .is_some_and(|d| d.kind == "param" && d.value.is_none())
        {
            match caller_arg(ctx, fi, text(ctx.files[fi], loc)) {
                Some((cfi, arg)) => {
                    fi = cfi;
                    loc = arg;
                }
                None => break,
            }
        }
        let mut leaves = Vec::new();
        value_leaves(loc, &mut leaves);
        let from_workspace = |n: &Node| {
            n.kind() == "member_expression"
                && n.child_by_field_name("property")
                    .is_some_and(|p| text(ctx.files[fi], p) == "location")
                && n.child_by_field_name("object").is_some_and(|o| {
                    ctx.decls[fi].get(text(ctx.files[fi], o)).is_some_and(|d| {
                        d.kind == "resource"
                            && d.target
                                .starts_with("Microsoft.OperationalInsights/workspaces@")
                    })
                })
        };
        if leaves.is_empty() || !leaves.iter().all(from_workspace) {
            problems.push(format!(
                "{}: the DCR's location must be its workspace's region — the workspace resource's .location (an existing reference) — not `{}`",
                at(ctx, fi, loc),
                text(ctx.files[fi], loc)
            ));
        }
    }
}

/// The nodes an expression's value can come from: both branches of a ternary (not its
/// condition), through parentheses.
fn value_leaves<'t>(n: Node<'t>, out: &mut Vec<Node<'t>>) {
    match n.kind() {
        "ternary_expression" => {
            for b in ["consequence", "alternative"] {
                if let Some(c) = n.child_by_field_name(b) {
                    value_leaves(c, out);
                }
            }
        }
        "parenthesized_expression" => {
            for c in named(n) {
                value_leaves(c, out);
            }
        }
        _ => out.push(n),
    }
}

// ------------------------------------------------------------------ 4. existing table

/// An existing table as a migrated classic Okta_CL may look: a column the manifest lacks, a
/// manifest column with another type, the 46-character column, TimeGenerated as a standard
/// column, and most manifest columns missing.
fn migrated_table() -> Value {
    json!({
        "plan": "Analytics",
        "retentionInDays": 90,
        "totalRetentionInDays": 365,
        "columns": [
            {"name": "legacyOnly_s", "type": "string"},
            {"name": "domain_s", "type": "dynamic"},
            {"name": "authenticationContext_authenticationProvider_s", "type": "string"},
            {"name": "published_t", "type": "dateTime"},
        ],
        "standardColumns": [
            {"name": "TenantId", "type": "guid"},
            {"name": "TimeGenerated", "type": "dateTime"},
        ],
    })
}

/// A PUT of a table's schema replaces the custom column set and cannot change a column's type
/// (https://learn.microsoft.com/en-us/rest/api/loganalytics/tables/create-or-update): on an
/// existing table the schema sent keeps every current column as it is and adds the missing
/// manifest columns, once each.
fn existing_table_only_adds(ctx: &Ctx, problems: &mut Vec<String>) {
    let current = migrated_table();
    let mut seen = false;
    for r in resources(ctx, "Microsoft.OperationalInsights/workspaces/tables@") {
        if r.existing || !is_extend_path(ctx, r.fi) {
            continue;
        }
        seen = true;
        let where_ = at(ctx, r.fi, r.decl);
        let ctx = ctx.with(&ctx.files[r.fi].path, EXISTING_TABLE_PARAM, current.clone());
        let sent = match table_columns(&ctx, &r) {
            Ok(c) => c,
            Err(e) => {
                problems.push(format!(
                    "{where_}: cannot evaluate the existing-table schema: {e}"
                ));
                continue;
            }
        };
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for (n, _) in &sent {
            *count.entry(n.to_ascii_lowercase()).or_default() += 1;
        }
        for c in current["columns"].as_array().into_iter().flatten() {
            let (name, ty) = (
                c["name"].as_str().unwrap_or(""),
                c["type"].as_str().unwrap_or(""),
            );
            match sent.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                None => problems.push(format!(
                    "{where_}: the existing-table path deletes column {name} (a schema PUT replaces the custom columns: send every current column)"
                )),
                Some((_, t)) if t != ty => problems.push(format!(
                    "{where_}: the existing-table path changes the type of {name} from {ty} to {t} (a column's type cannot change)"
                )),
                Some(_) => {}
            }
        }
        let standard: Vec<String> = current["standardColumns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_ascii_lowercase))
            .collect();
        for (name, n) in &count {
            if *n > 1 {
                problems.push(format!(
                    "{where_}: the existing-table path declares {name} {n} times"
                ));
            }
            if standard.contains(name) {
                problems.push(format!(
                    "{where_}: the existing-table path re-declares the standard column {name}"
                ));
            }
        }
        for (name, _) in manifest_columns(&ctx) {
            let lower = name.to_ascii_lowercase();
            if name.chars().count() <= MAX_COLUMN_NAME
                && !count.contains_key(&lower)
                && !standard.contains(&lower)
            {
                problems.push(format!(
                    "{where_}: the existing-table path does not add manifest column {name}"
                ));
            }
        }
    }
    if !seen {
        problems.push(
            "no existing-table path: a table with a `current` parameter (infra/modules/table-extend.bicep) must add columns to an existing Okta_CL without a schema PUT that deletes or retypes"
                .into(),
        );
    }
}

// ------------------------------------------------------------------ 5. legacy sink

/// With the Data Collector sink the table must stay classic: nothing DCR-based is deployed
/// (https://learn.microsoft.com/en-us/azure/azure-monitor/logs/custom-logs-migrate).
fn legacy_sink_deploys_no_dcr(ctx: &Ctx, problems: &mut Vec<String>) {
    let legacy = ctx.with(MAIN, "sink", json!("data-collector"));
    let mut check = |what: &str, r: &Res| {
        match deployed(&legacy, r) {
        Ok(false) => {}
        Ok(true) => problems.push(format!(
            "{}: {what} {} is deployed with sink=data-collector: the legacy sink needs the classic table (deploy it only for logs-ingestion)",
            at(ctx, r.fi, r.decl),
            r.sym
        )),
        Err(e) => problems.push(format!(
            "{}: cannot tell whether {} is deployed with sink=data-collector: {e}",
            at(ctx, r.fi, r.decl),
            r.sym
        )),
    }
    };
    for m in modules_deploying(ctx, "Microsoft.OperationalInsights/workspaces/tables@") {
        check("the DCR-based table module", &m);
    }
    for m in modules_deploying(ctx, "Microsoft.Insights/dataCollectionRules@") {
        check("the DCR module", &m);
    }
    for r in resources(ctx, "Microsoft.Authorization/roleAssignments@") {
        let f = ctx.files[r.fi];
        let scope = prop(f, r.body, "scope").map(|s| text(f, s).to_string());
        let on_dcr = scope.as_deref().is_some_and(|s| {
            ctx.decls[r.fi].get(s).is_some_and(|d| {
                d.kind == "resource"
                    && d.target
                        .starts_with("Microsoft.Insights/dataCollectionRules@")
            })
        });
        if on_dcr {
            check("the role assignment on the DCR", &r);
        }
    }
}

// ------------------------------------------------------------------ 6. Basic plan

/// Basic tables support only simple log search alerts
/// (https://learn.microsoft.com/en-us/azure/azure-monitor/alerts/alerts-types): with
/// tablePlan=Basic no (non-simple) log alert reads the Okta table.
fn basic_table_has_no_log_alert(ctx: &Ctx, problems: &mut Vec<String>) {
    let basic = ctx.with(MAIN, "tablePlan", json!("Basic"));
    for r in resources(ctx, "Microsoft.Insights/scheduledQueryRules@") {
        let f = ctx.files[r.fi];
        if prop(f, r.body, "kind")
            .and_then(|k| literal(f, k))
            .as_deref()
            == Some("SimpleLogAlert")
        {
            continue;
        }
        match deployed(&basic, &r) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(e) => {
                problems.push(format!(
                    "{}: cannot tell whether {} is deployed with tablePlan=Basic: {e}",
                    at(ctx, r.fi, r.decl),
                    r.sym
                ));
                continue;
            }
        }
        let Some(criteria) = path_prop(f, r.body, &["properties", "criteria", "allOf"]) else {
            continue;
        };
        let mut queries = Vec::new();
        all_nodes(criteria, "object_property", &mut queries);
        for q in queries {
            let kids = named(q);
            if kids.first().map(|k| text(f, *k)) != Some("query") {
                continue;
            }
            let Some(v) = kids.get(1) else { continue };
            let mut ids = std::collections::HashSet::new();
            collect_idents(f, *v, &mut ids);
            if ids.contains("tableName") {
                problems.push(format!(
                    "{}: log alert {} reads the Okta table, which tablePlan=Basic does not allow: skip it (or make it a SimpleLogAlert) on Basic",
                    at(ctx, r.fi, r.decl),
                    r.sym
                ));
            }
        }
    }
}

// ------------------------------------------------------------------ 7. probes

/// Probes check the process only: `/readyz` depends on storage, Key Vault, Okta and the sink
/// and would keep a revision from provisioning
/// (https://learn.microsoft.com/en-us/azure/container-apps/health-probes).
fn probes_check_the_process_only(ctx: &Ctx, problems: &mut Vec<String>) {
    let mut probes = 0;
    for (fi, f) in ctx.files.iter().enumerate() {
        let mut props = Vec::new();
        all_nodes(f.tree.root_node(), "object_property", &mut props);
        for p in props {
            let kids = named(p);
            if kids.first().map(|k| text(f, *k)) != Some("httpGet") {
                continue;
            }
            probes += 1;
            let path = kids.get(1).and_then(|o| prop(f, *o, "path"));
            let path = path.and_then(|n| literal(f, n));
            if path.as_deref() != Some("/healthz") {
                problems.push(format!(
                    "{}: a probe must check the process only (path '/healthz'), not {path:?}: a dependency-aware probe keeps a revision from provisioning",
                    at(ctx, fi, p)
                ));
            }
        }
    }
    if probes == 0 {
        problems.push("no health probe on /healthz: a wedged replica would never restart".into());
    }
}

// ------------------------------------------------------------------ 8. ops YAML

/// `az containerapp job start --yaml` sends a whole execution template
/// (https://learn.microsoft.com/en-us/rest/api/resource-manager/containerapps/jobs/start): the
/// example keeps the job's container name, command and every env name, and runs a poison
/// command.
fn ops_yaml_matches_the_job(ctx: &Ctx, problems: &mut Vec<String>) {
    let Some(yaml) = ctx.sources.files.get(OPS_YAML) else {
        problems.push(format!(
            "{OPS_YAML}: missing (the ops job's execution example)"
        ));
        return;
    };
    // The example is a JSON document (JSON is YAML) after its comment lines.
    let doc: String = yaml
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let doc: Value = match serde_json::from_str(&doc) {
        Ok(v) => v,
        Err(e) => {
            problems.push(format!("{OPS_YAML}: not a JSON-shaped YAML document: {e}"));
            return;
        }
    };
    let Some(job) = resources(ctx, "Microsoft.App/jobs@").into_iter().next() else {
        problems.push("no Microsoft.App/jobs resource (the ops job)".into());
        return;
    };
    let f = ctx.files[job.fi];
    let Some(container) = path_prop(f, job.body, &["properties", "template", "containers"])
        .and_then(|a| named(a).into_iter().find(|c| c.kind() == "object"))
    else {
        problems.push(format!(
            "{}: the job has no container",
            at(ctx, job.fi, job.decl)
        ));
        return;
    };
    if let Some(keys) = doc.as_object() {
        for k in keys.keys() {
            if k != "containers" && k != "initContainers" {
                problems.push(format!(
                    "{OPS_YAML}: `{k}` is not part of a job execution template (containers, initContainers)"
                ));
            }
        }
    }
    let Some(y) = doc["containers"].as_array().and_then(|c| c.first()) else {
        problems.push(format!("{OPS_YAML}: no containers[0]"));
        return;
    };
    let lit = |k: &str| {
        prop(f, container, k).map(|n| eval(ctx, job.fi, n, &HashMap::new()).unwrap_or(Value::Null))
    };
    for k in ["name", "command"] {
        let want = lit(k).unwrap_or(Value::Null);
        if y[k] != want {
            problems.push(format!(
                "{OPS_YAML}: containers[0].{k} is {} but the job's is {want}",
                y[k]
            ));
        }
    }
    if y["args"].get(0).and_then(Value::as_str) != Some("poison") {
        problems.push(format!(
            "{OPS_YAML}: containers[0].args must be a poison command (poison list | show | requeue | purge)"
        ));
    }
    let mut job_env = BTreeSet::new();
    if let Some(env) = prop(f, container, "env") {
        env_names(ctx, job.fi, env, &mut job_env);
    }
    let yaml_env: BTreeSet<String> = y["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str().map(str::to_string))
        .collect();
    for missing in job_env.difference(&yaml_env) {
        problems.push(format!(
            "{OPS_YAML}: drops the job's env {missing}: a started execution runs with the template it is given"
        ));
    }
    for extra in yaml_env.difference(&job_env) {
        problems.push(format!("{OPS_YAML}: env {extra} is not the job's"));
    }
    if job_env.is_empty() {
        problems.push(format!(
            "{}: cannot read the job's env names",
            at(ctx, job.fi, job.decl)
        ));
    }
}

// ------------------------------------------------------------------ doctor jobs

/// What a doctor job and an app are compared on, as whitespace-free source text.
struct Runs {
    at: String,
    sym: String,
    command: String,
    args: String,
    env: String,
    identity: String,
}

fn runs(ctx: &Ctx, r: &Res) -> Option<Runs> {
    let f = ctx.files[r.fi];
    let container = path_prop(f, r.body, &["properties", "template", "containers"])
        .and_then(|a| named(a).into_iter().find(|c| c.kind() == "object"))?;
    let compact = |n: Option<Node>| -> String {
        n.map(|n| text(f, n).split_whitespace().collect())
            .unwrap_or_default()
    };
    Some(Runs {
        at: at(ctx, r.fi, r.decl),
        sym: r.sym.clone(),
        command: compact(prop(f, container, "command")),
        args: compact(prop(f, container, "args")),
        env: compact(prop(f, container, "env")),
        identity: compact(path_prop(
            f,
            r.body,
            &["identity", "userAssignedIdentities"],
        )),
    })
}

/// Every app has a manual `doctor` job (infra/README.md "After deploying, run doctor") that
/// runs the same binary with the same identity and the same env expression (one variable
/// both use), so the job checks exactly what the app will use and cannot drift from it.
fn doctor_jobs_equal_their_apps(ctx: &Ctx, problems: &mut Vec<String>) {
    let apps: Vec<Runs> = resources(ctx, "Microsoft.App/containerApps@")
        .iter()
        .filter(|r| !r.existing)
        .filter_map(|r| runs(ctx, r))
        .collect();
    let jobs: Vec<Runs> = resources(ctx, "Microsoft.App/jobs@")
        .iter()
        .filter(|r| !r.existing)
        .filter_map(|r| runs(ctx, r))
        .filter(|j| j.args == "['doctor']")
        .collect();
    for app in &apps {
        let Some(job) = jobs.iter().find(|j| j.command == app.command) else {
            problems.push(format!(
                "{}: app {} has no manual doctor job (a Microsoft.App/jobs with the same command and args ['doctor'])",
                app.at, app.sym
            ));
            continue;
        };
        if job.env.is_empty() || job.env != app.env {
            problems.push(format!(
                "{}: doctor job {} env `{}` is not app {}'s env `{}`: use the one variable both share",
                job.at, job.sym, job.env, app.sym, app.env
            ));
        }
        if job.identity != app.identity {
            problems.push(format!(
                "{}: doctor job {} runs as `{}`, not as app {}'s identity `{}`",
                job.at, job.sym, job.identity, app.sym, app.identity
            ));
        }
    }
}

/// Env names an env expression declares: objects with a literal `name` and a `value`, through
/// `concat(...)`, arrays, conditionals and variables of the same file.
fn env_names(ctx: &Ctx, fi: usize, n: Node, out: &mut BTreeSet<String>) {
    let f = ctx.files[fi];
    match n.kind() {
        "object" => {
            if let (Some(name), Some(_)) = (prop(f, n, "name"), prop(f, n, "value")) {
                if let Some(s) = literal(f, name) {
                    out.insert(s);
                }
            }
        }
        "identifier" => {
            if let Some(d) = ctx.decls[fi].get(text(f, n)) {
                if let (Some(v), true) = (d.value, d.kind == "var") {
                    env_names(ctx, fi, v, out);
                }
            }
        }
        _ => {
            for c in named(n) {
                env_names(ctx, fi, c, out);
            }
        }
    }
}

// ------------------------------------------------------------------ 9. custom storage roles

/// Built-in storage data roles that grant container/queue create and delete or clear-messages,
/// which no binary performs.
const TOO_BROAD: &[&str] = &[
    "Storage Queue Data Contributor",
    "Storage Blob Data Contributor",
    "Storage Blob Data Owner",
];

/// The table of infra/README.md: identity → permissions its storage operations need.
pub(crate) fn operation_table(readme: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let Some(start) = readme.find(OPERATIONS_SECTION) else {
        return out;
    };
    let section = &readme[start + OPERATIONS_SECTION.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    for line in section.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        // | identity | code | REST operation | permission |
        let (Some(who), Some(perm)) = (cells.first(), cells.get(3)) else {
            continue;
        };
        let perm = perm.trim_matches('`');
        if !perm.starts_with("Microsoft.Storage/") {
            continue;
        }
        out.entry(who.trim_matches('`').to_string())
            .or_default()
            .insert(perm.to_string());
    }
    out
}

/// Each identity's custom storage role holds exactly the permissions of its rows in the
/// README's operation table, and no storage grant uses a too-broad built-in role
/// (https://learn.microsoft.com/en-us/azure/role-based-access-control/permissions/storage).
fn storage_roles_equal_the_operation_table(
    ctx: &Ctx,
    grants: &[Grant],
    problems: &mut Vec<String>,
) {
    let table = operation_table(
        ctx.sources
            .files
            .get(README)
            .map(String::as_str)
            .unwrap_or(""),
    );
    if table.is_empty() {
        problems.push(format!(
            "{README}: no \"{OPERATIONS_SECTION}\" table (identity | code | REST operation | permission)"
        ));
        return;
    }
    for g in grants {
        if TOO_BROAD.contains(&g.role.as_str()) {
            problems.push(format!(
                "{} gets {} on a {}: it also grants container/queue create and delete the binaries never use; use its custom storage role",
                g.binary, g.role, g.scope_type
            ));
        }
    }
    let storage = |p: &String| p.starts_with("Microsoft.Storage/");
    for who in table.keys() {
        let roles: BTreeSet<(&str, BTreeSet<String>)> = grants
            .iter()
            // Custom storage roles only (the audit's workspace query role has no storage action).
            .filter(|g| {
                g.binary == *who
                    && g.role.starts_with("custom role")
                    && g.permissions.iter().any(storage)
            })
            .map(|g| {
                (
                    g.role.as_str(),
                    g.permissions
                        .iter()
                        .filter(|p| storage(p))
                        .cloned()
                        .collect(),
                )
            })
            .collect();
        if roles.is_empty() {
            problems.push(format!(
                "the {who} identity has no custom storage role ({README}: \"{OPERATIONS_SECTION}\")"
            ));
        }
        let want = &table[who];
        for (role, has) in roles {
            for extra in has.difference(want) {
                problems.push(format!(
                    "{role} ({who}) allows {extra}, which no storage operation of the {who} needs ({README} table)"
                ));
            }
            for missing in want.difference(&has) {
                problems.push(format!(
                    "{role} ({who}) lacks {missing}, which the {who}'s storage operations need ({README} table)"
                ));
            }
        }
    }
    // A role the README does not know.
    for g in grants.iter().filter(|g| g.role.starts_with("custom role")) {
        if !table.contains_key(&g.binary) {
            problems.push(format!(
                "{} ({}) is not described by the {README} operation table",
                g.role, g.binary
            ));
        }
    }
}

// ------------------------------------------------------------------ 10. smaller points

/// Storage account names are 3–24 lower-case letters and digits
/// (https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/resource-name-rules):
/// the name built from any allowed `namePrefix` is one.
fn names_from_any_prefix(ctx: &Ctx, problems: &mut Vec<String>) {
    let Some(fi) = ctx.file(MAIN) else { return };
    let Some(d) = ctx.decls[fi].get("storageAccountName") else {
        problems.push(format!("{MAIN}: no storageAccountName variable"));
        return;
    };
    let Some(v) = d.value else { return };
    for prefix in ["okta", "Okta-Prod_1", "ABCDEFGHIJ", "a.b"] {
        let c = ctx.with(MAIN, "namePrefix", json!(prefix));
        match eval(&c, fi, v, &HashMap::new()) {
            Ok(Value::String(name)) => {
                let ok = (3..=24).contains(&name.len())
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
                if !ok {
                    problems.push(format!(
                        "{MAIN}: namePrefix {prefix:?} gives the storage account name {name:?}: it must be 3-24 lower-case letters and digits"
                    ));
                }
            }
            other => problems.push(format!(
                "{MAIN}: cannot evaluate storageAccountName for namePrefix {prefix:?}: {other:?}"
            )),
        }
    }
}

/// Purge protection keeps a deleted vault's name for 90 days: the vault can be deployed with
/// createMode 'recover' (https://learn.microsoft.com/en-us/azure/templates/microsoft.keyvault/vaults).
fn key_vault_can_recover(ctx: &Ctx, problems: &mut Vec<String>) {
    let recover = ctx.with(MAIN, "keyVaultCreateMode", json!("recover"));
    for r in resources(ctx, "Microsoft.KeyVault/vaults@") {
        if r.existing {
            continue;
        }
        let f = ctx.files[r.fi];
        let mode = path_prop(f, r.body, &["properties", "createMode"])
            .map(|n| eval(&recover, r.fi, n, &HashMap::new()));
        if !matches!(mode, Some(Ok(Value::String(ref m))) if m == "recover") {
            problems.push(format!(
                "{}: keyVaultCreateMode='recover' must reach the vault's properties.createMode (got {mode:?})",
                at(ctx, r.fi, r.decl)
            ));
        }
    }
}

/// Endpoints and audiences come from the cloud being deployed to (`environment()`,
/// https://learn.microsoft.com/en-us/azure/azure-resource-manager/bicep/bicep-functions-deployment#environment),
/// so sovereign clouds work: no public-cloud host outside a declaration that consults
/// environment(), and the shipper gets AZURE_MONITOR_AUDIENCE.
fn audiences_come_from_the_cloud(ctx: &Ctx, problems: &mut Vec<String>) {
    for (fi, f) in ctx.files.iter().enumerate() {
        let mut strings = Vec::new();
        all_nodes(f.tree.root_node(), "string", &mut strings);
        for s in strings {
            let t = text(f, s);
            if !(t.contains("monitor.azure.")
                || t.contains("azurecr.io")
                || t.contains("core.windows.net"))
            {
                continue;
            }
            let mut up = s.parent();
            let mut in_decorator = false;
            while let Some(p) = up {
                in_decorator |= p.kind() == "decorator";
                up = p.parent();
            }
            if in_decorator {
                continue; // a description, not a value
            }
            // The top-level declaration holding it must consult environment().
            let mut top = s;
            while let Some(p) = top.parent() {
                if p.kind() == "infrastructure" || p.parent().is_none() {
                    break;
                }
                top = p;
            }
            if !text(f, top).contains("environment()") {
                problems.push(format!(
                    "{}: {t} is a public-cloud host: derive it from environment() so sovereign clouds work",
                    at(ctx, fi, s)
                ));
            }
        }
    }
    let shipper_env = resources(ctx, "Microsoft.App/containerApps@")
        .into_iter()
        .filter(|r| r.sym.contains("shipper"))
        .any(|r| {
            // Through the env variable the app shares with its doctor job.
            let f = ctx.files[r.fi];
            let mut names = BTreeSet::new();
            if let Some(env) = path_prop(f, r.body, &["properties", "template", "containers"])
                .and_then(|a| named(a).into_iter().find(|c| c.kind() == "object"))
                .and_then(|c| prop(f, c, "env"))
            {
                env_names(ctx, r.fi, env, &mut names);
            }
            names.contains("AZURE_MONITOR_AUDIENCE")
        });
    if !shipper_env {
        problems.push(
            "the shipper app must set AZURE_MONITOR_AUDIENCE (the Logs Ingestion audience of the cloud, from environment())"
                .into(),
        );
    }
}

/// Apps pull with AcrPull, which must exist first
/// (https://learn.microsoft.com/en-us/azure/container-apps/managed-identity-image-pull), and a
/// DCR whose table does not exist yet fails with InvalidOutputTable: the apps module depends on
/// the roles module, the DCR module on every table module.
fn deployment_order(ctx: &Ctx, problems: &mut Vec<String>) {
    let roles: Vec<String> = modules_deploying(ctx, "Microsoft.Authorization/roleAssignments@")
        .into_iter()
        .map(|m| m.sym)
        .collect();
    let mut apps = modules_deploying(ctx, "Microsoft.App/containerApps@");
    apps.extend(modules_deploying(ctx, "Microsoft.App/jobs@"));
    for m in apps {
        let deps = depends_on(ctx, &m);
        if !roles.iter().any(|r| deps.contains(r)) {
            problems.push(format!(
                "{}: module {} pulls images with AcrPull: it must dependsOn {roles:?}",
                at(ctx, m.fi, m.decl),
                m.sym
            ));
        }
    }
    let tables: Vec<String> =
        modules_deploying(ctx, "Microsoft.OperationalInsights/workspaces/tables@")
            .into_iter()
            .map(|m| m.sym)
            .collect();
    for m in modules_deploying(ctx, "Microsoft.Insights/dataCollectionRules@") {
        let deps = depends_on(ctx, &m);
        for t in tables.iter().filter(|t| !deps.contains(*t)) {
            problems.push(format!(
                "{}: module {} must dependsOn {t}: a DCR created before its table fails with InvalidOutputTable",
                at(ctx, m.fi, m.decl),
                m.sym
            ));
        }
    }
}
