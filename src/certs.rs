//! `hadr certs init`: a cluster CA and one certificate per node for mutual
//! TLS on replication links, for users without a PKI of their own
//! (docs/security.md §Replication links).
//!
//! Each node certificate serves both ends of a link (server and client
//! authentication), names the node's hosts (DNS names and/or IP addresses)
//! as subject alternative names, which is what peers check, and the node's
//! name as its common name, which is for people. Keys are ECDSA P-256 and
//! are written readable by their owner only.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use clap::Subcommand;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

#[derive(Subcommand)]
pub enum CertsCmd {
    /// Create a cluster CA (ca.pem, ca.key) and, per --node, NAME.pem and
    /// NAME.key signed by it; prints the configuration lines for each node.
    Init {
        /// Directory to write into (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// A node: NAME=HOST[,HOST…], its hosts as the other nodes dial
        /// them (the hosts of their hadr_target_list entries). Repeatable.
        #[arg(long = "node", value_name = "NAME=HOST[,HOST…]", required = true)]
        nodes: Vec<String>,
        /// Validity of the CA and the certificates, in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
        /// Overwrite existing files (a new CA: every node needs its new files).
        #[arg(long)]
        force: bool,
    },
}

/// One `--node` argument, checked.
#[derive(Debug, PartialEq, Eq)]
struct NodeSpec {
    name: String,
    hosts: Vec<String>,
}

/// Parse `NAME=HOST[,HOST…]`: a name usable as a file name, hosts without
/// ports (an IPv6 address may come in brackets).
fn parse_node(spec: &str) -> Result<NodeSpec> {
    let Some((name, hosts)) = spec.split_once('=') else {
        bail!("--node {spec:?} is not NAME=HOST[,HOST…]");
    };
    ensure!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && name != "ca",
        "--node {spec:?}: the name is letters, digits, - and _ only (and not \"ca\"): it names the files"
    );
    let mut out = Vec::new();
    for h in hosts.split(',').map(str::trim) {
        let h = h
            .strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .unwrap_or(h);
        ensure!(!h.is_empty(), "--node {spec:?}: an empty host");
        let is_ip = h.parse::<IpAddr>().is_ok();
        ensure!(
            is_ip
                || h.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-')
                }),
            "--node {spec:?}: {h:?} is neither an IP address nor a DNS name (give hosts without ports)"
        );
        if !out.iter().any(|o: &String| o.eq_ignore_ascii_case(h)) {
            out.push(h.to_string());
        }
    }
    Ok(NodeSpec {
        name: name.to_string(),
        hosts: out,
    })
}

pub fn run(cmd: CertsCmd) -> Result<()> {
    match cmd {
        CertsCmd::Init {
            dir,
            nodes,
            days,
            force,
        } => init(&dir, &nodes, days, force),
    }
}

/// What `init` writes: (file name, contents, private).
type Files = Vec<(String, String, bool)>;

fn init(dir: &Path, nodes: &[String], days: u32, force: bool) -> Result<()> {
    let specs = nodes
        .iter()
        .map(|n| parse_node(n))
        .collect::<Result<Vec<_>>>()?;
    for (i, s) in specs.iter().enumerate() {
        ensure!(
            !specs[..i].iter().any(|o| o.name == s.name),
            "--node {}: named twice",
            s.name
        );
    }
    ensure!(days > 0, "--days must be at least 1");
    let files = make(&specs, days)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = std::fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))?;
    // All or nothing: check every file before writing any.
    if !force {
        let existing: Vec<String> = files
            .iter()
            .map(|(name, _, _)| dir.join(name))
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        ensure!(
            existing.is_empty(),
            "refusing to overwrite {} (--force replaces them: a new CA, so every node needs its new files)",
            existing.join(", ")
        );
    }
    for (name, text, private) in &files {
        let path = dir.join(name);
        write(&path, text, *private)?;
        println!(
            "wrote {}{}",
            path.display(),
            if *private {
                " (private key, mode 0600)"
            } else {
                ""
            }
        );
    }
    println!();
    println!(
        "Keep ca.key off the nodes (it signs new certificates). Give each node ca.pem and its own NAME.pem and NAME.key, and add to its configuration:"
    );
    for s in &specs {
        println!();
        println!("# node {} ({})", s.name, s.hosts.join(", "));
        println!(
            "replication_tls_ca_file = {:?}",
            dir.join("ca.pem").display().to_string()
        );
        println!(
            "replication_tls_cert_file = {:?}",
            dir.join(format!("{}.pem", s.name)).display().to_string()
        );
        println!(
            "replication_tls_key_file = {:?}",
            dir.join(format!("{}.key", s.name)).display().to_string()
        );
    }
    println!();
    println!("(or the same as --replication-tls-ca-file, --replication-tls-cert-file, --replication-tls-key-file; hadr clone and hadr rejoin take them too)");
    Ok(())
}

/// The CA and every node's certificate and key, in memory.
fn make(specs: &[NodeSpec], days: u32) -> Result<Files> {
    let now = time::OffsetDateTime::now_utc();
    // A day of slack for clocks that lag the machine that made them.
    let not_before = now - time::Duration::days(1);
    let not_after = now + time::Duration::days(i64::from(days));

    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "hadr cluster CA");
    ca.distinguished_name.push(DnType::OrganizationName, "hadr");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let mut files: Files = vec![
        ("ca.pem".into(), ca_cert.pem(), false),
        ("ca.key".into(), ca_key.serialize_pem(), true),
    ];
    let issuer = Issuer::new(ca, ca_key);
    for s in specs {
        let mut p = CertificateParams::new(s.hosts.clone())
            .with_context(|| format!("node {}: hosts {:?}", s.name, s.hosts))?;
        p.distinguished_name
            .push(DnType::CommonName, s.name.as_str());
        p.distinguished_name.push(DnType::OrganizationName, "hadr");
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.use_authority_key_identifier_extension = true;
        p.not_before = not_before;
        p.not_after = not_after;
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &issuer)?;
        files.push((format!("{}.pem", s.name), cert.pem(), false));
        files.push((format!("{}.key", s.name), key.serialize_pem(), true));
    }
    Ok(files)
}

/// Write `text` to `path` through a temporary file renamed over it; a
/// private file is created with mode 0600, never readable by others even
/// for a moment.
fn write(path: &Path, text: &str, private: bool) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mode = if private { 0o600 } else { 0o644 };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    // The umask may have taken bits away (never added any): set them exactly.
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|()| f.write_all(text.as_bytes()))
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_specs_name_files_and_hosts_without_ports() {
        assert_eq!(
            parse_node("a=10.0.0.1,db1.example,[fd00::1],10.0.0.1").unwrap(),
            NodeSpec {
                name: "a".into(),
                hosts: vec!["10.0.0.1".into(), "db1.example".into(), "fd00::1".into()],
            }
        );
        for bad in [
            "a",
            "=10.0.0.1",
            "../a=10.0.0.1",
            "ca=10.0.0.1",
            "a=",
            "a=10.0.0.1:9433",
            "a=db1.example:9433",
            "a=db one",
            "a=10.0.0.1,,x",
        ] {
            assert!(parse_node(bad).is_err(), "{bad}");
        }
    }
}
