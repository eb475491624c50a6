//! PostgreSQL compatibility through real clients (issue 12, as far as it
//! goes): the common functions and literal forms
//! (crates/hadr-server/src/pg_functions.rs and the translator), each with
//! the type a driver is told, on a primary and on a standby; PostgreSQL
//! column definitions (`serial`, `DEFAULT now()`; crates/hadr-sql/src/ddl.rs)
//! that number, default and replicate page-identically.

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
    // The issue's first rows: psql's \d and pg_catalog.pg_type answer.
    let (ok, out, err) = psql(
        &s.conninfo(),
        &["-v", "ON_ERROR_STOP=1"],
        "CREATE TABLE described(id int);\n\\d\nSELECT typname FROM pg_catalog.pg_type WHERE oid = 23;\n",
    );
    assert!(ok, "{err}");
    assert!(out.contains(" public | described | table |"), "{out}");
    assert!(out.contains(" int4\n"), "{out}");
    // A catalog hadr does not have is named in a 0A000, not SQLite's syntax error.
    let (ok, _, err) = psql(
        &s.conninfo(),
        &["-v", "ON_ERROR_STOP=1"],
        "SELECT * FROM pg_catalog.pg_stat_activity;\n",
    );
    assert!(!ok, "{err}");
    assert!(
        err.contains("0A000") && err.contains("catalog relation"),
        "{err}"
    );
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

    // current_setting and set_config are SHOW and SET.
    c.batch_execute("SET application_name = 'shop'").await?;
    let r = c
        .query_one(
            "SELECT current_setting('application_name'), current_setting('server_version'), current_setting('nope', true)",
            &[],
        )
        .await?;
    let (app, version, none): (String, String, Option<String>) = (r.get(0), r.get(1), r.get(2));
    assert_eq!(
        (app.as_str(), version.as_str(), none),
        ("shop", "15.0", None)
    );
    let set: String = c
        .query_one("SELECT set_config('application_name', 'till', false)", &[])
        .await?
        .get(0);
    assert_eq!(set, "till");
    let shown: String = c.query_one("SHOW application_name", &[]).await?.get(0);
    assert_eq!(shown, "till");
    let e = c
        .query_one("SELECT current_setting('nope')", &[])
        .await
        .unwrap_err();
    assert!(
        format!("{e:?}").contains("unrecognized configuration parameter"),
        "{e:?}"
    );

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

/// `ALTER COLUMN … TYPE` (what migration tools emit): the rows converted,
/// `USING` applied, the new type announced to clients and shown by psql,
/// indexes kept, a value that does not convert refused with 22P02 and the
/// table as it was, and the standby page-identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_column_type_converts_and_replicates() -> Result<()> {
    let p = peer_pair(&[]).await?;
    let c = p.a.client().await?;
    c.batch_execute(
        "CREATE TABLE m(id integer PRIMARY KEY, qty text, price real, note varchar(5));\
         CREATE INDEX m_qty ON m(qty);\
         INSERT INTO m VALUES (1, '10', 1.5, 'a'), (2, ' 20', 2.25, 'b'), (3, NULL, 3, 'c');",
    )
    .await?;
    c.batch_execute(
        "ALTER TABLE m ALTER COLUMN qty TYPE bigint USING trim(qty)::bigint, \
           ALTER price SET DATA TYPE numeric(10,2), ALTER COLUMN note TYPE text, \
           ALTER id TYPE bigint",
    )
    .await?;
    let rows = c
        .query("SELECT id, qty, note FROM m ORDER BY id", &[])
        .await?;
    let types: Vec<Type> = rows[0]
        .columns()
        .iter()
        .map(|c| c.type_().clone())
        .collect();
    assert_eq!(types, [Type::INT8, Type::INT8, Type::TEXT]);
    let qty: Vec<Option<i64>> = rows.iter().map(|r| r.get(1)).collect();
    assert_eq!(qty, [Some(10), Some(20), None]);
    // Still the rowid (an integer key looked up by the table's own b-tree),
    // the index is still there, and psql shows the new types.
    let (ok, out, err) = psql(&p.a.conninfo(), &[], "\\d m\n");
    assert!(ok, "{err}");
    assert!(out.contains(" qty    | bigint "), "{out}");
    assert!(out.contains(" price  | numeric(10,2) "), "{out}");
    assert!(out.contains("\"m_qty\" btree (qty)"), "{out}");
    // A value that does not convert: PostgreSQL's error, nothing changed.
    c.batch_execute("INSERT INTO m(id, qty, price, note) VALUES (4, 5, 1, 'many')")
        .await?;
    let e = c
        .batch_execute("ALTER TABLE m ALTER COLUMN note TYPE integer")
        .await
        .unwrap_err();
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e:?}"));
    assert_eq!(db.code().code(), "22P02", "{db:?}");
    assert!(db.message().contains("\"a\""), "{db:?}");
    let note: String = c
        .query_one("SELECT note FROM m WHERE id = 4", &[])
        .await?
        .get(0);
    assert_eq!(note, "many");
    hadr().verify_nodes(&p.a.admin_addr(), &p.b.admin_addr())?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_column_definitions_work_and_replicate() -> Result<()> {
    let p = peer_pair(&[]).await?;
    let c = p.a.client().await?;
    // The issue's row, as typed.
    c.batch_execute(
        "CREATE TABLE x(id serial primary key, ts timestamptz default now(), j jsonb, n numeric(10,2), u uuid default gen_random_uuid())",
    )
    .await?;
    c.batch_execute("INSERT INTO x(j, n) VALUES ('{\"a\":1}', 1.5), (NULL, 2)")
        .await?;
    let rows = c
        .query("SELECT id, ts, u::text, j, u FROM x ORDER BY id", &[])
        .await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, [1, 2], "serial numbers its rows");
    for r in &rows {
        let ts: std::time::SystemTime = r.get(1);
        let age = std::time::SystemTime::now().duration_since(ts)?;
        assert!(
            age < Duration::from_secs(10),
            "default now() is {age:?} old"
        );
        let u: String = r.get(2);
        let parsed = uuid::Uuid::parse_str(&u)?;
        assert_eq!(parsed.get_version_num(), 4, "{u}");
    }
    assert_ne!(rows[0].get::<_, String>(2), rows[1].get::<_, String>(2));
    // The declared PostgreSQL types are what clients are told.
    let types: Vec<Type> = rows[0]
        .columns()
        .iter()
        .map(|c| c.type_().clone())
        .collect();
    assert_eq!(types[1], Type::TIMESTAMPTZ);
    assert_eq!(
        (types[3].clone(), types[4].clone()),
        (Type::JSONB, Type::UUID)
    );
    // SQLite stores what it is given; a value that is not a uuid is an
    // error when sent as one (binary), not a crash, and the session goes on.
    c.batch_execute("INSERT INTO x(u) VALUES ('not-a-uuid')")
        .await?;
    let e = c
        .query("SELECT u FROM x WHERE id = 3", &[])
        .await
        .unwrap_err();
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e:?}"));
    assert!(db.code().code().starts_with("22"), "{db:?}");
    c.batch_execute("DELETE FROM x WHERE id = 3").await?;
    // A serial that is not the key: 0A000 naming the feature.
    let e = c
        .batch_execute("CREATE TABLE y(id serial, n text)")
        .await
        .unwrap_err();
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e:?}"));
    assert_eq!(db.code().code(), "0A000", "{db:?}");
    assert!(
        db.message().starts_with("hadr does not support serial"),
        "{db:?}"
    );
    // Identity columns, the public schema, CREATE INDEX CONCURRENTLY.
    c.batch_execute(
        "CREATE TABLE public.orders(id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, item text);\
         CREATE INDEX CONCURRENTLY orders_item ON public.orders(item);\
         INSERT INTO public.orders(item) VALUES ('a'), ('b');",
    )
    .await?;
    let ids: Vec<i64> = c
        .query("SELECT o.id FROM public.orders o ORDER BY o.id", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, [1, 2]);
    // The standby has the same pages.
    hadr().verify_nodes(&p.a.admin_addr(), &p.b.admin_addr())?;
    Ok(())
}

async fn tables(c: &tokio_postgres::Client) -> Result<Vec<String>> {
    let rows = c
        .query(
            "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_table_of_several_names_is_one_unit() -> Result<()> {
    let s = start(&[])?;
    let c = s.client().await?;
    c.batch_execute("CREATE TABLE a(x); CREATE TABLE b(x); CREATE TABLE c(x); CREATE TABLE d(x)")
        .await?;
    // The issue's row (pgbench -i's first statement), with a missing name.
    c.batch_execute("DROP TABLE IF EXISTS a, b, nope").await?;
    assert_eq!(tables(&c).await?, ["c", "d"]);
    // A failing name undoes the others, in a block or not.
    let e = c.batch_execute("DROP TABLE c, nope").await.unwrap_err();
    assert_eq!(
        e.as_db_error().map(|d| d.code().code()),
        Some("42P01"),
        "{e:?}"
    );
    assert_eq!(tables(&c).await?, ["c", "d"]);
    c.batch_execute("BEGIN; DROP TABLE c, d").await?;
    c.batch_execute("ROLLBACK").await?;
    assert_eq!(tables(&c).await?, ["c", "d"]);
    let e = c
        .batch_execute("DROP TABLE c, d CASCADE")
        .await
        .unwrap_err();
    assert_eq!(
        e.as_db_error().map(|d| d.code().code()),
        Some("0A000"),
        "{e:?}"
    );
    c.batch_execute("DROP TABLE c, d").await?;
    assert!(tables(&c).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_and_what_hadr_does_not_do() -> Result<()> {
    let s = start(&[])?;
    let c = s.client().await?;
    c.batch_execute(
        "CREATE TABLE a(id serial PRIMARY KEY, x int); CREATE TABLE b(x int);\
         INSERT INTO a(x) VALUES (1), (2); INSERT INTO b VALUES (3);",
    )
    .await?;
    // pgbench -i's form.
    c.batch_execute("truncate table a, b").await?;
    let n: i64 = c
        .query_one(
            "SELECT ((SELECT count(*) FROM a) + (SELECT count(*) FROM b))::int8",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(n, 0);
    c.batch_execute("INSERT INTO a(x) VALUES (9)").await?;
    let id: i64 = c.query_one("SELECT id FROM a", &[]).await?.get(0);
    assert_eq!(
        id, 1,
        "an emptied table numbers from 1 again (RESTART IDENTITY)"
    );
    // Named refusals, never a SQLite syntax error; the session goes on.
    for (sql, says) in [
        ("LISTEN jobs", "hadr does not support LISTEN/NOTIFY"),
        ("NOTIFY jobs", "hadr does not support LISTEN/NOTIFY"),
        (
            "COPY a FROM '/tmp/a.csv'",
            "hadr does not support COPY to or from a file on the server",
        ),
        (
            "SELECT * FROM information_schema.routines",
            "hadr does not support this catalog relation yet",
        ),
        ("CREATE SEQUENCE s", "hadr does not support sequences"),
        (
            "TRUNCATE a CASCADE",
            "hadr does not support TRUNCATE … CASCADE",
        ),
        (
            "CREATE TABLE c(id serial, x int)",
            "hadr does not support serial",
        ),
    ] {
        let e = c.batch_execute(sql).await.unwrap_err();
        let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e:?}"));
        assert_eq!(db.code().code(), "0A000", "{sql}: {db:?}");
        assert!(db.message().starts_with(says), "{sql}: {db:?}");
    }
    // Poolers' UNLISTEN * stays harmless.
    c.batch_execute("UNLISTEN *").await?;
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
    // psql's \d on the standby: the catalogs are computed where asked.
    p.a.client()
        .await?
        .batch_execute("CREATE TABLE seen_on_standby(id integer PRIMARY KEY, note text)")
        .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, out, err) = psql(&p.b.conninfo(), &[], "\\d seen_on_standby\n");
        if ok && out.contains("\"seen_on_standby_pkey\" PRIMARY KEY, btree (id)") {
            break;
        }
        assert!(Instant::now() < deadline, "{out}{err}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// psql's describing meta-commands (`\dt \d \di \dv \dn \l \du \d NAME \d+
/// NAME \x`) on a schema made with PostgreSQL DDL, compared with
/// tests/psql/describe.out (crates/hadr-sql/src/catalog/ answers the
/// catalog queries psql sends). `HADR_BLESS=1` rewrites the expected file
/// after a deliberate change; read the diff before committing it.
#[test]
fn psql_describes_tables_indexes_views_and_keys() -> Result<()> {
    let s = start(&[])?;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/psql");
    let script = std::fs::read_to_string(dir.join("describe.sql"))?;
    let (ok, out, err) = psql(
        &s.conninfo(),
        &["-v", "ON_ERROR_STOP=1", "-P", "pager=off"],
        &script,
    );
    assert!(ok, "{err}");
    let expected_path = dir.join("describe.out");
    if std::env::var_os("HADR_BLESS").is_some() {
        std::fs::write(&expected_path, &out)?;
    }
    let expected = std::fs::read_to_string(&expected_path)?;
    assert_eq!(
        out, expected,
        "psql's output differs from tests/psql/describe.out"
    );
    // \conninfo and \timing, whose output has a port and a time in it.
    let (ok, out, err) = psql(&s.conninfo(), &[], "\\conninfo\n\\timing on\nSELECT 1;\n");
    assert!(ok, "{err}");
    assert!(
        out.contains("You are connected to database \"test\" as user \"test\""),
        "{out}"
    );
    assert!(out.contains("Time: "), "{out}");
    Ok(())
}

/// COMMENT ON a table, view, column and index: psql's `\dt+` and `\d+`
/// show them, `obj_description` / `col_description` / `pg_description`
/// answer, `IS NULL` removes one, a missing object is PostgreSQL's error,
/// and the comments reach a standby with the rest of the log.
#[tokio::test]
async fn comments_show_in_psql_and_reach_the_standby() -> Result<()> {
    let p = peer_pair(&[]).await?;
    // Before any comment the functions answer NULL (there is no table yet).
    let (ok, out, err) = psql(
        &p.a.conninfo(),
        &["-At", "-v", "ON_ERROR_STOP=1"],
        "CREATE TABLE accounts(id integer PRIMARY KEY, owner text);\n\
         SELECT obj_description('accounts'::regclass, 'pg_class') IS NULL, count(*) FROM pg_description;\n",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "t|0\n");
    let (ok, _, err) = psql(
        &p.a.conninfo(),
        &["-v", "ON_ERROR_STOP=1"],
        "CREATE VIEW rich AS SELECT id FROM accounts;\n\
         COMMENT ON TABLE public.accounts IS 'who owns what';\n\
         COMMENT ON COLUMN accounts.owner IS $$the owner's name$$;\n\
         COMMENT ON VIEW rich IS 'rich ones';\n\
         COMMENT ON INDEX accounts_pkey IS 'gone soon';\n\
         COMMENT ON INDEX accounts_pkey IS NULL;\n\
         COMMENT ON TABLE accounts IS 'who owns what, again';\n",
    );
    assert!(ok, "{err}");
    let (ok, out, err) = psql(&p.a.conninfo(), &[], "\\dt+ accounts\n\\d+ accounts\n");
    assert!(ok, "{err}");
    assert!(out.contains("| who owns what, again"), "{out}");
    assert!(out.contains("| the owner's name"), "{out}");
    let (ok, out, err) = psql(
        &p.a.conninfo(),
        &["-At", "-F", "|", "-v", "ON_ERROR_STOP=1"],
        "SELECT obj_description('rich'::regclass), col_description('accounts'::regclass, 2), \
           col_description('accounts'::regclass, 1) IS NULL;\n\
         SELECT c.relname, d.objsubid, d.description FROM pg_description d \
           JOIN pg_class c ON c.oid = d.objoid ORDER BY 1, 2;\n",
    );
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "rich ones|the owner's name|t\n\
         accounts|0|who owns what, again\n\
         accounts|2|the owner's name\n\
         rich|0|rich ones\n"
    );
    // PostgreSQL's errors for what is not there, and what hadr does not keep.
    for (sql, code) in [
        ("COMMENT ON TABLE nope IS 'x';\n", "42P01"),
        ("COMMENT ON COLUMN accounts.nope IS 'x';\n", "42703"),
        ("COMMENT ON SCHEMA public IS 'x';\n", "0A000"),
    ] {
        let (ok, _, err) = psql(
            &p.a.conninfo(),
            &["-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose"],
            sql,
        );
        assert!(!ok && err.contains(code), "{sql}: {err}");
    }
    // The standby has them too.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, out, err) = psql(&p.b.conninfo(), &[], "\\d+ accounts\n");
        if ok && out.contains("| the owner's name") {
            break;
        }
        assert!(Instant::now() < deadline, "{out}{err}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// `information_schema`'s constraint and view relations, as migration
/// tools read them: the same rows PostgreSQL 15 gives for the same schema
/// (checked once against a PostgreSQL 15 server with this script).
#[test]
fn information_schema_constraints_and_views() -> Result<()> {
    let s = start(&[])?;
    let (ok, out, err) = psql(
        &s.conninfo(),
        &["-At", "-F", "|", "-v", "ON_ERROR_STOP=1"],
        INFORMATION_SCHEMA_SCRIPT,
    );
    assert!(ok, "{err}");
    assert_eq!(out, INFORMATION_SCHEMA_EXPECTED, "{out}");
    Ok(())
}

const INFORMATION_SCHEMA_SCRIPT: &str = "\
CREATE TABLE accounts(id integer PRIMARY KEY, owner varchar(40) NOT NULL UNIQUE);
CREATE TABLE transfers(id bigserial PRIMARY KEY, src integer NOT NULL REFERENCES accounts(id) ON DELETE CASCADE, dst integer NOT NULL);
ALTER TABLE transfers ADD CONSTRAINT transfers_dst_fkey FOREIGN KEY (dst) REFERENCES accounts(id) ON UPDATE SET NULL;
CREATE VIEW rich AS SELECT id FROM accounts;
SELECT table_name, constraint_name, constraint_type FROM information_schema.table_constraints
  WHERE table_schema = 'public' AND constraint_type <> 'CHECK' ORDER BY 1, 2;
SELECT table_name, constraint_name, column_name, ordinal_position, position_in_unique_constraint
  FROM information_schema.key_column_usage WHERE table_schema = 'public' ORDER BY 1, 2, 4;
SELECT constraint_name, unique_constraint_name, match_option, update_rule, delete_rule
  FROM information_schema.referential_constraints WHERE constraint_schema = 'public' ORDER BY 1;
SELECT table_name, column_name, constraint_name FROM information_schema.constraint_column_usage
  WHERE table_schema = 'public' ORDER BY 3, 1, 2;
SELECT table_name, check_option, is_updatable FROM information_schema.views WHERE table_schema = 'public';
";

/// `generate_series` as a relation, array subscripts, SQL's
/// `trim(… FROM …)` and `pg_settings`: what scripts and drivers use beside
/// the catalogs.
#[test]
fn series_subscripts_trim_and_settings_in_psql() -> Result<()> {
    let s = start(&[])?;
    let (ok, out, err) = psql(
        &s.conninfo(),
        &["-At", "-F", "|", "-v", "ON_ERROR_STOP=1"],
        "CREATE TABLE g(id integer PRIMARY KEY, v bigint);\n\
         INSERT INTO g SELECT n, n * 2 FROM generate_series(1, 1000) AS s(n);\n\
         SELECT count(*), sum(v) FROM g;\n\
         SELECT string_agg(x::text, ',') FROM generate_series(10, 1, -3) x;\n\
         SELECT count(*) FROM generate_series(5, 1);\n\
         SELECT ('{10,20,30}')[2], ('{10,20,30}')[4] IS NULL;\n\
         SELECT trim(both 'x' from 'xxaxx'), trim(leading from '  a'), trim(trailing '!' from 'a!!');\n\
         SELECT setting FROM pg_settings WHERE name = 'max_index_keys';\n\
         SELECT 'public.g'::regclass = 'g'::regclass, 'pg_catalog.pg_class'::regclass, '16384'::regclass;\n\
         SET application_name = 'probe';\n\
         SELECT setting FROM pg_catalog.pg_settings WHERE name = 'application_name';\n",
    );
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().filter(|l| *l != "SET").collect::<Vec<_>>(),
        [
            "1000|1001000",
            "10,7,4,1",
            "0",
            "20|t",
            "a|a|a",
            "32",
            "t|1259|16384",
            "probe"
        ],
        "{out}"
    );
    Ok(())
}

/// pgjdbc's `DatabaseMetaData.getTables`, `getColumns`, `getPrimaryKeys`,
/// `getImportedKeys`, `getExportedKeys` and `getIndexInfo` (what database
/// GUIs and JDBC tools call) on a schema made with PostgreSQL DDL: foreign
/// keys with their actions, a descending column in a unique index.
#[test]
fn pgjdbc_lists_tables_and_columns() -> Result<()> {
    let s = start(&[])?;
    let (ok, _, err) = psql(
        &s.conninfo(),
        &["-v", "ON_ERROR_STOP=1"],
        "CREATE TABLE accounts(id integer PRIMARY KEY, owner varchar(40) NOT NULL, balance numeric(12,2) DEFAULT 0);\n\
         CREATE VIEW rich AS SELECT id FROM accounts WHERE balance > 100;\n\
         CREATE TABLE transfers(id bigserial PRIMARY KEY, src integer NOT NULL REFERENCES accounts(id) ON DELETE CASCADE, dst integer NOT NULL, amount numeric(12,2));\n\
         ALTER TABLE transfers ADD CONSTRAINT transfers_dst_fkey FOREIGN KEY (dst) REFERENCES accounts(id);\n\
         CREATE UNIQUE INDEX transfers_pair ON transfers(src, dst DESC);\n\
         CREATE INDEX transfers_amount ON transfers(amount);\n\
         COMMENT ON TABLE accounts IS 'who owns what';\n\
         COMMENT ON COLUMN accounts.owner IS 'the owner';\n",
    );
    assert!(ok, "{err}");
    let (_classes, cp) = javac_client("MetaCheck");
    let out = std::process::Command::new("java")
        .args(["-cp", &cp, "MetaCheck"])
        .arg(format!("jdbc:postgresql://127.0.0.1:{}/test", s.port))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        text,
        // What PostgreSQL 15 answers for the same schema, line for line
        // (checked once against a PostgreSQL 15 server with this client).
        "tables [accounts TABLE who owns what][transfers TABLE null][rich VIEW null]\n\
         columns [id int4 10 NO null null][owner varchar 40 NO null the owner][balance numeric 12 YES 0 null]\n\
         pk [id 1 accounts_pkey]\n\
         imported [accounts id transfers dst 1 3 3 transfers_dst_fkey accounts_pkey]\
                  [accounts id transfers src 1 3 0 transfers_src_fkey accounts_pkey]\n\
         exported [transfers dst 1][transfers src 1]\n\
         indexes [transfers_pair f 1 src A][transfers_pair f 2 dst D][transfers_pkey f 1 id A]\
                 [transfers_amount t 1 amount A]\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// SQLAlchemy 2's ORM and inspector through psycopg 3: `create_all`,
/// inserts, a query, `drop_all`, `get_table_names`, `get_columns`,
/// `get_pk_constraint`, `get_foreign_keys`, `get_indexes`,
/// `get_unique_constraints`.
#[test]
fn sqlalchemy_orm_and_inspector_through_psycopg() -> Result<()> {
    let s = start(&[])?;
    let out = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/sqlalchemy_check.py"
        ))
        .arg(format!(
            "postgresql+psycopg://test@127.0.0.1:{}/test",
            s.port
        ))
        .output()
        .expect("python3 with SQLAlchemy and psycopg must be installed (.ci/run does)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        text,
        // hadr's numeric keeps the value, not the declared scale: 20, not 20.00.
        "ids [1, 2] rich 20\n\
         tables ['sa_account', 'sa_branch']\n\
         columns [('id', 'INTEGER', False), ('branch_id', 'INTEGER', True), ('balance', 'NUMERIC(12, 2)', True)]\n\
         comments one per customer [None, 'where it is kept', None]\n\
         pk {'constrained_columns': ['id'], 'name': 'sa_account_pkey', 'comment': None}\n\
         fk sa_account_branch_id_fkey ['branch_id'] sa_branch ['id']\n\
         indexes [('ix_sa_account_branch_id', False, ['branch_id'])]\n\
         unique [('sa_branch_name_key', ['name'])]\n\
         after drop []\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// What PostgreSQL 15 printed for [`INFORMATION_SCHEMA_SCRIPT`]
/// (`psql -At -F '|'`), except the view's `is_updatable`: PostgreSQL's
/// simple view is updatable, SQLite's views are not.
const INFORMATION_SCHEMA_EXPECTED: &str = "\
accounts|accounts_owner_key|UNIQUE
accounts|accounts_pkey|PRIMARY KEY
transfers|transfers_dst_fkey|FOREIGN KEY
transfers|transfers_pkey|PRIMARY KEY
transfers|transfers_src_fkey|FOREIGN KEY
accounts|accounts_owner_key|owner|1|
accounts|accounts_pkey|id|1|
transfers|transfers_dst_fkey|dst|1|1
transfers|transfers_pkey|id|1|
transfers|transfers_src_fkey|src|1|1
transfers_dst_fkey|accounts_pkey|NONE|SET NULL|NO ACTION
transfers_src_fkey|accounts_pkey|NONE|NO ACTION|CASCADE
accounts|owner|accounts_owner_key
accounts|id|accounts_pkey
accounts|id|transfers_dst_fkey
transfers|id|transfers_pkey
accounts|id|transfers_src_fkey
rich|NONE|NO
";
