//! Classifying statements for command tags, transaction control and routing.

use crate::copy::{self, CopyError, CopyStatement};
use crate::lexer::{ident_value, string_value, tokenize, Kind, Token};
use crate::role::{self, RoleStatement, RoleSyntaxError};

/// What a statement is, for command tags, transaction control and routing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `SELECT`, `TABLE t`, or `WITH ... SELECT`.
    Select,
    /// `VALUES (...)`.
    Values,
    /// `INSERT` / SQLite `REPLACE INTO`.
    Insert,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
    /// `BEGIN` / `START TRANSACTION`, with whether it asked for `READ ONLY`.
    Begin {
        /// `READ ONLY` was requested.
        read_only: bool,
    },
    /// `COMMIT` / `END`.
    Commit,
    /// `ROLLBACK` / `ABORT` (not `ROLLBACK TO`).
    Rollback,
    /// `SAVEPOINT name`.
    Savepoint(String),
    /// `RELEASE [SAVEPOINT] name`.
    Release(String),
    /// `ROLLBACK TO [SAVEPOINT] name`.
    RollbackTo(String),
    /// `SET [SESSION|LOCAL] name {TO|=} value`.
    Set {
        /// Setting name, lowercased, dots kept.
        name: String,
        /// Value(s), unquoted, joined with `", "`; `"DEFAULT"` for `TO DEFAULT`.
        value: String,
        /// `SET LOCAL`.
        local: bool,
    },
    /// `RESET name` (`"all"` for `RESET ALL`).
    Reset(String),
    /// `SHOW name`.
    Show(String),
    /// `CREATE <kind>`, e.g. `"TABLE"`, `"INDEX"`, `"MATERIALIZED VIEW"`.
    Create(String),
    /// `DROP <kind>`.
    Drop(String),
    /// `ALTER <kind>`.
    Alter(String),
    /// SQLite `PRAGMA`.
    Pragma,
    /// `VACUUM`.
    Vacuum,
    /// `ANALYZE`.
    Analyze,
    /// `EXPLAIN`.
    Explain,
    /// `REINDEX`.
    Reindex,
    /// SQLite `ATTACH`.
    Attach,
    /// SQLite `DETACH`.
    Detach,
    /// `DISCARD ...`.
    Discard,
    /// `LISTEN`.
    Listen,
    /// `UNLISTEN`.
    Unlisten,
    /// `NOTIFY`.
    Notify,
    /// Anything else: the first keyword, uppercased.
    Other(String),
    /// `SELECT hadr_commit_outcome('token')`: answered by hadr itself
    /// (docs/clients.md §Commit outcomes), with the token.
    CommitOutcome(String),
    /// `CREATE/ALTER/DROP ROLE` or `USER`: hadr keeps roles itself
    /// (parsed, or why not).
    Role(Result<RoleStatement, RoleSyntaxError>),
    /// `COPY … FROM STDIN` / `TO STDOUT`: carried out by hadr itself
    /// (parsed, or why not).
    Copy(Result<CopyStatement, CopyError>),
    /// No statement at all (whitespace and comments only).
    Empty,
}

/// A setting or savepoint name: unquoted words lowercased (as PostgreSQL
/// folds them), quoted ones unquoted, dotted parts joined.
fn dotted_name(sig: &[Token<'_>], mut k: usize) -> (String, usize) {
    let mut name = String::new();
    while let Some(t) = sig.get(k) {
        match t.kind {
            Kind::Word => name.push_str(&t.text.to_lowercase()),
            Kind::QuotedIdent => name.push_str(&ident_value(t)),
            Kind::Str => name.push_str(&string_value(t)),
            _ => break,
        }
        k += 1;
        if sig.get(k).is_some_and(|t| t.is_punct(".")) && sig.get(k + 1).is_some() {
            name.push('.');
            k += 1;
        } else {
            break;
        }
    }
    (name, k)
}

fn kw(sig: &[Token<'_>], k: usize, word: &str) -> bool {
    sig.get(k).is_some_and(|t| t.is_kw(word))
}

/// The value list of a SET: items split at top-level commas, each unquoted if
/// it is a single string or quoted identifier, else its source text.
fn set_value(src: &str, sig: &[Token<'_>], k: usize) -> String {
    let rest = sig.get(k..).unwrap_or(&[]);
    if rest.len() == 1 && rest[0].is_kw("DEFAULT") {
        return "DEFAULT".to_string();
    }
    let mut items = Vec::new();
    let mut depth = 0usize;
    let mut item: Vec<&Token<'_>> = Vec::new();
    let flush = |item: &mut Vec<&Token<'_>>, items: &mut Vec<String>| {
        match item.as_slice() {
            [one] if one.kind == Kind::Str => items.push(string_value(one)),
            [one] if one.kind == Kind::QuotedIdent => items.push(ident_value(one)),
            _ => {
                if let (Some(first), Some(last)) = (item.first(), item.last()) {
                    items.push(
                        src.get(first.start..last.end())
                            .unwrap_or_default()
                            .to_string(),
                    );
                }
            }
        }
        item.clear();
    };
    for t in rest {
        if t.is_punct("(") {
            depth += 1;
        } else if t.is_punct(")") {
            depth = depth.saturating_sub(1);
        }
        if depth == 0 && t.is_punct(",") {
            flush(&mut item, &mut items);
        } else {
            item.push(t);
        }
    }
    flush(&mut item, &mut items);
    items.join(", ")
}

fn classify_set(src: &str, sig: &[Token<'_>]) -> Command {
    let mut k = 1;
    let mut local = false;
    if kw(sig, k, "LOCAL") {
        local = true;
        k += 1;
    } else if kw(sig, k, "SESSION") && !kw(sig, k + 1, "AUTHORIZATION") {
        k += 1;
    }
    let special = [
        (&["TIME", "ZONE"][..], "timezone"),
        (
            &["CHARACTERISTICS", "AS", "TRANSACTION"][..],
            "session_characteristics",
        ),
        (&["TRANSACTION"][..], "transaction"),
        (&["SCHEMA"][..], "search_path"),
        (&["NAMES"][..], "client_encoding"),
        (&["ROLE"][..], "role"),
        (&["SESSION", "AUTHORIZATION"][..], "session_authorization"),
    ];
    for (words, name) in special {
        if words.iter().enumerate().all(|(j, w)| kw(sig, k + j, w)) {
            let value = set_value(src, sig, k + words.len());
            return Command::Set {
                name: name.to_string(),
                value,
                local,
            };
        }
    }
    let (name, mut k) = dotted_name(sig, k);
    if kw(sig, k, "TO") || sig.get(k).is_some_and(|t| t.is_punct("=")) {
        k += 1;
    }
    Command::Set {
        name,
        value: set_value(src, sig, k),
        local,
    }
}

/// `RESET`/`SHOW` argument.
fn setting_name(sig: &[Token<'_>]) -> String {
    let special = [
        (&["TIME", "ZONE"][..], "timezone"),
        (
            &["TRANSACTION", "ISOLATION", "LEVEL"][..],
            "transaction_isolation",
        ),
        (&["SESSION", "AUTHORIZATION"][..], "session_authorization"),
    ];
    for (words, name) in special {
        if words.iter().enumerate().all(|(j, w)| kw(sig, 1 + j, w)) {
            return name.to_string();
        }
    }
    dotted_name(sig, 1).0
}

/// The object kind of CREATE/DROP/ALTER, skipping modifiers.
fn object_kind(sig: &[Token<'_>]) -> Option<String> {
    const MODIFIERS: &[&str] = &[
        "OR",
        "REPLACE",
        "TEMP",
        "TEMPORARY",
        "UNIQUE",
        "VIRTUAL",
        "UNLOGGED",
        "GLOBAL",
        "LOCAL",
        "RECURSIVE",
        "CONSTRAINT",
        "TRUSTED",
        "PROCEDURAL",
        "DEFAULT",
    ];
    const TWO_WORD: &[(&str, &str)] = &[
        ("MATERIALIZED", "VIEW"),
        ("FOREIGN", "TABLE"),
        ("EVENT", "TRIGGER"),
        ("ACCESS", "METHOD"),
        ("USER", "MAPPING"),
    ];
    let mut k = 1;
    while sig
        .get(k)
        .is_some_and(|t| MODIFIERS.iter().any(|m| t.is_kw(m)))
    {
        k += 1;
    }
    let first = sig.get(k).filter(|t| t.kind == Kind::Word)?.upper();
    for (a, b) in TWO_WORD {
        if first == *a && kw(sig, k + 1, b) {
            return Some(format!("{a} {b}"));
        }
    }
    Some(first)
}

/// The main verb of `WITH ... <verb>`: the first DML keyword outside parentheses.
fn with_verb(sig: &[Token<'_>]) -> Command {
    let mut depth = 0usize;
    for t in sig.iter().skip(1) {
        if t.is_punct("(") {
            depth += 1;
        } else if t.is_punct(")") {
            depth = depth.saturating_sub(1);
        } else if depth == 0 && t.kind == Kind::Word {
            match t.upper().as_str() {
                "SELECT" | "TABLE" => return Command::Select,
                "VALUES" => return Command::Values,
                "INSERT" | "REPLACE" => return Command::Insert,
                "UPDATE" => return Command::Update,
                "DELETE" => return Command::Delete,
                _ => {}
            }
        }
    }
    Command::Other("WITH".to_string())
}

/// `SELECT hadr_commit_outcome('token')`, exactly: a string literal
/// argument and nothing else, so that any other use of the name reaches
/// SQLite (and fails there as an unknown function).
fn commit_outcome(sig: &[Token<'_>]) -> Option<Command> {
    match sig {
        [_, f, open, arg, close]
            if f.kind == Kind::Word
                && f.text.eq_ignore_ascii_case("hadr_commit_outcome")
                && open.is_punct("(")
                && arg.kind == Kind::Str
                && close.is_punct(")") =>
        {
            Some(Command::CommitOutcome(string_value(arg)))
        }
        _ => None,
    }
}

/// Classify one statement by its leading keywords.
pub fn classify(stmt: &str) -> Command {
    let toks = tokenize(stmt);
    let mut sig: Vec<Token<'_>> = toks.into_iter().filter(|t| !t.is_trivia()).collect();
    // A parenthesised first arm (`(SELECT ...) UNION ...`) is classified by
    // what it holds.
    let lead = sig.iter().take_while(|t| t.is_punct("(")).count();
    sig.drain(..lead);
    if !sig.first().is_some_and(|t| t.is_kw("CREATE")) {
        // Only the first statement counts; a trigger body is the one place a
        // ';' can sit inside a statement.
        if let Some(semi) = sig.iter().position(|t| t.is_punct(";")) {
            sig.truncate(semi);
        }
    }
    let Some(first) = sig.first() else {
        return if lead > 0 {
            Command::Other("(".to_string())
        } else {
            Command::Empty
        };
    };
    let first = first.upper();
    let name_at = |k: usize| dotted_name(&sig, k).0;
    match first.as_str() {
        "SELECT" => commit_outcome(&sig).unwrap_or(Command::Select),
        "TABLE" => Command::Select,
        "VALUES" => Command::Values,
        "INSERT" => Command::Insert,
        "REPLACE" => Command::Insert,
        "UPDATE" => Command::Update,
        "DELETE" => Command::Delete,
        "WITH" => with_verb(&sig),
        "BEGIN" => begin(&sig),
        "START" if kw(&sig, 1, "TRANSACTION") => begin(&sig),
        "COMMIT" | "ROLLBACK" if kw(&sig, 1, "PREPARED") => {
            Command::Other(format!("{first} PREPARED"))
        }
        "COMMIT" | "END" => Command::Commit,
        "ABORT" => Command::Rollback,
        "ROLLBACK" => {
            let mut k = 1;
            if kw(&sig, k, "WORK") || kw(&sig, k, "TRANSACTION") {
                k += 1;
            }
            if kw(&sig, k, "TO") {
                k += 1;
                if kw(&sig, k, "SAVEPOINT") {
                    k += 1;
                }
                Command::RollbackTo(name_at(k))
            } else {
                Command::Rollback
            }
        }
        "SAVEPOINT" => Command::Savepoint(name_at(1)),
        "RELEASE" => Command::Release(name_at(if kw(&sig, 1, "SAVEPOINT") { 2 } else { 1 })),
        "SET" => classify_set(stmt, &sig),
        "RESET" => Command::Reset(setting_name(&sig)),
        "SHOW" => Command::Show(setting_name(&sig)),
        "CREATE" | "ALTER" | "DROP"
            if kw(&sig, 1, "ROLE") || (kw(&sig, 1, "USER") && !kw(&sig, 2, "MAPPING")) =>
        {
            Command::Role(role::parse(&sig))
        }
        "CREATE" => object_kind(&sig).map_or(Command::Other(first), Command::Create),
        "DROP" => object_kind(&sig).map_or(Command::Other(first), Command::Drop),
        "ALTER" => object_kind(&sig).map_or(Command::Other(first), Command::Alter),
        "PRAGMA" => Command::Pragma,
        "VACUUM" => Command::Vacuum,
        "ANALYZE" | "ANALYSE" => Command::Analyze,
        "EXPLAIN" => Command::Explain,
        "REINDEX" => Command::Reindex,
        "ATTACH" => Command::Attach,
        "DETACH" => Command::Detach,
        "DISCARD" => Command::Discard,
        "LISTEN" => Command::Listen,
        "UNLISTEN" => Command::Unlisten,
        "NOTIFY" => Command::Notify,
        "COPY" => Command::Copy(copy::parse(stmt, &sig)),
        _ => Command::Other(first),
    }
}

/// `BEGIN`/`START TRANSACTION` with its access mode (the last one given wins).
fn begin(sig: &[Token<'_>]) -> Command {
    let mut read_only = false;
    for (k, t) in sig.iter().enumerate() {
        if t.is_kw("READ") {
            if kw(sig, k + 1, "ONLY") {
                read_only = true;
            } else if kw(sig, k + 1, "WRITE") {
                read_only = false;
            }
        }
    }
    Command::Begin { read_only }
}

/// The PostgreSQL CommandComplete tag for a statement that affected or returned `rows` rows.
pub fn command_tag(cmd: &Command, rows: u64) -> String {
    match cmd {
        Command::Select | Command::Values | Command::CommitOutcome(_) => format!("SELECT {rows}"),
        Command::Insert => format!("INSERT 0 {rows}"),
        Command::Update => format!("UPDATE {rows}"),
        Command::Delete => format!("DELETE {rows}"),
        Command::Begin { .. } => "BEGIN".into(),
        Command::Commit => "COMMIT".into(),
        Command::Rollback | Command::RollbackTo(_) => "ROLLBACK".into(),
        Command::Savepoint(_) => "SAVEPOINT".into(),
        Command::Release(_) => "RELEASE".into(),
        Command::Set { .. } => "SET".into(),
        Command::Reset(_) => "RESET".into(),
        Command::Show(_) => "SHOW".into(),
        Command::Create(kind) => format!("CREATE {kind}"),
        Command::Drop(kind) => format!("DROP {kind}"),
        Command::Alter(kind) => format!("ALTER {kind}"),
        Command::Pragma => "PRAGMA".into(),
        Command::Vacuum => "VACUUM".into(),
        Command::Analyze => "ANALYZE".into(),
        Command::Explain => "EXPLAIN".into(),
        Command::Reindex => "REINDEX".into(),
        Command::Attach => "ATTACH".into(),
        Command::Detach => "DETACH".into(),
        // PostgreSQL tags `DISCARD ALL` (what poolers send) as such.
        Command::Discard => "DISCARD ALL".into(),
        Command::Listen => "LISTEN".into(),
        Command::Unlisten => "UNLISTEN".into(),
        Command::Notify => "NOTIFY".into(),
        // PostgreSQL's tag (crates/hadr-sql/src/ddl.rs carries it out).
        Command::Other(k) if k == "TRUNCATE" => "TRUNCATE TABLE".into(),
        Command::Other(k) => k.clone(),
        Command::Role(Ok(r)) => r.tag().into(),
        Command::Role(Err(_)) => "ROLE".into(),
        Command::Copy(_) => format!("COPY {rows}"),
        Command::Empty => String::new(),
    }
}

/// Whether the statement starts, ends or structures a transaction (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE, ROLLBACK TO).
pub fn is_transaction_control(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Begin { .. }
            | Command::Commit
            | Command::Rollback
            | Command::Savepoint(_)
            | Command::Release(_)
            | Command::RollbackTo(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, value: &str, local: bool) -> Command {
        Command::Set {
            name: name.into(),
            value: value.into(),
            local,
        }
    }

    #[test]
    fn dml() {
        assert_eq!(classify("select 1"), Command::Select);
        assert_eq!(classify("  /* c */ SELECT 1;"), Command::Select);
        assert_eq!(classify("(select 1) union (select 2)"), Command::Select);
        assert_eq!(classify("table t"), Command::Select);
        assert_eq!(classify("values (1), (2)"), Command::Values);
        assert_eq!(classify("insert into t values (1)"), Command::Insert);
        assert_eq!(classify("replace into t values (1)"), Command::Insert);
        assert_eq!(classify("UPDATE t SET a = 1"), Command::Update);
        assert_eq!(classify("delete from t"), Command::Delete);
    }

    #[test]
    fn with_statements() {
        assert_eq!(
            classify("with x as (select 1) select * from x"),
            Command::Select
        );
        assert_eq!(
            classify("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM r), d AS (DELETE FROM t RETURNING *) INSERT INTO u SELECT * FROM d"),
            Command::Insert
        );
        assert_eq!(
            classify("with x as (select 1) update t set a = (select 1 from x)"),
            Command::Update
        );
        assert_eq!(
            classify("with x as materialized (update t set a = 1 returning a) delete from u"),
            Command::Delete
        );
        assert_eq!(classify("with x as (select 1) values (1)"), Command::Values);
        assert_eq!(
            classify("with x as (select 1)"),
            Command::Other("WITH".into())
        );
    }

    #[test]
    fn transactions() {
        let rw = Command::Begin { read_only: false };
        let ro = Command::Begin { read_only: true };
        assert_eq!(classify("begin"), rw);
        assert_eq!(classify("BEGIN WORK"), rw);
        assert_eq!(
            classify("begin transaction isolation level serializable read only"),
            ro
        );
        assert_eq!(classify("BEGIN READ WRITE, NOT DEFERRABLE"), rw);
        assert_eq!(classify("begin isolation level repeatable read"), rw);
        assert_eq!(classify("start transaction read only"), ro);
        assert_eq!(classify("BEGIN IMMEDIATE"), rw);
        assert_eq!(classify("begin exclusive transaction"), rw);
        assert_eq!(classify("commit"), Command::Commit);
        assert_eq!(classify("COMMIT WORK"), Command::Commit);
        assert_eq!(classify("end transaction"), Command::Commit);
        assert_eq!(classify("rollback"), Command::Rollback);
        assert_eq!(classify("abort work"), Command::Rollback);
        assert_eq!(classify("rollback to s1"), Command::RollbackTo("s1".into()));
        assert_eq!(
            classify("ROLLBACK TRANSACTION TO SAVEPOINT \"S 1\""),
            Command::RollbackTo("S 1".into())
        );
        assert_eq!(classify("savepoint Sp"), Command::Savepoint("sp".into()));
        assert_eq!(
            classify("release savepoint sp"),
            Command::Release("sp".into())
        );
        assert_eq!(classify("RELEASE sp"), Command::Release("sp".into()));
        assert_eq!(
            classify("commit prepared 'x'"),
            Command::Other("COMMIT PREPARED".into())
        );
        assert_eq!(classify("start"), Command::Other("START".into()));
    }

    #[test]
    fn settings() {
        assert_eq!(
            classify("SET search_path TO public, \"My\""),
            set("search_path", "public, My", false)
        );
        assert_eq!(
            classify("set LOCAL statement_timeout = 5000"),
            set("statement_timeout", "5000", true)
        );
        assert_eq!(
            classify("SET SESSION datestyle = 'ISO, MDY'"),
            set("datestyle", "ISO, MDY", false)
        );
        assert_eq!(
            classify("SET hadr.commit_wait = 'remote_apply'"),
            set("hadr.commit_wait", "remote_apply", false)
        );
        assert_eq!(
            classify("SET TIME ZONE 'UTC'"),
            set("timezone", "UTC", false)
        );
        assert_eq!(classify("set x to default"), set("x", "DEFAULT", false));
        assert_eq!(
            classify("SET extra_float_digits = -3"),
            set("extra_float_digits", "-3", false)
        );
        assert_eq!(
            classify("SET application_name = 'a''b';"),
            set("application_name", "a'b", false)
        );
        assert_eq!(
            classify("SET NAMES 'UTF8'"),
            set("client_encoding", "UTF8", false)
        );
        assert_eq!(
            classify("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED"),
            set(
                "session_characteristics",
                "ISOLATION LEVEL READ COMMITTED",
                false
            )
        );
        assert_eq!(classify("RESET ALL"), Command::Reset("all".into()));
        assert_eq!(
            classify("reset Statement_Timeout"),
            Command::Reset("statement_timeout".into())
        );
        assert_eq!(
            classify("reset time zone"),
            Command::Reset("timezone".into())
        );
        assert_eq!(
            classify("SHOW server_version"),
            Command::Show("server_version".into())
        );
        assert_eq!(
            classify("show TRANSACTION ISOLATION LEVEL"),
            Command::Show("transaction_isolation".into())
        );
        assert_eq!(
            classify("show hadr.role"),
            Command::Show("hadr.role".into())
        );
    }

    #[test]
    fn commit_outcome_only_in_its_exact_form() {
        for q in [
            "SELECT hadr_commit_outcome('t-1')",
            "select HADR_COMMIT_OUTCOME ( 't-1' ) ;",
            "/* c */ SELECT hadr_commit_outcome('t-1') -- x",
        ] {
            assert_eq!(classify(q), Command::CommitOutcome("t-1".into()), "{q}");
        }
        assert_eq!(
            classify("SELECT hadr_commit_outcome('it''s')"),
            Command::CommitOutcome("it's".into())
        );
        for q in [
            "SELECT hadr_commit_outcome($1)",
            "SELECT hadr_commit_outcome('a'), 1",
            "SELECT * FROM hadr_commit_outcome('a')",
            "SELECT hadr_commit_outcome('a') FROM t",
        ] {
            assert_eq!(classify(q), Command::Select, "{q}");
        }
    }

    #[test]
    fn ddl() {
        assert_eq!(
            classify("create table t (a int)"),
            Command::Create("TABLE".into())
        );
        assert_eq!(
            classify("CREATE TEMP TABLE t (a)"),
            Command::Create("TABLE".into())
        );
        assert_eq!(
            classify("create unique index i on t(a)"),
            Command::Create("INDEX".into())
        );
        assert_eq!(
            classify("CREATE VIRTUAL TABLE f USING fts5(x)"),
            Command::Create("TABLE".into())
        );
        assert_eq!(
            classify("create or replace view v as select 1"),
            Command::Create("VIEW".into())
        );
        assert_eq!(
            classify("create materialized view v as select 1"),
            Command::Create("MATERIALIZED VIEW".into())
        );
        assert_eq!(
            classify("CREATE TRIGGER t AFTER INSERT ON a BEGIN INSERT INTO b VALUES(1); END"),
            Command::Create("TRIGGER".into())
        );
        assert_eq!(
            classify("create schema s"),
            Command::Create("SCHEMA".into())
        );
        assert_eq!(
            classify("drop table if exists t"),
            Command::Drop("TABLE".into())
        );
        assert_eq!(classify("DROP INDEX i"), Command::Drop("INDEX".into()));
        assert_eq!(
            classify("alter table t add column b"),
            Command::Alter("TABLE".into())
        );
        assert_eq!(classify("create"), Command::Other("CREATE".into()));
    }

    #[test]
    fn others() {
        assert_eq!(classify("pragma journal_mode"), Command::Pragma);
        assert_eq!(classify("vacuum"), Command::Vacuum);
        assert_eq!(classify("analyse t"), Command::Analyze);
        assert_eq!(classify("explain select 1"), Command::Explain);
        assert_eq!(classify("reindex t"), Command::Reindex);
        assert_eq!(classify("attach 'x.db' as x"), Command::Attach);
        assert_eq!(classify("detach x"), Command::Detach);
        assert_eq!(classify("DISCARD ALL"), Command::Discard);
        assert_eq!(classify("listen c"), Command::Listen);
        assert_eq!(classify("unlisten *"), Command::Unlisten);
        assert_eq!(classify("notify c, 'x'"), Command::Notify);
        assert_eq!(classify("truncate t"), Command::Other("TRUNCATE".into()));
        assert_eq!(classify("  "), Command::Empty);
        assert_eq!(classify("-- just a comment"), Command::Empty);
        assert_eq!(classify(";"), Command::Empty);
        assert_eq!(classify("select 1; delete from t"), Command::Select);
    }

    #[test]
    fn tags() {
        let cases = [
            (Command::Select, 3, "SELECT 3"),
            (Command::Values, 2, "SELECT 2"),
            (Command::Insert, 1, "INSERT 0 1"),
            (Command::Update, 5, "UPDATE 5"),
            (Command::Delete, 0, "DELETE 0"),
            (Command::Begin { read_only: true }, 0, "BEGIN"),
            (Command::Commit, 0, "COMMIT"),
            (Command::Rollback, 0, "ROLLBACK"),
            (Command::RollbackTo("s".into()), 0, "ROLLBACK"),
            (Command::Savepoint("s".into()), 0, "SAVEPOINT"),
            (Command::Release("s".into()), 0, "RELEASE"),
            (set("a", "b", false), 0, "SET"),
            (Command::Reset("all".into()), 0, "RESET"),
            (Command::Show("x".into()), 1, "SHOW"),
            (Command::Create("TABLE".into()), 0, "CREATE TABLE"),
            (Command::Drop("INDEX".into()), 0, "DROP INDEX"),
            (Command::Alter("TABLE".into()), 0, "ALTER TABLE"),
            (Command::Pragma, 1, "PRAGMA"),
            (Command::Vacuum, 0, "VACUUM"),
            (Command::Analyze, 0, "ANALYZE"),
            (Command::Explain, 4, "EXPLAIN"),
            (Command::Reindex, 0, "REINDEX"),
            (Command::Attach, 0, "ATTACH"),
            (Command::Detach, 0, "DETACH"),
            (Command::Discard, 0, "DISCARD ALL"),
            (Command::Listen, 0, "LISTEN"),
            (Command::Unlisten, 0, "UNLISTEN"),
            (Command::Notify, 0, "NOTIFY"),
            (Command::Other("TRUNCATE".into()), 0, "TRUNCATE TABLE"),
            (Command::Empty, 0, ""),
        ];
        for (cmd, rows, tag) in cases {
            assert_eq!(command_tag(&cmd, rows), tag, "{cmd:?}");
        }
        assert_eq!(
            command_tag(
                &classify("with x as (select 1) insert into t select * from x"),
                7
            ),
            "INSERT 0 7"
        );
    }

    #[test]
    fn transaction_control() {
        for s in [
            "begin",
            "commit",
            "end",
            "rollback",
            "abort",
            "savepoint a",
            "release a",
            "rollback to a",
        ] {
            assert!(is_transaction_control(&classify(s)), "{s}");
        }
        for s in [
            "select 1",
            "set x = 1",
            "show x",
            "create table t(a)",
            "commit prepared 'x'",
            "",
        ] {
            assert!(!is_transaction_control(&classify(s)), "{s}");
        }
    }
}
