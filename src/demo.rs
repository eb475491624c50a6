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
    if std::net::TcpListener::bind(("127.0.0.1", preferred)).is_ok() {
        return preferred;
    }
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(preferred)
}

/// Run the demo.
pub async fn run(port: u16, seconds: Duration, no_wait: bool) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("hadr-demo-{}", std::process::id()));
    let pg_port = free_port(port);
    let admin_port = free_port(pg_port.wrapping_add(3000));
    let config = Config {
        data: dir.clone(),
        listen: SocketAddr::from(([127, 0, 0, 1], pg_port)),
        admin: SocketAddr::from(([127, 0, 0, 1], admin_port)),
        log_flush_mode: FlushMode::Fsync,
        ..Config::default()
    };
    hadr_engine::Engine::init(&dir, &config.log_config())?;
    println!("== hadr demo: database in {}", dir.display());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(hadr_server::run(
        config,
        async move {
            let _ = stop_rx.await;
        },
        move |b| {
            let _ = bound_tx.send(b);
        },
    ));
    let bound = match tokio::time::timeout(Duration::from_secs(30), bound_rx).await {
        Ok(Ok(b)) => b,
        _ => {
            let r = server.await;
            bail!("the demo node did not start: {r:?}");
        }
    };
    println!(
        "== node serving PostgreSQL on {} and admin HTTP on {}",
        bound.pg, bound.admin
    );
    let conninfo = format!(
        "host=127.0.0.1 port={} user=demo dbname=demo",
        bound.pg.port()
    );
    let workload = workload(&conninfo, seconds).await;
    if let Err(e) = &workload {
        println!("== workload failed: {e:#}");
    }
    println!();
    println!("connect:  psql \"{conninfo}\"");
    println!(
        "pgbench:  pgbench -h 127.0.0.1 -p {} -n -f bench/pgbench.sql -c 8 -T 10 demo",
        bound.pg.port()
    );
    println!(
        "status:   cargo run --release -- status --node {}",
        bound.admin
    );
    if !no_wait && workload.is_ok() {
        println!("serving until Ctrl-C ...");
        let _ = tokio::signal::ctrl_c().await;
    }
    let _ = stop_tx.send(());
    server.await.context("server task")??;
    let _ = std::fs::remove_dir_all(&dir);
    workload
}

async fn connect(conninfo: &str) -> Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(conninfo, NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

async fn workload(conninfo: &str, seconds: Duration) -> Result<()> {
    let c = connect(conninfo).await?;
    c.batch_execute(
        "CREATE TABLE accounts(aid INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
         CREATE TABLE transfers(id INTEGER PRIMARY KEY, src INTEGER, dst INTEGER, amount INTEGER, at TEXT DEFAULT CURRENT_TIMESTAMP);",
    )
    .await?;
    c.batch_execute(
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 1000)
         INSERT INTO accounts SELECT i, 1000 FROM s",
    )
    .await?;
    println!(
        "== 1000 accounts with 1000 each; 4 clients move money for {}s",
        seconds.as_secs()
    );
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..4u64 {
        let done = done.clone();
        let conninfo = conninfo.to_string();
        tasks.push(tokio::spawn(async move {
            let mut c = connect(&conninfo).await?;
            let mut x = w.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
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
    println!(
        "== {n} transfers committed durably in {secs:.1}s ({:.0} tps)",
        n as f64 / secs
    );
    println!("== money in the bank: {total} (expected 1000000); transfers logged: {transfers}");
    if total != 1_000_000 || transfers as u64 != n {
        bail!("consistency check failed");
    }
    Ok(())
}
