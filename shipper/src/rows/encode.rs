//! Writing one row object from the captured values, column by column in manifest order.
//!
//! Values are converted to the declared column type the way a DCR-based table would accept
//! them; string values are copied from the page verbatim whenever possible (a JSON string
//! literal is already a valid JSON string literal).

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use super::flatten::Captured;
use super::jsontext::push_compact;
use super::manifest::{ColumnKind, ColumnType, Manifest, Slot};
use super::truncate::{push_json_text_limited, push_object_text_limited, push_string_limited};

/// Writes the row for `cap` into `out` (cleared first), capping each value at `field_cap`
/// bytes; `sizes` receives the byte size of each written value. Returns the number of values
/// truncated.
pub(crate) fn write_row(
    m: &Manifest,
    cap: &Captured<'_>,
    field_cap: usize,
    out: &mut Vec<u8>,
    sizes: &mut Vec<usize>,
) -> u64 {
    out.clear();
    sizes.clear();
    out.push(b'{');
    let mut truncations = 0;
    for (i, col) in m.columns().iter().enumerate() {
        let mark = out.len();
        if mark > 1 {
            out.push(b',');
        }
        out.extend_from_slice(&m.prefixes[i]);
        let value_start = out.len();
        let written = match m.slots[i] {
            Slot::Leaf(id) => match cap.leaves[id] {
                Some(raw) => write_value(raw, col.ty, col.kind, field_cap, out),
                None => Written::Omitted,
            },
            Slot::Rest(id) => {
                let pairs = &cap.rests[id];
                if pairs.is_empty() {
                    Written::Omitted
                } else {
                    let it = pairs.iter().map(|(k, v)| (k.as_ref(), *v));
                    if push_object_text_limited(it, field_cap, out) {
                        Written::Truncated
                    } else {
                        Written::Whole
                    }
                }
            }
        };
        match written {
            Written::Omitted => out.truncate(mark),
            Written::Truncated => {
                truncations += 1;
                sizes.push(out.len() - value_start);
            }
            Written::Whole => sizes.push(out.len() - value_start),
        }
    }
    out.push(b'}');
    truncations
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
    raw: &RawValue,
    ty: ColumnType,
    kind: ColumnKind,
    field_cap: usize,
    out: &mut Vec<u8>,
) -> Written {
    let text = raw.get();
    let first = text.as_bytes().first().copied().unwrap_or(b'n');
    if first == b'n' {
        // null: the legacy API omits the property from the row; so do we.
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
            b'-' | b'0'..=b'9' if text.parse::<f64>().is_ok_and(f64::is_finite) => {
                out.extend_from_slice(text.as_bytes());
                Written::Whole
            }
            _ => Written::Omitted,
        },
        ColumnType::Int | ColumnType::Long => {
            let parsed = match first {
                b'"' => string_value(text).and_then(|s| s.trim().parse::<f64>().ok()),
                b'-' | b'0'..=b'9' => text.parse::<f64>().ok(),
                _ => None,
            };
            match parsed {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                    // Exactly representable integer: print without a fraction.
                    out.extend_from_slice(format!("{}", f as i64).as_bytes());
                    Written::Whole
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

fn write_number(f: f64, out: &mut Vec<u8>) -> Written {
    match serde_json::to_vec(&f) {
        Ok(bytes) => {
            out.extend_from_slice(&bytes);
            Written::Whole
        }
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
    let b = s.as_bytes();
    let hex: Vec<u8> = match b.len() {
        32 => b.to_vec(),
        36 => {
            if [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
                return None;
            }
            b.iter().copied().filter(|&c| c != b'-').collect()
        }
        _ => return None,
    };
    if hex.len() != 32 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut outb = [b'-'; 36];
    let mut j = 0;
    for (i, slot) in outb.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            continue;
        }
        *slot = hex[j].to_ascii_lowercase();
        j += 1;
    }
    Some(outb)
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
    }
}
