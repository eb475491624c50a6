//! The client-gap part (`--client-gap`, issue 10's benchmark): the longest
//! time a client goes without an acknowledged write around a switch, for
//! every stock driver, hadr against PostgreSQL 15 + Patroni in one
//! invocation.
//!
//! Hosts are network namespaces on a bridge (hadr_testkit::netns): nodes
//! `a` and `b`, etcd on `arb` (hadr's arbiter, Patroni's DCS). The clients
//! run in this program's namespace and reach both nodes through the
//! bridge. One writer per driver (bench/src/clientgap/writers.rs) runs for
//! a whole series, through every switch, inserting a new id every ~5 ms in
//! autocommit, reconnecting on any error with the same multi-host
//! connection string (the README's), and notes the time of every
//! acknowledgement.
//!
//! Switches, each measured the same way on both systems:
//! - **graceful**: hadr `POST /takeover` on the standby (what `hadr takeover`
//!   sends); Patroni `patronictl switchover --force`.
//! - **crash**: `kill -9` of the primary's server (hadr; Patroni and its
//!   PostgreSQL), the host left up: automatic failover (hadr through its
//!   arbiter, Patroni once the leader key expires). The crashed node is
//!   restarted after the switch and must rejoin as the standby.
//!
//! Per switch: the switch time (request or kill to the first write a probe
//! sees acknowledged on the new primary, over fresh connections to that
//! node alone) and, per client, its gap: the longest interval between two
//! of its consecutive acknowledgements, from its last one before the
//! switch until every client has written on the new primary. After the series,
//! every id a client saw acknowledged must be on the final primary.

mod render;
mod systems;
mod writers;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hadr_testkit::netns::Cluster;
use serde::{Deserialize, Serialize};

use crate::failover::client::{self, Probe};
use crate::failover::servers::Etcd;
use crate::failover::{pct, sorted, PartCtx};
use crate::{proc, Ctx};
pub use render::ClientGapReport;
use systems::{HadrPair, Patroni, System, HOSTS};
use writers::{unix_ms, Client, Driver, Hosts, Programs, DRIVERS, STOCK_DRIVERS};

/// The probe's write (one row of `tk`).
const PROBE_SQL: &str = "UPDATE tk SET n = n + 1 WHERE id = 1";
/// Longest wait for the new primary's first write after a switch.
const SWITCH_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait for every client to write on the new primary.
const RESUME_TIMEOUT: Duration = Duration::from_secs(60);
/// Targets (issue 10): a graceful switch costs a client under 1 s; a
/// crash under the failover time plus 0.5 s.
pub const GRACEFUL_TARGET_MS: f64 = 1000.0;
pub const CRASH_MARGIN_MS: f64 = 500.0;

/// How many switches of each kind.
#[derive(Clone, Debug)]
pub struct Options {
    pub hadr_switches: usize,
    pub hadr_crashes: usize,
    pub patroni_switches: usize,
    pub patroni_crashes: usize,
    /// Pause after each acknowledged write, per client.
    pub pause_ms: u64,
    pub patroni: std::path::PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Graceful,
    Crash,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Graceful => "graceful",
            Kind::Crash => "crash",
        }
    }
}

/// One client during one switch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClientGap {
    pub driver: Driver,
    /// The longest interval between two acknowledgements; None: it had
    /// not written on the new primary within [`RESUME_TIMEOUT`].
    pub gap_ms: Option<f64>,
    /// Errors it reported during the switch, and the first of them.
    pub errors: u64,
    pub first_error: Option<String>,
    /// After the switch, until the old primary was back as the standby
    /// in sync (restarted first after a crash): the longest interval
    /// without an acknowledged write, up to the moment it was in sync.
    #[serde(default)]
    pub rejoin_gap_ms: Option<f64>,
}

/// One switch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Switch {
    pub kind: Kind,
    pub from: String,
    pub to: String,
    /// Request (graceful) or kill (crash) to the first write acknowledged
    /// on the new primary.
    pub switch_ms: f64,
    /// From the end of the switch's window until the old primary was back
    /// as the standby in sync.
    #[serde(default)]
    pub rejoin_ms: f64,
    pub clients: Vec<ClientGap>,
}

impl Switch {
    /// The bound a client's gap is judged against.
    pub fn target_ms(&self) -> f64 {
        match self.kind {
            Kind::Graceful => GRACEFUL_TARGET_MS,
            Kind::Crash => self.switch_ms + CRASH_MARGIN_MS,
        }
    }
}

/// One client over a whole series.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClientTotal {
    pub driver: Driver,
    pub acked: u64,
    /// Acknowledged ids missing on the final primary.
    pub lost: u64,
    pub lost_ids: Vec<i64>,
    /// Median interval between two acknowledgements (the resolution of
    /// its gaps).
    pub median_interval_ms: f64,
    pub errors: u64,
}

/// One system's switches.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Series {
    pub system: String,
    /// Its settings, for the report.
    pub setting: String,
    pub graceful_asked: usize,
    pub crash_asked: usize,
    pub switches: Vec<Switch>,
    pub totals: Vec<ClientTotal>,
    /// What stopped the series early.
    pub error: Option<String>,
}

impl Series {
    pub fn lost(&self) -> u64 {
        self.totals.iter().map(|t| t.lost).sum()
    }

    /// Lost writes, a series stopped early, and clients that never resumed.
    pub fn failures(&self) -> usize {
        usize::from(self.lost() > 0)
            + usize::from(self.error.is_some())
            + self
                .switches
                .iter()
                .flat_map(|s| &s.clients)
                .filter(|c| c.gap_ms.is_none())
                .count()
    }

    /// Gaps of `driver` over the switches of `kind`.
    pub fn gaps(&self, kind: Kind, driver: Driver) -> Vec<f64> {
        self.switches
            .iter()
            .filter(|s| s.kind == kind)
            .filter_map(|s| s.clients.iter().find(|c| c.driver == driver))
            .filter_map(|c| c.gap_ms)
            .collect()
    }
}

/// The longest interval between two consecutive times of `acks` (sorted,
/// unix ms) whose later one is after `from`; None if none is.
pub fn longest_gap(acks: &[f64], from: f64) -> Option<f64> {
    acks.windows(2)
        .filter(|w| w[1] > from)
        .map(|w| w[1] - w[0])
        .reduce(f64::max)
        .or_else(|| {
            // A single acknowledgement after `from`, with none before it.
            acks.first().filter(|&&t| t > from).map(|&t| t - from)
        })
}

/// The longest interval without an acknowledgement between `from` and
/// `to` (unix ms), counting from the last one before `from` (if any: `from`
/// otherwise) and up to `to`.
pub fn stall(acks: &[f64], from: f64, to: f64) -> f64 {
    let mut prev = acks
        .iter()
        .rev()
        .find(|&&t| t <= from)
        .copied()
        .unwrap_or(from);
    let mut best: f64 = 0.0;
    for &t in acks.iter().filter(|&&t| t > from && t <= to) {
        best = best.max(t - prev);
        prev = t;
    }
    best.max(to - prev)
}

/// The median interval between consecutive acknowledgements.
pub fn median_interval(acks: &[f64]) -> f64 {
    let v = sorted(acks.windows(2).map(|w| w[1] - w[0]));
    pct(&v, 50.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Checks what the part needs before starting anything.
fn preflight(ctx: &Ctx, opts: &Options) -> Result<Vec<(String, String)>> {
    if !crate::targets::am_root() {
        bail!("the client-gap part needs root (network namespaces)");
    }
    crate::targets::require_programs(
        "client-gap",
        &[
            ("ip", "iproute2"),
            ("nft", "nftables"),
            ("etcd", "etcd-server"),
            ("psql", "postgresql-client-15"),
            ("python3", "python3"),
        ],
    )?;
    let mut versions = crate::targets::hadr_versions(&ctx.hadr_bin)?;
    if opts.patroni_switches + opts.patroni_crashes > 0 {
        versions.push((
            "Patroni".into(),
            crate::failover::patroni::version(&opts.patroni)?,
        ));
    }
    Ok(versions)
}

/// Runs the part and writes its section; the caller fails the program if
/// [`ClientGapReport::failures`] is not zero.
pub fn run_part(ctx: &Ctx, opts: &Options) -> Result<ClientGapReport> {
    let load_before = crate::load_average();
    let mut versions = preflight(ctx, opts)?;
    let work = ctx.work.join("client-gap");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o755))?;
    let (progs, client_versions) = Programs::prepare(&crate::workspace_root(), &work)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting a tokio runtime")?;
    let net = Cluster::new(&["a", "b", "arb"]).context("creating the network namespaces")?;
    let p = PartCtx {
        ctx,
        rt: rt.handle().clone(),
        net: &net,
        work: work.clone(),
        started: Instant::now(),
    };
    let etcd = Etcd::start(&p.rt, &net, "arb", &work.join("etcd"))?;
    versions.push(("etcd".into(), etcd.version.clone()));
    versions.extend(client_versions);
    let mut series = Vec::new();
    let mut notes = Vec::new();

    // hadr.
    let setting = format!(
        "defaults (lease_ttl 2s, lease_margin 500ms, hadr_timeout 3s), etcd arbiter, `{}`",
        systems::HADR_FLAGS.join(" ")
    );
    let mut s = Series::new("hadr", &setting, opts.hadr_switches, opts.hadr_crashes);
    let dir = work.join("hadr");
    let r = HadrPair::start(&p, &etcd, &dir)
        .and_then(|mut sys| run_series(&p, &progs, opts, &mut sys, &DRIVERS, &mut s, &mut notes));
    if let Err(e) = r {
        if proc::interrupted() {
            return Err(e);
        }
        eprintln!("  !! hadr stopped early: {e:#}");
        s.error = Some(format!("{e:#}"));
        if let Some(k) = crate::failover::keep_logs(&dir, "client-gap-hadr") {
            notes.push(format!("hadr: server logs kept in {}", k.display()));
        }
    }
    series.push(s);
    let _ = std::fs::remove_dir_all(&dir);

    // PostgreSQL + Patroni at its defaults.
    if opts.patroni_switches + opts.patroni_crashes > 0 {
        proc::check_interrupted()?;
        let setting = crate::failover::patroni::settings()
            .into_iter()
            .find(|s| s.defaults)
            .context("no default Patroni setting")?;
        let mut s = Series::new(
            "PostgreSQL + Patroni",
            &format!("{}, etcd as DCS, synchronous_mode: true", setting.describe),
            opts.patroni_switches,
            opts.patroni_crashes,
        );
        let dir = work.join("patroni");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let r = Patroni::start(&p, &opts.patroni, &etcd, &setting, &dir).and_then(|mut sys| {
            run_series(
                &p,
                &progs,
                opts,
                &mut sys,
                &STOCK_DRIVERS,
                &mut s,
                &mut notes,
            )
        });
        for h in HOSTS {
            let _ = crate::failover::servers::kill_all(&net, h);
        }
        if let Err(e) = r {
            if proc::interrupted() {
                return Err(e);
            }
            eprintln!("  !! Patroni stopped early: {e:#}");
            s.error = Some(format!("{e:#}"));
            if let Some(k) = crate::failover::keep_logs(&dir, "client-gap-patroni") {
                notes.push(format!(
                    "Patroni: Patroni and PostgreSQL logs kept in {}",
                    k.display()
                ));
            }
        }
        series.push(s);
        let _ = std::fs::remove_dir_all(&dir);
    }
    drop(etcd);
    drop(net);
    drop(rt);
    let report = ClientGapReport {
        date: crate::now_utc(),
        command: ctx.command.clone(),
        machine: crate::machine_since(load_before),
        load_program_start: ctx.load_program_start.clone(),
        versions,
        pause_ms: opts.pause_ms,
        series,
        notes,
    };
    report.write(&ctx.out_path)?;
    println!("{}", report.table());
    eprintln!("wrote the client-gap section of {}", ctx.out_path.display());
    Ok(report)
}

impl Series {
    fn new(system: &str, setting: &str, graceful: usize, crash: usize) -> Series {
        Series {
            system: system.into(),
            setting: setting.into(),
            graceful_asked: graceful,
            crash_asked: crash,
            switches: Vec::new(),
            totals: Vec::new(),
            error: None,
        }
    }
}

/// Every client writing to `sys`, its switches, then the check of the
/// acknowledged ids on the final primary.
fn run_series(
    p: &PartCtx,
    progs: &Programs,
    opts: &Options,
    sys: &mut dyn System,
    drivers: &[Driver],
    s: &mut Series,
    notes: &mut Vec<String>,
) -> Result<()> {
    let endpoints = sys.endpoints();
    let hosts = Hosts(endpoints.iter().map(|e| (e.host.clone(), e.port)).collect());
    let mut clients = Vec::new();
    for (k, d) in drivers.iter().enumerate() {
        let first = (k as i64 + 1) * 1_000_000_000;
        clients.push(Client::start(
            &p.rt,
            progs,
            *d,
            &hosts,
            first,
            opts.pause_ms,
        )?);
    }
    let (graceful, crash) = if s.system == "hadr" {
        (opts.hadr_switches, opts.hadr_crashes)
    } else {
        (opts.patroni_switches, opts.patroni_crashes)
    };
    eprintln!(
        "{} == client gap: {}: {graceful} graceful switches, {crash} crashes; {}",
        p.clock(),
        s.system,
        s.setting
    );
    let plan = std::iter::repeat_n(Kind::Graceful, graceful)
        .chain(std::iter::repeat_n(Kind::Crash, crash));
    let result = (|| {
        for (i, kind) in plan.enumerate() {
            proc::check_interrupted()?;
            let sw = switch(p, progs, sys, &mut clients, kind)
                .with_context(|| format!("{} switch {}", kind.as_str(), i + 1))?;
            eprintln!(
                "{}   {:<8} {}→{}: new primary writes after {:>6.0} ms; gaps: {}",
                p.clock(),
                kind.as_str(),
                sw.from,
                sw.to,
                sw.switch_ms,
                sw.clients
                    .iter()
                    .map(|c| format!(
                        "{} {}",
                        c.driver.label(),
                        c.gap_ms.map_or("NOT RESUMED".into(), |g| format!("{g:.0}"))
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            s.switches.push(sw);
        }
        anyhow::Ok(())
    })();
    if result.is_err() {
        for (what, tail) in sys.logs() {
            eprintln!("--- {what}:\n{tail}");
        }
    }
    // Whoever is primary now holds every acknowledged id.
    let primary = sys.primary();
    let mut seen = Vec::new();
    for c in clients {
        let d = c.driver;
        seen.push((d, c.stop(&p.rt, Duration::from_secs(15))));
    }
    let present = match client::acked_on(&p.rt, &endpoints[primary], 0) {
        Ok(ids) => Some(ids),
        Err(e) => {
            notes.push(format!(
                "{}: the acknowledged ids could not be read on the final primary: {e:#}",
                s.system
            ));
            None
        }
    };
    for (d, seen) in seen {
        let acked: BTreeSet<i64> = seen.acks.iter().map(|a| a.0).collect();
        let lost = present
            .as_ref()
            .map(|p| client::lost(&acked, p))
            .unwrap_or_default();
        let times: Vec<f64> = seen.acks.iter().map(|a| a.1).collect();
        if !lost.is_empty() {
            eprintln!(
                "  !! {}: {} acknowledged ids of {} missing on the final primary",
                s.system,
                lost.len(),
                d.label()
            );
        }
        s.totals.push(ClientTotal {
            driver: d,
            acked: acked.len() as u64,
            lost: lost.len() as u64,
            lost_ids: lost.into_iter().take(10).collect(),
            median_interval_ms: median_interval(&times),
            errors: seen.error_count,
        });
    }
    sys.stop();
    result
}

/// One switch of `kind`, measured.
fn switch(
    p: &PartCtx,
    progs: &Programs,
    sys: &mut dyn System,
    clients: &mut [Client],
    kind: Kind,
) -> Result<Switch> {
    sys.wait_in_sync()?;
    let (old, new) = (sys.primary(), 1 - sys.primary());
    // Every client writing on the primary before the switch.
    let t = unix_ms();
    let start = Instant::now();
    while !clients.iter().all(|c| c.acked_after(t + 200.0)) {
        for c in clients.iter_mut() {
            if !c.alive() {
                bail!(
                    "the {} client exited; its standard error ends with:\n{}",
                    c.driver.label(),
                    proc::tail_file(&progs.log_dir.join(format!("{:?}.stderr", c.driver)), 15)
                );
            }
        }
        if start.elapsed() > RESUME_TIMEOUT {
            let idle: Vec<&str> = clients
                .iter()
                .filter(|c| !c.acked_after(t + 200.0))
                .map(|c| c.driver.label())
                .collect();
            bail!("before the switch, {idle:?} did not write within {RESUME_TIMEOUT:?}");
        }
        proc::sleep(Duration::from_millis(10))?;
    }
    let probe = Probe::start(&p.rt, &sys.endpoints(), PROBE_SQL);
    let r = (|| {
        let m = Instant::now();
        probe.mark(m);
        probe.wait_first(old, Duration::from_secs(30))?;
        let t0 = Instant::now();
        let t0u = unix_ms();
        probe.mark(t0);
        match kind {
            Kind::Graceful => sys.graceful()?,
            Kind::Crash => sys.crash()?,
        }
        let first = probe.wait_first(new, SWITCH_TIMEOUT)?;
        anyhow::Ok((t0u, ms(first - t0)))
    })();
    probe.stop(&p.rt);
    let (t0u, switch_ms) = r?;
    let switched_u = t0u + switch_ms;
    let start = Instant::now();
    while !clients.iter().all(|c| c.acked_after(switched_u)) && start.elapsed() < RESUME_TIMEOUT {
        proc::sleep(Duration::from_millis(10))?;
    }
    // A moment more, so that a client's first write on the new primary is
    // not the last one of the window.
    proc::sleep(Duration::from_millis(300))?;
    let end = unix_ms();
    let mut gaps: Vec<ClientGap> = clients
        .iter()
        .map(|c| {
            let resumed = c.acked_after(switched_u);
            // From the client's last acknowledgement before the switch
            // (after the previous switch: every client wrote since).
            let acks = c.acks_since(t0u);
            let (errors, first_error) = c.errors_between(t0u, end);
            ClientGap {
                driver: c.driver,
                gap_ms: if resumed {
                    longest_gap(&acks, t0u)
                } else {
                    None
                },
                errors,
                first_error,
                rejoin_gap_ms: None,
            }
        })
        .collect();
    sys.switched(kind == Kind::Crash)?;
    let rejoined = unix_ms();
    for (g, c) in gaps.iter_mut().zip(clients.iter()) {
        g.rejoin_gap_ms = Some(stall(&c.acks_since(end), end, rejoined));
    }
    Ok(Switch {
        kind,
        from: HOSTS[old].into(),
        to: HOSTS[new].into(),
        switch_ms,
        rejoin_ms: rejoined - end,
        clients: gaps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_gap_counts_from_the_last_ack_before_the_window() {
        // Acks every 5 ms, a 700 ms hole starting before `from`.
        let acks = [0.0, 5.0, 10.0, 710.0, 715.0, 720.0];
        assert_eq!(longest_gap(&acks, 100.0), Some(700.0));
        // The hole lies entirely before the window: only later gaps count.
        assert_eq!(longest_gap(&acks, 712.0), Some(5.0));
    }

    #[test]
    fn no_ack_after_the_window_start_is_no_gap() {
        assert_eq!(longest_gap(&[1.0, 2.0], 5.0), None);
        assert_eq!(longest_gap(&[], 5.0), None);
        // One ack after the start, none before: from the start to it.
        assert_eq!(longest_gap(&[9.0], 5.0), Some(4.0));
    }

    #[test]
    fn a_stall_runs_to_the_end_of_its_window() {
        let acks = [0.0, 5.0, 10.0, 400.0, 405.0];
        // From the last ack at or before `from` (5), through 10, to 400.
        assert_eq!(stall(&acks, 7.0, 410.0), 390.0);
        // Still stalled at the end: the open interval counts.
        assert_eq!(stall(&acks, 7.0, 1405.0), 1000.0);
        // Nothing at all: the whole window.
        assert_eq!(stall(&[], 100.0, 350.0), 250.0);
    }

    #[test]
    fn median_interval_of_steady_writes() {
        assert_eq!(median_interval(&[0.0, 5.0, 10.0, 16.0, 21.0]), 5.0);
        assert!(median_interval(&[1.0]).is_nan());
    }

    #[test]
    fn targets_follow_the_kind_of_switch() {
        let mut s = Switch {
            kind: Kind::Graceful,
            from: "a".into(),
            to: "b".into(),
            switch_ms: 2700.0,
            rejoin_ms: 0.0,
            clients: Vec::new(),
        };
        assert_eq!(s.target_ms(), 1000.0);
        s.kind = Kind::Crash;
        assert_eq!(s.target_ms(), 3200.0);
    }
}
