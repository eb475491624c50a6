//! COPY FROM STDIN and COPY TO STDOUT through real clients (issue 12 item
//! 5; crates/hadr-server/src/session/copy.rs, crates/hadr-copy): psql's
//! `COPY` and `\copy` in text and CSV with their options, tokio-postgres's
//! extended-protocol `copy_in`/`copy_out`, pgjdbc's `CopyManager`, psycopg's `cursor.copy()` with a
//! million rows each way; a bad row stops the load with its line number
//! and nothing committed, the session goes on; a load replicates
//! page-identically and a standby refuses one.

mod common;
use common::*;

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;

use futures::{SinkExt, StreamExt};

fn count(conninfo: &str, table: &str) -> i64 {
    let (ok, out, err) = psql(
        conninfo,
        &["-At"],
        &format!("SELECT count(*) FROM {table};"),
    );
    assert!(ok, "{err}");
    out.trim().parse().unwrap_or(-1)
}

#[test]
fn psql_copy_and_backslash_copy_in_text_and_csv() -> Result<()> {
    let s = start(&[])?;
    let ci = s.conninfo();
    let dir = tempfile::tempdir()?;
    let csv = dir.path().join("in.csv");
    std::fs::File::create(&csv)?.write_all(
        b"id,name,note\n1,\"Smith, J\",\"said \"\"hi\"\"\nthen left\"\n2,,\"\"\n3,plain,x\n",
    )?;
    let out_csv = dir.path().join("out.csv");
    let script = format!(
        "CREATE TABLE t(id int primary key, name text, note text, ok boolean);\n\
         COPY t (id, name, note, ok) FROM STDIN;\n\
         10\ttab\\there\t\\N\tt\n\
         11\tback\\\\slash\tnew\\nline\tf\n\
         \\.\n\
         \\copy t(id, name, note) from '{csv}' with (format csv, header)\n\
         COPY t TO STDOUT;\n\
         COPY t (id, name) TO STDOUT WITH (FORMAT csv, HEADER, FORCE_QUOTE *);\n\
         \\copy (SELECT id, note FROM t WHERE id < 10 ORDER BY id) to '{out}' csv\n",
        csv = csv.display(),
        out = out_csv.display()
    );
    let (ok, out, err) = psql(&ci, &["-v", "ON_ERROR_STOP=1"], &script);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "10\ttab\\there\t\\N\tt\n\
         11\tback\\\\slash\tnew\\nline\tf\n\
         1\tSmith, J\tsaid \"hi\"\\nthen left\t\\N\n\
         2\t\\N\t\t\\N\n\
         3\tplain\tx\t\\N\n\
         id,name\n\
         \"10\",\"tab\there\"\n\
         \"11\",\"back\\slash\"\n\
         \"1\",\"Smith, J\"\n\
         \"2\",\n\
         \"3\",\"plain\"\n",
        "what COPY TO wrote"
    );
    assert_eq!(
        std::fs::read_to_string(&out_csv)?,
        "1,\"said \"\"hi\"\"\nthen left\"\n2,\"\"\n3,x\n"
    );

    // A bad row: its line, the right SQLSTATE, nothing of the load kept,
    // and the same session goes on.
    let (ok, out, err) = psql(
        &ci,
        &["-At"],
        "COPY t (id, name) FROM STDIN;\n20\tfine\nnot-a-number\tbad\n21\tnever\n\\.\n\
         SELECT count(*) FROM t;\n\
         COPY t (id, name) FROM STDIN;\n30\tone\t2\n\\.\n\
         COPY t (id, name, note) FROM STDIN (FORMAT csv);\n31,\"open\n\\.\n\
         COPY t (id, name) FROM STDIN (FORMAT csv, HEADER MATCH);\nid,nickname\n50,x\n\\.\n\
         COPY t FROM '/etc/passwd';\n\
         COPY t FROM STDIN (FORMAT binary);\n\
         COPY nope FROM STDIN;\n\
         COPY t (id, nope) FROM STDIN;\n\
         SELECT count(*) FROM t;\n",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "5\n5\n", "nothing of a failed COPY is kept: {err}");
    for (code, text) in [
        ("22P02", "invalid input syntax"),
        ("22P04", "extra data after last expected column"),
        ("22P04", "unterminated CSV quoted field"),
        ("22P04", "column names in the header line do not match"),
        ("0A000", "use psql's \\copy"),
        ("0A000", "binary"),
        ("42P01", "relation \"nope\" does not exist"),
        ("42703", "column \"nope\""),
    ] {
        assert!(
            err.contains(&format!("ERROR:  {code}")) && err.contains(text),
            "no {code} {text} in {err}"
        );
    }
    assert!(
        err.contains("CONTEXT:  COPY t, line 2, column id: \"not-a-number\""),
        "{err}"
    );
    // A constraint broken deep in a load (rows go in 64 to a statement):
    // still the exact line, and nothing kept.
    let mut load = String::from("COPY t (id, name) FROM STDIN;\n");
    for i in 0..300 {
        let id = if i == 149 { 10 } else { 1000 + i };
        load.push_str(&format!("{id}\trow {i}\n"));
    }
    load.push_str("\\.\nSELECT count(*) FROM t;\n");
    let (ok, out, err) = psql(&ci, &["-At"], &load);
    assert!(ok, "{err}");
    assert_eq!(out, "5\n", "{err}");
    assert!(
        err.contains("ERROR:  23505") && err.contains("CONTEXT:  COPY t, line 150\n"),
        "{err}"
    );
    // A COPY in a block is part of it.
    let (ok, _, err) = psql(
        &ci,
        &["-v", "ON_ERROR_STOP=1"],
        "BEGIN;\nCOPY t (id) FROM STDIN;\n40\n41\n\\.\nROLLBACK;\n",
    );
    assert!(ok, "{err}");
    assert_eq!(count(&ci, "t"), 5);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_copy_replicates_and_a_standby_refuses() -> Result<()> {
    let p = peer_pair(&[]).await?;
    let c = p.a.client().await?;
    c.batch_execute("CREATE TABLE big(id integer primary key, v text, d double precision)")
        .await
        .context("create")?;
    // 50 000 rows in CopyData pieces that cut rows anywhere.
    let mut data = Vec::new();
    for i in 0..50_000 {
        writeln!(data, "{i}\tvalue {i}\t{}", i as f64 / 4.0)?;
    }
    let sink = c.copy_in("COPY big FROM STDIN").await.context("copy_in")?;
    futures::pin_mut!(sink);
    for piece in data.chunks(7_919) {
        sink.send(bytes::Bytes::copy_from_slice(piece))
            .await
            .context("send")?;
    }
    let n = sink.finish().await.context("finish")?;
    assert_eq!(n, 50_000);
    let sum: f64 = c
        .query_one("SELECT sum(d) FROM big", &[])
        .await
        .context("sum")?
        .get(0);
    assert_eq!(sum, (0..50_000).map(|i| i as f64 / 4.0).sum::<f64>());

    // Out again, CSV, through the extended protocol.
    let stream = c
        .copy_out(
            "COPY (SELECT id, v FROM big WHERE id % 1000 = 0 ORDER BY id) TO STDOUT (FORMAT csv)",
        )
        .await
        .context("copy_out")?;
    let chunks: Vec<bytes::Bytes> = stream
        .map(|b| b.map_err(anyhow::Error::from))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()
        .context("copy_out rows")?;
    let text = String::from_utf8(chunks.concat())?;
    assert_eq!(text.lines().count(), 50);
    assert!(text.starts_with("0,value 0\n1000,value 1000\n"), "{text}");

    // A bad row in the middle: the error, nothing kept, the connection usable.
    let sink = c
        .copy_in("COPY big FROM STDIN")
        .await
        .context("copy_in 2")?;
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(
        b"60000\tok\t1\n60001\tbad\tnot-a-float\n",
    ))
    .await
    .context("send bad")?;
    let e = match sink.finish().await {
        Ok(n) => panic!("a bad row was accepted ({n} rows)"),
        Err(e) => e,
    };
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e:?}"));
    assert_eq!(db.code().code(), "22P02", "{db:?}");
    let n: i64 = c
        .query_one("SELECT count(*) FROM big", &[])
        .await
        .context("count after")?
        .get(0);
    assert_eq!(n, 50_000);

    // The standby has the same pages.
    hadr().verify_nodes(&p.a.admin_addr(), &p.b.admin_addr())?;
    let sc = p.b.client().await?;
    // It reads out…
    let rows: Vec<_> = sc
        .copy_out("COPY big (id) TO STDOUT")
        .await?
        .collect::<Vec<_>>()
        .await;
    let bytes: usize = rows
        .into_iter()
        .map(|r| r.map(|b| b.len()).unwrap_or(0))
        .sum();
    assert!(bytes > 50_000 * 2, "{bytes} bytes");
    // …but refuses a load (tokio-postgres's copy_in then leaves an
    // extra ReadyForQuery on the connection, so it comes last).
    let e = match sc.copy_in::<_, bytes::Bytes>("COPY big FROM STDIN").await {
        Ok(_) => panic!("a standby accepted COPY FROM"),
        Err(e) => e,
    };
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e:?}"));
    assert_eq!(db.code().code(), "25006", "{db:?}");
    Ok(())
}

#[test]
fn pgjdbc_copy_manager_in_and_out() -> Result<()> {
    let s = start(&[])?;
    let (_classes, cp) = javac_client("CopyCheck");
    let out = std::process::Command::new("java")
        .args(["-cp", &cp, "CopyCheck"])
        .arg(format!("jdbc:postgresql://127.0.0.1:{}/test", s.port))
        .arg("20000")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        text,
        "in 20000 out 20000 lines 20000 bad 22P02",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(count(&s.conninfo(), "jcopy"), 20_000);
    Ok(())
}

#[test]
fn psycopg_copies_a_million_rows_each_way() -> Result<()> {
    let s = start(&[])?;
    let out = std::process::Command::new("python3")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/psycopg_copy.py"))
        .arg(s.conninfo())
        .arg("1000000")
        .output()
        .expect("python3 with psycopg 3 must be installed (.ci/run does)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("in 1000000 out 1000000 sum 499999500000"),
        "{stdout}"
    );
    Ok(())
}

/// A COPY cancelled mid-load (the decoder thread busy, rows already
/// inserted) and one whose client vanishes: 57014 for the first, nothing
/// kept by either, and the server takes the next load at once (the
/// decoder thread and the write lock were let go).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_or_abandoned_copy_keeps_nothing_and_frees_the_writer() -> Result<()> {
    let s = start(&[])?;
    let c = s.client().await?;
    c.batch_execute("CREATE TABLE c(id integer, v text)")
        .await?;
    let mut chunk = Vec::new();
    for i in 0..20_000 {
        writeln!(chunk, "{i}\trow {i}")?;
    }
    let chunk = bytes::Bytes::from(chunk);

    let sink = c.copy_in("COPY c FROM STDIN").await?;
    futures::pin_mut!(sink);
    for _ in 0..10 {
        sink.send(chunk.clone()).await?;
    }
    c.cancel_token().cancel_query(tokio_postgres::NoTls).await?;
    // The cancel is noticed at the next message (the client learns of the
    // error when it ends the COPY: the server ignores its data meanwhile).
    tokio::time::sleep(Duration::from_millis(200)).await;
    sink.send(chunk.clone()).await?;
    let e = match tokio::time::timeout(Duration::from_secs(30), sink.finish()).await? {
        Err(e) => e,
        Ok(n) => panic!("a cancelled COPY finished with {n} rows"),
    };
    let code = e.as_db_error().map(|d| d.code().code().to_string());
    assert_eq!(code.as_deref(), Some("57014"), "{e:?}");
    let n: i64 = c.query_one("SELECT count(*) FROM c", &[]).await?.get(0);
    assert_eq!(n, 0, "a cancelled COPY keeps nothing");

    // A client that goes away mid-COPY: its transaction is rolled back and
    // the next writer is not kept waiting.
    let gone = s.client().await?;
    {
        let sink = gone.copy_in("COPY c FROM STDIN").await?;
        futures::pin_mut!(sink);
        sink.send(chunk.clone()).await?;
    }
    drop(gone);
    let started = Instant::now();
    let sink = c.copy_in("COPY c FROM STDIN").await?;
    futures::pin_mut!(sink);
    sink.send(chunk.clone()).await?;
    assert_eq!(sink.finish().await?, 20_000);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the next COPY waited {:?}",
        started.elapsed()
    );
    let n: i64 = c.query_one("SELECT count(*) FROM c", &[]).await?.get(0);
    assert_eq!(n, 20_000);
    Ok(())
}
