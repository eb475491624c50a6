//! Files kept in sync through the log (docs/filesync.md), through the real
//! binary: a primary and a standby with `--sync-path www=…` on directories
//! of their own; after each change the standby's tree must equal the
//! primary's (kind, mode, content hash, symlink target).

mod common;
use common::*;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// kind, mode, content hash or link target, per relative path.
type Tree = BTreeMap<String, String>;

/// Content hashes by (device, inode, ctime, size): the tests poll both
/// trees many times, and rehashing a 100 MiB file each time would starve
/// the servers of CPU. ctime moves on every write, rename and chmod, and
/// cannot be set back.
type HashCache = std::cell::RefCell<BTreeMap<(u64, u64, i64, i64, u64), String>>;

thread_local! {
    static HASHES: HashCache = Default::default();
}

fn content_hash(p: &Path, md: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    let key = (md.dev(), md.ino(), md.ctime(), md.ctime_nsec(), md.size());
    if let Some(h) = HASHES.with(|c| c.borrow().get(&key).cloned()) {
        return h;
    }
    let h = blake3::hash(&std::fs::read(p).unwrap_or_default())
        .to_hex()
        .to_string();
    HASHES.with(|c| c.borrow_mut().insert(key, h.clone()));
    h
}

fn tree(root: &Path, skip: &dyn Fn(&str) -> bool) -> Tree {
    let mut out = Tree::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let dir = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if skip(&r) {
                continue;
            }
            let Ok(md) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            let mode = md.permissions().mode() & 0o7777;
            let v = if md.file_type().is_symlink() {
                format!(
                    "link {:?}",
                    std::fs::read_link(e.path()).unwrap_or_default()
                )
            } else if md.is_dir() {
                stack.push(r.clone());
                format!("dir {mode:o}")
            } else {
                format!("file {mode:o} {}", content_hash(&e.path(), &md))
            };
            out.insert(r, v);
        }
    }
    out
}

fn no_skip(_: &str) -> bool {
    false
}

/// Wait until `b`'s tree equals `a`'s; the difference on timeout.
fn wait_same(a: &Path, b: &Path, what: &str, timeout: Duration, skip: &dyn Fn(&str) -> bool) {
    let start = Instant::now();
    loop {
        let (ta, tb) = (tree(a, skip), tree(b, skip));
        if ta == tb {
            eprintln!(
                "{what}: in sync after {:?} ({} entries)",
                start.elapsed(),
                ta.len()
            );
            return;
        }
        if start.elapsed() > timeout {
            let only_a: Vec<_> = ta
                .iter()
                .filter(|(k, v)| tb.get(*k) != Some(v))
                .take(5)
                .collect();
            let only_b: Vec<_> = tb
                .iter()
                .filter(|(k, v)| ta.get(*k) != Some(v))
                .take(5)
                .collect();
            panic!("{what}: not in sync after {timeout:?}: primary has {only_a:?}, standby has {only_b:?}");
        }
        // Reading a large tree costs: look less often.
        std::thread::sleep(Duration::from_millis(20 + ta.len() as u64 / 20));
    }
}

struct Pair {
    a: Server,
    b: Server,
    a_local: String,
    b_local: String,
    da: PathBuf,
    db: PathBuf,
    _tmp: tempfile::TempDir,
}

/// A primary and a standby in SYNC, syncing `www` to directories of their own.
async fn pair(extra: &[&str], prepare_b: impl FnOnce(&Path)) -> Result<Pair> {
    let tmp = tempfile::tempdir()?;
    let (da, db) = (tmp.path().join("www-a"), tmp.path().join("www-b"));
    std::fs::create_dir_all(&db)?;
    prepare_b(&db);
    let (a_local, b_local) = (repl_addr(), repl_addr());
    let sync = |d: &Path| {
        let mut v = vec![
            "--hadr-syncmode".to_string(),
            "SYNC".into(),
            "--sync-path".into(),
            format!("www={}", d.display()),
            "--log-flush-mode".into(),
            "off".into(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let mut args = vec!["--role".to_string(), "primary".into()];
    args.extend(hadr_args(&a_local, &b_local, &[]));
    args.extend(sync(&da));
    let a = start_with(args)?;
    let bdir = tmp.path().join("b");
    clone_to(&a_local, &bdir)?;
    let mut bargs = hadr_args(&b_local, &a_local, &[]);
    bargs.extend(sync(&db));
    let b = on_dir(bdir, &bargs)?;
    wait_peer(&a).await?;
    Ok(Pair {
        a,
        b,
        a_local,
        b_local,
        da,
        db,
        _tmp: tmp,
    })
}

async fn wait_peer(primary: &Server) -> Result<Status> {
    primary
        .wait_for("PEER", Duration::from_secs(60), |st| {
            st.role == NodeRole::Primary
                && st.writable
                && st
                    .principal()
                    .is_some_and(|s| s.hadr_state == PairState::Peer)
        })
        .await
}

fn root_status(st: &Status) -> hadr_admin_api::FileSyncRoot {
    st.file_sync
        .as_ref()
        .and_then(|f| f.roots.first().cloned())
        .unwrap_or_default()
}

fn write(p: &Path, data: &[u8]) {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(p, data).unwrap();
}

/// Deterministic pseudo-random bytes (xorshift), fast enough for 100 MiB.
fn random_bytes(n: usize, mut x: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

const STEP: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_follow_the_primary_through_changes_a_big_file_many_files_and_a_takeover(
) -> Result<()> {
    let started = Instant::now();
    let p = pair(&["--sync-scan-interval", "1s"], |_| {}).await?;
    let (da, db) = (p.da.clone(), p.db.clone());
    let same = |what: &str| wait_same(&da, &db, what, STEP, &no_skip);

    write(&da.join("index.html"), b"<h1>hello</h1>");
    same("create");
    write(&da.join("index.html"), b"<h1>hello again</h1>");
    same("modify");
    std::fs::rename(da.join("index.html"), da.join("home.html"))?;
    same("rename");
    std::fs::set_permissions(da.join("home.html"), std::fs::Permissions::from_mode(0o600))?;
    same("chmod");
    std::fs::create_dir_all(da.join("empty/nested"))?;
    same("empty directories");
    std::fs::remove_dir_all(da.join("empty"))?;
    std::fs::remove_file(da.join("home.html"))?;
    same("delete");
    write(&da.join("conf/site.conf"), b"listen 80;\n");
    std::os::unix::fs::symlink("conf/site.conf", da.join("site.conf"))?;
    same("a symlink inside the root");
    assert_eq!(
        std::fs::read_link(db.join("site.conf"))?,
        Path::new("conf/site.conf")
    );

    // Nothing changes: no transaction, the log end stays put (with a full
    // scan every second).
    let end0 = p.a.status().await?.log.end_lsn;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let end1 = p.a.status().await?.log.end_lsn;
    assert_eq!(end0, end1, "an idle synced tree must not write to the log");

    // A symlink leaving the root is refused, reported, and not replicated.
    std::os::unix::fs::symlink("/etc/passwd", da.join("escape"))?;
    std::os::unix::fs::symlink("../../outside", da.join("conf/escape2"))?;
    let st =
        p.a.wait_for("refused symlinks in status", STEP, |st| {
            root_status(st).problems.len() >= 2
        })
        .await?;
    let problems = root_status(&st).problems;
    assert!(
        problems
            .iter()
            .any(|x| x.path == "escape" && x.reason.contains("leaves the root")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|x| x.path == "conf/escape2"),
        "{problems:?}"
    );
    let escapes = |r: &str| r.ends_with("escape") || r.ends_with("escape2");
    wait_same(&da, &db, "with refused symlinks", STEP, &escapes);
    assert!(std::fs::symlink_metadata(db.join("escape")).is_err());
    assert!(std::fs::symlink_metadata(db.join("conf/escape2")).is_err());
    std::fs::remove_file(da.join("escape"))?;
    std::fs::remove_file(da.join("conf/escape2"))?;

    // 10,000 small files.
    let t = Instant::now();
    for i in 0..10_000 {
        write(
            &da.join(format!("many/{:02}/f{i}.txt", i % 50)),
            format!("file {i}\n").as_bytes(),
        );
    }
    wait_same(
        &da,
        &db,
        "10,000 small files",
        Duration::from_secs(120),
        &no_skip,
    );
    eprintln!("10,000 files written and synced in {:?}", t.elapsed());
    for node in [&p.a, &p.b] {
        node.wait_for("10,000 files in status", STEP, |st| {
            root_status(st).files == 10_001
        })
        .await?;
    }
    std::fs::remove_dir_all(da.join("many"))?;
    wait_same(
        &da,
        &db,
        "10,000 files deleted",
        Duration::from_secs(120),
        &no_skip,
    );

    // A 100 MiB file of random content.
    let t = Instant::now();
    write(
        &da.join("big.bin"),
        &random_bytes(100 << 20, 0x9e3779b97f4a7c15),
    );
    wait_same(
        &da,
        &db,
        "a 100 MiB file",
        Duration::from_secs(120),
        &no_skip,
    );
    eprintln!("100 MiB synced in {:?}", t.elapsed());

    // hadr verify compares the files too, and names a path that differs.
    verify_nodes(p.a.admin, p.b.admin)?;
    write(&db.join("conf/site.conf"), b"tampered on the standby\n");
    let out = hadr()
        .command(&[
            "verify",
            "--node",
            &p.a.admin_addr(),
            "--node",
            &p.b.admin_addr(),
            "--timeout",
            "5s",
        ])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "verify must fail when a standby's file differs"
    );
    assert!(err.contains("www/conf/site.conf"), "{err}");
    write(&db.join("conf/site.conf"), b"listen 80;\n");
    std::fs::remove_file(da.join("big.bin"))?;
    same("the big file deleted");

    // A change made during a graceful takeover; then the new primary's
    // changes flow back to the old one.
    let b_admin = p.b.admin_addr();
    let takeover = std::thread::spawn(move || {
        hadr()
            .command(&["takeover", "--node", &b_admin])
            .output()
            .map(|o| {
                (
                    o.status.success(),
                    String::from_utf8_lossy(&o.stderr).into_owned(),
                )
            })
    });
    for i in 0..20 {
        write(
            &da.join(format!("during/{i}.txt")),
            format!("during takeover {i}").as_bytes(),
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    let (ok, err) = takeover.join().expect("takeover thread")?;
    assert!(ok, "takeover failed: {err}");
    wait_peer(&p.b).await?;
    // Whatever the old primary captured before it handed over is on both;
    // what it had not is gone from it (it mirrors the new primary now).
    wait_same(&db, &da, "after the takeover", STEP, &no_skip);
    write(&db.join("from-b.txt"), b"written on the new primary");
    std::fs::remove_file(db.join("site.conf"))?;
    wait_same(&db, &da, "new primary to old", STEP, &no_skip);
    assert_eq!(
        std::fs::read(da.join("from-b.txt"))?,
        b"written on the new primary"
    );
    verify_nodes(p.b.admin, p.a.admin)?;
    let _ = (&p.a_local, &p.b_local);
    eprintln!("whole test {:?}", started.elapsed());
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Unmounts on drop, so that a failing test leaves no mount behind.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_on_the_standby_is_reported_and_recovers() -> Result<()> {
    if !is_root() {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return Ok(());
    }
    let mut mount = None;
    let p = pair(&[], |db| {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(db)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            mount = Some(Mount(db.to_path_buf()));
        }
    })
    .await?;
    let Some(_mount) = mount else {
        eprintln!("skipped: mount -t tmpfs failed");
        return Ok(());
    };
    write(&p.da.join("small.txt"), b"fits");
    wait_same(&p.da, &p.db, "a small file", STEP, &no_skip);
    write(&p.da.join("big.bin"), &random_bytes(4 << 20, 7));
    let st =
        p.b.wait_for("ENOSPC in status", STEP, |st| {
            root_status(st)
                .last_error
                .is_some_and(|e| e.contains("ENOSPC"))
        })
        .await?;
    eprintln!("standby reports: {:?}", root_status(&st).last_error);
    assert!(
        st.file_sync.as_ref().is_some_and(|f| f.errors_total > 0),
        "errors are counted"
    );
    let metrics = p.b.admin().metrics().await?;
    assert!(metrics.contains("hadr_file_sync_errors_total"), "{metrics}");
    assert!(
        metrics.contains("hadr_file_sync_lag_seconds{root=\"www\"}"),
        "{metrics}"
    );
    // Other changes keep flowing meanwhile.
    write(&p.da.join("other.txt"), b"still synced");
    let deadline = Instant::now() + STEP;
    while std::fs::read(p.db.join("other.txt")).ok().as_deref() != Some(&b"still synced"[..]) {
        assert!(
            Instant::now() < deadline,
            "a change after the failing one was not applied"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The big file deleted on the primary: the standby recovers.
    std::fs::remove_file(p.da.join("big.bin"))?;
    wait_same(
        &p.da,
        &p.db,
        "after the big file was deleted",
        STEP,
        &no_skip,
    );
    p.b.wait_for("the error cleared", STEP, |st| {
        root_status(st).last_error.is_none()
    })
    .await?;
    // And room made: a big file goes through.
    let ok = Command::new("mount")
        .args(["-o", "remount,size=16m"])
        .arg(&p.db)
        .status()?
        .success();
    assert!(ok, "remount");
    write(&p.da.join("big2.bin"), &random_bytes(4 << 20, 8));
    wait_same(
        &p.da,
        &p.db,
        "a big file once there is room",
        STEP,
        &no_skip,
    );
    Ok(())
}

#[test]
fn bad_sync_paths_stop_the_server_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    init(&data).unwrap();
    let d = data.display().to_string();
    let inside = format!("www={d}/files");
    let contains = format!("www={}", tmp.path().display());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--sync-path", "www=relative/dir"], "sync_paths.www"),
        (
            vec!["--sync-path", "a=/srv/x", "--sync-path", "b=/srv/x/y"],
            "sync_paths.b",
        ),
        (vec!["--sync-path", &inside], "sync_paths.www"),
        (vec!["--sync-path", &contains], "sync_paths.www"),
        (
            vec!["--sync-path", "bad/name=/srv/x"],
            "sync_paths.bad/name",
        ),
        (vec!["--sync-path", "nopath"], "sync_paths"),
        (
            vec!["--sync-path", "www=/srv/x", "--sync-exclude", "a["],
            "sync_exclude",
        ),
    ];
    for (args, key) in cases {
        let out = hadr()
            .command(&[
                "server",
                "--data",
                &d,
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
            ])
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must not start");
        assert!(
            err.contains(key),
            "{args:?}: stderr does not name {key}: {err}"
        );
    }
}
