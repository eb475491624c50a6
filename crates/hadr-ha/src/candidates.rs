//! Which standby takes over when a primary with several standbys is lost
//! (docs/failover.md §Three and more nodes): "the most advanced eligible
//! standby".
//!
//! - **Eligible** is a standby the holder *waits for* (SYNC or NEARSYNC: its
//!   principal) and has not marked out of sync. Only such a standby holds
//!   every acknowledged commit: the primary released none without it, or
//!   marked it first. An auxiliary (always SUPERASYNC) may lack acknowledged
//!   commits, so it is never eligible, and neither is a node the holder does
//!   not list at all.
//! - **Most advanced**: among the eligible, the highest flushed LSN the
//!   holder last recorded goes first (ties: the lowest name, so that every
//!   node computes the same order). The others *defer* one TTL more than
//!   the lease rules ask, so that a best candidate that died with the
//!   primary does not block the failover for good.
//!
//! Deferring decides who usually wins, never whether a take-over is safe:
//! every eligible standby has every acknowledged commit, and the
//! conditional write on one version of the record lets exactly one of them
//! win. Today a primary waits for its principal only, so at most one
//! standby is eligible; the rule is written for more.

use serde::{Deserialize, Serialize};

/// A standby as the holder recorded it in the arbiter's record.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Recorded {
    /// Its name (its `hadr_local`).
    pub name: String,
    /// The holder waits for it (SYNC or NEARSYNC principal).
    pub sync: bool,
    /// Its flushed LSN when the holder wrote the record.
    pub flushed_lsn: u64,
}

/// Why a standby is not eligible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotEligible {
    /// The holder does not wait for it (an auxiliary), or does not list it.
    Auxiliary,
    /// The holder marked it out of sync from this LSN.
    OutOfSync {
        /// The first LSN it may lack.
        from_lsn: u64,
    },
}

/// Where an eligible standby stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// It is the most advanced eligible standby (or the record does not
    /// list the holder's standbys, as records of older writers do not).
    Best,
    /// Another eligible standby is more advanced: take over only later.
    Defer {
        /// That standby.
        to: String,
        /// Its recorded flushed LSN.
        flushed_lsn: u64,
    },
}

fn marked(out_of_sync: &[(String, u64)], name: &str) -> Option<u64> {
    out_of_sync
        .iter()
        .find(|(s, _)| s == name)
        .map(|(_, lsn)| *lsn)
}

/// The eligible standbys, best first.
pub fn ranked<'a>(standbys: &'a [Recorded], out_of_sync: &[(String, u64)]) -> Vec<&'a Recorded> {
    let mut v: Vec<&Recorded> = standbys
        .iter()
        .filter(|s| s.sync && marked(out_of_sync, &s.name).is_none())
        .collect();
    v.sort_by(|a, b| {
        b.flushed_lsn
            .cmp(&a.flushed_lsn)
            .then_with(|| a.name.cmp(&b.name))
    });
    v
}

/// Where `me` stands, from the holder's record: its list of standbys
/// (None: an older writer that did not record them; then only its marks
/// speak) and its out-of-sync marks.
pub fn standing(
    me: &str,
    standbys: Option<&[Recorded]>,
    out_of_sync: &[(String, u64)],
) -> Result<Standing, NotEligible> {
    if let Some(from_lsn) = marked(out_of_sync, me) {
        return Err(NotEligible::OutOfSync { from_lsn });
    }
    let Some(standbys) = standbys else {
        return Ok(Standing::Best);
    };
    if !standbys.iter().any(|s| s.name == me && s.sync) {
        return Err(NotEligible::Auxiliary);
    }
    match ranked(standbys, out_of_sync).first() {
        Some(best) if best.name != me => Ok(Standing::Defer {
            to: best.name.clone(),
            flushed_lsn: best.flushed_lsn,
        }),
        _ => Ok(Standing::Best),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, sync: bool, lsn: u64) -> Recorded {
        Recorded {
            name: name.into(),
            sync,
            flushed_lsn: lsn,
        }
    }

    #[test]
    fn an_auxiliary_or_an_unlisted_node_is_never_eligible() {
        let s = [rec("b", true, 100), rec("c", false, 900)];
        assert_eq!(standing("c", Some(&s), &[]), Err(NotEligible::Auxiliary));
        assert_eq!(standing("d", Some(&s), &[]), Err(NotEligible::Auxiliary));
        assert_eq!(standing("b", Some(&s), &[]), Ok(Standing::Best));
        // An auxiliary further ahead does not make the principal defer.
        assert_eq!(ranked(&s, &[]), vec![&s[0]]);
    }

    #[test]
    fn a_mark_outranks_everything() {
        let s = [rec("b", true, 100)];
        let marks = [("b".to_string(), 40)];
        assert_eq!(
            standing("b", Some(&s), &marks),
            Err(NotEligible::OutOfSync { from_lsn: 40 })
        );
        // Also in a record that does not list the standbys.
        assert_eq!(
            standing("b", None, &marks),
            Err(NotEligible::OutOfSync { from_lsn: 40 })
        );
        assert_eq!(standing("b", None, &[]), Ok(Standing::Best));
    }

    #[test]
    fn the_most_advanced_eligible_standby_goes_first_and_ties_break_by_name() {
        let s = [
            rec("b", true, 100),
            rec("c", true, 200),
            rec("d", true, 200),
        ];
        assert_eq!(
            standing("b", Some(&s), &[]),
            Ok(Standing::Defer {
                to: "c".into(),
                flushed_lsn: 200
            })
        );
        assert_eq!(standing("c", Some(&s), &[]), Ok(Standing::Best));
        assert_eq!(
            standing("d", Some(&s), &[]),
            Ok(Standing::Defer {
                to: "c".into(),
                flushed_lsn: 200
            })
        );
        // A marked standby drops out of the ranking.
        let marks = [("c".to_string(), 150)];
        assert_eq!(standing("d", Some(&s), &marks), Ok(Standing::Best));
        assert_eq!(
            ranked(&s, &marks)
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>(),
            vec!["d", "b"]
        );
    }
}
