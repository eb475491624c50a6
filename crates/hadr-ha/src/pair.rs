//! The HADR pair state machine, as DB2 defines it (docs/hadr-semantics.md
//! §States), seen from the primary for one standby.
//!
//! Pure: `(state, event) → (state, actions)`, with time passed in as
//! microseconds; no I/O, no clock reads. A driver feeds it socket events and
//! ticks and carries out the actions. The same type answers the commit gate's
//! question "may a commit at LSN x return now?" for its sync mode.

use serde::{Deserialize, Serialize};

/// When a commit may return (docs/hadr-semantics.md §Sync modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SyncMode {
    /// Standby has the record on disk.
    Sync,
    /// Standby has received the record.
    Nearsync,
    /// Record handed to the socket.
    Async,
    /// Standby never gates commits.
    Superasync,
}

/// A word that names no sync mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a sync mode (SYNC, NEARSYNC, ASYNC, SUPERASYNC)")]
pub struct UnknownSyncMode(pub String);

impl std::str::FromStr for SyncMode {
    type Err = UnknownSyncMode;
    fn from_str(s: &str) -> Result<Self, UnknownSyncMode> {
        match s.to_ascii_uppercase().as_str() {
            "SYNC" => Ok(SyncMode::Sync),
            "NEARSYNC" => Ok(SyncMode::Nearsync),
            "ASYNC" => Ok(SyncMode::Async),
            "SUPERASYNC" => Ok(SyncMode::Superasync),
            _ => Err(UnknownSyncMode(s.to_string())),
        }
    }
}

/// DB2's states of a primary–standby pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PairState {
    /// No connection; waiting for the standby.
    RemoteCatchupPending,
    /// Connected; the standby is being sent the backlog. Commits do not wait.
    RemoteCatchup,
    /// Caught up; the sync mode gates commits.
    Peer,
    /// Connection lost in PEER with a peer window: commits block until the
    /// standby returns or the window ends.
    DisconnectedPeer,
}

/// Settings of a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PairConfig {
    /// Sync mode in effect for this standby (auxiliaries are always SUPERASYNC).
    pub mode: SyncMode,
    /// Silence longer than this ends the connection (µs).
    pub timeout_us: u64,
    /// Peer window (µs; 0 = none). Only SYNC and NEARSYNC use it.
    pub peer_window_us: u64,
    /// Longest a commit may wait for this standby in PEER before it is detached (µs; 0 = no limit).
    pub peer_wait_limit_us: u64,
}

impl PairConfig {
    /// Heartbeat interval: min(timeout/4, peer_window/4), as in DB2 (capped at 30 s).
    pub fn heartbeat_us(&self) -> u64 {
        let mut h = (self.timeout_us / 4).min(30_000_000);
        if self.window_applies() {
            h = h.min(self.peer_window_us / 4);
        }
        h.max(1_000)
    }

    fn window_applies(&self) -> bool {
        self.peer_window_us > 0 && matches!(self.mode, SyncMode::Sync | SyncMode::Nearsync)
    }
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A standby connected and completed the handshake.
    Connected {
        /// Now.
        now: u64,
        /// The standby's log end: everything below it needs no sending.
        start: u64,
    },
    /// Any message arrived from the standby (it is alive).
    Heard {
        /// Now.
        now: u64,
    },
    /// The standby acknowledged positions.
    Ack {
        /// Now.
        now: u64,
        /// Received.
        received: u64,
        /// Flushed.
        flushed: u64,
        /// Replayed.
        replayed: u64,
    },
    /// Records up to `lsn` were handed to the socket.
    Sent {
        /// End of what was sent.
        lsn: u64,
    },
    /// The sender has sent everything the primary's log holds (`end`).
    CaughtUp {
        /// Now.
        now: u64,
        /// Primary log end at that moment.
        end: u64,
    },
    /// The connection broke (socket error). `clean` = the standby said goodbye.
    Lost {
        /// Now.
        now: u64,
        /// A clean shutdown of the standby does not open the peer window.
        clean: bool,
    },
    /// Time passes.
    Tick {
        /// Now.
        now: u64,
        /// Since when the oldest waiting commit has waited (None = none waits).
        oldest_commit_wait_since: Option<u64>,
    },
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send a heartbeat carrying this peer-window end (µs; 0 = none).
    Heartbeat {
        /// Peer window end.
        peer_window_end: u64,
    },
    /// Close the connection, saying why.
    Disconnect {
        /// Reason for the logs and status.
        reason: DisconnectReason,
    },
    /// Waiting commits should re-check the gate (positions or state changed).
    WakeCommits,
    /// The state changed (for the log at INFO).
    StateChanged {
        /// Old state.
        from: PairState,
        /// New state.
        to: PairState,
    },
}

/// Why the pair ends a connection that the socket still holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DisconnectReason {
    /// Nothing heard for `hadr_timeout`.
    #[error("nothing heard from the standby for {ms} ms (hadr_timeout)")]
    Silent {
        /// The timeout, in ms.
        ms: u64,
    },
    /// A commit waited longer than `hadr_peer_wait_limit` in PEER.
    #[error(
        "a commit waited more than {ms} ms for the standby (hadr_peer_wait_limit): detaching it"
    )]
    PeerWaitLimit {
        /// The limit, in ms.
        ms: u64,
    },
}

/// What one standby says to a commit that is durable locally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitWait {
    /// The commit may return as far as this standby is concerned.
    Release,
    /// Hold it for an ack (or a state change).
    Hold,
}

/// Primary-side view of one standby.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Pair {
    /// Current state.
    pub state: PairState,
    #[serde(skip)]
    config: PairConfigSer,
    /// Highest LSN handed to the socket.
    pub sent: u64,
    /// Standby's received position.
    pub received: u64,
    /// Standby's flushed position.
    pub flushed: u64,
    /// Standby's replayed position.
    pub replayed: u64,
    /// When anything was last heard (µs).
    pub last_heard: u64,
    /// When the last heartbeat was sent (µs).
    pub last_heartbeat: u64,
    /// The peer window end promised so far (µs; 0 = none).
    pub peer_window_end: u64,
    /// Heartbeats expected and missed since the connection was made.
    pub heartbeats_missed: u64,
    /// When the current connect status began (µs).
    pub status_since: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
struct PairConfigSer(Option<PairConfig>);

impl Pair {
    /// A pair waiting for its standby.
    pub fn new(config: PairConfig, now: u64) -> Pair {
        Pair {
            state: PairState::RemoteCatchupPending,
            config: PairConfigSer(Some(config)),
            sent: 0,
            received: 0,
            flushed: 0,
            replayed: 0,
            last_heard: now,
            last_heartbeat: now,
            peer_window_end: 0,
            heartbeats_missed: 0,
            status_since: now,
        }
    }

    /// Whether the replication connection is up (DB2's HADR_CONNECT_STATUS).
    pub fn connect_status(&self) -> crate::ConnectStatus {
        match self.state {
            PairState::RemoteCatchupPending | PairState::DisconnectedPeer => {
                crate::ConnectStatus::Disconnected
            }
            PairState::RemoteCatchup | PairState::Peer => crate::ConnectStatus::Connected,
        }
    }

    /// The pair's settings.
    pub fn config(&self) -> PairConfig {
        // Always set by `new`; the Option only exists so serde can skip it.
        self.config.0.unwrap_or(PairConfig {
            mode: SyncMode::Superasync,
            timeout_us: 0,
            peer_window_us: 0,
            peer_wait_limit_us: 0,
        })
    }

    fn goto(&mut self, to: PairState, now: u64, out: &mut Vec<Action>) {
        if self.state != to {
            out.push(Action::StateChanged {
                from: self.state,
                to,
            });
            self.state = to;
            self.status_since = now;
            out.push(Action::WakeCommits);
        }
    }

    fn lose(&mut self, now: u64, clean: bool, out: &mut Vec<Action>) {
        let cfg = self.config();
        // A window opened by an earlier loss stays open; a new one opens only
        // when an unclean loss hits PEER while the promise is still in force.
        let window = self.state == PairState::DisconnectedPeer
            || (self.state == PairState::Peer
                && !clean
                && cfg.window_applies()
                && self.peer_window_end > now);
        let to = if window {
            PairState::DisconnectedPeer
        } else {
            PairState::RemoteCatchupPending
        };
        self.goto(to, now, out);
    }

    /// Apply an event.
    pub fn step(&mut self, ev: Event) -> Vec<Action> {
        let cfg = self.config();
        let mut out = Vec::new();
        match ev {
            Event::Connected { now, start } => {
                self.last_heard = now;
                self.last_heartbeat = now;
                self.heartbeats_missed = 0;
                // A standby that connects already caught up must be able to
                // enter PEER without waiting for the next write.
                self.sent = start;
                self.goto(PairState::RemoteCatchup, now, &mut out);
            }
            Event::Heard { now } => {
                self.last_heard = self.last_heard.max(now);
            }
            Event::Ack {
                now,
                received,
                flushed,
                replayed,
            } => {
                self.last_heard = self.last_heard.max(now);
                // Positions never move backwards within a connection.
                self.received = self.received.max(received);
                self.flushed = self.flushed.max(flushed);
                self.replayed = self.replayed.max(replayed);
                out.push(Action::WakeCommits);
            }
            Event::Sent { lsn } => {
                if self.state != PairState::RemoteCatchupPending
                    && self.state != PairState::DisconnectedPeer
                {
                    self.sent = self.sent.max(lsn);
                    out.push(Action::WakeCommits);
                }
            }
            Event::CaughtUp { now, end } => {
                // SUPERASYNC never enters PEER (DB2): shipping always runs as catch-up.
                if self.state == PairState::RemoteCatchup
                    && self.sent >= end
                    && cfg.mode != SyncMode::Superasync
                {
                    if cfg.window_applies() {
                        self.peer_window_end = now + cfg.peer_window_us;
                    }
                    self.goto(PairState::Peer, now, &mut out);
                }
            }
            Event::Lost { now, clean } => {
                if self.state != PairState::RemoteCatchupPending {
                    self.lose(now, clean, &mut out);
                }
            }
            Event::Tick {
                now,
                oldest_commit_wait_since,
            } => {
                match self.state {
                    PairState::RemoteCatchup | PairState::Peer => {
                        if now.saturating_sub(self.last_heard) > cfg.timeout_us {
                            out.push(Action::Disconnect {
                                reason: DisconnectReason::Silent {
                                    ms: cfg.timeout_us / 1000,
                                },
                            });
                            self.lose(now, false, &mut out);
                        } else if self.state == PairState::Peer
                            && cfg.peer_wait_limit_us > 0
                            && oldest_commit_wait_since
                                .is_some_and(|t| now.saturating_sub(t) > cfg.peer_wait_limit_us)
                        {
                            out.push(Action::Disconnect {
                                reason: DisconnectReason::PeerWaitLimit {
                                    ms: cfg.peer_wait_limit_us / 1000,
                                },
                            });
                            self.lose(now, false, &mut out);
                        } else if now.saturating_sub(self.last_heartbeat) >= cfg.heartbeat_us() {
                            self.heartbeats_missed += u64::from(
                                now.saturating_sub(self.last_heard) >= cfg.heartbeat_us(),
                            );
                            self.last_heartbeat = now;
                            if self.state == PairState::Peer && cfg.window_applies() {
                                // The promise only moves forward while the standby answers.
                                self.peer_window_end = self
                                    .peer_window_end
                                    .max(self.last_heard + cfg.peer_window_us);
                            }
                            // A promise holds only in PEER: outside it a loss opens no
                            // window, so a standby must not take an old end for one.
                            out.push(Action::Heartbeat {
                                peer_window_end: if self.state == PairState::Peer {
                                    self.peer_window_end
                                } else {
                                    0
                                },
                            });
                        }
                    }
                    PairState::DisconnectedPeer => {
                        if now >= self.peer_window_end {
                            self.goto(PairState::RemoteCatchupPending, now, &mut out);
                        }
                    }
                    PairState::RemoteCatchupPending => {}
                }
            }
        }
        out
    }

    /// May a commit whose record ends at `lsn` return, as far as this standby goes?
    pub fn commit_wait(&self, lsn: u64) -> CommitWait {
        match self.state {
            PairState::Peer => {
                let done = match self.config().mode {
                    SyncMode::Sync => self.flushed >= lsn,
                    SyncMode::Nearsync => self.received >= lsn,
                    SyncMode::Async => self.sent >= lsn,
                    SyncMode::Superasync => true,
                };
                if done {
                    CommitWait::Release
                } else {
                    CommitWait::Hold
                }
            }
            // The peer window: nothing commits until the standby is back or the window ends.
            PairState::DisconnectedPeer => CommitWait::Hold,
            PairState::RemoteCatchupPending | PairState::RemoteCatchup => CommitWait::Release,
        }
    }
}

#[cfg(test)]
#[path = "pair_tests.rs"]
mod tests;
