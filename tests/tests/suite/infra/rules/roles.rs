//! Role assignment hygiene (guid names, principalType, narrow scope) and least privilege: every
//! data-plane operation each binary performs is granted by a role its identity gets on that
//! resource.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::infra::catalog::{OPERATION_TABLES, ROLES, SCOPES};

use crate::infra::eval::eval;
use crate::infra::sources::Sources;
use crate::infra::tree::{
    all_nodes, body_object, collect_idents, literal, named, pos, prop, text, Ctx,
};

// ------------------------------------------------------------------ role assignments

/// One role assignment as understood statically.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    /// `collector`, `shipper` or `ops` (the ops job's identity).
    pub binary: String,
    pub role: String,
    /// Scope resource type without api version.
    pub scope_type: String,
    /// Actions and data actions of the role (patterns may hold `*`).
    pub permissions: Vec<String>,
}

/// The role a `roleDefinitionId` expression names: a built-in role by GUID, or a custom role
/// defined in the same file, as (name, actions + data actions).
fn resolve_role(ctx: &Ctx, fi: usize, e: tree_sitter::Node) -> Option<(String, Vec<String>)> {
    let f = ctx.files[fi];
    // `<role>.id`, or `subscriptionResourceId('…/roleDefinitions', <role>.name)`.
    let mut members = Vec::new();
    crate::infra::tree::all_nodes(e, "member_expression", &mut members);
    for m in members {
        let Some(obj) = m.child_by_field_name("object") else {
            continue;
        };
        let sym = text(f, obj);
        let Some(d) = ctx.decls[fi].get(sym) else {
            continue;
        };
        if d.kind == "resource"
            && d.target
                .starts_with("Microsoft.Authorization/roleDefinitions@")
        {
            let body = d.value.and_then(body_object)?;
            let perms = crate::infra::tree::path_prop(f, body, &["properties", "permissions"])?;
            let perms = eval(ctx, fi, perms, &HashMap::new()).ok()?;
            let mut out = Vec::new();
            for p in perms.as_array()? {
                for key in ["actions", "dataActions"] {
                    for a in p[key].as_array().into_iter().flatten() {
                        out.push(a.as_str()?.to_string());
                    }
                }
            }
            return Some((format!("custom role {sym}"), out));
        }
    }
    let v = eval(ctx, fi, e, &HashMap::new()).ok()?;
    let s = v.as_str()?.to_ascii_lowercase();
    let id = s.rsplit('/').next()?.to_string();
    ROLES.iter().find(|r| r.id == id).map(|r| {
        (
            r.name.to_string(),
            r.actions
                .iter()
                .chain(r.data_actions)
                .map(|a| a.to_string())
                .collect(),
        )
    })
}

pub(crate) fn role_assignments(ctx: &Ctx, problems: &mut Vec<String>) -> Vec<Grant> {
    let mut grants = Vec::new();
    for (fi, f) in ctx.files.iter().enumerate() {
        let mut decls = Vec::new();
        all_nodes(f.tree.root_node(), "resource_declaration", &mut decls);
        for r in decls {
            let kids = named(r);
            let ty = kids
                .iter()
                .find(|c| c.kind() == "string")
                .and_then(|s| literal(f, *s))
                .unwrap_or_default();
            if !ty.starts_with("Microsoft.Authorization/roleAssignments@") {
                continue;
            }
            let at = format!("{}:{}", f.path, pos(r));
            let Some(value) = kids.last().copied() else {
                continue;
            };
            let Some(body) = body_object(value) else {
                problems.push(format!("{at}: role assignment body is not an object"));
                continue;
            };
            // Loop variables of `[for x in xs: …]` stand for the identifiers of `xs`.
            let mut loop_vars: HashMap<String, HashSet<String>> = HashMap::new();
            if value.kind() == "for_statement" {
                let mut iter_ids = HashSet::new();
                let body_n = value.child_by_field_name("body");
                let mut vars = Vec::new();
                for c in named(value) {
                    if c.kind() == "for_loop_parameters" {
                        vars.extend(named(c).into_iter().map(|v| text(f, v).to_string()));
                    } else if Some(c) == value.child_by_field_name("initializer") {
                        vars.push(text(f, c).to_string());
                    } else if Some(c) != body_n {
                        collect_idents(f, c, &mut iter_ids);
                    }
                }
                for v in vars {
                    loop_vars.insert(v, iter_ids.clone());
                }
            }
            match prop(f, body, "name") {
                Some(n)
                    if n.kind() == "call_expression"
                        && n.child_by_field_name("function").map(|x| text(f, x))
                            == Some("guid") => {}
                _ => problems.push(format!(
                    "{at}: role assignment name must be a deterministic guid(...)"
                )),
            }
            let props = prop(f, body, "properties");
            let get = |k: &str| props.and_then(|p| prop(f, p, k));
            if get("principalType").is_none() {
                problems.push(format!("{at}: role assignment lacks principalType"));
            }
            // Role.
            let role = get("roleDefinitionId").and_then(|e| resolve_role(ctx, fi, e));
            let Some((role, permissions)) = role else {
                problems.push(format!(
                    "{at}: cannot resolve roleDefinitionId to a known built-in role or a custom role of this file"
                ));
                continue;
            };
            // Principal: whose identity is it?
            let mut ids = HashSet::new();
            if let Some(p) = get("principalId") {
                collect_idents(f, p, &mut ids);
            }
            let mut names: Vec<String> = Vec::new();
            for id in ids {
                match loop_vars.get(&id) {
                    Some(iter) => names.extend(iter.iter().cloned()),
                    None => names.push(id),
                }
            }
            let lower: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
            let collector = lower.iter().any(|n| n.contains("collector"));
            let shipper = lower.iter().any(|n| n.contains("shipper"));
            let ops = lower.iter().any(|n| n.contains("ops"));
            let binary = match (collector, shipper || ops) {
                (true, false) => "collector",
                (false, true) if ops => "ops",
                (false, true) => "shipper",
                _ => {
                    problems.push(format!("{at}: cannot tell whether principalId {names:?} is the collector's or the shipper's identity"));
                    continue;
                }
            };
            // Scope: a resource symbol of this file.
            let scope_type = prop(f, body, "scope").and_then(|s| {
                let sym = if s.kind() == "subscript_expression" {
                    s.child_by_field_name("object")?
                } else {
                    s
                };
                if sym.kind() != "identifier" {
                    return None;
                }
                let d = ctx.decls[fi].get(text(f, sym))?;
                (d.kind == "resource").then(|| d.target.split('@').next().unwrap_or("").to_string())
            });
            let Some(scope_type) = scope_type else {
                problems.push(format!("{at}: role assignment scope must be one resource of this file (least privilege)"));
                continue;
            };
            if !SCOPES.iter().any(|(_, t)| *t == scope_type) {
                problems.push(format!("{at}: role assignment scoped to {scope_type}: only a queue, container, secret, rule or registry is narrow enough"));
            }
            grants.push(Grant {
                binary: binary.into(),
                role,
                scope_type,
                permissions,
            });
        }
    }
    grants
}

/// The completeness audit reads `Okta_CL` only (least privilege,
/// https://learn.microsoft.com/azure/azure-monitor/logs/manage-table-access): at the workspace
/// the collector may get only a role that reads the workspace's details and runs a query
/// (no table data: not Reader, Log Analytics Reader or Contributor); table data comes from
/// Reader scoped to the table.
pub(crate) fn audit_reads_the_table_only(grants: &[Grant], problems: &mut Vec<String>) {
    const QUERY_ONLY: [&str; 2] = [
        "Microsoft.OperationalInsights/workspaces/read",
        "Microsoft.OperationalInsights/workspaces/query/read",
    ];
    for g in grants {
        if g.binary != "collector" {
            continue;
        }
        let broad_role = g.role.contains("Log Analytics");
        let workspace_wide = g.scope_type == "Microsoft.OperationalInsights/workspaces"
            && g.permissions
                .iter()
                .any(|p| !QUERY_ONLY.iter().any(|q| q.eq_ignore_ascii_case(p)));
        if broad_role || workspace_wide {
            problems.push(format!(
                "the collector gets {} on {} ({:?}): the audit may read the Okta table only — Reader scoped to the table plus a workspace role with only {QUERY_ONLY:?}",
                g.role, g.scope_type, g.permissions
            ));
        }
    }
}

/// Azure permission matching: `*` matches any run of characters; case-insensitive.
pub(crate) fn permits(pattern: &str, op: &str) -> bool {
    fn m(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => (0..=s.len()).any(|i| m(rest, &s[i..])),
            Some((c, rest)) => {
                s.first().is_some_and(|x| x.eq_ignore_ascii_case(c)) && m(rest, &s[1..])
            }
        }
    }
    m(pattern.as_bytes(), op.as_bytes())
}

pub(crate) fn operations(sources: &Sources, grants: &[Grant], problems: &mut Vec<String>) {
    for (binary, table) in OPERATION_TABLES {
        let Some(text) = sources.files.get(*table) else {
            problems.push(format!("{table}: missing"));
            continue;
        };
        let ops: Vec<Value> = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{table}: not a JSON array: {e}"));
                continue;
            }
        };
        for op in ops {
            let (Some(name), Some(kind)) = (op["op"].as_str(), op["resource"].as_str()) else {
                problems.push(format!("{table}: entry without op/resource: {op}"));
                continue;
            };
            let Some((_, scope_type)) = SCOPES.iter().find(|(k, _)| *k == kind) else {
                problems.push(format!("{table}: unknown resource kind {kind:?}"));
                continue;
            };
            let granted = grants.iter().any(|g| {
                g.binary == *binary
                    && g.scope_type == *scope_type
                    && g.permissions.iter().any(|p| permits(p, name))
            });
            if !granted {
                problems.push(format!(
                    "{table}: {binary} performs {name} on the {kind} but no role its identity gets on that {kind} allows it"
                ));
            }
        }
    }
}
