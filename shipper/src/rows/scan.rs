//! The row builder's fast path: one hand-written pass over a page's bytes that validates the
//! JSON and captures each event's manifest values as borrowed slices of the page.
//!
//! Why it exists rather than serde_json: reading the page through serde_json's streaming parser
//! and our visitors ([`super::stream`]) was ≈ 51 M of the row builder's ≈ 88 M instructions per
//! 1,000-event page (callgrind, BENCHMARKS.md, issue 14) — a visitor call per member, and every
//! unclaimed value walked token by token. Here a string is skipped with one search for its
//! closing quote or an escape (`common::json_scan::find`), an unclaimed value is skipped
//! without building anything, and nothing is decoded but the rare key with an escape. The
//! serde_json path stays the reference: this pass accepts a page only when it is sure
//! serde_json accepts it and captures exactly what [`super::stream`] captures (a property test
//! in this file holds the two together); anything it is not sure of — invalid grammar, an odd
//! escape, a control character, nesting past [`MAX_NESTING`], an event that is not an object,
//! trailing bytes — is [`Refused`], and the caller reads the page the serde_json way, which
//! names its error exactly as before. The rare odd value where the manifest expects an object
//! (`"client": "x"`) is handed to serde_json on its own (its conversions are serde_json's).
//!
//! The pass itself (what it checks, and so what serde_json checks) is shared with the
//! collector: [`common::json_scan`].

use std::borrow::Cow;

use serde::de::DeserializeSeed;

use common::json_scan::{for_each_element, Refused, Scan, Scanner};

use super::flatten::{Captured, Extra, ObjectSeed, EVENT_LEVEL};
use super::manifest::{Child, Node};
use super::MAX_NESTING;

/// Walks the JSON array `page`, filling `cap` for each event `from_event..` along `tree` and
/// handing it to `on_event` with the event's index, like [`super::stream::for_each_event`]
/// does; [`Refused`] for every page that one refuses (and for some it accepts).
pub(crate) fn for_each_event<'de, F>(
    page: &'de str,
    tree: &Node,
    from_event: usize,
    cap: &mut Captured<'de>,
    mut on_event: F,
) -> Scan<()>
where
    F: FnMut(usize, &Captured<'de>),
{
    for_each_element(page, |s, index| {
        // Every event is an object; those already shipped are only validated.
        if s.peek() != Some(b'{') {
            return Err(Refused);
        }
        if index < from_event {
            s.skip_value(EVENT_LEVEL - 1)
        } else {
            cap.clear();
            s.bump();
            object(s, tree, EVENT_LEVEL, cap)?;
            on_event(index, cap);
            Ok(())
        }
    })
}

/// The members of the JSON object text `text` in document order: keys decoded, values as
/// their text. `None` when this pass cannot vouch for the text (the caller asks serde_json,
/// as for a page). The `additionalFields_s` writer splits objects this way for every event;
/// through serde_json's visitor it was ≈ 4 % of the row builder's instructions.
pub(crate) fn object_members(text: &str) -> Option<Vec<(Cow<'_, str>, &str)>> {
    common::json_scan::object_members(text, EVENT_LEVEL)
}

/// Captures the members of the object whose `{` was just read, at nesting `level`, along
/// `node` — what [`ObjectSeed`] does.
fn object<'de>(
    s: &mut Scanner<'de>,
    node: &Node,
    level: usize,
    cap: &mut Captured<'de>,
) -> Scan<()> {
    s.ws();
    if s.peek() == Some(b'}') {
        s.bump();
        return Ok(());
    }
    loop {
        let key = s.key()?;
        match node.child(&key) {
            Some(Child::Leaf(id)) => {
                let raw = s.value(level)?;
                *cap.leaves.get_mut(*id).ok_or(Refused)? = Some(raw);
            }
            Some(Child::Object(child)) => match s.peek() {
                Some(b'{') if level < MAX_NESTING => {
                    s.bump();
                    object(s, child, level + 1, cap)?;
                }
                Some(b'n') => s.literal(b"null")?,
                _ => {
                    // Not an object where one is expected: serde_json reads it, as the
                    // reference path does (its conversions of numbers and strings).
                    let raw = s.value(level)?;
                    let mut de = serde_json::Deserializer::from_str(raw);
                    ObjectSeed::at_level(child, cap, level + 1)
                        .deserialize(&mut de)
                        .and_then(|()| de.end())
                        .map_err(|_| Refused)?;
                }
            },
            None => {
                let raw = s.value(level)?;
                match node.rest {
                    Some(r) => cap.rests.get_mut(r).ok_or(Refused)?.push((key, raw)),
                    None if raw != "null" => cap.extras.push(Extra {
                        node: node.id,
                        key: Some(key),
                        text: Cow::Borrowed(raw),
                    }),
                    None => {}
                }
            }
        }
        if !s.member_end()? {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::test_runner::Config;
    use serde_json::{Map, Value};

    use super::*;
    use crate::rows::manifest::manifest;
    use crate::rows::{build_rows_for, build_rows_streamed, stream, RowBatch, RowLimits};
    use crate::rows::{truncate, TableColumns, MAX_NESTING};

    /// What a pass captured, event by event, as text (a refused page is `None`).
    fn captures(page: &str, from: usize, fast: bool) -> Option<Vec<String>> {
        let m = manifest();
        let mut cap = Captured::new(m.leaf_count, m.rest_count);
        let mut seen = Vec::new();
        let on_event = |i: usize, c: &Captured<'_>| {
            let extras: Vec<_> = c
                .extras
                .iter()
                .map(|e| (e.node, e.key.as_deref(), e.text.as_ref()))
                .collect();
            seen.push(format!("{i} {:?} {:?} {extras:?}", c.leaves, c.rests));
        };
        let ok = if fast {
            for_each_event(page, &m.tree, from, &mut cap, on_event).is_ok()
        } else {
            stream::for_each_event(page, &m.tree, from, &mut cap, on_event).is_ok()
        };
        ok.then_some(seen)
    }

    /// The rows as text, `TimeGenerated` left out (an event without a valid `published` gets
    /// the time it is written, which differs between two runs).
    fn rows_text(batch: &RowBatch) -> Vec<String> {
        batch
            .rows
            .iter()
            .map(|r| {
                let s = String::from_utf8_lossy(&r.json).into_owned();
                let rest = s
                    .strip_prefix("{\"TimeGenerated\":\"")
                    .and_then(|t| t.split_once('"'))
                    .map(|(_, rest)| rest.to_string());
                format!("{} {:?} {}", r.event_index, r.published, rest.unwrap_or(s))
            })
            .collect()
    }

    /// The fast pass accepts exactly the pages the serde_json pass accepts, captures the same
    /// values, and `build_rows_for` gives the same rows or the same error as the serde_json
    /// path alone.
    fn agree(page: &str, from: usize) -> Result<(), TestCaseError> {
        let fast = captures(page, from, true);
        let reference = captures(page, from, false);
        prop_assert_eq!(&fast, &reference, "page {:?} from {}", page, from);
        for table in [TableColumns::All, TableColumns::WithoutOverlong] {
            let limits = RowLimits::default();
            let got = build_rows_for(page.as_bytes(), from, &limits, table);
            let want = build_rows_streamed(page, from, &limits, table);
            match (got, want) {
                (Ok(a), Ok(b)) => {
                    prop_assert_eq!(rows_text(&a), rows_text(&b));
                    prop_assert_eq!(
                        (a.truncations, a.unmapped_fields),
                        (b.truncations, b.unmapped_fields)
                    );
                }
                (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
                (a, b) => prop_assert!(false, "{:?} against {:?}", a, b),
            }
        }
        Ok(())
    }

    fn realistic(seed: u64, n: usize) -> Vec<Value> {
        let t0 = chrono::DateTime::parse_from_rfc3339("2024-08-13T15:58:20.353Z")
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_default();
        world::fakes::okta_events::generate(seed, n, t0, chrono::Duration::milliseconds(60))
    }

    /// Keys the manifest walks into or captures, and some it does not.
    const KEYS: &[&str] = &[
        "uuid",
        "published",
        "client",
        "geographicalContext",
        "geolocation",
        "lat",
        "city",
        "debugContext",
        "debugData",
        "requestUri",
        "target",
        "actor",
        "id",
        "securityContext",
        "asNumber",
        "isProxy",
        "authenticationContext",
        "transaction",
        "detail",
        "version",
        "x",
        "",
        "a\"b",
        "uu\u{1}id",
        "é",
    ];

    fn arb_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter_map("finite", serde_json::Number::from_f64)
                .prop_map(Value::Number),
            prop::collection::vec(any::<char>(), 0..12)
                .prop_map(|c| Value::String(c.into_iter().collect())),
            "[a-z\"\\\\é\u{1}\n\t/ -]{0,10}".prop_map(Value::String),
            prop::sample::select(vec![
                "2024-08-13T15:58:20.353Z",
                "3f2504e04f8911d39a0c0305e82c3301",
                "null",
                "",
                "\u{10348}",
            ])
            .prop_map(|s| Value::String(s.to_string())),
        ]
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        arb_leaf().prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(
                    |members| {
                        Value::Object(
                            members
                                .into_iter()
                                .map(|(k, v)| (k.to_string(), v))
                                .collect::<Map<_, _>>(),
                        )
                    }
                ),
            ]
        })
    }

    /// A page of events as serde_json writes it, compact or pretty (whitespace everywhere).
    fn page_text(events: &[Value], pretty: bool) -> String {
        let text = if pretty {
            serde_json::to_string_pretty(events)
        } else {
            serde_json::to_string(events)
        };
        text.unwrap_or_default()
    }

    /// Pieces a mutation puts into a page: JSON's own bytes, whitespace, control characters,
    /// broken escapes and numbers, literals cut short.
    const PIECES: &[&str] = &[
        "\"",
        "\\",
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "0",
        "1",
        "-",
        ".",
        "e",
        "E",
        "+",
        "t",
        "n",
        "u",
        " ",
        "\t",
        "\n",
        "\r",
        "\u{1}",
        "\u{1f}",
        "é",
        "x",
        "/",
        "1e999",
        "-1e999",
        "\\ud800",
        "\\udc00\\ud800",
        "\\u12",
        "\\uD834\\uDD1E",
        "\\x",
        "01",
        "-0",
        "1.",
        ".5",
        "1e",
        "tru",
        "nul",
        "fals",
        "null",
        ",]",
        ",}",
        "{}",
        "[]",
        "\"a\":",
        "\u{feff}",
    ];

    /// `page` with a few pieces inserted, bytes removed or replaced (at char boundaries).
    fn mutate(page: &str, edits: &[(usize, u8, usize)]) -> String {
        let mut chars: Vec<String> = page.chars().map(String::from).collect();
        for &(at, op, piece) in edits {
            let at = if chars.is_empty() {
                0
            } else {
                at % (chars.len() + 1)
            };
            let piece = PIECES[piece % PIECES.len()].to_string();
            match op % 3 {
                0 => chars.insert(at, piece),
                1 if at < chars.len() => {
                    chars.remove(at);
                }
                _ if at < chars.len() => chars[at] = piece,
                _ => chars.push(piece),
            }
        }
        chars.concat()
    }

    fn cases(n: u32) -> Config {
        Config {
            cases: n,
            failure_persistence: None,
            ..Config::default()
        }
    }

    proptest! {
        #![proptest_config(cases(96))]

        #[test]
        fn agrees_with_serde_on_realistic_pages(
            seed in any::<u64>(),
            n in 0usize..5,
            from in 0usize..6,
            pretty in any::<bool>(),
            edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<usize>()), 0..4),
        ) {
            let page = page_text(&realistic(seed, n), pretty);
            agree(&page, from)?;
            agree(&mutate(&page, &edits), from)?;
        }
    }

    proptest! {
        #![proptest_config(cases(512))]

        #[test]
        fn agrees_with_serde_on_generated_pages(
            events in prop::collection::vec(arb_value(), 0..4),
            from in 0usize..4,
            pretty in any::<bool>(),
            edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<usize>()), 0..3),
        ) {
            let page = page_text(&events, pretty);
            agree(&page, from)?;
            agree(&mutate(&page, &edits), from)?;
        }
    }

    type Members = Option<Vec<(String, String)>>;

    fn owned(m: Option<Vec<(Cow<'_, str>, &str)>>) -> Members {
        m.map(|m| {
            m.into_iter()
                .map(|(k, v)| (k.into_owned(), v.to_owned()))
                .collect()
        })
    }

    proptest! {
        #![proptest_config(cases(512))]

        /// The row builder's member split takes only objects serde_json takes, and gives the
        /// same keys (decoded) and value texts, in the same order.
        #[test]
        fn object_members_agree_with_serde(
            members in prop::collection::vec((prop::sample::select(KEYS), arb_value()), 0..6),
            pretty in any::<bool>(),
            edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<usize>()), 0..3),
        ) {
            let object = Value::Object(members.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
            let text = if pretty {
                serde_json::to_string_pretty(&object)
            } else {
                serde_json::to_string(&object)
            }
            .unwrap_or_default();
            for text in [text.clone(), mutate(&text, &edits)] {
                let fast = owned(object_members(&text));
                let reference = owned(truncate::serde_object_members(&text));
                if fast.is_some() {
                    prop_assert_eq!(&fast, &reference, "{}", text);
                }
                // What the pass refuses, serde_json still reads: the caller's answer is its.
                prop_assert_eq!(owned(truncate::object_members(&text)), reference, "{}", text);
            }
        }
    }

    #[test]
    fn agrees_with_serde_on_edge_cases() {
        let pages = [
            "[]",
            " [ ] ",
            "[{}]",
            r#"[{"uuid":"a"}, {"x":[1,{"uuid":"no"}]} ,{"uuid":"c","uuid":"d"} ]"#,
            r#"[{"client":"x","actor":7,"debugContext":{"debugData":null},"target":1e999}]"#,
            r#"[{"client":[1,{"a":2}],"securityContext":true,"transaction":-0}]"#,
            r#"[{"client":1.5e3,"actor":-12345678901234567890,"request":"\ud800"}]"#,
            r#"[{"client":1e999}]"#,
            r#"[{"client":"\ud800"}]"#,
            r#"[{"a\u0062":1,"uu\u0069d":"k","\ud800":2}]"#,
            r#"[{"x":"\ud800\u12"}]"#,
            r#"[{"x":"\ud800"}]"#,
            "[{\"x\":\"a\tb\"}]",
            "[{\"x\":\"a\u{1}b\"}]",
            "[\n{\"x\"\t:\r\"a\"}\n]",
            r#"[{"uuid":"a"}"#,
            r#"[{"uuid":"a"},]"#,
            r#"[{"uuid":"a",}]"#,
            r#"[{"uuid":"a"}] x"#,
            r#"[{"uuid":"a"}, 3]"#,
            r#"[3, {"uuid":"a"}]"#,
            r#"[{"uuid":01}]"#,
            r#"[{"uuid":1.}]"#,
            r#"[{"uuid":-}]"#,
            r#"[{"uuid":tru}]"#,
            r#"[{"uuid" "a"}]"#,
            r#"[{1:"a"}]"#,
            r#"{"uuid":"a"}"#,
            "\u{feff}[]",
            "",
        ];
        for page in pages {
            for from in 0..3 {
                agree(page, from).unwrap();
            }
        }
        // A string's end or escape at every offset around the register search's words.
        for n in 0..80 {
            let pad = "a".repeat(n);
            for tail in ["", "\\n", "\\u00e9", "\\q", "\t", "\\"] {
                let page =
                    format!(r#"[{{"uuid":"{pad}{tail}","{pad}{tail}":1,"x":["{pad}{tail}"]}}]"#);
                agree(&page, 0).unwrap();
            }
        }
    }

    /// Nesting at the limit is read, one deeper is refused, wherever the value is.
    #[test]
    fn agrees_with_serde_on_nesting_at_the_limit() {
        let cases: [(&str, usize); 6] = [
            (r#"[{"target":@}]"#, 3),
            (r#"[{"unknown":@}]"#, 3),
            (r#"[{"client":[@]}]"#, 4),
            (r#"[{"client":{"zz":@}}]"#, 4),
            (r#"[{"a":@},{"uuid":"b"}]"#, 3),
            (r#"[{"debugContext":{"debugData":{"new":@}}}]"#, 5),
        ];
        for (shape, level) in cases {
            for extra in [0, 1] {
                for open in ["[", "{\"k\":"] {
                    let depth = MAX_NESTING + 1 - level + extra;
                    let close = if open == "[" { "]" } else { "}" };
                    let value = format!("{}1{}", open.repeat(depth), close.repeat(depth));
                    let page = shape.replace('@', &value);
                    for from in 0..2 {
                        agree(&page, from).unwrap();
                        assert_eq!(captures(&page, from, true).is_some(), extra == 0, "{shape}");
                    }
                }
            }
        }
    }
}
