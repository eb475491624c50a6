//! Bad input gets a clear error, loses no committed data, and leaves the
//! server serving everyone else.

mod common;
use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_messages_close_only_that_connection() -> Result<()> {
    let s = start(&["--max-message-size", "1MiB"])?;
    let c = s.client().await?;
    c.batch_execute("CREATE TABLE keep(v INTEGER); INSERT INTO keep VALUES (42);")
        .await
        .unwrap();

    // An unknown message type.
    let mut r = raw_session(s.port);
    r.write_all(&[b'!', 0, 0, 0, 8, 1, 2, 3, 4]).unwrap();
    let out = read_all(r);
    assert_eq!(sqlstate_of(&out).as_deref(), Some("08P01"), "{out:?}");

    // A negative length.
    let mut r = raw_session(s.port);
    r.write_all(&[b'Q', 0xff, 0xff, 0xff, 0xf0]).unwrap();
    assert_eq!(sqlstate_of(&read_all(r)).as_deref(), Some("08P01"));

    // A message larger than max_message_size is refused from its header alone.
    let mut r = raw_session(s.port);
    r.write_all(&[b'Q', 0x10, 0, 0, 0]).unwrap();
    assert_eq!(sqlstate_of(&read_all(r)).as_deref(), Some("54000"));

    // A truncated message followed by a close.
    let mut r = raw_session(s.port);
    r.write_all(&[b'Q', 0, 0, 0, 100, b'S']).unwrap();
    drop(r);

    // Garbage instead of a startup packet.
    let mut r = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    r.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    r.write_all(&[0, 0, 0, 12, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4])
        .unwrap();
    let _ = read_all(r);

    // Everyone else is unaffected, and the data is intact.
    let v: i32 = c
        .query_one("SELECT v FROM keep", &[])
        .await
        .unwrap()
        .get::<_, i64>(0) as i32;
    assert_eq!(v, 42);
    let c2 = s.client().await?;
    assert_eq!(
        c2.query_one("SELECT count(*) FROM keep", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        1
    );
    Ok(())
}

#[test]
fn garbage_config_file_is_refused_with_a_clear_message() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    init(&data)?;
    for (content, needle) in [
        ("this is = not [ toml", "config file"),
        ("no_such_key = 1\n", "no_such_key"),
        ("log_retention = \"a lot\"\n", "log_retention"),
        ("listen = \"nowhere:port\"\n", "listen"),
    ] {
        let cfg = dir.path().join("bad.toml");
        std::fs::write(&cfg, content).unwrap();
        let out = Command::new(bin())
            .arg("server")
            .arg("--config")
            .arg(&cfg)
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap();
        assert!(!out.status.success(), "accepted bad config {content:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(needle),
            "error for {content:?} does not name {needle:?}: {err}"
        );
    }
    let out = Command::new(bin())
        .arg("server")
        .arg("--config")
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
    Ok(())
}

#[test]
fn init_refuses_to_overwrite_and_server_refuses_a_non_data_dir() -> Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    init(&data)?;
    let out = Command::new(bin())
        .arg("init")
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to overwrite"));
    let out = Command::new(bin())
        .arg("server")
        // Any free ports: what is wrong here is the data directory.
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--admin", &format!("127.0.0.1:{}", free_port())])
        .arg("--data")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("hadr init"));
    Ok(())
}

#[test]
fn a_second_server_on_the_same_directory_is_refused() -> Result<()> {
    let s = start(&[])?;
    let out = Command::new(bin())
        .args([
            "server",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--admin",
            &format!("127.0.0.1:{}", free_port()),
            "--data",
        ])
        .arg(&s.dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use by another hadr process"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_format_version_is_refused_and_data_survives() -> Result<()> {
    let mut s = start(&[])?;
    s.client()
        .await?
        .batch_execute("CREATE TABLE t(v); INSERT INTO t VALUES ('precious');")
        .await
        .unwrap();
    s.stop()?;
    let control = s.dir.join("control.json");
    let original = std::fs::read_to_string(&control).unwrap();
    std::fs::write(
        &control,
        original.replace("\"format_version\": 1", "\"format_version\": 99"),
    )
    .unwrap();
    let out = Command::new(bin())
        .arg("server")
        // Any free ports: what is wrong here is the data directory.
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--admin", &format!("127.0.0.1:{}", free_port())])
        .arg("--data")
        .arg(&s.dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("format version 99") && err.contains("upgrade"),
        "{err}"
    );
    // Nothing was touched: restoring the file brings the data back.
    std::fs::write(&control, original).unwrap();
    s.spawn()?;
    let v: String = s
        .client()
        .await?
        .query_one("SELECT v FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, "precious");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_segment_in_the_middle_stops_start_up_naming_segment_and_offset() -> Result<()> {
    // No checkpoint, so recovery must read the whole log after kill -9.
    let mut s = start(&[
        "--log-segment-size",
        "64KiB",
        "--checkpoint-wal-size",
        "1GiB",
    ])?;
    let c = s.client().await?;
    c.batch_execute("CREATE TABLE t(id INTEGER PRIMARY KEY, pad BLOB)")
        .await
        .unwrap();
    for i in 0..60i64 {
        c.execute("INSERT INTO t VALUES ($1, randomblob(8000))", &[&i])
            .await
            .unwrap();
    }
    s.kill9();
    let mut segs: Vec<_> = std::fs::read_dir(s.dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "hlog"))
        .collect();
    segs.sort();
    assert!(segs.len() >= 4, "expected several segments, got {segs:?}");
    let victim = &segs[segs.len() / 2];
    let mut bytes = std::fs::read(victim).unwrap();
    bytes[200] ^= 0xff;
    std::fs::write(victim, &bytes).unwrap();
    let out = Command::new(bin())
        .arg("server")
        // Any free ports: what is wrong here is the data directory.
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--admin", &format!("127.0.0.1:{}", free_port())])
        .arg("--data")
        .arg(&s.dir)
        .output()
        .unwrap();
    assert!(!out.status.success(), "started on a corrupt log");
    let err = String::from_utf8_lossy(&out.stderr);
    let name = victim.file_name().unwrap().to_string_lossy();
    assert!(
        err.contains(&*name),
        "error does not name the segment {name}: {err}"
    );
    assert!(
        err.contains("offset"),
        "error does not name the offset: {err}"
    );
    // verify says the same.
    let out = Command::new(bin())
        .arg("verify")
        .arg("--data")
        .arg(&s.dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&*name));
    Ok(())
}
