//! What a [`crate::Client`] connects to and how long it waits: a libpq-style
//! connection string (`host=a,b port=5433,5434 user=… dbname=…` plus hadr
//! options) or the [`Config`] builder.
//!
//! Every wait has a bound: connect, TCP keepalive and `TCP_USER_TIMEOUT` are
//! on by default, because a client blocked reading from a crashed host
//! otherwise waits for TCP to give up, over an hour (pitfall 2 of DB2's
//! client reroute, ../../docs and the issue text).

use std::path::PathBuf;
use std::time::Duration;

use crate::addr::HostAddr;

/// Which node a client wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The writable primary (the default).
    Primary,
    /// A standby for reads, the primary when no standby answers. With
    /// `max_replay_lag`, the session sets `hadr.max_replay_lag` and the
    /// standby refuses reads staler than that (SQLSTATE 40001); the client
    /// then goes to another node.
    Standby {
        /// How stale a read may be; `None`: any.
        max_replay_lag: Option<Duration>,
    },
}

/// A connection string or builder that is not valid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `key=value` without `=`, or an unterminated quote.
    #[error("connection string: cannot parse near \"{0}\"")]
    Syntax(String),
    /// A key this client does not know (a typo would otherwise be ignored).
    #[error("connection string: unknown option \"{0}\"")]
    UnknownKey(String),
    /// A value that does not fit its key.
    #[error("connection string: invalid value \"{value}\" for {key}: {why}")]
    Value {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// What was expected.
        why: &'static str,
    },
    /// No host at all.
    #[error("no host given")]
    NoHost,
    /// `port=` lists a number of ports other than one or one per host.
    #[error("{ports} ports for {hosts} hosts (give one port, or one per host)")]
    PortCount {
        /// Hosts given.
        hosts: usize,
        /// Ports given.
        ports: usize,
    },
}

/// Where and how to connect. Build one with [`Config::new`] and the setters,
/// or parse a connection string with `str::parse`. Its `Debug` shows no
/// password (docs/security.md §Secrets hygiene).
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// Configured hosts, in the order given (tried after the primary the
    /// cluster advertised).
    pub hosts: Vec<HostAddr>,
    /// User name.
    pub user: String,
    /// Password, if any.
    pub password: Option<String>,
    /// Database name.
    pub dbname: Option<String>,
    /// `application_name`.
    pub application_name: Option<String>,
    /// Primary (default) or a standby for reads.
    pub target: Target,
    /// Bound on one TCP connect plus start-up to one host.
    pub connect_timeout: Duration,
    /// TCP keepalive: idle time before the first probe; `None`: off.
    pub keepalives_idle: Option<Duration>,
    /// TCP keepalive: time between probes.
    pub keepalives_interval: Duration,
    /// TCP keepalive: unanswered probes before the connection is dead.
    pub keepalives_count: u32,
    /// `TCP_USER_TIMEOUT`: how long sent data may stay unacknowledged
    /// before the kernel drops the connection; `None`: the kernel default.
    pub tcp_user_timeout: Option<Duration>,
    /// Client-side bound on one statement; on expiry a cancel request is
    /// sent and the connection is treated as lost (then rerouted).
    pub statement_timeout: Option<Duration>,
    /// Overall time budget of one call for reconnecting, retrying and
    /// resolving a commit outcome.
    pub reroute_timeout: Duration,
    /// First backoff ceiling between rounds over the hosts.
    pub backoff_base: Duration,
    /// Largest backoff ceiling.
    pub backoff_max: Duration,
    /// File remembering the hosts learnt, across restarts.
    pub host_cache: Option<PathBuf>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured, so that a field added later must be listed here.
        let Config {
            hosts,
            user,
            password,
            dbname,
            application_name,
            target,
            connect_timeout,
            keepalives_idle,
            keepalives_interval,
            keepalives_count,
            tcp_user_timeout,
            statement_timeout,
            reroute_timeout,
            backoff_base,
            backoff_max,
            host_cache,
        } = self;
        f.debug_struct("Config")
            .field("hosts", hosts)
            .field("user", user)
            .field("password", &password.as_ref().map(|_| "<redacted>"))
            .field("dbname", dbname)
            .field("application_name", application_name)
            .field("target", target)
            .field("connect_timeout", connect_timeout)
            .field("keepalives_idle", keepalives_idle)
            .field("keepalives_interval", keepalives_interval)
            .field("keepalives_count", keepalives_count)
            .field("tcp_user_timeout", tcp_user_timeout)
            .field("statement_timeout", statement_timeout)
            .field("reroute_timeout", reroute_timeout)
            .field("backoff_base", backoff_base)
            .field("backoff_max", backoff_max)
            .field("host_cache", host_cache)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hosts: Vec::new(),
            user: "postgres".into(),
            password: None,
            dbname: None,
            application_name: None,
            target: Target::Primary,
            connect_timeout: Duration::from_secs(5),
            keepalives_idle: Some(Duration::from_secs(5)),
            keepalives_interval: Duration::from_secs(2),
            keepalives_count: 3,
            tcp_user_timeout: Some(Duration::from_secs(10)),
            statement_timeout: None,
            reroute_timeout: Duration::from_secs(30),
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_millis(500),
            host_cache: None,
        }
    }
}

impl Config {
    /// The defaults, no host yet.
    pub fn new() -> Config {
        Config::default()
    }

    /// Add a host.
    pub fn host(mut self, host: impl Into<String>, port: u16) -> Config {
        self.hosts.push(HostAddr::new(host, port));
        self
    }

    /// User name.
    pub fn user(mut self, user: impl Into<String>) -> Config {
        self.user = user.into();
        self
    }

    /// Password.
    pub fn password(mut self, password: impl Into<String>) -> Config {
        self.password = Some(password.into());
        self
    }

    /// Database name.
    pub fn dbname(mut self, dbname: impl Into<String>) -> Config {
        self.dbname = Some(dbname.into());
        self
    }

    /// Primary or a standby.
    pub fn target(mut self, target: Target) -> Config {
        self.target = target;
        self
    }

    /// Bound on a connect to one host.
    pub fn connect_timeout(mut self, d: Duration) -> Config {
        self.connect_timeout = d;
        self
    }

    /// `TCP_USER_TIMEOUT`; `None`: the kernel default.
    pub fn tcp_user_timeout(mut self, d: Option<Duration>) -> Config {
        self.tcp_user_timeout = d;
        self
    }

    /// TCP keepalive idle time; `None`: keepalive off.
    pub fn keepalives_idle(mut self, d: Option<Duration>) -> Config {
        self.keepalives_idle = d;
        self
    }

    /// Client-side statement timeout.
    pub fn statement_timeout(mut self, d: Option<Duration>) -> Config {
        self.statement_timeout = d;
        self
    }

    /// Overall time budget of one call.
    pub fn reroute_timeout(mut self, d: Duration) -> Config {
        self.reroute_timeout = d;
        self
    }

    /// Backoff ceilings: the first and the largest.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Config {
        self.backoff_base = base;
        self.backoff_max = max;
        self
    }

    /// Remember hosts across restarts in this file.
    pub fn host_cache(mut self, path: impl Into<PathBuf>) -> Config {
        self.host_cache = Some(path.into());
        self
    }

    /// An error if the configuration cannot connect anywhere.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.hosts.is_empty() {
            return Err(ConfigError::NoHost);
        }
        Ok(())
    }
}

impl std::str::FromStr for Config {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        let mut hosts: Vec<String> = Vec::new();
        let mut ports: Vec<u16> = Vec::new();
        let mut max_replay_lag = None;
        let mut standby = false;
        for (key, value) in pairs(s)? {
            let v = value.as_str();
            match key.as_str() {
                "host" => hosts = list(v),
                "port" => {
                    ports = list(v)
                        .iter()
                        .map(|p| p.parse().map_err(|_| bad(&key, v, "a port number")))
                        .collect::<Result<_, _>>()?
                }
                "user" => c.user = value,
                "password" => c.password = Some(value),
                "dbname" => c.dbname = Some(value),
                "application_name" => c.application_name = Some(value),
                "sslmode" => {
                    if !matches!(v, "disable" | "allow" | "prefer") {
                        return Err(bad(&key, v, "disable, allow or prefer (no TLS support)"));
                    }
                }
                "target_session_attrs" | "target" => {
                    standby = match v {
                        "primary" | "read-write" | "any" => false,
                        "standby" | "prefer-standby" | "read-only" => true,
                        _ => {
                            return Err(bad(
                                &key,
                                v,
                                "primary, read-write, standby or prefer-standby",
                            ))
                        }
                    }
                }
                "max_replay_lag" => max_replay_lag = Some(duration(&key, v, Unit::Seconds)?),
                "connect_timeout" => c.connect_timeout = duration(&key, v, Unit::Seconds)?,
                "keepalives" => match v {
                    "0" => c.keepalives_idle = None,
                    "1" => {
                        c.keepalives_idle = c.keepalives_idle.or(Config::default().keepalives_idle)
                    }
                    _ => return Err(bad(&key, v, "0 or 1")),
                },
                "keepalives_idle" => c.keepalives_idle = Some(duration(&key, v, Unit::Seconds)?),
                "keepalives_interval" => c.keepalives_interval = duration(&key, v, Unit::Seconds)?,
                "keepalives_count" => {
                    c.keepalives_count = v.parse().map_err(|_| bad(&key, v, "a count"))?
                }
                // libpq's tcp_user_timeout is in milliseconds.
                "tcp_user_timeout" => {
                    let d = duration(&key, v, Unit::Millis)?;
                    c.tcp_user_timeout = (!d.is_zero()).then_some(d);
                }
                "statement_timeout" => {
                    let d = duration(&key, v, Unit::Seconds)?;
                    c.statement_timeout = (!d.is_zero()).then_some(d);
                }
                "reroute_timeout" => c.reroute_timeout = duration(&key, v, Unit::Seconds)?,
                "backoff_base" => c.backoff_base = duration(&key, v, Unit::Seconds)?,
                "backoff_max" => c.backoff_max = duration(&key, v, Unit::Seconds)?,
                "host_cache" => c.host_cache = Some(PathBuf::from(value)),
                _ => return Err(ConfigError::UnknownKey(key)),
            }
        }
        if standby || max_replay_lag.is_some() {
            c.target = Target::Standby { max_replay_lag };
        }
        if ports.is_empty() {
            ports.push(5432);
        }
        if ports.len() != 1 && ports.len() != hosts.len() {
            return Err(ConfigError::PortCount {
                hosts: hosts.len(),
                ports: ports.len(),
            });
        }
        c.hosts = hosts
            .into_iter()
            .enumerate()
            .map(|(i, h)| HostAddr::new(h, ports[if ports.len() == 1 { 0 } else { i }]))
            .collect();
        c.validate()?;
        Ok(c)
    }
}

fn bad(key: &str, value: &str, why: &'static str) -> ConfigError {
    ConfigError::Value {
        key: key.to_string(),
        value: value.to_string(),
        why,
    }
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// The unit of a bare number.
#[derive(Clone, Copy)]
enum Unit {
    Seconds,
    Millis,
}

/// `500ms`, `10s`, `2m`, or a bare number in `unit` (libpq's units).
fn duration(key: &str, v: &str, unit: Unit) -> Result<Duration, ConfigError> {
    let err = || bad(key, v, "a duration such as 500ms, 10s or 2m");
    let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (n, suffix) = v.split_at(digits);
    let n: u64 = n.parse().map_err(|_| err())?;
    match (suffix.trim(), unit) {
        ("", Unit::Seconds) | ("s", _) => Ok(Duration::from_secs(n)),
        ("", Unit::Millis) | ("ms", _) => Ok(Duration::from_millis(n)),
        ("m", _) | ("min", _) => Ok(Duration::from_secs(n.saturating_mul(60))),
        _ => Err(err()),
    }
}

/// `key=value` pairs of a libpq-style string; values may be single-quoted
/// with `\'` and `\\` escapes.
fn pairs(s: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    let mut it = s.chars().peekable();
    loop {
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        if it.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = it.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        if it.next() != Some('=') {
            return Err(ConfigError::Syntax(key));
        }
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if it.next_if_eq(&'\'').is_some() {
            loop {
                match it.next() {
                    None => return Err(ConfigError::Syntax(key)),
                    Some('\'') => break,
                    Some('\\') => match it.next() {
                        Some(c) => value.push(c),
                        None => return Err(ConfigError::Syntax(key)),
                    },
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = it.next_if(|c| !c.is_whitespace()) {
                value.push(c);
            }
        }
        out.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, ConfigError> {
        s.parse()
    }

    #[test]
    fn libpq_style_hosts_and_ports() {
        let c = parse("host=a,b port=5433,5434 user=u dbname=d").unwrap();
        assert_eq!(
            c.hosts,
            vec![HostAddr::new("a", 5433), HostAddr::new("b", 5434)]
        );
        assert_eq!((c.user.as_str(), c.dbname.as_deref()), ("u", Some("d")));
        assert_eq!(c.target, Target::Primary);
        // One port for every host; the default port without one.
        let c = parse("host=a,b port=7000").unwrap();
        assert_eq!(c.hosts[1], HostAddr::new("b", 7000));
        assert_eq!(parse("host=a").unwrap().hosts[0].port, 5432);
    }

    #[test]
    fn defaults_bound_every_wait() {
        let c = parse("host=a").unwrap();
        assert_eq!(c.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.keepalives_idle, Some(Duration::from_secs(5)));
        assert_eq!(c.tcp_user_timeout, Some(Duration::from_secs(10)));
        assert_eq!(c.reroute_timeout, Duration::from_secs(30));
        assert_eq!(c.statement_timeout, None);
    }

    #[test]
    fn timeouts_take_libpq_units_or_a_suffix() {
        let c = parse(
            "host=a connect_timeout=2 keepalives_idle=3s tcp_user_timeout=1500 \
             statement_timeout=250ms reroute_timeout=1m backoff_base=10ms backoff_max=1s",
        )
        .unwrap();
        assert_eq!(c.connect_timeout, Duration::from_secs(2));
        assert_eq!(c.keepalives_idle, Some(Duration::from_secs(3)));
        assert_eq!(c.tcp_user_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(c.statement_timeout, Some(Duration::from_millis(250)));
        assert_eq!(c.reroute_timeout, Duration::from_secs(60));
        assert_eq!(c.backoff_base, Duration::from_millis(10));
        assert_eq!(c.backoff_max, Duration::from_secs(1));
        let c = parse("host=a keepalives=0 tcp_user_timeout=0").unwrap();
        assert_eq!((c.keepalives_idle, c.tcp_user_timeout), (None, None));
    }

    #[test]
    fn standby_target_with_replay_lag() {
        let c = parse("host=a max_replay_lag=500ms").unwrap();
        assert_eq!(
            c.target,
            Target::Standby {
                max_replay_lag: Some(Duration::from_millis(500))
            }
        );
        let c = parse("host=a target_session_attrs=prefer-standby").unwrap();
        assert_eq!(
            c.target,
            Target::Standby {
                max_replay_lag: None
            }
        );
        let c = parse("host=a target_session_attrs=read-write").unwrap();
        assert_eq!(c.target, Target::Primary);
    }

    #[test]
    fn quoted_values_and_cache_path() {
        let c = parse(r"host = a password='it\'s a secret' host_cache='/tmp/x y'").unwrap();
        assert_eq!(c.password.as_deref(), Some("it's a secret"));
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("secret") && shown.contains("<redacted>"),
            "{shown}"
        );
        assert_eq!(c.host_cache, Some(PathBuf::from("/tmp/x y")));
    }

    #[test]
    fn bad_strings_are_refused_with_a_reason() {
        assert_eq!(parse("port=5432"), Err(ConfigError::NoHost));
        assert_eq!(parse(""), Err(ConfigError::NoHost));
        assert!(matches!(parse("host=a hots=b"), Err(ConfigError::UnknownKey(k)) if k == "hots"));
        assert!(matches!(parse("host=a port"), Err(ConfigError::Syntax(_))));
        assert!(matches!(
            parse("host=a password='x"),
            Err(ConfigError::Syntax(_))
        ));
        assert!(matches!(
            parse("host=a port=x"),
            Err(ConfigError::Value { .. })
        ));
        assert!(matches!(
            parse("host=a port=70000"),
            Err(ConfigError::Value { .. })
        ));
        assert!(matches!(
            parse("host=a connect_timeout=soon"),
            Err(ConfigError::Value { .. })
        ));
        assert!(matches!(
            parse("host=a connect_timeout=5h"),
            Err(ConfigError::Value { .. })
        ));
        assert!(matches!(
            parse("host=a sslmode=require"),
            Err(ConfigError::Value { .. })
        ));
        assert_eq!(
            parse("host=a,b,c port=1,2"),
            Err(ConfigError::PortCount { hosts: 3, ports: 2 })
        );
    }

    #[test]
    fn builder_matches_the_string() {
        let built = Config::new()
            .host("a", 5433)
            .host("b", 5434)
            .user("u")
            .dbname("d")
            .statement_timeout(Some(Duration::from_secs(3)));
        let parsed = parse("host=a,b port=5433,5434 user=u dbname=d statement_timeout=3").unwrap();
        assert_eq!(built, parsed);
    }
}
