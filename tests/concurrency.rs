//! Concurrency: many sessions, one SQLite writer.

mod common;
use common::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_sessions_mix_reads_and_writes_without_busy_errors() -> Result<()> {
    let s = start(&[])?;
    let c = s.client().await?;
    c.batch_execute("CREATE TABLE hits(id INTEGER PRIMARY KEY, session INTEGER, n INTEGER); CREATE TABLE ctr(id INTEGER PRIMARY KEY, v INTEGER); INSERT INTO ctr VALUES (1, 0);")
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for sess in 0..200i64 {
        let ci = s.conninfo();
        tasks.push(tokio::spawn(async move {
            let c = connect(&ci).await.unwrap();
            for n in 0..10i64 {
                // Autocommit writes must never fail with busy.
                c.execute("INSERT INTO hits(session, n) VALUES ($1, $2)", &[&sess, &n])
                    .await
                    .map_err(|e| format!("insert: {e}"))?;
                c.execute("UPDATE ctr SET v = v + 1 WHERE id = 1", &[])
                    .await
                    .map_err(|e| format!("update: {e}"))?;
                let mine: i64 = c
                    .query_one("SELECT count(*) FROM hits WHERE session = $1", &[&sess])
                    .await
                    .map_err(|e| format!("select: {e}"))?
                    .get(0);
                if mine != n + 1 {
                    return Err(format!(
                        "session {sess} sees {mine} of its own rows after {} inserts",
                        n + 1
                    ));
                }
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let total: i64 = c
        .query_one("SELECT count(*) FROM hits", &[])
        .await
        .unwrap()
        .get(0);
    let v: i64 = c
        .query_one("SELECT v FROM ctr WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 2000);
    assert_eq!(v, 2000, "lost updates");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_conflict_after_a_read_is_40001_not_a_hang() -> Result<()> {
    let s = start(&[])?;
    let a = s.client().await?;
    let b = s.client().await?;
    a.batch_execute(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER); INSERT INTO t VALUES (1, 0);",
    )
    .await
    .unwrap();
    a.batch_execute("BEGIN").await.unwrap();
    let v: i64 = a
        .query_one("SELECT v FROM t WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 0);
    b.execute("UPDATE t SET v = 5 WHERE id = 1", &[])
        .await
        .unwrap();
    let started = Instant::now();
    let e = a
        .execute("UPDATE t SET v = v + 1 WHERE id = 1", &[])
        .await
        .unwrap_err();
    assert_eq!(e.code().unwrap().code(), "40001", "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "conflict took {:?}",
        started.elapsed()
    );
    a.batch_execute("ROLLBACK").await.unwrap();
    // The session and the data are fine afterwards.
    a.execute("UPDATE t SET v = v + 1 WHERE id = 1", &[])
        .await
        .unwrap();
    let v: i64 = b
        .query_one("SELECT v FROM t WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 6);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_in_transaction_session_releases_the_write_lock() -> Result<()> {
    let s = start(&["--idle-in-transaction-timeout", "1s"])?;
    let a = s.client().await?;
    let b = s.client().await?;
    a.batch_execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
        .await
        .unwrap();
    a.batch_execute("BEGIN; INSERT INTO t VALUES (1);")
        .await
        .unwrap();
    // b's autocommit write waits for a's write lock, then proceeds once a is closed.
    let started = Instant::now();
    b.execute("INSERT INTO t VALUES (2)", &[]).await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(10),
        "waited {waited:?}"
    );
    // a was terminated; its uncommitted row is gone.
    assert!(a.simple_query("SELECT 1").await.is_err());
    let n: i64 = b
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    Ok(())
}
