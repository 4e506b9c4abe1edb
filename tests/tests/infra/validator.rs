//! Offline validator for `infra/*.bicep` (no Bicep CLI can run here).
//!
//! It is a function over source text ([`Sources`] → list of problems) so the tests can run it on
//! the real files and on deliberately broken copies. It checks what a reviewer would otherwise
//! check by hand: syntax (tree-sitter-bicep), declared identifiers, resource type@apiVersion
//! allow-list, built-in role GUIDs, role assignment hygiene, storage and Key Vault hardening,
//! lifecycle prefixes, table / DCR columns equal to the shipper's column manifest (by evaluating
//! the Bicep expressions that build them), and that every data-plane operation each binary
//! performs is granted by the roles its identity receives, on the one resource it needs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde_json::{json, Map, Value};
use tree_sitter::{Node, Parser, Tree};

/// Repository-relative path of the column manifest the shipper uses (the single source of truth).
pub const MANIFEST: &str = "shipper/manifest/okta_cl.v1.json";

/// The storage-operation tables kept next to each binary's code, and whose identity runs them.
pub const OPERATION_TABLES: &[(&str, &str)] = &[
    ("collector", "collector/storage-operations.json"),
    ("shipper", "shipper/storage-operations.json"),
];

/// `type@apiVersion` allowed in the templates (contracts.md §7.1, plus the few extra resource
/// types this deployment uses: lifecycle policy, saved search, alerts, registry).
pub const ALLOWED_TYPES: &[&str] = &[
    "Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31",
    "Microsoft.Storage/storageAccounts@2023-05-01",
    "Microsoft.Storage/storageAccounts/queueServices@2023-05-01",
    "Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01",
    "Microsoft.Storage/storageAccounts/blobServices@2023-05-01",
    "Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01",
    "Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01",
    "Microsoft.KeyVault/vaults@2023-07-01",
    "Microsoft.KeyVault/vaults/secrets@2023-07-01",
    "Microsoft.OperationalInsights/workspaces@2022-10-01",
    "Microsoft.OperationalInsights/workspaces@2023-09-01",
    "Microsoft.OperationalInsights/workspaces/tables@2022-10-01",
    "Microsoft.OperationalInsights/workspaces/savedSearches@2020-08-01",
    "Microsoft.Insights/dataCollectionEndpoints@2023-03-11",
    "Microsoft.Insights/dataCollectionRules@2023-03-11",
    "Microsoft.Insights/scheduledQueryRules@2023-12-01",
    "Microsoft.Insights/actionGroups@2023-01-01",
    "Microsoft.Authorization/roleAssignments@2022-04-01",
    "Microsoft.App/managedEnvironments@2024-03-01",
    // 2025-01-01 is the first stable version with azureQueue.identity (contracts.md §6.2).
    "Microsoft.App/containerApps@2025-01-01",
    "Microsoft.App/containerApps@2025-07-01",
    "Microsoft.App/jobs@2024-03-01",
    "Microsoft.ContainerRegistry/registries@2023-07-01",
];

/// A built-in role: its GUID and permissions (Azure built-in roles reference).
pub struct Role {
    pub name: &'static str,
    pub id: &'static str,
    pub actions: &'static [&'static str],
    pub data_actions: &'static [&'static str],
}

const SQ: &str = "Microsoft.Storage/storageAccounts/queueServices/queues";
const SB: &str = "Microsoft.Storage/storageAccounts/blobServices/containers";

/// The documented built-in roles this validator knows (contracts.md §7.2). Permissions are those
/// of the Azure built-in roles reference; only the roles a grant may use need them.
pub const ROLES: &[Role] = &[
    Role {
        name: "Storage Queue Data Contributor",
        id: "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
        actions: &[
            "Microsoft.Storage/storageAccounts/queueServices/queues/delete",
            "Microsoft.Storage/storageAccounts/queueServices/queues/read",
            "Microsoft.Storage/storageAccounts/queueServices/queues/write",
        ],
        data_actions: &[
            "Microsoft.Storage/storageAccounts/queueServices/queues/messages/delete",
            "Microsoft.Storage/storageAccounts/queueServices/queues/messages/read",
            "Microsoft.Storage/storageAccounts/queueServices/queues/messages/write",
            "Microsoft.Storage/storageAccounts/queueServices/queues/messages/add/action",
            "Microsoft.Storage/storageAccounts/queueServices/queues/messages/process/action",
        ],
    },
    Role {
        name: "Storage Queue Data Message Processor",
        id: "8a0f0c08-91a1-4084-bc3d-661d67233fed",
        actions: &[],
        data_actions: &[
            "Microsoft.Storage/storageAccounts/queueServices/queues/messages/read",
            "Microsoft.Storage/storageAccounts/queueServices/queues/messages/process/action",
        ],
    },
    Role {
        name: "Storage Queue Data Message Sender",
        id: "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a",
        actions: &[],
        data_actions: &[
            "Microsoft.Storage/storageAccounts/queueServices/queues/messages/add/action",
        ],
    },
    Role {
        name: "Storage Queue Data Reader",
        id: "19e7f393-937e-4f77-808e-94535e297925",
        actions: &["Microsoft.Storage/storageAccounts/queueServices/queues/read"],
        data_actions: &["Microsoft.Storage/storageAccounts/queueServices/queues/messages/read"],
    },
    Role {
        name: "Storage Blob Data Contributor",
        id: "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
        actions: &[
            "Microsoft.Storage/storageAccounts/blobServices/containers/delete",
            "Microsoft.Storage/storageAccounts/blobServices/containers/read",
            "Microsoft.Storage/storageAccounts/blobServices/containers/write",
            "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action",
        ],
        data_actions: &[
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete",
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/move/action",
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action",
        ],
    },
    Role {
        name: "Storage Blob Data Owner",
        id: "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
        actions: &[
            "Microsoft.Storage/storageAccounts/blobServices/containers/*",
            "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action",
        ],
        data_actions: &["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/*"],
    },
    Role {
        name: "Storage Blob Data Reader",
        id: "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
        actions: &[
            "Microsoft.Storage/storageAccounts/blobServices/containers/read",
            "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action",
        ],
        data_actions: &["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"],
    },
    Role {
        name: "Storage Table Data Contributor",
        id: "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
        actions: &[],
        data_actions: &[],
    },
    Role {
        name: "Key Vault Secrets User",
        id: "4633458b-17de-408a-b874-0445c86b69e6",
        actions: &[],
        data_actions: &[
            "Microsoft.KeyVault/vaults/secrets/getSecret/action",
            "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
        ],
    },
    Role {
        name: "Key Vault Secrets Officer",
        id: "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
        actions: &[],
        data_actions: &["Microsoft.KeyVault/vaults/secrets/*"],
    },
    Role {
        name: "Monitoring Metrics Publisher",
        id: "3913510d-42f4-4e42-8a64-420c390055eb",
        actions: &[
            "Microsoft.Insights/Register/Action",
            "Microsoft.Support/*",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
        ],
        data_actions: &[
            "Microsoft.Insights/Metrics/Write",
            "Microsoft.Insights/Telemetry/Write",
        ],
    },
    Role {
        name: "Log Analytics Contributor",
        id: "92aaf0da-9dab-42b6-94a3-d43ce8d16293",
        actions: &[],
        data_actions: &[],
    },
    Role {
        name: "AcrPull",
        id: "7f951dda-4ed3-4680-a7ca-43fe172d538d",
        actions: &["Microsoft.ContainerRegistry/registries/pull/read"],
        data_actions: &[],
    },
];

/// Roles that must never be granted: they manage access or keys, or everything.
pub const FORBIDDEN_ROLES: &[(&str, &str)] = &[
    ("Owner", "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"),
    ("Contributor", "b24988ac-6180-42a0-ab88-20f7382dd24c"),
    (
        "User Access Administrator",
        "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    ),
    (
        "Storage Account Contributor",
        "17d1049b-9a84-46fb-8f53-869881c3d3ab",
    ),
    (
        "Storage Account Key Operator Service Role",
        "81a9662b-bebf-436f-a333-f67b29880f12",
    ),
];

/// Resource kinds named in the operation tables → the one resource type a grant must be scoped to.
const SCOPES: &[(&str, &str)] = &[
    ("queue", SQ),
    ("blob", SB),
    ("secret", "Microsoft.KeyVault/vaults/secrets"),
    ("dcr", "Microsoft.Insights/dataCollectionRules"),
    ("registry", "Microsoft.ContainerRegistry/registries"),
];

/// Bicep functions (and `az`/`sys` namespaces) an expression may call.
const FUNCTIONS: &[&str] = &[
    "any",
    "array",
    "base64",
    "bool",
    "coalesce",
    "concat",
    "contains",
    "dateTimeAdd",
    "deployment",
    "empty",
    "endsWith",
    "environment",
    "extensionResourceId",
    "filter",
    "first",
    "format",
    "guid",
    "indexOf",
    "int",
    "items",
    "join",
    "json",
    "last",
    "length",
    "listKeys",
    "loadJsonContent",
    "loadTextContent",
    "map",
    "max",
    "min",
    "objectKeys",
    "range",
    "reduce",
    "reference",
    "replace",
    "resourceGroup",
    "resourceId",
    "skip",
    "split",
    "startsWith",
    "string",
    "subscription",
    "subscriptionResourceId",
    "substring",
    "take",
    "tenant",
    "tenantResourceId",
    "toLower",
    "toUpper",
    "trim",
    "union",
    "uniqueString",
    "uri",
    "utcNow",
];
const DECORATORS: &[&str] = &[
    "allowed",
    "description",
    "discriminator",
    "export",
    "maxLength",
    "maxValue",
    "metadata",
    "minLength",
    "minValue",
    "sealed",
    "secure",
    "batchSize",
];
const NAMESPACES: &[&str] = &["az", "sys"];

const TABLE_TYPES: &[&str] = &[
    "string", "int", "long", "real", "boolean", "datetime", "guid", "dynamic",
];
const STREAM_TYPES: &[&str] = &[
    "string", "int", "long", "real", "boolean", "dynamic", "datetime",
];

/// The files the validator reads, by repository-relative path.
#[derive(Clone, Default)]
pub struct Sources {
    pub files: BTreeMap<String, String>,
}

impl Sources {
    /// Reads `infra/**/*.bicep`, the manifest(s) and the operation tables from a checkout.
    pub fn load(root: &Path) -> Sources {
        let mut files = BTreeMap::new();
        let mut stack = vec![root.join("infra")];
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
            for entry in entries {
                let path = entry.expect("dir entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else if path
                    .extension()
                    .is_some_and(|e| e == "bicep" || e == "bicepparam")
                {
                    add(&mut files, root, &path);
                }
            }
        }
        for manifest in std::fs::read_dir(root.join("shipper/manifest")).expect("manifest dir") {
            let path = manifest.expect("dir entry").path();
            if path.extension().is_some_and(|e| e == "json") {
                add(&mut files, root, &path);
            }
        }
        for (_, table) in OPERATION_TABLES {
            add(&mut files, root, &root.join(table));
        }
        Sources { files }
    }

    pub fn get(&self, path: &str) -> &str {
        self.files
            .get(path)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no {path}"))
    }

    /// A copy with `from` replaced by `to` in `path`; panics when `from` is absent, so a broken
    /// copy can never silently equal the original.
    pub fn mutated(&self, path: &str, from: &str, to: &str) -> Sources {
        let text = self.get(path);
        assert!(text.contains(from), "{path} does not contain {from:?}");
        let mut copy = self.clone();
        copy.files
            .insert(path.to_string(), text.replacen(from, to, 1));
        copy
    }
}

fn add(files: &mut BTreeMap<String, String>, root: &Path, path: &Path) {
    let rel = path
        .strip_prefix(root)
        .expect("under root")
        .to_string_lossy()
        .replace('\\', "/");
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    files.insert(rel, text);
}

/// Joins a path relative to `file`'s directory, resolving `..`.
fn resolve(file: &str, rel: &str) -> String {
    let mut parts: Vec<&str> = file.split('/').collect();
    parts.pop();
    for seg in rel.split('/') {
        match seg {
            "." | "" => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

// ------------------------------------------------------------------ parsed files

struct File {
    path: String,
    text: String,
    tree: Tree,
}

struct Decl<'t> {
    kind: &'static str,
    /// Default (param), value (var), body (resource/module).
    value: Option<Node<'t>>,
    /// `type@version` of a resource, path of a module.
    target: String,
}

struct Ctx<'a> {
    files: Vec<&'a File>,
    decls: Vec<HashMap<String, Decl<'a>>>,
    sources: &'a Sources,
}

fn text<'a>(file: &'a File, n: Node) -> &'a str {
    n.utf8_text(file.text.as_bytes()).unwrap_or("")
}

fn named(n: Node) -> Vec<Node> {
    (0..n.named_child_count())
        .filter_map(|i| n.named_child(i))
        .collect()
}

fn pos(n: Node) -> String {
    let p = n.start_position();
    format!("{}:{}", p.row + 1, p.column + 1)
}

/// The literal text of a string node without interpolations; `None` if it interpolates.
fn literal(file: &File, n: Node) -> Option<String> {
    if n.kind() != "string" {
        return None;
    }
    let mut out = String::new();
    for c in named(n) {
        match c.kind() {
            "string_content" => out.push_str(text(file, c)),
            "escape_sequence" => out.push_str(&unescape(text(file, c))),
            _ => return None,
        }
    }
    Some(out)
}

fn unescape(s: &str) -> String {
    match s {
        "\\n" => "\n".into(),
        "\\r" => "\r".into(),
        "\\t" => "\t".into(),
        "\\\\" => "\\".into(),
        "\\'" => "'".into(),
        "\\$" => "$".into(),
        other => other.trim_start_matches('\\').into(),
    }
}

/// The object of a resource/module body, looking through `if (…) {…}` and `[for …: {…}]`.
fn body_object(n: Node) -> Option<Node> {
    match n.kind() {
        "object" => Some(n),
        "if_statement" => named(n).into_iter().find(|c| c.kind() == "object"),
        "for_statement" => n.child_by_field_name("body").and_then(body_object),
        _ => None,
    }
}

/// Value node of property `key` in an object node.
fn prop<'t>(file: &File, obj: Node<'t>, key: &str) -> Option<Node<'t>> {
    for p in named(obj) {
        if p.kind() != "object_property" {
            continue;
        }
        let kids = named(p);
        let (Some(k), Some(v)) = (kids.first(), kids.get(1)) else {
            continue;
        };
        let name = match k.kind() {
            "identifier" => text(file, *k).to_string(),
            "string" => literal(file, *k).unwrap_or_default(),
            _ => continue,
        };
        if name == key {
            return Some(*v);
        }
    }
    None
}

fn path_prop<'t>(file: &File, obj: Node<'t>, keys: &[&str]) -> Option<Node<'t>> {
    let mut cur = obj;
    for k in keys {
        cur = prop(file, cur, k)?;
    }
    Some(cur)
}

fn declarations<'t>(file: &'t File) -> HashMap<String, Decl<'t>> {
    let mut out = HashMap::new();
    let root = file.tree.root_node();
    for st in named(root) {
        let kind: &'static str = match st.kind() {
            "parameter_declaration" => "param",
            "variable_declaration" => "var",
            "resource_declaration" => "resource",
            "module_declaration" => "module",
            "output_declaration" => "output",
            "type_declaration" => "type",
            "user_defined_function" => "func",
            "import_functionality" => {
                for id in named(st).into_iter().filter(|c| c.kind() == "identifier") {
                    out.insert(
                        text(file, id).into(),
                        Decl {
                            kind: "import",
                            value: None,
                            target: String::new(),
                        },
                    );
                }
                continue;
            }
            _ => continue,
        };
        let kids = named(st);
        let Some(name) = kids.iter().find(|c| c.kind() == "identifier") else {
            continue;
        };
        let mut target = String::new();
        let mut value = None;
        match kind {
            "resource" | "module" => {
                if let Some(s) = kids.iter().find(|c| c.kind() == "string") {
                    target = literal(file, *s).unwrap_or_default();
                }
                value = kids.last().copied();
            }
            // param NAME TYPE [= default]
            "param" if kids.len() >= 3 => value = kids.last().copied(),
            "var" => value = kids.get(1).copied(),
            _ => {}
        }
        out.insert(
            text(file, *name).into(),
            Decl {
                kind,
                value,
                target,
            },
        );
    }
    out
}

// ------------------------------------------------------------------ entry point

/// Every problem found, as `path:line:col: message`; empty when the sources are valid.
pub fn validate(sources: &Sources) -> Vec<String> {
    let mut problems = Vec::new();
    let mut parser = Parser::new();
    parser
        .set_language(&tree_sitter_bicep::LANGUAGE.into())
        .expect("bicep grammar");
    let files: Vec<File> = sources
        .files
        .iter()
        .filter(|(p, _)| p.ends_with(".bicep"))
        .map(|(p, t)| File {
            path: p.clone(),
            text: t.clone(),
            tree: parser.parse(t, None).expect("parse"),
        })
        .collect();
    if files.is_empty() {
        return vec!["no .bicep files".into()];
    }
    for f in &files {
        syntax(f, &mut problems);
    }
    if !problems.is_empty() {
        // Later checks would only report noise on a broken tree.
        return problems;
    }
    let ctx = Ctx {
        decls: files.iter().map(declarations).collect(),
        files: files.iter().collect(),
        sources,
    };
    for (i, f) in files.iter().enumerate() {
        identifiers(&ctx, i, &mut problems);
        resources(&ctx, i, &mut problems);
        hardening(f, &mut problems);
    }
    role_guids(&files, &mut problems);
    let grants = role_assignments(&ctx, &mut problems);
    operations(sources, &grants, &mut problems);
    columns(&ctx, &mut problems);
    problems
}

fn syntax(f: &File, problems: &mut Vec<String>) {
    fn walk(f: &File, n: Node, problems: &mut Vec<String>) {
        if n.is_error() || n.is_missing() {
            let what = if n.is_missing() {
                "missing"
            } else {
                "syntax error at"
            };
            let snippet: String = text(f, n).chars().take(40).collect();
            problems.push(format!(
                "{}:{}: {what} {:?} ({})",
                f.path,
                pos(n),
                snippet,
                n.kind()
            ));
            return;
        }
        // tree-sitter-bicep gives `.x` / `[i]` a lower precedence than operators, so
        // `a ? b : c.d` is read as `(a ? b : c).d` (Bicep reads `a ? b : (c.d)`). Such text
        // must be parenthesised, or every later check would reason about the wrong tree.
        if matches!(n.kind(), "member_expression" | "subscript_expression") {
            if let Some(o) = n.child_by_field_name("object") {
                if matches!(
                    o.kind(),
                    "binary_expression"
                        | "ternary_expression"
                        | "unary_expression"
                        | "lambda_expression"
                ) {
                    problems.push(format!(
                        "{}:{}: ambiguous for the offline parser: parenthesise the operand that ends in {:?}",
                        f.path,
                        pos(n),
                        text(f, n).chars().rev().take(30).collect::<String>().chars().rev().collect::<String>()
                    ));
                }
            }
        }
        for i in 0..n.child_count() {
            if let Some(c) = n.child(i) {
                walk(f, c, problems);
            }
        }
    }
    walk(f, f.tree.root_node(), problems);
}

// ------------------------------------------------------------------ identifiers

fn identifiers(ctx: &Ctx, fi: usize, problems: &mut Vec<String>) {
    let f = ctx.files[fi];
    let globals: HashSet<String> = ctx.decls[fi].keys().cloned().collect();
    let funcs: HashSet<String> = ctx.decls[fi]
        .iter()
        .filter(|(_, d)| d.kind == "func" || d.kind == "import")
        .map(|(k, _)| k.clone())
        .collect();
    let mut scopes: Vec<HashSet<String>> = vec![globals];
    ident_walk(f, f.tree.root_node(), &mut scopes, &funcs, problems);
}

fn declared(scopes: &[HashSet<String>], name: &str) -> bool {
    scopes.iter().any(|s| s.contains(name))
}

fn ident_walk(
    f: &File,
    n: Node,
    scopes: &mut Vec<HashSet<String>>,
    funcs: &HashSet<String>,
    problems: &mut Vec<String>,
) {
    let kids = named(n);
    match n.kind() {
        "identifier" => {
            let name = text(f, n);
            if !declared(scopes, name) {
                problems.push(format!("{}:{}: `{name}` is not declared", f.path, pos(n)));
            }
        }
        "parameter_declaration"
        | "variable_declaration"
        | "output_declaration"
        | "type_declaration"
        | "resource_declaration"
        | "module_declaration"
        | "metadata_declaration"
        | "assert_statement"
        | "test_block" => {
            // The first identifier is the declared name; nested resources may be referenced
            // by name inside their parent's body.
            let mut scope = HashSet::new();
            if let Some(obj) = kids.last().copied().and_then(body_object) {
                for p in named(obj) {
                    if let Some(r) = named(p)
                        .first()
                        .filter(|r| r.kind() == "resource_declaration")
                    {
                        if let Some(id) = named(*r).into_iter().find(|c| c.kind() == "identifier") {
                            scope.insert(text(f, id).to_string());
                        }
                    }
                }
            }
            scopes.push(scope);
            for c in kids.iter().skip_while(|c| c.kind() != "identifier").skip(1) {
                ident_walk(f, *c, scopes, funcs, problems);
            }
            scopes.pop();
        }
        "user_defined_function" => {
            let mut scope = HashSet::new();
            for c in &kids {
                if c.kind() == "parameters" {
                    for p in named(*c) {
                        if let Some(id) = named(p).first() {
                            scope.insert(text(f, *id).to_string());
                        }
                    }
                }
            }
            scopes.push(scope);
            for c in kids.iter().skip(1).filter(|c| c.kind() != "parameters") {
                ident_walk(f, *c, scopes, funcs, problems);
            }
            scopes.pop();
        }
        "import_functionality"
        | "import_statement"
        | "using_statement"
        | "target_scope_assignment"
        | "compatible_identifier"
        | "primitive_type"
        | "parameterized_type"
        | "property_identifier" => {}
        "object_property" => {
            for (i, c) in kids.iter().enumerate() {
                let is_key = i == 0 && kids.len() > 1;
                if is_key && c.kind() != "string" {
                    continue;
                }
                ident_walk(f, *c, scopes, funcs, problems);
            }
        }
        "member_expression" | "resource_expression" => {
            if let Some(o) = n.child_by_field_name("object") {
                ident_walk(f, o, scopes, funcs, problems);
            }
        }
        "call_expression" => {
            let func = n.child_by_field_name("function");
            let is_decorator = n.parent().is_some_and(|p| p.kind() == "decorator");
            match func {
                Some(fname) if fname.kind() == "identifier" => {
                    let name = text(f, fname);
                    let known = if is_decorator {
                        DECORATORS.contains(&name)
                    } else {
                        FUNCTIONS.contains(&name) || funcs.contains(name)
                    };
                    if !known {
                        problems.push(format!(
                            "{}:{}: unknown function `{name}`",
                            f.path,
                            pos(fname)
                        ));
                    }
                }
                Some(fname) if fname.kind() == "member_expression" => {
                    let obj = fname.child_by_field_name("object");
                    let ns = obj.map(|o| text(f, o)).unwrap_or("");
                    if !NAMESPACES.contains(&ns) {
                        ident_walk(f, fname, scopes, funcs, problems);
                    }
                }
                Some(other) => ident_walk(f, other, scopes, funcs, problems),
                None => {}
            }
            if let Some(args) = n.child_by_field_name("arguments") {
                ident_walk(f, args, scopes, funcs, problems);
            }
        }
        "for_statement" => {
            let mut scope = HashSet::new();
            let body = n.child_by_field_name("body");
            let init = n.child_by_field_name("initializer");
            for c in &kids {
                if c.kind() == "for_loop_parameters" {
                    for v in named(*c) {
                        scope.insert(text(f, v).to_string());
                    }
                } else if Some(*c) == init {
                    scope.insert(text(f, *c).to_string());
                } else if Some(*c) != body {
                    ident_walk(f, *c, scopes, funcs, problems);
                }
            }
            scopes.push(scope);
            if let Some(b) = body {
                ident_walk(f, b, scopes, funcs, problems);
            }
            scopes.pop();
        }
        "lambda_expression" => {
            let mut scope = HashSet::new();
            if let Some(params) = kids.first() {
                collect_idents(f, *params, &mut scope);
            }
            scopes.push(scope);
            for c in kids.iter().skip(1) {
                ident_walk(f, *c, scopes, funcs, problems);
            }
            scopes.pop();
        }
        _ => {
            for c in kids {
                ident_walk(f, c, scopes, funcs, problems);
            }
        }
    }
}

fn collect_idents(f: &File, n: Node, out: &mut HashSet<String>) {
    if n.kind() == "identifier" {
        out.insert(text(f, n).to_string());
    }
    for c in named(n) {
        if c.kind() != "property_identifier" {
            collect_idents(f, c, out);
        }
    }
}

// ------------------------------------------------------------------ resources and hardening

fn all_nodes<'t>(n: Node<'t>, kind: &str, out: &mut Vec<Node<'t>>) {
    if n.kind() == kind {
        out.push(n);
    }
    for c in named(n) {
        all_nodes(c, kind, out);
    }
}

fn resources(ctx: &Ctx, fi: usize, problems: &mut Vec<String>) {
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

fn is_false(f: &File, n: Option<Node>) -> bool {
    n.is_some_and(|n| n.kind() == "boolean" && text(f, n) == "false")
}
fn is_true(f: &File, n: Option<Node>) -> bool {
    n.is_some_and(|n| n.kind() == "boolean" && text(f, n) == "true")
}

fn hardening(f: &File, problems: &mut Vec<String>) {
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
                    if !(t.ends_with("/done/'") || t.ends_with("/pages/'")) {
                        problems.push(format!(
                            "{}:{}: lifecycle rule prefix {t} may only target done/ or pages/ (never state/, poison/, leader/, checkpoints/)",
                            f.path,
                            pos(s)
                        ));
                    }
                }
            }
        }
    }
}

fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn role_guids(files: &[File], problems: &mut Vec<String>) {
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

// ------------------------------------------------------------------ role assignments

/// One role assignment as understood statically.
#[derive(Debug, Clone)]
pub struct Grant {
    pub binary: String,
    pub role: String,
    /// Scope resource type without api version.
    pub scope_type: String,
}

fn role_assignments(ctx: &Ctx, problems: &mut Vec<String>) -> Vec<Grant> {
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
            let role = get("roleDefinitionId").and_then(|e| {
                let v = eval(ctx, fi, e, &HashMap::new()).ok()?;
                let s = v.as_str()?.to_ascii_lowercase();
                let id = s.rsplit('/').next()?.to_string();
                ROLES
                    .iter()
                    .find(|r| r.id == id)
                    .map(|r| r.name.to_string())
            });
            let Some(role) = role else {
                problems.push(format!(
                    "{at}: cannot resolve roleDefinitionId to a known built-in role"
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
            let binary = match (collector, shipper) {
                (true, false) => "collector",
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
            });
        }
    }
    grants
}

/// Azure permission matching: `*` matches any run of characters; case-insensitive.
fn permits(pattern: &str, op: &str) -> bool {
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

fn operations(sources: &Sources, grants: &[Grant], problems: &mut Vec<String>) {
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
                    && ROLES.iter().find(|r| r.name == g.role).is_some_and(|r| {
                        r.actions
                            .iter()
                            .chain(r.data_actions)
                            .any(|p| permits(p, name))
                    })
            });
            if !granted {
                problems.push(format!(
                    "{table}: {binary} performs {name} on the {kind} but no role its identity gets on that {kind} allows it"
                ));
            }
        }
    }
}

// ------------------------------------------------------------------ columns

fn columns(ctx: &Ctx, problems: &mut Vec<String>) {
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
            let existing = (0..r.child_count())
                .filter_map(|i| r.child(i))
                .any(|c| c.kind() == "existing");
            let Some(body) = kids.last().copied().and_then(body_object) else {
                continue;
            };
            let at = format!("{}:{}", f.path, pos(r));
            let (node, allowed, what) =
                if ty.starts_with("Microsoft.OperationalInsights/workspaces/tables@") {
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
            for col in &expected {
                if !norm.contains(col) {
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
    if tables == 0 || rules == 0 {
        problems.push(format!(
            "expected a workspace table and a data collection rule, found {tables} and {rules}"
        ));
    }
}

fn dcr_shape(ctx: &Ctx, fi: usize, body: Node, at: &str, problems: &mut Vec<String>) {
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

// ------------------------------------------------------------------ mini evaluator

type Env = HashMap<String, Value>;

/// Evaluates the compile-time subset of Bicep the column and role expressions use. Parameters
/// take their default, or the value the parent file's module call passes.
fn eval(ctx: &Ctx, fi: usize, n: Node, env: &Env) -> Result<Value, String> {
    let f = ctx.files[fi];
    let kids = named(n);
    let ev = |n: Node| eval(ctx, fi, n, env);
    match n.kind() {
        "string" => {
            let mut out = String::new();
            for c in kids {
                match c.kind() {
                    "string_content" => out.push_str(text(f, c)),
                    "escape_sequence" => out.push_str(&unescape(text(f, c))),
                    "interpolation" => {
                        let v = ev(named(c)[0])?;
                        match v {
                            Value::String(s) => out.push_str(&s),
                            other => out.push_str(&other.to_string()),
                        }
                    }
                    other => return Err(format!("string part {other}")),
                }
            }
            Ok(Value::String(out))
        }
        "number" => text(f, n)
            .parse::<i64>()
            .map(Value::from)
            .map_err(|e| e.to_string()),
        "boolean" => Ok(Value::Bool(text(f, n) == "true")),
        "null" => Ok(Value::Null),
        "array" => kids
            .into_iter()
            .filter(|c| c.kind() != "decorators")
            .map(ev)
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        "object" => {
            let mut m = Map::new();
            for p in kids.into_iter().filter(|c| c.kind() == "object_property") {
                let pk = named(p);
                let (Some(k), Some(v)) = (pk.first(), pk.get(1)) else {
                    continue;
                };
                let key = match k.kind() {
                    "identifier" => text(f, *k).to_string(),
                    "string" => ev(*k)?.as_str().unwrap_or_default().to_string(),
                    other => return Err(format!("object key {other}")),
                };
                m.insert(key, ev(*v)?);
            }
            Ok(Value::Object(m))
        }
        "parenthesized_expression" if kids.len() == 1 => ev(kids[0]),
        "identifier" => {
            let name = text(f, n);
            if let Some(v) = env.get(name) {
                return Ok(v.clone());
            }
            let d = ctx.decls[fi]
                .get(name)
                .ok_or_else(|| format!("unknown {name}"))?;
            match (d.kind, d.value) {
                ("var", Some(v)) => eval(ctx, fi, v, &HashMap::new()),
                ("param", Some(v)) => eval(ctx, fi, v, &HashMap::new()),
                ("param", None) => param_from_caller(ctx, fi, name),
                _ => Err(format!("{name} is a {} (not a compile-time value)", d.kind)),
            }
        }
        "member_expression" => {
            let obj = ev(n
                .child_by_field_name("object")
                .ok_or("member without object")?)?;
            let prop = n
                .child_by_field_name("property")
                .map(|p| text(f, p))
                .ok_or("member without property")?;
            let safe = (0..n.child_count())
                .filter_map(|i| n.child(i))
                .any(|c| c.kind() == ".?");
            match obj.get(prop) {
                Some(v) => Ok(v.clone()),
                None if safe || obj.is_null() => Ok(Value::Null),
                None => Err(format!("no property {prop}")),
            }
        }
        "subscript_expression" => {
            let obj = ev(n
                .child_by_field_name("object")
                .ok_or("subscript without object")?)?;
            let idx = ev(n
                .child_by_field_name("index")
                .ok_or("subscript without index")?)?;
            match (&obj, &idx) {
                (Value::Array(a), Value::Number(i)) => a
                    .get(i.as_u64().unwrap_or(u64::MAX) as usize)
                    .cloned()
                    .ok_or("index out of range".into()),
                (Value::Object(o), Value::String(k)) => {
                    o.get(k).cloned().ok_or(format!("no key {k}"))
                }
                _ => Err("bad subscript".into()),
            }
        }
        "ternary_expression" => {
            let c = ev(n.child_by_field_name("condition").ok_or("ternary")?)?;
            let branch = if c.as_bool().ok_or("ternary condition not bool")? {
                "consequence"
            } else {
                "alternative"
            };
            ev(n.child_by_field_name(branch).ok_or("ternary")?)
        }
        "unary_expression" => {
            let a = ev(n.child_by_field_name("argument").ok_or("unary")?)?;
            match n.child_by_field_name("operator").map(|o| text(f, o)) {
                Some("!") => Ok(Value::Bool(!a.as_bool().ok_or("! on non-bool")?)),
                Some("-") => Ok(Value::from(-a.as_i64().ok_or("- on non-int")?)),
                _ => Err("unary".into()),
            }
        }
        "binary_expression" => {
            let op = n
                .child_by_field_name("operator")
                .map(|o| text(f, o))
                .unwrap_or("");
            let l = ev(n.child_by_field_name("left").ok_or("binary")?)?;
            if op == "&&" && l == Value::Bool(false) {
                return Ok(l);
            }
            if op == "||" && l == Value::Bool(true) {
                return Ok(l);
            }
            if op == "??" && !l.is_null() {
                return Ok(l);
            }
            let r = ev(n.child_by_field_name("right").ok_or("binary")?)?;
            let ints = (l.as_i64(), r.as_i64());
            Ok(match (op, ints) {
                ("==", _) => Value::Bool(l == r),
                ("!=", _) => Value::Bool(l != r),
                ("=~", _) => Value::Bool(
                    l.as_str().map(str::to_lowercase) == r.as_str().map(str::to_lowercase),
                ),
                ("&&" | "||", _) => Value::Bool(r.as_bool().ok_or("bool expected")?),
                ("??", _) => r,
                ("<", (Some(a), Some(b))) => Value::Bool(a < b),
                ("<=", (Some(a), Some(b))) => Value::Bool(a <= b),
                (">", (Some(a), Some(b))) => Value::Bool(a > b),
                (">=", (Some(a), Some(b))) => Value::Bool(a >= b),
                ("+", (Some(a), Some(b))) => Value::from(a + b),
                ("-", (Some(a), Some(b))) => Value::from(a - b),
                _ => return Err(format!("operator {op}")),
            })
        }
        "for_statement" => {
            let body = n.child_by_field_name("body").ok_or("for without body")?;
            let init = n.child_by_field_name("initializer");
            let mut item_name = init.map(|i| text(f, i).to_string());
            let mut index_name = None;
            let mut iterable = None;
            for c in &kids {
                if c.kind() == "for_loop_parameters" {
                    let vs = named(*c);
                    item_name = vs.first().map(|v| text(f, *v).to_string());
                    index_name = vs.get(1).map(|v| text(f, *v).to_string());
                } else if Some(*c) != init && *c != body {
                    iterable = Some(*c);
                }
            }
            let items = ev(iterable.ok_or("for without iterable")?)?;
            let items = match items {
                Value::Array(a) => a,
                Value::Number(k) => (0..k.as_i64().unwrap_or(0)).map(Value::from).collect(),
                _ => return Err("for over a non-array".into()),
            };
            let mut out = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                let mut local = env.clone();
                if let Some(name) = &item_name {
                    local.insert(name.clone(), item);
                }
                if let Some(name) = &index_name {
                    local.insert(name.clone(), Value::from(i));
                }
                if body.kind() == "if_statement" {
                    let parts = named(body);
                    let keep = eval(ctx, fi, parts[0], &local)?;
                    if keep.as_bool() == Some(true) {
                        out.push(eval(ctx, fi, parts[1], &local)?);
                    }
                } else {
                    out.push(eval(ctx, fi, body, &local)?);
                }
            }
            Ok(Value::Array(out))
        }
        "call_expression" => {
            let fname = n
                .child_by_field_name("function")
                .map(|x| text(f, x))
                .unwrap_or("");
            let args: Vec<Node> = n
                .child_by_field_name("arguments")
                .map(named)
                .unwrap_or_default();
            call(ctx, fi, fname, &args, env)
        }
        other => Err(format!("{other} at {}", pos(n))),
    }
}

fn call(ctx: &Ctx, fi: usize, fname: &str, args: &[Node], env: &Env) -> Result<Value, String> {
    let f = ctx.files[fi];
    let ev = |i: usize| -> Result<Value, String> {
        eval(
            ctx,
            fi,
            *args
                .get(i)
                .ok_or(format!("{fname}: argument {i} missing"))?,
            env,
        )
    };
    let lambda = |i: usize, x: Value| -> Result<Value, String> {
        let l = *args.get(i).ok_or("lambda missing")?;
        if l.kind() != "lambda_expression" {
            return Err("lambda expected".into());
        }
        let parts = named(l);
        let mut local = env.clone();
        local.insert(
            text(f, parts[0])
                .trim_matches(|c| c == '(' || c == ')')
                .to_string(),
            x,
        );
        eval(ctx, fi, parts[1], &local)
    };
    match fname {
        "loadJsonContent" => {
            let rel = ev(0)?;
            let path = resolve(&f.path, rel.as_str().ok_or("path")?);
            let text = ctx
                .sources
                .files
                .get(&path)
                .ok_or(format!("loadJsonContent: {path} does not exist"))?;
            serde_json::from_str(text).map_err(|e| format!("{path}: {e}"))
        }
        "filter" | "map" => {
            let Value::Array(items) = ev(0)? else {
                return Err(format!("{fname} over non-array"));
            };
            let mut out = Vec::new();
            for x in items {
                let r = lambda(1, x.clone())?;
                if fname == "map" {
                    out.push(r);
                } else if r.as_bool() == Some(true) {
                    out.push(x);
                }
            }
            Ok(Value::Array(out))
        }
        "length" => Ok(Value::from(match ev(0)? {
            Value::String(s) => s.chars().count(),
            Value::Array(a) => a.len(),
            Value::Object(o) => o.len(),
            _ => return Err("length".into()),
        })),
        "empty" => Ok(Value::Bool(match ev(0)? {
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            Value::Null => true,
            _ => false,
        })),
        "toLower" => Ok(json!(ev(0)?.as_str().ok_or("toLower")?.to_lowercase())),
        "subscriptionResourceId" => {
            let parts = (0..args.len())
                .map(|i| ev(i).map(|v| v.as_str().unwrap_or_default().to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            let (ty, names) = parts.split_first().ok_or("subscriptionResourceId")?;
            Ok(json!(format!(
                "/subscriptions/00000000-0000-0000-0000-000000000000/providers/{ty}/{}",
                names.join("/")
            )))
        }
        other => Err(format!("function {other} is not evaluated offline")),
    }
}

/// Value of a default-less parameter: what the module call in another file passes for it.
fn param_from_caller(ctx: &Ctx, fi: usize, name: &str) -> Result<Value, String> {
    let me = &ctx.files[fi].path;
    for (ci, decls) in ctx.decls.iter().enumerate() {
        for d in decls.values() {
            if d.kind != "module" || resolve(&ctx.files[ci].path, &d.target) != *me {
                continue;
            }
            let body = d.value.and_then(body_object).ok_or("module body")?;
            let arg = path_prop(ctx.files[ci], body, &["params", name])
                .ok_or(format!("module call does not pass {name}"))?;
            return eval(ctx, ci, arg, &HashMap::new());
        }
    }
    Err(format!("parameter {name} has no default and no caller"))
}
