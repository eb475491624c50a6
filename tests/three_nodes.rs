//! Three nodes with real processes: a primary A, its principal standby B
//! (the first entry of A's `hadr_target_list`) and an auxiliary standby C
//! (always SUPERASYNC).
//!
//! - After a graceful takeover the auxiliary follows the new primary by
//!   itself, and never reports a healthy link to a node that cannot feed it.
//! - With etcd as the arbiter (a real server started here), kill -9 of A:
//!   B takes the lease and promotes, C follows B, nothing acknowledged is
//!   lost, A rejoins as B's standby; C never promotes, and with B's
//!   principal gone too nobody does, saying why.
//! - A graceful takeover goes through the arbiter: the new primary writes
//!   the record in its epoch at once; with the arbiter unreadable the
//!   takeover is refused up front, and `--force` still works.

mod common;
#[path = "common/etcd.rs"]
mod etcd;
use common::*;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A three-node cluster: A primary, B principal, C auxiliary.
struct Cluster {
    nodes: Vec<Server>,
    locals: Vec<String>,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    /// Start A, clone B and C from it, wait until B is in PEER and C is
    /// connected. `extra` is added to every node's flags.
    async fn start(extra: &[String]) -> Result<Cluster> {
        let locals: Vec<String> = (0..3).map(|_| repl_addr()).collect();
        // Each node lists the two others; a primary's first entry is its principal.
        let targets = |i: usize| -> String {
            let others: Vec<&str> = (0..3)
                .filter(|j| *j != i)
                .map(|j| locals[j].as_str())
                .collect();
            others.join("|")
        };
        let flags = |i: usize| -> Vec<String> {
            let mut v = hadr_args(&locals[i], &targets(i), &[]);
            v.extend(extra.iter().cloned());
            v
        };
        let mut a_flags = vec!["--role".to_string(), "primary".into()];
        a_flags.extend(flags(0));
        let a = start_with(a_flags)?;
        let tmp = tempfile::tempdir()?;
        let mut nodes = vec![a];
        for (i, name) in [(1, "b"), (2, "c")] {
            let dir = tmp.path().join(name);
            clone_to(&locals[0], &dir)?;
            nodes.push(on_dir(dir, &flags(i))?);
        }
        nodes[0]
            .wait_for("B in PEER, C connected", Duration::from_secs(60), |st| {
                let Some(p) = st.primary_view() else {
                    return false;
                };
                p.standbys.len() == 2
                    && p.standbys[0].hadr_state == PairState::Peer
                    && p.standbys[1].hadr_connect_status == ConnectStatus::Connected
            })
            .await?;
        Ok(Cluster {
            nodes,
            locals,
            _tmp: tmp,
        })
    }
}

/// Wait until `standby` follows the primary at `primary_local` and has
/// received its log up to `end`.
async fn wait_following(
    standby: &Server,
    primary_local: &str,
    end: u64,
    timeout: Duration,
) -> Result<Status> {
    standby
        .wait_for(
            &format!("following {primary_local} up to LSN {end}"),
            timeout,
            |st| {
                st.follows()
                    && st.standby_view().is_some_and(|v| {
                        v.primary.as_deref() == Some(primary_local) && v.standby_received_lsn >= end
                    })
            },
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_graceful_takeover_the_auxiliary_follows_the_new_primary() -> Result<()> {
    let cl = Cluster::start(&[]).await?;
    let (a, b, c) = (&cl.nodes[0], &cl.nodes[1], &cl.nodes[2]);
    a.client()
        .await?
        .batch_execute("CREATE TABLE t(id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1);")
        .await?;
    let end = a.status().await?.log.end_lsn;
    wait_following(c, &cl.locals[0], end, Duration::from_secs(30)).await?;

    b.admin()
        .with_timeout(Duration::from_secs(30))
        .takeover(false, false)
        .await?;
    b.wait_for("B a writable primary", Duration::from_secs(30), |st| {
        st.is_writable_primary()
    })
    .await?;
    let took = Instant::now();
    let bc = b.client().await?;
    for i in 2..50i64 {
        bc.execute("INSERT INTO t VALUES ($1)", &[&i]).await?;
    }
    let end = b.status().await?.log.end_lsn;
    // Until C follows B, it must not claim a healthy link to anyone else:
    // the old primary, now a standby, cannot feed it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // A's role first: once A runs as a standby, its old senders are long
        // gone, so C must have noticed by the time its status is read.
        let a_role = a.status().await.map(|s| s.role).ok();
        let st = c.status().await?;
        let v = st.standby_view().cloned();
        if let Some(v) = &v {
            if v.primary.as_deref() == Some(cl.locals[1].as_str())
                && v.hadr_connect_status == ConnectStatus::Connected
                && v.standby_received_lsn >= end
            {
                break;
            }
            assert!(
                !(v.hadr_connect_status == ConnectStatus::Connected
                    && v.primary.as_deref() == Some(cl.locals[0].as_str())
                    && a_role == Some(NodeRole::Standby)),
                "C reports CONNECTED to A, which is a standby now: {}",
                brief(&st)
            );
        }
        assert!(
            Instant::now() < deadline,
            "C did not follow the new primary B within 30 s: {}\nC's log:\n{}",
            brief(&st),
            c.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("C follows B {:?} after B became writable", took.elapsed());
    // A rejoined as B's standby too, and everyone is page-identical.
    wait_following(a, &cl.locals[1], end, Duration::from_secs(30)).await?;
    // B shows its actual members (SHOW, and ParameterStatus at start-up).
    let members: String = b
        .client()
        .await?
        .query_one("SHOW hadr_members", &[])
        .await?
        .get(0);
    for want in [
        format!("{}=primary", cl.locals[1]),
        format!("{}=principal:", cl.locals[0]),
        format!("{}=auxiliary:", cl.locals[2]),
    ] {
        assert!(members.contains(&want), "{want} not in {members}");
    }
    verify_nodes(b.admin, c.admin)?;
    verify_nodes(b.admin, a.admin)?;
    Ok(())
}

/// Flags for automatic failover through `arbiter` (NEARSYNC, TTL 2 s).
fn failover_flags(arbiter: &str) -> Vec<String> {
    [
        "--hadr-syncmode",
        "NEARSYNC",
        "--arbiter",
        arbiter,
        "--lease-ttl",
        "2s",
        "--lease-margin",
        "500ms",
    ]
    .map(String::from)
    .to_vec()
}

/// Insert rows through `conn` (a multi-host string) until `stop`, noting
/// every id whose COMMIT was acknowledged.
fn writer(
    conn: String,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeSet<i64>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut next = 0i64;
        while !stop.load(Ordering::SeqCst) {
            let Ok((c, task)) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            tokio::spawn(task);
            while !stop.load(Ordering::SeqCst) {
                next += 1;
                match c
                    .execute("INSERT INTO acked(id) VALUES ($1)", &[&next])
                    .await
                {
                    Ok(_) => {
                        acked.lock().unwrap().insert(next);
                    }
                    Err(_) => break,
                }
            }
        }
    })
}

/// The ids on `node`.
async fn ids(node: &Server) -> Result<BTreeSet<i64>> {
    Ok(node
        .client()
        .await?
        .query("SELECT id FROM acked", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_etcd_the_principal_takes_over_the_auxiliary_follows_and_never_promotes() -> Result<()>
{
    let Some(etcd) = etcd::Etcd::start("three_nodes::with_etcd") else {
        return Ok(());
    };
    let mut cl = Cluster::start(&failover_flags(&etcd.arbiter("hadr/three"))).await?;
    cl.nodes[0]
        .wait_for("A holds the lease", Duration::from_secs(30), |st| {
            st.failover.as_ref().is_some_and(|f| f.lease_left_ms > 0)
        })
        .await?;
    cl.nodes[0]
        .client()
        .await?
        .batch_execute("CREATE TABLE acked(id INTEGER PRIMARY KEY)")
        .await?;
    // Every standby reads the record: the members are the cluster's, not its config's.
    let st = cl.nodes[2]
        .wait_for("C sees the members", Duration::from_secs(20), |st| {
            st.failover.as_ref().is_some_and(|f| f.members.len() == 2)
        })
        .await?;
    let f = st.failover.unwrap_or_default();
    assert_eq!(f.holder.as_deref(), Some(cl.locals[0].as_str()));
    assert!(f.members[0].sync && f.members[0].standby == cl.locals[1]);
    assert!(!f.members[1].sync && f.members[1].standby == cl.locals[2]);

    let hosts = cl
        .nodes
        .iter()
        .map(|n| n.port.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let conn = format!(
        "host=127.0.0.1,127.0.0.1,127.0.0.1 port={hosts} user=t dbname=t target_session_attrs=read-write connect_timeout=2"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<BTreeSet<i64>>> = Arc::default();
    let w = writer(conn, stop.clone(), acked.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !acked.lock().unwrap().is_empty(),
        "no writes before the crash"
    );
    let before = cl.nodes[1].status().await?.epoch;

    cl.nodes[0].kill9();
    let killed = Instant::now();
    let st = cl.nodes[1]
        .wait_for("B primary by itself", Duration::from_secs(20), |st| {
            st.is_writable_primary() && st.epoch > before
        })
        .await?;
    let took = killed.elapsed();
    eprintln!(
        "B writable in epoch {} {took:?} after kill -9 of A",
        st.epoch
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    // C follows B by itself.
    let end = cl.nodes[1].status().await?.log.end_lsn;
    wait_following(&cl.nodes[2], &cl.locals[1], end, Duration::from_secs(20)).await?;
    eprintln!("C follows B {:?} after kill -9 of A", killed.elapsed());
    let c = cl.nodes[2].status().await?;
    assert_eq!(c.role, NodeRole::Standby);
    // From its log, not its status: C may have received from A records B
    // never had (A ships to each standby on its own), and then rewinds,
    // which restarts its run and its status.
    assert!(
        cl.nodes[2]
            .log()
            .contains("not promoting: an auxiliary standby of"),
        "C never said why it does not promote:\n{}",
        cl.nodes[2].log_tail(40)
    );
    let n = acked.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        acked.lock().unwrap().len() > n,
        "no writes acknowledged on B"
    );

    // A comes back and follows B by itself.
    cl.nodes[0].spawn()?;
    cl.nodes[0]
        .wait_for("A a standby of B", Duration::from_secs(60), |st| {
            st.role == NodeRole::Standby
                && st.follows()
                && st
                    .standby_view()
                    .is_some_and(|v| v.primary.as_deref() == Some(cl.locals[1].as_str()))
        })
        .await?;
    stop.store(true, Ordering::SeqCst);
    let _ = w.await;
    let acked = acked.lock().unwrap().clone();
    let rows = ids(&cl.nodes[1]).await?;
    let missing: Vec<_> = acked.difference(&rows).take(10).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but missing on B: {missing:?}"
    );
    verify_nodes(cl.nodes[1].admin, cl.nodes[2].admin)?;
    verify_nodes(cl.nodes[1].admin, cl.nodes[0].admin)?;
    // B's members now: A its principal, C its auxiliary.
    let st = cl.nodes[1]
        .wait_for("A in PEER with B", Duration::from_secs(30), |st| {
            st.principal_in(PairState::Peer)
        })
        .await?;
    assert_eq!(
        st.principal().map(|p| p.standby.as_str()),
        Some(cl.locals[0].as_str())
    );

    // B and its principal A die together: C, an auxiliary, must not promote.
    cl.nodes[1].kill9();
    cl.nodes[0].kill9();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let st = cl.nodes[2].status().await?;
    assert_eq!(st.role, NodeRole::Standby, "the auxiliary promoted");
    let hold = st.failover.and_then(|f| f.hold).unwrap_or_default();
    assert!(hold.contains("auxiliary standby"), "{hold}");
    drop(etcd);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_takeover_goes_through_the_arbiter_and_is_refused_without_it() -> Result<()> {
    let Some(mut etcd) = etcd::Etcd::start("three_nodes::graceful_through_the_arbiter") else {
        return Ok(());
    };
    let cl = Cluster::start(&failover_flags(&etcd.arbiter("hadr/graceful"))).await?;
    let (a, b, c) = (&cl.nodes[0], &cl.nodes[1], &cl.nodes[2]);
    a.wait_for("A holds the lease", Duration::from_secs(30), |st| {
        st.failover.as_ref().is_some_and(|f| f.lease_left_ms > 0)
    })
    .await?;
    a.client()
        .await?
        .batch_execute("CREATE TABLE t(id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1);")
        .await?;

    // Graceful takeover on B: its first act is the record in its new epoch,
    // over A's, without waiting A's lease out (that would take at least
    // TTL + margin, 2.5 s, from its first read).
    b.admin()
        .with_timeout(Duration::from_secs(30))
        .takeover(false, false)
        .await?;
    let asked = Instant::now();
    let st = b
        .wait_for(
            "B holds the record in its epoch",
            Duration::from_secs(20),
            |st| {
                st.role == NodeRole::Primary
                    && st.failover.as_ref().is_some_and(|f| {
                        f.holder.as_deref() == Some(cl.locals[1].as_str())
                            && f.epoch == st.epoch
                            && f.lease_left_ms > 0
                    })
            },
        )
        .await?;
    let took = asked.elapsed();
    eprintln!("B held the record {took:?} after the takeover answered");
    assert!(
        took < Duration::from_millis(2500),
        "{took:?}: waited A's lease out"
    );
    let decisions = st.failover.map(|f| f.decisions).unwrap_or_default();
    assert!(
        decisions
            .iter()
            .any(|d| d.contains("graceful takeover from")),
        "{decisions:?}"
    );
    b.client()
        .await?
        .execute("INSERT INTO t VALUES (2)", &[])
        .await?;
    let end = b.status().await?.log.end_lsn;
    wait_following(c, &cl.locals[1], end, Duration::from_secs(20)).await?;
    wait_following(a, &cl.locals[1], end, Duration::from_secs(30)).await?;
    b.wait_for("A in PEER with B", Duration::from_secs(30), |st| {
        st.principal_in(PairState::Peer)
    })
    .await?;

    // The arbiter goes away: a graceful takeover is refused up front (409,
    // saying why); the healthy pair keeps serving.
    etcd.kill();
    b.wait_for("B sees the arbiter down", Duration::from_secs(20), |st| {
        st.failover.as_ref().is_some_and(|f| !f.arbiter_ok)
    })
    .await?;
    let err = a
        .admin()
        .with_timeout(Duration::from_secs(30))
        .takeover(false, false)
        .await
        .expect_err("a graceful takeover without the arbiter");
    assert!(err.is_refusal(), "{err}");
    assert!(err.to_string().contains("arbiter cannot be read"), "{err}");
    eprintln!("refused: {err}");
    assert_eq!(b.status().await?.role, NodeRole::Primary);
    b.client()
        .await?
        .execute("INSERT INTO t VALUES (3)", &[])
        .await?;

    // A human may still force it: A promotes, B is fenced by A's newer epoch
    // and rejoins as A's standby, and the pair serves without the arbiter.
    let asked = Instant::now();
    a.admin()
        .with_timeout(Duration::from_secs(30))
        .takeover(true, false)
        .await?;
    a.wait_for("A a writable primary", Duration::from_secs(60), |st| {
        st.is_writable_primary() && st.principal_in(PairState::Peer)
    })
    .await?;
    eprintln!(
        "forced takeover without the arbiter: A writable with B in PEER {:?} after the request",
        asked.elapsed()
    );
    a.client()
        .await?
        .execute("INSERT INTO t VALUES (4)", &[])
        .await?;
    let n: i64 = a
        .client()
        .await?
        .query_one("SELECT count(*) FROM t", &[])
        .await?
        .get(0);
    assert_eq!(n, 4);
    Ok(())
}
