//! Inferring what each `$N` parameter probably is from where it stands:
//! an explicit cast, `LIMIT $1`, a column it is compared with, assigned to
//! or inserted into.

mod statement;
mod tables;

use crate::keywords::{
    in_list, is_kw_in, is_name, is_name_part, is_reserved, COMPARISONS, SOFT_KEYWORDS,
    VALUE_KEYWORDS,
};
use crate::lexer::{ident_value, Kind, Token};
use crate::type_name::{cast_type, parse_type_name};
use crate::types::PgType;
use statement::Statement;
use tables::{InsertShape, Tables};

/// What the statement's text says about one parameter's type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamHint {
    /// Nothing useful.
    Unknown,
    /// An explicit type: `$1::int`, `CAST($1 AS bigint)`, `LIMIT $1`.
    Type(PgType),
    /// The parameter is compared with, assigned to or inserted into this
    /// column; `column` is `"#N"` for position N of an `INSERT` without a
    /// column list. `table` is the real table name (aliases resolved), or
    /// `None` for an unqualified column when the statement names several tables.
    Column {
        /// Table the column belongs to, if known.
        table: Option<String>,
        /// Column name (unquoted), or `"#N"` for an insert position.
        column: String,
    },
}

/// Soft keywords that are operators after `NOT` (`a NOT BETWEEN -$1 AND 2`).
const NOT_OPERATORS: &[&str] = &["BETWEEN", "EXISTS", "GLOB", "MATCH", "REGEXP"];

/// Pattern operators: their pattern has the type of the column matched.
const LIKE_KEYWORDS: &[&str] = &["LIKE", "ILIKE", "GLOB", "REGEXP", "MATCH"];

/// Operators whose parameter operand takes the type of the column on the
/// other side (`a + $1`, `name || $1`).
const ARITHMETIC: &[&str] = &["+", "-", "*", "/", "%", "||"];

/// Hints for `$1..=$param_count` from the tokens of a statement.
pub(crate) fn infer(toks: &[Token<'_>], param_count: usize) -> Vec<ParamHint> {
    let sig: Vec<Token<'_>> = toks.iter().copied().filter(|t| !t.is_trivia()).collect();
    Hints::new(&sig).all(param_count)
}

/// Parameter hint inference over the significant tokens of a statement.
struct Hints<'s, 'a> {
    st: Statement<'s, 'a>,
    tables: Tables,
    insert: Option<InsertShape>,
}

impl<'s, 'a> Hints<'s, 'a> {
    fn new(sig: &'s [Token<'a>]) -> Self {
        let st = Statement::new(sig);
        let tables = Tables::collect(&st);
        let insert = InsertShape::find(&st);
        Hints { st, tables, insert }
    }

    fn column(&self, name: Option<(Option<String>, String)>) -> Option<ParamHint> {
        let (q, column) = name?;
        Some(ParamHint::Column {
            table: self.tables.resolve(q),
            column,
        })
    }

    /// Whether token `j` names a column where it stands: an identifier or
    /// non-reserved word, any word after `qualifier.`, or a soft keyword
    /// (`by`, `set`, `values`, ...) in a place that expects an operand.
    fn column_word(&self, j: usize) -> bool {
        let Some(t) = self.st.sig.get(j) else {
            return false;
        };
        if is_name(t) {
            return true;
        }
        if t.kind != Kind::Word || t.text.starts_with('$') {
            return false;
        }
        let jj = j as isize;
        if self.st.punct(jj - 1, ".") && self.st.at(jj - 2).is_some_and(is_name_part) {
            return true;
        }
        if !in_list(t.text, SOFT_KEYWORDS) {
            return false;
        }
        let Some(p) = self.st.at(jj - 1) else {
            return false;
        };
        match p.kind {
            Kind::Op => true,
            Kind::Punct => p.text == "(" || p.text == ",",
            Kind::Word => {
                if t.is_kw("BY") && ["ORDER", "GROUP", "PARTITION"].iter().any(|k| p.is_kw(k)) {
                    return false;
                }
                if p.is_kw("NOT") && in_list(t.text, NOT_OPERATORS) {
                    return false;
                }
                // After a keyword that expects an operand (WHERE, AND, SET, ...);
                // a keyword that ends one (NULL, END) or a name makes `t` an operator.
                p.is_kw("SET")
                    || p.is_kw("BY")
                    || (is_reserved(p.text)
                        && !in_list(p.text, VALUE_KEYWORDS)
                        && !in_list(p.text, SOFT_KEYWORDS)
                        && !p.is_kw("END"))
            }
            _ => false,
        }
    }

    /// Column reference ending at `end` (not a function call's result).
    fn name_before(&self, end: isize) -> Option<(Option<String>, String)> {
        let t = self.st.at(end)?;
        if !self.column_word(usize::try_from(end).ok()?) {
            return None;
        }
        let column = ident_value(t);
        let mut qualifier = None;
        let mut j = end;
        while self.st.punct(j - 1, ".") && self.st.at(j - 2).is_some_and(is_name_part) {
            if qualifier.is_none() {
                qualifier = self.st.at(j - 2).map(ident_value);
            }
            j -= 2;
        }
        if self.st.punct(j - 1, ".") {
            return None;
        }
        Some((qualifier, column))
    }

    /// Column reference starting at `start`.
    fn name_after(&self, start: isize) -> Option<(Option<String>, String)> {
        let (parts, next) = self.st.qualified_name(usize::try_from(start).ok()?)?;
        if !self.column_word(next.checked_sub(1)?)
            || self.st.punct(next as isize, "(")
            || self.st.punct(next as isize, ".")
        {
            return None;
        }
        let column = parts.last()?.clone();
        let qualifier = parts
            .len()
            .checked_sub(2)
            .and_then(|q| parts.get(q))
            .cloned();
        Some((qualifier, column))
    }

    /// The hint for the parameter at `i`. An explicit type beats the column
    /// the parameter stands next to, because the client asked for it.
    fn hint(&self, i: usize) -> ParamHint {
        let ii = i as isize;
        let explicit = |name: Option<(String, usize)>| name.and_then(|(n, _)| cast_type(&n).ok());
        if self.st.punct(ii + 1, "::") {
            if let Some(t) = explicit(parse_type_name(self.st.sig, i + 2)) {
                return ParamHint::Type(t);
            }
        }
        if self.st.punct(ii - 1, "(") && self.st.kw(ii - 2, "CAST") && self.st.kw(ii + 1, "AS") {
            let name = parse_type_name(self.st.sig, i + 2);
            let t = explicit(name.clone())
                .or_else(|| name.and_then(|(n, _)| PgType::from_sqlite_decltype(&n)));
            if let Some(t) = t {
                return ParamHint::Type(t);
            }
        }
        if self.st.kw(ii - 1, "LIMIT")
            || self.st.kw(ii - 1, "OFFSET")
            || (self.st.kw(ii - 2, "FETCH")
                && (self.st.kw(ii - 1, "FIRST") || self.st.kw(ii - 1, "NEXT")))
        {
            return ParamHint::Type(PgType::Int8);
        }
        if let (Some(open), Some(shape)) = (self.st.enclosing[i], &self.insert) {
            if shape.rows.contains(&open) && self.st.direct_element(ii) {
                let pos = self.st.position(open, i);
                let column = match &shape.columns {
                    Some(cols) => match cols.get(pos) {
                        Some(c) => c.clone(),
                        None => return ParamHint::Unknown,
                    },
                    None => format!("#{pos}"),
                };
                return ParamHint::Column {
                    table: Some(shape.table.clone()),
                    column,
                };
            }
        }
        if let Some(open) = self.st.enclosing[i] {
            let o = open as isize;
            if self.st.direct_element(ii) && self.st.kw(o - 1, "IN") {
                if let Some(h) = self.column(self.name_before(self.st.skip_not(o - 2))) {
                    return h;
                }
            }
        }
        let before = if self.st.op_in(ii - 1, COMPARISONS) {
            self.name_before(ii - 2)
        } else if self
            .st
            .at(ii - 1)
            .is_some_and(|t| is_kw_in(t, LIKE_KEYWORDS))
        {
            self.name_before(self.st.skip_not(ii - 2))
        } else if self.st.op_in(ii - 1, &["+", "-"]) && self.st.op_in(ii - 2, COMPARISONS) {
            self.name_before(ii - 3)
        } else if self.st.kw(ii - 1, "BETWEEN") {
            self.name_before(self.st.skip_not(ii - 2))
        } else if self.st.kw(ii - 1, "SYMMETRIC") && self.st.kw(ii - 2, "BETWEEN") {
            self.name_before(self.st.skip_not(ii - 3))
        } else if self.st.kw(ii - 1, "AND") && self.st.kw(ii - 3, "BETWEEN") {
            self.name_before(self.st.skip_not(ii - 4))
        } else if self.st.kw(ii - 1, "AND")
            && self.st.kw(ii - 3, "SYMMETRIC")
            && self.st.kw(ii - 4, "BETWEEN")
        {
            self.name_before(self.st.skip_not(ii - 5))
        } else {
            None
        };
        if let Some(h) = self.column(before) {
            return h;
        }
        if self.st.op_in(ii + 1, COMPARISONS) {
            if let Some(h) = self.column(self.name_after(ii + 2)) {
                return h;
            }
        }
        if self.st.op_in(ii - 1, ARITHMETIC) {
            if let Some(h) = self.column(self.name_before(ii - 2)) {
                return h;
            }
        }
        if self.st.op_in(ii + 1, ARITHMETIC) {
            if let Some(h) = self.column(self.name_after(ii + 2)) {
                return h;
            }
        }
        ParamHint::Unknown
    }

    /// Hints for `$1..=$count`; the first informative occurrence of each wins.
    fn all(&self, count: usize) -> Vec<ParamHint> {
        let mut hints = vec![ParamHint::Unknown; count];
        for (i, t) in self.st.sig.iter().enumerate() {
            if t.kind != Kind::Param {
                continue;
            }
            let Some(n) = t.param_number() else { continue };
            if let Some(slot) = hints.get_mut(n - 1) {
                if *slot == ParamHint::Unknown {
                    *slot = self.hint(i);
                }
            }
        }
        hints
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{translate, SqlError};

    pub(super) fn hints(s: &str) -> Vec<ParamHint> {
        match translate(s) {
            Ok(t) => t.param_hints,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    pub(super) fn col(table: Option<&str>, column: &str) -> ParamHint {
        ParamHint::Column {
            table: table.map(str::to_string),
            column: column.to_string(),
        }
    }

    #[test]
    fn param_casts() {
        let t = translate("select $1::int, $2::text, $3 :: timestamptz").unwrap();
        assert_eq!(t.sql, "select ?1, ?2, ?3");
        assert_eq!(
            t.param_hints,
            vec![
                ParamHint::Type(PgType::Int4),
                ParamHint::Type(PgType::Text),
                ParamHint::Type(PgType::Timestamptz)
            ]
        );
        assert_eq!(
            hints("select CAST($1 AS bigint)"),
            vec![ParamHint::Type(PgType::Int8)]
        );
        assert_eq!(
            hints("select CAST($1 AS BLOB)"),
            vec![ParamHint::Type(PgType::Bytea)]
        );
        assert!(matches!(
            translate("select $1::regclass"),
            Err(SqlError::UnsupportedType(_))
        ));
    }

    #[test]
    fn limit_offset() {
        assert_eq!(
            hints("select * from t limit $1 offset $2"),
            vec![ParamHint::Type(PgType::Int8), ParamHint::Type(PgType::Int8)]
        );
        assert_eq!(
            hints("select * from t fetch first $1 rows only"),
            vec![ParamHint::Type(PgType::Int8)]
        );
    }

    #[test]
    fn pgbench() {
        assert_eq!(
            hints("UPDATE accounts SET abalance = abalance + $1 WHERE aid = $2"),
            vec![
                col(Some("accounts"), "abalance"),
                col(Some("accounts"), "aid")
            ]
        );
        assert_eq!(
            hints("SELECT abalance FROM accounts WHERE aid = $1"),
            vec![col(Some("accounts"), "aid")]
        );
        let t =
            translate("INSERT INTO history(aid, delta, mtime) VALUES ($1, $2, CURRENT_TIMESTAMP)")
                .unwrap();
        assert_eq!(
            t.sql,
            "INSERT INTO history(aid, delta, mtime) VALUES (?1, ?2, CURRENT_TIMESTAMP)"
        );
        assert_eq!(
            t.param_hints,
            vec![col(Some("history"), "aid"), col(Some("history"), "delta")]
        );
        assert_eq!(
            hints("UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2"),
            vec![
                col(Some("pgbench_tellers"), "tbalance"),
                col(Some("pgbench_tellers"), "tid")
            ]
        );
    }

    #[test]
    fn comparisons() {
        assert_eq!(
            hints("select * from t where a < $1"),
            vec![col(Some("t"), "a")]
        );
        assert_eq!(
            hints("select * from t x where $1 < x.col"),
            vec![col(Some("t"), "col")]
        );
        assert_eq!(
            hints("select * from t where $1 >= b and c <> $2"),
            vec![col(Some("t"), "b"), col(Some("t"), "c")]
        );
        assert_eq!(
            hints("select * from t where a != $1"),
            vec![col(Some("t"), "a")]
        );
        assert_eq!(
            hints("select * from t where a = -$1"),
            vec![col(Some("t"), "a")]
        );
        assert_eq!(
            hints("select * from t where name not like $1"),
            vec![col(Some("t"), "name")]
        );
        assert_eq!(
            hints("select * from t where a between $1 and $2"),
            vec![col(Some("t"), "a"), col(Some("t"), "a")]
        );
        assert_eq!(
            hints("select * from t where \"Mixed\" = $1"),
            vec![col(Some("t"), "Mixed")]
        );
        assert_eq!(
            hints("select * from t where f(a) = $1"),
            vec![ParamHint::Unknown]
        );
        assert_eq!(
            hints("select * from t where $1 = f(a)"),
            vec![ParamHint::Unknown]
        );
        assert_eq!(
            hints("select * from t where null = $1"),
            vec![ParamHint::Unknown]
        );
        assert_eq!(hints("select $1"), vec![ParamHint::Unknown]);
    }

    #[test]
    fn in_lists() {
        assert_eq!(
            hints("delete from t where id in ($1, $2)"),
            vec![col(Some("t"), "id"), col(Some("t"), "id")]
        );
        assert_eq!(
            hints("select * from t where t.id not in ($1)"),
            vec![col(Some("t"), "id")]
        );
        assert_eq!(
            hints("select * from t where f(id) in ($1)"),
            vec![ParamHint::Unknown]
        );
    }

    #[test]
    fn update_set() {
        assert_eq!(
            hints("update t set a = $1, b = $2 where c = $3"),
            vec![
                col(Some("t"), "a"),
                col(Some("t"), "b"),
                col(Some("t"), "c")
            ]
        );
        assert_eq!(
            hints("UPDATE OR REPLACE t SET a = $1"),
            vec![col(Some("t"), "a")]
        );
    }

    #[test]
    fn arithmetic() {
        assert_eq!(hints("select a + $1 from t"), vec![col(Some("t"), "a")]);
        assert_eq!(hints("select $1 * t.b from t"), vec![col(Some("t"), "b")]);
        assert_eq!(
            hints("select name || $1 from t"),
            vec![col(Some("t"), "name")]
        );
        assert_eq!(hints("select 1 + $1"), vec![ParamHint::Unknown]);
    }

    #[test]
    fn first_informative_hint_wins() {
        assert_eq!(
            hints("select $1 from t where a = $1"),
            vec![col(Some("t"), "a")]
        );
        assert_eq!(
            hints("select * from t where a = $1 or b = $1"),
            vec![col(Some("t"), "a")]
        );
    }

    #[test]
    fn keyword_columns_in_update_and_where() {
        assert_eq!(
            hints("update v set by = $1, ok = $2, set = $3 where by = $4 and values <> $5"),
            vec![
                col(Some("v"), "by"),
                col(Some("v"), "ok"),
                col(Some("v"), "set"),
                col(Some("v"), "by"),
                col(Some("v"), "values")
            ]
        );
        assert_eq!(
            hints("select * from v where $1 = by or v.order = $2 or (by < $3)"),
            vec![
                col(Some("v"), "by"),
                col(Some("v"), "order"),
                col(Some("v"), "by")
            ]
        );
        assert_eq!(
            hints("select * from v where by in ($1) and by between $2 and $3 and by like $4"),
            vec![
                col(Some("v"), "by"),
                col(Some("v"), "by"),
                col(Some("v"), "by"),
                col(Some("v"), "by")
            ]
        );
        // As keywords they still are none.
        assert_eq!(
            hints("select * from v order by -$1"),
            vec![ParamHint::Unknown]
        );
        assert_eq!(
            hints("select * from v where a not between -$1 and 2"),
            vec![ParamHint::Unknown]
        );
        assert_eq!(
            hints("select * from v where null = $1 or case when a then 1 end = $2"),
            vec![ParamHint::Unknown, ParamHint::Unknown]
        );
    }
}
