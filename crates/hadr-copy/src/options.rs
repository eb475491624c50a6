//! What a COPY statement asked for, checked as PostgreSQL 15 checks it
//! (src/backend/commands/copy.c `ProcessCopyOptions` there), with the same
//! messages and SQLSTATEs.

/// The data format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Tab-separated, backslash escapes, `\N` for NULL.
    Text,
    /// Comma-separated values with quoting.
    Csv,
}

/// Whether the first line names the columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    /// No header line.
    Absent,
    /// A header line: skipped on input, written on output.
    Present,
    /// On input, a header line that must name the columns in order.
    Match,
}

/// `FORCE_QUOTE`: which output columns are always quoted (CSV).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForceQuote {
    /// Only values that need it.
    None,
    /// `FORCE_QUOTE *`.
    All,
    /// The named columns.
    Columns(Vec<String>),
}

/// One option's value as written: `HEADER`, `HEADER true`, `NULL 'x'`,
/// `FORCE_QUOTE (a, b)`, `FORCE_QUOTE *`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptValue {
    /// No value (a boolean option meaning true).
    Flag,
    /// A string, number or keyword.
    Word(String),
    /// A parenthesised column list.
    Columns(Vec<String>),
    /// `*`.
    Star,
}

/// A COPY statement's options, complete with PostgreSQL's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Text or CSV.
    pub format: Format,
    /// Header line.
    pub header: Header,
    /// Field separator (one byte).
    pub delimiter: u8,
    /// How NULL is written.
    pub null: String,
    /// CSV quote byte.
    pub quote: u8,
    /// CSV escape byte (inside quotes).
    pub escape: u8,
    /// CSV columns always quoted on output.
    pub force_quote: ForceQuote,
    /// CSV input columns where a NULL-looking unquoted value is an empty string.
    pub force_not_null: Vec<String>,
    /// CSV input columns where a NULL-looking quoted value is NULL too.
    pub force_null: Vec<String>,
    /// `FREEZE`: accepted; SQLite has no tuple visibility to skip.
    pub freeze: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            format: Format::Text,
            header: Header::Absent,
            delimiter: b'\t',
            null: "\\N".into(),
            quote: b'"',
            escape: b'"',
            force_quote: ForceQuote::None,
            force_not_null: Vec::new(),
            force_null: Vec::new(),
            freeze: false,
        }
    }
}

/// Why a COPY statement's options are refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// Unknown or repeated option, or a value of the wrong shape (42601).
    #[error("{0}")]
    Syntax(String),
    /// A value PostgreSQL refuses (22023).
    #[error("{0}")]
    InvalidValue(String),
    /// Something hadr or PostgreSQL does not support (0A000).
    #[error("{0}")]
    Unsupported(String),
}

impl OptionError {
    /// The SQLSTATE a client gets.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            OptionError::Syntax(_) => "42601",
            OptionError::InvalidValue(_) => "22023",
            OptionError::Unsupported(_) => "0A000",
        }
    }
}

fn boolean(name: &str, v: &OptValue) -> Result<bool, OptionError> {
    match v {
        OptValue::Flag => Ok(true),
        OptValue::Word(w) => match w.to_ascii_lowercase().as_str() {
            "true" | "on" | "1" => Ok(true),
            "false" | "off" | "0" => Ok(false),
            _ => Err(OptionError::Syntax(format!(
                "{name} requires a Boolean value"
            ))),
        },
        _ => Err(OptionError::Syntax(format!(
            "{name} requires a Boolean value"
        ))),
    }
}

fn word<'a>(name: &str, v: &'a OptValue) -> Result<&'a str, OptionError> {
    match v {
        OptValue::Word(w) => Ok(w),
        _ => Err(OptionError::Syntax(format!("{name} requires a parameter"))),
    }
}

fn one_byte(what: &str, s: &str) -> Result<u8, OptionError> {
    match s.as_bytes() {
        [b] if b.is_ascii() => Ok(*b),
        _ => Err(OptionError::Unsupported(format!(
            "COPY {what} must be a single one-byte character"
        ))),
    }
}

fn columns(name: &str, v: &OptValue) -> Result<Vec<String>, OptionError> {
    match v {
        OptValue::Columns(c) => Ok(c.clone()),
        _ => Err(OptionError::Syntax(format!(
            "argument to option \"{name}\" must be a list of column names"
        ))),
    }
}

impl Options {
    /// Options from `(name, value)` pairs as written (names in any case,
    /// PostgreSQL's legacy `FORCE QUOTE` spelt `force_quote`), for a COPY
    /// FROM (`from`) or TO.
    pub fn build(from: bool, pairs: &[(String, OptValue)]) -> Result<Options, OptionError> {
        let mut o = Options::default();
        let mut seen: Vec<String> = Vec::new();
        let (mut delimiter, mut null, mut quote, mut escape) = (None, None, None, None);
        let mut format = None;
        for (name, v) in pairs {
            let name = name.to_ascii_lowercase();
            if seen.contains(&name) {
                return Err(OptionError::Syntax(
                    "conflicting or redundant options".into(),
                ));
            }
            seen.push(name.clone());
            match name.as_str() {
                "format" => {
                    format = Some(match word(&name, v)?.to_ascii_lowercase().as_str() {
                        "text" => Format::Text,
                        "csv" => Format::Csv,
                        "binary" => {
                            return Err(OptionError::Unsupported(
                                "hadr does not support COPY in binary format: use text or csv"
                                    .into(),
                            ))
                        }
                        other => {
                            return Err(OptionError::InvalidValue(format!(
                                "COPY format \"{other}\" not recognized"
                            )))
                        }
                    })
                }
                "freeze" => o.freeze = boolean(&name, v)?,
                "delimiter" => delimiter = Some(one_byte("delimiter", word(&name, v)?)?),
                "null" => null = Some(word(&name, v)?.to_string()),
                "header" => {
                    o.header = match v {
                        OptValue::Word(w) if w.eq_ignore_ascii_case("match") => {
                            if !from {
                                return Err(OptionError::Unsupported(
                                    "cannot use \"match\" with HEADER in COPY TO".into(),
                                ));
                            }
                            Header::Match
                        }
                        v if boolean(&name, v)? => Header::Present,
                        _ => Header::Absent,
                    }
                }
                "quote" => quote = Some(one_byte("quote", word(&name, v)?)?),
                "escape" => escape = Some(one_byte("escape", word(&name, v)?)?),
                "force_quote" => {
                    o.force_quote = match v {
                        OptValue::Star => ForceQuote::All,
                        v => ForceQuote::Columns(columns(&name, v)?),
                    }
                }
                "force_not_null" => o.force_not_null = columns(&name, v)?,
                "force_null" => o.force_null = columns(&name, v)?,
                "encoding" => {
                    let e = word(&name, v)?.to_ascii_lowercase().replace(['-', '_'], "");
                    if e != "utf8" && e != "unicode" {
                        return Err(OptionError::Unsupported(format!(
                            "hadr stores text as UTF8 and does not support COPY ENCODING '{}'",
                            word(&name, v)?
                        )));
                    }
                }
                other => {
                    return Err(OptionError::Syntax(format!(
                        "option \"{other}\" not recognized"
                    )))
                }
            }
        }
        o.format = format.unwrap_or(Format::Text);
        let csv = o.format == Format::Csv;
        if csv {
            o.delimiter = b',';
            o.null = String::new();
        }
        if let Some(d) = delimiter {
            o.delimiter = d;
        }
        if let Some(n) = null {
            o.null = n;
        }
        if !csv && (quote.is_some() || escape.is_some()) {
            let what = if quote.is_some() { "quote" } else { "escape" };
            return Err(OptionError::Unsupported(format!(
                "COPY {what} available only in CSV mode"
            )));
        }
        o.quote = quote.unwrap_or(b'"');
        o.escape = escape.unwrap_or(o.quote);
        o.check(from)?;
        Ok(o)
    }

    fn check(&self, from: bool) -> Result<(), OptionError> {
        let invalid = |m: &str| Err(OptionError::InvalidValue(m.to_string()));
        let csv = self.format == Format::Csv;
        if matches!(self.delimiter, b'\r' | b'\n') {
            return invalid("COPY delimiter cannot be newline or carriage return");
        }
        if self.null.contains(['\r', '\n']) {
            return invalid("COPY null representation cannot use newline or carriage return");
        }
        if !csv && b"\\.abcdefghijklmnopqrstuvwxyz0123456789".contains(&self.delimiter) {
            return invalid(&format!(
                "COPY delimiter cannot be \"{}\"",
                char::from(self.delimiter)
            ));
        }
        if self.null.as_bytes().contains(&self.delimiter) {
            return invalid("COPY delimiter must not appear in the NULL specification");
        }
        if csv {
            if self.delimiter == self.quote {
                return invalid("COPY delimiter and quote must be different");
            }
            if self.null.as_bytes().contains(&self.quote) {
                return invalid("CSV quote character must not appear in the NULL specification");
            }
        }
        let only = |what: &str, csv_needed: bool, from_needed: Option<bool>| {
            if csv_needed && !csv {
                return Err(OptionError::Unsupported(format!(
                    "COPY {what} available only in CSV mode"
                )));
            }
            match from_needed {
                Some(true) if !from => Err(OptionError::Unsupported(format!(
                    "COPY {what} only available using COPY FROM"
                ))),
                Some(false) if from => Err(OptionError::Unsupported(format!(
                    "COPY {what} only available using COPY TO"
                ))),
                _ => Ok(()),
            }
        };
        if self.force_quote != ForceQuote::None {
            only("force quote", true, Some(false))?;
        }
        if !self.force_not_null.is_empty() {
            only("force not null", true, Some(true))?;
        }
        if !self.force_null.is_empty() {
            only("force null", true, Some(true))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> OptValue {
        OptValue::Word(s.into())
    }

    #[test]
    fn defaults_follow_the_format() {
        let t = Options::build(true, &[]).unwrap();
        assert_eq!((t.delimiter, t.null.as_str()), (b'\t', "\\N"));
        let c = Options::build(true, &[("FORMAT".into(), w("csv"))]).unwrap();
        assert_eq!(
            (c.delimiter, c.null.as_str(), c.quote, c.escape),
            (b',', "", b'"', b'"')
        );
        let c = Options::build(
            true,
            &[
                ("format".into(), w("csv")),
                ("quote".into(), w("'")),
                ("header".into(), OptValue::Flag),
            ],
        )
        .unwrap();
        assert_eq!(
            (c.quote, c.escape, c.header),
            (b'\'', b'\'', Header::Present)
        );
    }

    #[test]
    fn refusals_carry_postgres_messages_and_codes() {
        let e = |from, pairs: &[(&str, OptValue)]| {
            let pairs: Vec<(String, OptValue)> = pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect();
            let err = Options::build(from, &pairs).unwrap_err();
            (err.sqlstate(), err.to_string())
        };
        assert_eq!(e(true, &[("format", w("binary"))]).0, "0A000");
        assert_eq!(
            e(true, &[("delimiter", w("ab"))]),
            (
                "0A000",
                "COPY delimiter must be a single one-byte character".into()
            )
        );
        assert_eq!(
            e(true, &[("delimiter", w("a"))]).1,
            "COPY delimiter cannot be \"a\""
        );
        assert_eq!(
            e(true, &[("quote", w("'"))]).1,
            "COPY quote available only in CSV mode"
        );
        assert_eq!(
            e(
                true,
                &[("format", w("csv")), ("force_quote", OptValue::Star)]
            )
            .1,
            "COPY force quote only available using COPY TO"
        );
        assert_eq!(e(false, &[("header", w("match"))]).0, "0A000");
        assert_eq!(e(true, &[("header", w("maybe"))]).0, "42601");
        assert_eq!(
            e(true, &[("bogus", OptValue::Flag)]).1,
            "option \"bogus\" not recognized"
        );
        assert_eq!(
            e(true, &[("null", w("x")), ("NULL", w("y"))]).1,
            "conflicting or redundant options"
        );
        assert_eq!(
            e(true, &[("format", w("csv")), ("delimiter", w("\""))]).0,
            "22023"
        );
        assert_eq!(e(true, &[("null", w("a\tb"))]).0, "22023");
        assert_eq!(e(true, &[("encoding", w("LATIN1"))]).0, "0A000");
        assert!(Options::build(true, &[("encoding".into(), w("UTF-8"))]).is_ok());
    }
}
