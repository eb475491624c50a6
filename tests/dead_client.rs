//! DB2 ACR's third pitfall, made impossible: a client whose host dies in
//! the middle of a write transaction (no FIN, no reset: its packets just
//! stop) must not hold hadr's single write lock until TCP gives up hours
//! later. The client runs in its own network namespace and is black-holed
//! with nftables (`hadr_testkit::netns`); the next writer must get the lock
//! within `client_dead_timeout`, the dead transaction must be rolled back,
//! and a commit-token question about it must be answered "not committed".
//!
//! Needs root, iproute2 and nftables (`.ci/run` installs them).

mod common;
use common::*;

use std::time::{Duration, Instant};

use hadr_testkit::netns::{Cluster, PG_PORT};

/// Short, so the test is quick; the mechanism does not depend on it.
const DEAD: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_client_inside_a_write_transaction_loses_the_write_lock_within_client_dead_timeout(
) -> Result<()> {
    let net = Cluster::new(&["db", "cli"])?;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("db");
    init(&dir)?;
    let mut db = net.server(
        &hadr(),
        "db",
        dir,
        vec![
            "--client-dead-timeout".into(),
            format!("{}s", DEAD.as_secs()),
            // Not the idle-in-transaction timeout that ends it.
            "--idle-in-transaction-timeout".into(),
            "10m".into(),
        ],
    );
    db.spawn()?;
    let c = db.client().await?;
    c.batch_execute("CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT)")
        .await?;

    // The doomed client, from inside host `cli`: it takes the write lock.
    let addr = net.addr("db", PG_PORT).parse()?;
    let raw = net.connect_from("cli", addr, Duration::from_secs(5))?;
    let raw = tokio::net::TcpStream::from_std(raw)?;
    let (doomed, conn) = tokio_postgres::Config::new()
        .user("x")
        .dbname("x")
        .connect_raw(raw, tokio_postgres::NoTls)
        .await?;
    let conn_task = tokio::spawn(conn);
    doomed
        .batch_execute(
            "SET hadr.commit_token = 'doomed-1'; BEGIN; INSERT INTO t VALUES (1, 'doomed')",
        )
        .await?;

    // Its host dies.
    net.black_hole("cli")?;
    let died = Instant::now();

    // The next writer waits for the lock, then gets it.
    c.batch_execute("SET hadr.commit_token = 'next-1'").await?;
    let r =
        tokio::time::timeout(DEAD * 5, c.execute("INSERT INTO t VALUES (2, 'next')", &[])).await;
    let waited = died.elapsed();
    assert!(
        matches!(r, Ok(Ok(1))),
        "the next writer did not get the write lock: {r:?}\n{}",
        db.log()
    );
    eprintln!("the next writer waited {waited:?} (client_dead_timeout {DEAD:?})");
    // Keepalive is counted in whole seconds: allow the rounding and a busy machine.
    assert!(
        waited < DEAD + Duration::from_secs(4),
        "waited {waited:?}, more than client_dead_timeout {DEAD:?} allows"
    );

    // The dead transaction was rolled back, and the question about its
    // token is answered, and finally.
    let ids: Vec<i64> = c
        .query("SELECT id FROM t ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, [2]);
    let row = c
        .query_one("SELECT hadr_commit_outcome('doomed-1')", &[])
        .await?;
    assert_eq!(row.get::<_, String>(0), "not committed");
    let row = c
        .query_one("SELECT hadr_commit_outcome('next-1')", &[])
        .await?;
    assert_eq!(row.get::<_, String>(0), "committed");
    conn_task.abort();
    Ok(())
}
