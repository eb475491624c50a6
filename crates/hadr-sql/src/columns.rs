//! The PostgreSQL types of a statement's result columns, as far as its text
//! alone determines them (SQLite declares no type for expression columns).

use crate::brackets::{close_of, top_level};
use crate::keywords::{
    in_list, is_kw_in, is_name, is_name_part, is_reserved, COMPARISONS, VALUE_KEYWORDS,
};
use crate::lexer::{tokenize, Kind, Token};
use crate::type_name::parse_type_name;
use crate::types::PgType;

/// Nesting (parentheses, subqueries) beyond this is not looked into, so deep
/// input cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

/// Keywords whose presence at the top level of an expression makes it boolean.
const BOOLEAN_KEYWORDS: &[&str] = &[
    "AND", "BETWEEN", "EXISTS", "GLOB", "ILIKE", "IN", "IS", "ISNULL", "LIKE", "MATCH", "NOT",
    "NOTNULL", "OR", "REGEXP", "SIMILAR",
];

/// Keywords that end a SELECT list.
const LIST_END: &[&str] = &[
    "EXCEPT",
    "FETCH",
    "FOR",
    "FROM",
    "GROUP",
    "HAVING",
    "INTERSECT",
    "INTO",
    "LIMIT",
    "OFFSET",
    "ORDER",
    "UNION",
    "WHERE",
    "WINDOW",
];

const SET_OPS: &[&str] = &["UNION", "INTERSECT", "EXCEPT"];

/// Clauses that may follow a parenthesised query arm.
const AFTER_QUERY: &[&str] = &["ORDER", "LIMIT", "OFFSET", "FETCH", "FOR"];

const ARITHMETIC: &[&str] = &["+", "-", "*", "/", "%"];

type Columns = Vec<Option<PgType>>;

/// PostgreSQL types of a statement's result columns that the text alone determines, one entry per
/// result column of the outermost SELECT (after any WITH list; for UNION/INTERSECT/EXCEPT use the first
/// arm) or of a RETURNING list; None for an entry the text does not determine. Returns None if the
/// column count is unknown from the text (a `*` or `t.*` item) or the statement returns no rows.
pub fn result_column_types(stmt: &str) -> Option<Vec<Option<PgType>>> {
    let toks = tokenize(stmt);
    if toks.iter().any(|t| !t.terminated) {
        return None;
    }
    let sig: Vec<Token<'_>> = toks.into_iter().filter(|t| !t.is_trivia()).collect();
    let mut end = sig.len();
    while end > 0 && sig[end - 1].is_punct(";") {
        end -= 1;
    }
    let sig = &sig[..end];
    // One statement only.
    if top_level(sig)?.iter().any(|&i| sig[i].is_punct(";")) {
        return None;
    }
    statement(sig, 0)
}

/// Result columns of a whole statement.
fn statement(s: &[Token<'_>], depth: usize) -> Option<Columns> {
    if depth > MAX_DEPTH {
        return None;
    }
    let first = s.first()?;
    if first.is_kw("WITH") {
        return statement(&s[skip_with(s)?..], depth + 1);
    }
    if first.is_kw("SELECT") || first.is_kw("VALUES") || first.is_punct("(") {
        return query(s, depth);
    }
    if ["INSERT", "UPDATE", "DELETE", "REPLACE"]
        .iter()
        .any(|k| first.is_kw(k))
    {
        let returning = top_level(s)?
            .into_iter()
            .find(|&i| s[i].is_kw("RETURNING"))?;
        return items(&s[returning + 1..], depth);
    }
    None
}

/// Index of the statement after a `WITH` list.
fn skip_with(s: &[Token<'_>]) -> Option<usize> {
    let mut k = 1;
    if s.get(k)?.is_kw("RECURSIVE") {
        k += 1;
    }
    loop {
        if !matches!(s.get(k)?.kind, Kind::Word | Kind::QuotedIdent) {
            return None;
        }
        k += 1;
        if s.get(k)?.is_punct("(") {
            k = close_of(s, k)? + 1;
        }
        if !s.get(k)?.is_kw("AS") {
            return None;
        }
        k += 1;
        if s.get(k)?.is_kw("NOT") {
            k += 1;
        }
        if s.get(k)?.is_kw("MATERIALIZED") {
            k += 1;
        }
        if !s.get(k)?.is_punct("(") {
            return None;
        }
        k = close_of(s, k)? + 1;
        if !s.get(k)?.is_punct(",") {
            return Some(k);
        }
        k += 1;
    }
}

/// A query with set operations: the first arm's columns, except that a
/// column another arm types differently is undetermined.
fn query(s: &[Token<'_>], depth: usize) -> Option<Columns> {
    let ops: Vec<usize> = top_level(s)?
        .into_iter()
        .filter(|&i| is_kw_in(&s[i], SET_OPS))
        .collect();
    let mut cols = arm(&s[..ops.first().copied().unwrap_or(s.len())], depth)?;
    for (n, &op) in ops.iter().enumerate() {
        let mut k = op + 1;
        if s.get(k)
            .is_some_and(|t| t.is_kw("ALL") || t.is_kw("DISTINCT"))
        {
            k += 1;
        }
        let end = ops.get(n + 1).copied().unwrap_or(s.len());
        let Some(other) = s.get(k..end).and_then(|a| arm(a, depth)) else {
            continue;
        };
        if other.len() == cols.len() {
            for (c, o) in cols.iter_mut().zip(other) {
                if o.is_some() && *c != o {
                    *c = None;
                }
            }
        }
    }
    Some(cols)
}

/// One arm of a query: `SELECT ...`, `VALUES ...` or `( query )`.
fn arm(s: &[Token<'_>], depth: usize) -> Option<Columns> {
    if depth > MAX_DEPTH {
        return None;
    }
    let first = s.first()?;
    if first.is_kw("SELECT") {
        select_list(s)
    } else if first.is_kw("VALUES") {
        values_list(s, depth)
    } else if first.is_punct("(") {
        let close = close_of(s, 0)?;
        let rest_ok = s.get(close + 1).is_none_or(|t| is_kw_in(t, AFTER_QUERY));
        if !rest_ok {
            return None;
        }
        let inner = &s[1..close];
        if inner.first().is_some_and(|t| t.is_kw("WITH")) {
            statement(inner, depth + 1)
        } else {
            query(inner, depth + 1)
        }
    } else {
        None
    }
}

/// Items of `SELECT [DISTINCT [ON (...)] | ALL] items [FROM ...]`.
fn select_list(s: &[Token<'_>]) -> Option<Columns> {
    let mut k = 1;
    if s.get(k).is_some_and(|t| t.is_kw("DISTINCT")) {
        k += 1;
        if s.get(k).is_some_and(|t| t.is_kw("ON")) && s.get(k + 1).is_some_and(|t| t.is_punct("("))
        {
            k = close_of(s, k + 1)? + 1;
        }
    } else if s.get(k).is_some_and(|t| t.is_kw("ALL")) {
        k += 1;
    }
    let list = s.get(k..)?;
    let end = top_level(list)?
        .into_iter()
        .find(|&i| is_kw_in(&list[i], LIST_END) && !(i > 0 && list[i - 1].is_kw("AS")));
    if let Some(e) = end {
        // SELECT ... INTO creates a table and returns no rows.
        if list[e].is_kw("INTO") {
            return None;
        }
    }
    items(&list[..end.unwrap_or(list.len())], 0)
}

/// `VALUES (..), (..)`: a column's type where every row agrees on it.
fn values_list(s: &[Token<'_>], depth: usize) -> Option<Columns> {
    let mut k = 1;
    let mut cols: Option<Columns> = None;
    while s.get(k).is_some_and(|t| t.is_punct("(")) {
        let close = close_of(s, k)?;
        let row = items(&s[k + 1..close], depth + 1)?;
        match &mut cols {
            None => cols = Some(row),
            Some(c) if c.len() == row.len() => {
                for (a, b) in c.iter_mut().zip(row) {
                    if *a != b {
                        *a = None;
                    }
                }
            }
            Some(_) => return None,
        }
        k = close + 1;
        if !s.get(k).is_some_and(|t| t.is_punct(",")) {
            break;
        }
        k += 1;
    }
    cols
}

/// Types of a comma-separated item list; `None` for `*` items or an empty item.
fn items(s: &[Token<'_>], depth: usize) -> Option<Columns> {
    if s.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    let mut start = 0;
    let mut commas: Vec<usize> = top_level(s)?
        .into_iter()
        .filter(|&i| s[i].is_punct(","))
        .collect();
    commas.push(s.len());
    for c in commas {
        let item = &s[start..c];
        if item.is_empty() || is_star(item) {
            return None;
        }
        out.push(item_type(item, depth));
        start = c + 1;
    }
    Some(out)
}

/// `*` or `t.*`.
fn is_star(item: &[Token<'_>]) -> bool {
    match item {
        [t] => t.is_punct("*"),
        [.., dot, t] => t.is_punct("*") && dot.is_punct("."),
        _ => false,
    }
}

/// Whether `t` can end an operand, so that a name after it is an alias.
fn ends_operand(t: &Token<'_>) -> bool {
    match t.kind {
        Kind::Number | Kind::Str | Kind::DollarStr | Kind::Param | Kind::QuotedIdent => true,
        Kind::Word => !is_reserved(t.text) || in_list(t.text, VALUE_KEYWORDS) || t.is_kw("END"),
        _ => t.is_punct(")") || t.is_punct("]"),
    }
}

/// Type of one select item, ignoring an `AS alias` or bare alias.
fn item_type(item: &[Token<'_>], depth: usize) -> Option<PgType> {
    let n = item.len();
    if n >= 3
        && item[n - 2].is_kw("AS")
        && matches!(item[n - 1].kind, Kind::Word | Kind::QuotedIdent | Kind::Str)
    {
        return expr(&item[..n - 2], depth).flatten();
    }
    if let Some(t) = expr(item, depth) {
        return t;
    }
    if n >= 2 && is_name(&item[n - 1]) && ends_operand(&item[n - 2]) {
        return expr(&item[..n - 1], depth).flatten();
    }
    None
}

/// Type of an expression: `None` if its shape is not recognised (tokens left
/// over), `Some(None)` if recognised but of undetermined type.
fn expr(toks: &[Token<'_>], depth: usize) -> Option<Option<PgType>> {
    if depth > MAX_DEPTH || toks.is_empty() {
        return None;
    }
    let mut boolean = false;
    let mut concat = false;
    let mut comma = false;
    let mut case = 0usize;
    for i in top_level(toks)? {
        let t = &toks[i];
        if t.is_kw("CASE") {
            case += 1;
        } else if t.is_kw("END") && case > 0 {
            case -= 1;
        } else if case == 0 {
            boolean |= is_kw_in(t, BOOLEAN_KEYWORDS)
                || (t.kind == Kind::Op && COMPARISONS.contains(&t.text));
            concat |= t.kind == Kind::Op && t.text == "||";
            comma |= t.is_punct(",");
        }
    }
    if comma {
        // A row constructor.
        return Some(None);
    }
    if boolean {
        return Some(Some(PgType::Bool));
    }
    if concat {
        return Some(Some(PgType::Text));
    }
    arithmetic(toks, depth)
}

fn is_int(t: Option<PgType>) -> bool {
    matches!(t, Some(PgType::Int2 | PgType::Int4 | PgType::Int8))
}

/// `[+-]* operand ([+-*/%] [+-]* operand)*`: a lone (signed) operand keeps
/// its numeric type, integer-only arithmetic is int8, anything else unknown.
fn arithmetic(toks: &[Token<'_>], depth: usize) -> Option<Option<PgType>> {
    let mut k = 0;
    let mut types = Vec::new();
    let mut signed = false;
    loop {
        while toks
            .get(k)
            .is_some_and(|t| t.kind == Kind::Op && (t.text == "-" || t.text == "+"))
        {
            signed = true;
            k += 1;
        }
        let (end, ty) = postfix(toks, k, depth)?;
        types.push(ty);
        k = end;
        let Some(op) = toks.get(k) else { break };
        if !(op.kind == Kind::Op && ARITHMETIC.contains(&op.text)) {
            return None;
        }
        k += 1;
    }
    Some(match types.as_slice() {
        [t] if !signed => *t,
        [t] => t.filter(|t| {
            is_int(Some(*t)) || matches!(t, PgType::Float4 | PgType::Float8 | PgType::Numeric)
        }),
        _ => types.iter().all(|t| is_int(*t)).then_some(PgType::Int8),
    })
}

/// An operand with its `::type` casts, `COLLATE`s and subscripts: (index
/// after, type).
fn postfix(toks: &[Token<'_>], k: usize, depth: usize) -> Option<(usize, Option<PgType>)> {
    let (mut end, mut ty) = atom(toks, k, depth)?;
    loop {
        match toks.get(end) {
            Some(t) if t.is_punct("::") => {
                let (name, after) = parse_type_name(toks, end + 1)?;
                ty = PgType::from_name(&name);
                end = after;
            }
            Some(t) if t.is_kw("COLLATE") => {
                let name = toks.get(end + 1)?;
                if !matches!(name.kind, Kind::Word | Kind::QuotedIdent | Kind::Str) {
                    return None;
                }
                end += 2;
            }
            Some(t) if t.is_punct("[") => {
                end = close_of(toks, end)? + 1;
                ty = None;
            }
            _ => return Some((end, ty)),
        }
    }
}

/// A literal, name, function call, parenthesised expression, `CAST(...)`,
/// `EXISTS (...)` or `CASE ... END` at `k`: (index after, type).
fn atom(toks: &[Token<'_>], k: usize, depth: usize) -> Option<(usize, Option<PgType>)> {
    let t = toks.get(k)?;
    let next_is_group = toks.get(k + 1).is_some_and(|n| n.is_punct("("));
    match t.kind {
        Kind::Number => Some((k + 1, number_type(t.text))),
        Kind::Str => {
            // X'..' is a blob, B'..' a bit string.
            let text = !matches!(t.text.as_bytes().first(), Some(b'x' | b'X' | b'b' | b'B'));
            Some((k + 1, text.then_some(PgType::Text)))
        }
        Kind::DollarStr => Some((k + 1, Some(PgType::Text))),
        Kind::Param => Some((k + 1, None)),
        Kind::Punct if t.text == "(" => {
            let close = close_of(toks, k)?;
            let inner = &toks[k + 1..close];
            let subquery = inner.first().is_some_and(|f| {
                ["SELECT", "VALUES", "WITH", "TABLE"]
                    .iter()
                    .any(|w| f.is_kw(w))
            });
            let ty = if subquery {
                None
            } else {
                expr(inner, depth + 1).flatten()
            };
            Some((close + 1, ty))
        }
        Kind::Word if t.is_kw("TRUE") || t.is_kw("FALSE") => Some((k + 1, Some(PgType::Bool))),
        Kind::Word if in_list(t.text, VALUE_KEYWORDS) => Some((k + 1, None)),
        Kind::Word if t.is_kw("CASE") => Some((case_end(toks, k)?, None)),
        Kind::Word if t.is_kw("CAST") && next_is_group => {
            let close = close_of(toks, k + 1)?;
            let inner = &toks[k + 2..close];
            let ty = top_level(inner)?
                .into_iter()
                .rev()
                .find(|&i| inner[i].is_kw("AS"))
                .and_then(|a| parse_type_name(inner, a + 1))
                .filter(|(_, after)| *after == inner.len())
                .and_then(|(name, _)| PgType::from_name(&name));
            Some((close + 1, ty))
        }
        Kind::Word if t.is_kw("EXISTS") && next_is_group => {
            Some((close_of(toks, k + 1)? + 1, Some(PgType::Bool)))
        }
        Kind::Word if is_reserved(t.text) && !["LEFT", "RIGHT"].iter().any(|w| t.is_kw(w)) => None,
        Kind::Word | Kind::QuotedIdent => name_or_call(toks, k),
        _ => None,
    }
}

/// Index after the `END` closing the `CASE` at `k`.
fn case_end(toks: &[Token<'_>], k: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut j = k;
    while let Some(t) = toks.get(j) {
        if t.is_punct("(") || t.is_punct("[") {
            j = close_of(toks, j)? + 1;
            continue;
        }
        if t.is_kw("CASE") {
            depth += 1;
        } else if t.is_kw("END") {
            depth = depth.checked_sub(1)?;
            if depth == 0 {
                return Some(j + 1);
            }
        }
        j += 1;
    }
    None
}

/// A (qualified) column reference, or a function call with optional
/// `FILTER (...)` and `OVER ...`.
fn name_or_call(toks: &[Token<'_>], k: usize) -> Option<(usize, Option<PgType>)> {
    let mut j = k + 1;
    while toks.get(j).is_some_and(|t| t.is_punct(".")) && toks.get(j + 1).is_some_and(is_name_part)
    {
        j += 2;
    }
    if !toks.get(j).is_some_and(|t| t.is_punct("(")) {
        return Some((j, None));
    }
    let close = close_of(toks, j)?;
    let mut end = close + 1;
    if toks.get(end).is_some_and(|t| t.is_kw("FILTER"))
        && toks.get(end + 1).is_some_and(|t| t.is_punct("("))
    {
        end = close_of(toks, end + 1)? + 1;
    }
    if toks.get(end).is_some_and(|t| t.is_kw("OVER")) {
        match toks.get(end + 1) {
            Some(t) if t.is_punct("(") => end = close_of(toks, end + 1)? + 1,
            Some(t) if is_name_part(t) => end += 2,
            _ => return None,
        }
    }
    // Built-ins only: unqualified or in pg_catalog.
    let schema_ok = j == k + 1 || (j == k + 3 && toks[k].text.eq_ignore_ascii_case("pg_catalog"));
    let name = &toks[j - 1];
    let ty = if schema_ok && name.kind == Kind::Word {
        function_type(name.text)
    } else {
        None
    };
    Some((end, ty))
}

/// Result type of a built-in function whose type does not depend on its arguments.
fn function_type(name: &str) -> Option<PgType> {
    const INT8: &[&str] = &[
        "changes",
        "count",
        "dense_rank",
        "instr",
        "last_insert_rowid",
        "length",
        "random",
        "rank",
        "row_number",
        "total_changes",
        "unicode",
    ];
    const FLOAT8: &[&str] = &["avg", "cume_dist", "percent_rank", "total"];
    const TEXT: &[&str] = &[
        "date",
        "datetime",
        "format",
        "group_concat",
        "hex",
        "lower",
        "ltrim",
        "printf",
        "quote",
        "replace",
        "rtrim",
        "strftime",
        "string_agg",
        "substr",
        "substring",
        "time",
        "trim",
        "typeof",
        "upper",
    ];
    if in_list(name, INT8) {
        Some(PgType::Int8)
    } else if in_list(name, FLOAT8) {
        Some(PgType::Float8)
    } else if in_list(name, TEXT) {
        Some(PgType::Text)
    } else {
        None
    }
}

/// `int8` for an integer literal (float8 beyond its range, as SQLite reads
/// it), `float8` for a decimal one, `None` for anything malformed.
fn number_type(text: &str) -> Option<PgType> {
    let b = text.as_bytes();
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        return (!hex.is_empty() && hex.bytes().all(|c| c.is_ascii_hexdigit()))
            .then_some(PgType::Int8);
    }
    if b.iter().all(u8::is_ascii_digit) {
        return Some(if text.parse::<i64>().is_ok() {
            PgType::Int8
        } else {
            PgType::Float8
        });
    }
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(p) => (&text[..p], Some(&text[p + 1..])),
        None => (text, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
    let mantissa_ok = digits(int) && digits(frac) && !(int.is_empty() && frac.is_empty());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    (mantissa_ok && exponent_ok).then_some(PgType::Float8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use PgType::*;

    fn types(s: &str) -> Option<Vec<Option<PgType>>> {
        result_column_types(s)
    }

    /// The type of the single column of `SELECT <item>`.
    fn one(item: &str) -> Option<PgType> {
        match types(&format!("SELECT {item}")) {
            Some(v) if v.len() == 1 => v[0],
            other => panic!("{item}: {other:?}"),
        }
    }

    #[test]
    fn casts() {
        assert_eq!(one("$1::int8"), Some(Int8));
        assert_eq!(one("x::text"), Some(Text));
        assert_eq!(one("x::int"), Some(Int4));
        assert_eq!(one("x :: double precision"), Some(Float8));
        assert_eq!(one("x::timestamp with time zone"), Some(Timestamptz));
        assert_eq!(one("x::varchar(10)"), Some(Varchar));
        assert_eq!(one("x::numeric(10, 2)"), Some(Numeric));
        assert_eq!(one("t.x::bool"), Some(Bool));
        assert_eq!(one("x::text::int8"), Some(Int8));
        assert_eq!(one("f(a, b)::text"), Some(Text));
        assert_eq!(one("count(*)::int4"), Some(Int4));
        assert_eq!(one("(a + b)::float8"), Some(Float8));
        assert_eq!(one("((a + b))::float8"), Some(Float8));
        assert_eq!(one("(a = b)::int"), Some(Int4));
        assert_eq!(one("case when a then 1 end::text"), Some(Text));
        assert_eq!(one("x::int[]"), None);
        assert_eq!(one("x::regclass"), None);
        assert_eq!(one("CAST(x AS bigint)"), Some(Int8));
        assert_eq!(one("cast(x as double precision)"), Some(Float8));
        assert_eq!(one("CAST(f(a, 'b') AS varchar(3))"), Some(Varchar));
        assert_eq!(one("CAST(CAST(x AS text) AS date)"), Some(Date));
        assert_eq!(one("CAST(x AS BLOB)"), None);
        assert_eq!(one("CAST(x AS int)::text"), Some(Text));
        // Not the outermost operation.
        assert_eq!(one("a + b::int"), None);
        assert_eq!(one("-1::int"), Some(Int4));
        assert_eq!(one("x::int COLLATE nocase"), Some(Int4));
    }

    #[test]
    fn functions() {
        assert_eq!(one("count(*)"), Some(Int8));
        assert_eq!(one("COUNT(DISTINCT a)"), Some(Int8));
        assert_eq!(one("count(*) filter (where a > 1)"), Some(Int8));
        assert_eq!(one("count(*) over (partition by a, b)"), Some(Int8));
        assert_eq!(one("row_number() over w"), Some(Int8));
        assert_eq!(one("pg_catalog.count(a)"), Some(Int8));
        assert_eq!(one("myschema.count(a)"), None);
        assert_eq!(one("\"my func\"(a)"), None);
        for f in [
            "length(a)",
            "instr(a, 'x')",
            "unicode(a)",
            "random()",
            "changes()",
            "last_insert_rowid()",
        ] {
            assert_eq!(one(f), Some(Int8), "{f}");
        }
        for f in ["avg(a)", "total(a)"] {
            assert_eq!(one(f), Some(Float8), "{f}");
        }
        for f in [
            "lower(a)",
            "UPPER(a)",
            "substr(a, 1, 2)",
            "replace(a, ',', ';')",
            "trim(a)",
            "printf('%d,%d', a, b)",
            "format('%s', a)",
            "hex(a)",
            "quote(a)",
            "typeof(a)",
            "date('now')",
            "datetime(a, '+1 day')",
            "time(a)",
            "strftime('%Y', a)",
            "group_concat(a, ',')",
            "string_agg(a, ',' order by b)",
        ] {
            assert_eq!(one(f), Some(Text), "{f}");
        }
        for f in [
            "sum(a)",
            "min(a)",
            "max(a, b)",
            "abs(a)",
            "coalesce(a, 1)",
            "ifnull(a, 1)",
            "nullif(a, 1)",
            "f(a)",
        ] {
            assert_eq!(one(f), None, "{f}");
        }
    }

    #[test]
    fn literals() {
        assert_eq!(one("1"), Some(Int8));
        assert_eq!(one("0x1F"), Some(Int8));
        assert_eq!(one("-42"), Some(Int8));
        assert_eq!(one("99999999999999999999"), Some(Float8));
        assert_eq!(one("1.5"), Some(Float8));
        assert_eq!(one(".5"), Some(Float8));
        assert_eq!(one("1e10"), Some(Float8));
        assert_eq!(one("-1.5e-3"), Some(Float8));
        assert_eq!(one("'a'"), Some(Text));
        assert_eq!(one("E'a\\'b'"), Some(Text));
        assert_eq!(one("$$x$$"), Some(Text));
        assert_eq!(one("X'00'"), None);
        assert_eq!(one("TRUE"), Some(Bool));
        assert_eq!(one("false"), Some(Bool));
        assert_eq!(one("NULL"), None);
        assert_eq!(one("$1"), None);
        assert_eq!(one("-'a'"), None);
        assert_eq!(one("(1)"), Some(Int8));
    }

    #[test]
    fn booleans() {
        for e in [
            "a = b",
            "a == b",
            "a <> b",
            "a != b",
            "a < 1",
            "a <= 1",
            "a > 1",
            "a >= 1",
            "a IS NULL",
            "a IS NOT NULL",
            "a IS DISTINCT FROM b",
            "a ISNULL",
            "a NOTNULL",
            "a LIKE 'x%'",
            "a NOT LIKE 'x%'",
            "a ILIKE 'x'",
            "a GLOB '*'",
            "a NOT GLOB '*'",
            "a IN (1, 2)",
            "a NOT IN (SELECT b FROM t)",
            "a BETWEEN 1 AND 2",
            "a NOT BETWEEN 1 AND 2",
            "EXISTS (SELECT 1 FROM t)",
            "NOT EXISTS (SELECT 1)",
            "NOT a",
            "a AND b",
            "a OR b",
            "x::int = 1",
            "a || b = c",
            "f(a, b) > 0",
            "(a = b)",
        ] {
            assert_eq!(one(e), Some(Bool), "{e}");
        }
        // Comparisons inside CASE or a call decide nothing.
        assert_eq!(one("CASE WHEN a = b THEN 1 ELSE 2 END"), None);
        assert_eq!(one("f(a = b)"), None);
        assert_eq!(one("(SELECT a = b FROM t)"), None);
        assert_eq!(one("CASE WHEN a THEN 1 END = 1"), Some(Bool));
    }

    #[test]
    fn concatenation_and_arithmetic() {
        assert_eq!(one("a || b"), Some(Text));
        assert_eq!(one("'x' || 1 || b"), Some(Text));
        assert_eq!(one("$1::int8 + 1"), Some(Int8));
        assert_eq!(one("1 + 2 * 3"), Some(Int8));
        assert_eq!(one("$1::int4 * $2::int2 - 7 % 2"), Some(Int8));
        assert_eq!(one("(1 + 2) / 3"), Some(Int8));
        assert_eq!(one("count(*) + 1"), Some(Int8));
        assert_eq!(one("1 - -1"), Some(Int8));
        assert_eq!(one("a + 1"), None);
        assert_eq!(one("$1 + 1"), None);
        assert_eq!(one("1 + 1.5"), None);
        assert_eq!(one("$1::float8 + 1"), None);
        assert_eq!(one("a -> 'b'"), None);
    }

    #[test]
    fn undetermined() {
        assert_eq!(one("a"), None);
        assert_eq!(one("t.a"), None);
        assert_eq!(one("CASE WHEN a THEN 'x' END"), None);
        assert_eq!(one("(SELECT count(*) FROM t)"), None);
        assert_eq!(one("ARRAY[1, 2]"), None);
        assert_eq!(one("a[1]"), None);
    }

    #[test]
    fn aliases() {
        assert_eq!(one("count(*) AS n"), Some(Int8));
        assert_eq!(one("count(*) n"), Some(Int8));
        assert_eq!(one("x::text name"), Some(Text));
        assert_eq!(one("x::text AS \"Name\""), Some(Text));
        assert_eq!(one("x::double precision d"), Some(Float8));
        assert_eq!(one("1 AS from"), Some(Int8));
        assert_eq!(one("a = b AS eq"), Some(Bool));
        assert_eq!(one("a = b eq"), Some(Bool));
        assert_eq!(one("1 + 2 three"), Some(Int8));
        assert_eq!(one("CASE WHEN a THEN 1 END c"), None);
        assert_eq!(one("a || b AS s"), Some(Text));
        assert_eq!(one("'x' AS 'y'"), Some(Text));
        assert_eq!(
            types("SELECT 1 AS a, 'x' b, count(*) AS from FROM t"),
            Some(vec![Some(Int8), Some(Text), Some(Int8)])
        );
    }

    #[test]
    fn lists() {
        // Commas inside calls, strings, brackets and CASTs do not split items.
        assert_eq!(
            types("SELECT printf('%d,%d', a, b), 'a,b', coalesce(a, b)::text, ARRAY[1, 2], CAST(a AS numeric(5, 2)) FROM t WHERE x IN (1, 2)"),
            Some(vec![Some(Text), Some(Text), Some(Text), None, Some(Numeric)])
        );
        assert_eq!(
            types("select $1::int8 + 1, x::text as name, count(*) as n, a = b from t"),
            Some(vec![Some(Int8), Some(Text), Some(Int8), Some(Bool)])
        );
        assert_eq!(
            types("SELECT DISTINCT a::text, 1 FROM t"),
            Some(vec![Some(Text), Some(Int8)])
        );
        assert_eq!(
            types("SELECT DISTINCT ON (a, b) a::text FROM t ORDER BY a"),
            Some(vec![Some(Text)])
        );
        assert_eq!(types("SELECT ALL 1;"), Some(vec![Some(Int8)]));
        assert_eq!(
            types("select 1 /* , */ , -- x, y\n 'a'"),
            Some(vec![Some(Int8), Some(Text)])
        );
        assert_eq!(
            types("SELECT extract(year from d)::int, 2 FROM t"),
            Some(vec![Some(Int4), Some(Int8)])
        );
        assert_eq!(types("SELECT a FROM t LIMIT 1"), Some(vec![None]));
    }

    #[test]
    fn stars() {
        assert_eq!(types("SELECT * FROM t"), None);
        assert_eq!(types("SELECT t.* FROM t"), None);
        assert_eq!(types("SELECT a, s.t.* FROM t"), None);
        assert_eq!(types("SELECT 1, * FROM t"), None);
        assert_eq!(types("INSERT INTO t VALUES (1) RETURNING *"), None);
        assert_eq!(
            types("SELECT count(*), t.a * 2 FROM t"),
            Some(vec![Some(Int8), None])
        );
    }

    #[test]
    fn with_and_set_operations() {
        assert_eq!(
            types("WITH x AS (SELECT * FROM t), y (a) AS MATERIALIZED (SELECT 1) SELECT count(*) FROM x"),
            Some(vec![Some(Int8)])
        );
        assert_eq!(
            types("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n::int4, 'a' FROM r"),
            Some(vec![Some(Int4), Some(Text)])
        );
        assert_eq!(
            types("SELECT a::text, 1 FROM t UNION ALL SELECT b, 2 FROM u ORDER BY 1"),
            Some(vec![Some(Text), Some(Int8)])
        );
        assert_eq!(
            types("SELECT 1 INTERSECT SELECT 2 EXCEPT SELECT 3"),
            Some(vec![Some(Int8)])
        );
        // An arm that types a column differently leaves it undetermined.
        assert_eq!(
            types("SELECT 1, 'a' UNION SELECT 1.5, 'b'"),
            Some(vec![None, Some(Text)])
        );
        assert_eq!(
            types("(SELECT x::text FROM t) UNION (SELECT y FROM u) LIMIT 3"),
            Some(vec![Some(Text)])
        );
        assert_eq!(types("(SELECT 1, 2)"), Some(vec![Some(Int8), Some(Int8)]));
        assert_eq!(
            types("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x RETURNING id::int8"),
            Some(vec![Some(Int8)])
        );
        assert_eq!(
            types("VALUES (1, 'a', 1), (2, 'b', 2.5)"),
            Some(vec![Some(Int8), Some(Text), None])
        );
    }

    #[test]
    fn returning() {
        assert_eq!(
            types("INSERT INTO t (id, name) VALUES ($1, $2) RETURNING id, name::text"),
            Some(vec![None, Some(Text)])
        );
        assert_eq!(
            types("UPDATE t SET a = a + 1 WHERE id = $1 RETURNING a, a > 10 AS big"),
            Some(vec![None, Some(Bool)])
        );
        assert_eq!(
            types("DELETE FROM t RETURNING count(*) OVER ()"),
            Some(vec![Some(Int8)])
        );
        assert_eq!(
            types("INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET b = 2 RETURNING a::text;"),
            Some(vec![Some(Text)])
        );
    }

    #[test]
    fn no_rows_or_unknown() {
        for s in [
            "INSERT INTO t VALUES (1)",
            "INSERT INTO t SELECT a::int FROM u",
            "UPDATE t SET a = 1",
            "DELETE FROM t WHERE a = (SELECT 1)",
            "WITH x AS (SELECT 1) DELETE FROM t",
            "CREATE TABLE t (a int)",
            "SELECT 1 INTO t",
            "BEGIN",
            "SET x = 1",
            "TABLE t",
            "SHOW x",
            "",
            ";",
            "SELECT",
            "SELECT 1,",
            "SELECT , 1",
            "SELECT (1",
            "SELECT 1)",
            "SELECT 'a",
            "SELECT 1; SELECT 2",
            "WITH x SELECT 1",
            "INSERT INTO t VALUES (1) RETURNING",
        ] {
            assert_eq!(types(s), None, "{s}");
        }
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let deep = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
        assert_eq!(types(&deep), Some(vec![None]));
        let shallow = format!("SELECT {}1{}", "(".repeat(10), ")".repeat(10));
        assert_eq!(types(&shallow), Some(vec![Some(Int8)]));
        let arms = format!("{}SELECT 1{}", "(".repeat(5000), ")".repeat(5000));
        assert_eq!(types(&arms), None);
        let _ = types(&"(".repeat(100_000));
        let _ = types(&format!("SELECT {}", "CASE ".repeat(10_000)));
    }
}
