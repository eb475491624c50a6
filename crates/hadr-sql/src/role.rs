//! `CREATE ROLE/USER`, `ALTER ROLE/USER`, `DROP ROLE/USER`: hadr keeps
//! roles itself (crates/hadr-server/src/auth/roles.rs), so these are parsed
//! here rather than passed to SQLite.
//!
//! Options: `LOGIN`/`NOLOGIN`, `PASSWORD 'x'` (or `ENCRYPTED PASSWORD`),
//! `PASSWORD NULL`, `SUPERUSER`/`NOSUPERUSER` (hadr's admin attribute), and
//! the hadr-specific `READONLY`/`NOREADONLY` (PostgreSQL has no such role
//! attribute). Other PostgreSQL options are refused by name.

use std::fmt;

use crate::lexer::{ident_value, string_value, Kind, Token};

/// A password in a role statement; Debug does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(pub String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// The attributes a role statement sets; None: left as is (ALTER) or the
/// default (CREATE).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoleOptions {
    /// `LOGIN` / `NOLOGIN`.
    pub login: Option<bool>,
    /// `PASSWORD 'x'`: Some(Some); `PASSWORD NULL`: Some(None).
    pub password: Option<Option<Password>>,
    /// `SUPERUSER` / `NOSUPERUSER`.
    pub admin: Option<bool>,
    /// `READONLY` / `NOREADONLY`.
    pub read_only: Option<bool>,
}

/// A role statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoleStatement {
    /// `CREATE ROLE` (`user`: `CREATE USER`, which implies LOGIN).
    Create {
        /// The role.
        name: String,
        /// Whether it was `CREATE USER`.
        user: bool,
        /// Its options.
        options: RoleOptions,
    },
    /// `ALTER ROLE name [WITH] options`.
    Alter {
        /// The role.
        name: String,
        /// The changes.
        options: RoleOptions,
    },
    /// `DROP ROLE [IF EXISTS] name [, ...]`.
    Drop {
        /// The roles.
        names: Vec<String>,
        /// `IF EXISTS`.
        if_exists: bool,
    },
}

impl RoleStatement {
    /// The CommandComplete tag.
    pub fn tag(&self) -> &'static str {
        match self {
            RoleStatement::Create { .. } => "CREATE ROLE",
            RoleStatement::Alter { .. } => "ALTER ROLE",
            RoleStatement::Drop { .. } => "DROP ROLE",
        }
    }
}

/// Why a role statement could not be parsed (SQLSTATE 42601, or 0A000 for
/// an option hadr does not support).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RoleSyntaxError {
    /// A role name was expected.
    #[error("syntax error: a role name was expected")]
    Name,
    /// Something else was expected.
    #[error("syntax error at or near \"{0}\"")]
    Near(String),
    /// A PostgreSQL option hadr does not have.
    #[error("role option {0} is not supported by hadr (supported: LOGIN, NOLOGIN, PASSWORD, SUPERUSER, NOSUPERUSER, READONLY, NOREADONLY)")]
    Unsupported(String),
    /// The same option twice, or two that contradict.
    #[error("conflicting or redundant options")]
    Conflict,
}

impl RoleSyntaxError {
    /// Its SQLSTATE.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            RoleSyntaxError::Unsupported(_) => "0A000",
            _ => "42601",
        }
    }
}

fn name(t: Option<&Token<'_>>) -> Result<String, RoleSyntaxError> {
    match t {
        Some(t) if t.kind == Kind::Word => Ok(t.text.to_lowercase()),
        Some(t) if t.kind == Kind::QuotedIdent => {
            let n = ident_value(t);
            if n.is_empty() {
                Err(RoleSyntaxError::Name)
            } else {
                Ok(n)
            }
        }
        _ => Err(RoleSyntaxError::Name),
    }
}

fn near(t: &Token<'_>) -> RoleSyntaxError {
    RoleSyntaxError::Near(t.text.to_string())
}

fn set<T>(slot: &mut Option<T>, v: T) -> Result<(), RoleSyntaxError> {
    if slot.is_some() {
        return Err(RoleSyntaxError::Conflict);
    }
    *slot = Some(v);
    Ok(())
}

fn options(sig: &[Token<'_>]) -> Result<RoleOptions, RoleSyntaxError> {
    let mut o = RoleOptions::default();
    let mut k = 0;
    if sig.first().is_some_and(|t| t.is_kw("WITH")) {
        k += 1;
    }
    while let Some(t) = sig.get(k) {
        if t.kind != Kind::Word {
            return Err(near(t));
        }
        let word = t.upper();
        k += 1;
        match word.as_str() {
            "LOGIN" => set(&mut o.login, true)?,
            "NOLOGIN" => set(&mut o.login, false)?,
            "SUPERUSER" => set(&mut o.admin, true)?,
            "NOSUPERUSER" => set(&mut o.admin, false)?,
            "READONLY" => set(&mut o.read_only, true)?,
            "NOREADONLY" => set(&mut o.read_only, false)?,
            "ENCRYPTED" | "PASSWORD" => {
                if word == "ENCRYPTED" {
                    match sig.get(k) {
                        Some(p) if p.is_kw("PASSWORD") => k += 1,
                        Some(p) => return Err(near(p)),
                        None => return Err(RoleSyntaxError::Near("ENCRYPTED".into())),
                    }
                }
                match sig.get(k) {
                    Some(v) if v.kind == Kind::Str => {
                        set(&mut o.password, Some(Password(string_value(v))))?
                    }
                    Some(v) if v.is_kw("NULL") => set(&mut o.password, None)?,
                    Some(v) => return Err(near(v)),
                    None => return Err(RoleSyntaxError::Near("PASSWORD".into())),
                }
                k += 1;
            }
            _ => return Err(RoleSyntaxError::Unsupported(word)),
        }
    }
    Ok(o)
}

/// Parse a role statement from its significant tokens (no trivia, no `;`);
/// `sig[0]` is CREATE, ALTER or DROP and `sig[1]` ROLE or USER.
pub(crate) fn parse(sig: &[Token<'_>]) -> Result<RoleStatement, RoleSyntaxError> {
    // classify keeps a CREATE's tokens past ';' (for trigger bodies).
    let end = sig
        .iter()
        .position(|t| t.is_punct(";"))
        .unwrap_or(sig.len());
    let sig = &sig[..end];
    let verb = sig.first().map(Token::upper).unwrap_or_default();
    let user = sig.get(1).is_some_and(|t| t.is_kw("USER"));
    let rest = sig.get(2..).unwrap_or(&[]);
    match verb.as_str() {
        "CREATE" => {
            let n = name(rest.first())?;
            let options = options(&rest[1..])?;
            Ok(RoleStatement::Create {
                name: n,
                user,
                options,
            })
        }
        "ALTER" => {
            let n = name(rest.first())?;
            let options = options(&rest[1..])?;
            Ok(RoleStatement::Alter { name: n, options })
        }
        _ => {
            let mut k = 0;
            let mut if_exists = false;
            if rest.first().is_some_and(|t| t.is_kw("IF")) {
                match rest.get(1) {
                    Some(t) if t.is_kw("EXISTS") => {
                        if_exists = true;
                        k = 2;
                    }
                    Some(t) => return Err(near(t)),
                    None => return Err(RoleSyntaxError::Name),
                }
            }
            let mut names = vec![name(rest.get(k))?];
            k += 1;
            while let Some(t) = rest.get(k) {
                if !t.is_punct(",") {
                    return Err(near(t));
                }
                names.push(name(rest.get(k + 1))?);
                k += 2;
            }
            Ok(RoleStatement::Drop { names, if_exists })
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{classify, Command};

    use super::*;

    fn role(sql: &str) -> Result<RoleStatement, RoleSyntaxError> {
        match classify(sql) {
            Command::Role(r) => r,
            other => panic!("{sql}: {other:?}"),
        }
    }

    fn pw(s: &str) -> Option<Option<Password>> {
        Some(Some(Password(s.into())))
    }

    #[test]
    fn create() {
        assert_eq!(
            role("CREATE USER Alice PASSWORD 'it''s'").unwrap(),
            RoleStatement::Create {
                name: "alice".into(),
                user: true,
                options: RoleOptions {
                    password: pw("it's"),
                    ..Default::default()
                }
            }
        );
        assert_eq!(
            role("create role \"Bob\" with nologin superuser readonly password null;").unwrap(),
            RoleStatement::Create {
                name: "Bob".into(),
                user: false,
                options: RoleOptions {
                    login: Some(false),
                    password: Some(None),
                    admin: Some(true),
                    read_only: Some(true),
                }
            }
        );
        assert_eq!(
            role("CREATE ROLE r LOGIN ENCRYPTED PASSWORD 'x'").unwrap(),
            RoleStatement::Create {
                name: "r".into(),
                user: false,
                options: RoleOptions {
                    login: Some(true),
                    password: pw("x"),
                    ..Default::default()
                }
            }
        );
    }

    #[test]
    fn alter_and_drop() {
        assert_eq!(
            role("ALTER ROLE a WITH PASSWORD 'p'").unwrap(),
            RoleStatement::Alter {
                name: "a".into(),
                options: RoleOptions {
                    password: pw("p"),
                    ..Default::default()
                }
            }
        );
        assert_eq!(
            role("ALTER USER a NOREADONLY").unwrap(),
            RoleStatement::Alter {
                name: "a".into(),
                options: RoleOptions {
                    read_only: Some(false),
                    ..Default::default()
                }
            }
        );
        assert_eq!(
            role("DROP ROLE IF EXISTS a, \"B\"").unwrap(),
            RoleStatement::Drop {
                names: vec!["a".into(), "B".into()],
                if_exists: true
            }
        );
        assert_eq!(
            role("drop user a").unwrap(),
            RoleStatement::Drop {
                names: vec!["a".into()],
                if_exists: false
            }
        );
    }

    #[test]
    fn errors() {
        assert_eq!(role("CREATE ROLE").unwrap_err(), RoleSyntaxError::Name);
        assert_eq!(role("CREATE ROLE 'a'").unwrap_err(), RoleSyntaxError::Name);
        assert_eq!(
            role("CREATE ROLE a CREATEDB").unwrap_err(),
            RoleSyntaxError::Unsupported("CREATEDB".into())
        );
        assert_eq!(
            role("CREATE ROLE a LOGIN NOLOGIN").unwrap_err(),
            RoleSyntaxError::Conflict
        );
        assert!(matches!(
            role("CREATE ROLE a PASSWORD").unwrap_err(),
            RoleSyntaxError::Near(_)
        ));
        assert!(matches!(
            role("CREATE ROLE a PASSWORD 5").unwrap_err(),
            RoleSyntaxError::Near(_)
        ));
        assert!(matches!(
            role("DROP ROLE a b").unwrap_err(),
            RoleSyntaxError::Near(_)
        ));
        assert!(matches!(
            role("DROP ROLE IF a").unwrap_err(),
            RoleSyntaxError::Near(_)
        ));
        assert_eq!(role("DROP ROLE a,").unwrap_err(), RoleSyntaxError::Name);
    }

    #[test]
    fn the_password_stays_out_of_debug_output() {
        let d = format!("{:?}", classify("CREATE USER a PASSWORD 'hunter2'"));
        assert!(!d.contains("hunter2"), "{d}");
    }

    #[test]
    fn user_mapping_is_not_a_role() {
        assert!(!matches!(
            classify("CREATE USER MAPPING FOR a SERVER s"),
            Command::Role(_)
        ));
    }
}
