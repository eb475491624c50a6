//! tokio-postgres against the real binary: typed and untyped parameters,
//! binary results of every mapped type, NULLs, large blobs, prepared
//! statements, transactions, cancel, and pgbench.

mod common;
use common::*;
use tokio_postgres::types::Type;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_and_untyped_parameters_and_binary_results() -> Result<()> {
    let s = start(&[])?;
    let c = s.client().await?;
    c.batch_execute(
        "CREATE TABLE v(id INTEGER PRIMARY KEY, i INTEGER, b BIGINT, f REAL, d DOUBLE PRECISION, t TEXT, vc VARCHAR(10),
                        bl BLOB, by BYTEA, ok BOOLEAN, n NUMERIC, ts TIMESTAMP, dt DATE, js JSON)",
    )
    .await
    .unwrap();
    // Untyped parameters: types come from how each $N is used (column types).
    let n = c
        .execute(
            "INSERT INTO v(id, i, b, f, d, t, vc, bl, by, ok) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[&1i64, &42i64, &(1i64 << 40), &1.5f64, &-2.25f64, &"héllo", &"short", &vec![0u8, 1, 2, 255], &vec![9u8; 3], &true],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    // Typed parameters via prepare_typed.
    let st = c
        .prepare_typed(
            "INSERT INTO v(id, i, t) VALUES ($1, $2, $3)",
            &[Type::INT8, Type::INT4, Type::TEXT],
        )
        .await
        .unwrap();
    c.execute(&st, &[&2i64, &7i32, &"typed"]).await.unwrap();
    // NULLs round trip.
    c.execute(
        "INSERT INTO v(id, i, t, bl) VALUES ($1, $2, $3, $4)",
        &[&3i64, &None::<i64>, &None::<&str>, &None::<Vec<u8>>],
    )
    .await
    .unwrap();

    let row = c
        .query_one(
            "SELECT i, b, f, d, t, vc, bl, by, ok FROM v WHERE id = $1",
            &[&1i64],
        )
        .await
        .unwrap();
    assert_eq!(row.columns()[0].type_(), &Type::INT8);
    assert_eq!(row.get::<_, i64>(0), 42);
    assert_eq!(row.get::<_, i64>(1), 1i64 << 40);
    assert_eq!(row.get::<_, f64>(2), 1.5);
    assert_eq!(row.get::<_, f64>(3), -2.25);
    assert_eq!(row.get::<_, String>(4), "héllo");
    assert_eq!(row.get::<_, String>(5), "short");
    assert_eq!(row.get::<_, Vec<u8>>(6), vec![0u8, 1, 2, 255]);
    assert_eq!(row.get::<_, Vec<u8>>(7), vec![9u8; 3]);
    assert!(row.get::<_, bool>(8));
    let row = c
        .query_one("SELECT i, t, bl FROM v WHERE id = 3", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<i64>>(0), None);
    assert_eq!(row.get::<_, Option<String>>(1), None);
    assert_eq!(row.get::<_, Option<Vec<u8>>>(2), None);
    // Expression columns: count(*) is int8, avg is float8, and values are coerced to the announced type.
    let row = c
        .query_one("SELECT count(*), avg(i), max(t) FROM v", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 3);
    assert!((row.get::<_, f64>(1) - 24.5).abs() < 1e-9);
    // Casts choose the type of an expression.
    let row = c
        .query_one("SELECT $1::int8 + 1, 'x'::text, 2.5::float8", &[&41i64])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 42);
    assert_eq!(row.get::<_, String>(1), "x");
    assert_eq!(row.get::<_, f64>(2), 2.5);
    // Text-format simple query of the same data.
    let msgs = c
        .simple_query("SELECT ok, bl FROM v WHERE id = 1")
        .await
        .unwrap();
    let tokio_postgres::SimpleQueryMessage::Row(r) = &msgs[1] else {
        panic!("{msgs:?}")
    };
    assert_eq!(r.get(0), Some("t"));
    assert_eq!(r.get(1), Some("\\x000102ff"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_blobs_of_several_mib() -> Result<()> {
    let s = start(&[])?;
    let c = s.client().await?;
    c.batch_execute("CREATE TABLE big(id INTEGER PRIMARY KEY, data BLOB)")
        .await
        .unwrap();
    let blob: Vec<u8> = (0..6 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    c.execute("INSERT INTO big(id, data) VALUES ($1, $2)", &[&1i64, &blob])
        .await
        .unwrap();
    let back: Vec<u8> = c
        .query_one("SELECT data FROM big WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(back.len(), blob.len());
    assert!(back == blob, "blob changed in transit");
    let len: i64 = c
        .query_one("SELECT length(data) FROM big", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(len, blob.len() as i64);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_prepared_statements_and_portals() -> Result<()> {
    let s = start(&[])?;
    let mut c = s.client().await?;
    c.batch_execute("CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INTEGER NOT NULL)")
        .await
        .unwrap();
    let ins = c.prepare("INSERT INTO acct VALUES ($1, $2)").await.unwrap();
    for i in 0..50i64 {
        c.execute(&ins, &[&i, &100i64]).await.unwrap();
    }
    let tx = c.transaction().await.unwrap();
    tx.execute("UPDATE acct SET bal = bal - 10 WHERE id = $1", &[&1i64])
        .await
        .unwrap();
    tx.execute("UPDATE acct SET bal = bal + 10 WHERE id = $1", &[&2i64])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let tx = c.transaction().await.unwrap();
    tx.execute("UPDATE acct SET bal = 0", &[]).await.unwrap();
    tx.rollback().await.unwrap();
    let sum: i64 = c
        .query_one("SELECT sum(bal) FROM acct", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sum, 5000);
    // A portal read in chunks (Execute with a row limit).
    let tx = c.transaction().await.unwrap();
    let portal = tx
        .bind("SELECT id FROM acct ORDER BY id", &[])
        .await
        .unwrap();
    let mut seen = Vec::new();
    loop {
        let rows = tx.query_portal(&portal, 7).await.unwrap();
        if rows.is_empty() {
            break;
        }
        seen.extend(rows.iter().map(|r| r.get::<_, i64>(0)));
    }
    tx.commit().await.unwrap();
    assert_eq!(seen, (0..50).collect::<Vec<i64>>());
    // An error inside a transaction aborts it (25P02) until rollback.
    let tx = c.transaction().await.unwrap();
    let e = tx
        .execute("INSERT INTO acct VALUES (1, 1)", &[])
        .await
        .unwrap_err();
    assert_eq!(e.code().unwrap().code(), "23505");
    let e = tx.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(e.code().unwrap().code(), "25P02");
    tx.rollback().await.unwrap();
    assert_eq!(
        c.query_one("SELECT 1::int8", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        1
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_stops_a_running_query() -> Result<()> {
    let s = start(&[])?;
    let c = s.client().await?;
    let token = c.cancel_token();
    let started = std::time::Instant::now();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    });
    // A query that would run for minutes.
    let e = c
        .query("WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 10000000000) SELECT count(*) FROM r", &[])
        .await
        .unwrap_err();
    canceller.await.unwrap();
    assert_eq!(e.code().unwrap().code(), "57014", "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // The session survives.
    assert_eq!(
        c.query_one("SELECT 2::int8", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        2
    );
    Ok(())
}

#[test]
fn pgbench_runs_clean_and_money_is_conserved() -> Result<()> {
    let s = start(&[])?;
    let (ok, _, err) = psql(
        &s.conninfo(),
        &[],
        "CREATE TABLE accounts(aid INTEGER PRIMARY KEY, bid INTEGER, abalance INTEGER, filler TEXT);
         CREATE TABLE history(hid INTEGER PRIMARY KEY, aid INTEGER, delta INTEGER, mtime TEXT);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < 100000) INSERT INTO accounts SELECT i, 1, 0, '' FROM s;",
    );
    assert!(ok, "{err}");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/pgbench.sql");
    for mode in ["simple", "extended", "prepared"] {
        let out = std::process::Command::new("pgbench")
            .args(["-h", "127.0.0.1", "-p", &s.port.to_string(), "-n", "-f", script, "-M", mode, "-c", "8", "-j", "2", "-T", "3", "test"])
            .output()
            .expect("pgbench must be installed (apt-get install postgresql-contrib or postgresql-client)");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "pgbench -M {mode} failed:\n{text}");
        assert!(
            text.contains("number of failed transactions: 0 (0.000%)"),
            "pgbench -M {mode}:\n{text}"
        );
        let processed: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(
            processed > 100,
            "too few transactions in -M {mode}:\n{text}"
        );
    }
    let (_, out, _) = psql(&s.conninfo(), &["-A", "-t"], "SELECT (SELECT sum(abalance) FROM accounts) = (SELECT sum(delta) FROM history), (SELECT count(*) FROM history) > 300;");
    assert_eq!(out.trim(), "t|t", "balances and history disagree: {out}");
    Ok(())
}
