//! A host a client connects to.

use std::fmt;

/// A `host:port` a client connects to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostAddr {
    /// Name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl HostAddr {
    /// `host` and `port`.
    pub fn new(host: impl Into<String>, port: u16) -> HostAddr {
        HostAddr {
            host: host.into(),
            port,
        }
    }

    /// `host:port`, `[v6]:port`; `None` for anything else.
    pub fn parse(s: &str) -> Option<HostAddr> {
        let (host, port) = match s.strip_prefix('[') {
            Some(rest) => {
                let (h, p) = rest.split_once("]:")?;
                (h, p)
            }
            None => {
                let (h, p) = s.rsplit_once(':')?;
                if h.contains(':') {
                    return None;
                }
                (h, p)
            }
        };
        if host.is_empty() || host.chars().any(char::is_whitespace) {
            return None;
        }
        Some(HostAddr::new(host, port.parse().ok()?))
    }
}

impl fmt::Display for HostAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> HostAddr {
        HostAddr::parse(s).unwrap()
    }

    #[test]
    fn addresses() {
        assert_eq!(a("127.0.0.1:5433"), HostAddr::new("127.0.0.1", 5433));
        assert_eq!(a("[::1]:5433"), HostAddr::new("::1", 5433));
        assert_eq!(a("db.example:1"), HostAddr::new("db.example", 1));
        assert_eq!(HostAddr::new("::1", 5).to_string(), "[::1]:5");
        for bad in [
            "", "x", "x:", ":5", "::1:5", "[::1]5", "x:99999", "a b:5", "x:-1",
        ] {
            assert_eq!(HostAddr::parse(bad), None, "{bad}");
        }
    }
}
