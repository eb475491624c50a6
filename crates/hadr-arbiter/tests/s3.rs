//! The S3 arbiter against a real S3 server: moto's `moto_server`, started
//! by each test on a free loopback port and killed when it ends
//! (`support::Moto`). Without moto installed these tests skip with a
//! message, except under `CI`, where they fail.
//!
//! moto is not atomic under concurrent conditional PUTs: its `put_object`
//! looks the key up, then stores the object, with no lock between, and
//! werkzeug serves each request on its own thread. 8 creators racing
//! straight at moto on a fresh key sometimes both win (see
//! `race_without_the_proxy` for what was seen). So every test that writes
//! goes through `support::Proxy`, which lets one request at a time reach
//! moto, as a real store orders the writes to one key, and
//! `concurrent_creators_exactly_one_wins` shows the arbiter then gets
//! exactly one winner in each of 400 rounds.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hadr_arbiter::s3::{S3Arbiter, S3Config, DEFAULT_TIMEOUT};
use hadr_arbiter::{check, open, Arbiter, ArbiterError, ArbiterSpec, LeaseRecord};
use support::{Mode, Moto, Proxy};

const BUCKET: &str = "hadr-test";

/// Credential files as an operator would leave them: mode 0600.
fn creds(dir: &Path) -> (PathBuf, PathBuf) {
    let access = dir.join("node.access");
    let secret = dir.join("node.secret");
    std::fs::write(&access, "AKIAHADRTEST\n").unwrap();
    std::fs::write(&secret, "hadr-test-secret\n").unwrap();
    for f in [&access, &secret] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    (access, secret)
}

fn config(endpoint: &str, key: &str, (access, secret): &(PathBuf, PathBuf)) -> S3Config {
    S3Config {
        bucket: BUCKET.into(),
        key: key.into(),
        endpoint: Some(endpoint.into()),
        region: "us-east-1".into(),
        access_key_file: Some(access.clone()),
        secret_key_file: Some(secret.clone()),
    }
}

fn arbiter(endpoint: &str, key: &str, creds: &(PathBuf, PathBuf)) -> S3Arbiter {
    S3Arbiter::new(config(endpoint, key, creds)).unwrap()
}

fn rec(holder: &str, epoch: u64, token: u64) -> LeaseRecord {
    LeaseRecord {
        holder: Some(holder.into()),
        epoch,
        token,
        ..LeaseRecord::default()
    }
}

/// moto with the test bucket, a proxy in front, and credential files.
struct Rig {
    moto: Moto,
    proxy: Proxy,
    _dir: tempfile::TempDir,
    creds: (PathBuf, PathBuf),
    /// The proxy's URL: the endpoint the arbiters use.
    url: String,
}

impl Rig {
    /// None if moto is missing outside CI.
    async fn start(test: &str, mode: Mode) -> Option<Rig> {
        Some(Rig::around(Moto::start(test).await?, mode).await)
    }

    async fn around(moto: Moto, mode: Mode) -> Rig {
        moto.create_bucket(BUCKET).await;
        let proxy = Proxy::start(moto.addr, mode).await;
        let dir = tempfile::tempdir().unwrap();
        Rig {
            url: format!("http://{}", proxy.addr),
            moto,
            proxy,
            creds: creds(dir.path()),
            _dir: dir,
        }
    }

    /// A node: an arbiter with its own client.
    fn arbiter(&self, key: &str) -> S3Arbiter {
        arbiter(&self.url, key, &self.creds)
    }
}

/// Create, read back, renew, refuse a stale version and a second create;
/// identical records still get distinct ETags (the nonce); a body that is
/// not a lease record is `Corrupt`; the arbiter also opens from its spec.
#[tokio::test]
async fn create_renew_and_stale_version_conflict() {
    let Some(rig) = Rig::start("create_renew_and_stale_version_conflict", Mode::Serialise).await
    else {
        return;
    };
    let spec: ArbiterSpec = format!(
        "s3://{BUCKET}/hadr/lease?endpoint={}&region=us-east-1&access_key_file={}&secret_key_file={}",
        rig.url,
        rig.creds.0.display(),
        rig.creds.1.display()
    )
    .parse()
    .unwrap();
    let a = open(&spec).unwrap();
    let info = a.info();
    assert_eq!(info.kind, "s3");
    assert_eq!(
        info.endpoint,
        format!("s3://{BUCKET}/hadr/lease @ {}", rig.url)
    );
    assert!(info.stateful);

    assert!(a.read().await.unwrap().is_none());
    let s1 = a.write(None, &rec("a", 1, 1)).await.unwrap();
    assert_eq!(s1.record.holder.as_deref(), Some("a"));
    assert_eq!(a.read().await.unwrap().as_ref(), Some(&s1));

    // Only if absent: it is not.
    assert!(matches!(
        a.write(None, &rec("a", 1, 2)).await,
        Err(ArbiterError::Conflict)
    ));

    // Renew on the version read.
    let s2 = a.write(Some(&s1.version), &rec("a", 1, 2)).await.unwrap();
    assert_ne!(s2.version, s1.version);
    assert_eq!(a.read().await.unwrap().as_ref(), Some(&s2));

    // The old version is stale now; nothing is written.
    assert!(matches!(
        a.write(Some(&s1.version), &rec("a", 1, 3)).await,
        Err(ArbiterError::Conflict)
    ));
    assert_eq!(a.read().await.unwrap().as_ref(), Some(&s2));

    // The caller's very record again, nonce and all: the backend's fresh
    // nonce still makes a new body, so a new ETag, and the previous
    // version is stale.
    let mut same = s2.record.clone();
    let s3 = a.write(Some(&s2.version), &same).await.unwrap();
    same.nonce = s3.record.nonce;
    let s4 = a.write(Some(&s3.version), &same).await.unwrap();
    assert_ne!(s3.record.nonce, s2.record.nonce);
    assert_ne!(s4.record.nonce, s3.record.nonce);
    assert_ne!(s3.version, s2.version);
    assert_ne!(s4.version, s3.version);
    assert!(matches!(
        a.write(Some(&s3.version), &same).await,
        Err(ArbiterError::Conflict)
    ));
    assert_eq!(a.read().await.unwrap().as_ref(), Some(&s4));

    // A body that is not a lease record.
    let (status, body) = support::raw_request(
        rig.proxy.addr,
        "PUT",
        &format!("/{BUCKET}/junk"),
        b"not json",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let junk = rig.arbiter("junk");
    assert!(matches!(
        junk.read().await,
        Err(ArbiterError::Corrupt { .. })
    ));
}

/// A second node (its own client) takes over on the version it read; the
/// first node's renewal on its old version is refused, and it sees the new
/// holder.
#[tokio::test]
async fn take_over_from_a_second_instance() {
    let Some(rig) = Rig::start("take_over_from_a_second_instance", Mode::Serialise).await else {
        return;
    };
    let a = rig.arbiter("lease");
    let b = rig.arbiter("lease");

    let held = a.write(None, &rec("a", 1, 1)).await.unwrap();
    let seen = b.read().await.unwrap().unwrap();
    assert_eq!(seen, held);
    let taken = b
        .write(Some(&seen.version), &rec("b", 2, seen.record.token + 1))
        .await
        .unwrap();
    assert!(matches!(
        a.write(Some(&held.version), &rec("a", 1, 2)).await,
        Err(ArbiterError::Conflict)
    ));
    let now = a.read().await.unwrap().unwrap();
    assert_eq!(now, taken);
    assert_eq!(
        (now.record.holder.as_deref(), now.record.epoch),
        (Some("b"), 2)
    );
    // And b's creator-only write loses too: the record exists.
    assert!(matches!(
        b.write(None, &rec("b", 2, 9)).await,
        Err(ArbiterError::Conflict)
    ));
}

const CREATORS: usize = 8;
const ROUNDS: usize = 400;

/// What `ROUNDS` races of `CREATORS` creators came to.
#[derive(Debug, Default)]
struct Race {
    /// (round, winners) for each round without exactly one winner.
    bad_rounds: Vec<(usize, usize)>,
    /// Rounds whose stored record is no winner's.
    lost_writes: Vec<usize>,
    /// Errors other than `Conflict`, as (round, message).
    errors: Vec<(usize, String)>,
}

/// Race `CREATORS` nodes, each with its own client (its own connections),
/// to create a fresh key under `prefix`, `ROUNDS` times.
async fn race(endpoint: &str, prefix: &str, c: &(PathBuf, PathBuf)) -> Race {
    let nodes: Vec<S3Arbiter> = (0..CREATORS)
        .map(|_| arbiter(endpoint, "race", c))
        .collect();
    let mut out = Race::default();
    for round in 0..ROUNDS {
        let key = format!("{prefix}/{round}");
        let start = Arc::new(tokio::sync::Barrier::new(CREATORS));
        let tasks: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let node = node.at_key(&key).unwrap();
                let start = start.clone();
                tokio::spawn(async move {
                    start.wait().await;
                    node.write(None, &rec(&format!("node-{i}"), 1, 1)).await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(s) => winners.push(s),
                Err(ArbiterError::Conflict) => {}
                Err(e) => out.errors.push((round, e.to_string())),
            }
        }
        if winners.len() != 1 {
            out.bad_rounds.push((round, winners.len()));
        }
        match nodes[0].at_key(&key).unwrap().read().await {
            Ok(Some(stored)) if winners.contains(&stored) => {}
            Ok(_) => out.lost_writes.push(round),
            Err(e) => out.errors.push((round, e.to_string())),
        }
    }
    out
}

/// Through the serialising proxy: exactly one of 8 concurrent creators wins,
/// in each of 400 rounds; the 7 others get `Conflict`, and the stored record
/// is the winner's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creators_exactly_one_wins() {
    let Some(rig) = Rig::start("concurrent_creators_exactly_one_wins", Mode::Serialise).await
    else {
        return;
    };
    let started = Instant::now();
    let r = race(&rig.url, "race", &rig.creds).await;
    eprintln!(
        "{ROUNDS} rounds of {CREATORS} creators through the proxy in {:?}: {r:?}",
        started.elapsed()
    );
    assert!(
        r.bad_rounds.is_empty(),
        "rounds without exactly one winner: {r:?}"
    );
    assert!(r.lost_writes.is_empty() && r.errors.is_empty(), "{r:?}");
    assert!(rig.proxy.requests.load(Ordering::SeqCst) >= ROUNDS * (CREATORS + 1));
}

/// The same race straight at moto, to show why the proxy exists: once as
/// moto runs by default, once with Python switching threads every 1 µs
/// (`Moto::start_interleaved`), as a loaded machine would. Not run by
/// default: it reports, it asserts nothing (`cargo test -p hadr-arbiter
/// --test s3 -- --ignored --nocapture race_without_the_proxy`). Seen here
/// (moto 5.2.1, 2 cores), 400 rounds of 8 creators each time:
/// - moto as it runs, direct: one round with two winners in one run of
///   four (round 122), none in the other three — moto's window between its
///   lookup and its store is short, so rarely preempted, but it is there;
/// - interleaved, direct: 10 and 11 rounds with two winners, and 3 to 22
///   PUTs answered `500 Internal Server Error`;
/// - through the proxy, either way: 0 rounds with other than one winner,
///   no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a demonstration of moto's non-atomic conditional PUTs, not a test of ours"]
async fn race_without_the_proxy() {
    for interleaved in [false, true] {
        let test = "race_without_the_proxy";
        let moto = if interleaved {
            Moto::start_interleaved(test).await
        } else {
            Moto::start(test).await
        };
        let Some(moto) = moto else {
            return;
        };
        let rig = Rig::around(moto, Mode::Serialise).await;
        let direct = race(&format!("http://{}", rig.moto.addr), "direct", &rig.creds).await;
        let proxied = race(&rig.url, "proxied", &rig.creds).await;
        for (how, r) in [("direct", direct), ("through the proxy", proxied)] {
            let extra: usize = r.bad_rounds.iter().map(|(_, w)| w.saturating_sub(1)).sum();
            eprintln!(
                "moto {}, {how}: {} of {ROUNDS} rounds without exactly one winner \
                 ({extra} extra winners), {} lost writes, {} errors (first: {:?}); bad rounds: {:?}",
                if interleaved { "interleaved" } else { "as it runs by default" },
                r.bad_rounds.len(),
                r.lost_writes.len(),
                r.errors.len(),
                r.errors.first().map(|(round, e)| (round, e.lines().next().unwrap_or(""))),
                r.bad_rounds
            );
        }
    }
}

/// `hadr arbiter check` passes on a store that honours conditional PUTs,
/// and leaves the real record alone (it writes only the probe key).
#[tokio::test]
async fn check_passes_through_the_honest_proxy() {
    let Some(rig) = Rig::start("check_passes_through_the_honest_proxy", Mode::Serialise).await
    else {
        return;
    };
    let a = rig.arbiter("lease");
    assert_eq!(
        a.probe().info().endpoint,
        format!("s3://{BUCKET}/lease.check @ {}", rig.url)
    );
    let report = check(&a).await.unwrap();
    assert!(report.current.is_none());
    assert!(
        a.read().await.unwrap().is_none(),
        "check wrote the real key"
    );
    let probe = rig.arbiter("lease.check").read().await.unwrap();
    assert_eq!(
        probe.unwrap().record.holder.as_deref(),
        Some("hadr-arbiter-check")
    );
    // Again, on what the first check left.
    check(&a).await.unwrap();
}

/// A store that ignores `If-Match`/`If-None-Match` (the proxy strips them)
/// is refused with `NotConditional`.
#[tokio::test]
async fn check_refuses_a_store_that_ignores_conditions() {
    let Some(rig) = Rig::start(
        "check_refuses_a_store_that_ignores_conditions",
        Mode::StripConditions,
    )
    .await
    else {
        return;
    };
    let a = rig.arbiter("lease");
    match check(&a).await {
        Err(ArbiterError::NotConditional(endpoint)) => {
            assert!(endpoint.starts_with(&format!("s3://{BUCKET}/lease @ ")))
        }
        other => panic!("expected NotConditional, got {other:?}"),
    }
    assert!(
        rig.proxy.stripped.load(Ordering::SeqCst) >= 2,
        "the proxy stripped no condition: the test proves nothing"
    );
}

/// Credentials the store does not know are refused as `Credentials`. moto
/// accepts any key by default; INITIAL_NO_AUTH_ACTION_COUNT=1 makes it
/// check every request after the first (which creates the bucket).
#[tokio::test]
async fn unknown_credentials_are_refused_by_the_store() {
    let test = "unknown_credentials_are_refused_by_the_store";
    let Some(moto) = Moto::start_with_env(test, &[("INITIAL_NO_AUTH_ACTION_COUNT", "1")]).await
    else {
        return;
    };
    let rig = Rig::around(moto, Mode::Serialise).await;
    let a = rig.arbiter("lease");
    match a.read().await {
        Err(ArbiterError::Credentials(m)) => assert!(m.contains("refused"), "{m}"),
        other => panic!("read: expected Credentials, got {other:?}"),
    }
    match a.write(None, &rec("a", 1, 1)).await {
        Err(ArbiterError::Credentials(_)) => {}
        other => panic!("write: expected Credentials, got {other:?}"),
    }
}

/// Nothing listens: `Unavailable`, at once, well within the timeout.
#[tokio::test]
async fn server_down_is_unavailable_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", support::free_port());
    let a = arbiter(&url, "lease", &creds(dir.path()));
    let started = Instant::now();
    match a.read().await {
        Err(ArbiterError::Unavailable { endpoint, message }) => {
            assert!(endpoint.ends_with(&url), "{endpoint}");
            assert!(!message.is_empty());
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(matches!(
        a.write(None, &rec("a", 1, 1)).await,
        Err(ArbiterError::Unavailable { .. })
    ));
    assert!(started.elapsed() < DEFAULT_TIMEOUT);
}

/// Something accepts connections and never answers: `Timeout`, after the
/// timeout and not much later, for the default and for a shorter one.
#[tokio::test]
async fn silent_server_times_out_within_the_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let c = creds(dir.path());
    let short = Duration::from_millis(400);
    for (a, timeout) in [
        (
            S3Arbiter::with_timeout(config(&url, "lease", &c), short).unwrap(),
            short,
        ),
        (arbiter(&url, "lease", &c), DEFAULT_TIMEOUT),
    ] {
        let started = Instant::now();
        let got = a.write(None, &rec("a", 1, 1)).await;
        let took = started.elapsed();
        match got {
            Err(ArbiterError::Timeout { timeout: t, .. }) => assert_eq!(t, timeout),
            other => panic!("expected Timeout, got {other:?}"),
        }
        assert!(
            took >= timeout - Duration::from_millis(50)
                && took < timeout + Duration::from_millis(500),
            "{took:?} for a timeout of {timeout:?}"
        );
    }
    hold.abort();
}

/// DB2's rule for `/var/ct/cfg/<node>.access` and `.secret`: readable by
/// their owner only. Group- or world-readable files are refused, naming the
/// file and its mode, before any request.
#[test]
fn group_or_world_readable_credentials_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = creds(dir.path());
    assert!(S3Arbiter::new(config("http://127.0.0.1:9", "k", &c)).is_ok());
    for (file, mode) in [(&c.0, 0o640), (&c.1, 0o604), (&c.0, 0o660), (&c.1, 0o644)] {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(mode)).unwrap();
        match S3Arbiter::new(config("http://127.0.0.1:9", "k", &c)) {
            Err(ArbiterError::Credentials(m)) => {
                assert!(m.contains(&file.display().to_string()), "{m}");
                assert!(m.contains(&format!("{mode:04o}")), "{m}");
            }
            Err(e) => panic!("mode {mode:o}: expected Credentials, got {e}"),
            Ok(_) => panic!("mode {mode:o}: accepted"),
        }
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // Owner-only but stricter than 0600 is fine.
    std::fs::set_permissions(&c.1, std::fs::Permissions::from_mode(0o400)).unwrap();
    assert!(S3Arbiter::new(config("http://127.0.0.1:9", "k", &c)).is_ok());
}

/// A missing or empty file, or one file without its pair, is refused.
#[test]
fn missing_or_unpaired_credentials_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = creds(dir.path());
    let refused = |cfg: S3Config, needle: &str| match S3Arbiter::new(cfg) {
        Err(ArbiterError::Credentials(m)) => assert!(m.contains(needle), "{m}"),
        Err(e) => panic!("expected Credentials, got {e}"),
        Ok(_) => panic!("accepted"),
    };
    let missing = dir.path().join("nope.secret");
    let mut cfg = config("http://127.0.0.1:9", "k", &c);
    cfg.secret_key_file = Some(missing.clone());
    refused(cfg, &missing.display().to_string());

    let mut cfg = config("http://127.0.0.1:9", "k", &c);
    cfg.secret_key_file = None;
    refused(cfg, "without its pair");

    std::fs::write(&c.0, "  \n").unwrap();
    refused(config("http://127.0.0.1:9", "k", &c), "empty");
}

/// Keys the store would rewrite, and endpoints that are not http(s), are
/// refused as a bad spec.
#[test]
fn odd_keys_and_endpoints_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = creds(dir.path());
    for key in ["a//b", "a/../b", "a/", "./a"] {
        assert!(
            matches!(
                S3Arbiter::new(config("http://127.0.0.1:9", key, &c)),
                Err(ArbiterError::Spec { .. })
            ),
            "{key:?}"
        );
    }
    assert!(matches!(
        S3Arbiter::new(config("ftp://127.0.0.1:9", "k", &c)),
        Err(ArbiterError::Spec { .. })
    ));
    let a = S3Arbiter::new(config("https://s3.example.test/", "a/b", &c)).unwrap();
    assert_eq!(
        a.info().endpoint,
        "s3://hadr-test/a/b @ https://s3.example.test"
    );
    assert_eq!(
        a.probe().info().endpoint,
        "s3://hadr-test/a/b.check @ https://s3.example.test"
    );
}
