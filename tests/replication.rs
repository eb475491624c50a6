//! HADR replication through the real binary: a primary, a standby made by
//! `hadr clone`, sync-mode guarantees after kill -9, catch-up, page-identical
//! replicas, reads on the standby, refusals.

mod common;
use anyhow::Context;
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

/// A primary in `mode` with one standby cloned from it while it serves,
/// once the standby has caught up: in PEER, or for SUPERASYNC (which never
/// enters PEER) in REMOTE_CATCHUP with nothing left to send.
async fn cluster(mode: &str, extra_primary: &[&str]) -> Result<Cluster> {
    let p_local = repl_addr();
    let s_local = repl_addr();
    let mut pargs = vec!["--role", "primary", "--hadr-syncmode", mode];
    pargs.extend_from_slice(extra_primary);
    let primary = start_with(hadr_args(&p_local, &s_local, &pargs))?;
    let tmp = tempfile::tempdir()?;
    let sdir = tmp.path().join("standby");
    clone_to(&p_local, &sdir)?;
    let standby = on_dir(sdir, &hadr_args(&s_local, &p_local, &[]))?;
    let c = Cluster {
        primary,
        standby,
        p_local,
        s_local,
        _tmp: tmp,
    };
    if mode == "SUPERASYNC" {
        c.primary
            .wait_for(
                "standby caught up in REMOTE_CATCHUP",
                Duration::from_secs(20),
                |st| {
                    st.principal_in(PairState::RemoteCatchup)
                        && st.principal().is_some_and(|s| s.hadr_log_gap_bytes == 0)
                },
            )
            .await?;
    } else {
        c.wait_state(PairState::Peer, Duration::from_secs(20))
            .await?;
    }
    Ok(c)
}

impl Cluster {
    /// The primary's view of its standby.
    async fn pair_status(&self) -> Result<StandbyPair> {
        let st = self.primary.status().await?;
        Ok(st
            .principal()
            .context("the primary lists no standby")?
            .clone())
    }

    async fn wait_state(&self, state: PairState, within: Duration) -> Result<Status> {
        self.primary
            .wait_for(&format!("{state:?}"), within, |st| {
                st.principal().is_some_and(|s| s.hadr_state == state)
            })
            .await
            .with_context(|| format!("standby log:\n{}", self.standby.log_tail(30)))
    }

    fn verify(&self) -> Result<()> {
        verify_nodes(self.primary.admin, self.standby.admin)
    }
}

/// Wait until the standby has replayed everything it has durably received.
async fn standby_settled(s: &Server) -> Result<()> {
    s.wait_for("replayed what it received", Duration::from_secs(30), |st| {
        st.standby_view().is_some_and(|h| {
            h.standby_replay_lsn == h.standby_flushed_lsn
                && h.standby_flushed_lsn == h.standby_received_lsn
        })
    })
    .await
    .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_and_nearsync_lose_no_acknowledged_commit_when_the_primary_dies() -> Result<()> {
    for mode in ["SYNC", "NEARSYNC"] {
        let mut c = cluster(mode, &[]).await?;
        c.primary
            .client()
            .await?
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
        standby_settled(&c.standby).await?;
        let s = c.standby.client().await?;
        let present = acked_ids(&s).await?;
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
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superasync_keeps_committing_with_the_standby_down_and_it_catches_up() -> Result<()> {
    let mut c = cluster("SUPERASYNC", &[]).await?;
    let p = c.primary.client().await?;
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
    assert_eq!(
        c.pair_status().await?.hadr_connect_status,
        ConnectStatus::Disconnected
    );
    // Restarted, the standby catches up from the primary's retained log.
    c.standby.spawn()?;
    c.primary
        .wait_for("standby caught up", Duration::from_secs(20), |st| {
            st.principal()
                .is_some_and(|s| s.standby_replay_lsn == st.log.end_lsn)
        })
        .await?;
    let n: i64 = c
        .standby
        .client()
        .await?
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 200);
    c.verify()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_peer_window_a_lost_standby_blocks_commits_at_most_hadr_timeout() -> Result<()> {
    let mut c = cluster("SYNC", &[]).await?;
    let p = c.primary.client().await?;
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
    Ok(())
}

/// A standby that hangs (SIGSTOP: its sockets stay open, nothing answers)
/// holds a SYNC commit only until hadr_timeout finds it silent; woken up
/// (SIGCONT), it reconnects and the pair is in PEER again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_standby_is_dropped_after_hadr_timeout_and_rejoins_when_it_wakes() -> Result<()> {
    let c = cluster("SYNC", &[]).await?;
    let p = c.primary.client().await?;
    p.batch_execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
        .await?;
    c.standby.sigstop()?;
    let started = Instant::now();
    p.execute("INSERT INTO t VALUES (1)", &[]).await?;
    let blocked = started.elapsed();
    // No reset arrives from a frozen process: only hadr_timeout (1 s) notices.
    assert!(
        blocked >= Duration::from_millis(300) && blocked <= Duration::from_millis(3000),
        "commit blocked {blocked:?} with the standby frozen"
    );
    assert_eq!(
        c.pair_status().await?.hadr_state,
        PairState::RemoteCatchupPending
    );
    c.standby.sigcont()?;
    c.wait_state(PairState::Peer, Duration::from_secs(30))
        .await?;
    p.execute("INSERT INTO t VALUES (2)", &[]).await?;
    c.verify()
}

/// A primary that hangs (SIGSTOP: its kernel still acknowledges TCP, it
/// sends nothing) is found silent by its standby after hadr_timeout, though
/// the standby's own acknowledgements still leave without an error. Before
/// the standby kept a deadline across its loop, every heartbeat tick
/// restarted the read timeout and the link stayed CONNECTED forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_primary_is_found_silent_by_its_standby_after_hadr_timeout() -> Result<()> {
    let c = cluster("NEARSYNC", &[]).await?;
    c.primary.sigstop()?;
    let frozen = Instant::now();
    let st = c
        .standby
        .wait_for("the link down", Duration::from_secs(10), |st| !st.follows())
        .await;
    let took = frozen.elapsed();
    c.primary.sigcont()?;
    st?;
    // hadr_timeout is 1 s here.
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(3000),
        "the standby noticed a frozen primary after {took:?}"
    );
    c.wait_state(PairState::Peer, Duration::from_secs(30))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_window_blocks_commits_until_it_ends() -> Result<()> {
    let mut c = cluster("NEARSYNC", &["--hadr-peer-window", "3s"]).await?;
    let p = c.primary.client().await?;
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
    assert_eq!(
        c.pair_status().await?.hadr_state,
        PairState::RemoteCatchupPending
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_are_page_identical_after_ddl_vacuum_blobs_and_restarts() -> Result<()> {
    let mut c = cluster("NEARSYNC", &[]).await?;
    let p = c.primary.client().await?;
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
    c.verify()?;
    // Standby restart: it resumes from its own log and catches up.
    c.standby.stop()?;
    p.batch_execute("ALTER TABLE a ADD COLUMN w INTEGER DEFAULT 1; UPDATE a SET w = id;")
        .await
        .unwrap();
    c.standby.spawn()?;
    c.verify()?;
    // Reads on the standby see the new column without reconnecting, and writes are refused.
    let s = c.standby.client().await?;
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
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libpq_target_session_attrs_choose_primary_and_standby() -> Result<()> {
    let c = cluster("NEARSYNC", &[]).await?;
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
    assert!(c.primary.admin().is_primary().await?);
    assert!(!c.standby.admin().is_primary().await?);
    assert!(c.standby.admin().is_standby().await?);
    let _ = (&c.p_local, &c.s_local);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_of_another_database_is_refused_with_a_clear_message() -> Result<()> {
    let c = cluster("NEARSYNC", &[]).await?;
    // An unrelated primary that lists the same standby address.
    let other_local = repl_addr();
    let other = start_with(hadr_args(&other_local, &c.s_local, &["--role", "primary"]))?;
    // Point a clone of the first primary at the other one.
    let tmp = tempfile::tempdir().unwrap();
    let sdir = tmp.path().join("s2");
    assert!(Command::new(bin())
        .args(["clone", "--from", &c.p_local, "--data"])
        .arg(&sdir)
        .status()
        .unwrap()
        .success());
    let s2 = on_dir(
        sdir,
        &hadr_args(
            &c.s_local
                .replace(&c.s_local, &format!("127.0.0.1:{}", free_port())),
            &other_local,
            &[],
        ),
    )?;
    s2.wait_for("a refusal reported", Duration::from_secs(10), |st| {
        st.standby_view()
            .and_then(|v| v.last_error.as_deref())
            .is_some_and(|err| {
                err.contains("holds database")
                    || err.contains("not in this primary's hadr_target_list")
            })
    })
    .await?;
    // Both primaries keep serving.
    let (ok, _, err) = psql(&other.conninfo(), &["-c", "SELECT 1"], "");
    assert!(ok, "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_apply_gives_read_your_writes_on_the_standby() -> Result<()> {
    let c = cluster("NEARSYNC", &[]).await?;
    let p = c.primary.client().await?;
    let s = c.standby.client().await?;
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
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_delay_holds_back_replay_and_max_replay_lag_refuses_stale_reads() -> Result<()> {
    let p_local = repl_addr();
    let s_local = repl_addr();
    let primary = start_with(hadr_args(
        &p_local,
        &s_local,
        &["--role", "primary", "--hadr-syncmode", "SUPERASYNC"],
    ))?;
    let tmp = tempfile::tempdir().unwrap();
    let sdir = tmp.path().join("standby");
    assert!(Command::new(bin())
        .args(["clone", "--from", &p_local, "--data"])
        .arg(&sdir)
        .output()
        .unwrap()
        .status
        .success());
    let standby = on_dir(
        sdir,
        &hadr_args(&s_local, &p_local, &["--hadr-replay-delay", "2s"]),
    )?;
    let p = primary.client().await?;
    let s = standby.client().await?;
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
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_whose_log_is_gone_re_clones_itself() -> Result<()> {
    let small = [
        "--log-segment-size",
        "64KiB",
        "--log-retention",
        "64KiB",
        "--checkpoint-wal-size",
        "64KiB",
    ];
    let mut c = cluster("NEARSYNC", &small).await?;
    let p = c.primary.client().await?;
    p.batch_execute("CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)")
        .await
        .unwrap();
    assert_eq!(c.standby.stop()?.code(), Some(0));
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
    c.primary
        .wait_for(
            "retention dropped the log the standby needs",
            Duration::from_secs(20),
            |st| st.log.start_lsn > standby_end,
        )
        .await?;
    c.standby.spawn()?;
    c.wait_state(PairState::Peer, Duration::from_secs(60))
        .await?;
    c.verify()?;
    assert!(c.standby.log().contains("re-clon"), "{}", c.standby.log());
    let n: i64 = c
        .standby
        .client()
        .await?
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 60);
    Ok(())
}

/// Transfers that keep the bank's total at 1,000,000, until `stop`.
async fn transfers(
    conninfo: String,
    seed: u64,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> u64 {
    let mut c = connect(&conninfo).await.unwrap();
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
async fn clone_under_load_and_standby_reads_are_consistent_snapshots() -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let p_local = repl_addr();
    let s_local = repl_addr();
    let primary = start_with(hadr_args(&p_local, &s_local, &["--role", "primary"]))?;
    primary
        .client()
        .await?
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
    clone_to(&p_local, &sdir)?;
    let standby = on_dir(sdir, &hadr_args(&s_local, &p_local, &[]))?;
    // Reads on the standby during replay: every snapshot shows the conserved
    // total, within a transaction too, even as batches are applied underneath.
    let s = standby.client().await?;
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
    verify_nodes(primary.admin, standby.admin)?;
    Ok(())
}
