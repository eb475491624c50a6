//! Client sessions at their edges: writes through row-limited portals are
//! counted as commits, a client that stops reading cannot hold the write lock,
//! and connections beyond max_connections are refused at once.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Parse, Bind and Execute of `sql` on the unnamed statement and portal with
/// a row limit, then Sync.
fn limited_execute(sql: &str, max_rows: i32) -> Vec<u8> {
    let mut parse = cstr("");
    parse.extend(cstr(sql));
    parse.extend_from_slice(&0i16.to_be_bytes());
    let mut bind = cstr("");
    bind.extend(cstr(""));
    bind.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut execute = cstr("");
    execute.extend_from_slice(&max_rows.to_be_bytes());
    let mut out = frame(b'P', &parse);
    out.extend(frame(b'B', &bind));
    out.extend(frame(b'E', &execute));
    out.extend(frame(b'S', &[]));
    out
}

/// A counter from /metrics.
async fn metric(s: &Server, name: &str) -> u64 {
    let body = s.admin().metrics().await.expect("/metrics answers");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_row_limited_portals_count_as_commits() {
    let s = start(&[]).expect("the server starts");
    let c = s.client().await.expect("connect");
    c.batch_execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER)")
        .await
        .unwrap();
    let before = metric(&s, "hadr_commits_total").await;

    let mut r = raw_session(s.port);
    // Completes within the limit: DataRow, CommandComplete.
    for v in 0..3 {
        let sql = format!("INSERT INTO t(v) VALUES ({v}) RETURNING id");
        r.write_all(&limited_execute(&sql, 1)).unwrap();
        let tags: Vec<u8> = until_ready(&mut r).iter().map(|m| m.0).collect();
        assert_eq!(tags, b"12DCZ", "{sql}");
    }
    // More rows than the limit: suspended, yet committed (outside a block).
    r.write_all(&limited_execute(
        "INSERT INTO t(v) VALUES (10), (11) RETURNING id",
        1,
    ))
    .unwrap();
    let tags: Vec<u8> = until_ready(&mut r).iter().map(|m| m.0).collect();
    assert_eq!(tags, b"12DsZ");

    let n: i64 = c
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 5);
    assert_eq!(metric(&s, "hadr_commits_total").await, before + 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_cannot_hold_the_write_lock() {
    let s = start(&["--client-write-timeout", "1s"]).expect("the server starts");
    let c = s.client().await.expect("connect");
    c.batch_execute("CREATE TABLE t(v INTEGER)").await.unwrap();

    // Opens a write transaction, asks for ~40 MB of rows, never reads them.
    let mut stuck = raw_session(s.port);
    stuck
        .write_all(&frame(b'Q', &cstr("BEGIN; INSERT INTO t VALUES (1)")))
        .unwrap();
    let tags: Vec<u8> = until_ready(&mut stuck).iter().map(|m| m.0).collect();
    assert!(!tags.contains(&b'E'), "{tags:?}");
    stuck
        .write_all(&frame(
            b'Q',
            &cstr(
                "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 20000)
                 SELECT x, randomblob(1000) FROM n",
            ),
        ))
        .unwrap();

    // Another writer gets the write lock once the stuck session's send times out.
    let began = Instant::now();
    let other = s.client().await.expect("connect");
    tokio::time::timeout(
        Duration::from_secs(15),
        other.execute("INSERT INTO t VALUES (2)", &[]),
    )
    .await
    .expect("the write lock was not freed")
    .unwrap();
    assert!(began.elapsed() < Duration::from_secs(15));
    // The stuck transaction was rolled back.
    let rows: Vec<i64> = c
        .query("SELECT v FROM t ORDER BY v", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, vec![2]);
    drop(stuck);
}

/// Open `n` connections at once; the clients admitted and the number refused with 53300.
async fn burst(conninfo: &str, n: usize) -> (Vec<tokio_postgres::Client>, usize) {
    let attempts: Vec<_> = (0..n)
        .map(|_| {
            let info = conninfo.to_string();
            tokio::spawn(async move { tokio_postgres::connect(&info, tokio_postgres::NoTls).await })
        })
        .collect();
    let mut held = Vec::new();
    let mut refused = 0;
    for a in attempts {
        match a.await.unwrap() {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                held.push(client);
            }
            Err(e) => {
                assert_eq!(e.code().map(|c| c.code()), Some("53300"), "{e}");
                refused += 1;
            }
        }
    }
    (held, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_get_53300_and_the_node_keeps_serving() {
    // MAX for everyone, RESERVED more for the reserved user only.
    const MAX: usize = 4;
    const RESERVED: usize = 2;
    const EXTRA: usize = 3;
    let s = start(&[
        "--max-connections",
        &(MAX + RESERVED).to_string(),
        "--reserved-connections",
        &RESERVED.to_string(),
    ])
    .expect("the server starts");
    // MAX + EXTRA at once: never more than MAX admitted, and EXTRA refused
    // once the slots of connections that just closed (the harness's
    // readiness probe, an earlier round) are given back.
    let mut round = 0;
    let mut held = loop {
        round += 1;
        let (held, refused) = burst(&s.conninfo(), MAX + EXTRA).await;
        assert!(held.len() <= MAX, "{} admitted", held.len());
        assert_eq!(held.len() + refused, MAX + EXTRA);
        if refused == EXTRA {
            break held;
        }
        assert!(round < 20, "slots were not given back");
        drop(held);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for c in &held {
        c.execute("SELECT 1", &[]).await.unwrap();
    }

    // A client that sends nothing is refused too, promptly: no thread
    // waits for a start-up message that never comes.
    let mut silent = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut got = Vec::new();
    let _ = silent.read_to_end(&mut got);
    assert_eq!(sqlstate_of(&got).as_deref(), Some("53300"), "{got:?}");

    // A full server still honours a CancelRequest.
    let token = held[0].cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    });
    let e = tokio::time::timeout(
        Duration::from_secs(30),
        held[0].query("WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 10000000000) SELECT count(*) FROM r", &[]),
    )
    .await
    .expect("the cancel request was not honoured")
    .unwrap_err();
    canceller.await.unwrap();
    assert_eq!(e.code().map(|c| c.code()), Some("57014"), "{e}");

    // The reserved user still gets in, RESERVED times and no more; with
    // TLS asked first (psql's default) as without.
    let admin = s.conninfo().replace("user=test", "user=hadr_admin");
    assert!(admin.contains("user=hadr_admin"), "{admin}");
    let (reserved, refused) = burst(&admin, RESERVED + 1).await;
    assert_eq!((reserved.len(), refused), (RESERVED, 1));
    for c in &reserved {
        c.execute("SELECT 1", &[]).await.unwrap();
    }
    let (ok, _, err) = psql(&admin, &["-c", "SELECT 1"], "");
    assert!(!ok && err.contains("too many clients"), "{err}");
    drop(reserved);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, out, err) = psql(&admin, &["-A", "-t", "-c", "SELECT 1"], "");
        if ok {
            assert_eq!(out.trim(), "1");
            break;
        }
        assert!(Instant::now() < deadline, "psql as hadr_admin: {err}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Everyone else is still refused.
    let (_, refused) = burst(&s.conninfo(), 1).await;
    assert_eq!(refused, 1);

    // A freed slot is usable again.
    held.pop();
    let deadline = Instant::now() + Duration::from_secs(10);
    let again = loop {
        match tokio_postgres::connect(&s.conninfo(), tokio_postgres::NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                break client;
            }
            Err(e) if Instant::now() < deadline => {
                assert_eq!(e.code().map(|c| c.code()), Some("53300"), "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("a freed slot was not reused: {e}"),
        }
    };
    again.execute("SELECT 1", &[]).await.unwrap();
}
