//! A strict JSON scanner for the common case: records without escapes in their strings,
//! integers of at most 18 digits, nesting within [`MAX_DEPTH`]. It walks the bytes once,
//! interning keys and buffering the same events as the serde path, about twice as fast.
//! Anything else (an escape, a control character, a long or negative-zero integer, deep
//! arrays, or any syntax error) makes it give up, and the record is parsed again by the
//! serde path, which decides. Numbers with a fraction or an exponent are read here with
//! Rust's `f64` parser (correctly rounded); one beyond `f64`'s range is valid JSON and
//! reads as infinite, where serde would refuse the record.

use super::schema::{Event, Schema, MAX_DEPTH};

/// What the scanner made of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scan {
    /// A JSON object; its events are buffered.
    Object,
    /// JSON that is not an object.
    NotObject,
    /// Not decided here: parse with serde.
    GiveUp,
}

/// The position of the first `"`, `\\` or control character in `bytes`, eight bytes at a
/// time (SWAR: a byte equal to `c` is a zero byte of `word ^ c·0x01…`, a byte below
/// 0x20 one whose high bit `word − 0x20·0x01…` sets and `word` does not; the lowest
/// flagged byte is exact).
#[inline]
fn special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in chunks.by_ref() {
        let Ok(word) = <[u8; 8]>::try_from(chunk).map(u64::from_le_bytes) else { break };
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let flags = (quote.wrapping_sub(ONES) & !quote) | (backslash.wrapping_sub(ONES) & !backslash) | (word.wrapping_sub(ONES * 0x20) & !word);
        let flags = flags & HIGHS;
        if flags != 0 {
            return Some(at + (flags.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks.remainder().iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20).map(|p| at + p)
}

/// A number as the scanner reads it.
enum Number {
    Int(i64),
    Float(f64),
}

/// Deepest array nesting skipped here.
const MAX_SKIP_DEPTH: u32 = 64;

struct Scanner<'a, 'b> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    schema: &'b mut Schema,
    events: &'b mut Vec<Event>,
    out: &'b mut String,
    /// Whether every field is interned (and a value beyond the schema's room is
    /// [`Event::Dropped`]), or only the fields already interned are read.
    full: bool,
}

/// Scans `text` (valid UTF-8), pushing events and string values into `events` and `out`;
/// `full`: every field, else only those the schema holds.
pub(crate) fn scan(text: &str, schema: &mut Schema, events: &mut Vec<Event>, out: &mut String, full: bool) -> Scan {
    let mut s = Scanner { text, bytes: text.as_bytes(), at: 0, schema, events, out, full };
    s.ws();
    let result = if s.peek() == Some(b'{') {
        s.at += 1;
        s.object(None, 0).map(|_| Scan::Object)
    } else {
        s.skip(0).map(|_| Scan::NotObject)
    };
    s.ws();
    match result {
        Some(scan) if s.at == s.bytes.len() => scan,
        _ => Scan::GiveUp,
    }
}

impl Scanner<'_, '_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.at += 1;
        }
    }

    #[inline]
    fn eat(&mut self, byte: u8) -> Option<()> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Some(())
        } else {
            None
        }
    }

    /// A string without escapes or control characters, after its opening quote: its byte
    /// range (quotes excluded).
    #[inline]
    fn string(&mut self) -> Option<(usize, usize)> {
        let start = self.at;
        let rest = self.bytes.get(start..)?;
        let len = special(rest)?;
        if rest[len] != b'"' {
            return None;
        }
        self.at = start + len + 1;
        Some((start, start + len))
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.bytes.get(self.at..self.at + word.len())? == word {
            self.at += word.len();
            Some(())
        } else {
            None
        }
    }

    /// A number: an integer of at most 18 digits (not `-0`), or one with a fraction or an
    /// exponent (as `f64`; beyond its range, infinite: valid JSON all the same). Longer
    /// integers and `-0` give up, for serde to read as it reads them.
    fn number(&mut self) -> Option<Number> {
        let start = self.at;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        let digits_at = self.at;
        let digits = self.bytes.get(digits_at..)?.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || (digits > 1 && self.bytes[digits_at] == b'0') {
            return None;
        }
        self.at += digits;
        let mut float = false;
        if self.peek() == Some(b'.') {
            self.at += 1;
            let fraction = self.bytes.get(self.at..)?.iter().take_while(|c| c.is_ascii_digit()).count();
            if fraction == 0 {
                return None;
            }
            self.at += fraction;
            float = true;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            let exponent = self.bytes.get(self.at..)?.iter().take_while(|c| c.is_ascii_digit()).count();
            if exponent == 0 {
                return None;
            }
            self.at += exponent;
            float = true;
        }
        if float {
            return self.text.get(start..self.at)?.parse::<f64>().ok().map(Number::Float);
        }
        if digits > 18 {
            return None;
        }
        let mut n: i64 = 0;
        for &c in &self.bytes[digits_at..digits_at + digits] {
            n = n * 10 + i64::from(c - b'0');
        }
        if negative {
            if n == 0 {
                return None;
            }
            n = -n;
        }
        Some(Number::Int(n))
    }

    /// The entries of an object after its `{`, under `parent`; returns whether it was empty.
    fn object(&mut self, parent: Option<u32>, depth: u32) -> Option<bool> {
        self.ws();
        if self.eat(b'}').is_some() {
            return Some(true);
        }
        loop {
            self.ws();
            self.eat(b'"')?;
            let (a, b) = self.string()?;
            let key = self.text.get(a..b)?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            match self.schema.child(parent, key, self.full) {
                Some(field) => self.value(field, depth + 1)?,
                None => {
                    self.skip(depth + 1)?;
                    if self.full {
                        self.events.push(Event::Dropped);
                    }
                }
            }
            self.ws();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(false);
                }
                _ => return None,
            }
        }
    }

    /// The value of `field` at nesting `depth`.
    fn value(&mut self, field: u32, depth: u32) -> Option<()> {
        match self.peek()? {
            b'"' => {
                self.at += 1;
                let (a, b) = self.string()?;
                let start = u32::try_from(self.out.len()).ok()?;
                self.out.push_str(self.text.get(a..b)?);
                let end = u32::try_from(self.out.len()).ok()?;
                self.events.push(Event::Str(field, start, end));
            }
            b'{' => {
                self.at += 1;
                let children = u32::try_from(self.events.len()).ok()?;
                let empty = if depth >= MAX_DEPTH {
                    self.at -= 1;
                    let empty = self.skip(depth)?;
                    if !empty {
                        self.events.push(Event::TooDeep);
                    }
                    empty
                } else {
                    self.object(Some(field), depth)?
                };
                self.events.push(Event::Object(field, empty, children));
            }
            b'[' => {
                let empty = self.skip(depth)?;
                self.events.push(Event::Array(field, empty));
            }
            b't' => {
                self.literal(b"true")?;
                self.events.push(Event::Bool(field, true));
            }
            b'f' => {
                self.literal(b"false")?;
                self.events.push(Event::Bool(field, false));
            }
            b'n' => {
                self.literal(b"null")?;
                self.events.push(Event::Null(field));
            }
            b'-' | b'0'..=b'9' => match self.number()? {
                Number::Int(n) => self.events.push(Event::Int(field, n)),
                Number::Float(x) => self.events.push(Event::Float(field, x)),
            },
            _ => return None,
        }
        Some(())
    }

    /// Checks and skips any value; returns whether it was an empty array or object.
    fn skip(&mut self, depth: u32) -> Option<bool> {
        if depth > MAX_SKIP_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => {
                self.at += 1;
                self.string()?;
            }
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            b'-' | b'0'..=b'9' => {
                self.number()?;
            }
            open @ (b'[' | b'{') => {
                self.at += 1;
                let close = if open == b'[' { b']' } else { b'}' };
                self.ws();
                if self.eat(close).is_some() {
                    return Some(true);
                }
                loop {
                    self.ws();
                    if open == b'{' {
                        self.eat(b'"')?;
                        self.string()?;
                        self.ws();
                        self.eat(b':')?;
                        self.ws();
                    }
                    self.skip(depth + 1)?;
                    self.ws();
                    match self.peek()? {
                        b',' => self.at += 1,
                        c if c == close => {
                            self.at += 1;
                            return Some(false);
                        }
                        _ => return None,
                    }
                }
            }
            _ => return None,
        }
        Some(false)
    }
}

#[cfg(test)]
mod tests {
    use super::special;

    /// The word-at-a-time search finds what a byte-at-a-time one finds, at every offset.
    #[test]
    fn special_bytes_are_found_as_one_at_a_time_would() {
        let naive = |b: &[u8]| b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let alphabet = [b'a', b'"', b'\\', 0x00, 0x1f, 0x20, 0x21, 0x7f, 0x80, 0xc3, 0xff, b'z'];
        for len in 0..40 {
            for _ in 0..200 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                        // Mostly plain letters, so the special byte lands anywhere.
                        let pick = (state >> 33) as usize % (alphabet.len() * 4);
                        alphabet.get(pick).copied().unwrap_or(b'q')
                    })
                    .collect();
                assert_eq!(special(&bytes), naive(&bytes), "{bytes:?}");
            }
        }
    }
}
