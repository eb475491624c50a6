//! One real etcd server for the tests that run hadr nodes against an etcd
//! arbiter: Debian's `etcd` on two free ports (never the packaged service's
//! 2379/2380), its data in a temporary directory, killed when dropped.
//! Without an `etcd` binary the test skips, saying so — except under
//! `CI=true`, where it fails. (crates/hadr-arbiter/tests/etcd_support has
//! the full kit, with clusters and freezes, for the arbiter's own tests.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hadr_testkit::free_port;

/// A running etcd.
pub struct Etcd {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HADR_ETCD_BIN") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
}

/// `GET /health` answered `"health":"true"` (the member has a leader).
fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}

impl Etcd {
    /// Start one member and wait until it is healthy; None (after saying
    /// so) when the test should skip.
    pub fn start(test: &str) -> Option<Etcd> {
        let Some(bin) = binary() else {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "{test}: no etcd binary (install etcd-server, or set HADR_ETCD_BIN); under CI=true it must run"
            );
            eprintln!("SKIPPED {test}: no etcd binary (apt-get install etcd-server, or set HADR_ETCD_BIN)");
            return None;
        };
        let mut last = String::new();
        for _attempt in 0..3 {
            let (port, peer) = (free_port(), free_port());
            assert!(![2379, 2380].contains(&port) && ![2379, 2380].contains(&peer));
            let dir = tempfile::tempdir().expect("a temporary directory");
            let log = std::fs::File::create(dir.path().join("etcd.log")).expect("etcd's log");
            let client = format!("http://127.0.0.1:{port}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let mut cmd = Command::new(&bin);
            // The packaged service's settings must not leak in.
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("ETCD") {
                    cmd.env_remove(k);
                }
            }
            cmd.args(["--name", "m0", "--data-dir"])
                .arg(dir.path().join("m0.etcd"))
                .args(["--listen-client-urls", &client])
                .args(["--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &format!("m0={peer_url}")])
                .args(["--initial-cluster-state", "new", "--log-level", "warn"])
                .args(["--logger", "zap"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("etcd's log"))
                .stderr(log);
            let mut e = Etcd {
                child: Some(cmd.spawn().expect("start etcd")),
                port,
                dir,
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if healthy(port) {
                    return Some(e);
                }
                let exited = e
                    .child
                    .as_mut()
                    .is_none_or(|c| c.try_wait().map(|s| s.is_some()).unwrap_or(true));
                if exited || Instant::now() > deadline {
                    last = e.log();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("{test}: etcd did not start: {last}");
    }

    /// The arbiter spec for a key of this server.
    pub fn arbiter(&self, key: &str) -> String {
        format!("etcd://127.0.0.1:{}/{key}", self.port)
    }

    /// kill -9 (the arbiter is gone).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}
