//! Rewriting PostgreSQL syntax SQLite lacks: `$N` parameters become `?N`,
//! `expr::type` casts become `CAST(expr AS type)` with SQLite type names.

use crate::error::SqlError;
use crate::keywords::{in_list, is_reserved, FUNCTION_KEYWORDS, VALUE_KEYWORDS};
use crate::lexer::{dollar_value, string_value, tokenize, Kind, Token};
use crate::type_name::{cast_type, parse_type_name};
use crate::types::PgType;

/// What a piece of output is, as far as finding the operand before a `::`
/// needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PieceKind {
    Trivia,
    Word,
    Ident,
    Str,
    Num,
    Param,
    /// A whole parenthesised group, already rewritten.
    Group,
    /// The output of a rewritten cast: an operand in its own right.
    Cast,
    Dot,
    Other,
}

/// A unit of rewritten output at one parenthesis level.
struct Piece {
    kind: PieceKind,
    text: String,
}

impl Piece {
    fn new(kind: PieceKind, text: impl Into<String>) -> Self {
        Piece {
            kind,
            text: text.into(),
        }
    }

    fn is_kw(&self, kw: &str) -> bool {
        self.kind == PieceKind::Word && self.text.eq_ignore_ascii_case(kw)
    }
}

fn concat(pieces: &[Piece]) -> String {
    pieces.iter().map(|p| p.text.as_str()).collect()
}

/// Rewrite parameters and casts. Parenthesised groups are collapsed into one
/// piece as they close, so "the operand before `::`" is always a short run of
/// pieces at the end of the current level. Returns the SQLite text and the
/// highest parameter number.
pub(crate) fn rewrite(toks: &[Token<'_>]) -> Result<(String, usize), SqlError> {
    let mut frames: Vec<Vec<Piece>> = vec![Vec::new()];
    let mut max_param = 0usize;
    let ddl = crate::ddl::is_table_ddl(toks);
    let mut k = 0;
    while k < toks.len() {
        let t = &toks[k];
        let kind = match t.kind {
            Kind::Space | Kind::LineComment | Kind::BlockComment => PieceKind::Trivia,
            Kind::Word => PieceKind::Word,
            Kind::QuotedIdent => PieceKind::Ident,
            Kind::Str | Kind::DollarStr => PieceKind::Str,
            Kind::Number => PieceKind::Num,
            Kind::Param => PieceKind::Param,
            Kind::Punct if t.text == "." => PieceKind::Dot,
            _ => PieceKind::Other,
        };
        if let Some(next) = dropped_words(toks, k) {
            k = next;
            continue;
        }
        match kind {
            PieceKind::Param => {
                let n = t
                    .param_number()
                    .ok_or_else(|| SqlError::BadParameter(t.text.to_string()))?;
                max_param = max_param.max(n);
                push(&mut frames, Piece::new(PieceKind::Param, format!("?{n}")));
            }
            _ if t.is_punct("::") => {
                let (name, next) = parse_type_name(toks, k + 1).ok_or_else(|| {
                    SqlError::Syntax(format!(
                        "expected a type name after '::' at byte {}",
                        t.start
                    ))
                })?;
                let ty = cast_type(&name)?;
                let frame = top(&mut frames);
                apply_cast(frame, ty).ok_or_else(|| {
                    SqlError::Syntax(format!(
                        "'::' at byte {} does not follow an operand",
                        t.start
                    ))
                })?;
                k = next;
                continue;
            }
            _ if t.is_punct("(") => frames.push(vec![Piece::new(PieceKind::Other, "(")]),
            _ if t.is_punct(")") && frames.len() > 1 => {
                let mut inner = frames.pop().unwrap_or_default();
                let parent = top(&mut frames);
                let after_cast = parent
                    .iter()
                    .rev()
                    .find(|p| p.kind != PieceKind::Trivia)
                    .is_some_and(|p| p.is_kw("CAST"));
                if after_cast {
                    rewrite_cast_as(&mut inner);
                }
                inner.push(Piece::new(PieceKind::Other, ")"));
                parent.push(Piece::new(PieceKind::Group, concat(&inner)));
                if ddl {
                    call_default(parent);
                }
            }
            PieceKind::Str => push(&mut frames, Piece::new(kind, sqlite_string(t))),
            PieceKind::Word => {
                if let Some(next) = ddl.then(|| crate::ddl::identity(toks, k)).flatten() {
                    // The clause goes (the space before it stays), and the
                    // integer type before it becomes SQLite's rowid type.
                    let next = next?;
                    let frame = top(&mut frames);
                    if let Some(ty) = frame.iter_mut().rev().find(|p| p.kind == PieceKind::Word) {
                        ty.text = "INTEGER".into();
                    }
                    k = next;
                    continue;
                }
                let serial = if ddl {
                    crate::ddl::serial_type(toks, k)?
                } else {
                    None
                };
                let text = match serial.or_else(|| keyword_call(toks, k)) {
                    Some(call) => call,
                    None if t.text.eq_ignore_ascii_case("ILIKE") => "LIKE",
                    None => t.text,
                };
                push(&mut frames, Piece::new(kind, text))
            }
            _ => push(&mut frames, Piece::new(kind, t.text)),
        }
        k += 1;
    }
    let out = frames.iter().map(|f| concat(f)).collect();
    Ok((out, max_param))
}

/// `DEFAULT name(args)` at the end of `frame` (in a table's DDL): as
/// crates/hadr-sql/src/ddl.rs says.
fn call_default(frame: &mut Vec<Piece>) {
    let solid: Vec<usize> = frame
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, p)| p.kind != PieceKind::Trivia)
        .map(|(i, _)| i)
        .take(3)
        .collect();
    let [group, name, default] = solid[..] else {
        return;
    };
    if frame[group].kind != PieceKind::Group
        || frame[name].kind != PieceKind::Word
        || !frame[default].is_kw("DEFAULT")
    {
        return;
    }
    let call = concat(&frame[name..]);
    let text = crate::ddl::call_default(&frame[name].text, &call);
    frame.truncate(name);
    frame.push(Piece::new(PieceKind::Group, text));
}

/// Words PostgreSQL has and SQLite must not see, dropped with what
/// belongs to them (returns the index past them): the schema `public.`
/// before a name (hadr has that one schema; SQLite would take it for an
/// attached database), and `CONCURRENTLY` after `INDEX` (SQLite builds an
/// index in one transaction anyway).
fn dropped_words(toks: &[Token<'_>], k: usize) -> Option<usize> {
    let t = &toks[k];
    let solid = |i: &usize| {
        !matches!(
            toks[*i].kind,
            Kind::Space | Kind::LineComment | Kind::BlockComment
        )
    };
    let prev = (0..k).rev().find(solid).map(|i| &toks[i]);
    let next = (k + 1..toks.len()).find(solid);
    let is_public = match t.kind {
        Kind::Word => t.text.eq_ignore_ascii_case("public"),
        Kind::QuotedIdent => t.text == "\"public\"",
        _ => false,
    };
    // `pg_catalog.f(…)`: PostgreSQL's functions are hadr's, in no schema
    // (a catalog relation is refused before this: unsupported.rs).
    let is_catalog = t.kind == Kind::Word && t.text.eq_ignore_ascii_case("pg_catalog");
    if (is_public || is_catalog) && !prev.is_some_and(|p| p.is_punct(".")) {
        let dot = next.filter(|&i| toks[i].is_punct("."))?;
        // Only when a name follows the dot.
        let name = (dot + 1..toks.len()).find(solid)?;
        if is_catalog {
            let call = (name + 1..toks.len())
                .find(solid)
                .is_some_and(|i| toks[i].is_punct("("));
            if !call {
                return None;
            }
        }
        return matches!(toks[name].kind, Kind::Word | Kind::QuotedIdent).then_some(name);
    }
    let concurrently = t.kind == Kind::Word && t.text.eq_ignore_ascii_case("CONCURRENTLY");
    let after_index =
        prev.is_some_and(|p| p.kind == Kind::Word && p.text.eq_ignore_ascii_case("INDEX"));
    (concurrently && after_index).then(|| next.unwrap_or(toks.len()))
}

/// SQLite's spelling of a string literal: `E'…'` and `$tag$…$tag$` become
/// plain `'…'` with the same value (SQLite has neither; a `$` would be
/// taken for a parameter), `N'…'` loses its `N`; `'…'` and `X'…'` stay.
fn sqlite_string(t: &Token<'_>) -> String {
    let quote = |v: &str| format!("'{}'", v.replace('\'', "''"));
    match (t.kind, t.text.as_bytes().first()) {
        (Kind::DollarStr, _) => quote(dollar_value(t)),
        (_, Some(b'e' | b'E')) => quote(&string_value(t)),
        (_, Some(b'n' | b'N')) => t.text[1..].to_string(),
        _ => t.text.to_string(),
    }
}

/// PostgreSQL's niladic functions written without parentheses
/// (`current_user`, …) as calls of the functions hadr registers
/// (crates/hadr-server/src/pg_functions.rs); None for anything else, and
/// for a qualified name (`t.current_user`) or one already called.
fn keyword_call(toks: &[Token<'_>], k: usize) -> Option<&'static str> {
    const CALLS: &[(&str, &str)] = &[
        ("current_user", "current_user()"),
        ("session_user", "session_user()"),
        ("current_role", "current_role()"),
        ("current_catalog", "current_database()"),
        ("current_schema", "current_schema()"),
    ];
    let t = &toks[k];
    let call = CALLS
        .iter()
        .find(|(kw, _)| t.text.eq_ignore_ascii_case(kw))
        .map(|(_, c)| *c)?;
    let solid =
        |t: &&Token<'_>| !matches!(t.kind, Kind::Space | Kind::LineComment | Kind::BlockComment);
    let before = toks[..k].iter().rev().find(solid);
    let after = toks[k + 1..].iter().find(solid);
    let qualified = before.is_some_and(|b| b.is_punct("."));
    let called = after.is_some_and(|a| a.is_punct("("));
    (!qualified && !called).then_some(call)
}

fn top(frames: &mut Vec<Vec<Piece>>) -> &mut Vec<Piece> {
    if frames.is_empty() {
        frames.push(Vec::new());
    }
    let last = frames.len() - 1;
    &mut frames[last]
}

fn push(frames: &mut Vec<Vec<Piece>>, p: Piece) {
    let frame = top(frames);
    // `?1` or a folded literal must not fuse with what follows (`$1E''` would
    // otherwise become `?1E''`, a number and a plain string).
    let after_rewrite = frame
        .last()
        .is_some_and(|l| matches!(l.kind, PieceKind::Param | PieceKind::Cast));
    let fuses = p
        .text
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b >= 0x80 || b"_$.'\"`".contains(&b));
    // Two strings that were apart as tokens (`$$$$''`, `E'a'E'b'`) must not
    // become one (`''''`) once respelt.
    let strings_meet = frame
        .last()
        .is_some_and(|l| l.kind == PieceKind::Str && l.text.ends_with('\''))
        && p.text.starts_with('\'');
    if (after_rewrite && fuses) || strings_meet {
        frame.push(Piece::new(PieceKind::Trivia, " "));
    }
    frame.push(p);
}

/// Index of the first piece of the operand ending at the last piece.
fn operand_start(frame: &[Piece]) -> Option<usize> {
    let last = frame.len().checked_sub(1)?;
    let p = &frame[last];
    let qualified = |mut j: usize| {
        while j >= 2
            && frame[j - 1].kind == PieceKind::Dot
            && matches!(frame[j - 2].kind, PieceKind::Word | PieceKind::Ident)
        {
            j -= 2;
        }
        j
    };
    match p.kind {
        PieceKind::Str | PieceKind::Num | PieceKind::Cast | PieceKind::Param => Some(last),
        PieceKind::Word if p.is_kw("END") => {
            // `CASE ... END::type` casts the whole CASE expression.
            let mut depth = 0usize;
            for j in (0..=last).rev() {
                if frame[j].is_kw("END") {
                    depth += 1;
                } else if frame[j].is_kw("CASE") {
                    depth -= 1;
                    if depth == 0 {
                        return Some(j);
                    }
                }
            }
            None
        }
        PieceKind::Word if is_reserved(&p.text) && !in_list(&p.text, VALUE_KEYWORDS) => None,
        PieceKind::Word | PieceKind::Ident => Some(qualified(last)),
        PieceKind::Group => {
            let prev_sig =
                |end: usize| (0..end).rev().find(|&j| frame[j].kind != PieceKind::Trivia);
            let mut group = last;
            loop {
                match prev_sig(group) {
                    // `f(x) FILTER (...) OVER (...)::type` casts the whole call.
                    Some(j) if frame[j].is_kw("FILTER") || frame[j].is_kw("OVER") => {
                        match prev_sig(j) {
                            Some(g) if frame[g].kind == PieceKind::Group => group = g,
                            _ => return Some(last),
                        }
                    }
                    Some(j)
                        if frame[j].kind == PieceKind::Ident
                            || (frame[j].kind == PieceKind::Word
                                && (!is_reserved(&frame[j].text)
                                    || in_list(&frame[j].text, FUNCTION_KEYWORDS))) =>
                    {
                        return Some(qualified(j));
                    }
                    _ => return Some(group),
                }
            }
        }
        _ => None,
    }
}

/// The value of a plain `'...'` literal (no prefix), if `text` is one.
fn plain_string(text: &str) -> Option<String> {
    if text.len() >= 2 && text.starts_with('\'') && text.ends_with('\'') {
        let t = tokenize(text);
        if t.len() == 1 && t[0].kind == Kind::Str {
            return Some(string_value(&t[0]));
        }
    }
    None
}

/// Replace the operand at the end of `frame` with its cast to `ty`. A cast of
/// a parameter is dropped (the type becomes the parameter's hint instead).
/// `None` when there is no operand.
fn apply_cast(frame: &mut Vec<Piece>, ty: PgType) -> Option<()> {
    let mut trailing = Vec::new();
    while frame.last().is_some_and(|p| p.kind == PieceKind::Trivia) {
        trailing.extend(frame.pop());
    }
    let start = operand_start(frame)?;
    if frame[start].kind != PieceKind::Param || start + 1 != frame.len() {
        let operand = concat(&frame[start..]);
        frame.truncate(start);
        let folded = plain_string(&operand).and_then(|v| fold_literal(&v, ty));
        let text =
            folded.unwrap_or_else(|| format!("CAST({operand} AS {})", ty.sqlite_cast_type()));
        frame.push(Piece::new(PieceKind::Cast, text));
    }
    // Whitespace between the operand and `::` goes; comments stay.
    if trailing
        .iter()
        .any(|p| p.text.starts_with("--") || p.text.starts_with("/*"))
    {
        frame.extend(trailing.into_iter().rev());
    }
    Some(())
}

/// Evaluate casts of literals whose SQLite CAST would give the wrong value:
/// PostgreSQL boolean spellings, and `'\x..'` hex bytea input.
fn fold_literal(value: &str, ty: PgType) -> Option<String> {
    match ty {
        PgType::Bool => match value.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "y" | "yes" | "on" | "1" => Some("1".into()),
            "f" | "false" | "n" | "no" | "off" | "0" => Some("0".into()),
            _ => None,
        },
        PgType::Bytea => {
            let hex = value.strip_prefix("\\x")?;
            (hex.len() % 2 == 0 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| format!("X'{hex}'"))
        }
        _ => None,
    }
}

/// In the pieces of a `CAST( ... )` group, replace a PostgreSQL type name
/// after the last `AS` with the SQLite one; SQLite would otherwise derive an
/// affinity from the name (`timestamp` would become NUMERIC).
fn rewrite_cast_as(inner: &mut Vec<Piece>) {
    let Some(as_at) = inner.iter().rposition(|p| p.is_kw("AS")) else {
        return;
    };
    let mut name = String::new();
    let mut space = false;
    let type_pieces = &inner[as_at + 1..];
    // Only a plain type name (with integer modifiers) is replaced, so no
    // literal or comment can be lost.
    let plain = type_pieces.iter().all(|p| match p.kind {
        PieceKind::Trivia => p.text.trim().is_empty(),
        PieceKind::Word | PieceKind::Ident | PieceKind::Dot => true,
        PieceKind::Group => p
            .text
            .bytes()
            .all(|b| b.is_ascii_digit() || b" ,()".contains(&b)),
        _ => p.text == "[" || p.text == "]",
    });
    if !plain {
        return;
    }
    for p in type_pieces {
        match p.kind {
            PieceKind::Trivia => space = true,
            PieceKind::Word | PieceKind::Ident => {
                if space && !name.is_empty() && !name.ends_with('.') {
                    name.push(' ');
                }
                name.push_str(&p.text);
                space = false;
            }
            _ => {
                name.push_str(&p.text);
                space = false;
            }
        }
    }
    if let Some(sqlite) = PgType::from_name(&name).map(PgType::sqlite_cast_type) {
        inner.truncate(as_at + 1);
        inner.push(Piece::new(PieceKind::Trivia, " "));
        inner.push(Piece::new(PieceKind::Word, sqlite));
    }
}

#[cfg(test)]
mod tests {
    use crate::{translate, SqlError};

    fn sql(s: &str) -> String {
        match translate(s) {
            Ok(t) => t.sql,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn params() {
        let t = translate("select $1, $3, $1").unwrap();
        assert_eq!(t.sql, "select ?1, ?3, ?1");
        assert_eq!(t.param_count, 3);
        assert_eq!(t.param_hints.len(), 3);
        assert_eq!(translate("select 1").unwrap().param_count, 0);
        // Inside strings, identifiers, comments and dollar quotes nothing changes.
        let s = "select '$1::int', \"$2\", $$ $3 $$, E'\\'$4' -- $5::int\n /* $6 */";
        assert_eq!(
            sql(s),
            "select '$1::int', \"$2\", ' $3 ', '''$4' -- $5::int\n /* $6 */"
        );
        assert_eq!(translate(s).unwrap().param_count, 0);
    }

    #[test]
    fn bad_params() {
        assert!(matches!(
            translate("select $0"),
            Err(SqlError::BadParameter(_))
        ));
        assert!(matches!(
            translate("select $65536"),
            Err(SqlError::BadParameter(_))
        ));
        assert!(matches!(
            translate("select $99999999999999999999999"),
            Err(SqlError::BadParameter(_))
        ));
        assert_eq!(translate("select $65535").unwrap().param_count, 65535);
    }

    #[test]
    fn postgres_string_forms_become_sqlite_literals() {
        assert_eq!(sql("select E'a\\tb'"), "select 'a\tb'");
        assert_eq!(sql("select e'it\\'s'"), "select 'it''s'");
        assert_eq!(sql("select $$x$$, $q$a'b$$c$q$"), "select 'x', 'a''b$$c'");
        assert_eq!(sql("select $$$$"), "select ''");
        assert_eq!(sql("select $$$$''"), "select '' ''");
        assert_eq!(
            sql("select N'x', X'00', 'plain'"),
            "select 'x', X'00', 'plain'"
        );
        assert_eq!(sql("select E'5'::int"), "select CAST('5' AS INTEGER)");
        // A dollar string is not a parameter.
        assert_eq!(translate("select $$$1$$").unwrap().param_count, 0);
    }

    #[test]
    fn niladic_keywords_become_calls_and_ilike_like() {
        assert_eq!(
            sql("select current_user, SESSION_USER, current_role, current_catalog, current_schema"),
            "select current_user(), session_user(), current_role(), current_database(), current_schema()"
        );
        assert_eq!(sql("select current_schema()"), "select current_schema()");
        assert_eq!(
            sql("select t.current_user from t"),
            "select t.current_user from t"
        );
        assert_eq!(
            sql("select current_user::text"),
            "select CAST(current_user() AS TEXT)"
        );
        assert_eq!(
            sql("select 'a' ILIKE 'A%', 'b' not ilike 'x'"),
            "select 'a' LIKE 'A%', 'b' not LIKE 'x'"
        );
        // Inside strings and quoted identifiers nothing changes.
        assert_eq!(
            sql("select 'current_user', \"current_user\""),
            "select 'current_user', \"current_user\""
        );
    }

    #[test]
    fn serial_columns_become_the_rowid_or_are_refused() {
        assert_eq!(
            sql("CREATE TABLE t(id serial PRIMARY KEY, n text)"),
            "CREATE TABLE t(id INTEGER PRIMARY KEY, n text)"
        );
        assert_eq!(
            sql("create table if not exists t(\"id\" BIGSERIAL not null, n text, primary key (\"id\"))"),
            "create table if not exists t(\"id\" INTEGER not null, n text, primary key (\"id\"))"
        );
        assert_eq!(
            sql("CREATE TEMP TABLE t(a int, id smallserial primary key)"),
            "CREATE TEMP TABLE t(a int, id INTEGER primary key)"
        );
        assert!(matches!(
            translate("CREATE TABLE t(id serial, n text)"),
            Err(SqlError::Unsupported(_))
        ));
        assert!(matches!(
            translate("ALTER TABLE t ADD COLUMN n serial"),
            Err(SqlError::Unsupported(_))
        ));
        // Outside table DDL, and as a table or column name, `serial` is a name.
        assert_eq!(sql("select serial from t"), "select serial from t");
        assert_eq!(sql("CREATE TABLE serial(a)"), "CREATE TABLE serial(a)");
        assert_eq!(
            sql("CREATE TABLE t(serial text, b int)"),
            "CREATE TABLE t(serial text, b int)"
        );
    }

    #[test]
    fn drop_table_of_several_names_is_a_batch() {
        let t = translate("DROP TABLE IF EXISTS a, \"B\", main.c").unwrap();
        assert!(t.batch);
        assert_eq!(
            t.sql,
            "DROP TABLE IF EXISTS a;\nDROP TABLE IF EXISTS \"B\";\nDROP TABLE IF EXISTS main.c"
        );
        let t = translate("drop table a, b restrict;").unwrap();
        assert_eq!(
            (t.batch, t.sql.as_str()),
            (true, "DROP TABLE a;\nDROP TABLE b")
        );
        let t = translate("DROP TABLE a RESTRICT").unwrap();
        assert_eq!((t.batch, t.sql.as_str()), (true, "DROP TABLE a"));
        // One name: SQLite's own statement, untouched.
        let t = translate("DROP TABLE IF EXISTS a").unwrap();
        assert_eq!((t.batch, t.sql.as_str()), (false, "DROP TABLE IF EXISTS a"));
        assert!(matches!(
            translate("DROP TABLE a, b CASCADE"),
            Err(SqlError::Unsupported(_))
        ));
        assert!(!translate("DROP VIEW a").unwrap().batch);
    }

    #[test]
    fn identity_columns_become_the_rowid() {
        assert_eq!(
            sql("CREATE TABLE t(id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, n text)"),
            "CREATE TABLE t(id INTEGER  PRIMARY KEY, n text)"
        );
        assert_eq!(
            sql("create table t(id int generated by default as identity (start with 10), n text, primary key (id))"),
            "create table t(id INTEGER , n text, primary key (id))"
        );
        assert!(matches!(
            translate("CREATE TABLE t(id int GENERATED ALWAYS AS IDENTITY, n text)"),
            Err(SqlError::Unsupported(_))
        ));
        assert!(matches!(
            translate("CREATE TABLE t(id text GENERATED ALWAYS AS IDENTITY PRIMARY KEY)"),
            Err(SqlError::Unsupported(_))
        ));
        // SQLite's generated columns stay.
        assert_eq!(
            sql("CREATE TABLE t(a int, b int GENERATED ALWAYS AS (a * 2) STORED)"),
            "CREATE TABLE t(a int, b int GENERATED ALWAYS AS (a * 2) STORED)"
        );
    }

    #[test]
    fn public_schema_and_concurrently_are_dropped() {
        assert_eq!(
            sql("CREATE TABLE public.t(a int); SELECT public.t.a FROM \"public\".\"t\""),
            "CREATE TABLE t(a int); SELECT t.a FROM \"t\""
        );
        assert_eq!(
            sql("CREATE UNIQUE INDEX CONCURRENTLY i ON public.t(a)"),
            "CREATE UNIQUE INDEX i ON t(a)"
        );
        assert_eq!(sql("DROP INDEX CONCURRENTLY i"), "DROP INDEX i");
        assert_eq!(
            sql("DROP TABLE public.a, \"public\".b, main.c"),
            "DROP TABLE a;\nDROP TABLE b;\nDROP TABLE main.c"
        );
        assert_eq!(
            sql("SELECT pg_catalog.version(), pg_catalog.current_schema()"),
            "SELECT version(), current_schema()"
        );
        // A column named public, and strings, stay.
        assert_eq!(
            sql("SELECT public, x.public FROM x WHERE y = 'public.t'"),
            "SELECT public, x.public FROM x WHERE y = 'public.t'"
        );
    }

    #[test]
    fn truncate_is_a_batch_of_deletes() {
        let t = translate("TRUNCATE TABLE a, \"B\" RESTART IDENTITY").unwrap();
        assert!(t.batch);
        assert_eq!(t.sql, "DELETE FROM a;\nDELETE FROM \"B\"");
        let t = translate("truncate only main.a;").unwrap();
        assert_eq!((t.batch, t.sql.as_str()), (true, "DELETE FROM main.a"));
        assert!(matches!(
            translate("TRUNCATE a CASCADE"),
            Err(SqlError::Unsupported(_))
        ));
        // Anything else after the names is not ours to guess.
        assert!(!translate("TRUNCATE a WHERE x")
            .map(|t| t.batch)
            .unwrap_or(false));
    }

    #[test]
    fn call_defaults_get_sqlite_forms() {
        let now = crate::ddl::SQLITE_NOW;
        assert_eq!(
            sql("CREATE TABLE t(ts timestamptz DEFAULT now() NOT NULL, u uuid default gen_random_uuid())"),
            format!("CREATE TABLE t(ts timestamptz DEFAULT {now} NOT NULL, u uuid default {})", crate::ddl::SQLITE_UUID)
        );
        assert_eq!(
            sql("ALTER TABLE t ADD COLUMN c text DEFAULT lower('X')"),
            "ALTER TABLE t ADD COLUMN c text DEFAULT (lower('X'))"
        );
        // SQLite's own forms stay; outside DDL nothing changes.
        assert_eq!(
            sql("CREATE TABLE t(a DEFAULT CURRENT_TIMESTAMP, b DEFAULT (now()))"),
            "CREATE TABLE t(a DEFAULT CURRENT_TIMESTAMP, b DEFAULT (now()))"
        );
        assert_eq!(sql("select now()"), "select now()");
    }

    #[test]
    fn casts() {
        assert_eq!(sql("select x::int"), "select CAST(x AS INTEGER)");
        assert_eq!(
            sql("select x::bigint from t"),
            "select CAST(x AS INTEGER) from t"
        );
        assert_eq!(sql("select '5'::numeric"), "select CAST('5' AS NUMERIC)");
        assert_eq!(sql("select t.x::text"), "select CAST(t.x AS TEXT)");
        assert_eq!(
            sql("select \"T\".\"x\"::text"),
            "select CAST(\"T\".\"x\" AS TEXT)"
        );
        assert_eq!(sql("select (a+b)::float8"), "select CAST((a+b) AS REAL)");
        assert_eq!(sql("select now()::date"), "select CAST(now() AS TEXT)");
        assert_eq!(
            sql("select '{\"a\":1}'::json"),
            "select CAST('{\"a\":1}' AS TEXT)"
        );
        assert_eq!(sql("select x::bytea"), "select CAST(x AS BLOB)");
        assert_eq!(
            sql("select 1.5::double precision"),
            "select CAST(1.5 AS REAL)"
        );
        assert_eq!(
            sql("select x::character varying(10)"),
            "select CAST(x AS TEXT)"
        );
        assert_eq!(
            sql("select x::numeric(10, 2) + 1"),
            "select CAST(x AS NUMERIC) + 1"
        );
        assert_eq!(
            sql("select x::timestamp with time zone"),
            "select CAST(x AS TEXT)"
        );
        assert_eq!(sql("select x :: int"), "select CAST(x AS INTEGER)");
        assert_eq!(
            sql("select x::pg_catalog.int4"),
            "select CAST(x AS INTEGER)"
        );
        assert_eq!(sql("select x::unknown"), "select CAST(x AS TEXT)");
        // A parenthesised string after a type is not a modifier.
        assert_eq!(sql("select x::varchar('a')"), "select CAST(x AS TEXT)('a')");
        assert_eq!(
            sql("select CAST(x AS varchar('a'))"),
            "select CAST(x AS varchar('a'))"
        );
    }

    #[test]
    fn cast_operands() {
        assert_eq!(sql("select -1::int"), "select -CAST(1 AS INTEGER)");
        assert_eq!(sql("select a + b::int"), "select a + CAST(b AS INTEGER)");
        assert_eq!(
            sql("select x::text::int"),
            "select CAST(CAST(x AS TEXT) AS INTEGER)"
        );
        assert_eq!(
            sql("select s.f(a, b)::int"),
            "select CAST(s.f(a, b) AS INTEGER)"
        );
        assert_eq!(
            sql("select count(*)::int4 from t"),
            "select CAST(count(*) AS INTEGER) from t"
        );
        assert_eq!(sql("select f((a)::int)"), "select f(CAST((a) AS INTEGER))");
        assert_eq!(
            sql("select case when a then 1 else 2 end::text"),
            "select CAST(case when a then 1 else 2 end AS TEXT)"
        );
        assert_eq!(sql("select null::int"), "select CAST(null AS INTEGER)");
        assert_eq!(
            sql("where x in (1)::int"),
            "where x in CAST((1) AS INTEGER)"
        );
        assert_eq!(
            sql("select x::int /* c */ , y"),
            "select CAST(x AS INTEGER) /* c */ , y"
        );
    }

    #[test]
    fn cast_of_window_call() {
        assert_eq!(
            sql("select count(*) filter (where a) over (partition by b)::int from t"),
            "select CAST(count(*) filter (where a) over (partition by b) AS INTEGER) from t"
        );
    }

    #[test]
    fn cast_literal_folding() {
        assert_eq!(
            sql("select 'true'::bool, 'f'::boolean, x::bool"),
            "select 1, 0, CAST(x AS INTEGER)"
        );
        assert_eq!(
            sql("select 'maybe'::bool"),
            "select CAST('maybe' AS INTEGER)"
        );
        assert_eq!(sql("select '\\x0aFF'::bytea"), "select X'0aFF'");
    }

    #[test]
    fn cast_errors() {
        assert_eq!(
            translate("select x::regrole"),
            Err(SqlError::UnsupportedType("regrole".into()))
        );
        assert_eq!(
            translate("select x::int[]"),
            Err(SqlError::UnsupportedType("int[]".into()))
        );
        assert_eq!(
            translate("select x::interval"),
            Err(SqlError::UnsupportedType("interval".into()))
        );
        assert!(matches!(translate("select x::"), Err(SqlError::Syntax(_))));
        assert!(matches!(translate("::int"), Err(SqlError::Syntax(_))));
        assert!(matches!(
            translate("select ::int"),
            Err(SqlError::Syntax(_))
        ));
        assert!(matches!(
            translate("select x::'a'"),
            Err(SqlError::Syntax(_))
        ));
    }

    #[test]
    fn cast_keyword_form() {
        assert_eq!(sql("select cast(x as timestamp)"), "select cast(x as TEXT)");
        assert_eq!(
            sql("select CAST(x AS double precision)"),
            "select CAST(x AS REAL)"
        );
        assert_eq!(
            sql("select CAST(x AS numeric(10,2))"),
            "select CAST(x AS NUMERIC)"
        );
        // SQLite names pass through.
        assert_eq!(sql("select CAST(x AS BLOB)"), "select CAST(x AS BLOB)");
        assert_eq!(
            sql("select CAST(x AS INTEGER)"),
            "select CAST(x AS INTEGER)"
        );
        assert_eq!(
            sql("select CAST($1 AS bigint)"),
            "select CAST(?1 AS INTEGER)"
        );
    }
}
