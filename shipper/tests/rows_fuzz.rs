//! Property tests (proptest, our fuzzer on stable — see FUZZING.md) of everything the shipper
//! does with bytes it did not write itself: row flattening, the Data Collector copy, chunking,
//! splitting, bounded gunzip and poison record ids.
//!
//! Default case counts keep the suite well under 20 s in debug; `PROPTEST_CASES=N` raises every
//! property to N cases for a longer run. Failure persistence is off (no regression files are
//! written into the source tree): a failure prints the minimal input, which belongs in a
//! regression test below.
// Test code: helpers outside `#[test]` functions may unwrap too (the lint is for product code).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Value};
use shipper::chunk::{self, chunks, split, Chunk, MAX_UNCOMPRESSED};
use shipper::page::gunzip_bounded;
use shipper::poison::blob_for_id;
use shipper::rows::{
    build_dc_events, build_rows, manifest, ColumnKind, ColumnType, PageError, Row, RowBatch,
    RowLimits, MAX_NESTING,
};
use world::strict_json::strict;

// ---------------------------------------------------------------------------------------------
// Configuration and helpers
// ---------------------------------------------------------------------------------------------

/// `default` cases unless `PROPTEST_CASES` is set (then that, for every property).
fn cases(default: u32) -> Config {
    let mut c = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = default;
    }
    c.failure_persistence = None;
    c
}

/// JSON equality with floats compared to 1e-12 relative: serde_json's default float parser is
/// not exactly round-trip (the last digit may differ), which is not the row builder's doing.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Walks a dotted manifest source path in an event.
fn at<'a>(event: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(event, |v, k| v.as_object()?.get(k))
}

/// The keys a manifest `rest` column does not claim and that carry something (`null` and `""`
/// members are not sent: a query reads them exactly as absent ones).
fn unclaimed(event: &Value, rest_source: &str) -> Vec<(String, Value)> {
    let m = manifest();
    let Some(obj) = at(event, rest_source).and_then(Value::as_object) else {
        return Vec::new();
    };
    let prefix = format!("{rest_source}.");
    obj.iter()
        .filter(|(k, _)| {
            !m.columns().iter().any(|c| {
                c.kind != ColumnKind::Rest
                    && c.source
                        .strip_prefix(&prefix)
                        .is_some_and(|tail| tail.split('.').next() == Some(k.as_str()))
            })
        })
        .filter(|(_, v)| !v.is_null() && v.as_str() != Some(""))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn page_of(events: &[Value]) -> Vec<u8> {
    serde_json::to_vec(events).expect("page")
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// Hostile strings: any char (controls, quotes, backslashes, astral), sometimes long, and the
/// shapes the row builder converts (numbers, booleans, times, GUIDs).
fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::collection::vec(any::<char>(), 0..24).prop_map(String::from_iter),
        2 => "[a-z\"\\\\é\u{1}\n ]{0,12}",
        1 => prop::sample::select(vec![
            "", "1e999", "-1e999", "NaN", "inf", " 12.5 ", "-0", "true", "FALSE", "null",
            "2024-08-13T15:58:20.353Z", "2024-13-45T99:99:99Z", "2024-08-13T15:58:20+14:00",
            "{3F2504E0-4F89-11D3-9A0C-0305E82C3301}", "3f2504e04f8911d39a0c0305e82c3301",
            "3f2504e0-4f89-11d3-9a0c-0305e82c330", "../../checkpoints", "\u{0}", "\\u0000",
        ])
        .prop_map(str::to_string),
        1 => (any::<char>(), 0usize..3000).prop_map(|(c, n)| std::iter::repeat_n(c, n).collect()),
    ]
}

fn arb_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter_map("finite", serde_json::Number::from_f64)
            .prop_map(Value::Number),
        prop::sample::select(vec![0.0f64, -0.0, 1e300, -1e-300, 9.0e15, 9.1e15, 0.5])
            .prop_filter_map("finite", serde_json::Number::from_f64)
            .prop_map(Value::Number),
    ]
}

/// Keys: the manifest's path segments (so columns are hit) and arbitrary unicode.
fn arb_key() -> impl Strategy<Value = String> {
    let mut segments: Vec<String> = manifest()
        .columns()
        .iter()
        .flat_map(|c| c.source.split('.').map(str::to_string).collect::<Vec<_>>())
        .collect();
    segments.sort();
    segments.dedup();
    prop_oneof![
        2 => prop::sample::select(segments),
        1 => prop::collection::vec(any::<char>(), 0..10).prop_map(String::from_iter),
    ]
}

/// Arbitrary JSON, nesting at most `depth` (≤ 6) containers.
fn arb_json(depth: u32) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        arb_number(),
        arb_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(depth, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((arb_key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Sets `value` at the dotted `path`, creating objects; leaves the event alone when an
/// intermediate value is not an object.
fn set_path(event: &mut Value, path: &str, value: Value) {
    let mut cur = event;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        let Some(obj) = cur.as_object_mut() else {
            return;
        };
        if i + 1 == parts.len() {
            obj.insert((*p).to_string(), value);
            return;
        }
        cur = obj
            .entry((*p).to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

/// An event object: arbitrary members, plus values at a random subset of manifest paths so
/// that every column and conversion is exercised.
fn arb_event() -> impl Strategy<Value = Value> {
    let paths: Vec<String> = manifest()
        .columns()
        .iter()
        .map(|c| c.source.clone())
        .collect();
    let n = paths.len();
    (
        prop::collection::vec((arb_key(), arb_json(5)), 0..6),
        prop::collection::vec((0..n, arb_json(3)), 0..12),
    )
        .prop_map(move |(members, at_paths)| {
            let mut ev = Value::Object(members.into_iter().collect());
            for (i, v) in at_paths {
                set_path(&mut ev, &paths[i], v);
            }
            ev
        })
}

// ---------------------------------------------------------------------------------------------
// The row invariants, checked against the input events
// ---------------------------------------------------------------------------------------------

/// Checks every invariant of `build_rows(page, from, limits)` against the events it came from.
fn check_rows(events: &[Value], from: usize, limits: &RowLimits) -> Result<(), TestCaseError> {
    let page = page_of(events);
    let batch = build_rows(&page, from, limits)
        .map_err(|e| TestCaseError::fail(format!("a page of objects was refused: {e}")))?;
    let m = manifest();
    prop_assert_eq!(
        batch.rows.len(),
        events.len().saturating_sub(from),
        "one row per event"
    );
    let mut observed_truncations = 0u64;
    let mut observed_unmapped = 0u64;
    for (k, row) in batch.rows.iter().enumerate() {
        prop_assert_eq!(row.event_index, from + k, "event_index contiguous");
        let ev = &events[row.event_index];
        let parsed = strict(&row.json).map_err(TestCaseError::fail)?;
        let obj = parsed
            .as_object()
            .ok_or_else(|| TestCaseError::fail("row is not an object"))?;
        // The smallest this row can get: every value capped at 0 bytes.
        let floor = build_rows(
            &page_of(std::slice::from_ref(ev)),
            0,
            &RowLimits {
                max_field_bytes: 0,
                max_row_bytes: usize::MAX,
                ..RowLimits::default()
            },
        )
        .map_err(|e| TestCaseError::fail(e.to_string()))?
        .rows[0]
            .json
            .len();
        prop_assert!(
            row.json.len() <= limits.max_row_bytes.max(floor),
            "row of {} bytes above the limit {} (floor {floor})",
            row.json.len(),
            limits.max_row_bytes
        );
        for (name, value) in obj {
            let col = m
                .columns()
                .iter()
                .find(|c| &c.name == name)
                .ok_or_else(|| TestCaseError::fail(format!("undeclared column {name}")))?;
            let source = at(ev, &col.source);
            match col.ty {
                ColumnType::String => {
                    let s = value
                        .as_str()
                        .ok_or_else(|| TestCaseError::fail(format!("{name} is not a string")))?;
                    match (col.kind, source) {
                        (ColumnKind::Additional, _) => {
                            let text = strict(s.as_bytes()).map_err(TestCaseError::fail)?;
                            let got = text.as_object().ok_or_else(|| {
                                TestCaseError::fail(format!("{name} is not an object text"))
                            })?;
                            prop_assert!(
                                !got.is_empty()
                                    || limits.max_field_bytes < 64 * 1024
                                    || limits.max_row_bytes < MAX_UNCOMPRESSED - 2,
                                "{} written empty",
                                name
                            );
                            observed_unmapped += got.len() as u64;
                            check_additional(ev, obj, got, limits)?;
                        }
                        (ColumnKind::Rest, _) => {
                            let text = strict(s.as_bytes()).map_err(TestCaseError::fail)?;
                            let got = text.as_object().ok_or_else(|| {
                                TestCaseError::fail(format!("{name} is not an object text"))
                            })?;
                            let want = unclaimed(ev, &col.source);
                            prop_assert!(got.len() <= want.len());
                            for ((gk, gv), (wk, wv)) in got.iter().zip(want.iter()) {
                                prop_assert_eq!(gk, wk, "{} keeps leading members", name);
                                prop_assert!(
                                    same(gv, wv),
                                    "{} member {}: {} vs {}",
                                    name,
                                    gk,
                                    gv,
                                    wv
                                );
                            }
                            if got.len() < want.len() {
                                observed_truncations += 1;
                            }
                        }
                        (_, Some(Value::String(orig))) => {
                            let is_guid_form = col.kind == ColumnKind::Guid
                                && s.len() == 36
                                && s.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit());
                            if !is_guid_form {
                                prop_assert!(
                                    orig.starts_with(s),
                                    "{} is not a prefix of the source value",
                                    name
                                );
                                prop_assert!(
                                    s.len() <= limits.max_field_bytes,
                                    "{name} over the field cap"
                                );
                                if s.len() < orig.len() {
                                    observed_truncations += 1;
                                }
                            }
                        }
                        (ColumnKind::Json, Some(orig @ (Value::Array(_) | Value::Object(_)))) => {
                            let text = strict(s.as_bytes()).map_err(TestCaseError::fail)?;
                            match (orig, &text) {
                                (Value::Array(o), Value::Array(g)) => {
                                    prop_assert!(g.len() <= o.len());
                                    prop_assert!(
                                        o.iter().zip(g).all(|(a, b)| same(a, b)),
                                        "{} element-wise prefix",
                                        name
                                    );
                                    if g.len() < o.len() {
                                        observed_truncations += 1;
                                    }
                                }
                                (Value::Object(o), Value::Object(g)) => {
                                    for (gk, gv) in g {
                                        prop_assert!(o.get(gk).is_some_and(|w| same(gv, w)));
                                    }
                                    if g.len() < o.len() {
                                        observed_truncations += 1;
                                    }
                                }
                                _ => prop_assert!(false, "{} changed the kind of its value", name),
                            }
                        }
                        (_, Some(Value::Number(_) | Value::Bool(_))) => {
                            // The scalar's own JSON text.
                            let back = strict(s.as_bytes()).map_err(TestCaseError::fail)?;
                            prop_assert!(
                                source.is_some_and(|v| same(v, &back)),
                                "{} = {}",
                                name,
                                back
                            );
                        }
                        (_, Some(Value::Array(_) | Value::Object(_))) => {
                            strict(s.as_bytes()).map_err(TestCaseError::fail)?;
                        }
                        (_, other) => prop_assert!(false, "{} from {:?}", name, other),
                    }
                }
                ColumnType::Real => prop_assert!(value.is_number(), "{name} not a number"),
                ColumnType::Int | ColumnType::Long => {
                    prop_assert!(value.is_i64() || value.is_u64(), "{name} not an integer");
                }
                ColumnType::Boolean => prop_assert!(value.is_boolean(), "{name} not a bool"),
                ColumnType::Datetime => {
                    let s = value.as_str().unwrap_or_default();
                    prop_assert!(
                        chrono::DateTime::parse_from_rfc3339(s).is_ok(),
                        "{name} = {value} is not a time"
                    );
                    // TimeGenerated is never absent: without a usable `published` (then
                    // `published_t` is absent too) it is the shipping time.
                    if name != "TimeGenerated" || obj.contains_key("published_t") {
                        prop_assert_eq!(Some(value), source);
                    }
                }
                ColumnType::Dynamic => {}
            }
        }
        let published = at(ev, "published")
            .and_then(Value::as_str)
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&chrono::Utc));
        prop_assert_eq!(row.published, published);
    }
    prop_assert_eq!(
        batch.unmapped_fields,
        observed_unmapped,
        "unmapped fields counted"
    );
    prop_assert!(
        batch.truncations >= observed_truncations,
        "{} truncations counted, {} seen",
        batch.truncations,
        observed_truncations
    );
    Ok(())
}

/// The `additional` column `got` of `row` against what the Data Collector API would have made
/// of `ev` (the fake's flattening): each member is such a column, with its value, and — unless
/// members were cut for the field cap — every such column that no declared column of the row
/// holds is there. `debugData` keys (their own catch-all) are left out of the comparison.
fn check_additional(
    ev: &Value,
    row: &Map<String, Value>,
    got: &Map<String, Value>,
    limits: &RowLimits,
) -> Result<(), TestCaseError> {
    let m = manifest();
    let dc = world::fakes::log_analytics::flatten::DcTable::default()
        .ingest(ev.as_object().unwrap_or(&Map::new()))
        .row;
    // Legacy paths (no suffix) whose value a declared column of the row holds (TimeGenerated
    // may hold the shipping time instead; published_t holds `published` when it is valid).
    let held: Vec<String> = m
        .columns()
        .iter()
        .filter(|c| {
            row.contains_key(&c.name)
                && c.name != "TimeGenerated"
                && !matches!(c.kind, ColumnKind::Rest | ColumnKind::Additional)
        })
        .map(|c| c.source.replace('.', "_"))
        .collect();
    let ignored = |n: &str| n.starts_with("debugContext_debugData_");
    let mut want = Map::new();
    for (name, value) in dc {
        let path = &name[..name.len() - 2];
        let held_by_row = held.iter().any(|h| {
            path == h
                || path
                    .strip_prefix(h.as_str())
                    .is_some_and(|t| t.starts_with('_'))
        });
        // An empty string makes a column a query reads as absent: not sent.
        if !held_by_row && !ignored(&name) && value != "" {
            want.insert(name, value);
        }
    }
    let suffixed = |n: &str| {
        ["_s", "_d", "_b", "_t", "_g"]
            .iter()
            .any(|x| n.ends_with(x))
    };
    // A name met twice in one event gets `#2`, `#3`… on the later ones.
    let base_of = |n: &str| -> String {
        match n.rsplit_once('#') {
            Some((b, k))
                if !suffixed(n) && !k.is_empty() && k.bytes().all(|c| c.is_ascii_digit()) =>
            {
                b.to_string()
            }
            _ => n.to_string(),
        }
    };
    let renamed = got.keys().any(|k| base_of(k) != *k);
    for (name, value) in got {
        let base = base_of(name);
        let base = base.as_str();
        prop_assert!(suffixed(base), "member {} has no type suffix", name);
        match &base[base.len() - 2..] {
            "_d" => prop_assert!(value.is_number(), "{} = {}", name, value),
            "_b" => prop_assert!(value.is_boolean(), "{} = {}", name, value),
            _ => prop_assert!(value.is_string(), "{} = {}", name, value),
        }
        if ignored(base) || renamed {
            continue;
        }
        let w = want.get(base).ok_or_else(|| {
            TestCaseError::fail(format!(
                "member {name} = {value}: the legacy API makes no such column"
            ))
        })?;
        let long = w.as_str().is_some_and(|t| t.len() >= 32_000);
        prop_assert!(
            long || same(value, w),
            "member {}: {} vs the legacy API's {}",
            name,
            value,
            w
        );
    }
    let cut = limits.max_field_bytes < 64 * 1024 || limits.max_row_bytes < MAX_UNCOMPRESSED - 2;
    if !cut && !renamed {
        for name in want.keys() {
            prop_assert!(
                got.contains_key(name),
                "{} missing from additionalFields_s",
                name
            );
        }
    }
    Ok(())
}

/// Chunking invariants for `rows` packed at `max`.
fn check_chunks(rows: &[Row], max: usize) -> Result<(), TestCaseError> {
    check_packed(rows, &chunks(rows, max), max)
}

/// Chunking invariants for a built batch packed at `max` without copying its rows: the same
/// bodies as packing copies of them.
fn check_batch_chunks(batch: &RowBatch, max: usize) -> Result<(), TestCaseError> {
    let shared = batch.chunks(max);
    prop_assert_eq!(
        &shared,
        &chunks(&batch.rows, max),
        "shared bodies = copied bodies"
    );
    check_packed(&batch.rows, &shared, max)
}

/// Invariants of `cs`, the packing of `rows` at `max`.
fn check_packed(rows: &[Row], cs: &[Chunk], max: usize) -> Result<(), TestCaseError> {
    let Some(first) = rows.first() else {
        prop_assert!(cs.is_empty());
        return Ok(());
    };
    let mut next = first.event_index;
    let mut k = 0;
    for c in cs {
        prop_assert!(!c.is_empty());
        prop_assert_eq!(c.first_event, next, "end_event continuous");
        let body = c.body();
        prop_assert_eq!(body.len(), c.body_len());
        prop_assert!(
            body.len() <= max || c.len() == 1,
            "chunk of {} > {max}",
            body.len()
        );
        let items: Vec<&serde_json::value::RawValue> = serde_json::from_slice(body)
            .map_err(|e| TestCaseError::fail(format!("chunk body: {e}")))?;
        prop_assert_eq!(items.len(), c.len());
        for item in items {
            prop_assert_eq!(
                item.get().as_bytes(),
                &rows[k].json[..],
                "rows copied in order"
            );
            k += 1;
        }
        if let Some((a, b)) = split(c) {
            prop_assert_eq!(a.first_event, c.first_event);
            prop_assert_eq!(a.end_event, b.first_event);
            prop_assert_eq!(b.end_event, c.end_event);
            let mut joined = a.body().to_vec();
            joined.pop();
            joined.push(b',');
            joined.extend_from_slice(&b.body()[1..]);
            prop_assert_eq!(&joined, &body, "split keeps every byte");
        } else {
            prop_assert_eq!(c.len(), 1, "only single rows cannot be split");
        }
        next = c.end_event;
    }
    prop_assert_eq!(k, rows.len());
    prop_assert_eq!(next, rows.last().map_or(0, |r| r.event_index + 1));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(96))]

    /// Arbitrary events with the production limits: one valid row per event, values copied or
    /// truncated at a char boundary / element boundary, never changed.
    #[test]
    fn rows_from_arbitrary_events(events in prop::collection::vec(arb_event(), 0..8), from in 0usize..10) {
        check_rows(&events, from, &RowLimits::default())?;
    }

    /// The same with tiny limits, so that truncation and row shrinking run on every case.
    #[test]
    fn rows_under_tiny_limits(
        events in prop::collection::vec(arb_event(), 1..5),
        field in 0usize..200,
        row in 0usize..4000,
    ) {
        check_rows(&events, 0, &RowLimits { max_field_bytes: field, max_row_bytes: row, ..RowLimits::default() })?;
    }

    /// Data Collector sink: each event is copied byte for byte, whatever its layout.
    #[test]
    fn dc_events_are_copied_byte_for_byte(
        events in prop::collection::vec(arb_event(), 0..8),
        pretty in prop::collection::vec(any::<bool>(), 8),
        ws in prop::collection::vec("[ \t\r\n]{0,3}", 18),
        from in 0usize..10,
    ) {
        let texts: Vec<String> = events
            .iter()
            .zip(&pretty)
            .map(|(e, p)| if *p { serde_json::to_string_pretty(e) } else { serde_json::to_string(e) })
            .collect::<Result<_, _>>()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut page = format!("{}[", ws[16]);
        for (i, t) in texts.iter().enumerate() {
            if i > 0 {
                page.push(',');
            }
            page.push_str(&ws[i]);
            page.push_str(t);
            page.push_str(&ws[i + 8]);
        }
        page.push(']');
        page.push_str(&ws[17]);
        let rows = build_dc_events(page.as_bytes(), from).map_err(|e| TestCaseError::fail(e.to_string()))?.rows;
        prop_assert_eq!(rows.len(), texts.len().saturating_sub(from));
        for (k, r) in rows.iter().enumerate() {
            prop_assert_eq!(r.event_index, from + k);
            prop_assert_eq!(&r.json[..], texts[from + k].as_bytes());
        }
        check_chunks(&rows, chunk::DATA_COLLECTOR_MAX)?;
    }

    /// Rows of any size packed at any limit: bodies under the limit (a lone oversize row aside),
    /// every row once, in order, event ranges continuous; splitting keeps every byte.
    #[test]
    fn chunks_respect_the_limit_and_continuity(
        sizes in prop::collection::vec(0usize..3000, 0..60),
        first in 0usize..1_000_000,
        max in 2usize..6000,
    ) {
        let rows: Vec<Row> = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| Row {
                event_index: first + i,
                json: format!(r#"{{"a":"{}"}}"#, "x".repeat(*n)).into(),
                published: None,
            })
            .collect();
        check_chunks(&rows, max)?;
    }

    /// Rows built from arbitrary events, packed at the real limit.
    #[test]
    fn built_rows_pack_under_one_megabyte(events in prop::collection::vec(arb_event(), 0..20)) {
        let batch = build_rows(&page_of(&events), 0, &RowLimits::default())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        for c in batch.chunks(MAX_UNCOMPRESSED) {
            prop_assert!(c.body_len() <= MAX_UNCOMPRESSED);
        }
        check_batch_chunks(&batch, MAX_UNCOMPRESSED)?;
        // Packed tighter than built for (bodies joined from copies); built for that tighter
        // limit (bodies laid out as written), also from an event on (a redelivery resuming at
        // `posted_upto`).
        check_batch_chunks(&batch, 4000)?;
        let tight = RowLimits { max_body_bytes: 4000, ..RowLimits::default() };
        let from = events.len() / 2;
        for from in [0, from] {
            let rest = build_rows(&page_of(&events), from, &tight)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            check_batch_chunks(&rest, 4000)?;
            for c in rest.chunks(4000) {
                let first = rest.rows.iter().find(|r| r.event_index == c.first_event);
                prop_assert_eq!(
                    first.map(|r| r.json.as_ptr()),
                    Some(c.body()[1..].as_ptr()),
                    "laid out, not copied"
                );
            }
        }
    }

    /// Arbitrary bytes as a page: an error or rows, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = build_rows(&bytes, 0, &RowLimits::default());
        let _ = build_dc_events(&bytes, 0);
        let _ = build_rows(&bytes, 0, &RowLimits { max_field_bytes: 3, max_row_bytes: 10, ..RowLimits::default() });
    }

    /// A valid page damaged at random (bytes flipped, inserted, cut): an error, or rows that
    /// still satisfy every invariant.
    #[test]
    fn damaged_pages_error_or_stay_valid(
        events in prop::collection::vec(arb_event(), 1..4),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let mut page = page_of(&events);
        for (at, byte, op) in edits {
            let i = at.index(page.len());
            match op {
                0 => page[i] = byte,
                1 => page.insert(i, byte),
                _ => { page.remove(i); }
            }
            if page.is_empty() { break; }
        }
        if let Some(c) = cut {
            let n = c.index(page.len() + 1);
            page.truncate(n);
        }
        let built = std::panic::catch_unwind(|| {
            (build_dc_events(&page, 0), build_rows(&page, 0, &RowLimits::default()))
        });
        let Ok((dc, rows)) = built else {
            prop_assert!(false, "panic on {:?}", String::from_utf8_lossy(&page));
            return Ok(());
        };
        if let Ok(batch) = rows {
            let parsed: Vec<&serde_json::value::RawValue> = serde_json::from_slice(&page)
                .map_err(|e| TestCaseError::fail(format!("accepted a page serde_json refuses: {e}")))?;
            prop_assert_eq!(batch.rows.len(), parsed.len());
            for r in &batch.rows {
                strict(&r.json).map_err(TestCaseError::fail)?;
            }
            let dc = dc.map_err(|e| TestCaseError::fail(format!("rows but no dc events: {e}")))?;
            prop_assert_eq!(dc.rows.len(), parsed.len());
        }
    }

    /// Nesting of any depth inside an event: refused cleanly above the limit (no stack
    /// overflow, no parser error from deep inside), rows below it.
    #[test]
    fn deep_nesting_is_refused_cleanly(depth in 1usize..2_000, object in any::<bool>()) {
        let (open, close) = if object { (r#"{"a":"#, "}") } else { ("[", "]") };
        let page = format!(
            r#"[{{"uuid":"u","debugContext":{{"debugData":{{"x":{}1{}}}}}}}]"#,
            open.repeat(depth),
            close.repeat(depth)
        );
        // page array + event + debugContext + debugData + `depth` levels.
        let total = depth + 4;
        match build_rows(page.as_bytes(), 0, &RowLimits::default()) {
            Err(PageError::TooDeep { limit }) => prop_assert!(total > limit),
            Ok(batch) => {
                prop_assert!(total <= MAX_NESTING);
                prop_assert_eq!(batch.rows.len(), 1);
                strict(&batch.rows[0].json).map_err(TestCaseError::fail)?;
            }
            Err(e) => prop_assert!(false, "depth {total}: {e}"),
        }
        match build_dc_events(page.as_bytes(), 0) {
            Err(PageError::TooDeep { .. }) => prop_assert!(total > MAX_NESTING),
            Ok(batch) => prop_assert_eq!(&batch.rows[0].json[..], &page.as_bytes()[1..page.len() - 1]),
            Err(e) => prop_assert!(false, "depth {total}: {e}"),
        }
    }

    /// Bounded gunzip: arbitrary bytes never panic; a real gzip round-trips up to the limit and
    /// is refused above it; a truncated one is refused.
    #[test]
    fn gunzip_is_bounded(
        junk in prop::collection::vec(any::<u8>(), 0..300),
        data in prop::collection::vec(any::<u8>(), 0..5000),
        limit in 0u64..6000,
        cut in any::<prop::sample::Index>(),
    ) {
        let _ = gunzip_bounded(&junk, limit);
        let mut gz_junk = vec![0x1f, 0x8b, 8, 0];
        gz_junk.extend_from_slice(&junk);
        let _ = gunzip_bounded(&gz_junk, limit);
        let gz = common::gzip::gzip(&data, common::gzip::Level::Fast).unwrap_or_default();
        match gunzip_bounded(&gz, limit) {
            Ok(back) => {
                prop_assert!(data.len() as u64 <= limit);
                prop_assert_eq!(back, data.clone());
            }
            Err(e) => {
                prop_assert!(data.len() as u64 > limit, "{e}");
                prop_assert!(e.contains("inflates beyond"), "{e}");
            }
        }
        let n = cut.index(gz.len());
        prop_assert!(gunzip_bounded(&gz[..n], u64::MAX / 2).is_err(), "truncated gzip accepted");
    }

    /// Poison record ids typed by an operator never name a blob outside `poison/`.
    #[test]
    fn poison_ids_stay_in_their_prefix(
        parts in prop::collection::vec(
            prop_oneof![
                Just("..".to_string()), Just(".".to_string()), Just("".to_string()),
                Just("_undecodable".to_string()), Just("poison".to_string()),
                Just("checkpoints".to_string()), Just("acme.okta.com".to_string()),
                "[0-9]{1,3}", "[a-z0-9.\\-/\\\\%_ ]{0,8}",
                prop::collection::vec(any::<char>(), 0..6).prop_map(String::from_iter),
            ],
            0..6,
        ),
        seps in prop::collection::vec(prop::sample::select(vec!["/", "\\", "//", "/./", ".json"]), 6),
    ) {
        let mut id = String::new();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                id.push_str(seps[i]);
            }
            id.push_str(p);
        }
        if let Ok(name) = blob_for_id(&id) {
            prop_assert!(name.starts_with("poison/"), "{id:?} -> {name}");
            prop_assert!(name.ends_with(".json"), "{id:?} -> {name}");
            prop_assert!(!name.contains(".."), "{id:?} -> {name}");
            prop_assert!(!name.contains("//") && !name.contains('\\'), "{id:?} -> {name}");
            let segs: Vec<&str> = name.trim_end_matches(".json").split('/').collect();
            prop_assert!(segs.iter().all(|s| !s.is_empty() && *s != "."), "{id:?} -> {name}");
            prop_assert!(segs.len() == 3 && segs[1] == "_undecodable" || segs.len() == 4, "{id:?} -> {name}");
        }
    }
}

proptest! {
    #![proptest_config(cases(6))]

    /// Rows far above the request limit (many columns of 30–70 KB of hostile characters): shrunk
    /// under 1,000,000 bytes with their largest values cut, still valid, one per event.
    #[test]
    fn oversize_rows_are_shrunk_not_dropped(
        cols in prop::collection::vec(0usize..200, 14..40),
        len in 30_000usize..70_000,
        alphabet in prop::sample::select(vec!["x", "é", "\"", "\\", "\n", "\u{1}", "😀", "a\"é\\\u{7f}"]),
    ) {
        let strings: Vec<&str> = manifest()
            .columns()
            .iter()
            .filter(|c| c.ty == ColumnType::String && c.kind == ColumnKind::Value)
            .map(|c| c.source.as_str())
            .collect();
        let mut ev = serde_json::json!({"uuid": "3f2504e0-4f89-11d3-9a0c-0305e82c3301"});
        for c in &cols {
            let s: String = alphabet.repeat(len / alphabet.len().max(1));
            set_path(&mut ev, strings[c % strings.len()], Value::String(s));
        }
        let events = vec![ev.clone(), serde_json::json!({"uuid": "b"}), ev];
        check_rows(&events, 0, &RowLimits::default())?;
        let batch = build_rows(&page_of(&events), 0, &RowLimits::default())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        for r in &batch.rows {
            prop_assert!(r.json.len() <= MAX_UNCOMPRESSED - 2);
        }
        for c in batch.chunks(MAX_UNCOMPRESSED) {
            prop_assert!(c.body_len() <= MAX_UNCOMPRESSED);
        }
        check_batch_chunks(&batch, MAX_UNCOMPRESSED)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Regression and hand-picked hostile cases
// ---------------------------------------------------------------------------------------------

/// 10,000 targets: `target_s` keeps whole leading elements (valid JSON, ≤ 64 KiB), counted.
#[test]
fn ten_thousand_targets_are_shortened_element_wise() {
    let targets: Vec<Value> = (0..10_000)
        .map(|i| serde_json::json!({"id": format!("0oa{i:017}"), "type": "User", "alternateId": format!("user{i}@example.com"), "displayName": "Ü \"quoted\" \\ name"}))
        .collect();
    let ev = serde_json::json!({"uuid": "u1", "target": targets});
    let batch = build_rows(&page_of(&[ev]), 0, &RowLimits::default()).unwrap();
    let row = strict(&batch.rows[0].json).unwrap();
    let t = row["target_s"].as_str().unwrap();
    assert!(t.len() <= 64 * 1024, "{}", t.len());
    let kept: Vec<Value> = serde_json::from_str(t).unwrap();
    assert!(!kept.is_empty() && kept.len() < 10_000);
    assert_eq!(kept[..], targets[..kept.len()]);
    assert!(batch.truncations >= 1);
}

/// A 10 MB field is cut to the 64 KiB field limit at a char boundary, counted, row valid.
#[test]
fn ten_megabyte_field_is_truncated_and_counted() {
    let big = "é".repeat(5_000_000) + "x";
    let ev = serde_json::json!({"uuid": "u1", "displayMessage": big});
    let batch = build_rows(&page_of(&[ev]), 0, &RowLimits::default()).unwrap();
    let row = strict(&batch.rows[0].json).unwrap();
    let s = row["displayMessage_s"].as_str().unwrap();
    assert_eq!(s.len(), 64 * 1024);
    assert!(big.starts_with(s));
    assert_eq!(batch.truncations, 1);
}

/// Okta numbers out of f64 range in a `real` column (`_d`): JSON numbers like `1e999` are
/// valid JSON *syntax*, and the page parser accepts them as raw values, but no JSON reader can
/// hold them as a double. The row must omit the column (as it already does for the string
/// `"1e999"`), not copy the literal: a row Log Analytics cannot read fails the whole page (400
/// → poison) for one number.
///
/// FAILS today: `shipper/src/rows/encode.rs`, `write_value`, `ColumnType::Real` arm, the
/// `b'-' | b'0'..=b'9'` branch copies the literal without checking it is finite.
#[test]
fn out_of_range_numbers_do_not_reach_real_columns() {
    for lit in ["1e999", "-1e999", "1E400", "123456789e400"] {
        let page = format!(
            r#"[{{"uuid":"u","client":{{"geographicalContext":{{"geolocation":{{"lat":{lit},"lon":2.5}}}}}},"securityContext":{{"asNumber":{lit}}},"authenticationContext":{{"authenticationStep":{lit}}}}}]"#
        );
        let batch = build_rows(page.as_bytes(), 0, &RowLimits::default()).unwrap();
        let row = strict(&batch.rows[0].json).unwrap_or_else(|e| panic!("{lit}: {e}"));
        assert_eq!(row["client_geographicalContext_geolocation_lon_d"], 2.5);
        assert!(
            row.get("client_geographicalContext_geolocation_lat_d")
                .is_none(),
            "{lit}"
        );
        assert!(row.get("securityContext_asNumber_d").is_none(), "{lit}");
    }
}

/// In-range numeric literals of every shape still reach real columns unchanged.
#[test]
fn in_range_numbers_reach_real_columns() {
    for (lit, want) in [
        ("1e300", 1e300),
        ("-0", -0.0),
        ("12.5", 12.5),
        ("1E-5", 1e-5),
        ("123456789012345678901234567890", 1.2345678901234568e29),
    ] {
        let page = format!(r#"[{{"uuid":"u","securityContext":{{"asNumber":{lit}}}}}]"#);
        let batch = build_rows(page.as_bytes(), 0, &RowLimits::default()).unwrap();
        let row = strict(&batch.rows[0].json).unwrap();
        assert_eq!(
            row["securityContext_asNumber_d"].as_f64(),
            Some(want),
            "{lit}"
        );
    }
}

/// A page whose gzip stream is cut short is refused with a reason an operator understands.
#[test]
fn truncated_gzip_is_a_clear_error() {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&page_of(&[serde_json::json!({"uuid": "u"})]).repeat(100))
        .unwrap();
    let gz = enc.finish().unwrap();
    let e = gunzip_bounded(&gz[..gz.len() / 2], 1 << 20).unwrap_err();
    assert!(e.contains("not valid gzip"), "{e}");
}

/// Non-UTF-8 pages are refused with the offset of the first bad byte.
#[test]
fn non_utf8_page_is_a_clear_error() {
    let mut page = br#"[{"uuid":"u","displayMessage":"ab"#.to_vec();
    page.extend_from_slice(&[0xff, 0xfe]);
    page.extend_from_slice(br#""}]"#);
    match build_rows(&page, 0, &RowLimits::default()) {
        Err(e @ PageError::InvalidUtf8 { valid_up_to: 33 }) => {
            assert!(e.to_string().contains("UTF-8"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        build_dc_events(&page, 0),
        Err(PageError::InvalidUtf8 { .. })
    ));
}

/// A page that ends inside a string right after a backslash (a truncated or tampered blob)
/// must be a clean error. Found by `damaged_pages_error_or_stay_valid`.
///
/// FAILS today (panics: "range start index 4 out of range for slice of length 3"):
/// `shipper/src/rows/jsontext.rs`, `depth_exceeds`, the escape arm `i += off + 2` can step one
/// past the end, and the next `&json[i..]` panics. In the shipper the panic is caught by
/// `spawn_blocking` and becomes a page fault with the reason "building rows failed: task …
/// panicked", so the page is poisoned with a reason that hides the cause.
#[test]
fn trailing_backslash_in_a_string_is_an_error_not_a_panic() {
    for page in [&b"[\"\\"[..], b"\"\\", b"[{\"a\":\"x\\", b"[{\"a\\"] {
        let r = std::panic::catch_unwind(|| build_rows(page, 0, &RowLimits::default()).is_err());
        assert_eq!(r.ok(), Some(true), "{:?}", String::from_utf8_lossy(page));
        let r = std::panic::catch_unwind(|| build_dc_events(page, 0).is_err());
        assert_eq!(r.ok(), Some(true), "{:?}", String::from_utf8_lossy(page));
    }
}

/// Every depth around the limit, exactly: rows up to `MAX_NESTING`, `TooDeep` above it, and
/// never serde_json's own recursion error (the limit must sit inside serde_json's).
#[test]
fn nesting_at_the_limit_is_exact() {
    for total in MAX_NESTING - 4..=MAX_NESTING + 4 {
        let depth = total - 2; // page array + event object
        let page = format!(
            r#"[{{"target":{}1{}}}]"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        match build_rows(page.as_bytes(), 0, &RowLimits::default()) {
            Ok(b) => {
                assert!(total <= MAX_NESTING, "{total}");
                strict(&b.rows[0].json).unwrap();
            }
            Err(PageError::TooDeep { .. }) => assert!(total > MAX_NESTING, "{total}"),
            Err(e) => panic!("depth {total}: {e}"),
        }
    }
}
