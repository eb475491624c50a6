//! `hadr demo`: a local HADR pair run as real `hadr server` processes, a bank
//! workload whose clients follow the primary with a multi-host connection
//! string, a graceful takeover, a kill -9 of the primary and an automatic
//! failover through a file arbiter (no human step), the old primary
//! restarted to fence itself and rejoin, and the checks that nothing
//! acknowledged was lost and the nodes are identical.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hadr_admin_api::{PairState, Status};
use hadr_testkit::{free_port, local, Hadr, Server};
use tokio_postgres::NoTls;

/// `preferred` if it is free (0: none), else a free port.
fn port_or_free(preferred: u16) -> u16 {
    if preferred != 0 && std::net::TcpListener::bind(("127.0.0.1", preferred)).is_ok() {
        return preferred;
    }
    free_port()
}

/// One `hadr server` child process of the pair: the flags every start of
/// it gets (the data directory knows the role).
fn node(
    hadr: &Hadr,
    dir: &Path,
    arbiter: &str,
    pg: u16,
    admin: u16,
    local_port: u16,
    peer: u16,
) -> Server {
    let extra = [
        "--hadr-local",
        &local(local_port),
        "--hadr-target-list",
        &local(peer),
        "--hadr-syncmode",
        "NEARSYNC",
        "--hadr-timeout",
        "1s",
        "--arbiter",
        arbiter,
        "--lease-ttl",
        "2s",
        "--lease-margin",
        "500ms",
    ]
    .map(String::from)
    .to_vec();
    Server::on_ports(hadr, dir.to_path_buf(), "127.0.0.1", pg, admin, extra)
}

/// The demo's resource for node `name`: an exec triple around an owner
/// file; its stop finishes 300 ms after it returns, as real stops do.
fn app_resource(root: &Path, name: &str) -> String {
    let o = root.join("app.owner");
    let o = o.display();
    format!(
        r#"[[resource]]
name = "app"
kind = "exec"
start = "( set -C; echo {name} > {o} ) 2>/dev/null"
stop = "if grep -qx {name} {o} 2>/dev/null; then (sleep 0.3; rm -f {o}) > /dev/null 2>&1 & fi"
monitor = "grep -qx {name} {o}"
stop_timeout = "1s"
monitor_interval = "500ms"
"#
    )
}

fn owner(root: &Path) -> String {
    std::fs::read_to_string(root.join("app.owner"))
        .map(|s| format!("held by {}", s.trim().to_uppercase()))
        .unwrap_or_else(|_| "none".into())
}

fn app_online(st: &Status) -> bool {
    st.resources.as_ref().is_some_and(|r| {
        r.resources
            .iter()
            .any(|v| v.name == "app" && v.state == "online")
    })
}

/// Wait up to `secs` for `what` on `node` ("A" or "B").
async fn wait(
    name: &str,
    node: &Server,
    what: &str,
    secs: u64,
    f: impl Fn(&Status) -> bool,
) -> Result<Status> {
    node.wait_for(what, Duration::from_secs(secs), f)
        .await
        .with_context(|| {
            format!(
                "node {name} did not reach \"{what}\"; its log is {}",
                node.log_path().display()
            )
        })
}

fn is_primary(st: &Status) -> bool {
    st.is_writable_primary()
}

fn follows(st: &Status) -> bool {
    st.follows()
}

fn in_peer(st: &Status) -> bool {
    st.principal_in(PairState::Peer)
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
    let hadr = Hadr::new(std::env::current_exe().context("finding the hadr binary")?);
    let a_pg = port_or_free(port);
    let p: Vec<u16> = (0..5).map(|_| free_port()).collect();
    let arbiter = format!("file:{}", root.join("arbiter.lease").display());
    let mut a = node(&hadr, &root.join("a"), &arbiter, a_pg, p[0], p[1], p[4]);
    let mut b = node(&hadr, &root.join("b"), &arbiter, p[2], p[3], p[4], p[1]);
    // A resource that follows the primary (docs/resources.md): an "app"
    // whose owner file only one node may hold at a time.
    for (n, name) in [(&mut a, "a"), (&mut b, "b")] {
        let cfg = root.join(format!("{name}.toml"));
        std::fs::write(&cfg, app_resource(root, name))?;
        n.extra
            .extend(["--config".to_string(), cfg.display().to_string()]);
    }
    println!(
        "== hadr demo in {} (node logs: a.log, b.log)",
        root.display()
    );
    hadr_engine::Engine::init(&a.dir, &seg(&a.dir).log_config())?;
    a.extra
        .extend(["--role".to_string(), "primary".to_string()]);
    a.spawn()?;
    // Writable once its driver holds the arbiter's lease (a primary with
    // no standby in PEER writes only under the lease).
    wait("A", &a, "writable (holding the lease)", 30, |st| {
        st.is_writable_primary()
    })
    .await?;
    println!(
        "== A: primary on port {} (admin {}), NEARSYNC, automatic failover through the arbiter {arbiter} (lease 2 s, margin 0.5 s)",
        a.port,
        a.admin_addr()
    );
    let a_conn = format!("host=127.0.0.1 port={} user=demo dbname=demo", a.port);
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
        a.port, b.port
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
        &local(p[1]),
        &b.dir,
        &seg(&b.dir).log_config(),
        Duration::from_secs(10),
        None,
        |_| {},
    )
    .await?;
    b.spawn()?;
    println!(
        "== B: cloned from the running primary at LSN {lsn}; standby on port {} (admin {})",
        b.port,
        b.admin_addr()
    );
    wait("A", &a, "PEER", 30, in_peer).await?;
    println!("== A and B in PEER: every commit now waits until B has received it");
    // The workload runs through three phases: before, between and after the switches.
    let step = (seconds / 3).max(Duration::from_secs(1));
    tokio::time::sleep(step).await;

    // 1. Graceful takeover.
    let t = Instant::now();
    println!(
        "\n-- hadr takeover --node {}   (graceful: B becomes primary)",
        b.admin_addr()
    );
    // B restarts as primary right after it answers: a cut-off answer is fine.
    let _ = b
        .admin()
        .with_timeout(Duration::from_secs(60))
        .takeover(false, false)
        .await;
    let st = wait("B", &b, "primary", 60, is_primary).await?;
    println!(
        "   B is the writable primary of epoch {} after {} ms; A hands over and follows it",
        st.epoch,
        t.elapsed().as_millis()
    );
    wait("A", &a, "A following B", 60, follows).await?;
    wait("B", &b, "app online", 60, app_online).await?;
    println!(
        "   resource app: stopped on A (confirmed by its monitor) before B promoted, online on B {} ms after the request; owner file: {}",
        t.elapsed().as_millis(),
        owner(root)
    );
    tokio::time::sleep(step).await;

    // 2. The primary's host dies; the standby takes over by itself.
    println!("\n-- kill -9 of the primary B (a crashed host, in the middle of commits); nobody runs a takeover");
    let killed = Instant::now();
    b.kill9();
    let st = wait("A", &a, "primary by itself", 60, is_primary).await?;
    println!(
        "   automatic failover: A saw B's lease run out unchanged, won the arbiter and is the writable primary of epoch {}, {} ms after the kill; B had recorded nothing out of sync, so nothing acknowledged can be missing",
        st.epoch,
        killed.elapsed().as_millis()
    );
    if let Some(f) = &st.failover {
        if let Some(last) = f.decisions.last() {
            println!("   A's last failover decision: {last}");
        }
    }
    wait("A", &a, "app online", 60, app_online).await?;
    println!(
        "   resource app: B's guard stopped it when B's process died; A started it after B's stop bound, {} ms after the kill; owner file: {}",
        killed.elapsed().as_millis(),
        owner(root)
    );
    tokio::time::sleep(step).await;

    // 3. The old primary comes back.
    println!("\n-- the old primary B restarts, still believing it is primary");
    let t = Instant::now();
    // Without waiting for its port: the write goes out as early as it can.
    b.spawn_nowait()?;
    let refused = write_on(b.port).await?;
    println!("   a write sent straight to B right after its start: {refused}");
    wait("B", &b, "B following A", 120, follows).await?;
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
        st.epoch,
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
        a.port
    );
    println!(
        "standby:  psql \"host=127.0.0.1 port={} user=demo dbname=demo\"   (read-only)",
        b.port
    );
    println!("either:   psql \"{both}\"");
    println!(
        "status:   cargo run --release -- status --node {}",
        a.admin_addr()
    );
    println!(
        "verify:   cargo run --release -- verify --node {} --node {}",
        a.admin_addr(),
        b.admin_addr()
    );
    // Both nodes require the same admin token (docs/security.md §Admin endpoint).
    let token_file = b
        .admin_token_file()
        .map(|f| format!(" --admin-token-file {}", f.display()))
        .unwrap_or_default();
    println!(
        "switch:   cargo run --release -- takeover --node {}{token_file}",
        b.admin_addr()
    );
    if !no_wait {
        println!("serving until Ctrl-C ...");
        let _ = tokio::signal::ctrl_c().await;
    }
    // A clean shutdown; one that takes too long is killed (and said so).
    for (name, n) in [("B", &mut b), ("A", &mut a)] {
        if let Err(e) = n.stop() {
            eprintln!("stopping {name}: {e:#}");
        }
    }
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
async fn compare(a: &Server, b: &Server) -> Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let hash = |n: &Server| {
            let admin = n.admin().with_timeout(Duration::from_secs(60));
            async move { admin.status_with_hash(true).await.ok()?.page_hash }
        };
        if let (Some(ha), Some(hb)) = (hash(a).await, hash(b).await) {
            if ha.lsn == hb.lsn {
                return Ok(ha.hash == hb.hash);
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
