//! Failed logins counted per source address: after `max_failures` failures
//! from one address within `window` (counted from the first of them), that
//! address is refused a password exchange at once, until the
//! window ends. A success does not reset the count, so one valid account
//! does not buy more guesses at another.
//!
//! The map is bounded: when full, expired entries go first, then the entry
//! whose window started earliest. An attacker with many addresses can push
//! out an entry, but each address still gets at most `max_failures` guesses
//! per window while it is tracked.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
struct Entry {
    since: Instant,
    failures: u32,
}

/// The per-address failure counter. Time comes from the caller.
#[derive(Debug)]
pub struct FailureLimiter {
    max_failures: u32,
    window: Duration,
    capacity: usize,
    map: HashMap<IpAddr, Entry>,
}

impl FailureLimiter {
    /// Refuse an address after `max_failures` failures within `window`
    /// (0 failures: never refuse), tracking at most `capacity` addresses.
    pub fn new(max_failures: u32, window: Duration, capacity: usize) -> FailureLimiter {
        FailureLimiter {
            max_failures,
            window,
            capacity: capacity.max(1),
            map: HashMap::new(),
        }
    }

    /// Whether `addr` may try to log in now; if not, how long until it may.
    pub fn check(&mut self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.max_failures == 0 {
            return Ok(());
        }
        let addr = addr.to_canonical();
        match self.map.get(&addr) {
            Some(e) if now.saturating_duration_since(e.since) >= self.window => {
                self.map.remove(&addr);
                Ok(())
            }
            Some(e) if e.failures >= self.max_failures => {
                Err(self.window - now.saturating_duration_since(e.since))
            }
            _ => Ok(()),
        }
    }

    /// Count a failed login from `addr`.
    pub fn failure(&mut self, addr: IpAddr, now: Instant) {
        if self.max_failures == 0 {
            return;
        }
        let addr = addr.to_canonical();
        if let Some(e) = self.map.get_mut(&addr) {
            if now.saturating_duration_since(e.since) >= self.window {
                *e = Entry {
                    since: now,
                    failures: 1,
                };
            } else {
                e.failures = e.failures.saturating_add(1);
            }
            return;
        }
        if self.map.len() >= self.capacity {
            let window = self.window;
            self.map
                .retain(|_, e| now.saturating_duration_since(e.since) < window);
        }
        if self.map.len() >= self.capacity {
            if let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, e)| e.since)
                .map(|(a, _)| *a)
            {
                self.map.remove(&oldest);
            }
        }
        self.map.insert(
            addr,
            Entry {
                since: now,
                failures: 1,
            },
        );
    }

    /// How many addresses are tracked.
    pub fn tracked(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_is_refused_after_the_limit_until_the_window_ends() {
        let t0 = Instant::now();
        let mut l = FailureLimiter::new(3, Duration::from_secs(60), 100);
        let a = ip("192.0.2.1");
        for i in 0..3 {
            assert!(l.check(a, t0 + Duration::from_secs(i)).is_ok());
            l.failure(a, t0 + Duration::from_secs(i));
        }
        let wait = l.check(a, t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        // Another address is not affected; the same one as v4-in-v6 is.
        assert!(l.check(ip("192.0.2.2"), t0).is_ok());
        assert!(l
            .check(ip("::ffff:192.0.2.1"), t0 + Duration::from_secs(10))
            .is_err());
        // After the window it may try again.
        assert!(l.check(a, t0 + Duration::from_secs(60)).is_ok());
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn failures_spread_over_windows_do_not_add_up() {
        let t0 = Instant::now();
        let mut l = FailureLimiter::new(3, Duration::from_secs(10), 100);
        let a = ip("192.0.2.1");
        l.failure(a, t0);
        l.failure(a, t0 + Duration::from_secs(1));
        l.failure(a, t0 + Duration::from_secs(11));
        l.failure(a, t0 + Duration::from_secs(12));
        assert!(l.check(a, t0 + Duration::from_secs(13)).is_ok());
    }

    #[test]
    fn the_map_stays_bounded() {
        let t0 = Instant::now();
        let mut l = FailureLimiter::new(2, Duration::from_secs(60), 4);
        for i in 0..100u32 {
            l.failure(
                IpAddr::from(i.to_be_bytes()),
                t0 + Duration::from_millis(i.into()),
            );
            assert!(l.tracked() <= 4);
        }
        // The newest addresses are the ones kept.
        let last = IpAddr::from(99u32.to_be_bytes());
        l.failure(last, t0 + Duration::from_millis(100));
        assert!(l.check(last, t0 + Duration::from_millis(101)).is_err());
    }

    #[test]
    fn zero_disables() {
        let t0 = Instant::now();
        let mut l = FailureLimiter::new(0, Duration::from_secs(60), 4);
        for _ in 0..10 {
            l.failure(ip("192.0.2.1"), t0);
        }
        assert!(l.check(ip("192.0.2.1"), t0).is_ok());
        assert_eq!(l.tracked(), 0);
    }
}
