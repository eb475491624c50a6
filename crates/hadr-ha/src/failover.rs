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
//! - **Several standbys** (docs/failover.md §Three and more nodes): the
//!   primary tracks each; it marks every standby it waits for (its
//!   principal) that leaves PEER, and records which standbys it waits for.
//!   Only those may promote (`candidates`): an auxiliary, always SUPERASYNC,
//!   never does, and says why ([`Hold::Auxiliary`]).
//! - **A graceful hand-over goes through the arbiter**: the new primary's
//!   first act is the conditional write of the record in its new epoch
//!   over its predecessor's (which stopped for good before it handed over);
//!   until that write is made it never acknowledges alone.

use serde::{Deserialize, Serialize};

use crate::candidates::{self, NotEligible, Recorded, Standing};
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
    /// The holder's standbys as it recorded them (None: a writer that
    /// predates this field; then only the marks speak).
    pub standbys: Option<Vec<Recorded>>,
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
    /// The primary does not wait for this standby: an auxiliary (always
    /// SUPERASYNC), or not one of its standbys at all.
    #[error("not promoting: an auxiliary standby of {primary} (SUPERASYNC: the primary does not wait for it, so it may lack acknowledged commits); only a standby the primary waits for promotes automatically, and `hadr takeover --force` remains for a human who accepts the loss")]
    Auxiliary {
        /// The holder whose record says so.
        primary: String,
    },
    /// A more advanced eligible standby goes first.
    #[error("not promoting yet: {to} is further ahead (flushed LSN {flushed_lsn}) and goes first; this standby tries {left_ms} ms later if it has not")]
    Deferring {
        /// That standby.
        to: String,
        /// Its recorded flushed LSN.
        flushed_lsn: u64,
        /// Until this standby tries anyway.
        left_ms: u64,
    },
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
        // What the holder's record says of this standby.
        let standing = match &self.record {
            None => Ok(Standing::Best),
            Some(r) => candidates::standing(&self.me, r.standbys.as_deref(), &r.out_of_sync),
        };
        if standing == Err(NotEligible::Auxiliary) {
            let primary = self
                .record
                .as_ref()
                .and_then(|r| r.holder.clone())
                .unwrap_or_else(|| "the primary".into());
            return Err(Hold::Auxiliary { primary });
        }
        if let Some(at) = self.last_promotion {
            if now < at.saturating_add(self.min_promotion_interval_us) {
                return Err(Hold::RateLimited {
                    interval_s: self.min_promotion_interval_us / 1_000_000,
                });
            }
        }
        if let Err(NotEligible::OutOfSync { from_lsn }) = standing {
            return Err(Hold::OutOfSync { from_lsn });
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
        if let Ok(Standing::Defer { to, flushed_lsn }) = standing {
            let at = timing
                .takeover_at(watch.first_seen)
                .saturating_add(timing.ttl_us);
            if now < at {
                return Err(Hold::Deferring {
                    to,
                    flushed_lsn,
                    left_ms: (at - now) / 1000,
                });
            }
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
    /// A standby entered PEER (true) or left it at log end `lsn` (false).
    StandbyPeer {
        /// Which (a name [`PrimaryFailover::new`] was given; others are ignored).
        standby: String,
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

/// One standby of a primary, as the rules track it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    /// Its name (its `hadr_local`, as the primary's `hadr_target_list` has it).
    pub name: String,
    /// The primary waits for it (its principal in SYNC or NEARSYNC): it is
    /// marked out of sync before the primary acknowledges a commit it may
    /// lack, and it may promote automatically. An auxiliary (always
    /// SUPERASYNC) never holds a commit back and is never marked; the record
    /// lists it as not waited for, which keeps it from promoting.
    pub sync: bool,
    /// In PEER.
    pub in_peer: bool,
    /// Where it left PEER (what a mark must say); None while in PEER.
    pub left_peer_at: Option<u64>,
}

impl Member {
    /// A standby the primary waits for, not yet in PEER (so marked from 0).
    pub fn sync(name: impl Into<String>) -> Member {
        Member {
            name: name.into(),
            sync: true,
            in_peer: false,
            left_peer_at: Some(0),
        }
    }

    /// An auxiliary standby.
    pub fn auxiliary(name: impl Into<String>) -> Member {
        Member {
            sync: false,
            ..Member::sync(name)
        }
    }
}

/// Why a primary does not acknowledge alone the commits a standby it waits
/// for lacks (shown in status).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum AloneHold {
    /// A newer epoch holds the record.
    #[error("not acknowledging alone: a newer epoch holds the arbiter's record")]
    Superseded,
    /// Promoted by a graceful hand-over, it has not yet written the record in its epoch.
    #[error("not acknowledging alone: after the graceful takeover from {predecessor} this primary has not yet recorded itself in the arbiter; it serves while its standby is in PEER")]
    NotClaimed {
        /// Who handed over.
        predecessor: String,
    },
    /// The lease is not ours (the arbiter is down, or another holder is waited out).
    #[error("not acknowledging alone: this primary does not hold the arbiter's lease; it serves while its standby is in PEER")]
    NoLease,
    /// A standby out of PEER is not yet recorded out of sync.
    #[error("not acknowledging alone: {standby} is not yet recorded out of sync in the arbiter")]
    NotMarked {
        /// That standby.
        standby: String,
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
    /// Its standbys, in `hadr_target_list` order.
    pub standbys: Vec<Member>,
    /// The version we wrote last and when that write was sent (the lease).
    pub held: Option<(String, u64)>,
    /// A write in flight since (µs).
    pub writing: Option<u64>,
    /// What the record says is out of sync (as we last wrote it).
    pub recorded_out_of_sync: Vec<(String, u64)>,
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
    /// This primary was promoted by a graceful hand-over from this node
    /// (its name in the record). It stopped writing for good before it told
    /// us, so the record it still holds in an older epoch is written over at
    /// once: the new primary's first act (after reading the version) is
    /// that conditional write. A record anyone else holds is waited out.
    pub handed_over_by: Option<String>,
}

impl PrimaryFailover {
    /// A primary of `epoch` with these standbys (none in PEER yet).
    pub fn new(me: String, epoch: u64, timing: LeaseTiming, standbys: Vec<Member>) -> Self {
        PrimaryFailover {
            me,
            epoch,
            timing,
            standbys,
            held: None,
            writing: None,
            recorded_out_of_sync: Vec::new(),
            watch: None,
            other_version: None,
            other_timing: None,
            arbiter_ok: false,
            superseded: false,
            backoff_until: None,
            handed_over_by: None,
        }
    }

    fn recorded(&self, name: &str) -> bool {
        self.recorded_out_of_sync.iter().any(|(s, _)| s == name)
    }

    /// Every standby it waits for is in PEER (and there is one).
    fn waited_for_in_peer(&self) -> bool {
        let mut sync = self.standbys.iter().filter(|m| m.sync).peekable();
        sync.peek().is_some() && sync.all(|m| m.in_peer)
    }

    /// Why it does not acknowledge alone at `now`, for status: None when
    /// it may, or when the question does not arise (every standby it waits
    /// for is in PEER). A primary made by a hand-over that has not yet
    /// written the record says so even then.
    pub fn alone_hold(&self, now: u64) -> Option<AloneHold> {
        if self.superseded {
            return Some(AloneHold::Superseded);
        }
        if let (Some(p), None) = (&self.handed_over_by, &self.held) {
            return Some(AloneHold::NotClaimed {
                predecessor: p.clone(),
            });
        }
        if self.may_ack_alone(now) || self.waited_for_in_peer() {
            return None;
        }
        if !self.holds_lease(now) {
            return Some(AloneHold::NoLease);
        }
        self.standbys
            .iter()
            .find(|m| m.sync && !m.in_peer && !self.recorded(&m.name))
            .map(|m| AloneHold::NotMarked {
                standby: m.name.clone(),
            })
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
        let mut sync = self.standbys.iter().filter(|m| m.sync);
        !self.superseded
            && self.holds_lease(now)
            && sync.clone().all(|m| m.in_peer || self.recorded(&m.name))
            && sync.any(|m| self.recorded(&m.name))
    }

    /// Whether this primary may accept writes at `now`: with every standby
    /// it waits for in PEER (the healthy-pair rule: a connected standby
    /// cannot promote, and an auxiliary never does), or alone under the
    /// rules above.
    pub fn may_write(&self, now: u64) -> bool {
        !self.superseded && (self.waited_for_in_peer() || self.holds_lease(now))
    }

    /// The marks the record must carry: every standby it waits for that is
    /// out of PEER, from where it left. Auxiliaries are never marked: they
    /// hold no commit back, and the record's list of standbys already keeps
    /// them from promoting.
    fn desired_marks(&self) -> Vec<(String, u64)> {
        self.standbys
            .iter()
            .filter(|m| m.sync && !m.in_peer)
            .filter_map(|m| m.left_peer_at.map(|lsn| (m.name.clone(), lsn)))
            .collect()
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
            PrimaryEvent::StandbyPeer {
                standby,
                in_peer,
                lsn,
            } => {
                if let Some(m) = self.standbys.iter_mut().find(|m| m.name == standby) {
                    m.in_peer = in_peer;
                    m.left_peer_at = if in_peer { None } else { Some(lsn) };
                }
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
                    Some(r)
                        if r.epoch < self.epoch
                            && r.holder.is_some()
                            && r.holder == self.handed_over_by =>
                    {
                        // Our predecessor's record: it stopped for good before
                        // it handed over, so nothing is waited out.
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
#[path = "failover_tests.rs"]
mod tests;
