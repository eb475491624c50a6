//! The `arbiter` setting: `file:PATH`, `s3://BUCKET/KEY?endpoint=URL&…`,
//! `etcd://HOST:PORT[,HOST:PORT…]/KEY`, `net:HOST:PORT`.

use std::path::PathBuf;

use crate::{Arbiter, ArbiterError};

/// A parsed `arbiter` setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArbiterSpec {
    /// A file on storage every node mounts.
    File {
        /// The lease file.
        path: PathBuf,
    },
    /// An object in an S3-compatible store.
    S3(crate::s3::S3Config),
    /// A key in etcd.
    Etcd {
        /// `host:port` of each member.
        endpoints: Vec<String>,
        /// The key (starts with `/`).
        key: String,
    },
    /// An address that must answer a TCP connect.
    Net {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
    },
}

fn bad(spec: &str, message: impl Into<String>) -> ArbiterError {
    ArbiterError::Spec {
        spec: spec.to_string(),
        message: message.into(),
    }
}

impl std::str::FromStr for ArbiterSpec {
    type Err = ArbiterError;

    fn from_str(spec: &str) -> Result<Self, ArbiterError> {
        let s = spec.trim();
        if let Some(path) = s.strip_prefix("file:") {
            if path.is_empty() {
                return Err(bad(
                    spec,
                    "file: needs a path, e.g. file:/mnt/shared/hadr.lease",
                ));
            }
            return Ok(ArbiterSpec::File { path: path.into() });
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
            let (bucket, key) = path
                .split_once('/')
                .filter(|(b, k)| !b.is_empty() && !k.is_empty())
                .ok_or_else(|| {
                    bad(
                        spec,
                        "s3:// needs a bucket and a key: s3://BUCKET/KEY?endpoint=URL",
                    )
                })?;
            let mut cfg = crate::s3::S3Config {
                bucket: bucket.to_string(),
                key: key.to_string(),
                endpoint: None,
                region: "us-east-1".to_string(),
                access_key_file: None,
                secret_key_file: None,
            };
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| bad(spec, format!("{pair:?} is not key=value")))?;
                match k {
                    "endpoint" => cfg.endpoint = Some(v.to_string()),
                    "region" => cfg.region = v.to_string(),
                    "access_key_file" => cfg.access_key_file = Some(v.into()),
                    "secret_key_file" => cfg.secret_key_file = Some(v.into()),
                    other => {
                        return Err(bad(
                            spec,
                            format!("unknown parameter {other:?} (endpoint, region, access_key_file, secret_key_file)"),
                        ))
                    }
                }
            }
            return Ok(ArbiterSpec::S3(cfg));
        }
        if let Some(rest) = s.strip_prefix("etcd://") {
            let (hosts, key) = rest
                .split_once('/')
                .ok_or_else(|| bad(spec, "etcd:// needs a key: etcd://HOST:PORT/KEY"))?;
            let endpoints: Vec<String> = hosts
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(String::from)
                .collect();
            if endpoints.is_empty() || key.is_empty() {
                return Err(bad(spec, "etcd:// needs at least one HOST:PORT and a key"));
            }
            for e in &endpoints {
                host_port(spec, e)?;
            }
            return Ok(ArbiterSpec::Etcd {
                endpoints,
                key: format!("/{key}"),
            });
        }
        if let Some(addr) = s.strip_prefix("net:") {
            let (host, port) = host_port(spec, addr)?;
            return Ok(ArbiterSpec::Net { host, port });
        }
        Err(bad(
            spec,
            "expected file:PATH, s3://BUCKET/KEY?endpoint=URL, etcd://HOST:PORT/KEY or net:HOST:PORT",
        ))
    }
}

fn host_port(spec: &str, s: &str) -> Result<(String, u16), ArbiterError> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| bad(spec, format!("{s:?} needs HOST:PORT")))?;
    let port: u16 = port
        .parse()
        .map_err(|_| bad(spec, format!("{port:?} is not a port")))?;
    if host.is_empty() {
        return Err(bad(spec, format!("{s:?} has no host")));
    }
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

/// Open the arbiter a spec names (no I/O yet: the first call connects).
pub fn open(spec: &ArbiterSpec) -> Result<Box<dyn Arbiter>, ArbiterError> {
    Ok(match spec {
        ArbiterSpec::File { path } => Box::new(crate::file::FileArbiter::new(path.clone())),
        ArbiterSpec::S3(cfg) => Box::new(crate::s3::S3Arbiter::new(cfg.clone())?),
        ArbiterSpec::Etcd { endpoints, key } => Box::new(crate::etcd::EtcdArbiter::new(
            endpoints.clone(),
            key.clone(),
        )),
        ArbiterSpec::Net { host, port } => {
            Box::new(crate::network::NetArbiter::new(host.clone(), *port))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(
            "file:/mnt/x".parse::<ArbiterSpec>().unwrap(),
            ArbiterSpec::File {
                path: "/mnt/x".into()
            }
        );
        let ArbiterSpec::S3(c) = "s3://b/k/l?endpoint=http://127.0.0.1:5000&region=eu"
            .parse::<ArbiterSpec>()
            .unwrap()
        else {
            panic!()
        };
        assert_eq!((c.bucket.as_str(), c.key.as_str()), ("b", "k/l"));
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(c.region, "eu");
        assert_eq!(
            "etcd://a:1,b:2/hadr/lease".parse::<ArbiterSpec>().unwrap(),
            ArbiterSpec::Etcd {
                endpoints: vec!["a:1".into(), "b:2".into()],
                key: "/hadr/lease".into()
            }
        );
        assert_eq!(
            "net:10.0.0.1:22".parse::<ArbiterSpec>().unwrap(),
            ArbiterSpec::Net {
                host: "10.0.0.1".into(),
                port: 22
            }
        );
        for bad in [
            "",
            "file:",
            "s3://bucket",
            "s3://b/k?nope=1",
            "etcd://a:1",
            "etcd://a/k",
            "net:host",
            "net:h:99999",
            "zk://x",
        ] {
            assert!(bad.parse::<ArbiterSpec>().is_err(), "{bad:?}");
        }
    }
}
