//! One pgbench run, and what its summary and per-transaction logs say.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::proc;
use crate::targets::ConnInfo;

/// pgbench's query protocol (`-M`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Simple,
    Extended,
    Prepared,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Simple => "simple",
            Mode::Extended => "extended",
            Mode::Prepared => "prepared",
        }
    }
}

/// The measured outcome of one pgbench run.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Measurement {
    /// "tps = N (without initial connection time)".
    pub tps: Option<f64>,
    /// Transactions that completed (successful latencies in the logs).
    pub transactions: u64,
    /// Median latency of successful transactions, µs (nearest rank).
    pub p50_us: Option<f64>,
    /// 99th percentile latency of successful transactions, µs (nearest rank).
    pub p99_us: Option<f64>,
    /// Failed transactions: "failed"/"serialization"/"deadlock" log entries,
    /// or pgbench's own count if larger.
    pub failed: u64,
    /// Clients that pgbench aborted on an error (their work stops there).
    pub aborted_clients: u64,
    /// pgbench's exit status and error lines when it did not exit 0.
    pub error: Option<String>,
}

pub struct Run<'a> {
    pub script: &'a Path,
    pub conn: &'a ConnInfo,
    pub mode: Mode,
    pub clients: u32,
    pub seconds: u64,
    /// Empty directory for this run's per-transaction logs.
    pub log_dir: &'a Path,
}

impl Run<'_> {
    pub fn threads(&self) -> u32 {
        self.clients.clamp(1, 2)
    }

    pub fn execute(&self) -> Result<Measurement> {
        std::fs::create_dir_all(self.log_dir)
            .with_context(|| format!("creating {}", self.log_dir.display()))?;
        let prefix = self.log_dir.join("txn");
        let mut cmd = Command::new("pgbench");
        cmd.arg("-n")
            .arg("-f")
            .arg(self.script)
            .args(["-M", self.mode.as_str()])
            .args(["-c", &self.clients.to_string()])
            .args(["-j", &self.threads().to_string()])
            .args(["-T", &self.seconds.to_string()])
            .arg("-l")
            .arg(format!("--log-prefix={}", prefix.display()))
            .args(self.conn.args())
            .arg(&self.conn.dbname)
            .env("PGCONNECT_TIMEOUT", "10")
            .env("PGAPPNAME", "hadr-bench");
        // Connecting 32 clients plus -T plus the final report: generous but bounded.
        let timeout = Duration::from_secs(self.seconds * 2 + 120);
        let out = proc::run(&mut cmd, timeout, "pgbench")?;

        let mut m = Measurement::default();
        parse_summary(&out.stdout, &mut m);
        m.aborted_clients = out
            .stderr
            .lines()
            .filter(|l| l.contains("client") && l.contains("aborted"))
            .count() as u64;
        if !out.status.success() {
            let lines: Vec<&str> = out
                .stderr
                .lines()
                .filter(|l| !l.trim().is_empty())
                .collect();
            let mut shown: Vec<&str> = lines.iter().take(6).copied().collect();
            if lines.len() > 6 {
                shown.push("...");
            }
            m.error = Some(format!(
                "pgbench exited with {}: {}",
                out.status,
                shown.join(" | ")
            ));
        }

        let mut latencies = Vec::new();
        let mut log_failed = 0u64;
        let mut entries: Vec<_> =
            std::fs::read_dir(self.log_dir)?.collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let text = std::fs::read_to_string(e.path())
                .with_context(|| format!("reading {}", e.path().display()))?;
            let (lat, failed) = parse_log(&text);
            latencies.extend(lat);
            log_failed += failed;
        }
        m.transactions = latencies.len() as u64;
        m.failed = m.failed.max(log_failed);
        latencies.sort_unstable();
        m.p50_us = percentile(&latencies, 50.0);
        m.p99_us = percentile(&latencies, 99.0);
        Ok(m)
    }
}

/// Reads tps and the failed-transaction count from pgbench's summary.
fn parse_summary(stdout: &str, m: &mut Measurement) {
    for line in stdout.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("tps = ") {
            // PostgreSQL 15 prints only "(without initial connection time)";
            // older versions print an "including connections" line as well.
            if rest.contains("without initial connection time")
                || rest.contains("excluding connections")
            {
                m.tps = rest.split_whitespace().next().and_then(|v| v.parse().ok());
            }
        } else if let Some(rest) = line.strip_prefix("number of failed transactions:") {
            if let Some(n) = rest.split_whitespace().next().and_then(|v| v.parse().ok()) {
                m.failed = n;
            }
        }
    }
}

/// Parses one per-transaction log: "client_id transaction_no time script_no
/// time_epoch time_us [...]", where time is the latency in µs, or a word
/// ("failed", "serialization", "deadlock", "skipped") for a transaction that
/// did not complete. Returns the latencies and the number of failures.
fn parse_log(text: &str) -> (Vec<u64>, u64) {
    let mut lat = Vec::new();
    let mut failed = 0;
    for line in text.lines() {
        let Some(field) = line.split_whitespace().nth(2) else {
            continue;
        };
        match field.parse::<u64>() {
            Ok(us) => lat.push(us),
            Err(_) if field == "skipped" => {}
            Err(_) => failed += 1,
        }
    }
    (lat, failed)
}

/// Nearest-rank percentile of sorted values: the smallest value such that at
/// least `p` percent of all values are less than or equal to it.
pub fn percentile(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1] as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&[7], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 99.0), Some(990.0));
    }

    #[test]
    fn logs_and_summary() {
        let (lat, failed) =
            parse_log("0 1 1234 0 1700000000 12345\n1 1 failed 0 1700000000 22345\n0 2 99 0 1 2\n");
        assert_eq!(lat, vec![1234, 99]);
        assert_eq!(failed, 1);
        let mut m = Measurement::default();
        parse_summary(
            "number of transactions actually processed: 10\nnumber of failed transactions: 3 (2.0%)\n\
             latency average = 1.0 ms\ninitial connection time = 2.5 ms\ntps = 812.345678 (without initial connection time)\n",
            &mut m,
        );
        assert_eq!(m.tps, Some(812.345678));
        assert_eq!(m.failed, 3);
    }
}
