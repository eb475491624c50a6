//! Mutual TLS on replication links through the real binary, with
//! certificates made by `hadr certs init`: a TLS pair replicates and takes
//! over; a plaintext clone, probe, rewind fetch or standby, a certificate
//! from another CA, a client without a certificate, and a cluster
//! certificate for a host nobody listed are all refused before a single
//! page or record leaves the node (asserted on the bytes received); a key
//! others can read, or half a configuration, stops the start.

mod common;
use common::*;
use hadr_protocol::{Hello, Message, PeerRole, RefuseCode};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A directory of certificates made by `hadr certs init`.
struct Certs {
    tmp: tempfile::TempDir,
    stdout: String,
}

impl Certs {
    /// `hadr certs init --dir TMP --node N …`.
    fn init(nodes: &[&str]) -> Result<Certs> {
        let tmp = tempfile::tempdir()?;
        let out = certs_init(tmp.path(), nodes, false)?;
        Ok(Certs { tmp, stdout: out })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// The flags that give `node` its TLS.
    fn flags(&self, node: &str) -> Vec<String> {
        vec![
            "--replication-tls-ca-file".into(),
            self.path("ca.pem").display().to_string(),
            "--replication-tls-cert-file".into(),
            self.path(&format!("{node}.pem")).display().to_string(),
            "--replication-tls-key-file".into(),
            self.path(&format!("{node}.key")).display().to_string(),
        ]
    }
}

fn certs_init(dir: &Path, nodes: &[&str], force: bool) -> Result<String> {
    let mut args = vec!["certs", "init", "--dir"];
    let d = dir.display().to_string();
    args.push(&d);
    for n in nodes {
        args.extend(["--node", n]);
    }
    if force {
        args.push("--force");
    }
    let out = hadr().run("hadr certs init", &mut hadr().command(&args))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `hadr clone` with extra flags; (success, stdout + stderr).
fn clone_with(from: &str, dir: &Path, extra: &[String]) -> (bool, String) {
    let mut c = hadr().command(&["clone", "--from", from, "--data"]);
    c.arg(dir).args(extra);
    let out = c.output().expect("run hadr clone");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn args(parts: &[&[String]]) -> Vec<String> {
    parts.iter().flat_map(|p| p.iter().cloned()).collect()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A primary on `local` listing `targets`, with TLS flags `tls`.
fn primary(local: &str, targets: &str, tls: &[String]) -> Result<Server> {
    start_with(args(&[
        &hadr_args(local, targets, &[]),
        &strs(&["--role", "primary"]),
        tls,
    ]))
}

/// Every whole frame in `bytes`; an error for a partial or bad one.
fn frames(bytes: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match Message::decode(&bytes[at..]) {
            Ok((m, used)) => {
                out.push(m);
                at += used;
            }
            Err(e) => panic!("undecodable bytes at {at} of {}: {e}", bytes.len()),
        }
    }
    out
}

fn cloner_hello() -> Message {
    Message::Hello(Hello {
        version: hadr_protocol::PROTOCOL_VERSION,
        role: PeerRole::Cloner,
        database_id: String::new(),
        epoch: 0,
        epoch_history: vec![],
        lsn: 0,
        address: String::new(),
    })
}

fn hello_as(role: PeerRole, address: &str) -> Message {
    Message::Hello(Hello {
        version: hadr_protocol::PROTOCOL_VERSION,
        role,
        database_id: String::new(),
        epoch: 1,
        epoch_history: vec![],
        lsn: 0,
        address: address.into(),
    })
}

/// What a stranger sends: a clone request, a rewind fetch, a probe, a standby.
fn requests(standby: &str) -> Vec<(&'static str, Vec<u8>)> {
    let cat = |ms: &[Message]| ms.iter().flat_map(Message::encode).collect::<Vec<u8>>();
    vec![
        ("clone", cat(&[cloner_hello(), Message::CloneRequest])),
        (
            "rewind fetch",
            cat(&[
                cloner_hello(),
                Message::RewindRequest {
                    from_lsn: 0,
                    pages: vec![1, 2],
                },
            ]),
        ),
        ("probe", cat(&[hello_as(PeerRole::Primary, "127.0.0.1:1")])),
        ("standby", cat(&[hello_as(PeerRole::Standby, standby)])),
    ]
}

/// Send `bytes` over plain TCP and read everything the node sends back
/// until it closes.
fn plain_exchange(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn pem_certs(path: &Path) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_file_iter(path)
        .unwrap()
        .collect::<std::result::Result<_, _>>()
        .unwrap()
}

/// A TLS client trusting `ca`, presenting `identity` (cert, key) if any.
fn tls_client(ca: &Path, identity: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in pem_certs(ca) {
        roots.add(c).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match identity {
        Some((cert, key)) => b
            .with_client_auth_cert(
                pem_certs(cert),
                rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    })
}

/// Over TLS: send `bytes`, read every decrypted byte until the node closes
/// (or fails the session); returns them and how the session ended.
async fn tls_exchange(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
    bytes: &[u8],
) -> (Vec<u8>, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut s = match tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
    {
        Ok(s) => s,
        Err(e) => return (Vec::new(), format!("handshake: {e}")),
    };
    let _ = s.write_all(bytes).await;
    let _ = s.flush().await;
    let mut out = Vec::new();
    let end = match tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await {
        Ok(Ok(_)) => "closed".to_string(),
        Ok(Err(e)) => format!("read: {e}"),
        Err(_) => "timed out".to_string(),
    };
    (out, end)
}

/// The standby's last error, as its status shows it.
async fn standby_error(s: &Server) -> Option<String> {
    match s.status().await.ok()?.hadr? {
        HadrView::Standby(v) => v.last_error,
        HadrView::Primary(_) => None,
    }
}

async fn wait_standby_error(s: &Server, needle: &str) -> Result<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let e = standby_error(s).await;
        if let Some(e) = e.as_ref().filter(|e| e.contains(needle)) {
            return Ok(e.clone());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the standby's last error never said {needle:?}: {e:?}\n{}",
            s.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn count(s: &Server) -> Result<i64> {
    Ok(s.client()
        .await?
        .query_one("SELECT count(*) FROM t", &[])
        .await?
        .get(0))
}

async fn wait_count(s: &Server, n: i64) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if count(s).await.ok() == Some(n) {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "{} never showed {n} rows (has {:?})",
            s.admin_addr(),
            count(s).await.ok()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn certs_init_writes_a_ca_and_node_certificates_and_never_overwrites_unasked() -> Result<()> {
    let c = Certs::init(&["a=127.0.0.1,db-a.example", "b=127.0.0.2"])?;
    for (name, mode) in [
        ("ca.pem", 0o644),
        ("ca.key", 0o600),
        ("a.pem", 0o644),
        ("a.key", 0o600),
        ("b.pem", 0o644),
        ("b.key", 0o600),
    ] {
        let meta = std::fs::metadata(c.path(name))?;
        assert_eq!(meta.permissions().mode() & 0o777, mode, "{name}");
    }
    let a_key = c.path("a.key").display().to_string();
    assert!(
        c.stdout
            .contains(&format!("replication_tls_key_file = {a_key:?}")),
        "{}",
        c.stdout
    );
    // A second run refuses, naming what exists, and changes nothing.
    let ca_before = std::fs::read(c.path("ca.pem"))?;
    let again = certs_init(c.tmp.path(), &["a=127.0.0.1"], false).unwrap_err();
    assert!(
        format!("{again:#}").contains("refusing to overwrite"),
        "{again:#}"
    );
    assert_eq!(std::fs::read(c.path("ca.pem"))?, ca_before);
    // --force makes a new CA.
    certs_init(c.tmp.path(), &["a=127.0.0.1"], true)?;
    assert_ne!(std::fs::read(c.path("ca.pem"))?, ca_before);
    // Hosts with ports are refused (they would never match a peer).
    let e = certs_init(c.tmp.path(), &["c=127.0.0.1:9433"], true).unwrap_err();
    assert!(format!("{e:#}").contains("without ports"), "{e:#}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutual_tls_pair_replicates_and_survives_a_graceful_takeover() -> Result<()> {
    let certs = Certs::init(&["a=127.0.0.1", "b=127.0.0.1"])?;
    let (a_local, b_local) = (repl_addr(), repl_addr());
    let a = primary(&a_local, &b_local, &certs.flags("a"))?;
    let tmp = tempfile::tempdir()?;
    let bdir = tmp.path().join("b");
    let (ok, out) = clone_with(&a_local, &bdir, &certs.flags("b"));
    assert!(ok, "clone over TLS: {out}");
    let b = on_dir(
        bdir,
        &args(&[&hadr_args(&b_local, &a_local, &[]), &certs.flags("b")]),
    )?;
    let peer = |st: &Status| st.principal_in(PairState::Peer);
    a.wait_for("PEER over TLS", Duration::from_secs(30), peer)
        .await?;
    assert!(a.log().contains("mutual TLS"), "{}", a.log_tail(30));
    a.client()
        .await?
        .batch_execute(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
             WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < 500)
             INSERT INTO t SELECT i, hex(randomblob(64)) FROM s;",
        )
        .await?;
    wait_count(&b, 500).await?;
    verify_nodes(a.admin, b.admin)?;
    // The standby's port refuses a plaintext probe just the same.
    let probe = hello_as(PeerRole::Primary, "127.0.0.1:1").encode();
    let msgs = frames(&plain_exchange(&b_local, &probe));
    assert!(
        matches!(&msgs[..], [Message::Refuse(r)] if r.code == RefuseCode::TlsRequired),
        "{msgs:?}"
    );

    // B takes over; A hands over and follows it, still over TLS.
    takeover_on(&b)?;
    b.wait_for("B primary with A in PEER", Duration::from_secs(30), |st| {
        st.role == NodeRole::Primary && st.principal_in(PairState::Peer)
    })
    .await?;
    b.client()
        .await?
        .batch_execute("INSERT INTO t SELECT id + 500, v FROM t WHERE id <= 100")
        .await?;
    wait_count(&a, 600).await?;
    verify_nodes(a.admin, b.admin)?;
    Ok(())
}

/// A diverged old primary rewinds itself over TLS (its rewind fetch is
/// authenticated like any link) and follows the new primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diverged_old_primary_rewinds_over_tls_and_follows() -> Result<()> {
    let certs = Certs::init(&["a=127.0.0.1", "b=127.0.0.1"])?;
    let (a_local, b_local) = (repl_addr(), repl_addr());
    let async_mode = strs(&["--hadr-syncmode", "ASYNC"]);
    let mut a = primary(&a_local, &b_local, &args(&[&certs.flags("a"), &async_mode]))?;
    let tmp = tempfile::tempdir()?;
    let bdir = tmp.path().join("b");
    let (ok, out) = clone_with(&a_local, &bdir, &certs.flags("b"));
    assert!(ok, "{out}");
    let mut b = on_dir(
        bdir,
        &args(&[
            &hadr_args(&b_local, &a_local, &[]),
            &certs.flags("b"),
            &async_mode,
        ]),
    )?;
    a.wait_for("A with B caught up", Duration::from_secs(30), |st| {
        st.principal().is_some_and(|s| s.hadr_log_gap_bytes == 0)
            && st.principal_in(PairState::Peer)
    })
    .await?;
    a.client()
        .await?
        .batch_execute(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
             WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < 1000)
             INSERT INTO t SELECT i, 'base' FROM s;",
        )
        .await?;
    wait_count(&b, 1000).await?;
    // Records B never gets; then A dies and B is forced to take over.
    b.kill9();
    a.client()
        .await?
        .batch_execute("UPDATE t SET v = 'lost' WHERE id % 7 = 0")
        .await?;
    a.kill9();
    b.spawn()?;
    let out = hadr()
        .command(&[
            "takeover",
            "--force",
            "--timeout",
            "30s",
            "--node",
            &b.admin_addr(),
        ])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    b.wait_for(
        "B primary",
        Duration::from_secs(30),
        Status::is_writable_primary,
    )
    .await?;
    b.client()
        .await?
        .batch_execute("UPDATE t SET v = 'new' WHERE id % 5 = 0")
        .await?;
    // A comes back, finds itself superseded, rewinds over TLS, follows.
    a.spawn()?;
    b.wait_for("A following B in PEER", Duration::from_secs(60), |st| {
        st.principal_in(PairState::Peer)
    })
    .await?;
    assert!(a.log().contains("rewind complete"), "{}", a.log_tail(40));
    verify_nodes(a.admin, b.admin)?;
    let lost: i64 = a
        .client()
        .await?
        .query_one("SELECT count(*) FROM t WHERE v = 'lost'", &[])
        .await?
        .get(0);
    assert_eq!(lost, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_clone_probe_rewind_or_standby_gets_the_refusal_and_nothing_else() -> Result<()>
{
    let certs = Certs::init(&["a=127.0.0.1", "b=127.0.0.1"])?;
    let (a_local, b_local) = (repl_addr(), repl_addr());
    let a = primary(&a_local, &b_local, &certs.flags("a"))?;
    a.client()
        .await?
        .batch_execute("CREATE TABLE t(v TEXT); INSERT INTO t VALUES ('secret')")
        .await?;
    for (what, bytes) in requests(&b_local) {
        let got = plain_exchange(&a_local, &bytes);
        let msgs = frames(&got);
        assert_eq!(msgs.len(), 1, "{what}: {msgs:?}");
        let Message::Refuse(r) = &msgs[0] else {
            panic!("{what}: {msgs:?}");
        };
        assert_eq!(r.code, RefuseCode::TlsRequired, "{what}");
        assert!(
            r.reason.contains("requires mutual TLS"),
            "{what}: {}",
            r.reason
        );
        assert!(r.reason.contains("hadr certs init"), "{what}: {}", r.reason);
        // Nothing but that one frame.
        assert_eq!(got.len(), msgs[0].encode().len(), "{what}");
    }
    // `hadr clone` without credentials: a clear message, no directory.
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("stolen");
    let (ok, out) = clone_with(&a_local, &dir, &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("requires mutual TLS"), "{out}");
    assert!(!dir.join("data.db").exists() && !dir.exists(), "{out}");
    assert!(a.log().contains("plaintext peer was refused"));

    // Control: the same bytes at a node without TLS get the database.
    let (p_local, s_local) = (repl_addr(), repl_addr());
    let plain = primary(&p_local, &s_local, &[])?;
    plain
        .client()
        .await?
        .batch_execute("CREATE TABLE t(v TEXT); INSERT INTO t VALUES ('secret')")
        .await?;
    let (_, clone) = requests(&s_local).remove(0);
    let got = plain_exchange(&p_local, &clone);
    let msgs = frames(&got);
    assert!(
        msgs.iter().any(|m| matches!(m, Message::ClonePages { .. })),
        "a plaintext primary serves a plaintext clone: {} messages",
        msgs.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_ca_or_no_certificate_fails_the_handshake_and_gets_no_data() -> Result<()> {
    let certs = Certs::init(&["a=127.0.0.1", "b=127.0.0.1"])?;
    let other = Certs::init(&["b=127.0.0.1"])?;
    let (a_local, b_local) = (repl_addr(), repl_addr());
    let a = primary(&a_local, &b_local, &certs.flags("a"))?;
    let ca = certs.path("ca.pem");
    // The stranger trusts the real CA, so only the node's check of its
    // certificate stands between it and the data.
    let forged = tls_client(&ca, Some((&other.path("b.pem"), &other.path("b.key"))));
    let anonymous = tls_client(&ca, None);
    for (who, config) in [("another CA", forged), ("no certificate", anonymous)] {
        for (what, bytes) in requests(&b_local) {
            let (got, end) = tls_exchange(&a_local, config.clone(), &bytes).await;
            assert!(
                got.is_empty(),
                "{who}, {what}: received {} bytes",
                got.len()
            );
            assert!(end != "timed out", "{who}, {what}: {end}");
        }
    }
    // Control: the cluster's own certificate for b gets a Hello back.
    let real = tls_client(&ca, Some((&certs.path("b.pem"), &certs.path("b.key"))));
    let (got, _) = tls_exchange(&a_local, real, &cloner_hello().encode()).await;
    assert!(
        matches!(frames(&got).first(), Some(Message::Hello(_))),
        "{got:?}"
    );
    // `hadr clone` with another CA's files: a clear message, no directory.
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("forged");
    let (ok, out) = clone_with(&a_local, &dir, &other.flags("b"));
    assert!(!ok, "{out}");
    assert!(out.contains("TLS"), "{out}");
    assert!(!dir.exists(), "{out}");
    assert!(
        a.log().contains("TLS handshake failed"),
        "{}",
        a.log_tail(20)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_certificate_for_a_host_nobody_listed_is_refused() -> Result<()> {
    let certs = Certs::init(&["a=127.0.0.1", "b=127.0.0.1", "stranger=10.9.9.9"])?;
    let (a_local, b_local) = (repl_addr(), repl_addr());
    let a = primary(&a_local, &b_local, &certs.flags("a"))?;
    let stranger = tls_client(
        &certs.path("ca.pem"),
        Some((&certs.path("stranger.pem"), &certs.path("stranger.key"))),
    );
    for (what, bytes) in requests(&b_local) {
        let (got, end) = tls_exchange(&a_local, stranger.clone(), &bytes).await;
        let msgs = frames(&got);
        assert_eq!(msgs.len(), 1, "{what}: {msgs:?} ({end})");
        let Message::Refuse(r) = &msgs[0] else {
            panic!("{what}: {msgs:?}");
        };
        assert_eq!(r.code, RefuseCode::NotListed, "{what}: {}", r.reason);
        assert!(r.reason.contains(&b_local), "{what}: {}", r.reason);
    }
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("stranger");
    let (ok, out) = clone_with(&a_local, &dir, &certs.flags("stranger"));
    assert!(!ok, "{out}");
    assert!(out.contains("hadr_target_list"), "{out}");
    assert!(!dir.exists(), "{out}");
    assert!(a.log().contains("names no host of hadr_target_list"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_and_tls_nodes_do_not_mix_and_say_why() -> Result<()> {
    let certs = Certs::init(&["a=127.0.0.1", "b=127.0.0.1"])?;
    let (a_local, b_local) = (repl_addr(), repl_addr());
    let mut a = primary(&a_local, &b_local, &certs.flags("a"))?;
    let tmp = tempfile::tempdir()?;
    let bdir = tmp.path().join("b");
    let (ok, out) = clone_with(&a_local, &bdir, &certs.flags("b"));
    assert!(ok, "{out}");
    // A standby without TLS cannot follow the TLS primary, and says why.
    let mut b = on_dir(bdir, &hadr_args(&b_local, &a_local, &[]))?;
    let e = wait_standby_error(&b, "requires mutual TLS").await?;
    assert!(e.contains("hadr certs init"), "{e}");
    let st = a.status().await?;
    assert!(!st.principal_in(PairState::Peer), "{}", brief(&st));
    // With its TLS it does (the control).
    b.stop()?;
    b.extra = args(&[&hadr_args(&b_local, &a_local, &[]), &certs.flags("b")]);
    b.spawn()?;
    a.wait_for("PEER over TLS", Duration::from_secs(30), |st| {
        st.principal_in(PairState::Peer)
    })
    .await?;
    // A TLS standby cannot follow a primary without TLS either.
    a.stop()?;
    a.extra = args(&[
        &hadr_args(&a_local, &b_local, &[]),
        &strs(&["--role", "primary"]),
    ]);
    a.spawn()?;
    let e = wait_standby_error(&b, "TLS handshake with").await?;
    assert!(e.contains("replication_tls_*"), "{e}");
    assert!(
        a.log().contains("has no replication_tls_* settings"),
        "{}",
        a.log_tail(20)
    );
    Ok(())
}

#[test]
fn a_replication_key_others_can_read_or_half_a_configuration_stops_the_start() -> Result<()> {
    let certs = Certs::init(&["a=127.0.0.1"])?;
    let key = certs.path("a.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640))?;
    let (a_local, b_local) = (repl_addr(), repl_addr());
    let flags = args(&[
        &hadr_args(&a_local, &b_local, &[]),
        &strs(&["--role", "primary"]),
        &certs.flags("a"),
    ]);
    let e = match start_with(flags.clone()) {
        Ok(_) => panic!("started with a key its group can read"),
        Err(e) => format!("{e:#}"),
    };
    assert!(e.contains(&key.display().to_string()), "{e}");
    assert!(e.contains("chmod 600"), "{e}");
    // Its owner alone: it starts (the control).
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    drop(start_with(flags)?);
    // Two of the three files: refused, naming the missing one.
    let half = args(&[
        &hadr_args(&a_local, &b_local, &[]),
        &strs(&["--role", "primary"]),
        &certs.flags("a")[..4],
    ]);
    let e = match start_with(half) {
        Ok(_) => panic!("started with two of the three TLS files"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        e.contains("go together") && e.contains("replication_tls_key_file"),
        "{e}"
    );
    // `hadr clone` checks the same before it writes anything.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644))?;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("c");
    let (ok, out) = clone_with(&a_local, &dir, &certs.flags("a"));
    assert!(!ok && out.contains("chmod 600"), "{out}");
    assert!(!dir.exists());
    Ok(())
}
