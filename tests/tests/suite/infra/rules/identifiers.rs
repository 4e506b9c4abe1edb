//! Every identifier is declared and every function is known (Bicep would refuse the template).

use std::collections::HashSet;

use tree_sitter::Node;

use crate::infra::catalog::{DECORATORS, FUNCTIONS, NAMESPACES};
use crate::infra::tree::{body_object, collect_idents, named, pos, text, Ctx, File};

// ------------------------------------------------------------------ identifiers

pub(crate) fn identifiers(ctx: &Ctx, fi: usize, problems: &mut Vec<String>) {
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

pub(crate) fn declared(scopes: &[HashSet<String>], name: &str) -> bool {
    scopes.iter().any(|s| s.contains(name))
}

pub(crate) fn ident_walk(
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
