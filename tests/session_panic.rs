//! A panic inside one client session ends only that session: it releases
//! its connection slot, its open-session count, its registry entry (and
//! with it the second handle on its socket) and its write permit, rolls
//! back its transaction, and the node keeps serving everyone else. And the
//! malformed messages that made pgwire panic inside a session (found by
//! the fuzz target `pg_frontend`) now get 08P01 without any panic.
//!
//! The panic comes from a debug-build failpoint (crates/hadr-server/src/
//! session/mod.rs, `failpoint_panic`): a Query whose text is the value of
//! HADR_FAILPOINT_PANIC_QUERY in the server's environment.

mod common;
use common::*;
use std::io::Write;
use std::time::{Duration, Instant};

const TRIGGER: &str = "SELECT 'hadr failpoint: panic'";

/// The metrics once only `c` is left open: a client that has just gone
/// (the test kit's ready probe) is counted until its session thread sees
/// the close. A session that never goes (a leak) is still there after 5 s,
/// which the callers' assertions catch.
async fn settled_metrics(s: &Server) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = s.admin().metrics().await?;
        if metric(&m, "hadr_sessions_open") == Some(1) || Instant::now() > deadline {
            return Ok(m);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Servers inherit this test binary's environment. Set once, before any
/// server starts, by whichever test comes first (set_var must not race
/// with a process spawn in another thread).
fn arm_failpoint() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::env::set_var("HADR_FAILPOINT_PANIC_QUERY", TRIGGER));
}

fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_session_releases_everything_and_the_node_keeps_serving() -> Result<()> {
    arm_failpoint();
    // Four slots in all (one for `c`, one for the test kit's ready probe,
    // whose session may still be ending): leaking one per panic would lock
    // everyone out before the fifth; a leaked write permit would make the last INSERT wait
    // out the write wait timeout and fail.
    let s = start(&[
        "--max-connections",
        "4",
        "--reserved-connections",
        "0",
        "--write-wait-timeout",
        "3s",
    ])?;
    let c = s.client().await?;
    c.batch_execute("CREATE TABLE t(v INTEGER)").await.unwrap();

    let panics = 5;
    for i in 0..panics {
        let mut r = raw_session(s.port);
        // An open transaction holding the write permit when the panic comes.
        r.write_all(&frame(b'Q', &cstr("BEGIN"))).unwrap();
        until_ready(&mut r);
        r.write_all(&frame(b'Q', &cstr(&format!("INSERT INTO t VALUES ({i})"))))
            .unwrap();
        let answer = until_ready(&mut r);
        assert!(answer.iter().any(|(t, _)| *t == b'C'), "{answer:?}");
        let t0 = Instant::now();
        r.write_all(&frame(b'Q', &cstr(TRIGGER))).unwrap();
        let out = read_all(r);
        // The client is told, and its connection closes at once: a leaked
        // registry entry would keep a handle on the socket open, and the
        // read would only end at raw_session's 10 s read timeout.
        assert_eq!(sqlstate_of(&out).as_deref(), Some("XX000"), "{out:?}");
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the connection stayed open {:?} after the panic",
            t0.elapsed()
        );
    }

    // The failpoint really fired each time (the negative control for the
    // checks below: without it they would pass without any panic).
    let m = settled_metrics(&s).await?;
    assert_eq!(metric(&m, "hadr_session_panics_total"), Some(panics), "{m}");
    assert_eq!(metric(&m, "hadr_sessions_open"), Some(1), "{m}");

    // Slots were given back: two more clients fit beside `c`.
    let c2 = s.client().await?;
    let c3 = s.client().await?;
    // The write permit was released and the panicked transactions rolled back.
    let t0 = Instant::now();
    c2.batch_execute("INSERT INTO t VALUES (100)")
        .await
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    let rows: Vec<i64> = c3
        .query("SELECT v FROM t ORDER BY v", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .collect();
    assert_eq!(rows, vec![100]);
    // And the first client was never disturbed.
    c.batch_execute("INSERT INTO t VALUES (101)").await.unwrap();
    let log = s.log();
    assert!(
        log.contains("a session ended on an internal error"),
        "{}",
        s.log_tail(40)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_that_panicked_pgwire_get_a_protocol_error_and_leak_nothing() -> Result<()> {
    arm_failpoint();
    // Four slots (see above): ten leaked ones would lock everyone out.
    let s = start(&["--max-connections", "4", "--reserved-connections", "0"])?;
    let c = s.client().await?;
    // Each of these made pgwire 0.42 panic in the session thread (a Buf
    // getter past the end, or split_to past it): the thread died without
    // giving back its open-session count or its registry entry, which kept
    // a second handle on the socket open, so the client never saw it close.
    let bad: [&[u8]; 5] = [
        b"P\0\0\0\x04",
        b"B\0\0\0\x0e\0\0\0\0\0\x01\x7f\xff\xff\xff",
        b"D\0\0\0\x04",
        b"C\0\0\0\x04",
        b"E\0\0\0\x06p\0",
    ];
    for round in 0..2 {
        for m in bad {
            let mut r = raw_session(s.port);
            let t0 = Instant::now();
            r.write_all(m).unwrap();
            let out = read_all(r);
            assert_eq!(
                sqlstate_of(&out).as_deref(),
                Some("08P01"),
                "{m:?}: {out:?}"
            );
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "round {round}, {m:?}: the connection stayed open {:?}",
                t0.elapsed()
            );
        }
    }
    let m = settled_metrics(&s).await?;
    assert_eq!(metric(&m, "hadr_session_panics_total"), Some(0), "{m}");
    assert_eq!(metric(&m, "hadr_sessions_open"), Some(1), "{m}");
    // Ten sessions came and went through four slots; two more still fit.
    let c2 = s.client().await?;
    let _c3 = s.client().await?;
    c2.batch_execute("CREATE TABLE t(v INTEGER); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    Ok(())
}
