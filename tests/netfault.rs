//! Network faults with real namespaces: the standby runs in its own network
//! namespace behind a veth pair, and its link is black-holed (the standby's
//! end of the veth is taken down, so the primary's packets vanish without an
//! error or a reset, as with a crashed host). Only hadr_timeout can notice.
//!
//! Needs root and iproute2 (`ip netns`); this machine's kernel has no netem,
//! so delay is not tested here.

mod common;
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
fn pair(ns: &mut Netns, mode: &str, window: &str, tmp: &std::path::Path) -> (Server, String) {
    let p_local = format!("{}:{}", ns.root_ip, free_port());
    let s_local = format!("{}:{}", ns.ns_ip, 9433);
    let primary = Server::start(&[
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
    ]);
    let sdir = tmp.join("standby");
    clone_to(&p_local, &sdir);
    let s_admin = format!("{}:8433", ns.ns_ip);
    let args: Vec<String> = [
        "server",
        "--data",
        sdir.to_str().unwrap(),
        "--listen",
        &format!("{}:5433", ns.ns_ip),
        "--admin",
        &s_admin,
        "--hadr-local",
        &s_local,
        "--hadr-target-list",
        &p_local,
        "--hadr-timeout",
        "1s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    ns.spawn(&args, &tmp.join("standby.log"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = primary.status();
        if st["hadr"]["standbys"][0]["hadr_state"] == "PEER" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no PEER: {st}\n{}",
            std::fs::read_to_string(tmp.join("standby.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (primary, s_admin)
}

/// Create the table and let heartbeats renew the peer-window promise.
async fn prepare(primary: &Server) {
    let c = primary.client().await;
    c.batch_execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_holed_standby_blocks_commits_for_hadr_timeout_then_they_continue() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ns = Netns::new(41);
    let (primary, _) = pair(&mut ns, "NEARSYNC", "0", tmp.path());
    prepare(&primary).await;
    let c = primary.client().await;
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
    let st = primary.status();
    assert_eq!(
        st["hadr"]["standbys"][0]["hadr_state"], "REMOTE_CATCHUP_PENDING",
        "{st}"
    );
    // Later commits do not wait at all.
    let started = Instant::now();
    c.execute("INSERT INTO t VALUES (2)", &[]).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_peer_window_commits_block_at_most_timeout_plus_window() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ns = Netns::new(42);
    let (primary, _) = pair(&mut ns, "SYNC", "3s", tmp.path());
    prepare(&primary).await;
    let c = primary.client().await;
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
    let st = primary.status();
    assert_eq!(
        st["hadr"]["standbys"][0]["hadr_state"], "REMOTE_CATCHUP_PENDING",
        "{st}"
    );
}
