//! A node that cannot serve says so, fast, on both of its ports
//! (docs/clients.md §Admission): while it starts, recovers, promotes,
//! rewinds or re-clones, every client connection gets FATAL 57P03 naming
//! what it is doing — without a session thread, however many clients
//! hammer it — and the admin endpoint answers 503 with the phase. A stock
//! multi-host client moves on to the next host, and the node serves
//! normally once it is ready.

mod common;
use common::*;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One connection attempt: the SQLSTATE and message of the refusal, or
/// None if a session was admitted (AuthenticationOk).
fn attempt(port: u16) -> std::io::Result<Option<(String, String)>> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(&startup_bytes())?;
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    if got.first() == Some(&b'R') {
        return Ok(None);
    }
    let code = sqlstate_of(&got).unwrap_or_default();
    let text = String::from_utf8_lossy(&got).into_owned();
    let message = text
        .split('\0')
        .find_map(|f| f.strip_prefix('M'))
        .unwrap_or_default()
        .to_string();
    Ok(Some((code, message)))
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_serve_says_why_to_a_storm_of_clients_then_serves() -> Result<()> {
    // A standby whose rewind was cut short must re-clone from its primary,
    // which is not there yet: it stays in re-cloning / retrying.
    let p_local = repl_addr();
    let s_local = repl_addr();
    let tmp = tempfile::tempdir()?;
    let sdir = tmp.path().join("standby");
    init(&sdir)?;
    let control = sdir.join("control.json");
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&control)?)?;
    c["rewind_pending"] = serde_json::json!(1);
    std::fs::write(&control, serde_json::to_vec(&c)?)?;
    let mut gated = Server::new(&hadr(), sdir, hadr_args(&s_local, &p_local, &[]));
    gated.spawn_nowait()?;

    // Its client port answers 57P03 with the reason: first that it starts
    // up, then that it re-clones (or retries the re-clone).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        if let Ok(Some((code, message))) = attempt(gated.port) {
            assert_eq!(code, "57P03", "{message}");
            let repairing = message.contains(&format!("re-cloning from {p_local}"))
                || message.contains("retrying");
            seen.push(message);
            if repairing {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no re-clone refusal: {seen:?}\n{}",
            gated.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Its admin port answers 503 with the phase.
    let e = gated.admin().status().await.unwrap_err();
    assert_eq!(e.http_status(), Some(503), "{e}");
    let phase = e.not_serving().expect("the phase as JSON");
    assert!(
        ["re-cloning", "retrying", "starting"].contains(&phase.phase.as_str()),
        "{phase:?}"
    );
    let out = std::process::Command::new(bin())
        .args(["status", "--node", &format!("127.0.0.1:{}", gated.admin)])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("is not serving"),
        "{err}"
    );

    // A stock multi-host client whose first host is this node reaches the
    // next one.
    let other = start(&[])?;
    let both = format!(
        "host=127.0.0.1,127.0.0.1 port={},{} user=t dbname=t target_session_attrs=read-write connect_timeout=5",
        gated.port, other.port
    );
    let (ok, out, err) = psql(&both, &["-A", "-t", "-c", "SHOW in_hot_standby"], "");
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "off");

    // A storm: many clients reconnecting in a tight loop. Every attempt is
    // refused, fast; the node's threads do not grow with it; its admin
    // endpoint stays answerable.
    let threads_before = gated.threads().unwrap_or(0);
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let other_answers = Arc::new(AtomicU64::new(0));
    let mut storm = Vec::new();
    const CLIENTS: usize = 200;
    for _ in 0..CLIENTS {
        let (stop, refused, other_answers, port) = (
            stop.clone(),
            refused.clone(),
            other_answers.clone(),
            gated.port,
        );
        storm.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match attempt(port) {
                    Ok(Some((code, _))) if code == "57P03" => {
                        refused.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => other_answers.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut admin_times = Vec::new();
    let mut max_threads = 0;
    for _ in 0..40 {
        let t = Instant::now();
        let e = gated.admin().status().await.unwrap_err();
        admin_times.push(t.elapsed());
        assert_eq!(e.http_status(), Some(503), "{e}");
        max_threads = max_threads.max(gated.threads().unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in storm {
        let _ = t.join();
    }
    let refused = refused.load(Ordering::Relaxed);
    eprintln!(
        "storm: {refused} refusals, {} other answers; admin p99 {:?}; threads {threads_before} -> {max_threads}",
        other_answers.load(Ordering::Relaxed),
        p99(admin_times.clone())
    );
    assert!(refused > CLIENTS as u64, "the storm hardly ran: {refused}");
    // Refusals run on the runtime's worker threads; only tokio's blocking
    // pool may add a few.
    assert!(
        max_threads <= threads_before + 8,
        "threads grew with the storm: {threads_before} -> {max_threads}"
    );
    let p = p99(admin_times);
    assert!(
        p < Duration::from_millis(100),
        "admin p99 {p:?} during the storm"
    );

    // The primary appears: the node re-clones from it and serves.
    let pdir = tmp.path().join("primary");
    init(&pdir)?;
    let _primary = on_dir(pdir, &hadr_args(&p_local, &s_local, &["--role", "primary"]))?;
    gated.wait_ready(Duration::from_secs(60))?;
    let st = gated.admin().status().await?;
    assert_eq!(st.role, NodeRole::Standby);
    let (ok, out, err) = psql(
        &gated.conninfo(),
        &["-A", "-t", "-c", "SHOW in_hot_standby"],
        "",
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "on");
    Ok(())
}
