//! How an old primary rejoins a new one (docs/takeover.md §Rejoin): the
//! divergence point from the two epoch histories, and the plan that follows
//! from where our log ends.

use hadr_log::EpochStart;
use serde::{Deserialize, Serialize};

/// The first LSN at which two epoch histories may hold different records:
/// where the first epoch that is not in both began. `u64::MAX` when neither
/// history has an epoch the other lacks.
pub fn divergence(ours: &[EpochStart], theirs: &[EpochStart]) -> u64 {
    let common = ours.iter().zip(theirs).take_while(|(a, b)| a == b).count();
    let a = ours.get(common).map(|e| e.start_lsn).unwrap_or(u64::MAX);
    let b = theirs.get(common).map(|e| e.start_lsn).unwrap_or(u64::MAX);
    a.min(b)
}

/// How a node rejoins a primary it has found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "plan", rename_all = "snake_case")]
pub enum Rejoin {
    /// Same history: follow from our log end.
    Follow,
    /// The primary's epoch is newer and our log stops at or before the point
    /// where it departs from ours: adopt its history and follow.
    Adopt,
    /// Our log has records past the divergence point the primary never had:
    /// rewind to `divergence` (or re-clone), then follow.
    Rewind {
        /// Divergence LSN D.
        divergence: u64,
    },
    /// The primary's epoch is older than ours: it was superseded; never follow it.
    Superseded,
}

/// Decide how to follow a primary (pure). `our_end`: our log end.
pub fn rejoin(
    our_epoch: u64,
    ours: &[EpochStart],
    our_end: u64,
    their_epoch: u64,
    theirs: &[EpochStart],
) -> Rejoin {
    if their_epoch < our_epoch {
        return Rejoin::Superseded;
    }
    let d = divergence(ours, theirs);
    if our_end > d {
        return Rejoin::Rewind { divergence: d };
    }
    if their_epoch == our_epoch {
        Rejoin::Follow
    } else {
        Rejoin::Adopt
    }
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
    fn divergence_is_where_the_first_unshared_epoch_began() {
        assert_eq!(divergence(&h(&[(1, 0)]), &h(&[(1, 0)])), u64::MAX);
        assert_eq!(divergence(&h(&[(1, 0)]), &h(&[(1, 0), (2, 500)])), 500);
        assert_eq!(divergence(&h(&[(1, 0), (2, 500)]), &h(&[(1, 0)])), 500);
        assert_eq!(
            divergence(&h(&[(1, 0), (2, 500)]), &h(&[(1, 0), (3, 400)])),
            400
        );
        assert_eq!(
            divergence(
                &h(&[(1, 0), (2, 500), (3, 900)]),
                &h(&[(1, 0), (2, 500), (4, 700)])
            ),
            700
        );
    }

    #[test]
    fn rejoin_plans() {
        let old = h(&[(1, 0)]);
        let new = h(&[(1, 0), (2, 500)]);
        assert_eq!(rejoin(1, &old, 400, 2, &new), Rejoin::Adopt);
        assert_eq!(rejoin(1, &old, 500, 2, &new), Rejoin::Adopt);
        assert_eq!(
            rejoin(1, &old, 501, 2, &new),
            Rejoin::Rewind { divergence: 500 }
        );
        assert_eq!(rejoin(2, &new, 9000, 2, &new), Rejoin::Follow);
        assert_eq!(rejoin(2, &new, 10, 1, &old), Rejoin::Superseded);
        // Same epoch number but different histories (two forced takeovers): rewind.
        let other = h(&[(1, 0), (2, 300)]);
        assert_eq!(
            rejoin(2, &other, 450, 2, &new),
            Rejoin::Rewind { divergence: 300 }
        );
    }
}
