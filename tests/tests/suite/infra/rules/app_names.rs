//! Container app and job names. Azure refuses a container app name that is not 2-32 lower-case
//! letters, digits and hyphens, starting with a letter and ending with a letter or digit
//! (https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/resource-name-rules,
//! Microsoft.App); the Azure CLI states the same rule, and no `--`, for jobs
//! (`az containerapp job create --name`: "must consist of lower case alphanumeric characters or
//! '-', start with a letter, end with an alphanumeric character, cannot have '--', and must be
//! less than 32 characters"). Every app and job name is evaluated as deployed: with the
//! deployment's suffix and, for the per-org resources, a long Okta domain.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::infra::eval::eval;
use crate::infra::rules::{apps_and_jobs, AppResource};
use crate::infra::tree::{named, prop, text, Ctx};

/// The longest name Container Apps accepts for an app or a job.
const MAX_NAME: usize = 32;

/// What a per-org resource's loop variable is bound to: an org with a long domain.
fn sample_org() -> Value {
    json!({ "domain": "a-rather-long-company-name-preview.oktapreview.com" })
}

pub(crate) fn app_names(ctx: &Ctx, problems: &mut Vec<String>) {
    let mut checked = 0;
    for AppResource {
        fi,
        sym,
        value,
        body,
    } in apps_and_jobs(ctx)
    {
        let f = ctx.files[fi];
        // `[for c in collectors: {...}]` or `[for (c, i) in ...]`: the item variable.
        let mut env = HashMap::new();
        let params = named(value)
            .into_iter()
            .find(|c| c.kind() == "for_loop_parameters")
            .and_then(|p| named(p).into_iter().next());
        if let Some(var) = value.child_by_field_name("initializer").or(params) {
            env.insert(text(f, var).to_string(), sample_org());
        }
        let Some(name) = prop(f, body, "name") else {
            continue;
        };
        checked += 1;
        match eval(ctx, fi, name, &env) {
            Ok(Value::String(n)) => {
                if let Some(why) = refused(&n) {
                    problems.push(format!(
                        "{}: {sym}: the name {n:?} is refused by Container Apps: {why}",
                        f.path
                    ));
                }
            }
            other => problems.push(format!(
                "{}: {sym}: cannot evaluate the name offline: {other:?}",
                f.path
            )),
        }
    }
    if checked == 0 {
        problems.push("no container app or job name was checked".into());
    }
}

/// Why Container Apps refuses `name`, if it does.
fn refused(name: &str) -> Option<String> {
    let b = name.as_bytes();
    if !(2..=MAX_NAME).contains(&b.len()) {
        return Some(format!("{} characters, not 2-{MAX_NAME}", b.len()));
    }
    if !b
        .iter()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
    {
        return Some("only lower-case letters, digits and hyphens are allowed".into());
    }
    if !b[0].is_ascii_lowercase() || b[b.len() - 1] == b'-' {
        return Some("it must start with a letter and end with a letter or digit".into());
    }
    name.contains("--")
        .then(|| "it must not contain '--'".to_string())
}
