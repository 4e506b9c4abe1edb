//! A hand-written pass over JSON text that validates it as serde_json would and hands out the
//! text of values as borrowed slices, without building anything: the shared core of the
//! shipper's row builder (`shipper::rows::scan`) and the collector's page split
//! (`collector::okta::events`).
//!
//! Why not serde_json: reading a page through serde_json's visitors walks every value token by
//! token and calls back for each member; here a string is skipped with one search for its
//! closing quote or an escape ([`find`]), and a value nobody wants is skipped without building
//! anything (BENCHMARKS.md, issue 14). serde_json stays the reference: this pass accepts text
//! only when it is sure serde_json accepts it; anything it is not sure of — invalid grammar, an
//! odd escape, a control character, nesting past [`MAX_NESTING`], trailing bytes — is
//! [`Refused`], and the caller reads the text the serde_json way, which names its error exactly
//! as before. Each caller holds its own pass to serde_json's with property tests.
//!
//! What serde_json checks, and so what this pass checks (serde_json 1.0, `ignore_value` for
//! borrowed values, `parse_str` for object keys): whitespace is space, tab, LF, CR only; no
//! control character in a string; an escape is one of `\" \\ \/ \b \f \n \r \t` or `\u` and
//! four hex digits (surrogates are not paired in skipped strings; a key with an escape is
//! decoded by serde_json, which does pair them); numbers follow the JSON grammar (no range
//! check on a borrowed number: `1e999` is text); `true`/`false`/`null` exactly; no trailing
//! commas.

use std::borrow::Cow;

pub mod find;

/// Deepest nesting of arrays/objects this pass reads in a page (the page's own array counts as
/// one); past it, it refuses. What that means is the caller's: the shipper refuses such a page
/// itself (serde_json's recursion limit when it builds values is 128; the shipper checks first,
/// iteratively, so a hostile page is a clean error rather than a parser error deep inside or a
/// stack overflow), while the collector hands it to serde_json, whose borrowed `RawValue`s
/// skip nested values without a depth limit.
pub const MAX_NESTING: usize = 128;

/// Nesting level of an event object in its page (the page's array is level 1).
pub const EVENT_LEVEL: usize = 2;

/// The pass cannot vouch for the text: read it with serde_json instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

/// What a step of the pass gives: its result, or [`Refused`].
pub type Scan<T> = Result<T, Refused>;

/// A position in a JSON text, read forward.
#[derive(Debug)]
pub struct Scanner<'de> {
    text: &'de str,
    b: &'de [u8],
    /// Index of the next byte to read.
    i: usize,
}

impl<'de> Scanner<'de> {
    /// At the start of `text`.
    #[inline]
    pub fn new(text: &'de str) -> Self {
        Scanner {
            text,
            b: text.as_bytes(),
            i: 0,
        }
    }

    /// The next byte, not read.
    #[inline]
    pub fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Steps over the byte [`Scanner::peek`] saw.
    #[inline]
    pub fn bump(&mut self) {
        self.i += 1;
    }

    /// Reads the next byte.
    #[inline]
    pub fn next_byte(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    /// Reads the byte `c`, or refuses.
    #[inline]
    pub fn eat(&mut self, c: u8) -> Scan<()> {
        if self.next_byte() == Some(c) {
            Ok(())
        } else {
            Err(Refused)
        }
    }

    /// Skips JSON whitespace.
    #[inline]
    pub fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// Index of the next byte to read.
    #[inline]
    pub fn pos(&self) -> usize {
        self.i
    }

    /// Whether the whole text has been read.
    #[inline]
    pub fn at_end(&self) -> bool {
        self.i == self.b.len()
    }

    /// The text from `start` to the current position.
    #[inline]
    pub fn since(&self, start: usize) -> Scan<&'de str> {
        self.text.get(start..self.i).ok_or(Refused)
    }

    /// Skips the rest of a string whose opening quote was just read; true if it holds an
    /// escape.
    #[inline(always)]
    pub fn string(&mut self) -> Scan<bool> {
        let mut escaped = false;
        loop {
            let j = find::string_stop(self.b, self.i).ok_or(Refused)?;
            match self.b[j] {
                b'"' => {
                    self.i = j + 1;
                    break;
                }
                b'\\' => {}
                // A control byte: JSON allows none inside a string.
                _ => return Err(Refused),
            }
            escaped = true;
            self.i = match self.b.get(j + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => j + 2,
                Some(b'u') => match self.b.get(j + 2..j + 6) {
                    Some(hex) if hex.iter().all(u8::is_ascii_hexdigit) => j + 6,
                    _ => return Err(Refused),
                },
                _ => return Err(Refused),
            };
        }
        Ok(escaped)
    }

    /// Reads `"key"` and the `:` after it (whitespace around skipped); the key's text.
    #[inline]
    pub fn key(&mut self) -> Scan<Cow<'de, str>> {
        self.eat(b'"')?;
        let start = self.i;
        let escaped = self.string()?;
        let key = if escaped {
            // Rare: serde_json decodes it, with its own checks (paired surrogates).
            let literal = self.text.get(start - 1..self.i).ok_or(Refused)?;
            Cow::Owned(serde_json::from_str::<String>(literal).map_err(|_| Refused)?)
        } else {
            Cow::Borrowed(self.text.get(start..self.i - 1).ok_or(Refused)?)
        };
        self.ws();
        self.eat(b':')?;
        self.ws();
        Ok(key)
    }

    /// Skips a key whose text does not matter.
    #[inline]
    pub fn skip_key(&mut self) -> Scan<()> {
        self.eat(b'"')?;
        self.string()?;
        self.ws();
        self.eat(b':')?;
        self.ws();
        Ok(())
    }

    /// Reads the literal `word` (`true`, `false`, `null`), or refuses.
    #[inline]
    pub fn literal(&mut self, word: &[u8]) -> Scan<()> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Refused)
        }
    }

    /// Skips a number (its grammar only, as serde_json checks a number it does not convert).
    pub fn number(&mut self) -> Scan<()> {
        let digits = |s: &Self, mut i: usize| {
            while let Some(b'0'..=b'9') = s.b.get(i) {
                i += 1;
            }
            i
        };
        let mut i = self.i;
        if self.b.get(i) == Some(&b'-') {
            i += 1;
        }
        match self.b.get(i) {
            Some(b'0') => {
                i += 1;
                if let Some(b'0'..=b'9') = self.b.get(i) {
                    return Err(Refused);
                }
            }
            Some(b'1'..=b'9') => i = digits(self, i + 1),
            _ => return Err(Refused),
        }
        if self.b.get(i) == Some(&b'.') {
            let from = i + 1;
            i = digits(self, from);
            if i == from {
                return Err(Refused);
            }
        }
        if let Some(b'e' | b'E') = self.b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = self.b.get(i) {
                i += 1;
            }
            let from = i;
            i = digits(self, from);
            if i == from {
                return Err(Refused);
            }
        }
        self.i = i;
        Ok(())
    }

    /// Skips (validating) the value that starts here, held by a container at nesting `level`
    /// of the page: an array or object in it is at `level + 1`, and none may pass
    /// [`MAX_NESTING`].
    pub fn skip_value(&mut self, level: usize) -> Scan<()> {
        // The containers open inside the value, innermost in bit 0: 1 for an object. The
        // nesting limit keeps them under 128.
        let mut objects: u128 = 0;
        let mut depth = 0usize;
        loop {
            // A value starts here (whitespace skipped).
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    self.string()?;
                }
                Some(open @ (b'{' | b'[')) => {
                    if level + depth + 1 > MAX_NESTING {
                        return Err(Refused);
                    }
                    self.i += 1;
                    self.ws();
                    let object = open == b'{';
                    let close = if object { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.i += 1;
                    } else {
                        depth += 1;
                        objects = (objects << 1) | u128::from(object);
                        if object {
                            self.skip_key()?;
                        }
                        continue;
                    }
                }
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                _ => return Err(Refused),
            }
            // A value ended: close the containers it ends, or go on to the next member.
            loop {
                if depth == 0 {
                    return Ok(());
                }
                self.ws();
                let object = objects & 1 == 1;
                match self.next_byte() {
                    Some(b',') => {
                        self.ws();
                        if object {
                            self.skip_key()?;
                        }
                        break;
                    }
                    Some(b'}') if object => {}
                    Some(b']') if !object => {}
                    _ => return Err(Refused),
                }
                objects >>= 1;
                depth -= 1;
            }
        }
    }

    /// The value that starts here, skipped: its text.
    #[inline]
    pub fn value(&mut self, level: usize) -> Scan<&'de str> {
        let start = self.i;
        self.skip_value(level)?;
        self.since(start)
    }

    /// After a member's value: reads the `,` before the next member (true, whitespace after
    /// it skipped) or the object's closing `}` (false); refuses anything else.
    #[inline]
    pub fn member_end(&mut self) -> Scan<bool> {
        self.ws();
        match self.next_byte() {
            Some(b',') => {
                self.ws();
                Ok(true)
            }
            Some(b'}') => Ok(false),
            _ => Err(Refused),
        }
    }
}

/// Walks the JSON array text `text` (a page), handing the scanner to `element` at the start of
/// each element, with the element's index; `element` reads the whole element. Refuses anything
/// but one array (whitespace around it allowed).
#[inline]
pub fn for_each_element<'de>(
    text: &'de str,
    mut element: impl FnMut(&mut Scanner<'de>, usize) -> Scan<()>,
) -> Scan<()> {
    let mut s = Scanner::new(text);
    s.ws();
    s.eat(b'[')?;
    s.ws();
    if s.peek() == Some(b']') {
        s.bump();
    } else {
        let mut index = 0usize;
        loop {
            element(&mut s, index)?;
            index += 1;
            s.ws();
            match s.next_byte() {
                Some(b',') => s.ws(),
                Some(b']') => break,
                _ => return Err(Refused),
            }
        }
    }
    s.ws();
    if s.at_end() {
        Ok(())
    } else {
        Err(Refused)
    }
}

/// The members of the JSON object text `text` in document order: keys decoded, values as
/// their text, the object held at nesting `level`. `None` when this pass cannot vouch for the
/// text (the caller asks serde_json).
pub fn object_members(text: &str, level: usize) -> Option<Vec<(Cow<'_, str>, &str)>> {
    let mut s = Scanner::new(text);
    s.ws();
    s.eat(b'{').ok()?;
    s.ws();
    let mut members = Vec::new();
    if s.peek() == Some(b'}') {
        s.bump();
    } else {
        loop {
            let key = s.key().ok()?;
            members.push((key, s.value(level).ok()?));
            if !s.member_end().ok()? {
                break;
            }
        }
    }
    s.ws();
    s.at_end().then_some(members)
}
