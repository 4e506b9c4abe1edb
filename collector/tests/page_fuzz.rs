//! Property tests of `prepare_page`, the one place where the collector rewrites bytes Okta
//! sent: arbitrary events never panic; the result is an error, or a valid JSON array in which
//! every kept event is the original, byte for byte, with `"domain"` added (and no duplicate
//! keys, which Log Analytics would read ambiguously). Pages go through the client's own split
//! (`parse_events`), whose one-pass scanner is held to serde_json: it accepts and cuts exactly
//! the bodies serde_json does, and the heads it reads on the way are the ones serde_json reads.
//!
//! `PROPTEST_CASES=N` raises the case count (see FUZZING.md); failure persistence is off.
// Test code: helpers outside `#[test]` functions may unwrap too (the lint is for product code).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use collector::dedupe::RecentUuids;
use collector::okta::response::parse_events;
use collector::okta::{prepare_page, Event, OktaError, PreparedPage};
use proptest::prelude::*;
use proptest::test_runner::Config;
use reqwest::header::HeaderMap;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use world::strict_json::Strict;

fn cases(default: u32) -> Config {
    let mut c = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = default;
    }
    c.failure_persistence = None;
    c
}

/// JSON equality with floats compared to 1e-12 relative (serde_json's default float parser may
/// differ in the last digit; that is not `prepare_page`'s doing).
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

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec(any::<char>(), 0..16).prop_map(String::from_iter),
        1 => prop::sample::select(vec!["", " ", "2024-08-13T15:58:20.353Z", "not a time", "}", "\"", "\\"])
            .prop_map(str::to_string),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter_map("finite", serde_json::Number::from_f64)
            .prop_map(Value::Number),
        arb_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("domain".to_string()),
                        Just("uuid".to_string()),
                        arb_string()
                    ],
                    inner
                ),
                0..5
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Mostly Okta-like objects (a uuid from a small pool so repeats happen, sometimes a
/// `published`, sometimes a `domain` already), sometimes anything at all.
fn arb_event() -> impl Strategy<Value = Value> {
    let uuid = prop_oneof![
        4 => (0u8..12).prop_map(|i| Value::String(format!("uuid-{i}"))),
        1 => arb_json(),
    ];
    let published = prop_oneof![
        Just(None),
        Just(Some(Value::String("2024-08-13T15:58:20.353Z".into()))),
        arb_json().prop_map(Some),
    ];
    let domain = prop_oneof![
        6 => Just(None),
        1 => Just(Some(Value::Null)),
        1 => arb_json().prop_map(Some),
    ];
    prop_oneof![
        8 => (uuid, published, domain, prop::collection::vec((arb_string(), arb_json()), 0..5)).prop_map(
            |(u, p, d, rest)| {
                let mut m: Map<String, Value> = rest.into_iter().collect();
                m.remove("domain"); // only the `domain` strategy decides it
                m.insert("uuid".into(), u);
                if let Some(p) = p {
                    m.insert("published".into(), p);
                }
                if let Some(d) = d {
                    m.insert("domain".into(), d);
                }
                Value::Object(m)
            }
        ),
        1 => arb_json(),
    ]
}

/// Serialises `v` compactly or pretty, with odd whitespace inside, as Okta might.
fn text_of(v: &Value, pretty: bool) -> String {
    if pretty {
        serde_json::to_string_pretty(v).unwrap_or_default()
    } else {
        serde_json::to_string(v).unwrap_or_default()
    }
}

/// The page Okta would send with these events.
fn body(texts: &[String]) -> String {
    format!("[{}]", texts.join(","))
}

/// Splits the page of `texts` as the client does and prepares it.
fn prepare(
    texts: &[String],
    domain: &str,
    dedupe: &mut RecentUuids,
) -> Result<PreparedPage<'static>, OktaError> {
    let events = parse_events(&HeaderMap::new(), body(texts).into_bytes())?;
    prepare_page(events.iter(), domain, dedupe).map(PreparedPage::into_owned)
}

/// serde_json's reading of a page body: each event's text, or `None` when the body is not a
/// JSON array of objects.
fn serde_split(text: &str) -> Option<Vec<String>> {
    let events: Vec<&RawValue> = serde_json::from_str(text).ok()?;
    events
        .iter()
        .map(|e| e.get().starts_with('{').then(|| e.get().to_string()))
        .collect()
}

/// Bytes that break JSON in interesting places (or, for whitespace, may not).
const DAMAGE: &[&str] = &[
    ",", "]", "}", "{", "[", "\"", "\\", " ", ":", "\u{1}", "\\u12", "-", "0", "e", "\n", "null",
    "\u{e9}", "\t", "\r", "\u{c}", "\u{a0}", "\u{feff}", "[[[[", "]]]]",
];

/// Event texts `Value` cannot produce: duplicate keys, wanted keys spelt with escapes, a lone
/// surrogate in a key or a value, odd whitespace, deep nesting.
fn arb_raw_event() -> impl Strategy<Value = String> {
    // The wanted keys most often; keys that make the split hand the whole page to serde_json
    // (a lone surrogate) and deep nesting now and then, or every head would be serde_json's.
    let key = prop_oneof![
        6 => prop::sample::select(vec!["uuid", "published", "domain"]),
        2 => prop::sample::select(vec![r"uu\u0069d", r"publi\u0073hed", r"\u0064omain", "actor", ""]),
        1 => prop::sample::select(vec![r"\ud800", r"x\udc00y"]),
    ];
    let value = prop_oneof![
        6 => prop::sample::select(vec!["null", r#""u-1""#, r#""u-2""#, r#""2024-08-13T15:58:20.353Z""#]),
        3 => prop::sample::select(vec![
            r#""a\u0062""#, r#""\ud800""#, r#""""#, "7", "-0", "1e999", "true", "{}", "[]",
            r#"{"uuid":"n","s":"}\"{["}"#,
        ]),
    ];
    let space = prop::sample::select(vec!["", " ", "\t", "\r\n", "\n\t "]);
    let shape = (
        prop::collection::vec((key, value, space), 0..6),
        prop_oneof![9 => Just(0usize), 1 => 100usize..140],
        any::<bool>(),
    );
    shape.prop_map(|(members, depth, with_uuid)| {
        let mut parts: Vec<String> = Vec::new();
        // Half of them start with a good uuid, so that what follows decides.
        if with_uuid {
            parts.push(r#""uuid":"r""#.to_string());
        }
        for (k, v, w) in members {
            parts.push(format!(r#"{w}"{k}"{w}:{w}{v}{w}"#));
        }
        // Now and then a member nested around the nesting limit.
        if depth > 0 {
            parts.push(format!(
                r#""deep":{}{}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            ));
        }
        format!("{{{}}}", parts.join(","))
    })
}

proptest! {
    #![proptest_config(cases(192))]

    /// Arbitrary events: an error, or exactly the kept events with `domain` added.
    #[test]
    fn prepared_pages_are_the_events_plus_domain(
        events in prop::collection::vec(arb_event(), 0..8),
        pretty in prop::collection::vec(any::<bool>(), 8),
        domain in prop_oneof![Just("acme.okta.com".to_string()), "[a-z0-9.\\-]{1,20}", arb_string()],
    ) {
        let texts: Vec<String> = events.iter().zip(&pretty).map(|(e, p)| text_of(e, *p)).collect();
        // A window larger than the page, so "seen before" is exactly "earlier in this page".
        let mut dedupe = RecentUuids::new(64);
        let before = dedupe.len();
        match prepare(&texts, &domain, &mut dedupe) {
            Err(OktaError::Malformed(reason)) => {
                prop_assert!(!reason.is_empty());
                prop_assert_eq!(dedupe.len(), before, "a refused page touched the uuid window");
                // Refused only for a reason the docs give: not an object, or no usable uuid.
                let bad = events.iter().any(|e| match e {
                    Value::Object(m) => !matches!(m.get("uuid"), Some(Value::String(s)) if !s.trim().is_empty())
                        || m.get("published").is_some_and(|p| !p.is_string() && !p.is_null()),
                    _ => true,
                });
                prop_assert!(bad, "refused a page of good events: {reason}");
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
            Ok(page) => {
                let out: Value = serde_json::from_slice::<Strict>(&page.json)
                    .map(|s| s.0)
                    .map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&page.json))))?;
                let out = out.as_array().cloned().unwrap_or_default();
                prop_assert_eq!(out.len(), page.count);
                prop_assert_eq!(page.count + page.dropped_duplicates, events.len());
                prop_assert_eq!(page.kept_uuids.len(), page.count);
                // Kept events in order, each the original plus domain (unless it had one).
                let mut seen = HashSet::new();
                let mut k = 0;
                for (ev, text) in events.iter().zip(&texts) {
                    let uuid = ev["uuid"].as_str().unwrap_or_default().to_string();
                    if !seen.insert(uuid.clone()) {
                        continue; // a repeat within the page (or window) is dropped
                    }
                    if k >= out.len() {
                        break;
                    }
                    let mut want = ev.clone();
                    if let Some(m) = want.as_object_mut() {
                        m.entry("domain").or_insert_with(|| Value::String(domain.clone()));
                    }
                    prop_assert!(same(&out[k], &want), "{} != {}", out[k], want);
                    prop_assert_eq!(&page.kept_uuids[k], &uuid);
                    // Byte for byte: the original text is a prefix of the stored event, up to its
                    // closing brace.
                    let page_text = String::from_utf8_lossy(&page.json);
                    let body = text.trim_end().strip_suffix('}').unwrap_or(text);
                    prop_assert!(page_text.contains(body), "event text not copied verbatim");
                    k += 1;
                }
                prop_assert_eq!(k, page.count);
            }
        }
    }

    /// Any JSON value at all as an event (numbers, arrays, strings, nested garbage): no panic.
    #[test]
    fn arbitrary_values_never_panic(events in prop::collection::vec(arb_json(), 0..6), domain in arb_string()) {
        let texts: Vec<String> = events.iter().map(|e| text_of(e, false)).collect();
        let mut dedupe = RecentUuids::new(8);
        if let Ok(page) = prepare(&texts, &domain, &mut dedupe) {
            serde_json::from_slice::<Strict>(&page.json).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
    }

    /// Raw event texts Value cannot produce: numbers out of f64 range, escapes, odd spacing.
    #[test]
    fn raw_event_texts_are_copied(
        lit in prop::sample::select(vec!["1e999", "-0", "1.50", "123456789012345678901234567890", "\"\\u0000\"", "\"\\ud83d\\ude00\"", "[ ]", "{ }"]),
        ws in "[ \t\r\n]{0,3}",
    ) {
        let text = format!("{{{ws}\"uuid\"{ws}:{ws}\"u\"{ws},\"x\":{ws}{lit}{ws}}}");
        let mut dedupe = RecentUuids::new(8);
        let page = prepare(std::slice::from_ref(&text), "o", &mut dedupe)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let body = text.trim_end().strip_suffix('}').unwrap_or(&text);
        let got = String::from_utf8_lossy(&page.json).into_owned();
        prop_assert!(got.starts_with(&format!("[{body}")), "{got}");
        prop_assert!(got.ends_with(",\"domain\":\"o\"}]"), "{got}");
    }
}

proptest! {
    #![proptest_config(cases(1024))]

    /// The client's split accepts exactly the bodies serde_json accepts as an array of objects,
    /// cuts them into the same event texts, and the heads it reads on the way prepare the same
    /// page as serde_json's reading of every event (same bytes, uuids and errors).
    #[test]
    fn the_split_and_its_heads_are_serde_jsons(
        events in prop::collection::vec(arb_event(), 0..6),
        pretty in prop::collection::vec(any::<bool>(), 6),
        raw in prop::collection::vec((arb_raw_event(), any::<prop::sample::Index>()), 0..3),
        damage in prop::option::weighted(0.3, (any::<prop::sample::Index>(), prop::sample::select(DAMAGE), any::<bool>())),
    ) {
        let mut texts: Vec<String> = events.iter().zip(&pretty).map(|(e, p)| text_of(e, *p)).collect();
        for (event, at) in raw {
            let i = at.index(texts.len() + 1);
            texts.insert(i, event);
        }
        let mut text = body(&texts);
        if let Some((at, bytes, cut)) = damage {
            // Somewhere on a character boundary: insert the bytes, or cut the body there.
            let mut i = at.index(text.len() + 1);
            while !text.is_char_boundary(i) {
                i -= 1;
            }
            if cut {
                text.truncate(i);
            } else {
                text.insert_str(i, bytes);
            }
        }
        let split = parse_events(&HeaderMap::new(), text.clone().into_bytes());
        let ours = split.as_ref().ok().map(|e| e.iter().map(|e| e.text().to_string()).collect::<Vec<_>>());
        prop_assert_eq!(&ours, &serde_split(&text), "{}", text);
        if let Ok(events) = split {
            let (mut a, mut b) = (RecentUuids::new(64), RecentUuids::new(64));
            let read = prepare_page(events.iter(), "o", &mut a);
            let unread = prepare_page(events.iter().map(|e| Event::unread(e.text())), "o", &mut b);
            prop_assert_eq!(format!("{read:?}"), format!("{unread:?}"), "{}", text);
        }
    }
}

/// An event whose `domain` is JSON `null` already *has* a top-level `domain` member; adding a
/// second one makes the event ambiguous JSON (duplicate key), which the code promises never to
/// emit ("a second key of the same name would make the JSON ambiguous").
///
/// Fuzzing found it (FUZZING.md, finding 3): `EventHead::domain` was `Option<&RawValue>`, and
/// serde maps `null` to `None`. Presence is recorded now, by serde_json's reading and by the
/// split's.
#[test]
fn a_null_domain_is_not_duplicated() {
    let texts = [r#"{"uuid":"a","domain":null}"#.to_string()];
    let mut dedupe = RecentUuids::new(8);
    let page = prepare(&texts, "acme.okta.com", &mut dedupe).unwrap();
    let parsed = serde_json::from_slice::<Strict>(&page.json);
    assert!(parsed.is_ok(), "{}", String::from_utf8_lossy(&page.json));
}
