//! Lease arithmetic, by each node's own monotonic clock only
//! (docs/failover.md §Lease rules). No wall clock is compared across nodes.
//!
//! - The holder renews every `ttl / 3`.
//! - It may acknowledge alone only until `sent + ttl - margin`, where `sent`
//!   is when it *sent* its last successful renewal: the arbiter stored that
//!   renewal no earlier than it was sent, so every other node saw it no
//!   earlier either.
//! - A contender may take the lease only after it has seen one version of
//!   the record unchanged for `ttl + margin`, counted from the first time it
//!   read that version.
//!
//! Why that is safe: let `S` be the real time the holder sent its last
//! renewal. It stops by its clock at `S + ttl - margin`, i.e. by real time
//! `S + (ttl - margin)/(1 - ρ)` with clock-rate error ρ. A contender cannot
//! read that version before `S`, so it takes over at real time
//! `≥ S + (ttl + margin)/(1 + ρ)`. The second is later whenever
//! `margin > ρ·ttl` (about 2 ms for a 2 s TTL at a generous 1000 ppm); the
//! rest of the margin covers scheduling pauses between the holder's last
//! check and its reply. A holder frozen longer than that (SIGSTOP, a hung
//! VM) checks again before its first reply and finds its lease over: the
//! monotonic clock keeps running while a process is stopped.

use serde::{Deserialize, Serialize};

/// The lease's timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseTiming {
    /// Time to live (µs).
    pub ttl_us: u64,
    /// Safety margin (µs): clock-rate drift and scheduling pauses.
    pub margin_us: u64,
}

/// Why a lease timing is unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimingError {
    /// The margin leaves the holder no time to use its lease.
    #[error("lease margin {margin_ms} ms must be below a third of the TTL ({ttl_ms} ms): the holder renews every TTL/3 and must still hold the lease between renewals")]
    MarginTooLarge {
        /// Margin.
        margin_ms: u64,
        /// TTL.
        ttl_ms: u64,
    },
    /// A margin too small to cover clock drift.
    #[error("lease margin {margin_ms} ms is below 1 ms per second of TTL (clock-rate drift alone needs that)")]
    MarginTooSmall {
        /// Margin.
        margin_ms: u64,
    },
}

impl LeaseTiming {
    /// A timing, checked.
    pub fn new(ttl_us: u64, margin_us: u64) -> Result<LeaseTiming, TimingError> {
        if margin_us.saturating_mul(3) >= ttl_us {
            return Err(TimingError::MarginTooLarge {
                margin_ms: margin_us / 1000,
                ttl_ms: ttl_us / 1000,
            });
        }
        if margin_us < ttl_us / 1000 {
            return Err(TimingError::MarginTooSmall {
                margin_ms: margin_us / 1000,
            });
        }
        Ok(LeaseTiming { ttl_us, margin_us })
    }

    /// How often the holder renews.
    pub fn renew_every_us(&self) -> u64 {
        self.ttl_us / 3
    }

    /// Until when a holder whose last successful renewal was sent at `sent`
    /// may acknowledge alone (exclusive).
    pub fn holder_deadline(&self, sent: u64) -> u64 {
        sent.saturating_add(self.ttl_us - self.margin_us)
    }

    /// The timing a contender must wait by, given the timing the holder
    /// wrote into the record: whichever makes it wait longer. The holder
    /// stops by its own `ttl - margin`; a contender configured with a
    /// shorter lease would otherwise take over while the holder still
    /// acknowledges (nodes configured differently by mistake).
    pub fn at_least(self, holder: Option<LeaseTiming>) -> LeaseTiming {
        match holder {
            Some(h) if h.ttl_us + h.margin_us > self.ttl_us + self.margin_us => h,
            _ => self,
        }
    }

    /// When a contender that first saw the current version at `first_seen`
    /// may take the lease.
    pub fn takeover_at(&self, first_seen: u64) -> u64 {
        first_seen.saturating_add(self.ttl_us + self.margin_us)
    }
}

/// A contender's watch of one version of the record.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Watch {
    /// The version seen (opaque).
    pub version: String,
    /// When it was first seen (µs, local monotonic).
    pub first_seen: u64,
}

impl Watch {
    /// Note a read of `version` at `now`; a new version restarts the watch.
    pub fn observe(watch: Option<Watch>, version: &str, now: u64) -> Watch {
        match watch {
            Some(w) if w.version == version => w,
            _ => Watch {
                version: version.to_string(),
                first_seen: now,
            },
        }
    }

    /// Whether the version has been unchanged long enough to take over.
    pub fn expired(&self, timing: &LeaseTiming, now: u64) -> bool {
        now >= timing.takeover_at(self.first_seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1000;

    #[test]
    fn the_holder_stops_strictly_before_a_contender_may_take_over() {
        let t = LeaseTiming::new(2000 * MS, 500 * MS).unwrap();
        assert_eq!(t.renew_every_us(), 666_666);
        // The contender cannot have seen the renewal before it was sent.
        for sent in [0, 7, 1_000_000] {
            for seen_after in [0, 1, 300 * MS] {
                assert!(t.holder_deadline(sent) < t.takeover_at(sent + seen_after));
            }
        }
        let w = Watch::observe(None, "v1", 100);
        assert!(!w.expired(&t, 100 + 2500 * MS - 1));
        assert!(w.expired(&t, 100 + 2500 * MS));
        // A renewal (a new version) restarts the watch; the same one does not.
        let w2 = Watch::observe(Some(w.clone()), "v1", 999);
        assert_eq!(w2, w);
        let w3 = Watch::observe(Some(w), "v2", 999);
        assert_eq!(w3.first_seen, 999);
    }

    #[test]
    fn a_contender_waits_by_the_longer_of_its_own_and_the_holders_lease() {
        let short = LeaseTiming::new(1000 * MS, 200 * MS).unwrap();
        let long = LeaseTiming::new(10_000 * MS, 500 * MS).unwrap();
        assert_eq!(short.at_least(Some(long)), long);
        assert_eq!(long.at_least(Some(short)), long);
        assert_eq!(short.at_least(None), short);
        // The holder with the long lease stops before the short-configured
        // contender may act.
        let sent = 5 * MS;
        assert!(long.holder_deadline(sent) < short.at_least(Some(long)).takeover_at(sent));
        assert!(long.holder_deadline(sent) > short.takeover_at(sent));
    }

    #[test]
    fn timings_that_cannot_be_safe_are_refused() {
        assert!(LeaseTiming::new(3000 * MS, 1000 * MS).is_err());
        assert!(LeaseTiming::new(3000 * MS, 2 * MS).is_err());
        assert!(LeaseTiming::new(3000 * MS, 3 * MS).is_ok());
    }
}
