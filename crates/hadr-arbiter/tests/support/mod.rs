//! A real S3 server for the tests: moto's `moto_server` and the proxy in
//! front of it that lets one HTTP request through at a time, both from
//! `hadr_testkit::s3` (the failover benchmark uses the same ones). Here:
//! skipping outside CI when moto is missing, and failing loudly in tests.

#![allow(dead_code)]

use std::net::SocketAddr;

use hadr_testkit::s3::{self, MotoOptions};
pub use hadr_testkit::s3::{Mode, MOTO_PIN};

/// True where a missing moto must fail the test rather than skip it.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// A free port on 127.0.0.1 (free when asked: whoever binds it next wins).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `moto_server`, killed on drop.
pub struct Moto(s3::Moto);

impl std::ops::Deref for Moto {
    type Target = s3::Moto;
    fn deref(&self) -> &s3::Moto {
        &self.0
    }
}

impl Moto {
    /// Start moto, or None (with a message) if it is not installed and this
    /// is not CI. Under CI a missing moto panics.
    pub async fn start(test: &str) -> Option<Moto> {
        Moto::launch(test, MotoOptions::default()).await
    }

    /// Likewise, with extra environment variables for the server.
    pub async fn start_with_env(test: &str, env: &[(&str, &str)]) -> Option<Moto> {
        let opts = MotoOptions {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..MotoOptions::default()
        };
        Moto::launch(test, opts).await
    }

    /// moto with its request threads interleaving inside a request, so
    /// that its check-then-store races show. For demonstrations only.
    pub async fn start_interleaved(test: &str) -> Option<Moto> {
        let opts = MotoOptions {
            interleaved: true,
            ..MotoOptions::default()
        };
        Moto::launch(test, opts).await
    }

    async fn launch(test: &str, opts: MotoOptions) -> Option<Moto> {
        if !s3::moto_installed() {
            if in_ci() {
                panic!(
                    "{test}: moto_server is not installed and CI is set: \
                     .ci/run must `pip install '{MOTO_PIN}'`"
                );
            }
            // Straight to stderr, past the test harness's capture, so the
            // skip shows in a plain `cargo test` run.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: moto_server is not installed (pip install '{MOTO_PIN}'); \
                 under CI=true this test fails instead"
            );
            return None;
        }
        match s3::Moto::start(&opts).await {
            Ok(m) => Some(Moto(m)),
            Err(e) => panic!("{test}: {e:#}"),
        }
    }

    /// Create a bucket with a plain, unsigned `PUT /bucket`.
    pub async fn create_bucket(&self, bucket: &str) {
        if let Err(e) = self.0.create_bucket(bucket).await {
            panic!("{e:#}");
        }
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`):
/// the status and the body as text.
pub async fn raw_request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    match s3::raw_request(addr, method, path, body).await {
        Ok(r) => r,
        Err(e) => panic!("{e:#}"),
    }
}

/// The kit's serialising proxy, on a free loopback port; stops on drop.
pub struct Proxy(s3::Proxy);

impl std::ops::Deref for Proxy {
    type Target = s3::Proxy;
    fn deref(&self) -> &s3::Proxy {
        &self.0
    }
}

impl Proxy {
    /// Start one in front of `upstream`.
    pub async fn start(upstream: SocketAddr, mode: Mode) -> Proxy {
        match s3::Proxy::start(upstream, mode).await {
            Ok(p) => Proxy(p),
            Err(e) => panic!("starting the S3 proxy: {e:#}"),
        }
    }
}
