//! docs/benchmarks.md and its SVG plot.
//!
//! The program owns one section of the document, between two HTML comment
//! markers under `## Single node`; anything else in the file (a later
//! "## Replication" section, say) is kept when the section is regenerated.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use crate::pgbench::{Measurement, Mode};

pub const SECTION_BEGIN: &str = "<!-- hadr-bench:single-node:begin -->";
pub const SECTION_END: &str = "<!-- hadr-bench:single-node:end -->";

/// Whether sum(accounts.abalance) = sum(history.delta) after a run.
#[derive(Clone, Debug, serde::Serialize)]
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
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunRecord {
    pub target: String,
    pub mode: Mode,
    pub clients: u32,
    pub threads: u32,
    #[serde(flatten)]
    pub m: Measurement,
    pub consistency: Consistency,
}

#[derive(Clone, Debug, serde::Serialize)]
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

#[derive(Clone, Debug, serde::Serialize)]
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
        let _ = writeln!(
            s,
            "- Machine: {} CPUs ({}), {} RAM, Linux {}; 1-minute load average {} at the start, {} at the end",
            m.nproc, m.cpu, m.memory, m.kernel, m.load_before, m.load_after
        );
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
    /// one, otherwise writes a new document around it.
    pub fn write(&self, out: &Path) -> Result<()> {
        let svg_path = out.with_file_name(format!(
            "{}-tps.svg",
            out.file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("benchmarks")
        ));
        let svg_name = svg_path
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or("benchmarks-tps.svg")
            .to_string();
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&svg_path, self.svg())
            .with_context(|| format!("writing {}", svg_path.display()))?;

        let section = self.section(&svg_name);
        let existing = std::fs::read_to_string(out).ok();
        let doc = match existing.as_deref().and_then(|d| Some((d, d.find(SECTION_BEGIN)?, d.find(SECTION_END)?))) {
            Some((d, b, e)) if b < e => {
                let mut doc = String::new();
                doc.push_str(&d[..b]);
                doc.push_str(section.trim_end());
                doc.push_str(&d[e + SECTION_END.len()..]);
                doc
            }
            _ => format!(
                "# Benchmarks\n\n\
                 How hadr compares with PostgreSQL on the same machine. Every number here is produced by the \
                 benchmark program in `bench/` (`cargo run --release -p hadr-bench -- --help`); each section is \
                 regenerated by its run and the rest of the file is kept.\n\n\
                 ## Single node\n\n\
                 One hadr node against one PostgreSQL 15 server, both durable (every commit reaches the disk).\n\n\
                 {section}"
            ),
        };
        std::fs::write(out, doc).with_context(|| format!("writing {}", out.display()))?;
        Ok(())
    }

    /// Grouped bars: tps per client count, one bar per (target, mode).
    pub fn svg(&self) -> String {
        let series: Vec<(String, Mode)> = self
            .targets
            .iter()
            .flat_map(|t| self.modes.iter().map(move |m| (t.clone(), *m)))
            .collect();
        let palette = [
            ["#9ecae1", "#3182bd", "#08519c"], // first target: blues
            ["#fdae6b", "#e6550d", "#a63603"], // second target: oranges
            ["#a1d99b", "#31a354", "#006d2c"], // third: greens
            ["#bcbddc", "#756bb1", "#54278f"], // fourth: purples
        ];
        let color = |t: &str, m: Mode| {
            let ti = self.targets.iter().position(|x| x == t).unwrap_or(0) % palette.len();
            let mi = self.modes.iter().position(|x| *x == m).unwrap_or(0) % 3;
            palette[ti][mi]
        };
        let max = self
            .runs
            .iter()
            .filter_map(|r| r.m.tps)
            .fold(0.0f64, f64::max);
        let step = nice_ceiling(max.max(1.0) / 5.0);
        let ticks = (max / step).ceil().max(1.0) as usize;
        let top = step * ticks as f64;

        let (w, h) = (820.0, 440.0);
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
            r#"<text x="{}" y="24" text-anchor="middle" font-size="15" font-weight="bold">pgbench ({} s per run): transactions per second by clients</text>"#,
            left + pw / 2.0,
            self.seconds
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
        let groups = self.clients.len().max(1) as f64;
        let gw = pw / groups;
        let bw = (gw * 0.8) / series.len().max(1) as f64;
        for (gi, &c) in self.clients.iter().enumerate() {
            let gx = left + gw * gi as f64 + gw * 0.1;
            for (si, (t, m)) in series.iter().enumerate() {
                let Some(v) = self.find(t, *m, c).and_then(|r| r.m.tps) else {
                    continue;
                };
                let x = gx + bw * si as f64;
                let _ = writeln!(
                    s,
                    r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {} {c} clients: {v:.0} tps</title></rect>"#,
                    y(v),
                    bw - 2.0,
                    (top_m + ph - y(v)).max(0.0),
                    color(t, *m),
                    display_name(t),
                    m.as_str()
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
        for (si, (t, m)) in series.iter().enumerate() {
            let ly = top_m + 10.0 + 22.0 * si as f64;
            let _ = writeln!(
                s,
                r#"<rect x="{lx:.1}" y="{ly:.1}" width="14" height="14" fill="{}"/><text x="{:.1}" y="{:.1}">{} ({})</text>"#,
                color(t, *m),
                lx + 20.0,
                ly + 11.0,
                display_name(t),
                m.as_str()
            );
        }
        s.push_str("</svg>\n");
        s
    }
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
    fn nice() {
        assert_eq!(nice_ceiling(730.0), 1000.0);
        assert_eq!(nice_ceiling(1200.0), 2000.0);
        assert_eq!(nice_ceiling(2100.0), 2500.0);
        assert_eq!(nice_ceiling(4000.0), 5000.0);
        assert_eq!(nice_ceiling(5000.0), 5000.0);
        assert_eq!(nice_ceiling(5618.0 / 5.0), 2000.0);
    }
}
