//! The primary's side of a graceful takeover as a step machine
//! (docs/takeover.md §Graceful takeover). The order is what makes it safe:
//! writes stop and everything is durable here; the tail is shipped; the
//! standby confirms it on disk; only then is the standby role recorded here,
//! and only after that is the standby told to promote. A crash between any
//! two steps leaves at most two standbys, never two primaries. Any failure
//! before the standby is told gives the primary its writes back.

use crate::pair::{PairState, SyncMode};
use crate::takeover::{may_hand_over, TakeoverRefusal};

/// Where a hand-over stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Nothing asked.
    Idle,
    /// Sessions are being ended and the write lock taken for good; `sent`
    /// was already on the socket.
    StoppingWrites {
        /// Sent so far.
        sent: u64,
    },
    /// The log up to `end` is being shipped; `sent` so far.
    Shipping {
        /// Final log end.
        end: u64,
        /// Shipped so far.
        sent: u64,
    },
    /// Waiting for the standby to have `end` on disk, until `deadline` (µs).
    AwaitingFlush {
        /// Final log end.
        end: u64,
        /// When to give up.
        deadline: u64,
    },
    /// Recording the standby role here.
    Marking {
        /// Final log end.
        end: u64,
    },
    /// Telling the standby to promote.
    Telling {
        /// Final log end.
        end: u64,
    },
    /// Handed over: this node is a standby now.
    Done {
        /// Final log end.
        end: u64,
    },
    /// Given up; writes resumed.
    Failed,
}

/// Why a hand-over stopped half-way.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandoverFailure {
    /// Not allowed in this pair state.
    #[error(transparent)]
    Refused(#[from] TakeoverRefusal),
    /// Writes could not be stopped cleanly.
    #[error("could not stop writes: {0}")]
    StopWrites(String),
    /// Shipping the tail failed.
    #[error("shipping the last records failed: {0}")]
    Ship(String),
    /// The standby did not confirm in time.
    #[error("the standby did not confirm LSN {0} on disk in time")]
    FlushTimeout(u64),
    /// The role could not be recorded.
    #[error("could not record the standby role: {0}")]
    Mark(String),
    /// The standby could not be told.
    #[error("could not tell the standby to promote: {0}")]
    Tell(String),
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The standby asked; the pair is in `state` with `mode`.
    Requested {
        /// Pair state.
        state: PairState,
        /// Sync mode of the pair.
        mode: SyncMode,
        /// What was already sent to it.
        sent: u64,
    },
    /// Writes are stopped; the log ends at `end`.
    WritesStopped {
        /// Final log end.
        end: u64,
        /// Now (µs).
        now: u64,
    },
    /// Records up to `to` were handed to the socket.
    Shipped {
        /// New sent position.
        to: u64,
        /// Now (µs).
        now: u64,
    },
    /// The standby's flushed position (or just time passing).
    Flushed {
        /// Standby's flushed LSN.
        lsn: u64,
        /// Now (µs).
        now: u64,
    },
    /// The standby role is recorded.
    Marked,
    /// The standby was told.
    Told,
    /// The step under way failed.
    Failed(HandoverFailure),
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// End sessions, take the write lock for good, make everything durable.
    StopWrites,
    /// Ship the log from `from` up to `to`.
    Ship {
        /// From.
        from: u64,
        /// To.
        to: u64,
    },
    /// Report the standby's flushed position (again, after a short wait).
    AwaitFlushed,
    /// Record the standby role durably.
    MarkStandby,
    /// Tell the standby: everything up to `end` is yours, promote.
    SendReady {
        /// Final log end.
        end: u64,
    },
    /// The standby was never told: record the primary role again.
    UnmarkStandby,
    /// Accept writes again.
    ResumeWrites,
    /// Restart as a standby.
    BecomeStandby,
    /// Stop: the hand-over failed for this reason.
    GiveUp(HandoverFailure),
}

/// A graceful hand-over in progress.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Handover {
    /// Where it stands.
    pub step: Step,
    /// How long the standby may take to confirm the tail (µs).
    pub flush_wait_us: u64,
}

impl Handover {
    /// A hand-over that waits at most `flush_wait_us` for the standby's confirmation.
    pub fn new(flush_wait_us: u64) -> Handover {
        Handover {
            step: Step::Idle,
            flush_wait_us,
        }
    }

    fn fail(&mut self, why: HandoverFailure) -> Vec<Action> {
        let mut out = Vec::new();
        match self.step {
            Step::Idle | Step::Done { .. } | Step::Failed => {}
            Step::StoppingWrites { .. }
            | Step::Shipping { .. }
            | Step::AwaitingFlush { .. }
            | Step::Marking { .. } => out.push(Action::ResumeWrites),
            Step::Telling { .. } => {
                out.push(Action::UnmarkStandby);
                out.push(Action::ResumeWrites);
            }
        }
        self.step = Step::Failed;
        out.push(Action::GiveUp(why));
        out
    }

    fn ship_or_wait(&mut self, end: u64, sent: u64, now: u64) -> Vec<Action> {
        if sent < end {
            self.step = Step::Shipping { end, sent };
            vec![Action::Ship {
                from: sent,
                to: end,
            }]
        } else {
            self.step = Step::AwaitingFlush {
                end,
                deadline: now.saturating_add(self.flush_wait_us),
            };
            vec![Action::AwaitFlushed]
        }
    }

    /// Apply an input.
    pub fn step(&mut self, input: Input) -> Vec<Action> {
        match (self.step, input) {
            (_, Input::Failed(why)) => self.fail(why),
            (Step::Idle, Input::Requested { state, mode, sent }) => {
                if let Err(r) = may_hand_over(state, mode) {
                    self.step = Step::Failed;
                    return vec![Action::GiveUp(r.into())];
                }
                self.step = Step::StoppingWrites { sent };
                vec![Action::StopWrites]
            }
            (Step::StoppingWrites { sent }, Input::WritesStopped { end, now }) => {
                // Sent can run ahead of `end` only if the log shrank, which a
                // primary's never does.
                debug_assert!(sent <= end, "sent {sent} beyond the final log end {end}");
                self.ship_or_wait(end, sent.min(end), now)
            }
            (Step::Shipping { end, sent }, Input::Shipped { to, now }) => {
                debug_assert!(
                    to > sent && to <= end,
                    "shipped to {to} outside {sent}..={end}"
                );
                self.ship_or_wait(end, to.min(end), now)
            }
            (Step::AwaitingFlush { end, deadline }, Input::Flushed { lsn, now }) => {
                if lsn >= end {
                    self.step = Step::Marking { end };
                    vec![Action::MarkStandby]
                } else if now > deadline {
                    self.fail(HandoverFailure::FlushTimeout(end))
                } else {
                    self.step = Step::AwaitingFlush { end, deadline };
                    vec![Action::AwaitFlushed]
                }
            }
            (Step::Marking { end }, Input::Marked) => {
                self.step = Step::Telling { end };
                vec![Action::SendReady { end }]
            }
            (Step::Telling { end }, Input::Told) => {
                self.step = Step::Done { end };
                vec![Action::BecomeStandby]
            }
            // Anything else is out of order: ignore it, the step stays.
            _ => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(sent: u64) -> Handover {
        let mut h = Handover::new(1_000);
        let a = h.step(Input::Requested {
            state: PairState::Peer,
            mode: SyncMode::Nearsync,
            sent,
        });
        assert_eq!(a, vec![Action::StopWrites]);
        h
    }

    #[test]
    fn the_standby_is_told_only_after_it_has_everything_and_the_role_is_recorded() {
        let mut h = started(40);
        assert_eq!(
            h.step(Input::WritesStopped { end: 100, now: 0 }),
            vec![Action::Ship { from: 40, to: 100 }]
        );
        assert_eq!(
            h.step(Input::Shipped { to: 70, now: 1 }),
            vec![Action::Ship { from: 70, to: 100 }]
        );
        assert_eq!(
            h.step(Input::Shipped { to: 100, now: 2 }),
            vec![Action::AwaitFlushed]
        );
        // Out of order: a Told before the role is recorded changes nothing.
        assert_eq!(h.step(Input::Told), vec![]);
        assert_eq!(
            h.step(Input::Flushed { lsn: 99, now: 3 }),
            vec![Action::AwaitFlushed]
        );
        assert_eq!(
            h.step(Input::Flushed { lsn: 100, now: 4 }),
            vec![Action::MarkStandby]
        );
        assert_eq!(h.step(Input::Marked), vec![Action::SendReady { end: 100 }]);
        assert_eq!(h.step(Input::Told), vec![Action::BecomeStandby]);
        assert_eq!(h.step, Step::Done { end: 100 });
    }

    #[test]
    fn failures_give_the_writes_back_and_unmark_only_once_marked() {
        let mut h = started(100);
        assert_eq!(
            h.step(Input::WritesStopped { end: 100, now: 10 }),
            vec![Action::AwaitFlushed]
        );
        // The deadline counts from when the tail was on the socket.
        assert_eq!(
            h.step(Input::Flushed { lsn: 0, now: 1_010 }),
            vec![Action::AwaitFlushed]
        );
        assert_eq!(
            h.step(Input::Flushed { lsn: 0, now: 1_011 }),
            vec![
                Action::ResumeWrites,
                Action::GiveUp(HandoverFailure::FlushTimeout(100))
            ]
        );
        let mut h = started(100);
        h.step(Input::WritesStopped { end: 100, now: 0 });
        h.step(Input::Flushed { lsn: 100, now: 1 });
        h.step(Input::Marked);
        let a = h.step(Input::Failed(HandoverFailure::Tell("reset".into())));
        assert_eq!(a[..2], [Action::UnmarkStandby, Action::ResumeWrites]);
        assert_eq!(h.step, Step::Failed);
    }

    #[test]
    fn refused_outside_peer() {
        let mut h = Handover::new(1_000);
        let a = h.step(Input::Requested {
            state: PairState::RemoteCatchup,
            mode: SyncMode::Sync,
            sent: 0,
        });
        assert!(matches!(
            a[..],
            [Action::GiveUp(HandoverFailure::Refused(_))]
        ));
        assert_eq!(h.step, Step::Failed);
    }
}
