//! psql end to end against the real binary: DDL, DML, transaction blocks,
//! errors with their SQLSTATEs, multi-statement strings.

mod common;
use common::*;

#[test]
fn psql_end_to_end() -> Result<()> {
    let s = start(&[])?;
    let ci = s.conninfo();
    let (ok, out, err) = psql(
        &ci,
        &["-A", "-t", "-v", "ON_ERROR_STOP=0"],
        r#"
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, score REAL, CHECK (score >= 0));
CREATE TABLE c(id INTEGER PRIMARY KEY, t_id INTEGER REFERENCES t(id));
INSERT INTO t(name, score) VALUES ('a', 1.5), ('b', 2), ('semi;colon', 0);
SELECT id, name, score FROM t ORDER BY id;
UPDATE t SET score = score + 1 WHERE name = 'a';
SELECT score FROM t WHERE name = 'a';
DELETE FROM t WHERE name = 'b';
SELECT count(*) FROM t;
BEGIN;
INSERT INTO t(name, score) VALUES ('in-tx', 1);
SELECT no_such_column FROM t;
SELECT 1;
COMMIT;
SELECT count(*) FROM t WHERE name = 'in-tx';
BEGIN;
INSERT INTO t(name, score) VALUES ('kept', 1);
COMMIT;
SELECT name FROM t WHERE name = 'kept';
INSERT INTO t(name) VALUES ('a');
INSERT INTO t(score) VALUES (1);
INSERT INTO c(t_id) VALUES (999);
INSERT INTO t(name, score) VALUES ('neg', -1);
SELECT * FROM missing_table;
SELEKT 1;
SELECT 'x' AS one; SELECT 'y' AS two;
WITH x AS (SELECT 'cte' AS n) INSERT INTO t(name, score) SELECT n, 4 FROM x;
SELECT name FROM t WHERE score = 4;
"#,
    );
    assert!(ok, "psql failed: {err}");
    let lines: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    let expected = [
        "1|a|1.5",
        "2|b|2",
        "3|semi;colon|0", // insert + select
        "2.5",            // update
        "2",              // delete → count
        "0",              // aborted block rolled back
        "kept",           // committed block
        "x",
        "y",   // multi-statement string
        "cte", // WITH ... INSERT
    ];
    assert_eq!(lines, expected, "stdout was:\n{out}\nstderr:\n{err}");
    for code in [
        "42703", "25P02", "23505", "23502", "23503", "23514", "42P01", "42601",
    ] {
        assert!(
            err.contains(&format!("ERROR:  {code}")),
            "missing SQLSTATE {code} in:\n{err}"
        );
    }
    // psql splits scripts on ';' itself and does not know SQLite's trigger body
    // syntax, so a trigger goes in one query string (as any driver sends it);
    // the server's splitter keeps the body whole.
    let (ok, _, err) = psql(&ci, &["-c", "CREATE TRIGGER trg AFTER INSERT ON t BEGIN INSERT INTO c(t_id) VALUES (NEW.id); INSERT INTO c(t_id) VALUES (NEW.id); END; INSERT INTO t(name, score) VALUES ('trig', 3)"], "");
    assert!(ok, "trigger creation failed: {err} {}", s.log());
    let (_, out, _) = psql(&ci, &["-A", "-t", "-c", "SELECT count(*) FROM c"], "");
    assert_eq!(
        out.trim(),
        "2",
        "trigger should have fired once with two inserts"
    );
    // COMMIT of a failed block reports ROLLBACK, as in PostgreSQL.
    let (_, out, _) = psql(&ci, &[], "\\set QUIET off\nBEGIN;\nSELECT nope;\nCOMMIT;\n");
    assert!(out.contains("ROLLBACK"), "{out}");
    Ok(())
}

#[test]
fn psql_command_tags_and_settings() -> Result<()> {
    let s = start(&[])?;
    let (ok, out, err) = psql(
        &s.conninfo(),
        &["-v", "ON_ERROR_STOP=1"],
        "\\set QUIET off\nCREATE TABLE k(a INTEGER);\nINSERT INTO k VALUES (1),(2),(3);\nUPDATE k SET a = a + 1;\nDELETE FROM k WHERE a > 3;\nBEGIN;\nROLLBACK;\nSET application_name = 'tagtest';\nSHOW application_name;\nSHOW transaction_read_only;\nSHOW in_hot_standby;\nDROP TABLE k;\n",
    );
    assert!(ok, "{err}");
    for tag in [
        "CREATE TABLE",
        "INSERT 0 3",
        "UPDATE 3",
        "DELETE 1",
        "BEGIN",
        "ROLLBACK",
        "SET",
        "tagtest",
        "off",
        "DROP TABLE",
    ] {
        assert!(out.contains(tag), "missing {tag:?} in:\n{out}");
    }
    Ok(())
}

#[tokio::test]
async fn status_endpoint_and_health_checks() -> Result<()> {
    let s = start(&[])?;
    let (ok, _, err) = psql(
        &s.conninfo(),
        &[],
        "CREATE TABLE x(a); INSERT INTO x VALUES (1);",
    );
    assert!(ok, "{err}");
    let v = s.admin().status().await?;
    assert_eq!(v.role, NodeRole::Standard);
    assert_eq!(v.epoch, 1);
    assert!(v.log.end_lsn > 0);
    assert_eq!(v.log.end_lsn, v.log.flushed_lsn);
    assert_eq!(v.page_hash.map(|h| h.hash.len()), Some(64));
    assert!(s.admin().is_primary().await?);
    assert!(!s.admin().is_standby().await?);
    let metrics = s.admin().metrics().await?;
    assert!(
        metrics.contains("hadr_commits_total 1") || metrics.contains("hadr_commits_total 2"),
        "{metrics}"
    );
    // The single writer's lock: held by the two writes (and any
    // checkpoint), in a Prometheus histogram whose buckets add up.
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    let held = value("hadr_write_lock_hold_seconds_count ");
    assert!(held >= 2.0, "{metrics}");
    assert_eq!(
        value("hadr_write_lock_hold_seconds_bucket{le=\"+Inf\"} "),
        held
    );
    assert!(
        value("hadr_write_lock_hold_seconds_sum ") > 0.0,
        "{metrics}"
    );
    assert!(
        value("hadr_write_lock_wait_seconds_count ") >= held,
        "{metrics}"
    );
    // `hadr status` reads the same endpoint.
    let out = std::process::Command::new(bin())
        .args(["status", "--node", &format!("127.0.0.1:{}", s.admin)])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("standard"));
    Ok(())
}

#[test]
fn refused_statements_and_implicit_transactions() -> Result<()> {
    let s = start(&[])?;
    let ci = s.conninfo();
    let (_, _, err) = psql(&ci, &["-c", "ATTACH DATABASE '/tmp/x.db' AS x"], "");
    assert!(err.contains("0A000"), "{err}");
    let (_, _, err) = psql(&ci, &["-c", "PRAGMA journal_mode = DELETE"], "");
    assert!(err.contains("42501"), "{err}");
    // Several statements in one query string are one transaction: an error
    // in the second rolls back the first.
    let (ok, _, err) = psql(&ci, &["-c", "CREATE TABLE t(v INTEGER)"], "");
    assert!(ok, "{err}");
    let (ok, _, _) = psql(
        &ci,
        &[
            "-c",
            "INSERT INTO t VALUES (1); SELECT no_such_column FROM t",
        ],
        "",
    );
    assert!(!ok);
    let (_, out, _) = psql(&ci, &["-A", "-t", "-c", "SELECT count(*) FROM t"], "");
    assert_eq!(
        out.trim(),
        "0",
        "the first statement of a failed query string was kept"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_sessions_with_57p01_and_frees_the_port() -> Result<()> {
    let mut s = start(&[])?;
    let c = s.client().await?;
    c.batch_execute("CREATE TABLE t(v); INSERT INTO t VALUES (1);")
        .await
        .unwrap();
    let port = s.port;
    assert_eq!(s.stop()?.code(), Some(0));
    let e = c.simple_query("SELECT 1").await.unwrap_err();
    let fatal = e.code().map(|c| c.code().to_string());
    assert!(fatal.as_deref() == Some("57P01") || e.is_closed(), "{e:?}");
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port was not freed");
    s.spawn()?;
    let n: i64 = s
        .client()
        .await?
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_refused_over_max_connections_says_why() {
    let s = start(&["--max-connections", "1", "--reserved-connections", "0"])
        .expect("the server starts");
    let ci = s.conninfo();
    // The one slot, once the harness's readiness probe has given its back.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let _held = loop {
        match tokio_postgres::connect(&ci, tokio_postgres::NoTls).await {
            Ok((c, conn)) => {
                tokio::spawn(conn);
                break c;
            }
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    // psql asks for TLS first (sslmode=prefer): the refusal answers that, then says why.
    let (ok, _, err) = tokio::task::spawn_blocking(move || psql(&ci, &[], "SELECT 1;"))
        .await
        .unwrap();
    assert!(!ok);
    assert!(err.contains("too many clients already"), "{err}");
}
