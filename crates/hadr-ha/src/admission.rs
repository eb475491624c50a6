//! Whether a primary lets a standby that says hello stream from it, and from
//! where (docs/takeover.md §Admission). The driver asks the write guard first
//! (a standby with a newer epoch fences this primary instead); what is left
//! is pure arithmetic on the two epoch histories and the log range kept.

use hadr_log::EpochStart;
use hadr_protocol::{Refuse, RefuseCode};

use crate::rejoin::{rejoin, Rejoin};

/// What the primary knows of itself.
#[derive(Clone, Copy, Debug)]
pub struct PrimarySide<'a> {
    /// Its epoch.
    pub epoch: u64,
    /// Its epoch history.
    pub history: &'a [EpochStart],
    /// First LSN its log still holds.
    pub log_start: u64,
    /// Its log end.
    pub log_end: u64,
}

/// What the standby said of itself.
#[derive(Clone, Copy, Debug)]
pub struct StandbySide<'a> {
    /// Its address, as the target list names it.
    pub address: &'a str,
    /// Its epoch.
    pub epoch: u64,
    /// Its epoch history.
    pub history: &'a [EpochStart],
    /// Its log end: where streaming would start.
    pub lsn: u64,
}

/// Why a standby may not stream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionRefusal {
    /// Not in `hadr_target_list`.
    #[error("standby {0} is not in this primary's hadr_target_list")]
    NotListed(String),
    /// Its log has records past the point where our history departs from its.
    #[error("standby's log runs to LSN {lsn} past LSN {divergence}, where this primary's history departs from it: it diverged; needs rewind")]
    Diverged {
        /// Its log end.
        lsn: u64,
        /// Where the histories part.
        divergence: u64,
    },
    /// It needs log this primary no longer keeps.
    #[error(
        "standby needs log from LSN {lsn} but the primary keeps it only from {start}: needs clone"
    )]
    LogGone {
        /// Where it would start.
        lsn: u64,
        /// Where our log starts.
        start: u64,
    },
    /// Its log ends beyond ours with the same history: this primary lost a
    /// tail it had shipped (it ships before its own fsync). A rewind cannot
    /// help — the histories agree, so it finds nothing to undo — so the
    /// standby is re-cloned.
    #[error("standby's log ends at LSN {lsn}, beyond the primary's {end}, with the same epoch history (the primary lost a log tail it had shipped): needs clone")]
    Ahead {
        /// Its log end.
        lsn: u64,
        /// Ours.
        end: u64,
    },
}

impl AdmissionRefusal {
    /// The refusal to send.
    pub fn refuse(&self) -> Refuse {
        let code = match self {
            AdmissionRefusal::NotListed(_) => RefuseCode::NotListed,
            AdmissionRefusal::Diverged { .. } => RefuseCode::NeedsRewind,
            AdmissionRefusal::LogGone { .. } | AdmissionRefusal::Ahead { .. } => {
                RefuseCode::NeedsClone
            }
        };
        Refuse::new(code, self.to_string())
    }
}

/// Whether the standby is in the target list at all (asked before the
/// write guard hears of it: an unlisted peer must not end a start-up wait).
pub fn check_listed(standby: &StandbySide<'_>, listed: bool) -> Result<(), AdmissionRefusal> {
    if listed {
        Ok(())
    } else {
        Err(AdmissionRefusal::NotListed(standby.address.to_string()))
    }
}

/// Where a listed standby streams from, or why it may not.
pub fn admit(
    primary: &PrimarySide<'_>,
    standby: &StandbySide<'_>,
) -> Result<u64, AdmissionRefusal> {
    // The standby's view: it rejoins us. A plan of Superseded cannot come
    // back (the guard fenced us first if its epoch were newer).
    if let Rejoin::Rewind { divergence } = rejoin(
        standby.epoch,
        standby.history,
        standby.lsn,
        primary.epoch,
        primary.history,
    ) {
        return Err(AdmissionRefusal::Diverged {
            lsn: standby.lsn,
            divergence,
        });
    }
    if standby.lsn < primary.log_start {
        return Err(AdmissionRefusal::LogGone {
            lsn: standby.lsn,
            start: primary.log_start,
        });
    }
    if standby.lsn > primary.log_end {
        return Err(AdmissionRefusal::Ahead {
            lsn: standby.lsn,
            end: primary.log_end,
        });
    }
    Ok(standby.lsn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &[(u64, u64)]) -> Vec<EpochStart> {
        v.iter()
            .map(|&(epoch, start_lsn)| EpochStart { epoch, start_lsn })
            .collect()
    }

    #[test]
    fn admission_decisions() {
        let ours = h(&[(1, 0), (2, 500)]);
        let p = PrimarySide {
            epoch: 2,
            history: &ours,
            log_start: 100,
            log_end: 900,
        };
        let old = h(&[(1, 0)]);
        let s = |lsn, history: &'static [EpochStart], epoch| StandbySide {
            address: "b",
            epoch,
            history,
            lsn,
        };
        let old: &'static [EpochStart] = Box::leak(old.into_boxed_slice());
        let same: &'static [EpochStart] = Box::leak(ours.clone().into_boxed_slice());
        assert_eq!(admit(&p, &s(400, old, 1)), Ok(400));
        assert_eq!(admit(&p, &s(500, old, 1)), Ok(500));
        assert!(matches!(
            admit(&p, &s(501, old, 1)),
            Err(AdmissionRefusal::Diverged {
                divergence: 500,
                ..
            })
        ));
        assert!(matches!(
            admit(&p, &s(50, same, 2)),
            Err(AdmissionRefusal::LogGone { start: 100, .. })
        ));
        assert!(matches!(
            admit(&p, &s(901, same, 2)),
            Err(AdmissionRefusal::Ahead { end: 900, .. })
        ));
        assert_eq!(admit(&p, &s(900, same, 2)), Ok(900));
        assert_eq!(
            admit(&p, &s(501, old, 1)).unwrap_err().refuse().code,
            RefuseCode::NeedsRewind
        );
        assert_eq!(
            admit(&p, &s(50, same, 2)).unwrap_err().refuse().code,
            RefuseCode::NeedsClone
        );
        // A rewind would find nothing to undo (same history): re-clone, or
        // the standby would be refused and "rewound" in a loop.
        assert_eq!(
            admit(&p, &s(901, same, 2)).unwrap_err().refuse().code,
            RefuseCode::NeedsClone
        );
        assert!(check_listed(&s(0, old, 1), false).is_err());
        assert!(check_listed(&s(0, old, 1), true).is_ok());
    }
}
