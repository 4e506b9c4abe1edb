//! Resource types on the allow-list, modules that exist, storage and Key Vault hardening,
//! lifecycle prefixes, and role GUIDs that are documented built-in roles (never a forbidden one).

use crate::infra::catalog::{ALLOWED_TYPES, FORBIDDEN_ROLES, ROLES};
use crate::infra::sources::resolve;
use crate::infra::tree::{all_nodes, body_object, literal, named, pos, prop, text, Ctx, File};
use tree_sitter::Node;

// ------------------------------------------------------------------ resources and hardening

pub(crate) fn resources(ctx: &Ctx, fi: usize, problems: &mut Vec<String>) {
    let f = ctx.files[fi];
    let mut decls = Vec::new();
    all_nodes(f.tree.root_node(), "resource_declaration", &mut decls);
    for r in decls {
        let Some(s) = named(r).into_iter().find(|c| c.kind() == "string") else {
            continue;
        };
        let ty = literal(f, s).unwrap_or_default();
        if !ALLOWED_TYPES.contains(&ty.as_str()) {
            problems.push(format!(
                "{}:{}: resource type {ty:?} is not in the allow-list",
                f.path,
                pos(s)
            ));
        }
    }
    for (name, d) in &ctx.decls[fi] {
        if d.kind == "module" {
            let target = resolve(&f.path, &d.target);
            if !ctx.sources.files.contains_key(&target) {
                problems.push(format!(
                    "{}: module {name} points at missing {target}",
                    f.path
                ));
            }
        }
    }
}

pub(crate) fn is_false(f: &File, n: Option<Node>) -> bool {
    n.is_some_and(|n| n.kind() == "boolean" && text(f, n) == "false")
}
pub(crate) fn is_true(f: &File, n: Option<Node>) -> bool {
    n.is_some_and(|n| n.kind() == "boolean" && text(f, n) == "true")
}

pub(crate) fn hardening(f: &File, problems: &mut Vec<String>) {
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
        let props = prop(f, body, "properties");
        let get = |k: &str| props.and_then(|p| prop(f, p, k));
        let at = format!("{}:{}", f.path, pos(r));
        if ty.starts_with("Microsoft.Storage/storageAccounts@") && !existing {
            if !is_false(f, get("allowSharedKeyAccess")) {
                problems.push(format!(
                    "{at}: storage account must set allowSharedKeyAccess: false"
                ));
            }
            if !is_false(f, get("allowBlobPublicAccess")) {
                problems.push(format!(
                    "{at}: storage account must set allowBlobPublicAccess: false"
                ));
            }
            if get("minimumTlsVersion")
                .and_then(|n| literal(f, n))
                .as_deref()
                != Some("TLS1_2")
            {
                problems.push(format!(
                    "{at}: storage account must set minimumTlsVersion: 'TLS1_2'"
                ));
            }
        }
        if ty.starts_with("Microsoft.KeyVault/vaults@") && !existing {
            for k in [
                "enableRbacAuthorization",
                "enableSoftDelete",
                "enablePurgeProtection",
            ] {
                if !is_true(f, get(k)) {
                    problems.push(format!("{at}: Key Vault must set {k}: true"));
                }
            }
        }
        if ty.starts_with("Microsoft.Storage/storageAccounts@") && !existing {
            doctor_lifecycle(f, &at, problems);
        }
        if ty.starts_with("Microsoft.Storage/storageAccounts/managementPolicies@") {
            let mut prefixes = Vec::new();
            all_nodes(body, "object_property", &mut prefixes);
            for p in prefixes {
                let kids = named(p);
                if kids.first().map(|k| text(f, *k)) != Some("prefixMatch") {
                    continue;
                }
                let mut strings = Vec::new();
                if let Some(v) = kids.get(1) {
                    all_nodes(*v, "string", &mut strings);
                }
                for s in strings {
                    let t = text(f, s);
                    if !(t.ends_with("/done/'")
                        || t.ends_with("/pages/'")
                        || t.ends_with("/doctor/'"))
                    {
                        problems.push(format!(
                            "{}:{}: lifecycle rule prefix {t} may only target done/, pages/ or doctor/ (never state/, poison/, leader/, checkpoints/)",
                            f.path,
                            pos(s)
                        ));
                    }
                }
            }
        }
    }
}

/// The collector's role cannot delete blobs, so its doctor probe blob is left under `doctor/`
/// (common/src/doctor/storage.rs): the file that deploys the storage account must also deploy a
/// lifecycle rule deleting `doctor/` blobs one day after their last write, or every start-up
/// and `collector doctor` run leaves a blob behind for ever.
fn doctor_lifecycle(f: &File, at: &str, problems: &mut Vec<String>) {
    let mut decls = Vec::new();
    all_nodes(f.tree.root_node(), "resource_declaration", &mut decls);
    let mut found = false;
    for r in decls {
        let is_policy = named(r)
            .iter()
            .find(|c| c.kind() == "string")
            .and_then(|s| literal(f, *s))
            .is_some_and(|t| {
                t.starts_with("Microsoft.Storage/storageAccounts/managementPolicies@")
            });
        if !is_policy {
            continue;
        }
        let mut strings = Vec::new();
        all_nodes(r, "string", &mut strings);
        for s in strings {
            if !text(f, s).ends_with("/doctor/'") {
                continue;
            }
            // The rule object holding this prefix: the nearest ancestor with a `definition`.
            let mut n = s.parent();
            while let Some(node) = n {
                if node.kind() == "object" && prop(f, node, "definition").is_some() {
                    break;
                }
                n = node.parent();
            }
            let Some(rule) = n else { continue };
            let compact: String = text(f, rule).split_whitespace().collect();
            if compact.contains("delete:{daysAfterModificationGreaterThan:1}")
                && compact.contains("enabled:true")
            {
                found = true;
            }
        }
    }
    if !found {
        problems.push(format!(
            "{at}: storage account needs an enabled lifecycle rule deleting '<container>/doctor/' blobs (daysAfterModificationGreaterThan: 1): the collector's doctor probe blobs are never deleted otherwise"
        ));
    }
}

pub(crate) fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

pub(crate) fn role_guids(files: &[File], problems: &mut Vec<String>) {
    for f in files {
        let mut strings = Vec::new();
        all_nodes(f.tree.root_node(), "string", &mut strings);
        for s in strings {
            let Some(t) = literal(f, s) else { continue };
            let t = t.to_ascii_lowercase();
            if !is_guid(&t) {
                continue;
            }
            if let Some((name, _)) = FORBIDDEN_ROLES.iter().find(|(_, id)| *id == t) {
                problems.push(format!(
                    "{}:{}: role {name} ({t}) must never be granted",
                    f.path,
                    pos(s)
                ));
            } else if !ROLES.iter().any(|r| r.id == t) {
                problems.push(format!(
                    "{}:{}: {t} is not a documented built-in role this deployment may use",
                    f.path,
                    pos(s)
                ));
            }
        }
    }
}
