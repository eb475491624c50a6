//! The primary's side: the replication listener, and one sender per standby
//! connection feeding the pair state machine and carrying out its actions.

use std::sync::Arc;
use std::time::Duration;

use hadr_ha::admission::{admit, check_listed, PrimarySide, StandbySide};
use hadr_ha::handover::{self, Handover, HandoverFailure};
use hadr_ha::{Action, Event, GuardAction, GuardEvent, PairState};
use hadr_protocol::{check_hello, Hello, Message, PeerRole, Refuse, RefuseCode};
use tokio::net::TcpListener;
use tracing::{info, warn};

pub use crate::context::{PrimaryCtx, SnapshotError, SnapshotFn, TakeoverHooks};
use crate::link::{DialError, Link};
use crate::now_micros;
use crate::standbys::Standbys;
use crate::wire::{Reader, WireError, Writer};

/// Accept standbys and cloners until the task is aborted; also ticks
/// disconnected pairs so peer windows expire.
///
/// Every connection runs on a task this one owns, so aborting `serve` ends
/// them all: a sender left running after its node stopped being a primary
/// would keep a standby "connected" to a node that can no longer feed it.
/// Once this node is retired ([`Standbys::close`]) every sender refuses its
/// standby with [`RefuseCode::NotPrimary`], and so does every new connection.
pub async fn serve(ctx: Arc<PrimaryCtx>, listener: TcpListener) {
    // Aborted with this task: dropping a JoinHandle alone would leave it running.
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _ticker = AbortOnDrop(tokio::spawn(tick_disconnected(ctx.clone())));
    let _prober = AbortOnDrop(tokio::spawn(probe_targets(ctx.clone())));
    let retired = ctx.standbys.retired();
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let ctx = ctx.clone();
                    let why = retired.borrow().clone();
                    conns.spawn(async move {
                        // Before anything else: a peer without valid
                        // credentials is refused before it is heard.
                        let link = match crate::link::accept(stream, ctx.tls.as_deref(), ctx.timeout).await {
                            Ok(link) => link,
                            Err(e) => {
                                warn!(%peer, error = %e, "replication peer refused");
                                return;
                            }
                        };
                        let r = match why {
                            Some(why) => refuse_not_primary(&ctx, link, why).await,
                            None => handle(ctx, link).await,
                        };
                        if let Err(e) = r {
                            warn!(%peer, error = %e, "replication connection ended");
                        }
                    });
                }
                Err(e) => {
                    warn!(error = %e, "replication accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            // Reap finished connections (the set stays as small as the live ones).
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// What a node that is no longer a primary tells a peer that says hello.
fn not_primary(ctx: &PrimaryCtx, why: &str) -> Message {
    Message::Refuse(Refuse::new(
        RefuseCode::NotPrimary,
        format!("{} is no longer a primary: {why}", ctx.address),
    ))
}

/// Resolves with the reason once this node is retired (an error if nobody
/// can retire it any more).
async fn retired_reason(
    retired: &mut tokio::sync::watch::Receiver<Option<String>>,
) -> Result<String, tokio::sync::watch::error::RecvError> {
    loop {
        if let Some(why) = retired.borrow_and_update().clone() {
            return Ok(why);
        }
        retired.changed().await?;
    }
}

async fn refuse_not_primary(ctx: &PrimaryCtx, link: Link, why: String) -> Result<(), WireError> {
    let (mut reader, mut writer) = (link.reader, link.writer);
    reader.next(ctx.timeout).await?;
    writer.send(&not_primary(ctx, &why), ctx.timeout).await
}

async fn tick_disconnected(ctx: Arc<PrimaryCtx>) {
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        for (i, s) in ctx.standbys.slots().iter().enumerate() {
            if matches!(
                s.pair.state,
                PairState::RemoteCatchupPending | PairState::DisconnectedPeer
            ) {
                for a in ctx.standbys.step(
                    i,
                    Event::Tick {
                        now: now_micros(),
                        oldest_commit_wait_since: None,
                    },
                ) {
                    if let Action::StateChanged { from, to } = a {
                        info!(standby = %s.address, ?from, ?to, "HADR state change");
                    }
                }
            }
        }
    }
}

/// Every heartbeat, say hello to each listed peer that is not connected as
/// a standby: its answer tells this primary whether a standby is there (the
/// start-up rule) and whether a newer epoch exists (fencing); our Hello tells
/// an older primary that it was superseded.
async fn probe_targets(ctx: Arc<PrimaryCtx>) {
    let every = (ctx.timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    // The first round is awaited as a whole: a primary started with --force
    // writes only once every listed peer had its chance to report a newer epoch.
    let first: Vec<_> = ctx
        .standbys
        .slots()
        .iter()
        .map(|s| spawn_probe(&ctx, s.address.clone()))
        .collect();
    for p in first {
        let _ = p.await;
    }
    (ctx.on_peer)(GuardEvent::ProbeRoundDone);
    loop {
        tokio::time::sleep(every).await;
        let idle: Vec<String> = ctx
            .standbys
            .slots()
            .iter()
            // Disconnected, with or without a peer window: exactly when the
            // standby may have taken over.
            .filter(|s| {
                matches!(
                    s.pair.state,
                    PairState::RemoteCatchupPending | PairState::DisconnectedPeer
                )
            })
            .map(|s| s.address.clone())
            .collect();
        for target in idle {
            spawn_probe(&ctx, target);
        }
    }
}

/// Probe one peer on its own task (a black-holed peer must not delay the
/// others) and tell the write guard what it answered.
fn spawn_probe(ctx: &Arc<PrimaryCtx>, target: String) -> tokio::task::JoinHandle<()> {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        if let Some(theirs) = probe(&ctx, &target).await {
            (ctx.on_peer)(GuardEvent::PeerSeen {
                role: theirs.role,
                epoch: theirs.epoch,
                address: target,
            });
        }
    })
}

async fn probe(ctx: &PrimaryCtx, target: &str) -> Option<Hello> {
    let wait = ctx.timeout.min(Duration::from_secs(1));
    let link = match crate::link::dial(target, ctx.tls.as_deref(), wait).await {
        Ok(link) => link,
        // A TLS failure is a configuration to fix, not a peer that is down.
        Err(e @ DialError::Handshake { .. }) => {
            warn!(peer = %target, error = %e, "probe failed");
            return None;
        }
        Err(_) => return None,
    };
    let (mut reader, mut writer) = (link.reader, link.writer);
    let ours = ctx.hello();
    writer
        .send(&Message::Hello(ours.clone()), wait)
        .await
        .ok()?;
    match reader.next(wait).await.ok()? {
        Message::Hello(theirs) if check_hello(&ours, &theirs).is_ok() => Some(theirs),
        _ => None,
    }
}

async fn handle(ctx: Arc<PrimaryCtx>, link: Link) -> Result<(), WireError> {
    let (mut reader, mut writer, peer) = (link.reader, link.writer, link.peer);
    let Message::Hello(theirs) = reader.next(ctx.timeout).await? else {
        return Err(WireError::Protocol(
            hadr_protocol::ProtocolError::Malformed("expected Hello"),
        ));
    };
    let ours = ctx.hello();
    if let Err(mismatch) = check_hello(&ours, &theirs) {
        warn!(peer = %theirs.address, reason = %mismatch, "refusing replication peer");
        writer
            .send(&Message::Refuse(mismatch.refuse()), ctx.timeout)
            .await?;
        return Ok(());
    }
    match theirs.role {
        PeerRole::Cloner => {
            writer.send(&Message::Hello(ours), ctx.timeout).await?;
            match reader.next(ctx.timeout).await? {
                Message::CloneRequest => crate::clone::serve(&ctx, &mut writer).await,
                Message::RewindRequest { from_lsn, pages } => {
                    crate::rewind::serve(&ctx, &mut writer, from_lsn, pages).await
                }
                _ => Err(WireError::Protocol(
                    hadr_protocol::ProtocolError::Malformed(
                        "expected CloneRequest or RewindRequest",
                    ),
                )),
            }
        }
        PeerRole::Primary => {
            // Another primary probing: each side learns the other's epoch, and
            // the older one fences itself.
            (ctx.on_peer)(GuardEvent::PeerSeen {
                role: PeerRole::Primary,
                epoch: theirs.epoch,
                address: theirs.address.clone(),
            });
            writer.send(&Message::Hello(ours), ctx.timeout).await?;
            Ok(())
        }
        PeerRole::Standby => {
            let slot = ctx.standbys.slot_for(&theirs.address);
            let standby = StandbySide {
                address: &theirs.address,
                epoch: theirs.epoch,
                history: &theirs.epoch_history,
                lsn: theirs.lsn,
            };
            if let Err(refusal) = check_listed(&standby, slot.is_some()) {
                warn!(reason = %refusal, "refusing replication peer");
                writer
                    .send(&Message::Refuse(refusal.refuse()), ctx.timeout)
                    .await?;
                return Ok(());
            }
            // Over TLS a standby is who its certificate says: one listed
            // host's certificate cannot take another standby's slot.
            if !peer.vouches_for(&theirs.address) {
                let reason = format!(
                    "the certificate of this connection names {:?}, not the host of {}",
                    peer.hosts().unwrap_or_default(),
                    theirs.address
                );
                warn!(%reason, "refusing replication peer");
                let refuse = Refuse::new(RefuseCode::NotListed, reason);
                writer.send(&Message::Refuse(refuse), ctx.timeout).await?;
                return Ok(());
            }
            let Some(slot) = slot else { return Ok(()) };
            let actions = (ctx.on_peer)(GuardEvent::StandbyConnected {
                epoch: theirs.epoch,
                address: theirs.address.clone(),
            });
            if let Some(GuardAction::Fence { reason, .. }) = actions
                .iter()
                .find(|a| matches!(a, GuardAction::Fence { .. }))
            {
                let reason = format!("this primary was superseded ({reason}); it stops writing and rejoins as a standby");
                writer
                    .send(
                        &Message::Refuse(Refuse::new(RefuseCode::Superseded, reason)),
                        ctx.timeout,
                    )
                    .await?;
                return Ok(());
            }
            let log = ctx.engine.log();
            let primary = PrimarySide {
                epoch: ours.epoch,
                history: &ours.epoch_history,
                log_start: log.start_lsn(),
                log_end: log.end_lsn(),
            };
            let from = match admit(&primary, &standby) {
                Ok(from) => from,
                Err(refusal) => {
                    ctx.standbys.note_error(slot, refusal.to_string());
                    writer
                        .send(&Message::Refuse(refusal.refuse()), ctx.timeout)
                        .await?;
                    return Ok(());
                }
            };
            writer.send(&Message::Hello(ours), ctx.timeout).await?;
            info!(standby = %theirs.address, from_lsn = from, "standby connected");
            stream_to(ctx, slot, from, reader, writer).await
        }
    }
}

/// Ship records from `from` on, forever; the pair state machine decides
/// states, heartbeats and disconnects.
async fn stream_to(
    ctx: Arc<PrimaryCtx>,
    slot: usize,
    from: u64,
    mut reader: Reader,
    mut writer: Writer,
) -> Result<(), WireError> {
    let report = |actions: Vec<Action>| {
        for a in &actions {
            if let Action::StateChanged { from, to } = a {
                info!(slot, ?from, ?to, "HADR state change");
            }
        }
        actions
    };
    let owner = ctx.standbys.claim(slot);
    report(ctx.standbys.step(
        slot,
        Event::Connected {
            now: now_micros(),
            start: from,
        },
    ));
    // Acks and heartbeats from the standby.
    let (lost_tx, mut lost_rx) = tokio::sync::oneshot::channel::<WireError>();
    let (takeover_tx, mut takeover_rx) = tokio::sync::mpsc::channel::<()>(1);
    let standbys = ctx.standbys.clone();
    let timeout = ctx.timeout;
    let acks = tokio::spawn(async move {
        loop {
            match reader.next(timeout * 2).await {
                Ok(Message::TakeoverRequest) => {
                    standbys.step(slot, Event::Heard { now: now_micros() });
                    let _ = takeover_tx.try_send(());
                }
                Ok(Message::Announce { client_address }) => {
                    standbys.step(slot, Event::Heard { now: now_micros() });
                    standbys.set_client_address(slot, client_address);
                }
                Ok(Message::Ack {
                    received,
                    flushed,
                    replayed,
                }) => {
                    standbys.step(
                        slot,
                        Event::Ack {
                            now: now_micros(),
                            received,
                            flushed,
                            replayed,
                        },
                    );
                }
                Ok(_) => {
                    standbys.step(slot, Event::Heard { now: now_micros() });
                }
                Err(e) => {
                    let _ = lost_tx.send(e);
                    return;
                }
            }
        }
    });
    let mut pos = from;
    let mut end_rx = ctx.end.clone();
    let mut retired = ctx.standbys.retired();
    // The topology first, then again whenever a standby's client address
    // changes (docs/clients.md §Topology).
    let mut topology = ctx.standbys.topology_changes();
    topology.mark_changed();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let principal = ctx.standbys.slots().get(slot).is_some_and(|s| s.principal);
    let result: Result<(), StreamEnd> = loop {
        let end = ctx.engine.log().end_lsn();
        if pos < end {
            match ship(&ctx, &mut writer, pos, end).await {
                Ok(next) => pos = next,
                Err(e) => break Err(StreamEnd::Ship(e)),
            }
            ctx.standbys.step(slot, Event::Sent { lsn: pos });
            continue;
        }
        report(ctx.standbys.step(
            slot,
            Event::CaughtUp {
                now: now_micros(),
                end: pos,
            },
        ));
        tokio::select! {
            r = end_rx.changed() => {
                if r.is_err() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            _ = tick.tick() => {
                if !ctx.standbys.owns(slot, owner) {
                    break Err(StreamEnd::Replaced);
                }
                let mut stop = None;
                for a in report(ctx.standbys.step(slot, Event::Tick { now: now_micros(), oldest_commit_wait_since: None })) {
                    match a {
                        Action::Heartbeat { peer_window_end } => {
                            let hb = Message::Heartbeat { now_micros: now_micros(), end_lsn: pos, peer_window_end_micros: peer_window_end };
                            if let Err(e) = writer.send(&hb, ctx.timeout).await {
                                stop = Some(StreamEnd::Wire(e));
                            }
                        }
                        Action::Disconnect { reason } => stop = Some(StreamEnd::Pair(reason)),
                        _ => {}
                    }
                }
                // This node wants to hand over (a resource exhausted its
                // restarts, docs/resources.md): the same hand-over, unasked,
                // once its principal is in PEER; a standby promotes on
                // TakeoverReady whether it asked or not. Level-triggered, so
                // a request made while the standby was away is not lost. The
                // request ends with the primary's term (its resources stop
                // for the hand-over), so a failed hand-over is not retried
                // in a loop.
                if stop.is_none()
                    && principal
                    && *ctx.hand_over.borrow()
                    && ctx.standbys.slots().get(slot).is_some_and(|s| s.pair.state == hadr_ha::PairState::Peer)
                {
                    info!(slot, "handing over to the principal standby (asked by this node)");
                    break run_hand_over(&ctx, slot, pos, &mut writer).await;
                }
                if let Some(r) = stop {
                    break Err(r);
                }
            }
            r = &mut lost_rx => {
                break Err(r.map(StreamEnd::Wire).unwrap_or(StreamEnd::Lost));
            }
            Ok(why) = retired_reason(&mut retired) => {
                let _ = writer.send(&not_primary(&ctx, &why), ctx.timeout).await;
                break Err(StreamEnd::Retired(why));
            }
            Some(()) = takeover_rx.recv() => {
                break run_hand_over(&ctx, slot, pos, &mut writer).await;
            }
            Ok(()) = topology.changed() => {
                let t = Message::Topology(ctx.topology());
                if let Err(e) = writer.send(&t, ctx.timeout).await {
                    break Err(StreamEnd::Wire(e));
                }
            }
        }
    };
    acks.abort();
    if !ctx.standbys.owns(slot, owner) {
        // A newer connection of this standby owns the slot: this one's end
        // says nothing about the pair.
        info!(slot, "an older connection of this standby ended");
        return Ok(());
    }
    if let Err(reason) = &result {
        warn!(slot, %reason, "standby connection lost");
        ctx.standbys.note_error(slot, reason.to_string());
    }
    // A Disconnect action already moved the pair; a socket error moves it here.
    report(ctx.standbys.step(
        slot,
        Event::Lost {
            now: now_micros(),
            clean: false,
        },
    ));
    Ok(())
}

/// A hand-over on this stream; its failure is told to the standby.
async fn run_hand_over(
    ctx: &Arc<PrimaryCtx>,
    slot: usize,
    pos: u64,
    writer: &mut Writer,
) -> Result<(), StreamEnd> {
    match hand_over(ctx, slot, pos, writer).await {
        Ok(()) => Ok(()),
        Err(failure) => {
            warn!(reason = %failure, "takeover refused");
            let refuse = Refuse::new(
                RefuseCode::TakeoverRefused,
                format!("takeover refused: {failure}"),
            );
            let _ = writer.send(&Message::Refuse(refuse), ctx.timeout).await;
            Err(StreamEnd::Handover(failure))
        }
    }
}

/// Graceful takeover, primary side: carry out `hadr_ha::handover`'s steps.
/// On any failure before the standby is told, writes resume and nothing changed.
async fn hand_over(
    ctx: &Arc<PrimaryCtx>,
    slot: usize,
    pos: u64,
    writer: &mut Writer,
) -> Result<(), HandoverFailure> {
    let pair = ctx.standbys.slots().get(slot).map(|s| s.pair.clone());
    let Some(pair) = pair else {
        return Err(HandoverFailure::Ship("the standby's slot is gone".into()));
    };
    let flush_wait = ctx.timeout * 4;
    let mut machine = Handover::new(flush_wait.as_micros() as u64);
    let mut todo = std::collections::VecDeque::from(machine.step(handover::Input::Requested {
        state: pair.state,
        mode: pair.config().mode,
        sent: pos,
    }));
    info!(slot, "takeover requested");
    while let Some(action) = todo.pop_front() {
        let hooks = ctx.takeover.clone();
        let input = match action {
            handover::Action::StopWrites => {
                // Stopping writes includes stopping the node's resources,
                // which may take their stop_timeout (docs/resources.md):
                // heartbeats keep the standby from taking the silence for
                // a dead primary meanwhile.
                let mut job = tokio::task::spawn_blocking(move || hooks.stop_writes());
                let joined = loop {
                    tokio::select! {
                        r = &mut job => break r,
                        _ = tokio::time::sleep(ctx.timeout / 4) => {
                            let hb = Message::Heartbeat { now_micros: now_micros(), end_lsn: pos, peer_window_end_micros: 0 };
                            if let Err(e) = writer.send(&hb, ctx.timeout).await {
                                warn!(error = %e, "heartbeat during the hand-over failed");
                            }
                        }
                    }
                };
                match joined {
                    Ok(Ok(end)) => handover::Input::WritesStopped {
                        end,
                        now: now_micros(),
                    },
                    Ok(Err(f)) => handover::Input::Failed(f),
                    Err(e) => handover::Input::Failed(HandoverFailure::StopWrites(e.to_string())),
                }
            }
            handover::Action::Ship { from, to } => match ship(ctx, writer, from, to).await {
                Ok(next) => handover::Input::Shipped {
                    to: next,
                    now: now_micros(),
                },
                Err(e) => handover::Input::Failed(HandoverFailure::Ship(e.to_string())),
            },
            handover::Action::AwaitFlushed => {
                let flushed =
                    |g: &Standbys| g.slots().get(slot).map(|s| s.pair.flushed).unwrap_or(0);
                let acked = ctx.standbys.acked();
                tokio::pin!(acked);
                acked.as_mut().enable();
                if flushed(&ctx.standbys) < pair_end(&machine) {
                    // An ack wakes this at once; the timeout only bounds a missed one.
                    let _ = tokio::time::timeout(Duration::from_millis(50), acked).await;
                }
                handover::Input::Flushed {
                    lsn: flushed(&ctx.standbys),
                    now: now_micros(),
                }
            }
            handover::Action::MarkStandby => {
                match tokio::task::spawn_blocking(move || hooks.mark_standby()).await {
                    Ok(Ok(())) => handover::Input::Marked,
                    Ok(Err(f)) => handover::Input::Failed(f),
                    Err(e) => handover::Input::Failed(HandoverFailure::Mark(e.to_string())),
                }
            }
            handover::Action::SendReady { end } => {
                match writer
                    .send(&Message::TakeoverReady { end_lsn: end }, ctx.timeout)
                    .await
                {
                    Ok(()) => handover::Input::Told,
                    Err(e) => handover::Input::Failed(HandoverFailure::Tell(e.to_string())),
                }
            }
            handover::Action::UnmarkStandby => {
                let _ = tokio::task::spawn_blocking(move || hooks.unmark_standby()).await;
                continue;
            }
            handover::Action::ResumeWrites => {
                let _ = tokio::task::spawn_blocking(move || hooks.resume_writes()).await;
                continue;
            }
            handover::Action::BecomeStandby => {
                info!("takeover: the standby has everything; becoming a standby");
                let _ = tokio::task::spawn_blocking(move || hooks.become_standby()).await;
                return Ok(());
            }
            handover::Action::GiveUp(why) => return Err(why),
        };
        todo.extend(machine.step(input));
    }
    Err(HandoverFailure::Ship(format!(
        "the hand-over stopped at {:?}",
        machine.step
    )))
}

/// The final log end of a hand-over that is waiting for the standby.
fn pair_end(h: &Handover) -> u64 {
    match h.step {
        handover::Step::AwaitingFlush { end, .. } => end,
        _ => 0,
    }
}

/// Why shipping a batch of the log failed.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    /// The log could not be read.
    #[error("reading the log at LSN {lsn}: {source}")]
    Read {
        /// Where.
        lsn: u64,
        /// Why.
        #[source]
        source: hadr_log::LogError,
    },
    /// A single record is larger than a frame can carry.
    #[error("the transaction at LSN {lsn} is {bytes} bytes in the log, more than a replication frame carries ({max} bytes): it cannot be shipped; split such loads into smaller transactions", max = hadr_protocol::MAX_FRAME)]
    TooLarge {
        /// Where.
        lsn: u64,
        /// Its size.
        bytes: usize,
    },
    /// The blocking read task failed.
    #[error("the log reader task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The socket failed.
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// Why a standby's stream ended.
#[derive(Debug, thiserror::Error)]
enum StreamEnd {
    #[error(transparent)]
    Ship(ShipError),
    #[error(transparent)]
    Wire(WireError),
    #[error(transparent)]
    Pair(hadr_ha::DisconnectReason),
    #[error("connection lost")]
    Lost,
    #[error(transparent)]
    Handover(HandoverFailure),
    #[error("this node is no longer a primary: {0}")]
    Retired(String),
    #[error("a newer connection of this standby took its place")]
    Replaced,
}

/// Ship one batch of the log from `from` (at most up to `to`); return where it ended.
async fn ship(
    ctx: &Arc<PrimaryCtx>,
    writer: &mut Writer,
    from: u64,
    to: u64,
) -> Result<u64, ShipError> {
    let log = ctx.engine.log().clone();
    let (bytes, next) = tokio::task::spawn_blocking(move || log.read_raw(from, to, 4 << 20))
        .await?
        .map_err(|source| ShipError::Read { lsn: from, source })?;
    // The frame's own header and the message's fields take the rest.
    if bytes.len() + 64 > hadr_protocol::MAX_FRAME {
        return Err(ShipError::TooLarge {
            lsn: from,
            bytes: bytes.len(),
        });
    }
    writer
        .send(
            &Message::Records {
                start_lsn: from,
                bytes,
            },
            ctx.timeout,
        )
        .await?;
    Ok(next)
}
