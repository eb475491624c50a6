//! Exponential backoff with full jitter, a cap and an overall budget
//! (pitfall 4 of DB2's client reroute: aggressive retries exhaust a
//! recovering server). Full jitter spreads clients that lost the same
//! primary at the same instant uniformly over the whole window, instead of
//! letting them come back in waves (AWS Architecture Blog, "Exponential
//! Backoff And Jitter").

use std::time::Duration;

use rand::{Rng, RngExt};

/// Backoff ceilings: `base * 2^round`, at most `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first ceiling.
    pub base: Duration,
    /// The largest ceiling.
    pub max: Duration,
}

impl Backoff {
    /// The ceiling of the wait after `round` failed rounds (0-based).
    pub fn ceiling(&self, round: u32) -> Duration {
        let factor = 1u32.checked_shl(round.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The wait after `round`: uniform in `[0, ceiling(round)]`, and never
    /// past `left` (what remains of the budget).
    pub fn delay<R: Rng + ?Sized>(&self, round: u32, left: Duration, rng: &mut R) -> Duration {
        let ceiling = self.ceiling(round).min(left);
        let micros = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(rng.random_range(0..=micros))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    const B: Backoff = Backoff {
        base: Duration::from_millis(50),
        max: Duration::from_secs(2),
    };

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let ms = Duration::from_millis;
        for (round, want) in [
            (0, ms(50)),
            (1, ms(100)),
            (2, ms(200)),
            (5, ms(1600)),
            (6, ms(2000)),
            (31, ms(2000)),
            (32, ms(2000)),
            (u32::MAX, ms(2000)),
        ] {
            assert_eq!(B.ceiling(round), want, "round {round}");
        }
    }

    #[test]
    fn delays_stay_within_the_ceiling_and_the_budget() {
        let mut rng = StdRng::seed_from_u64(7);
        for round in 0..40 {
            for _ in 0..200 {
                let d = B.delay(round, Duration::from_secs(60), &mut rng);
                assert!(d <= B.ceiling(round), "round {round}: {d:?}");
                let d = B.delay(round, Duration::from_millis(30), &mut rng);
                assert!(d <= Duration::from_millis(30));
            }
        }
        assert_eq!(B.delay(3, Duration::ZERO, &mut rng), Duration::ZERO);
    }

    #[test]
    fn jitter_is_full_not_a_fixed_step() {
        // Full jitter: delays cover the whole window, low and high.
        let mut rng = StdRng::seed_from_u64(42);
        let ds: Vec<Duration> = (0..1000)
            .map(|_| B.delay(10, Duration::from_secs(60), &mut rng))
            .collect();
        let low = ds
            .iter()
            .filter(|d| **d < Duration::from_millis(500))
            .count();
        let high = ds
            .iter()
            .filter(|d| **d > Duration::from_millis(1500))
            .count();
        assert!(low > 150 && high > 150, "low {low} high {high}");
        // Seeded: the same seed gives the same delays.
        let mut again = StdRng::seed_from_u64(42);
        assert_eq!(B.delay(10, Duration::from_secs(60), &mut again), ds[0]);
    }
}
