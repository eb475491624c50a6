//! Test harness: runs the real `hadr` binary on free loopback ports.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

/// A free port (bound, then released), from 20000–32767: below Linux's
/// ephemeral range, so the many outgoing connections of the tests (clients,
/// replication, probes) cannot take it between this call and the server's bind.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = u64::from(std::process::id()).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
    loop {
        let mut x = seed ^ NEXT.fetch_add(0x2545_f491_4f6c_dd1d, Ordering::Relaxed);
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        let port = 20_000 + (x % 12_768) as u16;
        // Free on every address a test may use (loopback and the netns veths).
        if TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
}

/// Path of the binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hadr"))
}

/// A hadr server process on its own data directory.
pub struct Server {
    pub dir: PathBuf,
    pub port: u16,
    pub admin: u16,
    pub extra: Vec<String>,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// `hadr init` a temp directory and start a server on it.
    pub fn start(extra: &[&str]) -> Server {
        Self::start_with(extra.iter().map(|s| s.to_string()).collect())
    }

    /// `hadr init` a temp directory and start a server on it with these flags.
    pub fn start_with(extra: Vec<String>) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        init(&dir);
        let mut s = Server {
            dir,
            port: 0,
            admin: 0,
            extra,
            child: None,
            _tmp: Some(tmp),
        };
        s.spawn();
        s
    }

    /// Start a server on an existing data directory (e.g. made by `hadr clone`).
    pub fn on_dir(dir: PathBuf, extra: &[String]) -> Server {
        let mut s = Server {
            dir,
            port: 0,
            admin: 0,
            extra: extra.to_vec(),
            child: None,
            _tmp: None,
        };
        s.spawn();
        s
    }

    /// GET /status as JSON.
    pub fn status(&self) -> serde_json::Value {
        let (code, body) = self.admin_get("/status");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Start the server process (again) on the same directory, new ports.
    pub fn spawn(&mut self) {
        self.port = free_port();
        self.admin = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.with_extension("log"))
            .unwrap();
        let child = Command::new(bin())
            .arg("server")
            .arg("--data")
            .arg(&self.dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--admin")
            .arg(format!("127.0.0.1:{}", self.admin))
            .args(&self.extra)
            .env("HADR_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn hadr");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("hadr exited during start-up with {status}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("hadr did not start: {}", self.log());
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
    }

    /// libpq-style connection string.
    pub fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=test dbname=test connect_timeout=10",
            self.port
        )
    }

    /// Connect with tokio-postgres.
    pub async fn client(&self) -> Client {
        connect(&self.conninfo()).await
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("server running");
        unsafe_sigterm(c.id());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("server did not stop on SIGTERM: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// GET a path on the admin endpoint.
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(self.admin, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

/// `hadr init --data dir`.
pub fn init(dir: &Path) {
    let out = Command::new(bin())
        .arg("init")
        .arg("--data")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Connect and drive the connection in the background.
pub async fn connect(conninfo: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(conninfo, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {conninfo}: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Run psql with `sql` on stdin; returns (success, stdout, stderr).
pub fn psql(conninfo: &str, args: &[&str], sql: &str) -> (bool, String, String) {
    use std::io::Write;
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

/// Minimal HTTP GET returning (status, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// Open the database file of a stopped node and run `PRAGMA integrity_check`.
pub fn integrity_check(dir: &Path) -> String {
    let c = rusqlite::Connection::open(dir.join("data.db")).unwrap();
    c.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
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

/// `hadr clone --from FROM --data DIR`, which must succeed.
pub fn clone_to(from: &str, dir: &Path) {
    let out = Command::new(bin())
        .args(["clone", "--from", from, "--data"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "clone failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `hadr verify --node A --node B`, which must find the nodes identical.
pub fn verify_nodes(admin_a: u16, admin_b: u16) {
    let out = Command::new(bin())
        .args([
            "verify",
            "--timeout",
            "30s",
            "--node",
            &format!("127.0.0.1:{admin_a}"),
            "--node",
            &format!("127.0.0.1:{admin_b}"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "verify failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("identical"));
}

/// Insert rows with ids from `base` up into `acked(id, pad)` until a write
/// fails (the server died, was fenced or handed over), recording every id
/// whose commit was acknowledged.
pub async fn acked_writer(
    conninfo: String,
    acked: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<i64>>>,
    base: i64,
) {
    let Ok((c, conn)) = tokio_postgres::connect(&conninfo, NoTls).await else {
        return;
    };
    tokio::spawn(conn);
    for k in 0.. {
        let id = base + k;
        let r = c
            .execute(
                "INSERT INTO acked(id, pad) VALUES ($1, randomblob(200))",
                &[&id],
            )
            .await;
        if r.is_err() {
            return;
        }
        acked.lock().unwrap().insert(id);
    }
}

/// The ids in the `acked` table that crash, replication and takeover tests
/// write their acknowledged commits into.
pub async fn acked_ids(c: &Client) -> std::collections::BTreeSet<i64> {
    c.query("SELECT id FROM acked", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .collect()
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
