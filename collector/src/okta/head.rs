//! Reading the few top-level members the collector needs from an event — `uuid`, `published`,
//! and whether it has a `domain` — without parsing the rest of it.
//!
//! Why by hand: [`super::page::prepare_page`] used to parse every event a second time with
//! serde_json for these three members (≈ 30 M of its ≈ 36.6 M instructions per 1,000-event
//! page, BENCHMARKS.md, issue 14), although the response parser has already validated every
//! event (a `RawValue` is valid JSON). This walk only steps over the event's other members: a
//! string by one `memchr2` for its end, a nested value by counting brackets outside its
//! strings. It answers the plain case only — no key with an escape, no wanted key twice,
//! `uuid` and `published` a string without escapes or `null` — and leaves everything else
//! (`None`) to serde_json, whose answers and error messages stay the reference.

use memchr::memchr2;

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

/// The head of the JSON object `event` (valid JSON), or `None` when serde_json must read it.
pub(crate) fn quick_head(event: &str) -> Option<Head<'_>> {
    let b = event.as_bytes();
    let mut head = Head {
        uuid: None,
        published: None,
        domain: false,
    };
    let (mut seen_uuid, mut seen_published) = (false, false);
    let mut i = ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return Some(head);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let (end, escaped) = string_end(b, i + 1)?;
        if escaped {
            return None;
        }
        let key = event.get(i + 1..end - 1)?;
        i = ws(b, end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let start = ws(b, i + 1);
        i = skip_value(b, start)?;
        let value = event.get(start..i)?;
        match key {
            // A wanted key twice is an error for serde_json: let it say so.
            "uuid" if seen_uuid => return None,
            "uuid" => {
                seen_uuid = true;
                head.uuid = plain_string(value)?;
            }
            "published" if seen_published => return None,
            "published" => {
                seen_published = true;
                head.published = plain_string(value)?;
            }
            "domain" if head.domain => return None,
            "domain" => head.domain = true,
            _ => {}
        }
        i = ws(b, i);
        match b.get(i) {
            Some(b',') => i = ws(b, i + 1),
            Some(b'}') => return Some(head),
            _ => return None,
        }
    }
}

/// `Some(None)` for `null`, `Some(Some(text))` for a string literal without escapes, `None`
/// for anything else.
fn plain_string(value: &str) -> Option<Option<&str>> {
    if value == "null" {
        return Some(None);
    }
    let inner = value.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('\\')).then_some(Some(inner))
}

/// The index of the first byte from `i` that is not JSON whitespace.
fn ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// The index after the closing quote of the string whose content starts at `i`, and whether
/// it holds an escape.
fn string_end(b: &[u8], mut i: usize) -> Option<(usize, bool)> {
    let mut escaped = false;
    loop {
        let j = i + memchr2(b'"', b'\\', b.get(i..)?)?;
        if b.get(j) == Some(&b'"') {
            return Some((j + 1, escaped));
        }
        escaped = true;
        i = j + 2;
    }
}

/// The index after the (valid) JSON value that starts at `i`.
fn skip_value(b: &[u8], mut i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => string_end(b, i + 1).map(|(end, _)| end),
        b'{' | b'[' => {
            let mut depth = 0usize;
            loop {
                match b.get(i)? {
                    b'"' => {
                        i = string_end(b, i + 1)?.0;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            // A number or a literal: up to the next delimiter.
            while let Some(c) = b.get(i) {
                if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                i += 1;
            }
            Some(i)
        }
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
    }

    #[test]
    fn leaves_what_is_not_plain_to_serde_json() {
        for event in [
            r#"{"uuid":"a","uuid":"b"}"#,
            r#"{"domain":1,"domain":2}"#,
            r#"{"published":"x","published":"y"}"#,
            r#"{"uuid":7}"#,
            r#"{"uuid":"a\u0062"}"#,
            r#"{"uu\u0069d":"a"}"#,
            r#"{"published":{}}"#,
            "[]",
            "5",
        ] {
            assert_eq!(quick_head(event), None, "{event}");
        }
    }
}
