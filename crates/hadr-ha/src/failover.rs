//! Automatic failover through an arbiter (docs/failover.md): when a
//! standby promotes itself, and when a primary may acknowledge commits
//! alone. Pure: the driver reads and writes the arbiter, watches the
//! replication link and the clock, and feeds what it saw in here.
//!
//! The rules:
//! - **The arbiter is the only licence to write alone.** A standby promotes
//!   only after it has seen the arbiter's record unchanged for `ttl + margin`
//!   (the holder has stopped by then, see `lease`) and won it with a
//!   conditional write in an epoch above every epoch it knows.
//! - **Nothing acknowledged is lost.** It promotes only if it was in PEER
//!   (caught up) when its link to the primary dropped, the sync mode makes
//!   the primary wait for it (SYNC or NEARSYNC), and the record does not mark
//!   it out of sync. A primary that lost its standby writes that mark, from
//!   the LSN on, *before* it acknowledges a commit alone; the mark changes
//!   the record's version, so a standby's conditional take-over of the
//!   version it read fails if a mark was written since.
//! - **A healthy pair never demotes itself because the arbiter is down**:
//!   with its standby in PEER the primary goes on; the standby, connected,
//!   never promotes.
//! - **No ping-pong**: promotions are at least `min_promotion_interval`
//!   apart on a node, and nothing fails back by itself.

use serde::{Deserialize, Serialize};

use crate::epoch::next_epoch;
use crate::lease::{LeaseTiming, Watch};

/// The arbiter's record as the rules need it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Record {
    /// Its version (opaque).
    pub version: String,
    /// The holder, if any.
    pub holder: Option<String>,
    /// The holder's epoch.
    pub epoch: u64,
    /// Standbys marked out of sync, with the LSN each may lack from.
    pub out_of_sync: Vec<(String, u64)>,
    /// The lease timing its writer runs by (None: not stated, an older
    /// writer); a contender waits by the longer of it and its own.
    pub timing: Option<LeaseTiming>,
}

/// Why a standby does not promote (shown in status, logged when it changes).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Hold {
    /// Automation is paused (`hadr cluster pause`).
    #[error("not promoting: automation is paused")]
    Paused,
    /// The link to the primary is up.
    #[error("not promoting: connected to the primary")]
    Connected,
    /// The sync mode lets the primary acknowledge commits this standby lacks.
    #[error("not promoting: hadr_syncmode is not SYNC or NEARSYNC, so the primary may have acknowledged commits this standby lacks")]
    AsyncMode,
    /// The link dropped while this standby was behind (or it never connected since starting).
    #[error(
        "not promoting: was not in PEER when the link to the primary dropped; would lose commits"
    )]
    NotInPeer,
    /// The primary recorded that it acknowledged commits without this standby.
    #[error("not promoting: the primary recorded this standby out of sync from LSN {from_lsn} (it acknowledged commits alone); only `hadr takeover --force` can promote it, losing them")]
    OutOfSync {
        /// From where.
        from_lsn: u64,
    },
    /// The arbiter did not answer.
    #[error("not promoting: the arbiter is unreachable")]
    ArbiterDown,
    /// The holder's lease may still be running.
    #[error("not promoting: the lease of {holder} may run {left_ms} ms more")]
    LeaseRunning {
        /// Who holds it.
        holder: String,
        /// Until the take-over is allowed.
        left_ms: u64,
    },
    /// A promotion happened too recently.
    #[error("not promoting: the last promotion was less than {interval_s} s ago")]
    RateLimited {
        /// The interval.
        interval_s: u64,
    },
    /// A conditional take-over lost: someone wrote the record first.
    #[error("not promoting: the arbiter's record changed under the take-over")]
    LostRace,
}

/// What a standby's driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StandbyAction {
    /// Read the arbiter's record (and report it back).
    Read,
    /// Write `holder = me, epoch` only if the record is still `expected`
    /// (None: only if there is none).
    TakeOver {
        /// The version read.
        expected: Option<String>,
        /// The new epoch.
        epoch: u64,
    },
    /// The arbiter is ours: promote into `epoch`.
    Promote {
        /// The epoch won.
        epoch: u64,
    },
}

/// What a standby's driver saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StandbyEvent {
    /// Time passed.
    Tick {
        /// Now (µs, monotonic).
        now: u64,
    },
    /// The link to the primary came up.
    LinkUp,
    /// The link dropped; `in_peer`: the standby had everything the primary had announced.
    LinkLost {
        /// Caught up at the loss.
        in_peer: bool,
    },
    /// The arbiter's record (None: there is none).
    Read {
        /// Now.
        now: u64,
        /// What is stored.
        record: Option<Record>,
    },
    /// The arbiter did not answer.
    ArbiterDown {
        /// Now.
        now: u64,
    },
    /// The take-over write succeeded.
    Won {
        /// Now.
        now: u64,
    },
    /// The take-over write lost to another writer.
    Lost,
    /// Automation paused or resumed.
    Paused(bool),
    /// The node learnt of epoch `epoch` (its own, a primary's, a higher one).
    EpochSeen(u64),
}

/// A standby's automatic-failover state.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StandbyFailover {
    /// This node's name as recorded in the arbiter.
    pub me: String,
    /// The lease's timing.
    pub timing: LeaseTiming,
    /// SYNC or NEARSYNC: the primary waits for this standby in PEER.
    pub sync_mode: bool,
    /// Highest epoch this node knows.
    pub known_epoch: u64,
    /// Least time between two promotions (µs).
    pub min_promotion_interval_us: u64,
    /// How often to read the arbiter (µs).
    pub poll_us: u64,
    /// Automation paused.
    pub paused: bool,
    /// Link to the primary up.
    pub connected: bool,
    /// In PEER when the link last dropped (false until a link existed).
    pub in_peer_at_loss: bool,
    /// The version watched and since when.
    pub watch: Option<Watch>,
    /// The record last read.
    pub record: Option<Record>,
    /// When the arbiter was last read (or tried).
    pub last_poll: Option<u64>,
    /// A take-over write is in flight.
    pub taking_over: Option<u64>,
    /// When this node last promoted.
    pub last_promotion: Option<u64>,
    /// Why it is not promoting now.
    pub hold: Option<Hold>,
}

impl StandbyFailover {
    /// A standby that has not yet connected (so it is not in PEER).
    pub fn new(me: String, timing: LeaseTiming, sync_mode: bool, known_epoch: u64) -> Self {
        StandbyFailover {
            me,
            timing,
            sync_mode,
            known_epoch,
            min_promotion_interval_us: 60_000_000,
            poll_us: (timing.ttl_us / 10).clamp(50_000, 1_000_000),
            paused: false,
            connected: false,
            in_peer_at_loss: false,
            watch: None,
            record: None,
            last_poll: None,
            taking_over: None,
            last_promotion: None,
            hold: Some(Hold::NotInPeer),
        }
    }

    /// Whether this standby may try to take over now, or why not.
    fn judge(&self, now: u64) -> Result<(), Hold> {
        if self.paused {
            return Err(Hold::Paused);
        }
        if self.connected {
            return Err(Hold::Connected);
        }
        if !self.sync_mode {
            return Err(Hold::AsyncMode);
        }
        if let Some(at) = self.last_promotion {
            if now < at.saturating_add(self.min_promotion_interval_us) {
                return Err(Hold::RateLimited {
                    interval_s: self.min_promotion_interval_us / 1_000_000,
                });
            }
        }
        if let Some(r) = &self.record {
            if let Some((_, from_lsn)) = r.out_of_sync.iter().find(|(s, _)| *s == self.me) {
                return Err(Hold::OutOfSync {
                    from_lsn: *from_lsn,
                });
            }
        }
        // After the mark: when both hold, the mark is what an operator must
        // act on (`hadr takeover --force`, accepting the loss).
        if !self.in_peer_at_loss {
            return Err(Hold::NotInPeer);
        }
        let Some(watch) = &self.watch else {
            return Err(Hold::ArbiterDown);
        };
        let timing = self
            .timing
            .at_least(self.record.as_ref().and_then(|r| r.timing));
        if !watch.expired(&timing, now) {
            let holder = self
                .record
                .as_ref()
                .and_then(|r| r.holder.clone())
                .unwrap_or_else(|| "nobody".into());
            return Err(Hold::LeaseRunning {
                holder,
                left_ms: timing.takeover_at(watch.first_seen).saturating_sub(now) / 1000,
            });
        }
        Ok(())
    }

    /// Apply an event.
    pub fn step(&mut self, ev: StandbyEvent) -> Vec<StandbyAction> {
        let mut out = Vec::new();
        let now = match ev {
            StandbyEvent::Tick { now } => now,
            StandbyEvent::LinkUp => {
                self.connected = true;
                self.in_peer_at_loss = false;
                self.hold = Some(Hold::Connected);
                return out;
            }
            StandbyEvent::LinkLost { in_peer } => {
                // A second loss report (the link was already down) changes nothing.
                if self.connected {
                    self.connected = false;
                    self.in_peer_at_loss = in_peer;
                }
                return out;
            }
            StandbyEvent::Paused(p) => {
                self.paused = p;
                return out;
            }
            StandbyEvent::EpochSeen(e) => {
                self.known_epoch = self.known_epoch.max(e);
                return out;
            }
            StandbyEvent::ArbiterDown { now } => {
                self.watch = None;
                self.record = None;
                self.taking_over = None;
                self.last_poll = Some(now);
                self.hold = Some(Hold::ArbiterDown);
                return out;
            }
            StandbyEvent::Read { now, record } => {
                self.last_poll = Some(now);
                let version = record.as_ref().map(|r| r.version.as_str()).unwrap_or("");
                self.watch = Some(Watch::observe(self.watch.take(), version, now));
                if let Some(r) = &record {
                    self.known_epoch = self.known_epoch.max(r.epoch);
                }
                self.record = record;
                now
            }
            StandbyEvent::Lost => {
                self.taking_over = None;
                self.hold = Some(Hold::LostRace);
                // Read again at once: the new record decides.
                out.push(StandbyAction::Read);
                return out;
            }
            StandbyEvent::Won { now } => {
                let Some(epoch) = self.taking_over.take() else {
                    return out;
                };
                self.last_promotion = Some(now);
                self.known_epoch = self.known_epoch.max(epoch);
                self.hold = None;
                out.push(StandbyAction::Promote { epoch });
                return out;
            }
        };
        if self.taking_over.is_some() {
            return out;
        }
        match self.judge(now) {
            Ok(()) => {
                let epoch = next_epoch(self.known_epoch, 0);
                self.taking_over = Some(epoch);
                self.hold = None;
                out.push(StandbyAction::TakeOver {
                    expected: self.record.as_ref().map(|r| r.version.clone()),
                    epoch,
                });
            }
            Err(h) => {
                self.hold = Some(h);
                // Watch the record while connected too: the watch then dates
                // the holder's last renewal, so a take-over can follow the
                // primary's death by ttl + margin however long the link takes
                // to notice. A paused standby does not load the arbiter.
                let watching = !self.paused;
                let due = self
                    .last_poll
                    .is_none_or(|t| now >= t.saturating_add(self.poll_us));
                if watching && due {
                    self.last_poll = Some(now);
                    out.push(StandbyAction::Read);
                }
            }
        }
        out
    }
}

/// What a primary's driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrimaryAction {
    /// Read the record.
    Read,
    /// Write `holder = me`, our epoch and `out_of_sync` if the record is
    /// still `expected` (a renewal, a mark, or clearing one).
    Write {
        /// The version we hold (None: create).
        expected: Option<String>,
        /// Standbys to record out of sync.
        out_of_sync: Vec<(String, u64)>,
    },
    /// Someone with a newer epoch holds the record: fence this node.
    Fence {
        /// That epoch.
        by_epoch: u64,
    },
}

/// What a primary's driver saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrimaryEvent {
    /// Time passed.
    Tick {
        /// Now.
        now: u64,
    },
    /// The principal standby entered PEER (true) or left it at log end `lsn` (false).
    StandbyPeer {
        /// In PEER.
        in_peer: bool,
        /// The log end when it left (the first LSN it may lack).
        lsn: u64,
    },
    /// The record as read.
    Read {
        /// Now.
        now: u64,
        /// What is stored.
        record: Option<Record>,
    },
    /// Our write (sent at `sent`) succeeded and the record now has `version`.
    Wrote {
        /// When it was sent.
        sent: u64,
        /// The new version.
        version: String,
        /// What it recorded out of sync.
        out_of_sync: Vec<(String, u64)>,
    },
    /// Our write lost: the record is not the version we held.
    Conflict,
    /// The arbiter did not answer.
    ArbiterDown {
        /// Now.
        now: u64,
    },
}

/// A primary's automatic-failover state.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PrimaryFailover {
    /// This node's name in the arbiter.
    pub me: String,
    /// Its epoch.
    pub epoch: u64,
    /// The lease's timing.
    pub timing: LeaseTiming,
    /// The principal standby's name.
    pub standby: String,
    /// Is it in PEER?
    pub standby_in_peer: bool,
    /// The version we wrote last and when that write was sent (the lease).
    pub held: Option<(String, u64)>,
    /// A write in flight since (µs).
    pub writing: Option<u64>,
    /// What the record says is out of sync (as we last wrote it).
    pub recorded_out_of_sync: Vec<(String, u64)>,
    /// Where the standby left PEER (what a mark must say).
    pub left_peer_at: Option<u64>,
    /// Another holder's version we wait out before taking the record.
    pub watch: Option<Watch>,
    /// The version to expect when taking it over.
    pub other_version: Option<String>,
    /// That holder's lease timing, as it wrote it.
    pub other_timing: Option<LeaseTiming>,
    /// The arbiter answered the last call.
    pub arbiter_ok: bool,
    /// The record belongs to a newer epoch: fenced for good.
    pub superseded: bool,
    /// After an arbiter failure, no call before this (µs).
    pub backoff_until: Option<u64>,
    /// This primary was promoted by a graceful hand-over: its predecessor
    /// stopped writing for good before it told us, so a record it still
    /// holds in an older epoch need not be waited out.
    pub predecessor_stopped: bool,
}

impl PrimaryFailover {
    /// A primary of `epoch` whose principal standby is `standby` (not yet in PEER).
    pub fn new(me: String, epoch: u64, timing: LeaseTiming, standby: String) -> Self {
        PrimaryFailover {
            me,
            epoch,
            timing,
            standby,
            standby_in_peer: false,
            held: None,
            writing: None,
            recorded_out_of_sync: Vec::new(),
            left_peer_at: Some(0),
            watch: None,
            other_version: None,
            other_timing: None,
            arbiter_ok: false,
            superseded: false,
            backoff_until: None,
            predecessor_stopped: false,
        }
    }

    /// Whether the lease is ours and running at `now`.
    pub fn holds_lease(&self, now: u64) -> bool {
        self.held
            .as_ref()
            .is_some_and(|(_, sent)| now < self.timing.holder_deadline(*sent))
    }

    /// Whether a commit the standby lacks may be acknowledged at `now`: the
    /// lease is ours and the standby is recorded out of sync.
    pub fn may_ack_alone(&self, now: u64) -> bool {
        !self.superseded
            && self.holds_lease(now)
            && self
                .recorded_out_of_sync
                .iter()
                .any(|(s, _)| *s == self.standby)
    }

    /// Whether this primary may accept writes at `now`: with its standby in
    /// PEER (the healthy-pair rule: the standby cannot promote while
    /// connected), or alone under the rules above.
    pub fn may_write(&self, now: u64) -> bool {
        !self.superseded && (self.standby_in_peer || self.holds_lease(now))
    }

    fn desired_marks(&self) -> Vec<(String, u64)> {
        match (self.standby_in_peer, self.left_peer_at) {
            (false, Some(lsn)) => vec![(self.standby.clone(), lsn)],
            _ => Vec::new(),
        }
    }

    /// Until when (µs, local monotonic) a commit the standby lacks may be
    /// acknowledged: the lease deadline while [`Self::may_ack_alone`], else 0.
    /// The driver hands this to the commit wait before every arbiter call,
    /// so no call's outcome can leave the gate trusting more than the rules.
    pub fn alone_until(&self, now: u64) -> u64 {
        match &self.held {
            Some((_, sent)) if self.may_ack_alone(now) => self.timing.holder_deadline(*sent),
            _ => 0,
        }
    }

    fn write(&mut self, now: u64, expected: Option<String>) -> Vec<PrimaryAction> {
        self.writing = Some(now);
        let marks = self.desired_marks();
        // A mark the write drops stops counting when the write is *sent*: the
        // arbiter may store it even if its answer is lost, and a standby that
        // reads the unmarked record may then take over (the failover model
        // found this). A mark the write adds counts only once it is answered.
        self.recorded_out_of_sync
            .retain(|(s, _)| marks.iter().any(|(t, _)| t == s));
        vec![PrimaryAction::Write {
            expected,
            out_of_sync: marks,
        }]
    }

    /// Apply an event.
    pub fn step(&mut self, ev: PrimaryEvent) -> Vec<PrimaryAction> {
        if self.superseded {
            return Vec::new();
        }
        let now = match ev {
            PrimaryEvent::Tick { now } => now,
            PrimaryEvent::StandbyPeer { in_peer, lsn } => {
                self.standby_in_peer = in_peer;
                self.left_peer_at = if in_peer { None } else { Some(lsn) };
                // The next tick writes the mark (or clears it) at once.
                return Vec::new();
            }
            PrimaryEvent::Wrote {
                sent,
                version,
                out_of_sync,
            } => {
                self.writing = None;
                self.arbiter_ok = true;
                self.held = Some((version, sent));
                self.recorded_out_of_sync = out_of_sync;
                self.watch = None;
                self.other_version = None;
                self.other_timing = None;
                return Vec::new();
            }
            PrimaryEvent::Conflict => {
                // Someone else wrote: the lease is not ours. Find out who.
                self.writing = None;
                self.held = None;
                return vec![PrimaryAction::Read];
            }
            PrimaryEvent::ArbiterDown { now } => {
                self.writing = None;
                self.arbiter_ok = false;
                // Retry soon, but not on every tick: a dead arbiter must not
                // be hammered, and the lease runs out on its own anyway.
                self.backoff_until =
                    Some(now.saturating_add((self.timing.ttl_us / 20).max(50_000)));
                return Vec::new();
            }
            PrimaryEvent::Read { now, record } => {
                self.writing = None;
                self.arbiter_ok = true;
                match record {
                    Some(r)
                        if r.holder.as_deref() == Some(self.me.as_str())
                            && r.epoch == self.epoch =>
                    {
                        // Our own record (a restart, or a write whose answer was lost):
                        // renew from it. The lease counts from this renewal, not the old one.
                        self.held = None;
                        return self.write(now, Some(r.version));
                    }
                    Some(r) if r.epoch > self.epoch => {
                        self.superseded = true;
                        return vec![PrimaryAction::Fence { by_epoch: r.epoch }];
                    }
                    Some(r) if r.holder.is_none() => {
                        return self.write(now, Some(r.version));
                    }
                    Some(r) if self.predecessor_stopped && r.epoch < self.epoch => {
                        return self.write(now, Some(r.version));
                    }
                    Some(r) => {
                        // Another holder of an older or equal epoch: wait its lease out.
                        self.watch = Some(Watch::observe(self.watch.take(), &r.version, now));
                        self.other_version = Some(r.version);
                        self.other_timing = r.timing;
                    }
                    None => return self.write(now, None),
                }
                now
            }
        };
        if self.backoff_until.is_some_and(|t| now < t) {
            return Vec::new();
        }
        if self.writing.is_some() {
            // One write at a time; a write that never answers is given up
            // after a TTL (the driver's own timeout reports it sooner).
            if self
                .writing
                .is_some_and(|t| now >= t.saturating_add(self.timing.ttl_us))
            {
                self.writing = None;
            } else {
                return Vec::new();
            }
        }
        if let Some(w) = &self.watch {
            if w.expired(&self.timing.at_least(self.other_timing), now) {
                let expected = self.other_version.clone();
                return self.write(now, expected);
            }
            if now >= w.first_seen.saturating_add(self.timing.renew_every_us()) {
                return vec![PrimaryAction::Read];
            }
            return Vec::new();
        }
        match &self.held {
            None => {
                if self.writing.is_none() {
                    return vec![PrimaryAction::Read];
                }
                Vec::new()
            }
            Some((version, sent)) => {
                let marks_stale = self.desired_marks() != self.recorded_out_of_sync;
                let renew_due = now >= sent.saturating_add(self.timing.renew_every_us());
                if marks_stale || renew_due {
                    let v = version.clone();
                    return self.write(now, Some(v));
                }
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1000;

    fn timing() -> LeaseTiming {
        LeaseTiming::new(2000 * MS, 500 * MS).unwrap()
    }

    fn rec(version: &str, holder: &str, epoch: u64) -> Record {
        Record {
            version: version.into(),
            holder: Some(holder.into()),
            epoch,
            out_of_sync: vec![],
            timing: None,
        }
    }

    #[test]
    fn a_standby_promotes_only_after_the_lease_ran_out_unchanged() {
        let mut s = StandbyFailover::new("b".into(), timing(), true, 3);
        s.step(StandbyEvent::LinkUp);
        // Connected, it watches the record (so the watch dates the holder's
        // last renewal) but never takes over.
        assert_eq!(
            s.step(StandbyEvent::Tick { now: 0 }),
            vec![StandbyAction::Read]
        );
        assert_eq!(s.hold, Some(Hold::Connected));
        s.step(StandbyEvent::LinkLost { in_peer: true });
        assert_eq!(s.step(StandbyEvent::Tick { now: 10 }), vec![]);
        assert_eq!(
            s.step(StandbyEvent::Tick { now: 200 * MS }),
            vec![StandbyAction::Read]
        );
        s.step(StandbyEvent::Read {
            now: 20,
            record: Some(rec("v1", "a", 3)),
        });
        assert!(matches!(s.hold, Some(Hold::LeaseRunning { .. })));
        // A renewal restarts the wait.
        s.step(StandbyEvent::Read {
            now: 1000 * MS,
            record: Some(rec("v2", "a", 3)),
        });
        let a = s.step(StandbyEvent::Read {
            now: 3000 * MS,
            record: Some(rec("v2", "a", 3)),
        });
        assert_eq!(a, vec![]);
        let a = s.step(StandbyEvent::Read {
            now: 3500 * MS,
            record: Some(rec("v2", "a", 3)),
        });
        assert_eq!(
            a,
            vec![StandbyAction::TakeOver {
                expected: Some("v2".into()),
                epoch: 4
            }]
        );
        assert_eq!(
            s.step(StandbyEvent::Won { now: 3600 * MS }),
            vec![StandbyAction::Promote { epoch: 4 }]
        );
    }

    #[test]
    fn a_standby_waits_out_a_holder_configured_with_a_longer_lease() {
        let mut s = StandbyFailover::new("b".into(), timing(), true, 3);
        s.step(StandbyEvent::LinkUp);
        s.step(StandbyEvent::LinkLost { in_peer: true });
        let mut r = rec("v1", "a", 3);
        r.timing = Some(LeaseTiming::new(10_000 * MS, 1000 * MS).unwrap());
        let read = |s: &mut StandbyFailover, now| {
            s.step(StandbyEvent::Read {
                now,
                record: Some(r.clone()),
            })
        };
        read(&mut s, 0);
        // Its own 2.5 s would allow it; the holder's 11 s does not.
        assert_eq!(read(&mut s, 5000 * MS), vec![]);
        assert!(
            matches!(s.hold, Some(Hold::LeaseRunning { left_ms: 6000, .. })),
            "{:?}",
            s.hold
        );
        assert!(matches!(
            read(&mut s, 11_000 * MS).as_slice(),
            [StandbyAction::TakeOver { .. }]
        ));
    }

    #[test]
    fn a_standby_never_promotes_when_it_could_lose_commits() {
        for (sync, in_peer, marked, want) in [
            (false, true, false, Hold::AsyncMode),
            (true, false, false, Hold::NotInPeer),
            (true, true, true, Hold::OutOfSync { from_lsn: 77 }),
        ] {
            let mut s = StandbyFailover::new("b".into(), timing(), sync, 3);
            s.step(StandbyEvent::LinkUp);
            s.step(StandbyEvent::LinkLost { in_peer });
            let mut r = rec("v", "a", 3);
            if marked {
                r.out_of_sync.push(("b".into(), 77));
            }
            for now in [0, 5000 * MS, 60_000 * MS] {
                let a = s.step(StandbyEvent::Read {
                    now,
                    record: Some(r.clone()),
                });
                assert!(a
                    .iter()
                    .all(|a| !matches!(a, StandbyAction::TakeOver { .. })));
            }
            assert_eq!(s.hold, Some(want));
        }
        // Connected, paused, or without the arbiter: never.
        let mut s = StandbyFailover::new("b".into(), timing(), true, 3);
        s.step(StandbyEvent::LinkUp);
        s.step(StandbyEvent::Read {
            now: 0,
            record: Some(rec("v", "a", 3)),
        });
        s.step(StandbyEvent::Tick { now: 9_000 * MS });
        assert_eq!(s.hold, Some(Hold::Connected));
        s.step(StandbyEvent::LinkLost { in_peer: true });
        s.step(StandbyEvent::ArbiterDown { now: 9_100 * MS });
        assert_eq!(s.step(StandbyEvent::Tick { now: 9_200 * MS }), vec![]);
        assert_eq!(s.hold, Some(Hold::ArbiterDown));
    }

    #[test]
    fn a_primary_acks_alone_only_with_the_lease_and_the_mark() {
        let mut p = PrimaryFailover::new("a".into(), 3, timing(), "b".into());
        assert_eq!(
            p.step(PrimaryEvent::Tick { now: 0 }),
            vec![PrimaryAction::Read]
        );
        let a = p.step(PrimaryEvent::Read {
            now: 0,
            record: None,
        });
        assert_eq!(
            a,
            vec![PrimaryAction::Write {
                expected: None,
                out_of_sync: vec![("b".into(), 0)]
            }]
        );
        p.step(PrimaryEvent::Wrote {
            sent: 0,
            version: "v1".into(),
            out_of_sync: vec![("b".into(), 0)],
        });
        assert!(p.may_ack_alone(1));
        p.step(PrimaryEvent::StandbyPeer {
            in_peer: true,
            lsn: 0,
        });
        // Entering PEER clears the mark at once.
        assert_eq!(
            p.step(PrimaryEvent::Tick { now: 10 }),
            vec![PrimaryAction::Write {
                expected: Some("v1".into()),
                out_of_sync: vec![]
            }]
        );
        p.step(PrimaryEvent::Wrote {
            sent: 10,
            version: "v2".into(),
            out_of_sync: vec![],
        });
        assert!(!p.may_ack_alone(20));
        assert!(p.may_write(20));
        // The standby drops: no ack alone until the mark is written.
        p.step(PrimaryEvent::StandbyPeer {
            in_peer: false,
            lsn: 500,
        });
        assert!(!p.may_ack_alone(30));
        let a = p.step(PrimaryEvent::Tick { now: 30 });
        assert_eq!(
            a,
            vec![PrimaryAction::Write {
                expected: Some("v2".into()),
                out_of_sync: vec![("b".into(), 500)]
            }]
        );
        p.step(PrimaryEvent::Wrote {
            sent: 30,
            version: "v3".into(),
            out_of_sync: vec![("b".into(), 500)],
        });
        assert!(p.may_ack_alone(40));
        // Without renewals the lease runs out strictly before a contender may take it.
        assert!(p.may_ack_alone(30 + 1500 * MS - 1));
        assert!(!p.may_ack_alone(30 + 1500 * MS));
        assert!(!p.may_write(30 + 1500 * MS));
    }

    #[test]
    fn a_mark_being_cleared_stops_counting_when_the_write_is_sent() {
        let mut p = PrimaryFailover::new("a".into(), 3, timing(), "b".into());
        p.step(PrimaryEvent::Read {
            now: 0,
            record: None,
        });
        p.step(PrimaryEvent::Wrote {
            sent: 0,
            version: "v1".into(),
            out_of_sync: vec![("b".into(), 0)],
        });
        assert!(p.may_ack_alone(1));
        assert_eq!(p.alone_until(1), 1500 * MS);
        p.step(PrimaryEvent::StandbyPeer {
            in_peer: true,
            lsn: 0,
        });
        let a = p.step(PrimaryEvent::Tick { now: 10 });
        assert!(
            matches!(&a[..], [PrimaryAction::Write { out_of_sync, .. }] if out_of_sync.is_empty())
        );
        // Unanswered (slow, or lost): the arbiter may already hold the
        // unmarked record, so nothing may be acknowledged alone any more.
        assert!(!p.may_ack_alone(11));
        assert_eq!(p.alone_until(11), 0);
        p.step(PrimaryEvent::ArbiterDown { now: 2000 * MS });
        assert!(!p.may_ack_alone(2000 * MS + 1));
    }

    #[test]
    fn a_primary_that_lost_the_record_to_a_newer_epoch_fences() {
        let mut p = PrimaryFailover::new("a".into(), 3, timing(), "b".into());
        p.step(PrimaryEvent::Read {
            now: 0,
            record: Some(rec("v1", "a", 3)),
        });
        p.step(PrimaryEvent::Wrote {
            sent: 0,
            version: "v2".into(),
            out_of_sync: vec![("b".into(), 0)],
        });
        assert_eq!(p.step(PrimaryEvent::Conflict), vec![PrimaryAction::Read]);
        assert!(!p.may_write(1));
        assert_eq!(
            p.step(PrimaryEvent::Read {
                now: 2,
                record: Some(rec("v3", "b", 4))
            }),
            vec![PrimaryAction::Fence { by_epoch: 4 }]
        );
        assert!(p.superseded);
        assert_eq!(p.step(PrimaryEvent::Tick { now: 10_000 * MS }), vec![]);
    }

    #[test]
    fn after_a_graceful_hand_over_the_record_is_taken_at_once() {
        let mut p = PrimaryFailover::new("b".into(), 4, timing(), "a".into());
        p.predecessor_stopped = true;
        assert_eq!(
            p.step(PrimaryEvent::Read {
                now: 0,
                record: Some(rec("v1", "a", 3))
            }),
            vec![PrimaryAction::Write {
                expected: Some("v1".into()),
                out_of_sync: vec![("a".into(), 0)]
            }]
        );
        // Not a record of the same or a newer epoch, though.
        let mut p = PrimaryFailover::new("b".into(), 4, timing(), "a".into());
        p.predecessor_stopped = true;
        assert_eq!(
            p.step(PrimaryEvent::Read {
                now: 0,
                record: Some(rec("v1", "a", 4))
            }),
            vec![]
        );
    }

    #[test]
    fn a_primary_waits_out_a_stale_holder_before_taking_the_record() {
        let mut p = PrimaryFailover::new("b".into(), 4, timing(), "a".into());
        assert_eq!(
            p.step(PrimaryEvent::Read {
                now: 0,
                record: Some(rec("v1", "a", 3))
            }),
            vec![]
        );
        assert!(!p.may_write(1));
        assert_eq!(
            p.step(PrimaryEvent::Tick { now: 700 * MS }),
            vec![PrimaryAction::Read]
        );
        p.step(PrimaryEvent::Read {
            now: 700 * MS,
            record: Some(rec("v1", "a", 3)),
        });
        assert_eq!(
            p.step(PrimaryEvent::Tick { now: 2500 * MS }),
            vec![PrimaryAction::Write {
                expected: Some("v1".into()),
                out_of_sync: vec![("a".into(), 0)]
            }]
        );
    }
}
