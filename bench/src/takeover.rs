//! The takeover part: graceful and forced takeover times under pgbench load,
//! the old primary's rejoin time, and a page-level rewind of a diverged old
//! primary against a full re-clone of the same database.
//!
//! Times are taken from outside, like a user would see them: from the
//! takeover request to the first write the new primary accepts (a psql
//! UPDATE retried every few milliseconds, so the resolution is that of one
//! psql round, about 5–10 ms).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::proc;
use crate::replication::{http, http_json};
use crate::targets::{self, ConnInfo};

/// Markers of this part's section of docs/benchmarks.md.
pub const BEGIN: &str = "<!-- hadr-bench:takeover:begin -->";
/// End marker.
pub const END: &str = "<!-- hadr-bench:takeover:end -->";

/// One `hadr server` of a two-node cluster.
struct Node {
    name: &'static str,
    bin: PathBuf,
    dir: PathBuf,
    log: PathBuf,
    pg: u16,
    admin: u16,
    local: u16,
    peer_local: u16,
    child: Option<Child>,
}

fn addr(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

impl Node {
    fn conn(&self) -> ConnInfo {
        ConnInfo {
            host: "127.0.0.1".into(),
            port: self.pg,
            user: "postgres".into(),
            dbname: "postgres".into(),
        }
    }

    fn spawn(&mut self, extra: &[&str]) -> Result<()> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let mut c = Command::new(&self.bin);
        c.arg("server")
            .arg("--data")
            .arg(&self.dir)
            .args(["--listen", &addr(self.pg)])
            .args(["--admin", &addr(self.admin)])
            .args(["--hadr-local", &addr(self.local)])
            .args(["--hadr-target-list", &addr(self.peer_local)])
            .args(["--hadr-syncmode", "NEARSYNC", "--hadr-timeout", "1s"])
            .args(extra)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        self.child = Some(proc::spawn(&mut c)?);
        Ok(())
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn stop(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            proc::terminate(&mut c, Duration::from_secs(30))
                .with_context(|| format!("stopping node {}", self.name))?;
        }
        Ok(())
    }

    fn status(&self) -> Option<Value> {
        http_json(
            &addr(self.admin),
            "/status?hash=false",
            Duration::from_secs(10),
        )
        .ok()
    }

    fn wait_for(&self, what: &str, secs: u64, f: impl Fn(&Value) -> bool) -> Result<()> {
        let start = Instant::now();
        loop {
            proc::check_interrupted()?;
            if self.status().is_some_and(|s| f(&s)) {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(secs) {
                bail!(
                    "node {} did not reach \"{what}\" within {secs} s; log tail:\n{}",
                    self.name,
                    proc::tail_file(&self.log, 15)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn is_primary(s: &Value) -> bool {
    s["role"] == "primary" && s["writable"] == true
}

fn follows(s: &Value) -> bool {
    s["role"] == "standby" && s["hadr"]["hadr_connect_status"] == "CONNECTED"
}

fn in_peer(s: &Value) -> bool {
    s["hadr"]["standbys"][0]["hadr_state"] == "PEER"
}

/// Retry one small write until the node accepts it.
fn first_write(conn: &ConnInfo, secs: u64) -> Result<()> {
    let start = Instant::now();
    loop {
        proc::check_interrupted()?;
        let mut c = Command::new("psql");
        c.args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
            .args(conn.args())
            .args(["-d", &conn.dbname])
            .args(["-c", "UPDATE tk SET n = n + 1 WHERE id = 1"])
            .env("PGCONNECT_TIMEOUT", "2");
        if proc::run(&mut c, Duration::from_secs(10), "psql write")?
            .status
            .success()
        {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(secs) {
            bail!("no write accepted within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// pgbench with 4 clients updating random rows, in the background.
fn start_load(conn: &ConnInfo, script: &Path) -> Result<Child> {
    let mut c = Command::new("pgbench");
    c.args([
        "-n", "-c", "4", "-j", "2", "-T", "30", "-M", "prepared", "-f",
    ])
    .arg(script)
    .args(conn.args())
    .arg(&conn.dbname)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    proc::spawn(&mut c)
}

fn stop_load(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

/// Percentile (nearest rank) of sorted milliseconds.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(ms: &[f64]) -> String {
    let mut v = ms.to_vec();
    v.sort_by(f64::total_cmp);
    format!(
        "{} | {:.0} | {:.0} | {:.0} | {:.0}",
        v.len(),
        pct(&v, 50.0),
        pct(&v, 99.0),
        v.first().copied().unwrap_or(f64::NAN),
        v.last().copied().unwrap_or(f64::NAN)
    )
}

/// What this part measured.
pub struct TakeoverReport {
    graceful_ms: Vec<f64>,
    forced_ms: Vec<f64>,
    forced_from_kill_ms: Vec<f64>,
    rejoin_ms: Vec<f64>,
    rewind: Option<RewindResult>,
    load: String,
}

struct RewindResult {
    db_mb: u64,
    diverged_mb: u64,
    rewind_s: f64,
    clone_s: f64,
    rewind_line: String,
    identical: bool,
}

fn two_nodes(bin: &Path, home: &Path) -> Result<(Node, Node)> {
    std::fs::create_dir_all(home).with_context(|| format!("creating {}", home.display()))?;
    let p = targets::free_ports(6)?;
    let node = |name: &'static str, pg, admin, local, peer_local| Node {
        name,
        bin: bin.to_path_buf(),
        dir: home.join(name),
        log: home.join(format!("{name}.log")),
        pg,
        admin,
        local,
        peer_local,
        child: None,
    };
    Ok((
        node("a", p[0], p[1], p[2], p[5]),
        node("b", p[3], p[4], p[5], p[2]),
    ))
}

/// `hadr init` A, start it as primary, create the table, clone B, start B,
/// wait for PEER.
fn start_pair(a: &mut Node, b: &mut Node, setup: &[String]) -> Result<()> {
    let mut c = Command::new(&a.bin);
    c.arg("init").arg("--data").arg(&a.dir);
    proc::run_ok(&mut c, Duration::from_secs(60), "hadr init")?;
    a.spawn(&["--role", "primary"])?;
    a.wait_for("serving", 60, |_| true)?;
    targets::psql(&a.conn(), setup, Duration::from_secs(1800))?;
    clone(&a.bin, a.local, &b.dir)?;
    b.spawn(&[])?;
    a.wait_for("PEER", 120, in_peer)
}

fn clone(bin: &Path, from: u16, dir: &Path) -> Result<Duration> {
    let mut c = Command::new(bin);
    c.arg("clone")
        .args(["--from", &addr(from), "--data"])
        .arg(dir)
        .env("NO_COLOR", "1");
    let t = Instant::now();
    proc::run_ok(&mut c, Duration::from_secs(1800), "hadr clone")?;
    Ok(t.elapsed())
}

/// Run the part: `runs` graceful and `runs` forced takeovers, then the
/// rewind comparison on a `db_mb` database with `diverged_mb` of changes.
pub fn run(
    bin: &Path,
    work: &Path,
    runs: usize,
    db_mb: u64,
    diverged_mb: u64,
) -> Result<TakeoverReport> {
    let home = work.join("takeover");
    let (mut a, mut b) = two_nodes(bin, &home)?;
    let script = home.join("load.sql");
    std::fs::write(
        &script,
        "\\set id random(1, 1000)\nUPDATE tk SET n = n + 1 WHERE id = :id;\n",
    )?;
    let setup = vec![
        "CREATE TABLE tk(id INTEGER PRIMARY KEY, n INTEGER NOT NULL)".to_string(),
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 1000) INSERT INTO tk SELECT i, 0 FROM s".to_string(),
    ];
    start_pair(&mut a, &mut b, &setup)?;
    let mut nodes = [a, b];
    let (mut p, mut s) = (0usize, 1usize);
    let mut graceful_ms = Vec::new();
    for i in 0..runs {
        nodes[p].wait_for("PEER", 60, in_peer)?;
        let load = start_load(&nodes[p].conn(), &script)?;
        proc::sleep(Duration::from_millis(700))?;
        let t = Instant::now();
        let (code, body) = http(
            "POST",
            &addr(nodes[s].admin),
            "/takeover",
            Duration::from_secs(60),
        )?;
        if code != 200 {
            stop_load(load);
            bail!("graceful takeover {i} refused ({code}): {body}");
        }
        first_write(&nodes[s].conn(), 60)?;
        graceful_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        stop_load(load);
        nodes[p].wait_for("old primary following", 60, follows)?;
        std::mem::swap(&mut p, &mut s);
        eprintln!("graceful takeover {i}: {:.0} ms", graceful_ms[i]);
    }
    let (mut forced_ms, mut from_kill, mut rejoin_ms) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        nodes[p].wait_for("PEER", 60, in_peer)?;
        let load = start_load(&nodes[p].conn(), &script)?;
        proc::sleep(Duration::from_millis(700))?;
        let killed = Instant::now();
        nodes[p].kill9();
        // On loopback the standby sees the reset at once; the command is what we time.
        nodes[s].wait_for("disconnected", 30, |st| {
            st["hadr"]["hadr_connect_status"] == "DISCONNECTED"
        })?;
        let t = Instant::now();
        let (code, body) = http(
            "POST",
            &addr(nodes[s].admin),
            "/takeover?force=true",
            Duration::from_secs(60),
        )?;
        if code != 200 {
            stop_load(load);
            bail!("forced takeover {i} refused ({code}): {body}");
        }
        first_write(&nodes[s].conn(), 60)?;
        forced_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        from_kill.push(killed.elapsed().as_secs_f64() * 1000.0);
        stop_load(load);
        let r = Instant::now();
        nodes[p].spawn(&[])?;
        nodes[p].wait_for("old primary rejoined", 120, follows)?;
        rejoin_ms.push(r.elapsed().as_secs_f64() * 1000.0);
        eprintln!(
            "forced takeover {i}: {:.0} ms (from the kill {:.0} ms), rejoin {:.0} ms",
            forced_ms[i], from_kill[i], rejoin_ms[i]
        );
        std::mem::swap(&mut p, &mut s);
    }
    for n in nodes.iter_mut() {
        n.stop()?;
    }
    drop(nodes);
    let rewind = if db_mb > 0 {
        Some(rewind_vs_clone(
            bin,
            &work.join("rewind"),
            db_mb,
            diverged_mb,
        )?)
    } else {
        None
    };
    Ok(TakeoverReport {
        graceful_ms,
        forced_ms,
        forced_from_kill_ms: from_kill,
        rejoin_ms,
        rewind,
        load: "pgbench, 4 clients, prepared, random single-row UPDATEs".into(),
    })
}

/// A `db_mb` database; the standby goes down; `diverged_mb` of updates on
/// the primary that the standby never gets; the primary is killed; the
/// standby is forced to take over and writes a little; then the old
/// primary is rewound (`hadr rejoin`) and, for comparison, the new primary
/// is cloned in full. The rewound node must verify identical.
fn rewind_vs_clone(bin: &Path, home: &Path, db_mb: u64, diverged_mb: u64) -> Result<RewindResult> {
    let (mut a, mut b) = two_nodes(bin, home)?;
    // One ~4000-byte row per 4 KiB page.
    let rows = db_mb * 1_000_000 / 4096;
    let batch = 25_000u64;
    let mut setup = vec!["CREATE TABLE blobs(id INTEGER PRIMARY KEY, b BLOB)".to_string()];
    let mut done = 0;
    while done < rows {
        let n = batch.min(rows - done);
        setup.push(format!("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) INSERT INTO blobs(b) SELECT randomblob(4000) FROM s"));
        done += n;
    }
    eprintln!("rewind: building a {db_mb} MB database ...");
    start_pair(&mut a, &mut b, &setup)?;
    b.kill9();
    let every = (rows * 4096 / (diverged_mb * 1_000_000)).max(1);
    targets::psql(
        &a.conn(),
        &[format!(
            "UPDATE blobs SET b = randomblob(4000) WHERE id % {every} = 0"
        )],
        Duration::from_secs(600),
    )?;
    a.kill9();
    b.spawn(&[])?;
    b.wait_for("standby up", 60, |s| s["role"] == "standby")?;
    let (code, body) = http(
        "POST",
        &addr(b.admin),
        "/takeover?force=true",
        Duration::from_secs(60),
    )?;
    if code != 200 {
        bail!("forced takeover refused ({code}): {body}");
    }
    b.wait_for("new primary", 120, is_primary)?;
    targets::psql(
        &b.conn(),
        &["UPDATE blobs SET b = randomblob(4000) WHERE id % 1000 = 1".to_string()],
        Duration::from_secs(600),
    )?;
    // The old primary is stopped: rewind it offline, timed.
    let mut c = Command::new(bin);
    c.args(["rejoin", "--from", &addr(b.local), "--data"])
        .arg(&a.dir)
        .env("NO_COLOR", "1");
    let t = Instant::now();
    let out = proc::run_ok(&mut c, Duration::from_secs(1800), "hadr rejoin")?;
    let rewind_s = t.elapsed().as_secs_f64();
    let rewind_line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("rewound") || l.contains("re-clon"))
        .unwrap_or("")
        .to_string();
    if !rewind_line.starts_with("rewound") {
        bail!("hadr rejoin did not rewind: {}", out.message());
    }
    let clone_s = clone(bin, b.local, &home.join("fresh"))?.as_secs_f64();
    let _ = std::fs::remove_dir_all(home.join("fresh"));
    a.spawn(&[])?;
    a.wait_for("rewound node following", 300, follows)?;
    let mut v = Command::new(bin);
    v.args([
        "verify",
        "--timeout",
        "120s",
        "--node",
        &addr(a.admin),
        "--node",
        &addr(b.admin),
    ]);
    let identical = proc::run(&mut v, Duration::from_secs(600), "hadr verify")?
        .status
        .success();
    a.stop()?;
    b.stop()?;
    if !identical {
        bail!("the rewound old primary does not verify identical to the new primary");
    }
    Ok(RewindResult {
        db_mb,
        diverged_mb,
        rewind_s,
        clone_s,
        rewind_line,
        identical,
    })
}

impl TakeoverReport {
    /// The generated section, markers included.
    pub fn section(&self, machine: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{BEGIN}");
        let _ = writeln!(
            s,
            "<!-- Generated by the hadr-bench program (bench/); rerun it instead of editing this section. -->\n"
        );
        let _ = writeln!(s, "{machine}\n");
        let _ = writeln!(
            s,
            "Two nodes on loopback, NEARSYNC, `hadr_timeout` 1 s, release build, under {}. \
             Each time runs from the request to the first UPDATE the new primary accepts \
             (psql retried every few ms); roles alternate each run.\n",
            self.load
        );
        let _ = writeln!(s, "| takeover | runs | p50 ms | p99 ms | min ms | max ms |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
        let _ = writeln!(
            s,
            "| graceful (`hadr takeover`) | {} |",
            summary(&self.graceful_ms)
        );
        let _ = writeln!(
            s,
            "| forced (`--force`, primary killed -9) | {} |",
            summary(&self.forced_ms)
        );
        let _ = writeln!(
            s,
            "| forced, from the kill | {} |",
            summary(&self.forced_from_kill_ms)
        );
        let _ = writeln!(
            s,
            "| old primary restarted → following again | {} |",
            summary(&self.rejoin_ms)
        );
        let mut g = self.graceful_ms.clone();
        g.sort_by(f64::total_cmp);
        let _ = writeln!(
            s,
            "\nTarget: graceful takeover under 1 s: **{}** (p99 {:.0} ms). With 20 runs p99 is the maximum.\n",
            if pct(&g, 99.0) < 1000.0 { "met" } else { "not met" },
            pct(&g, 99.0)
        );
        if let Some(r) = &self.rewind {
            let ratio = r.clone_s / r.rewind_s;
            let _ = writeln!(
                s,
                "**Rewind against re-clone.** A {} MB database; {} MB of updates on the primary that the standby never received; primary killed, standby forced to take over, a few writes on it; then `hadr rejoin` rewinds the stopped old primary, and `hadr clone` copies the new primary in full for comparison.\n",
                r.db_mb, r.diverged_mb
            );
            let _ = writeln!(s, "| | seconds |");
            let _ = writeln!(s, "|---|---:|");
            let _ = writeln!(s, "| rewind (`hadr rejoin`) | {:.2} |", r.rewind_s);
            let _ = writeln!(s, "| full re-clone (`hadr clone`) | {:.2} |", r.clone_s);
            let _ = writeln!(
                s,
                "\nRewind is {ratio:.1}× faster than re-clone (target ≥ 10×: **{}**). The rewound node then followed the new primary and `hadr verify` found them {}. It printed: `{}`\n",
                if ratio >= 10.0 { "met" } else { "not met" },
                if r.identical { "identical" } else { "DIFFERENT" },
                r.rewind_line
            );
        }
        let _ = writeln!(s, "{END}");
        s
    }

    /// Write the section into the document at `out`.
    pub fn write(&self, out: &Path, machine: &str) -> Result<()> {
        crate::report::write_section(
            out,
            BEGIN,
            END,
            "## Takeover and rewind",
            "How long a role switch takes, and how an old primary comes back.",
            &self.section(machine),
            Some("## Why hadr falls short"),
        )
    }
}
