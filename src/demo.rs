//! `hadr demo`: a local node, a short workload through the real PostgreSQL
//! protocol, then serving until Ctrl-C so that a user can connect with psql.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hadr_server::config::{Config, FlushMode};
use tokio_postgres::NoTls;

fn free_port(preferred: u16) -> u16 {
    if preferred != 0 && std::net::TcpListener::bind(("127.0.0.1", preferred)).is_ok() {
        return preferred;
    }
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(preferred)
}

fn node_config(dir: &std::path::Path, pg: u16, admin: u16, local: u16, target: u16) -> Config {
    Config {
        data: dir.to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], pg)),
        admin: SocketAddr::from(([127, 0, 0, 1], admin)),
        hadr_local: SocketAddr::from(([127, 0, 0, 1], local)),
        hadr_target_list: format!("127.0.0.1:{target}"),
        log_flush_mode: FlushMode::Fsync,
        log_segment_size: hadr_server::config::ByteSize(4 << 20),
        ..Config::default()
    }
}

type NodeTask = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<hadr_server::Outcome, hadr_server::NodeError>>,
);

async fn start_node(config: Config) -> Result<(NodeTask, hadr_server::Bound)> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(hadr_server::run(
        config,
        async move {
            let _ = stop_rx.await;
        },
        move |b| {
            let _ = bound_tx.send(b);
        },
    ));
    match tokio::time::timeout(Duration::from_secs(30), bound_rx).await {
        Ok(Ok(b)) => Ok(((stop_tx, task), b)),
        _ => {
            let r = task.await;
            bail!("a demo node did not start: {r:?}")
        }
    }
}

async fn status(admin: SocketAddr) -> Result<serde_json::Value> {
    let body = crate::http::get(&admin.to_string(), "/status", Duration::from_secs(30)).await?;
    Ok(serde_json::from_str(&body)?)
}

/// Run the demo: a primary and a standby cloned from it, a workload, reads
/// on the standby, a page-hash comparison, then serve until Ctrl-C.
pub async fn run(port: u16, seconds: Duration, no_wait: bool) -> Result<()> {
    let root = std::env::temp_dir().join(format!("hadr-demo-{}", std::process::id()));
    let (pdir, sdir) = (root.join("primary"), root.join("standby"));
    let p_pg = free_port(port);
    let ports: Vec<u16> = (0..5).map(|_| free_port(0)).collect();
    let (p_admin, p_local, s_pg, s_admin, s_local) =
        (ports[0], ports[1], ports[2], ports[3], ports[4]);
    let mut pcfg = node_config(&pdir, p_pg, p_admin, p_local, s_local);
    pcfg.role = Some(hadr_server::config::RoleSetting::Primary);
    hadr_engine::Engine::init(&pdir, &pcfg.log_config())?;
    println!("== hadr demo in {}", root.display());
    let (primary, pb) = start_node(pcfg).await?;
    println!(
        "== primary serving PostgreSQL on {} (admin {}), syncmode NEARSYNC",
        pb.pg, pb.admin
    );
    let conninfo = format!("host=127.0.0.1 port={} user=demo dbname=demo", pb.pg.port());
    let c = connect(&conninfo).await?;
    c.batch_execute(
        "CREATE TABLE accounts(aid INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
         CREATE TABLE transfers(id INTEGER PRIMARY KEY, src INTEGER, dst INTEGER, amount INTEGER, at TEXT DEFAULT CURRENT_TIMESTAMP);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 1000) INSERT INTO accounts SELECT i, 1000 FROM s;",
    )
    .await?;
    // Clone a standby while the primary takes writes.
    let scfg = node_config(&sdir, s_pg, s_admin, s_local, p_local);
    let load = tokio::spawn(workload(conninfo.clone(), Duration::from_secs(2), false));
    let lsn = hadr_replication::clone::clone_from(
        &format!("127.0.0.1:{p_local}"),
        &sdir,
        &scfg.log_config(),
        Duration::from_secs(10),
        |_| {},
    )
    .await?;
    println!("== standby cloned from the running primary at LSN {lsn}");
    let (standby, sb) = start_node(scfg).await?;
    println!(
        "== standby serving read-only PostgreSQL on {} (admin {})",
        sb.pg, sb.admin
    );
    load.await??;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let st = status(pb.admin).await?;
        if st
            .pointer("/hadr/standbys/0/hadr_state")
            .and_then(|v| v.as_str())
            == Some("PEER")
        {
            break;
        }
        if std::time::Instant::now() > deadline {
            bail!("the standby did not reach PEER: {st}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("== pair in PEER state; now every commit waits until the standby has received it");
    let workload_result = workload(conninfo.clone(), seconds, true).await;
    if let Err(e) = &workload_result {
        println!("== workload failed: {e:#}");
    }
    // Compare the nodes at one LSN.
    let sconn = format!("host=127.0.0.1 port={} user=demo dbname=demo", sb.pg.port());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (p, s) = (status(pb.admin).await?, status(sb.admin).await?);
        let (pl, sl) = (
            p.pointer("/page_hash/lsn").cloned(),
            s.pointer("/page_hash/lsn").cloned(),
        );
        if pl.is_some() && pl == sl {
            let same = p.pointer("/page_hash/hash") == s.pointer("/page_hash/hash");
            println!(
                "== page hashes at LSN {}: {}",
                pl.unwrap_or_default(),
                if same { "identical" } else { "DIFFERENT" }
            );
            break;
        }
        if std::time::Instant::now() > deadline {
            println!("== the standby did not reach the primary's LSN in time");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = connect(&sconn).await?;
    let n: i64 = s
        .query_one("SELECT count(*) FROM transfers", &[])
        .await?
        .get(0);
    let e = s
        .execute("DELETE FROM transfers", &[])
        .await
        .err()
        .and_then(|e| e.code().map(|c| c.code().to_string()));
    println!(
        "== the standby shows {n} transfers; a write there gets SQLSTATE {}",
        e.unwrap_or_default()
    );
    println!();
    println!("primary:  psql \"{conninfo}\"");
    println!("standby:  psql \"{sconn}\"   (read-only)");
    println!("both:     psql \"host=127.0.0.1,127.0.0.1 port={},{} user=demo dbname=demo target_session_attrs=read-write\"", sb.pg.port(), pb.pg.port());
    println!("pgbench:  pgbench -h 127.0.0.1 -p {} -n -f bench/pgbench.sql -c 8 -T 10 demo   (after creating its tables)", pb.pg.port());
    println!(
        "status:   cargo run --release -- status --node {}",
        pb.admin
    );
    println!(
        "verify:   cargo run --release -- verify --node {} --node {}",
        pb.admin, sb.admin
    );
    println!("takeover: cargo run --release -- takeover --node {}   (graceful role switch; then the old primary follows)", sb.admin);
    println!("(automatic failover is not built yet: see README, Status)");
    if !no_wait && workload_result.is_ok() {
        println!("serving until Ctrl-C ...");
        let _ = tokio::signal::ctrl_c().await;
    }
    for (stop, task) in [standby, primary] {
        let _ = stop.send(());
        task.await.context("node task")??;
    }
    let _ = std::fs::remove_dir_all(&root);
    workload_result
}

async fn connect(conninfo: &str) -> Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(conninfo, NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

async fn workload(conninfo: String, seconds: Duration, report: bool) -> Result<()> {
    let conninfo = conninfo.as_str();
    let c = connect(conninfo).await?;
    if report {
        println!(
            "== 4 clients move money between 1000 accounts for {}s",
            seconds.as_secs()
        );
    }
    let before: i64 = c
        .query_one("SELECT count(*) FROM transfers", &[])
        .await?
        .get(0);
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..4u64 {
        let done = done.clone();
        let conninfo = conninfo.to_string();
        tasks.push(tokio::spawn(async move {
            let mut c = connect(&conninfo).await?;
            let mut x = (w + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            while start.elapsed() < seconds {
                // xorshift: deterministic per worker, no RNG dependency.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let src = (x % 1000 + 1) as i64;
                let dst = ((x >> 20) % 1000 + 1) as i64;
                let amount = ((x >> 40) % 50) as i64;
                let t = c.transaction().await?;
                t.execute(
                    "UPDATE accounts SET balance = balance - $1 WHERE aid = $2",
                    &[&amount, &src],
                )
                .await?;
                t.execute(
                    "UPDATE accounts SET balance = balance + $1 WHERE aid = $2",
                    &[&amount, &dst],
                )
                .await?;
                t.execute(
                    "INSERT INTO transfers(src, dst, amount) VALUES ($1, $2, $3)",
                    &[&src, &dst, &amount],
                )
                .await?;
                t.commit().await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let n = done.load(Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64();
    let total: i64 = c
        .query_one("SELECT sum(balance) FROM accounts", &[])
        .await?
        .get(0);
    let transfers: i64 = c
        .query_one("SELECT count(*) FROM transfers", &[])
        .await?
        .get(0);
    if report {
        println!(
            "== {n} transfers committed durably in {secs:.1}s ({:.0} tps)",
            n as f64 / secs
        );
        println!(
            "== money in the bank: {total} (expected 1000000); transfers logged: {}",
            transfers - before
        );
    }
    if total != 1_000_000 || (transfers - before) as u64 != n {
        bail!("consistency check failed");
    }
    Ok(())
}
