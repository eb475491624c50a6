//! Epoch arithmetic: the number of a primary's term, raised by every
//! promotion, fences every older term (docs/takeover.md §Epochs).

use hadr_log::EpochStart;

/// The epoch a promotion takes: above every epoch this node has heard of,
/// so that two promotions from one term can never share an epoch with a
/// term this node knows was already taken.
pub fn next_epoch(current: u64, highest_seen: u64) -> u64 {
    current.max(highest_seen) + 1
}

/// Whether an epoch history is well-formed: epochs strictly rising, start
/// LSNs never falling. Every history a node writes or adopts must be; a
/// violation means a bug that would let two terms claim one LSN range.
pub fn history_is_ordered(h: &[EpochStart]) -> bool {
    h.windows(2)
        .all(|w| w[0].epoch < w[1].epoch && w[0].start_lsn <= w[1].start_lsn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promotion_epoch_is_above_everything_seen() {
        assert_eq!(next_epoch(3, 0), 4);
        assert_eq!(next_epoch(3, 5), 6);
    }

    #[test]
    fn ordered_histories() {
        let e = |epoch, start_lsn| EpochStart { epoch, start_lsn };
        assert!(history_is_ordered(&[]));
        assert!(history_is_ordered(&[e(1, 0), e(2, 10), e(5, 10)]));
        assert!(!history_is_ordered(&[e(2, 0), e(2, 10)]));
        assert!(!history_is_ordered(&[e(1, 20), e(2, 10)]));
    }
}
