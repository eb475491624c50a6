//! The failover part (issue 15's benchmark): automatic failover after the
//! primary's host dies, hadr against Patroni, in one invocation.
//!
//! Hosts are Linux network namespaces on a bridge (hadr_testkit::netns):
//! node `a`, node `b`, and `arb`, the arbiter's host (etcd runs there; the
//! S3 proxy listens on the bridge's own address; the file arbiter is a file
//! both nodes' processes open). The program itself is the clients: it
//! reaches every host through the bridge.
//!
//! - **Crash**: under a pgbench load, the primary's host is black-holed
//!   (every frame to and from it dropped silently) and its server killed
//!   (`kill -9` of everything in its namespace: hadr, or Patroni and its
//!   postgres). Measured: from that moment to the first write acknowledged
//!   on the survivor by a probe that keeps trying both hosts; and every
//!   commit a separate writer saw acknowledged (through a multi-host
//!   connection, `target_session_attrs=read-write`) must be on the new
//!   primary. The old primary's host is then healed and its server
//!   restarted; it must rejoin as a standby, roles alternate.
//! - **Isolated** (hadr, s3 and etcd arbiters): the primary's host is
//!   black-holed but not killed. Measured from inside its namespace: how
//!   long until its `/status` says it no longer accepts writes.
//! - **Frozen** (hadr): the primary is SIGSTOPped; once the standby took
//!   over, statements are queued on sessions opened to the old primary
//!   before the freeze, and it is resumed (SIGCONT). None of them may be
//!   acknowledged; measured: how long after SIGCONT its `/status` says it
//!   does not accept writes.

pub(crate) mod client;
mod hadr_side;
pub(crate) mod patroni;
mod render;
pub(crate) mod servers;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hadr_testkit::netns::Cluster;
use serde::{Deserialize, Serialize};

use crate::Ctx;

pub use patroni::DEFAULT_PATRONI;
pub use render::FailoverReport;

/// pgbench clients of the load during every run.
pub const CLIENTS: u32 = 4;
/// The table the first-write probe updates (one row).
pub const PROBE_SQL: &str = "UPDATE tk SET n = n + 1 WHERE id = 1";
/// Longest wait for the survivor's first write after a crash.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait for a pair to be back in sync (PEER / a streaming sync standby).
const SYNC_TIMEOUT: Duration = Duration::from_secs(180);

/// Which arbiters and how many runs.
#[derive(Clone, Debug)]
pub struct Options {
    pub arbiters: Vec<ArbiterKind>,
    pub runs: usize,
    pub fence_runs: usize,
    pub patroni_runs: usize,
    pub patroni: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArbiterKind {
    File,
    S3,
    Etcd,
}

impl ArbiterKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ArbiterKind::File => "file",
            ArbiterKind::S3 => "s3",
            ArbiterKind::Etcd => "etcd",
        }
    }
}

/// One crash: host black-holed and its server killed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CrashRun {
    pub from: String,
    pub to: String,
    /// To the first write acknowledged on the survivor.
    pub failover_ms: f64,
    /// Commits the writer saw acknowledged during the run.
    pub acked: u64,
    /// Of those, missing on the new primary.
    pub lost: u64,
    /// A few of the missing ids.
    pub lost_ids: Vec<i64>,
    /// From restarting the old primary to the pair being in sync again.
    pub rejoin_ms: Option<f64>,
}

/// One isolation of the primary's host (not killed).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FenceRun {
    pub from: String,
    /// The lease the primary had left when its host was cut (its /status).
    pub lease_left_ms: Option<u64>,
    /// Until its /status said it accepts no writes.
    pub fence_ms: f64,
    /// What it said.
    pub refusal: String,
    /// Until the standby acknowledged its first write.
    pub takeover_ms: f64,
    /// Writes tried from inside its namespace: the last one it acknowledged
    /// after the cut, and the first it refused with an error.
    pub last_ack_ms: Option<f64>,
    pub refused_ms: Option<f64>,
    /// Of those, acknowledged after its lease deadline (must be 0).
    pub acked_after_deadline: u64,
    pub acked: u64,
    pub lost: u64,
}

/// One freeze (SIGSTOP) of the primary, resumed after the standby took over.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StopRun {
    pub from: String,
    /// From SIGSTOP to the standby's first acknowledged write (None: it
    /// did not take over while the primary was frozen).
    pub takeover_ms: Option<f64>,
    /// Why not, as the standby's `/status` said.
    pub no_takeover: Option<String>,
    /// Statements queued on the frozen primary's sessions before SIGCONT.
    pub queued: u64,
    /// Of those, acknowledged (must be 0).
    pub accepted: u64,
    /// Of those, refused with an error or a closed connection.
    pub refused: u64,
    /// Writes the probe saw the old primary acknowledge after SIGCONT (must be 0).
    pub probe_accepted: u64,
    /// From SIGCONT to the first /status saying it accepts no writes.
    pub fenced_ms: Option<f64>,
    pub acked: u64,
    pub lost: u64,
}

/// One system, arbiter and setting.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Series {
    pub system: String,
    pub arbiter: String,
    pub setting: String,
    /// The flags or configuration that make the setting.
    pub flags: String,
    /// True for the setting the targets are judged at.
    pub defaults: bool,
    pub runs_asked: usize,
    pub crash: Vec<CrashRun>,
    pub fence: Vec<FenceRun>,
    pub stop: Vec<StopRun>,
    /// Why the isolation runs were not made.
    pub fence_note: Option<String>,
    /// What stopped the series early.
    pub error: Option<String>,
}

impl Series {
    fn new(system: &str, arbiter: &str, setting: &Setting, runs_asked: usize) -> Series {
        Series {
            system: system.into(),
            arbiter: arbiter.into(),
            setting: setting.name.into(),
            flags: setting.describe.clone(),
            defaults: setting.defaults,
            runs_asked,
            crash: Vec::new(),
            fence: Vec::new(),
            stop: Vec::new(),
            fence_note: None,
            error: None,
        }
    }

    /// Acknowledged commits lost, over every run.
    pub fn lost(&self) -> u64 {
        self.crash.iter().map(|r| r.lost).sum::<u64>()
            + self.fence.iter().map(|r| r.lost).sum::<u64>()
            + self.stop.iter().map(|r| r.lost).sum::<u64>()
    }

    /// Lost commits, writes accepted by a resumed frozen primary, and an
    /// early stop.
    pub fn failures(&self) -> usize {
        usize::from(self.lost() > 0)
            + self
                .fence
                .iter()
                .filter(|r| r.acked_after_deadline > 0)
                .count()
            + self
                .stop
                .iter()
                .filter(|r| r.accepted + r.probe_accepted > 0 || r.takeover_ms.is_none())
                .count()
            + usize::from(self.error.is_some())
    }
}

/// A named setting of one system.
#[derive(Clone, Debug)]
pub struct Setting {
    pub name: &'static str,
    pub defaults: bool,
    /// For the table: "lease_ttl 2s, lease_margin 500ms, hadr_timeout 3s".
    pub describe: String,
    /// hadr: server flags. Patroni: (ttl, loop_wait, retry_timeout).
    pub flags: Vec<String>,
}

/// What every series needs.
pub struct PartCtx<'a> {
    pub ctx: &'a Ctx,
    pub rt: tokio::runtime::Handle,
    pub net: &'a Cluster,
    pub work: PathBuf,
    pub started: std::time::Instant,
}

impl PartCtx<'_> {
    /// "[mm:ss]" since the part started, for progress lines.
    pub fn clock(&self) -> String {
        let s = self.started.elapsed().as_secs();
        format!("[{:02}:{:02}]", s / 60, s % 60)
    }
}

/// Nearest-rank percentile of sorted values.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn sorted(v: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = v.collect();
    v.sort_by(f64::total_cmp);
    v
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Checks what the part needs before starting anything.
fn preflight(opts: &Options) -> Result<Vec<(String, String)>> {
    if !crate::targets::am_root() {
        bail!("the failover part needs root (network namespaces, nftables)");
    }
    let mut versions = Vec::new();
    crate::targets::require_programs(
        "failover",
        &[
            ("ip", "iproute2"),
            ("nft", "nftables"),
            ("etcd", "etcd-server"),
            ("pgbench", "postgresql-client-15"),
        ],
    )?;
    if opts.arbiters.contains(&ArbiterKind::S3) {
        versions.push(("moto".into(), servers::moto_version()?));
    }
    if opts.patroni_runs > 0 {
        versions.push(("Patroni".into(), patroni::version(&opts.patroni)?));
    }
    Ok(versions)
}

/// Runs the part and writes its section of the document; the caller fails
/// the program if [`FailoverReport::failures`] is not zero.
pub fn run_part(ctx: &Ctx, opts: &Options) -> Result<FailoverReport> {
    let load_before = crate::load_average();
    let mut versions = preflight(opts)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting a tokio runtime")?;
    let work = ctx.work.join("failover");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o755))?;
    let net = Cluster::new(&["a", "b", "arb"]).context("creating the network namespaces")?;
    let p = PartCtx {
        ctx,
        rt: rt.handle().clone(),
        net: &net,
        work: work.clone(),
        started: std::time::Instant::now(),
    };
    let etcd = servers::Etcd::start(&p.rt, &net, "arb", &work.join("etcd"))?;
    versions.push(("etcd".into(), etcd.version.clone()));
    let mut series = Vec::new();
    let mut notes = Vec::new();
    versions.extend(hadr_side::run(&p, opts, &etcd, &mut series, &mut notes)?);
    if opts.patroni_runs > 0 {
        patroni::run(&p, opts, &etcd, &mut series, &mut notes)?;
    }
    drop(etcd);
    drop(net);
    drop(rt);
    let report = FailoverReport {
        date: crate::now_utc(),
        command: ctx.command.clone(),
        machine: crate::machine_since(load_before),
        load_program_start: ctx.load_program_start.clone(),
        versions,
        clients: CLIENTS,
        runs: opts.runs,
        fence_runs: opts.fence_runs,
        patroni_runs: opts.patroni_runs,
        series,
        notes,
    };
    report.write(&ctx.out_path)?;
    println!("{}", report.table());
    eprintln!("wrote the failover section of {}", ctx.out_path.display());
    Ok(report)
}

/// Copies every *.log under `dir` (recursively) to a directory that
/// outlives the work directory; returns it.
pub(crate) fn keep_logs(dir: &Path, tag: &str) -> Option<PathBuf> {
    let keep = std::env::temp_dir().join(format!(
        "hadr-bench-failover-logs-{}/{tag}",
        std::process::id()
    ));
    let mut kept = false;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "log")
                && std::fs::create_dir_all(&keep).is_ok()
            {
                let rel = p.strip_prefix(dir).unwrap_or(&p);
                let name = rel.to_string_lossy().replace('/', "-");
                kept |= std::fs::copy(&p, keep.join(name)).is_ok();
            }
        }
    }
    kept.then_some(keep)
}
