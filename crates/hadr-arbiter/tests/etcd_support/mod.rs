//! Real etcd servers for the etcd arbiter's tests: one member or a cluster
//! of several, each an `etcd` process on free loopback ports with its data
//! in a temporary directory, killed when the handle is dropped.
//!
//! Never the packaged service's 2379/2380: every port is one the kernel
//! handed out for 127.0.0.1:0, and those two are refused outright.
//!
//! Without an `etcd` binary (`$HADR_ETCD_BIN`, `$PATH`, `/usr/bin/etcd`) the
//! tests skip, saying so — except under `CI=true`, where they fail.

use std::fs::File;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};

/// How long a member may take to answer after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the `etcd` binary is, if anywhere.
fn etcd_binary() -> Option<PathBuf> {
    // Given, it is the only one looked at.
    if let Some(p) = std::env::var_os("HADR_ETCD_BIN") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("etcd"))
        .find(|p| p.is_file())
}

/// The binary, or None (after saying why) when the test should skip.
fn etcd_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(bin) = etcd_binary() {
        return Some(bin);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{test}: no etcd binary (install Debian's etcd-server, or set HADR_ETCD_BIN); \
             under CI=true the etcd tests must run"
        );
    }
    // Straight to stderr, past the harness's capture, so that a skip shows.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: no etcd binary (apt-get install etcd-server, or set HADR_ETCD_BIN)"
    );
    None
}

/// `n` distinct free loopback ports, none of them etcd's well-known ones.
fn free_ports(n: usize) -> Vec<u16> {
    // Hold every listener until all are chosen, so none repeats.
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a loopback port"))
        .collect();
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    for p in &ports {
        assert!(![2379, 2380].contains(p), "refusing etcd's system port {p}");
    }
    ports
}

/// One etcd process.
pub struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Member {
    /// `host:port` for clients.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    fn spawn(&mut self, bin: &Path, initial_cluster: &str, token: &str) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the member's log");
        let client_url = format!("http://127.0.0.1:{}", self.client_port);
        let mut cmd = Command::new(bin);
        // The packaged service's settings must not leak in.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen-client-urls")
            .arg(&client_url)
            .arg("--advertise-client-urls")
            .arg(&client_url)
            .arg("--listen-peer-urls")
            .arg(self.peer_url())
            .arg("--initial-advertise-peer-urls")
            .arg(self.peer_url())
            .arg("--initial-cluster")
            .arg(initial_cluster)
            .arg("--initial-cluster-token")
            .arg(token)
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--logger")
            .arg("zap")
            .arg("--log-level")
            .arg("warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(cmd.spawn().expect("start etcd"));
    }

    /// Kill the process (SIGKILL) and reap it.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Send the process a signal (`STOP`, `CONT`).
    fn signal(&self, sig: &str) {
        let child = self.child.as_ref().expect("member not running");
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(child.id().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} {}", child.id());
    }

    /// Has the process exited already?
    fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().map(|s| s.is_some()).unwrap_or(true),
            None => true,
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// A cluster of `n` etcd members (one: a single server).
pub struct EtcdCluster {
    bin: PathBuf,
    initial_cluster: String,
    token: String,
    members: Vec<Member>,
    _dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Start `n` members and wait until each answers; None if the test
    /// should skip (no etcd binary outside CI).
    pub async fn start(n: usize) -> Option<EtcdCluster> {
        // The test harness names each test's thread after the test.
        let thread = std::thread::current();
        let test = thread.name().unwrap_or("an etcd test");
        let bin = etcd_or_skip(test)?;
        // A port taken between choosing and binding makes etcd exit: try again.
        let mut last = String::new();
        for _attempt in 0..3 {
            let mut cluster = EtcdCluster::spawn(bin.clone(), n);
            match cluster.wait_all().await {
                Ok(()) => return Some(cluster),
                Err(e) => last = e,
            }
        }
        panic!("{test}: etcd did not start: {last}");
    }

    fn spawn(bin: PathBuf, n: usize) -> EtcdCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = free_ports(2 * n);
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                data_dir: dir.path().join(format!("m{i}.etcd")),
                log: dir.path().join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("hadr-test-{}", ports[0]);
        let mut cluster = EtcdCluster {
            bin,
            initial_cluster,
            token,
            members,
            _dir: dir,
        };
        for i in 0..n {
            cluster.spawn_member(i);
        }
        cluster
    }

    fn spawn_member(&mut self, i: usize) {
        let (bin, ic, token) = (&self.bin, &self.initial_cluster, &self.token);
        self.members[i].spawn(bin, ic, token);
    }

    async fn wait_all(&mut self) -> Result<(), String> {
        for i in 0..self.members.len() {
            self.wait(i).await?;
        }
        Ok(())
    }

    /// Wait until member `i` answers a linearizable read (so it has a
    /// leader and a quorum).
    async fn wait(&mut self, i: usize) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let endpoint = self.members[i].endpoint();
        loop {
            if self.members[i].exited() {
                return Err(format!(
                    "{} exited:\n{}",
                    self.members[i].name,
                    self.members[i].log_tail()
                ));
            }
            if answers(&endpoint).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not answer within {START_TIMEOUT:?}:\n{}",
                    self.members[i].name,
                    self.members[i].log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every member's `host:port`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    /// Kill member `i` (SIGKILL): its data stays.
    pub fn kill(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Start member `i` again on its data and ports, and wait until it answers.
    pub async fn restart(&mut self, i: usize) {
        self.spawn_member(i);
        if let Err(e) = self.wait(i).await {
            panic!("restarting etcd: {e}");
        }
    }

    /// Freeze member `i` (SIGSTOP): its sockets stay open, nothing answers.
    pub fn pause(&self, i: usize) {
        self.members[i].signal("STOP");
    }

    /// Let a frozen member `i` run again (SIGCONT).
    pub fn resume(&self, i: usize) {
        self.members[i].signal("CONT");
    }

    /// Which member leads, by asking each running one until one knows.
    pub async fn leader(&self) -> usize {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            for (i, m) in self.members.iter().enumerate() {
                if m.child.is_none() {
                    continue;
                }
                let options = ConnectOptions::new().with_timeout(Duration::from_secs(1));
                let Ok(mut client) = Client::connect([m.endpoint()], Some(options)).await else {
                    continue;
                };
                let Ok(status) = client.status().await else {
                    continue;
                };
                let me = status.header().map(|h| h.member_id());
                if status.leader() != 0 && me == Some(status.leader()) {
                    return i;
                }
            }
            assert!(Instant::now() < deadline, "no etcd member leads");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The members' endpoints starting at member `first`.
    pub fn endpoints_from(&self, first: usize) -> Vec<String> {
        let mut e = self.endpoints();
        e.rotate_left(first);
        e
    }

    /// A plain etcd client on every member, for what the arbiter must not
    /// do itself (deleting the key, planting a foreign value).
    pub async fn raw_client(&self) -> Client {
        let options = ConnectOptions::new()
            .with_timeout(Duration::from_secs(5))
            .with_connect_timeout(Duration::from_secs(5));
        Client::connect(self.endpoints(), Some(options))
            .await
            .expect("connect to etcd")
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            // SIGKILL ends a frozen (SIGSTOP) process too.
            m.kill();
        }
    }
}

/// Does the member at `endpoint` answer a linearizable read within a second?
async fn answers(endpoint: &str) -> bool {
    let options = ConnectOptions::new()
        .with_timeout(Duration::from_secs(1))
        .with_connect_timeout(Duration::from_secs(1))
        .with_require_leader(true);
    let attempt = async {
        let mut client = Client::connect([endpoint], Some(options)).await.ok()?;
        client.get("/hadr-test/ready", None).await.ok()
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
        .is_some()
}
