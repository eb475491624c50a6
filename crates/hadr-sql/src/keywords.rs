//! Word classes shared by translation and result typing: which keywords can
//! never be a name, which still are one in some places, which stand for a
//! value on their own.

use crate::lexer::{Kind, Token};

/// Keywords that can never be a column name, table alias or function name
/// where translation and result typing look for one.
const RESERVED: &[&str] = &[
    "ALL",
    "AND",
    "ANY",
    "ARRAY",
    "AS",
    "ASC",
    "BETWEEN",
    "BY",
    "CASE",
    "CAST",
    "CHECK",
    "COLLATE",
    "CROSS",
    "CURRENT_DATE",
    "CURRENT_TIME",
    "CURRENT_TIMESTAMP",
    "DEFAULT",
    "DELETE",
    "DESC",
    "DISTINCT",
    "DO",
    "ELSE",
    "END",
    "ESCAPE",
    "EXCEPT",
    "EXISTS",
    "FALSE",
    "FETCH",
    "FOR",
    "FROM",
    "FULL",
    "GLOB",
    "GROUP",
    "HAVING",
    "ILIKE",
    "IN",
    "INDEXED",
    "INNER",
    "INSERT",
    "INTERSECT",
    "INTO",
    "IS",
    "ISNULL",
    "JOIN",
    "LATERAL",
    "LEFT",
    "LIKE",
    "LIMIT",
    "LOCALTIME",
    "LOCALTIMESTAMP",
    "MATCH",
    "NATURAL",
    "NOT",
    "NOTNULL",
    "NULL",
    "OFFSET",
    "ON",
    "OR",
    "ORDER",
    "OUTER",
    "OVER",
    "REGEXP",
    "RETURNING",
    "RIGHT",
    "SELECT",
    "SET",
    "SOME",
    "TABLE",
    "THEN",
    "TRUE",
    "UNION",
    "UPDATE",
    "USING",
    "VALUES",
    "WHEN",
    "WHERE",
    "WINDOW",
    "WITH",
];

/// Reserved words that still act as a function name before `(`.
pub(crate) const FUNCTION_KEYWORDS: &[&str] =
    &["ANY", "ARRAY", "CAST", "EXISTS", "LEFT", "RIGHT", "SOME"];

/// Reserved words that are complete operands on their own.
pub(crate) const VALUE_KEYWORDS: &[&str] = &[
    "CURRENT_DATE",
    "CURRENT_TIME",
    "CURRENT_TIMESTAMP",
    "FALSE",
    "LOCALTIME",
    "LOCALTIMESTAMP",
    "NULL",
    "TRUE",
];

/// Words of [`RESERVED`] that PostgreSQL still accepts as column names; they
/// are one when they stand where an operand is expected (`SET by = $1`).
pub(crate) const SOFT_KEYWORDS: &[&str] = &[
    "BETWEEN", "BY", "DELETE", "ESCAPE", "EXISTS", "GLOB", "INDEXED", "INSERT", "MATCH", "OVER",
    "REGEXP", "SET", "UPDATE", "VALUES",
];

/// Comparison operators of both dialects (`==` is SQLite's).
pub(crate) const COMPARISONS: &[&str] = &["=", "==", "<>", "!=", "<", "<=", ">", ">="];

/// Whether `word` is in [`RESERVED`].
pub(crate) fn is_reserved(word: &str) -> bool {
    in_list(word, RESERVED)
}

/// Whether `word` is in `list`, ignoring case as SQL keywords do.
pub(crate) fn in_list(word: &str, list: &[&str]) -> bool {
    list.iter().any(|r| r.eq_ignore_ascii_case(word))
}

/// Whether `t` is one of the keywords in `list`.
pub(crate) fn is_kw_in(t: &Token<'_>, list: &[&str]) -> bool {
    t.kind == Kind::Word && in_list(t.text, list)
}

/// A token that can be (part of) a table or column name.
pub(crate) fn is_name_part(t: &Token<'_>) -> bool {
    matches!(t.kind, Kind::Word | Kind::QuotedIdent)
}

/// A token that can be a column name or alias on its own.
pub(crate) fn is_name(t: &Token<'_>) -> bool {
    t.kind == Kind::QuotedIdent
        || (t.kind == Kind::Word && !is_reserved(t.text) && !t.text.starts_with('$'))
}
