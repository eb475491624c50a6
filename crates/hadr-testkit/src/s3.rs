//! A real S3 server for the S3 arbiter's tests and the failover benchmark:
//! moto's `moto_server` on a free port, killed on drop, and a [`Proxy`] in
//! front of it that lets one HTTP request through at a time.
//!
//! Why the proxy: moto checks a PUT's condition (`If-None-Match`,
//! `If-Match`) and stores the object in two steps with no lock between
//! them, so concurrent conditional PUTs can all succeed
//! (crates/hadr-arbiter/tests/s3.rs shows it). A real S3 is atomic; one
//! request at a time makes moto so. The proxy can also strip the
//! conditional headers, to play a store that ignores them.
//!
//! Needs a tokio runtime: the proxy's tasks run on the runtime
//! [`Proxy::start`] is called on, for as long as the proxy lives.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::Result;

/// The moto release `.ci/run` installs and the tests were written against.
pub const MOTO_PIN: &str = "moto[server]==5.2.1";

/// Largest message head or body the proxy relays (S3 arbiter records are tiny).
const MAX_MESSAGE: usize = 16 << 20;

/// Longest time one request may hold the proxy's lock (moto's answer).
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `moto_server` is on the PATH and runs.
pub fn moto_installed() -> bool {
    Command::new("moto_server")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// How to start moto.
#[derive(Clone, Debug, Default)]
pub struct MotoOptions {
    /// Extra environment variables for the server.
    pub env: Vec<(String, String)>,
    /// Python's thread switch interval at 1 µs instead of 5 ms, so that
    /// werkzeug's request threads interleave inside a request as they would
    /// on a loaded machine and moto's check-then-store races show. For
    /// demonstrations only.
    pub interleaved: bool,
}

/// A running `moto_server` on 127.0.0.1, killed on drop.
pub struct Moto {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Moto {
    /// Start moto and wait (at most a minute) until it accepts connections.
    /// An error if it is not installed (the message says how to install it).
    pub async fn start(opts: &MotoOptions) -> Result<Moto> {
        if !moto_installed() {
            bail!("moto_server is not installed (pip install '{MOTO_PIN}')");
        }
        let mut last_err = String::new();
        // The port is free when chosen, not necessarily when moto binds it.
        for _ in 0..5 {
            let dir = tempfile::tempdir().context("creating a temporary directory")?;
            let log = dir.path().join("moto.log");
            let port = crate::free_port();
            let mut cmd = if opts.interleaved {
                let mut c = Command::new("python3");
                c.args([
                    "-c",
                    "import sys; sys.setswitchinterval(1e-6); sys.argv[0] = 'moto_server'; \
                     from moto.server import main; main()",
                ]);
                c
            } else {
                Command::new("moto_server")
            };
            let err = std::fs::File::create(&log)
                .with_context(|| format!("creating {}", log.display()))?;
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(err);
            for (k, v) in &opts.env {
                cmd.env(k, v);
            }
            let child = cmd.spawn().context("starting moto_server")?;
            let mut moto = Moto {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                log,
                _dir: dir,
            };
            match moto.wait_ready(Duration::from_secs(60)).await {
                Ok(()) => return Ok(moto),
                Err(e) if e.contains("in use") => last_err = e,
                Err(e) => bail!("moto_server did not start: {e}"),
            }
        }
        bail!("moto_server did not start: {last_err}")
    }

    async fn wait_ready(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    return Err(format!("moto_server exited with {status}: {}", self.log()))
                }
                Ok(None) => {}
                Err(e) => return Err(format!("waiting for moto_server: {e}")),
            }
            // Werkzeug binds its socket only once moto is imported and
            // ready. A connect alone, not a request, so that servers told to
            // authenticate after N requests (INITIAL_NO_AUTH_ACTION_COUNT)
            // count only the caller's own.
            if TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("no answer within {within:?}: {}", self.log()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What moto wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Create a bucket with a plain, unsigned `PUT /bucket`.
    pub async fn create_bucket(&self, bucket: &str) -> Result<()> {
        let (status, body) = raw_request(self.addr, "PUT", &format!("/{bucket}"), b"").await?;
        if status != 200 {
            bail!("creating bucket {bucket}: HTTP {status}: {body}");
        }
        Ok(())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), within
/// 30 s: the status and the body as text.
pub async fn raw_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, String)> {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await?;
        s.write_all(body).await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    let out = tokio::time::timeout(UPSTREAM_TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow!("{method} {path} to {addr}: no answer within {UPSTREAM_TIMEOUT:?}"))?
        .with_context(|| format!("{method} {path} to {addr}"))?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("not an HTTP response: {text:?}"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((status, body.to_string()))
}

/// What the proxy does to requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Pass them on unchanged (one at a time).
    Serialise,
    /// Also remove `If-Match` and `If-None-Match`: a store that ignores
    /// conditional writes.
    StripConditions,
}

/// A proxy in front of one upstream: one request/response at a time, over
/// all its connections together. Stops accepting on drop.
pub struct Proxy {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Requests passed upstream.
    pub requests: Arc<AtomicUsize>,
    /// Conditional headers removed (StripConditions only).
    pub stripped: Arc<AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Proxy {
    /// Start one on a free loopback port.
    pub async fn start(upstream: SocketAddr, mode: Mode) -> Result<Proxy> {
        Proxy::start_on(IpAddr::from([127, 0, 0, 1]), upstream, mode).await
    }

    /// Start one on a free port of `ip` (a network namespace bridge's
    /// address, for hosts in namespaces).
    pub async fn start_on(ip: IpAddr, upstream: SocketAddr, mode: Mode) -> Result<Proxy> {
        let listener = TcpListener::bind((ip, 0))
            .await
            .with_context(|| format!("binding the S3 proxy on {ip}"))?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicUsize::new(0));
        let stripped = Arc::new(AtomicUsize::new(0));
        let one_at_a_time = Arc::new(tokio::sync::Mutex::new(()));
        let (r, st) = (requests.clone(), stripped.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let (lock, r, st) = (one_at_a_time.clone(), r.clone(), st.clone());
                tokio::spawn(async move {
                    if let Err(e) = relay(client, upstream, mode, &lock, &r, &st).await {
                        eprintln!("s3 proxy: {e}");
                    }
                });
            }
        });
        Ok(Proxy {
            addr,
            requests,
            stripped,
            accept,
        })
    }
}

/// A parsed message head: the start line and the headers.
struct Head {
    start: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Without hop-by-hop connection headers, with `Connection: close`.
    fn encode(&self) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.start);
        for (k, v) in &self.headers {
            if !k.eq_ignore_ascii_case("connection") && !k.eq_ignore_ascii_case("keep-alive") {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        out.push_str("Connection: close\r\n\r\n");
        out.into_bytes()
    }
}

/// Read a head; None on a clean EOF before any byte. Bytes after the head
/// stay in `buf`.
async fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Option<Head>, String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8(buf[..end].to_vec()).map_err(|e| e.to_string())?;
            buf.drain(..end + 4);
            let mut lines = text.split("\r\n");
            let start = lines.next().unwrap_or_default().to_string();
            let headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect();
            return Ok(Some(Head { start, headers }));
        }
        if buf.len() > MAX_MESSAGE {
            return Err("message head too large".into());
        }
        let mut chunk = [0u8; 8192];
        let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err("EOF inside a message head".into())
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Read exactly `len` body bytes (some may already be in `buf`).
async fn read_body(s: &mut TcpStream, buf: &mut Vec<u8>, len: usize) -> Result<Vec<u8>, String> {
    if len > MAX_MESSAGE {
        return Err(format!("body of {len} bytes is too large"));
    }
    while buf.len() < len {
        let mut chunk = [0u8; 8192];
        let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("EOF inside a body".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(buf.drain(..len).collect())
}

fn content_length(h: &Head) -> Result<Option<usize>, String> {
    if h.get("transfer-encoding").is_some() {
        return Err(format!("chunked bodies are not supported: {}", h.start));
    }
    h.get("content-length")
        .map(|v| v.parse().map_err(|_| format!("bad Content-Length {v:?}")))
        .transpose()
}

/// Serve one client connection: one request, upstream under the lock, the
/// response back, close.
async fn relay(
    mut client: TcpStream,
    upstream: SocketAddr,
    mode: Mode,
    lock: &tokio::sync::Mutex<()>,
    requests: &AtomicUsize,
    stripped: &AtomicUsize,
) -> Result<(), String> {
    let mut buf = Vec::new();
    let Some(mut req) = read_head(&mut client, &mut buf).await? else {
        return Ok(());
    };
    let body = read_body(&mut client, &mut buf, content_length(&req)?.unwrap_or(0)).await?;
    if mode == Mode::StripConditions {
        let before = req.headers.len();
        req.headers.retain(|(k, _)| {
            !k.eq_ignore_ascii_case("if-match") && !k.eq_ignore_ascii_case("if-none-match")
        });
        stripped.fetch_add(before - req.headers.len(), Ordering::SeqCst);
    }
    let no_body = req.start.starts_with("HEAD ");

    let response = {
        let _one = lock.lock().await;
        requests.fetch_add(1, Ordering::SeqCst);
        tokio::time::timeout(UPSTREAM_TIMEOUT, forward(&req, &body, upstream, no_body))
            .await
            .map_err(|_| format!("upstream: no answer within {UPSTREAM_TIMEOUT:?}"))??
    };
    client
        .write_all(&response)
        .await
        .map_err(|e| e.to_string())?;
    client.shutdown().await.map_err(|e| e.to_string())
}

/// One request to the upstream on a fresh connection; the response, encoded.
async fn forward(
    req: &Head,
    body: &[u8],
    upstream: SocketAddr,
    no_body: bool,
) -> Result<Vec<u8>, String> {
    let mut up = TcpStream::connect(upstream)
        .await
        .map_err(|e| format!("upstream: {e}"))?;
    up.write_all(&req.encode())
        .await
        .map_err(|e| e.to_string())?;
    up.write_all(body).await.map_err(|e| e.to_string())?;
    let mut ubuf = Vec::new();
    let resp = read_head(&mut up, &mut ubuf)
        .await?
        .ok_or("upstream closed without answering")?;
    let status: u16 = resp
        .start
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {:?}", resp.start))?;
    let rbody = if no_body || status / 100 == 1 || status == 204 || status == 304 {
        Vec::new()
    } else {
        match content_length(&resp)? {
            Some(n) => read_body(&mut up, &mut ubuf, n).await?,
            None => {
                up.read_to_end(&mut ubuf).await.map_err(|e| e.to_string())?;
                std::mem::take(&mut ubuf)
            }
        }
    };
    let mut out = resp.encode();
    out.extend_from_slice(&rbody);
    Ok(out)
}
