//! Byte-level helpers over JSON text that serde_json has already validated.
//!
//! They let the row builder copy values instead of re-serialising them: a nested array such as
//! `target` goes into `target_s` as its compact text, escaped once, without building a
//! `serde_json::Value`.
//!
//! Why not serde_json's own escaping (issue 10 asked): serde_json escapes a `&str` it is
//! serialising, but what is written here is JSON *text* put inside a string — compacted and
//! escaped in the same pass, straight from the page's bytes — which serde_json can only do by
//! parsing it into a `Value` and serialising it twice. That pass is a measured hot path of the
//! shipper (BENCHMARKS.md, issue 14), and the golden, property and fuzz tests pin its output.

use common::json_scan::find;

/// The deepest nesting of `[`/`{` in `json`, stopping early once it exceeds `limit`.
///
/// Runs before any recursive parsing so that a hostile page (thousands of nested arrays) is
/// refused with a clean error instead of reaching a recursion limit or the stack's end.
///
/// It reads every byte of the page, so it works on 64-byte blocks: bit masks of quotes,
/// backslashes and brackets (loops the compiler vectorises), then which bytes are inside a
/// string is the prefix XOR of the quote mask — no per-quote branching — and only brackets
/// outside strings are visited. A block with a backslash (rare in Okta events), or right after
/// one, goes byte by byte through [`DepthScan::step`] instead, which is the definition.
pub(crate) fn depth_exceeds(json: &[u8], limit: usize) -> bool {
    let mut scan = DepthScan {
        depth: 0,
        limit,
        in_string: false,
        next: 0,
    };
    let mut blocks = json.chunks_exact(64);
    for (k, block) in blocks.by_ref().enumerate() {
        let base = k * 64;
        let masks = BlockMasks::of(block);
        if masks.backslashes == 0 && scan.next <= base {
            // Bit i of `inside`: byte i is in a string (an opening quote counts as inside, a
            // closing one as outside; neither is a bracket).
            let carried = if scan.in_string { !0 } else { 0 };
            let inside = prefix_xor(masks.quotes) ^ carried;
            scan.in_string = inside >> 63 == 1;
            let mut brackets = masks.brackets & !inside;
            while brackets != 0 {
                let j = brackets.trailing_zeros() as usize;
                brackets &= brackets - 1;
                if scan.bracket(block[j]) {
                    return true;
                }
            }
        } else {
            let mut mask = masks.quotes | masks.backslashes | masks.brackets;
            while mask != 0 {
                let j = mask.trailing_zeros() as usize;
                mask &= mask - 1;
                if scan.step(base + j, block[j]) {
                    return true;
                }
            }
        }
    }
    let base = json.len() - blocks.remainder().len();
    for (j, &c) in blocks.remainder().iter().enumerate() {
        if scan.step(base + j, c) {
            return true;
        }
    }
    false
}

/// Which bytes of a 64-byte block are quotes, backslashes, brackets (`[` `]` `{` `}`).
struct BlockMasks {
    quotes: u64,
    backslashes: u64,
    brackets: u64,
}

impl BlockMasks {
    fn of(block: &[u8]) -> Self {
        let mut m = BlockMasks {
            quotes: 0,
            backslashes: 0,
            brackets: 0,
        };
        // 16 bytes at a time into `u16`s, one plain comparison per mask: the shape the compiler
        // turns into vector compares. (Measured: a 64-lane loop into a `u64`, or one mask made
        // of two comparisons, is not vectorised and makes the whole scan 4× slower.)
        for (n, sub) in block.chunks_exact(16).enumerate() {
            let (mut q, mut b, mut open, mut close) = (0u16, 0u16, 0u16, 0u16);
            for (j, &c) in sub.iter().enumerate() {
                q |= u16::from(c == b'"') << j;
                b |= u16::from(c == b'\\') << j;
                // Clearing bit 5 folds `{` `}` onto `[` `]`.
                open |= u16::from(c & 0xDF == b'[') << j;
                close |= u16::from(c & 0xDF == b']') << j;
            }
            m.quotes |= u64::from(q) << (16 * n);
            m.backslashes |= u64::from(b) << (16 * n);
            m.brackets |= u64::from(open | close) << (16 * n);
        }
        m
    }
}

/// Bit i of the result is the XOR of bits `0..=i` of `x`.
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// The state of [`depth_exceeds`] between the bytes that matter.
struct DepthScan {
    depth: usize,
    limit: usize,
    in_string: bool,
    /// Bytes before this index are inert (the byte after a `\` in a string).
    next: usize,
}

impl DepthScan {
    /// Takes byte `c` at index `i` (visited in increasing order; bytes other than quotes,
    /// backslashes and brackets are no-ops); true once too deep.
    fn step(&mut self, i: usize, c: u8) -> bool {
        if i < self.next {
            return false;
        }
        if self.in_string {
            match c {
                b'"' => self.in_string = false,
                b'\\' => self.next = i + 2,
                _ => {}
            }
            return false;
        }
        match c {
            b'"' => {
                self.in_string = true;
                false
            }
            _ => self.bracket(c),
        }
    }

    /// Takes byte `c` outside strings; only brackets change the depth.
    fn bracket(&mut self, c: u8) -> bool {
        match c {
            b'[' | b'{' => {
                self.depth += 1;
                self.depth > self.limit
            }
            b']' | b'}' => {
                self.depth = self.depth.saturating_sub(1);
                false
            }
            _ => false,
        }
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
                    match find::quote_or_backslash(b, i) {
                        Some(j) if b[j] == b'\\' => i = j + 2,
                        Some(j) => {
                            i = j + 1;
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
    escape_json_text(raw.as_bytes(), out);
    out.push(b'"');
}

/// Appends the valid JSON text `b`, compacted (whitespace outside its strings dropped), escaped
/// for the inside of a JSON string literal (the caller writes the quotes): a piece of what
/// [`push_as_string`] writes.
///
/// Inside a string, the bytes up to the next `"` or `\\` ([`find`]) are copied in one piece;
/// outside one (structure, numbers and literals: a byte or two between strings) byte by byte,
/// which costs less there than a search and a copy (measured).
pub(crate) fn escape_json_text(b: &[u8], out: &mut Vec<u8>) {
    let mut in_str = false;
    let mut i = 0;
    while i < b.len() {
        if in_str {
            match find::quote_or_backslash(b, i) {
                Some(j) => {
                    out.extend_from_slice(&b[i..j]);
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
                b' ' | b'\t' | b'\n' | b'\r' => {}
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
    // Most strings (column names, keys) need no escape: one test the compiler vectorises,
    // then one copy, instead of a branch on every byte (≈ 600 instructions a name before).
    let special = b.iter().fold(false, |found, &c| {
        found | (c < 0x20) | (c == b'"') | (c == b'\\')
    });
    if !special {
        out.extend_from_slice(b);
        out.push(b'"');
        return;
    }
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

    /// Pseudo-random texts over an alphabet of the bytes that matter (xorshift: the same texts
    /// in every run).
    struct Texts {
        alphabet: &'static [u8],
        seed: u64,
    }

    impl Texts {
        fn new(alphabet: &'static [u8], seed: u64) -> Self {
            Texts { alphabet, seed }
        }

        fn next(&mut self, len: usize) -> Vec<u8> {
            (0..len)
                .map(|_| {
                    self.seed ^= self.seed << 13;
                    self.seed ^= self.seed >> 7;
                    self.seed ^= self.seed << 17;
                    self.alphabet[(self.seed % self.alphabet.len() as u64) as usize]
                })
                .collect()
        }
    }

    /// The byte-by-byte definition [`escape_json_text`] must agree with.
    fn escape_reference(b: &[u8], out: &mut Vec<u8>) {
        let (mut in_str, mut i) = (false, 0);
        while let Some(&c) = b.get(i) {
            match (in_str, c) {
                (false, b' ' | b'\t' | b'\n' | b'\r') => {}
                (_, b'"') => {
                    out.extend_from_slice(b"\\\"");
                    in_str = !in_str;
                }
                (true, b'\\') => {
                    out.extend_from_slice(b"\\\\");
                    if let Some(&escaped) = b.get(i + 1) {
                        if escaped == b'"' || escaped == b'\\' {
                            out.push(b'\\');
                        }
                        out.push(escaped);
                    }
                    i += 1;
                }
                (_, c) => out.push(c),
            }
            i += 1;
        }
    }

    #[test]
    fn escaping_agrees_with_the_byte_by_byte_definition() {
        // Pseudo-random texts over the bytes that matter (valid JSON or not), of lengths
        // around the 16-byte search block and the inline limit.
        let mut texts = Texts::new(b"\\\"ab \t\n\r{:}[,]1", 0x2545_F491_4F6C_DD1D);
        for round in 0..6000 {
            let text = texts.next(round % 150);
            let (mut got, mut want) = (Vec::new(), Vec::new());
            escape_json_text(&text, &mut got);
            escape_reference(&text, &mut want);
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "{:?}",
                String::from_utf8_lossy(&text)
            );
        }
    }

    #[test]
    fn compacts_outside_strings_only() {
        let mut out = Vec::new();
        push_compact(r#"{ "a b" : [ 1 , "c d" ] }"#, &mut out);
        assert_eq!(out, br#"{"a b":[1,"c d"]}"#);
    }

    /// With or without characters to escape, the literal is the one serde_json writes.
    #[test]
    fn literals_match_serde_json() {
        for s in [
            "",
            "transaction_detail_requestApiTokenId_s",
            "é \u{7f} ok",
            "tab\there",
            "q\"",
            "\\",
            "\u{1f}x",
        ] {
            let mut out = Vec::new();
            push_str_literal(s, &mut out);
            assert_eq!(
                String::from_utf8_lossy(&out),
                serde_json::to_string(s).unwrap(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn literal_escapes_controls() {
        let mut out = Vec::new();
        push_str_literal("a\"b\\c\u{1}\n", &mut out);
        let back: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, "a\"b\\c\u{1}\n");
    }

    /// The byte-by-byte definition [`depth_exceeds`] must agree with.
    fn depth_reference(json: &[u8], limit: usize) -> bool {
        let (mut depth, mut in_string, mut i) = (0usize, false, 0);
        while let Some(&c) = json.get(i) {
            match (in_string, c) {
                (true, b'"') => in_string = false,
                (true, b'\\') => i += 1,
                (false, b'"') => in_string = true,
                (false, b'[' | b'{') => {
                    depth += 1;
                    if depth > limit {
                        return true;
                    }
                }
                (false, b']' | b'}') => depth = depth.saturating_sub(1),
                _ => {}
            }
            i += 1;
        }
        false
    }

    #[test]
    fn depth_scan_agrees_with_the_byte_by_byte_definition() {
        // Pseudo-random texts over the bytes that matter, of lengths around the 64-byte block,
        // so that strings, escapes and brackets straddle block boundaries.
        let mut texts = Texts::new(b"[]{}\\\"|a ", 0x9E37_79B9_7F4A_7C15);
        for round in 0..4000 {
            let text = texts.next(round % 200);
            for limit in [0, 1, 2, 3, 5, 8] {
                assert_eq!(
                    depth_exceeds(&text, limit),
                    depth_reference(&text, limit),
                    "{:?} limit {limit}",
                    String::from_utf8_lossy(&text)
                );
            }
        }
        // A long string hiding brackets, an escaped quote right at a block boundary.
        let mut text = b"[\"".to_vec();
        text.extend(std::iter::repeat_n(b'[', 61));
        text.extend_from_slice(b"\\\"[[[[\"]");
        assert!(!depth_exceeds(&text, 1));
        assert!(depth_exceeds(b"[\"\\\\\"[[", 2));
    }

    #[test]
    fn depth_scan_ignores_brackets_in_strings() {
        assert!(!depth_exceeds(br#"[{"a":"[[[[[[\"[["}]"#, 3));
        assert!(depth_exceeds(b"[[[[", 3));
        assert!(!depth_exceeds(b"[[[]]]", 3));
    }
}
