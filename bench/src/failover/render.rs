//! The failover section of docs/benchmarks.md.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::{pct, sorted, Series};
use crate::report::Machine;

const PART: crate::report::Part = crate::report::Part {
    begin: "<!-- hadr-bench:failover:begin -->",
    end: "<!-- hadr-bench:failover:end -->",
    heading: "## Automatic failover against Patroni",
    intro:
        "How long until the survivor accepts writes after the primary's host dies, and whether any \
            acknowledged commit is lost (issue 15).",
    insert_before: Some(crate::report::BEFORE_ANALYSIS),
};

/// What the part measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FailoverReport {
    pub date: String,
    pub command: String,
    pub machine: Machine,
    pub load_program_start: String,
    pub versions: Vec<(String, String)>,
    pub clients: u32,
    pub runs: usize,
    pub fence_runs: usize,
    pub patroni_runs: usize,
    pub series: Vec<Series>,
    pub notes: Vec<String>,
}

fn secs(ms: f64) -> String {
    if ms.is_nan() {
        "—".into()
    } else {
        format!("{:.2}", ms / 1000.0)
    }
}

/// "p50 / max" in ms of some values, or a dash.
fn p50_max(v: Vec<f64>) -> String {
    if v.is_empty() {
        return "—".into();
    }
    let v = sorted(v.into_iter());
    format!("{:.0} / {:.0}", pct(&v, 50.0), v[v.len() - 1])
}

impl FailoverReport {
    /// Lost commits, accepted writes after a freeze, series that stopped early.
    pub fn failures(&self) -> usize {
        self.series.iter().map(Series::failures).sum()
    }

    /// p50 of a series' failover times, ms.
    fn p50(s: &Series) -> f64 {
        pct(&sorted(s.crash.iter().map(|r| r.failover_ms)), 50.0)
    }

    /// The tables, for the terminal and the document.
    pub fn table(&self) -> String {
        let mut s = String::new();
        s.push_str(
            "| system | arbiter | settings | runs | p50 s | p99 s | max s | acknowledged commits lost |\n\
             | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |\n",
        );
        for x in &self.series {
            let v = sorted(x.crash.iter().map(|r| r.failover_ms));
            let acked: u64 = x.crash.iter().map(|r| r.acked).sum();
            let lost: u64 = x.crash.iter().map(|r| r.lost).sum();
            let runs = if x.crash.len() == x.runs_asked {
                x.crash.len().to_string()
            } else {
                format!("**{} of {}**", x.crash.len(), x.runs_asked)
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {runs} | {} | {} | {} | {} of {acked} |",
                x.system,
                x.arbiter,
                x.flags,
                secs(pct(&v, 50.0)),
                secs(pct(&v, 99.0)),
                secs(v.last().copied().unwrap_or(f64::NAN)),
                if lost == 0 {
                    "0".to_string()
                } else {
                    format!("**{lost}**")
                },
            );
        }
        let hadr: Vec<&Series> = self.series.iter().filter(|x| x.system == "hadr").collect();
        let lost_cell = |lost: u64| {
            if lost == 0 {
                "0".to_string()
            } else {
                format!("**{lost}**")
            }
        };
        if hadr
            .iter()
            .any(|x| !x.fence.is_empty() || x.fence_note.is_some())
        {
            s.push_str(
                "\n**Isolated primary** (host black-holed, not killed), ms after the cut:\n\n\
                 | hadr arbiter | settings | runs | lease left at the cut (max) | `/status` not writable (p50 / max) \
                 | a write from inside refused (p50 / max) | last write acknowledged (max) | acknowledged after the \
                 lease deadline | standby's first write (p50 / max) | commits lost |\n\
                 | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
            );
            for x in &hadr {
                if x.fence.is_empty() {
                    let _ = writeln!(
                        s,
                        "| {} | {} | 0 | n/a (below) | | | | | | |",
                        x.arbiter, x.flags
                    );
                    continue;
                }
                let f = &x.fence;
                let after: u64 = f.iter().map(|r| r.acked_after_deadline).sum();
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    x.arbiter,
                    x.flags,
                    f.len(),
                    f.iter()
                        .filter_map(|r| r.lease_left_ms)
                        .max()
                        .map_or("—".into(), |m| m.to_string()),
                    p50_max(f.iter().map(|r| r.fence_ms).collect()),
                    p50_max(f.iter().filter_map(|r| r.refused_ms).collect()),
                    f.iter()
                        .filter_map(|r| r.last_ack_ms)
                        .max_by(f64::total_cmp)
                        .map_or("none".into(), |v| format!("{v:.0}")),
                    if after == 0 {
                        "0".to_string()
                    } else {
                        format!("**{after}**")
                    },
                    p50_max(f.iter().map(|r| r.takeover_ms).collect()),
                    lost_cell(f.iter().map(|r| r.lost).sum()),
                );
            }
        }
        if hadr.iter().any(|x| !x.stop.is_empty()) {
            s.push_str(
                "\n**Frozen primary** (SIGSTOP, resumed with SIGCONT once the standby took over):\n\n\
                 | hadr arbiter | settings | runs | standby's first write after SIGSTOP, ms (p50 / max) | writes \
                 acknowledged after SIGCONT | `/status` not writable after SIGCONT, ms (p50 / max) | commits lost |\n\
                 | --- | --- | ---: | ---: | ---: | ---: | ---: |\n",
            );
            for x in &hadr {
                let st = &x.stop;
                let accepted: u64 = st.iter().map(|r| r.accepted + r.probe_accepted).sum();
                let queued: u64 = st.iter().map(|r| r.queued).sum();
                let unfenced = st.iter().filter(|r| r.fenced_ms.is_none()).count();
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {}{} | {} |",
                    x.arbiter,
                    x.flags,
                    st.len(),
                    {
                        let none = st.iter().filter(|r| r.takeover_ms.is_none()).count();
                        let cell = p50_max(st.iter().filter_map(|r| r.takeover_ms).collect());
                        if none > 0 {
                            format!("{cell} (**{none} never**)")
                        } else {
                            cell
                        }
                    },
                    if accepted == 0 {
                        format!("0 ({queued} queued)")
                    } else {
                        format!("**{accepted}** ({queued} queued)")
                    },
                    p50_max(st.iter().filter_map(|r| r.fenced_ms).collect()),
                    if unfenced > 0 {
                        format!(" (**{unfenced} never**)")
                    } else {
                        String::new()
                    },
                    lost_cell(st.iter().map(|r| r.lost).sum()),
                );
            }
        }
        s
    }

    /// The generated section, markers included.
    pub fn section(&self) -> String {
        let mut s = PART.start(&self.date, &self.command);
        s.push_str("### Setup\n\n");
        let m = &self.machine;
        let _ = writeln!(
            s,
            "- Machine: {} CPUs ({}), {} RAM, Linux {}; 1-minute load average {} when the program started, {} \
             at the start of this part, {} at its end",
            m.nproc,
            m.cpu,
            m.memory,
            m.kernel,
            self.load_program_start,
            m.load_before,
            m.load_after
        );
        for (prog, v) in &self.versions {
            let _ = writeln!(s, "- {prog}: `{v}`");
        }
        let _ = writeln!(
            s,
            "- Hosts: three Linux network namespaces on a bridge (`hadr_testkit::netns`): node a, node b, and the \
             arbiter's host, where etcd runs (one member, its own ports). The S3 arbiter is moto behind a proxy \
             that lets one request through at a time (moto is not atomic under concurrent conditional PUTs), on \
             the bridge's address; the file arbiter is a file in a directory both nodes' processes open. The \
             program's clients reach every host through the bridge."
        );
        let _ = writeln!(
            s,
            "- hadr: a pair in NEARSYNC (no peer window, log flush `fsync`), made fresh for every arbiter and \
             setting: `hadr init` on a, then `hadr clone` for b. Patroni: two PostgreSQL 15 nodes, \
             `synchronous_mode: true` (its setting that loses no acknowledged commit on failover, as NEARSYNC), \
             `use_pg_rewind: true`, etcd on the arbiter's host as its DCS, the watchdog off."
        );
        let _ = writeln!(
            s,
            "- Load: `pgbench -n -M prepared -c {} -j 2 -f bench/pgbench.sql` against the primary during every run.",
            self.clients
        );
        s.push_str(
            "- **Crash**: the primary's host is black-holed (nftables drops every frame to and from it, no reset, \
             no ICMP) and everything running there is killed with SIGKILL (hadr; or Patroni and its postgres). \
             Failover time is from that moment to the first write the survivor acknowledges: a probe retries \
             `UPDATE tk SET n = n + 1 WHERE id = 1` on both hosts at once, each attempt over a fresh connection \
             (at most 1 s each, 5 ms apart). Meanwhile a separate writer inserts rows with increasing ids through \
             a multi-host connection (`host=A,B target_session_attrs=read-write`, each INSERT given up after 2 s, \
             then it reconnects) and records every acknowledged one; after the run every one of them must be on \
             the new primary (\"acknowledged commits lost\"). The old primary's host is then healed and its \
             server restarted with the same command; the next run waits until it is back in sync (PEER and the \
             lease held; Patroni: the streaming synchronous standby). Roles alternate.\n",
        );
        let _ = writeln!(
            s,
            "- **Isolated** (hadr, {} run(s) per series): the primary's host is black-holed but nothing is \
             killed. From inside its own namespace the program asks its `/status` every 5 ms until it says it \
             accepts no writes, and starts a write (the probe's UPDATE, each over its own connection, allowed 20 s \
             to answer) every 50 ms: none may be acknowledged after the lease deadline its `/status` gave just \
             before the cut. **Frozen**: the primary is stopped with SIGSTOP; once the standby took over, one \
             write is sent on each of 4 sessions opened to the old primary before the freeze (the kernel queues \
             them), and it is resumed with SIGCONT. None may be acknowledged (the probe's writes to it count \
             too); measured: from SIGCONT to its first `/status` saying it accepts no writes. After both, the old \
             primary must come back as a standby by itself. With the file arbiter, the isolation also cuts the \
             host from the shared storage: the lease file's directory (a bind mount) is remounted read-only in \
             the isolated processes' mount namespace, so reads work and every write fails.",
            self.fence_runs
        );
        if self.patroni_runs < self.runs {
            let _ = writeln!(
                s,
                "- Patroni ran {} crash(es) per setting against hadr's {} (`--patroni-runs`), to keep the whole \
                 run under half an hour: each of its runs takes tens of seconds (failover, then its rewind and \
                 rejoin as the synchronous standby).",
                self.patroni_runs, self.runs
            );
        }
        s.push_str("\n### Results\n\n");
        s.push_str(&self.table());
        s.push('\n');
        for x in &self.series {
            let overlap = x
                .fence
                .iter()
                .map(|r| r.fence_ms - r.takeover_ms)
                .fold(f64::NAN, f64::max);
            if overlap > 0.0 {
                let _ = writeln!(
                    s,
                    "- {} {} ({}): the isolated primary's `/status` still said writable up to {overlap:.0} ms after \
                     the standby's first write; it acknowledged {} write after the cut meanwhile.",
                    x.system,
                    x.arbiter,
                    x.setting,
                    if x.fence.iter().all(|r| r.last_ack_ms.is_none()) {
                        "no"
                    } else {
                        "some"
                    }
                );
            }
            if let Some(n) = &x.fence_note {
                let _ = writeln!(
                    s,
                    "- {} {} ({}): isolated primary {n}.",
                    x.system, x.arbiter, x.setting
                );
            }
            for r in x.stop.iter().filter(|r| r.takeover_ms.is_none()) {
                let _ = writeln!(
                    s,
                    "- **{} {} ({}): with {} frozen, the standby did not take over** within 30 s; its `/status` \
                     said: {}",
                    x.system,
                    x.arbiter,
                    x.setting,
                    r.from,
                    r.no_takeover.as_deref().unwrap_or("?").replace('\n', " ")
                );
            }
            if let Some(e) = &x.error {
                let _ = writeln!(
                    s,
                    "- **{} {} ({}) stopped early**: {}",
                    x.system,
                    x.arbiter,
                    x.setting,
                    e.replace('\n', " ")
                );
            }
        }
        s.push_str("\n### Targets (issue 15)\n\n");
        let patroni_default = self
            .series
            .iter()
            .find(|x| x.system == "Patroni" && x.defaults && !x.crash.is_empty());
        for x in self
            .series
            .iter()
            .filter(|x| x.system == "hadr" && x.defaults)
        {
            let v = sorted(x.crash.iter().map(|r| r.failover_ms));
            if v.is_empty() {
                continue;
            }
            let (p50, p99) = (pct(&v, 50.0), pct(&v, 99.0));
            let ratio = patroni_default.map(|pd| Self::p50(pd) / p50);
            let _ = writeln!(
                s,
                "- hadr, {} arbiter, defaults: p50 {} s (target < 3 s: **{}**), p99 {} s (target < 5 s: **{}**){}; \
                 acknowledged commits lost: {} (target 0: **{}**).",
                x.arbiter,
                secs(p50),
                if p50 < 3000.0 { "met" } else { "not met" },
                secs(p99),
                if p99 < 5000.0 { "met" } else { "not met" },
                match ratio {
                    Some(r) => format!(
                        "; {r:.1}× faster than Patroni at its defaults by p50 (target ≥ 9×: **{}**)",
                        if r >= 9.0 { "met" } else { "not met" }
                    ),
                    None => String::new(),
                },
                x.lost(),
                if x.lost() == 0 { "met" } else { "not met" },
            );
        }
        if self.runs < 20 {
            let _ = writeln!(
                s,
                "- A short run: {} crash(es) per hadr series; the issue's measurement is 20 (`--runs 20`, the \
                 default).",
                self.runs
            );
        }
        if self
            .series
            .iter()
            .any(|x| x.crash.len() <= 100 && !x.crash.is_empty())
        {
            s.push_str("- With at most 100 runs, p99 is the slowest run.\n");
        }
        if !self.notes.is_empty() {
            s.push_str("\n### Notes\n\n");
            for n in &self.notes {
                let _ = writeln!(s, "- {}", n.replace('\n', " "));
            }
        }
        let _ = writeln!(s, "\n{}", PART.end);
        s
    }

    /// Writes the section into the document at `out`.
    pub fn write(&self, out: &Path) -> Result<()> {
        PART.write(out, &self.section())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CrashRun, Series, StopRun};
    use super::*;

    fn crash(ms: f64, lost: u64) -> CrashRun {
        CrashRun {
            from: "a".into(),
            to: "b".into(),
            failover_ms: ms,
            acked: 10,
            lost,
            lost_ids: Vec::new(),
            rejoin_ms: None,
        }
    }

    fn series(system: &str, times: &[f64]) -> Series {
        Series {
            system: system.into(),
            arbiter: "etcd".into(),
            setting: "defaults".into(),
            flags: "x".into(),
            defaults: true,
            runs_asked: times.len(),
            crash: times.iter().map(|&t| crash(t, 0)).collect(),
            fence: Vec::new(),
            stop: Vec::new(),
            fence_note: None,
            error: None,
        }
    }

    fn report(series: Vec<Series>) -> FailoverReport {
        FailoverReport {
            date: "d".into(),
            command: "c".into(),
            machine: Machine {
                nproc: 2,
                cpu: "cpu".into(),
                kernel: "k".into(),
                memory: "m".into(),
                load_before: "1".into(),
                load_after: "1".into(),
            },
            load_program_start: "1".into(),
            versions: Vec::new(),
            clients: 4,
            runs: 20,
            fence_runs: 2,
            patroni_runs: 8,
            series,
            notes: Vec::new(),
        }
    }

    #[test]
    fn targets_are_judged_on_the_defaults() {
        let hadr = series("hadr", &[2000.0, 2500.0, 4000.0]);
        let patroni = series("Patroni", &[27000.0, 28000.0]);
        let r = report(vec![hadr, patroni]);
        let text = r.section();
        assert!(
            text.contains("p50 2.50 s (target < 3 s: **met**)"),
            "{text}"
        );
        assert!(
            text.contains("p99 4.00 s (target < 5 s: **met**)"),
            "{text}"
        );
        // 27 s / 2.5 s.
        assert!(text.contains("10.8× faster"), "{text}");
        assert_eq!(r.failures(), 0);
    }

    #[test]
    fn lost_commits_and_writes_after_a_freeze_are_failures() {
        let mut s = series("hadr", &[1000.0]);
        s.crash.push(crash(1000.0, 2));
        assert_eq!(s.lost(), 2);
        assert!(report(vec![s]).table().contains("**2** of 20"));
        let mut s = series("hadr", &[1000.0]);
        s.stop.push(StopRun {
            from: "a".into(),
            takeover_ms: Some(1000.0),
            no_takeover: None,
            queued: 4,
            accepted: 1,
            refused: 3,
            probe_accepted: 0,
            fenced_ms: Some(5.0),
            acked: 1,
            lost: 0,
        });
        let r = report(vec![s]);
        assert_eq!(r.failures(), 1);
        assert!(r.table().contains("**1** (4 queued)"), "{}", r.table());
    }
}
