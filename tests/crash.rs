//! Crash safety: kill -9 at random moments under a concurrent write load;
//! after each restart every acknowledged commit is present and the database
//! passes `PRAGMA integrity_check`. Tiny segments and a tiny checkpoint
//! threshold make the kills land during segment switches and checkpoints too.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Deterministic pseudo-random numbers (the test must be reproducible from its seed).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn kills() -> usize {
    std::env::var("HADR_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_under_load_loses_no_acknowledged_commit() -> Result<()> {
    let seed = std::env::var("HADR_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_1234_u64);
    eprintln!("crash test seed {seed} (HADR_CRASH_SEED to reproduce)");
    let mut rng = Rng(seed | 1);
    let mut s = start(&[
        "--log-segment-size",
        "64KiB",
        "--checkpoint-wal-size",
        "64KiB",
    ])?;
    {
        let c = s.client().await?;
        c.batch_execute("CREATE TABLE acked(id INTEGER PRIMARY KEY, writer INTEGER, pad BLOB); CREATE INDEX acked_writer ON acked(writer);")
            .await
            .unwrap();
    }
    let acked: Arc<Mutex<BTreeSet<i64>>> = Arc::default();
    let mut next_id = 0i64;
    for round in 0..kills() {
        // Four writers: small rows, and every so often a multi-page transaction.
        let mut writers = Vec::new();
        for w in 0..4i64 {
            let ci = s.conninfo();
            let acked = acked.clone();
            let base = next_id + w * 1_000_000;
            writers.push(tokio::spawn(async move {
                let c = connect(&ci).await.unwrap();
                for k in 0.. {
                    let id = base + k;
                    let pad = vec![(id % 251) as u8; if k % 10 == 0 { 20_000 } else { 100 }];
                    let r = if k % 7 == 0 {
                        // A transaction block with two rows.
                        c.batch_execute(&format!("BEGIN; INSERT INTO acked VALUES ({id}, {w}, zeroblob({})); INSERT INTO acked VALUES ({}, {w}, NULL); COMMIT;", pad.len(), id + 500_000))
                            .await
                            .map(|_| vec![id, id + 500_000])
                    } else {
                        c.execute("INSERT INTO acked VALUES ($1, $2, $3)", &[&id, &w, &pad]).await.map(|_| vec![id])
                    };
                    match r {
                        // Only an answered commit counts as acknowledged.
                        Ok(ids) => acked.lock().unwrap().extend(ids),
                        Err(_) => return,
                    }
                }
            }));
        }
        next_id += 10_000_000;
        tokio::time::sleep(Duration::from_millis(50 + rng.next() % 400)).await;
        s.kill9();
        for w in writers {
            let _ = w.await;
        }
        s.spawn()?;
        let c = s.client().await?;
        let present = acked_ids(&c).await?;
        let want = acked.lock().unwrap().clone();
        let missing: Vec<_> = want.difference(&present).take(10).collect();
        assert!(
            missing.is_empty(),
            "round {round}: acknowledged rows missing after kill -9: {missing:?}\n{}",
            s.log()
        );
        let rows = c.simple_query("PRAGMA integrity_check").await.unwrap();
        let r = rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        });
        let r = r.unwrap_or_else(|| panic!("no row from integrity_check: {rows:?}"));
        assert_eq!(r.get(0), Some("ok"), "round {round}: integrity_check");
        eprintln!("round {round}: {} acknowledged rows present", want.len());
    }
    assert!(acked.lock().unwrap().len() > 100, "the load barely ran");
    // Finally a clean stop, an offline verify, and the same hash as /status reported.
    let status = s.admin().status_with_hash(true).await?;
    assert_eq!(s.stop()?.code(), Some(0));
    let out = std::process::Command::new(bin())
        .args(["verify", "--json", "--data"])
        .arg(&s.dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["integrity"], "ok");
    assert_eq!(
        v["hash"].as_str(),
        status.page_hash.as_ref().map(|h| h.hash.as_str()),
        "offline hash differs from the live one"
    );
    assert_eq!(integrity_check(&s.dir), "ok");
    Ok(())
}
