//! `hadr-client` (crates/hadr-client) against the real binary:
//! - seamless retry: a read and a transaction's first statement are
//!   replayed invisibly after their connection is cut; a cut in the middle
//!   of a transaction gives the one distinct "rerouted, rolled back" error;
//! - an ambiguous COMMIT (and an autocommit write whose reply was lost) is
//!   resolved through its commit token, both ways;
//! - writers keep going through graceful takeovers and a forced failover
//!   (kill -9, automatic failover through a file arbiter) without an error,
//!   nothing acknowledged is lost, and the longest gap is measured;
//! - a client restarted while its only configured host is a standby under
//!   rebuild (57P03) or down reaches the primary through its host cache;
//! - a frozen primary (SIGSTOP: keepalive cannot tell) is left at the
//!   statement timeout, and the write is resolved on the new primary.
//!
//! The cuts come from a TCP proxy in this file between the client and the
//! server: it drops a request before the server sees it, or a reply after
//! the server sent it, and closes both sides.

mod common;
use common::*;
use hadr_client::{Client, Committed, Config, Error};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Which direction a cut watches.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Cut {
    /// A client→server chunk with the pattern is dropped: the server never
    /// sees the request.
    Request,
    /// A server→client chunk with the pattern is dropped: the server ran
    /// the request, the client never hears of it.
    Reply,
}

type Rule = Arc<Mutex<Option<(Cut, Vec<u8>)>>>;

/// A TCP proxy to one server that cuts a connection on cue.
struct Proxy {
    port: u16,
    rule: Rule,
    cuts: Arc<AtomicUsize>,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let rule: Rule = Arc::default();
        let cuts = Arc::new(AtomicUsize::new(0));
        let (r, c) = (rule.clone(), cuts.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = l.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                tokio::spawn(pump(client, server, r.clone(), c.clone()));
            }
        });
        Proxy { port, rule, cuts }
    }

    /// Cut the next connection whose traffic in `dir` contains `pattern`.
    fn arm(&self, dir: Cut, pattern: &str) {
        *self.rule.lock().unwrap() = Some((dir, pattern.as_bytes().to_vec()));
    }

    fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }
}

/// Copy both ways until either side closes or the rule fires (then both
/// sides are closed: the sockets drop with the tasks).
async fn pump(client: TcpStream, server: TcpStream, rule: Rule, cuts: Arc<AtomicUsize>) {
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let (dead_tx, dead_rx) = tokio::sync::watch::channel(false);
    let dead_tx = Arc::new(dead_tx);
    let one = |dir: Cut,
               mut r: tokio::net::tcp::OwnedReadHalf,
               mut w: tokio::net::tcp::OwnedWriteHalf| {
        let (rule, cuts, dead_tx, mut dead_rx) =
            (rule.clone(), cuts.clone(), dead_tx.clone(), dead_rx.clone());
        async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let n = tokio::select! {
                    n = r.read(&mut buf) => match n { Ok(n) if n > 0 => n, _ => break },
                    _ = dead_rx.changed() => break,
                };
                let fire = {
                    let mut g = rule.lock().unwrap();
                    let hit = g.as_ref().is_some_and(|(d, p)| {
                        *d == dir && buf[..n].windows(p.len()).any(|w| w == p.as_slice())
                    });
                    if hit {
                        *g = None;
                    }
                    hit
                };
                if fire {
                    cuts.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                if w.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            let _ = dead_tx.send(true);
        }
    };
    tokio::join!(one(Cut::Request, cr, sw), one(Cut::Reply, sr, cw));
}

/// One server (a primary alone) with a table `t(id)`, and a proxy to it.
async fn proxied() -> Result<(Server, Proxy)> {
    let s = start(&["--role", "primary"])?;
    s.client()
        .await?
        .batch_execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        .await?;
    let p = Proxy::start(s.port).await;
    Ok((s, p))
}

fn through(p: &Proxy) -> Config {
    format!(
        "host=127.0.0.1 port={} user=t dbname=t reroute_timeout=20",
        p.port
    )
    .parse()
    .unwrap()
}

async fn ids(s: &Server) -> Result<Vec<i64>> {
    Ok(s.client()
        .await?
        .query("SELECT id FROM t ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_and_a_first_statement_are_retried_invisibly_and_a_mid_transaction_cut_is_rerouted(
) -> Result<()> {
    let (s, p) = proxied().await?;
    let mut c = Client::connect(through(&p)).await?;
    assert_eq!(c.host().map(|h| h.port), Some(p.port));
    // The node advertised itself: the client knows it beyond the proxy.
    let t = c.topology().expect("the server advertises hadr.topology");
    assert_eq!(t.primary.map(|h| h.port), Some(s.port));

    // Its socket has TCP keepalive on (ss shows the keepalive timer).
    let ss = std::process::Command::new("ss")
        .args(["-tnoH", "state", "established"])
        .arg(format!("( dport = :{} )", p.port))
        .output()?;
    let ss = String::from_utf8_lossy(&ss.stdout);
    assert!(ss.contains("timer:(keepalive"), "{ss}");

    // A read whose request never arrives, and one whose reply is lost.
    p.arm(Cut::Request, "read-one");
    let r = c.query("SELECT 'read-one'", &[]).await?;
    assert_eq!(r[0].get::<_, &str>(0), "read-one");
    assert_eq!(p.cuts(), 1, "the read's connection was not cut");
    let mut c = Client::connect(through(&p)).await?;
    p.arm(Cut::Reply, "read-two");
    let r = c.query("SELECT 'read-two'", &[]).await?;
    assert_eq!(r[0].get::<_, &str>(0), "read-two");
    assert_eq!(p.cuts(), 2);

    // A transaction's first statement: request lost, then reply lost (the
    // server ran it in a block that dies with the connection).
    for (n, cut, pattern) in [
        (1i64, Cut::Request, "VALUES (1, 'first')"),
        (2, Cut::Reply, "INSERT 0 1"),
    ] {
        let mut c = Client::connect(through(&p)).await?;
        let cuts = p.cuts();
        p.arm(cut, pattern);
        let mut tx = c.transaction();
        tx.execute(&format!("INSERT INTO t VALUES ({n}, 'first')"), &[])
            .await?;
        assert_eq!(p.cuts(), cuts + 1, "{cut:?}: not cut");
        tx.execute(&format!("INSERT INTO t VALUES ({}, 'second')", n + 10), &[])
            .await?;
        assert_eq!(tx.commit().await?, Committed::Acknowledged);
    }
    assert_eq!(ids(&s).await?, [1, 2, 11, 12], "each row exactly once");

    // A cut after the first statement: the one distinct error, and the
    // transaction's first row is gone with it.
    let mut c = Client::connect(through(&p)).await?;
    let mut tx = c.transaction();
    tx.execute("INSERT INTO t VALUES (3, 'first')", &[]).await?;
    p.arm(Cut::Request, "VALUES (4, 'later')");
    let e = tx
        .execute("INSERT INTO t VALUES (4, 'later')", &[])
        .await
        .expect_err("a cut mid-transaction must be reported");
    assert!(matches!(e, Error::Rerouted { .. }), "{e}");
    assert_eq!(e.sqlstate(), Some("08006"));
    assert!(e.is_retryable_transaction());
    // The transaction is over; the client itself goes on.
    assert!(matches!(
        tx.execute("SELECT 1", &[]).await,
        Err(Error::TransactionEnded)
    ));
    drop(tx);
    assert_eq!(c.query("SELECT count(*) FROM t", &[]).await?.len(), 1);
    assert_eq!(
        ids(&s).await?,
        [1, 2, 11, 12],
        "the rerouted transaction left nothing"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_slower_than_the_statement_timeout_is_cancelled_not_replayed() -> Result<()> {
    let (s, _p) = proxied().await?;
    let conn = format!(
        "host=127.0.0.1 port={} user=t dbname=t statement_timeout=300ms reroute_timeout=20",
        s.port
    );
    let mut c = Client::connect_str(&conn).await?;
    let slow =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000000) \
                SELECT count(*) FROM c";
    for tx in [false, true] {
        let t0 = Instant::now();
        let r = if tx {
            let mut t = c.transaction();
            t.query(slow, &[]).await.map(|_| ())
        } else {
            c.query(slow, &[]).await.map(|_| ())
        };
        let e = r.expect_err("a statement of minutes answered");
        // The node still serves: the client says the statement was too
        // slow, instead of replaying it until the budget runs out.
        assert!(matches!(e, Error::StatementTimeout { .. }), "{e}");
        assert_eq!(e.sqlstate(), Some("57014"));
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    }
    // The cancelled statements hold nothing: a write goes through.
    c.execute("INSERT INTO t VALUES (1, 'after')", &[]).await?;
    assert_eq!(ids(&s).await?, [1]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ambiguous_commit_is_resolved_through_its_commit_token_both_ways() -> Result<()> {
    let (s, p) = proxied().await?;

    // COMMIT reached the server, its reply did not reach the client.
    let mut c = Client::connect(through(&p)).await?;
    let mut tx = c.transaction();
    tx.execute("INSERT INTO t VALUES (1, 'kept')", &[]).await?;
    p.arm(Cut::Reply, "COMMIT\0");
    let out = tx.commit().await?;
    assert!(matches!(out, Committed::Resolved { .. }), "{out:?}");
    assert_eq!(p.cuts(), 1);

    // COMMIT never reached the server.
    let mut c = Client::connect(through(&p)).await?;
    let mut tx = c.transaction();
    tx.execute("INSERT INTO t VALUES (2, 'lost')", &[]).await?;
    let token = tx.token().to_string();
    p.arm(Cut::Request, "COMMIT\0");
    let e = tx.commit().await.expect_err("the COMMIT never arrived");
    assert!(
        matches!(&e, Error::NotCommitted { token: t, .. } if *t == token),
        "{e}"
    );
    assert_eq!(p.cuts(), 2);
    assert_eq!(ids(&s).await?, [1]);

    // The same for autocommit writes: a lost reply is success (the count
    // went with it), a lost request is sent again.
    let mut c = Client::connect(through(&p)).await?;
    p.arm(Cut::Reply, "INSERT 0 1");
    let w = c.execute("INSERT INTO t VALUES (3, 'auto')", &[]).await?;
    assert_eq!(w.rows, None, "resolved through the token");
    // (The client went straight to the node it advertised: through the proxy again.)
    let mut c = Client::connect(through(&p)).await?;
    p.arm(Cut::Request, "VALUES (4, 'auto')");
    let w = c.execute("INSERT INTO t VALUES (4, 'auto')", &[]).await?;
    assert_eq!(w.rows, Some(1), "not committed, so sent again");
    assert_eq!(p.cuts(), 4);
    assert_eq!(ids(&s).await?, [1, 3, 4], "each write exactly once");
    Ok(())
}

fn failover_args(arbiter: &str) -> Vec<String> {
    [
        "--hadr-timeout",
        "1s",
        "--hadr-syncmode",
        "NEARSYNC",
        "--arbiter",
        arbiter,
        "--lease-ttl",
        "2s",
        "--lease-margin",
        "500ms",
        // B promoted by a graceful takeover a moment ago may still promote
        // after the crash (the default holds promotions a minute apart).
        "--min-promotion-interval",
        "1s",
    ]
    .map(String::from)
    .to_vec()
}

async fn wait_peer(primary: &Server) -> Result<Status> {
    primary
        .wait_for("PEER and the lease", Duration::from_secs(30), |st| {
            st.role == NodeRole::Primary
                && st
                    .principal()
                    .is_some_and(|s| s.hadr_state == PairState::Peer)
                && st
                    .failover
                    .as_ref()
                    .is_some_and(|f| f.lease_left_ms > 0 && f.out_of_sync.is_empty())
        })
        .await
}

/// A primary A and a standby B in PEER sharing a file arbiter (automatic
/// failover on), A holding the lease.
struct Pair {
    a: Server,
    b: Server,
    _arbiter: tempfile::TempDir,
    _b_tmp: tempfile::TempDir,
}

async fn arbiter_pair() -> Result<Pair> {
    let arbiter_dir = tempfile::tempdir()?;
    let arbiter = format!("file:{}", arbiter_dir.path().join("lease").display());
    let (a_local, b_local) = (repl_addr(), repl_addr());
    let mut args: Vec<String> = [
        "--role",
        "primary",
        "--hadr-local",
        &a_local,
        "--hadr-target-list",
        &b_local,
    ]
    .map(String::from)
    .to_vec();
    args.extend(failover_args(&arbiter));
    let a = start_with(args)?;
    let tmp = tempfile::tempdir()?;
    let bdir = tmp.path().join("b");
    clone_to(&a_local, &bdir)?;
    let mut bargs: Vec<String> = ["--hadr-local", &b_local, "--hadr-target-list", &a_local]
        .map(String::from)
        .to_vec();
    bargs.extend(failover_args(&arbiter));
    let b = on_dir(bdir, &bargs)?;
    wait_peer(&a).await?;
    Ok(Pair {
        a,
        b,
        _arbiter: arbiter_dir,
        _b_tmp: tmp,
    })
}

/// Every acknowledged write of one writer: (id, when).
type Acks = Arc<Mutex<Vec<(i64, Instant)>>>;

/// The longest time between two acknowledgements, or from `from` to the
/// first one after it, within [from, to].
fn longest_gap(acks: &[(i64, Instant)], from: Instant, to: Instant) -> Duration {
    let mut last = from;
    let mut gap = Duration::ZERO;
    for &(_, t) in acks.iter().filter(|(_, t)| *t > from) {
        gap = gap.max(t - last);
        last = t;
        if t > to {
            break;
        }
    }
    gap
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_go_through_graceful_takeovers_and_a_crash_without_an_error_or_a_lost_write(
) -> Result<()> {
    let Pair {
        mut a,
        b,
        _arbiter,
        _b_tmp,
    } = arbiter_pair().await?;
    a.client()
        .await?
        .batch_execute("CREATE TABLE acked(id INTEGER PRIMARY KEY, w INTEGER)")
        .await?;

    // The writers know only A: B comes from the advertised topology.
    let conn = format!(
        "host=127.0.0.1 port={} user=t dbname=t connect_timeout=2 reroute_timeout=40",
        a.port
    );
    let stop = Arc::new(AtomicBool::new(false));
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    // Writes whose reply was lost and that the commit token proved committed.
    let resolved = Arc::new(AtomicUsize::new(0));
    let mut acks: Vec<Acks> = Vec::new();
    let mut writers = Vec::new();
    // Writers 0 and 1: autocommit inserts. Writer 2: transactions of two
    // inserts, run again after Rerouted or NotCommitted (what the errors
    // are for); a commit it is told happened (acknowledged or resolved)
    // must be there, both rows.
    let reruns = Arc::new(AtomicUsize::new(0));
    for w in 0..3i64 {
        let (conn, stop, errors, resolved, reruns) = (
            conn.clone(),
            stop.clone(),
            errors.clone(),
            resolved.clone(),
            reruns.clone(),
        );
        let mine: Acks = Arc::default();
        acks.push(mine.clone());
        writers.push(tokio::spawn(async move {
            let mut c = Client::connect_str(&conn).await.expect("first connect");
            let mut id = w * 1_000_000;
            while !stop.load(Ordering::SeqCst) {
                id += 1;
                let r = if w < 2 {
                    c.execute("INSERT INTO acked VALUES ($1, $2)", &[&id, &w])
                        .await
                        .map(|x| x.rows.is_none())
                } else {
                    let mut tx = c.transaction();
                    let r = async {
                        tx.execute("INSERT INTO acked VALUES ($1, $2)", &[&id, &w])
                            .await?;
                        tx.execute("INSERT INTO acked VALUES ($1, $2)", &[&(id + 500_000), &w])
                            .await?;
                        Ok::<_, Error>(())
                    }
                    .await;
                    match r {
                        Ok(()) => tx
                            .commit()
                            .await
                            .map(|done| matches!(done, Committed::Resolved { .. })),
                        Err(e) => Err(e),
                    }
                };
                match r {
                    Ok(through_token) => {
                        if through_token {
                            resolved.fetch_add(1, Ordering::SeqCst);
                        }
                        mine.lock().unwrap().push((id, Instant::now()));
                        if w == 2 {
                            mine.lock().unwrap().push((id + 500_000, Instant::now()));
                        }
                    }
                    Err(e) if e.is_retryable_transaction() => {
                        reruns.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => errors
                        .lock()
                        .unwrap()
                        .push(format!("writer {w} id {id}: {e}")),
                }
            }
        }));
    }
    let mut primary = 0usize;
    let mut graceful = Vec::new();
    for round in 0..4 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        wait_peer([&a, &b][primary]).await?;
        let standby = 1 - primary;
        let t0 = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let out = admin_cmd()
                .args([
                    "takeover",
                    "--timeout",
                    "30s",
                    "--node",
                    &[&a, &b][standby].admin_addr(),
                ])
                .output()?;
            if out.status.success() {
                break;
            }
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            // A pair that leaves PEER between the check and the request is refused.
            assert!(attempt < 3 && err.contains("PEER"), "round {round}: {err}");
            wait_peer([&a, &b][primary]).await?;
        }
        let t1 = Instant::now();
        primary = standby;
        // Let every writer get through before measuring.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let gaps: Vec<Duration> = acks
            .iter()
            .map(|a| longest_gap(&a.lock().unwrap(), t0, t1))
            .collect();
        eprintln!(
            "graceful takeover {round}: took {:?}, longest gaps {gaps:?}",
            t1 - t0
        );
        graceful.push(gaps);
    }
    // An even number of takeovers ends with A primary again: crash it.
    assert_eq!(primary, 0);
    wait_peer(&a).await?;
    let survivor = &b;
    let before = survivor.status().await?.epoch;
    let t0 = Instant::now();
    a.kill9();
    let st = survivor
        .wait_for("primary by itself", Duration::from_secs(30), |st| {
            st.is_writable_primary() && st.epoch > before
        })
        .await?;
    let promoted = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await?;
    }
    let crash_gaps: Vec<Duration> = acks
        .iter()
        .map(|a| longest_gap(&a.lock().unwrap(), t0, t0 + promoted))
        .collect();
    eprintln!(
        "forced failover: writable in epoch {} {promoted:?} after kill -9; longest gaps {crash_gaps:?}",
        st.epoch
    );
    eprintln!(
        "writes resolved through their commit token: {}; transactions run again after Rerouted/NotCommitted: {}",
        resolved.load(Ordering::SeqCst),
        reruns.load(Ordering::SeqCst)
    );
    let errors = errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "writers saw errors: {errors:?}");
    // Nothing acknowledged is lost.
    let rows: BTreeSet<i64> = survivor
        .client()
        .await?
        .query("SELECT id FROM acked", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut acked = BTreeSet::new();
    for a in &acks {
        acked.extend(a.lock().unwrap().iter().map(|(id, _)| *id));
    }
    assert!(acked.len() > 100, "load barely ran: {}", acked.len());
    let missing: Vec<_> = acked.difference(&rows).take(10).collect();
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
    for (round, gaps) in graceful.iter().enumerate() {
        for g in gaps {
            assert!(
                *g < Duration::from_secs(1),
                "graceful takeover {round}: a gap of {g:?}"
            );
        }
    }
    for g in &crash_gaps {
        // A client reaches the new primary at most backoff_max (500 ms)
        // after it is writable; the bound is generous for a loaded machine.
        assert!(
            *g < promoted + Duration::from_secs(3),
            "forced failover: a gap of {g:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_client_whose_only_host_is_a_standby_under_rebuild_reaches_the_primary_through_its_cache(
) -> Result<()> {
    let (a_local, b_local) = (repl_addr(), repl_addr());
    let a = start_with(hadr_args(&a_local, &b_local, &["--role", "primary"]))?;
    let tmp = tempfile::tempdir()?;
    let bdir = tmp.path().join("b");
    clone_to(&a_local, &bdir)?;
    let mut b = on_dir(bdir, &hadr_args(&b_local, &a_local, &[]))?;
    b.wait_for("B knows the primary", Duration::from_secs(30), |st| {
        st.topology.primary.is_some()
    })
    .await?;
    let cache = tmp.path().join("hosts.json");
    let only_b = format!(
        "host=127.0.0.1 port={} user=t dbname=t host_cache='{}' reroute_timeout=3",
        b.port,
        cache.display()
    );
    // Configured with the standby only, the client finds the primary
    // through the topology B advertises, and remembers it.
    let mut c = Client::connect_str(&only_b).await?;
    assert_eq!(c.host().map(|h| h.port), Some(a.port));
    c.execute("CREATE TABLE t(id INTEGER)", &[]).await?;
    drop(c);
    let cached = std::fs::read_to_string(&cache)?;
    assert!(cached.contains(&format!(":{}", a.port)), "{cached}");

    // A reader that wants a standby, configured with A only, goes to B
    // and keeps its replay-lag bound there; a write there is the
    // application's error, not a reroute.
    let reader = format!(
        "host=127.0.0.1 port={} user=t dbname=t target_session_attrs=standby max_replay_lag=5s",
        a.port
    );
    let mut r = Client::connect_str(&reader).await?;
    assert_eq!(r.host().map(|h| h.port), Some(b.port));
    let lag = r.query("SHOW hadr.max_replay_lag", &[]).await?;
    assert_eq!(lag[0].get::<_, &str>(0), "5000ms");
    let e = r
        .execute("CREATE TABLE elsewhere(x)", &[])
        .await
        .expect_err("a write on a standby");
    assert_eq!(e.sqlstate(), Some("25006"), "{e}");
    drop(r);

    // B is rebuilt: its rewind was cut short, so it must re-clone, from a
    // primary it cannot reach yet; meanwhile it answers every client with
    // FATAL 57P03. (Then B goes down altogether.) A restarted client
    // configured with B alone still reaches A, through its cache.
    b.stop()?;
    let control = b.dir.join("control.json");
    let mut ctl: serde_json::Value = serde_json::from_slice(&std::fs::read(&control)?)?;
    ctl["rewind_pending"] = serde_json::json!(1);
    std::fs::write(&control, serde_json::to_vec(&ctl)?)?;
    b.extra = hadr_args(&b_local, &repl_addr(), &[]);
    b.spawn_nowait()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let refusal = tokio_postgres::connect(&b.conninfo(), tokio_postgres::NoTls)
            .await
            .err()
            .and_then(|e| e.code().map(|c| c.code().to_string()));
        if refusal.as_deref() == Some("57P03") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B never refused with 57P03: {refusal:?}\n{}",
            b.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for down in [false, true] {
        if down {
            b.kill9();
        } else {
            // Without the cache it could not: the error names the host and why.
            let no_cache = format!(
                "host=127.0.0.1 port={} user=t dbname=t reroute_timeout=1",
                b.port
            );
            let started = Instant::now();
            let e = match Client::connect_str(&no_cache).await {
                Err(e) => e,
                Ok(_) => panic!("connected to a host that refuses"),
            };
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the budget is kept"
            );
            assert!(matches!(e, Error::Unavailable { .. }), "{e}");
            assert!(
                e.to_string()
                    .contains(&format!("127.0.0.1:{} (57P03", b.port)),
                "{e}"
            );
        }
        let mut c = Client::connect_str(&only_b).await?;
        assert_eq!(c.host().map(|h| h.port), Some(a.port));
        assert_eq!(
            c.execute("INSERT INTO t VALUES (1)", &[]).await?.rows,
            Some(1)
        );
    }

    // A corrupt cache is ignored, not fatal.
    std::fs::write(&cache, "{ not json")?;
    let with_corrupt = format!(
        "host=127.0.0.1,127.0.0.1 port={},{} user=t dbname=t host_cache='{}'",
        b.port,
        a.port,
        cache.display()
    );
    let c = Client::connect_str(&with_corrupt).await?;
    assert_eq!(c.host().map(|h| h.port), Some(a.port));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_primary_is_left_at_the_statement_timeout_and_the_write_resolved_on_the_new_one(
) -> Result<()> {
    let Pair {
        a,
        b,
        _arbiter,
        _b_tmp,
    } = arbiter_pair().await?;
    let conn = format!(
        "host=127.0.0.1 port={} user=t dbname=t statement_timeout=1s connect_timeout=1 reroute_timeout=30",
        a.port
    );
    let mut c = Client::connect_str(&conn).await?;
    c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY)", &[])
        .await?;
    assert_eq!(
        c.execute("INSERT INTO t VALUES (1)", &[]).await?.rows,
        Some(1)
    );
    // A hung host: its sockets stay open, the kernel still acknowledges,
    // nothing answers (keepalive and TCP_USER_TIMEOUT cannot tell).
    a.sigstop()?;
    let t0 = Instant::now();
    let w = c.execute("INSERT INTO t VALUES (2)", &[]).await?;
    let took = t0.elapsed();
    eprintln!("write across a frozen primary: {w:?} after {took:?}");
    assert_eq!(c.host().map(|h| h.port), Some(b.port));
    // Not on A, which never read it: "not committed", sent again to B.
    assert_eq!(w.rows, Some(1));
    assert!(took < Duration::from_secs(20), "{took:?}");
    let rows: Vec<i64> = c
        .query("SELECT id FROM t ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, [1, 2]);
    a.sigcont()?;
    Ok(())
}
