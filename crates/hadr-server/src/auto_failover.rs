//! The driver of automatic failover (docs/failover.md): reads and writes
//! the arbiter, watches the replication link and the monotonic clock, feeds
//! what it saw to `hadr_ha::failover`'s rules, and carries out what they
//! decide. A primary renews its lease, records a lost standby out of sync
//! before it acknowledges alone, lets the commit wait release such commits
//! only until its lease deadline, and fences itself when a newer epoch holds
//! the record; a standby takes the lease over and promotes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hadr_admin_api::ArbiterView;
use hadr_admin_api::ClusterMember;
use hadr_arbiter::{
    Arbiter, ArbiterError, ArbiterInfo, LeaseRecord, OutOfSync, RecordedStandby, Stored, Version,
};
use hadr_ha::candidates::Recorded;
use hadr_ha::failover::{
    Hold, Member, PrimaryAction, PrimaryEvent, PrimaryFailover, Record, StandbyAction,
    StandbyEvent, StandbyFailover,
};
use hadr_ha::{ConnectStatus, GuardEvent, PairState};
use hadr_replication::standby::Leader;
use hadr_replication::Standbys;
use hadr_replication::{mono_micros, now_micros};
use tracing::warn;

use crate::failover_state::FailoverShared;
use crate::node::{Node, Repl};
use crate::roles::RoleChange;

/// How often the driver looks (the rules decide how often the arbiter is called).
const TICK: Duration = Duration::from_millis(25);

/// Longest wait for one arbiter call.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

fn record(s: &Stored) -> Record {
    Record {
        version: s.version.0.clone(),
        holder: s.record.holder.clone(),
        epoch: s.record.epoch,
        out_of_sync: s
            .record
            .out_of_sync
            .iter()
            .map(|o| (o.standby.clone(), o.from_lsn))
            .collect(),
        standbys: s.record.standbys.as_ref().map(|v| {
            v.iter()
                .map(|r| Recorded {
                    name: r.standby.clone(),
                    sync: r.sync,
                    flushed_lsn: r.flushed_lsn,
                })
                .collect()
        }),
        // A record that states no timing (an older writer) or an unusable
        // one leaves the reader's own.
        timing: hadr_ha::lease::LeaseTiming::new(s.record.lease_ttl_us, s.record.lease_margin_us)
            .ok(),
    }
}

/// The record's standbys, for status (the cluster's actual members).
fn cluster_members(r: &LeaseRecord) -> Vec<ClusterMember> {
    r.standbys
        .iter()
        .flatten()
        .map(|s| ClusterMember {
            standby: s.standby.clone(),
            sync: s.sync,
            state: s.state.clone(),
            flushed_lsn: s.flushed_lsn,
        })
        .collect()
}

/// One arbiter call with a deadline: a hung backend reads as down.
async fn call<T>(
    f: impl std::future::Future<Output = Result<T, ArbiterError>>,
) -> Result<T, ArbiterError> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(r) => r,
        Err(_) => Err(ArbiterError::Timeout {
            endpoint: "arbiter".into(),
            timeout: CALL_TIMEOUT,
        }),
    }
}

/// A record this node writes: its name, an epoch, the marks, its lease
/// timing, its standbys (a take-over lists none yet: nobody may promote from
/// a record whose holder has not said whom it waits for); a token above
/// every token seen and a fresh nonce (two writes never have the same body).
fn lease_record(
    me: &str,
    epoch: u64,
    token: u64,
    out_of_sync: &[(String, u64)],
    timing: hadr_ha::lease::LeaseTiming,
    standbys: Vec<RecordedStandby>,
    end_lsn: u64,
) -> LeaseRecord {
    LeaseRecord {
        lease_ttl_us: timing.ttl_us,
        lease_margin_us: timing.margin_us,
        standbys: Some(standbys),
        end_lsn,
        holder: Some(me.to_string()),
        epoch,
        token,
        nonce: now_micros() ^ (u64::from(std::process::id()) << 40),
        out_of_sync: out_of_sync
            .iter()
            .map(|(standby, from_lsn)| OutOfSync {
                standby: standby.clone(),
                from_lsn: *from_lsn,
            })
            .collect(),
        written_at_micros: now_micros(),
    }
}

/// The lease timing, or None (logged) if the configuration makes it unusable
/// (config validation refuses such a node at start; this is the last guard).
fn lease_timing(node: &Node) -> Option<hadr_ha::lease::LeaseTiming> {
    node.config
        .lease_timing()
        .map_err(|e| warn!(error = %e, "automatic failover off"))
        .ok()
}

/// Longest wait for the start-up check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// An arbiter automation must not use: every call fails with why. The rules
/// then behave as with an unreachable arbiter — a primary never
/// acknowledges alone (it serves while its standby is in PEER), a standby
/// never promotes — which is the only safe way to "not automate" once the
/// other node may be automating.
struct Refused(String, ArbiterInfo);

#[async_trait::async_trait]
impl Arbiter for Refused {
    async fn read(&self) -> Result<Option<Stored>, ArbiterError> {
        Err(self.error())
    }
    async fn write(&self, _: Option<&Version>, _: &LeaseRecord) -> Result<Stored, ArbiterError> {
        Err(self.error())
    }
    fn probe(&self) -> Box<dyn Arbiter> {
        Box::new(Refused(self.0.clone(), self.1.clone()))
    }
    fn info(&self) -> ArbiterInfo {
        self.1.clone()
    }
}

impl Refused {
    fn error(&self) -> ArbiterError {
        ArbiterError::Unavailable {
            endpoint: self.1.endpoint.clone(),
            message: format!("automation is off: {}", self.0),
        }
    }
}

/// `hadr arbiter check` at start-up (DB2's `samtb_cld` step). A store that
/// ignores conditional writes, refused credentials or a record that is not
/// hadr's are configuration errors that waiting will not mend: automation
/// is switched off and status says why. An unreachable or busy arbiter (or
/// the other node checking at the same moment) is not: the rules handle an
/// arbiter that is down.
async fn checked(arbiter: Arc<dyn Arbiter>, shared: &FailoverShared) -> Arc<dyn Arbiter> {
    let result = match tokio::time::timeout(CHECK_TIMEOUT, hadr_arbiter::check(&*arbiter)).await {
        Ok(r) => r.map(|_| ()),
        Err(_) => Err(ArbiterError::Timeout {
            endpoint: arbiter.info().endpoint,
            timeout: CHECK_TIMEOUT,
        }),
    };
    match result {
        Err(
            e @ (ArbiterError::NotConditional(_)
            | ArbiterError::Credentials(_)
            | ArbiterError::Corrupt { .. }),
        ) => {
            let why = format!("the arbiter failed its start-up check: {e}");
            tracing::error!(error = %e, "automatic failover is OFF: the arbiter failed its start-up check (fix it and restart the node; `hadr arbiter check` tells more)");
            shared.with_status(|s| s.disabled = Some(why.clone()));
            shared.decide(why.clone());
            Arc::new(Refused(why, arbiter.info()))
        }
        Err(e) => {
            warn!(error = %e, "the arbiter's start-up check did not complete; automation goes on and treats it as down until it answers");
            arbiter
        }
        Ok(()) => arbiter,
    }
}

/// Run a primary's side until the task is aborted.
pub async fn run_primary(node: Arc<Node>, arbiter: Arc<dyn Arbiter>, shared: Arc<FailoverShared>) {
    let arbiter = checked(arbiter, &shared).await;
    let Repl::Primary { standbys, .. } = &node.repl else {
        return;
    };
    let standbys = standbys.clone();
    let Some(timing) = lease_timing(&node) else {
        return;
    };
    let me = node.config.node_name();
    let sync = matches!(
        node.config.hadr_syncmode.0,
        hadr_ha::SyncMode::Sync | hadr_ha::SyncMode::Nearsync
    );
    // The principal (first entry) is waited for in SYNC or NEARSYNC; the
    // auxiliaries never are (they are always SUPERASYNC).
    let members = node
        .config
        .targets()
        .into_iter()
        .enumerate()
        .map(|(i, t)| match i == 0 && sync {
            true => Member::sync(t),
            false => Member::auxiliary(t),
        })
        .collect();
    let epoch = node.engine.control().epoch;
    let mut rules = PrimaryFailover::new(me.clone(), epoch, timing, members);
    rules.handed_over_by = node.config.handed_over_by.clone();
    if let Some(p) = &rules.handed_over_by {
        shared.decide(format!(
            "promoted by a graceful takeover from {p}: first act, writing the arbiter's record in epoch {epoch} over {p}'s"
        ));
    }
    let mut token = 0u64;
    let mut in_peer: Vec<bool> = vec![false; rules.standbys.len()];
    let mut opened = false;
    shared.with_status(|s| {
        s.arbiter = Some(view(arbiter.info()));
        s.side = "primary".into();
    });
    loop {
        if node.demoting.load(Ordering::SeqCst) {
            // Handing over (or being fenced): writes stopped for good unless
            // the hand-over fails. The successor writes the record next; a
            // renewal racing its write would only find a newer epoch and
            // fence a node that is already leaving. The lease runs out by itself.
            tokio::time::sleep(TICK).await;
            continue;
        }
        let now = mono_micros();
        let mut todo = Vec::new();
        for (i, slot) in standbys.slots().iter().enumerate() {
            let peer_now = slot.pair.state == PairState::Peer;
            if in_peer.get(i).is_some_and(|p| *p != peer_now) {
                in_peer[i] = peer_now;
                rules.step(PrimaryEvent::StandbyPeer {
                    standby: slot.address.clone(),
                    in_peer: peer_now,
                    lsn: node.engine.log().end_lsn(),
                });
            }
        }
        todo.extend(rules.step(PrimaryEvent::Tick { now }));
        while let Some(action) = todo.pop() {
            // Before any call: the rules may just have stopped trusting a
            // mark this call removes, and its answer may never come.
            standbys.set_alone_until(rules.alone_until(mono_micros()));
            shared
                .lease_until
                .store(lease_until(&rules, &timing), Ordering::SeqCst);
            let ev = match action {
                PrimaryAction::Read => match call(arbiter.read()).await {
                    Ok(r) => {
                        if let Some(s) = &r {
                            token = token.max(s.record.token);
                        }
                        PrimaryEvent::Read {
                            now: mono_micros(),
                            record: r.as_ref().map(record),
                        }
                    }
                    Err(e) => arbiter_down(&shared, e, primary_down),
                },
                PrimaryAction::Write {
                    expected,
                    out_of_sync,
                } => {
                    token += 1;
                    let rec = lease_record(
                        &me,
                        epoch,
                        token,
                        &out_of_sync,
                        timing,
                        recorded_standbys(&rules, &standbys),
                        node.engine.log().end_lsn(),
                    );
                    let sent = mono_micros();
                    let expected = expected.map(Version);
                    match call(arbiter.write(expected.as_ref(), &rec)).await {
                        Ok(stored) => {
                            shared.lease_writes.fetch_add(1, Ordering::Relaxed);
                            shared.with_status(|s| {
                                s.arbiter_ok = true;
                                s.arbiter_error = None;
                                s.members = cluster_members(&stored.record);
                                s.holder_end_lsn = stored.record.end_lsn;
                            });
                            PrimaryEvent::Wrote {
                                sent,
                                version: stored.version.0,
                                out_of_sync,
                            }
                        }
                        Err(ArbiterError::Conflict) => {
                            shared.decide("the arbiter's record changed under our write: the lease is not ours".into());
                            PrimaryEvent::Conflict
                        }
                        Err(e) => arbiter_down(&shared, e, primary_down),
                    }
                }
                PrimaryAction::Fence { by_epoch } => {
                    shared.decide(format!(
                        "the arbiter's record belongs to epoch {by_epoch}: this primary was superseded"
                    ));
                    node.on_peer(GuardEvent::EpochReported { epoch: by_epoch });
                    continue;
                }
            };
            todo.extend(rules.step(ev));
        }
        let now = mono_micros();
        let alone = rules.may_ack_alone(now);
        let deadline = rules
            .held
            .as_ref()
            .map(|(_, sent)| timing.holder_deadline(*sent))
            .unwrap_or(0);
        standbys.set_alone_until(rules.alone_until(now));
        shared
            .lease_until
            .store(lease_until(&rules, &timing), Ordering::SeqCst);
        shared
            .refuse_writes
            .store(!rules.may_write(now), Ordering::SeqCst);
        if rules.holds_lease(now) && !opened {
            opened = true;
            // A restarted primary that got its own lease back may write.
            node.on_peer(GuardEvent::LeaseHeld);
        }
        shared.with_status(|s| {
            s.arbiter_ok = rules.arbiter_ok;
            s.holder = rules.held.as_ref().map(|_| me.clone());
            s.epoch = epoch;
            s.lease_left_ms = deadline.saturating_sub(now) / 1000;
            s.acknowledging_alone = alone;
            s.may_write = rules.may_write(now);
            s.out_of_sync = rules.recorded_out_of_sync.clone();
            s.alone_hold = rules.alone_hold(now).map(|h| h.to_string());
        });
        tokio::time::sleep(TICK).await;
    }
}

/// This primary's standbys as the record lists them: whom it waits for
/// (the rules' members) and how far each is (its pair).
fn recorded_standbys(rules: &PrimaryFailover, standbys: &Standbys) -> Vec<RecordedStandby> {
    let slots = standbys.slots();
    rules
        .standbys
        .iter()
        .map(|m| {
            let pair = slots.iter().find(|s| s.address == m.name).map(|s| &s.pair);
            RecordedStandby {
                standby: m.name.clone(),
                sync: m.sync,
                state: pair
                    .map(|p| hadr_admin_api::spelling(&p.state))
                    .unwrap_or_default(),
                flushed_lsn: pair.map(|p| p.flushed).unwrap_or(0),
            }
        })
        .collect()
}

/// Until when the lease is ours (0: it is not, or we were superseded).
fn lease_until(rules: &PrimaryFailover, timing: &hadr_ha::lease::LeaseTiming) -> u64 {
    match &rules.held {
        Some((_, sent)) if !rules.superseded => timing.holder_deadline(*sent),
        _ => 0,
    }
}

fn arbiter_down<E>(shared: &FailoverShared, e: ArbiterError, down: fn(u64) -> E) -> E {
    shared.arbiter_failures.fetch_add(1, Ordering::Relaxed);
    let msg = e.to_string();
    shared.with_status(|s| {
        s.arbiter_ok = false;
        s.arbiter_error = Some(msg.clone());
    });
    shared.decide(format!("the arbiter is unreachable: {msg}"));
    down(mono_micros())
}

fn primary_down(now: u64) -> PrimaryEvent {
    PrimaryEvent::ArbiterDown { now }
}

fn standby_down(now: u64) -> StandbyEvent {
    StandbyEvent::ArbiterDown { now }
}

/// Run a standby's side until the task is aborted (or it promotes).
pub async fn run_standby(node: Arc<Node>, arbiter: Arc<dyn Arbiter>, shared: Arc<FailoverShared>) {
    let arbiter = checked(arbiter, &shared).await;
    let Repl::Standby { status, .. } = &node.repl else {
        return;
    };
    let status = status.clone();
    let Some(timing) = lease_timing(&node) else {
        return;
    };
    let me = node.config.node_name();
    let control = node.engine.control();
    let sync = matches!(
        node.config.hadr_syncmode.0,
        hadr_ha::SyncMode::Sync | hadr_ha::SyncMode::Nearsync
    );
    let mut rules = StandbyFailover::new(
        me.clone(),
        timing,
        sync,
        control.epoch.max(control.highest_seen_epoch),
    );
    rules.min_promotion_interval_us = node.config.min_promotion_interval.0.as_micros() as u64;
    rules.last_promotion = node.events.last_promotion();
    let mut token = 0u64;
    let mut connected = false;
    let mut caught_up = false;
    let mut last_hold: Option<Hold> = None;
    shared.with_status(|s| {
        s.arbiter = Some(view(arbiter.info()));
        s.side = "standby".into();
    });
    loop {
        let link = status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .link
            .clone();
        let up = link.connect_status == ConnectStatus::Connected;
        let our_end = node.engine.log().end_lsn();
        if up && !connected {
            rules.step(StandbyEvent::LinkUp);
        }
        if up {
            caught_up = our_end >= link.primary_end_lsn;
        }
        if !up && connected {
            rules.step(StandbyEvent::LinkLost { in_peer: caught_up });
        }
        connected = up;
        let c = node.engine.control();
        rules.step(StandbyEvent::EpochSeen(c.epoch.max(c.highest_seen_epoch)));
        rules.step(StandbyEvent::Paused(shared.paused.load(Ordering::SeqCst)));
        let mut todo = rules.step(StandbyEvent::Tick { now: mono_micros() });
        while let Some(action) = todo.pop() {
            let ev = match action {
                StandbyAction::Read => match call(arbiter.read()).await {
                    Ok(r) => {
                        if let Some(s) = &r {
                            token = token.max(s.record.token);
                        }
                        publish_leader(&node, r.as_ref());
                        shared.with_status(|s| {
                            s.arbiter_ok = true;
                            s.arbiter_error = None;
                            s.members = r
                                .as_ref()
                                .map(|x| cluster_members(&x.record))
                                .unwrap_or_default();
                            s.holder_end_lsn = r.as_ref().map(|x| x.record.end_lsn).unwrap_or(0);
                            s.holder = r.as_ref().and_then(|x| x.record.holder.clone());
                            s.epoch = r.as_ref().map(|x| x.record.epoch).unwrap_or(0);
                            s.out_of_sync = r
                                .as_ref()
                                .map(|x| record(x).out_of_sync)
                                .unwrap_or_default();
                        });
                        StandbyEvent::Read {
                            now: mono_micros(),
                            record: r.as_ref().map(record),
                        }
                    }
                    Err(e) => arbiter_down(&shared, e, standby_down),
                },
                StandbyAction::TakeOver { expected, epoch } => {
                    token += 1;
                    let rec = lease_record(
                        &me,
                        epoch,
                        token,
                        &[],
                        timing,
                        Vec::new(),
                        node.engine.log().end_lsn(),
                    );
                    let expected = expected.map(Version);
                    shared.decide(format!(
                        "the lease ran out unchanged and this standby was in PEER: taking the arbiter in epoch {epoch}"
                    ));
                    match call(arbiter.write(expected.as_ref(), &rec)).await {
                        Ok(_) => {
                            shared.lease_writes.fetch_add(1, Ordering::Relaxed);
                            StandbyEvent::Won { now: mono_micros() }
                        }
                        Err(ArbiterError::Conflict) => StandbyEvent::Lost,
                        Err(e) => arbiter_down(&shared, e, standby_down),
                    }
                }
                StandbyAction::Promote { epoch } => {
                    shared.decide(format!("won the arbiter in epoch {epoch}: promoting"));
                    node.set_activity(
                        "automatic failover",
                        Some(&format!("won the arbiter in epoch {epoch}; promoting")),
                    );
                    node.stop_for(RoleChange::Promote {
                        end: None,
                        epoch: Some(epoch),
                        predecessor: None,
                    });
                    return;
                }
            };
            todo.extend(rules.step(ev));
        }
        // A new reason is a decision; the same reason with a new countdown is not.
        let kind = |h: &Option<Hold>| h.as_ref().map(std::mem::discriminant);
        if kind(&rules.hold) != kind(&last_hold) {
            if let Some(h) = &rules.hold {
                shared.decide(h.to_string());
            }
        }
        last_hold = rules.hold.clone();
        shared.with_status(|s| {
            s.paused = rules.paused;
            s.hold = rules.hold.as_ref().map(|h| h.to_string());
        });
        tokio::time::sleep(TICK).await;
    }
}

/// Tell the receiver which node the record names primary (only when that
/// changes: it wakes the receiver).
fn publish_leader(node: &Node, stored: Option<&Stored>) {
    let leader = stored.and_then(|s| {
        s.record.holder.clone().map(|address| Leader {
            address,
            epoch: s.record.epoch,
        })
    });
    node.leader.send_if_modified(|l| {
        if *l != leader {
            *l = leader;
            true
        } else {
            false
        }
    });
}

fn view(i: ArbiterInfo) -> ArbiterView {
    ArbiterView {
        kind: i.kind,
        endpoint: i.endpoint,
        stateful: i.stateful,
    }
}
