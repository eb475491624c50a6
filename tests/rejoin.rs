//! Forced takeover, fencing and rejoin through the real binary: an old
//! primary with unshipped records is rewound (or re-cloned when the new
//! primary's log no longer reaches back), a restarted old primary never
//! accepts a write, a primary that sees a newer epoch stops writing, and a
//! peer-window-only forced takeover after kill -9 loses no acknowledged commit.

mod common;
use common::*;
use hadr_admin_api::Writes;
use std::collections::BTreeSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Wait up to `secs` until `f` holds for the node's status.
async fn wait_for(
    node: &Server,
    what: &str,
    secs: u64,
    f: impl Fn(&Status) -> bool,
) -> Result<Status> {
    node.wait_for(what, Duration::from_secs(secs), f).await
}

fn is_primary(st: &Status) -> bool {
    st.is_writable_primary()
}

fn follows(st: &Status) -> bool {
    st.follows()
}

fn in_peer(st: &Status) -> bool {
    st.principal()
        .is_some_and(|s| s.hadr_state == PairState::Peer)
}

fn takeover(admin: u16, flags: &[&str]) -> (bool, String) {
    let out = admin_cmd()
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
async fn pair(mode: &str, a_extra: &[&str], b_extra: &[&str]) -> Result<Pair> {
    let a_local = repl_addr();
    let b_local = repl_addr();
    let mut a_args = hadr_args(&a_local, &b_local, &["--hadr-syncmode", mode]);
    a_args.extend(["--role".to_string(), "primary".to_string()]);
    a_args.extend(a_extra.iter().map(|s| s.to_string()));
    let a = start_with(a_args)?;
    let tmp = tempfile::tempdir()?;
    let bdir = tmp.path().join("b");
    clone_to(&a_local, &bdir)?;
    let mut b_args = hadr_args(&b_local, &a_local, &["--hadr-syncmode", mode]);
    b_args.extend(b_extra.iter().map(|s| s.to_string()));
    let b = on_dir(bdir, &b_args)?;
    wait_for(&b, "B following A", 30, follows).await?;
    Ok(Pair { a, b, _tmp: tmp })
}

async fn count(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

/// Try writes on `node` until it is a standby following its primary; none may succeed.
async fn never_writes_until_standby(node: &Server) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut refused = 0;
    loop {
        let attempt = tokio_postgres::connect(&node.conninfo(), tokio_postgres::NoTls).await;
        // A session refused at start-up (57P03: the node is fenced, or its
        // short-lived run before a rewind is stopping) was an attempt too:
        // a node that restarts, rewinds and follows within one poll would
        // otherwise leave nothing counted.
        if let Err(e) = &attempt {
            if e.code().is_some_and(|c| c.code() == "57P03") {
                refused += 1;
            }
        }
        if let Ok((c, conn)) = attempt {
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
        if node.status().await.is_ok_and(|s| follows(&s)) {
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
    Ok(())
}

/// ASYNC primary A with records B never received (B was down), killed;
/// B forced to take over and written to; A restarted. A must refuse writes,
/// fence itself, rewind (or re-clone) and follow B; both verify identical.
async fn diverged_old_primary(b_extra: &[&str], expect_reclone: bool, a_force: bool) -> Result<()> {
    let mut p = pair("ASYNC", &[], b_extra).await?;
    let a = p.a.client().await?;
    a.batch_execute(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < 3000)
         INSERT INTO t(v) SELECT 'base ' || i FROM s;",
    )
    .await
    .unwrap();
    verify_nodes(p.a.admin, p.b.admin)?;
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
    p.b.spawn()?;
    wait_for(&p.b, "B disconnected", 30, |s| s.role == NodeRole::Standby).await?;
    // A graceful takeover needs the primary; a peer-window-only one needs a window.
    let (ok, out) = takeover(p.b.admin, &[]);
    assert!(!ok, "graceful takeover without a primary succeeded: {out}");
    let (ok, out) = takeover(p.b.admin, &["--force", "--peer-window-only"]);
    assert!(!ok && out.contains("peer"), "{out}");
    let (ok, out) = takeover(p.b.admin, &["--force"]);
    assert!(ok, "forced takeover failed: {out}\n{}", p.b.log());
    let st = wait_for(&p.b, "B primary", 30, is_primary).await?;
    assert_eq!(st.epoch, 2, "{}", brief(&st));
    assert_eq!(st.epoch_history.len(), 2, "{:?}", st.epoch_history);
    let b = p.b.client().await?;
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
        let st = p.b.status().await?;
        let start = st.log.start_lsn;
        let takeover_lsn = st.epoch_history[1].start_lsn;
        assert!(
            start > takeover_lsn,
            "B's log still reaches back to the takeover point ({start} <= {takeover_lsn})"
        );
    }
    // The old primary comes back while the new one runs (with --force, the
    // operator insists; a reachable newer epoch still wins).
    if a_force {
        p.a.extra.push("--force".into());
    }
    p.a.spawn()?;
    never_writes_until_standby(&p.a).await?;
    wait_for(&p.a, "A following B", 60, follows).await?;
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
    let st = p.a.status().await?;
    assert_eq!(st.epoch, 2, "{}", brief(&st));
    b.execute("INSERT INTO t(v) VALUES ('after rejoin')", &[])
        .await
        .unwrap();
    verify_nodes(p.a.admin, p.b.admin)?;
    // A's unshipped records are gone; B's are there.
    let a = p.a.client().await?;
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
    p.a.stop()?;
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
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diverged_old_primary_rewinds_and_rejoins() -> Result<()> {
    diverged_old_primary(&[], false, false).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_primary_started_with_force_is_still_fenced() -> Result<()> {
    diverged_old_primary(&[], false, true).await?;
    Ok(())
}

/// A primary restarted without its standby accepts no writes until the
/// standby is back; `--force` waives the wait once its peers were asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_rule_waits_for_the_standby_and_force_waives_it() -> Result<()> {
    let mut p = pair("NEARSYNC", &[], &[]).await?;
    p.a.client()
        .await?
        .batch_execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        .await
        .unwrap();
    p.b.stop()?;
    p.a.stop()?;
    p.a.spawn()?;
    let a = p.a.client().await?;
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
    let st = p.a.status().await?;
    assert_eq!(st.writes, Writes::AwaitingStandby, "{}", brief(&st));
    assert!(!p.a.admin().is_primary().await?);
    // The standby comes back: writes open.
    p.b.spawn()?;
    wait_for(&p.a, "writable", 30, is_primary).await?;
    a.execute("INSERT INTO t(v) VALUES ('with standby')", &[])
        .await
        .unwrap();
    // Alone again, with --force: writable once the (unreachable) peer was asked.
    p.b.stop()?;
    p.a.stop()?;
    p.a.extra.push("--force".into());
    p.a.spawn()?;
    wait_for(&p.a, "writable with --force", 30, is_primary).await?;
    p.a.client()
        .await?
        .execute("INSERT INTO t(v) VALUES ('forced')", &[])
        .await
        .unwrap();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diverged_old_primary_recloned_when_the_new_primary_log_is_gone() -> Result<()> {
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
    .await?;
    Ok(())
}

/// kill -9 of the primary under load, then `takeover --force
/// --peer-window-only` on the standby: every acknowledged commit is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_window_only_forced_takeover_loses_no_acknowledged_commit() -> Result<()> {
    for mode in ["SYNC", "NEARSYNC"] {
        let mut p = pair(mode, &["--hadr-peer-window", "20s"], &[]).await?;
        p.a.client()
            .await?
            .batch_execute("CREATE TABLE acked(id INTEGER PRIMARY KEY, pad BLOB)")
            .await
            .unwrap();
        wait_for(&p.a, "PEER", 30, in_peer).await?;
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
        wait_for(&p.b, "B primary", 30, is_primary).await?;
        let took = started.elapsed();
        let b = p.b.client().await?;
        let present = acked_ids(&b).await?;
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
    Ok(())
}

/// A primary that meets a newer epoch stops writing within one heartbeat:
/// here the standby is forced to take over while the primary still runs.
/// The old primary then rejoins as a standby by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_that_sees_a_newer_epoch_stops_writing() -> Result<()> {
    let p = pair("NEARSYNC", &[], &[]).await?;
    let a = p.a.client().await?;
    a.batch_execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        .await
        .unwrap();
    wait_for(&p.a, "PEER", 30, in_peer).await?;
    let (ok, out) = takeover(p.b.admin, &["--force"]);
    assert!(ok, "{out}");
    // From B's first moment as primary, A must stop within one heartbeat
    // (hadr_timeout 1s / 4) plus scheduling slack.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !p
        .b
        .status()
        .await
        .is_ok_and(|s| s.role == NodeRole::Primary)
    {
        assert!(Instant::now() < deadline, "B never became primary");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let b_up = Instant::now();
    loop {
        match p.a.status().await {
            Ok(s) if s.writable => {}
            _ => break,
        }
        assert!(
            b_up.elapsed() < Duration::from_secs(2),
            "A still writable {} ms after B became primary",
            b_up.elapsed().as_millis()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
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
    never_writes_until_standby(&p.a).await?;
    verify_nodes(p.a.admin, p.b.admin)?;
    eprintln!(
        "old primary fenced {} ms after the new one came up",
        fenced_after.as_millis()
    );
    Ok(())
}

/// `POST /fence?epoch=N`: an admin report of a newer epoch stops writes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_report_of_a_newer_epoch_fences_the_primary() -> Result<()> {
    let p = pair("NEARSYNC", &[], &[]).await?;
    let a = p.a.client().await?;
    a.batch_execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        .await
        .unwrap();
    let answer = p.a.admin().fence(1).await?;
    assert!(!answer.fenced, "{answer:?}");
    a.execute("INSERT INTO t(v) VALUES ('still primary')", &[])
        .await
        .unwrap();
    let answer = p.a.admin().fence(7).await?;
    assert!(answer.fenced, "{answer:?}");
    assert!(!answer.writable, "{answer:?}");
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
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.a.log().contains("FENCED") {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
