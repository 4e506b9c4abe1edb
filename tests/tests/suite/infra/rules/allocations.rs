//! Container sizes the consumption plan accepts. The containers of an app or job must add up to
//! one of its fixed vCPU/memory pairs (1 vCPU : 2 GiB, from 0.25 vCPU), and an app in a
//! Consumption-only environment (ours: the environment declares no workload profiles) gets at
//! most 2 vCPU / 4 GiB
//! (https://learn.microsoft.com/en-us/azure/container-apps/containers#allocations). A size
//! outside the table fails the deployment, so every app and job is evaluated under every value
//! the operator may give `shipperCpu`.

use serde_json::{json, Value};

use crate::infra::eval::eval;
use crate::infra::rules::{apps_and_jobs, AppResource};
use crate::infra::tree::{all_nodes, named, path_prop, text, Ctx};

/// The root template and its parameter setting the shipper's vCPU.
const MAIN: &str = "infra/main.bicep";
const SHIPPER_CPU: &str = "shipperCpu";

/// `(vCPU, memory)` pairs of the consumption plan in a Consumption-only environment.
const PAIRS: [(f64, &str); 8] = [
    (0.25, "0.5Gi"),
    (0.5, "1.0Gi"),
    (0.75, "1.5Gi"),
    (1.0, "2.0Gi"),
    (1.25, "2.5Gi"),
    (1.5, "3.0Gi"),
    (1.75, "3.5Gi"),
    (2.0, "4.0Gi"),
];

pub(crate) fn allocations(ctx: &Ctx, problems: &mut Vec<String>) {
    let Some(choices) = allowed_values(ctx, MAIN, SHIPPER_CPU) else {
        problems.push(format!(
            "{MAIN}: param {SHIPPER_CPU} must list its sizes with @allowed (the plan accepts fixed pairs only)"
        ));
        return;
    };
    for choice in choices {
        let c = ctx.with(MAIN, SHIPPER_CPU, choice.clone());
        for problem in sizes(&c) {
            let p = format!("with {SHIPPER_CPU}={choice}: {problem}");
            if !problems.contains(&p) {
                problems.push(p);
            }
        }
    }
}

/// The values of `param`'s `@allowed([...])` decorator in `path`.
fn allowed_values(ctx: &Ctx, path: &str, param: &str) -> Option<Vec<Value>> {
    let fi = ctx.file(path)?;
    let f = ctx.files[fi];
    let decl = named(f.tree.root_node()).into_iter().find(|st| {
        st.kind() == "parameter_declaration"
            && named(*st)
                .iter()
                .any(|c| c.kind() == "identifier" && text(f, *c) == param)
    })?;
    // The grammar puts decorators inside the declaration or just before it.
    let mut decorators = Vec::new();
    all_nodes(decl, "decorator", &mut decorators);
    let mut before = decl.prev_named_sibling();
    while let Some(d) = before.filter(|d| d.kind().starts_with("decorator")) {
        all_nodes(d, "decorator", &mut decorators);
        before = d.prev_named_sibling();
    }
    let allowed = decorators
        .into_iter()
        .find(|d| text(f, *d).trim_start_matches('@').starts_with("allowed"))?;
    let mut arrays = Vec::new();
    all_nodes(allowed, "array", &mut arrays);
    match eval(ctx, fi, *arrays.first()?, &Default::default()).ok()? {
        Value::Array(v) if !v.is_empty() => Some(v),
        _ => None,
    }
}

/// Problems with the summed container sizes of every app and job, as configured in `ctx`.
fn sizes(ctx: &Ctx) -> Vec<String> {
    let mut out = Vec::new();
    for AppResource { fi, sym, body, .. } in apps_and_jobs(ctx) {
        let f = ctx.files[fi];
        let Some(containers) = path_prop(f, body, &["properties", "template", "containers"]) else {
            continue;
        };
        let (mut cpu, mut gib) = (0.0, 0.0);
        for c in named(containers)
            .into_iter()
            .filter(|c| c.kind() == "object")
        {
            let value = |k: &str| {
                path_prop(f, c, &["resources", k]).map(|n| eval(ctx, fi, n, &Default::default()))
            };
            match (value("cpu"), value("memory")) {
                (Some(Ok(cv)), Some(Ok(mv))) => match (cv.as_f64(), gibibytes(&mv)) {
                    (Some(cv), Some(mv)) => {
                        cpu += cv;
                        gib += mv;
                    }
                    _ => out.push(format!(
                        "{}: {sym}: resources {cv} / {mv} are not a vCPU number and a memory in Gi",
                        f.path
                    )),
                },
                (None, _) | (_, None) => out.push(format!(
                    "{}: {sym}: a container without resources.cpu and resources.memory gets the default 0.5 vCPU / 1Gi, which the template should say",
                    f.path
                )),
                (Some(Err(e)), _) | (_, Some(Err(e))) => out.push(format!(
                    "{}: {sym}: cannot evaluate the container's resources: {e}",
                    f.path
                )),
            }
        }
        let pair = PAIRS.iter().find(|(c, _)| (c - cpu).abs() < 1e-9);
        match pair {
            Some((_, m)) if gibibytes(&json!(m)).is_some_and(|m| (m - gib).abs() < 1e-9) => {}
            _ => out.push(format!(
                "{}: {sym}: {cpu} vCPU / {gib} GiB is not a consumption-plan pair (0.25 vCPU / 0.5Gi … 2.0 vCPU / 4.0Gi, 1 vCPU : 2 GiB)",
                f.path
            )),
        }
    }
    out
}

/// `"1.5Gi"` → 1.5. The plan takes memory in Gi with at most two decimals.
fn gibibytes(v: &Value) -> Option<f64> {
    let s = v.as_str()?.strip_suffix("Gi")?;
    let decimals = s.split_once('.').map_or(0, |(_, d)| d.len());
    (decimals <= 2).then(|| s.parse().ok()).flatten()
}
