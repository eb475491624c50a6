//! The admin endpoint's credentials (docs/security.md §Admin endpoint),
//! through the real binary: every state-changing request needs the admin
//! token (401 and nothing done without it or with a wrong one), the reads
//! are open unless `admin_require_token_for_reads`, a token file others can
//! read stops the node at start, an admin port off loopback without a token
//! needs `--insecure-admin`, and the `hadr` CLI sends the token from
//! `HADR_ADMIN_TOKEN` or `--admin-token-file` and says clearly when it lacks one.

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
            && said.contains("no or wrong admin token")
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
        text(&out).contains("no or wrong admin token"),
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
        text(&out).contains("no or wrong admin token"),
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
