//! Running child processes with a time limit, and reacting to Ctrl-C.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Turns SIGINT, SIGTERM and SIGHUP into a flag that every wait checks, so an
/// interrupted benchmark still unwinds and its guards stop the servers.
pub fn install_signal_handlers() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, handler);
        }
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Fails if the user asked to stop.
pub fn check_interrupted() -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleeps, but returns early with an error when interrupted.
pub fn sleep(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        check_interrupted()?;
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
    }
    check_interrupted()
}

/// What a finished command printed.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stderr, or stdout when stderr is empty, trimmed to its last lines.
    pub fn message(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        tail_lines(text, 15)
    }
}

/// The last `n` lines of `text`.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The last `n` lines of a file, or a note that it could not be read.
pub fn tail_file(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(b) => tail_lines(&String::from_utf8_lossy(&b), n),
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

fn scratch_file(tag: &str) -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    std::env::temp_dir().join(format!("hadr-bench-{}-{n}.{tag}", std::process::id()))
}

fn program_name(cmd: &Command) -> String {
    Path::new(cmd.get_program())
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// Spawns `cmd`, explaining a missing program in plain words.
pub fn spawn(cmd: &mut Command) -> Result<Child> {
    cmd.spawn().map_err(|e| {
        let prog = program_name(cmd);
        if e.kind() == std::io::ErrorKind::NotFound {
            let hint = match prog.as_str() {
                "psql" | "pgbench" => {
                    " (install the PostgreSQL 15 client: apt-get install postgresql-client-15)"
                }
                "runuser" => " (runuser comes with util-linux)",
                _ => "",
            };
            anyhow!(
                "cannot run {}: program not found{hint}",
                cmd.get_program().to_string_lossy()
            )
        } else {
            anyhow!("cannot run {}: {e}", cmd.get_program().to_string_lossy())
        }
    })
}

/// Waits for `child` at most `timeout`; kills it when the time is up or (if
/// `interruptible`) the user interrupts.
fn wait_timeout(
    child: &mut Child,
    timeout: Duration,
    what: &str,
    interruptible: bool,
) -> Result<ExitStatus> {
    let start = Instant::now();
    // Polls every 1 ms at first, backing off to 20 ms: a short command is
    // seen to finish within about a millisecond (the takeover part times
    // psql rounds), a long one costs no CPU.
    let mut poll = Duration::from_millis(1);
    loop {
        if let Some(st) = child
            .try_wait()
            .with_context(|| format!("waiting for {what}"))?
        {
            return Ok(st);
        }
        let stop_now = interruptible && interrupted();
        if stop_now || start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            if stop_now {
                bail!("interrupted while waiting for {what}");
            }
            bail!(
                "{what} did not finish within {} s; killed it",
                timeout.as_secs()
            );
        }
        std::thread::sleep(poll);
        poll = (poll * 2).min(Duration::from_millis(20));
    }
}

/// Runs `cmd` to completion within `timeout`, capturing its output (through
/// files, so that a daemon that keeps a pipe open cannot hang us). A non-zero
/// exit is not an error here: callers look at `status`.
pub fn run(cmd: &mut Command, timeout: Duration, what: &str) -> Result<Output> {
    run_inner(cmd, timeout, what, true)
}

/// Like [`run_ok`], but not cut short by Ctrl-C: for stopping servers.
pub fn run_cleanup(cmd: &mut Command, timeout: Duration, what: &str) -> Result<Output> {
    let out = run_inner(cmd, timeout, what, false)?;
    if !out.status.success() {
        bail!("{what} failed ({}):\n{}", out.status, out.message());
    }
    Ok(out)
}

fn run_inner(
    cmd: &mut Command,
    timeout: Duration,
    what: &str,
    interruptible: bool,
) -> Result<Output> {
    let out_path = scratch_file("out");
    let err_path = scratch_file("err");
    let result = (|| {
        let out =
            File::create(&out_path).with_context(|| format!("creating {}", out_path.display()))?;
        let err =
            File::create(&err_path).with_context(|| format!("creating {}", err_path.display()))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let mut child = spawn(cmd)?;
        let status = wait_timeout(&mut child, timeout, what, interruptible)?;
        Ok(Output {
            status,
            stdout: read_lossy(&out_path),
            stderr: read_lossy(&err_path),
        })
    })();
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    result
}

/// Like [`run`], but a non-zero exit is an error carrying the command's message.
pub fn run_ok(cmd: &mut Command, timeout: Duration, what: &str) -> Result<Output> {
    let out = run(cmd, timeout, what)?;
    if !out.status.success() {
        bail!("{what} failed ({}):\n{}", out.status, out.message());
    }
    Ok(out)
}

fn read_lossy(path: &Path) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Sends SIGTERM to a child, waits at most `timeout` for it, then SIGKILLs it.
pub fn terminate(child: &mut Child, timeout: Duration) -> Result<ExitStatus> {
    if let Some(st) = child.try_wait()? {
        return Ok(st);
    }
    let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
    // SAFETY: plain kill(2) on our own child's pid, which we have not reaped yet.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some(st) = child.try_wait()? {
            return Ok(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill()?;
    let st = child.wait()?;
    bail!(
        "did not stop within {} s of SIGTERM; killed it ({st})",
        timeout.as_secs()
    )
}
