//! The standby's side: connect to the primary, persist the records it sends
//! into our own log, acknowledge received / flushed / replayed positions, and
//! replay durable records into the database.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hadr_engine::Engine;
use hadr_ha::rejoin::{rejoin, Rejoin};
use hadr_ha::{ConnectStatus, StandbyLink};
use hadr_protocol::{check_hello, Hello, Message, PeerRole, Refuse, RefuseCode};
use serde::Serialize;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::link::{DialError, Link};
use crate::now_micros;
use crate::wire::WireError;

/// Most received-but-unreplayed batches remembered for the replay lag. Past
/// it, new batches fold into the newest entry: the lag stays exact (it is
/// the oldest entry's age) and memory stays bounded even when replay stops.
pub const PENDING_MAX: usize = 4096;

/// What a standby shows in status.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StandbyStatus {
    /// The link to the primary (hadr-ha's rules for it).
    #[serde(flatten)]
    pub link: StandbyLink,
    /// Last error (refusal, lost connection).
    pub last_error: Option<String>,
    /// Commit time (µs) of the newest replayed record.
    pub replay_log_time: u64,
    /// Received batches not yet replayed: (end LSN, when received µs).
    #[serde(skip)]
    pending: std::collections::VecDeque<(u64, u64)>,
    /// The topology the primary last sent (docs/clients.md §Topology); kept
    /// when the link drops, as the best knowledge of where clients go.
    #[serde(skip)]
    pub topology: Option<hadr_protocol::Topology>,
    /// Bumped whenever `topology` changes, so sessions can tell cheaply.
    #[serde(skip)]
    pub topology_gen: u64,
}

impl StandbyStatus {
    /// How stale reads here may be (µs): how long the oldest received but
    /// unreplayed batch has waited, or, when disconnected, the time since
    /// anything arrived from the primary.
    pub fn replay_lag_us(&self, now: u64) -> u64 {
        if self.link.connect_status != ConnectStatus::Connected {
            return now.saturating_sub(self.link.last_receive);
        }
        self.pending
            .front()
            .map(|(_, t)| now.saturating_sub(*t))
            .unwrap_or(0)
    }

    /// Records up to `end` arrived at `now` and wait for replay.
    pub fn received(&mut self, end: u64, now: u64) {
        self.link.received(end, now);
        let full = self.pending.len() >= PENDING_MAX;
        match self.pending.back_mut() {
            Some(last) if full => last.0 = last.0.max(end),
            _ => self.pending.push_back((end, now)),
        }
    }

    /// Replay reached `lsn`.
    pub fn replayed(&mut self, lsn: u64) {
        while self.pending.front().is_some_and(|(end, _)| *end <= lsn) {
            self.pending.pop_front();
        }
    }

    /// Batches waiting for replay (bounded by [`PENDING_MAX`]).
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

/// What a standby's tasks share.
pub struct StandbyCtx {
    /// The database and log.
    pub engine: Arc<Engine>,
    /// Candidate primaries (`hadr_target_list` on the standby).
    pub targets: Vec<String>,
    /// Our replication address, as the primary's target list names it.
    pub address: String,
    /// Where clients reach this node (`client_address`), announced to the primary.
    pub client_address: String,
    /// `hadr_timeout`: for connecting and sending.
    pub timeout: Duration,
    /// Mutual TLS for every replication connection, both ways (None: plain TCP).
    pub tls: Option<Arc<crate::link::LinkTls>>,
    /// Silence from the primary longer than this ends the link. It is
    /// `hadr_timeout`, or shorter under automatic failover (see
    /// `hadr_server::config::Config::link_silence`): the standby then stops
    /// acknowledging before it may take the lease over, so a shorter wait
    /// costs no safety and a crashed host is noticed sooner.
    pub silence: Duration,
    /// Status for /status.
    pub status: Arc<Mutex<StandbyStatus>>,
    /// Flushed LSN, updated by the log's flusher.
    pub flushed: watch::Receiver<u64>,
    /// Replayed LSN, updated by the replay thread.
    pub replayed: watch::Receiver<u64>,
    /// Called when the primary no longer has the log this standby needs
    /// (with the primary's address); the node may then re-clone itself.
    pub on_needs_clone: Arc<dyn Fn(String) + Send + Sync>,
    /// Called when this node's log went past the point where the primary's
    /// history departs from it (with the primary's address): the node then
    /// rewinds (or re-clones) itself.
    pub on_diverged: Arc<dyn Fn(String) + Send + Sync>,
    /// Bumped to ask the primary for a graceful takeover.
    pub takeover: watch::Receiver<u64>,
    /// Called with the old primary's final LSN once it handed over.
    pub on_takeover_ready: Arc<dyn Fn(u64) + Send + Sync>,
    /// Called when the primary refused a graceful takeover (with why).
    pub on_takeover_refused: Arc<dyn Fn(String) + Send + Sync>,
    /// The primary the cluster names (the arbiter record's holder), kept
    /// up to date by automatic failover's driver; None without an arbiter.
    pub leader: watch::Receiver<Option<Leader>>,
}

/// The primary the cluster names: the arbiter record's holder (its
/// `hadr_local`) and its epoch. The topology comes from the cluster, not from
/// this node's `hadr_target_list` alone: a standby tries the leader first,
/// and never follows a primary of an epoch older than the leader's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leader {
    /// Its replication address.
    pub address: String,
    /// The epoch it holds the record in.
    pub epoch: u64,
}

/// The addresses to try, in order: the leader, then `targets` (never
/// `me`, never one twice).
fn candidates(me: &str, targets: &[String], leader: Option<&Leader>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in leader
        .map(|l| l.address.clone())
        .into_iter()
        .chain(targets.iter().cloned())
    {
        if t != me && !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// Why `target`, a primary of `epoch`, cannot feed this standby: the
/// cluster names another primary in a newer epoch.
fn superseded(leader: Option<&Leader>, target: &str, epoch: u64) -> Option<String> {
    let l = leader?;
    (l.epoch > epoch && l.address != target).then(|| {
        format!(
            "the arbiter names {} primary in epoch {}; {target} is of epoch {epoch} and can no longer feed this standby",
            l.address, l.epoch
        )
    })
}

impl StandbyCtx {
    fn superseded(&self, target: &str, epoch: u64) -> Option<String> {
        superseded(self.leader.borrow().as_ref(), target, epoch)
    }
}

/// Resolves when the leader changes; never, once nobody can change it.
async fn leader_changed(leader: &mut watch::Receiver<Option<Leader>>) {
    if leader.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl StandbyCtx {
    fn status(&self) -> std::sync::MutexGuard<'_, StandbyStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn hello(&self) -> Hello {
        crate::hello(&self.engine, PeerRole::Standby, &self.address)
    }
}

/// Keep a connection to the primary, reconnecting every second (at once
/// when the leader changes), until aborted.
pub async fn run(ctx: Arc<StandbyCtx>) {
    ctx.status().link.lost(now_micros());
    let mut leader = ctx.leader.clone();
    loop {
        let candidates = candidates(
            &ctx.address,
            &ctx.targets,
            leader.borrow_and_update().as_ref(),
        );
        for target in candidates {
            let link = match crate::link::dial(&target, ctx.tls.as_deref(), ctx.timeout).await {
                Ok(link) => link,
                Err(e) => {
                    // A TLS failure is a configuration to fix: say so in
                    // the log too, once per change rather than every second.
                    let loud = matches!(e, DialError::Handshake { .. } | DialError::BadName { .. });
                    let e = e.to_string();
                    let mut st = ctx.status();
                    if loud && st.last_error.as_deref() != Some(e.as_str()) {
                        warn!(primary = %target, error = %e, "cannot connect to the primary");
                    }
                    st.last_error = Some(e);
                    continue;
                }
            };
            let r = follow(&ctx, &target, link).await;
            {
                let mut st = ctx.status();
                st.link.lost(now_micros());
                if let Err(e) = &r {
                    st.last_error = Some(e.to_string());
                }
            }
            if let Err(e) = r {
                match &e {
                    FollowError::Diverged(_)
                    | FollowError::Refused(Refuse {
                        code: RefuseCode::NeedsRewind,
                        ..
                    }) => (ctx.on_diverged)(target.clone()),
                    FollowError::Refused(Refuse {
                        code: RefuseCode::NeedsClone,
                        ..
                    }) => (ctx.on_needs_clone)(target.clone()),
                    FollowError::Refused(Refuse {
                        code: RefuseCode::TakeoverRefused,
                        reason,
                    }) => (ctx.on_takeover_refused)(reason.clone()),
                    _ => {}
                }
                warn!(primary = %target, error = %e, "replication from primary ended");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = leader_changed(&mut leader) => {}
        }
    }
}

/// Why following a primary stopped.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The wire failed.
    #[error("{0}")]
    Wire(#[from] WireError),
    /// The primary refused us.
    #[error("refused by the primary: {}", .0.reason)]
    Refused(Refuse),
    /// The peer is not a primary or not compatible.
    #[error("{0}")]
    Incompatible(String),
    /// Our log could not take the records.
    #[error("cannot persist records: {0}")]
    Log(String),
    /// Our log holds records the primary never had.
    #[error("{0}")]
    Diverged(String),
    /// The cluster names a primary of a newer epoch.
    #[error("{0}")]
    Superseded(String),
}

/// Decide with [`rejoin`] whether to follow this primary: as is, after
/// adopting its newer epoch history, or not at all (it was superseded, or our
/// log has records it never had and must be rewound first).
fn adopt_epochs(
    ctx: &StandbyCtx,
    target: &str,
    ours: &Hello,
    theirs: &Hello,
) -> Result<(), FollowError> {
    match rejoin(
        ours.epoch,
        &ours.epoch_history,
        ours.lsn,
        theirs.epoch,
        &theirs.epoch_history,
    ) {
        Rejoin::Follow => Ok(()),
        Rejoin::Superseded => Err(FollowError::Incompatible(format!(
            "{target} is a primary of epoch {}, older than this node's epoch {}: it was superseded; not following it",
            theirs.epoch, ours.epoch
        ))),
        Rejoin::Rewind { divergence } => Err(FollowError::Diverged(format!(
            "this node's log runs to LSN {} past LSN {divergence}, where {target}'s history departs from ours (epoch {}): it diverged; needs rewind",
            ours.lsn, theirs.epoch
        ))),
        Rejoin::Adopt => {
            let history = theirs.epoch_history.clone();
            debug_assert!(hadr_ha::epoch::history_is_ordered(&history));
            let epoch = theirs.epoch;
            ctx.engine
                .update_control(|c| {
                    c.highest_seen_epoch = c.highest_seen_epoch.max(epoch);
                    c.epoch = epoch;
                    c.epoch_history = history;
                })
                .map_err(|e| FollowError::Log(e.to_string()))?;
            info!(epoch, primary = %target, "adopted the primary's newer epoch");
            Ok(())
        }
    }
}

/// Answer peers on the standby's replication port: a primary probing for
/// its standby (the start-up rule) or for a newer epoch (fencing) learns
/// this node's role and epoch from its Hello. Runs until aborted.
pub async fn answer_probes(ctx: Arc<StandbyCtx>, listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let link = match crate::link::accept(stream, ctx.tls.as_deref(), ctx.timeout).await {
                Ok(link) => link,
                Err(e) => {
                    warn!(%peer, error = %e, "replication peer refused");
                    return;
                }
            };
            let (mut reader, mut writer) = (link.reader, link.writer);
            let Ok(Message::Hello(theirs)) = reader.next(ctx.timeout).await else {
                return;
            };
            let ours = ctx.hello();
            let answer = match check_hello(&ours, &theirs) {
                Ok(()) if theirs.role == PeerRole::Cloner => Message::Refuse(Refuse::new(
                    RefuseCode::WrongRole,
                    format!(
                        "{} is a standby; clone or rewind from the primary",
                        ctx.address
                    ),
                )),
                Ok(()) => Message::Hello(ours),
                Err(mismatch) => Message::Refuse(mismatch.refuse()),
            };
            let _ = writer.send(&answer, ctx.timeout).await;
        });
    }
}

async fn follow(ctx: &Arc<StandbyCtx>, target: &str, link: Link) -> Result<(), FollowError> {
    let (mut reader, mut writer) = (link.reader, link.writer);
    let ours = ctx.hello();
    // hadr-ha's promise rule: forget the old peer-window promise before the
    // primary can see this hello.
    ctx.status().link.hello_sent();
    writer
        .send(&Message::Hello(ours.clone()), ctx.timeout)
        .await?;
    let theirs = match reader.next(ctx.timeout).await? {
        Message::Hello(h) => h,
        Message::Refuse(r) => return Err(FollowError::Refused(r)),
        _ => return Err(FollowError::Incompatible("expected Hello".into())),
    };
    check_hello(&ours, &theirs).map_err(|e| FollowError::Incompatible(e.to_string()))?;
    if theirs.role != PeerRole::Primary {
        return Err(FollowError::Incompatible(format!(
            "{target} is not a primary"
        )));
    }
    if let Some(why) = ctx.superseded(target, theirs.epoch) {
        return Err(FollowError::Superseded(why));
    }
    adopt_epochs(ctx, target, &ours, &theirs)?;
    // Where this standby's clients reach it, for the primary's topology.
    writer
        .send(
            &Message::Announce {
                client_address: ctx.client_address.clone(),
            },
            ctx.timeout,
        )
        .await?;
    info!(primary = %target, from_lsn = ours.lsn, "following primary");
    {
        let mut st = ctx.status();
        st.link.connected(target, theirs.lsn, now_micros());
        st.last_error = None;
    }
    let log = ctx.engine.log().clone();
    let mut flushed = ctx.flushed.clone();
    let mut replayed = ctx.replayed.clone();
    // Four acks per silence period, whatever ends the link sooner.
    let heartbeat = (ctx.silence / 4).max(Duration::from_millis(50));
    let mut tick = tokio::time::interval(heartbeat);
    let mut takeover = ctx.takeover.clone();
    takeover.borrow_and_update();
    let mut leader = ctx.leader.clone();
    leader.borrow_and_update();
    let ack = |ctx: &StandbyCtx| Message::Ack {
        received: log.end_lsn(),
        flushed: log.flushed_lsn(),
        replayed: ctx.engine.applied_lsn(),
    };
    // The read below restarts (and with it its own timeout) whenever
    // another branch fires, and the tick fires every timeout/4: only this
    // deadline, moved when something arrives, finds a silent primary (a
    // black-holed or frozen host sends no reset).
    let mut silent_at = tokio::time::Instant::now() + ctx.silence;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(silent_at) => {
                return Err(WireError::Timeout(ctx.silence).into());
            }
            m = reader.next(ctx.silence) => {
                let m = m?;
                silent_at = tokio::time::Instant::now() + ctx.silence;
                ctx.status().link.heard(now_micros());
                match m {
                    Message::Records { start_lsn, bytes } => {
                        let log2 = log.clone();
                        let end = tokio::task::spawn_blocking(move || log2.append_encoded(start_lsn, &bytes))
                            .await
                            .map_err(|e| FollowError::Log(e.to_string()))?
                            .map_err(|e| FollowError::Log(e.to_string()))?;
                        ctx.status().received(end, now_micros());
                        writer.send(&ack(ctx), ctx.timeout).await?;
                    }
                    Message::Heartbeat { end_lsn, peer_window_end_micros, .. } => {
                        ctx.status().link.heartbeat(end_lsn, peer_window_end_micros, now_micros());
                    }
                    Message::Refuse(r) => return Err(FollowError::Refused(r)),
                    Message::Topology(t) => {
                        let mut st = ctx.status();
                        if st.topology.as_ref() != Some(&t) {
                            st.topology = Some(t);
                            st.topology_gen += 1;
                        }
                    }
                    Message::TakeoverReady { end_lsn } => {
                        if log.end_lsn() != end_lsn {
                            return Err(FollowError::Incompatible(format!(
                                "takeover: the primary ended at LSN {end_lsn} but this log ends at {}", log.end_lsn()
                            )));
                        }
                        info!(end_lsn, "the primary handed over; promoting");
                        (ctx.on_takeover_ready)(end_lsn);
                        return Ok(());
                    }
                    _ => {}
                }
            }
            _ = leader_changed(&mut leader) => {
                if let Some(why) = ctx.superseded(target, theirs.epoch) {
                    return Err(FollowError::Superseded(why));
                }
            }
            r = takeover.changed() => {
                if r.is_ok() {
                    info!(primary = %target, "asking the primary to hand over (graceful takeover)");
                    writer.send(&Message::TakeoverRequest, ctx.timeout).await?;
                }
            }
            r = flushed.changed() => {
                if r.is_ok() {
                    writer.send(&ack(ctx), ctx.timeout).await?;
                }
            }
            r = replayed.changed() => {
                if r.is_ok() {
                    writer.send(&ack(ctx), ctx.timeout).await?;
                }
            }
            _ = tick.tick() => {
                writer.send(&ack(ctx), ctx.timeout).await?;
            }
        }
    }
}

/// Replay durable records into the database, many per transaction, until
/// `stop` is set. Runs on its own thread. Only flushed records are replayed:
/// the database must never get ahead of the standby's own durable log.
pub fn replay_loop(
    engine: Arc<Engine>,
    replayed: watch::Sender<u64>,
    status: Arc<Mutex<StandbyStatus>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    delay: Duration,
) {
    use std::sync::atomic::Ordering;
    let log = engine.log().clone();
    while !stop.load(Ordering::Relaxed) {
        let applied = engine.applied_lsn();
        let target = log.flushed_lsn();
        if target <= applied {
            let _ = log.wait_flushed(applied + 1, Duration::from_millis(100));
            continue;
        }
        let mut reader = match log.read_from(applied) {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, lsn = applied, "replay cannot read the log");
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        let mut records = Vec::new();
        let mut next = applied;
        let mut bytes = 0u64;
        let mut newest = 0u64;
        let horizon = now_micros().saturating_sub(delay.as_micros() as u64);
        while next < target && records.len() < 256 && bytes < 16 << 20 {
            let Some(Ok((_, rec))) = reader.next() else {
                break;
            };
            if !delay.is_zero() && rec.commit_time_micros > horizon {
                break;
            }
            bytes += rec.page_bytes();
            newest = rec.commit_time_micros;
            records.push(rec);
            // The reader now stands at the next record: the end of this one.
            next = reader.position();
        }
        if records.is_empty() {
            // Nothing old enough yet (replay delay), or a record being written.
            std::thread::sleep(Duration::from_millis(if delay.is_zero() { 5 } else { 50 }));
            continue;
        }
        match engine.replay(records, next) {
            Ok(()) => {
                replayed.send_replace(next);
                let mut st = status.lock().unwrap_or_else(|p| p.into_inner());
                st.replay_log_time = newest;
                st.replayed(next);
            }
            Err(e) => {
                // A replay error is fatal for DB2's standby; we stop replaying and say so loudly.
                tracing::error!(error = %e, lsn = applied, "replay failed; the standby stops replaying");
                status.lock().unwrap_or_else(|p| p.into_inner()).last_error =
                    Some(format!("replay failed at LSN {applied}: {e}"));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_goes_first_and_an_older_primary_cannot_feed_us() {
        let targets = vec!["a".to_string(), "b".to_string(), "me".to_string()];
        assert_eq!(candidates("me", &targets, None), vec!["a", "b"]);
        let b = Leader {
            address: "b".into(),
            epoch: 4,
        };
        assert_eq!(candidates("me", &targets, Some(&b)), vec!["b", "a"]);
        // A leader this node's list does not name is tried all the same.
        let d = Leader {
            address: "d".into(),
            epoch: 5,
        };
        assert_eq!(candidates("me", &targets, Some(&d)), vec!["d", "a", "b"]);
        // Never itself (a record it still holds from before it was fenced).
        let me = Leader {
            address: "me".into(),
            epoch: 3,
        };
        assert_eq!(candidates("me", &targets, Some(&me)), vec!["a", "b"]);
        assert!(superseded(Some(&b), "a", 3).is_some_and(|w| w.contains("epoch 4")));
        assert_eq!(superseded(Some(&b), "b", 4), None);
        assert_eq!(superseded(Some(&b), "a", 4), None);
        assert_eq!(superseded(None, "a", 1), None);
    }

    #[test]
    fn pending_stays_bounded_when_replay_stops_and_the_lag_stays_exact() {
        let mut st = StandbyStatus::default();
        st.link.connected("p", 0, 1);
        for i in 0..(PENDING_MAX as u64 * 10) {
            st.received(i + 1, 1_000 + i);
        }
        assert_eq!(st.pending_len(), PENDING_MAX);
        // The oldest batch still dates the lag.
        assert_eq!(st.replay_lag_us(2_000_000), 2_000_000 - 1_000);
        // Replay catching up to the end drains everything, folded entries included.
        st.replayed(PENDING_MAX as u64 * 10);
        assert_eq!(st.pending_len(), 0);
        assert_eq!(st.replay_lag_us(2_000_000), 0);
    }
}
