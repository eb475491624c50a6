//! What a client needs to follow the primary by itself (docs/clients.md):
//! the live topology at client addresses (ParameterStatus `hadr.topology`,
//! sent again to open sessions when it changes; `SHOW`; `/status`), and
//! commit outcomes that are never unknown (`hadr.commit_token`).

mod common;
use common::*;
use std::io::Write;
use std::time::Duration;

/// The ParameterStatus values named `name` among backend messages.
fn parameter_statuses(msgs: &[(u8, Vec<u8>)], name: &str) -> Vec<String> {
    msgs.iter()
        .filter(|(tag, _)| *tag == b'S')
        .filter_map(|(_, body)| {
            let mut parts = body.split(|&b| b == 0);
            let k = parts.next()?;
            let v = parts.next()?;
            (k == name.as_bytes()).then(|| String::from_utf8_lossy(v).into_owned())
        })
        .collect()
}

fn topology(json: &str) -> Topology {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("topology {json:?}: {e}"))
}

async fn show_topology(s: &Server) -> Result<Topology> {
    let c = s.client().await?;
    let row = c.query_one("SHOW hadr.topology", &[]).await?;
    Ok(topology(row.get::<_, &str>(0)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_topology_names_every_member_at_its_client_address_and_open_sessions_hear_changes(
) -> Result<()> {
    let p_local = repl_addr();
    let s_local = repl_addr();
    let primary = start_with(hadr_args(&p_local, &s_local, &["--role", "primary"]))?;
    let p_addr = format!("127.0.0.1:{}", primary.port);

    // A session opened while no standby is connected is told so at start.
    let mut early = std::net::TcpStream::connect(("127.0.0.1", primary.port))?;
    early.set_read_timeout(Some(Duration::from_secs(20)))?;
    early.write_all(&startup_bytes())?;
    let greeting = until_ready(&mut early);
    let first = parameter_statuses(&greeting, "hadr.topology");
    assert_eq!(first.len(), 1, "one hadr.topology at start");
    let t = topology(&first[0]);
    assert_eq!(t.primary.as_deref(), Some(p_addr.as_str()));
    assert!(t.standbys.is_empty(), "{t:?}");

    // The standby advertises an address clients reach it at that is not
    // its listen address (behind NAT, a VIP, a name).
    let tmp = tempfile::tempdir()?;
    let sdir = tmp.path().join("standby");
    clone_to(&p_local, &sdir)?;
    let standby = on_dir(
        sdir,
        &hadr_args(
            &s_local,
            &p_local,
            &["--client-address", "standby.example:6543"],
        ),
    )?;
    primary
        .wait_for("the standby announced", Duration::from_secs(30), |st| {
            st.topology.standbys == ["standby.example:6543"]
        })
        .await?;

    // The open session hears of it before its next ReadyForQuery.
    early.write_all(&frame(b'Q', &cstr("SELECT 1")))?;
    let msgs = until_ready(&mut early);
    let update = parameter_statuses(&msgs, "hadr.topology");
    assert_eq!(update.len(), 1, "the change is sent once: {msgs:?}");
    let t = topology(&update[0]);
    assert_eq!(t.primary.as_deref(), Some(p_addr.as_str()));
    assert_eq!(t.standbys, ["standby.example:6543"]);
    // And only once: nothing changed since.
    early.write_all(&frame(b'Q', &cstr("SELECT 1")))?;
    assert!(parameter_statuses(&until_ready(&mut early), "hadr.topology").is_empty());

    // SHOW and /status agree, on both nodes; the standby repeats what its
    // primary told it, so its clients learn where the primary is.
    let on_primary = show_topology(&primary).await?;
    assert_eq!(on_primary, t);
    assert_eq!(primary.status().await?.topology, t);
    let on_standby = standby
        .wait_for(
            "the standby heard the topology",
            Duration::from_secs(30),
            |st| st.topology.primary.is_some(),
        )
        .await?
        .topology;
    assert_eq!(on_standby.primary.as_deref(), Some(p_addr.as_str()));
    assert_eq!(on_standby.standbys, ["standby.example:6543"]);
    assert_eq!(show_topology(&standby).await?, on_standby);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_address_that_is_not_host_and_port_is_refused_at_start() -> Result<()> {
    let out = std::process::Command::new(bin())
        .args([
            "server",
            "--data",
            "/nonexistent",
            "--client-address",
            "db1",
        ])
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("client_address") && err.contains("host:port"),
        "{err}"
    );
    Ok(())
}

/// `hadr_commit_outcome(token)` as (outcome, epoch, committed_at).
async fn outcome(
    c: &tokio_postgres::Client,
    token: &str,
) -> std::result::Result<(String, Option<i64>, Option<String>), tokio_postgres::Error> {
    let row = c
        .query_one(&format!("SELECT hadr_commit_outcome('{token}')"), &[])
        .await?;
    Ok((row.get(0), row.get(1), row.get(2)))
}

fn code(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_tokens_tell_committed_from_not_committed_and_make_the_answer_final() -> Result<()> {
    let s = start(&[])?;
    let c = s.client().await?;
    c.batch_execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
        .await?;
    let epoch = s.status().await?.epoch as i64;

    // An autocommit write records its token (simple and extended protocol).
    c.batch_execute("SET hadr.commit_token = 'auto-1'; INSERT INTO t VALUES (1)")
        .await?;
    let (o, e, at) = outcome(&c, "auto-1").await?;
    assert_eq!((o.as_str(), e), ("committed", Some(epoch)));
    assert!(at.is_some_and(|t| t.ends_with('Z')));
    c.batch_execute("SET hadr.commit_token = 'auto-2'").await?;
    c.execute("INSERT INTO t VALUES ($1)", &[&2i64]).await?;
    assert_eq!(outcome(&c, "auto-2").await?.0, "committed");

    // It is used up by that write: the next write carries none.
    let e = c
        .query_one("SHOW hadr.commit_token", &[])
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42704", "{e}");

    // A read does not use it; the writing block that follows does.
    c.batch_execute("SET hadr.commit_token = 'block-1'").await?;
    c.query("SELECT count(*) FROM t", &[]).await?;
    let row = c.query_one("SHOW hadr.commit_token", &[]).await?;
    assert_eq!(row.get::<_, &str>(0), "block-1");
    c.batch_execute("BEGIN; INSERT INTO t VALUES (3); COMMIT")
        .await?;
    assert_eq!(outcome(&c, "block-1").await?.0, "committed");

    // A rolled-back write did not commit, and its token is gone with it.
    c.batch_execute(
        "SET hadr.commit_token = 'rolled-back'; BEGIN; INSERT INTO t VALUES (4); ROLLBACK",
    )
    .await?;
    assert!(c.query_one("SHOW hadr.commit_token", &[]).await.is_err());
    assert_eq!(
        outcome(&c, "rolled-back").await?,
        ("not committed".to_string(), None, None)
    );

    // "Not committed" is final: a late transaction carrying that token (a
    // second session whose writes had not reached the server yet when the
    // question was asked) cannot commit afterwards. A session that holds
    // the write lock is waited for instead: the question takes the lock.
    let late = s.client().await?;
    late.batch_execute("SET hadr.commit_token = 'late'; BEGIN; SELECT 1")
        .await?;
    assert_eq!(outcome(&c, "late").await?.0, "not committed");
    late.batch_execute("INSERT INTO t VALUES (5)").await?;
    let e = late.batch_execute("COMMIT").await.unwrap_err();
    assert_eq!(code(&e), "23505", "{e}");
    let n: i64 = c
        .query_one("SELECT count(*) FROM t WHERE id = 5", &[])
        .await?
        .get(0);
    assert_eq!(n, 0, "the late transaction must not have committed");
    assert_eq!(outcome(&c, "late").await?.0, "not committed");

    // Reusing a committed token fails the transaction, which rolls back.
    c.batch_execute("SET hadr.commit_token = 'auto-1'").await?;
    let e = c
        .execute("INSERT INTO t VALUES (6)", &[])
        .await
        .unwrap_err();
    assert_eq!(code(&e), "23505", "{e}");
    let n: i64 = c
        .query_one("SELECT count(*) FROM t WHERE id = 6", &[])
        .await?
        .get(0);
    assert_eq!(n, 0);

    // Bad input gets the right SQLSTATE.
    let e = c
        .batch_execute("SET hadr.commit_token = 'two words'")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "22023", "{e}");
    let e = outcome(&c, "it''s").await.unwrap_err();
    assert_eq!(code(&e), "22023", "{e}");
    c.batch_execute("BEGIN").await?;
    let e = outcome(&c, "x").await.unwrap_err();
    assert_eq!(code(&e), "25001", "{e}");
    c.batch_execute("ROLLBACK").await?;
    // Any other use of the name is not hadr's: SQLite does not know it.
    assert!(c
        .query("SELECT hadr_commit_outcome('a'), 1", &[])
        .await
        .is_err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_token_survives_a_takeover_and_only_the_primary_answers() -> Result<()> {
    let PeerPair { a, b, .. } = &peer_pair(&[]).await?;
    let c = a.client().await?;
    c.batch_execute("CREATE TABLE t(id INTEGER PRIMARY KEY); SET hadr.commit_token = 'before-switch'; INSERT INTO t VALUES (1)")
        .await?;
    let epoch = a.status().await?.epoch as i64;

    // A standby cannot make "not committed" final: it refuses with 25006.
    let on_standby = b.client().await?;
    let e = outcome(&on_standby, "before-switch").await.unwrap_err();
    assert_eq!(code(&e), "25006", "{e}");

    takeover_on(b)?;
    b.wait_for("B primary", Duration::from_secs(30), |st| {
        st.role == NodeRole::Primary
    })
    .await?;
    let nc = b.client().await?;
    assert_eq!(
        outcome(&nc, "before-switch").await?,
        (
            "committed".to_string(),
            Some(epoch),
            outcome(&nc, "before-switch").await?.2
        )
    );
    assert_eq!(outcome(&nc, "never-sent").await?.0, "not committed");
    Ok(())
}

/// Every statement in flight when a primary hands over ends within the
/// hand-over, with FATAL 57P01 (reconnect, elsewhere if need be): a writer
/// queued for the write lock, and one inside a transaction, are not left
/// waiting, nor told 57014 as if the application had cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_in_flight_at_a_hand_over_end_with_57p01_within_it() -> Result<()> {
    let PeerPair { a, b, .. } = &peer_pair(&[]).await?;
    let holder = a.client().await?;
    holder
        .batch_execute("CREATE TABLE t(id INTEGER PRIMARY KEY); BEGIN; INSERT INTO t VALUES (1)")
        .await?;
    // A second writer queues behind the open transaction's write lock.
    let queued = a.client().await?;
    let waiting = tokio::spawn(async move {
        let r = queued.execute("INSERT INTO t VALUES (2)", &[]).await;
        (r, std::time::Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the second writer should be queued");

    let began = std::time::Instant::now();
    takeover_on(b)?;
    let took = began.elapsed();
    let (r, ended) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the queued writer was left waiting after the hand-over")?;
    let e = r.expect_err("the queued write cannot have committed on a primary that handed over");
    assert_eq!(code(&e), "57P01", "{e}");
    assert!(
        ended.duration_since(began) <= took + Duration::from_millis(500),
        "the queued writer ended {:?} after the takeover began; the takeover took {took:?}",
        ended.duration_since(began)
    );
    // The transaction that held the lock was ended too: its COMMIT fails,
    // and nothing of it is on the new primary.
    assert!(holder.batch_execute("COMMIT").await.is_err());
    let c = b.client().await?;
    let ids: Vec<i64> = c
        .query("SELECT id FROM t", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(ids.is_empty(), "{ids:?}\nA: {}", a.log());
    Ok(())
}
