//! Turns the events of one Okta response into the bytes the collector stores.
//!
//! Each kept event is copied byte for byte from the response (never parsed into a value tree
//! and re-serialised: that is slower, and would reorder keys or change number formatting), with
//! `"domain":"{host}"` spliced in before its closing brace so that every row says which org it
//! came from (`domain_s`, docs/okta-cl-columns.md). Events whose `uuid` was seen recently are dropped
//! (docs/design.md §2 step 5).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::dedupe::RecentUuids;
use crate::okta::error::OktaError;
use crate::okta::events::Event;

/// What gets stored for one page; the uuids are borrowed from the events where they need no
/// unescaping.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedPage<'a> {
    /// A JSON array of the kept events, each with `"domain"` added.
    pub json: Vec<u8>,
    /// Number of kept events (`0` when every event was a repeat: store nothing then).
    pub count: usize,
    /// Events dropped because their `uuid` was seen recently.
    pub dropped_duplicates: usize,
    /// The newest `published` among the kept events (for lag metrics).
    pub newest_published: Option<DateTime<Utc>>,
    /// The uuids of the kept events, in order. They are already recorded in the
    /// [`RecentUuids`] window; if the page cannot be stored, hand them to
    /// [`RecentUuids::forget`], or the re-fetched page would be dropped as repeats.
    pub kept_uuids: Vec<Cow<'a, str>>,
}

impl PreparedPage<'_> {
    /// The same page, holding its own copy of the uuids (to keep it past its response).
    pub fn into_owned(self) -> PreparedPage<'static> {
        PreparedPage {
            json: self.json,
            count: self.count,
            dropped_duplicates: self.dropped_duplicates,
            newest_published: self.newest_published,
            kept_uuids: self
                .kept_uuids
                .into_iter()
                .map(|u| Cow::Owned(u.into_owned()))
                .collect(),
        }
    }
}

/// The few fields the collector reads from an event; everything else stays raw.
#[derive(Deserialize)]
struct EventHead<'a> {
    #[serde(borrow)]
    uuid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    published: Option<Cow<'a, str>>,
    /// Whether the event has a top-level `domain` at all (even `null`, which `Option` would
    /// read as absent and so produce a second `domain` key).
    #[serde(default, deserialize_with = "present")]
    domain: bool,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// Prepares the events of one page for storage.
///
/// The whole page is validated before any uuid is recorded, so a malformed page (retried by
/// the caller, never skipped) leaves the window untouched.
pub fn prepare_page<'a>(
    events: impl IntoIterator<Item = Event<'a>>,
    domain: &str,
    dedupe: &mut RecentUuids,
) -> Result<PreparedPage<'a>, OktaError> {
    let events = events.into_iter();
    let mut heads = Vec::with_capacity(events.size_hint().0);
    for (i, event) in events.enumerate() {
        let text = event.text;
        if !text.trim_start().starts_with('{') {
            return Err(OktaError::Malformed(format!(
                "event {i} of the page is not a JSON object"
            )));
        }
        let head: EventHead<'_> = match event.head {
            Some(h) => EventHead {
                uuid: h.uuid.map(Cow::Borrowed),
                published: h.published.map(Cow::Borrowed),
                domain: h.domain,
            },
            // Not the plain case (an escape, a key twice, a wrong type): serde_json reads it.
            None => serde_json::from_str(text).map_err(|e| {
                OktaError::Malformed(format!("event {i} of the page cannot be read: {e}"))
            })?,
        };
        let uuid = match head.uuid {
            Some(u) if !u.trim().is_empty() => u,
            _ => {
                return Err(OktaError::Malformed(format!(
                    "event {i} of the page has no uuid"
                )))
            }
        };
        heads.push((text, uuid, head.published, head.domain));
    }

    // A host name needs no escaping, but the value comes from configuration: quote it properly.
    let domain_json = serde_json::to_string(domain)
        .map_err(|e| OktaError::Malformed(format!("domain cannot be encoded: {e}")))?;
    let extra = domain_json.len() + 12;
    let capacity = heads.iter().map(|h| h.0.len() + extra).sum::<usize>() + 2;
    let mut json = Vec::with_capacity(capacity);
    json.push(b'[');
    let mut page = PreparedPage {
        json: Vec::new(),
        count: 0,
        dropped_duplicates: 0,
        newest_published: None,
        kept_uuids: Vec::with_capacity(heads.len()),
    };
    for (text, uuid, published, has_domain) in heads {
        if !dedupe.insert_if_new(&uuid) {
            page.dropped_duplicates += 1;
            continue;
        }
        if page.count > 0 {
            json.push(b',');
        }
        append_with_domain(&mut json, text, &domain_json, has_domain);
        page.count += 1;
        page.kept_uuids.push(uuid);
        if let Some(p) = published.as_deref().and_then(parse_published) {
            page.newest_published = Some(page.newest_published.map_or(p, |n| n.max(p)));
        }
    }
    json.push(b']');
    page.json = json;
    Ok(page)
}

/// Appends one event object with `"domain":…` before its closing brace. An event that already
/// has a top-level `domain` is copied unchanged: a second key of the same name would make the
/// JSON ambiguous.
fn append_with_domain(out: &mut Vec<u8>, event: &str, domain_json: &str, has_domain: bool) {
    let trimmed = event.trim_end();
    let body = match trimmed.strip_suffix('}') {
        Some(body) if !has_domain => body,
        // Validated as an object (starts with '{' and parsed), so it ends with '}'; copy as is
        // if that invariant were ever broken rather than emit broken JSON.
        _ => {
            out.extend_from_slice(trimmed.as_bytes());
            return;
        }
    };
    out.extend_from_slice(body.as_bytes());
    // `{}` has no member yet and needs no comma; every event has a uuid, so this is defensive.
    if !body.trim_end().ends_with('{') {
        out.push(b',');
    }
    out.extend_from_slice(b"\"domain\":");
    out.extend_from_slice(domain_json.as_bytes());
    out.push(b'}');
}

fn parse_published(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use reqwest::header::HeaderMap;

    use super::*;
    use crate::okta::head::quick_head;
    use crate::okta::response::parse_events;

    /// Splits `json` as the client does and prepares it.
    fn prepare(
        json: &str,
        domain: &str,
        d: &mut RecentUuids,
    ) -> Result<PreparedPage<'static>, OktaError> {
        let events = parse_events(&HeaderMap::new(), json.as_bytes().to_vec())?;
        prepare_page(events.iter(), domain, d).map(PreparedPage::into_owned)
    }

    #[test]
    fn adds_domain_and_keeps_bytes() {
        let mut d = RecentUuids::new(10);
        let p = prepare(
            r#"[{"uuid":"a","published":"2024-08-13T15:58:20.353Z","n":1.50,"z":"null"} ,
                {"published":"2024-08-13T15:58:21.000Z", "uuid":"b" ,"x":{"k":[1,2]}}]"#,
            "acme.okta.com",
            &mut d,
        )
        .unwrap();
        let text = String::from_utf8(p.json.clone()).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"[{"uuid":"a","published":"2024-08-13T15:58:20.353Z","n":1.50,"z":"null","domain":"acme.okta.com"},"#,
                r#"{"published":"2024-08-13T15:58:21.000Z", "uuid":"b" ,"x":{"k":[1,2]},"domain":"acme.okta.com"}]"#
            )
        );
        let v: serde_json::Value = serde_json::from_slice(&p.json).unwrap();
        assert_eq!(v[1]["domain"], "acme.okta.com");
        assert_eq!(p.count, 2);
        assert_eq!(p.dropped_duplicates, 0);
        assert_eq!(p.kept_uuids, vec!["a", "b"]);
        assert_eq!(
            p.newest_published.map(|t| t.to_rfc3339()),
            Some("2024-08-13T15:58:21+00:00".to_string())
        );
    }

    #[test]
    fn drops_repeats_across_and_within_pages() {
        let mut d = RecentUuids::new(10);
        let first = prepare(r#"[{"uuid":"a"},{"uuid":"b"}]"#, "o", &mut d).unwrap();
        assert_eq!(first.count, 2);
        let second = prepare(r#"[{"uuid":"b"},{"uuid":"c"},{"uuid":"c"}]"#, "o", &mut d).unwrap();
        assert_eq!(second.count, 1);
        assert_eq!(second.dropped_duplicates, 2);
        assert_eq!(second.json, br#"[{"uuid":"c","domain":"o"}]"#.to_vec());
        let all_repeats = prepare(r#"[{"uuid":"a"}]"#, "o", &mut d).unwrap();
        assert_eq!(
            (all_repeats.count, all_repeats.json.as_slice()),
            (0, &b"[]"[..])
        );
    }

    #[test]
    fn malformed_events_leave_the_window_untouched() {
        let mut d = RecentUuids::new(10);
        for bad in [
            r#"[{"uuid":"a"}, 5]"#,
            r#"[{"uuid":"a"}, "x"]"#,
            r#"[{"uuid":"a"}, {"published":"2024-01-01T00:00:00Z"}]"#,
            r#"[{"uuid":"a"}, {"uuid":null}]"#,
            r#"[{"uuid":"a"}, {"uuid":""}]"#,
            r#"[{"uuid":"a"}, {"uuid":7}]"#,
        ] {
            let r = prepare(bad, "o", &mut d);
            assert!(matches!(r, Err(OktaError::Malformed(_))), "{bad}: {r:?}");
            assert!(d.is_empty(), "{bad}");
        }
    }

    #[test]
    fn escaped_uuid_and_existing_domain() {
        let mut d = RecentUuids::new(10);
        let p = prepare(r#"[{"uuid":"a\u0062","domain":"keep"}]"#, "o", &mut d).unwrap();
        assert_eq!(p.json, br#"[{"uuid":"a\u0062","domain":"keep"}]"#.to_vec());
        assert!(d.contains("ab"));
    }

    #[test]
    fn forgetting_lets_a_refetched_page_through() {
        let mut d = RecentUuids::new(10);
        let page = r#"[{"uuid":"a"},{"uuid":"b"}]"#;
        let p = prepare(page, "o", &mut d).unwrap();
        d.forget(p.kept_uuids.iter().map(|u| &**u));
        let again = prepare(page, "o", &mut d).unwrap();
        assert_eq!(again.count, 2);
    }

    /// What serde_json reads as the head of `text`: the reference [`quick_head`] stands in for.
    fn serde_head(text: &str) -> Option<(Option<String>, Option<String>, bool)> {
        let h: EventHead<'_> = serde_json::from_str(text).ok()?;
        Some((
            h.uuid.map(Cow::into_owned),
            h.published.map(Cow::into_owned),
            h.domain,
        ))
    }

    const KEYS: &[&str] = &[
        "uuid",
        "published",
        "domain",
        r"uu\u0069d",
        r"dom\u0061in",
        "x",
        "actor",
        "",
    ];
    const VALUES: &[&str] = &[
        "null",
        r#""u-1""#,
        r#""a\u0062""#,
        r#""2024-08-13T15:58:20.353Z""#,
        r#""""#,
        r#"" ""#,
        "7",
        "-1.5e3",
        "1e999",
        "true",
        "{}",
        "[]",
        r#"{"uuid":"n","s":"}\"{[","t":[1,{"a":["]"]}]}"#,
        r#"[1,{"a":["]\\"]},null]"#,
    ];
    const SPACE: &[&str] = &["", " ", "\n\t "];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        /// Whenever the quick reading answers, serde_json reads the same head.
        #[test]
        fn quick_head_agrees_with_serde(
            members in prop::collection::vec((0..KEYS.len(), 0..VALUES.len(), 0..SPACE.len()), 0..7),
        ) {
            let mut text = String::from("{");
            for (n, (k, v, w)) in members.iter().enumerate() {
                if n > 0 {
                    text.push(',');
                }
                let w = SPACE[*w];
                text.push_str(&format!(r#"{w}"{}"{w}:{w}{}{w}"#, KEYS[*k], VALUES[*v]));
            }
            text.push('}');
            if let Some(h) = quick_head(&text) {
                let quick = (
                    h.uuid.map(str::to_string),
                    h.published.map(str::to_string),
                    h.domain,
                );
                prop_assert_eq!(Some(quick), serde_head(&text), "{}", text);
            }
        }
    }

    #[test]
    fn realistic_events_take_the_quick_reading() {
        let t0 = DateTime::parse_from_rfc3339("2024-08-13T15:58:20.353Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap();
        let events = world::fakes::okta_events::generate(7, 300, t0, chrono::Duration::seconds(1));
        for e in events {
            let text = serde_json::to_string(&e).unwrap();
            let h = quick_head(&text).expect("plain event");
            let quick = (
                h.uuid.map(str::to_string),
                h.published.map(str::to_string),
                h.domain,
            );
            assert_eq!(Some(quick), serde_head(&text));
        }
    }
}
