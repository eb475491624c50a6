//! pgbench as shipped (issue 12 item 6), against a primary with a standby:
//! `pgbench -i -s 10` (DROP TABLE of four names, `CREATE TABLE … WITH
//! (fillfactor=100)`, TRUNCATE, COPY … WITH (FREEZE ON), VACUUM of named
//! tables, ALTER TABLE … ADD PRIMARY KEY and, with --foreign-keys, ADD
//! CONSTRAINT … FOREIGN KEY) makes PostgreSQL's row counts; the built-in
//! tpcb-like, simple-update and select-only scripts run with no failed
//! transaction; tpcb-like leaves the balances consistent; and the standby
//! holds the same pages.

mod common;
use common::*;

use std::process::Command;

/// Run pgbench against `s`; its stdout (it fails the test on failure).
fn pgbench(s: &Server, args: &[&str]) -> String {
    let out = Command::new("pgbench")
        .args(["-h", "127.0.0.1", "-p", &s.port.to_string(), "-U", "test"])
        .args(args)
        .arg("test")
        .output()
        .expect("pgbench must be installed (apt-get install postgresql-contrib; .ci/run does)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pgbench {args:?}: {text}");
    text
}

fn one(s: &Server, sql: &str) -> String {
    let (ok, out, err) = psql(&s.conninfo(), &["-At"], sql);
    assert!(ok, "{sql}: {err}");
    out.trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_initialises_and_runs_its_builtin_scripts() -> Result<()> {
    let p = peer_pair(&[]).await?;
    let out = pgbench(&p.a, &["-i", "-s", "10", "--foreign-keys"]);
    assert!(
        out.contains("creating primary keys") && out.contains("done in"),
        "{out}"
    );
    // PostgreSQL's counts for scale 10.
    for (table, n) in [
        ("pgbench_branches", 10),
        ("pgbench_tellers", 100),
        ("pgbench_accounts", 1_000_000),
        ("pgbench_history", 0),
    ] {
        assert_eq!(
            one(&p.a, &format!("SELECT count(*) FROM {table}")),
            n.to_string()
        );
    }
    // The primary keys are keys: a duplicate is refused.
    let (ok, _, err) = psql(
        &p.a.conninfo(),
        &["-v", "ON_ERROR_STOP=1"],
        "INSERT INTO pgbench_branches(bid, bbalance) VALUES (1, 0);",
    );
    assert!(!ok && err.contains("23505"), "{err}");

    let tpcb = pgbench(
        &p.a,
        &["-b", "tpcb-like", "-c", "4", "-j", "2", "-t", "100"],
    );
    assert!(
        tpcb.contains("number of failed transactions: 0 (0.000%)"),
        "{tpcb}"
    );
    assert!(
        tpcb.contains("number of transactions actually processed: 400/400"),
        "{tpcb}"
    );
    // tpcb-like moves each delta into one account, teller and branch and
    // records it in the history: the four sums agree.
    let sums = one(
        &p.a,
        "SELECT (SELECT sum(abalance) FROM pgbench_accounts) || ' ' || \
                (SELECT sum(tbalance) FROM pgbench_tellers) || ' ' || \
                (SELECT sum(bbalance) FROM pgbench_branches) || ' ' || \
                (SELECT sum(delta) FROM pgbench_history) || ' ' || \
                (SELECT count(*) FROM pgbench_history)",
    );
    let parts: Vec<&str> = sums.split(' ').collect();
    assert_eq!(parts.len(), 5, "{sums}");
    assert!(
        parts[..4].iter().all(|s| *s == parts[0]),
        "balances disagree: {sums}"
    );
    assert_eq!(parts[4], "400", "{sums}");

    for script in ["simple-update", "select-only"] {
        let out = pgbench(&p.a, &["-b", script, "-c", "4", "-j", "2", "-t", "100"]);
        assert!(
            out.contains("number of failed transactions: 0 (0.000%)"),
            "{script}: {out}"
        );
    }
    // Everything pgbench did, rebuilt tables included, is on the standby.
    hadr().verify_nodes(&p.a.admin_addr(), &p.b.admin_addr())?;
    Ok(())
}
