//! The TLS part (`--tls`, issue 11's benchmark): what encryption and
//! SCRAM cost, hadr against PostgreSQL 15 in the same run.
//!
//! Each server is started once with TLS configured (a certificate from a
//! throwaway CA made here with rcgen) and two ways in: the superuser
//! `postgres` over plain TCP with `trust` from loopback, and the role
//! `bench` over TLS only (`hostssl`), with SCRAM-SHA-256. Clients use
//! `sslmode=verify-full` against the CA, so a run that is not encrypted
//! fails instead of measuring the wrong thing.
//!
//! - **Throughput**: pgbench's bank transaction (the single-node part's
//!   script, prepared, 8 clients), alternating plain and TLS rounds so
//!   that drift in the machine's load hits both alike; the median round of
//!   each. The figure of merit is the ratio of ratios: (hadr TLS / hadr
//!   plain) / (PostgreSQL TLS / PostgreSQL plain). Target (issue 11): ≥ 1.0,
//!   i.e. TLS costs hadr no more throughput than it costs PostgreSQL.
//! - **Connection set-up**: pgbench `-C` (a new connection for every
//!   transaction) with `SELECT 1`, one client; pgbench's own "average
//!   connection time", plain + trust against TLS + SCRAM.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::report::Machine;
use crate::targets::{ConnInfo, Hadr, Postgres, Target, TargetKind};
use crate::{proc, Ctx};

/// This part's section of docs/benchmarks.md.
const PART: crate::report::Part = crate::report::Part {
    begin: "<!-- hadr-bench:tls:begin -->",
    end: "<!-- hadr-bench:tls:end -->",
    heading: "## TLS and SCRAM",
    intro: "What encrypting client connections and authenticating with SCRAM-SHA-256 cost, hadr against PostgreSQL 15 in the same run (issue 11).",
    insert_before: Some(crate::report::BEFORE_ANALYSIS),
};

/// The set-ups.
const SINGLE: &str = "single node";
const PAIR: &str = "SYNC pair";

/// The TLS role's password (a throwaway cluster on loopback).
const PASSWORD: &str = "bench-secret";
/// pgbench clients of the throughput rounds.
const CLIENTS: u32 = 8;

/// Options of the part.
pub struct Options {
    /// Seconds per throughput round.
    pub seconds: u64,
    /// Rounds of each (plain, TLS).
    pub rounds: usize,
    /// Seconds of each connection set-up run.
    pub connect_seconds: u64,
    /// Also SYNC pairs (TLS on the client and the replication link).
    pub pairs: bool,
}

/// One server's results.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TlsRun {
    pub server: String,
    /// "single node" or "SYNC pair".
    #[serde(default)]
    pub setup: String,
    /// Throughput of each round, tps.
    pub plain_tps: Vec<f64>,
    pub tls_tps: Vec<f64>,
    /// Average connection set-up (ms) as pgbench -C reports it, and the
    /// connections made.
    pub plain_connect_ms: Option<f64>,
    pub tls_connect_ms: Option<f64>,
    pub plain_connections: u64,
    pub tls_connections: u64,
}

impl TlsRun {
    fn plain_median(&self) -> Option<f64> {
        median(&self.plain_tps)
    }
    fn tls_median(&self) -> Option<f64> {
        median(&self.tls_tps)
    }
    /// TLS throughput over plain (1.0: free).
    pub fn ratio(&self) -> Option<f64> {
        Some(self.tls_median()? / self.plain_median()?)
    }
}

/// What this part measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TlsReport {
    pub date: String,
    pub command: String,
    pub machine: Machine,
    pub seconds: u64,
    pub runs: Vec<TlsRun>,
}

impl TlsReport {
    /// The set-ups measured, in order.
    fn setups(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for r in &self.runs {
            if !v.contains(&r.setup) {
                v.push(r.setup.clone());
            }
        }
        v
    }

    /// (hadr TLS/plain) / (PostgreSQL TLS/plain) in one set-up.
    pub fn ratio_of_ratios(&self, setup: &str) -> Option<f64> {
        let of = |hadr: bool| {
            self.runs
                .iter()
                .find(|r| r.setup == setup && r.server.starts_with("hadr") == hadr)
        };
        Some(of(true)?.ratio()? / of(false)?.ratio()?)
    }

    /// Set-ups that miss the target (for the exit status).
    pub fn failures(&self) -> usize {
        self.setups()
            .iter()
            .filter(|s| self.ratio_of_ratios(s).is_none_or(|r| r < 1.0))
            .count()
    }
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[(v.len() - 1) / 2])
}

/// A CA and a server certificate for 127.0.0.1, written to `dir`.
struct Certs {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn make_certs(dir: &Path) -> Result<Certs> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, SanType,
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "hadr-bench CA");
    let ca = ca_params.self_signed(&ca_key)?;
    let ca_pem = ca.pem();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    // Both ends of a replication link present it too.
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.signed_by(&key, &issuer)?;
    let certs = Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&certs.ca, ca_pem)?;
    std::fs::write(&certs.cert, cert.pem())?;
    std::fs::write(&certs.key, key.serialize_pem())?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&certs.key, std::fs::Permissions::from_mode(0o600))?;
    for f in [&certs.ca, &certs.cert] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(certs)
}

/// How a pgbench or psql process reaches the server: plain as `postgres`,
/// or over verified TLS as `bench` with its password.
#[derive(Clone, Copy, PartialEq)]
enum Way {
    Plain,
    Tls,
}

fn client_env(cmd: &mut Command, way: Way, ca: &Path) {
    match way {
        Way::Plain => {
            cmd.env("PGSSLMODE", "disable");
        }
        Way::Tls => {
            cmd.env("PGSSLMODE", "verify-full")
                .env("PGSSLROOTCERT", ca)
                .env("PGPASSWORD", PASSWORD);
        }
    }
}

fn conn_for(base: &ConnInfo, way: Way) -> ConnInfo {
    ConnInfo {
        user: if way == Way::Tls {
            "bench".into()
        } else {
            base.user.clone()
        },
        ..base.clone()
    }
}

/// One pgbench run; its tps (or average connection time with `-C`).
fn pgbench(
    conn: &ConnInfo,
    way: Way,
    ca: &Path,
    script: &Path,
    clients: u32,
    seconds: u64,
    connect_each: bool,
) -> Result<(Option<f64>, Option<f64>, u64)> {
    let mut cmd = Command::new("pgbench");
    cmd.arg("-n")
        .arg("-f")
        .arg(script)
        .args(["-c", &clients.to_string()])
        .args(["-j", &clients.clamp(1, 2).to_string()])
        .args(["-T", &seconds.to_string()])
        .args(conn.args())
        .arg(&conn.dbname)
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGAPPNAME", "hadr-bench");
    if connect_each {
        cmd.arg("-C");
    } else {
        cmd.args(["-M", "prepared"]);
    }
    client_env(&mut cmd, way, ca);
    let out = proc::run(&mut cmd, Duration::from_secs(seconds * 2 + 120), "pgbench")?;
    if !out.status.success() {
        bail!("pgbench ({conn}) failed: {}", out.message());
    }
    let mut tps = None;
    let mut connect_ms = None;
    let mut done = 0;
    for line in out.stdout.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("tps = ") {
            tps = rest.split_whitespace().next().and_then(|v| v.parse().ok());
        } else if let Some(rest) = line.strip_prefix("average connection time = ") {
            connect_ms = rest.split_whitespace().next().and_then(|v| v.parse().ok());
        } else if let Some(rest) = line.strip_prefix("number of transactions actually processed:") {
            done = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
    }
    Ok((tps, connect_ms, done))
}

/// Checks that the TLS way really is TLS + SCRAM and the plain way is not
/// TLS: verify-full fails without TLS, and a wrong password must fail.
fn check_ways(conn: &ConnInfo, ca: &Path) -> Result<()> {
    let psql = |way: Way, password: Option<&str>| -> Result<proc::Output> {
        let c = conn_for(conn, way);
        let mut cmd = Command::new("psql");
        cmd.args(["-X", "-q", "-A", "-t", "-c", "SELECT 1"])
            .args(c.args())
            .args(["-d", &c.dbname])
            .env("PGCONNECT_TIMEOUT", "10");
        client_env(&mut cmd, way, ca);
        if let Some(p) = password {
            cmd.env("PGPASSWORD", p);
        }
        proc::run(&mut cmd, Duration::from_secs(30), "psql")
    };
    let ok = psql(Way::Tls, None)?;
    if !ok.status.success() || ok.stdout.trim() != "1" {
        bail!("{conn}: TLS + SCRAM login failed: {}", ok.message());
    }
    let wrong = psql(Way::Tls, Some("not-the-password"))?;
    if wrong.status.success() {
        bail!("{conn}: a wrong password got in: the TLS way does not authenticate");
    }
    let plain = psql(Way::Plain, None)?;
    if !plain.status.success() {
        bail!("{conn}: plain login failed: {}", plain.message());
    }
    Ok(())
}

/// Throughput rounds and connection runs against one started, loaded server.
fn measure(ctx: &Ctx, opts: &Options, server: &str, conn: &ConnInfo, ca: &Path) -> Result<TlsRun> {
    check_ways(conn, ca)?;
    let select = ctx.work.join("tls-select.sql");
    std::fs::write(&select, "SELECT 1;\n")?;
    let mut run = TlsRun {
        server: server.into(),
        setup: SINGLE.into(),
        plain_tps: Vec::new(),
        tls_tps: Vec::new(),
        plain_connect_ms: None,
        tls_connect_ms: None,
        plain_connections: 0,
        tls_connections: 0,
    };
    (run.plain_tps, run.tls_tps) = rounds(ctx, opts, server, conn, conn, ca)?;
    for way in [Way::Plain, Way::Tls] {
        let c = conn_for(conn, way);
        let (_, ms, n) = pgbench(&c, way, ca, &select, 1, opts.connect_seconds, true)?;
        eprintln!(
            "tls: {server} connect {:?}: {ms:?} ms ({n} connections)",
            way == Way::Tls
        );
        match way {
            Way::Plain => (run.plain_connect_ms, run.plain_connections) = (ms, n),
            Way::Tls => (run.tls_connect_ms, run.tls_connections) = (ms, n),
        }
    }
    Ok(run)
}

/// Throughput rounds, alternating: the plain way to `plain`, the TLS way to
/// `tls` (the same server, or a pair of its own).
fn rounds(
    ctx: &Ctx,
    opts: &Options,
    server: &str,
    plain: &ConnInfo,
    tls: &ConnInfo,
    ca: &Path,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let (mut p, mut t) = (Vec::new(), Vec::new());
    for round in 0..opts.rounds {
        // Alternate which goes first, so neither always follows the other.
        let order = if round % 2 == 0 {
            [Way::Plain, Way::Tls]
        } else {
            [Way::Tls, Way::Plain]
        };
        for way in order {
            proc::check_interrupted()?;
            let c = match way {
                Way::Plain => conn_for(plain, way),
                Way::Tls => conn_for(tls, way),
            };
            let (tps, _, _) = pgbench(&c, way, ca, &ctx.script, CLIENTS, opts.seconds, false)?;
            let tps = tps.context("pgbench printed no tps")?;
            eprintln!(
                "tls: {server} round {} {}: {tps:.0} tps",
                round + 1,
                if way == Way::Tls { "TLS" } else { "plain" }
            );
            match way {
                Way::Plain => p.push(tps),
                Way::Tls => t.push(tps),
            }
        }
    }
    Ok((p, t))
}

/// The hadr config file of the TLS way: client TLS, SCRAM for `bench` over
/// TLS only, `trust` from loopback for the rest.
fn hadr_config(path: &Path, certs: &Certs) -> Result<()> {
    std::fs::write(
        path,
        format!(
            "tls_cert_file = {:?}\ntls_key_file = {:?}\n\n\
             [[access]]\ntype = \"hostssl\"\ndatabase = \"all\"\nuser = \"bench\"\naddress = \"127.0.0.1/32\"\nmethod = \"scram-sha-256\"\n\n\
             [[access]]\ntype = \"host\"\ndatabase = \"all\"\nuser = \"all\"\naddress = \"127.0.0.1/32\"\nmethod = \"trust\"\n",
            certs.cert.display().to_string(),
            certs.key.display().to_string(),
        ),
    )
    .with_context(|| format!("writing {}", path.display()))
}

/// pg_hba.conf lines of the TLS way (replication over TLS too), and the
/// certificate and key copied where the `postgres` user owns them.
fn pg_tls(ctx: &Ctx, certs: &Certs) -> Result<crate::replication::PgTls> {
    let dir = ctx.work.join("tls-pg-certs");
    std::fs::create_dir_all(&dir)?;
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::copy(&certs.cert, &cert)?;
    std::fs::copy(&certs.key, &key)?;
    for f in [&dir, &cert, &key] {
        crate::targets::chown_to_postgres(f)?;
    }
    Ok(crate::replication::PgTls {
        cert,
        key,
        hba_first: "hostssl all bench 127.0.0.1/32 scram-sha-256\n\
                    host all bench 127.0.0.1/32 reject\n\
                    hostssl replication all 127.0.0.1/32 trust\n\
                    hostnossl all postgres 127.0.0.1/32 trust"
            .into(),
    })
}

/// SYNC pairs: a plain one and one with TLS on the client and the
/// replication link, side by side; throughput rounds alternate between them.
fn measure_pairs(ctx: &Ctx, opts: &Options, certs: &Certs) -> Result<Vec<TlsRun>> {
    use crate::replication::{HadrPair, PostgresPair};
    let mut runs = Vec::new();
    let pair_run = |server: &str, (p, t): (Vec<f64>, Vec<f64>)| TlsRun {
        server: server.into(),
        setup: PAIR.into(),
        plain_tps: p,
        tls_tps: t,
        plain_connect_ms: None,
        tls_connect_ms: None,
        plain_connections: 0,
        tls_connections: 0,
    };
    if ctx.kinds.contains(&TargetKind::Hadr) {
        let mut plain = HadrPair::new(&ctx.hadr_bin, &ctx.work.join("tls-pairs"), "SYNC", "plain")?;
        let mut tls = HadrPair::new(&ctx.hadr_bin, &ctx.work.join("tls-pairs"), "SYNC", "tls")?;
        let config = ctx.work.join("tls-hadr-pair.toml");
        hadr_config(&config, certs)?;
        tls.with_tls(
            &certs.ca,
            [(&certs.cert, &certs.key), (&certs.cert, &certs.key)],
            &config,
        );
        crate::start_and_load(&mut plain, "hadr SYNC pair")?;
        crate::start_and_load(&mut tls, "hadr SYNC pair, TLS")?;
        crate::targets::psql(
            &tls.conninfo(),
            &[format!("CREATE USER bench PASSWORD '{PASSWORD}'")],
            Duration::from_secs(30),
        )
        .context("creating the TLS role on the hadr pair")?;
        check_ways(&tls.conninfo(), &certs.ca)?;
        let r = rounds(
            ctx,
            opts,
            "hadr pair",
            &plain.conninfo(),
            &tls.conninfo(),
            &certs.ca,
        )?;
        runs.push(pair_run("hadr", r));
        plain.stop()?;
        tls.stop()?;
    }
    if ctx.kinds.contains(&TargetKind::Postgres) {
        let mut plain = PostgresPair::new(&ctx.pg_bindir, &ctx.work.join("tls-pg-plain"))?;
        let mut tls = PostgresPair::new(&ctx.pg_bindir, &ctx.work.join("tls-pg-tls"))?;
        tls.tls = Some(pg_tls(ctx, certs)?);
        let version = plain.version()?;
        crate::start_and_load(&mut plain, &version)?;
        crate::start_and_load(&mut tls, &version)?;
        crate::targets::psql(
            &tls.conninfo(),
            &[format!(
                "CREATE ROLE bench LOGIN SUPERUSER PASSWORD '{PASSWORD}'"
            )],
            Duration::from_secs(30),
        )
        .context("creating the TLS role on the PostgreSQL pair")?;
        check_ways(&tls.conninfo(), &certs.ca)?;
        let r = rounds(
            ctx,
            opts,
            "PostgreSQL pair",
            &plain.conninfo(),
            &tls.conninfo(),
            &certs.ca,
        )?;
        runs.push(pair_run("PostgreSQL 15", r));
        plain.stop()?;
        tls.stop()?;
    }
    Ok(runs)
}

/// Run the part: hadr, then PostgreSQL (those of `--targets`), each with
/// both ways in.
pub fn run_part(ctx: &Ctx, opts: &Options) -> Result<TlsReport> {
    let load_before = crate::load_average();
    let certs = make_certs(&ctx.work.join("tls-certs"))?;
    let mut runs = Vec::new();
    if ctx.kinds.contains(&TargetKind::Hadr) {
        let mut h = Hadr::new(&ctx.hadr_bin, &ctx.work.join("tls-hadr"))?;
        let config = ctx.work.join("tls-hadr.toml");
        hadr_config(&config, &certs)?;
        h.extra = vec!["--config".into(), config.display().to_string()];
        crate::start_and_load(&mut h, "hadr")?;
        let conn = h.conninfo();
        crate::targets::psql(
            &conn,
            &[format!("CREATE USER bench PASSWORD '{PASSWORD}'")],
            Duration::from_secs(30),
        )
        .context("creating the TLS role on hadr")?;
        runs.push(measure(ctx, opts, "hadr", &conn, &certs.ca)?);
        h.stop()?;
    }
    if ctx.kinds.contains(&TargetKind::Postgres) {
        let tls = pg_tls(ctx, &certs)?;
        let mut pg = Postgres::new(&ctx.pg_bindir, &ctx.work.join("tls-pg"))?;
        pg.extra_conf = tls.conf();
        pg.hba_first = tls.hba_first.clone();
        let version = pg.version()?;
        crate::start_and_load(&mut pg, &version)?;
        let conn = pg.conninfo();
        crate::targets::psql(
            &conn,
            &[format!(
                "CREATE ROLE bench LOGIN SUPERUSER PASSWORD '{PASSWORD}'"
            )],
            Duration::from_secs(30),
        )
        .context("creating the TLS role on PostgreSQL")?;
        runs.push(measure(ctx, opts, "PostgreSQL 15", &conn, &certs.ca)?);
        pg.stop()?;
    }
    if opts.pairs {
        runs.extend(measure_pairs(ctx, opts, &certs)?);
    }
    let report = TlsReport {
        date: crate::now_utc(),
        command: ctx.command.clone(),
        machine: crate::machine_since(load_before),
        seconds: opts.seconds,
        runs,
    };
    write(&ctx.out_path, &report)?;
    eprintln!("wrote the TLS section of {}", ctx.out_path.display());
    Ok(report)
}

fn fmt(v: Option<f64>, prec: usize) -> String {
    v.map(|v| format!("{v:.prec$}"))
        .unwrap_or_else(|| "—".into())
}

/// This part's section.
pub fn write(out: &Path, r: &TlsReport) -> Result<()> {
    let mut s = PART.start(&r.date, &r.command);
    let rounds = r.runs.first().map_or(0, |x| x.plain_tps.len());
    let _ = writeln!(
        s,
        "One server each, started once with a certificate from a throwaway CA and two ways in: the superuser \
         over plain TCP with `trust` from loopback, and a role `bench` over TLS only (`hostssl`, \
         SCRAM-SHA-256), clients with `sslmode=verify-full`. Throughput: pgbench's bank transaction \
         (`-M prepared`, {CLIENTS} clients), {rounds} rounds of {} s each way, alternating; the median round. \
         Connection set-up: pgbench `-C` (a connection per transaction) with `SELECT 1`, one client, \
         pgbench's average connection time. Target (issue 11): TLS costs hadr no more throughput than \
         it costs PostgreSQL, (hadr TLS/plain) / (PostgreSQL TLS/plain) ≥ 1.0.\n",
        r.seconds
    );
    let _ = writeln!(
        s,
        "| set-up | server | plain tps (median) | TLS + SCRAM tps (median) | TLS / plain | rounds plain | rounds TLS | connect plain + trust (ms) | connect TLS + SCRAM (ms) |\n|---|---|---:|---:|---:|---|---|---:|---:|"
    );
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let connect = |ms: Option<f64>, n: u64| match ms {
        Some(ms) => format!("{ms:.2} ({n} conn.)"),
        None => "—".into(),
    };
    for run in &r.runs {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            run.setup,
            run.server,
            fmt(run.plain_median(), 0),
            fmt(run.tls_median(), 0),
            fmt(run.ratio(), 3),
            list(&run.plain_tps),
            list(&run.tls_tps),
            connect(run.plain_connect_ms, run.plain_connections),
            connect(run.tls_connect_ms, run.tls_connections),
        );
    }
    let _ = writeln!(s);
    for setup in r.setups() {
        let x = r.ratio_of_ratios(&setup);
        let _ = writeln!(
            s,
            "- {setup}: ratio of ratios (hadr / PostgreSQL) **{}** (target ≥ 1.0: {}).",
            fmt(x, 3),
            match x {
                Some(x) if x >= 1.0 => "met",
                Some(_) => "missed",
                None => "not measured",
            }
        );
    }
    let _ = writeln!(
        s,
        "\nIn the SYNC pairs the TLS pair also runs its replication link on mutual TLS (hadr: \
         `replication_tls_*`; PostgreSQL: the standby streams with `sslmode=require`); the plain and the \
         TLS pair run side by side and the rounds alternate between them.\n\n{}.\n",
        r.machine.sentence()
    );
    let _ = writeln!(s, "{}", PART.end);
    PART.write(out, &s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_takes_the_lower_middle_and_ignores_nan() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.0));
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn ratio_of_ratios_compares_what_tls_costs_each() {
        let run = |server: &str, plain: f64, tls: f64| TlsRun {
            server: server.into(),
            setup: SINGLE.into(),
            plain_tps: vec![plain],
            tls_tps: vec![tls],
            plain_connect_ms: None,
            tls_connect_ms: None,
            plain_connections: 0,
            tls_connections: 0,
        };
        let mut r = TlsReport {
            date: String::new(),
            command: String::new(),
            machine: crate::machine(),
            seconds: 1,
            runs: vec![
                run("hadr", 1000.0, 900.0),
                run("PostgreSQL 15", 2000.0, 1900.0),
            ],
        };
        // hadr loses 10 %, PostgreSQL 5 %: missed.
        let x = r.ratio_of_ratios(SINGLE).unwrap();
        assert!((x - 0.9 / 0.95).abs() < 1e-9, "{x}");
        assert_eq!(r.failures(), 1);
        r.runs[0].tls_tps = vec![980.0];
        assert_eq!(r.failures(), 0);
        // A pair set-up that misses counts on its own.
        let mut pair = |server: &str, plain: f64, tls: f64| {
            let mut x = run(server, plain, tls);
            x.setup = PAIR.into();
            r.runs.push(x);
        };
        pair("hadr", 500.0, 400.0);
        pair("PostgreSQL 15", 1000.0, 950.0);
        assert_eq!(r.failures(), 1);
        r.runs[1].tls_tps.clear();
        assert_eq!(r.failures(), 2, "not measured is not met");
    }
}
