//! Keeping values under Log Analytics' per-field limit without breaking them.
//!
//! The service truncates over-long values itself, silently; we truncate first so that it is
//! counted, and so that a JSON-text column (`target_s`, `request_ipChain_s`, the `debugData`
//! catch-all) loses whole trailing elements and stays parseable by `parse_json`/`todynamic`
//! instead of being cut in the middle of a value.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::jsontext::{escape_json_text, push_as_string, push_compact, push_str_literal};

/// The largest index `<= max` that is a char boundary of `s`.
pub(crate) fn floor_char_boundary(s: &str, max: usize) -> usize {
    if max >= s.len() {
        return s.len();
    }
    let mut i = max;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Appends the JSON string literal `raw` (as found in the event), truncating its *decoded*
/// value to at most `limit` bytes at a char boundary. Returns whether it truncated.
pub(crate) fn push_string_limited(raw: &str, limit: usize, out: &mut Vec<u8>) -> bool {
    // The decoded value is never longer than its literal minus the quotes, so a short literal
    // is copied as is: valid JSON already, no unescape/escape round trip.
    if raw.len().saturating_sub(2) <= limit {
        out.extend_from_slice(raw.as_bytes());
        return false;
    }
    let decoded: String = match serde_json::from_str(raw) {
        Ok(s) => s,
        Err(_) => {
            // Not a string literal: the caller only passes literals; keep the text as a value.
            push_as_string(raw, out);
            return false;
        }
    };
    if decoded.len() <= limit {
        out.extend_from_slice(raw.as_bytes());
        return false;
    }
    let cut = floor_char_boundary(&decoded, limit);
    push_str_literal(&decoded[..cut], out);
    true
}

/// Appends the JSON text `raw` (an array or object), compacted, as a string literal; when the
/// compact text exceeds `limit` bytes, trailing elements (or members) are dropped until it fits.
/// Returns whether it dropped anything.
pub(crate) fn push_json_text_limited(raw: &str, limit: usize, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    push_as_string(raw, out);
    // The escaped literal is at least as long as the compact text plus its two quotes.
    if out.len() - start - 2 <= limit {
        return false;
    }
    let mut compact = Vec::with_capacity(raw.len());
    push_compact(raw, &mut compact);
    if compact.len() <= limit {
        return false;
    }
    out.truncate(start);
    let trimmed = match raw.as_bytes().first() {
        Some(b'[') => match serde_json::from_str::<Vec<&RawValue>>(raw) {
            Ok(items) => trim_array(&items, limit),
            Err(_) => Vec::new(),
        },
        Some(b'{') => {
            let mut de = serde_json::Deserializer::from_str(raw);
            if let Ok(pairs) = PairsSeed.deserialize(&mut de) {
                let pairs = pairs.iter().map(|(k, v)| (k.as_ref(), v.get()));
                push_object_text_limited(pairs, limit, out, &mut Vec::new());
                return true;
            }
            Vec::new()
        }
        _ => Vec::new(),
    };
    push_text(&trimmed, out);
    true
}

/// Appends the compact JSON object made of `pairs` as a string literal, dropping trailing
/// members above `limit` bytes (of the compact text). Returns whether it dropped anything.
///
/// Each member is compacted into `member` (scratch, reused across rows) to learn its size, then
/// escaped straight into `out`: escaping members one by one gives the same bytes as escaping
/// the whole text, since no string spans two members.
pub(crate) fn push_object_text_limited<'a>(
    pairs: impl Iterator<Item = (&'a str, &'a str)>,
    limit: usize,
    out: &mut Vec<u8>,
    member: &mut Vec<u8>,
) -> bool {
    out.extend_from_slice(b"\"{");
    // Length of the compact (unescaped) text so far, closing `}` not included.
    let mut len = 1;
    let mut first = true;
    for (k, v) in pairs {
        member.clear();
        push_str_literal(k, member);
        member.push(b':');
        push_compact(v, member);
        let sep = usize::from(!first);
        if len + sep + member.len() + 1 > limit {
            out.extend_from_slice(b"}\"");
            return true;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        len += sep + member.len();
        escape_json_text(member, out);
    }
    out.extend_from_slice(b"}\"");
    false
}

fn push_text(text: &[u8], out: &mut Vec<u8>) {
    // `text` was assembled from valid UTF-8 pieces; re-checking keeps this free of `unsafe`.
    match std::str::from_utf8(text) {
        Ok(s) => push_as_string(s, out),
        Err(_) => out.extend_from_slice(b"\"\""),
    }
}

/// Compact `[a,b,…]` keeping as many leading elements as fit in `limit` bytes.
fn trim_array(items: &[&RawValue], limit: usize) -> Vec<u8> {
    let mut text = vec![b'['];
    let mut item = Vec::new();
    for (i, v) in items.iter().enumerate() {
        item.clear();
        push_compact(v.get(), &mut item);
        let sep = usize::from(i > 0);
        if text.len() + sep + item.len() + 1 > limit {
            break;
        }
        if sep == 1 {
            text.push(b',');
        }
        text.extend_from_slice(&item);
    }
    text.push(b']');
    text
}

/// The largest per-field cap `c` such that capping every field of `sizes` at `c` removes at
/// least `excess` bytes: the row's largest fields are cut first, the small ones stay whole.
pub(crate) fn cap_for_excess(sizes: &[usize], excess: usize) -> usize {
    let removed = |c: usize| -> usize { sizes.iter().map(|s| s.saturating_sub(c)).sum() };
    let (mut lo, mut hi) = (0usize, sizes.iter().copied().max().unwrap_or(0));
    if removed(0) < excess {
        return 0;
    }
    // Invariant: removed(lo) >= excess; find the largest such lo.
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if removed(mid) >= excess {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// Rewrites the JSON object `row` (one row, or one original event) to at most `max` bytes by
/// cutting its largest values, the way an over-long value is always cut: a string at a char
/// boundary, a JSON-text string (`json_text(name)`: `target_s`, the catch-alls) or an array by
/// whole trailing elements, so every value stays valid; other values are copied. Returns the
/// new row and the number of values cut, or `None` when it cannot get any smaller (or is not an
/// object).
pub(crate) fn shrink_object(
    row: &str,
    max: usize,
    json_text: impl Fn(&str) -> bool,
) -> Option<(Vec<u8>, u64)> {
    let members = object_members(row)?;
    let sizes: Vec<usize> = members.iter().map(|(_, v)| v.len()).collect();
    let mut cap = cap_for_excess(&sizes, row.len().saturating_sub(max));
    let mut out = Vec::with_capacity(row.len().min(max + 64));
    loop {
        out.clear();
        out.push(b'{');
        let mut cuts = 0;
        for (i, (k, v)) in members.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_str_literal(k, &mut out);
            out.push(b':');
            let raw = *v;
            let cut = match raw.as_bytes().first() {
                Some(b'"') if json_text(k) => match serde_json::from_str::<String>(raw) {
                    Ok(text) if text.starts_with(['[', '{']) => {
                        serde_json::from_str::<&RawValue>(&text).is_ok()
                            && push_json_text_limited(&text, cap, &mut out)
                    }
                    _ => push_string_limited(raw, cap, &mut out),
                },
                Some(b'"') => push_string_limited(raw, cap, &mut out),
                Some(b'[') if raw.len() > cap => {
                    match serde_json::from_str::<Vec<&RawValue>>(raw) {
                        Ok(items) => {
                            out.extend_from_slice(&trim_array(&items, cap));
                            true
                        }
                        Err(_) => {
                            out.extend_from_slice(raw.as_bytes());
                            false
                        }
                    }
                }
                _ => {
                    out.extend_from_slice(raw.as_bytes());
                    false
                }
            };
            cuts += u64::from(cut);
        }
        out.push(b'}');
        if out.len() <= max {
            return Some((out, cuts));
        }
        if cap == 0 {
            return (out.len() < row.len()).then_some((out, cuts));
        }
        // Escapes can make a value longer than its cap in bytes: tighten and try again.
        cap = cap_for_excess(&sizes, out.len() - max).min(cap.saturating_sub(1) * 9 / 10);
    }
}

/// The members of the JSON object text `raw`, in document order, values as their text;
/// `None` if it is not one. The row builder's own pass reads it ([`super::scan`]); what that
/// pass cannot vouch for, serde_json reads.
pub(crate) fn object_members(raw: &str) -> Option<Vec<(Cow<'_, str>, &str)>> {
    super::scan::object_members(raw).or_else(|| serde_object_members(raw))
}

/// [`object_members`] as serde_json reads them: the reference the row builder's pass is held
/// to, and the answer for what that pass cannot vouch for.
pub(crate) fn serde_object_members(raw: &str) -> Option<Vec<(Cow<'_, str>, &str)>> {
    let mut de = serde_json::Deserializer::from_str(raw);
    let pairs = PairsSeed.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(pairs.into_iter().map(|(k, v)| (k, v.get())).collect())
}

/// Members of an object in document order (serde_json's `Map` would sort them).
struct PairsSeed;

impl<'de> DeserializeSeed<'de> for PairsSeed {
    type Value = Vec<(Cow<'de, str>, &'de RawValue)>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PairsSeed {
    type Value = Vec<(Cow<'de, str>, &'de RawValue)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut pairs = Vec::new();
        while let Some(k) = map.next_key::<CowKey<'de>>()? {
            pairs.push((k.0, map.next_value::<&'de RawValue>()?));
        }
        Ok(pairs)
    }
}

struct CowKey<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for CowKey<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowKey<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowKey(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowKey(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(out: &[u8]) -> String {
        serde_json::from_slice(out).unwrap()
    }

    #[test]
    fn cuts_strings_at_a_char_boundary() {
        let mut out = Vec::new();
        // "é" is two bytes: a cap of 3 keeps "aé" not half an "é".
        assert!(push_string_limited(r#""aéé""#, 4, &mut out));
        assert_eq!(decoded(&out), "aé");
        out.clear();
        assert!(!push_string_limited(r#""\u00e9\u00e9""#, 4, &mut out));
        assert_eq!(out, br#""\u00e9\u00e9""#);
    }

    #[test]
    fn arrays_lose_trailing_elements_and_stay_valid() {
        let raw = r#"[{"id":"aaaa"}, {"id":"bbbb"}, {"id":"cccc"}]"#;
        let mut out = Vec::new();
        assert!(push_json_text_limited(raw, 30, &mut out));
        let text = decoded(&out);
        assert_eq!(text, r#"[{"id":"aaaa"},{"id":"bbbb"}]"#);
        out.clear();
        assert!(!push_json_text_limited(raw, 100, &mut out));
        assert_eq!(
            decoded(&out),
            r#"[{"id":"aaaa"},{"id":"bbbb"},{"id":"cccc"}]"#
        );
        out.clear();
        assert!(push_json_text_limited(raw, 3, &mut out));
        assert_eq!(decoded(&out), "[]");
    }

    #[test]
    fn objects_lose_trailing_members_in_document_order() {
        let raw = r#"{"z":"1111","a":"2222"}"#;
        let mut out = Vec::new();
        assert!(push_json_text_limited(raw, 15, &mut out));
        assert_eq!(decoded(&out), r#"{"z":"1111"}"#);
    }

    #[test]
    fn shrinking_an_object_cuts_its_largest_values_and_keeps_them_valid() {
        let targets: Vec<String> = (0..400).map(|i| format!(r#"{{"id":"t{i:04}"}}"#)).collect();
        let target_text = format!("[{}]", targets.join(","));
        let row = serde_json::json!({
            "uuid_g": "u",
            "displayMessage_s": "é".repeat(3000),
            "target_s": target_text,
            "n_d": 1.5,
            "arr": (0..3000).collect::<Vec<u32>>(),
        })
        .to_string();
        let (small, cuts) = shrink_object(&row, row.len() / 2, |n| n == "target_s").unwrap();
        assert!(
            small.len() <= row.len() / 2,
            "{} > {}",
            small.len(),
            row.len() / 2
        );
        assert_eq!(cuts, 3);
        let v: serde_json::Value = serde_json::from_slice(&small).unwrap();
        assert_eq!(v["uuid_g"], "u");
        assert_eq!(v["n_d"], 1.5);
        let msg = v["displayMessage_s"].as_str().unwrap();
        assert!(!msg.is_empty() && msg.chars().all(|c| c == 'é'));
        let kept: Vec<serde_json::Value> =
            serde_json::from_str(v["target_s"].as_str().unwrap()).unwrap();
        assert!(!kept.is_empty() && kept.len() < 400);
        assert_eq!(kept[0]["id"], "t0000");
        assert!(v["arr"]
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.len() < 3000));
        // Nothing left to cut: no smaller row.
        assert!(shrink_object(r#"{"a":1,"b":true}"#, 3, |_| false).is_none());
    }

    #[test]
    fn cap_cuts_the_largest_fields_first() {
        let sizes = [10, 1000, 500, 20];
        let c = cap_for_excess(&sizes, 700);
        assert_eq!(c, 400);
        assert_eq!(cap_for_excess(&sizes, 10_000), 0);
        assert_eq!(cap_for_excess(&sizes, 0), 1000);
    }
}
