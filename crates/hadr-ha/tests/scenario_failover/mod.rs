//! The runner of `testdata/failover.txt`: automatic failover's rules with
//! one primary and several standbys (`hadr_ha::failover`, `candidates`).
//!
//! - `standby me= epoch= [async]` starts a standby's rules (TTL 2 s, margin
//!   500 ms); `link up`, `link lost [in_peer]`, `read now= …`, `read now=
//!   none`, `arbiter-down now=`, `tick now=`, `won now=`, `lost`, `pause`,
//!   `resume` feed it; each answer is its actions and its hold.
//! - `primary me= epoch= standbys=(b-sync, c-aux) [handed_over_by=]` starts a
//!   primary's; `peer standby= in|out [lsn=]`, `p-read now= …`, `wrote
//!   sent= version= [marks=]`, `conflict`, `p-down now=`, `p-tick now=`
//!   feed it; each answer is its actions, then whether it may write and
//!   acknowledge alone at the last time given, and why not.
//!
//! A record is written `version= holder= epoch= [marks=(b-500, …)]
//! [standbys=(b-sync-100, c-aux-90)]`.

use std::fmt::Write as _;

use datadriven::TestCase;
use hadr_ha::candidates::Recorded;
use hadr_ha::failover::{
    Member, PrimaryAction, PrimaryEvent, PrimaryFailover, Record, StandbyAction, StandbyEvent,
    StandbyFailover,
};
use hadr_ha::lease::LeaseTiming;

use super::{flag, kind, take, take_time};

#[derive(Default)]
pub struct FailoverCase {
    standby: Option<StandbyFailover>,
    primary: Option<PrimaryFailover>,
    now: u64,
}

fn timing() -> Result<LeaseTiming, String> {
    LeaseTiming::new(2_000_000, 500_000).map_err(|e| e.to_string())
}

fn marks(list: &[String]) -> Result<Vec<(String, u64)>, String> {
    list.iter()
        .map(|m| {
            let (n, lsn) = m
                .split_once('-')
                .ok_or_else(|| format!("{m:?} is not NAME-LSN"))?;
            Ok((
                n.to_string(),
                lsn.parse().map_err(|_| format!("bad LSN in {m:?}"))?,
            ))
        })
        .collect()
}

fn show_marks(m: &[(String, u64)]) -> String {
    let v: Vec<_> = m.iter().map(|(n, l)| format!("{n}-{l}")).collect();
    format!("({})", v.join(", "))
}

fn recorded(list: &[String]) -> Result<Vec<Recorded>, String> {
    list.iter()
        .map(|e| {
            let parts: Vec<&str> = e.split('-').collect();
            let [name, kind, lsn] = parts[..] else {
                return Err(format!("{e:?} is not NAME-sync|aux-LSN"));
            };
            Ok(Recorded {
                name: name.into(),
                sync: match kind {
                    "sync" => true,
                    "aux" => false,
                    k => return Err(format!("{k:?} is not sync or aux")),
                },
                flushed_lsn: lsn.parse().map_err(|_| format!("bad LSN in {e:?}"))?,
            })
        })
        .collect()
}

/// A list argument: `name=(a, b)` (or one value).
fn list(tc: &mut TestCase, name: &str) -> Result<Option<Vec<String>>, String> {
    tc.try_take_args::<String>(name).map_err(|e| e.to_string())
}

/// `none`, or a record from the case's arguments.
fn record(tc: &mut TestCase) -> Result<Option<Record>, String> {
    if flag(tc, "none")? {
        return Ok(None);
    }
    let holder: String = take(tc, "holder")?;
    Ok(Some(Record {
        version: take(tc, "version")?,
        holder: (holder != "-").then_some(holder),
        epoch: take(tc, "epoch")?,
        out_of_sync: marks(&list(tc, "marks")?.unwrap_or_default())?,
        standbys: match list(tc, "standbys")? {
            Some(s) => Some(recorded(&s)?),
            None => None,
        },
        timing: None,
    }))
}

fn standby_answer(s: &StandbyFailover, actions: Vec<StandbyAction>) -> String {
    let mut out = String::new();
    for a in actions {
        let _ = match a {
            StandbyAction::Read => writeln!(out, "read the arbiter"),
            StandbyAction::TakeOver { expected, epoch } => writeln!(
                out,
                "take over if still {} in epoch {epoch}",
                expected.as_deref().unwrap_or("absent")
            ),
            StandbyAction::Promote { epoch } => writeln!(out, "PROMOTE into epoch {epoch}"),
        };
    }
    let _ = match &s.hold {
        Some(h) => writeln!(out, "hold: {h}"),
        None => writeln!(out, "hold: none"),
    };
    out
}

fn primary_answer(p: &PrimaryFailover, actions: Vec<PrimaryAction>, now: u64) -> String {
    let mut out = String::new();
    for a in actions {
        let _ = match a {
            PrimaryAction::Read => writeln!(out, "read the arbiter"),
            PrimaryAction::Write {
                expected,
                out_of_sync,
            } => writeln!(
                out,
                "write if still {} marking {}",
                expected.as_deref().unwrap_or("absent"),
                show_marks(&out_of_sync)
            ),
            PrimaryAction::Fence { by_epoch } => writeln!(out, "FENCE by epoch {by_epoch}"),
        };
    }
    let _ = writeln!(
        out,
        "at {}: writes {}, alone {}{}",
        super::time(now),
        if p.may_write(now) { "open" } else { "refused" },
        if p.may_ack_alone(now) { "yes" } else { "no" },
        match p.alone_hold(now) {
            None => String::new(),
            Some(h) => format!(" ({h})"),
        }
    );
    out
}

pub fn failover_case(s: &mut FailoverCase, tc: &mut TestCase) -> Result<String, String> {
    match tc.directive.as_str() {
        "standby" => {
            let f = StandbyFailover::new(
                take(tc, "me")?,
                timing()?,
                !flag(tc, "async")?,
                take(tc, "epoch")?,
            );
            let out = standby_answer(&f, vec![]);
            s.standby = Some(f);
            Ok(out)
        }
        "primary" => {
            let members = list(tc, "standbys")?
                .ok_or("standbys= is required")?
                .iter()
                .map(|e| match e.split_once('-') {
                    Some((n, "sync")) => Ok(Member::sync(n)),
                    Some((n, "aux")) => Ok(Member::auxiliary(n)),
                    _ => Err(format!("{e:?} is not NAME-sync|aux")),
                })
                .collect::<Result<Vec<_>, String>>()?;
            let mut p =
                PrimaryFailover::new(take(tc, "me")?, take(tc, "epoch")?, timing()?, members);
            p.handed_over_by = tc
                .try_take_arg::<String>("handed_over_by")
                .map_err(|e| e.to_string())?;
            s.now = 0;
            let out = primary_answer(&p, vec![], 0);
            s.primary = Some(p);
            Ok(out)
        }
        "link" | "read" | "arbiter-down" | "tick" | "won" | "lost" | "pause" | "resume" => {
            let f = s.standby.as_mut().ok_or("no standby yet")?;
            let ev = match tc.directive.as_str() {
                "link" => match kind(tc, &["up", "lost"])? {
                    "up" => StandbyEvent::LinkUp,
                    _ => StandbyEvent::LinkLost {
                        in_peer: flag(tc, "in_peer")?,
                    },
                },
                "read" => StandbyEvent::Read {
                    now: take_time(tc, "now")?,
                    record: record(tc)?,
                },
                "arbiter-down" => StandbyEvent::ArbiterDown {
                    now: take_time(tc, "now")?,
                },
                "tick" => StandbyEvent::Tick {
                    now: take_time(tc, "now")?,
                },
                "won" => StandbyEvent::Won {
                    now: take_time(tc, "now")?,
                },
                "lost" => StandbyEvent::Lost,
                "pause" => StandbyEvent::Paused(true),
                _ => StandbyEvent::Paused(false),
            };
            let actions = f.step(ev);
            Ok(standby_answer(f, actions))
        }
        "peer" | "p-read" | "wrote" | "conflict" | "p-down" | "p-tick" => {
            let p = s.primary.as_mut().ok_or("no primary yet")?;
            let ev = match tc.directive.as_str() {
                "peer" => {
                    let standby = take(tc, "standby")?;
                    let in_peer = kind(tc, &["in", "out"])? == "in";
                    PrimaryEvent::StandbyPeer {
                        standby,
                        in_peer,
                        lsn: if in_peer { 0 } else { take(tc, "lsn")? },
                    }
                }
                "p-read" => {
                    s.now = take_time(tc, "now")?;
                    PrimaryEvent::Read {
                        now: s.now,
                        record: record(tc)?,
                    }
                }
                "wrote" => {
                    s.now = take_time(tc, "sent")?;
                    PrimaryEvent::Wrote {
                        sent: s.now,
                        version: take(tc, "version")?,
                        out_of_sync: marks(&list(tc, "marks")?.unwrap_or_default())?,
                    }
                }
                "conflict" => PrimaryEvent::Conflict,
                "p-down" => {
                    s.now = take_time(tc, "now")?;
                    PrimaryEvent::ArbiterDown { now: s.now }
                }
                _ => {
                    s.now = take_time(tc, "now")?;
                    PrimaryEvent::Tick { now: s.now }
                }
            };
            let actions = p.step(ev);
            Ok(primary_answer(p, actions, s.now))
        }
        d => Err(format!("unknown command {d:?}")),
    }
}
