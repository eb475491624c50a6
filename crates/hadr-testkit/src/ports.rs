//! Free ports for nodes.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Lowest port handed out.
const FIRST: u16 = 20_000;
/// Ports handed out: 20000–32767, below Linux's ephemeral range (32768
/// up), so that the many outgoing connections of tests and benchmarks
/// (clients, replication, probes) cannot take a port between this call and
/// the server's bind.
const SPAN: u64 = 12_768;

/// A port free right now on every address (loopback, the 127.0.0.x
/// addresses and network-namespace veths: it is probed on 0.0.0.0), from
/// 20000–32767. Processes running at once start from different points of a
/// pseudo-random walk, so that parallel test binaries rarely probe the same port.
pub fn free_port() -> u16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let seed = u64::from(std::process::id()).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
    loop {
        let mut x = seed ^ NEXT.fetch_add(0x2545_f491_4f6c_dd1d, Ordering::Relaxed);
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        let port = FIRST + (x % SPAN) as u16;
        // Never the same port twice in one process: two servers of one
        // test binary given one port raced for it, and the loser's ready
        // probe reached the winner (CI saw a test write into another's node).
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        assert!(
            (given.len() as u64) < SPAN / 2,
            "this test process has taken {} ports; the range holds {SPAN}",
            given.len()
        );
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("0.0.0.0", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ports_are_below_the_ephemeral_range() {
        for _ in 0..50 {
            let p = super::free_port();
            assert!((20_000..32_768).contains(&p), "{p}");
        }
    }

    #[test]
    fn a_port_is_handed_out_once_per_process() {
        let ports: Vec<u16> = (0..200).map(|_| super::free_port()).collect();
        let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
    }
}
