//! The table and the DCR stream declare exactly the manifest's columns, with valid types, and the
//! DCR has the expected shape (Direct, one flow from the declared stream, `source` transform).
//!
//! A column over 45 characters may be left out (issue 13 §1.2, `overlongColumns`), but then by
//! the DCR stream and the new table alike: a transform may not output a column the table lacks.
//! The existing-table path (a file with a `current` parameter, table-extend.bicep) is evaluated
//! here against an empty current table, i.e. as a table it would create from nothing; its
//! "never delete, never retype" rule lives in `rules/deployment.rs`.

use std::collections::HashMap;

use serde_json::Value;
use tree_sitter::Node;

use crate::infra::catalog::{MANIFEST, MAX_COLUMN_NAME, STREAM_TYPES, TABLE_TYPES};
use crate::infra::eval::eval;
use crate::infra::tree::{all_nodes, body_object, literal, named, path_prop, pos, prop, text, Ctx};

// ------------------------------------------------------------------ columns

pub(crate) fn columns(ctx: &Ctx, problems: &mut Vec<String>) {
    let Some(manifest_text) = ctx.sources.files.get(MANIFEST) else {
        problems.push(format!("{MANIFEST}: missing"));
        return;
    };
    let manifest: Value = match serde_json::from_str(manifest_text) {
        Ok(v) => v,
        Err(e) => {
            problems.push(format!("{MANIFEST}: {e}"));
            return;
        }
    };
    let expected: Vec<(String, String)> = manifest["columns"]
        .as_array()
        .map(|cols| {
            cols.iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap_or("").to_string(),
                        c["type"].as_str().unwrap_or("").to_ascii_lowercase(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let (mut tables, mut rules) = (0, 0);
    // Overlong columns each new table / DCR stream declares, to compare them.
    let mut overlong: Vec<(String, &str, Vec<String>)> = Vec::new();
    for (fi, f) in ctx.files.iter().enumerate() {
        let extend_path = ctx.decls[fi]
            .get(EXISTING_TABLE_PARAM)
            .is_some_and(|d| d.kind == "param");
        let ctx = &if extend_path {
            ctx.with(&f.path, EXISTING_TABLE_PARAM, empty_table())
        } else {
            ctx.clone()
        };
        let mut decls = Vec::new();
        all_nodes(f.tree.root_node(), "resource_declaration", &mut decls);
        for r in decls {
            let kids = named(r);
            let ty = kids
                .iter()
                .find(|c| c.kind() == "string")
                .and_then(|s| literal(f, *s))
                .unwrap_or_default();
            let existing = (0..r.child_count())
                .filter_map(|i| r.child(i))
                .any(|c| c.kind() == "existing");
            let Some(body) = kids.last().copied().and_then(body_object) else {
                continue;
            };
            let at = format!("{}:{}", f.path, pos(r));
            let (node, allowed, what) = if ty
                .starts_with("Microsoft.OperationalInsights/workspaces/tables@")
                && !existing
            {
                tables += 1;
                (
                    path_prop(f, body, &["properties", "schema", "columns"]),
                    TABLE_TYPES,
                    "table",
                )
            } else if ty.starts_with("Microsoft.Insights/dataCollectionRules@") && !existing {
                rules += 1;
                dcr_shape(ctx, fi, body, &at, problems);
                let decl = path_prop(f, body, &["properties", "streamDeclarations"])
                    .and_then(|o| named(o).into_iter().find(|p| p.kind() == "object_property"))
                    .and_then(|p| named(p).get(1).copied())
                    .and_then(|v| prop(f, v, "columns"));
                (decl, STREAM_TYPES, "DCR stream")
            } else {
                continue;
            };
            let Some(node) = node else {
                problems.push(format!("{at}: {what} declares no columns"));
                continue;
            };
            let actual = match eval(ctx, fi, node, &HashMap::new()) {
                Ok(Value::Array(a)) => a,
                Ok(other) => {
                    problems.push(format!("{at}: {what} columns are not an array: {other}"));
                    continue;
                }
                Err(e) => {
                    problems.push(format!("{at}: cannot evaluate the {what} columns: {e}"));
                    continue;
                }
            };
            let actual: Vec<(String, String)> = actual
                .iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap_or("").to_string(),
                        c["type"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect();
            for (name, ty) in &actual {
                if !allowed.contains(&ty.to_ascii_lowercase().as_str())
                    || (what == "DCR stream" && ty == "dateTime")
                {
                    problems.push(format!(
                        "{at}: {what} column {name} has type {ty:?}, not one of {allowed:?}"
                    ));
                }
            }
            let norm: Vec<(String, String)> = actual
                .iter()
                .map(|(n, t)| (n.clone(), t.to_ascii_lowercase()))
                .collect();
            let declared_overlong: Vec<String> = norm
                .iter()
                .filter(|(n, _)| n.chars().count() > MAX_COLUMN_NAME)
                .map(|(n, _)| n.clone())
                .collect();
            if !extend_path {
                overlong.push((at.clone(), what, declared_overlong));
            }
            for col in &expected {
                let may_omit = col.0.chars().count() > MAX_COLUMN_NAME;
                // An overlong column may be absent altogether (not declared with another type).
                let omitted = may_omit && norm.iter().all(|(n, _)| *n != col.0);
                if !norm.contains(col) && !omitted {
                    problems.push(format!(
                        "{at}: {what} lacks manifest column {} ({})",
                        col.0, col.1
                    ));
                }
            }
            for col in &norm {
                if !expected.contains(col) {
                    problems.push(format!(
                        "{at}: {what} column {} ({}) is not in {MANIFEST}",
                        col.0, col.1
                    ));
                }
            }
            if !norm.iter().any(|(n, _)| n == "TimeGenerated") {
                problems.push(format!("{at}: {what} has no TimeGenerated"));
            }
        }
    }
    // The DCR stream and the new table leave out the same overlong columns.
    if let Some((dcr_at, _, dcr_cols)) = overlong.iter().find(|(_, w, _)| *w == "DCR stream") {
        for (at, what, cols) in overlong.iter().filter(|(_, w, _)| *w == "table") {
            for c in dcr_cols.iter().filter(|c| !cols.contains(c)) {
                problems.push(format!(
                    "{dcr_at}: DCR stream declares {c}, which the {what} at {at} leaves out: the transform would output a column the table lacks"
                ));
            }
            for c in cols.iter().filter(|c| !dcr_cols.contains(c)) {
                problems.push(format!(
                    "{dcr_at}: DCR stream leaves out {c}, which the {what} at {at} declares: its values would never arrive"
                ));
            }
        }
    }
    if tables == 0 || rules == 0 {
        problems.push(format!(
            "expected a workspace table and a data collection rule, found {tables} and {rules}"
        ));
    }
}

pub(crate) fn dcr_shape(ctx: &Ctx, fi: usize, body: Node, at: &str, problems: &mut Vec<String>) {
    let f = ctx.files[fi];
    let kind = prop(f, body, "kind").and_then(|k| literal(f, k));
    if kind.as_deref() != Some("Direct") {
        problems.push(format!(
            "{at}: the DCR must be kind 'Direct' (no DCE is deployed)"
        ));
    }
    let stream_key = path_prop(f, body, &["properties", "streamDeclarations"])
        .and_then(|o| named(o).into_iter().find(|p| p.kind() == "object_property"))
        .and_then(|p| named(p).first().copied());
    let flows = path_prop(f, body, &["properties", "dataFlows"]);
    let first_flow = flows.and_then(|a| named(a).into_iter().find(|c| c.kind() == "object"));
    let Some(flow) = first_flow else {
        problems.push(format!("{at}: the DCR has no data flow"));
        return;
    };
    let out = prop(f, flow, "outputStream").map(|n| text(f, n).to_string());
    let key = stream_key.map(|n| text(f, n).to_string());
    let streams = prop(f, flow, "streams")
        .map(|n| text(f, n).to_string())
        .unwrap_or_default();
    let key_ref = key.as_deref().map(|k| {
        k.trim_matches('\'')
            .trim_start_matches("${")
            .trim_end_matches('}')
            .to_string()
    });
    match (&out, &key_ref) {
        (Some(o), Some(k)) if o == k && streams.contains(k.as_str()) => {}
        _ => problems.push(format!(
            "{at}: the data flow must read the declared stream and write it to the same Custom- stream (stream {key:?}, outputStream {out:?})"
        )),
    }
    let transform = prop(f, flow, "transformKql")
        .map(|n| text(f, n).to_string())
        .unwrap_or_default();
    if !transform.contains("'source'") {
        problems.push(format!(
            "{at}: the transform must be `source` (optionally filtering DEBUG), got {transform}"
        ));
    }
}

/// The parameter through which the existing-table path receives the table as it is.
pub(crate) const EXISTING_TABLE_PARAM: &str = "current";

/// An existing table with no custom column (what table-read.bicep outputs for an empty table).
pub(crate) fn empty_table() -> Value {
    serde_json::json!({
        "plan": "Analytics",
        "retentionInDays": 90,
        "totalRetentionInDays": 90,
        "columns": [],
        "standardColumns": [],
    })
}
