//! `COPY` statements: hadr carries them out itself (the data travels in
//! CopyData messages, not in SQL), so they are parsed here rather than
//! passed to SQLite, in both PostgreSQL spellings: `WITH (FORMAT csv,
//! HEADER)` and the older `CSV HEADER DELIMITER ','` that psql's `\copy`
//! and many scripts still write.
//!
//! Parsed with hadr's own lexer rather than `sqlparser`: the grammar is a
//! fixed list of options, and `COPY (query) TO` must hand the query on as
//! written (SQLite functions included), which a parse-and-print round trip
//! through another dialect's AST would not.

use hadr_copy::{OptValue, OptionError, Options};

use crate::lexer::{ident_value, string_value, Kind, Token};

/// Where rows come from or go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CopySource {
    /// A table, with the columns named (all of them when empty).
    Table {
        /// Table name, unquoted (the `public.` schema dropped).
        name: String,
        /// Column names, unquoted.
        columns: Vec<String>,
    },
    /// `COPY (query) TO`: the query's text as written.
    Query(String),
}

/// A parsed COPY statement; only `FROM STDIN` and `TO STDOUT` get here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyStatement {
    /// Table or query.
    pub source: CopySource,
    /// `FROM STDIN` (true) or `TO STDOUT`.
    pub from: bool,
    /// The options, with defaults.
    pub options: Options,
}

/// Why a COPY statement is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CopyError {
    /// Malformed (42601).
    #[error("syntax error in COPY: {0}")]
    Syntax(String),
    /// A form hadr does not carry out (0A000).
    #[error("hadr does not support {0}")]
    Unsupported(String),
    /// The options (their own SQLSTATEs).
    #[error(transparent)]
    Option(#[from] OptionError),
}

impl CopyError {
    /// The SQLSTATE a client gets.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            CopyError::Syntax(_) => "42601",
            CopyError::Unsupported(_) => "0A000",
            CopyError::Option(o) => o.sqlstate(),
        }
    }
}

struct Cursor<'s, 'a> {
    sig: &'s [Token<'a>],
    k: usize,
}

impl<'a> Cursor<'_, 'a> {
    fn peek(&self) -> Option<&Token<'a>> {
        self.sig.get(self.k)
    }
    fn kw(&mut self, w: &str) -> bool {
        let hit = self.peek().is_some_and(|t| t.is_kw(w));
        self.k += usize::from(hit);
        hit
    }
    fn punct(&mut self, p: &str) -> bool {
        let hit = self.peek().is_some_and(|t| t.is_punct(p));
        self.k += usize::from(hit);
        hit
    }
    fn expect(&mut self, p: &str) -> Result<(), CopyError> {
        if self.punct(p) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("expected \"{p}\"")))
        }
    }
    fn unexpected(&self, what: &str) -> CopyError {
        match self.peek() {
            Some(t) => CopyError::Syntax(format!("{what} at or near \"{}\"", t.text)),
            None => CopyError::Syntax(format!("{what} at end of input")),
        }
    }
    fn ident(&mut self) -> Result<String, CopyError> {
        match self.peek() {
            Some(t) if matches!(t.kind, Kind::Word | Kind::QuotedIdent) => {
                let v = if t.kind == Kind::Word {
                    t.text.to_lowercase()
                } else {
                    ident_value(t)
                };
                self.k += 1;
                Ok(v)
            }
            _ => Err(self.unexpected("expected a name")),
        }
    }
    /// A string literal, number or bare word as an option value.
    fn value(&mut self) -> Option<String> {
        let t = self.peek()?;
        let v = match t.kind {
            Kind::Str => string_value(t),
            Kind::Number | Kind::Word | Kind::QuotedIdent => ident_value(t),
            _ => return None,
        };
        self.k += 1;
        Some(v)
    }
    fn column_list(&mut self) -> Result<Vec<String>, CopyError> {
        let mut cols = vec![self.ident()?];
        while self.punct(",") {
            cols.push(self.ident()?);
        }
        Ok(cols)
    }
}

/// Parse a COPY statement (`sig`: its tokens without trivia, `src` its text).
pub(crate) fn parse(src: &str, sig: &[Token<'_>]) -> Result<CopyStatement, CopyError> {
    let sig = match sig.iter().rposition(|t| !t.is_punct(";")) {
        Some(last) => &sig[..=last],
        None => sig,
    };
    let mut c = Cursor { sig, k: 1 };
    if c.kw("BINARY") {
        return Err(CopyError::Unsupported(
            "COPY in binary format: use text or csv".into(),
        ));
    }
    let source = if c.punct("(") {
        let open = c.k;
        let mut depth = 1;
        while let Some(t) = c.peek() {
            if t.is_punct("(") {
                depth += 1;
            } else if t.is_punct(")") {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            c.k += 1;
        }
        let (Some(first), Some(close)) = (sig.get(open), c.peek()) else {
            return Err(CopyError::Syntax(
                "unterminated query in parentheses".into(),
            ));
        };
        let query = src[first.start..close.start].trim().to_string();
        c.k += 1;
        CopySource::Query(query)
    } else {
        let mut name = c.ident()?;
        if c.punct(".") {
            let schema = std::mem::replace(&mut name, c.ident()?);
            if schema != "public" && schema != "main" {
                return Err(CopyError::Unsupported(format!(
                    "schema \"{schema}\": hadr has one schema, public"
                )));
            }
        }
        let columns = if c.punct("(") {
            let cols = c.column_list()?;
            c.expect(")")?;
            cols
        } else {
            Vec::new()
        };
        CopySource::Table { name, columns }
    };
    let from = if c.kw("FROM") {
        true
    } else if c.kw("TO") {
        false
    } else {
        return Err(c.unexpected("expected FROM or TO"));
    };
    if from && matches!(source, CopySource::Query(_)) {
        return Err(CopyError::Syntax(
            "COPY (query) can only be used with TO".into(),
        ));
    }
    let endpoint_ok = if from { c.kw("STDIN") } else { c.kw("STDOUT") };
    if !endpoint_ok {
        let what = if c.kw("PROGRAM") {
            "COPY to or from a program"
        } else if c.peek().is_some_and(|t| t.kind == Kind::Str) {
            "COPY to or from a file on the server: use psql's \\copy, which sends the file's contents"
        } else {
            return Err(c.unexpected(if from {
                "expected STDIN"
            } else {
                "expected STDOUT"
            }));
        };
        return Err(CopyError::Unsupported(what.into()));
    }
    let with = c.kw("WITH");
    let pairs = if c.punct("(") {
        modern_options(&mut c)?
    } else {
        let _ = with;
        legacy_options(&mut c)?
    };
    if c.kw("WHERE") {
        return Err(CopyError::Unsupported("COPY FROM … WHERE".into()));
    }
    if c.peek().is_some() {
        return Err(c.unexpected("unexpected text"));
    }
    let options = Options::build(from, &pairs)?;
    Ok(CopyStatement {
        source,
        from,
        options,
    })
}

/// `( name [value], … )`, the opening parenthesis already read.
fn modern_options(c: &mut Cursor<'_, '_>) -> Result<Vec<(String, OptValue)>, CopyError> {
    let mut pairs = Vec::new();
    loop {
        let name = c.ident()?;
        let value = if c.punct("*") {
            OptValue::Star
        } else if c.punct("(") {
            let cols = c.column_list()?;
            c.expect(")")?;
            OptValue::Columns(cols)
        } else if c.peek().is_some_and(|t| t.is_punct(",") || t.is_punct(")")) {
            OptValue::Flag
        } else {
            match c.value() {
                Some(v) => OptValue::Word(v),
                None => return Err(c.unexpected("expected an option value")),
            }
        };
        pairs.push((name, value));
        if c.punct(")") {
            return Ok(pairs);
        }
        c.expect(",")?;
    }
}

/// PostgreSQL's pre-9.0 option syntax, still accepted by PostgreSQL.
fn legacy_options(c: &mut Cursor<'_, '_>) -> Result<Vec<(String, OptValue)>, CopyError> {
    let mut pairs = Vec::new();
    let string = |c: &mut Cursor<'_, '_>, what: &str| -> Result<OptValue, CopyError> {
        c.kw("AS");
        match c.peek() {
            Some(t) if t.kind == Kind::Str => {
                let v = string_value(t);
                c.k += 1;
                Ok(OptValue::Word(v))
            }
            _ => Err(c.unexpected(&format!("expected a string after {what}"))),
        }
    };
    loop {
        let (name, value) = if c.kw("BINARY") {
            ("format", OptValue::Word("binary".into()))
        } else if c.kw("CSV") {
            ("format", OptValue::Word("csv".into()))
        } else if c.kw("HEADER") {
            ("header", OptValue::Flag)
        } else if c.kw("FREEZE") {
            ("freeze", OptValue::Flag)
        } else if c.kw("DELIMITER") {
            ("delimiter", string(c, "DELIMITER")?)
        } else if c.kw("NULL") {
            ("null", string(c, "NULL")?)
        } else if c.kw("QUOTE") {
            ("quote", string(c, "QUOTE")?)
        } else if c.kw("ESCAPE") {
            ("escape", string(c, "ESCAPE")?)
        } else if c.kw("ENCODING") {
            ("encoding", string(c, "ENCODING")?)
        } else if c.kw("FORCE") {
            if c.kw("QUOTE") {
                let v = if c.punct("*") {
                    OptValue::Star
                } else {
                    OptValue::Columns(c.column_list()?)
                };
                ("force_quote", v)
            } else if c.kw("NOT") {
                if !c.kw("NULL") {
                    return Err(c.unexpected("expected NULL"));
                }
                ("force_not_null", OptValue::Columns(c.column_list()?))
            } else if c.kw("NULL") {
                ("force_null", OptValue::Columns(c.column_list()?))
            } else {
                return Err(c.unexpected("expected QUOTE, NOT NULL or NULL after FORCE"));
            }
        } else {
            return Ok(pairs);
        };
        pairs.push((name.to_string(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{classify, Command};
    use hadr_copy::{ForceQuote, Format, Header};

    fn copy(sql: &str) -> Result<CopyStatement, CopyError> {
        match classify(sql) {
            Command::Copy(r) => r,
            other => panic!("{sql} classified as {other:?}"),
        }
    }

    #[test]
    fn both_option_spellings() {
        let a = copy("COPY t (a, \"B\") FROM STDIN WITH (FORMAT csv, HEADER, DELIMITER ';', NULL 'nil', FORCE_NULL (a))").unwrap();
        let b = copy("copy public.t(a,\"B\") from stdin csv header delimiter as ';' null 'nil' force null a;").unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a.source,
            CopySource::Table {
                name: "t".into(),
                columns: vec!["a".into(), "B".into()]
            }
        );
        assert_eq!(
            (a.options.format, a.options.header, a.options.delimiter),
            (Format::Csv, Header::Present, b';')
        );
        assert_eq!(a.options.force_null, vec!["a".to_string()]);
        // What pgbench -i sends.
        let p = copy("copy pgbench_accounts from stdin with (freeze on)").unwrap();
        assert!(p.options.freeze && p.from);
    }

    #[test]
    fn queries_are_passed_on_as_written() {
        let q = copy(
            "COPY (SELECT a, (b) FROM t WHERE x = 'y)') TO STDOUT (FORMAT csv, FORCE_QUOTE *)",
        )
        .unwrap();
        assert_eq!(
            q.source,
            CopySource::Query("SELECT a, (b) FROM t WHERE x = 'y)'".into())
        );
        assert_eq!(q.options.force_quote, ForceQuote::All);
        assert!(!q.from);
    }

    #[test]
    fn refusals() {
        let code = |sql: &str| copy(sql).unwrap_err().sqlstate();
        assert_eq!(code("COPY t FROM '/etc/passwd'"), "0A000");
        assert_eq!(code("COPY t TO PROGRAM 'rm -rf /'"), "0A000");
        assert_eq!(code("COPY t FROM STDIN (FORMAT binary)"), "0A000");
        assert_eq!(code("COPY BINARY t FROM STDIN"), "0A000");
        assert_eq!(code("COPY t FROM STDIN WHERE a > 1"), "0A000");
        assert_eq!(code("COPY other.t FROM STDIN"), "0A000");
        assert_eq!(code("COPY (SELECT 1) FROM STDIN"), "42601");
        assert_eq!(code("COPY t FROM STDOUT"), "42601");
        assert_eq!(code("COPY t FROM STDIN (FORMAT csv"), "42601");
        assert_eq!(code("COPY t FROM STDIN CSV garbage"), "42601");
        assert_eq!(code("COPY t FROM STDIN (DELIMITER 'ab')"), "0A000");
        assert_eq!(code("COPY (SELECT 1"), "42601");
        assert_eq!(code("COPY"), "42601");
    }
}
