//! The clients of the failover part: the first-write probe, the writer of
//! acknowledged rows, a pgbench load, and plain HTTP to a node's admin or
//! REST port (also from inside a black-holed host's namespace).
//!
//! Everything here runs on the part's own tokio runtime; every network
//! call has a timeout, because a black-holed host answers nothing, ever.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_postgres::{Config, NoTls};

use crate::proc;

/// One attempt of the probe (connect and write) may take this long; a
/// black-holed host makes every attempt last exactly this.
const PROBE_ATTEMPT: Duration = Duration::from_secs(1);
/// Pause between two probe attempts on one host.
const PROBE_PAUSE: Duration = Duration::from_millis(5);
/// The writer gives up on one INSERT after this and reconnects.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a client connects: one server of the cluster.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

fn config(e: &Endpoint) -> Config {
    let mut c = Config::new();
    c.host(&e.host)
        .port(e.port)
        .user("postgres")
        .dbname("postgres")
        .application_name("hadr-bench-probe")
        .connect_timeout(PROBE_ATTEMPT);
    c
}

/// One statement over a fresh connection, within [`PROBE_ATTEMPT`].
async fn write_once(cfg: &Config, sql: &str) -> Result<(), String> {
    let attempt = async {
        let (client, conn) = cfg.connect(NoTls).await.map_err(|e| e.to_string())?;
        let driver = tokio::spawn(conn);
        let r = client
            .batch_execute(sql)
            .await
            .map_err(|e| match e.as_db_error() {
                Some(db) => format!("{}: {}", db.code().code(), db.message()),
                None => e.to_string(),
            });
        drop(client);
        driver.abort();
        r
    };
    match tokio::time::timeout(PROBE_ATTEMPT, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {PROBE_ATTEMPT:?}")),
    }
}

#[derive(Default)]
struct ProbeState {
    mark: Option<Instant>,
    /// Per host: the first write acknowledged after the mark.
    first_after: Vec<Option<Instant>>,
    /// Per host: writes acknowledged after the mark.
    ok_after: Vec<u64>,
    /// Per host: the last error.
    last_err: Vec<String>,
}

/// Tries a one-row UPDATE on every host at once, each over a fresh
/// connection every few milliseconds, and notes when each host
/// acknowledges one: "the first write acknowledged on the survivor" is the
/// first success on the survivor after the crash. A host that refuses (a
/// standby, a fenced primary) answers with an error; a dead one times out.
pub struct Probe {
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<ProbeState>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Probe {
    pub fn start(rt: &Handle, hosts: &[Endpoint], sql: &str) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(ProbeState {
            first_after: vec![None; hosts.len()],
            ok_after: vec![0; hosts.len()],
            last_err: vec![String::new(); hosts.len()],
            ..Default::default()
        }));
        let tasks = hosts
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let (stop, state, cfg, sql) =
                    (stop.clone(), state.clone(), config(e), sql.to_string());
                rt.spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        let r = write_once(&cfg, &sql).await;
                        let now = Instant::now();
                        {
                            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                            match r {
                                Ok(()) => {
                                    if s.mark.is_some_and(|m| now > m) {
                                        s.ok_after[i] += 1;
                                        if s.first_after[i].is_none() {
                                            s.first_after[i] = Some(now);
                                        }
                                    }
                                }
                                Err(e) => s.last_err[i] = e,
                            }
                        }
                        tokio::time::sleep(PROBE_PAUSE).await;
                    }
                })
            })
            .collect();
        Probe { stop, state, tasks }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ProbeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on, count acknowledgements after `t`.
    pub fn mark(&self, t: Instant) {
        let mut s = self.state();
        s.mark = Some(t);
        for f in s.first_after.iter_mut() {
            *f = None;
        }
        for n in s.ok_after.iter_mut() {
            *n = 0;
        }
    }

    /// Writes host `i` acknowledged after the mark.
    pub fn accepted_after_mark(&self, i: usize) -> u64 {
        self.state().ok_after[i]
    }

    /// Whether host `i` acknowledged a write after the mark, and when.
    pub fn first_after_mark(&self, i: usize) -> Option<Instant> {
        self.state().first_after[i]
    }

    /// Waits until host `i` acknowledges a write after the mark.
    pub fn wait_first(&self, i: usize, timeout: Duration) -> Result<Instant> {
        let start = Instant::now();
        loop {
            if let Some(t) = self.first_after_mark(i) {
                return Ok(t);
            }
            if start.elapsed() > timeout {
                bail!(
                    "no write acknowledged on the survivor within {} s; its last answer: {}",
                    timeout.as_secs(),
                    self.state().last_err[i]
                );
            }
            proc::sleep(Duration::from_millis(2))?;
        }
    }

    pub fn stop(mut self, rt: &Handle) {
        self.stop.store(true, Ordering::SeqCst);
        for t in std::mem::take(&mut self.tasks) {
            // An attempt lasts at most PROBE_ATTEMPT.
            let _ = rt.block_on(async { tokio::time::timeout(PROBE_ATTEMPT * 3, t).await });
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Inserts rows with increasing ids into `acked` through a multi-host
/// connection (`host=A,B target_session_attrs=read-write`), noting every id
/// whose COMMIT was acknowledged. After a failover every one of them must
/// be on the new primary.
pub struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeSet<i64>>>,
    task: Option<JoinHandle<()>>,
    pub first_id: i64,
}

impl Writer {
    pub fn start(rt: &Handle, hosts: &[Endpoint], first_id: i64) -> Writer {
        let conninfo = format!(
            "host={} port={} user=postgres dbname=postgres application_name=hadr-bench-writer \
             target_session_attrs=read-write connect_timeout=1",
            hosts
                .iter()
                .map(|e| e.host.as_str())
                .collect::<Vec<_>>()
                .join(","),
            hosts
                .iter()
                .map(|e| e.port.to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let acked: Arc<Mutex<BTreeSet<i64>>> = Arc::default();
        let (st, ak) = (stop.clone(), acked.clone());
        let task = rt.spawn(async move {
            let mut next = first_id;
            while !st.load(Ordering::SeqCst) {
                let connect = tokio_postgres::connect(&conninfo, NoTls);
                let Ok(Ok((client, conn))) =
                    tokio::time::timeout(Duration::from_secs(5), connect).await
                else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let driver = tokio::spawn(conn);
                while !st.load(Ordering::SeqCst) {
                    let id = next;
                    next += 1;
                    let sql = format!("INSERT INTO acked(id) VALUES ({id})");
                    match tokio::time::timeout(WRITE_TIMEOUT, client.batch_execute(&sql)).await {
                        Ok(Ok(())) => {
                            ak.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
                        }
                        // Refused, broken or unanswered: outcome unknown
                        // (not counted), reconnect.
                        _ => break,
                    }
                }
                driver.abort();
            }
        });
        Writer {
            stop,
            acked,
            task: Some(task),
            first_id,
        }
    }

    /// Commits acknowledged so far.
    pub fn count(&self) -> usize {
        self.acked.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Stops it; returns the acknowledged ids.
    pub fn stop(mut self, rt: &Handle) -> BTreeSet<i64> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.task.take() {
            // An INSERT is given up after WRITE_TIMEOUT, a connect after 5 s.
            let _ = rt.block_on(async {
                tokio::time::timeout(WRITE_TIMEOUT + Duration::from_secs(6), t).await
            });
        }
        let ids = self.acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
        ids
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The ids in `acked` from `first` on, read on `e`.
pub fn acked_on(rt: &Handle, e: &Endpoint, first: i64) -> Result<BTreeSet<i64>> {
    let cfg = config(e);
    rt.block_on(async {
        let work = async {
            let (client, conn) = cfg.connect(NoTls).await?;
            let driver = tokio::spawn(conn);
            let rows = client
                .simple_query(&format!("SELECT id FROM acked WHERE id >= {first}"))
                .await;
            driver.abort();
            rows
        };
        let rows = tokio::time::timeout(Duration::from_secs(60), work)
            .await
            .map_err(|_| anyhow!("reading acked on {}: no answer within 60 s", e.host))?
            .with_context(|| format!("reading acked on {}:{}", e.host, e.port))?;
        let mut ids = BTreeSet::new();
        for m in rows {
            if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                let v = r.get(0).unwrap_or_default();
                ids.insert(
                    v.parse::<i64>()
                        .with_context(|| format!("acked id {v:?}"))?,
                );
            }
        }
        Ok(ids)
    })
}

/// Acknowledged ids missing from `present`.
pub fn lost(acked: &BTreeSet<i64>, present: &BTreeSet<i64>) -> Vec<i64> {
    acked.difference(present).copied().collect()
}

/// `pgbench -n -M prepared -c CLIENTS -j 2 -T 900 -f SCRIPT` against one
/// server, in the background, its output appended to `log`.
pub fn start_load(e: &Endpoint, clients: u32, script: &Path, log: &Path) -> Result<Child> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let mut c = Command::new("pgbench");
    c.args(["-n", "-M", "prepared", "-j", "2", "-T", "900"])
        .args(["-c", &clients.to_string()])
        .arg("-f")
        .arg(script)
        .args(["-h", &e.host, "-p", &e.port.to_string(), "-U", "postgres"])
        .arg("postgres")
        .env("PGCONNECT_TIMEOUT", "5")
        .env("PGAPPNAME", "hadr-bench-load")
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    proc::spawn(&mut c)
}

pub fn stop_load(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

/// `GET path` over HTTP/1.0 on an already connected stream (made inside
/// a namespace, or not); the status and the body. At most `timeout`.
pub async fn http_get_on(
    s: tokio::net::TcpStream,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String)> {
    let work = async move {
        let mut s = s;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n").as_bytes())
            .await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    let out = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| anyhow!("GET {path}: no answer within {timeout:?}"))??;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("GET {path}: not an HTTP answer: {text:.200}"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((status, body.to_string()))
}

/// `GET http://addr/path` from the root namespace.
pub fn http_get(rt: &Handle, addr: &str, path: &str, timeout: Duration) -> Result<(u16, String)> {
    rt.block_on(async {
        let s = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("connecting to {addr}: no answer within {timeout:?}"))?
            .with_context(|| format!("connecting to {addr}"))?;
        http_get_on(s, path, timeout).await
    })
}

/// Writes tried on a node from inside its own namespace (its host being
/// black-holed): every attempt over its own connection, started every
/// [`INSIDE_EVERY`], allowed [`INSIDE_TIMEOUT`] to answer, so that a commit
/// held waiting for a standby and acknowledged late is still seen.
pub struct InsideWrites {
    state: Arc<Mutex<InsideState>>,
    tasks: Vec<JoinHandle<()>>,
}

/// How often the inside prober starts an attempt.
pub const INSIDE_EVERY: Duration = Duration::from_millis(50);
/// How long one inside attempt may wait for its answer.
const INSIDE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Default)]
struct InsideState {
    /// When each acknowledgement arrived.
    acks: Vec<Instant>,
    /// The first error answer (not a timeout) and when.
    first_refusal: Option<(Instant, String)>,
}

impl InsideWrites {
    pub fn new() -> InsideWrites {
        InsideWrites {
            state: Arc::default(),
            tasks: Vec::new(),
        }
    }

    /// One attempt on `stream`, a connection made inside the namespace.
    pub fn attempt(&mut self, rt: &Handle, stream: std::net::TcpStream, sql: &'static str) {
        let state = self.state.clone();
        self.tasks.push(rt.spawn(async move {
            let work = async {
                let s = tokio::net::TcpStream::from_std(stream).map_err(|e| e.to_string())?;
                let mut cfg = Config::new();
                cfg.user("postgres").dbname("postgres");
                let (client, conn) = cfg.connect_raw(s, NoTls).await.map_err(|e| e.to_string())?;
                let driver = tokio::spawn(conn);
                let r = client
                    .batch_execute(sql)
                    .await
                    .map_err(|e| match e.as_db_error() {
                        Some(db) => format!("{}: {}", db.code().code(), db.message()),
                        None => e.to_string(),
                    });
                driver.abort();
                r
            };
            let r = tokio::time::timeout(INSIDE_TIMEOUT, work).await;
            let now = Instant::now();
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            match r {
                Ok(Ok(())) => st.acks.push(now),
                Ok(Err(e)) => {
                    if st.first_refusal.is_none() {
                        st.first_refusal = Some((now, e));
                    }
                }
                Err(_) => {}
            }
        }));
    }

    /// Waits for every attempt to end (each ends within INSIDE_TIMEOUT);
    /// returns the acknowledgement times and the first refusal.
    pub fn finish(self, rt: &Handle) -> (Vec<Instant>, Option<(Instant, String)>) {
        for t in self.tasks {
            let _ = rt.block_on(async {
                tokio::time::timeout(INSIDE_TIMEOUT + Duration::from_secs(5), t).await
            });
        }
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (st.acks.clone(), st.first_refusal.clone())
    }
}
