//! Inferring what each `$N` parameter probably is from where it stands:
//! an explicit cast, `LIMIT $1`, a column it is compared with, assigned to
//! or inserted into.

use crate::keywords::{
    in_list, is_name, is_name_part, is_reserved, COMPARISONS, SOFT_KEYWORDS, VALUE_KEYWORDS,
};
use crate::lexer::{ident_value, Kind, Token};
use crate::type_name::{cast_type, parse_type_name};
use crate::types::PgType;

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

const LIKE_KEYWORDS: &[&str] = &["LIKE", "ILIKE", "GLOB", "REGEXP", "MATCH"];
const ARITHMETIC: &[&str] = &["+", "-", "*", "/", "%", "||"];

/// Hints for `$1..=$param_count` from the tokens of a statement.
pub(crate) fn infer(toks: &[Token<'_>], param_count: usize) -> Vec<ParamHint> {
    let sig: Vec<Token<'_>> = toks.iter().copied().filter(|t| !t.is_trivia()).collect();
    Hints::new(&sig).all(param_count)
}

/// The `INSERT ... VALUES` shape of a statement, for positional hints.
struct InsertShape {
    table: String,
    columns: Option<Vec<String>>,
    /// Indices of the `(` of each VALUES row.
    rows: Vec<usize>,
}

/// Parameter hint inference over the significant tokens of a statement.
struct Hints<'s, 'a> {
    sig: &'s [Token<'a>],
    /// For each token, the index of the innermost `(` enclosing it.
    enclosing: Vec<Option<usize>>,
    /// For each `(`, the index of its `)`.
    close: Vec<Option<usize>>,
    /// (lowercased alias or table name, real table if it is one).
    aliases: Vec<(String, Option<String>)>,
    /// Distinct real tables the statement names.
    tables: Vec<String>,
    insert: Option<InsertShape>,
}

impl<'s, 'a> Hints<'s, 'a> {
    fn new(sig: &'s [Token<'a>]) -> Self {
        let mut enclosing = vec![None; sig.len()];
        let mut close = vec![None; sig.len()];
        let mut stack: Vec<usize> = Vec::new();
        for (i, t) in sig.iter().enumerate() {
            enclosing[i] = stack.last().copied();
            if t.is_punct("(") {
                stack.push(i);
            } else if t.is_punct(")") {
                if let Some(o) = stack.pop() {
                    close[o] = Some(i);
                }
            }
        }
        let mut h = Hints {
            sig,
            enclosing,
            close,
            aliases: Vec::new(),
            tables: Vec::new(),
            insert: None,
        };
        h.collect_tables();
        h.insert = h.insert_shape();
        h
    }

    fn at(&self, i: isize) -> Option<&Token<'a>> {
        usize::try_from(i).ok().and_then(|i| self.sig.get(i))
    }

    fn kw(&self, i: isize, kw: &str) -> bool {
        self.at(i).is_some_and(|t| t.is_kw(kw))
    }

    fn punct(&self, i: isize, p: &str) -> bool {
        self.at(i).is_some_and(|t| t.is_punct(p))
    }

    fn op_in(&self, i: isize, ops: &[&str]) -> bool {
        self.at(i)
            .is_some_and(|t| t.kind == Kind::Op && ops.contains(&t.text))
    }

    fn after_group(&self, open: usize) -> Option<usize> {
        self.close.get(open).copied().flatten().map(|c| c + 1)
    }

    /// Qualified name starting at `k`: (parts, index after).
    fn qualified_name(&self, k: usize) -> Option<(Vec<String>, usize)> {
        let first = self.sig.get(k)?;
        if !is_name_part(first) {
            return None;
        }
        let mut parts = vec![ident_value(first)];
        let mut k = k + 1;
        while self.punct(k as isize, ".") && self.sig.get(k + 1).is_some_and(is_name_part) {
            parts.push(ident_value(&self.sig[k + 1]));
            k += 2;
        }
        Some((parts, k))
    }

    /// One `FROM`/`JOIN`/`UPDATE`/`INTO` item: (real table, alias, index after).
    /// `allow_fn` is false after INTO, where `name(` starts a column list.
    fn table_ref(
        &self,
        mut k: usize,
        allow_fn: bool,
    ) -> Option<(Option<String>, Option<String>, usize)> {
        if self.kw(k as isize, "ONLY") || self.kw(k as isize, "LATERAL") {
            k += 1;
        }
        let real;
        if self.punct(k as isize, "(") {
            real = None;
            k = self.after_group(k)?;
        } else {
            let t = self.sig.get(k)?;
            if !(t.kind == Kind::QuotedIdent || (t.kind == Kind::Word && !is_reserved(t.text))) {
                return None;
            }
            let (parts, next) = self.qualified_name(k)?;
            k = next;
            if allow_fn && self.punct(k as isize, "(") {
                // A set-returning function, not a table.
                real = None;
                k = self.after_group(k)?;
            } else {
                real = parts.last().cloned();
            }
        }
        let mut alias = None;
        if self.kw(k as isize, "AS") {
            k += 1;
        }
        if let Some(t) = self.sig.get(k).filter(|t| is_name(t)) {
            alias = Some(ident_value(t));
            k += 1;
            if self.punct(k as isize, "(") {
                k = self.after_group(k)?;
            }
        }
        Some((real, alias, k))
    }

    fn collect_tables(&mut self) {
        let n = self.sig.len();
        for i in 0..n {
            let ii = i as isize;
            let t = &self.sig[i];
            let mut into = false;
            let (start, list) = if t.is_kw("FROM") {
                if self.kw(ii - 1, "DISTINCT") {
                    continue;
                }
                // FROM inside EXTRACT(.. FROM ..), substring(.. FROM ..) etc. is no table.
                if let Some(o) = self.enclosing[i] {
                    if !(self.kw(o as isize + 1, "SELECT") || self.kw(o as isize + 1, "DELETE")) {
                        continue;
                    }
                }
                (i + 1, true)
            } else if t.is_kw("JOIN") {
                (i + 1, false)
            } else if t.is_kw("INTO") {
                into = true;
                (i + 1, false)
            } else if t.is_kw("USING") && !self.punct(ii + 1, "(") {
                (i + 1, true)
            } else if t.is_kw("UPDATE") {
                if self.kw(ii - 1, "FOR") || self.kw(ii + 1, "SET") {
                    continue;
                }
                if self.kw(ii + 1, "OR") {
                    (i + 3, false)
                } else {
                    (i + 1, false)
                }
            } else {
                continue;
            };
            let mut k = start;
            while let Some((real, alias, next)) = self.table_ref(k, !into) {
                if let Some(r) = &real {
                    if !self.tables.iter().any(|x| x.eq_ignore_ascii_case(r)) {
                        self.tables.push(r.clone());
                    }
                    self.aliases.push((r.to_lowercase(), Some(r.clone())));
                }
                if let Some(a) = alias {
                    self.aliases.push((a.to_lowercase(), real));
                }
                if list && self.punct(next as isize, ",") {
                    k = next + 1;
                } else {
                    break;
                }
            }
        }
    }

    fn insert_shape(&self) -> Option<InsertShape> {
        let n = self.sig.len();
        let verb = (0..n).find(|&i| {
            self.enclosing[i].is_none()
                && (self.sig[i].is_kw("INSERT")
                    || (self.sig[i].is_kw("REPLACE") && self.kw(i as isize + 1, "INTO")))
        })?;
        let into = (verb + 1..n.min(verb + 4)).find(|&i| self.sig[i].is_kw("INTO"))?;
        let (parts, mut k) = self.qualified_name(into + 1)?;
        let table = parts.last()?.clone();
        if self.kw(k as isize, "AS") {
            k += 2;
        }
        let mut columns = None;
        if self.punct(k as isize, "(") {
            let close = self.close.get(k).copied().flatten()?;
            let mut cols = Vec::new();
            let mut j = k + 1;
            while j < close {
                let t = &self.sig[j];
                // Any identifier can be listed here, keywords included.
                if !is_name_part(t) || t.text.starts_with('$') {
                    return None;
                }
                cols.push(ident_value(t));
                j += 1;
                if j < close {
                    if !self.punct(j as isize, ",") {
                        return None;
                    }
                    j += 1;
                }
            }
            columns = Some(cols);
            k = close + 1;
        }
        if !self.kw(k as isize, "VALUES") {
            return None;
        }
        k += 1;
        let mut rows = Vec::new();
        while self.punct(k as isize, "(") {
            rows.push(k);
            k = self.after_group(k)?;
            if !self.punct(k as isize, ",") {
                break;
            }
            k += 1;
        }
        Some(InsertShape {
            table,
            columns,
            rows,
        })
    }

    /// The real table a qualifier (or, without one, the statement) refers to.
    fn resolve(&self, qualifier: Option<String>) -> Option<String> {
        match qualifier {
            Some(q) => {
                let lower = q.to_lowercase();
                match self.aliases.iter().find(|(a, _)| *a == lower) {
                    Some((_, Some(real))) => Some(real.clone()),
                    _ => Some(q),
                }
            }
            None if self.tables.len() == 1 => self.tables.first().cloned(),
            None => None,
        }
    }

    fn column(&self, name: Option<(Option<String>, String)>) -> Option<ParamHint> {
        let (q, column) = name?;
        Some(ParamHint::Column {
            table: self.resolve(q),
            column,
        })
    }

    /// Whether token `j` names a column where it stands: an identifier or
    /// non-reserved word, any word after `qualifier.`, or a soft keyword
    /// (`by`, `set`, `values`, ...) in a place that expects an operand.
    fn column_word(&self, j: usize) -> bool {
        let Some(t) = self.sig.get(j) else {
            return false;
        };
        if is_name(t) {
            return true;
        }
        if t.kind != Kind::Word || t.text.starts_with('$') {
            return false;
        }
        let jj = j as isize;
        if self.punct(jj - 1, ".") && self.at(jj - 2).is_some_and(is_name_part) {
            return true;
        }
        if !in_list(t.text, SOFT_KEYWORDS) {
            return false;
        }
        let Some(p) = self.at(jj - 1) else {
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
        let t = self.at(end)?;
        if !self.column_word(usize::try_from(end).ok()?) {
            return None;
        }
        let column = ident_value(t);
        let mut qualifier = None;
        let mut j = end;
        while self.punct(j - 1, ".") && self.at(j - 2).is_some_and(is_name_part) {
            if qualifier.is_none() {
                qualifier = self.at(j - 2).map(ident_value);
            }
            j -= 2;
        }
        if self.punct(j - 1, ".") {
            return None;
        }
        Some((qualifier, column))
    }

    /// Column reference starting at `start`.
    fn name_after(&self, start: isize) -> Option<(Option<String>, String)> {
        let (parts, next) = self.qualified_name(usize::try_from(start).ok()?)?;
        if !self.column_word(next.checked_sub(1)?)
            || self.punct(next as isize, "(")
            || self.punct(next as isize, ".")
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

    /// Whether token `i` is a whole element of the group opened at `open`.
    fn direct_element(&self, i: isize) -> bool {
        (self.punct(i - 1, "(") || self.punct(i - 1, ","))
            && (self.punct(i + 1, ",") || self.punct(i + 1, ")"))
    }

    /// Position of element `i` in the group opened at `open` (top-level commas before it).
    fn position(&self, open: usize, i: usize) -> usize {
        let mut pos = 0;
        let mut j = open + 1;
        while j < i {
            if self.sig[j].is_punct("(") {
                j = self.after_group(j).unwrap_or(i);
                continue;
            }
            if self.sig[j].is_punct(",") {
                pos += 1;
            }
            j += 1;
        }
        pos
    }

    /// Skip a `NOT` before index `j`, e.g. `col NOT LIKE $1`.
    fn skip_not(&self, j: isize) -> isize {
        if self.kw(j, "NOT") {
            j - 1
        } else {
            j
        }
    }

    fn hint(&self, i: usize) -> ParamHint {
        let ii = i as isize;
        let explicit = |name: Option<(String, usize)>| name.and_then(|(n, _)| cast_type(&n).ok());
        if self.punct(ii + 1, "::") {
            if let Some(t) = explicit(parse_type_name(self.sig, i + 2)) {
                return ParamHint::Type(t);
            }
        }
        if self.punct(ii - 1, "(") && self.kw(ii - 2, "CAST") && self.kw(ii + 1, "AS") {
            let name = parse_type_name(self.sig, i + 2);
            let t = explicit(name.clone())
                .or_else(|| name.and_then(|(n, _)| PgType::from_sqlite_decltype(&n)));
            if let Some(t) = t {
                return ParamHint::Type(t);
            }
        }
        if self.kw(ii - 1, "LIMIT")
            || self.kw(ii - 1, "OFFSET")
            || (self.kw(ii - 2, "FETCH") && (self.kw(ii - 1, "FIRST") || self.kw(ii - 1, "NEXT")))
        {
            return ParamHint::Type(PgType::Int8);
        }
        if let (Some(open), Some(shape)) = (self.enclosing[i], &self.insert) {
            if shape.rows.contains(&open) && self.direct_element(ii) {
                let pos = self.position(open, i);
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
        if let Some(open) = self.enclosing[i] {
            let o = open as isize;
            if self.direct_element(ii) && self.kw(o - 1, "IN") {
                if let Some(h) = self.column(self.name_before(self.skip_not(o - 2))) {
                    return h;
                }
            }
        }
        let before = if self.op_in(ii - 1, COMPARISONS) {
            self.name_before(ii - 2)
        } else if self
            .at(ii - 1)
            .is_some_and(|t| t.kind == Kind::Word && in_list(t.text, LIKE_KEYWORDS))
        {
            self.name_before(self.skip_not(ii - 2))
        } else if self.op_in(ii - 1, &["+", "-"]) && self.op_in(ii - 2, COMPARISONS) {
            self.name_before(ii - 3)
        } else if self.kw(ii - 1, "BETWEEN") {
            self.name_before(self.skip_not(ii - 2))
        } else if self.kw(ii - 1, "SYMMETRIC") && self.kw(ii - 2, "BETWEEN") {
            self.name_before(self.skip_not(ii - 3))
        } else if self.kw(ii - 1, "AND") && self.kw(ii - 3, "BETWEEN") {
            self.name_before(self.skip_not(ii - 4))
        } else if self.kw(ii - 1, "AND")
            && self.kw(ii - 3, "SYMMETRIC")
            && self.kw(ii - 4, "BETWEEN")
        {
            self.name_before(self.skip_not(ii - 5))
        } else {
            None
        };
        if let Some(h) = self.column(before) {
            return h;
        }
        if self.op_in(ii + 1, COMPARISONS) {
            if let Some(h) = self.column(self.name_after(ii + 2)) {
                return h;
            }
        }
        if self.op_in(ii - 1, ARITHMETIC) {
            if let Some(h) = self.column(self.name_before(ii - 2)) {
                return h;
            }
        }
        if self.op_in(ii + 1, ARITHMETIC) {
            if let Some(h) = self.column(self.name_after(ii + 2)) {
                return h;
            }
        }
        ParamHint::Unknown
    }

    /// Hints for `$1..=$count`; the first informative occurrence of each wins.
    fn all(&self, count: usize) -> Vec<ParamHint> {
        let mut hints = vec![ParamHint::Unknown; count];
        for (i, t) in self.sig.iter().enumerate() {
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

    fn hints(s: &str) -> Vec<ParamHint> {
        match translate(s) {
            Ok(t) => t.param_hints,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    fn col(table: Option<&str>, column: &str) -> ParamHint {
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
    fn joins_and_aliases() {
        let s = "select * from accounts a join branches b on a.bid = b.bid where a.aid = $1 and b.bbalance > $2 and x = $3";
        assert_eq!(
            hints(s),
            vec![
                col(Some("accounts"), "aid"),
                col(Some("branches"), "bbalance"),
                col(None, "x")
            ]
        );
        assert_eq!(
            hints("select * from main.t as q where q.a = $1"),
            vec![col(Some("t"), "a")]
        );
        assert_eq!(
            hints("select * from a, b where b.x = $1"),
            vec![col(Some("b"), "x")]
        );
        // A qualifier that is not a known alias is passed through.
        assert_eq!(
            hints("select * from t where other.x = $1"),
            vec![col(Some("other"), "x")]
        );
        // EXTRACT(.. FROM ..) names no table.
        assert_eq!(
            hints("select extract(year from ts) from t where id = $1"),
            vec![col(Some("t"), "id")]
        );
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
    fn insert_values() {
        assert_eq!(
            hints("insert into t (a, b) values ($1, $2), ($3, $4)"),
            vec![
                col(Some("t"), "a"),
                col(Some("t"), "b"),
                col(Some("t"), "a"),
                col(Some("t"), "b")
            ]
        );
        assert_eq!(
            hints("insert into t values ($1, 5, $2)"),
            vec![col(Some("t"), "#0"), col(Some("t"), "#2")]
        );
        assert_eq!(
            hints("INSERT OR REPLACE INTO \"T\" (\"A\", b) VALUES ($1, f(1, 2), $2)"),
            vec![col(Some("T"), "A"), ParamHint::Unknown]
        );
        assert_eq!(
            hints("insert into t (a) values ($1, $2)"),
            vec![col(Some("t"), "a"), ParamHint::Unknown]
        );
        assert_eq!(
            hints("insert into t (a) values ($1::int8)"),
            vec![ParamHint::Type(PgType::Int8)]
        );
        assert_eq!(
            hints("insert into t (a, b) values ($1, $2) on conflict (a) do update set b = $3"),
            vec![
                col(Some("t"), "a"),
                col(Some("t"), "b"),
                col(Some("t"), "b")
            ]
        );
        assert_eq!(
            hints("with x as (select 1) insert into t (a) values ($1)"),
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
    fn insert_keyword_columns() {
        // Regression: `by` (a keyword) in the column list made the whole
        // shape unrecognised, so every hint was Unknown.
        let cols = ["id", "i", "b", "f", "d", "t", "vc", "bl", "by", "ok"];
        assert_eq!(
            hints("INSERT INTO v(id, i, b, f, d, t, vc, bl, by, ok) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
            cols.iter().map(|c| col(Some("v"), c)).collect::<Vec<_>>()
        );
        assert_eq!(
            hints("insert into t (\"select\", [from], `order`, set, values, by) values ($1, $2, $3, $4, $5, $6)"),
            ["select", "from", "order", "set", "values", "by"]
                .iter()
                .map(|c| col(Some("t"), c))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            hints("insert into t(by) values ($1)"),
            vec![col(Some("t"), "by")]
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
