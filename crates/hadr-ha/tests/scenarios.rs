//! Scenario tests of hadr-ha's rules, one file per rule in `testdata/`
//! (the `datadriven` format of cockroachdb and raft-rs): each case is a
//! command, `----`, and what the rule answered. `REWRITE=1 cargo test -p
//! hadr-ha --test scenarios` writes the answers anew; every answer in the
//! files was then read against DB2's rules (the doc comments in `src/`).
//!
//! Times are written with a unit (`10s`, `250ms`, `5us`; a bare number is
//! seconds) and printed the same way. An epoch history is written
//! `EPOCH@START_LSN ...` in a case's input lines.
//!
//! - `pair.txt`: `pair mode= window= [timeout=] [wait_limit=]` starts a pair;
//!   `event KIND ...` feeds it (connected, heard, ack, sent, caught-up, lost,
//!   tick) and prints its actions and state; `commit lsn=` asks the gate.
//! - `fencing.txt`: `guard epoch= [primary] [was_primary] [force]` starts a
//!   write guard; `hear KIND ...` feeds it (standby-connected, peer,
//!   reported, probe-round-done).
//! - `rejoin.txt`: `rejoin our_end= [our_epoch=] [their_epoch=]` with the
//!   histories `ours ...` / `theirs ...` as input; `next-epoch`, `ordered`.
//! - `admission.txt`: `primary epoch= log=START-END [restarted]` with its
//!   history as input; `hello address= epoch= lsn= [unlisted]` with the
//!   standby's history as input runs the primary's decision in order.
//! - `handover.txt`: `handover flush_wait=` starts one; `input KIND ...`
//!   feeds it and prints its actions and step.
//! - `standby_link.txt`: `link` starts one; `hello`, `connected`,
//!   `received`, `heartbeat`, `lost` feed it; `force`, `graceful` ask it.
//! - `failover.txt`: automatic failover with one primary and several
//!   standbys (the runner and its commands: `scenario_failover/mod.rs`).
//! - `resources.txt`: a resource group that follows a role (the runner and
//!   its commands: `scenario_resources/mod.rs`).

mod scenario_failover;
mod scenario_resources;

use std::fmt::Write as _;

use datadriven::{walk, TestCase, TestFile};
use hadr_ha::admission::{admit, check_listed, PrimarySide, StandbySide};
use hadr_ha::epoch::{history_is_ordered, next_epoch};
use hadr_ha::handover::{self, Handover, HandoverFailure};
use hadr_ha::pair::{Action, CommitWait, Event, Pair, PairConfig, PairState, SyncMode};
use hadr_ha::rejoin::{divergence, rejoin};
use hadr_ha::takeover::TakeoverRefusal;
use hadr_ha::{GuardAction, GuardEvent, StandbyLink, WriteGuard};
use hadr_log::EpochStart;
use hadr_protocol::PeerRole;

#[test]
fn scenarios() {
    let mut files = 0;
    walk("testdata", |f| {
        files += 1;
        let name = std::path::Path::new(&f.filename)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        match name.as_str() {
            "pair" => run(f, pair_case),
            "fencing" => run(f, fencing_case),
            "rejoin" => run(f, rejoin_case),
            "admission" => run(f, admission_case),
            "handover" => run(f, handover_case),
            "standby_link" => run(f, standby_link_case),
            "failover" => run(f, scenario_failover::failover_case),
            "resources" => run(f, scenario_resources::resources_case),
            other => panic!("no runner for testdata/{other}"),
        }
    });
    // RUN=pair.txt runs one file (datadriven's filter).
    if std::env::var_os("RUN").is_none() {
        assert_eq!(files, 8, "every scenario file ran");
    }
}

/// Run every case of `f` through `case`, which keeps its state in `S`
/// from one case to the next. An error is printed as the answer.
fn run<S: Default>(f: &mut TestFile, case: fn(&mut S, &mut TestCase) -> Result<String, String>) {
    let mut state = S::default();
    f.run(|tc| {
        let out = match case(&mut state, tc) {
            Ok(out) => out,
            Err(e) => format!("error: {e}\n"),
        };
        if !tc.args.is_empty() {
            let mut left: Vec<_> = tc.args.keys().cloned().collect();
            left.sort();
            return format!("error: arguments not used: {left:?}\n");
        }
        out
    });
}

// ---------------------------------------------------------------- parsing

/// A time: `10s`, `250ms`, `5us`, or a bare number of seconds; in µs.
fn parse_time(s: &str) -> Result<u64, String> {
    let (num, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e6)
    } else {
        (s, 1e6)
    };
    let v: f64 = num.parse().map_err(|_| format!("{s:?} is not a time"))?;
    Ok((v * scale).round() as u64)
}

/// A time in µs, as the files write it.
fn time(us: u64) -> String {
    if us == 0 {
        "0".into()
    } else if us.is_multiple_of(1_000_000) {
        format!("{}s", us / 1_000_000)
    } else if us.is_multiple_of(1_000) {
        format!("{}ms", us / 1_000)
    } else {
        format!("{us}us")
    }
}

fn take_time(tc: &mut TestCase, arg: &str) -> Result<u64, String> {
    let s: String = tc.take_arg(arg).map_err(|e| e.to_string())?;
    parse_time(&s)
}

fn take_time_or(tc: &mut TestCase, arg: &str, default: u64) -> Result<u64, String> {
    match tc.try_take_arg::<String>(arg).map_err(|e| e.to_string())? {
        Some(s) => parse_time(&s),
        None => Ok(default),
    }
}

fn take<T>(tc: &mut TestCase, arg: &str) -> Result<T, String>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    tc.take_arg(arg).map_err(|e| e.to_string())
}

fn take_or<T>(tc: &mut TestCase, arg: &str, default: T) -> Result<T, String>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    Ok(tc
        .try_take_arg(arg)
        .map_err(|e| e.to_string())?
        .unwrap_or(default))
}

fn flag(tc: &mut TestCase, arg: &str) -> Result<bool, String> {
    tc.take_flag(arg).map_err(|e| e.to_string())
}

/// The one of `kinds` that the case names as a bare word (`event lost ...`).
fn kind(tc: &mut TestCase, kinds: &[&'static str]) -> Result<&'static str, String> {
    let named: Vec<_> = kinds
        .iter()
        .copied()
        .filter(|k| tc.args.get(*k).is_some_and(|v| v.is_empty()))
        .collect();
    match named[..] {
        [k] => {
            tc.args.remove(k);
            Ok(k)
        }
        _ => Err(format!("name one of {kinds:?}")),
    }
}

/// An epoch history: `1@0 2@500`.
fn parse_history(s: &str) -> Result<Vec<EpochStart>, String> {
    s.split_whitespace()
        .map(|e| {
            let (epoch, start) = e
                .split_once('@')
                .ok_or_else(|| format!("{e:?} is not EPOCH@LSN"))?;
            Ok(EpochStart {
                epoch: epoch.parse().map_err(|_| format!("bad epoch in {e:?}"))?,
                start_lsn: start.parse().map_err(|_| format!("bad LSN in {e:?}"))?,
            })
        })
        .collect()
}

/// The history on the input line that starts with `name`.
fn input_history(tc: &TestCase, name: &str) -> Result<Vec<EpochStart>, String> {
    let line = tc
        .input
        .lines()
        .find_map(|l| l.trim().strip_prefix(name))
        .ok_or_else(|| format!("no input line {name:?}"))?;
    parse_history(line)
}

fn history(h: &[EpochStart]) -> String {
    let v: Vec<_> = h
        .iter()
        .map(|e| format!("{}@{}", e.epoch, e.start_lsn))
        .collect();
    v.join(" ")
}

fn upper<T: std::fmt::Debug>(v: T) -> String {
    // PairState and SyncMode print as DB2 writes them: REMOTE_CATCHUP_PENDING.
    let s = format!("{v:?}");
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

// ---------------------------------------------------------------- pair

#[derive(Default)]
struct PairCase {
    pair: Option<Pair>,
}

fn pair_line(p: &Pair) -> String {
    format!(
        "state={} sent={} received={} flushed={} peer_window_end={}\n",
        upper(p.state),
        p.sent,
        p.received,
        p.flushed,
        time(p.peer_window_end)
    )
}

fn pair_case(s: &mut PairCase, tc: &mut TestCase) -> Result<String, String> {
    match tc.directive.as_str() {
        "pair" => {
            let mode: SyncMode = take::<String>(tc, "mode")?
                .parse()
                .map_err(|e: hadr_ha::pair::UnknownSyncMode| e.to_string())?;
            let cfg = PairConfig {
                mode,
                timeout_us: take_time_or(tc, "timeout", 4_000_000)?,
                peer_window_us: take_time_or(tc, "window", 0)?,
                peer_wait_limit_us: take_time_or(tc, "wait_limit", 0)?,
            };
            let p = Pair::new(cfg, take_time_or(tc, "now", 0)?);
            let out = format!(
                "heartbeat every {}\n{}",
                time(cfg.heartbeat_us()),
                pair_line(&p)
            );
            s.pair = Some(p);
            Ok(out)
        }
        "event" => {
            let p = s.pair.as_mut().ok_or("no pair yet")?;
            let ev = match kind(
                tc,
                &[
                    "connected",
                    "heard",
                    "ack",
                    "sent",
                    "caught-up",
                    "lost",
                    "tick",
                ],
            )? {
                "connected" => Event::Connected {
                    now: take_time(tc, "now")?,
                    start: take(tc, "start")?,
                },
                "heard" => Event::Heard {
                    now: take_time(tc, "now")?,
                },
                "ack" => {
                    let received: u64 = take(tc, "received")?;
                    let flushed = take_or(tc, "flushed", received)?;
                    Event::Ack {
                        now: take_time(tc, "now")?,
                        received,
                        flushed,
                        replayed: take_or(tc, "replayed", flushed)?,
                    }
                }
                "sent" => Event::Sent {
                    lsn: take(tc, "lsn")?,
                },
                "caught-up" => Event::CaughtUp {
                    now: take_time(tc, "now")?,
                    end: take(tc, "end")?,
                },
                "lost" => Event::Lost {
                    now: take_time(tc, "now")?,
                    clean: flag(tc, "clean")?,
                },
                _ => Event::Tick {
                    now: take_time(tc, "now")?,
                    oldest_commit_wait_since: match tc
                        .try_take_arg::<String>("waiting_since")
                        .map_err(|e| e.to_string())?
                    {
                        Some(t) => Some(parse_time(&t)?),
                        None => None,
                    },
                },
            };
            let mut out = String::new();
            for a in p.step(ev) {
                match a {
                    Action::Heartbeat { peer_window_end } => {
                        writeln!(out, "heartbeat peer_window_end={}", time(peer_window_end))
                    }
                    Action::Disconnect { reason } => writeln!(out, "disconnect: {reason}"),
                    Action::WakeCommits => writeln!(out, "wake commits"),
                    Action::StateChanged { from, to } => {
                        writeln!(out, "{} -> {}", upper(from), upper(to))
                    }
                }
                .expect("a String takes any write");
            }
            out.push_str(&pair_line(p));
            Ok(out)
        }
        "commit" => {
            let p = s.pair.as_ref().ok_or("no pair yet")?;
            let lsns: Vec<u64> = tc.take_args("lsn").map_err(|e| e.to_string())?;
            let mut out = String::new();
            for lsn in lsns {
                let w = match p.commit_wait(lsn) {
                    CommitWait::Release => "release",
                    CommitWait::Hold => "hold",
                };
                writeln!(out, "commit at {lsn}: {w}").expect("a String takes any write");
            }
            Ok(out)
        }
        d => Err(format!("unknown command {d:?}")),
    }
}

// ---------------------------------------------------------------- fencing

#[derive(Default)]
struct FencingCase {
    guard: Option<WriteGuard>,
}

fn guard_line(g: &WriteGuard) -> String {
    let writes = match &g.writes {
        hadr_ha::Writes::Open => "open".to_string(),
        hadr_ha::Writes::AwaitingStandby => "awaiting_standby".to_string(),
        hadr_ha::Writes::Checking => "checking".to_string(),
        hadr_ha::Writes::Fenced { by_epoch, .. } => format!("fenced by epoch {by_epoch}"),
    };
    format!(
        "writes={writes} writable={} epoch={}\n",
        g.writable(),
        g.epoch
    )
}

fn fencing_case(s: &mut FencingCase, tc: &mut TestCase) -> Result<String, String> {
    match tc.directive.as_str() {
        "guard" => {
            let g = WriteGuard::start(
                take(tc, "epoch")?,
                flag(tc, "primary")?,
                flag(tc, "was_primary")?,
                flag(tc, "force")?,
            );
            let out = guard_line(&g);
            s.guard = Some(g);
            Ok(out)
        }
        "hear" => {
            let g = s.guard.as_mut().ok_or("no guard yet")?;
            let address = "b".to_string();
            let ev = match kind(
                tc,
                &["standby-connected", "peer", "reported", "probe-round-done"],
            )? {
                "standby-connected" => GuardEvent::StandbyConnected {
                    epoch: take(tc, "epoch")?,
                    address,
                },
                "peer" => GuardEvent::PeerSeen {
                    role: match take::<String>(tc, "role")?.as_str() {
                        "primary" => PeerRole::Primary,
                        "standby" => PeerRole::Standby,
                        r => return Err(format!("role {r:?}: primary or standby")),
                    },
                    epoch: take(tc, "epoch")?,
                    address,
                },
                "reported" => GuardEvent::EpochReported {
                    epoch: take(tc, "epoch")?,
                },
                _ => GuardEvent::ProbeRoundDone,
            };
            let mut out = String::new();
            for a in g.step(ev) {
                match a {
                    GuardAction::OpenWrites => writeln!(out, "open writes"),
                    GuardAction::Fence { by_epoch, reason } => {
                        writeln!(out, "fence by epoch {by_epoch}: {reason}")
                    }
                    GuardAction::PeerIsStale => writeln!(out, "peer is stale"),
                }
                .expect("a String takes any write");
            }
            out.push_str(&guard_line(g));
            Ok(out)
        }
        d => Err(format!("unknown command {d:?}")),
    }
}

// ---------------------------------------------------------------- rejoin

fn last_epoch(h: &[EpochStart]) -> u64 {
    h.last().map_or(0, |e| e.epoch)
}

fn rejoin_case(_: &mut (), tc: &mut TestCase) -> Result<String, String> {
    match tc.directive.as_str() {
        "rejoin" => {
            let ours = input_history(tc, "ours")?;
            let theirs = input_history(tc, "theirs")?;
            let our_epoch = take_or(tc, "our_epoch", last_epoch(&ours))?;
            let their_epoch = take_or(tc, "their_epoch", last_epoch(&theirs))?;
            let our_end: u64 = take(tc, "our_end")?;
            let d = divergence(&ours, &theirs);
            let plan = rejoin(our_epoch, &ours, our_end, their_epoch, &theirs);
            let d = if d == u64::MAX {
                "none".to_string()
            } else {
                d.to_string()
            };
            Ok(format!("divergence={d}\nplan={plan:?}\n"))
        }
        "next-epoch" => Ok(format!(
            "epoch={}\n",
            next_epoch(take(tc, "current")?, take(tc, "highest_seen")?)
        )),
        "ordered" => {
            let h = input_history(tc, "history")?;
            Ok(format!(
                "{} ordered={}\n",
                history(&h),
                history_is_ordered(&h)
            ))
        }
        d => Err(format!("unknown command {d:?}")),
    }
}

// ---------------------------------------------------------------- admission

#[derive(Default)]
struct AdmissionCase {
    /// Epoch, history, log start and end.
    primary: Option<(u64, Vec<EpochStart>, u64, u64)>,
    guard: Option<WriteGuard>,
}

fn admission_case(s: &mut AdmissionCase, tc: &mut TestCase) -> Result<String, String> {
    match tc.directive.as_str() {
        "primary" => {
            let h = input_history(tc, "history")?;
            let epoch = take_or(tc, "epoch", last_epoch(&h))?;
            let log: String = take(tc, "log")?;
            let (start, end) = log
                .split_once('-')
                .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
                .ok_or("log=START-END")?;
            let g = WriteGuard::start(epoch, true, flag(tc, "restarted")?, false);
            let out = guard_line(&g);
            s.primary = Some((epoch, h, start, end));
            s.guard = Some(g);
            Ok(out)
        }
        "hello" => {
            let (epoch, h, log_start, log_end) = s.primary.as_ref().ok_or("no primary yet")?;
            let g = s.guard.as_mut().ok_or("no primary yet")?;
            let theirs = input_history(tc, "history")?;
            let address: String = take_or(tc, "address", "b".to_string())?;
            let standby = StandbySide {
                address: &address,
                epoch: take_or(tc, "epoch", last_epoch(&theirs))?,
                history: &theirs,
                lsn: take(tc, "lsn")?,
            };
            let listed = !flag(tc, "unlisted")?;
            // The order of `handle` in primary.rs: the target list, the
            // write guard, then the histories and the log range.
            if let Err(r) = check_listed(&standby, listed) {
                let r = r.refuse();
                return Ok(format!(
                    "refuse {}: {}\n{}",
                    upper(r.code),
                    r.reason,
                    guard_line(g)
                ));
            }
            let actions = g.step(GuardEvent::StandbyConnected {
                epoch: standby.epoch,
                address: address.clone(),
            });
            let mut out = String::new();
            for a in actions {
                match a {
                    GuardAction::OpenWrites => out.push_str("open writes\n"),
                    GuardAction::Fence { by_epoch, .. } => {
                        writeln!(out, "fence by epoch {by_epoch}; refuse SUPERSEDED")
                            .expect("a String takes any write");
                        out.push_str(&guard_line(g));
                        return Ok(out);
                    }
                    GuardAction::PeerIsStale => out.push_str("peer is stale\n"),
                }
            }
            let primary = PrimarySide {
                epoch: *epoch,
                history: h,
                log_start: *log_start,
                log_end: *log_end,
            };
            match admit(&primary, &standby) {
                Ok(from) => writeln!(out, "stream from {from}"),
                Err(r) => {
                    let r = r.refuse();
                    writeln!(out, "refuse {}: {}", upper(r.code), r.reason)
                }
            }
            .expect("a String takes any write");
            out.push_str(&guard_line(g));
            Ok(out)
        }
        d => Err(format!("unknown command {d:?}")),
    }
}

// ---------------------------------------------------------------- handover

#[derive(Default)]
struct HandoverCase {
    h: Option<Handover>,
}

fn step_line(h: &Handover) -> String {
    use handover::Step::*;
    let s = match h.step {
        Idle => "idle".to_string(),
        StoppingWrites { sent } => format!("stopping writes (sent {sent})"),
        Shipping { end, sent } => format!("shipping {sent}..{end}"),
        AwaitingFlush { end, deadline } => {
            format!("awaiting flush of {end} until {}", time(deadline))
        }
        Marking { end } => format!("marking (end {end})"),
        Telling { end } => format!("telling (end {end})"),
        Done { end } => format!("done (end {end})"),
        Failed => "failed".to_string(),
    };
    format!("step: {s}\n")
}

fn failure(tc: &mut TestCase) -> Result<HandoverFailure, String> {
    let why: String = take(tc, "why")?;
    Ok(match why.as_str() {
        "stop" => HandoverFailure::StopWrites("sessions would not end".into()),
        "ship" => HandoverFailure::Ship("connection reset".into()),
        "mark" => HandoverFailure::Mark("disk full".into()),
        "tell" => HandoverFailure::Tell("connection reset".into()),
        w => return Err(format!("why={w:?}: stop, ship, mark or tell")),
    })
}

fn handover_case(s: &mut HandoverCase, tc: &mut TestCase) -> Result<String, String> {
    use handover::{Action as Do, Input};
    match tc.directive.as_str() {
        "handover" => {
            let h = Handover::new(take_time(tc, "flush_wait")?);
            let out = step_line(&h);
            s.h = Some(h);
            Ok(out)
        }
        "input" => {
            let h = s.h.as_mut().ok_or("no hand-over yet")?;
            let input = match kind(
                tc,
                &[
                    "requested",
                    "writes-stopped",
                    "shipped",
                    "flushed",
                    "marked",
                    "told",
                    "failed",
                ],
            )? {
                "requested" => Input::Requested {
                    state: match take::<String>(tc, "state")?.as_str() {
                        "PEER" => PairState::Peer,
                        "REMOTE_CATCHUP" => PairState::RemoteCatchup,
                        "REMOTE_CATCHUP_PENDING" => PairState::RemoteCatchupPending,
                        "DISCONNECTED_PEER" => PairState::DisconnectedPeer,
                        st => return Err(format!("state={st:?}")),
                    },
                    mode: take::<String>(tc, "mode")?
                        .parse()
                        .map_err(|e: hadr_ha::pair::UnknownSyncMode| e.to_string())?,
                    sent: take(tc, "sent")?,
                },
                "writes-stopped" => Input::WritesStopped {
                    end: take(tc, "end")?,
                    now: take_time(tc, "now")?,
                },
                "shipped" => Input::Shipped {
                    to: take(tc, "to")?,
                    now: take_time(tc, "now")?,
                },
                "flushed" => Input::Flushed {
                    lsn: take(tc, "lsn")?,
                    now: take_time(tc, "now")?,
                },
                "marked" => Input::Marked,
                "told" => Input::Told,
                _ => Input::Failed(failure(tc)?),
            };
            let mut out = String::new();
            let actions = h.step(input);
            if actions.is_empty() {
                out.push_str("(nothing to do)\n");
            }
            for a in actions {
                match a {
                    Do::StopWrites => writeln!(out, "stop writes"),
                    Do::Ship { from, to } => writeln!(out, "ship {from}..{to}"),
                    Do::AwaitFlushed => writeln!(out, "await flushed"),
                    Do::MarkStandby => writeln!(out, "mark standby"),
                    Do::SendReady { end } => writeln!(out, "send ready (end {end})"),
                    Do::UnmarkStandby => writeln!(out, "unmark standby"),
                    Do::ResumeWrites => writeln!(out, "resume writes"),
                    Do::BecomeStandby => writeln!(out, "become standby"),
                    Do::GiveUp(why) => writeln!(out, "give up: {why}"),
                }
                .expect("a String takes any write");
            }
            out.push_str(&step_line(h));
            Ok(out)
        }
        d => Err(format!("unknown command {d:?}")),
    }
}

// ---------------------------------------------------------------- standby link

#[derive(Default)]
struct LinkCase {
    link: StandbyLink,
}

fn link_line(l: &StandbyLink) -> String {
    format!(
        "{} primary_end={} peer_window_end={}\n",
        upper(l.connect_status),
        l.primary_end_lsn,
        time(l.peer_window_end)
    )
}

fn refusal(r: &TakeoverRefusal) -> String {
    format!("refused: {r}\n")
}

fn standby_link_case(s: &mut LinkCase, tc: &mut TestCase) -> Result<String, String> {
    let l = &mut s.link;
    match tc.directive.as_str() {
        "link" => {
            *l = StandbyLink::default();
        }
        "hello" => l.hello_sent(),
        "connected" => {
            let primary: String = take_or(tc, "primary", "a".to_string())?;
            l.connected(&primary, take(tc, "end")?, take_time(tc, "now")?);
        }
        "received" => l.received(take(tc, "end")?, take_time(tc, "now")?),
        "heartbeat" => l.heartbeat(
            take(tc, "end")?,
            take_time(tc, "window_end")?,
            take_time(tc, "now")?,
        ),
        "lost" => l.lost(take_time(tc, "now")?),
        "force" => {
            let our_end: u64 = take(tc, "our_end")?;
            let now = take_time(tc, "now")?;
            let window_only = flag(tc, "window-only")?;
            let state = upper(l.pair_state(our_end, now));
            return Ok(match l.may_force(our_end, now, window_only) {
                Ok(_) => format!("state={state}\nallowed\n"),
                Err(r) => format!("state={state}\n{}", refusal(&r)),
            });
        }
        "graceful" => {
            return Ok(match l.may_ask_graceful() {
                Ok(()) => "may ask the primary to hand over\n".to_string(),
                Err(r) => refusal(&r),
            });
        }
        d => return Err(format!("unknown command {d:?}")),
    }
    Ok(link_line(l))
}
