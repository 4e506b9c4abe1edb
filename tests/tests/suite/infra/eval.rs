//! The expression evaluator: the compile-time subset of Bicep the column and role expressions use
//! (literals, variables, parameters with their default or the value a module call passes, member
//! and index access, operators, `for`, and the few functions listed in `call`).

use std::collections::HashMap;

use serde_json::{json, Map, Value};
use tree_sitter::Node;

use super::sources::resolve;
use super::tree::{body_object, named, path_prop, pos, text, unescape, Ctx};

// ------------------------------------------------------------------ mini evaluator

pub(crate) type Env = HashMap<String, Value>;

/// Evaluates the compile-time subset of Bicep the column and role expressions use. Parameters
/// take their default, or the value the parent file's module call passes.
pub(crate) fn eval(ctx: &Ctx, fi: usize, n: Node, env: &Env) -> Result<Value, String> {
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
            if d.kind == "param" {
                if let Some(v) = ctx.overrides.get(&(f.path.clone(), name.to_string())) {
                    return Ok(v.clone());
                }
            }
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

pub(crate) fn call(
    ctx: &Ctx,
    fi: usize,
    fname: &str,
    args: &[Node],
    env: &Env,
) -> Result<Value, String> {
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
        "json" => serde_json::from_str(ev(0)?.as_str().ok_or("json of a non-string")?)
            .map_err(|e| format!("json: {e}")),
        "toLower" => Ok(json!(ev(0)?.as_str().ok_or("toLower")?.to_lowercase())),
        "replace" => {
            let (s, from, to) = (ev(0)?, ev(1)?, ev(2)?);
            let (Some(s), Some(from), Some(to)) = (s.as_str(), from.as_str(), to.as_str()) else {
                return Err("replace over non-strings".into());
            };
            Ok(json!(s.replace(from, to)))
        }
        "take" => {
            let n = ev(1)?.as_u64().ok_or("take: count")? as usize;
            match ev(0)? {
                Value::String(s) => Ok(json!(s.chars().take(n).collect::<String>())),
                Value::Array(a) => Ok(Value::Array(a.into_iter().take(n).collect())),
                _ => Err("take over a non-string, non-array".into()),
            }
        }
        "concat" => {
            let parts = (0..args.len()).map(ev).collect::<Result<Vec<_>, _>>()?;
            if parts.iter().all(Value::is_array) {
                Ok(Value::Array(
                    parts
                        .into_iter()
                        .flat_map(|p| p.as_array().cloned().unwrap_or_default())
                        .collect(),
                ))
            } else {
                Ok(json!(parts
                    .iter()
                    .map(|p| p.as_str().map(str::to_string).unwrap_or(p.to_string()))
                    .collect::<String>()))
            }
        }
        "contains" => {
            let (c, x) = (ev(0)?, ev(1)?);
            Ok(Value::Bool(match (&c, &x) {
                (Value::Array(a), _) => a.contains(&x),
                (Value::String(s), Value::String(t)) => s.contains(t.as_str()),
                (Value::Object(o), Value::String(k)) => o.contains_key(k),
                _ => return Err("contains".into()),
            }))
        }
        // Deterministic stand-ins for deployment-time values: what matters offline is their
        // shape (uniqueString is 13 lower-case characters; the cloud is Azure public).
        "uniqueString" => {
            let seed = (0..args.len())
                .map(|i| ev(i).map(|v| v.to_string()))
                .collect::<Result<String, _>>()?;
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            let mut out = String::new();
            for b in seed.bytes().cycle().take(13.max(seed.len())) {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            for _ in 0..13 {
                h = h.wrapping_mul(0x0100_0000_01b3) ^ (h >> 29);
                out.push(char::from(b'a' + (h % 26) as u8));
            }
            Ok(json!(out))
        }
        "resourceGroup" => Ok(json!({
            "id": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-okta-sentinel",
            "name": "rg-okta-sentinel",
            "location": "westeurope",
        })),
        "environment" => Ok(json!({
            "name": "AzureCloud",
            "suffixes": {"acrLoginServer": ".azurecr.io", "storage": "core.windows.net"},
        })),
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
pub(crate) fn param_from_caller(ctx: &Ctx, fi: usize, name: &str) -> Result<Value, String> {
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
