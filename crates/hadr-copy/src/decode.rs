//! Rows out of COPY input, fed in arbitrary pieces.
//!
//! The rules are PostgreSQL 15's (its copyfromparse.c): in text format a
//! row ends at an unescaped newline (`\n`, `\r\n` or `\r`), fields are split
//! at the delimiter, `\b \f \n \r \t \v`, octal `\NNN` and hex `\xHH` are
//! decoded, any other escaped byte stands for itself, and a field is NULL
//! when its text as written equals the NULL string; in CSV a quoted field
//! may hold delimiters and newlines, the escape byte (the quote by default)
//! makes the next quote literal, and only an unquoted field can be NULL.
//! In both, a line that is just `\.` ends the data.

use crate::options::{Format, Options};

/// The longest row accepted: a row still incomplete after this many bytes
/// is refused rather than buffered without bound.
pub const MAX_ROW_BYTES: usize = 256 << 20;

/// Why the input cannot be read as rows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Escapes decoded to bytes that are not UTF-8.
    #[error("invalid byte sequence for encoding \"UTF8\"")]
    Utf8 {
        /// Line of the row.
        line: u64,
    },
    /// CSV input ended inside quotes.
    #[error("unterminated CSV quoted field")]
    UnterminatedQuote {
        /// Line where the row started.
        line: u64,
    },
    /// `\.` followed by something other than the end of its line.
    #[error("end-of-copy marker corrupt")]
    MarkerCorrupt {
        /// Line of the marker.
        line: u64,
    },
    /// A row longer than [`MAX_ROW_BYTES`].
    #[error("row is longer than {} bytes", MAX_ROW_BYTES)]
    RowTooLong {
        /// Line where the row started.
        line: u64,
    },
}

impl DecodeError {
    /// Input line the error is about (1-based).
    pub fn line(&self) -> u64 {
        match self {
            DecodeError::Utf8 { line }
            | DecodeError::UnterminatedQuote { line }
            | DecodeError::MarkerCorrupt { line }
            | DecodeError::RowTooLong { line } => *line,
        }
    }

    /// The SQLSTATE a client gets.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            DecodeError::Utf8 { .. } => "22021",
            DecodeError::UnterminatedQuote { .. } | DecodeError::MarkerCorrupt { .. } => "22P04",
            DecodeError::RowTooLong { .. } => "54000",
        }
    }
}

/// One decoded row; reused from row to row to save allocations.
#[derive(Debug, Default)]
pub struct Row {
    /// The fields' bytes while the row is decoded.
    data: Vec<u8>,
    /// The same once checked to be UTF-8 (see [`Row::finish`]).
    text: String,
    /// (start, end) in `text`; None: NULL.
    fields: Vec<Option<(usize, usize)>>,
    line: u64,
}

impl Row {
    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the row has no fields (never, once decoded).
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Field `i` as text; None for NULL (or past the end).
    pub fn field(&self, i: usize) -> Option<&str> {
        let (s, e) = self.fields.get(i).copied().flatten()?;
        self.text.get(s..e)
    }

    /// Whether field `i` is NULL.
    pub fn is_null(&self, i: usize) -> bool {
        matches!(self.fields.get(i), Some(None))
    }

    /// Line the row started on (1-based).
    pub fn line(&self) -> u64 {
        self.line
    }

    fn clear(&mut self, line: u64) {
        if self.data.capacity() == 0 {
            self.data = std::mem::take(&mut self.text).into_bytes();
        }
        self.data.clear();
        self.text.clear();
        self.fields.clear();
        self.line = line;
    }

    fn end_field(&mut self, start: usize, null: bool) {
        if null {
            self.data.truncate(start);
            self.fields.push(None);
        } else {
            self.fields.push(Some((start, self.data.len())));
        }
    }

    /// Check the decoded bytes once for the whole row (escapes can make
    /// any byte), and that no field boundary splits a character.
    fn finish(&mut self) -> Result<(), DecodeError> {
        let bytes = std::mem::take(&mut self.data);
        match String::from_utf8(bytes) {
            Ok(t) => self.text = t,
            Err(e) => {
                self.data = e.into_bytes();
                return Err(DecodeError::Utf8 { line: self.line });
            }
        }
        let split = self
            .fields
            .iter()
            .flatten()
            .any(|&(s, e)| !(self.text.is_char_boundary(s) && self.text.is_char_boundary(e)));
        if split {
            return Err(DecodeError::Utf8 { line: self.line });
        }
        Ok(())
    }
}

/// Decodes COPY input into rows as it arrives.
#[derive(Debug)]
pub struct Decoder {
    format: Format,
    delimiter: u8,
    null: Vec<u8>,
    quote: u8,
    escape: u8,
    force_not_null: Vec<bool>,
    force_null: Vec<bool>,
    buf: Vec<u8>,
    pos: usize,
    /// Lines consumed so far.
    line: u64,
    done: bool,
}

/// What looking for the next row found.
enum Scan {
    /// A row ending at this offset.
    Row(usize),
    /// The input so far ends inside a row.
    More,
}

impl Decoder {
    /// A decoder for `o`; `force_not_null` and `force_null` say, per input
    /// column, whether those CSV options name it.
    pub fn new(o: &Options, force_not_null: Vec<bool>, force_null: Vec<bool>) -> Decoder {
        Decoder {
            format: o.format,
            delimiter: o.delimiter,
            null: o.null.clone().into_bytes(),
            quote: o.quote,
            escape: o.escape,
            force_not_null,
            force_null,
            buf: Vec::new(),
            pos: 0,
            line: 0,
            done: false,
        }
    }

    /// Add input bytes.
    pub fn feed(&mut self, data: &[u8]) {
        if self.done {
            return;
        }
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Whether the `\.` end marker was seen (later input is ignored).
    pub fn finished(&self) -> bool {
        self.done
    }

    /// Decode the next complete row into `row`. Ok(false): no complete row
    /// in the input so far; with `at_end` (the input is over) a last line
    /// without a newline counts as complete.
    pub fn next_row(&mut self, row: &mut Row, at_end: bool) -> Result<bool, DecodeError> {
        if self.done || self.pos >= self.buf.len() {
            return Ok(false);
        }
        let first_line = self.line + 1;
        row.clear(first_line);
        let scan = match self.format {
            Format::Text => self.text_row(row, at_end)?,
            Format::Csv => self.csv_row(row, at_end)?,
        };
        match scan {
            Scan::More => {
                if self.buf.len() - self.pos > MAX_ROW_BYTES {
                    return Err(DecodeError::RowTooLong { line: first_line });
                }
                Ok(false)
            }
            Scan::Row(next) => {
                self.pos = next;
                if self.done {
                    return Ok(false);
                }
                row.finish()?;
                Ok(true)
            }
        }
    }

    /// Where the line starting at `from` ends: (end of content, start of
    /// the next line), skipping backslash-escaped bytes in text format.
    fn line_end(&self, from: usize, at_end: bool, escapes: bool) -> Option<(usize, usize)> {
        let b = &self.buf;
        let mut i = from;
        while i < b.len() {
            // Straight to the next byte that matters.
            let next = if escapes {
                memchr::memchr3(b'\\', b'\n', b'\r', &b[i..])
            } else {
                memchr::memchr2(b'\n', b'\r', &b[i..])
            };
            let Some(k) = next else {
                break;
            };
            i += k;
            match b[i] {
                b'\\' if escapes => i += 2,
                b'\n' => return Some((i, i + 1)),
                b'\r' => {
                    return match b.get(i + 1) {
                        Some(b'\n') => Some((i, i + 2)),
                        Some(_) => Some((i, i + 1)),
                        None if at_end => Some((i, i + 1)),
                        None => None,
                    }
                }
                _ => i += 1,
            }
        }
        at_end.then_some((b.len(), b.len()))
    }

    fn text_row(&mut self, row: &mut Row, at_end: bool) -> Result<Scan, DecodeError> {
        let Some((end, next)) = self.line_end(self.pos, at_end, true) else {
            return Ok(Scan::More);
        };
        self.line += 1;
        let line = self.line;
        let content = &self.buf[self.pos..end.min(self.buf.len())];
        if content == b"\\." {
            self.done = true;
            return Ok(Scan::Row(next));
        }
        if content.starts_with(b"\\.") {
            return Err(DecodeError::MarkerCorrupt { line });
        }
        self.split_text(content, row);
        Ok(Scan::Row(next))
    }

    fn split_text(&self, content: &[u8], row: &mut Row) {
        let delim = self.delimiter;
        let mut raw_start = 0;
        let mut start = row.data.len();
        let mut i = 0;
        loop {
            // A run of plain bytes is copied whole.
            let run = content[i..]
                .iter()
                .position(|&c| c == delim || c == b'\\')
                .unwrap_or(content.len() - i);
            row.data.extend_from_slice(&content[i..i + run]);
            i += run;
            if i == content.len() || content[i] == delim {
                let null = content[raw_start..i] == self.null[..];
                row.end_field(start, null);
                if i == content.len() {
                    return;
                }
                i += 1;
                raw_start = i;
                start = row.data.len();
                continue;
            }
            // A backslash.
            let Some(&e) = content.get(i + 1) else {
                row.data.push(b'\\');
                i += 1;
                continue;
            };
            i += 2;
            match e {
                b'b' => row.data.push(8),
                b'f' => row.data.push(12),
                b'n' => row.data.push(b'\n'),
                b'r' => row.data.push(b'\r'),
                b't' => row.data.push(b'\t'),
                b'v' => row.data.push(11),
                b'0'..=b'7' => {
                    let mut v = u32::from(e - b'0');
                    for _ in 0..2 {
                        match content.get(i) {
                            Some(d @ b'0'..=b'7') => {
                                v = v * 8 + u32::from(d - b'0');
                                i += 1;
                            }
                            _ => break,
                        }
                    }
                    row.data.push((v & 0xff) as u8);
                }
                b'x' if content.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                    let mut v = 0u8;
                    for _ in 0..2 {
                        match content.get(i).and_then(|d| char::from(*d).to_digit(16)) {
                            Some(d) => {
                                v = v * 16 + d as u8;
                                i += 1;
                            }
                            None => break,
                        }
                    }
                    row.data.push(v);
                }
                other => row.data.push(other),
            }
        }
    }

    fn csv_row(&mut self, row: &mut Row, at_end: bool) -> Result<Scan, DecodeError> {
        let first_line = self.line + 1;
        // The end marker is a line of its own, unquoted.
        if self.buf[self.pos..].starts_with(b"\\.") {
            if let Some((end, next)) = self.line_end(self.pos, at_end, false) {
                if self.buf[self.pos..end] == b"\\."[..] {
                    self.line += 1;
                    self.done = true;
                    return Ok(Scan::Row(next));
                }
            }
        }
        let b = &self.buf;
        let (q, esc, delim) = (self.quote, self.escape, self.delimiter);
        let mut i = self.pos;
        let mut lines = 0u64;
        let mut col = 0;
        loop {
            // One field.
            let start = row.data.len();
            let raw_start = i;
            let mut quoted = false;
            let mut in_quotes = false;
            let ended_row;
            loop {
                let Some(&c) = b.get(i) else {
                    if !at_end {
                        return Ok(Scan::More);
                    }
                    if in_quotes {
                        return Err(DecodeError::UnterminatedQuote { line: first_line });
                    }
                    ended_row = (i, i);
                    break;
                };
                if in_quotes {
                    // A run of plain quoted bytes goes in whole.
                    let run = b[i..]
                        .iter()
                        .position(|&x| x == q || x == esc || x == b'\n' || x == b'\r')
                        .unwrap_or(b.len() - i);
                    if run > 0 {
                        row.data.extend_from_slice(&b[i..i + run]);
                        i += run;
                        continue;
                    }
                    if c == esc && esc != q {
                        match b.get(i + 1) {
                            Some(&n) if n == q || n == esc => {
                                row.data.push(n);
                                i += 2;
                                continue;
                            }
                            None if !at_end => return Ok(Scan::More),
                            _ => {}
                        }
                    }
                    if c == q {
                        if esc == q {
                            match b.get(i + 1) {
                                Some(&n) if n == q => {
                                    row.data.push(q);
                                    i += 2;
                                    continue;
                                }
                                None if !at_end => return Ok(Scan::More),
                                _ => {}
                            }
                        }
                        in_quotes = false;
                        i += 1;
                        continue;
                    }
                    if c == b'\n' || (c == b'\r' && b.get(i + 1) != Some(&b'\n')) {
                        lines += 1;
                    }
                    row.data.push(c);
                    i += 1;
                    continue;
                }
                if c == delim {
                    ended_row = (i, usize::MAX);
                    break;
                }
                if c == b'\n' {
                    ended_row = (i, i + 1);
                    break;
                }
                if c == b'\r' {
                    match b.get(i + 1) {
                        Some(b'\n') => ended_row = (i, i + 2),
                        Some(_) => ended_row = (i, i + 1),
                        None if at_end => ended_row = (i, i + 1),
                        None => return Ok(Scan::More),
                    }
                    break;
                }
                if c == q {
                    quoted = true;
                    in_quotes = true;
                    i += 1;
                    continue;
                }
                // A run of plain unquoted bytes goes in whole.
                let run = b[i..]
                    .iter()
                    .position(|&x| x == delim || x == q || x == b'\n' || x == b'\r')
                    .unwrap_or(b.len() - i);
                row.data.extend_from_slice(&b[i..i + run.max(1)]);
                i += run.max(1);
            }
            let (raw_end, next) = ended_row;
            let raw = &b[raw_start..raw_end];
            let force_not_null = self.force_not_null.get(col).copied().unwrap_or(false);
            let force_null = self.force_null.get(col).copied().unwrap_or(false);
            let null = if quoted {
                force_null && row.data[start..] == self.null[..]
            } else {
                !force_not_null && raw == &self.null[..]
            };
            row.end_field(start, null);
            col += 1;
            if next == usize::MAX {
                i = raw_end + 1;
                continue;
            }
            self.line += 1 + lines;
            return Ok(Scan::Row(next));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{OptValue, Options};

    fn opts(csv: bool, extra: &[(&str, &str)]) -> Options {
        let mut pairs: Vec<(String, OptValue)> = extra
            .iter()
            .map(|(n, v)| (n.to_string(), OptValue::Word(v.to_string())))
            .collect();
        if csv {
            pairs.push(("format".into(), OptValue::Word("csv".into())));
        }
        Options::build(true, &pairs).unwrap()
    }

    /// Every row, as fields (None = NULL), feeding `input` in pieces of `step` bytes.
    fn rows(
        o: &Options,
        input: &[u8],
        step: usize,
    ) -> Result<Vec<Vec<Option<String>>>, DecodeError> {
        let mut d = Decoder::new(o, vec![], vec![]);
        let mut out = Vec::new();
        let mut row = Row::default();
        for piece in input.chunks(step.max(1)) {
            d.feed(piece);
            while d.next_row(&mut row, false)? {
                out.push(
                    (0..row.len())
                        .map(|i| row.field(i).map(str::to_string))
                        .collect(),
                );
            }
        }
        while d.next_row(&mut row, true)? {
            out.push(
                (0..row.len())
                    .map(|i| row.field(i).map(str::to_string))
                    .collect(),
            );
        }
        Ok(out)
    }

    fn s(v: &[Option<&str>]) -> Vec<Option<String>> {
        v.iter().map(|x| x.map(str::to_string)).collect()
    }

    #[test]
    fn text_escapes_nulls_and_the_end_marker() {
        let o = opts(false, &[]);
        let input = b"1\ta\\tb\t\\N\n2\t\\x41\\101\\\\\t\r\n3\tlast\tx\n\\.\nignored\n";
        for step in [1, 2, 3, 7, 100] {
            let r = rows(&o, input, step).unwrap();
            assert_eq!(
                r,
                vec![
                    s(&[Some("1"), Some("a\tb"), None]),
                    s(&[Some("2"), Some("AA\\"), Some("")]),
                    s(&[Some("3"), Some("last"), Some("x")]),
                ],
                "step {step}"
            );
        }
        // A last line without a newline still counts; an escaped newline is data.
        assert_eq!(
            rows(&o, b"a\\\nb\tc", 4).unwrap(),
            vec![s(&[Some("a\nb"), Some("c")])]
        );
        assert_eq!(rows(&o, b"\n", 1).unwrap(), vec![s(&[Some("")])]);
    }

    #[test]
    fn text_errors_name_their_line() {
        let o = opts(false, &[]);
        assert_eq!(
            rows(&o, b"ok\n\\xff\n", 3),
            Err(DecodeError::Utf8 { line: 2 })
        );
        assert_eq!(
            rows(&o, b"a\nb\n\\.x\n", 2),
            Err(DecodeError::MarkerCorrupt { line: 3 })
        );
    }

    #[test]
    fn csv_quotes_newlines_and_null() {
        let o = opts(true, &[]);
        let input = b"1,\"a,b\",\"\"\n2,\"say \"\"hi\"\"\nthere\",\r\n3,x\"y\"z,plain\n\\.\n";
        for step in [1, 2, 5, 100] {
            let r = rows(&o, input, step).unwrap();
            assert_eq!(
                r,
                vec![
                    s(&[Some("1"), Some("a,b"), Some("")]),
                    s(&[Some("2"), Some("say \"hi\"\nthere"), None]),
                    s(&[Some("3"), Some("xyz"), Some("plain")]),
                ],
                "step {step}"
            );
        }
        assert_eq!(
            rows(&o, b"1,\"open\n", 3),
            Err(DecodeError::UnterminatedQuote { line: 1 })
        );
        // An escape other than the quote.
        let o = opts(true, &[("escape", "\\"), ("null", "NULL")]);
        assert_eq!(
            rows(&o, b"\"a\\\"b\\\\c\",NULL,\"NULL\"\n", 2).unwrap(),
            vec![s(&[Some("a\"b\\c"), None, Some("NULL")])]
        );
    }

    #[test]
    fn csv_force_null_and_force_not_null() {
        let o = opts(true, &[]);
        let mut d = Decoder::new(&o, vec![true, false], vec![false, true]);
        d.feed(b",\"\"\n");
        let mut row = Row::default();
        assert!(d.next_row(&mut row, false).unwrap());
        assert_eq!((row.field(0), row.is_null(1)), (Some(""), true));
    }

    #[test]
    fn line_numbers_count_quoted_newlines() {
        let o = opts(true, &[]);
        let mut d = Decoder::new(&o, vec![], vec![]);
        d.feed(b"a\n\"b\nc\"\nd\n");
        let mut row = Row::default();
        let mut lines = Vec::new();
        while d.next_row(&mut row, true).unwrap() {
            lines.push(row.line());
        }
        assert_eq!(lines, vec![1, 2, 4]);
    }
}
