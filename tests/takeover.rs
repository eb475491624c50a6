//! Graceful takeover through the real binary: alternating role switches under
//! a write load, clients following the primary with a multi-host connection
//! string, no acknowledged commit lost, nodes identical after each switch.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn takeovers() -> usize {
    std::env::var("HADR_TAKEOVERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
}

fn status(admin: u16) -> serde_json::Value {
    let (code, body) = http_get(admin, "/status?hash=false");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn wait_peer(primary_admin: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(st) = std::panic::catch_unwind(|| status(primary_admin)) {
            if st["role"] == "primary" && st["hadr"]["standbys"][0]["hadr_state"] == "PEER" {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no PEER on the primary at admin port {primary_admin}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternating_graceful_takeovers_under_load_lose_nothing() {
    let a_local = format!("127.0.0.1:{}", free_port());
    let b_local = format!("127.0.0.1:{}", free_port());
    let a = Server::start(&[
        "--role",
        "primary",
        "--hadr-local",
        &a_local,
        "--hadr-target-list",
        &b_local,
        "--hadr-timeout",
        "1s",
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let bdir = tmp.path().join("b");
    clone_to(&a_local, &bdir);
    let b = Server::on_dir(
        bdir,
        &[
            "--hadr-local",
            &b_local,
            "--hadr-target-list",
            &a_local,
            "--hadr-timeout",
            "1s",
        ]
        .map(String::from),
    );
    wait_peer(a.admin);
    a.client()
        .await
        .batch_execute(
            "CREATE TABLE bank(id INTEGER PRIMARY KEY, bal INTEGER);
             WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < 50) INSERT INTO bank SELECT i, 1000 FROM s;
             CREATE TABLE acked(id INTEGER PRIMARY KEY);",
        )
        .await
        .unwrap();
    // Clients follow whichever node is primary.
    let both = format!("host=127.0.0.1,127.0.0.1 port={},{} user=t dbname=t target_session_attrs=read-write connect_timeout=2", a.port, b.port);
    let stop = Arc::new(AtomicBool::new(false));
    // Writers pause while the nodes are compared: verify needs one LSN on both.
    let pause = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<BTreeSet<i64>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..2i64 {
        let (both, stop, acked, pause) = (both.clone(), stop.clone(), acked.clone(), pause.clone());
        writers.push(tokio::spawn(async move {
            let mut id = w * 1_000_000;
            let mut reconnects = 0;
            while !stop.load(Ordering::Relaxed) {
                let Ok((mut c, conn)) = tokio_postgres::connect(&both, tokio_postgres::NoTls).await
                else {
                    reconnects += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                tokio::spawn(conn);
                while !stop.load(Ordering::Relaxed) {
                    if pause.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                    id += 1;
                    let r = async {
                        let t = c.transaction().await?;
                        t.execute(
                            "UPDATE bank SET bal = bal - 1 WHERE id = $1",
                            &[&(id % 50 + 1)],
                        )
                        .await?;
                        t.execute(
                            "UPDATE bank SET bal = bal + 1 WHERE id = $1",
                            &[&((id + 7) % 50 + 1)],
                        )
                        .await?;
                        t.execute("INSERT INTO acked VALUES ($1)", &[&id]).await?;
                        t.commit().await
                    }
                    .await;
                    match r {
                        Ok(()) => {
                            acked.lock().unwrap().insert(id);
                        }
                        Err(_) => break,
                    }
                }
                reconnects += 1;
            }
            reconnects
        }));
    }
    let admins = [a.admin, b.admin];
    let mut primary = 0usize;
    for round in 0..takeovers() {
        tokio::time::sleep(Duration::from_millis(400)).await;
        wait_peer(admins[primary]);
        let epoch = status(admins[primary])["epoch"].as_u64().unwrap();
        let standby = 1 - primary;
        let started = Instant::now();
        // A pair that leaves PEER between the check and the request (a
        // 1 s hadr_timeout on a busy 2-core machine) is refused, correctly;
        // such a refusal is retried, any other failure is not.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let out = Command::new(bin())
                .args([
                    "takeover",
                    "--timeout",
                    "30s",
                    "--node",
                    &format!("127.0.0.1:{}", admins[standby]),
                ])
                .output()
                .unwrap();
            if out.status.success() {
                break;
            }
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            assert!(
                attempt < 3 && err.contains("PEER"),
                "round {round}: takeover failed: {}{err}\nA: {}\nB: {}",
                String::from_utf8_lossy(&out.stdout),
                a.log(),
                b.log()
            );
            eprintln!("round {round}: refused outside PEER, retrying: {err}");
            wait_peer(admins[primary]);
        }
        eprintln!("round {round}: takeover in {:?}", started.elapsed());
        primary = standby;
        let st = status(admins[primary]);
        assert_eq!(st["role"], "primary");
        assert_eq!(
            st["epoch"].as_u64().unwrap(),
            epoch + 1,
            "each takeover starts a new epoch"
        );
        wait_peer(admins[primary]);
        assert_eq!(status(admins[1 - primary])["role"], "standby");
        // Page-identical after each switch.
        pause.store(true, Ordering::Relaxed);
        verify_nodes(a.admin, b.admin);
        pause.store(false, Ordering::Relaxed);
    }
    stop.store(true, Ordering::Relaxed);
    let mut reconnects = 0;
    for w in writers {
        reconnects += w.await.unwrap();
    }
    let want = acked.lock().unwrap().clone();
    assert!(want.len() > 100, "load barely ran: {} commits", want.len());
    assert!(
        reconnects >= takeovers(),
        "clients should have been moved at each takeover"
    );
    let c = connect(&both).await;
    let total: i64 = c
        .query_one("SELECT sum(bal) FROM bank", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 50_000, "money created or destroyed across takeovers");
    let present = acked_ids(&c).await;
    let missing: Vec<_> = want.difference(&present).take(10).collect();
    assert!(
        missing.is_empty(),
        "acknowledged commits lost across takeovers: {missing:?}"
    );
    verify_nodes(a.admin, b.admin);
}

#[test]
fn takeover_is_refused_against_a_primary() {
    let s = Server::start(&["--role", "primary"]);
    let out = Command::new(bin())
        .args(["takeover", "--node", &format!("127.0.0.1:{}", s.admin)])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a standby"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superasync_standby_takes_over_from_remote_catchup_and_loses_nothing() {
    // SUPERASYNC never reaches PEER; DB2 lets its standby take over
    // gracefully from REMOTE_CATCHUP after the gap is shipped.
    let a_local = format!("127.0.0.1:{}", free_port());
    let b_local = format!("127.0.0.1:{}", free_port());
    let a = Server::start_with(hadr_args(
        &a_local,
        &b_local,
        &["--role", "primary", "--hadr-syncmode", "SUPERASYNC"],
    ));
    let tmp = tempfile::tempdir().unwrap();
    let bdir = tmp.path().join("b");
    clone_to(&a_local, &bdir);
    let b = Server::on_dir(bdir, &hadr_args(&b_local, &a_local, &[]));
    let deadline = Instant::now() + Duration::from_secs(20);
    while status(a.admin)["hadr"]["standbys"][0]["hadr_connect_status"] != "CONNECTED" {
        assert!(Instant::now() < deadline, "standby never connected");
        std::thread::sleep(Duration::from_millis(50));
    }
    let c = a.client().await;
    c.batch_execute(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < 2000)
         INSERT INTO t(v) SELECT randomblob(500) FROM s;",
    )
    .await
    .unwrap();
    assert_eq!(
        status(a.admin)["hadr"]["standbys"][0]["hadr_state"],
        "REMOTE_CATCHUP"
    );
    let out = Command::new(bin())
        .args([
            "takeover",
            "--timeout",
            "30s",
            "--node",
            &format!("127.0.0.1:{}", b.admin),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(status(b.admin)["role"], "primary");
    let n: i64 = b
        .client()
        .await
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2000);
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(a.admin)["role"] != "standby" {
        assert!(
            Instant::now() < deadline,
            "old primary never became a standby"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    verify_nodes(a.admin, b.admin);
}
