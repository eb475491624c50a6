//! A primary's standbys: one pair state machine per configured standby, and
//! the sessions whose commit is durable locally and now waits until every
//! pair lets it go (`hadr_ha::commit_wait`: its sync mode in PEER, or the
//! peer window after a loss).

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;

use hadr_ha::commit_wait::{may_release, may_release_guarded, remote_applied};
use hadr_ha::{Action, Event, Pair, PairConfig};

/// One configured standby.
#[derive(Clone, Debug, Serialize)]
pub struct Slot {
    /// Its replication address, as in `hadr_target_list`.
    pub address: String,
    /// The principal standby (first in the list) uses the primary's sync mode;
    /// auxiliaries are always SUPERASYNC.
    pub principal: bool,
    /// The pair state machine.
    pub pair: Pair,
    /// The reason of the last disconnect, for status.
    pub last_error: Option<String>,
    /// Where its clients reach it (its [`hadr_protocol::Message::Announce`]),
    /// once it has connected during this primary's run.
    pub client_address: Option<String>,
}

#[derive(Default)]
struct Inner {
    slots: Vec<Slot>,
    waiters: BTreeMap<u64, u64>,
    next_waiter: u64,
    wait_accumulated_us: u64,
    wait_count: u64,
    /// Waits per bucket of [`WAIT_BUCKETS_US`] (the last: longer than all).
    wait_buckets: [u64; WAIT_BUCKETS_US.len() + 1],
    /// Set when this node may no longer release commits (fenced, shutting down).
    closed: Option<String>,
    /// Per slot, the connection that owns it (the newest to connect); 0: none.
    owners: BTreeMap<usize, u64>,
    next_owner: u64,
}

/// Upper bounds (µs) of the commit-wait histogram's buckets: from a loopback
/// ack (~0.1 ms) to a peer window's worth.
pub const WAIT_BUCKETS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 500_000, 2_000_000, 10_000_000,
];

/// Commit-wait statistics (DB2's LOG_HADR_WAIT_*).
#[derive(Clone, Debug, Default, Serialize)]
pub struct WaitStats {
    /// How long the oldest waiting commit has waited (µs; 0 = none waits).
    pub current_us: u64,
    /// Total wait time (µs).
    pub accumulated_us: u64,
    /// Commits that waited.
    pub count: u64,
    /// Waits per bucket of [`WAIT_BUCKETS_US`], not cumulative; the last
    /// counts the waits longer than every bound.
    pub buckets: Vec<u64>,
}

/// Why a commit could not be released.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AckWaitError {
    /// The standby did not confirm in time; the outcome is unknown to the client.
    #[error("the standby did not confirm in time")]
    Timeout,
    /// Releasing was closed (the node was fenced or stops); the commit must
    /// not be acknowledged from here.
    #[error("{0}")]
    Closed(String),
}

/// All pairs of a primary, and the waiting sessions.
pub struct Standbys {
    inner: Mutex<Inner>,
    cv: Condvar,
    /// Woken with the condvar, for async waiters (a hand-over waiting for an ack).
    acks: tokio::sync::Notify,
    /// Under automatic failover: until when (`mono_micros`) this primary may
    /// release commits its principal standby lacks. None: no arbiter.
    alone_until: Option<std::sync::atomic::AtomicU64>,
    /// Set with the reason once this node stops being a primary: every
    /// sender then refuses its standby (`RefuseCode::NotPrimary`) and ends.
    retired: tokio::sync::watch::Sender<Option<String>>,
    /// Bumped whenever a standby's client address becomes known or changes:
    /// the senders then send the new topology to their standbys.
    topology: tokio::sync::watch::Sender<u64>,
}

impl Standbys {
    /// The standbys of `hadr_target_list`.
    pub fn new(targets: Vec<(String, PairConfig)>, now: u64) -> Standbys {
        let slots = targets
            .into_iter()
            .enumerate()
            .map(|(i, (address, cfg))| Slot {
                address,
                principal: i == 0,
                pair: Pair::new(cfg, now),
                last_error: None,
                client_address: None,
            })
            .collect();
        Standbys {
            inner: Mutex::new(Inner {
                slots,
                ..Default::default()
            }),
            cv: Condvar::new(),
            acks: tokio::sync::Notify::new(),
            alone_until: None,
            retired: tokio::sync::watch::channel(None).0,
            topology: tokio::sync::watch::channel(0).0,
        }
    }

    /// A standby announced where its clients reach it.
    pub fn set_client_address(&self, slot: usize, address: String) {
        let changed = {
            let mut g = self.lock();
            match g.slots.get_mut(slot) {
                Some(s) if s.client_address.as_deref() != Some(address.as_str()) => {
                    s.client_address = Some(address);
                    true
                }
                _ => false,
            }
        };
        if changed {
            self.topology.send_modify(|g| *g += 1);
        }
    }

    /// The standbys' known client addresses, in `hadr_target_list` order.
    pub fn client_addresses(&self) -> Vec<String> {
        self.lock()
            .slots
            .iter()
            .filter_map(|s| s.client_address.clone())
            .collect()
    }

    /// A number that changes whenever [`Standbys::client_addresses`] does.
    pub fn topology_generation(&self) -> u64 {
        *self.topology.borrow()
    }

    /// Changes whenever [`Standbys::client_addresses`] does.
    pub fn topology_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.topology.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Index of the slot for a standby address.
    pub fn slot_for(&self, address: &str) -> Option<usize> {
        self.lock().slots.iter().position(|s| s.address == address)
    }

    /// Feed an event to one pair; returns its actions (waking commits is done here).
    pub fn step(&self, slot: usize, ev: Event) -> Vec<Action> {
        let mut g = self.lock();
        let oldest = g.waiters.values().min().copied();
        let Some(s) = g.slots.get_mut(slot) else {
            return Vec::new();
        };
        let ev = match ev {
            Event::Tick { now, .. } => Event::Tick {
                now,
                oldest_commit_wait_since: oldest,
            },
            other => other,
        };
        let actions = s.pair.step(ev);
        for a in &actions {
            if let Action::Disconnect { reason } = a {
                s.last_error = Some(reason.to_string());
            }
        }
        if actions.iter().any(|a| matches!(a, Action::WakeCommits)) {
            self.cv.notify_all();
            self.acks.notify_waiters();
        }
        actions
    }

    /// Resolves at the next ack or state change (create it, then check, then await).
    pub fn acked(&self) -> tokio::sync::futures::Notified<'_> {
        self.acks.notified()
    }

    /// A connection for `slot` begins: it owns the slot from now on, and
    /// any older connection of the same standby stops counting. A standby
    /// that retried while this node was frozen (SIGSTOP) leaves dead
    /// connections in the listen backlog, accepted all at once on resume:
    /// without an owner, the loss of a dead one marked the slot lost while
    /// the live one went on feeding the standby, which then never got back
    /// to PEER.
    pub fn claim(&self, slot: usize) -> u64 {
        let mut g = self.lock();
        g.next_owner += 1;
        let id = g.next_owner;
        g.owners.insert(slot, id);
        id
    }

    /// Whether connection `id` still owns `slot`.
    pub fn owns(&self, slot: usize, id: u64) -> bool {
        self.lock().owners.get(&slot) == Some(&id)
    }

    /// Record why a connection ended.
    pub fn note_error(&self, slot: usize, reason: String) {
        if let Some(s) = self.lock().slots.get_mut(slot) {
            s.last_error = Some(reason);
        }
    }

    /// Release no more commits: every waiting and future wait fails with
    /// [`AckWaitError::Closed`]. A fenced primary must never acknowledge a
    /// commit its successor may not have, even when its peer window ends.
    ///
    /// The senders hear of it too ([`Standbys::retired`]): a node that no
    /// longer releases commits is no longer a primary its standbys may follow.
    pub fn close(&self, reason: String) {
        let mut g = self.lock();
        if g.closed.is_none() {
            g.closed = Some(reason.clone());
        }
        self.cv.notify_all();
        drop(g);
        self.retired.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// Why this node stopped being a primary, once it has ([`Standbys::close`]).
    pub fn retired(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.retired.subscribe()
    }

    /// Guard commits by the arbiter's lease (automatic failover): until
    /// [`Standbys::set_alone_until`] says otherwise, a commit the principal
    /// standby may lack waits.
    pub fn guarded(mut self) -> Standbys {
        self.alone_until = Some(std::sync::atomic::AtomicU64::new(0));
        self
    }

    /// Let commits the principal standby lacks return until `until`
    /// (`mono_micros`; 0: not at all), and wake the waiting ones.
    pub fn set_alone_until(&self, until: u64) {
        if let Some(a) = &self.alone_until {
            a.store(until, std::sync::atomic::Ordering::SeqCst);
            let _g = self.lock();
            self.cv.notify_all();
        }
    }

    fn open(&self, g: &Inner, lsn: u64) -> bool {
        let pairs = g.slots.iter().map(|s| &s.pair);
        match &self.alone_until {
            None => may_release(pairs, lsn),
            Some(until) => {
                let alone = crate::mono_micros() < until.load(std::sync::atomic::Ordering::SeqCst);
                may_release_guarded(pairs, lsn, alone)
            }
        }
    }

    /// Block until the commit whose record ends at `lsn` may return, or `timeout`.
    pub fn wait_commit(
        &self,
        lsn: u64,
        timeout: Duration,
        now_us: impl Fn() -> u64,
    ) -> Result<(), AckWaitError> {
        let mut g = self.lock();
        if let Some(r) = &g.closed {
            return Err(AckWaitError::Closed(r.clone()));
        }
        if self.open(&g, lsn) {
            return Ok(());
        }
        let id = g.next_waiter;
        g.next_waiter += 1;
        let start = now_us();
        g.waiters.insert(id, start);
        let deadline = Instant::now() + timeout;
        let result = loop {
            if let Some(r) = &g.closed {
                break Err(AckWaitError::Closed(r.clone()));
            }
            if self.open(&g, lsn) {
                break Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Err(AckWaitError::Timeout);
            }
            g = self
                .cv
                .wait_timeout(g, left.min(Duration::from_millis(100)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        };
        g.waiters.remove(&id);
        let waited = now_us().saturating_sub(start);
        g.wait_count += 1;
        g.wait_accumulated_us += waited;
        let bucket = WAIT_BUCKETS_US
            .iter()
            .position(|b| waited <= *b)
            .unwrap_or(WAIT_BUCKETS_US.len());
        g.wait_buckets[bucket] += 1;
        result
    }

    /// Block until the principal standby has replayed up to `lsn` (a session's
    /// `remote_apply`), or it is not in PEER (then, as for every sync mode, it
    /// does not gate), or `timeout`.
    pub fn wait_replayed(&self, lsn: u64, timeout: Duration) -> Result<(), AckWaitError> {
        let deadline = Instant::now() + timeout;
        let mut g = self.lock();
        loop {
            if let Some(r) = &g.closed {
                return Err(AckWaitError::Closed(r.clone()));
            }
            if remote_applied(g.slots.first().map(|s| &s.pair), lsn) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(AckWaitError::Timeout);
            }
            g = self
                .cv
                .wait_timeout(g, left.min(Duration::from_millis(100)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Whether the principal standby (the one commits wait for) is in PEER.
    pub fn principal_in_peer(&self) -> bool {
        self.lock()
            .slots
            .iter()
            .any(|s| s.principal && s.pair.state == hadr_ha::PairState::Peer)
    }

    /// A copy of every slot, for status.
    pub fn slots(&self) -> Vec<Slot> {
        self.lock().slots.clone()
    }

    /// Commit-wait statistics at `now`.
    pub fn wait_stats(&self, now: u64) -> WaitStats {
        let g = self.lock();
        WaitStats {
            current_us: g
                .waiters
                .values()
                .min()
                .map(|t| now.saturating_sub(*t))
                .unwrap_or(0),
            accumulated_us: g.wait_accumulated_us,
            count: g.wait_count,
            buckets: g.wait_buckets.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_retires_the_senders_once_with_the_first_reason() {
        let cfg = PairConfig {
            mode: hadr_ha::SyncMode::Nearsync,
            timeout_us: 1_000_000,
            peer_window_us: 0,
            peer_wait_limit_us: 0,
        };
        let s = Standbys::new(vec![("b".into(), cfg)], 0);
        let mut retired = s.retired();
        assert_eq!(*retired.borrow_and_update(), None);
        s.close("superseded by epoch 4".into());
        s.close("the server is shutting down".into());
        assert!(retired.has_changed().unwrap_or(false));
        assert_eq!(
            retired.borrow_and_update().as_deref(),
            Some("superseded by epoch 4")
        );
        // Commits are refused with the same reason.
        assert_eq!(
            s.wait_commit(10, Duration::from_millis(1), || 0),
            Err(AckWaitError::Closed("superseded by epoch 4".into()))
        );
    }

    #[test]
    fn the_newest_connection_of_a_standby_owns_its_slot() {
        let cfg = PairConfig {
            mode: hadr_ha::SyncMode::Nearsync,
            timeout_us: 1_000_000,
            peer_window_us: 0,
            peer_wait_limit_us: 0,
        };
        let s = Standbys::new(vec![("b".into(), cfg), ("c".into(), cfg)], 0);
        let stale = s.claim(0);
        let live = s.claim(0);
        let other = s.claim(1);
        assert!(!s.owns(0, stale), "an older connection still owns the slot");
        assert!(s.owns(0, live));
        assert!(s.owns(1, other) && !s.owns(1, live));
    }
}
