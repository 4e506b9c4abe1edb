//! The parser walk: parsed files, declarations, and the node helpers every rule uses (property
//! lookup, literal strings, all nodes of a kind), plus the syntax rule that runs first.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use tree_sitter::{Node, Tree};

use super::sources::Sources;

// ------------------------------------------------------------------ parsed files

pub(crate) struct File {
    pub(crate) path: String,
    pub(crate) text: String,
    pub(crate) tree: Tree,
}

#[derive(Clone)]
pub(crate) struct Decl<'t> {
    pub(crate) kind: &'static str,
    /// Default (param), value (var), body (resource/module).
    pub(crate) value: Option<Node<'t>>,
    /// `type@version` of a resource, path of a module.
    pub(crate) target: String,
}

#[derive(Clone)]
pub(crate) struct Ctx<'a> {
    pub(crate) files: Vec<&'a File>,
    pub(crate) decls: Vec<HashMap<String, Decl<'a>>>,
    pub(crate) sources: &'a Sources,
    /// Parameter values that replace defaults and callers' values: `(file, param) → value`.
    /// Rules use them to evaluate the deployment as an operator would configure it (the legacy
    /// sink, a Basic table, another name prefix, an existing table's schema).
    pub(crate) overrides: HashMap<(String, String), Value>,
}

impl<'a> Ctx<'a> {
    /// A copy of the context with `param` of `file` set to `value`.
    pub(crate) fn with(&self, file: &str, param: &str, value: Value) -> Ctx<'a> {
        let mut c = self.clone();
        c.overrides
            .insert((file.to_string(), param.to_string()), value);
        c
    }

    /// Index of the parsed file at `path`.
    pub(crate) fn file(&self, path: &str) -> Option<usize> {
        self.files.iter().position(|f| f.path == path)
    }
}

pub(crate) fn text<'a>(file: &'a File, n: Node) -> &'a str {
    n.utf8_text(file.text.as_bytes()).unwrap_or("")
}

pub(crate) fn named(n: Node) -> Vec<Node> {
    (0..n.named_child_count())
        .filter_map(|i| n.named_child(i))
        .collect()
}

pub(crate) fn pos(n: Node) -> String {
    let p = n.start_position();
    format!("{}:{}", p.row + 1, p.column + 1)
}

/// The literal text of a string node without interpolations; `None` if it interpolates.
pub(crate) fn literal(file: &File, n: Node) -> Option<String> {
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

pub(crate) fn unescape(s: &str) -> String {
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
pub(crate) fn body_object(n: Node) -> Option<Node> {
    match n.kind() {
        "object" => Some(n),
        "if_statement" => named(n).into_iter().find(|c| c.kind() == "object"),
        "for_statement" => n.child_by_field_name("body").and_then(body_object),
        _ => None,
    }
}

/// Value node of property `key` in an object node.
pub(crate) fn prop<'t>(file: &File, obj: Node<'t>, key: &str) -> Option<Node<'t>> {
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

pub(crate) fn path_prop<'t>(file: &File, obj: Node<'t>, keys: &[&str]) -> Option<Node<'t>> {
    let mut cur = obj;
    for k in keys {
        cur = prop(file, cur, k)?;
    }
    Some(cur)
}

pub(crate) fn declarations<'t>(file: &'t File) -> HashMap<String, Decl<'t>> {
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
        // Outputs live in their own namespace: `output x` may share its name with `var x`.
        let key = if kind == "output" {
            format!("output:{}", text(file, *name))
        } else {
            text(file, *name).into()
        };
        out.insert(
            key,
            Decl {
                kind,
                value,
                target,
            },
        );
    }
    out
}

pub(crate) fn all_nodes<'t>(n: Node<'t>, kind: &str, out: &mut Vec<Node<'t>>) {
    if n.kind() == kind {
        out.push(n);
    }
    for c in named(n) {
        all_nodes(c, kind, out);
    }
}

pub(crate) fn collect_idents(f: &File, n: Node, out: &mut HashSet<String>) {
    if n.kind() == "identifier" {
        out.insert(text(f, n).to_string());
    }
    for c in named(n) {
        if c.kind() != "property_identifier" {
            collect_idents(f, c, out);
        }
    }
}

pub(crate) fn syntax(f: &File, problems: &mut Vec<String>) {
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
