//! SQL clients of a node.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio_postgres::{Client, NoTls};

use crate::Result;

/// Connect with tokio-postgres and drive the connection in the background.
pub async fn connect(conninfo: &str) -> Result<Client> {
    let (client, conn) = tokio_postgres::connect(conninfo, NoTls)
        .await
        .with_context(|| format!("connecting to {conninfo}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Insert rows with ids from `base` up into `acked(id, pad)` until a write
/// fails (the server died, was fenced or handed over), recording every id
/// whose commit was acknowledged. Returns how many it recorded.
pub async fn acked_writer(conninfo: String, acked: Arc<Mutex<BTreeSet<i64>>>, base: i64) -> u64 {
    let Ok(c) = connect(&conninfo).await else {
        return 0;
    };
    let mut n = 0;
    for k in 0.. {
        let id = base + k;
        let r = c
            .execute(
                "INSERT INTO acked(id, pad) VALUES ($1, randomblob(200))",
                &[&id],
            )
            .await;
        if r.is_err() {
            break;
        }
        acked.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
        n += 1;
    }
    n
}

/// The ids in the `acked` table that [`acked_writer`]s write into.
pub async fn acked_ids(c: &Client) -> Result<BTreeSet<i64>> {
    Ok(c.query("SELECT id FROM acked", &[])
        .await
        .context("reading the acked table")?
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .collect())
}
