//! Writing one row object from the captured values, column by column in manifest order.
//!
//! Values are converted to the declared column type the way a DCR-based table would accept
//! them; string values are copied from the page verbatim whenever possible (a JSON string
//! literal is already a valid JSON string literal).

use std::io::Write as _;

use chrono::{DateTime, Utc};

use super::additional;
use super::flatten::Captured;
use super::jsontext::push_compact;
use super::manifest::{ColumnKind, ColumnType, Manifest, Slot, TableColumns};
use super::truncate::{push_json_text_limited, push_object_text_limited, push_string_limited};

/// The column every row of a DCR-based table must have.
const TIME_GENERATED: &str = "TimeGenerated";

/// Writes rows, keeping its buffers from one row to the next so that a row costs no
/// allocation beyond its own bytes.
pub(crate) struct RowWriter {
    /// Byte size of each value written by the last [`RowWriter::write`] (for shrinking).
    sizes: Vec<usize>,
    /// Scratch for one member of a `rest` column.
    member: Vec<u8>,
    /// Leaves a `datetime` column or [`super::Row::published`] reads: parsed once per event
    /// by [`RowWriter::load_times`] (`published` feeds three places; RFC 3339 parsing is not
    /// free, and shrinking rewrites the row).
    time_leaves: Vec<usize>,
    /// Per leaf id, the parsed time of the current event (only `time_leaves` are filled).
    times: Vec<Option<DateTime<Utc>>>,
    /// Per leaf id, whether a column of the row being written holds its value.
    kept: Vec<bool>,
    additional: additional::AdditionalWriter,
}

impl RowWriter {
    pub(crate) fn new(m: &Manifest) -> Self {
        let mut time_leaves: Vec<usize> = m
            .columns()
            .iter()
            .zip(&m.slots)
            .filter_map(|(col, slot)| match slot {
                Slot::Leaf(id) if col.ty == ColumnType::Datetime => Some(*id),
                _ => None,
            })
            .chain(m.published_leaf)
            .collect();
        time_leaves.sort_unstable();
        time_leaves.dedup();
        RowWriter {
            sizes: Vec::with_capacity(m.columns().len()),
            member: Vec::new(),
            time_leaves,
            times: vec![None; m.leaf_count],
            kept: vec![false; m.leaf_count],
            additional: additional::AdditionalWriter::default(),
        }
    }

    /// Parses the time values of the event in `cap`; call before writing its row.
    pub(crate) fn load_times(&mut self, cap: &Captured<'_>) {
        for &id in &self.time_leaves {
            self.times[id] = cap.leaves[id].and_then(parse_time);
        }
    }

    /// The parsed time of leaf `id` of the loaded event.
    pub(crate) fn time(&self, id: usize) -> Option<DateTime<Utc>> {
        self.times.get(id).copied().flatten()
    }

    /// Byte size of each value of the last row written.
    pub(crate) fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// Writes the row for `cap` (times loaded) at the end of `out`, capping each value at
    /// `field_cap` bytes, leaving out the columns `table` does not declare. What `out` held
    /// before is kept: a page's rows are written one after the other into one buffer.
    pub(crate) fn write(
        &mut self,
        m: &Manifest,
        cap: &Captured<'_>,
        table: TableColumns,
        field_cap: usize,
        out: &mut Vec<u8>,
    ) -> RowCounts {
        let row_start = out.len();
        self.sizes.clear();
        self.kept.clear();
        self.kept.resize(m.leaf_count, false);
        out.push(b'{');
        let mut counts = RowCounts::default();
        for (index, ((col, slot), prefix)) in m
            .columns()
            .iter()
            .zip(&m.slots)
            .zip(&m.prefixes)
            .enumerate()
        {
            if m.omitted(index, table) {
                continue;
            }
            // An event fills only some of the columns: an absent value is passed over before
            // its name is written (and taken back), except a missing time for the table.
            if let Slot::Leaf(id) = *slot {
                if cap.leaves[id].is_none() && col.name != TIME_GENERATED {
                    continue;
                }
            }
            let mark = out.len();
            if mark > row_start + 1 {
                out.push(b',');
            }
            out.extend_from_slice(prefix);
            let value_start = out.len();
            let written = match *slot {
                Slot::Leaf(id) => match cap.leaves[id] {
                    // A time column: valid iff it parsed (a string literal, never `null`).
                    Some(raw) if col.ty == ColumnType::Datetime => {
                        if self.time(id).is_some() {
                            out.extend_from_slice(raw.as_bytes());
                            Written::Whole
                        } else {
                            Written::Omitted
                        }
                    }
                    Some(raw) => write_value(raw, col.ty, col.kind, field_cap, out),
                    None => Written::Omitted,
                },
                Slot::Rest(id) => {
                    // Members whose value is `null` or `""` carry nothing (a query reads the
                    // same from an absent key): they are not sent.
                    let pairs = cap.rests[id].iter().filter(|(_, v)| !is_empty_value(v));
                    if pairs.clone().next().is_none() {
                        Written::Omitted
                    } else {
                        let it = pairs.map(|(k, v)| (k.as_ref(), *v));
                        push_object_text_limited(it, field_cap, out, &mut self.member).into()
                    }
                }
                Slot::Additional => match self.write_additional(m, cap, field_cap, out) {
                    Some(w) => {
                        counts.unmapped += w.members;
                        w.truncated.into()
                    }
                    None => Written::Omitted,
                },
            };
            if let (Slot::Leaf(id), Written::Whole | Written::Truncated) = (slot, &written) {
                self.kept[*id] = true;
            }
            // Every row of a DCR-based table needs a TimeGenerated: an event whose `published`
            // is missing or unparseable gets the time it is shipped, as the Data Collector API
            // does (its `published_t` stays empty, so the substitution is visible).
            let written = match written {
                Written::Omitted if col.name == TIME_GENERATED => {
                    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                    out.push(b'"');
                    out.extend_from_slice(now.as_bytes());
                    out.push(b'"');
                    Written::Whole
                }
                other => other,
            };
            match written {
                Written::Omitted => out.truncate(mark),
                Written::Truncated => {
                    counts.truncations += 1;
                    self.sizes.push(out.len() - value_start);
                }
                Written::Whole => self.sizes.push(out.len() - value_start),
            }
        }
        out.push(b'}');
        counts
    }

    /// The `additional` column: the event's members no column claims, then the captured
    /// values no column could hold (written after every other column, which the manifest's
    /// rule that it comes last guarantees). `None` when there is nothing to keep.
    fn write_additional(
        &mut self,
        m: &Manifest,
        cap: &Captured<'_>,
        field_cap: usize,
        out: &mut Vec<u8>,
    ) -> Option<additional::Written> {
        let w = &mut self.additional;
        w.begin(field_cap, out);
        for extra in &cap.extras {
            let parent = m.node_paths.get(extra.node).map_or("", String::as_str);
            match &extra.key {
                Some(key) => w.member(parent, key, &extra.text, out),
                None => w.field(parent, &extra.text, out),
            }
        }
        for (id, raw) in cap.leaves.iter().enumerate() {
            if let (Some(raw), false) = (raw, self.kept[id]) {
                w.field(&m.leaf_paths[id], raw, out);
            }
        }
        w.finish(out)
    }
}

/// What writing one row counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RowCounts {
    /// Values truncated.
    pub(crate) truncations: u64,
    /// Fields kept in the `additional` column.
    pub(crate) unmapped: u64,
}

enum Written {
    Omitted,
    Whole,
    Truncated,
}

impl From<bool> for Written {
    fn from(truncated: bool) -> Self {
        if truncated {
            Written::Truncated
        } else {
            Written::Whole
        }
    }
}

fn write_value(
    raw: &str,
    ty: ColumnType,
    kind: ColumnKind,
    field_cap: usize,
    out: &mut Vec<u8>,
) -> Written {
    let text = raw;
    let first = text.as_bytes().first().copied().unwrap_or(b'n');
    if first == b'n' || text == "\"\"" {
        // null: the legacy API omits the property from the row; so do we. An empty string
        // is sent by nobody either: Log Analytics reads an absent string column as "".
        return Written::Omitted;
    }
    match ty {
        ColumnType::String => match first {
            b'"' if kind == ColumnKind::Guid => match guid(text) {
                Some(g) => {
                    out.push(b'"');
                    out.extend_from_slice(&g);
                    out.push(b'"');
                    Written::Whole
                }
                None => push_string_limited(text, field_cap, out).into(),
            },
            b'"' => push_string_limited(text, field_cap, out).into(),
            b'[' | b'{' => push_json_text_limited(text, field_cap, out).into(),
            _ => {
                // A number or boolean in a string column (`"version": 0`): its JSON text.
                out.push(b'"');
                out.extend_from_slice(text.as_bytes());
                out.push(b'"');
                Written::Whole
            }
        },
        ColumnType::Real => match first {
            b'"' => match string_value(text)
                .and_then(|s| s.trim().parse::<f64>().ok())
                .filter(|f| f.is_finite())
            {
                Some(f) => write_number(f, out),
                None => Written::Omitted,
            },
            // JSON allows 1e999; a real column does not: such a value is left out, not
            // allowed to get the whole request refused.
            b'-' | b'0'..=b'9' if finite_number(text) => {
                out.extend_from_slice(text.as_bytes());
                Written::Whole
            }
            _ => Written::Omitted,
        },
        // The common case: an integer that needs no conversion is copied as it is (what
        // printing it back from its value would give).
        ColumnType::Int | ColumnType::Long if plain_integer(text) => {
            out.extend_from_slice(text.as_bytes());
            Written::Whole
        }
        ColumnType::Int | ColumnType::Long => {
            let parsed = match first {
                b'"' => string_value(text).and_then(|s| s.trim().parse::<f64>().ok()),
                b'-' | b'0'..=b'9' => text.parse::<f64>().ok(),
                _ => None,
            };
            match parsed {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                    // Exactly representable integer: print without a fraction. Writing into a
                    // `Vec` cannot fail; if it did, the caller drops the partial value.
                    match write!(out, "{}", f as i64) {
                        Ok(()) => Written::Whole,
                        Err(_) => Written::Omitted,
                    }
                }
                _ => Written::Omitted,
            }
        }
        ColumnType::Boolean => {
            let b = match first {
                b't' => Some(true),
                b'f' => Some(false),
                b'"' => string_value(text).and_then(|s| {
                    if s.eq_ignore_ascii_case("true") {
                        Some(true)
                    } else if s.eq_ignore_ascii_case("false") {
                        Some(false)
                    } else {
                        None
                    }
                }),
                _ => None,
            };
            match b {
                Some(true) => out.extend_from_slice(b"true"),
                Some(false) => out.extend_from_slice(b"false"),
                None => return Written::Omitted,
            }
            Written::Whole
        }
        // `RowWriter::write` answers time columns from its parsed times; this is the same
        // rule, for a value written on its own.
        ColumnType::Datetime => {
            if first == b'"' && parse_time(text).is_some() {
                out.extend_from_slice(text.as_bytes());
                Written::Whole
            } else {
                Written::Omitted
            }
        }
        ColumnType::Dynamic => {
            push_compact(text, out);
            Written::Whole
        }
    }
}

/// Whether a raw value carries nothing a query could read: `null` or the empty string.
pub(crate) fn is_empty_value(v: &str) -> bool {
    matches!(v, "null" | "\"\"")
}

/// Whether the JSON number `text` is finite as an `f64`. One without an exponent and with
/// fewer than 309 digits always is: only the others are parsed (parsing every number to
/// check was ≈ 1.3 % of the row builder's time in perf).
fn finite_number(text: &str) -> bool {
    let plain = text.len() < 300 && !text.bytes().any(|b| matches!(b, b'e' | b'E'));
    plain || text.parse::<f64>().is_ok_and(f64::is_finite)
}

/// Whether the JSON text `text` is an integer of at most 15 digits written as an integer
/// column prints it: no sign but `-`, no leading zero, not `-0`.
fn plain_integer(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    (1..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (!digits.starts_with('0') || text == "0")
}

/// Appends `f` as serde_json prints it (finite: never fails; a failure drops the value).
fn write_number(f: f64, out: &mut Vec<u8>) -> Written {
    match serde_json::to_writer(&mut *out, &f) {
        Ok(()) => Written::Whole,
        Err(_) => Written::Omitted,
    }
}

/// The value of the JSON string literal `text`, borrowed when it has no escapes.
pub(crate) fn string_value(text: &str) -> Option<std::borrow::Cow<'_, str>> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(std::borrow::Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(text)
        .ok()
        .map(std::borrow::Cow::Owned)
}

/// Parses an ISO 8601 / RFC 3339 string literal (`"2024-08-13T15:58:20.353Z"`).
pub(crate) fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let s = string_value(text)?;
    DateTime::parse_from_rfc3339(&s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// The dashed lower-case form of a GUID-shaped string literal (32 hex digits, optionally
/// dashed 8-4-4-4-12 and/or in braces), as the Data Collector API stores `_g` values.
fn guid(text: &str) -> Option<[u8; 36]> {
    let s = string_value(text)?;
    let s = s.trim();
    let s = s
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(s);
    guid_of(s)
}

/// The dashed lower-case form of `s` if it is 32 hex digits, plain or dashed 8-4-4-4-12.
///
/// Without a branch per digit: which characters are digits and which letters is random in a
/// GUID, and a branch on it mispredicted often enough to make this a measured hot spot of the
/// row builder (perf, BENCHMARKS.md, issue 14). Every digit is checked and lower-cased
/// (`| 0x20`, which leaves `0`–`9` as they are) and the verdict taken at the end.
pub(crate) fn guid_of(s: &str) -> Option<[u8; 36]> {
    /// Where the 32 digits are in the dashed form (input and output alike).
    const DASHED: [usize; 32] = [
        0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15, 16, 17, 19, 20, 21, 22, 24, 25, 26, 27, 28,
        29, 30, 31, 32, 33, 34, 35,
    ];
    const PLAIN: [usize; 32] = [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
        25, 26, 27, 28, 29, 30, 31,
    ];
    let b = s.as_bytes();
    let from = match b.len() {
        32 => &PLAIN,
        36 if [8, 13, 18, 23].iter().all(|&i| b[i] == b'-') => &DASHED,
        _ => return None,
    };
    let mut outb = [b'-'; 36];
    let mut hex = true;
    for (&src, &dst) in from.iter().zip(DASHED.iter()) {
        let c = b.get(src).copied().unwrap_or(0);
        let lower = c | 0x20;
        hex &= (c.wrapping_sub(b'0') < 10) | (lower.wrapping_sub(b'a') < 6);
        outb[dst] = lower;
    }
    hex.then_some(outb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_normalisation() {
        let want = *b"dc9fd3c0-598c-11ef-8478-2b7584bf8d5a";
        assert_eq!(guid(r#""DC9FD3C0598C11EF84782B7584BF8D5A""#), Some(want));
        assert_eq!(
            guid(r#""{dc9fd3c0-598c-11ef-8478-2b7584bf8d5a}""#),
            Some(want)
        );
        assert_eq!(guid(r#""ab609228fe84ce59cdcbfa690bgce016""#), None);
        assert_eq!(guid(r#""dc9fd3c0x598c-11ef-8478-2b7584bf8d5a""#), None);
        // Every byte next to the hex ranges, and the controls that `| 0x20` would map onto
        // digits, spoil a GUID wherever it stands; every hex digit of either case is one.
        for c in (0u8..128).filter(|c| !c.is_ascii_hexdigit()) {
            for at in [0, 9, 35] {
                let mut dashed = *b"DC9FD3C0-598C-11EF-8478-2B7584BF8D5A";
                dashed[at] = c;
                let text = String::from_utf8_lossy(&dashed);
                assert_eq!(guid_of(&text), None, "byte {c:#x} at {at}");
            }
        }
        let all = "0123456789abcdefABCDEF0123456789";
        assert_eq!(
            guid_of(all).map(|g| String::from_utf8_lossy(&g).into_owned()),
            Some("01234567-89ab-cdef-abcd-ef0123456789".to_owned())
        );
    }

    /// The integer and real columns' shortcuts write what converting the number would: the
    /// same text, or nothing for a value the column cannot hold.
    #[test]
    fn numbers_take_the_shortcut_only_where_it_writes_the_same() {
        let write = |text: &str, ty| {
            let mut out = Vec::new();
            let w = write_value(text, ty, ColumnKind::Value, 1 << 20, &mut out);
            (!matches!(w, Written::Omitted)).then(|| String::from_utf8_lossy(&out).into_owned())
        };
        let int = |text: &str| write(text, ColumnType::Long);
        for (text, want) in [
            ("0", Some("0")),
            ("-0", Some("0")),
            ("7", Some("7")),
            ("-42", Some("-42")),
            ("123456789012345", Some("123456789012345")),
            ("1234567890123456", Some("1234567890123456")),
            ("9007199254740993", None),
            ("1.0", Some("1")),
            ("1.5", None),
            ("1e3", Some("1000")),
            ("-0.0", Some("0")),
        ] {
            assert_eq!(int(text).as_deref(), want, "{text}");
            if plain_integer(text) {
                assert_eq!(
                    Some(text),
                    want,
                    "{text} is copied, so it must print as itself"
                );
            }
        }
        assert!(!plain_integer("-0") && !plain_integer("1234567890123456"));
        let real = |text: &str| write(text, ColumnType::Real);
        for text in [
            "0",
            "-0",
            "37.7749",
            "-122.4194",
            "1e308",
            "1E-400",
            "0.000001",
        ] {
            assert_eq!(real(text).as_deref(), Some(text), "{text}");
        }
        assert_eq!(real("1e999"), None);
        assert_eq!(real("-1E309"), None);
        let long_plain = format!("1{}", "0".repeat(298));
        assert_eq!(
            real(&long_plain),
            Some(long_plain.clone()),
            "299 digits are finite"
        );
        let too_long = format!("1{}", "0".repeat(310));
        assert_eq!(
            real(&too_long),
            None,
            "past f64's range without an exponent"
        );
    }
}
