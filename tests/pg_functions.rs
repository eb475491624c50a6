//! PostgreSQL's common functions and literal forms through real clients
//! (issue 12 item 3; crates/hadr-server/src/pg_functions.rs and the
//! translator): the rows of the issue's table they cover, each with the
//! type a driver is told, on a primary and on a standby.

mod common;
use common::*;

use std::time::{Duration, Instant};

use tokio_postgres::types::Type;

#[test]
fn the_issue_rows_work_in_psql() -> Result<()> {
    let s = start(&[])?;
    let (ok, out, err) = psql(
        &s.conninfo(),
        &["-At", "-F", "|", "-v", "ON_ERROR_STOP=1"],
        "SELECT version();\n\
         SELECT current_schema(), current_user, current_database(), session_user;\n\
         SELECT now() = transaction_timestamp(), now() IS NOT NULL;\n\
         SELECT E'a\\tb', $$it's$$, $q$x$$y$q$;\n\
         SELECT 'abc' ILIKE 'A%', 'abc' NOT ILIKE 'b%';\n\
         SELECT greatest(1, NULL, 3), least('b', 'a'), coalesce(NULL, 2), nullif(1, 1) IS NULL;\n",
    );
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("PostgreSQL 15.0 (hadr "), "{out}");
    assert_eq!(lines[1], "public|test|test|test", "{out}");
    assert_eq!(lines[2], "t|t", "{out}");
    assert_eq!(lines[3], "a\tb|it's|x$$y", "{out}");
    assert_eq!(lines[4], "t|t", "{out}");
    assert_eq!(lines[5], "3|a|2|t", "{out}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn types_clocks_and_sleep_through_tokio_postgres() -> Result<()> {
    let s = start(&[])?;
    let c = s.client().await?;

    // The types drivers are told.
    let st = c
        .prepare("SELECT now(), clock_timestamp(), version(), current_user, pg_backend_pid(), gen_random_uuid()")
        .await?;
    let types: Vec<Type> = st.columns().iter().map(|c| c.type_().clone()).collect();
    assert_eq!(
        types,
        [
            Type::TIMESTAMPTZ,
            Type::TIMESTAMPTZ,
            Type::TEXT,
            Type::TEXT,
            Type::INT4,
            Type::UUID
        ]
    );
    let row = c.query_one(&st, &[]).await?;
    let now: std::time::SystemTime = row.get(0);
    let age = std::time::SystemTime::now().duration_since(now)?;
    assert!(age < Duration::from_secs(5), "now() is {age:?} old");
    let pid: i32 = row.get(4);
    assert!(pid > 0);
    let u: String = c
        .query_one("SELECT gen_random_uuid()::text", &[])
        .await?
        .get(0);
    assert_eq!(u.len(), 36, "{u}");

    // now() stands still inside a transaction; clock_timestamp() does not.
    c.batch_execute("BEGIN").await?;
    let t1: std::time::SystemTime = c.query_one("SELECT now()", &[]).await?.get(0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let r = c
        .query_one(
            "SELECT now(), clock_timestamp(), statement_timestamp()",
            &[],
        )
        .await?;
    let (t2, clock, stmt): (
        std::time::SystemTime,
        std::time::SystemTime,
        std::time::SystemTime,
    ) = (r.get(0), r.get(1), r.get(2));
    assert_eq!(t1, t2, "now() moved inside a transaction");
    assert!(clock > t2 && stmt > t2);
    c.batch_execute("COMMIT").await?;
    let t3: std::time::SystemTime = c.query_one("SELECT now()", &[]).await?.get(0);
    assert!(t3 > t2, "a new transaction, a new now()");

    // pg_sleep sleeps, and a cancel request stops it.
    let t = Instant::now();
    c.execute("SELECT pg_sleep(0.2)", &[]).await?;
    assert!(t.elapsed() >= Duration::from_millis(200));
    let token = c.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let t = Instant::now();
    let e = c.execute("SELECT pg_sleep(60)", &[]).await.unwrap_err();
    canceller.await??;
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e:?}"));
    assert!(db.message().contains("canceling statement"), "{db:?}");
    // The session goes on.
    let v: i32 = c.query_one("SELECT 1::int4", &[]).await?.get(0);
    assert_eq!(v, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_functions_exist_on_a_standby() -> Result<()> {
    let p = peer_pair(&[]).await?;
    let c = p.b.client().await?;
    let r = c
        .query_one("SELECT current_user, current_schema, version()", &[])
        .await?;
    let (user, schema, version): (String, String, String) = (r.get(0), r.get(1), r.get(2));
    assert_eq!((user.as_str(), schema.as_str()), ("test", "public"));
    assert!(version.starts_with("PostgreSQL 15.0 (hadr "), "{version}");
    Ok(())
}
