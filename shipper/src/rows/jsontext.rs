//! Byte-level helpers over JSON text that serde_json has already validated.
//!
//! They let the row builder copy values instead of re-serialising them: a nested array such as
//! `target` goes into `target_s` as its compact text, escaped once, without building a
//! `serde_json::Value`.

use memchr::memchr2;

/// The deepest nesting of `[`/`{` in `json`, stopping early once it exceeds `limit`.
///
/// Runs before any recursive parsing so that a hostile page (thousands of nested arrays) is
/// refused with a clean error instead of reaching a recursion limit or the stack's end.
pub(crate) fn depth_exceeds(json: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&c) = json.get(i) {
        match c {
            b'"' => match skip_string(json, i + 1) {
                Some(end) => {
                    i = end;
                    continue;
                }
                None => return false, // unterminated: the parser reports it
            },
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    false
}

/// How many bytes of a string [`skip_string`] looks at one by one before handing over to
/// `memchr2`: most strings of an Okta event (keys, ids, short values) end within it, and for
/// them a plain loop beats memchr's setup cost; long values still get the vectorised search.
const SHORT_STRING: usize = 32;

/// The index just past the closing quote of the string whose contents start at `i`, stepping
/// over escapes; `None` if the string is unterminated.
fn skip_string(json: &[u8], mut i: usize) -> Option<usize> {
    let short_end = json.len().min(i.saturating_add(SHORT_STRING));
    while i < short_end {
        match json[i] {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    loop {
        let off = memchr2(b'"', b'\\', json.get(i..)?)?;
        if json[i + off] == b'"' {
            return Some(i + off + 1);
        }
        i += off + 2;
    }
}

/// Appends the compact form of the valid JSON text `raw` (whitespace outside strings removed).
pub(crate) fn push_compact(raw: &str, out: &mut Vec<u8>) {
    let b = raw.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'"' => {
                let start = i;
                i += 1;
                loop {
                    match memchr2(b'"', b'\\', b.get(i..).unwrap_or_default()) {
                        Some(off) if b[i + off] == b'\\' => i += off + 2,
                        Some(off) => {
                            i += off + 1;
                            break;
                        }
                        None => {
                            i = b.len();
                            break;
                        }
                    }
                }
                out.extend_from_slice(&b[start..i.min(b.len())]);
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
}

/// Appends the valid JSON text `raw`, compacted, as a JSON *string* literal whose value is that
/// text (what the legacy API stores in `target_s`).
///
/// One pass: outside strings whitespace is dropped and other bytes copied; each `"` and `\`
/// gets a backslash. Raw JSON text has no control characters outside escapes, so nothing else
/// needs escaping.
pub(crate) fn push_as_string(raw: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    escape_into(raw.as_bytes(), true, out);
    out.push(b'"');
}

/// Escapes `b` for the inside of a JSON string; `compact` drops whitespace outside the
/// strings of `b` (only meaningful when `b` is JSON text).
fn escape_into(b: &[u8], compact: bool, out: &mut Vec<u8>) {
    let mut in_str = false;
    let mut i = 0;
    while i < b.len() {
        if in_str {
            match memchr2(b'"', b'\\', b.get(i..).unwrap_or_default()) {
                Some(off) => {
                    out.extend_from_slice(&b[i..i + off]);
                    let j = i + off;
                    if b[j] == b'\\' {
                        // An escape inside the inner string: `\x` becomes `\\x`, and `\"`
                        // becomes `\\\"`.
                        out.extend_from_slice(b"\\\\");
                        if let Some(&next) = b.get(j + 1) {
                            if next == b'"' || next == b'\\' {
                                out.push(b'\\');
                            }
                            out.push(next);
                        }
                        i = j + 2;
                    } else {
                        out.extend_from_slice(b"\\\"");
                        in_str = false;
                        i = j + 1;
                    }
                }
                None => {
                    out.extend_from_slice(&b[i..]);
                    return;
                }
            }
        } else {
            match b[i] {
                b' ' | b'\t' | b'\n' | b'\r' if compact => {}
                b'"' => {
                    out.extend_from_slice(b"\\\"");
                    in_str = true;
                }
                c => out.push(c),
            }
            i += 1;
        }
    }
}

/// Appends `s` as a JSON string literal.
pub(crate) fn push_str_literal(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let b = s.as_bytes();
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => {
                out.extend_from_slice(&b[start..i]);
                out.extend_from_slice(format!("\\u{c:04x}").as_bytes());
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&b[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_string(raw: &str) -> String {
        let mut out = Vec::new();
        push_as_string(raw, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn embeds_json_text_as_a_string_that_decodes_to_the_compact_text() {
        let raw = r#"[ {"a" : "x\"y\\z\n", "b": [1, 2 ] , "c":"é  \u00e9"} ]"#;
        let lit = as_string(raw);
        let decoded: String = serde_json::from_str(&lit).unwrap();
        assert_eq!(decoded, r#"[{"a":"x\"y\\z\n","b":[1,2],"c":"é  \u00e9"}]"#);
        let v1: serde_json::Value = serde_json::from_str(&decoded).unwrap();
        let v2: serde_json::Value = serde_json::from_str(raw).unwrap();
        assert_eq!(v1, v2);
    }

    #[test]
    fn compacts_outside_strings_only() {
        let mut out = Vec::new();
        push_compact(r#"{ "a b" : [ 1 , "c d" ] }"#, &mut out);
        assert_eq!(out, br#"{"a b":[1,"c d"]}"#);
    }

    #[test]
    fn literal_escapes_controls() {
        let mut out = Vec::new();
        push_str_literal("a\"b\\c\u{1}\n", &mut out);
        let back: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, "a\"b\\c\u{1}\n");
    }

    #[test]
    fn depth_scan_ignores_brackets_in_strings() {
        assert!(!depth_exceeds(br#"[{"a":"[[[[[[\"[["}]"#, 3));
        assert!(depth_exceeds(b"[[[[", 3));
        assert!(!depth_exceeds(b"[[[]]]", 3));
    }
}
