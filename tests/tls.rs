//! TLS for PostgreSQL clients (docs/security.md §TLS for clients), through
//! the real binary and stock clients: psql (libpq 15), psycopg 3 (its own
//! libpq 17, which also speaks PostgreSQL 17's direct TLS), pgjdbc and
//! tokio-postgres with tokio-postgres-rustls.
//!
//! Certificates are made here with rcgen: a CA, a server certificate for
//! localhost and 127.0.0.1, written to a temporary directory (keys 0600).
//!
//! A missing client (psql, psycopg, java, the pgjdbc jar) fails the test
//! with what to install; it never passes silently.

mod common;
use common::*;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hadr_testkit::certs::Ca;

const PGJDBC_JAR: &str = "/usr/share/java/postgresql.jar";

/// A client certificate with subject CN `cn` from `ca`, written as
/// `dir/NAME.pem` and `dir/NAME.key` (0600, as libpq requires); the two paths.
fn client_files(ca: &Ca, cn: &str, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = ca.leaf(cn, &[], true);
    (
        write(&dir.join(format!("{name}.pem")), &cert.pem(), 0o644),
        write(
            &dir.join(format!("{name}.key")),
            &key.serialize_pem(),
            0o600,
        ),
    )
}

/// `prefix` and a number no other call in this process gets.
fn unique(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix} {n}")
}

fn write(path: &Path, text: &str, mode: u32) -> PathBuf {
    hadr_testkit::certs::write(path, text, mode)
}

/// A CA and a server certificate from it, as files.
struct Certs {
    dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Certs {
    /// Signed by a new CA (a name of its own: OpenSSL looks a CA up by
    /// name), for `names`.
    fn new(names: &[&str]) -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let c = Certs {
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("server.pem"),
            key: dir.path().join("server.key"),
            dir,
        };
        c.replace(&Ca::new(&unique("hadr test CA")), names);
        c
    }

    /// Write a new server certificate and key from `ca` (and `ca` as ca.pem).
    fn replace(&self, ca: &Ca, names: &[&str]) {
        let (cert, key) = ca.leaf(names[0], names, false);
        write(&self.ca, &ca.cert.pem(), 0o644);
        write(&self.cert, &cert.pem(), 0o644);
        write(&self.key, &key.serialize_pem(), 0o600);
    }

    fn flags(&self) -> Vec<String> {
        vec![
            "--tls-cert-file".into(),
            self.cert.display().to_string(),
            "--tls-key-file".into(),
            self.key.display().to_string(),
        ]
    }

    /// A copy of ca.pem as it is now, for a client that keeps trusting it.
    fn keep_ca(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::copy(&self.ca, &p).unwrap();
        p
    }
}

fn tls_server(certs: &Certs) -> Server {
    start_with(certs.flags()).expect("a server with TLS starts")
}

fn libpq(port: u16, extra: &str) -> String {
    format!("host=localhost port={port} user=app dbname=app connect_timeout=5 {extra}")
}

/// psql's `\conninfo` and a query, on one connection; (ok, stdout, stderr).
fn psql_conninfo(conninfo: &str) -> (bool, String, String) {
    psql(conninfo, &[], "\\conninfo\nSELECT 40 + 2 AS answer;\n")
}

fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn psql_verify_full_and_require_connect_on_tls_and_plain_stays_plain() {
    let certs = Certs::new(&["localhost", "127.0.0.1"]);
    let s = tls_server(&certs);
    let ca = certs.ca.display();

    let (ok, out, err) = psql_conninfo(&libpq(
        s.port,
        &format!("sslmode=verify-full sslrootcert={ca}"),
    ));
    assert!(ok, "verify-full: {err}");
    assert!(out.contains("SSL connection (protocol: TLSv1.3"), "{out}");
    assert!(out.contains("42"), "{out}");

    let (ok, out, err) = psql_conninfo(&libpq(s.port, "sslmode=require"));
    assert!(ok, "require: {err}");
    assert!(out.contains("SSL connection (protocol: TLS"), "{out}");

    // The control: a client that does not ask for TLS gets none (whether
    // it may log in so is for the access rules).
    let (ok, out, err) = psql_conninfo(&libpq(s.port, "sslmode=disable"));
    assert!(ok, "disable: {err}");
    assert!(!out.contains("SSL connection"), "{out}");
    assert!(out.contains("42"), "{out}");
}

#[test]
fn verify_full_fails_for_the_wrong_host_or_another_ca() {
    let certs = Certs::new(&["db.example.com"]);
    let s = tls_server(&certs);
    let ca = certs.ca.display();
    let (ok, _, err) = psql_conninfo(&libpq(
        s.port,
        &format!("sslmode=verify-full sslrootcert={ca}"),
    ));
    assert!(
        !ok,
        "a certificate for db.example.com must not verify for localhost"
    );
    assert!(err.contains("does not match host name"), "{err}");
    // verify-ca checks the chain only: it connects (the certificate is good).
    let (ok, out, err) = psql_conninfo(&libpq(
        s.port,
        &format!("sslmode=verify-ca sslrootcert={ca}"),
    ));
    assert!(ok, "verify-ca: {err}");
    assert!(out.contains("SSL connection"), "{out}");

    let stranger = Certs::new(&["localhost"]);
    let (ok, _, err) = psql_conninfo(&libpq(
        s.port,
        &format!("sslmode=verify-full sslrootcert={}", stranger.ca.display()),
    ));
    assert!(!ok, "a server certificate from another CA must not verify");
    assert!(err.contains("certificate verify failed"), "{err}");
}

#[test]
fn client_certificates_are_verified_when_presented() {
    let certs = Certs::new(&["localhost", "127.0.0.1"]);
    let clients_ca = Ca::new("hadr clients CA");
    let dir = certs.dir.path();
    let clients_ca_file = dir.join("clients-ca.pem");
    write(&clients_ca_file, &clients_ca.cert.pem(), 0o644);
    let mut flags = certs.flags();
    flags.extend([
        "--tls-client-ca-file".to_string(),
        clients_ca_file.display().to_string(),
    ]);
    let s = start_with(flags).unwrap();
    let conninfo = |extra: &str| {
        libpq(
            s.port,
            &format!(
                "sslmode=verify-full sslrootcert={} {extra}",
                certs.ca.display()
            ),
        )
    };
    let (cert, key) = client_files(&clients_ca, "alice", dir, "alice");
    let (ok, out, err) = psql_conninfo(&conninfo(&format!(
        "sslcert={} sslkey={}",
        cert.display(),
        key.display()
    )));
    assert!(ok, "a certificate from the clients' CA: {err}");
    assert!(out.contains("SSL connection"), "{out}");

    // None at all: let in (the access rules decide what it may do).
    let (ok, _, err) = psql_conninfo(&conninfo("sslcert=/nonexistent sslkey=/nonexistent"));
    assert!(ok, "no client certificate: {err}");

    // One from another CA: the handshake fails.
    let stranger = Ca::new("stranger CA");
    let (cert, key) = client_files(&stranger, "mallory", dir, "mallory");
    let (ok, _, err) = psql_conninfo(&conninfo(&format!(
        "sslcert={} sslkey={}",
        cert.display(),
        key.display()
    )));
    assert!(!ok, "a client certificate from another CA must be refused");
    assert!(err.contains("SSL") || err.contains("alert"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_told_over_tls_to_a_client_that_asked_for_it() {
    let certs = Certs::new(&["localhost", "127.0.0.1"]);
    let mut flags = certs.flags();
    flags.extend(["--max-connections", "1", "--reserved-connections", "0"].map(String::from));
    let s = start_with(flags).unwrap();
    let info = format!(
        "host=localhost port={} user=app dbname=app sslmode=require",
        s.port
    );
    // The one slot, held (once the start-up probe's session has given
    // it back).
    let deadline = Instant::now() + Duration::from_secs(10);
    let _held = loop {
        match tokio_pg_query(&info, &certs.ca, false).await {
            Ok((c, _)) => break c,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    };
    let (ok, _, err) = psql_conninfo(&libpq(
        s.port,
        &format!("sslmode=verify-full sslrootcert={}", certs.ca.display()),
    ));
    assert!(!ok, "no slot left");
    // The reason, which verify-full reads only over TLS (after an 'N' it
    // says "server does not support SSL").
    assert!(err.contains("too many clients"), "{err}");
}

#[test]
fn a_node_without_tls_refuses_sslmode_require() {
    let s = start(&[]).unwrap();
    let (ok, _, err) = psql_conninfo(&libpq(s.port, "sslmode=require"));
    assert!(!ok);
    assert!(err.contains("server does not support SSL"), "{err}");
    let (ok, out, err) = psql_conninfo(&libpq(s.port, "sslmode=prefer"));
    assert!(ok, "prefer falls back to plain: {err}");
    assert!(!out.contains("SSL connection"), "{out}");
}

/// A rustls client configuration that trusts `ca` only.
fn rustls_client(ca: &Path, alpn: bool) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    if alpn {
        config.alpn_protocols = vec![b"postgresql".to_vec()];
    }
    config
}

async fn tokio_pg_query(
    conninfo: &str,
    ca: &Path,
    alpn: bool,
) -> Result<(tokio_postgres::Client, i64), tokio_postgres::Error> {
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(rustls_client(ca, alpn));
    let (client, conn) = tokio_postgres::connect(conninfo, tls).await?;
    tokio::spawn(conn);
    // hadr types integer results int8.
    let v: i64 = client.query_one("SELECT 7", &[]).await?.get(0);
    Ok((client, v))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_rustls_verify_full_and_direct_tls() {
    let certs = Certs::new(&["localhost", "127.0.0.1"]);
    let s = tls_server(&certs);
    // tokio-postgres leaves certificate checks to the connector: rustls
    // verifies the chain against ca.pem and the name against "localhost".
    let info = format!(
        "host=localhost port={} user=app dbname=app sslmode=require",
        s.port
    );
    let (_, v) = tokio_pg_query(&info, &certs.ca, false).await.unwrap();
    assert_eq!(v, 7);

    // PostgreSQL 17's direct TLS: no SSLRequest, ALPN "postgresql".
    let direct = format!("{info} sslnegotiation=direct");
    let (_, v) = tokio_pg_query(&direct, &certs.ca, true).await.unwrap();
    assert_eq!(v, 7);
    // Direct TLS without ALPN is refused (as PostgreSQL 17 does).
    let e = tokio_pg_query(&direct, &certs.ca, false).await.err();
    let e = e.expect("direct TLS without ALPN must be refused");
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e:?}"));
    assert_eq!(db.code().code(), "08P01", "{db:?}");
    assert!(db.message().contains("ALPN"), "{db:?}");

    // Another CA: refused.
    let stranger = Certs::new(&["localhost"]);
    let e = tokio_pg_query(&info, &stranger.ca, false).await.err();
    assert!(e.is_some(), "a certificate from another CA must not verify");
}

/// Whether a client program succeeded, and all it printed.
fn ran(out: std::process::Output) -> (bool, String) {
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn psycopg(conninfo: &str) -> (bool, String) {
    assert!(
        runs("python3", &["-c", "import psycopg"]),
        "psycopg 3 is needed: pip install 'psycopg[binary]==3.2.10'"
    );
    let script = "import sys, psycopg\n\
        with psycopg.connect(sys.argv[1]) as c:\n\
        \x20   v = c.execute('SELECT 40 + 2').fetchone()[0]\n\
        \x20   print('ssl', c.pgconn.ssl_in_use, 'value', v)\n";
    let out = Command::new("python3")
        .args(["-c", script, conninfo])
        .output()
        .unwrap();
    ran(out)
}

#[test]
fn psycopg_verify_full_and_direct_tls() {
    let certs = Certs::new(&["localhost", "127.0.0.1"]);
    let s = tls_server(&certs);
    let ca = certs.ca.display();
    let (ok, out) = psycopg(&libpq(
        s.port,
        &format!("sslmode=verify-full sslrootcert={ca}"),
    ));
    assert!(ok, "{out}");
    assert!(out.contains("ssl True value 42"), "{out}");
    // psycopg's libpq is 17: direct TLS.
    let (ok, out) = psycopg(&libpq(
        s.port,
        &format!("sslmode=verify-full sslrootcert={ca} sslnegotiation=direct"),
    ));
    assert!(ok, "{out}");
    assert!(out.contains("ssl True value 42"), "{out}");
    // The control: the wrong CA.
    let stranger = Certs::new(&["localhost"]);
    let (ok, out) = psycopg(&libpq(
        s.port,
        &format!("sslmode=verify-full sslrootcert={}", stranger.ca.display()),
    ));
    assert!(!ok, "{out}");
    assert!(out.contains("certificate verify failed"), "{out}");
}

fn pgjdbc(url: &str) -> (bool, String) {
    assert!(
        runs("java", &["-version"]),
        "java is needed: apt-get install default-jdk-headless"
    );
    assert!(
        Path::new(PGJDBC_JAR).exists(),
        "{PGJDBC_JAR} is needed: apt-get install libpostgresql-jdbc-java"
    );
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/TlsProbe.java");
    let out = Command::new("java")
        .args(["-cp", PGJDBC_JAR])
        .arg(src)
        .arg(url)
        .output()
        .unwrap();
    ran(out)
}

#[test]
fn pgjdbc_verify_full() {
    let certs = Certs::new(&["localhost", "127.0.0.1"]);
    let s = tls_server(&certs);
    let url = |ca: &Path| {
        format!(
            "jdbc:postgresql://localhost:{}/app?user=app&ssl=true&sslmode=verify-full&sslrootcert={}",
            s.port,
            ca.display()
        )
    };
    let (ok, out) = pgjdbc(&url(&certs.ca));
    assert!(ok, "{out}");
    assert!(out.contains("ok 1"), "{out}");
    let stranger = Certs::new(&["localhost"]);
    let (ok, out) = pgjdbc(&url(&stranger.ca));
    assert!(!ok, "a certificate from another CA must not verify: {out}");
}

/// Wait until the server's log has `n` lines containing `what`.
fn wait_log(s: &Server, what: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.log().matches(what).count() < n {
        assert!(
            Instant::now() < deadline,
            "no {what:?} in the log: {}",
            s.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_and_open_sessions_keep_running() {
    let certs = Certs::new(&["localhost", "127.0.0.1"]);
    let s = tls_server(&certs);
    let old_ca = certs.keep_ca("old-ca.pem");
    let info = format!(
        "host=localhost port={} user=app dbname=app sslmode=require",
        s.port
    );
    let (before, _) = tokio_pg_query(&info, &old_ca, false).await.unwrap();
    let verify = |ca: &Path| {
        psql_conninfo(&libpq(
            s.port,
            &format!("sslmode=verify-full sslrootcert={}", ca.display()),
        ))
    };

    // A new CA, a new certificate: not in force before SIGHUP.
    certs.replace(
        &Ca::new(&unique("hadr test CA")),
        &["localhost", "127.0.0.1"],
    );
    let (ok, _, _) = verify(&certs.ca);
    assert!(!ok, "the new certificate is not read before SIGHUP");
    s.sighup().unwrap();
    wait_log(&s, "TLS certificate and key reloaded", 1);
    let (ok, out, err) = verify(&certs.ca);
    assert!(ok, "the new CA verifies after SIGHUP: {err}");
    assert!(out.contains("SSL connection"), "{out}");
    let (ok, _, err) = verify(&old_ca);
    assert!(!ok, "the old CA no longer verifies");
    assert!(err.contains("certificate verify failed"), "{err}");

    // The session opened before the reload runs on.
    let v: i64 = before.query_one("SELECT 8", &[]).await.unwrap().get(0);
    assert_eq!(v, 8);

    // A bad file: the certificate in force stays, and the log says why.
    let new_ca = certs.keep_ca("new-ca.pem");
    write(&certs.cert, "not a certificate\n", 0o644);
    s.sighup().unwrap();
    wait_log(&s, "TLS files not reloaded", 1);
    assert!(
        s.log().contains(&certs.cert.display().to_string()),
        "the log names the file"
    );
    let (ok, _, err) = verify(&new_ca);
    assert!(ok, "the previous certificate stays in force: {err}");
    assert!(s.alive());
}

#[test]
fn bad_tls_files_stop_the_start_naming_the_file() {
    let certs = Certs::new(&["localhost"]);
    let refused = |flags: Vec<String>| match start_with(flags) {
        Ok(_) => panic!("the server started"),
        Err(e) => format!("{e:#}"),
    };

    std::fs::set_permissions(&certs.key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let e = refused(certs.flags());
    let key = certs.key.display().to_string();
    assert!(e.contains(&key) && e.contains("chmod 600"), "{e}");
    assert!(
        !e.contains("PRIVATE KEY"),
        "no key material in the message: {e}"
    );
    std::fs::set_permissions(&certs.key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A key that is not the certificate's.
    let other = Certs::new(&["localhost"]);
    let mut flags = certs.flags();
    flags[3] = other.key.display().to_string();
    let e = refused(flags);
    assert!(e.contains(&other.key.display().to_string()), "{e}");

    let garbage = certs.dir.path().join("garbage.pem");
    write(&garbage, "garbage\n", 0o644);
    let mut flags = certs.flags();
    flags[1] = garbage.display().to_string();
    let e = refused(flags);
    assert!(e.contains("garbage.pem"), "{e}");

    let mut flags = certs.flags();
    flags[1] = certs.dir.path().join("missing.pem").display().to_string();
    let e = refused(flags);
    assert!(e.contains("missing.pem"), "{e}");

    // The control: the same files, fixed, start.
    drop(tls_server(&certs));
}

/// SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
/// GSSENCRequest: length 8, code 80877104.
const GSSENC_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];

#[test]
fn bytes_after_an_ssl_request_close_the_connection_without_tls() {
    let certs = Certs::new(&["localhost"]);
    let s = tls_server(&certs);
    let connect = || {
        let c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c
    };
    // An SSLRequest with a StartupMessage behind it, in one write: a man
    // in the middle's injection, meant to run inside the TLS session.
    let mut c = connect();
    let mut packet = SSL_REQUEST.to_vec();
    packet.extend(startup_bytes());
    c.write_all(&packet).unwrap();
    let got = read_all(c);
    assert_eq!(got.first(), Some(&b'E'), "no 'S', an error: {got:?}");
    assert_eq!(sqlstate_of(&got).as_deref(), Some("08P01"));
    assert!(String::from_utf8_lossy(&got).contains("unencrypted data after SSL request"));

    // The control: the SSLRequest alone is answered 'S'.
    let mut c = connect();
    c.write_all(&SSL_REQUEST).unwrap();
    let mut answer = [0u8; 1];
    c.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"S");

    // GSSENCRequest: 'N', and the connection goes on (here: in plain text).
    let mut c = connect();
    c.write_all(&GSSENC_REQUEST).unwrap();
    c.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"N");
    c.write_all(&startup_bytes()).unwrap();
    let msgs = until_ready(&mut c);
    assert_eq!(msgs.first().map(|m| m.0), Some(b'R'));
}

// ---------------------------------------------------------------------------
// TLS and authentication together (docs/security.md §Authentication and
// access rules): what a user of a secured node does.

/// A TLS node where `app` may come in only over TLS with its password, and
/// the superuser `postgres` (and the test kit's ready-probe) over anything
/// from this machine.
fn secured_server(certs: &Certs, more: &[&str]) -> Server {
    let mut flags = certs.flags();
    for rule in [
        "hostssl all app all scram-sha-256",
        "host all postgres,ready-probe all trust",
    ] {
        flags.extend(["--access".to_string(), rule.to_string()]);
    }
    flags.extend(more.iter().map(|s| s.to_string()));
    let s = start_with(flags).expect("a secured server starts");
    let (ok, _, err) = psql(
        &format!(
            "host=127.0.0.1 port={} user=postgres dbname=app sslmode=disable",
            s.port
        ),
        &[],
        "CREATE USER app PASSWORD 'app-secret';\n",
    );
    assert!(ok, "creating app: {err}");
    s
}

#[test]
fn verify_full_and_scram_for_psql_psycopg_and_pgjdbc_and_no_way_around_tls() {
    let certs = Certs::new(&["localhost", "127.0.0.1"]);
    let s = secured_server(&certs, &[]);
    let ca = certs.ca.display();
    let tls = |extra: &str| {
        libpq(
            s.port,
            &format!("sslmode=verify-full sslrootcert={ca} {extra}"),
        )
    };

    // psql: TLS + SCRAM, and SCRAM-SHA-256-PLUS (channel binding to the
    // server's certificate) when the client insists on it.
    let (ok, out, err) = psql_conninfo(&tls("password=app-secret"));
    assert!(ok, "verify-full + SCRAM: {err}");
    assert!(out.contains("SSL connection (protocol: TLSv1.3"), "{out}");
    let (ok, out, err) = psql_conninfo(&tls("password=app-secret channel_binding=require"));
    assert!(ok, "channel binding: {err}");
    assert!(out.contains("42"), "{out}");
    // The controls: a wrong password, and no TLS at all for a hostssl-only
    // user (a client that skips the SSLRequest cannot downgrade).
    let (ok, _, err) = psql_conninfo(&tls("password=wrong"));
    assert!(!ok);
    assert!(
        err.contains("password authentication failed for user \"app\""),
        "{err}"
    );
    let (ok, _, err) = psql_conninfo(&libpq(s.port, "sslmode=disable password=app-secret"));
    assert!(!ok, "app over plain TCP must be refused");
    assert!(
        err.contains("no access rule") && err.contains("SSL off"),
        "{err}"
    );

    // psycopg (libpq 17): the same, channel binding required.
    let (ok, out) = psycopg(&tls("password=app-secret channel_binding=require"));
    assert!(ok, "{out}");
    assert!(out.contains("ssl True value 42"), "{out}");
    let (ok, out) = psycopg(&tls("password=wrong"));
    assert!(!ok, "{out}");
    assert!(out.contains("password authentication failed"), "{out}");

    // pgjdbc.
    let url = |password: &str| {
        format!(
            "jdbc:postgresql://localhost:{}/app?user=app&password={password}&ssl=true&sslmode=verify-full&sslrootcert={ca}",
            s.port
        )
    };
    let (ok, out) = pgjdbc(&url("app-secret"));
    assert!(ok, "{out}");
    assert!(out.contains("ok 1"), "{out}");
    let (ok, out) = pgjdbc(&url("wrong"));
    assert!(!ok, "{out}");
    assert!(
        out.contains("28P01") || out.contains("password authentication failed"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_verify_full_and_scram() {
    let certs = Certs::new(&["localhost", "127.0.0.1"]);
    let s = secured_server(&certs, &[]);
    let info = |password: &str| {
        format!(
            "host=localhost port={} user=app dbname=app sslmode=require password={password}",
            s.port
        )
    };
    let (_, v) = tokio_pg_query(&info("app-secret"), &certs.ca, false)
        .await
        .unwrap();
    assert_eq!(v, 7);
    let e = tokio_pg_query(&info("wrong"), &certs.ca, false)
        .await
        .expect_err("a wrong password must be refused");
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e:?}"));
    assert_eq!(db.code().code(), "28P01", "{db:?}");
}

#[test]
fn the_cert_method_lets_in_the_role_its_certificate_names() {
    let certs = Certs::new(&["localhost", "127.0.0.1"]);
    let clients_ca = Ca::new("hadr clients CA 2");
    let dir = certs.dir.path();
    let clients_ca_file = dir.join("clients-ca.pem");
    write(&clients_ca_file, &clients_ca.cert.pem(), 0o644);
    let mut flags = certs.flags();
    flags.extend([
        "--tls-client-ca-file".to_string(),
        clients_ca_file.display().to_string(),
    ]);
    for rule in [
        "host all postgres,ready-probe all trust",
        "hostssl all all all cert",
    ] {
        flags.extend(["--access".to_string(), rule.to_string()]);
    }
    let s = start_with(flags).unwrap();
    let (ok, _, err) = psql(
        &format!(
            "host=127.0.0.1 port={} user=postgres dbname=app sslmode=disable",
            s.port
        ),
        &[],
        "CREATE USER alice; CREATE USER bob;\n",
    );
    assert!(ok, "{err}");
    let (cert, key) = client_files(&clients_ca, "alice", dir, "alice");
    let as_user = |user: &str, with_cert: bool| {
        let files = if with_cert {
            format!("sslcert={} sslkey={}", cert.display(), key.display())
        } else {
            "sslcert=/nonexistent sslkey=/nonexistent".into()
        };
        psql_conninfo(&format!(
            "host=localhost port={} user={user} dbname=app connect_timeout=5 sslmode=verify-full sslrootcert={} {files}",
            s.port,
            certs.ca.display()
        ))
    };
    let (ok, out, err) = as_user("alice", true);
    assert!(ok, "alice with her certificate: {err}");
    assert!(out.contains("SSL connection"), "{out}");
    // The controls: alice's certificate does not make anyone bob, and no
    // certificate lets nobody in.
    let (ok, _, err) = as_user("bob", true);
    assert!(!ok, "alice's certificate must not log in bob");
    assert!(
        err.contains("certificate authentication failed for user \"bob\""),
        "{err}"
    );
    let (ok, _, err) = as_user("alice", false);
    assert!(!ok, "no certificate must not log in alice");
    assert!(err.contains("certificate"), "{err}");
}
