//! Bad input on the replication side: garbage and a newer protocol version on
//! the primary's replication port, and a standby whose disk fills up. Each
//! gets a clear error and the primary keeps serving.

mod common;
use common::*;
use hadr_protocol::{Hello, Message, PeerRole};
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

fn primary(s_local: &str) -> Result<(Server, String)> {
    let p_local = repl_addr();
    let p = start(&[
        "--role",
        "primary",
        "--hadr-local",
        &p_local,
        "--hadr-target-list",
        s_local,
        "--hadr-timeout",
        "1s",
    ])?;
    Ok((p, p_local))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_a_newer_protocol_version_are_refused_and_the_primary_serves_on() -> Result<()>
{
    let (p, p_local) = primary("127.0.0.1:1")?;
    // Garbage: the connection is dropped.
    let mut g = std::net::TcpStream::connect(&p_local).unwrap();
    g.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    g.write_all(b"GET / HTTP/1.1\r\n\r\n\x00\x00\x00\x09garbage!!")
        .unwrap();
    let mut buf = Vec::new();
    let _ = g.read_to_end(&mut buf);
    // A peer speaking a newer (99) or an older (the previous) protocol version
    // gets a refusal that names both versions.
    for version in [99, hadr_protocol::PROTOCOL_VERSION - 1] {
        let mut s = std::net::TcpStream::connect(&p_local).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let hello = Hello {
            version,
            role: PeerRole::Standby,
            database_id: String::new(),
            epoch: 1,
            epoch_history: vec![],
            lsn: 0,
            address: "127.0.0.1:1".into(),
        };
        s.write_all(&Message::Hello(hello).encode()).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        match Message::decode(&buf) {
            Ok((Message::Refuse(r), _)) => assert!(
                r.reason.contains(&format!("version {version}"))
                    && r.reason
                        .contains(&format!("speaks {}", hadr_protocol::PROTOCOL_VERSION)),
                "{}",
                r.reason
            ),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    // The primary still serves SQL.
    let c = p.client().await?;
    c.batch_execute("CREATE TABLE t(v); INSERT INTO t VALUES (1);")
        .await
        .unwrap();
    assert!(p.log().contains("refusing replication peer"), "{}", p.log());
    Ok(())
}

struct Tmpfs(std::path::PathBuf);
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_with_a_full_disk_says_so_and_the_primary_commits_on() -> Result<()> {
    let s_local = format!("127.0.0.1:{}", free_port());
    let (p, p_local) = primary(&s_local)?;
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24M", "tmpfs"])
        .arg(&mnt)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "cannot mount a tmpfs (this test needs root)");
    let _guard = Tmpfs(mnt.clone());
    // A clone that does not fit fails clearly and leaves nothing behind.
    let tiny = tmp.path().join("tiny");
    std::fs::create_dir_all(&tiny).unwrap();
    assert!(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1M", "tmpfs"])
        .arg(&tiny)
        .status()
        .unwrap()
        .success());
    let _tiny_guard = Tmpfs(tiny.clone());
    let out = Command::new(bin())
        .args(["clone", "--from", &p_local, "--data"])
        .arg(tiny.join("s"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("No space left on device") && err.contains("removed"),
        "{err}"
    );
    assert!(!tiny.join("s").exists(), "a failed clone left files behind");
    let sdir = mnt.join("standby");
    let out = Command::new(bin())
        .args([
            "clone",
            "--log-segment-size",
            "1MiB",
            "--from",
            &p_local,
            "--data",
        ])
        .arg(&sdir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut standby = on_dir(
        sdir,
        &[
            "--hadr-local",
            &s_local,
            "--hadr-target-list",
            &p_local,
            "--hadr-timeout",
            "1s",
            "--log-segment-size",
            "1MiB",
        ]
        .map(String::from),
    )?;
    let c = p.client().await?;
    c.batch_execute("CREATE TABLE big(id INTEGER PRIMARY KEY, b BLOB)")
        .await
        .unwrap();
    let started = Instant::now();
    for i in 0..40i64 {
        // 1 MiB of incompressible data per commit: 40 MiB will not fit on 24 MiB.
        c.execute("INSERT INTO big VALUES ($1, randomblob(1048576))", &[&i])
            .await
            .unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "commits stalled on the full standby: {:?}",
        started.elapsed()
    );
    standby
        .wait_for("its full disk reported", Duration::from_secs(20), |st| {
            st.standby_view()
                .and_then(|v| v.last_error.as_deref())
                .map(str::to_ascii_lowercase)
                .is_some_and(|err| err.contains("space") || err.contains("full"))
        })
        .await?;
    let n: i64 = c
        .query_one("SELECT count(*) FROM big", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 40);
    standby.kill9();
    Ok(())
}
