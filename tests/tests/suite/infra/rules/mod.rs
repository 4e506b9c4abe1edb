//! The rules, one module per concern. Each takes the parsed context and pushes problems as
//! `path:line:col: message`.

pub(crate) mod allocations;
pub(crate) mod app_names;
pub(crate) mod columns;
pub(crate) mod deployment;
pub(crate) mod identifiers;
pub(crate) mod resources;
pub(crate) mod roles;

use tree_sitter::Node;

use crate::infra::tree::{body_object, Ctx};

/// A container app or job the templates deploy: file index, symbol, declared value (an object,
/// or a `for`/`if` around it) and its body object.
pub(crate) struct AppResource<'t> {
    pub(crate) fi: usize,
    pub(crate) sym: String,
    pub(crate) value: Node<'t>,
    pub(crate) body: Node<'t>,
}

/// Every `Microsoft.App/containerApps` and `Microsoft.App/jobs` resource declaration.
pub(crate) fn apps_and_jobs<'t>(ctx: &Ctx<'t>) -> Vec<AppResource<'t>> {
    let mut out = Vec::new();
    for (fi, decls) in ctx.decls.iter().enumerate() {
        for (sym, d) in decls {
            let is_app = d.target.starts_with("Microsoft.App/containerApps@")
                || d.target.starts_with("Microsoft.App/jobs@");
            let Some(value) = d.value.filter(|_| d.kind == "resource" && is_app) else {
                continue;
            };
            if let Some(body) = body_object(value) {
                out.push(AppResource {
                    fi,
                    sym: sym.clone(),
                    value,
                    body,
                });
            }
        }
    }
    out
}
