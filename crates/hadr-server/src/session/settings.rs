//! Session settings: SET, RESET and SHOW, and the `hadr.*` settings that
//! change how this session's commits and reads behave.
//!
//! Most PostgreSQL settings are accepted and remembered without effect, as
//! drivers set them at connect (DateStyle, extra_float_digits…); the few
//! whose values hadr cannot honour are refused so that a client does not
//! believe it got them.

use std::collections::HashMap;

use crate::config::Dur;
use crate::errors::{sqlstate, PgError};
use crate::node::Node;

/// The ParameterStatus (and SHOW name) of the live topology.
pub const TOPOLOGY: &str = "hadr.topology";

/// The server_version we report; drivers parse it to pick features.
pub const SERVER_VERSION: &str = "15.0";

/// A SET that hadr refuses.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingError {
    /// Only UTF8 is spoken.
    #[error("client_encoding {0} is not supported; hadr speaks UTF8 only")]
    Encoding(String),
    /// `hadr.commit_wait` takes remote_apply, on or local.
    #[error("invalid value for hadr.commit_wait: \"{0}\" (remote_apply, on or local)")]
    CommitWait(String),
    /// `hadr.max_replay_lag` takes a duration.
    #[error("invalid value for hadr.max_replay_lag: \"{0}\" (a duration such as 500ms)")]
    ReplayLag(String),
    /// `hadr.commit_token` takes a plain word.
    #[error("invalid value for hadr.commit_token: \"{0}\" (1 to 128 of A-Z a-z 0-9 . _ : -)")]
    CommitToken(String),
    /// SHOW of a name nobody set and hadr does not know.
    #[error("unrecognized configuration parameter \"{0}\"")]
    Unknown(String),
}

impl From<SettingError> for PgError {
    fn from(e: SettingError) -> PgError {
        let code = match e {
            SettingError::Encoding(_) => sqlstate::FEATURE_NOT_SUPPORTED,
            SettingError::CommitWait(_)
            | SettingError::ReplayLag(_)
            | SettingError::CommitToken(_) => sqlstate::INVALID_PARAMETER_VALUE,
            SettingError::Unknown(_) => sqlstate::UNDEFINED_OBJECT,
        };
        PgError::new(code, e.to_string())
    }
}

/// What a SET changed beyond the stored value.
#[derive(Debug, PartialEq, Eq)]
pub enum SetEffect {
    /// Only the stored value.
    None,
    /// `SET transaction_read_only`: the block's read-only flag.
    TransactionReadOnly(bool),
}

/// The values a session set, and those it started with.
#[derive(Debug, Default)]
pub struct Settings {
    values: HashMap<String, String>,
}

/// Names that come from the StartupMessage and survive RESET ALL.
const FROM_STARTUP: [&str; 2] = ["user", "application_name"];

impl Settings {
    /// Settings of a new session: the user and application_name it connected with.
    pub fn from_startup(user: Option<&str>, application_name: Option<&str>) -> Settings {
        let mut values = HashMap::new();
        values.insert(
            "application_name".to_string(),
            application_name.unwrap_or_default().to_string(),
        );
        values.insert("user".to_string(), user.unwrap_or("hadr").to_string());
        Settings { values }
    }

    /// A value the session set (or connected with).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// SET `name` = `value` (the statement's text, quotes and all).
    pub fn set(&mut self, name: &str, value: &str) -> Result<SetEffect, SettingError> {
        let v = value.trim().trim_matches('\'').to_string();
        let mut effect = SetEffect::None;
        match name {
            "client_encoding"
                if !v.eq_ignore_ascii_case("utf8")
                    && !v.eq_ignore_ascii_case("unicode")
                    && !v.eq_ignore_ascii_case("default") =>
            {
                return Err(SettingError::Encoding(v));
            }
            "hadr.commit_wait"
                if !matches!(
                    v.to_ascii_lowercase().as_str(),
                    "remote_apply" | "local" | "default" | "on"
                ) =>
            {
                return Err(SettingError::CommitWait(v));
            }
            "hadr.max_replay_lag" if v.parse::<Dur>().is_err() => {
                return Err(SettingError::ReplayLag(v));
            }
            "hadr.commit_token"
                if !v.eq_ignore_ascii_case("default") && !crate::commit_tokens::valid(&v) =>
            {
                return Err(SettingError::CommitToken(v));
            }
            "transaction_read_only" => {
                effect = SetEffect::TransactionReadOnly(matches!(
                    v.to_ascii_lowercase().as_str(),
                    "on" | "true" | "1"
                ));
            }
            _ => {}
        }
        if v.eq_ignore_ascii_case("default") {
            self.values.remove(name);
        } else {
            self.values.insert(name.to_string(), v);
        }
        Ok(effect)
    }

    /// RESET `name`, or RESET ALL (the start-up values stay).
    pub fn reset(&mut self, name: &str) {
        if name == "all" {
            self.values
                .retain(|k, _| FROM_STARTUP.contains(&k.as_str()));
        } else {
            self.values.remove(name);
        }
    }

    /// What the client is told at start-up (ParameterStatus) and may SHOW.
    pub fn parameter_statuses(&self, node: &Node) -> Vec<(&'static str, String)> {
        vec![
            ("server_version", SERVER_VERSION.into()),
            ("server_encoding", "UTF8".into()),
            ("client_encoding", "UTF8".into()),
            ("DateStyle", "ISO, MDY".into()),
            ("IntervalStyle", "postgres".into()),
            ("TimeZone", "UTC".into()),
            ("integer_datetimes", "on".into()),
            ("standard_conforming_strings", "on".into()),
            ("is_superuser", "on".into()),
            (
                "session_authorization",
                self.get("user").unwrap_or_default().to_string(),
            ),
            (
                "application_name",
                self.get("application_name").unwrap_or_default().to_string(),
            ),
            ("in_hot_standby", on_off(node.is_standby())),
            ("default_transaction_read_only", on_off(!node.writable())),
            // Not a PostgreSQL parameter: clients ignore ParameterStatus
            // they do not know, as the protocol asks of them.
            ("hadr_members", node.members()),
            // Where clients reach the members (docs/clients.md); sent again
            // when it changes (`Session::ready`).
            (TOPOLOGY, node.topology().to_json()),
        ]
    }

    /// SHOW `name`: what the session set, else what the node says.
    pub fn show(
        &self,
        name: &str,
        node: &Node,
        read_only_tx: bool,
    ) -> Result<String, SettingError> {
        if let Some(v) = self.get(name) {
            return Ok(v.to_string());
        }
        match name {
            "transaction_read_only" => return Ok(on_off(read_only_tx || !node.writable())),
            "transaction_isolation" | "default_transaction_isolation" => {
                return Ok("serializable".into())
            }
            "max_connections" => return Ok(node.config.max_connections.to_string()),
            "idle_in_transaction_session_timeout" => {
                return Ok(format!(
                    "{}ms",
                    node.config.idle_in_transaction_timeout.0.as_millis()
                ))
            }
            _ => {}
        }
        self.parameter_statuses(node)
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .ok_or_else(|| SettingError::Unknown(name.to_string()))
    }

    /// `SET hadr.commit_wait = remote_apply`: a commit returns only once the
    /// principal standby has replayed it, so that reads there see it.
    pub fn remote_apply(&self) -> bool {
        self.get("hadr.commit_wait")
            .is_some_and(|v| v.eq_ignore_ascii_case("remote_apply"))
    }

    /// `hadr.commit_token`: the id the next writing transaction records.
    pub fn commit_token(&self) -> Option<&str> {
        self.get("hadr.commit_token")
    }

    /// The writing transaction that carried the token ended.
    pub fn clear_commit_token(&mut self) {
        self.values.remove("hadr.commit_token");
    }

    /// `hadr.max_replay_lag`: how stale a standby's reads may be (None: any).
    pub fn max_replay_lag(&self) -> Option<Dur> {
        self.get("hadr.max_replay_lag")?.parse().ok()
    }
}

fn on_off(b: bool) -> String {
    if b { "on" } else { "off" }.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_show_reset() {
        let mut s = Settings::from_startup(Some("alice"), None);
        assert_eq!(s.set("DateStyle", "'ISO'"), Ok(SetEffect::None));
        assert_eq!(s.get("DateStyle"), Some("ISO"));
        assert_eq!(
            s.set("transaction_read_only", "on"),
            Ok(SetEffect::TransactionReadOnly(true))
        );
        s.set("hadr.commit_wait", "remote_apply").unwrap();
        assert!(s.remote_apply());
        s.set("hadr.commit_wait", "default").unwrap();
        assert!(!s.remote_apply());
        s.reset("all");
        assert_eq!(s.get("DateStyle"), None);
        assert_eq!(s.get("user"), Some("alice"));
        assert_eq!(s.get("application_name"), Some(""));
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        let mut s = Settings::default();
        assert_eq!(
            s.set("client_encoding", "LATIN1"),
            Err(SettingError::Encoding("LATIN1".into()))
        );
        assert!(s.set("client_encoding", "'UTF8'").is_ok());
        assert!(s.set("hadr.commit_wait", "sometimes").is_err());
        assert!(s.set("hadr.max_replay_lag", "soon").is_err());
        assert_eq!(
            s.set("hadr.commit_token", "'a b'"),
            Err(SettingError::CommitToken("a b".into()))
        );
        s.set("hadr.commit_token", "'app-1:42'").unwrap();
        assert_eq!(s.commit_token(), Some("app-1:42"));
        s.clear_commit_token();
        assert_eq!(s.commit_token(), None);
        s.set("hadr.max_replay_lag", "500ms").unwrap();
        assert_eq!(
            s.max_replay_lag(),
            Some(Dur(std::time::Duration::from_millis(500)))
        );
        let e: PgError = SettingError::Unknown("nope".into()).into();
        assert_eq!(e.code, sqlstate::UNDEFINED_OBJECT);
    }
}
