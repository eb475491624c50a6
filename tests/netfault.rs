//! Network faults with real namespaces: the standby runs in its own network
//! namespace behind a veth pair, and its link is black-holed (the standby's
//! end of the veth is taken down, so the primary's packets vanish without an
//! error or a reset, as with a crashed host). Only hadr_timeout can notice.
//!
//! Needs root and iproute2 (`ip netns`); this machine's kernel has no netem,
//! so delay is not tested here.

mod common;
use anyhow::Context;
use common::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e} (install iproute2)"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A namespace with a veth link to the root namespace; removed on drop.
struct Netns {
    name: String,
    root_if: String,
    ns_if: String,
    root_ip: String,
    ns_ip: String,
    children: Vec<Child>,
}

impl Netns {
    fn new(k: u8) -> Netns {
        let id = std::process::id() % 10_000;
        let n = Netns {
            name: format!("hadr-{id}-{k}"),
            root_if: format!("hr{id}x{k}"),
            ns_if: format!("hs{id}x{k}"),
            root_ip: format!("10.77.{k}.1"),
            ns_ip: format!("10.77.{k}.2"),
            children: Vec::new(),
        };
        sh(&["ip", "netns", "add", &n.name]);
        sh(&[
            "ip", "link", "add", &n.root_if, "type", "veth", "peer", "name", &n.ns_if,
        ]);
        sh(&["ip", "link", "set", &n.ns_if, "netns", &n.name]);
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", n.root_ip),
            "dev",
            &n.root_if,
        ]);
        sh(&["ip", "link", "set", &n.root_if, "up"]);
        sh(&[
            "ip",
            "netns",
            "exec",
            &n.name,
            "ip",
            "addr",
            "add",
            &format!("{}/24", n.ns_ip),
            "dev",
            &n.ns_if,
        ]);
        sh(&[
            "ip", "netns", "exec", &n.name, "ip", "link", "set", &n.ns_if, "up",
        ]);
        sh(&[
            "ip", "netns", "exec", &n.name, "ip", "link", "set", "lo", "up",
        ]);
        n
    }

    /// Drop every packet on the link, silently.
    fn black_hole(&self) {
        sh(&[
            "ip",
            "netns",
            "exec",
            &self.name,
            "ip",
            "link",
            "set",
            &self.ns_if,
            "down",
        ]);
    }

    /// Bring the link back.
    fn heal(&self) {
        sh(&[
            "ip",
            "netns",
            "exec",
            &self.name,
            "ip",
            "link",
            "set",
            &self.ns_if,
            "up",
        ]);
    }

    /// Run the hadr CLI inside the namespace (reaches its loopback whatever the link does).
    fn hadr(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .arg(bin())
            .args(args)
            .env(ADMIN_TOKEN_ENV, admin_token())
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn spawn(&mut self, args: &[String], log: &std::path::Path) {
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .arg(bin())
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.push(child);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.root_if])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Primary in the root namespace, standby in `ns`; returns the primary and
/// the standby's admin address once the pair is in PEER.
async fn pair(
    ns: &mut Netns,
    mode: &str,
    window: &str,
    tmp: &std::path::Path,
) -> Result<(Server, String)> {
    pair_with(ns, mode, window, tmp, &[]).await
}

/// [`pair`] with more flags for both nodes.
async fn pair_with(
    ns: &mut Netns,
    mode: &str,
    window: &str,
    tmp: &std::path::Path,
    both: &[&str],
) -> Result<(Server, String)> {
    let p_local = format!("{}:{}", ns.root_ip, free_port());
    let s_local = format!("{}:{}", ns.ns_ip, 9433);
    let mut pargs = vec![
        "--role",
        "primary",
        "--hadr-syncmode",
        mode,
        "--hadr-peer-window",
        window,
        "--hadr-timeout",
        "1s",
        "--hadr-local",
        &p_local,
        "--hadr-target-list",
        &s_local,
    ];
    pargs.extend_from_slice(both);
    let primary = start(&pargs)?;
    let sdir = tmp.join("standby");
    clone_to(&p_local, &sdir)?;
    let s_admin = format!("{}:8433", ns.ns_ip);
    // Its admin port is on every address of the namespace: it needs a token.
    let token = tmp.join("standby.admin-token");
    write_admin_token(&token)?;
    let args: Vec<String> = [
        "server",
        "--data",
        sdir.to_str().unwrap(),
        "--listen",
        // Every address of the namespace: a write probe run inside it
        // reaches the standby even while the link is black-holed.
        "0.0.0.0:5433",
        // Every address of the namespace, loopback included: the CLI run
        // inside it reaches the admin port even while the link is black-holed.
        "--admin",
        "0.0.0.0:8433",
        "--admin-token-file",
        token.to_str().unwrap(),
        "--hadr-local",
        &s_local,
        "--hadr-target-list",
        &p_local,
        "--hadr-timeout",
        "1s",
    ]
    .iter()
    // Listening beyond loopback, it must be told to trust clients.
    .chain(&hadr_testkit::TRUST_EVERYONE)
    .chain(both)
    .map(|s| s.to_string())
    .collect();
    ns.spawn(&args, &tmp.join("standby.log"));
    primary
        .wait_for("PEER", Duration::from_secs(30), |st| {
            st.principal()
                .is_some_and(|s| s.hadr_state == PairState::Peer)
        })
        .await
        .with_context(|| std::fs::read_to_string(tmp.join("standby.log")).unwrap_or_default())?;
    Ok((primary, s_admin))
}

/// Create the table and let heartbeats renew the peer-window promise.
async fn prepare(primary: &Server) -> Result<()> {
    let c = primary.client().await?;
    c.batch_execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_holed_standby_blocks_commits_for_hadr_timeout_then_they_continue() -> Result<()> {
    let tmp = tempfile::tempdir().unwrap();
    let mut ns = Netns::new(41);
    let (primary, _) = pair(&mut ns, "NEARSYNC", "0", tmp.path()).await?;
    prepare(&primary).await?;
    let c = primary.client().await?;
    ns.black_hole();
    let started = Instant::now();
    c.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap();
    let blocked = started.elapsed();
    // No reset arrives: the loss is found by hadr_timeout (1 s), not sooner.
    assert!(
        blocked >= Duration::from_millis(300),
        "commit returned in {blocked:?}: the standby's loss was noticed too early for a black hole"
    );
    assert!(
        blocked <= Duration::from_millis(2500),
        "commit blocked {blocked:?}, more than hadr_timeout allows"
    );
    let st = primary.status().await?;
    assert_eq!(
        st.principal().map(|s| s.hadr_state),
        Some(PairState::RemoteCatchupPending),
        "{}",
        brief(&st)
    );
    // Later commits do not wait at all.
    let started = Instant::now();
    c.execute("INSERT INTO t VALUES (2)", &[]).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(500));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_peer_window_commits_block_at_most_timeout_plus_window() -> Result<()> {
    let tmp = tempfile::tempdir().unwrap();
    let mut ns = Netns::new(42);
    let (primary, _) = pair(&mut ns, "SYNC", "3s", tmp.path()).await?;
    prepare(&primary).await?;
    let c = primary.client().await?;
    ns.black_hole();
    let started = Instant::now();
    c.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap();
    let blocked = started.elapsed();
    assert!(
        blocked >= Duration::from_millis(2000),
        "commit returned in {blocked:?}: the peer window did not hold it"
    );
    assert!(
        blocked <= Duration::from_millis(1000 + 3000 + 1500),
        "commit blocked {blocked:?} > hadr_timeout + hadr_peer_window"
    );
    let st = primary.status().await?;
    assert_eq!(
        st.principal().map(|s| s.hadr_state),
        Some(PairState::RemoteCatchupPending),
        "{}",
        brief(&st)
    );
    Ok(())
}

/// The primary's host vanishes (black hole, no reset) while clients commit in
/// SYNC with a peer window; the standby takes over with --force
/// --peer-window-only. No acknowledged commit is lost. When the link heals,
/// the old primary, which had kept running and believing it was primary,
/// meets the new epoch, stops writing, and rejoins as a standby; the nodes
/// verify identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_primary_is_fenced_when_the_link_heals() -> Result<()> {
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};
    let tmp = tempfile::tempdir().unwrap();
    let mut ns = Netns::new(43);
    let (primary, s_admin) = pair(&mut ns, "SYNC", "20s", tmp.path()).await?;
    let c = primary.client().await?;
    c.batch_execute("CREATE TABLE acked(id INTEGER PRIMARY KEY, pad BLOB)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let acked: Arc<Mutex<BTreeSet<i64>>> = Arc::default();
    let writers: Vec<_> = (0..3i64)
        .map(|w| {
            tokio::spawn(acked_writer(
                primary.conninfo(),
                acked.clone(),
                w * 1_000_000,
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    ns.black_hole();
    // Inside the window: the old primary holds every commit the standby lacks.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, out) = ns.hadr(&[
            "takeover",
            "--node",
            "127.0.0.1:8433",
            "--force",
            "--peer-window-only",
            "--timeout",
            "30s",
        ]);
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "forced takeover failed: {out}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The old primary still runs and has not heard of it: its commits block.
    assert_eq!(primary.status().await?.role, NodeRole::Primary);
    ns.heal();
    let healed = Instant::now();
    loop {
        // Unreachable counts as stopped: a fenced node restarts as a standby.
        if !primary.status().await.is_ok_and(|s| s.writable) {
            break;
        }
        assert!(
            healed.elapsed() < Duration::from_secs(5),
            "the old primary kept writing after the link healed: {}",
            primary.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "old primary stopped writing {} ms after the link healed",
        healed.elapsed().as_millis()
    );
    for w in writers {
        let _ = w.await;
    }
    // Every acknowledged commit is on the new primary.
    let (ns_ip, _) = s_admin.split_once(':').unwrap();
    let (nc, conn) = tokio_postgres::connect(
        &format!("host={ns_ip} port=5433 user=t dbname=t connect_timeout=10"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let present = acked_ids(&nc).await?;
    let want = acked.lock().unwrap().clone();
    assert!(want.len() > 20, "load barely ran: {}", want.len());
    let missing: Vec<_> = want.difference(&present).take(10).collect();
    assert!(missing.is_empty(), "lost acknowledged commits: {missing:?}");
    // The old primary rejoins by itself and the nodes are identical.
    primary
        .wait_for("the old primary rejoined", Duration::from_secs(60), |s| {
            s.follows()
        })
        .await?;
    nc.execute("INSERT INTO acked(id) VALUES (-1)", &[])
        .await
        .unwrap();
    let out = Command::new(bin())
        .args([
            "verify",
            "--timeout",
            "30s",
            "--node",
            &format!("127.0.0.1:{}", primary.admin),
            "--node",
            &s_admin,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Automatic failover, the two nodes cut off from each other while both
/// still reach the arbiter (a file both see): exactly one primary. The
/// primary keeps its lease, records the standby out of sync and goes on
/// alone; the standby sees the lease renewed and never promotes. A probe
/// tries a write on each node every 100 ms and records who accepted it:
/// never both. When the link heals, the standby catches up and the mark is
/// cleared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_with_both_reaching_the_arbiter_leaves_exactly_one_primary() -> Result<()> {
    let tmp = tempfile::tempdir().unwrap();
    let arbiter = format!("file:{}", tmp.path().join("lease").display());
    let mut ns = Netns::new(44);
    let (primary, _) = pair_with(
        &mut ns,
        "NEARSYNC",
        "0",
        tmp.path(),
        &[
            "--arbiter",
            &arbiter,
            "--lease-ttl",
            "2s",
            "--lease-margin",
            "500ms",
        ],
    )
    .await?;
    let c = primary.client().await?;
    c.batch_execute("CREATE TABLE t(id INTEGER PRIMARY KEY, node TEXT)")
        .await?;
    ns.black_hole();
    let mut accepted = Vec::new();
    let mut id = 0i64;
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        id += 1;
        let a = tokio::time::timeout(
            Duration::from_millis(1500),
            c.execute("INSERT INTO t VALUES ($1, 'A')", &[&id]),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        // The same write on the standby, from inside its namespace.
        let b = Command::new("ip")
            .args(["netns", "exec", &ns.name, "psql"])
            .arg("host=127.0.0.1 port=5433 user=t dbname=t connect_timeout=1")
            .args(["-v", "ON_ERROR_STOP=1", "-c"])
            .arg(format!("INSERT INTO t VALUES ({}, 'B')", -id))
            .output()
            .is_ok_and(|o| o.status.success());
        accepted.push((a, b));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        accepted.iter().all(|(a, b)| !(*a && *b)),
        "both nodes accepted writes at once: {accepted:?}"
    );
    assert!(
        accepted.iter().all(|(_, b)| !*b),
        "the standby accepted a write while the primary held the lease"
    );
    assert!(
        accepted.iter().rev().take(20).all(|(a, _)| *a),
        "the primary stopped accepting writes alone: {accepted:?}"
    );
    let st = primary.status().await?;
    let f = st.failover.expect("failover status");
    assert!(f.acknowledging_alone && !f.out_of_sync.is_empty(), "{f:?}");
    // Heal: the standby catches up, PEER again, the mark goes.
    ns.heal();
    primary
        .wait_for("PEER and no mark", Duration::from_secs(30), |st| {
            st.principal()
                .is_some_and(|s| s.hadr_state == PairState::Peer)
                && st
                    .failover
                    .as_ref()
                    .is_some_and(|f| f.out_of_sync.is_empty())
        })
        .await?;
    Ok(())
}
