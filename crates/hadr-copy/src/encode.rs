//! Rows into COPY output, as PostgreSQL 15 writes them (its copyto.c):
//! text escapes backslash, the delimiter and control characters; CSV quotes
//! a value only when it must (or FORCE_QUOTE says so), so that NULL and an
//! empty string stay apart.

use crate::options::{ForceQuote, Format, Options};

/// Encodes rows for COPY TO.
#[derive(Debug)]
pub struct Encoder {
    format: Format,
    delimiter: u8,
    null: Vec<u8>,
    quote: u8,
    escape: u8,
    force_quote: Vec<bool>,
    force_all: bool,
}

impl Encoder {
    /// An encoder for `o` writing the columns `names` (to resolve FORCE_QUOTE).
    pub fn new(o: &Options, names: &[String]) -> Encoder {
        let (force_all, force_quote) = match &o.force_quote {
            ForceQuote::None => (false, vec![false; names.len()]),
            ForceQuote::All => (true, vec![true; names.len()]),
            ForceQuote::Columns(c) => (false, names.iter().map(|n| c.contains(n)).collect()),
        };
        Encoder {
            format: o.format,
            delimiter: o.delimiter,
            null: o.null.clone().into_bytes(),
            quote: o.quote,
            escape: o.escape,
            force_quote,
            force_all,
        }
    }

    /// Append the header line (the column names).
    pub fn header(&self, names: &[String], out: &mut Vec<u8>) {
        for (i, n) in names.iter().enumerate() {
            if i > 0 {
                out.push(self.delimiter);
            }
            match self.format {
                Format::Text => self.text_field(n.as_bytes(), out),
                Format::Csv => self.csv_field(n.as_bytes(), false, names.len() == 1, out),
            }
        }
        out.push(b'\n');
    }

    /// Append one row; None is NULL.
    pub fn row(&self, fields: &[Option<&[u8]>], out: &mut Vec<u8>) {
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push(self.delimiter);
            }
            match (f, self.format) {
                (None, _) => out.extend_from_slice(&self.null),
                (Some(v), Format::Text) => self.text_field(v, out),
                (Some(v), Format::Csv) => {
                    let force = self.force_all || self.force_quote.get(i).copied().unwrap_or(false);
                    self.csv_field(v, force, fields.len() == 1, out)
                }
            }
        }
        out.push(b'\n');
    }

    fn text_field(&self, v: &[u8], out: &mut Vec<u8>) {
        for &c in v {
            let esc = match c {
                b'\\' => Some(b'\\'),
                b'\n' => Some(b'n'),
                b'\r' => Some(b'r'),
                b'\t' => Some(b't'),
                8 => Some(b'b'),
                12 => Some(b'f'),
                11 => Some(b'v'),
                c if c == self.delimiter => Some(c),
                _ => None,
            };
            match esc {
                Some(e) => {
                    out.push(b'\\');
                    out.push(e);
                }
                None => out.push(c),
            }
        }
    }

    fn csv_field(&self, v: &[u8], force: bool, only_column: bool, out: &mut Vec<u8>) {
        let must = force
            || v == &self.null[..]
            || (only_column && v == b"\\.")
            || v.iter()
                .any(|&c| c == self.delimiter || c == self.quote || c == b'\n' || c == b'\r');
        if !must {
            out.extend_from_slice(v);
            return;
        }
        out.push(self.quote);
        for &c in v {
            if c == self.quote || c == self.escape {
                out.push(self.escape);
            }
            out.push(c);
        }
        out.push(self.quote);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Decoder, Row};
    use crate::options::OptValue;
    use proptest::prelude::*;

    fn opts(csv: bool) -> Options {
        let pairs = if csv {
            vec![("format".to_string(), OptValue::Word("csv".into()))]
        } else {
            vec![]
        };
        Options::build(false, &pairs).unwrap()
    }

    #[test]
    fn text_and_csv_as_postgres_writes_them() {
        let names = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let row: [Option<&[u8]>; 3] = [Some(b"x\ty\\z"), None, Some(b"")];
        let mut out = Vec::new();
        Encoder::new(&opts(false), &names).row(&row, &mut out);
        assert_eq!(out, b"x\\ty\\\\z\t\\N\t\n");
        let mut out = Vec::new();
        let row: [Option<&[u8]>; 3] = [Some(b"a,\"b\""), None, Some(b"")];
        Encoder::new(&opts(true), &names).row(&row, &mut out);
        assert_eq!(out, b"\"a,\"\"b\"\"\",,\"\"\n");
    }

    proptest! {
        /// What the encoder writes, the decoder reads back unchanged, in
        /// both formats, whatever the values and however the bytes are cut.
        #[test]
        fn round_trip(
            rows in proptest::collection::vec(
                proptest::collection::vec(proptest::option::of("[a-z\\\\\t\n\r,\"\\. é]{0,6}"), 3),
                0..6,
            ),
            csv in any::<bool>(),
            step in 1usize..9,
        ) {
            let o = opts(csv);
            let names = vec!["a".to_string(), "b".to_string(), "c".to_string()];
            let enc = Encoder::new(&o, &names);
            let mut out = Vec::new();
            for r in &rows {
                let f: Vec<Option<&[u8]>> = r.iter().map(|v| v.as_deref().map(str::as_bytes)).collect();
                enc.row(&f, &mut out);
            }
            let o_in = Options { ..o };
            let mut d = Decoder::new(&o_in, vec![], vec![]);
            let mut got = Vec::new();
            let mut row = Row::default();
            for piece in out.chunks(step) {
                d.feed(piece);
                while d.next_row(&mut row, false).unwrap() {
                    got.push((0..row.len()).map(|i| row.field(i).map(str::to_string)).collect::<Vec<_>>());
                }
            }
            while d.next_row(&mut row, true).unwrap() {
                got.push((0..row.len()).map(|i| row.field(i).map(str::to_string)).collect::<Vec<_>>());
            }
            prop_assert_eq!(got, rows);
        }
    }
}
