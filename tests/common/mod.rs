//! The test kit (crates/hadr-testkit) bound to the `hadr` binary under
//! test, plus what only these tests need (psql, raw protocol bytes).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub use hadr_testkit::*;

/// Path of the binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hadr"))
}

/// The binary under test.
pub fn hadr() -> Hadr {
    Hadr::new(bin())
}

/// A `hadr` command carrying the kit's admin token (HADR_ADMIN_TOKEN), for
/// the commands that steer the kit's servers (takeover, resource, cluster).
pub fn admin_cmd() -> Command {
    hadr().command(&[])
}

/// `hadr init` a temporary directory and start a server on it.
pub fn start(extra: &[&str]) -> Result<Server> {
    hadr().start(extra)
}

/// [`start`] with owned flags.
pub fn start_with(extra: Vec<String>) -> Result<Server> {
    hadr().start_with(extra)
}

/// Start a server on an existing data directory (e.g. made by `hadr clone`).
pub fn on_dir(dir: PathBuf, extra: &[String]) -> Result<Server> {
    hadr().on_dir(dir, extra)
}

/// `hadr init --data dir`.
pub fn init(dir: &Path) -> Result<()> {
    hadr().init(dir)
}

/// `hadr clone --from FROM --data DIR`.
pub fn clone_to(from: &str, dir: &Path) -> Result<()> {
    hadr().clone_to(from, dir).map(|_| ())
}

/// `hadr verify --node A --node B` on two local admin ports: identical.
pub fn verify_nodes(admin_a: u16, admin_b: u16) -> Result<()> {
    hadr().verify_nodes(&local(admin_a), &local(admin_b))
}

/// Replication flags for a node: its replication address, its peers, and a
/// 1 s hadr_timeout so that tests notice losses quickly.
pub fn hadr_args(local: &str, targets: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "--hadr-local",
        local,
        "--hadr-target-list",
        targets,
        "--hadr-timeout",
        "1s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// A new replication address on loopback.
pub fn repl_addr() -> String {
    local(free_port())
}

/// Run psql with `sql` on stdin; returns (success, stdout, stderr).
pub fn psql(conninfo: &str, args: &[&str], sql: &str) -> (bool, String, String) {
    let mut child = Command::new("psql")
        .arg(conninfo)
        .args(["-X", "-q", "-v", "VERBOSITY=verbose"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql must be installed (apt-get install postgresql-client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(sql.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Open the database file of a stopped node and run `PRAGMA integrity_check`.
pub fn integrity_check(dir: &Path) -> String {
    let c = rusqlite::Connection::open(dir.join("data.db")).unwrap();
    c.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

/// A v3 StartupMessage for user x, database x.
pub fn startup_bytes() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196608i32.to_be_bytes());
    for (k, v) in [("user", "x"), ("database", "x")] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut m = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    m.extend(body);
    m
}

/// Open a raw connection past startup; returns the stream.
pub fn raw_session(port: u16) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&startup_bytes()).unwrap();
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    // Read until ReadyForQuery ('Z').
    while !got
        .windows(6)
        .any(|w| w[0] == b'Z' && w[1..5] == 5i32.to_be_bytes())
    {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "server closed during startup");
        got.extend_from_slice(&buf[..n]);
    }
    s
}

/// Everything the server sends until it closes.
pub fn read_all(mut s: std::net::TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// The SQLSTATE of the first ErrorResponse in `bytes`.
pub fn sqlstate_of(bytes: &[u8]) -> Option<String> {
    let i = bytes.iter().position(|&b| b == b'E')?;
    let body = &bytes[i + 5..];
    let c = body.windows(1).position(|w| w[0] == b'C')?;
    Some(String::from_utf8_lossy(&body[c + 1..c + 6]).into_owned())
}

/// One frontend message: tag, length, body.
pub fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

pub fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// Backend messages up to and including ReadyForQuery, as (tag, body).
pub fn until_ready(s: &mut std::net::TcpStream) -> Vec<(u8, Vec<u8>)> {
    let mut msgs = Vec::new();
    loop {
        let mut head = [0u8; 5];
        s.read_exact(&mut head).expect("a backend message");
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        s.read_exact(&mut body).unwrap();
        let ready = head[0] == b'Z';
        msgs.push((head[0], body));
        if ready {
            return msgs;
        }
    }
}

/// A primary and its standby (cloned from it) in PEER; `a` is the primary.
/// The standby's directory lives as long as the pair.
pub struct PeerPair {
    pub a: Server,
    pub b: Server,
    _tmp: tempfile::TempDir,
}

/// Start a [`PeerPair`]; `extra` goes to both nodes.
pub async fn peer_pair(extra: &[&str]) -> Result<PeerPair> {
    let p_local = repl_addr();
    let s_local = repl_addr();
    let mut pargs = vec!["--role", "primary"];
    pargs.extend_from_slice(extra);
    let a = start_with(hadr_args(&p_local, &s_local, &pargs))?;
    let tmp = tempfile::tempdir()?;
    let sdir = tmp.path().join("standby");
    clone_to(&p_local, &sdir)?;
    let b = on_dir(sdir, &hadr_args(&s_local, &p_local, extra))?;
    a.wait_for("PEER", Duration::from_secs(30), |st| {
        st.principal_in(PairState::Peer)
    })
    .await?;
    Ok(PeerPair { a, b, _tmp: tmp })
}

/// `hadr takeover` on the standby `node` (graceful; waits up to 30 s).
pub fn takeover_on(node: &Server) -> Result<()> {
    let out = admin_cmd()
        .args([
            "takeover",
            "--timeout",
            "30s",
            "--node",
            &format!("127.0.0.1:{}", node.admin),
        ])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "takeover on {}: {}",
        node.admin,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Compile `tests/clients/NAME.java` against Debian's pgjdbc into a fresh
/// directory; returns it and the classpath to run the class with.
pub fn javac_client(name: &str) -> (tempfile::TempDir, String) {
    let classes = tempfile::tempdir().expect("a temporary directory");
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(format!("{name}.java"));
    let out = Command::new("javac")
        .args(["-cp", "/usr/share/java/postgresql.jar", "-d"])
        .arg(classes.path())
        .arg(source)
        .output()
        .expect("javac (default-jdk-headless) and libpostgresql-jdbc-java must be installed (.ci/run does)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cp = format!(
        "{}:/usr/share/java/postgresql.jar",
        classes.path().display()
    );
    (classes, cp)
}
