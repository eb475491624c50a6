//! `hadr demo`: a local HADR pair run as real `hadr server` processes, a bank
//! workload whose clients follow the primary with a multi-host connection
//! string, a graceful takeover, a kill -9 of the primary with a forced
//! takeover, the old primary restarted to fence itself and rejoin, and the
//! checks that nothing acknowledged was lost and the nodes are identical.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio_postgres::NoTls;

fn free_port(preferred: u16) -> u16 {
    if preferred != 0 && std::net::TcpListener::bind(("127.0.0.1", preferred)).is_ok() {
        return preferred;
    }
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(preferred)
}

/// One `hadr server` child process.
struct Node {
    name: &'static str,
    dir: PathBuf,
    pg: u16,
    admin: u16,
    local: u16,
    peer_local: u16,
    child: Option<Child>,
}

impl Node {
    fn admin(&self) -> String {
        format!("127.0.0.1:{}", self.admin)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.with_extension("log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn spawn(&mut self, primary: bool) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .with_context(|| format!("opening {}", self.log_path().display()))?;
        let exe = std::env::current_exe().context("finding the hadr binary")?;
        let mut cmd = Command::new(exe);
        cmd.arg("server")
            .arg("--data")
            .arg(&self.dir)
            .args(["--listen", &format!("127.0.0.1:{}", self.pg)])
            .args(["--admin", &format!("127.0.0.1:{}", self.admin)])
            .args(["--hadr-local", &format!("127.0.0.1:{}", self.local)])
            .args([
                "--hadr-target-list",
                &format!("127.0.0.1:{}", self.peer_local),
            ])
            .args(["--hadr-syncmode", "NEARSYNC"])
            .args(["--hadr-peer-window", "15s"])
            .args(["--hadr-timeout", "1s"])
            .env("HADR_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        if primary {
            cmd.args(["--role", "primary"]);
        }
        self.child = Some(cmd.spawn().context("starting hadr server")?);
        Ok(())
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM (a clean shutdown), SIGKILL if it does not exit in 20 s.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn status(&self) -> Option<serde_json::Value> {
        let body = crate::http::get(&self.admin(), "/status?hash=false", Duration::from_secs(5))
            .await
            .ok()?;
        serde_json::from_str(&body).ok()
    }

    /// Wait until the node's status satisfies `f`.
    async fn wait_for(
        &self,
        what: &str,
        secs: u64,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = self.status().await {
                if f(&st) {
                    return Ok(st);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "node {} did not reach \"{what}\" within {secs}s; its log is {}",
                    self.name,
                    self.log_path().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn is_primary(st: &serde_json::Value) -> bool {
    st["role"] == "primary" && st["writable"] == true
}

fn follows(st: &serde_json::Value) -> bool {
    st["role"] == "standby" && st["hadr"]["hadr_connect_status"] == "CONNECTED"
}

fn in_peer(st: &serde_json::Value) -> bool {
    st["hadr"]["standbys"][0]["hadr_state"] == "PEER"
}

/// What the bank clients saw.
#[derive(Default)]
struct Ledger {
    /// Ids of transfers whose COMMIT was acknowledged.
    acked: Mutex<BTreeSet<i64>>,
    /// Errors (sessions ended by a takeover, refused connections).
    errors: AtomicU64,
    /// Longest time without an acknowledged commit (ms), and the last one (µs since start).
    longest_gap_ms: AtomicU64,
    last_ack_us: AtomicU64,
}

/// Run the demo (see the module docs), then serve until Ctrl-C unless `no_wait`.
pub async fn run(port: u16, seconds: Duration, no_wait: bool) -> Result<()> {
    let root = std::env::temp_dir().join(format!("hadr-demo-{}", std::process::id()));
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let r = run_in(&root, port, seconds, no_wait).await;
    if r.is_ok() && std::env::var_os("HADR_DEMO_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&root);
    } else {
        println!(
            "== the demo failed; node logs are kept in {}",
            root.display()
        );
    }
    r
}

async fn run_in(root: &Path, port: u16, seconds: Duration, no_wait: bool) -> Result<()> {
    let seg = |data: &Path| hadr_server::config::Config {
        data: data.to_path_buf(),
        log_segment_size: hadr_server::config::ByteSize(4 << 20),
        ..Default::default()
    };
    let a_pg = free_port(port);
    let p: Vec<u16> = (0..5).map(|_| free_port(0)).collect();
    let mut a = Node {
        name: "A",
        dir: root.join("a"),
        pg: a_pg,
        admin: p[0],
        local: p[1],
        peer_local: p[4],
        child: None,
    };
    let mut b = Node {
        name: "B",
        dir: root.join("b"),
        pg: p[2],
        admin: p[3],
        local: p[4],
        peer_local: p[1],
        child: None,
    };
    println!(
        "== hadr demo in {} (node logs: a.log, b.log)",
        root.display()
    );
    hadr_engine::Engine::init(&a.dir, &seg(&a.dir).log_config())?;
    a.spawn(true)?;
    a.wait_for("serving", 30, |_| true).await?;
    println!(
        "== A: primary on port {} (admin {}), NEARSYNC, peer window 15 s",
        a.pg,
        a.admin()
    );
    let a_conn = format!("host=127.0.0.1 port={} user=demo dbname=demo", a.pg);
    let c = connect(&a_conn).await?;
    c.batch_execute(
        "CREATE TABLE accounts(aid INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
         CREATE TABLE transfers(id INTEGER PRIMARY KEY, src INTEGER, dst INTEGER, amount INTEGER, at TEXT DEFAULT CURRENT_TIMESTAMP);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 1000) INSERT INTO accounts SELECT i, 1000 FROM s;",
    )
    .await?;
    drop(c);

    // The clients know both hosts and want the writable one.
    let both = format!(
        "host=127.0.0.1,127.0.0.1 port={},{} user=demo dbname=demo target_session_attrs=read-write connect_timeout=2",
        a.pg, b.pg
    );
    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            tokio::spawn(bank_client(
                both.clone(),
                w,
                ledger.clone(),
                stop.clone(),
                start,
            ))
        })
        .collect();
    println!("== 4 clients move money between 1000 accounts, connected with");
    println!("   \"{both}\"");

    // A standby cloned while the clients write.
    let lsn = hadr_replication::clone::clone_from(
        &format!("127.0.0.1:{}", a.local),
        &b.dir,
        &seg(&b.dir).log_config(),
        Duration::from_secs(10),
        |_| {},
    )
    .await?;
    b.spawn(false)?;
    println!(
        "== B: cloned from the running primary at LSN {lsn}; standby on port {} (admin {})",
        b.pg,
        b.admin()
    );
    a.wait_for("PEER", 30, in_peer).await?;
    println!("== A and B in PEER: every commit now waits until B has received it");
    // The workload runs through three phases: before, between and after the switches.
    let step = (seconds / 3).max(Duration::from_secs(1));
    tokio::time::sleep(step).await;

    // 1. Graceful takeover.
    let t = Instant::now();
    println!(
        "\n-- hadr takeover --node {}   (graceful: B becomes primary)",
        b.admin()
    );
    crate::http::post(&b.admin(), "/takeover", Duration::from_secs(60))
        .await
        .ok();
    let st = b.wait_for("primary", 60, is_primary).await?;
    println!(
        "   B is the writable primary of epoch {} after {} ms; A hands over and follows it",
        st["epoch"],
        t.elapsed().as_millis()
    );
    a.wait_for("A following B", 60, follows).await?;
    tokio::time::sleep(step).await;

    // 2. The primary's host dies; forced takeover inside the peer window.
    println!("\n-- kill -9 of the primary B (a crashed host, in the middle of commits)");
    let killed = Instant::now();
    b.kill9();
    a.wait_for("A disconnected", 30, |s| {
        s["hadr"]["hadr_connect_status"] == "DISCONNECTED"
    })
    .await?;
    println!(
        "-- hadr takeover --node {} --force --peer-window-only   (A: DISCONNECTED_PEER, window still open)",
        a.admin()
    );
    crate::http::post(
        &a.admin(),
        "/takeover?force=true&peer_window_only=true",
        Duration::from_secs(30),
    )
    .await
    .context("forced takeover on A")?;
    let st = a.wait_for("primary", 60, is_primary).await?;
    println!(
        "   A is the writable primary of epoch {}, {} ms after the kill; nothing acknowledged can be missing",
        st["epoch"],
        killed.elapsed().as_millis()
    );
    tokio::time::sleep(step).await;

    // 3. The old primary comes back.
    println!("\n-- the old primary B restarts, still believing it is primary");
    let t = Instant::now();
    b.spawn(false)?;
    let refused = write_on(b.pg).await?;
    println!("   a write sent straight to B right after its start: {refused}");
    b.wait_for("B following A", 120, follows).await?;
    let blog = b.log();
    let how = if blog.contains("rewind complete") {
        "rewound its unshipped records (page-level rewind)"
    } else if blog.contains("re-clone complete") {
        "re-cloned itself"
    } else {
        "caught up (its log held nothing A lacked)"
    };
    println!(
        "   B saw epoch {} on A, fenced itself, {how}, and follows A as a standby ({} ms)",
        st["epoch"],
        t.elapsed().as_millis()
    );
    tokio::time::sleep(step).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        let _ = w.await;
    }

    // Checks: the bank balances, every acknowledged transfer is there, the nodes are identical.
    let c = connect(&both).await?;
    let total: i64 = c
        .query_one("SELECT sum(balance) FROM accounts", &[])
        .await?
        .get(0);
    let present: BTreeSet<i64> = c
        .query("SELECT id FROM transfers", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let acked = ledger
        .acked
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let missing = acked.difference(&present).count();
    println!(
        "\n== {} transfers acknowledged ({} client errors during the switches, longest gap between commits {} ms)",
        acked.len(),
        ledger.errors.load(Ordering::Relaxed),
        ledger.longest_gap_ms.load(Ordering::Relaxed)
    );
    println!("== missing on the primary: {missing}; money in the bank: {total} (expected 1000000)");
    let same = compare(&a, &b).await?;
    println!(
        "== page hashes of A and B at one LSN: {}",
        if same { "identical" } else { "DIFFERENT" }
    );
    if missing > 0 || total != 1_000_000 || !same || acked.is_empty() {
        bail!("the demo's checks failed");
    }
    println!();
    println!(
        "primary:  psql \"host=127.0.0.1 port={} user=demo dbname=demo\"",
        a.pg
    );
    println!(
        "standby:  psql \"host=127.0.0.1 port={} user=demo dbname=demo\"   (read-only)",
        b.pg
    );
    println!("either:   psql \"{both}\"");
    println!(
        "status:   cargo run --release -- status --node {}",
        a.admin()
    );
    println!(
        "verify:   cargo run --release -- verify --node {} --node {}",
        a.admin(),
        b.admin()
    );
    println!(
        "switch:   cargo run --release -- takeover --node {}",
        b.admin()
    );
    if !no_wait {
        println!("serving until Ctrl-C ...");
        let _ = tokio::signal::ctrl_c().await;
    }
    b.stop();
    a.stop();
    Ok(())
}

/// Send one write straight to a restarted old primary; it must be refused.
async fn write_on(port: u16) -> Result<String> {
    let conninfo = format!("host=127.0.0.1 port={port} user=demo dbname=demo connect_timeout=2");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match connect(&conninfo).await {
            Ok(c) => {
                return match c
                    .execute(
                        "UPDATE accounts SET balance = balance + 1 WHERE aid = 1",
                        &[],
                    )
                    .await
                {
                    Ok(_) => bail!("SPLIT BRAIN: the restarted old primary accepted a write"),
                    Err(e) => Ok(match e.code() {
                        Some(code) => format!("refused, SQLSTATE {}", code.code()),
                        None => "refused (connection ended: it is fencing itself)".to_string(),
                    }),
                };
            }
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Err(e) => return Err(e.context("connecting to the restarted old primary")),
        }
    }
}

/// Page hashes of both nodes at one LSN (the standby's replay position
/// catches up with the idle primary).
async fn compare(a: &Node, b: &Node) -> Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let get = |n: &Node| {
            let addr = n.admin();
            async move {
                let body = crate::http::get(&addr, "/status?hash=true", Duration::from_secs(60))
                    .await
                    .ok()?;
                let v: serde_json::Value = serde_json::from_str(&body).ok()?;
                Some((
                    v["page_hash"]["lsn"].as_u64()?,
                    v["page_hash"]["hash"].clone(),
                ))
            }
        };
        if let (Some((la, ha)), Some((lb, hb))) = (get(a).await, get(b).await) {
            if la == lb {
                return Ok(ha == hb);
            }
        }
        if Instant::now() > deadline {
            bail!("the nodes did not reach one LSN within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn connect(conninfo: &str) -> Result<tokio_postgres::Client> {
    let (client, conn) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_postgres::connect(conninfo, NoTls),
    )
    .await
    .context("connecting timed out")??;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// One bank client: transfers between random accounts until `stop`,
/// reconnecting (to whichever host is writable) after any error.
async fn bank_client(
    conninfo: String,
    worker: i64,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    start: Instant,
) {
    let mut x = ((worker as u64) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut seq = 0i64;
    let mut client: Option<tokio_postgres::Client> = None;
    while !stop.load(Ordering::Relaxed) {
        let Some(c) = client.as_mut() else {
            match connect(&conninfo).await {
                Ok(c) => client = Some(c),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
            continue;
        };
        // xorshift: deterministic per worker, no RNG dependency.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let src = (x % 1000 + 1) as i64;
        let dst = ((x >> 20) % 1000 + 1) as i64;
        let amount = ((x >> 40) % 50) as i64;
        seq += 1;
        let id = worker * 1_000_000_000 + seq;
        let r = async {
            let t = c.transaction().await?;
            t.execute(
                "UPDATE accounts SET balance = balance - $1 WHERE aid = $2",
                &[&amount, &src],
            )
            .await?;
            t.execute(
                "UPDATE accounts SET balance = balance + $1 WHERE aid = $2",
                &[&amount, &dst],
            )
            .await?;
            t.execute(
                "INSERT INTO transfers(id, src, dst, amount) VALUES ($1, $2, $3, $4)",
                &[&id, &src, &dst, &amount],
            )
            .await?;
            t.commit().await
        }
        .await;
        match r {
            Ok(()) => {
                ledger
                    .acked
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id);
                let now = start.elapsed().as_micros() as u64;
                let last = ledger.last_ack_us.swap(now, Ordering::Relaxed);
                if last > 0 {
                    ledger
                        .longest_gap_ms
                        .fetch_max((now.saturating_sub(last)) / 1000, Ordering::Relaxed);
                }
            }
            Err(_) => {
                ledger.errors.fetch_add(1, Ordering::Relaxed);
                client = None;
            }
        }
    }
}
