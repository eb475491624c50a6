//! Roles, kept in the database itself (`hadr_roles`) so that they are in
//! the log, reach the standbys and survive a failover, as the commit tokens
//! of crates/hadr-server/src/commit_tokens.rs do. Only verifiers are
//! stored (PostgreSQL's `SCRAM-SHA-256$…` form), never passwords.
//!
//! `hadr_auth_secret` holds the key that derives the fake salts shown for
//! unknown users (crates/hadr-auth/src/verifier.rs): being replicated, it is
//! the same on every node, so a user name cannot be probed by comparing
//! the salts two nodes show for it.
//!
//! Sessions cannot touch either table with SQL: [`guard`] installs an
//! SQLite authorizer that only role statements lift.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hadr_auth::verifier::{Verifier, ITERATIONS};
use hadr_sql::{RoleOptions, RoleStatement};
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::{params, Connection, OptionalExtension};

use crate::errors::{sqlstate, PgError};

/// The roles table.
pub const ROLES: &str = "hadr_roles";
/// The fake-salt key table.
pub const SECRET: &str = "hadr_auth_secret";

/// Both tables; created by the first role statement.
const CREATE: &str = "CREATE TABLE IF NOT EXISTS main.hadr_roles(
    name TEXT PRIMARY KEY,
    verifier TEXT,
    can_login INTEGER NOT NULL,
    read_only INTEGER NOT NULL,
    is_admin INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS main.hadr_auth_secret(
    id INTEGER PRIMARY KEY CHECK (id = 1),
    secret BLOB NOT NULL
)";

/// A role as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct RoleRow {
    /// Its name.
    pub name: String,
    /// Its SCRAM verifier; None: it cannot log in with a password.
    pub verifier: Option<String>,
    /// LOGIN.
    pub can_login: bool,
    /// READONLY: its writes are refused (42501).
    pub read_only: bool,
    /// SUPERUSER: it may create, alter and drop roles.
    pub admin: bool,
}

impl std::fmt::Debug for RoleRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleRow")
            .field("name", &self.name)
            .field("has_verifier", &self.verifier.is_some())
            .field("can_login", &self.can_login)
            .field("read_only", &self.read_only)
            .field("admin", &self.admin)
            .finish()
    }
}

fn table_exists(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM main.sqlite_schema WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

/// The role `name`, if the table exists and holds it.
pub fn lookup(conn: &Connection, name: &str) -> rusqlite::Result<Option<RoleRow>> {
    if !table_exists(conn, ROLES)? {
        return Ok(None);
    }
    conn.query_row(
        "SELECT name, verifier, can_login, read_only, is_admin FROM main.hadr_roles WHERE name = ?1",
        [name],
        |r| {
            Ok(RoleRow {
                name: r.get(0)?,
                verifier: r.get(1)?,
                can_login: r.get(2)?,
                read_only: r.get(3)?,
                admin: r.get(4)?,
            })
        },
    )
    .optional()
}

/// The replicated fake-salt key, once the first role statement made it.
pub fn secret(conn: &Connection) -> rusqlite::Result<Option<Vec<u8>>> {
    if !table_exists(conn, SECRET)? {
        return Ok(None);
    }
    conn.query_row(
        "SELECT secret FROM main.hadr_auth_secret WHERE id = 1",
        [],
        |r| r.get(0),
    )
    .optional()
}

/// A role statement made ready outside the write lock: passwords already
/// turned into verifiers (4096 PBKDF2 rounds each). No Debug: it holds a
/// verifier.
pub struct Prepared {
    stmt: RoleStatement,
    /// For CREATE/ALTER with `PASSWORD`: Some(verifier) or None (NULL).
    verifier: Option<Option<String>>,
}

/// Turn the statement's password into a verifier; `salt`: fresh random
/// bytes. A password that is already a verifier is kept as is (as
/// PostgreSQL does); an empty one clears the password (as PostgreSQL does).
pub fn prepare(stmt: RoleStatement, salt: &[u8]) -> Result<Prepared, PgError> {
    let password = match &stmt {
        RoleStatement::Create { options, .. } | RoleStatement::Alter { options, .. } => {
            options.password.clone()
        }
        RoleStatement::Drop { .. } => None,
    };
    let verifier = match password {
        None => None,
        Some(None) => Some(None),
        Some(Some(p)) if p.0.is_empty() => Some(None),
        Some(Some(p)) if Verifier::looks_like_verifier(&p.0) => {
            let v = Verifier::parse(&p.0).map_err(|e| {
                PgError::new(
                    sqlstate::INVALID_PARAMETER_VALUE,
                    format!("invalid password: {e}"),
                )
            })?;
            Some(Some(v.to_string()))
        }
        Some(Some(p)) => Some(Some(Verifier::new(&p.0, salt, ITERATIONS).to_string())),
    };
    Ok(Prepared { stmt, verifier })
}

impl Prepared {
    /// The statement.
    pub fn statement(&self) -> &RoleStatement {
        &self.stmt
    }
}

fn exists_error(name: &str) -> PgError {
    PgError::new(
        sqlstate::DUPLICATE_OBJECT,
        format!("role \"{name}\" already exists"),
    )
}

fn missing_error(name: &str) -> PgError {
    PgError::new(
        sqlstate::UNDEFINED_OBJECT,
        format!("role \"{name}\" does not exist"),
    )
}

fn internal(e: rusqlite::Error) -> PgError {
    PgError::new(sqlstate::INTERNAL_ERROR, format!("roles table: {e}"))
}

/// Carry out `p` in the transaction open on `conn` (write permit held),
/// for the session of `current_user`; `secret`: fresh random bytes for the
/// fake-salt key if it does not exist yet.
pub fn apply(
    conn: &Connection,
    p: &Prepared,
    current_user: &str,
    secret: &[u8],
) -> Result<(), PgError> {
    conn.execute_batch(CREATE).map_err(internal)?;
    conn.execute(
        "INSERT OR IGNORE INTO main.hadr_auth_secret(id, secret) VALUES (1, ?1)",
        [secret],
    )
    .map_err(internal)?;
    match &p.stmt {
        RoleStatement::Create {
            name,
            user,
            options,
        } => {
            if lookup(conn, name).map_err(internal)?.is_some() {
                return Err(exists_error(name));
            }
            let RoleOptions {
                login,
                admin,
                read_only,
                ..
            } = options;
            conn.execute(
                "INSERT INTO main.hadr_roles(name, verifier, can_login, read_only, is_admin) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    name,
                    p.verifier.clone().flatten(),
                    login.unwrap_or(*user),
                    read_only.unwrap_or(false),
                    admin.unwrap_or(false)
                ],
            )
            .map_err(internal)?;
        }
        RoleStatement::Alter { name, options } => {
            let Some(mut row) = lookup(conn, name).map_err(internal)? else {
                return Err(missing_error(name));
            };
            if let Some(v) = &p.verifier {
                row.verifier = v.clone();
            }
            row.can_login = options.login.unwrap_or(row.can_login);
            row.read_only = options.read_only.unwrap_or(row.read_only);
            row.admin = options.admin.unwrap_or(row.admin);
            conn.execute(
                "UPDATE main.hadr_roles SET verifier = ?2, can_login = ?3, read_only = ?4, is_admin = ?5 WHERE name = ?1",
                params![name, row.verifier, row.can_login, row.read_only, row.admin],
            )
            .map_err(internal)?;
        }
        RoleStatement::Drop { names, if_exists } => {
            for name in names {
                if name == current_user {
                    return Err(PgError::new(
                        sqlstate::OBJECT_IN_USE,
                        "current user cannot be dropped",
                    ));
                }
                if lookup(conn, name).map_err(internal)?.is_none() {
                    if *if_exists {
                        continue;
                    }
                    return Err(missing_error(name));
                }
            }
            for name in names {
                conn.execute("DELETE FROM main.hadr_roles WHERE name = ?1", [name])
                    .map_err(internal)?;
            }
        }
    }
    Ok(())
}

/// Install the authorizer that keeps SQL away from the role tables on a
/// session's connection: writes only while `lifted` is set (a role
/// statement runs), reads of `hadr_roles` by admins, never a read of the
/// fake-salt key.
pub fn guard(conn: &Connection, admin: bool, lifted: Arc<AtomicBool>) {
    conn.authorizer(Some(move |ctx: AuthContext<'_>| {
        let (table, write) = match ctx.action {
            AuthAction::Read { table_name, .. } => (table_name, false),
            AuthAction::CreateTable { table_name, .. }
            | AuthAction::CreateTempTable { table_name, .. }
            | AuthAction::CreateVtable { table_name, .. }
            | AuthAction::CreateTempIndex { table_name, .. }
            | AuthAction::CreateTempTrigger { table_name, .. }
            | AuthAction::CreateView {
                view_name: table_name,
                ..
            }
            | AuthAction::CreateTempView {
                view_name: table_name,
                ..
            }
            | AuthAction::Insert { table_name, .. }
            | AuthAction::Delete { table_name, .. }
            | AuthAction::DropTable { table_name, .. }
            | AuthAction::DropTempTable { table_name, .. }
            | AuthAction::CreateIndex { table_name, .. }
            | AuthAction::CreateTrigger { table_name, .. }
            | AuthAction::DropIndex { table_name, .. }
            | AuthAction::DropTrigger { table_name, .. }
            | AuthAction::AlterTable { table_name, .. }
            | AuthAction::Update { table_name, .. } => (table_name, true),
            _ => return Authorization::Allow,
        };
        let roles = table.eq_ignore_ascii_case(ROLES);
        let secret = table.eq_ignore_ascii_case(SECRET);
        if !(roles || secret) || lifted.load(Ordering::Relaxed) {
            return Authorization::Allow;
        }
        if roles && !write && admin {
            return Authorization::Allow;
        }
        Authorization::Deny
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        Connection::open_in_memory().unwrap()
    }

    fn stmt(sql: &str) -> RoleStatement {
        match hadr_sql::classify(sql) {
            hadr_sql::Command::Role(Ok(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn run(c: &Connection, sql: &str) -> Result<(), PgError> {
        apply(
            c,
            &prepare(stmt(sql), b"0123456789abcdef")?,
            "me",
            b"secret",
        )
    }

    #[test]
    fn create_alter_drop() {
        let c = db();
        assert_eq!(lookup(&c, "a").unwrap(), None);
        run(&c, "CREATE USER a PASSWORD 'pw'").unwrap();
        let a = lookup(&c, "a").unwrap().unwrap();
        let v = Verifier::parse(a.verifier.as_deref().unwrap()).unwrap();
        assert!(v.matches("pw"));
        assert!(a.can_login && !a.read_only && !a.admin);
        assert_eq!(secret(&c).unwrap().as_deref(), Some(&b"secret"[..]));
        assert_eq!(
            run(&c, "CREATE ROLE a").unwrap_err().code,
            sqlstate::DUPLICATE_OBJECT
        );
        run(&c, "ALTER ROLE a READONLY SUPERUSER PASSWORD 'new'").unwrap();
        let a = lookup(&c, "a").unwrap().unwrap();
        assert!(a.read_only && a.admin && a.can_login);
        assert!(Verifier::parse(a.verifier.as_deref().unwrap())
            .unwrap()
            .matches("new"));
        run(&c, "ALTER ROLE a PASSWORD NULL NOLOGIN").unwrap();
        let a = lookup(&c, "a").unwrap().unwrap();
        assert!(a.verifier.is_none() && !a.can_login);
        assert_eq!(
            run(&c, "ALTER ROLE b LOGIN").unwrap_err().code,
            sqlstate::UNDEFINED_OBJECT
        );
        assert_eq!(
            run(&c, "DROP ROLE me").unwrap_err().code,
            sqlstate::OBJECT_IN_USE
        );
        assert_eq!(
            run(&c, "DROP ROLE a, b").unwrap_err().code,
            sqlstate::UNDEFINED_OBJECT
        );
        assert!(lookup(&c, "a").unwrap().is_some(), "nothing dropped");
        run(&c, "DROP ROLE IF EXISTS a, b").unwrap();
        assert_eq!(lookup(&c, "a").unwrap(), None);
        // A role, unlike a user, does not log in by default.
        run(&c, "CREATE ROLE r").unwrap();
        assert!(!lookup(&c, "r").unwrap().unwrap().can_login);
    }

    #[test]
    fn a_verifier_is_stored_as_is() {
        let c = db();
        let pg = "SCRAM-SHA-256$4096:+27VzkCXZHo2LfCRjqmT6g==$Qh94n9avrIqf8wJhhsQBJwFPjJhPg/Y2+yHvqMAt+OE=:Y1kPPGqw64451mBFrZ+SHuF4GmU6FrjwxsyEJrKkIOk=";
        run(&c, &format!("CREATE USER p PASSWORD '{pg}'")).unwrap();
        assert_eq!(
            lookup(&c, "p").unwrap().unwrap().verifier.as_deref(),
            Some(pg)
        );
        let e = run(&c, "CREATE USER q PASSWORD 'SCRAM-SHA-256$1:x$y:z'").unwrap_err();
        assert_eq!(e.code, sqlstate::INVALID_PARAMETER_VALUE);
        assert!(!e.message.contains("SCRAM-SHA-256$1:x"), "{}", e.message);
    }

    #[test]
    fn nobody_can_make_the_tables_before_the_first_role() {
        // Else a session could plant its own roles table (with an admin of
        // its choosing) for the first role statement to adopt.
        let c = db();
        guard(&c, true, Arc::new(AtomicBool::new(false)));
        for sql in [
            "CREATE TABLE hadr_roles(name, verifier, can_login, read_only, is_admin)",
            "CREATE TABLE Hadr_Auth_Secret(id, secret)",
            "CREATE VIEW hadr_roles AS SELECT 1",
        ] {
            assert!(prepares(&c, sql).is_err(), "{sql}");
        }
        prepares(&c, "CREATE TABLE other(x)").unwrap();
    }

    /// Prepare only: the authorizer decides at prepare time.
    fn prepares(c: &Connection, sql: &str) -> rusqlite::Result<()> {
        c.prepare(sql).map(|_| ())
    }

    #[test]
    fn sessions_cannot_reach_the_tables() {
        let c = db();
        run(&c, "CREATE USER a PASSWORD 'pw'").unwrap();
        let lifted = Arc::new(AtomicBool::new(false));
        guard(&c, false, lifted.clone());
        for sql in [
            "SELECT * FROM hadr_roles",
            "SELECT * FROM hadr_auth_secret",
            "UPDATE hadr_roles SET is_admin = 1",
            "DELETE FROM HADR_ROLES",
            "INSERT INTO hadr_roles VALUES ('x', NULL, 1, 0, 1)",
            "DROP TABLE hadr_roles",
            "ALTER TABLE hadr_roles RENAME TO t",
            "CREATE TRIGGER t AFTER INSERT ON hadr_roles BEGIN SELECT 1; END",
            "CREATE TEMP TABLE hadr_roles(x)",
            "CREATE TEMP VIEW hadr_roles AS SELECT 1",
        ] {
            let e = prepares(&c, sql).unwrap_err();
            assert_eq!(
                crate::errors::from_sqlite(&e).code,
                sqlstate::INSUFFICIENT_PRIVILEGE,
                "{sql}: {e}"
            );
        }
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1)")
            .unwrap();
        prepares(&c, "SELECT * FROM t").unwrap();
        // An admin may read the roles, not the key, and write neither.
        guard(&c, true, lifted.clone());
        prepares(&c, "SELECT * FROM hadr_roles").unwrap();
        assert!(prepares(&c, "SELECT * FROM hadr_auth_secret").is_err());
        assert!(prepares(&c, "DELETE FROM hadr_roles").is_err());
        // A role statement lifts the guard.
        lifted.store(true, Ordering::Relaxed);
        run(&c, "CREATE USER b").unwrap();
    }
}
