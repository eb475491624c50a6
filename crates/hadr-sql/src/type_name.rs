//! Reading a PostgreSQL type name out of the token stream (after `::`, or
//! after `AS` in `CAST(.. AS ..)`), and the type a cast names.

use crate::brackets::close_of;
use crate::error::SqlError;
use crate::keywords::{in_list, is_name_part};
use crate::lexer::{ident_value, Kind, Token};
use crate::types::PgType;

/// The type a `::` cast or `CAST(.. AS ..)` names: the announced PostgreSQL
/// types plus a few catalog types that have an obvious SQLite meaning.
pub(crate) fn cast_type(name: &str) -> Result<PgType, SqlError> {
    if let Some(t) = PgType::from_name(name) {
        return Ok(t);
    }
    match name.to_ascii_lowercase().as_str() {
        "oid" | "xid" | "pg_catalog.oid" => Ok(PgType::Int8),
        "name" | "citext" | "pg_catalog.name" => Ok(PgType::Text),
        _ => Err(SqlError::UnsupportedType(name.to_string())),
    }
}

fn next_sig(toks: &[Token<'_>], mut k: usize) -> Option<usize> {
    while k < toks.len() && toks[k].is_trivia() {
        k += 1;
    }
    (k < toks.len()).then_some(k)
}

/// Parse a type name starting at or after `start` (trivia skipped): optional
/// schema, multi-word names, modifiers and array brackets. Returns the name
/// normalised to single spaces and the index just past it.
pub(crate) fn parse_type_name(toks: &[Token<'_>], start: usize) -> Option<(String, usize)> {
    let mut k = next_sig(toks, start)?;
    if !is_name_part(&toks[k]) {
        return None;
    }
    let mut text = String::new();
    while let Some(dot) = next_sig(toks, k + 1).filter(|&d| toks[d].is_punct(".")) {
        match next_sig(toks, dot + 1).filter(|&n| is_name_part(&toks[n])) {
            Some(n) => {
                text.push_str(&ident_value(&toks[k]));
                text.push('.');
                k = n;
            }
            None => break,
        }
    }
    let base = ident_value(&toks[k]).to_ascii_lowercase();
    text.push_str(&base);
    let mut end = k + 1;

    // A multi-word name (`double precision`, `time with time zone`) takes
    // its extra words only when all of them follow; otherwise they belong to
    // the surrounding statement.
    let follow = |end: &mut usize, text: &mut String, words: &[&str]| -> bool {
        let mut k = *end;
        for w in words {
            match next_sig(toks, k) {
                Some(n) if toks[n].is_kw(w) => k = n + 1,
                _ => return false,
            }
        }
        for w in words {
            text.push(' ');
            text.push_str(&w.to_ascii_lowercase());
        }
        *end = k;
        true
    };
    match base.as_str() {
        "double" => {
            follow(&mut end, &mut text, &["PRECISION"]);
        }
        "character" | "char" | "bit" => {
            follow(&mut end, &mut text, &["VARYING"]);
        }
        "interval" => {
            const FIELDS: &[&str] = &["YEAR", "MONTH", "DAY", "HOUR", "MINUTE", "SECOND", "TO"];
            while let Some(n) = next_sig(toks, end).filter(|&n| in_list(toks[n].text, FIELDS)) {
                text.push(' ');
                text.push_str(&toks[n].text.to_ascii_lowercase());
                end = n + 1;
            }
        }
        _ => {}
    }
    // Type modifiers are integers; anything else in parentheses is not part
    // of the type (and must not be swallowed, strings least of all).
    if let Some(open) = next_sig(toks, end).filter(|&n| toks[n].is_punct("(")) {
        if let Some(close) = close_of(toks, open).map(|c| c + 1) {
            let inner = &toks[open + 1..close - 1];
            if inner
                .iter()
                .all(|t| t.is_trivia() || t.kind == Kind::Number || t.is_punct(","))
            {
                for t in &toks[open..close] {
                    if !t.is_trivia() {
                        text.push_str(t.text);
                    }
                }
                end = close;
            }
        }
    }
    if base == "time" || base == "timestamp" {
        let _ = follow(&mut end, &mut text, &["WITH", "TIME", "ZONE"])
            || follow(&mut end, &mut text, &["WITHOUT", "TIME", "ZONE"]);
    }
    while let Some(open) = next_sig(toks, end).filter(|&n| toks[n].is_punct("[")) {
        let close = next_sig(toks, open + 1)?;
        let close = if toks[close].is_punct("]") {
            close
        } else {
            next_sig(toks, close + 1).filter(|&c| toks[c].is_punct("]"))?
        };
        text.push_str("[]");
        end = close + 1;
    }
    Some((text, end))
}
