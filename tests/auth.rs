//! Authentication and access rules through the real binary and stock
//! clients (docs/security.md §Authentication and access rules): SCRAM with
//! psql, tokio-postgres, pgjdbc and psycopg; wrong password, unknown user,
//! no password, `reject`; users that replicate and survive a takeover;
//! read-only and non-admin roles; the `--insecure-trust` start refusal; the
//! per-source failure limit.

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The user the tests run role statements as: trusted from loopback and
/// not a role, hence an administrator.
const OPERATOR: &str = "test";

/// Rules: the operator is trusted from loopback (so is the test kit's
/// ready-probe), `blocked` is rejected, everybody else needs SCRAM.
fn rules() -> Vec<String> {
    [
        "--access",
        "host all test,ready-probe 127.0.0.1/32 trust",
        "--access",
        "host all blocked all reject",
        "--access",
        "host all all all scram-sha-256",
    ]
    .map(String::from)
    .to_vec()
}

fn rule_args() -> Vec<&'static str> {
    vec![
        "--access",
        "host all test,ready-probe 127.0.0.1/32 trust",
        "--access",
        "host all blocked all reject",
        "--access",
        "host all all all scram-sha-256",
    ]
}

fn conninfo(port: u16, user: &str) -> String {
    format!("host=127.0.0.1 port={port} user={user} dbname=app connect_timeout=10")
}

/// psql -c `sql` as `user` with `password` (None: no password at all, and
/// never prompt); (success, stdout, stderr).
fn psql_as(port: u16, user: &str, password: Option<&str>, sql: &str) -> (bool, String, String) {
    let mut c = Command::new("psql");
    c.arg(conninfo(port, user))
        .args([
            "-X",
            "-q",
            "-w",
            "-t",
            "-A",
            "-v",
            "VERBOSITY=verbose",
            "-c",
            sql,
        ])
        .env_remove("PGPASSWORD")
        .env("PGPASSFILE", "/nonexistent")
        .stdin(Stdio::null());
    if let Some(p) = password {
        c.env("PGPASSWORD", p);
    }
    let out = c.output().expect("psql must be installed");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A tokio-postgres connection as `user`; Err: the SQLSTATE and message.
async fn tp_connect(
    port: u16,
    user: &str,
    password: &str,
) -> std::result::Result<tokio_postgres::Client, (String, String)> {
    let conn = format!("{} password='{password}'", conninfo(port, user));
    match tokio_postgres::connect(&conn, tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            Ok(client)
        }
        Err(e) => Err(match e.as_db_error() {
            Some(d) => (d.code().code().to_string(), d.message().to_string()),
            None => (String::new(), e.to_string()),
        }),
    }
}

fn code_of(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.code().code().to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_with_psql_and_tokio_postgres() -> Result<()> {
    let s = start_with(rules())?;
    let port = s.port;
    let (ok, _, err) = psql_as(
        port,
        OPERATOR,
        None,
        "CREATE USER alice PASSWORD 'wonder land'",
    );
    assert!(ok, "{err}");

    // Right password: in, with both clients.
    let (ok, out, err) = psql_as(port, "alice", Some("wonder land"), "SELECT 41 + 1");
    assert!(ok && out == "42", "{out} {err}");
    let c = tp_connect(port, "alice", "wonder land").await.unwrap();
    let row = c.query_one("SELECT 41 + 1", &[]).await?;
    assert_eq!(row.get::<_, i64>(0), 42);

    // Wrong password: 28P01, and the same message for a user that does
    // not exist (with only the name changed).
    let (ok, _, wrong) = psql_as(port, "alice", Some("wonderland"), "SELECT 1");
    assert!(!ok);
    // (libpq prints no SQLSTATE for a failed connection: the codes are
    // checked with tokio-postgres below.)
    assert!(
        wrong.contains("password authentication failed for user \"alice\""),
        "{wrong}"
    );
    let (ok, _, unknown) = psql_as(port, "nobody", Some("wonderland"), "SELECT 1");
    assert!(!ok);
    assert_eq!(
        unknown.replace("nobody", "USER"),
        wrong.replace("alice", "USER"),
        "an unknown user must look like a wrong password"
    );
    let (code, msg) = tp_connect(port, "alice", "nope").await.unwrap_err();
    assert_eq!(code, "28P01", "{msg}");
    let (code, _) = tp_connect(port, "nobody", "nope").await.unwrap_err();
    assert_eq!(code, "28P01");

    // No password where one is required: libpq gives up by itself after
    // AuthenticationSASL (the server sends no error: it was not asked).
    let (ok, _, err) = psql_as(port, "alice", None, "SELECT 1");
    assert!(!ok);
    assert!(err.contains("no password supplied"), "{err}");

    // A reject rule: 28000, before any password is asked for.
    let (ok, _, err) = psql_as(port, "blocked", Some("x"), "SELECT 1");
    assert!(!ok);
    assert!(err.contains("access rule 2 rejects connection"), "{err}");
    let (code, msg) = tp_connect(port, "blocked", "x").await.unwrap_err();
    assert_eq!(code, "28000", "{msg}");

    // A verifier made by PostgreSQL (its pg_authid.rolpassword for
    // 'pencil') is stored as is and logs in with that password.
    let pg = "SCRAM-SHA-256$4096:+27VzkCXZHo2LfCRjqmT6g==$Qh94n9avrIqf8wJhhsQBJwFPjJhPg/Y2+yHvqMAt+OE=:Y1kPPGqw64451mBFrZ+SHuF4GmU6FrjwxsyEJrKkIOk=";
    let (ok, _, err) = psql_as(
        port,
        OPERATOR,
        None,
        &format!("CREATE USER pg PASSWORD '{pg}'"),
    );
    assert!(ok, "{err}");
    let (ok, out, err) = psql_as(port, "pg", Some("pencil"), "SELECT 41 + 1");
    assert!(ok && out == "42", "{out} {err}");

    // What is stored is the verifier, never the password.
    let (ok, out, err) = psql_as(
        port,
        OPERATOR,
        None,
        "SELECT verifier FROM hadr_roles WHERE name = 'alice'",
    );
    assert!(
        ok && out.starts_with("SCRAM-SHA-256$4096:") && !out.contains("wonder"),
        "{out} {err}"
    );

    // Roles without LOGIN cannot log in even with the right password.
    let (ok, _, err) = psql_as(port, OPERATOR, None, "CREATE ROLE group1 PASSWORD 'g'");
    assert!(ok, "{err}");
    let (ok, _, err) = psql_as(port, "group1", Some("g"), "SELECT 1");
    assert!(!ok && err.contains("not permitted to log in"), "{err}");
    let (code, _) = tp_connect(port, "group1", "g").await.unwrap_err();
    assert_eq!(code, "28000");

    // The password is in no log line.
    let log = s.log();
    assert!(
        !log.contains("wonder land") && !log.contains("wonderland"),
        "password in the log"
    );
    assert!(
        log.contains("failed login")
            && log.contains("user=alice")
            && log.contains("source=127.0.0.1"),
        "failed logins are logged with user and source"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_and_non_admin_roles() -> Result<()> {
    let s = start_with(rules())?;
    let port = s.port;
    for sql in [
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)",
        "INSERT INTO t VALUES (1, 'x')",
        "CREATE USER reader READONLY PASSWORD 'r'",
        "CREATE USER bob PASSWORD 'b'",
        "CREATE USER boss SUPERUSER PASSWORD 'B'",
    ] {
        let (ok, _, err) = psql_as(port, OPERATOR, None, sql);
        assert!(ok, "{sql}: {err}");
    }
    let reader = tp_connect(port, "reader", "r").await.unwrap();
    assert_eq!(
        reader
            .query_one("SELECT count(*) FROM t", &[])
            .await?
            .get::<_, i64>(0),
        1
    );
    for sql in [
        "INSERT INTO t VALUES (2, 'y')",
        "UPDATE t SET v = 'z'",
        "DELETE FROM t",
        "CREATE TABLE u(x)",
    ] {
        let e = reader.batch_execute(sql).await.unwrap_err();
        assert_eq!(code_of(&e), "42501", "{sql}: {e}");
    }
    // Even inside a block that says READ WRITE.
    reader.batch_execute("BEGIN READ WRITE").await?;
    let e = reader
        .batch_execute("INSERT INTO t VALUES (3, 'w')")
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), "42501");
    reader.batch_execute("ROLLBACK").await?;

    // A plain user writes, but manages no roles and cannot read or touch
    // the roles table.
    let bob = tp_connect(port, "bob", "b").await.unwrap();
    bob.batch_execute("INSERT INTO t VALUES (4, 'b')").await?;
    for sql in [
        "CREATE ROLE x",
        "ALTER ROLE bob SUPERUSER",
        "DROP ROLE reader",
        "SELECT * FROM hadr_roles",
        "UPDATE hadr_roles SET is_admin = 1",
        "DROP TABLE hadr_roles",
    ] {
        let e = bob.batch_execute(sql).await.unwrap_err();
        assert_eq!(code_of(&e), "42501", "{sql}: {e}");
    }
    // A superuser manages roles; the change applies from the next login.
    let boss = tp_connect(port, "boss", "B").await.unwrap();
    boss.batch_execute("ALTER ROLE reader NOREADONLY").await?;
    // (the extended protocol, as a prepared statement)
    boss.execute("ALTER USER bob PASSWORD 'b2'", &[]).await?;
    let (code, _) = tp_connect(port, "bob", "b").await.unwrap_err();
    assert_eq!(code, "28P01");
    tp_connect(port, "bob", "b2").await.unwrap();
    let reader = tp_connect(port, "reader", "r").await.unwrap();
    reader
        .batch_execute("INSERT INTO t VALUES (5, 'r')")
        .await?;
    let e = boss.batch_execute("DROP ROLE boss").await.unwrap_err();
    assert_eq!(code_of(&e), "55006");
    boss.batch_execute("DROP ROLE bob").await?;
    let (code, _) = tp_connect(port, "bob", "b2").await.unwrap_err();
    assert_eq!(code, "28P01");
    let e = boss
        .batch_execute("BEGIN; CREATE ROLE y; COMMIT")
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), "25001");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_replicate_and_survive_a_takeover() -> Result<()> {
    let pair = peer_pair(&rule_args()).await?;
    let (ok, _, err) = psql_as(
        pair.a.port,
        OPERATOR,
        None,
        "CREATE USER carol PASSWORD 'c4rol'",
    );
    assert!(ok, "{err}");
    // On the standby, once replayed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out, err) = psql_as(pair.b.port, "carol", Some("c4rol"), "SELECT 41 + 1");
        if ok && out == "42" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "carol never logged in on the standby: {err}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // An unknown user is shown the same salt by both nodes (the key that
    // derives it is replicated), as a real user's is.
    for user in ["carol", "nobody"] {
        let (fa, fb) = (
            server_first(pair.a.port, user),
            server_first(pair.b.port, user),
        );
        let salt = |f: &str| f.split(',').nth(1).map(str::to_string);
        assert!(salt(&fa).is_some_and(|s| s.starts_with("s=")), "{fa}");
        assert_eq!(salt(&fa), salt(&fb), "{user}");
        assert!(fa.ends_with(",i=4096"), "{fa}");
    }
    // Role statements only on the primary.
    let (ok, _, err) = psql_as(pair.b.port, OPERATOR, None, "CREATE USER dave PASSWORD 'd'");
    assert!(!ok && err.contains("25006"), "{err}");
    let (ok, _, _) = psql_as(pair.b.port, "carol", Some("wrong"), "SELECT 1");
    assert!(!ok);

    takeover_on(&pair.b)?;
    pair.b
        .wait_for(
            "writable primary",
            Duration::from_secs(30),
            Status::is_writable_primary,
        )
        .await?;
    let (ok, _, err) = psql_as(
        pair.b.port,
        "carol",
        Some("c4rol"),
        "CREATE TABLE after_takeover(x INTEGER)",
    );
    assert!(ok, "carol on the new primary: {err}");
    let (ok, _, err) = psql_as(pair.b.port, OPERATOR, None, "CREATE USER dave PASSWORD 'd'");
    assert!(ok, "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc_and_psycopg_log_in_with_scram() -> Result<()> {
    let s = start_with(rules())?;
    let port = s.port;
    let (ok, _, err) = psql_as(port, OPERATOR, None, "CREATE USER erin PASSWORD 'er1n'");
    assert!(ok, "{err}");

    // psycopg 3.
    let py = |password: &str| {
        let out = Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/clients/auth_check.py"
            ))
            .arg(format!("{} password={password}", conninfo(port, "erin")))
            .output()
            .expect("python3");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
            + &String::from_utf8_lossy(&out.stderr)
    };
    assert_eq!(py("er1n"), "ok 42");
    let bad = py("erin");
    assert!(
        bad.starts_with("error")
            && bad.contains("password authentication failed for user \"erin\""),
        "{bad}"
    );

    // pgjdbc.
    let classes = tempfile::tempdir()?;
    let javac = Command::new("javac")
        .arg("-d")
        .arg(classes.path())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/AuthCheck.java"
        ))
        .output()
        .expect("javac (default-jdk-headless)");
    assert!(
        javac.status.success(),
        "{}",
        String::from_utf8_lossy(&javac.stderr)
    );
    let java = |password: &str| {
        let cp = format!(
            "{}:/usr/share/java/postgresql.jar",
            classes.path().display()
        );
        let out = Command::new("java")
            .args(["-cp", &cp, "AuthCheck"])
            .arg(format!("jdbc:postgresql://127.0.0.1:{port}/app"))
            .args(["erin", password])
            .output()
            .expect("java");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
            + &String::from_utf8_lossy(&out.stderr)
    };
    assert_eq!(java("er1n"), "ok 42");
    let bad = java("erin");
    assert!(bad.starts_with("error 28P01"), "{bad}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_limited_per_source() -> Result<()> {
    let mut args = rules();
    args.extend(["--auth-failure-limit", "3", "--auth-failure-window", "4s"].map(String::from));
    let s = start_with(args)?;
    let port = s.port;
    let (ok, _, err) = psql_as(port, OPERATOR, None, "CREATE USER frank PASSWORD 'fr4nk'");
    assert!(ok, "{err}");
    let t0 = Instant::now();
    for _ in 0..3 {
        let (code, _) = tp_connect(port, "frank", "guess").await.unwrap_err();
        assert_eq!(code, "28P01");
    }
    // Over the limit: refused at once, even with the right password.
    let (code, msg) = tp_connect(port, "frank", "fr4nk").await.unwrap_err();
    assert_eq!(code, "28000", "{msg}");
    assert!(
        msg.contains("too many failed logins from 127.0.0.1"),
        "{msg}"
    );
    // Only password logins: a trusted one from the same address still works.
    let (ok, out, err) = psql_as(port, OPERATOR, None, "SELECT 41 + 1");
    assert!(ok && out == "42", "{out} {err}");
    // Control: once the window has passed, the right password works.
    tokio::time::sleep((t0 + Duration::from_secs(5)).saturating_duration_since(Instant::now()))
        .await;
    tp_connect(port, "frank", "fr4nk").await.unwrap();
    Ok(())
}

#[test]
fn trust_beyond_loopback_needs_insecure_trust() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("d");
    init(&dir)?;
    let run = |extra: &[&str]| {
        Command::new(bin())
            .args(["server", "--data", dir.to_str().unwrap()])
            .args(["--listen", &format!("0.0.0.0:{}", free_port())])
            .args(["--admin", &format!("127.0.0.1:{}", free_port())])
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&[
        "--access",
        "host all all 127.0.0.1/32 trust",
        "--access",
        "host all all 10.0.0.0/8 trust",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must not start: {err}");
    assert!(
        err.contains("access rule 2 (host all all 10.0.0.0/8 trust)")
            && err.contains("--insecure-trust"),
        "{err}"
    );
    // Control: the same rule with --insecure-trust starts.
    let mut started = Server::on_ports(
        &hadr(),
        dir.clone(),
        "0.0.0.0",
        free_port(),
        free_port(),
        [
            "--access",
            "host all all 10.0.0.0/8 trust",
            "--insecure-trust",
        ]
        .map(String::from)
        .to_vec(),
    );
    started.spawn_nowait()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !started.log().contains("hadr node serving") && started.alive() {
        assert!(Instant::now() < deadline, "{}", started.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(started.alive(), "{}", started.log());
    started.stop()?;
    Ok(())
}

/// A StartupMessage for `user`.
fn startup_for(user: &str) -> Vec<u8> {
    let mut body = 196_608i32.to_be_bytes().to_vec();
    for kv in ["user", user, "database", "app"] {
        body.extend_from_slice(&cstr(kv));
    }
    body.push(0);
    let mut m = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    m.extend(body);
    m
}

/// Connect as `user` and read up to AuthenticationSASL; the stream and
/// the mechanisms offered.
fn until_sasl(port: u16, user: &str) -> (std::net::TcpStream, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&startup_for(user)).unwrap();
    let mut head = [0u8; 5];
    s.read_exact(&mut head).unwrap();
    let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut body = vec![0u8; len - 4];
    s.read_exact(&mut body).unwrap();
    assert_eq!(head[0], b'R', "{body:?}");
    assert_eq!(&body[..4], &10i32.to_be_bytes(), "AuthenticationSASL");
    (s, body[4..].to_vec())
}

#[test]
fn the_exchange_has_a_timeout_and_malformed_sasl_messages_end_only_that_connection() -> Result<()> {
    use std::io::Write;
    let mut args = rules();
    args.extend(["--auth-timeout", "1s"].map(String::from));
    let s = start_with(args)?;
    // Without TLS only SCRAM-SHA-256 is offered, for a user that does not
    // exist exactly as for one that does.
    let (_, mechs) = until_sasl(s.port, "nobody");
    assert_eq!(mechs, b"SCRAM-SHA-256\0\0");

    // A client that stops answering is dropped with 08P01 after auth_timeout.
    let t0 = Instant::now();
    let (stream, _) = until_sasl(s.port, "nobody");
    let rest = read_all(stream);
    assert_eq!(sqlstate_of(&rest).as_deref(), Some("08P01"));
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());

    // A SASLInitialResponse whose length field lies, and one with a
    // mechanism that was not offered: 08P01 for that connection only.
    let (mut stream, _) = until_sasl(s.port, "nobody");
    let mut body = cstr("SCRAM-SHA-256");
    body.extend_from_slice(&i32::MAX.to_be_bytes());
    body.extend_from_slice(b"n,,n=,r=abc");
    stream.write_all(&frame(b'p', &body))?;
    assert_eq!(sqlstate_of(&read_all(stream)).as_deref(), Some("08P01"));
    let (mut stream, _) = until_sasl(s.port, "nobody");
    let mut body = cstr("SCRAM-SHA-256-PLUS");
    body.extend_from_slice(&11i32.to_be_bytes());
    body.extend_from_slice(b"n,,n=,r=abc");
    stream.write_all(&frame(b'p', &body))?;
    assert_eq!(sqlstate_of(&read_all(stream)).as_deref(), Some("08P01"));

    // The node still serves.
    let (ok, out, err) = psql_as(s.port, OPERATOR, None, "SELECT 41 + 1");
    assert!(ok && out == "42", "{out} {err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_connection_to_a_hostssl_only_rule_is_refused() -> Result<()> {
    let s = start(&[
        "--access",
        "host all test,ready-probe 127.0.0.1/32 trust",
        "--access",
        "hostssl all all all scram-sha-256",
    ])?;
    let (ok, _, err) = psql_as(s.port, OPERATOR, None, "CREATE USER gina PASSWORD 'g'");
    assert!(ok, "{err}");
    let (code, msg) = tp_connect(s.port, "gina", "g").await.unwrap_err();
    assert_eq!(code, "28000", "{msg}");
    assert_eq!(
        msg,
        "no access rule for host \"127.0.0.1\", user \"gina\", database \"app\", SSL off"
    );
    // Control: the same user through a host rule gets in.
    let s2 = start(&[
        "--access",
        "host all test,ready-probe 127.0.0.1/32 trust",
        "--access",
        "host all all all scram-sha-256",
    ])?;
    let (ok, _, err) = psql_as(s2.port, OPERATOR, None, "CREATE USER gina PASSWORD 'g'");
    assert!(ok, "{err}");
    tp_connect(s2.port, "gina", "g").await.unwrap();
    Ok(())
}

/// The server-first SCRAM message a node sends `user` for a client-first
/// with the nonce `abc`.
fn server_first(port: u16, user: &str) -> String {
    use std::io::{Read, Write};
    let (mut s, _) = until_sasl(port, user);
    let first = b"n,,n=,r=abc";
    let mut body = cstr("SCRAM-SHA-256");
    body.extend_from_slice(&(first.len() as i32).to_be_bytes());
    body.extend_from_slice(first);
    s.write_all(&frame(b'p', &body)).unwrap();
    let mut head = [0u8; 5];
    s.read_exact(&mut head).unwrap();
    let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut body = vec![0u8; len - 4];
    s.read_exact(&mut body).unwrap();
    assert_eq!(head[0], b'R');
    assert_eq!(&body[..4], &11i32.to_be_bytes(), "SASLContinue");
    let _ = s.write_all(&[b'X', 0, 0, 0, 4]);
    String::from_utf8(body[4..].to_vec()).unwrap()
}
