//! Reading the few top-level members the collector needs from an event — `uuid`, `published`,
//! and whether it has a `domain` — while the page is split into its events
//! ([`super::events`]), in the same pass.
//!
//! Why not serde_json: [`super::page::prepare_page`] used to parse every event a second time
//! for these three members (≈ 30 M of its ≈ 36.6 M instructions per 1,000-event page,
//! BENCHMARKS.md, issue 14). This walk steps over the event's other members with the shared
//! validating scanner ([`common::json_scan`]) that splits the page anyway. It answers the plain
//! case only — no wanted key twice, `uuid` and `published` a string without escapes or `null` —
//! and leaves everything else (no head) to serde_json, whose answers and error messages stay
//! the reference.

use common::json_scan::{Scan, Scanner, EVENT_LEVEL};

/// The members [`super::page::prepare_page`] reads, borrowed from the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head<'a> {
    /// The text of `uuid`, if it is a string (`None` when absent or `null`).
    pub(crate) uuid: Option<&'a str>,
    /// The text of `published`, if it is a string (`None` when absent or `null`).
    pub(crate) published: Option<&'a str>,
    /// Whether the event has a top-level `domain` (whatever its value, `null` included).
    pub(crate) domain: bool,
}

/// A [`Head`] as byte ranges of the text the event was read from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct HeadAt {
    uuid: Option<(usize, usize)>,
    published: Option<(usize, usize)>,
    domain: bool,
}

impl HeadAt {
    /// The head in `text`, the text it was read from (`None` if it is not: serde_json reads
    /// the event then).
    pub(crate) fn read(self, text: &str) -> Option<Head<'_>> {
        let at = |r: Option<(usize, usize)>| match r {
            None => Some(None),
            Some((a, b)) => text.get(a..b).map(Some),
        };
        Some(Head {
            uuid: at(self.uuid)?,
            published: at(self.published)?,
            domain: self.domain,
        })
    }
}

/// Reads (validating) the event object that starts at `s`, a member of the page's array.
/// `Ok(None)` when the event is valid but not the plain case; [`common::json_scan::Refused`]
/// when the scanner cannot vouch for it.
pub(crate) fn read_event(s: &mut Scanner<'_>) -> Scan<Option<HeadAt>> {
    s.eat(b'{')?;
    s.ws();
    let mut head = HeadAt::default();
    if s.peek() == Some(b'}') {
        s.bump();
        return Ok(Some(head));
    }
    // A wanted key twice is an error for serde_json: let it say so.
    let (mut seen_uuid, mut seen_published, mut plain) = (false, false, true);
    loop {
        let key = s.key()?;
        let start = s.pos();
        s.skip_value(EVENT_LEVEL)?;
        match &*key {
            "uuid" => {
                plain &= !seen_uuid;
                seen_uuid = true;
                match plain_string(s, start) {
                    Some(r) => head.uuid = r,
                    None => plain = false,
                }
            }
            "published" => {
                plain &= !seen_published;
                seen_published = true;
                match plain_string(s, start) {
                    Some(r) => head.published = r,
                    None => plain = false,
                }
            }
            "domain" => {
                plain &= !head.domain;
                head.domain = true;
            }
            _ => {}
        }
        if !s.member_end()? {
            break;
        }
    }
    Ok(plain.then_some(head))
}

/// The value from `start` to where `s` stands: `Some(None)` for `null`, `Some(Some(range))`
/// of the content of a string literal without escapes, `None` for anything else.
fn plain_string(s: &Scanner<'_>, start: usize) -> Option<Option<(usize, usize)>> {
    let value = s.since(start).ok()?;
    if value == "null" {
        return Some(None);
    }
    let inner = value.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('\\')).then_some(Some((start + 1, s.pos() - 1)))
}

/// The head of the JSON object text `event`, or `None` when serde_json must read it.
#[cfg(test)]
pub(crate) fn quick_head(event: &str) -> Option<Head<'_>> {
    let mut s = Scanner::new(event);
    s.ws();
    let head = read_event(&mut s).ok()??;
    s.ws();
    if s.at_end() {
        head.read(event)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_head_of_plain_events() {
        let h = quick_head(
            r#" { "actor":{"id":"x","a":[1,{"uuid":"no"}],"s":"}\"{"}, "uuid" : "u1",
               "published":"2024-08-13T15:58:20.353Z","n":-1.5e3,"t":true,"domain":null } "#,
        );
        assert_eq!(
            h,
            Some(Head {
                uuid: Some("u1"),
                published: Some("2024-08-13T15:58:20.353Z"),
                domain: true,
            })
        );
        assert_eq!(
            quick_head(r#"{"uuid":null}"#),
            Some(Head {
                uuid: None,
                published: None,
                domain: false,
            })
        );
        assert_eq!(quick_head("{}").map(|h| h.domain), Some(false));
        // A key with an escape is decoded, as serde_json decodes it.
        assert_eq!(
            quick_head(r#"{"uu\u0069d":"a"}"#).map(|h| h.uuid),
            Some(Some("a"))
        );
    }

    #[test]
    fn leaves_what_is_not_plain_to_serde_json() {
        for event in [
            r#"{"uuid":"a","uuid":"b"}"#,
            r#"{"domain":1,"domain":2}"#,
            r#"{"published":"x","published":"y"}"#,
            r#"{"uuid":7}"#,
            r#"{"uuid":"a\u0062"}"#,
            r#"{"published":{}}"#,
            "[]",
            "5",
        ] {
            assert_eq!(quick_head(event), None, "{event}");
        }
    }
}
