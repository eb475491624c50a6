//! The admin endpoint's credentials (docs/security.md §Admin endpoint),
//! through the real binary: every state-changing request needs the admin
//! token (401 and nothing done without it or with a wrong one), the reads
//! are open unless `admin_require_token_for_reads`, a token file others can
//! read stops the node at start, an admin port off loopback without a token
//! needs `--insecure-admin`, and the `hadr` CLI sends the token from
//! `HADR_ADMIN_TOKEN` or `--admin-token-file` and says clearly when it lacks one.
//! Over HTTPS (`admin_tls_*`), a client certificate the admin CA signed is
//! the credential instead, and a stranger's certificate gets no answer at all.

mod common;
use common::*;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use hadr_secrets::SecretText;

/// One HTTP/1.1 request over a fresh connection: (status, head, body).
fn http(addr: &str, method: &str, path: &str, token: Option<&str>) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("admin port reachable");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// A 401 as the admin API sends it: JSON body, a Bearer challenge.
fn assert_unauthorized((status, head, body): &(u16, String, String), what: &str) {
    assert_eq!(*status, 401, "{what}: {head}\n{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{what}: {head}"
    );
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: {e}: {body}"));
    assert_eq!(v["error"], "unauthorized", "{what}: {body}");
    assert!(
        v["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    assert!(
        !body.contains(admin_token()),
        "{what}: the token is echoed: {body}"
    );
}

/// `hadr ARGS` without any admin token in its environment.
fn hadr_without_token(args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args)
        .env_remove(ADMIN_TOKEN_ENV)
        .env_remove("HADR_ADMIN_TOKEN_FILE")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    c
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Role, epoch and writability: what a refused request must leave alone.
async fn state(s: &Server) -> Result<(NodeRole, u64, bool)> {
    let st = s.status().await?;
    Ok((st.role, st.epoch, st.writable))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_and_fence_need_the_token_and_nothing_happens_without_it() -> Result<()> {
    let p = peer_pair(&[]).await?;
    let (a, b) = (&p.a, &p.b);
    let before = (state(a).await?, state(b).await?);
    assert_eq!(before.0 .0, NodeRole::Primary);
    assert_eq!(before.1 .0, NodeRole::Standby);
    let epoch = before.0 .1;
    let (a_addr, b_addr) = (a.admin_addr(), b.admin_addr());

    // Raw requests: none, a wrong token, another scheme.
    let fence = format!("/fence?epoch={}", epoch + 5);
    for (addr, method, path) in [
        (&b_addr, "POST", "/takeover"),
        (&b_addr, "POST", "/takeover?force=true"),
        (&a_addr, "POST", fence.as_str()),
        (&a_addr, "POST", "/failover/pause?paused=true"),
        (&a_addr, "POST", "/resources/x/restart"),
        (&a_addr, "POST", "/no/such/path"),
        (&a_addr, "PUT", "/status"),
        (&a_addr, "DELETE", "/takeover"),
    ] {
        let what = format!("{method} {path}");
        assert_unauthorized(&http(addr, method, path, None), &what);
        assert_unauthorized(
            &http(addr, method, path, Some("not-the-token-0123456789")),
            &format!("{what} with a wrong token"),
        );
    }
    // The right secret under another scheme is no Bearer token.
    let mut s = std::net::TcpStream::connect(&a_addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "POST {fence} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {}\r\nConnection: close\r\n\r\n",
        admin_token()
    )?;
    let mut got = String::new();
    let _ = s.read_to_string(&mut got);
    assert!(got.starts_with("HTTP/1.1 401"), "{got}");

    // The typed client without a token, and with a wrong one.
    let wrong = SecretText::new("wrong-token-0123456789abcdef");
    for client in [
        b.admin().with_token(None),
        b.admin().with_token(Some(wrong.clone())),
    ] {
        let e = client.takeover(false, false).await.unwrap_err();
        assert!(e.is_unauthorized(), "{e}");
        assert_eq!(e.http_status(), Some(401));
        let e = client.takeover(true, false).await.unwrap_err();
        assert!(e.is_unauthorized(), "{e}");
    }
    let e = a
        .admin()
        .with_token(None)
        .fence(epoch + 5)
        .await
        .unwrap_err();
    assert!(e.is_unauthorized(), "{e}");

    // The CLI without a token: a clear error, non-zero exit.
    let out = hadr_without_token(&["takeover", "--timeout", "10s", "--node", &b_addr]).output()?;
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains(&format!("the node at {b_addr} refused"))
            && said.contains("no or wrong admin credential")
            && said.contains("--admin-token-file")
            && said.contains("HADR_ADMIN_TOKEN"),
        "{said}"
    );
    // …and with a wrong one in the environment.
    let out = hadr_without_token(&["takeover", "--timeout", "10s", "--node", &b_addr])
        .env(ADMIN_TOKEN_ENV, "wrong-token-0123456789abcdef")
        .output()?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("no or wrong admin credential"),
        "{}",
        text(&out)
    );

    // Nothing happened: same roles, same epoch, the primary still writes
    // and the standby is still in PEER.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!((state(a).await?, state(b).await?), before);
    assert!(a.status().await?.principal_in(PairState::Peer));
    let c = a.client().await?;
    c.batch_execute("CREATE TABLE still_writable(x INTEGER)")
        .await?;

    // With the token (HADR_ADMIN_TOKEN): the takeover happens.
    let out = hadr_without_token(&["takeover", "--timeout", "30s", "--node", &b_addr])
        .env(ADMIN_TOKEN_ENV, admin_token())
        .output()?;
    assert!(out.status.success(), "{}", text(&out));
    let st = b
        .wait_for("primary", Duration::from_secs(30), |s| {
            s.is_writable_primary()
        })
        .await?;
    assert!(st.epoch > epoch);
    a.wait_for("a follows b", Duration::from_secs(60), |s| s.follows())
        .await?;

    // And a fence with the token fences the new primary.
    let f = b.admin().fence(st.epoch + 5).await?;
    assert!(f.fenced, "{f:?}");

    // The log says who, what and from where, and never the token.
    let log = b.log();
    let line = log
        .lines()
        .find(|l| {
            l.contains("admin request done")
                && l.contains("POST /takeover")
                && l.contains("token ok")
        })
        .unwrap_or_else(|| panic!("no log line for the takeover:\n{log}"));
    assert!(
        line.contains("peer=127.0.0.1:") && line.contains("status=200"),
        "{line}"
    );
    assert!(
        log.contains("admin request refused")
            && log.contains("the admin token sent is not this node's"),
        "{log}"
    );
    assert!(!log.contains(admin_token()), "the token is in the log");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_open_by_default_and_closed_when_asked() -> Result<()> {
    let open = start(&[])?;
    let addr = open.admin_addr();
    for path in ["/status", "/metrics", "/primary", "/health"] {
        let (status, head, _) = http(&addr, "GET", path, None);
        assert_eq!(status, 200, "GET {path}: {head}");
    }
    assert_unauthorized(
        &http(&addr, "POST", "/failover/pause?paused=true", None),
        "pause",
    );
    // The CLI reads without a token.
    let out = hadr_without_token(&["status", "--node", &addr]).output()?;
    assert!(out.status.success(), "{}", text(&out));

    let closed = start(&["--admin-require-token-for-reads"])?;
    let addr = closed.admin_addr();
    for path in [
        "/status",
        "/metrics",
        "/primary",
        "/standby",
        "/health",
        "/files/verify",
    ] {
        assert_unauthorized(&http(&addr, "GET", path, None), path);
        assert_unauthorized(
            &http(&addr, "GET", path, Some("wrong-token-0123456789")),
            path,
        );
    }
    for path in ["/status", "/metrics", "/primary", "/health"] {
        let (status, head, _) = http(&addr, "GET", path, Some(admin_token()));
        assert_eq!(status, 200, "GET {path} with the token: {head}");
    }
    // The kit's client sends the token; one without cannot read.
    assert_eq!(closed.status().await?.role, NodeRole::Standard);
    let e = closed.admin().with_token(None).status().await.unwrap_err();
    assert!(e.is_unauthorized(), "{e}");
    let out = hadr_without_token(&["status", "--node", &addr]).output()?;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no or wrong admin credential"),
        "{}",
        text(&out)
    );
    // --admin-token-file, the same file the node reads.
    let file = closed
        .admin_token_file()
        .expect("the kit gives it a token file");
    let out = hadr_without_token(&["status", "--node", &addr])
        .arg("--admin-token-file")
        .arg(file)
        .output()?;
    assert!(out.status.success(), "{}", text(&out));
    Ok(())
}

/// A `hadr server` started by hand; killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run `hadr server ARGS` on a new data directory; its exit status and
/// stderr if it exits within 20 s, None (and it keeps running, in `keep`) if not.
fn server_exit(dir: &Path, args: &[&str], keep: &mut Option<Proc>) -> Option<(bool, String)> {
    let log = dir.join("server.err");
    let mut c = hadr_without_token(&["server", "--data"]);
    c.arg(dir.join("data"))
        .args(["--listen", &local(free_port())])
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut p = Proc(c.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(st) = p.0.try_wait().unwrap() {
            return Some((st.success(), std::fs::read_to_string(&log).unwrap()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    *keep = Some(p);
    None
}

#[test]
fn a_token_file_others_can_read_stops_the_server_naming_the_file_and_the_fix() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    init(&tmp.path().join("data"))?;
    let token = tmp.path().join("admin-token");
    std::fs::write(&token, format!("{}\n", admin_token()))?;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o640))?;
    let mut running = None;
    let admin = local(free_port());
    let exit = server_exit(
        tmp.path(),
        &[
            "--admin",
            &admin,
            "--admin-token-file",
            token.to_str().unwrap(),
        ],
        &mut running,
    );
    let (ok, err) = exit.expect("the server kept running with a group-readable token file");
    assert!(!ok, "{err}");
    assert!(err.contains(token.to_str().unwrap()), "{err}");
    assert!(err.contains("chmod 600"), "{err}");
    assert!(
        !err.contains(admin_token()),
        "the token is in the message: {err}"
    );
    // Nothing listened meanwhile.
    assert!(std::net::TcpStream::connect(&admin).is_err());

    // The CLI refuses the same file.
    let out = hadr_without_token(&["status", "--node", &admin])
        .arg("--admin-token-file")
        .arg(&token)
        .output()?;
    assert!(!out.status.success());
    assert!(text(&out).contains("chmod 600"), "{}", text(&out));

    // Owner-only, it is taken.
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600))?;
    let exit = server_exit(
        tmp.path(),
        &[
            "--admin",
            &admin,
            "--admin-token-file",
            token.to_str().unwrap(),
        ],
        &mut running,
    );
    assert!(exit.is_none(), "it did not start: {exit:?}");
    Ok(())
}

#[test]
fn an_admin_port_off_loopback_without_a_token_needs_insecure_admin() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    init(&tmp.path().join("data"))?;
    let port = free_port();
    let wildcard = format!("0.0.0.0:{port}");
    let mut running = None;
    let (ok, err) = server_exit(tmp.path(), &["--admin", &wildcard], &mut running)
        .expect("a node with an exposed admin port and no token started");
    assert!(!ok, "{err}");
    for want in [
        "admin_token_file",
        "--admin-token-file",
        "--insecure-admin",
        "127.0.0.1",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }

    // Told explicitly, it starts, and anyone may steer it.
    let exit = server_exit(
        tmp.path(),
        &["--admin", &wildcard, "--insecure-admin"],
        &mut running,
    );
    assert!(exit.is_none(), "it did not start: {exit:?}");
    let addr = local(port);
    let deadline = Instant::now() + Duration::from_secs(30);
    while http(&addr, "GET", "/health", None).0 != 200 {
        assert!(Instant::now() < deadline, "no admin answer");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Not 401: it ran (and answers that no failover is configured).
    let (status, _, body) = http(&addr, "POST", "/failover/pause?paused=true", None);
    assert_eq!(status, 409, "{body}");
    let err = std::fs::read_to_string(tmp.path().join("server.err"))?;
    assert!(err.contains("insecure_admin is set"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_a_loopback_port_takes_changes_from_loopback() -> Result<()> {
    let hadr = hadr();
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("data");
    hadr.init(&dir)?;
    let mut s = Server::new(&hadr, dir, vec![])
        .without_admin_token()
        .keep(tmp);
    s.spawn()?;
    let before = state(&s).await?;
    // No token configured: loopback is the credential.
    let (status, _, body) = http(&s.admin_addr(), "POST", "/failover/pause?paused=true", None);
    assert_eq!(status, 409, "{body}");
    let f = s.admin().fence(before.1).await?;
    assert!(!f.fenced, "an epoch it already has fences nothing: {f:?}");
    assert_eq!(state(&s).await?, before);
    let log = s.log();
    assert!(
        log.lines().any(|l| l.contains("admin request done")
            && l.contains("anonymous-loopback")
            && l.contains("POST /fence")
            && l.contains("peer=127.0.0.1:")),
        "{log}"
    );
    Ok(())
}

/// An HTTPS admin port whose admin CA makes client certificates the
/// credential, on a pair without an admin token: plain HTTP is told to use
/// HTTPS; reads need only the CA; a takeover without a certificate gets 401
/// and nothing happens; a certificate from another CA does not get past
/// the handshake, not even to read; `hadr takeover --admin-cert` works, and
/// the log names the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_admin_port_takes_client_certificates_as_the_credential() -> Result<()> {
    use hadr_admin_api::tls::{client_config, AdminTlsFiles};
    use hadr_admin_api::AdminClient;
    use hadr_testkit::certs::{write, Ca};

    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let ca = Ca::new("hadr admin test CA");
    let stranger = Ca::new("a stranger's CA");
    let (node, node_key) = ca.leaf("node", &["127.0.0.1", "localhost"], false);
    let (ops, ops_key) = ca.leaf("ops", &[], true);
    let (mallory, mallory_key) = stranger.leaf("ops", &[], true);
    let ca_file = write(&d.join("ca.pem"), &ca.cert.pem(), 0o644);
    let node_cert = write(&d.join("node.pem"), &node.pem(), 0o644);
    let node_key = write(&d.join("node.key"), &node_key.serialize_pem(), 0o600);
    let ops_cert = write(&d.join("ops.pem"), &ops.pem(), 0o644);
    let ops_key = write(&d.join("ops.key"), &ops_key.serialize_pem(), 0o600);
    let mallory_cert = write(&d.join("mallory.pem"), &mallory.pem(), 0o644);
    let mallory_key = write(&d.join("mallory.key"), &mallory_key.serialize_pem(), 0o600);
    let tls = |client: Option<(&Path, &Path)>| {
        client_config(&AdminTlsFiles {
            ca: ca_file.clone(),
            client: client.map(|(c, k)| (c.to_path_buf(), k.to_path_buf())),
        })
    };
    let (ca_only, as_ops, as_mallory) = (
        tls(None)?,
        tls(Some((&ops_cert, &ops_key)))?,
        tls(Some((&mallory_cert, &mallory_key)))?,
    );
    let flags: Vec<String> = [
        "--admin-tls-cert-file",
        node_cert.to_str().unwrap(),
        "--admin-tls-key-file",
        node_key.to_str().unwrap(),
        "--admin-tls-client-ca-file",
        ca_file.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();

    // A pair without an admin token; the test kit reads with `ops`.
    let hadr = hadr();
    let (a_repl, b_repl) = (repl_addr(), repl_addr());
    let mut a_args = hadr_args(&a_repl, &b_repl, &["--role", "primary"]);
    a_args.extend(flags.clone());
    hadr.init(&d.join("a"))?;
    let mut a = Server::new(&hadr, d.join("a"), a_args)
        .without_admin_token()
        .with_admin_tls(as_ops.clone())?;
    a.spawn()?;
    clone_to(&a_repl, &d.join("b"))?;
    let mut b_args = hadr_args(&b_repl, &a_repl, &[]);
    b_args.extend(flags);
    let mut b = Server::new(&hadr, d.join("b"), b_args)
        .without_admin_token()
        .with_admin_tls(as_ops.clone())?;
    b.spawn()?;
    a.wait_for("PEER", Duration::from_secs(30), |st| {
        st.principal_in(PairState::Peer)
    })
    .await?;
    let before = (state(&a).await?, state(&b).await?);
    let b_addr = b.admin_addr();

    // Plain HTTP is answered, in plain HTTP, with what to do instead.
    let (status, head, body) = http(&b_addr, "POST", "/takeover", None);
    assert_eq!(status, 400, "{head}\n{body}");
    assert!(body.contains("HTTPS only"), "{body}");

    // Reads need only the CA (here from the environment).
    let out = hadr_without_token(&["status", "--node", &b_addr])
        .env("HADR_ADMIN_CA", &ca_file)
        .output()?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("standby"), "{}", text(&out));

    // No certificate, over loopback: 401, from the typed client and the CLI.
    let anonymous = AdminClient::new(b_addr.clone()).with_tls(ca_only)?;
    assert!(anonymous.status().await.is_ok());
    let e = anonymous.takeover(false, false).await.unwrap_err();
    assert!(e.is_unauthorized(), "{e}");
    let out = hadr_without_token(&["takeover", "--timeout", "10s", "--node", &b_addr])
        .env("HADR_ADMIN_CA", &ca_file)
        .output()?;
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("no or wrong admin credential")
            && said.contains("needs an admin client certificate")
            && said.contains("--admin-cert"),
        "{said}"
    );

    // A stranger's certificate: no answer at all, not even to a read.
    let stranger = AdminClient::new(b_addr.clone()).with_tls(as_mallory)?;
    for e in [
        stranger.status().await.map(|_| ()).unwrap_err(),
        stranger
            .takeover(true, false)
            .await
            .map(|_| ())
            .unwrap_err(),
    ] {
        assert!(!e.is_unauthorized() && e.http_status().is_none(), "{e}");
    }
    // A certificate without its key is a usage error.
    let out = hadr_without_token(&["status", "--node", &b_addr, "--admin-cert"])
        .arg(&ops_cert)
        .env("HADR_ADMIN_CA", &ca_file)
        .output()?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("go together"), "{}", text(&out));

    // Nothing happened.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!((state(&a).await?, state(&b).await?), before);

    // With `ops`'s certificate, the CLI's takeover happens.
    let out = hadr_without_token(&["takeover", "--timeout", "30s", "--node", &b_addr])
        .args(["--admin-ca", ca_file.to_str().unwrap()])
        .args(["--admin-cert", ops_cert.to_str().unwrap()])
        .args(["--admin-key", ops_key.to_str().unwrap()])
        .output()?;
    assert!(out.status.success(), "{}", text(&out));
    let st = b
        .wait_for("primary", Duration::from_secs(30), |s| {
            s.is_writable_primary()
        })
        .await?;
    assert!(st.epoch > before.1 .1, "{st:?}");
    a.wait_for("a follows b", Duration::from_secs(60), |s| s.follows())
        .await?;

    let log = b.log();
    let line = log
        .lines()
        .find(|l| l.contains("admin request done") && l.contains("POST /takeover"))
        .unwrap_or_else(|| panic!("no log line for the takeover:\n{log}"));
    assert!(
        line.contains("client certificate \"ops\"") && line.contains("status=200"),
        "{line}"
    );
    assert!(log.contains("admin TLS handshake failed"), "{log}");
    assert!(log.contains("plain HTTP on the admin port"), "{log}");
    Ok(())
}

/// SIGHUP reads the admin port's certificate again, as the client port's:
/// a client that trusts only the new CA gets in after it and not before,
/// the old CA no longer verifies, and a broken file leaves the new
/// certificate in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_admin_certificate() -> Result<()> {
    use hadr_admin_api::tls::{client_config, AdminTlsFiles};
    use hadr_admin_api::AdminClient;
    use hadr_testkit::certs::{write, Ca};

    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let issue = |ca: &Ca, name: &str| -> Result<_> {
        let (cert, key) = ca.leaf("node", &["127.0.0.1"], false);
        let ca_file = write(&d.join(format!("{name}-ca.pem")), &ca.cert.pem(), 0o644);
        write(&d.join("node.pem"), &cert.pem(), 0o644);
        write(&d.join("node.key"), &key.serialize_pem(), 0o600);
        Ok(client_config(&AdminTlsFiles {
            ca: ca_file,
            client: None,
        })?)
    };
    let old = issue(&Ca::new("admin CA before"), "old")?;
    // The kit's own admin client speaks plain HTTP: the start is judged
    // by the PostgreSQL port, and this test reads over HTTPS itself.
    let s = start_with(
        [
            "--admin-tls-cert-file",
            d.join("node.pem").to_str().unwrap(),
            "--admin-tls-key-file",
            d.join("node.key").to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec(),
    )?;
    let via = |tls| AdminClient::new(s.admin_addr()).with_tls(tls);
    via(old.clone())?.status().await?;

    let new = issue(&Ca::new("admin CA after"), "new")?;
    assert!(
        via(new.clone())?.status().await.is_err(),
        "read before SIGHUP"
    );
    s.sighup()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.log().matches("TLS certificate and key reloaded").count() < 1 {
        assert!(std::time::Instant::now() < deadline, "{}", s.log_tail(20));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        s.log().contains("port=\"admin\"") || s.log().contains("port=admin"),
        "{}",
        s.log_tail(20)
    );
    via(new.clone())?.status().await?;
    assert!(
        via(old)?.status().await.is_err(),
        "the old CA still verifies"
    );

    write(&d.join("node.pem"), "not a certificate\n", 0o644);
    s.sighup()?;
    while !s.log().contains("TLS files not reloaded") {
        assert!(std::time::Instant::now() < deadline, "{}", s.log_tail(20));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    via(new)?.status().await?;
    Ok(())
}
