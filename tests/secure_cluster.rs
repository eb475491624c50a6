//! The README's locked-down cluster (README §A cluster with every door
//! locked), end to end through the real binary: one `hadr certs init` for
//! every certificate, mutual TLS on replication, TLS + SCRAM for clients
//! with a `hostssl` rule, and the admin port on HTTPS with the admin token.
//! A stranger can neither clone, nor log in, nor steer it; the user made on
//! the primary logs in with `verify-full` on the standby and, after a
//! takeover done over HTTPS, on the new primary, where it writes.
//!
//! Both nodes run on 127.0.0.1 (different ports), so the rule that trusts
//! loopback names the superuser `postgres` (and the test kit's probe) only:
//! everyone else must come over TLS with a password, as from the network.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::time::Duration;

use hadr_admin_api::tls::{client_config, AdminTlsFiles};
use hadr_admin_api::AdminClient;

/// The README's configuration of node `name` (its certificate for all
/// three ports) in `DIR/name.toml`, less the addresses, which the test kit
/// gives as flags; the loopback rule names the kit's ready-probe too.
fn config(d: &Path, tls: &Path, name: &str) -> Result<PathBuf> {
    let f = |file: &str| tls.join(file).display().to_string();
    let (ca, cert, key) = (
        f("ca.pem"),
        f(&format!("{name}.pem")),
        f(&format!("{name}.key")),
    );
    let toml = format!(
        r#"replication_tls_ca_file = "{ca}"
replication_tls_cert_file = "{cert}"
replication_tls_key_file = "{key}"
tls_cert_file = "{cert}"
tls_key_file = "{key}"
admin_tls_cert_file = "{cert}"
admin_tls_key_file = "{key}"

[[access]]
type = "host"
user = "postgres,ready-probe"
address = "127.0.0.1/32"
method = "trust"

[[access]]
type = "hostssl"
address = "all"
method = "scram-sha-256"
"#
    );
    let path = d.join(format!("{name}.toml"));
    std::fs::write(&path, toml)?;
    Ok(path)
}

/// `--config FILE` as flags.
fn with_config(mut args: Vec<String>, file: &Path) -> Vec<String> {
    args.extend(["--config".to_string(), file.display().to_string()]);
    args
}

/// psql as `app` with verify-full against the cluster CA; (ok, out, err).
fn app_psql(tls: &Path, port: u16, password: &str, sql: &str) -> (bool, String, String) {
    psql(
        &format!(
            "host=localhost port={port} user=app dbname=app password={password} sslmode=verify-full sslrootcert={}",
            tls.join("ca.pem").display()
        ),
        &["-At"],
        sql,
    )
}

fn output(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_down_cluster_lets_in_only_who_belongs() -> Result<()> {
    let hadr = hadr();
    let tmp = tempfile::tempdir()?;
    let d = tmp.path();
    let tls: PathBuf = d.join("tls");
    hadr.run(
        "hadr certs init",
        &mut hadr.command(&[
            "certs",
            "init",
            "--dir",
            tls.to_str().unwrap(),
            "--node",
            "a=127.0.0.1,localhost",
            "--node",
            "b=127.0.0.1,localhost",
        ]),
    )?;
    let admin_tls = client_config(&AdminTlsFiles {
        ca: tls.join("ca.pem"),
        client: None,
    })?;
    let (a_repl, b_repl) = (repl_addr(), repl_addr());

    // The primary.
    let a_args = with_config(
        hadr_args(&a_repl, &b_repl, &["--role", "primary"]),
        &config(d, &tls, "a")?,
    );
    hadr.init(&d.join("a"))?;
    let mut a = Server::new(&hadr, d.join("a"), a_args).with_admin_tls(admin_tls.clone())?;
    a.spawn()?;
    let (ok, _, err) = psql(
        &format!(
            "host=127.0.0.1 port={} user=postgres dbname=app sslmode=disable",
            a.port
        ),
        &[],
        "CREATE USER app PASSWORD 'app-secret';\n",
    );
    assert!(ok, "creating app over loopback as postgres: {err}");

    // A stranger: no clone without the cluster's certificate…
    let out = hadr
        .command(&["clone", "--from", &a_repl, "--data"])
        .arg(d.join("stolen"))
        .output()?;
    assert!(!out.status.success(), "{}", output(&out));
    assert!(
        output(&out).contains("requires mutual TLS"),
        "{}",
        output(&out)
    );
    assert!(!d.join("stolen/data.db").exists());
    // …no login without TLS, or with a wrong password…
    let (ok, _, err) = psql(
        &format!(
            "host=127.0.0.1 port={} user=app dbname=app password=app-secret sslmode=disable",
            a.port
        ),
        &[],
        "SELECT 1",
    );
    assert!(!ok && err.contains("no access rule"), "{err}");
    let (ok, _, err) = app_psql(&tls, a.port, "wrong", "SELECT 1");
    assert!(
        !ok && err.contains("password authentication failed"),
        "{err}"
    );
    // …and no steering: plain HTTP is told HTTPS, HTTPS without the token is 401.
    let plain = AdminClient::new(format!("http://{}", a.admin_addr()));
    let e = plain.fence(99).await.unwrap_err();
    assert_eq!(e.http_status(), Some(400), "{e}");
    let no_token = AdminClient::new(a.admin_addr()).with_tls(admin_tls.clone())?;
    let e = no_token.fence(99).await.unwrap_err();
    assert!(e.is_unauthorized(), "{e}");

    // The app writes over verify-full + SCRAM.
    let (ok, out, err) = app_psql(
        &tls,
        a.port,
        "app-secret",
        "CREATE TABLE t(x INTEGER); INSERT INTO t VALUES (1); SELECT count(*) FROM t;",
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "1");

    // The standby: cloned with the cluster's certificate, in PEER.
    let b_config = config(d, &tls, "b")?;
    let out = hadr
        .command(&["clone", "--from", &a_repl, "--data"])
        .arg(d.join("b"))
        .arg("--config")
        .arg(&b_config)
        .output()?;
    assert!(out.status.success(), "{}", output(&out));
    let b_args = with_config(hadr_args(&b_repl, &a_repl, &[]), &b_config);
    let mut b = Server::new(&hadr, d.join("b"), b_args).with_admin_tls(admin_tls.clone())?;
    b.spawn()?;
    a.wait_for("PEER", Duration::from_secs(30), |st| {
        st.principal_in(PairState::Peer)
    })
    .await?;

    // The user reached the standby with the data: it logs in and reads.
    let (ok, out, err) = app_psql(&tls, b.port, "app-secret", "SELECT count(*) FROM t;");
    assert!(ok, "app on the standby: {err}");
    assert_eq!(out.trim(), "1");

    // A takeover over HTTPS with the token (the test kit's HADR_ADMIN_TOKEN).
    let out = hadr
        .command(&["takeover", "--timeout", "30s", "--node", &b.admin_addr()])
        .args(["--admin-ca", tls.join("ca.pem").to_str().unwrap()])
        .output()?;
    assert!(out.status.success(), "{}", output(&out));
    b.wait_for("primary", Duration::from_secs(30), |s| {
        s.is_writable_primary()
    })
    .await?;
    a.wait_for("a follows b", Duration::from_secs(60), |s| s.follows())
        .await?;

    // The new primary takes the app's writes; the old one serves its reads.
    let (ok, out, err) = app_psql(
        &tls,
        b.port,
        "app-secret",
        "INSERT INTO t VALUES (2); SELECT count(*) FROM t;",
    );
    assert!(ok, "app on the new primary: {err}");
    assert_eq!(out.trim(), "2");
    let mut seen = String::new();
    for _ in 0..100 {
        let (ok, out, _) = app_psql(&tls, a.port, "app-secret", "SELECT count(*) FROM t;");
        seen = out.trim().to_string();
        if ok && seen == "2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, "2", "the old primary, now a standby, has the new row");
    Ok(())
}
