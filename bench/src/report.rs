//! docs/benchmarks.md and its SVG plots.
//!
//! The program owns three sections of the document, each between two HTML
//! comment markers: one under `## Single node`, one under `## Replication`
//! (both written here) and one under `## Takeover and rewind` (written by
//! the takeover module). Each part of the program regenerates only its own
//! section; anything else in the file is kept.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use crate::pgbench::{Measurement, Mode};

pub const SECTION_BEGIN: &str = "<!-- hadr-bench:single-node:begin -->";
pub const SECTION_END: &str = "<!-- hadr-bench:single-node:end -->";

/// Whether sum(accounts.abalance) = sum(history.delta) after a run.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    Ok { sum: i64 },
    Mismatch { accounts: i64, history: i64 },
    Error(String),
}

impl Consistency {
    fn cell(&self) -> String {
        match self {
            Consistency::Ok { .. } => "ok".into(),
            Consistency::Mismatch { accounts, history } => {
                format!("**MISMATCH** ({accounts} ≠ {history})")
            }
            Consistency::Error(_) => "**ERROR**".into(),
        }
    }
}

/// One pgbench run of one target in one configuration.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RunRecord {
    pub target: String,
    pub mode: Mode,
    pub clients: u32,
    pub threads: u32,
    #[serde(flatten)]
    pub m: Measurement,
    pub consistency: Consistency,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu: String,
    pub kernel: String,
    pub memory: String,
    /// /proc/loadavg's 1-minute figure at the start and at the end: other work
    /// on the machine skews every number.
    pub load_before: String,
    pub load_after: String,
}

impl Machine {
    /// The machine and its load, as the sections say it (no full stop).
    pub fn sentence(&self) -> String {
        format!(
            "Machine: {} CPUs ({}), {} RAM, Linux {}; 1-minute load average {} at the start, {} at the end",
            self.nproc, self.cpu, self.memory, self.kernel, self.load_before, self.load_after
        )
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub date: String,
    pub machine: Machine,
    /// (program, version line)
    pub versions: Vec<(String, String)>,
    pub command: String,
    pub seconds: u64,
    pub clients: Vec<u32>,
    pub modes: Vec<Mode>,
    /// Target names in run order; the first one is the baseline.
    pub targets: Vec<String>,
    pub runs: Vec<RunRecord>,
    /// Odd things seen on the way (server log lines, failed stops, ...).
    pub notes: Vec<String>,
}

fn display_name(target: &str) -> &str {
    match target {
        "postgres" => "PostgreSQL",
        other => other,
    }
}

fn ms(us: Option<f64>) -> String {
    match us {
        Some(v) => format!("{:.2}", v / 1000.0),
        None => "—".into(),
    }
}

fn tps(t: Option<f64>) -> String {
    match t {
        Some(v) => format!("{v:.0}"),
        None => "—".into(),
    }
}

impl Report {
    fn find(&self, target: &str, mode: Mode, clients: u32) -> Option<&RunRecord> {
        self.runs
            .iter()
            .find(|r| r.target == target && r.mode == mode && r.clients == clients)
    }

    /// The results table in Markdown.
    pub fn table(&self) -> String {
        let mut s = String::new();
        s.push_str("| target | mode | clients | tps | p50 ms | p99 ms | failed | sum check |\n");
        s.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |\n");
        for mode in &self.modes {
            for &c in &self.clients {
                for t in &self.targets {
                    let Some(r) = self.find(t, *mode, c) else {
                        continue;
                    };
                    let mut failed = r.m.failed.to_string();
                    if r.m.aborted_clients > 0 {
                        let _ = write!(failed, " ({} clients aborted)", r.m.aborted_clients);
                    } else if r.m.error.is_some() {
                        failed.push_str(" (pgbench error)");
                    }
                    let _ = writeln!(
                        s,
                        "| {} | {} | {} | {} | {} | {} | {} | {} |",
                        display_name(t),
                        mode.as_str(),
                        c,
                        tps(r.m.tps),
                        ms(r.m.p50_us),
                        ms(r.m.p99_us),
                        failed,
                        r.consistency.cell()
                    );
                }
            }
        }
        s
    }

    /// The "reading" paragraphs: every target against the baseline (the first).
    fn reading(&self) -> String {
        let mut s = String::new();
        let Some(base) = self.targets.first() else {
            return s;
        };
        let bname = display_name(base);
        for t in self.targets.iter().skip(1) {
            let tname = display_name(t);
            let mut tps_verdicts = Vec::new();
            let mut lat_verdicts = Vec::new();
            let mut tps_met = true;
            let mut lat_met = true;
            for &mode in &self.modes {
                let pair = |c| Some((self.find(t, mode, c)?, self.find(base, mode, c)?));
                match pair(8).and_then(|(a, b)| Some((a.m.tps?, b.m.tps?))) {
                    Some((a, b)) if b > 0.0 => {
                        let ok = a >= b;
                        tps_met &= ok;
                        tps_verdicts.push(format!(
                            "{}: {a:.0} vs {b:.0} tps = **{:.2}×** ({})",
                            mode.as_str(),
                            a / b,
                            if ok { "met" } else { "not met" }
                        ));
                    }
                    _ => {
                        tps_met = false;
                        tps_verdicts.push(format!("{}: not measured", mode.as_str()));
                    }
                }
                match pair(1).and_then(|(a, b)| Some((a.m.p50_us?, b.m.p50_us?))) {
                    Some((a, b)) => {
                        let ok = a <= b;
                        lat_met &= ok;
                        lat_verdicts.push(format!(
                            "{}: {:.2} ms vs {:.2} ms = **{:.2}×** ({})",
                            mode.as_str(),
                            a / 1000.0,
                            b / 1000.0,
                            if b > 0.0 { a / b } else { f64::NAN },
                            if ok { "met" } else { "not met" }
                        ));
                    }
                    None => {
                        lat_met = false;
                        lat_verdicts.push(format!("{}: not measured", mode.as_str()));
                    }
                }
            }
            let _ = writeln!(
                s,
                "- **Throughput target** ({tname} tps ≥ {bname} tps at 8 clients): **{}**. {tname} / {bname}: {}.",
                if tps_met { "MET" } else { "NOT MET" },
                tps_verdicts.join("; ")
            );
            let _ = writeln!(
                s,
                "- **Latency target** ({tname} p50 ≤ {bname} p50 at 1 client): **{}**. {tname} vs {bname}: {}.",
                if lat_met { "MET" } else { "NOT MET" },
                lat_verdicts.join("; ")
            );
            // Scaling from the fewest to the most clients, per mode.
            if let (Some(&lo), Some(&hi)) = (self.clients.iter().min(), self.clients.iter().max()) {
                if lo != hi {
                    let mut parts = Vec::new();
                    for &mode in &self.modes {
                        for who in [t, base] {
                            let v = (|| {
                                Some((
                                    self.find(who, mode, lo)?.m.tps?,
                                    self.find(who, mode, hi)?.m.tps?,
                                ))
                            })();
                            if let Some((a, b)) = v.filter(|(a, _)| *a > 0.0) {
                                parts.push(format!(
                                    "{} {} {:.1}×",
                                    display_name(who),
                                    mode.as_str(),
                                    b / a
                                ));
                            }
                        }
                    }
                    if !parts.is_empty() {
                        let _ = writeln!(
                            s,
                            "- Scaling from {lo} to {hi} clients (tps ratio): {}.",
                            parts.join(", ")
                        );
                    }
                }
            }
        }
        let failed: u64 = self.runs.iter().map(|r| r.m.failed).sum();
        let aborted: u64 = self.runs.iter().map(|r| r.m.aborted_clients).sum();
        let errors = self.runs.iter().filter(|r| r.m.error.is_some()).count();
        let inconsistent: Vec<&RunRecord> = self
            .runs
            .iter()
            .filter(|r| !matches!(r.consistency, Consistency::Ok { .. }))
            .collect();
        // The load at the end includes this benchmark's own; the start does not.
        let busy = self.machine.load_before.parse::<f64>().unwrap_or(0.0);
        if busy > 0.5 * self.machine.nproc.max(1) as f64 {
            let _ = writeln!(
                s,
                "- **Caution:** the machine was not idle before the benchmark started (1-minute load average \
                 {busy:.2} on {} CPUs); other work skews these numbers, so compare them with care.",
                self.machine.nproc
            );
        }
        if failed == 0 && aborted == 0 && errors == 0 {
            s.push_str("- No transaction failed and every pgbench run exited cleanly.\n");
        } else {
            let _ = writeln!(
                s,
                "- **Errors:** {failed} failed transactions, {aborted} aborted clients, {errors} pgbench runs with a \
                 non-zero exit (details under Notes)."
            );
        }
        if inconsistent.is_empty() {
            s.push_str(
                "- SQL consistency: after every run, sum(accounts.abalance) = sum(history.delta) on every target.\n",
            );
        } else {
            let _ = writeln!(
                s,
                "- **SQL CONSISTENCY FAILURE** in {} run(s): sum(accounts.abalance) ≠ sum(history.delta) (see table and \
                 Notes).",
                inconsistent.len()
            );
        }
        s
    }

    /// The generated section, markers included.
    pub fn section(&self, svg_name: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{SECTION_BEGIN}");
        s.push_str(
            "<!-- Generated by the hadr-bench program (bench/); rerun it instead of editing this section. -->\n\n",
        );
        let _ = writeln!(
            s,
            "Run on {} by:\n\n```\n{}\n```\n",
            self.date, self.command
        );
        s.push_str("### Setup\n\n");
        let m = &self.machine;
        let _ = writeln!(s, "- {}", m.sentence());
        for (prog, v) in &self.versions {
            let _ = writeln!(s, "- {prog}: `{v}`");
        }
        let _ = writeln!(
            s,
            "- Workload: [`bench/pgbench.sql`](../bench/pgbench.sql), a TPC-B-like transaction (update one account, \
             read it back, insert a history row) over {} accounts rows; `pgbench -n -M MODE -c N -j min(N,2) -T {} -l`, \
             client and servers on the same machine over TCP on 127.0.0.1.",
            crate::targets::ACCOUNTS,
            self.seconds
        );
        s.push_str(
            "- Durability: both servers commit durably. PostgreSQL 15 with `fsync=on`, `synchronous_commit=on`, \
             `shared_buffers=256MB`, `max_connections=200`; hadr with its default log flush mode (`fsync`).\n",
        );
        s.push_str(
            "- Method: the targets run alternately for each configuration (PostgreSQL, hadr, PostgreSQL, hadr, ...), so \
             that drift in the machine hits both alike. Each target starts from fresh data, and rows accumulate over its \
             runs. tps is pgbench's figure without the initial connection time; p50/p99 are exact nearest-rank \
             percentiles of every successful transaction's latency in pgbench's per-transaction logs. \"sum check\" \
             verifies after each run that sum(accounts.abalance) = sum(history.delta).\n\n",
        );
        s.push_str("### Results\n\n");
        s.push_str(&self.table());
        let _ = writeln!(s, "\n![tps]({svg_name})\n");
        s.push_str("### Reading\n\n");
        s.push_str(&self.reading());
        let mut notes: Vec<String> = self
            .runs
            .iter()
            .filter_map(|r| {
                let mut v = Vec::new();
                if let Some(e) = &r.m.error {
                    v.push(e.clone());
                }
                if let Consistency::Error(e) = &r.consistency {
                    v.push(format!("sum check failed: {e}"));
                }
                (!v.is_empty()).then(|| {
                    format!(
                        "{} {} {} clients: {}",
                        display_name(&r.target),
                        r.mode.as_str(),
                        r.clients,
                        v.join("; ")
                    )
                })
            })
            .collect();
        notes.extend(self.notes.iter().cloned());
        if !notes.is_empty() {
            s.push_str("\n### Notes\n\n");
            for n in notes {
                let one_line = n.replace('\n', " ⏎ ").replace('`', "'");
                let _ = writeln!(s, "- `{}`", one_line.chars().take(600).collect::<String>());
            }
        }
        let _ = writeln!(s, "\n{SECTION_END}");
        s
    }

    /// Writes the document: replaces the generated section if the file has
    /// one, otherwise adds it (with its heading) and keeps the rest.
    pub fn write(&self, out: &Path) -> Result<()> {
        let svg_name = svg_file_name(out, "tps");
        write_svg(out, &svg_name, &self.svg())?;
        write_section(
            out,
            SECTION_BEGIN,
            SECTION_END,
            "## Single node",
            "One hadr node against one PostgreSQL 15 server, both durable (every commit reaches the disk).",
            &self.section(&svg_name),
            Some("## Replication"),
        )
    }

    /// Grouped bars: tps per client count, one bar per (target, mode).
    pub fn svg(&self) -> String {
        let palette = [
            ["#9ecae1", "#3182bd", "#08519c"], // first target: blues
            ["#fdae6b", "#e6550d", "#a63603"], // second target: oranges
            ["#a1d99b", "#31a354", "#006d2c"], // third: greens
            ["#bcbddc", "#756bb1", "#54278f"], // fourth: purples
        ];
        let series: Vec<Series> = self
            .targets
            .iter()
            .enumerate()
            .flat_map(|(ti, t)| {
                self.modes.iter().enumerate().map(move |(mi, m)| Series {
                    label: format!("{} ({})", display_name(t), m.as_str()),
                    tooltip: format!("{} {}", display_name(t), m.as_str()),
                    color: palette[ti % palette.len()][mi % 3].to_string(),
                    values: self
                        .clients
                        .iter()
                        .map(|&c| self.find(t, *m, c).and_then(|r| r.m.tps))
                        .collect(),
                })
            })
            .collect();
        bar_chart(
            &format!(
                "pgbench ({} s per run): transactions per second by clients",
                self.seconds
            ),
            &self.clients,
            &series,
            820.0,
        )
    }
}

/// One bar series of a [`bar_chart`]: a value per group (client count).
pub struct Series {
    pub label: String,
    /// Start of each bar's tooltip ("PostgreSQL simple").
    pub tooltip: String,
    pub color: String,
    pub values: Vec<Option<f64>>,
}

/// Grouped bars of tps: one group per client count, one bar per series.
pub fn bar_chart(title: &str, clients: &[u32], series: &[Series], w: f64) -> String {
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().flatten().copied())
        .fold(0.0f64, f64::max);
    let step = nice_ceiling(max.max(1.0) / 5.0);
    let ticks = (max / step).ceil().max(1.0) as usize;
    let top = step * ticks as f64;

    let h = 440.0;
    let (left, right, top_m, bottom) = (80.0, 210.0, 50.0, 60.0);
    let pw = w - left - right;
    let ph = h - top_m - bottom;
    let y = |v: f64| top_m + ph - v / top * ph;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{title}</text>"#,
        left + pw / 2.0,
    );
    // Grid and y ticks.
    for i in 0..=ticks {
        let v = step * i as f64;
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            left + pw,
            left - 6.0,
            yy + 4.0,
            fmt_tick(v)
        );
    }
    // Bars.
    let groups = clients.len().max(1) as f64;
    let gw = pw / groups;
    let bw = (gw * 0.8) / series.len().max(1) as f64;
    for (gi, &c) in clients.iter().enumerate() {
        let gx = left + gw * gi as f64 + gw * 0.1;
        for (si, sr) in series.iter().enumerate() {
            let Some(v) = sr.values.get(gi).copied().flatten() else {
                continue;
            };
            let x = gx + bw * si as f64;
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {c} clients: {v:.0} tps</title></rect>"#,
                y(v),
                bw - 2.0,
                (top_m + ph - y(v)).max(0.0),
                sr.color,
                sr.tooltip,
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{v:.0}</text>"#,
                x + (bw - 2.0) / 2.0,
                y(v) - 3.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{c}</text>"#,
            left + gw * gi as f64 + gw / 2.0,
            top_m + ph + 18.0
        );
    }
    // Axes and labels.
    let _ = writeln!(
        s,
        r##"<line x1="{left}" y1="{top_m}" x2="{left}" y2="{:.1}" stroke="#333"/><line x1="{left}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/>"##,
        top_m + ph,
        top_m + ph,
        left + pw,
        top_m + ph
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">clients (pgbench -c)</text>"#,
        left + pw / 2.0,
        h - 14.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(20 {:.1}) rotate(-90)" text-anchor="middle">transactions per second</text>"#,
        top_m + ph / 2.0
    );
    // Legend.
    let lx = left + pw + 20.0;
    for (si, sr) in series.iter().enumerate() {
        let ly = top_m + 10.0 + 22.0 * si as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{lx:.1}" y="{ly:.1}" width="14" height="14" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            sr.color,
            lx + 20.0,
            ly + 11.0,
            sr.label
        );
    }
    s.push_str("</svg>\n");
    s
}

// ---------------------------------------------------------------------------
// Replication

pub const REPL_BEGIN: &str = "<!-- hadr-bench:replication:begin -->";
pub const REPL_END: &str = "<!-- hadr-bench:replication:end -->";

/// The standby compared with the primary after a run.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StandbyCheck {
    /// `hadr verify --node P --node S` exited 0: page hashes identical at this LSN.
    PagesIdentical {
        lsn: u64,
    },
    /// PostgreSQL: with the standby replayed up to the primary's flushed WAL
    /// (this LSN), sum(abalance), count(history) and sum(delta) are equal.
    SameSums {
        lsn: String,
    },
    Differ(String),
    Error(String),
}

impl StandbyCheck {
    pub fn ok(&self) -> bool {
        matches!(
            self,
            StandbyCheck::PagesIdentical { .. } | StandbyCheck::SameSums { .. }
        )
    }

    fn cell(&self) -> String {
        match self {
            StandbyCheck::PagesIdentical { lsn } => {
                format!("identical pages (exit 0) at LSN {lsn}")
            }
            StandbyCheck::SameSums { .. } => "same sums".into(),
            StandbyCheck::Differ(_) => "**DIFFERENT**".into(),
            StandbyCheck::Error(_) => "**ERROR**".into(),
        }
    }

    fn detail(&self) -> Option<&str> {
        match self {
            StandbyCheck::Differ(d) | StandbyCheck::Error(d) => Some(d),
            _ => None,
        }
    }
}

/// One pgbench run against a primary with a standby.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ReplRunRecord {
    /// "postgres" or "hadr".
    pub target: String,
    /// synchronous_commit level or hadr sync mode.
    pub setting: String,
    pub mode: Mode,
    pub clients: u32,
    pub threads: u32,
    #[serde(flatten)]
    pub m: Measurement,
    pub consistency: Consistency,
    /// The pair's state before the run (or why it could not be reached) and right after it.
    pub state_before: String,
    pub state_after: String,
    /// Whether the pair reached its expected state before the run.
    pub synced_before: bool,
    pub standby: StandbyCheck,
}

/// hadr's clone and standby replay throughput.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CloneReplay {
    /// Size of the cloned database file.
    pub db_bytes: u64,
    pub pages: u64,
    pub page_size: u64,
    /// Log written to build the database (no standby attached), and how long that took.
    pub first_load_log_bytes: u64,
    pub first_load_secs: f64,
    /// Wall time of the `hadr clone` process.
    pub clone_secs: f64,
    pub clone_mb_s: f64,
    pub verify_after_clone: StandbyCheck,
    /// Log the standby had to receive and replay (primary log end − standby replay LSN when stopped).
    pub replay_log_bytes: u64,
    /// Growth of the database in that bulk load (pages × page size).
    pub replay_growth_bytes: u64,
    pub replay_load_secs: f64,
    /// From spawning the standby until the primary saw it connected.
    pub standby_connect_secs: f64,
    /// From spawning the standby until its replay LSN reached the primary's log end.
    pub replay_total_secs: f64,
    /// replay_log_bytes / (replay_total_secs − standby_connect_secs).
    pub replay_mb_s: f64,
    /// replay_log_bytes / replay_total_secs.
    pub replay_mb_s_from_start: f64,
    pub replay_polls: u64,
    /// Whether the primary's log end moved during the catch-up (it should not).
    pub primary_log_moved: bool,
    pub verify_after_replay: StandbyCheck,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ReplReport {
    pub date: String,
    pub machine: Machine,
    pub versions: Vec<(String, String)>,
    pub command: String,
    pub seconds: u64,
    pub clients: Vec<u32>,
    pub mode: Mode,
    /// (target, setting) in table order.
    pub configs: Vec<(String, String)>,
    pub runs: Vec<ReplRunRecord>,
    pub clone: Option<CloneReplay>,
    pub clone_error: Option<String>,
    pub notes: Vec<String>,
    /// 1-minute load average when the program started: when the single-node
    /// part ran first, `machine.load_before` includes its own load.
    #[serde(default)]
    pub load_program_start: Option<String>,
}

fn config_name(target: &str, setting: &str) -> String {
    match target {
        "postgres" => format!("PostgreSQL `{setting}`"),
        other => format!("{other} {setting}"),
    }
}

fn config_plain(target: &str, setting: &str) -> String {
    config_name(target, setting).replace('`', "")
}

impl ReplReport {
    fn find(&self, target: &str, setting: &str, clients: u32) -> Option<&ReplRunRecord> {
        self.runs
            .iter()
            .find(|r| r.target == target && r.setting == setting && r.clients == clients)
    }

    /// Checks that fail the program: standby or SQL consistency.
    pub fn integrity_failures(&self) -> usize {
        self.runs
            .iter()
            .filter(|r| !r.standby.ok() || !matches!(r.consistency, Consistency::Ok { .. }))
            .count()
            + self.clone.as_ref().map_or(0, |c| {
                usize::from(!c.verify_after_clone.ok()) + usize::from(!c.verify_after_replay.ok())
            })
    }

    pub fn table(&self) -> String {
        let mut s = String::new();
        s.push_str(
            "| target | setting | clients | tps | p50 ms | p99 ms | failed | sum check | standby state before → after | standby check |\n",
        );
        s.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |\n");
        for (t, set) in &self.configs {
            for &c in &self.clients {
                let Some(r) = self.find(t, set, c) else {
                    continue;
                };
                let mut failed = r.m.failed.to_string();
                if r.m.aborted_clients > 0 {
                    let _ = write!(failed, " ({} clients aborted)", r.m.aborted_clients);
                } else if r.m.error.is_some() {
                    failed.push_str(" (pgbench error)");
                }
                let before = if !r.synced_before {
                    "**not ready**".to_string()
                } else {
                    r.state_before.clone()
                };
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} → {} | {} |",
                    display_name(t),
                    if t == "postgres" {
                        format!("`{set}`")
                    } else {
                        set.clone()
                    },
                    c,
                    tps(r.m.tps),
                    ms(r.m.p50_us),
                    ms(r.m.p99_us),
                    failed,
                    r.consistency.cell(),
                    before,
                    r.state_after.chars().take(40).collect::<String>(),
                    r.standby.cell()
                );
            }
        }
        s
    }

    /// tps per configuration (rows) and client count (columns).
    fn summary_table(&self) -> String {
        let mut s = String::from("| tps | ");
        s.push_str(
            &self
                .clients
                .iter()
                .map(|c| format!("{c} client{}", if *c == 1 { "" } else { "s" }))
                .collect::<Vec<_>>()
                .join(" | "),
        );
        s.push_str(" |\n| --- |");
        s.push_str(&" ---: |".repeat(self.clients.len()));
        s.push('\n');
        for (t, set) in &self.configs {
            let cells: Vec<String> = self
                .clients
                .iter()
                .map(|&c| tps(self.find(t, set, c).and_then(|r| r.m.tps)))
                .collect();
            let _ = writeln!(s, "| {} | {} |", config_name(t, set), cells.join(" | "));
        }
        s
    }

    /// "a vs b tps = r× (met|not met)" at one client count.
    fn tps_ratio(
        &self,
        a: (&str, &str),
        b: (&str, &str),
        c: u32,
        factor: f64,
    ) -> Option<(bool, String)> {
        let x = self.find(a.0, a.1, c)?.m.tps?;
        let y = self.find(b.0, b.1, c)?.m.tps?;
        if y <= 0.0 {
            return None;
        }
        let ok = x >= factor * y;
        Some((
            ok,
            format!(
                "{c} client{}: {x:.0} vs {y:.0} tps = **{:.2}×** ({})",
                if c == 1 { "" } else { "s" },
                x / y,
                if ok { "met" } else { "not met" }
            ),
        ))
    }

    fn throughput_target(&self, a: (&str, &str), b: (&str, &str), factor: f64) -> String {
        let (an, bn) = (config_name(a.0, a.1), config_name(b.0, b.1));
        let head = 8;
        let headline = self.tps_ratio(a, b, head, factor);
        let others: Vec<String> = self
            .clients
            .iter()
            .filter(|&&c| c != head)
            .filter_map(|&c| self.tps_ratio(a, b, c, factor).map(|(_, t)| t))
            .collect();
        let all_met = self
            .clients
            .iter()
            .all(|&c| self.tps_ratio(a, b, c, factor).is_some_and(|(ok, _)| ok));
        match headline {
            Some((ok, text)) => format!(
                "- **Target: {an} tps ≥ {factor}× {bn} tps** (at 8 clients): **{}**. {text}. Other client counts: {}. At every client count: {}.",
                if ok { "MET" } else { "NOT MET" },
                if others.is_empty() { "none measured".to_string() } else { others.join("; ") },
                if all_met { "met" } else { "not met" }
            ),
            None => format!("- **Target: {an} tps ≥ {factor}× {bn} tps** (at 8 clients): **NOT MEASURED**."),
        }
    }

    fn latency_target(&self, a: (&str, &str), b: (&str, &str)) -> String {
        let (an, bn) = (config_name(a.0, a.1), config_name(b.0, b.1));
        let v = (|| {
            Some((
                self.find(a.0, a.1, 1)?.m.p50_us?,
                self.find(b.0, b.1, 1)?.m.p50_us?,
            ))
        })();
        match v {
            Some((x, y)) => {
                let ok = x <= y;
                format!(
                    "- **Target: 1-client {an} p50 ≤ {bn} p50**: **{}**. {:.2} ms vs {:.2} ms = **{:.2}×**.",
                    if ok { "MET" } else { "NOT MET" },
                    x / 1000.0,
                    y / 1000.0,
                    if y > 0.0 { x / y } else { f64::NAN }
                )
            }
            None => format!("- **Target: 1-client {an} p50 ≤ {bn} p50**: **NOT MEASURED**."),
        }
    }

    fn has(&self, t: &str, set: &str) -> bool {
        self.configs.iter().any(|(a, b)| a == t && b == set)
    }

    fn clone_lines(&self) -> String {
        let mut s = String::new();
        if let Some(e) = &self.clone_error {
            let _ = writeln!(
                s,
                "- **The clone/replay measurement failed:** `{}`",
                e.replace('\n', " ⏎ ")
                    .replace('`', "'")
                    .chars()
                    .take(600)
                    .collect::<String>()
            );
        }
        let Some(c) = &self.clone else {
            return s;
        };
        let mb = |b: u64| b as f64 / 1e6;
        let _ = writeln!(
            s,
            "- **Clone: {:.0} MB/s.** `hadr clone` copied a {:.1} MB database ({} pages of {} bytes, a table of \
             1000-byte random blobs built with {:.1} MB of log in {:.1} s) from the running primary in {:.2} s \
             (wall time of the process, start-up included). `hadr verify` afterwards: {}.",
            c.clone_mb_s,
            mb(c.db_bytes),
            c.pages,
            c.page_size,
            mb(c.first_load_log_bytes),
            c.first_load_secs,
            c.clone_secs,
            c.verify_after_clone.cell()
        );
        let _ = writeln!(
            s,
            "- **Standby replay: {:.0} MB/s of log** ({:.0} MB/s counting from the standby's start). With the standby \
             stopped, the primary bulk-loaded {:.1} MB of log ({:.1} MB of new pages) in {:.1} s; the restarted standby \
             was connected after {:.2} s and its replay LSN (as the primary reports it, polled every 20 ms) reached \
             the primary's log end {:.2} s after its start, i.e. {:.2} s of receiving and replaying. `hadr verify` \
             afterwards: {}.{}",
            c.replay_mb_s,
            c.replay_mb_s_from_start,
            mb(c.replay_log_bytes),
            mb(c.replay_growth_bytes),
            c.replay_load_secs,
            c.standby_connect_secs,
            c.replay_total_secs,
            c.replay_total_secs - c.standby_connect_secs,
            c.verify_after_replay.cell(),
            if c.primary_log_moved {
                " (**the primary's log end moved during the catch-up**, so the figure is approximate)"
            } else {
                ""
            }
        );
        s
    }

    fn reading(&self) -> String {
        let mut s = String::new();
        if self.has("hadr", "SYNC") && self.has("postgres", "on") {
            s.push_str(&self.throughput_target(("hadr", "SYNC"), ("postgres", "on"), 1.5));
            s.push('\n');
        }
        if self.has("hadr", "NEARSYNC") && self.has("postgres", "remote_write") {
            s.push_str(&self.throughput_target(
                ("hadr", "NEARSYNC"),
                ("postgres", "remote_write"),
                1.5,
            ));
            s.push('\n');
        }
        if self.has("hadr", "SYNC") && self.has("postgres", "on") {
            s.push_str(&self.latency_target(("hadr", "SYNC"), ("postgres", "on")));
            s.push('\n');
        }
        let failed: u64 = self.runs.iter().map(|r| r.m.failed).sum();
        let aborted: u64 = self.runs.iter().map(|r| r.m.aborted_clients).sum();
        let errors = self.runs.iter().filter(|r| r.m.error.is_some()).count();
        let not_ready = self.runs.iter().filter(|r| !r.synced_before).count();
        let hadr_runs: Vec<&ReplRunRecord> =
            self.runs.iter().filter(|r| r.target == "hadr").collect();
        let hadr_ok = hadr_runs.iter().filter(|r| r.standby.ok()).count();
        let pg_runs: Vec<&ReplRunRecord> = self
            .runs
            .iter()
            .filter(|r| r.target == "postgres")
            .collect();
        let pg_ok = pg_runs.iter().filter(|r| r.standby.ok()).count();
        let inconsistent = self
            .runs
            .iter()
            .filter(|r| !matches!(r.consistency, Consistency::Ok { .. }))
            .count();
        if !hadr_runs.is_empty() {
            if hadr_ok == hadr_runs.len() {
                let _ = writeln!(
                    s,
                    "- `hadr verify --node PRIMARY --node STANDBY` exited 0 (page-identical) after all {} hadr runs.",
                    hadr_runs.len()
                );
            } else {
                let _ = writeln!(
                    s,
                    "- **`hadr verify` FAILED after {} of {} hadr runs** (see the table and Notes).",
                    hadr_runs.len() - hadr_ok,
                    hadr_runs.len()
                );
            }
        }
        if !pg_runs.is_empty() {
            let _ = writeln!(
                s,
                "- PostgreSQL standby equal to its primary (sums and counts, after replaying everything) after {pg_ok} of {} runs.",
                pg_runs.len()
            );
        }
        if not_ready > 0 {
            let _ = writeln!(
                s,
                "- **{not_ready} run(s) started without the standby in the expected state** (see the state column)."
            );
        }
        // Only the load before the program started measures other work.
        let busy = self
            .load_program_start
            .as_deref()
            .unwrap_or(&self.machine.load_before)
            .parse::<f64>()
            .unwrap_or(0.0);
        if busy > 0.5 * self.machine.nproc.max(1) as f64 {
            let _ = writeln!(
                s,
                "- **Caution:** the machine was not idle before the benchmark started (1-minute load average \
                 {busy:.2} on {} CPUs); other work skews these numbers, so compare them with care.",
                self.machine.nproc
            );
        }
        if failed == 0 && aborted == 0 && errors == 0 {
            s.push_str("- No transaction failed and every pgbench run exited cleanly.\n");
        } else {
            let _ = writeln!(
                s,
                "- **Errors:** {failed} failed transactions, {aborted} aborted clients, {errors} pgbench runs with a \
                 non-zero exit (details under Notes)."
            );
        }
        if inconsistent == 0 {
            s.push_str(
                "- SQL consistency: after every run, sum(accounts.abalance) = sum(history.delta) on every primary.\n",
            );
        } else {
            let _ = writeln!(
                s,
                "- **SQL CONSISTENCY FAILURE** in {inconsistent} run(s): sum(accounts.abalance) ≠ sum(history.delta)."
            );
        }
        s
    }

    pub fn section(&self, svg_name: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{REPL_BEGIN}");
        s.push_str(
            "<!-- Generated by the hadr-bench program (bench/); rerun it instead of editing this section. -->\n\n",
        );
        let _ = writeln!(
            s,
            "Run on {} by:\n\n```\n{}\n```\n",
            self.date, self.command
        );
        s.push_str("### Setup\n\n");
        let m = &self.machine;
        match &self.load_program_start {
            Some(l) if *l != m.load_before => {
                let _ = writeln!(
                    s,
                    "- Machine: {} CPUs ({}), {} RAM, Linux {}; 1-minute load average {l} when the program started, \
                     {} at the start of this part (raised by the single-node part just before it), {} at its end",
                    m.nproc, m.cpu, m.memory, m.kernel, m.load_before, m.load_after
                );
            }
            _ => {
                let _ = writeln!(s, "- {}", m.sentence());
            }
        }
        for (prog, v) in &self.versions {
            let _ = writeln!(s, "- {prog}: `{v}`");
        }
        let _ = writeln!(
            s,
            "- Workload: the single-node transaction ([`bench/pgbench.sql`](../bench/pgbench.sql)) over {} accounts rows, \
             `pgbench -n -M {} -c N -j min(N,2) -T {} -l` against the primary; every server (primaries, standbys, \
             pgbench) on this one machine, over TCP on 127.0.0.1.",
            crate::targets::ACCOUNTS,
            self.mode.as_str(),
            self.seconds
        );
        s.push_str(
            "- hadr: for each sync mode a fresh pair: `hadr init` and `hadr server --role primary --hadr-syncmode MODE` \
             (log flush mode `fsync`), a standby made with `hadr clone` from the running primary and started with \
             `hadr server --hadr-target-list PRIMARY`; the schema and rows are loaded on the primary afterwards and \
             reach the standby by replication. Before every run the pair must be in PEER (SUPERASYNC, which never \
             enters PEER: REMOTE_CATCHUP) with the standby's replay LSN at the primary's log end. After every run, \
             `hadr verify --node PRIMARY --node STANDBY` (page hashes at one LSN) must exit 0.\n",
        );
        s.push_str(
            "- PostgreSQL: one primary (`fsync=on`, `shared_buffers=256MB`, `max_connections=200`, \
             `synchronous_standby_names = '*'`) with one hot standby made by `pg_basebackup -R -X stream` with a \
             replication slot. Before each run the primary's `synchronous_commit` is set with `ALTER SYSTEM` + \
             `pg_reload_conf()`, and the standby must be `streaming`/`sync` with everything replayed. After every run \
             the standby, once it has replayed the primary's flushed WAL, must show the same sum(abalance), \
             count(history) and sum(delta) as the primary (\"same sums\").\n",
        );
        s.push_str(
            "- Levels compared: hadr SYNC (commit waits until the standby has the log on disk) with PostgreSQL `on` \
             (remote flush); NEARSYNC (standby has it in memory) with `remote_write`; PostgreSQL `remote_apply` \
             (standby has replayed it) and `local` (no wait), hadr ASYNC (sent) and SUPERASYNC (no wait) for scale.\n",
        );
        s.push_str(
            "- Method: all pairs run at once, idle when not measured; for each client count the configurations take \
             turns (PostgreSQL `on`, hadr SYNC, `remote_write`, NEARSYNC, ...), so that drift in the machine hits both \
             alike. tps, p50/p99 and the sum check are measured as in the single-node section.\n\n",
        );
        s.push_str("### Results\n\n");
        s.push_str(&self.summary_table());
        s.push('\n');
        s.push_str(&self.table());
        let _ = writeln!(s, "\n![replication tps]({svg_name})\n");
        s.push_str("### Clone and replay\n\n");
        let cl = self.clone_lines();
        if cl.is_empty() {
            s.push_str("Not measured in this run.\n");
        } else {
            s.push_str(&cl);
        }
        s.push_str("\n### Reading\n\n");
        s.push_str(&self.reading());
        let mut notes: Vec<String> = Vec::new();
        for r in &self.runs {
            let mut v = Vec::new();
            if let Some(e) = &r.m.error {
                v.push(e.clone());
            }
            if let Consistency::Error(e) = &r.consistency {
                v.push(format!("sum check failed: {e}"));
            }
            if let Some(d) = r.standby.detail() {
                v.push(format!("standby check: {d}"));
            }
            if !r.synced_before {
                v.push(format!("before the run: {}", r.state_before));
            }
            if !v.is_empty() {
                notes.push(format!(
                    "{} {} clients: {}",
                    config_plain(&r.target, &r.setting),
                    r.clients,
                    v.join("; ")
                ));
            }
        }
        if let Some(c) = &self.clone {
            for (when, v) in [
                ("after clone", &c.verify_after_clone),
                ("after replay", &c.verify_after_replay),
            ] {
                if let Some(d) = v.detail() {
                    notes.push(format!("hadr verify {when}: {d}"));
                }
            }
        }
        notes.extend(self.notes.iter().cloned());
        if !notes.is_empty() {
            s.push_str("\n### Notes\n\n");
            for n in notes {
                let one_line = n.replace('\n', " ⏎ ").replace('`', "'");
                let _ = writeln!(s, "- `{}`", one_line.chars().take(600).collect::<String>());
            }
        }
        let _ = writeln!(s, "\n{REPL_END}");
        s
    }

    pub fn svg(&self) -> String {
        let blues = ["#c6dbef", "#6baed6", "#2171b5", "#08306b"];
        let oranges = ["#fdd0a2", "#fd8d3c", "#d94801", "#7f2704"];
        let (mut pi, mut hi) = (0, 0);
        let series: Vec<Series> = self
            .configs
            .iter()
            .map(|(t, set)| {
                let color = if t == "postgres" {
                    pi += 1;
                    blues[(pi - 1) % 4]
                } else {
                    hi += 1;
                    oranges[(hi - 1) % 4]
                };
                Series {
                    label: config_plain(t, set),
                    tooltip: config_plain(t, set),
                    color: color.into(),
                    values: self
                        .clients
                        .iter()
                        .map(|&c| self.find(t, set, c).and_then(|r| r.m.tps))
                        .collect(),
                }
            })
            .collect();
        let width = (290.0 + (self.clients.len() * series.len()) as f64 * 34.0).max(820.0);
        bar_chart(
            &format!(
                "Primary + standby, pgbench -M {} ({} s per run): tps by clients",
                self.mode.as_str(),
                self.seconds
            ),
            &self.clients,
            &series,
            width,
        )
    }

    pub fn write(&self, out: &Path) -> Result<()> {
        let svg_name = svg_file_name(out, "replication-tps");
        write_svg(out, &svg_name, &self.svg())?;
        write_section(
            out,
            REPL_BEGIN,
            REPL_END,
            "## Replication",
            "A primary with one standby on the same machine: hadr in each of its sync modes against PostgreSQL 15 \
             streaming replication at each `synchronous_commit` level; and how fast hadr clones a database and a \
             standby replays log.",
            &self.section(&svg_name),
            None,
        )
    }
}

/// "<stem>-<suffix>.svg", next to the Markdown file `out`.
pub fn svg_file_name(out: &Path, suffix: &str) -> String {
    format!(
        "{}-{suffix}.svg",
        out.file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("benchmarks")
    )
}

/// Writes an SVG next to the Markdown file `out`.
pub fn write_svg(out: &Path, name: &str, svg: &str) -> Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let path = out.with_file_name(name);
    std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))
}

/// New sections go before the hand-written analysis of the document.
pub const BEFORE_ANALYSIS: &str = "## Why hadr falls short";

/// A generated section of the document: its markers, and where a new one goes.
pub struct Part {
    pub begin: &'static str,
    pub end: &'static str,
    pub heading: &'static str,
    pub intro: &'static str,
    /// A new section goes before this line (else at the end).
    pub insert_before: Option<&'static str>,
}

impl Part {
    /// The start of the section: its begin marker, the generated-by note,
    /// and the command that produced it.
    pub fn start(&self, date: &str, command: &str) -> String {
        format!(
            "{}\n<!-- Generated by the hadr-bench program (bench/); rerun it instead of editing this section. -->\n\n\
             Run on {date} by:\n\n```\n{command}\n```\n\n",
            self.begin
        )
    }

    /// Puts `section` (markers included) into the document `out`; see [`write_section`].
    pub fn write(&self, out: &Path, section: &str) -> Result<()> {
        write_section(
            out,
            self.begin,
            self.end,
            self.heading,
            self.intro,
            section,
            self.insert_before,
        )
    }
}

/// Puts a generated `section` (markers included) into the document `out`:
/// in place of the old one between `begin` and `end` if there is one;
/// otherwise under a new `heading` (with `intro`), placed before the line
/// `insert_before` if the document has it, else at the end. A missing
/// document is created around it. The rest of the file is kept.
pub fn write_section(
    out: &Path,
    begin: &str,
    end: &str,
    heading: &str,
    intro: &str,
    section: &str,
    insert_before: Option<&str>,
) -> Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let existing = std::fs::read_to_string(out).ok();
    let block = format!("{heading}\n\n{intro}\n\n{}\n", section.trim_end());
    let doc = match existing {
        Some(d) => match (d.find(begin), d.find(end)) {
            (Some(b), Some(e)) if b < e => {
                let mut doc = String::new();
                doc.push_str(&d[..b]);
                doc.push_str(section.trim_end());
                doc.push_str(&d[e + end.len()..]);
                doc
            }
            _ => {
                let at = insert_before.and_then(|h| {
                    d.match_indices(h)
                        .map(|(i, _)| i)
                        .find(|&i| i == 0 || d[..i].ends_with('\n'))
                });
                match at {
                    Some(i) => format!("{}{block}\n{}", &d[..i], &d[i..]),
                    None => format!("{}\n\n{block}", d.trim_end()),
                }
            }
        },
        None => format!(
            "# Benchmarks\n\n\
             How hadr compares with PostgreSQL on the same machine. Every number here is produced by the \
             benchmark program in `bench/` (`cargo run --release -p hadr-bench -- --help`); each section is \
             regenerated by its run and the rest of the file is kept.\n\n{block}"
        ),
    };
    std::fs::write(out, doc).with_context(|| format!("writing {}", out.display()))
}

/// The smallest 1, 2, 2.5 or 5 × 10^k at or above `v`.
fn nice_ceiling(v: f64) -> f64 {
    let mag = 10f64.powf(v.log10().floor());
    for f in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if f * mag >= v {
            return f * mag;
        }
    }
    10.0 * mag
}

fn fmt_tick(v: f64) -> String {
    if v >= 1000.0 && (v / 1000.0).fract() == 0.0 {
        format!("{}k", v / 1000.0)
    } else if v >= 1000.0 {
        format!("{:.1}k", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_replaced_inserted_or_appended() {
        let dir = std::env::temp_dir().join(format!("hadr-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("b.md");
        let _ = std::fs::remove_file(&out);
        let sec = |b: &str, e: &str, body: &str| format!("{b}\n{body}\n{e}\n");
        // New document, replication only.
        write_section(
            &out,
            REPL_BEGIN,
            REPL_END,
            "## Replication",
            "R intro",
            &sec(REPL_BEGIN, REPL_END, "r1"),
            None,
        )
        .unwrap();
        // Single node goes in before "## Replication".
        write_section(
            &out,
            SECTION_BEGIN,
            SECTION_END,
            "## Single node",
            "S intro",
            &sec(SECTION_BEGIN, SECTION_END, "s1"),
            Some("## Replication"),
        )
        .unwrap();
        // Both replaced in place.
        write_section(
            &out,
            REPL_BEGIN,
            REPL_END,
            "## Replication",
            "R intro",
            &sec(REPL_BEGIN, REPL_END, "r2"),
            None,
        )
        .unwrap();
        write_section(
            &out,
            SECTION_BEGIN,
            SECTION_END,
            "## Single node",
            "S intro",
            &sec(SECTION_BEGIN, SECTION_END, "s2"),
            Some("## Replication"),
        )
        .unwrap();
        let doc = std::fs::read_to_string(&out).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(doc.starts_with("# Benchmarks\n"));
        let s = doc.find("## Single node").unwrap();
        let r = doc.find("## Replication").unwrap();
        assert!(s < r, "{doc}");
        assert!(
            doc.contains("s2") && doc.contains("r2") && !doc.contains("s1") && !doc.contains("r1"),
            "{doc}"
        );
        assert_eq!(doc.matches("## Replication").count(), 1);
        assert_eq!(doc.matches("S intro").count(), 1);
    }

    #[test]
    fn nice() {
        assert_eq!(nice_ceiling(730.0), 1000.0);
        assert_eq!(nice_ceiling(1200.0), 2000.0);
        assert_eq!(nice_ceiling(2100.0), 2500.0);
        assert_eq!(nice_ceiling(4000.0), 5000.0);
        assert_eq!(nice_ceiling(5000.0), 5000.0);
        assert_eq!(nice_ceiling(5618.0 / 5.0), 2000.0);
    }
}
