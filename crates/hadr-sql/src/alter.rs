//! `ALTER TABLE` forms PostgreSQL has and SQLite does not: `ADD [CONSTRAINT
//! n] PRIMARY KEY / UNIQUE / FOREIGN KEY / CHECK`, `DROP CONSTRAINT n`,
//! `ALTER [COLUMN] c SET DEFAULT x / DROP DEFAULT / SET NOT NULL / DROP NOT
//! NULL`. SQLite changes such a table by rebuilding it (its documentation,
//! "Making Other Kinds Of Table Schema Changes"): a new table from an edited
//! `CREATE TABLE`, the rows copied, the old one dropped, the new one
//! renamed. This module is the pure half: [`parse`] finds the actions, and
//! [`edit_create`] edits the table's `CREATE TABLE` text; the server runs
//! the steps (crates/hadr-server/src/rebuild.rs).
//!
//! `ADD COLUMN`, `DROP COLUMN` and `RENAME` are SQLite's own and are left
//! to it.

use crate::brackets::close_of;
use crate::error::SqlError;
use crate::lexer::{ident_value, tokenize, Kind, Token};

/// One change to a table's definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlterAction {
    /// `ADD [CONSTRAINT name] <constraint>`.
    AddConstraint {
        /// The name given, or PostgreSQL's default (`t_pkey`, `t_a_fkey`…).
        name: String,
        /// `PRIMARY KEY (a)`, `FOREIGN KEY (a) REFERENCES p`… as SQLite takes it.
        text: String,
        /// A primary key (its columns become NOT NULL).
        primary_key: bool,
        /// The columns it names (for a primary key or unique constraint).
        columns: Vec<String>,
    },
    /// `DROP CONSTRAINT [IF EXISTS] name`.
    DropConstraint {
        /// The constraint.
        name: String,
        /// `IF EXISTS`.
        if_exists: bool,
    },
    /// `ALTER COLUMN c SET DEFAULT expr` (the expression as SQLite takes it).
    SetDefault(String, String),
    /// `ALTER COLUMN c DROP DEFAULT`.
    DropDefault(String),
    /// `ALTER COLUMN c SET NOT NULL`.
    SetNotNull(String),
    /// `ALTER COLUMN c DROP NOT NULL`.
    DropNotNull(String),
    /// `ALTER COLUMN c [SET DATA] TYPE t [USING expr]`: the column
    /// declared `t`, its values copied through `expr` (as SQLite takes it)
    /// or as they are; the server checks that they took the new type.
    SetType {
        /// The column.
        column: String,
        /// The type as written (SQLite keeps any type name).
        ty: String,
        /// `USING expr`.
        using: Option<String>,
    },
}

/// An `ALTER TABLE` carried out by rebuilding the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableRebuild {
    /// The table, unquoted.
    pub table: String,
    /// `ALTER TABLE IF EXISTS`.
    pub if_exists: bool,
    /// The changes, in order.
    pub actions: Vec<AlterAction>,
}

fn solid<'a>(toks: &[Token<'a>]) -> Vec<Token<'a>> {
    toks.iter().filter(|t| !t.is_trivia()).copied().collect()
}

fn kw(s: &[Token<'_>], k: usize, w: &str) -> bool {
    s.get(k).is_some_and(|t| t.is_kw(w))
}

fn name_of(t: &Token<'_>) -> Option<String> {
    match t.kind {
        Kind::Word => Some(t.text.to_lowercase()),
        Kind::QuotedIdent => Some(ident_value(t)),
        _ => None,
    }
}

/// Split `s` at depth-0 commas into (start, end) index ranges.
fn split_commas(s: &[Token<'_>]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, t) in s.iter().enumerate() {
        if t.is_punct("(") {
            depth += 1;
        } else if t.is_punct(")") {
            depth -= 1;
        } else if t.is_punct(",") && depth == 0 {
            out.push((start, i));
            start = i + 1;
        }
    }
    out.push((start, s.len()));
    out
}

/// The names in a parenthesised list starting at `open`.
fn paren_names(s: &[Token<'_>], open: usize) -> Vec<String> {
    let Some(close) = close_of(s, open) else {
        return Vec::new();
    };
    s[open + 1..close].iter().filter_map(name_of).collect()
}

/// The text from token `a` through token `b` (inclusive) of `src`.
fn text<'a>(src: &'a str, s: &[Token<'_>], a: usize, b: usize) -> &'a str {
    &src[s[a].start..s[b].end()]
}

/// The rebuild an `ALTER TABLE` needs; None for any other statement and
/// for the forms SQLite carries out itself. `src` is the statement after
/// hadr's rewriting (so casts and defaults are SQLite's already).
pub fn parse(src: &str) -> Option<Result<TableRebuild, SqlError>> {
    let toks = tokenize(src);
    let mut s = solid(&toks);
    while s.last().is_some_and(|t| t.is_punct(";")) {
        s.pop();
    }
    if !(kw(&s, 0, "ALTER") && kw(&s, 1, "TABLE")) {
        return None;
    }
    let mut k = 2;
    let if_exists = kw(&s, k, "IF") && kw(&s, k + 1, "EXISTS");
    if if_exists {
        k += 2;
    }
    if kw(&s, k, "ONLY") {
        k += 1;
    }
    let mut table = name_of(s.get(k)?)?;
    k += 1;
    if s.get(k).is_some_and(|t| t.is_punct(".")) {
        let schema = std::mem::replace(&mut table, name_of(s.get(k + 1)?)?);
        if schema != "public" && schema != "main" {
            return None;
        }
        k += 2;
    }
    let body = &s[k..];
    let mut actions = Vec::new();
    let mut other = 0;
    for (a, b) in split_commas(body) {
        match action(src, &body[a..b], &table) {
            Some(Ok(x)) => actions.push(x),
            Some(Err(e)) => return Some(Err(e)),
            None => other += 1,
        }
    }
    if actions.is_empty() {
        return None;
    }
    if other > 0 {
        return Some(Err(SqlError::Unsupported(
            "ALTER TABLE with a constraint or column default change and other actions in one statement: run them one by one".into(),
        )));
    }
    Some(Ok(TableRebuild {
        table,
        if_exists,
        actions,
    }))
}

fn action(src: &str, s: &[Token<'_>], table: &str) -> Option<Result<AlterAction, SqlError>> {
    if kw(s, 0, "ADD") {
        let mut k = 1;
        let mut name = None;
        if kw(s, k, "CONSTRAINT") {
            name = Some(name_of(s.get(k + 1)?)?);
            k += 2;
        }
        let first = s.get(k)?;
        let (primary_key, suffix) = if first.is_kw("PRIMARY") {
            (true, "pkey")
        } else if first.is_kw("UNIQUE") {
            (false, "key")
        } else if first.is_kw("FOREIGN") {
            (false, "fkey")
        } else if first.is_kw("CHECK") {
            (false, "check")
        } else {
            return None;
        };
        let open = (k..s.len()).find(|&i| s[i].is_punct("("))?;
        let columns = if suffix == "check" {
            Vec::new()
        } else {
            paren_names(s, open)
        };
        let mut end = s.len() - 1;
        // PostgreSQL-only trailers SQLite would not parse.
        if end >= 1 && kw(s, end - 1, "NOT") && kw(s, end, "VALID") {
            end -= 2;
        }
        let name = name.unwrap_or_else(|| match suffix {
            "pkey" | "check" => format!("{table}_{suffix}"),
            _ => format!("{table}_{}_{suffix}", columns.join("_")),
        });
        return Some(Ok(AlterAction::AddConstraint {
            name,
            text: text(src, s, k, end).to_string(),
            primary_key,
            columns,
        }));
    }
    if kw(s, 0, "DROP") && kw(s, 1, "CONSTRAINT") {
        let if_exists = kw(s, 2, "IF") && kw(s, 3, "EXISTS");
        let at = if if_exists { 4 } else { 2 };
        if kw(s, at + 1, "CASCADE") {
            return Some(Err(SqlError::Unsupported(
                "DROP CONSTRAINT … CASCADE".into(),
            )));
        }
        return Some(Ok(AlterAction::DropConstraint {
            name: name_of(s.get(at)?)?,
            if_exists,
        }));
    }
    if kw(s, 0, "ALTER") {
        let k = if kw(s, 1, "COLUMN") { 2 } else { 1 };
        let column = name_of(s.get(k)?)?;
        let k = k + 1;
        return match (s.get(k).map(|t| t.upper()), s.get(k + 1).map(|t| t.upper())) {
            (Some(a), Some(b)) if a == "SET" && b == "DEFAULT" && s.len() > k + 2 => {
                let expr = text(src, s, k + 2, s.len() - 1);
                let expr = if expr.starts_with('(') && close_of(s, k + 2) == Some(s.len() - 1) {
                    expr.to_string()
                } else {
                    format!("({expr})")
                };
                Some(Ok(AlterAction::SetDefault(column, expr)))
            }
            (Some(a), Some(b)) if a == "DROP" && b == "DEFAULT" => {
                Some(Ok(AlterAction::DropDefault(column)))
            }
            (Some(a), Some(b)) if a == "SET" && b == "NOT" && kw(s, k + 2, "NULL") => {
                Some(Ok(AlterAction::SetNotNull(column)))
            }
            (Some(a), Some(b)) if a == "DROP" && b == "NOT" && kw(s, k + 2, "NULL") => {
                Some(Ok(AlterAction::DropNotNull(column)))
            }
            (Some(a), b) if a == "TYPE" || (a == "SET" && b.as_deref() == Some("DATA")) => {
                let at = if a == "TYPE" {
                    k + 1
                } else if kw(s, k + 2, "TYPE") {
                    k + 3
                } else {
                    return Some(Err(SqlError::Syntax("SET DATA needs TYPE".into())));
                };
                Some(set_type(src, s, column, at))
            }
            (Some(a), _) if a == "SET" => Some(Err(SqlError::Unsupported(format!(
                "ALTER TABLE … ALTER COLUMN … {}",
                text(src, s, k, s.len() - 1)
            )))),
            _ => None,
        };
    }
    None
}

/// `TYPE t [COLLATE c] [USING expr]` from the type at `s[k]` on.
fn set_type(src: &str, s: &[Token<'_>], column: String, k: usize) -> Result<AlterAction, SqlError> {
    let using_at = (k..s.len()).find(|&i| kw(s, i, "USING"));
    let collate_at = (k..using_at.unwrap_or(s.len())).find(|&i| kw(s, i, "COLLATE"));
    let ty_end = collate_at.or(using_at).unwrap_or(s.len());
    if ty_end <= k {
        return Err(SqlError::Syntax("ALTER COLUMN … TYPE needs a type".into()));
    }
    let ty = text(src, s, k, ty_end - 1).to_string();
    let lower = ty.to_ascii_lowercase();
    if lower.contains('[') || lower.ends_with("serial") || lower.starts_with("serial") {
        return Err(SqlError::Unsupported(format!(
            "ALTER COLUMN … TYPE {ty} (arrays and serial types)"
        )));
    }
    if collate_at.is_some() {
        return Err(SqlError::Unsupported(
            "ALTER COLUMN … TYPE … COLLATE".into(),
        ));
    }
    let using = match using_at {
        Some(u) if u + 1 < s.len() => Some(format!("({})", text(src, s, u + 1, s.len() - 1))),
        Some(_) => return Err(SqlError::Syntax("USING needs an expression".into())),
        None => None,
    };
    Ok(AlterAction::SetType { column, ty, using })
}

/// Why a table's definition cannot be edited as asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The column does not exist (42703).
    #[error("column \"{column}\" of relation \"{table}\" does not exist")]
    NoColumn {
        /// Table.
        table: String,
        /// Column.
        column: String,
    },
    /// A second primary key (42P16).
    #[error("multiple primary keys for table \"{0}\" are not allowed")]
    SecondPrimaryKey(String),
    /// No constraint of that name (42704).
    #[error("constraint \"{name}\" of relation \"{table}\" does not exist")]
    NoConstraint {
        /// Table.
        table: String,
        /// Constraint.
        name: String,
    },
    /// A constraint of that name exists (42710).
    #[error("constraint \"{0}\" for relation \"{1}\" already exists")]
    DuplicateConstraint(String, String),
    /// The stored definition is not one this module can read (XX000).
    #[error("cannot read the definition of table \"{0}\"")]
    Unreadable(String),
}

impl EditError {
    /// The SQLSTATE a client gets.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            EditError::NoColumn { .. } => "42703",
            EditError::SecondPrimaryKey(_) => "42P16",
            EditError::NoConstraint { .. } => "42704",
            EditError::DuplicateConstraint(..) => "42710",
            EditError::Unreadable(_) => "XX000",
        }
    }
}

const COLUMN_CONSTRAINT_WORDS: &[&str] = &[
    "CONSTRAINT",
    "PRIMARY",
    "NOT",
    "NULL",
    "UNIQUE",
    "CHECK",
    "DEFAULT",
    "COLLATE",
    "REFERENCES",
    "GENERATED",
    "AS",
];
const TABLE_CONSTRAINT_WORDS: &[&str] = &["CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"];
const INTEGER_TYPES: &[&str] = &[
    "int", "integer", "int4", "int8", "bigint", "int2", "smallint",
];

/// One item of a `CREATE TABLE` list, as text pieces to put back together.
struct Item {
    /// Column name; None for a table constraint.
    column: Option<String>,
    /// Constraint name of a table constraint.
    constraint: Option<String>,
    text: String,
}

fn is_word_in(t: &Token<'_>, list: &[&str]) -> bool {
    t.kind == Kind::Word && list.iter().any(|w| t.text.eq_ignore_ascii_case(w))
}

/// `create` (a table's `CREATE TABLE` text as SQLite stores it) edited by
/// `actions` and renamed to `new_name` (already quoted).
pub fn edit_create(
    create: &str,
    table: &str,
    actions: &[AlterAction],
    new_name: &str,
) -> Result<String, EditError> {
    let unreadable = || EditError::Unreadable(table.to_string());
    let toks = tokenize(create);
    let s = solid(&toks);
    let open = s
        .iter()
        .position(|t| t.is_punct("("))
        .ok_or_else(unreadable)?;
    let close = close_of(&s, open).ok_or_else(unreadable)?;
    let list = &s[open + 1..close];
    let mut items: Vec<Item> = split_commas(list)
        .into_iter()
        .filter(|(a, b)| a < b)
        .map(|(a, b)| {
            let first = &list[a];
            let is_constraint = is_word_in(first, TABLE_CONSTRAINT_WORDS);
            Item {
                column: if is_constraint { None } else { name_of(first) },
                constraint: (is_constraint && first.is_kw("CONSTRAINT"))
                    .then(|| list.get(a + 1).and_then(name_of))
                    .flatten(),
                text: text(create, list, a, b - 1).to_string(),
            }
        })
        .collect();
    let has_pk = |items: &[Item]| {
        items.iter().any(|i| {
            let t = tokenize(&i.text);
            let s = solid(&t);
            s.windows(2)
                .any(|w| w[0].is_kw("PRIMARY") && w[1].is_kw("KEY"))
        })
    };
    let column_at = |items: &[Item], c: &str| {
        items
            .iter()
            .position(|i| {
                i.column
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(c))
            })
            .ok_or_else(|| EditError::NoColumn {
                table: table.to_string(),
                column: c.to_string(),
            })
    };
    for a in actions {
        match a {
            AlterAction::AddConstraint {
                name,
                text,
                primary_key,
                columns,
            } => {
                if items.iter().any(|i| {
                    i.constraint
                        .as_deref()
                        .is_some_and(|n| n.eq_ignore_ascii_case(name))
                }) {
                    return Err(EditError::DuplicateConstraint(name.clone(), table.into()));
                }
                for c in columns {
                    column_at(&items, c)?;
                }
                if *primary_key {
                    if has_pk(&items) {
                        return Err(EditError::SecondPrimaryKey(table.into()));
                    }
                    for c in columns {
                        let i = column_at(&items, c)?;
                        set_not_null(&mut items[i]);
                    }
                    // One integer column: make it SQLite's INTEGER PRIMARY
                    // KEY, the rowid itself, so a look-up by key is one
                    // b-tree search rather than an index's and the table's.
                    if let [c] = columns.as_slice() {
                        let i = column_at(&items, c)?;
                        integer_key_type(&mut items[i]);
                    }
                }
                items.push(Item {
                    column: None,
                    constraint: Some(name.clone()),
                    text: format!("CONSTRAINT {} {text}", quote(name)),
                });
            }
            AlterAction::DropConstraint { name, if_exists } => {
                let before = items.len();
                items.retain(|i| {
                    !i.constraint
                        .as_deref()
                        .is_some_and(|n| n.eq_ignore_ascii_case(name))
                });
                if items.len() == before && !if_exists {
                    return Err(EditError::NoConstraint {
                        table: table.into(),
                        name: name.clone(),
                    });
                }
            }
            AlterAction::SetDefault(c, expr) => {
                let i = column_at(&items, c)?;
                remove_default(&mut items[i]);
                items[i].text.push_str(&format!(" DEFAULT {expr}"));
            }
            AlterAction::DropDefault(c) => {
                let i = column_at(&items, c)?;
                remove_default(&mut items[i]);
            }
            AlterAction::SetNotNull(c) => {
                let i = column_at(&items, c)?;
                set_not_null(&mut items[i]);
            }
            AlterAction::SetType { column, ty, .. } => {
                let i = column_at(&items, column)?;
                set_column_type(&mut items[i], ty);
                // The sole key column stays the rowid if it stays an integer.
                if sole_key_column(&items).is_some_and(|k| k.eq_ignore_ascii_case(column)) {
                    integer_key_type(&mut items[i]);
                }
            }
            AlterAction::DropNotNull(c) => {
                let i = column_at(&items, c)?;
                let t = tokenize(&items[i].text);
                let s = solid(&t);
                let mut out = items[i].text.clone();
                for w in s.windows(2).rev() {
                    if w[0].is_kw("NOT") && w[1].is_kw("NULL") {
                        out.replace_range(w[0].start..w[1].end(), "");
                    }
                }
                items[i].text = out;
            }
        }
    }
    let tail = &create[s[close].end()..];
    Ok(format!(
        "CREATE TABLE {new_name} ({}){tail}",
        items
            .iter()
            .map(|i| i.text.trim())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The one column of the table's primary key, if it has exactly one.
fn sole_key_column(items: &[Item]) -> Option<String> {
    let mut found = None;
    for i in items {
        let t = tokenize(&i.text);
        let s = solid(&t);
        let Some(p) = s
            .windows(2)
            .position(|w| w[0].is_kw("PRIMARY") && w[1].is_kw("KEY"))
        else {
            continue;
        };
        found = match &i.column {
            Some(c) => Some(c.clone()),
            None => {
                let names = s
                    .get(p + 2)
                    .filter(|t| t.is_punct("("))
                    .map(|_| paren_names(&s, p + 2))
                    .unwrap_or_default();
                match names.as_slice() {
                    [one] => Some(one.clone()),
                    _ => None,
                }
            }
        };
    }
    found
}

/// Declare the column `ty`: the words after its name up to its first
/// constraint are the old type.
fn set_column_type(item: &mut Item, ty: &str) {
    let t = tokenize(&item.text);
    let s = solid(&t);
    let mut end = 1;
    while end < s.len() && !is_word_in(&s[end], COLUMN_CONSTRAINT_WORDS) {
        end = if s[end].is_punct("(") {
            close_of(&s, end).unwrap_or(s.len() - 1) + 1
        } else {
            end + 1
        };
    }
    if end > 1 {
        item.text.replace_range(s[1].start..s[end - 1].end(), ty);
    } else if let Some(name) = s.first() {
        item.text.insert_str(name.end(), &format!(" {ty}"));
    }
}

fn set_not_null(item: &mut Item) {
    let t = tokenize(&item.text);
    let s = solid(&t);
    if !s
        .windows(2)
        .any(|w| w[0].is_kw("NOT") && w[1].is_kw("NULL"))
    {
        item.text.push_str(" NOT NULL");
    }
}

/// Declare a column of an integer type `INTEGER`.
fn integer_key_type(item: &mut Item) {
    let t = tokenize(&item.text);
    let s = solid(&t);
    if let Some(ty) = s.get(1) {
        let ends_type = s
            .get(2)
            .is_none_or(|n| is_word_in(n, COLUMN_CONSTRAINT_WORDS));
        if ty.kind == Kind::Word && is_word_in(ty, INTEGER_TYPES) && ends_type {
            item.text.replace_range(ty.start..ty.end(), "INTEGER");
        }
    }
}

/// Remove a column's `DEFAULT x` (x: a parenthesised expression, a signed
/// number or one token).
fn remove_default(item: &mut Item) {
    let t = tokenize(&item.text);
    let s = solid(&t);
    let Some(d) = s.iter().position(|t| t.is_kw("DEFAULT")) else {
        return;
    };
    let mut end = d + 1;
    if s.get(end).is_some_and(|t| t.is_punct("(")) {
        end = close_of(&s, end).unwrap_or(s.len() - 1);
    } else if s
        .get(end)
        .is_some_and(|t| t.is_punct("-") || t.is_punct("+"))
    {
        end += 1;
    }
    let Some(last) = s.get(end) else {
        return;
    };
    item.text.replace_range(s[d].start..last.end(), "");
    item.text = item.text.trim_end().to_string();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(sql: &str) -> TableRebuild {
        parse(sql).expect("a rebuild").expect("parsed")
    }

    #[test]
    fn what_pgbench_sends() {
        let p = plan("alter table pgbench_branches add primary key (bid)");
        assert_eq!(p.table, "pgbench_branches");
        let create = "CREATE TABLE pgbench_branches(bid int not null,bbalance int,filler char(88))";
        assert_eq!(
            edit_create(create, "pgbench_branches", &p.actions, "\"tmp\"").unwrap(),
            "CREATE TABLE \"tmp\" (bid INTEGER not null, bbalance int, filler char(88), CONSTRAINT \"pgbench_branches_pkey\" primary key (bid))"
        );
        let f = plan("alter table pgbench_tellers add constraint pgbench_tellers_bid_fkey foreign key (bid) references pgbench_branches");
        let create = "CREATE TABLE pgbench_tellers(tid INTEGER not null primary key, bid int)";
        assert_eq!(
            edit_create(create, "pgbench_tellers", &f.actions, "x").unwrap(),
            "CREATE TABLE x (tid INTEGER not null primary key, bid int, CONSTRAINT \"pgbench_tellers_bid_fkey\" foreign key (bid) references pgbench_branches)"
        );
    }

    #[test]
    fn defaults_and_not_null() {
        let p = plan("ALTER TABLE public.t ALTER COLUMN a SET DEFAULT 5, ALTER b DROP DEFAULT, ALTER COLUMN c SET NOT NULL, ALTER d DROP NOT NULL");
        let create = "CREATE TABLE t(a int DEFAULT (1), b text default 'x' NOT NULL, c real, d int NOT NULL) STRICT";
        let out = edit_create(create, "t", &p.actions, "t2").unwrap();
        assert_eq!(
            out,
            "CREATE TABLE t2 (a int DEFAULT (5), b text  NOT NULL, c real NOT NULL, d int) STRICT"
        );
    }

    #[test]
    fn column_types() {
        let p = plan("ALTER TABLE t ALTER COLUMN a TYPE bigint, ALTER b SET DATA TYPE numeric(12, 2) USING CAST(b AS REAL) * 2, ALTER c TYPE varchar(20)");
        assert_eq!(
            p.actions[1],
            AlterAction::SetType {
                column: "b".into(),
                ty: "numeric(12, 2)".into(),
                using: Some("(CAST(b AS REAL) * 2)".into())
            }
        );
        let create =
            "CREATE TABLE t(a int NOT NULL, b text DEFAULT 'x', c character varying(5), d int)";
        assert_eq!(
            edit_create(create, "t", &p.actions, "x").unwrap(),
            "CREATE TABLE x (a bigint NOT NULL, b numeric(12, 2) DEFAULT 'x', c varchar(20), d int)"
        );
        // The sole key column stays the rowid.
        let p = plan("ALTER TABLE t ALTER id TYPE bigint");
        for create in [
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v text)",
            "CREATE TABLE t(id INTEGER NOT NULL, v text, CONSTRAINT t_pkey PRIMARY KEY (id))",
        ] {
            let out = edit_create(create, "t", &p.actions, "x").unwrap();
            assert!(out.starts_with("CREATE TABLE x (id INTEGER "), "{out}");
        }
        let out = edit_create("CREATE TABLE t(id, v)", "t", &p.actions, "x").unwrap();
        assert_eq!(out, "CREATE TABLE x (id bigint, v)");
        assert_eq!(
            edit_create(
                "CREATE TABLE t(a int)",
                "t",
                &plan("ALTER TABLE t ALTER nope TYPE int").actions,
                "x"
            )
            .unwrap_err()
            .sqlstate(),
            "42703"
        );
    }

    #[test]
    fn refusals_and_pass_through() {
        assert!(parse("ALTER TABLE t ADD COLUMN x int").is_none());
        assert!(parse("ALTER TABLE t RENAME TO u").is_none());
        assert!(parse("ALTER TABLE t DROP COLUMN x").is_none());
        assert!(parse("SELECT 1").is_none());
        assert!(matches!(
            parse("ALTER TABLE t ADD COLUMN x int, ADD PRIMARY KEY (a)"),
            Some(Err(SqlError::Unsupported(_)))
        ));
        assert!(matches!(
            parse("ALTER TABLE t ALTER COLUMN a TYPE int[]"),
            Some(Err(SqlError::Unsupported(_)))
        ));
        assert!(matches!(
            parse("ALTER TABLE t ALTER COLUMN a SET STATISTICS 100"),
            Some(Err(SqlError::Unsupported(_)))
        ));
        for missing in [
            "ALTER TABLE t ALTER COLUMN a SET DATA bigint",
            "ALTER TABLE t ALTER COLUMN a TYPE",
            "ALTER TABLE t ALTER COLUMN a TYPE USING a",
            "ALTER TABLE t ALTER COLUMN a TYPE int USING",
        ] {
            assert!(
                matches!(parse(missing), Some(Err(SqlError::Syntax(_)))),
                "{missing}: {:?}",
                parse(missing)
            );
        }
        let p = plan("ALTER TABLE t ADD PRIMARY KEY (a)");
        let e = edit_create("CREATE TABLE t(a int PRIMARY KEY)", "t", &p.actions, "x").unwrap_err();
        assert_eq!(e.sqlstate(), "42P16");
        let p = plan("ALTER TABLE t ADD UNIQUE (nope)");
        assert_eq!(
            edit_create("CREATE TABLE t(a int)", "t", &p.actions, "x")
                .unwrap_err()
                .sqlstate(),
            "42703"
        );
        let p = plan("ALTER TABLE t DROP CONSTRAINT t_a_key");
        let out = edit_create(
            "CREATE TABLE t(a int, CONSTRAINT t_a_key UNIQUE (a))",
            "t",
            &p.actions,
            "x",
        )
        .unwrap();
        assert_eq!(out, "CREATE TABLE x (a int)");
    }
}
