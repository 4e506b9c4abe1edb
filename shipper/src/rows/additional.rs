//! The `additionalFields_s` column: every field of an event that no declared column holds
//! (docs/design.md §4).
//!
//! A DCR-based table silently drops what it does not declare, so a field the manifest does not
//! know — `transaction.detail.requestApiTokenId` (which API token made the request), or one
//! Okta adds next year — would vanish on the Logs Ingestion path while the legacy Data
//! Collector path made a column of it. Here it is kept, in one JSON object keyed by the
//! column the Data Collector API would have created (`transaction_detail_requestApiTokenId_s`),
//! with the value that API would have stored, so a query written against a classic table
//! needs only `parse_json(additionalFields_s).transaction_detail_requestApiTokenId_s`.
//!
//! The Data Collector API's flattening (docs/okta-cl-columns.md "Flattening rules"): nested objects
//! join their path with `_`; an array is one `_s` column holding its JSON text; `null` (and
//! an empty object) makes no column; a string is `_g` when it is GUID-shaped (stored in the
//! dashed lower-case form), `_t` when it is an ISO 8601 date-time, `_s` otherwise; a number is
//! `_d`, a boolean `_b`; an empty string is left out too (Log Analytics reads an absent string
//! column as `""`, so it carries nothing and costs bytes). Three kinds of values land here:
//!
//! * members of a manifest object that no column names (`transaction.detail`, `device`);
//! * a non-object value where the manifest expects an object (`"client": "x"` → `client_s`);
//! * a value a declared column cannot hold (`"published": "not a date"` → `published_s`,
//!   `"asNumber": "n/a"` → `securityContext_asNumber_s`), and the values of columns the table
//!   does not declare ([`super::TableColumns::WithoutOverlong`]).
//!
//! New `debugData` keys are not here: they have their own catch-all,
//! `debugContext_debugData_s`. A name met twice in one event (`"a_b": 1` next to
//! `"a": {"b": 2}`) keeps the first and gets `#2`, `#3`… on the next, so the object text has
//! unique keys and nothing is overwritten.

use chrono::{DateTime, NaiveDateTime};

use super::encode::{guid_of, string_value};
use super::jsontext::{escape_json_text, push_as_string, push_str_literal};
use super::truncate::object_members;

/// Builds the column's value, reusing its buffers from one row to the next.
#[derive(Default)]
pub(crate) struct AdditionalWriter {
    /// The column name being built (a path, then a suffix).
    name: String,
    /// One compact member (`"name":value`).
    member: Vec<u8>,
    /// Names already written in this row, one after the other (`spans` delimits them): a
    /// row has a handful, so a linear scan without hashing or allocating beats a set.
    seen: String,
    spans: Vec<(usize, usize)>,
    /// Scratch for one member's key literal.
    key: Vec<u8>,
    /// Length of the compact object text written so far (without the closing `}`).
    len: usize,
    /// Members written / left out for the field cap, in this row.
    written: u64,
    cut: bool,
    limit: usize,
}

/// What [`AdditionalWriter::finish`] wrote.
pub(crate) struct Written {
    /// Members in the object.
    pub(crate) members: u64,
    /// Trailing members were left out to stay under the field cap.
    pub(crate) truncated: bool,
}

impl AdditionalWriter {
    /// Starts the column's value in `out` (a JSON string literal holding an object text of at
    /// most `limit` bytes, trailing members left out beyond it).
    pub(crate) fn begin(&mut self, limit: usize, out: &mut Vec<u8>) {
        self.seen.clear();
        self.spans.clear();
        self.len = 1;
        self.written = 0;
        self.cut = false;
        self.limit = limit;
        out.extend_from_slice(b"\"{");
    }

    /// Adds the field at legacy path `path` (no suffix) whose value is the JSON text `text`.
    pub(crate) fn field(&mut self, path: &str, text: &str, out: &mut Vec<u8>) {
        self.name.clear();
        self.name.push_str(path);
        self.flatten(text, out);
    }

    /// Adds member `key` of the object at legacy path `parent` (`""` for the event).
    pub(crate) fn member(&mut self, parent: &str, key: &str, text: &str, out: &mut Vec<u8>) {
        self.name.clear();
        if !parent.is_empty() {
            self.name.push_str(parent);
            self.name.push('_');
        }
        self.name.push_str(key);
        self.flatten(text, out);
    }

    /// Closes the value; `None` (and `out` restored by the caller) when it holds nothing.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) -> Option<Written> {
        out.extend_from_slice(b"}\"");
        (self.written > 0 || self.cut).then_some(Written {
            members: self.written,
            truncated: self.cut,
        })
    }

    /// The Data Collector flattening of the value `text` under the name in `self.name`.
    fn flatten(&mut self, text: &str, out: &mut Vec<u8>) {
        let Some(&first) = text.as_bytes().first() else {
            return;
        };
        self.member.clear();
        match first {
            b'n' => return,
            b'{' => {
                if text == "{}" {
                    return;
                }
                let Some(members) = object_members(text) else {
                    return;
                };
                let at = self.name.len();
                for (k, v) in members {
                    self.name.truncate(at);
                    self.name.push('_');
                    self.name.push_str(&k);
                    self.flatten(v, out);
                }
                self.name.truncate(at);
                return;
            }
            b'[' => {
                self.name.push_str("_s");
                push_as_string(text, &mut self.member);
            }
            b'"' => match string_value(text) {
                // The empty string makes a column a query reads as absent: not sent.
                Some(s) if s.is_empty() => return,
                Some(s) => {
                    if let Some(g) = dc_guid(&s) {
                        self.name.push_str("_g");
                        self.member.push(b'"');
                        self.member.extend_from_slice(&g);
                        self.member.push(b'"');
                    } else if is_iso_datetime(&s) {
                        self.name.push_str("_t");
                        self.member.extend_from_slice(text.as_bytes());
                    } else {
                        self.name.push_str("_s");
                        self.member.extend_from_slice(text.as_bytes());
                    }
                }
                None => return,
            },
            b't' | b'f' => {
                self.name.push_str("_b");
                self.member.extend_from_slice(text.as_bytes());
            }
            _ if text.parse::<f64>().is_ok_and(f64::is_finite) => {
                self.name.push_str("_d");
                self.member.extend_from_slice(text.as_bytes());
            }
            _ => {
                // A number no double holds (`1e999`): kept as its text rather than lost.
                self.name.push_str("_s");
                push_str_literal(text, &mut self.member);
            }
        }
        self.push_member(out);
    }

    /// Writes `"name":member` unless the cap is reached (then it and all later ones are cut).
    fn push_member(&mut self, out: &mut Vec<u8>) {
        if self.cut {
            return;
        }
        if self.is_seen(&self.name) {
            let base = self.name.clone();
            let mut n = 2;
            loop {
                self.name = format!("{base}#{n}");
                if !self.is_seen(&self.name) {
                    break;
                }
                n += 1;
            }
        }
        self.key.clear();
        push_str_literal(&self.name, &mut self.key);
        self.key.push(b':');
        let sep = usize::from(self.written > 0);
        if self.len + sep + self.key.len() + self.member.len() + 1 > self.limit {
            self.cut = true;
            return;
        }
        let start = self.seen.len();
        self.seen.push_str(&self.name);
        self.spans.push((start, self.seen.len()));
        if sep == 1 {
            out.push(b',');
        }
        self.len += sep + self.key.len() + self.member.len();
        escape_json_text(&self.key, out);
        escape_json_text(&self.member, out);
        self.written += 1;
    }

    fn is_seen(&self, name: &str) -> bool {
        self.spans.iter().any(|&(a, b)| &self.seen[a..b] == name)
    }
}

/// The dashed lower-case form of `s` if the Data Collector API types it as a GUID: 32 hex
/// digits, or the dashed 8-4-4-4-12 form, either optionally in `{}` or `()` (what .NET's
/// `Guid.TryParse` accepts).
fn dc_guid(s: &str) -> Option<[u8; 36]> {
    let inner = match s.as_bytes() {
        [b'(', .., b')'] | [b'{', .., b'}'] => &s[1..s.len() - 1],
        _ => s,
    };
    if inner.trim() != inner {
        return None;
    }
    guid_of(inner)
}

/// Whether `s` is an ISO 8601 date-time in the `T` form, which the service types `_t`.
fn is_iso_datetime(s: &str) -> bool {
    if s.len() < 19 || s.as_bytes().get(10) != Some(&b'T') {
        return false;
    }
    DateTime::parse_from_rfc3339(s).is_ok()
        || NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(fields: &[(&str, &str)]) -> (String, u64) {
        let mut w = AdditionalWriter::default();
        let mut out = Vec::new();
        w.begin(usize::MAX, &mut out);
        for (path, text) in fields {
            w.field(path, text, &mut out);
        }
        let n = w.finish(&mut out).map_or(0, |r| r.members);
        let lit: String = serde_json::from_slice(&out).unwrap();
        (lit, n)
    }

    #[test]
    fn names_and_values_follow_the_data_collector_rules() {
        let (text, n) = object(&[
            (
                "transaction_detail",
                r#"{"requestApiTokenId":"00T1abc","x":null,"e":{}}"#,
            ),
            (
                "device",
                r#"{"id":"DC9FD3C0598C11EF84782B7584BF8D5A","managed":true,"n":2.5}"#,
            ),
            ("when", r#""2024-08-13T15:58:20.353Z""#),
            ("tags", r#"[1, "a"]"#),
            ("big", "1e999"),
            ("nothing", "null"),
        ]);
        assert_eq!(
            text,
            r#"{"transaction_detail_requestApiTokenId_s":"00T1abc","device_id_g":"dc9fd3c0-598c-11ef-8478-2b7584bf8d5a","device_managed_b":true,"device_n_d":2.5,"when_t":"2024-08-13T15:58:20.353Z","tags_s":"[1,\"a\"]","big_s":"1e999"}"#
        );
        assert_eq!(n, 7);
    }

    #[test]
    fn repeated_names_are_kept_apart() {
        let (text, n) = object(&[("a_b", "1"), ("a", r#"{"b":2}"#), ("a", r#"{"b":3}"#)]);
        assert_eq!(text, r##"{"a_b_d":1,"a_b_d#2":2,"a_b_d#3":3}"##);
        assert_eq!(n, 3);
    }

    #[test]
    fn guid_and_time_shapes() {
        assert!(dc_guid("(3f2504e0-4f89-11d3-9a0c-0305e82c3301)").is_some());
        assert!(dc_guid("{3F2504E04F8911D39A0C0305E82C3301}").is_some());
        assert!(dc_guid(" 3f2504e04f8911d39a0c0305e82c3301").is_none());
        assert!(is_iso_datetime("2024-08-13T15:58:20"));
        assert!(!is_iso_datetime("2024-08-13 15:58:20Z"));
        assert!(!is_iso_datetime("2024-08-13"));
    }

    #[test]
    fn trailing_members_are_cut_at_the_cap() {
        let mut w = AdditionalWriter::default();
        let mut out = Vec::new();
        w.begin(30, &mut out);
        w.field("a", r#""1234567890""#, &mut out);
        w.field("b", r#""1234567890""#, &mut out);
        let r = w.finish(&mut out).unwrap();
        assert!(r.truncated);
        assert_eq!(r.members, 1);
        let lit: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(lit, r#"{"a_s":"1234567890"}"#);
    }
}
