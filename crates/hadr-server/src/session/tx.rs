//! The transaction state a client sees, as a pure state machine.
//!
//! PostgreSQL's rules, which drivers depend on: a block opened by BEGIN runs
//! until COMMIT or ROLLBACK; an error inside it aborts it, and until it ends
//! every statement but COMMIT, ROLLBACK and ROLLBACK TO is refused (25P02);
//! COMMIT of an aborted block rolls back; BEGIN inside a block and COMMIT
//! outside one only warn. Several statements in one simple query outside a
//! block run as one implicit transaction.
//!
//! [`step`] decides; the session carries out the [`Run`] it returns (SQLite
//! calls, the commit's waits) and reports failures back as
//! [`Event::Failed`]. Nothing here touches a socket or a database.

use crate::errors::sqlstate;

/// Where the client's transaction stands (the ReadyForQuery status).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Status {
    /// No transaction block.
    #[default]
    Idle,
    /// Inside a block.
    Block,
    /// Inside a block that an error aborted.
    Failed,
}

/// The whole transaction state of a session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxState {
    /// Idle, in a block, or in an aborted block.
    pub status: Status,
    /// The block was opened by hadr for a multi-statement query string.
    pub implicit: bool,
    /// BEGIN READ ONLY or SET transaction_read_only in this block.
    pub read_only: bool,
}

/// What happened, or what the client asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// BEGIN / START TRANSACTION.
    Begin {
        /// READ ONLY was given.
        read_only: bool,
    },
    /// SQLite began the block that `Run::Open` asked for.
    Opened {
        /// The block is read-only.
        read_only: bool,
        /// hadr opened it for a multi-statement query.
        implicit: bool,
    },
    /// COMMIT / END.
    Commit,
    /// ROLLBACK / ABORT.
    Rollback,
    /// SAVEPOINT or RELEASE.
    Savepoint,
    /// ROLLBACK TO SAVEPOINT.
    RollbackTo,
    /// Any other statement, about to run.
    Statement,
    /// A statement failed, or what was run for it.
    Failed,
    /// A multi-statement query outside a block is about to run.
    ImplicitBegin,
    /// The multi-statement query has run (or stopped at an error).
    ImplicitEnd,
    /// SET transaction_read_only.
    SetReadOnly(bool),
}

/// A warning sent with a statement that goes ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// BEGIN inside a block.
    AlreadyInBlock,
    /// COMMIT or ROLLBACK outside a block.
    NoBlock,
}

impl Notice {
    /// SQLSTATE and message, as PostgreSQL words them.
    pub fn text(self) -> (&'static str, &'static str) {
        match self {
            Notice::AlreadyInBlock => (
                sqlstate::ACTIVE_TRANSACTION,
                "there is already a transaction in progress",
            ),
            Notice::NoBlock => (
                sqlstate::NO_ACTIVE_TRANSACTION,
                "there is no transaction in progress",
            ),
        }
    }
}

/// Why a statement is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The block is aborted (25P02).
    InFailedBlock,
    /// A savepoint command outside a block (25P01).
    SavepointOutsideBlock,
}

/// What the session must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Run {
    /// Nothing: answer with the command tag.
    Nothing,
    /// Run the statement itself.
    Statement,
    /// Begin a block on SQLite; report [`Event::Opened`] once it has.
    Open,
    /// Commit on SQLite and finish the commit (durability, standbys). The
    /// block is over whatever the outcome: a failed COMMIT rolls back.
    Commit,
    /// Roll back on SQLite and release the write permit.
    Rollback,
    /// Answer with an error; nothing runs.
    Refuse(Refusal),
}

/// The outcome of [`step`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The state once `run` has been carried out.
    pub next: TxState,
    /// What to do.
    pub run: Run,
    /// A warning to send first.
    pub notice: Option<Notice>,
}

/// The state machine: (state, event) → (state, what to do).
pub fn step(s: TxState, ev: Event) -> Decision {
    use Status::*;
    let go = |next: TxState, run: Run| Decision {
        next,
        run,
        notice: None,
    };
    let idle = TxState::default();
    let refuse = |r: Refusal| go(s, Run::Refuse(r));
    match (s.status, ev) {
        // An aborted block refuses everything that does not end or repair it.
        (
            Failed,
            Event::Begin { .. } | Event::Savepoint | Event::Statement | Event::ImplicitBegin,
        ) => refuse(Refusal::InFailedBlock),
        (Idle, Event::Begin { .. }) => go(s, Run::Open),
        (Block, Event::Begin { .. }) => Decision {
            notice: Some(Notice::AlreadyInBlock),
            ..go(s, Run::Nothing)
        },
        (Idle, Event::ImplicitBegin) => go(s, Run::Open),
        (Block, Event::ImplicitBegin) => go(s, Run::Nothing),
        (
            _,
            Event::Opened {
                read_only,
                implicit,
            },
        ) => go(
            TxState {
                status: Block,
                implicit,
                read_only,
            },
            Run::Nothing,
        ),
        (Idle, Event::Commit) => Decision {
            notice: Some(Notice::NoBlock),
            ..go(idle, Run::Nothing)
        },
        (Block, Event::Commit) => go(idle, Run::Commit),
        (Failed, Event::Commit) => go(idle, Run::Rollback),
        (Idle, Event::Rollback) => Decision {
            notice: Some(Notice::NoBlock),
            ..go(idle, Run::Rollback)
        },
        (Block | Failed, Event::Rollback) => go(idle, Run::Rollback),
        (Idle, Event::Savepoint | Event::RollbackTo) => refuse(Refusal::SavepointOutsideBlock),
        (Block, Event::Savepoint) => go(s, Run::Statement),
        // Rolling back to a savepoint repairs an aborted block.
        (Block | Failed, Event::RollbackTo) => go(TxState { status: Block, ..s }, Run::Statement),
        (Idle | Block, Event::Statement) => go(s, Run::Statement),
        (Block, Event::Failed) => go(
            TxState {
                status: Failed,
                ..s
            },
            Run::Nothing,
        ),
        (Idle | Failed, Event::Failed) => go(s, Run::Nothing),
        (Block, Event::ImplicitEnd) => go(idle, Run::Commit),
        (Idle | Failed, Event::ImplicitEnd) => go(idle, Run::Rollback),
        (Block, Event::SetReadOnly(read_only)) => go(TxState { read_only, ..s }, Run::Nothing),
        (Idle | Failed, Event::SetReadOnly(_)) => go(s, Run::Nothing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: TxState = TxState {
        status: Status::Idle,
        implicit: false,
        read_only: false,
    };
    const BLOCK: TxState = TxState {
        status: Status::Block,
        implicit: false,
        read_only: false,
    };
    const FAILED: TxState = TxState {
        status: Status::Failed,
        implicit: false,
        read_only: false,
    };

    /// Run events, carrying out Open as a successful BEGIN would.
    fn run(mut s: TxState, events: &[Event]) -> (TxState, Vec<Run>) {
        let mut runs = Vec::new();
        for ev in events {
            let d = step(s, *ev);
            runs.push(d.run);
            s = d.next;
        }
        (s, runs)
    }

    #[test]
    fn begin_opens_a_block_only_once_sqlite_has() {
        let d = step(IDLE, Event::Begin { read_only: true });
        assert_eq!((d.next, d.run), (IDLE, Run::Open));
        let d = step(
            d.next,
            Event::Opened {
                read_only: true,
                implicit: false,
            },
        );
        assert_eq!(d.next.status, Status::Block);
        assert!(d.next.read_only);
        // A BEGIN that failed on SQLite leaves the session idle.
        assert_eq!(step(IDLE, Event::Failed).next, IDLE);
    }

    #[test]
    fn begin_in_a_block_and_commit_outside_one_only_warn() {
        let d = step(BLOCK, Event::Begin { read_only: false });
        assert_eq!(
            (d.next, d.run, d.notice),
            (BLOCK, Run::Nothing, Some(Notice::AlreadyInBlock))
        );
        let d = step(IDLE, Event::Commit);
        assert_eq!(
            (d.next, d.run, d.notice),
            (IDLE, Run::Nothing, Some(Notice::NoBlock))
        );
        let d = step(IDLE, Event::Rollback);
        assert_eq!(
            (d.next, d.run, d.notice),
            (IDLE, Run::Rollback, Some(Notice::NoBlock))
        );
    }

    #[test]
    fn an_error_aborts_the_block_until_it_ends() {
        let (s, _) = run(BLOCK, &[Event::Statement, Event::Failed]);
        assert_eq!(s, FAILED);
        for ev in [
            Event::Statement,
            Event::Savepoint,
            Event::Begin { read_only: false },
        ] {
            assert_eq!(
                step(s, ev).run,
                Run::Refuse(Refusal::InFailedBlock),
                "{ev:?}"
            );
            assert_eq!(step(s, ev).next, FAILED);
        }
        // COMMIT of an aborted block rolls back.
        assert_eq!(step(s, Event::Commit), step(s, Event::Rollback));
        assert_eq!(step(s, Event::Commit).next, IDLE);
        // An error outside a block changes nothing.
        assert_eq!(step(IDLE, Event::Failed).next, IDLE);
    }

    #[test]
    fn rollback_to_repairs_an_aborted_block_unless_it_fails() {
        let d = step(FAILED, Event::RollbackTo);
        assert_eq!((d.next, d.run), (BLOCK, Run::Statement));
        assert_eq!(step(d.next, Event::Failed).next, FAILED);
        assert_eq!(
            step(IDLE, Event::RollbackTo).run,
            Run::Refuse(Refusal::SavepointOutsideBlock)
        );
        assert_eq!(
            step(IDLE, Event::Savepoint).run,
            Run::Refuse(Refusal::SavepointOutsideBlock)
        );
        assert_eq!(step(BLOCK, Event::Savepoint).run, Run::Statement);
    }

    #[test]
    fn commit_ends_the_block_whatever_its_outcome() {
        let ro = TxState {
            read_only: true,
            ..BLOCK
        };
        let d = step(ro, Event::Commit);
        assert_eq!((d.next, d.run), (IDLE, Run::Commit));
    }

    #[test]
    fn implicit_transactions_commit_or_roll_back_at_the_end() {
        assert_eq!(step(IDLE, Event::ImplicitBegin).run, Run::Open);
        for (last, end) in [
            (Event::Statement, Run::Commit),
            (Event::Failed, Run::Rollback),
        ] {
            let opened = Event::Opened {
                read_only: false,
                implicit: true,
            };
            let (s, runs) = run(IDLE, &[opened, Event::Statement, last, Event::ImplicitEnd]);
            assert_eq!(s, IDLE);
            assert_eq!(runs.last(), Some(&end), "after {last:?}");
        }
    }

    #[test]
    fn read_only_is_a_property_of_the_block() {
        let d = step(BLOCK, Event::SetReadOnly(true));
        assert!(d.next.read_only);
        assert!(!step(IDLE, Event::SetReadOnly(true)).next.read_only);
        assert!(!step(d.next, Event::Rollback).next.read_only);
    }

    #[test]
    fn no_event_panics_in_any_state() {
        let states = [IDLE, BLOCK, FAILED];
        let events = [
            Event::Begin { read_only: false },
            Event::Opened {
                read_only: false,
                implicit: true,
            },
            Event::Commit,
            Event::Rollback,
            Event::Savepoint,
            Event::RollbackTo,
            Event::Statement,
            Event::Failed,
            Event::ImplicitBegin,
            Event::ImplicitEnd,
            Event::SetReadOnly(true),
        ];
        for s in states {
            for e in events {
                let d = step(s, e);
                // Only an opened block or a repaired one leaves a block state
                // other than the one it came from.
                if d.next.status != s.status {
                    assert!(
                        matches!(
                            (s.status, d.next.status, e),
                            (_, Status::Idle, _)
                                | (_, Status::Block, Event::Opened { .. } | Event::RollbackTo)
                                | (Status::Block, Status::Failed, Event::Failed)
                        ),
                        "{s:?} {e:?} -> {d:?}"
                    );
                }
            }
        }
    }
}
