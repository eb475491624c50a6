//! Forced takeover, fencing and rejoin through the real binary: an old
//! primary with unshipped records is rewound (or re-cloned when the new
//! primary's log no longer reaches back), a restarted old primary never
//! accepts a write, a primary that sees a newer epoch stops writing, and a
//! peer-window-only forced takeover after kill -9 loses no acknowledged commit.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn status(admin: u16) -> Option<serde_json::Value> {
    let (code, body) = std::panic::catch_unwind(|| http_get(admin, "/status?hash=false")).ok()?;
    if code != 200 {
        return None;
    }
    serde_json::from_str(&body).ok()
}

/// Wait until `f` holds for the node's status.
fn wait_for(admin: u16, what: &str, secs: u64, f: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(st) = status(admin) {
            if f(&st) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} on admin port {admin}: {:?}",
            status(admin)
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn is_primary(st: &serde_json::Value) -> bool {
    st["role"] == "primary" && st["writable"] == true
}

fn follows(st: &serde_json::Value) -> bool {
    st["role"] == "standby" && st["hadr"]["hadr_connect_status"] == "CONNECTED"
}

fn takeover(admin: u16, flags: &[&str]) -> (bool, String) {
    let out = Command::new(bin())
        .args(["takeover", "--node", &format!("127.0.0.1:{admin}")])
        .args(flags)
        .args(["--timeout", "60s"])
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

struct Pair {
    a: Server,
    b: Server,
    _tmp: tempfile::TempDir,
}

/// A primary A and a standby B cloned from it.
fn pair(mode: &str, a_extra: &[&str], b_extra: &[&str]) -> Pair {
    let a_local = format!("127.0.0.1:{}", free_port());
    let b_local = format!("127.0.0.1:{}", free_port());
    let mut a_args = hadr_args(&a_local, &b_local, &["--hadr-syncmode", mode]);
    a_args.extend(["--role".to_string(), "primary".to_string()]);
    a_args.extend(a_extra.iter().map(|s| s.to_string()));
    let a = Server::start_with(a_args);
    let tmp = tempfile::tempdir().unwrap();
    let bdir = tmp.path().join("b");
    clone_to(&a_local, &bdir);
    let mut b_args = hadr_args(&b_local, &a_local, &["--hadr-syncmode", mode]);
    b_args.extend(b_extra.iter().map(|s| s.to_string()));
    let b = Server::on_dir(bdir, &b_args);
    wait_for(b.admin, "B following A", 30, follows);
    Pair { a, b, _tmp: tmp }
}

async fn count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

/// Try writes on `node` until it is a standby following its primary; none may succeed.
async fn never_writes_until_standby(node: &Server) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut refused = 0;
    loop {
        if let Ok((c, conn)) =
            tokio_postgres::connect(&node.conninfo(), tokio_postgres::NoTls).await
        {
            tokio::spawn(conn);
            match c
                .execute("INSERT INTO t(v) VALUES ('split-brain')", &[])
                .await
            {
                Ok(_) => panic!(
                    "the old primary accepted a write while the new primary runs:\n{}",
                    node.log()
                ),
                Err(e) => {
                    let code = e.code().map(|c| c.code().to_string());
                    assert!(
                        matches!(
                            code.as_deref(),
                            None | Some("25006") | Some("57P01") | Some("57P03")
                        ),
                        "unexpected error {e:?}"
                    );
                    refused += 1;
                }
            }
        }
        if status(node.admin).is_some_and(|s| follows(&s)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "old primary never became a standby:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused > 0, "no write was even attempted");
}

/// ASYNC primary A with records B never received (B was down), killed;
/// B forced to take over and written to; A restarted. A must refuse writes,
/// fence itself, rewind (or re-clone) and follow B; both verify identical.
async fn diverged_old_primary(b_extra: &[&str], expect_reclone: bool, a_force: bool) {
    let mut p = pair("ASYNC", &[], b_extra);
    let a = p.a.client().await;
    a.batch_execute(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < 3000)
         INSERT INTO t(v) SELECT 'base ' || i FROM s;",
    )
    .await
    .unwrap();
    verify_nodes(p.a.admin, p.b.admin);
    // Records B never gets: B is down while A commits them.
    p.b.kill9();
    a.batch_execute(
        "UPDATE t SET v = 'lost ' || id WHERE id % 7 = 0;
         CREATE TABLE lost(x INTEGER);
         INSERT INTO lost VALUES (1), (2), (3);",
    )
    .await
    .unwrap();
    drop(a);
    p.a.kill9();
    p.b.spawn();
    wait_for(p.b.admin, "B disconnected", 30, |s| s["role"] == "standby");
    // A graceful takeover needs the primary; a peer-window-only one needs a window.
    let (ok, out) = takeover(p.b.admin, &[]);
    assert!(!ok, "graceful takeover without a primary succeeded: {out}");
    let (ok, out) = takeover(p.b.admin, &["--force", "--peer-window-only"]);
    assert!(!ok && out.contains("peer"), "{out}");
    let (ok, out) = takeover(p.b.admin, &["--force"]);
    assert!(ok, "forced takeover failed: {out}\n{}", p.b.log());
    wait_for(p.b.admin, "B primary", 30, is_primary);
    let st = status(p.b.admin).unwrap();
    assert_eq!(st["epoch"], 2, "{st}");
    assert_eq!(st["epoch_history"].as_array().unwrap().len(), 2, "{st}");
    let b = p.b.client().await;
    b.batch_execute(
        "UPDATE t SET v = 'new ' || id WHERE id % 5 = 0;
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < 2000)
         INSERT INTO t(v) SELECT 'after takeover ' || i FROM s;",
    )
    .await
    .unwrap();
    if expect_reclone {
        // Enough churn that B's checkpoints and retention drop its log back to the takeover point.
        for i in 0..40 {
            b.execute(
                "UPDATE t SET v = v || $1 WHERE id % 3 = 0",
                &[&format!("{i}")],
            )
            .await
            .unwrap();
        }
        let st = status(p.b.admin).unwrap();
        let start = st["log"]["start_lsn"].as_u64().unwrap();
        let takeover_lsn = st["epoch_history"][1]["start_lsn"].as_u64().unwrap();
        assert!(
            start > takeover_lsn,
            "B's log still reaches back to the takeover point ({start} <= {takeover_lsn}): {st}"
        );
    }
    // The old primary comes back while the new one runs (with --force, the
    // operator insists; a reachable newer epoch still wins).
    if a_force {
        p.a.extra.push("--force".into());
    }
    p.a.spawn();
    never_writes_until_standby(&p.a).await;
    wait_for(p.a.admin, "A following B", 60, follows);
    let log = p.a.log();
    assert!(log.contains("FENCED"), "{log}");
    if expect_reclone {
        assert!(log.contains("re-clone complete"), "{log}");
    } else {
        assert!(log.contains("rewind complete"), "{log}");
        assert!(!log.contains("re-clone complete"), "{log}");
    }
    for line in log.lines().filter(|l| {
        l.contains("rewind complete") || l.contains("re-clone complete") || l.contains("FENCED")
    }) {
        eprintln!("old primary: {line}");
    }
    let st = status(p.a.admin).unwrap();
    assert_eq!(st["epoch"], 2, "{st}");
    b.execute("INSERT INTO t(v) VALUES ('after rejoin')", &[])
        .await
        .unwrap();
    verify_nodes(p.a.admin, p.b.admin);
    // A's unshipped records are gone; B's are there.
    let a = p.a.client().await;
    assert_eq!(
        count(&a, "SELECT count(*) FROM t WHERE v LIKE 'lost%'").await,
        0
    );
    assert_eq!(
        count(&a, "SELECT count(*) FROM sqlite_schema WHERE name = 'lost'").await,
        0
    );
    assert_eq!(
        count(&a, "SELECT count(*) FROM t WHERE v LIKE 'after takeover%'").await,
        2000
    );
    // The offline check passes too.
    drop(a);
    p.a.stop();
    let out = Command::new(bin())
        .args(["verify", "--data"])
        .arg(&p.a.dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diverged_old_primary_rewinds_and_rejoins() {
    diverged_old_primary(&[], false, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_primary_started_with_force_is_still_fenced() {
    diverged_old_primary(&[], false, true).await;
}

/// A primary restarted without its standby accepts no writes until the
/// standby is back; `--force` waives the wait once its peers were asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_rule_waits_for_the_standby_and_force_waives_it() {
    let mut p = pair("NEARSYNC", &[], &[]);
    p.a.client()
        .await
        .batch_execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        .await
        .unwrap();
    p.b.stop();
    p.a.stop();
    p.a.spawn();
    let a = p.a.client().await;
    let e = a
        .execute("INSERT INTO t(v) VALUES ('alone')", &[])
        .await
        .unwrap_err();
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "25006");
    assert!(db.hint().unwrap_or("").contains("start-up rule"), "{db:?}");
    let ro: String = a
        .query_one("SHOW transaction_read_only", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ro, "on");
    let st = status(p.a.admin).unwrap();
    assert_eq!(st["writes"]["state"], "awaiting_standby", "{st}");
    assert_eq!(p.a.admin_get("/primary").0, 503);
    // The standby comes back: writes open.
    p.b.spawn();
    wait_for(p.a.admin, "writable", 30, is_primary);
    a.execute("INSERT INTO t(v) VALUES ('with standby')", &[])
        .await
        .unwrap();
    // Alone again, with --force: writable once the (unreachable) peer was asked.
    p.b.stop();
    p.a.stop();
    p.a.extra.push("--force".into());
    p.a.spawn();
    wait_for(p.a.admin, "writable with --force", 30, is_primary);
    p.a.client()
        .await
        .execute("INSERT INTO t(v) VALUES ('forced')", &[])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diverged_old_primary_recloned_when_the_new_primary_log_is_gone() {
    diverged_old_primary(
        &[
            "--log-segment-size",
            "64KiB",
            "--log-retention",
            "0",
            "--checkpoint-wal-size",
            "64KiB",
        ],
        true,
        false,
    )
    .await;
}

/// kill -9 of the primary under load, then `takeover --force
/// --peer-window-only` on the standby: every acknowledged commit is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_window_only_forced_takeover_loses_no_acknowledged_commit() {
    for mode in ["SYNC", "NEARSYNC"] {
        let mut p = pair(mode, &["--hadr-peer-window", "20s"], &[]);
        p.a.client()
            .await
            .batch_execute("CREATE TABLE acked(id INTEGER PRIMARY KEY, pad BLOB)")
            .await
            .unwrap();
        wait_for(p.a.admin, "PEER", 30, |s| {
            s["hadr"]["standbys"][0]["hadr_state"] == "PEER"
        });
        let acked: Arc<Mutex<BTreeSet<i64>>> = Arc::default();
        let writers: Vec<_> = (0..4)
            .map(|w| tokio::spawn(acked_writer(p.a.conninfo(), acked.clone(), w * 1_000_000)))
            .collect();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        p.a.kill9();
        for w in writers {
            let _ = w.await;
        }
        let started = Instant::now();
        let (ok, out) = takeover(p.b.admin, &["--force", "--peer-window-only"]);
        assert!(ok, "{mode}: {out}\n{}", p.b.log());
        wait_for(p.b.admin, "B primary", 30, is_primary);
        let took = started.elapsed();
        let b = p.b.client().await;
        let present = acked_ids(&b).await;
        let want = acked.lock().unwrap().clone();
        assert!(want.len() > 50, "{mode}: load barely ran ({})", want.len());
        let missing: Vec<_> = want.difference(&present).collect();
        assert!(
            missing.is_empty(),
            "{mode}: lost acknowledged commits {missing:?}"
        );
        b.execute("INSERT INTO acked(id) VALUES (-1)", &[])
            .await
            .unwrap();
        eprintln!(
            "{mode}: forced takeover in {} ms, {} acknowledged commits all present",
            took.as_millis(),
            want.len()
        );
    }
}

/// A primary that meets a newer epoch stops writing within one heartbeat:
/// here the standby is forced to take over while the primary still runs.
/// The old primary then rejoins as a standby by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_that_sees_a_newer_epoch_stops_writing() {
    let p = pair("NEARSYNC", &[], &[]);
    let a = p.a.client().await;
    a.batch_execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        .await
        .unwrap();
    wait_for(p.a.admin, "PEER", 30, |s| {
        s["hadr"]["standbys"][0]["hadr_state"] == "PEER"
    });
    let (ok, out) = takeover(p.b.admin, &["--force"]);
    assert!(ok, "{out}");
    // From B's first moment as primary, A must stop within one heartbeat
    // (hadr_timeout 1s / 4) plus scheduling slack.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !status(p.b.admin).is_some_and(|s| s["role"] == "primary") {
        assert!(Instant::now() < deadline, "B never became primary");
        std::thread::sleep(Duration::from_millis(5));
    }
    let b_up = Instant::now();
    loop {
        match status(p.a.admin) {
            Some(s) if s["writable"] == true => {}
            _ => break,
        }
        assert!(
            b_up.elapsed() < Duration::from_secs(2),
            "A still writable {} ms after B became primary",
            b_up.elapsed().as_millis()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let fenced_after = b_up.elapsed();
    assert!(
        fenced_after < Duration::from_millis(750),
        "A stopped writing only {} ms after B became primary",
        fenced_after.as_millis()
    );
    assert!(a
        .execute("INSERT INTO t(v) VALUES ('x')", &[])
        .await
        .is_err());
    never_writes_until_standby(&p.a).await;
    verify_nodes(p.a.admin, p.b.admin);
    eprintln!(
        "old primary fenced {} ms after the new one came up",
        fenced_after.as_millis()
    );
}

/// `POST /fence?epoch=N`: an admin report of a newer epoch stops writes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_report_of_a_newer_epoch_fences_the_primary() {
    let p = pair("NEARSYNC", &[], &[]);
    let a = p.a.client().await;
    a.batch_execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        .await
        .unwrap();
    let (code, body) = http_post(p.a.admin, "/fence?epoch=1");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"fenced\":false"), "{body}");
    a.execute("INSERT INTO t(v) VALUES ('still primary')", &[])
        .await
        .unwrap();
    let (code, body) = http_post(p.a.admin, "/fence?epoch=7");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"fenced\":true"), "{body}");
    assert!(body.contains("\"writable\":false"), "{body}");
    let e = a
        .execute("INSERT INTO t(v) VALUES ('x')", &[])
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.code().map(|c| c.code()),
            None | Some("25006") | Some("57P01")
        ),
        "{e:?}"
    );
    let log_path = p.a.dir.with_extension("log");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .contains("FENCED")
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = Path::new(&log_path);
}

fn http_post(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (code, body)
}
