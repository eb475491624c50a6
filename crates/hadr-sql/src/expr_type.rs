//! The PostgreSQL type of one SQL expression, as far as its text alone
//! determines it: literals, casts, comparisons, concatenation, integer
//! arithmetic and built-in functions with a fixed result type.

use crate::brackets::{close_of, top_level};
use crate::keywords::{in_list, is_kw_in, is_name_part, is_reserved, COMPARISONS, VALUE_KEYWORDS};
use crate::lexer::{Kind, Token};
use crate::type_name::parse_type_name;
use crate::types::PgType;

/// Nesting (parentheses, subqueries) beyond this is not looked into, so deep
/// input cannot exhaust the stack.
pub(crate) const MAX_DEPTH: usize = 64;

/// Keywords whose presence at the top level of an expression makes it boolean.
const BOOLEAN_KEYWORDS: &[&str] = &[
    "AND", "BETWEEN", "EXISTS", "GLOB", "ILIKE", "IN", "IS", "ISNULL", "LIKE", "MATCH", "NOT",
    "NOTNULL", "OR", "REGEXP", "SIMILAR",
];

/// Arithmetic operators; `||` is typed on its own, as text.
const ARITHMETIC: &[&str] = &["+", "-", "*", "/", "%"];

/// Type of an expression: `None` if its shape is not recognised (tokens left
/// over), `Some(None)` if recognised but of undetermined type.
pub(crate) fn expr(toks: &[Token<'_>], depth: usize) -> Option<Option<PgType>> {
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
        // A row constructor: a record, which has no column type to announce.
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
    // Only a built-in has a known result type; a function in another schema
    // may be a user function that happens to share its name.
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
    // PostgreSQL's functions hadr registers (crates/hadr-server/src/pg_functions.rs).
    const TIMESTAMPTZ: &[&str] = &[
        "clock_timestamp",
        "now",
        "statement_timestamp",
        "transaction_timestamp",
    ];
    const PG_TEXT: &[&str] = &[
        "current_database",
        "current_setting",
        "current_role",
        "current_schema",
        "current_user",
        "session_user",
        "set_config",
        "version",
    ];
    if in_list(name, TIMESTAMPTZ) {
        Some(PgType::Timestamptz)
    } else if in_list(name, PG_TEXT) {
        Some(PgType::Text)
    } else if name.eq_ignore_ascii_case("gen_random_uuid") {
        Some(PgType::Uuid)
    } else if name.eq_ignore_ascii_case("pg_backend_pid") {
        Some(PgType::Int4)
    } else if in_list(name, INT8) {
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
    use PgType::*;

    use crate::columns::tests::one;
    use crate::types::PgType;

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
}
