//! The client-gap section of docs/benchmarks.md.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::writers::{Driver, Hosts, DRIVERS};
use super::{pct, sorted, Kind, Series, CRASH_MARGIN_MS, GRACEFUL_TARGET_MS};
use crate::report::Machine;

const PART: crate::report::Part = crate::report::Part {
    begin: "<!-- hadr-bench:client-gap:begin -->",
    end: "<!-- hadr-bench:client-gap:end -->",
    heading: "## Client-visible failover gap",
    intro:
        "How long each stock driver goes without an acknowledged write when the primary changes, \
            configured as the README's \"Clients and failover\" says, hadr against PostgreSQL 15 + \
            Patroni in the same run (issue 10).",
    insert_before: Some(crate::report::BEFORE_ANALYSIS),
};

/// What the part measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClientGapReport {
    pub date: String,
    pub command: String,
    pub machine: Machine,
    pub load_program_start: String,
    pub versions: Vec<(String, String)>,
    pub pause_ms: u64,
    pub series: Vec<Series>,
    pub notes: Vec<String>,
}

/// (gaps within target, gaps measured) of `driver` over `kind`.
fn within(s: &Series, kind: Kind, driver: Driver) -> (usize, usize) {
    let mut ok = 0;
    let mut n = 0;
    for sw in s.switches.iter().filter(|sw| sw.kind == kind) {
        if let Some(c) = sw.clients.iter().find(|c| c.driver == driver) {
            n += 1;
            if c.gap_ms.is_some_and(|g| g < sw.target_ms()) {
                ok += 1;
            }
        }
    }
    (ok, n)
}

fn p(v: &[f64], q: f64) -> String {
    if v.is_empty() {
        "—".into()
    } else {
        format!("{:.0} ms", pct(v, q))
    }
}

impl ClientGapReport {
    /// Lost writes, series stopped early, clients that never resumed.
    pub fn failures(&self) -> usize {
        self.series.iter().map(Series::failures).sum()
    }

    /// Switches over target, over all series (reported, not a failure).
    pub fn over_target(&self) -> usize {
        self.series
            .iter()
            .flat_map(|s| &s.switches)
            .flat_map(|sw| {
                sw.clients
                    .iter()
                    .filter(move |c| c.gap_ms.is_none_or(|g| g >= sw.target_ms()))
            })
            .count()
    }

    /// The summary: per system, kind and client, the gap's p50/p99/max.
    pub fn table(&self) -> String {
        let mut s = String::from(
            "| system | switch | client | switches | gap p50 | gap p99 | gap max | target | within target |\n\
             |---|---|---|---:|---:|---:|---:|---|---:|\n",
        );
        for se in &self.series {
            for kind in [Kind::Graceful, Kind::Crash] {
                let n = se.switches.iter().filter(|sw| sw.kind == kind).count();
                if n == 0 {
                    continue;
                }
                let sw = sorted(
                    se.switches
                        .iter()
                        .filter(|sw| sw.kind == kind)
                        .map(|sw| sw.switch_ms),
                );
                let _ = writeln!(
                    s,
                    "| {} | {} | *(new primary's first write)* | {n} | {} | {} | {} | | |",
                    se.system,
                    kind.as_str(),
                    p(&sw, 50.0),
                    p(&sw, 99.0),
                    p(&sw, 100.0),
                );
                for d in DRIVERS {
                    let g = sorted(se.gaps(kind, d).into_iter());
                    let (ok, m) = within(se, kind, d);
                    if m == 0 {
                        continue;
                    }
                    let target = match kind {
                        Kind::Graceful => format!("< {GRACEFUL_TARGET_MS:.0} ms"),
                        Kind::Crash => format!("< switch + {CRASH_MARGIN_MS:.0} ms"),
                    };
                    let _ = writeln!(
                        s,
                        "| {} | {} | {} | {m} | {} | {} | {} | {target} | {ok} of {m} |",
                        se.system,
                        kind.as_str(),
                        d.label(),
                        p(&g, 50.0),
                        p(&g, 99.0),
                        p(&g, 100.0),
                    );
                }
            }
        }
        s
    }

    pub fn section(&self) -> String {
        let mut s = PART.start(&self.date, &self.command);
        let m = &self.machine;
        let _ = writeln!(
            s,
            "Machine: {} CPUs ({}), {}, kernel {}; 1-minute load {} at program start, {} before this part, \
             {} after. {}.\n",
            m.nproc,
            m.cpu,
            m.memory,
            m.kernel,
            self.load_program_start,
            m.load_before,
            m.load_after,
            self.versions
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(
            s,
            "Hosts are network namespaces on one bridge: nodes `a` and `b`, etcd on `arb` (hadr's arbiter, \
             Patroni's DCS); the clients run outside and reach both nodes through the bridge. One client per \
             driver writes for a whole series, through every switch: an autocommit `INSERT INTO acked(id)` of a \
             new id, then a pause of {} ms, reconnecting after any error (20 ms later) with the same \
             connection string, the README's (below); libpq is one long-lived `psql` fed through a pipe, pgjdbc, \
             psycopg and libpq are the writers of `tests/clients/`, tokio-postgres and hadr-client \
             (`execute` of the same INSERT on one long-lived client, which reroutes by itself; hadr only: it \
             uses hadr's commit tokens) run inside the benchmark. No other load runs. A **graceful** switch is `POST /takeover` on hadr's standby (what `hadr \
             takeover` sends) and `patronictl switchover --force` for Patroni (its time includes patronictl's \
             start-up); a **crash** is `kill -9` of the primary's server (hadr; Patroni and its PostgreSQL) \
             with the host left up, so clients get a reset at once, followed by automatic failover (hadr \
             through its etcd arbiter; Patroni once the leader key expires), after which the crashed node \
             is restarted and must rejoin as the standby before the next switch.\n",
            self.pause_ms
        );
        let _ = writeln!(
            s,
            "A client's **gap** at a switch is the longest interval between two of its consecutive \
             acknowledged writes, from its last one before the switch until every client has written on the \
             new primary (+ 0.3 s). *New primary's first write*: from the request (or the kill) to the first \
             write a probe sees acknowledged over fresh connections to the new primary alone. Targets \
             (issue 10): a graceful switch under {GRACEFUL_TARGET_MS:.0} ms for every client; a crash \
             under the switch's own failover time + {CRASH_MARGIN_MS:.0} ms. Percentiles are nearest-rank: \
             with 20 switches, p99 is the largest.\n"
        );
        s.push_str(&self.table());
        s.push_str(
            "\nThe stock writers reconnect 20 ms after every error, however many times (the retry loop \
             issue 10's pitfall 4 warns about); hadr-client backs off between its rounds over the hosts \
             (50 ms doubling to 500 ms, full jitter: its defaults) and reroutes inside `execute`, so it \
             reports no error but reaches the new primary up to one backoff later.\n",
        );
        s.push_str(
            "\nAfter each switch, until the old primary was back as the standby in sync (after a crash: \
             restarted, rejoined and caught up), the clients kept writing on the new primary; the longest \
             interval any client then went without an acknowledged write:\n\n\
             | system | after a | old primary back in sync after p50 / max | longest client stall p50 / max |\n\
             |---|---|---:|---:|\n",
        );
        for se in &self.series {
            for kind in [Kind::Graceful, Kind::Crash] {
                let sws: Vec<_> = se.switches.iter().filter(|sw| sw.kind == kind).collect();
                if sws.is_empty() {
                    continue;
                }
                let back = sorted(sws.iter().map(|sw| sw.rejoin_ms));
                let stall = sorted(sws.iter().filter_map(|sw| {
                    sw.clients
                        .iter()
                        .filter_map(|c| c.rejoin_gap_ms)
                        .reduce(f64::max)
                }));
                let _ = writeln!(
                    s,
                    "| {} | {} | {} / {} | {} / {} |",
                    se.system,
                    kind.as_str(),
                    p(&back, 50.0),
                    p(&back, 100.0),
                    p(&stall, 50.0),
                    p(&stall, 100.0)
                );
            }
        }
        s.push_str(
            "\n| system | client | acknowledged writes | lost on the final primary | median interval | errors reported |\n\
             |---|---|---:|---:|---:|---:|\n",
        );
        for se in &self.series {
            for t in &se.totals {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {}{} | {:.1} ms | {} |",
                    se.system,
                    t.driver.label(),
                    t.acked,
                    t.lost,
                    if t.lost_ids.is_empty() {
                        String::new()
                    } else {
                        format!(" (e.g. {:?})", t.lost_ids)
                    },
                    t.median_interval_ms,
                    t.errors
                );
            }
        }
        s.push_str("\nSettings:\n\n");
        for se in &self.series {
            let _ = writeln!(
                s,
                "- {}: {} ({} graceful switches and {} crashes asked).",
                se.system, se.setting, se.graceful_asked, se.crash_asked
            );
        }
        let h = Hosts(vec![("A".into(), 5432), ("B".into(), 5432)]);
        s.push_str(
            "\nConnection strings (the README's \"Clients and failover\", hadr-client's less its host_cache, \
             with the benchmark's user and database; hosts are the nodes' bridge addresses, port 5432 for \
             hadr and 5433 for PostgreSQL):\n\n",
        );
        for d in DRIVERS {
            let _ = writeln!(s, "- {}: `{}`", d.label(), h.conninfo(d));
        }
        s.push_str(
            "\nCaveat: a 2-core virtual machine shared with other work (see the load figures); the servers, \
             etcd, the clients (two of them a JVM and a Python interpreter) and the probe share those \
             cores, so every time here includes scheduling delays that a real deployment with one host per \
             node would not have.\n",
        );
        s.push_str(
            "\n<details><summary>Every switch</summary>\n\n| system | switch | # | from → to | new primary writes |",
        );
        for d in DRIVERS {
            let _ = write!(s, " {} |", d.label());
        }
        s.push_str("\n|---|---|---:|---|---:|");
        for _ in DRIVERS {
            s.push_str("---:|");
        }
        s.push('\n');
        for se in &self.series {
            for kind in [Kind::Graceful, Kind::Crash] {
                for (i, sw) in se.switches.iter().filter(|sw| sw.kind == kind).enumerate() {
                    let _ = write!(
                        s,
                        "| {} | {} | {} | {} → {} | {:.0} ms |",
                        se.system,
                        kind.as_str(),
                        i + 1,
                        sw.from,
                        sw.to,
                        sw.switch_ms
                    );
                    for d in DRIVERS {
                        let cell = match sw.clients.iter().find(|c| c.driver == d) {
                            Some(c) => match c.gap_ms {
                                Some(g) if g < sw.target_ms() => format!("{g:.0} ms"),
                                Some(g) => format!("**{g:.0} ms** (over)"),
                                None => "did not resume".into(),
                            },
                            None => "—".into(),
                        };
                        let _ = write!(s, " {cell} |");
                    }
                    s.push('\n');
                }
            }
        }
        s.push_str("\n</details>\n");
        let over = self.over_target();
        if over > 0 {
            let _ = writeln!(
                s,
                "\n{over} client gap(s) over their target; per system, switch and client, the first error \
                 the client reported in the first such switch:\n"
            );
            for se in &self.series {
                for kind in [Kind::Graceful, Kind::Crash] {
                    for d in DRIVERS {
                        let over: Vec<(usize, &super::ClientGap)> = se
                            .switches
                            .iter()
                            .filter(|sw| sw.kind == kind)
                            .enumerate()
                            .filter_map(|(i, sw)| {
                                sw.clients
                                    .iter()
                                    .find(|c| c.driver == d)
                                    .filter(|c| c.gap_ms.is_none_or(|g| g >= sw.target_ms()))
                                    .map(|c| (i + 1, c))
                            })
                            .collect();
                        let Some((first, c)) = over.first() else {
                            continue;
                        };
                        let (_, n) = within(se, kind, d);
                        let _ = writeln!(
                            s,
                            "- {} {}, {}: {} of {n} over; switch {first}: {} error(s), the first: {}",
                            se.system,
                            kind.as_str(),
                            d.label(),
                            over.len(),
                            c.errors,
                            c.first_error.as_deref().unwrap_or("none")
                        );
                    }
                }
            }
        }
        for se in &self.series {
            if let Some(e) = &se.error {
                let _ = writeln!(s, "\n**{} stopped early:** {e}", se.system);
            }
        }
        for n in &self.notes {
            let _ = writeln!(s, "\nNote: {n}");
        }
        let _ = writeln!(s, "\n{}", PART.end);
        s
    }

    pub fn write(&self, out: &Path) -> Result<()> {
        PART.write(out, &self.section())
    }
}
