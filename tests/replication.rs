//! HADR replication through the real binary: a primary, a standby made by
//! `hadr clone`, sync-mode guarantees after kill -9, catch-up, page-identical
//! replicas, reads on the standby, refusals.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Cluster {
    primary: Server,
    standby: Server,
    p_local: String,
    s_local: String,
    _tmp: tempfile::TempDir,
}

/// A primary in `mode` with one standby cloned from it while it serves.
fn cluster(mode: &str, extra_primary: &[&str]) -> Cluster {
    let p_local = format!("127.0.0.1:{}", free_port());
    let s_local = format!("127.0.0.1:{}", free_port());
    let mut pargs = vec!["--role", "primary", "--hadr-syncmode", mode];
    pargs.extend_from_slice(extra_primary);
    let primary = Server::start_with(hadr_args(&p_local, &s_local, &pargs));
    let tmp = tempfile::tempdir().unwrap();
    let sdir = tmp.path().join("standby");
    clone_to(&p_local, &sdir);
    let standby = Server::on_dir(sdir, &hadr_args(&s_local, &p_local, &[]));
    let c = Cluster {
        primary,
        standby,
        p_local,
        s_local,
        _tmp: tmp,
    };
    c.wait_state("PEER", Duration::from_secs(20))
        .or_else(|e| if mode == "SUPERASYNC" { Ok(()) } else { Err(e) })
        .unwrap();
    c
}

impl Cluster {
    fn pair_status(&self) -> serde_json::Value {
        self.primary.status()["hadr"]["standbys"][0].clone()
    }

    fn wait_state(&self, state: &str, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            let st = self.pair_status();
            if st["hadr_state"] == state {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "pair not {state} after {within:?}: {st}\nprimary: {}\nstandby: {}",
                    self.primary.log(),
                    self.standby.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn verify(&self) {
        verify_nodes(self.primary.admin, self.standby.admin);
    }
}

/// Wait until the standby has replayed everything it has durably received.
fn standby_settled(s: &Server) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = s.status();
        let h = &st["hadr"];
        if h["standby_replay_lsn"] == h["standby_flushed_lsn"]
            && h["standby_flushed_lsn"] == h["standby_received_lsn"]
        {
            return;
        }
        assert!(Instant::now() < deadline, "standby never settled: {st}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_and_nearsync_lose_no_acknowledged_commit_when_the_primary_dies() {
    for mode in ["SYNC", "NEARSYNC"] {
        let mut c = cluster(mode, &[]);
        c.primary
            .client()
            .await
            .batch_execute("CREATE TABLE acked(id INTEGER PRIMARY KEY, pad BLOB)")
            .await
            .unwrap();
        let acked: Arc<Mutex<BTreeSet<i64>>> = Arc::default();
        let writers: Vec<_> = (0..4)
            .map(|w| {
                tokio::spawn(acked_writer(
                    c.primary.conninfo(),
                    acked.clone(),
                    w * 1_000_000,
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        c.primary.kill9();
        for w in writers {
            let _ = w.await;
        }
        standby_settled(&c.standby);
        let s = c.standby.client().await;
        let present = acked_ids(&s).await;
        let want = acked.lock().unwrap().clone();
        assert!(
            want.len() > 50,
            "{mode}: load barely ran ({} commits)",
            want.len()
        );
        let missing: Vec<_> = want.difference(&present).take(10).collect();
        assert!(
            missing.is_empty(),
            "{mode}: acknowledged commits missing on the standby: {missing:?}"
        );
        eprintln!(
            "{mode}: all {} acknowledged commits on the standby",
            want.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superasync_keeps_committing_with_the_standby_down_and_it_catches_up() {
    let mut c = cluster("SUPERASYNC", &[]);
    let p = c.primary.client().await;
    p.batch_execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        .await
        .unwrap();
    c.standby.kill9();
    let started = Instant::now();
    for i in 0..200i64 {
        p.execute("INSERT INTO t VALUES ($1, 'while down')", &[&i])
            .await
            .unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "commits stalled without the standby"
    );
    assert_eq!(c.pair_status()["hadr_connect_status"], "DISCONNECTED");
    // Restarted, the standby catches up from the primary's retained log.
    c.standby.spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.pair_status()["standby_replay_lsn"] != c.primary.status()["log"]["end_lsn"] {
        assert!(
            Instant::now() < deadline,
            "standby did not catch up: {}",
            c.pair_status()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let n: i64 = c
        .standby
        .client()
        .await
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 200);
    c.verify();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_peer_window_a_lost_standby_blocks_commits_at_most_hadr_timeout() {
    let mut c = cluster("SYNC", &[]);
    let p = c.primary.client().await;
    p.batch_execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
        .await
        .unwrap();
    c.standby.kill9();
    let started = Instant::now();
    p.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap();
    // hadr_timeout is 1 s in these tests; kill -9 on loopback resets the socket, so usually far less.
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "commit blocked {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_window_blocks_commits_until_it_ends() {
    let mut c = cluster("NEARSYNC", &["--hadr-peer-window", "3s"]);
    let p = c.primary.client().await;
    p.batch_execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
        .await
        .unwrap();
    // Let a heartbeat renew the window promise.
    tokio::time::sleep(Duration::from_millis(600)).await;
    c.standby.kill9();
    let started = Instant::now();
    p.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap();
    let blocked = started.elapsed();
    assert!(
        blocked >= Duration::from_millis(1500),
        "commit did not wait for the peer window: {blocked:?}"
    );
    assert!(
        blocked < Duration::from_secs(3 + 1 + 2),
        "blocked longer than window + timeout: {blocked:?}"
    );
    assert_eq!(c.pair_status()["hadr_state"], "REMOTE_CATCHUP_PENDING");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_are_page_identical_after_ddl_vacuum_blobs_and_restarts() {
    let mut c = cluster("NEARSYNC", &[]);
    let p = c.primary.client().await;
    p.batch_execute(
        "CREATE TABLE a(id INTEGER PRIMARY KEY, v TEXT); CREATE INDEX a_v ON a(v);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < 2000) INSERT INTO a(v) SELECT 'row ' || i FROM s;
         CREATE TABLE blobs(id INTEGER PRIMARY KEY, b BLOB);",
    )
    .await
    .unwrap();
    let blob = vec![7u8; 3 << 20];
    p.execute("INSERT INTO blobs(b) VALUES ($1)", &[&blob])
        .await
        .unwrap();
    p.batch_execute("DELETE FROM a WHERE id % 2 = 0; DROP TABLE blobs;")
        .await
        .unwrap();
    p.batch_execute("VACUUM").await.unwrap();
    c.verify();
    // Standby restart: it resumes from its own log and catches up.
    c.standby.stop();
    p.batch_execute("ALTER TABLE a ADD COLUMN w INTEGER DEFAULT 1; UPDATE a SET w = id;")
        .await
        .unwrap();
    c.standby.spawn();
    c.verify();
    // Reads on the standby see the new column without reconnecting, and writes are refused.
    let s = c.standby.client().await;
    let w: i64 = s
        .query_one("SELECT w FROM a WHERE id = 3", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(w, 3);
    let e = s
        .execute("INSERT INTO a(v) VALUES ('x')", &[])
        .await
        .unwrap_err();
    assert_eq!(e.code().unwrap().code(), "25006");
}

#[test]
fn libpq_target_session_attrs_choose_primary_and_standby() {
    let c = cluster("NEARSYNC", &[]);
    let hosts = format!(
        "host=127.0.0.1,127.0.0.1 port={},{} user=t dbname=t",
        c.standby.port, c.primary.port
    );
    let (ok, out, err) = psql(
        &format!("{hosts} target_session_attrs=read-write"),
        &["-A", "-t", "-c", "SHOW in_hot_standby"],
        "",
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "off", "read-write should land on the primary");
    let (ok, out, err) = psql(
        &format!(
            "host=127.0.0.1,127.0.0.1 port={},{} user=t dbname=t target_session_attrs=standby",
            c.primary.port, c.standby.port
        ),
        &["-A", "-t", "-c", "SHOW in_hot_standby"],
        "",
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "on", "standby should land on the standby");
    assert_eq!(c.primary.admin_get("/primary").0, 200);
    assert_eq!(c.standby.admin_get("/primary").0, 503);
    assert_eq!(c.standby.admin_get("/standby").0, 200);
    let _ = (&c.p_local, &c.s_local);
}

#[test]
fn a_standby_of_another_database_is_refused_with_a_clear_message() {
    let c = cluster("NEARSYNC", &[]);
    // An unrelated primary that lists the same standby address.
    let other_local = format!("127.0.0.1:{}", free_port());
    let other = Server::start_with(hadr_args(&other_local, &c.s_local, &["--role", "primary"]));
    // Point a clone of the first primary at the other one.
    let tmp = tempfile::tempdir().unwrap();
    let sdir = tmp.path().join("s2");
    assert!(Command::new(bin())
        .args(["clone", "--from", &c.p_local, "--data"])
        .arg(&sdir)
        .status()
        .unwrap()
        .success());
    let s2 = Server::on_dir(
        sdir,
        &hadr_args(
            &c.s_local
                .replace(&c.s_local, &format!("127.0.0.1:{}", free_port())),
            &other_local,
            &[],
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = s2.status();
        let err = st["hadr"]["last_error"].as_str().unwrap_or("").to_string();
        if err.contains("holds database") || err.contains("not in this primary's hadr_target_list")
        {
            break;
        }
        assert!(Instant::now() < deadline, "no refusal reported: {st}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Both primaries keep serving.
    let (ok, _, err) = psql(&other.conninfo(), &["-c", "SELECT 1"], "");
    assert!(ok, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_apply_gives_read_your_writes_on_the_standby() {
    let c = cluster("NEARSYNC", &[]);
    let p = c.primary.client().await;
    let s = c.standby.client().await;
    p.batch_execute(
        "CREATE TABLE t(id INTEGER PRIMARY KEY); SET hadr.commit_wait = 'remote_apply';",
    )
    .await
    .unwrap();
    for i in 0..50i64 {
        p.execute("INSERT INTO t VALUES ($1)", &[&i]).await.unwrap();
        // The commit returned only after the standby replayed it.
        let n: i64 = s
            .query_one("SELECT count(*) FROM t", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            n,
            i + 1,
            "standby did not see commit {i} right after it returned"
        );
    }
    let e = p
        .batch_execute("SET hadr.commit_wait = 'sometimes'")
        .await
        .unwrap_err();
    assert_eq!(e.code().unwrap().code(), "22023");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_delay_holds_back_replay_and_max_replay_lag_refuses_stale_reads() {
    let p_local = format!("127.0.0.1:{}", free_port());
    let s_local = format!("127.0.0.1:{}", free_port());
    let primary = Server::start_with(hadr_args(
        &p_local,
        &s_local,
        &["--role", "primary", "--hadr-syncmode", "SUPERASYNC"],
    ));
    let tmp = tempfile::tempdir().unwrap();
    let sdir = tmp.path().join("standby");
    assert!(Command::new(bin())
        .args(["clone", "--from", &p_local, "--data"])
        .arg(&sdir)
        .output()
        .unwrap()
        .status
        .success());
    let standby = Server::on_dir(
        sdir,
        &hadr_args(&s_local, &p_local, &["--hadr-replay-delay", "2s"]),
    );
    let p = primary.client().await;
    let s = standby.client().await;
    p.batch_execute("CREATE TABLE t(id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1);")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Received, but younger than the delay: not replayed yet.
    assert!(
        s.query("SELECT * FROM t", &[]).await.is_err(),
        "table visible before the replay delay passed"
    );
    // A session that bounds staleness is refused while the lag exceeds its bound.
    s.batch_execute("SET hadr.max_replay_lag = '300ms'")
        .await
        .unwrap();
    let e = s.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(e.code().unwrap().code(), "40001", "{e}");
    assert!(
        e.to_string().contains("max_replay_lag") || format!("{e:?}").contains("max_replay_lag")
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let n: i64 = s
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "replayed after the delay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_whose_log_is_gone_re_clones_itself() {
    let small = [
        "--log-segment-size",
        "64KiB",
        "--log-retention",
        "64KiB",
        "--checkpoint-wal-size",
        "64KiB",
    ];
    let mut c = cluster("NEARSYNC", &small);
    let p = c.primary.client().await;
    p.batch_execute("CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)")
        .await
        .unwrap();
    assert_eq!(c.standby.stop().code(), Some(0));
    let standby_end = {
        let out = Command::new(bin())
            .args(["verify", "--json", "--data"])
            .arg(&c.standby.dir)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["lsn"].as_u64().unwrap()
    };
    // Enough writes that checkpoints and retention drop the log the standby needs.
    for i in 0..60i64 {
        p.execute("INSERT INTO t VALUES ($1, randomblob(40000))", &[&i])
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.primary.status()["log"]["start_lsn"].as_u64().unwrap() <= standby_end {
        assert!(
            Instant::now() < deadline,
            "retention never dropped the old log: {}",
            c.primary.status()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    c.standby.spawn();
    c.wait_state("PEER", Duration::from_secs(60)).unwrap();
    c.verify();
    assert!(c.standby.log().contains("re-clon"), "{}", c.standby.log());
    let n: i64 = c
        .standby
        .client()
        .await
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 60);
}

/// Transfers that keep the bank's total at 1,000,000, until `stop`.
async fn transfers(
    conninfo: String,
    seed: u64,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> u64 {
    let mut c = connect(&conninfo).await;
    let mut x = seed | 1;
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let (a, b, amt) = (
            (x % 100 + 1) as i64,
            ((x >> 16) % 100 + 1) as i64,
            ((x >> 32) % 50) as i64,
        );
        let t = c.transaction().await.unwrap();
        t.execute("UPDATE bank SET bal = bal - $1 WHERE id = $2", &[&amt, &a])
            .await
            .unwrap();
        t.execute("UPDATE bank SET bal = bal + $1 WHERE id = $2", &[&amt, &b])
            .await
            .unwrap();
        t.commit().await.unwrap();
        n += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clone_under_load_and_standby_reads_are_consistent_snapshots() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let p_local = format!("127.0.0.1:{}", free_port());
    let s_local = format!("127.0.0.1:{}", free_port());
    let primary = Server::start_with(hadr_args(&p_local, &s_local, &["--role", "primary"]));
    primary
        .client()
        .await
        .batch_execute("CREATE TABLE bank(id INTEGER PRIMARY KEY, bal INTEGER); WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < 100) INSERT INTO bank SELECT i, 10000 FROM s;")
        .await
        .unwrap();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|w| tokio::spawn(transfers(primary.conninfo(), 0x1234 + w, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Clone while the transfers run.
    let tmp = tempfile::tempdir().unwrap();
    let sdir = tmp.path().join("standby");
    clone_to(&p_local, &sdir);
    let standby = Server::on_dir(sdir, &hadr_args(&s_local, &p_local, &[]));
    // Reads on the standby during replay: every snapshot shows the conserved
    // total, within a transaction too, even as batches are applied underneath.
    let s = standby.client().await;
    let started = Instant::now();
    let mut reads = 0;
    while started.elapsed() < Duration::from_secs(3) {
        s.batch_execute("BEGIN").await.unwrap();
        let a: i64 = s
            .query_one("SELECT sum(bal) FROM bank", &[])
            .await
            .unwrap()
            .get(0);
        let n1: i64 = s
            .query_one("SELECT count(*) FROM bank WHERE bal <> 10000", &[])
            .await
            .unwrap()
            .get(0);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let b: i64 = s
            .query_one("SELECT sum(bal) FROM bank", &[])
            .await
            .unwrap()
            .get(0);
        let n2: i64 = s
            .query_one("SELECT count(*) FROM bank WHERE bal <> 10000", &[])
            .await
            .unwrap()
            .get(0);
        s.batch_execute("COMMIT").await.unwrap();
        assert_eq!(
            (a, b),
            (1_000_000, 1_000_000),
            "a standby snapshot saw a half-applied transfer"
        );
        assert_eq!(n1, n2, "a snapshot changed inside one transaction");
        reads += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let mut done = 0;
    for w in writers {
        done += w.await.unwrap();
    }
    assert!(
        done > 100 && reads > 20,
        "load too small: {done} transfers, {reads} reads"
    );
    verify_nodes(primary.admin, standby.admin);
}
