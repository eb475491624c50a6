//! The file arbiter against real files: conditional writes, races between
//! threads and between processes, corrupt and stray files, permissions,
//! and time limits.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hadr_arbiter::file::{FileArbiter, MAX_STUCK};
use hadr_arbiter::{check, Arbiter, ArbiterError, LeaseRecord, Version};

fn rec(holder: &str, token: u64) -> LeaseRecord {
    LeaseRecord {
        holder: Some(holder.into()),
        epoch: 1,
        token,
        nonce: token.wrapping_mul(0x9e37_79b9),
        ..LeaseRecord::default()
    }
}

/// A directory others (e.g. `nobody`) may traverse.
fn dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    chmod(d.path(), 0o755);
    d
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[tokio::test]
async fn create_when_absent_then_read_back() {
    let d = dir();
    let path = d.path().join("hadr.lease");
    let arb = FileArbiter::new(path.clone());
    assert!(arb.read().await.unwrap().is_none());
    let stored = arb.write(None, &rec("a", 1)).await.unwrap();
    assert_eq!(stored.record, rec("a", 1));
    assert!(stored.version.0.starts_with("1-"), "{:?}", stored.version);
    assert_eq!(arb.read().await.unwrap(), Some(stored.clone()));
    // The file is JSON a person can read, and a new instance reads it too.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"holder\": \"a\""), "{text}");
    assert_eq!(FileArbiter::new(path).read().await.unwrap(), Some(stored));
}

#[tokio::test]
async fn second_create_conflicts() {
    let d = dir();
    let path = d.path().join("hadr.lease");
    let a = FileArbiter::new(path.clone());
    let b = FileArbiter::new(path);
    let first = a.write(None, &rec("a", 1)).await.unwrap();
    assert!(matches!(
        b.write(None, &rec("b", 1)).await,
        Err(ArbiterError::Conflict)
    ));
    assert!(matches!(
        a.write(None, &rec("a", 2)).await,
        Err(ArbiterError::Conflict)
    ));
    assert_eq!(b.read().await.unwrap(), Some(first));
}

#[tokio::test]
async fn renew_with_the_right_version() {
    let d = dir();
    let arb = FileArbiter::new(d.path().join("hadr.lease"));
    let v1 = arb.write(None, &rec("a", 1)).await.unwrap();
    let v2 = arb.write(Some(&v1.version), &rec("a", 2)).await.unwrap();
    assert_ne!(v1.version, v2.version);
    let v3 = arb.write(Some(&v2.version), &rec("a", 3)).await.unwrap();
    assert_eq!(arb.read().await.unwrap(), Some(v3));
}

#[tokio::test]
async fn stale_version_conflicts() {
    let d = dir();
    let arb = FileArbiter::new(d.path().join("hadr.lease"));
    let v1 = arb.write(None, &rec("a", 1)).await.unwrap();
    let v2 = arb.write(Some(&v1.version), &rec("a", 2)).await.unwrap();
    assert!(matches!(
        arb.write(Some(&v1.version), &rec("a", 3)).await,
        Err(ArbiterError::Conflict)
    ));
    assert!(matches!(
        arb.write(Some(&Version("2".into())), &rec("a", 3)).await,
        Err(ArbiterError::Conflict)
    ));
    // The same record written twice still gets a new version, so an old
    // version never becomes valid again (ABA).
    let v3 = arb.write(Some(&v2.version), &v1.record).await.unwrap();
    assert_ne!(v3.version, v1.version);
    assert!(matches!(
        arb.write(Some(&v1.version), &rec("a", 4)).await,
        Err(ArbiterError::Conflict)
    ));
    assert_eq!(arb.read().await.unwrap(), Some(v3));
}

#[tokio::test]
async fn take_over_from_another_instance() {
    let d = dir();
    let path = d.path().join("hadr.lease");
    let a = FileArbiter::new(path.clone());
    let held = a.write(None, &rec("a", 1)).await.unwrap();
    // `a` stops renewing; `b`, another instance on the same path, takes over.
    let b = FileArbiter::new(path);
    let seen = b.read().await.unwrap().unwrap();
    assert_eq!(seen, held);
    let mine = b.write(Some(&seen.version), &rec("b", 2)).await.unwrap();
    // `a` comes back and tries to renew: too late.
    assert!(matches!(
        a.write(Some(&held.version), &rec("a", 2)).await,
        Err(ArbiterError::Conflict)
    ));
    assert_eq!(a.read().await.unwrap(), Some(mine));
}

const RACERS: usize = 8;
const ROUNDS: usize = 400;

/// `RACERS` threads, each with its own arbiter and runtime, race each round
/// on `paths[round]` from `expected[round]`; the winners of each round.
/// A racer never panics (the others would wait at the barrier for ever):
/// anything but a win or a conflict is collected and fails the test here.
fn race(paths: Vec<PathBuf>, expected: Vec<Option<Version>>) -> Vec<Vec<usize>> {
    let barrier = Arc::new(Barrier::new(RACERS));
    let (paths, expected) = (Arc::new(paths), Arc::new(expected));
    let threads: Vec<_> = (0..RACERS)
        .map(|me| {
            let (barrier, paths, expected) = (barrier.clone(), paths.clone(), expected.clone());
            std::thread::spawn(move || {
                let rt = runtime();
                let (mut won, mut errors) = (Vec::new(), Vec::new());
                for round in 0..paths.len() {
                    let arb = FileArbiter::new(paths[round].clone())
                        .with_timeout(Duration::from_secs(20));
                    let r = rec(&format!("racer-{me}"), round as u64 + 10);
                    barrier.wait();
                    match rt.block_on(arb.write(expected[round].as_ref(), &r)) {
                        Ok(stored) if stored.record == r => won.push(round),
                        Ok(stored) => errors.push(format!("round {round}: stored {stored:?}")),
                        Err(ArbiterError::Conflict) => {}
                        Err(e) => errors.push(format!("round {round}: {e}")),
                    }
                }
                (won, errors)
            })
        })
        .collect();
    let mut winners = vec![Vec::new(); paths.len()];
    for (me, t) in threads.into_iter().enumerate() {
        let (won, errors) = t.join().unwrap();
        assert!(errors.is_empty(), "racer {me}: {errors:#?}");
        for round in won {
            winners[round].push(me);
        }
    }
    winners
}

fn assert_one_winner_each(winners: &[Vec<usize>], paths: &[PathBuf]) {
    let rt = runtime();
    for (round, w) in winners.iter().enumerate() {
        assert_eq!(w.len(), 1, "round {round}: winners {w:?}");
        let stored = rt
            .block_on(FileArbiter::new(paths[round].clone()).read())
            .unwrap()
            .unwrap();
        assert_eq!(
            stored.record.holder.as_deref(),
            Some(format!("racer-{}", w[0]).as_str()),
            "round {round}: the file names another winner"
        );
    }
}

#[test]
fn racing_creates_exactly_one_wins() {
    let d = dir();
    let paths: Vec<_> = (0..ROUNDS)
        .map(|r| d.path().join(format!("{r}.lease")))
        .collect();
    let winners = race(paths.clone(), vec![None; ROUNDS]);
    assert_one_winner_each(&winners, &paths);
}

#[test]
fn racing_compare_and_swaps_exactly_one_wins() {
    let d = dir();
    let rt = runtime();
    let mut paths = Vec::new();
    let mut versions = Vec::new();
    for r in 0..ROUNDS {
        let path = d.path().join(format!("{r}.lease"));
        let v = rt
            .block_on(FileArbiter::new(path.clone()).write(None, &rec("old", 1)))
            .unwrap()
            .version;
        paths.push(path);
        versions.push(Some(v));
    }
    let winners = race(paths.clone(), versions);
    assert_one_winner_each(&winners, &paths);
}

/// The child processes' entry point (run by the tests below, never alone).
#[test]
#[ignore = "run by other tests in a child process"]
fn child() {
    let Ok(task) = std::env::var("HADR_ARB_TEST_CHILD") else {
        return;
    };
    let (what, arg) = task.split_once(':').unwrap();
    match what {
        "increment" => {
            let (count, path) = arg.split_once(':').unwrap();
            increment(Path::new(path), count.parse().unwrap());
        }
        "nobody" => {
            // SAFETY: plain system calls; this process is ours to demote.
            unsafe {
                assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
                assert_eq!(libc::setgid(65534), 0, "setgid");
                assert_eq!(libc::setuid(65534), 0, "setuid");
            }
            read_only_checks(Path::new(arg));
        }
        other => panic!("unknown child task {other:?}"),
    }
}

/// Start the `child` test in a child process; its output is kept for
/// [`finish`], so that it does not mix with this run's.
fn run_child(task: String) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HADR_ARB_TEST_CHILD", task)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait for a child; show what it said if it failed.
fn finish(child: std::process::Child) {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "child failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Add one to the token `count` times, each by read and compare-and-swap.
fn increment(path: &Path, count: u64) {
    let rt = runtime();
    let arb = FileArbiter::new(path.to_path_buf()).with_timeout(Duration::from_secs(20));
    let mut done = 0;
    while done < count {
        let cur = rt.block_on(arb.read()).unwrap().unwrap();
        let next = rec(&format!("pid-{}", std::process::id()), cur.record.token + 1);
        match rt.block_on(arb.write(Some(&cur.version), &next)) {
            Ok(_) => done += 1,
            Err(ArbiterError::Conflict) => {}
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn processes_never_lose_an_update() {
    const PROCESSES: u64 = 8;
    const EACH: u64 = 25;
    let d = dir();
    let path = d.path().join("hadr.lease");
    let rt = runtime();
    rt.block_on(FileArbiter::new(path.clone()).write(None, &rec("start", 0)))
        .unwrap();
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| run_child(format!("increment:{EACH}:{}", path.display())))
        .collect();
    for c in children {
        finish(c);
    }
    // Every successful compare-and-swap added one: a lost update (two
    // writers winning from the same version) would leave less.
    let last = rt.block_on(FileArbiter::new(path).read()).unwrap().unwrap();
    assert_eq!(last.record.token, PROCESSES * EACH);
}

#[tokio::test]
async fn corrupt_file_is_reported_not_overwritten() {
    let d = dir();
    let path = d.path().join("hadr.lease");
    let arb = FileArbiter::new(path.clone());
    let bare_record = serde_json::to_string(&rec("a", 1)).unwrap();
    for junk in [
        "",
        "not json\n",
        "{\"hadr_lease\": 1}",
        bare_record.as_str(),
    ] {
        std::fs::write(&path, junk).unwrap();
        let err = arb.read().await.unwrap_err();
        assert!(
            matches!(&err, ArbiterError::Corrupt { endpoint, .. } if endpoint == &path.display().to_string()),
            "{junk:?}: {err:?}"
        );
        for expected in [None, Some(Version(String::new()))] {
            let err = arb
                .write(expected.as_ref(), &rec("b", 2))
                .await
                .unwrap_err();
            assert!(
                matches!(err, ArbiterError::Corrupt { .. }),
                "{junk:?}: {err:?}"
            );
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), junk);
    }
}

/// What a user who may not write `dir` sees.
fn read_only_checks(dir: &Path) {
    let rt = runtime();
    // A fresh path: there is no record (reads take no lock), and none can
    // be written.
    let fresh = FileArbiter::new(dir.join("fresh.lease"));
    assert_eq!(rt.block_on(fresh.read()).unwrap(), None);
    let err = rt.block_on(fresh.write(None, &rec("a", 1))).unwrap_err();
    let text = err.to_string();
    println!("fresh path: {text}");
    assert!(matches!(err, ArbiterError::Unavailable { .. }), "{err:?}");
    assert!(text.contains("permission denied"), "{text}");
    assert!(text.contains(&dir.display().to_string()), "{text}");
    // An existing record: it can be read, but not replaced.
    let held = FileArbiter::new(dir.join("held.lease"));
    let stored = rt.block_on(held.read()).unwrap().unwrap();
    let err = rt
        .block_on(held.write(Some(&stored.version), &rec("b", 2)))
        .unwrap_err();
    let text = err.to_string();
    println!("existing record: {text}");
    assert!(matches!(err, ArbiterError::Unavailable { .. }), "{err:?}");
    assert!(text.contains("permission denied writing"), "{text}");
    assert!(text.contains(&dir.display().to_string()), "{text}");
    assert_eq!(rt.block_on(held.read()).unwrap(), Some(stored));
}

#[test]
fn read_only_directory_gives_a_clear_error() {
    let d = dir();
    let ro = d.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    runtime()
        .block_on(FileArbiter::new(ro.join("held.lease")).write(None, &rec("a", 1)))
        .unwrap();
    // The lock file is writable; the directory will not be.
    chmod(&ro.join("held.lease.lock"), 0o666);
    chmod(&ro, 0o555);
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        // Root ignores permissions: check as `nobody`, in a child process.
        let status = run_child(format!("nobody:{}", ro.display()))
            .wait()
            .unwrap();
        assert!(status.success());
    } else {
        read_only_checks(&ro);
    }
    chmod(&ro, 0o755);
}

#[tokio::test]
async fn missing_directory_is_unavailable_with_the_path() {
    let d = dir();
    let gone = d.path().join("not-mounted");
    let arb = FileArbiter::new(gone.join("hadr.lease"));
    for err in [
        arb.read().await.unwrap_err(),
        arb.write(None, &rec("a", 1)).await.unwrap_err(),
    ] {
        let text = err.to_string();
        assert!(matches!(err, ArbiterError::Unavailable { .. }), "{err:?}");
        assert!(text.contains("does not exist"), "{text}");
        assert!(text.contains(&gone.display().to_string()), "{text}");
    }
}

#[tokio::test]
async fn check_passes_on_a_good_directory() {
    let d = dir();
    let path = d.path().join("hadr.lease");
    let arb = FileArbiter::new(path.clone());
    let report = check(&arb).await.unwrap();
    assert!(report.info.stateful);
    assert_eq!(report.info.kind, "file");
    assert!(report.current.is_none());
    // It wrote the probe beside the record, never the record itself.
    assert!(d.path().join("hadr.lease.check").is_file());
    assert!(!path.exists());
    // And again, starting from what the first check left.
    let held = arb.write(None, &rec("a", 1)).await.unwrap();
    let report = check(&arb).await.unwrap();
    assert_eq!(report.current, Some(held.clone()));
    assert_eq!(arb.read().await.unwrap(), Some(held));
}

#[tokio::test]
async fn record_survives_a_crash_before_rename() {
    let d = dir();
    let path = d.path().join("hadr.lease");
    let arb = FileArbiter::new(path.clone());
    let old = arb.write(None, &rec("a", 1)).await.unwrap();
    // A writer died after writing and syncing its temp file, before the
    // rename (and one died mid-write).
    let stray = d.path().join(".hadr.lease.tmp.4242.00000000deadbeef");
    let half = d.path().join(".hadr.lease.tmp.4243.00000000cafef00d");
    let new = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"a\"", "\"dead\"");
    std::fs::write(&stray, &new).unwrap();
    std::fs::write(&half, &new[..new.len() / 2]).unwrap();
    // They are an hour old: a live writer's temp file (written before it
    // takes the lock) is never older than a call may live.
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    for f in [&stray, &half] {
        std::fs::File::options()
            .write(true)
            .open(f)
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
    }
    // A young one (another writer's, between its temp file and the lock)
    // is left alone.
    let young = d.path().join(".hadr.lease.tmp.4244.0000000012345678");
    std::fs::write(&young, &new).unwrap();
    assert_eq!(arb.read().await.unwrap(), Some(old.clone()));
    assert_eq!(
        FileArbiter::new(path.clone()).read().await.unwrap(),
        Some(old.clone())
    );
    let next = arb.write(Some(&old.version), &rec("b", 2)).await.unwrap();
    assert_eq!(arb.read().await.unwrap(), Some(next));
    assert!(!stray.exists() && !half.exists(), "stray temp files left");
    assert!(young.exists(), "a live writer's temp file was removed");
}

/// Open `path` and take an exclusive OFD lock on it, as another writer would.
fn hold_lock(path: &Path) -> std::fs::File {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap();
    // SAFETY: a zeroed flock is valid (whole file); a valid descriptor.
    let rc = unsafe {
        let mut fl: libc::flock = std::mem::zeroed();
        fl.l_type = libc::F_WRLCK as _;
        libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut fl)
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    file
}

#[tokio::test]
async fn lock_held_elsewhere_times_out_and_writes_nothing() {
    let d = dir();
    let path = d.path().join("hadr.lease");
    let arb = FileArbiter::new(path.clone()).with_timeout(Duration::from_millis(300));
    let old = arb.write(None, &rec("a", 1)).await.unwrap();
    // Someone (a writer on a hung node) holds the lock.
    let lock = hold_lock(&d.path().join("hadr.lease.lock"));
    let started = Instant::now();
    let err = arb
        .write(Some(&old.version), &rec("a", 2))
        .await
        .unwrap_err();
    assert!(matches!(err, ArbiterError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // The write left no temporary file behind.
    let temps: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
        .collect();
    assert!(temps.is_empty(), "{temps:?}");
    // A reader is not held up by a writer that holds the lock (one frozen
    // inside it must not stop a standby from watching the record).
    assert_eq!(arb.read().await.unwrap(), Some(old.clone()));
    drop(lock);
    assert_eq!(arb.read().await.unwrap(), Some(old.clone()));
    arb.write(Some(&old.version), &rec("a", 2)).await.unwrap();
}

#[tokio::test]
async fn lock_on_a_removed_lock_file_is_not_trusted() {
    let d = dir();
    let path = d.path().join("hadr.lease");
    let lock_path = d.path().join("hadr.lease.lock");
    let old = FileArbiter::new(path.clone())
        .write(None, &rec("a", 1))
        .await
        .unwrap();
    let first = hold_lock(&lock_path);
    // A writer opens the lock file and waits for it...
    let waiter = {
        let (path, v) = (path.clone(), old.version.clone());
        tokio::spawn(async move {
            FileArbiter::new(path)
                .with_timeout(Duration::from_secs(3))
                .write(Some(&v), &rec("waiter", 2))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // ...while someone removes it, and another writer locks the new one.
    std::fs::remove_file(&lock_path).unwrap();
    let second = hold_lock(&lock_path);
    drop(first);
    // The waiter gets the old file's lock, sees it is no longer the lock
    // file, and waits on the new one: it must not write meanwhile.
    let err = waiter.await.unwrap().unwrap_err();
    assert!(matches!(err, ArbiterError::Timeout { .. }), "{err:?}");
    drop(second);
    assert_eq!(FileArbiter::new(path).read().await.unwrap(), Some(old));
}

#[tokio::test]
async fn hung_filesystem_call_times_out() {
    let d = dir();
    let path = d.path().join("hadr.lease");
    // A FIFO where the record should be: opening it blocks in the kernel
    // until a writer comes, as a call into a hung mount does.
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let arb = FileArbiter::new(path.clone()).with_timeout(Duration::from_millis(200));
    for _ in 0..MAX_STUCK {
        let started = Instant::now();
        let err = arb.read().await.unwrap_err();
        assert!(matches!(err, ArbiterError::Timeout { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    // With that many threads stuck, it refuses to start another.
    let err = arb.read().await.unwrap_err();
    assert!(err.to_string().contains("still blocked"), "{err}");
    // Unblock them: they find an empty "record", and the arbiter recovers.
    {
        use std::os::unix::fs::OpenOptionsExt;
        let _w = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    std::fs::remove_file(&path).unwrap();
    loop {
        match arb.read().await {
            Ok(None) => break,
            Err(e) if Instant::now() < deadline && e.to_string().contains("still blocked") => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn probe_is_a_sibling_file() {
    let arb = FileArbiter::new("/mnt/shared/hadr.lease".into());
    assert_eq!(arb.probe().info().endpoint, "/mnt/shared/hadr.lease.check");
    assert_eq!(arb.info().endpoint, "/mnt/shared/hadr.lease");
}
