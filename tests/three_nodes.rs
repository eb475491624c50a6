//! Three nodes with real processes: a primary A, its principal standby B
//! (the first entry of A's `hadr_target_list`) and an auxiliary standby C
//! (always SUPERASYNC). After a graceful takeover the auxiliary follows the
//! new primary by itself, and never reports a healthy link to a node that
//! cannot feed it.

mod common;
use common::*;
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
    verify_nodes(b.admin, c.admin)?;
    verify_nodes(b.admin, a.admin)?;
    Ok(())
}
