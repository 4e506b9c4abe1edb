//! Offline validator for `infra/*.bicep` (no Bicep CLI can run here).
//!
//! It is a function over source text ([`Sources`] → list of problems) so the tests can run it on
//! the real files and on deliberately broken copies. It checks what a reviewer would otherwise
//! check by hand: syntax (tree-sitter-bicep), declared identifiers, resource type@apiVersion
//! allow-list, built-in role GUIDs, role assignment hygiene, storage and Key Vault hardening,
//! lifecycle prefixes, table / DCR columns equal to the shipper's column manifest (by evaluating
//! the Bicep expressions that build them), and that every data-plane operation each binary
//! performs is granted by the roles its identity receives, on the one resource it needs.
//!
//! Layout: `sources` (the files read), `catalog` (what is known about Azure, as data), `tree`
//! (the parser walk and node helpers), `eval` (the expression evaluator), `rules/` (one module
//! per concern).

pub(crate) mod catalog;
pub(crate) mod eval;
pub(crate) mod rules;
pub(crate) mod sources;
pub(crate) mod tree;

use tree_sitter::Parser;

pub(crate) use catalog::MANIFEST;
pub(crate) use sources::Sources;

use rules::{
    allocations::allocations,
    app_names::app_names,
    columns::columns,
    deployment::deployment,
    identifiers::identifiers,
    resources::{hardening, resources, role_guids},
    roles::{audit_reads_the_table_only, operations, role_assignments},
};
use tree::{declarations, syntax, Ctx, File};

// ------------------------------------------------------------------ entry point

/// Every problem found, as `path:line:col: message`; empty when the sources are valid.
pub(crate) fn validate(sources: &Sources) -> Vec<String> {
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
        overrides: Default::default(),
    };
    for (i, f) in files.iter().enumerate() {
        identifiers(&ctx, i, &mut problems);
        resources(&ctx, i, &mut problems);
        hardening(f, &mut problems);
    }
    role_guids(&files, &mut problems);
    let grants = role_assignments(&ctx, &mut problems);
    operations(sources, &grants, &mut problems);
    audit_reads_the_table_only(&grants, &mut problems);
    columns(&ctx, &mut problems);
    deployment(&ctx, &grants, &mut problems);
    allocations(&ctx, &mut problems);
    app_names(&ctx, &mut problems);
    problems
}
