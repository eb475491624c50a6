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
