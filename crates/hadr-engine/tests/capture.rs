//! Capture → replay: records captured from the WAL, applied to a copy of the
//! initial database, reproduce the live database page for page.

use hadr_engine::{apply_records, open_connection, page_hash, Checkpoint, Engine};
use hadr_log::LogConfig;
use rusqlite::Connection;

struct Fixture {
    _tmp: tempfile::TempDir,
    engine: Engine,
    conn: Connection,
    base: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let cfg = LogConfig {
        segment_size: 256 << 10,
        ..LogConfig::default()
    };
    Engine::init(&dir, &cfg).unwrap();
    // The replica starts from the same bytes as the primary's initial database.
    let base = tmp.path().join("replica.db");
    std::fs::copy(dir.join("data.db"), &base).unwrap();
    let (engine, _) = Engine::open(&dir, &cfg).unwrap();
    let conn = engine.connect().unwrap();
    Fixture {
        _tmp: tmp,
        engine,
        conn,
        base,
    }
}

impl Fixture {
    fn exec(&self, sql: &str) {
        self.conn.execute_batch(sql).unwrap();
        self.engine.capture_commits().unwrap();
    }

    fn replay_and_compare(&self) {
        let records: Vec<_> = self
            .engine
            .log()
            .read_from(0)
            .unwrap()
            .map(|r| r.unwrap().1)
            .collect();
        assert!(!records.is_empty());
        let _ = std::fs::remove_file(&self.base);
        let _ = std::fs::remove_file(self.base.with_extension("db-wal"));
        let _ = std::fs::remove_file(self.base.with_extension("db-shm"));
        let base_src = self.engine.dir().parent().unwrap().join("pristine.db");
        std::fs::copy(&base_src, &self.base).unwrap();
        let mut replica = open_connection(&self.base).unwrap();
        // Replay in several batches, as a standby would.
        for chunk in records.chunks(7) {
            apply_records(&mut replica, chunk.iter()).unwrap();
        }
        let want = page_hash(&self.conn).unwrap();
        let got = page_hash(&replica).unwrap();
        assert_eq!(got, want, "replayed database differs from the live one");
        let ok: String = replica
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
    }
}

fn keep_pristine(f: &Fixture) {
    std::fs::copy(
        &f.base,
        f.engine.dir().parent().unwrap().join("pristine.db"),
    )
    .unwrap();
}

#[test]
fn ddl_dml_vacuum_big_transactions_and_wal_generations_replay_identically() {
    let f = fixture();
    keep_pristine(&f);
    f.exec("CREATE TABLE a(id INTEGER PRIMARY KEY, v TEXT); CREATE INDEX a_v ON a(v);");
    for i in 0..200 {
        f.exec(&format!(
            "INSERT INTO a(v) VALUES ('row {i} {}')",
            "x".repeat(i % 50)
        ));
    }
    f.exec("UPDATE a SET v = v || '!' WHERE id % 3 = 0; DELETE FROM a WHERE id % 5 = 0;");
    // A multi-MiB transaction (many pages, and likely a cache spill into the WAL).
    f.exec("BEGIN; CREATE TABLE blobs(id INTEGER PRIMARY KEY, b BLOB); INSERT INTO blobs(b) SELECT randomblob(300000) FROM (WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < 20) SELECT i FROM s); COMMIT;");
    f.replay_and_compare();
    // Checkpoint: the next write restarts the WAL with new salts (a new generation).
    assert!(matches!(
        f.engine.checkpoint(false).unwrap(),
        Checkpoint::Complete(_)
    ));
    f.exec("INSERT INTO a(v) VALUES ('after checkpoint')");
    f.exec("CREATE TRIGGER a_t AFTER INSERT ON a BEGIN UPDATE a SET v = upper(v) WHERE id = NEW.id; END;");
    f.exec("INSERT INTO a(v) VALUES ('triggered')");
    f.replay_and_compare();
    // Shrink: drop the blobs and VACUUM, so the database file gets smaller.
    f.exec("DROP TABLE blobs");
    let before: i64 = f
        .conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    f.exec("VACUUM");
    let after: i64 = f
        .conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    assert!(
        after < before / 2,
        "VACUUM should shrink the file ({before} → {after})"
    );
    f.replay_and_compare();
    // A truncating checkpoint, then more DDL.
    assert!(matches!(
        f.engine.checkpoint(true).unwrap(),
        Checkpoint::Complete(_)
    ));
    f.exec("ALTER TABLE a ADD COLUMN w INTEGER DEFAULT 7; CREATE VIEW av AS SELECT v FROM a;");
    f.replay_and_compare();
}

#[test]
fn rolled_back_and_spilled_transactions_are_not_captured() {
    let f = fixture();
    keep_pristine(&f);
    f.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)");
    let n_before = f.engine.log().read_from(0).unwrap().count();
    // A large transaction spills pages into the WAL, then rolls back.
    f.conn.execute_batch("PRAGMA cache_size = 10; BEGIN; INSERT INTO t(b) SELECT randomblob(100000) FROM (WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < 30) SELECT i FROM s);").unwrap();
    f.conn.execute_batch("ROLLBACK").unwrap();
    assert_eq!(
        f.engine.capture_commits().unwrap(),
        None,
        "a rolled-back transaction was captured"
    );
    assert_eq!(f.engine.log().read_from(0).unwrap().count(), n_before);
    f.exec("INSERT INTO t(b) VALUES (x'01')");
    f.replay_and_compare();
}
