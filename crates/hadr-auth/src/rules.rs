//! Access rules in the spirit of PostgreSQL's pg_hba.conf: each rule names
//! a connection type, a database, a user, a client address range and a
//! method; the first rule that matches a connection decides, and a
//! connection no rule matches is refused.
//!
//! With no rules configured, [`Rules::default_rules`] applies: `trust` from
//! loopback only, `scram-sha-256` from anywhere else.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;

/// Which connections a rule is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnType {
    /// Any TCP connection, TLS or not.
    Host,
    /// TLS connections only.
    HostSsl,
    /// Plain connections only.
    HostNoSsl,
}

/// How a matching connection is authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Let in without a password.
    Trust,
    /// SCRAM-SHA-256 against the role's stored verifier.
    ScramSha256,
    /// A TLS client certificate whose CN is the user name.
    Cert,
    /// Refuse.
    Reject,
}

/// A database or user column: `all`, or a comma-separated list of names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Names {
    /// Any name.
    All,
    /// One of these (exact, case-sensitive, as in pg_hba.conf).
    List(Vec<String>),
}

/// The address column: `all`, or a CIDR range (a bare address is one host).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// Any address.
    All,
    /// This range.
    Net(IpNet),
}

/// One rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// `host`, `hostssl` or `hostnossl`.
    pub conn_type: ConnType,
    /// The databases it is for.
    pub database: Names,
    /// The users it is for.
    pub user: Names,
    /// The client addresses it is for.
    pub address: Address,
    /// What it does.
    pub method: Method,
}

/// A rule that cannot be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// Unknown connection type.
    #[error("unknown connection type {0:?} (host, hostssl, hostnossl)")]
    ConnType(String),
    /// Unknown method.
    #[error("unknown method {0:?} (trust, scram-sha-256, cert, reject)")]
    Method(String),
    /// Bad address.
    #[error("{0:?} is not an address range (all, 10.0.0.0/8, 192.0.2.7, ::1/128)")]
    Address(String),
    /// An empty database or user column.
    #[error("empty {0} column (a name, names separated by commas, or all)")]
    Names(&'static str),
    /// `cert` on a connection type that admits plain connections.
    #[error(
        "method cert needs connection type hostssl: a plain connection has no client certificate"
    )]
    CertNeedsSsl,
}

impl FromStr for ConnType {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Self, RuleError> {
        match s {
            "host" => Ok(ConnType::Host),
            "hostssl" => Ok(ConnType::HostSsl),
            "hostnossl" => Ok(ConnType::HostNoSsl),
            _ => Err(RuleError::ConnType(s.to_string())),
        }
    }
}

impl FromStr for Method {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Self, RuleError> {
        match s {
            "trust" => Ok(Method::Trust),
            "scram-sha-256" => Ok(Method::ScramSha256),
            "cert" => Ok(Method::Cert),
            "reject" => Ok(Method::Reject),
            _ => Err(RuleError::Method(s.to_string())),
        }
    }
}

impl FromStr for Address {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Self, RuleError> {
        if s == "all" {
            return Ok(Address::All);
        }
        if let Ok(n) = s.parse::<IpNet>() {
            // 10.1.2.3/8 means 10.0.0.0/8, as in pg_hba.conf.
            return Ok(Address::Net(n.trunc()));
        }
        match s.parse::<IpAddr>() {
            Ok(a) => Ok(Address::Net(IpNet::from(a))),
            Err(_) => Err(RuleError::Address(s.to_string())),
        }
    }
}

fn names(s: &str, column: &'static str) -> Result<Names, RuleError> {
    if s == "all" {
        return Ok(Names::All);
    }
    let list: Vec<String> = s.split(',').map(|n| n.trim().to_string()).collect();
    if list.iter().any(String::is_empty) {
        return Err(RuleError::Names(column));
    }
    Ok(Names::List(list))
}

impl Names {
    fn matches(&self, name: &str) -> bool {
        match self {
            Names::All => true,
            Names::List(l) => l.iter().any(|n| n == name),
        }
    }
}

impl Address {
    fn matches(&self, a: IpAddr) -> bool {
        match self {
            Address::All => true,
            Address::Net(n) => n.contains(&a),
        }
    }

    /// Whether every address in it is a loopback address.
    fn loopback_only(&self) -> bool {
        match self {
            Address::All => false,
            Address::Net(n) => loopback_nets().iter().any(|l| l.contains(n)),
        }
    }
}

fn loopback_nets() -> [IpNet; 2] {
    [
        IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
        IpNet::new_assert(IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
    ]
}

/// The connection a rule is chosen for.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// Whether it is on TLS.
    pub tls: bool,
    /// The database in the StartupMessage.
    pub database: &'a str,
    /// The user in the StartupMessage.
    pub user: &'a str,
    /// The client's address.
    pub addr: IpAddr,
    /// The CN of the client certificate verified on its TLS connection.
    pub client_cn: Option<&'a str>,
}

/// What to do with a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Let it in (`trust`, or `cert` with the user's certificate).
    Allow,
    /// Run the SCRAM exchange.
    Scram,
    /// Refuse it.
    Refuse(Refusal),
}

/// Why a connection is refused (each is SQLSTATE 28000).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No rule matches.
    NoRule,
    /// A `reject` rule matched (its index).
    Reject(usize),
    /// A `cert` rule matched (its index) but there is no client
    /// certificate, or its CN is not the user name.
    Cert(usize),
}

impl Rule {
    /// A rule from its five columns, as the config file writes them.
    pub fn parse(
        conn_type: &str,
        database: &str,
        user: &str,
        address: &str,
        method: &str,
    ) -> Result<Rule, RuleError> {
        let r = Rule {
            conn_type: conn_type.parse()?,
            database: names(database, "database")?,
            user: names(user, "user")?,
            address: address.parse()?,
            method: method.parse()?,
        };
        if r.method == Method::Cert && r.conn_type != ConnType::HostSsl {
            return Err(RuleError::CertNeedsSsl);
        }
        Ok(r)
    }

    /// Whether it applies to `req`.
    pub fn matches(&self, req: &Request<'_>) -> bool {
        let type_ok = match self.conn_type {
            ConnType::Host => true,
            ConnType::HostSsl => req.tls,
            ConnType::HostNoSsl => !req.tls,
        };
        // A v4 client on a v6 socket shows as ::ffff:a.b.c.d.
        type_ok
            && self.database.matches(req.database)
            && self.user.matches(req.user)
            && self.address.matches(req.addr.to_canonical())
    }
}

impl fmt::Display for Names {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Names::All => f.write_str("all"),
            Names::List(l) => f.write_str(&l.join(",")),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = match self.conn_type {
            ConnType::Host => "host",
            ConnType::HostSsl => "hostssl",
            ConnType::HostNoSsl => "hostnossl",
        };
        let a = match &self.address {
            Address::All => "all".to_string(),
            Address::Net(n) => n.to_string(),
        };
        let m = match self.method {
            Method::Trust => "trust",
            Method::ScramSha256 => "scram-sha-256",
            Method::Cert => "cert",
            Method::Reject => "reject",
        };
        write!(f, "{t} {} {} {a} {m}", self.database, self.user)
    }
}

/// The rules in force, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    rules: Vec<Rule>,
    /// Whether these are the built-in default (said in refusals and logs).
    default: bool,
}

impl Rules {
    /// Configured rules (an empty list refuses everyone).
    pub fn new(rules: Vec<Rule>) -> Rules {
        Rules {
            rules,
            default: false,
        }
    }

    /// The rules when none are configured: trust from loopback only,
    /// SCRAM from anywhere else.
    pub fn default_rules() -> Rules {
        let [v4, v6] = loopback_nets();
        let rule = |address, method| Rule {
            conn_type: ConnType::Host,
            database: Names::All,
            user: Names::All,
            address,
            method,
        };
        Rules {
            rules: vec![
                rule(Address::Net(v4), Method::Trust),
                rule(Address::Net(v6), Method::Trust),
                rule(Address::All, Method::ScramSha256),
            ],
            default: true,
        }
    }

    /// Whether these are the built-in default.
    pub fn is_default(&self) -> bool {
        self.default
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The first rule that matches (its index from 0 and itself); None:
    /// the connection must be refused.
    pub fn find(&self, req: &Request<'_>) -> Option<(usize, &Rule)> {
        self.rules.iter().enumerate().find(|(_, r)| r.matches(req))
    }

    /// What to do with `req`: the first matching rule's method (a `cert`
    /// rule also checks the certificate's CN against the user name).
    pub fn decide(&self, req: &Request<'_>) -> Decision {
        match self.find(req) {
            None => Decision::Refuse(Refusal::NoRule),
            Some((_, r)) if r.method == Method::Trust => Decision::Allow,
            Some((_, r)) if r.method == Method::ScramSha256 => Decision::Scram,
            Some((i, r)) if r.method == Method::Cert => {
                if req.tls && req.client_cn == Some(req.user) {
                    Decision::Allow
                } else {
                    Decision::Refuse(Refusal::Cert(i))
                }
            }
            Some((i, _)) => Decision::Refuse(Refusal::Reject(i)),
        }
    }

    /// A node listening on `listen` would let strangers in without a
    /// password: the first `trust` rule that covers a non-loopback address,
    /// when `listen` is not a loopback address.
    pub fn insecure_trust(&self, listen: IpAddr) -> Option<(usize, &Rule)> {
        if listen.to_canonical().is_loopback() {
            return None;
        }
        self.rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.method == Method::Trust && !r.address.loopback_only())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(tls: bool, user: &'a str, addr: &str) -> Request<'a> {
        Request {
            tls,
            database: "db",
            user,
            addr: addr.parse().unwrap(),
            client_cn: None,
        }
    }

    #[test]
    fn default_rules_trust_loopback_only() {
        let r = Rules::default_rules();
        let m = |a: &str| r.find(&req(false, "u", a)).map(|(_, r)| r.method);
        assert_eq!(m("127.0.0.1"), Some(Method::Trust));
        assert_eq!(m("127.9.9.9"), Some(Method::Trust));
        assert_eq!(m("::1"), Some(Method::Trust));
        assert_eq!(m("::ffff:127.0.0.1"), Some(Method::Trust));
        assert_eq!(m("10.0.0.1"), Some(Method::ScramSha256));
        assert_eq!(m("::ffff:10.0.0.1"), Some(Method::ScramSha256));
        assert_eq!(m("2001:db8::1"), Some(Method::ScramSha256));
        assert!(r.insecure_trust("0.0.0.0".parse().unwrap()).is_none());
    }

    #[test]
    fn insecure_trust_names_the_rule() {
        let r = Rules::new(vec![
            Rule::parse("host", "all", "all", "127.0.0.1/32", "trust").unwrap(),
            Rule::parse("host", "all", "all", "10.0.0.0/8", "trust").unwrap(),
        ]);
        assert!(r.insecure_trust("127.0.0.1".parse().unwrap()).is_none());
        let (i, rule) = r.insecure_trust("0.0.0.0".parse().unwrap()).unwrap();
        assert_eq!(i, 1);
        assert_eq!(rule.to_string(), "host all all 10.0.0.0/8 trust");
    }

    #[test]
    fn bad_rules_are_refused() {
        assert!(matches!(
            Rule::parse("local", "all", "all", "all", "trust"),
            Err(RuleError::ConnType(_))
        ));
        assert!(matches!(
            Rule::parse("host", "all", "all", "all", "md5"),
            Err(RuleError::Method(_))
        ));
        assert!(matches!(
            Rule::parse("host", "all", "all", "10.0.0.0/33", "trust"),
            Err(RuleError::Address(_))
        ));
        assert!(matches!(
            Rule::parse("host", "", "all", "all", "trust"),
            Err(RuleError::Names("database"))
        ));
        assert_eq!(
            Rule::parse("host", "all", "all", "all", "cert"),
            Err(RuleError::CertNeedsSsl)
        );
    }
}
