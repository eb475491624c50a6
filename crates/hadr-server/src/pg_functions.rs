//! PostgreSQL's common functions, as SQLite functions on every session's
//! connection (issue 12 item 3; README §SQL): `version()`,
//! `current_schema()`, `current_database()`, `current_user` and its
//! siblings, `pg_backend_pid()`, the clock (`now()` and
//! `transaction_timestamp()` fixed for the transaction, as in PostgreSQL;
//! `statement_timestamp()`, `clock_timestamp()`), `gen_random_uuid()`,
//! `pg_sleep()`, `greatest()`/`least()`. The bare keywords (`current_user`
//! without parentheses) are made calls by the translator
//! (crates/hadr-sql/src/rewrite.rs); the result types clients are told are
//! in crates/hadr-sql/src/expr_type.rs.
//!
//! Registered on the session's own connection, so they exist on a standby
//! and on a new primary as on the old one. Nothing about them is in the
//! database file: a view or a default that calls one works through hadr,
//! not in another SQLite reader of the file (`sqlite3`, `hadr verify`
//! does not call them).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{Value, ValueRef};
use rusqlite::Connection;

/// Longest `pg_sleep` may sleep: a session thread is held all along.
pub const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// The session's clock marks, set before each statement runs.
#[derive(Debug, Default)]
pub struct Clocks {
    transaction_us: AtomicI64,
    statement_us: AtomicI64,
}

impl Clocks {
    /// A statement starts now; `autocommit`: no transaction is open yet,
    /// so this statement (a BEGIN, or one on its own) starts one.
    pub fn statement_starts(&self, autocommit: bool) {
        let now = unix_micros();
        self.statement_us.store(now, Ordering::Relaxed);
        if autocommit {
            self.transaction_us.store(now, Ordering::Relaxed);
        }
    }
}

/// What the functions tell about their session.
pub struct SessionFacts {
    /// The user it logged in as.
    pub user: String,
    /// The database name it asked for.
    pub database: String,
    /// Its backend pid.
    pub pid: i32,
    /// Its clock marks.
    pub clocks: Arc<Clocks>,
    /// Set when the statement should stop (a cancel request).
    pub cancel: Arc<AtomicBool>,
    /// Whether the node is ending its sessions (hand-over, shutdown).
    pub ending: Arc<dyn Fn() -> bool + Send + Sync>,
    /// The session's settings.
    pub settings: SettingsAccess,
}

/// SHOW name: its value, or the message for the client.
pub type ShowFn = dyn Fn(&str) -> Result<String, String> + Send + Sync;

/// SET name = value: the value set, or the message for the client.
pub type SetFn = dyn Fn(&str, &str) -> Result<String, String> + Send + Sync;

/// How `current_setting()` and `set_config()` reach the session's settings.
#[derive(Clone)]
pub struct SettingsAccess {
    /// SHOW.
    pub show: Arc<ShowFn>,
    /// SET.
    pub set: Arc<SetFn>,
}

/// The version string: PostgreSQL's form, which drivers parse, naming hadr.
pub fn version() -> String {
    format!(
        "PostgreSQL 15.0 (hadr {}, SQLite {}) on {}-linux, 64-bit",
        env!("CARGO_PKG_VERSION"),
        rusqlite::version(),
        std::env::consts::ARCH
    )
}

/// Register the functions on `conn`.
pub fn register(conn: &Connection, facts: SessionFacts) -> rusqlite::Result<()> {
    let fixed = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    let volatile = FunctionFlags::SQLITE_UTF8;
    conn.create_scalar_function("version", 0, fixed, |_| Ok(version()))?;
    conn.create_scalar_function("current_schema", 0, fixed, |_| Ok("public"))?;
    let database = facts.database.clone();
    conn.create_scalar_function("current_database", 0, fixed, move |_| Ok(database.clone()))?;
    for name in ["current_user", "session_user", "current_role"] {
        let user = facts.user.clone();
        conn.create_scalar_function(name, 0, fixed, move |_| Ok(user.clone()))?;
    }
    let pid = facts.pid;
    conn.create_scalar_function("pg_backend_pid", 0, fixed, move |_| Ok(pid))?;
    for name in ["now", "transaction_timestamp"] {
        let c = facts.clocks.clone();
        conn.create_scalar_function(name, 0, volatile, move |_| {
            Ok(timestamptz(c.transaction_us.load(Ordering::Relaxed)))
        })?;
    }
    let c = facts.clocks.clone();
    conn.create_scalar_function("statement_timestamp", 0, volatile, move |_| {
        Ok(timestamptz(c.statement_us.load(Ordering::Relaxed)))
    })?;
    conn.create_scalar_function("clock_timestamp", 0, volatile, |_| {
        Ok(timestamptz(unix_micros()))
    })?;
    conn.create_scalar_function("gen_random_uuid", 0, volatile, |_| {
        Ok(uuid::Uuid::new_v4().to_string())
    })?;
    let (cancel, ending) = (facts.cancel.clone(), facts.ending.clone());
    conn.create_scalar_function("pg_sleep", 1, volatile, move |ctx| {
        pg_sleep(ctx, &cancel, ending.as_ref())
    })?;
    let show = facts.settings.show.clone();
    conn.create_scalar_function("current_setting", 1, volatile, move |ctx| {
        let name: String = ctx.get(0)?;
        show(&name).map_err(|e| user_error(&e))
    })?;
    // current_setting(name, missing_ok): NULL for an unknown name.
    let show = facts.settings.show.clone();
    conn.create_scalar_function("current_setting", 2, volatile, move |ctx| {
        let name: String = ctx.get(0)?;
        let missing_ok: bool = ctx.get(1)?;
        match show(&name) {
            Ok(v) => Ok(Some(v)),
            Err(_) if missing_ok => Ok(None),
            Err(e) => Err(user_error(&e)),
        }
    })?;
    // set_config(name, value, is_local): as SET (SET LOCAL's end of
    // transaction is not kept: is_local is taken as false).
    let set = facts.settings.set.clone();
    conn.create_scalar_function("set_config", 3, volatile, move |ctx| {
        let name: String = ctx.get(0)?;
        let value: String = ctx.get(1)?;
        set(&name, &value).map_err(|e| user_error(&e))
    })?;
    conn.create_scalar_function("greatest", -1, fixed, |ctx| {
        Ok(pick(ctx, std::cmp::Ordering::Greater))
    })?;
    conn.create_scalar_function("least", -1, fixed, |ctx| {
        Ok(pick(ctx, std::cmp::Ordering::Less))
    })?;
    Ok(())
}

fn unix_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// A timestamptz as PostgreSQL writes it for a session in UTC.
fn timestamptz(unix_micros: i64) -> String {
    format!("{}+00", crate::values::format_timestamp(unix_micros))
}

/// `pg_sleep(seconds)`: sleeps in short steps, so that a cancel request
/// or the node ending its sessions stops it (SQLite's interrupt does not
/// reach a function that runs).
fn pg_sleep(
    ctx: &Context<'_>,
    cancel: &AtomicBool,
    ending: &dyn Fn() -> bool,
) -> rusqlite::Result<Option<String>> {
    let secs = match ctx.get_raw(0) {
        ValueRef::Null => return Ok(None),
        ValueRef::Integer(i) => i as f64,
        ValueRef::Real(f) => f,
        ValueRef::Text(t) => std::str::from_utf8(t)
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .ok_or_else(|| user_error("pg_sleep: the argument is not a number of seconds"))?,
        ValueRef::Blob(_) => {
            return Err(user_error(
                "pg_sleep: the argument is not a number of seconds",
            ))
        }
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Ok(None);
    }
    let wanted = Duration::from_secs_f64(secs.min(MAX_SLEEP.as_secs_f64()));
    let until = Instant::now() + wanted;
    loop {
        if cancel.load(Ordering::SeqCst) {
            return Err(user_error("canceling statement due to user request"));
        }
        if ending() {
            return Err(user_error(
                "terminating the statement: the node is ending its sessions",
            ));
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

fn user_error(msg: &str) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(msg.into())
}

/// `greatest`/`least`: the largest (smallest) argument, NULLs ignored, NULL
/// only if all are, as in PostgreSQL (SQLite's `max(a, b)` is NULL if any is).
fn pick(ctx: &Context<'_>, want: std::cmp::Ordering) -> Value {
    let mut best: Option<ValueRef<'_>> = None;
    for i in 0..ctx.len() {
        let v = ctx.get_raw(i);
        if v == ValueRef::Null {
            continue;
        }
        if best.is_none_or(|b| compare(v, b) == want) {
            best = Some(v);
        }
    }
    best.map_or(Value::Null, Value::from)
}

/// SQLite's order of values: numbers (by value) before text (by bytes)
/// before blobs (by bytes).
fn compare(a: ValueRef<'_>, b: ValueRef<'_>) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    fn rank(v: ValueRef<'_>) -> u8 {
        match v {
            ValueRef::Null => 0,
            ValueRef::Integer(_) | ValueRef::Real(_) => 1,
            ValueRef::Text(_) => 2,
            ValueRef::Blob(_) => 3,
        }
    }
    match (a, b) {
        (ValueRef::Integer(x), ValueRef::Integer(y)) => x.cmp(&y),
        (ValueRef::Integer(x), ValueRef::Real(y)) => (x as f64).partial_cmp(&y).unwrap_or(Equal),
        (ValueRef::Real(x), ValueRef::Integer(y)) => x.partial_cmp(&(y as f64)).unwrap_or(Equal),
        (ValueRef::Real(x), ValueRef::Real(y)) => x.partial_cmp(&y).unwrap_or(Equal),
        (ValueRef::Text(x), ValueRef::Text(y)) | (ValueRef::Blob(x), ValueRef::Blob(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> (Connection, Arc<Clocks>, Arc<AtomicBool>) {
        let c = Connection::open_in_memory().unwrap();
        let clocks = Arc::new(Clocks::default());
        let cancel = Arc::new(AtomicBool::new(false));
        register(
            &c,
            SessionFacts {
                user: "alice".into(),
                database: "shop".into(),
                pid: 1042,
                clocks: clocks.clone(),
                cancel: cancel.clone(),
                ending: Arc::new(|| false),
                settings: SettingsAccess {
                    show: Arc::new(|n| {
                        if n == "a" {
                            Ok("1".into())
                        } else {
                            Err(format!("unrecognized configuration parameter \"{n}\""))
                        }
                    }),
                    set: Arc::new(|_, v| Ok(v.to_string())),
                },
            },
        )
        .unwrap();
        (c, clocks, cancel)
    }

    fn one(c: &Connection, sql: &str) -> Value {
        c.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn session_facts() {
        let (c, _, _) = conn();
        let v = one(&c, "SELECT version()");
        assert!(
            matches!(&v, Value::Text(t) if t.starts_with("PostgreSQL 15.0 (hadr ")),
            "{v:?}"
        );
        assert_eq!(
            one(&c, "SELECT current_schema()"),
            Value::Text("public".into())
        );
        assert_eq!(
            one(&c, "SELECT current_database()"),
            Value::Text("shop".into())
        );
        for f in ["current_user", "session_user", "current_role"] {
            assert_eq!(
                one(&c, &format!("SELECT {f}()")),
                Value::Text("alice".into())
            );
        }
        assert_eq!(one(&c, "SELECT pg_backend_pid()"), Value::Integer(1042));
    }

    #[test]
    fn now_is_the_transaction_start_and_clock_timestamp_moves() {
        let (c, clocks, _) = conn();
        clocks.statement_starts(true);
        let first = one(&c, "SELECT now()");
        std::thread::sleep(Duration::from_millis(5));
        clocks.statement_starts(false);
        assert_eq!(one(&c, "SELECT now()"), first, "inside the transaction");
        assert_eq!(one(&c, "SELECT transaction_timestamp()"), first);
        assert_ne!(one(&c, "SELECT statement_timestamp()"), first);
        assert_ne!(one(&c, "SELECT clock_timestamp()"), first);
        std::thread::sleep(Duration::from_millis(5));
        clocks.statement_starts(true);
        assert_ne!(one(&c, "SELECT now()"), first, "a new transaction");
        let Value::Text(t) = first else { panic!() };
        // 2026-12-07 15:17:03.123456+00
        assert_eq!(t.len(), 29, "{t}");
        assert!(t.ends_with("+00") && t.as_bytes()[10] == b' ', "{t}");
    }

    #[test]
    fn settings_through_the_session() {
        let (c, _, _) = conn();
        assert_eq!(
            one(&c, "SELECT current_setting('a')"),
            Value::Text("1".into())
        );
        assert_eq!(one(&c, "SELECT current_setting('zz', true)"), Value::Null);
        let e = c
            .query_row("SELECT current_setting('zz')", [], |r| r.get::<_, Value>(0))
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("unrecognized configuration parameter"),
            "{e}"
        );
        assert_eq!(
            one(&c, "SELECT set_config('x', 'v', false)"),
            Value::Text("v".into())
        );
    }

    #[test]
    fn greatest_and_least_ignore_nulls() {
        let (c, _, _) = conn();
        assert_eq!(one(&c, "SELECT greatest(1, 3, 2)"), Value::Integer(3));
        assert_eq!(one(&c, "SELECT least(1, 3, 2)"), Value::Integer(1));
        assert_eq!(one(&c, "SELECT greatest(1, NULL, 2.5)"), Value::Real(2.5));
        assert_eq!(
            one(&c, "SELECT least(NULL, 'b', 'a')"),
            Value::Text("a".into())
        );
        assert_eq!(one(&c, "SELECT greatest(NULL, NULL)"), Value::Null);
        assert_eq!(one(&c, "SELECT greatest(2, 'a')"), Value::Text("a".into()));
    }

    #[test]
    fn uuids_and_sleep() {
        let (c, _, cancel) = conn();
        let Value::Text(u) = one(&c, "SELECT gen_random_uuid()") else {
            panic!()
        };
        assert!(uuid::Uuid::parse_str(&u).is_ok(), "{u}");
        assert_ne!(one(&c, "SELECT gen_random_uuid()"), Value::Text(u));
        let t = Instant::now();
        assert_eq!(one(&c, "SELECT pg_sleep(0.1)"), Value::Null);
        assert!(t.elapsed() >= Duration::from_millis(100));
        assert_eq!(one(&c, "SELECT pg_sleep(-1)"), Value::Null);
        cancel.store(true, Ordering::SeqCst);
        let e = c
            .query_row("SELECT pg_sleep(10)", [], |r| r.get::<_, Value>(0))
            .unwrap_err();
        assert!(e.to_string().contains("canceling statement"), "{e}");
        let e = c
            .query_row("SELECT pg_sleep('x')", [], |r| r.get::<_, Value>(0))
            .unwrap_err();
        assert!(e.to_string().contains("not a number"), "{e}");
    }
}
