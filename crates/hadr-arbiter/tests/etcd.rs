//! The etcd arbiter against real etcd processes (see `etcd_support`): the
//! conditional write's three outcomes, races between independent clients,
//! a dead or frozen server, a foreign value under the key, `check`, and a
//! three-member cluster losing one member and then two.

mod etcd_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_support::EtcdCluster;
use hadr_arbiter::etcd::EtcdArbiter;
use hadr_arbiter::{Arbiter, ArbiterError, ArbiterSpec, LeaseRecord, Stored, Version};

/// Each call's bound where a test times the failures.
const TIMEOUT: Duration = Duration::from_secs(1);
/// What a loaded machine may add to it.
const SLACK: Duration = Duration::from_secs(1);
/// The bound elsewhere: generous, so that a loaded machine does not fail
/// tests that are not about time.
const RELAXED: Duration = Duration::from_secs(5);

const KEY: &str = "/hadr/lease";

fn record(holder: &str, token: u64) -> LeaseRecord {
    LeaseRecord {
        holder: Some(holder.to_string()),
        epoch: 1,
        token,
        nonce: token.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        written_at_micros: 1_700_000_000_000_000 + token,
        ..LeaseRecord::default()
    }
}

/// An arbiter on every member, with the relaxed bound.
fn arbiter(cluster: &EtcdCluster) -> EtcdArbiter {
    EtcdArbiter::new(cluster.endpoints(), KEY.to_string()).with_timeout(RELAXED)
}

/// An arbiter on `endpoints` whose calls are timed.
fn timed_arbiter(endpoints: Vec<String>, timeout: Duration) -> EtcdArbiter {
    EtcdArbiter::new(endpoints, KEY.to_string()).with_timeout(timeout)
}

fn revision(s: &Stored) -> i64 {
    s.version.0.parse().expect("an etcd version is a revision")
}

fn is_unreachable(e: &ArbiterError) -> bool {
    matches!(
        e,
        ArbiterError::Unavailable { .. } | ArbiterError::Timeout { .. }
    )
}

/// `what` fails as unreachable, within `timeout` (plus slack).
async fn assert_unreachable<T: std::fmt::Debug>(
    what: &str,
    timeout: Duration,
    call: impl std::future::Future<Output = Result<T, ArbiterError>>,
) -> Duration {
    let started = Instant::now();
    let result = call.await;
    let took = started.elapsed();
    match &result {
        Err(e) if is_unreachable(e) => {}
        other => panic!("{what}: expected Unavailable or Timeout, got {other:?}"),
    }
    assert!(
        took <= timeout + SLACK,
        "{what}: failed only after {took:?} (timeout {timeout:?})"
    );
    eprintln!("{what}: {} after {took:?}", result.unwrap_err());
    took
}

/// A read, a write on `version` and a write(None) all fail as unreachable,
/// each within `timeout`. (The writes would put `record("n2", 99)`.)
async fn assert_all_unreachable(why: &str, a: &EtcdArbiter, timeout: Duration, version: &Version) {
    let rec = record("n2", 99);
    assert_unreachable(&format!("read, {why}"), timeout, a.read()).await;
    let what = format!("write, {why}");
    assert_unreachable(&what, timeout, a.write(Some(version), &rec)).await;
    let what = format!("write(None), {why}");
    assert_unreachable(&what, timeout, a.write(None, &rec)).await;
}

/// Retry `read` until it answers (an election may be under way).
async fn read_when_ready(a: &EtcdArbiter, within: Duration) -> Option<Stored> {
    let deadline = Instant::now() + within;
    loop {
        match a.read().await {
            Ok(s) => return s,
            Err(e) if is_unreachable(&e) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("etcd did not come back within {within:?}: {e}"),
        }
    }
}

/// etcd answers again, and the record is `before` or `unanswered` (a write
/// that got no answer may have landed later) — never another; renewing it
/// works.
async fn assert_recovers(a: &EtcdArbiter, before: &Stored, unanswered: &LeaseRecord) {
    let now = read_when_ready(a, Duration::from_secs(15))
        .await
        .expect("the record survives");
    assert!(
        now == *before || now.record == *unanswered,
        "after recovery: {now:?}"
    );
    let renewed = match a.write(Some(&now.version), &record("n1", 100)).await {
        Ok(r) => (r, now),
        // The unanswered write, still queued in the thawed server, landed
        // between our read and our renewal: the record must now be that
        // write, and renewing it must work.
        Err(ArbiterError::Conflict) if now == *before && before.record != *unanswered => {
            let later = a.read().await.unwrap().expect("the record survives");
            assert_eq!(later.record, *unanswered, "conflict, then: {later:?}");
            let r = a
                .write(Some(&later.version), &record("n1", 100))
                .await
                .unwrap();
            (r, later)
        }
        Err(e) => panic!("renewing after recovery: {e:?}"),
    };
    assert!(revision(&renewed.0) > revision(&renewed.1));
}

/// Create, renew, and every way a version can be wrong; through `open`.
#[tokio::test]
async fn create_renew_and_stale_versions_conflict() {
    let Some(cluster) = EtcdCluster::start(1).await else {
        return;
    };
    let spec: ArbiterSpec = format!("etcd://{}{KEY}", cluster.endpoints().join(","))
        .parse()
        .unwrap();
    let a = hadr_arbiter::open(&spec).unwrap();
    assert_eq!(a.info().kind, "etcd");

    // Absent: a read says so, and a version — even "0", which etcd would
    // compare equal to an absent key's mod revision — does not create it.
    assert_eq!(a.read().await.unwrap(), None);
    for v in ["0", "1", "999999"] {
        let r = a.write(Some(&Version(v.into())), &record("n1", 1)).await;
        assert!(matches!(r, Err(ArbiterError::Conflict)), "{v:?}: {r:?}");
    }
    assert_eq!(a.read().await.unwrap(), None);

    // Create.
    let v1 = a.write(None, &record("n1", 1)).await.unwrap();
    assert_eq!(v1.record, record("n1", 1));
    assert_eq!(a.read().await.unwrap().as_ref(), Some(&v1));
    // Only if absent: not any more.
    let r = a.write(None, &record("n2", 1)).await;
    assert!(matches!(r, Err(ArbiterError::Conflict)), "{r:?}");

    // Renew: a new version, later than the first.
    let v2 = a.write(Some(&v1.version), &record("n1", 2)).await.unwrap();
    assert!(revision(&v2) > revision(&v1), "{v1:?} then {v2:?}");
    assert_eq!(a.read().await.unwrap().as_ref(), Some(&v2));

    // The old version is stale now; so is any made-up one.
    for stale in [
        v1.version.clone(),
        Version((revision(&v2) + 1).to_string()),
        Version(format!("{}-not-the-stored-version", v2.version.0)),
        Version("0".into()),
        Version(String::new()),
    ] {
        let r = a.write(Some(&stale), &record("n9", 9)).await;
        assert!(matches!(r, Err(ArbiterError::Conflict)), "{stale:?}: {r:?}");
    }
    // None of them landed.
    assert_eq!(a.read().await.unwrap().as_ref(), Some(&v2));
}

/// A second, independent instance (its own connection) takes over; the
/// first one's renewal on its old version then fails.
#[tokio::test]
async fn a_second_instance_takes_over() {
    let Some(cluster) = EtcdCluster::start(1).await else {
        return;
    };
    let a = arbiter(&cluster);
    let b = arbiter(&cluster);
    let mine = a.write(None, &record("a", 1)).await.unwrap();

    let seen = b.read().await.unwrap().expect("b sees a's record");
    assert_eq!(seen, mine);
    let taken = b.write(Some(&seen.version), &record("b", 2)).await.unwrap();

    let r = a.write(Some(&mine.version), &record("a", 2)).await;
    assert!(matches!(r, Err(ArbiterError::Conflict)), "{r:?}");
    assert_eq!(a.read().await.unwrap(), Some(taken.clone()));

    // And back: a re-reads and takes it on b's version.
    let back = a
        .write(Some(&taken.version), &record("a", 3))
        .await
        .unwrap();
    assert_eq!(b.read().await.unwrap(), Some(back));
}

const RACERS: usize = 8;
const ROUNDS: usize = 400;

/// Eight arbiters, each with its own connection, on one key.
fn racers(cluster: &EtcdCluster) -> Vec<Arc<EtcdArbiter>> {
    (0..RACERS).map(|_| Arc::new(arbiter(cluster))).collect()
}

/// Start every racer's write at once; the winners, and which one each is.
async fn race(
    racers: &[Arc<EtcdArbiter>],
    expected: Option<&Version>,
    round: usize,
) -> Vec<(usize, Stored)> {
    let start = Arc::new(tokio::sync::Barrier::new(racers.len()));
    let tasks: Vec<_> = racers
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let (a, start, expected) = (a.clone(), start.clone(), expected.cloned());
            tokio::spawn(async move {
                let rec = record(&format!("racer-{i}"), round as u64);
                start.wait().await;
                (i, a.write(expected.as_ref(), &rec).await)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (i, Ok(s)) => winners.push((i, s)),
            (_, Err(ArbiterError::Conflict)) => {}
            (i, Err(e)) => panic!("round {round}: racer {i} failed otherwise: {e}"),
        }
    }
    winners
}

/// 400 rounds of eight independent clients racing `write(None)` on a key
/// that is absent (deleted between rounds): exactly one wins each time, and
/// the record then stored is the winner's, at the winner's version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_acquirers_race_for_an_absent_key_exactly_one_wins() {
    let Some(cluster) = EtcdCluster::start(1).await else {
        return;
    };
    let racers = racers(&cluster);
    let observer = arbiter(&cluster);
    let mut raw = cluster.raw_client().await;
    let started = Instant::now();
    let mut wins = [0usize; RACERS];
    let mut last_revision = 0;
    for round in 0..ROUNDS {
        raw.delete(KEY, None).await.unwrap();
        let winners = race(&racers, None, round).await;
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let (i, won) = &winners[0];
        wins[*i] += 1;
        assert_eq!(won.record, record(&format!("racer-{i}"), round as u64));
        assert_eq!(observer.read().await.unwrap().as_ref(), Some(won));
        assert!(revision(won) > last_revision, "round {round}");
        last_revision = revision(won);
    }
    eprintln!(
        "{ROUNDS} rounds of {RACERS} acquirers in {:?}; wins per racer {wins:?}",
        started.elapsed()
    );
}

/// 400 rounds of eight clients that all read the same version racing to
/// replace it: exactly one wins each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_writers_race_from_the_same_version_exactly_one_wins() {
    let Some(cluster) = EtcdCluster::start(1).await else {
        return;
    };
    let racers = racers(&cluster);
    let started = Instant::now();
    let mut current = racers[0].write(None, &record("seed", 0)).await.unwrap();
    let mut wins = [0usize; RACERS];
    for round in 1..=ROUNDS {
        for a in &racers {
            assert_eq!(a.read().await.unwrap().as_ref(), Some(&current));
        }
        let winners = race(&racers, Some(&current.version), round).await;
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let (i, won) = winners.into_iter().next().unwrap();
        wins[i] += 1;
        assert!(revision(&won) > revision(&current), "round {round}");
        current = won;
    }
    eprintln!(
        "{ROUNDS} rounds of {RACERS} writers in {:?}; wins per racer {wins:?}",
        started.elapsed()
    );
}

/// The server killed: reads and writes fail as Unavailable or Timeout
/// within the timeout. Restarted on the same data: the same instance
/// reconnects, finds its record, and renews it.
#[tokio::test]
async fn server_killed_fails_within_the_timeout_and_recovers() {
    let Some(mut cluster) = EtcdCluster::start(1).await else {
        return;
    };
    let a = timed_arbiter(cluster.endpoints(), TIMEOUT);
    let before = a.write(None, &record("n1", 1)).await.unwrap();

    cluster.kill(0);
    assert_all_unreachable("server killed", &a, TIMEOUT, &before.version).await;

    cluster.restart(0).await;
    // Nothing reached a dead server: the record is exactly as it was.
    assert_eq!(a.read().await.unwrap(), Some(before.clone()));
    assert_recovers(&a, &before, &before.record).await;
}

/// The server frozen (SIGSTOP: the socket accepts, nothing answers): every
/// call is a Timeout within the timeout. Thawed: the same instance works.
#[tokio::test]
async fn frozen_server_times_out_then_recovers() {
    let Some(cluster) = EtcdCluster::start(1).await else {
        return;
    };
    let a = timed_arbiter(cluster.endpoints(), TIMEOUT);
    let before = a.write(None, &record("n1", 1)).await.unwrap();

    cluster.pause(0);
    for what in ["read", "write"] {
        let started = Instant::now();
        let r = match what {
            "read" => a.read().await.map(|_| ()),
            _ => a
                .write(Some(&before.version), &record("n1", 2))
                .await
                .map(|_| ()),
        };
        let took = started.elapsed();
        assert!(
            matches!(r, Err(ArbiterError::Timeout { timeout, .. }) if timeout == TIMEOUT),
            "{what}, server frozen: {r:?}"
        );
        assert!(
            took >= TIMEOUT - Duration::from_millis(50),
            "{what}: {took:?}"
        );
        assert!(took <= TIMEOUT + SLACK, "{what}: {took:?}");
        eprintln!("{what}, server frozen: Timeout after {took:?}");
    }

    cluster.resume(0);
    // The frozen write may have been queued and applied after the thaw,
    // so the record is either the old one or ours — never another.
    assert_recovers(&a, &before, &record("n1", 2)).await;
}

/// A value under the key that is not a lease record is Corrupt, and the
/// arbiter never writes over it.
#[tokio::test]
async fn foreign_value_is_corrupt_and_never_overwritten() {
    let Some(cluster) = EtcdCluster::start(1).await else {
        return;
    };
    let a = arbiter(&cluster);
    let mut raw = cluster.raw_client().await;
    for foreign in [
        &b"not json at all"[..],
        br#"{"holder": 7}"#,
        br#"["a", "list"]"#,
        b"",
    ] {
        raw.put(KEY, foreign, None).await.unwrap();
        let stored_rev = raw.get(KEY, None).await.unwrap().kvs()[0].mod_revision();

        let r = a.read().await;
        assert!(
            matches!(r, Err(ArbiterError::Corrupt { .. })),
            "{:?}: {r:?}",
            String::from_utf8_lossy(foreign)
        );
        let r = a.write(None, &record("n1", 1)).await;
        assert!(matches!(r, Err(ArbiterError::Conflict)), "{r:?}");
        let r = a.write(Some(&Version("0".into())), &record("n1", 1)).await;
        assert!(matches!(r, Err(ArbiterError::Conflict)), "{r:?}");

        let kv = raw.get(KEY, None).await.unwrap();
        assert_eq!(kv.kvs()[0].value(), foreign, "overwritten");
        assert_eq!(kv.kvs()[0].mod_revision(), stored_rev, "written again");
    }
}

/// `hadr arbiter check` passes on etcd, twice in a row, touching only the
/// probe key.
#[tokio::test]
async fn check_passes_and_leaves_the_lease_alone() {
    let Some(cluster) = EtcdCluster::start(1).await else {
        return;
    };
    let a = arbiter(&cluster);
    let first = hadr_arbiter::check(&a).await.unwrap();
    assert_eq!(first.current, None);
    assert!(first.info.stateful);
    assert_eq!(a.read().await.unwrap(), None, "check wrote the real key");

    let held = a.write(None, &record("n1", 1)).await.unwrap();
    let second = hadr_arbiter::check(&a).await.unwrap();
    assert_eq!(second.current, Some(held.clone()));
    assert_eq!(a.read().await.unwrap(), Some(held));
    eprintln!(
        "check: conditional write round trip {:?}",
        second.write_round_trip
    );

    let mut raw = cluster.raw_client().await;
    let probe_key = format!("{KEY}.check");
    assert_eq!(raw.get(probe_key, None).await.unwrap().kvs().len(), 1);
}

/// A three-member cluster (what three-node hadr clusters use): the arbiter,
/// given all three endpoints, works with one member killed — the leader, and
/// the member it was talking to — and fails, within the timeout, with two
/// killed. One brought back restores the quorum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_member_cluster_works_with_two_fails_with_one() {
    let Some(mut cluster) = EtcdCluster::start(3).await else {
        return;
    };
    // The default bound, as a hadr node would have it.
    let timeout = hadr_arbiter::etcd::DEFAULT_TIMEOUT;
    // The leader first: it is the member the arbiter talks to.
    let leader = cluster.leader().await;
    let a = timed_arbiter(cluster.endpoints_from(leader), timeout);
    let v1 = a.write(None, &record("n1", 1)).await.unwrap();

    // One member down — the leader: 2 of 3 elect another and are a quorum.
    cluster.kill(leader);
    let started = Instant::now();
    let seen = read_when_ready(&a, Duration::from_secs(15)).await;
    eprintln!(
        "answering again {:?} after the leader was killed",
        started.elapsed()
    );
    assert_eq!(seen.as_ref(), Some(&v1));
    let v2 = a.write(Some(&v1.version), &record("n1", 2)).await.unwrap();
    // Every call now, none sent to the dead member.
    let mut current = v2;
    for token in 3..23 {
        assert_eq!(a.read().await.unwrap().as_ref(), Some(&current));
        current = a
            .write(Some(&current.version), &record("n1", token))
            .await
            .unwrap();
    }
    // A fresh instance whose first member is the dead one, and whose first
    // call is a write: the refused connection proves the write was never
    // sent, so the same call goes on to the next member.
    let b = timed_arbiter(cluster.endpoints_from(leader), timeout);
    current = b
        .write(Some(&current.version), &record("n1", 23))
        .await
        .unwrap();
    assert_eq!(a.read().await.unwrap().as_ref(), Some(&current));

    // Two down: no quorum, nothing is decided.
    let second = (leader + 1) % 3;
    cluster.kill(second);
    for _ in 0..3 {
        assert_all_unreachable("1 of 3 left", &a, timeout, &current.version).await;
    }

    // One back: a quorum again. A write that timed out may have been taken
    // in by the last member and committed now: the record is ours or that.
    cluster.restart(second).await;
    assert_recovers(&a, &current, &record("n2", 99)).await;
}
