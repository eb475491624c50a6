//! PostgreSQL's column names for a VALUES list in FROM, `(VALUES (1, 'a'),
//! (2, 'b')) AS v(id, name)`, which SQLite does not parse: it becomes
//! `(SELECT column1 AS id, column2 AS name FROM (VALUES …)) AS v`, SQLite
//! naming a VALUES list's columns `column1`, `column2`…. SQLAlchemy 2 sends
//! this form for every multi-row ORM insert ("insertmanyvalues").

use crate::brackets::close_of;
use crate::lexer::{ident_value, tokenize, Kind, Token};

fn solid<'a>(toks: &[Token<'a>]) -> Vec<Token<'a>> {
    toks.iter().filter(|t| !t.is_trivia()).copied().collect()
}

/// `stmt` with each `(VALUES …) AS alias(names)` rewritten; None if it has none.
pub(crate) fn rewrite(stmt: &str) -> Option<String> {
    // Only `(VALUES` can start one; INSERT … VALUES (the hot path of
    // every insert) has none, so it skips the tokenizing.
    if !opens_values(stmt) {
        return None;
    }
    let toks = tokenize(stmt);
    let s = solid(&toks);
    let mut out = String::new();
    let mut at = 0;
    let mut i = 0;
    let mut changed = false;
    while i + 1 < s.len() {
        if !(s[i].is_punct("(") && s[i + 1].is_kw("VALUES")) {
            i += 1;
            continue;
        }
        let Some(close) = close_of(&s, i) else {
            break;
        };
        let mut k = close + 1;
        if s.get(k).is_some_and(|t| t.is_kw("AS")) {
            k += 1;
        }
        let alias = s
            .get(k)
            .filter(|t| matches!(t.kind, Kind::Word | Kind::QuotedIdent));
        let list_open = k + 1;
        let (Some(alias), true) = (alias, s.get(list_open).is_some_and(|t| t.is_punct("("))) else {
            i += 1;
            continue;
        };
        let Some(list_close) = close_of(&s, list_open) else {
            break;
        };
        let names: Vec<&Token<'_>> = s[list_open + 1..list_close]
            .iter()
            .filter(|t| !t.is_punct(","))
            .collect();
        if names.is_empty()
            || names
                .iter()
                .any(|t| !matches!(t.kind, Kind::Word | Kind::QuotedIdent))
        {
            i += 1;
            continue;
        }
        let columns: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(n, t)| {
                let name = if t.kind == Kind::QuotedIdent {
                    format!("\"{}\"", ident_value(t).replace('"', "\"\""))
                } else {
                    t.text.to_string()
                };
                format!("column{} AS {name}", n + 1)
            })
            .collect();
        out.push_str(&stmt[at..s[i].start]);
        out.push_str(&format!(
            "(SELECT {} FROM {}) AS {}",
            columns.join(", "),
            &stmt[s[i].start..s[close].end()],
            alias.text
        ));
        at = s[list_close].end();
        changed = true;
        i = list_close + 1;
    }
    if !changed {
        return None;
    }
    out.push_str(&stmt[at..]);
    Some(out)
}

/// Whether a `(` is followed, after blanks, by `VALUES` somewhere.
fn opens_values(stmt: &str) -> bool {
    let b = stmt.as_bytes();
    b.iter().enumerate().any(|(i, &c)| {
        if c != b'(' {
            return false;
        }
        let rest = &b[i + 1..];
        let skip = rest.iter().take_while(|c| c.is_ascii_whitespace()).count();
        rest.get(skip..skip + 6)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"values"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_with_column_names() {
        assert_eq!(
            rewrite("SELECT p0 FROM (VALUES (1, 'a', 0), (2, 'b', 1)) AS imp_sen(p0, p1, sen_counter) ORDER BY sen_counter").as_deref(),
            Some("SELECT p0 FROM (SELECT column1 AS p0, column2 AS p1, column3 AS sen_counter FROM (VALUES (1, 'a', 0), (2, 'b', 1))) AS imp_sen ORDER BY sen_counter")
        );
        assert_eq!(rewrite("SELECT * FROM (VALUES (1)) v"), None);
        assert_eq!(rewrite("INSERT INTO t VALUES (1)"), None);
        assert!(!opens_values(
            "INSERT INTO pgbench_history (tid, delta) VALUES ($1, $2)"
        ));
        assert!(opens_values("SELECT * FROM ( values (1)) AS v(a)"));
    }
}
