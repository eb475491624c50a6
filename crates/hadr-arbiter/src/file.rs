//! The file tiebreaker: one lease record in a file on storage every node
//! mounts (a local disk in tests; NFS or a shared disk in production), in
//! the spirit of DB2's disk tiebreaker.
//!
//! # How a write is made
//!
//! Every write is a read-modify-write under an exclusive lock held on a
//! separate lock file next to the record (`NAME.lock`):
//!
//! 1. write the new record to a temporary file in the same directory
//!    (`.NAME.tmp.PID.RANDOM`), fsync it (before the lock: see below);
//! 2. take the lock (polling, so that the call's deadline bounds the wait);
//! 3. read the record and compare its version with the one expected
//!    ([`ArbiterError::Conflict`] if they differ, [`ArbiterError::Corrupt`]
//!    if the file is not a lease record — it is never overwritten then);
//! 4. rename the temporary file over the record, fsync the directory;
//! 5. close the lock file, which releases the lock.
//!
//! The lock file is never removed (by hadr or by hand while nodes run): a
//! writer that finds it replaced after locking it opens it again, but a
//! lock on a removed file excludes nobody.
//!
//! Nothing ever writes the record in place, so a reader sees the old record
//! or the new one, never half of one, and a crash between 3 and 4 leaves a
//! stray temporary file that the next writer removes (under the lock, where
//! no live writer can be using it: it is older than any call may live).
//! Reads take no lock (a rename is atomic); a writer writes and syncs its
//! temporary file before it takes the lock, so that the lock is held only
//! for compare, rename and the directory sync: a holder frozen inside it
//! (SIGSTOP, a hung VM) blocks every other writer until it resumes.
//!
//! # The record and its version
//!
//! The file holds JSON: `{"hadr_lease": 1, "version": "...", "record":
//! {LeaseRecord}}`. The [`Version`] is `TOKEN-WRITEID`: the record's token,
//! for people reading logs, and a 64-bit write id the backend draws afresh
//! on every write. The token and nonce alone are the caller's to choose; a
//! caller that wrote the same token and nonce twice would make an old
//! version valid again (ABA), and a stale writer would win a compare it
//! should lose. The write id makes each stored version unique whatever the
//! caller writes.
//!
//! # Which lock
//!
//! `fcntl` open-file-description locks (`F_OFD_SETLK`, Linux 3.15+) on the
//! whole lock file. They are `fcntl` byte-range locks, which is what NFS
//! carries to the server (NLM through lockd on NFSv3, the protocol's own
//! locks on NFSv4), so two nodes exclude each other; and unlike classic
//! POSIX `fcntl` locks they belong to the open file, not to the process, so
//! two arbiters in one process (or two threads) exclude each other too, and
//! closing some other descriptor of the same file does not silently drop
//! the lock. `flock` would be per open file as well, but on Linux NFS it is
//! emulated by an `fcntl` lock on the whole file (since 2.6.12) and on other
//! systems may not reach the server at all: using `fcntl` directly says what
//! actually happens. On other Unix systems, which lack OFD locks, `flock`
//! is used (correct on local disks; check what it does on your NFS client).
//!
//! # What NFS must guarantee — and what happens if it does not
//!
//! - **Working locks**: lockd/statd (NLM) on NFSv3, or NFSv4 (locks are
//!   part of the protocol). The `nolock` or `local_lock=` mount options make
//!   locks local to each client: each node then takes "the" lock alone, both
//!   read the same old record, both rename their own over it, and **both
//!   believe they won**. Nothing in this module can detect that.
//! - **Close-to-open consistency** (the default; never `nocto`): a file
//!   opened after another client closed it sees that client's writes, so the
//!   record read under the lock is the last one written.
//! - **`rename` atomic within a directory** (NFS guarantees it on the
//!   server): readers see the old record or the new one.
//! - **`hard` mounts and `sync` exports**: a `soft` mount may report an
//!   error for a write the server later applies, and an `async` export may
//!   acknowledge a rename it loses in a server crash — the lease would go
//!   back in time, and a node that won it might lose it without knowing.
//! - **Lock recovery**: a node that crashes while holding the lock keeps it
//!   until the server notices (NFSv4: its lease time, often 90 s; NFSv3: the
//!   node reboots and statd tells the server). Until then every other node's
//!   call ends in [`ArbiterError::Timeout`] — no winner, rather than two.
//!
//! With any of these missing, two nodes can both win the lease: the very
//! split brain the arbiter exists to prevent. `hadr arbiter check` proves the
//! conditional write from one node only; it cannot prove the mount options
//! of the others.
//!
//! # Time limits
//!
//! The file I/O runs in [`tokio::task::spawn_blocking`] and every call is
//! bounded by a timeout (default [`DEFAULT_TIMEOUT`], see
//! [`FileArbiter::with_timeout`]): a hung mount gives
//! [`ArbiterError::Timeout`] instead of hanging the caller. The blocking
//! side checks the same deadline before it renames and writes nothing once
//! it has passed. A timeout still means "outcome unknown" (a rename already
//! sent to a hung server may yet be applied): read again before relying on
//! the record. A thread stuck in the kernel cannot be stopped; so that a
//! hung mount does not fill the blocking pool, an arbiter refuses new calls
//! while [`MAX_STUCK`] of its calls are still stuck after their caller gave
//! up.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{Arbiter, ArbiterError, ArbiterInfo, LeaseRecord, Stored, Version};

/// How long a call may take unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// How many calls of one arbiter may be stuck in the filesystem after their
/// caller timed out before it refuses to start more.
pub const MAX_STUCK: usize = 4;

/// The format marker in every record file.
const FORMAT: u32 = 1;

/// A lease record in a file on shared storage.
pub struct FileArbiter {
    path: PathBuf,
    timeout: Duration,
    /// Calls whose caller timed out while their blocking thread still runs.
    stuck: Arc<AtomicUsize>,
}

impl FileArbiter {
    /// A lease file at `path`; its directory must exist and be writable.
    pub fn new(path: PathBuf) -> FileArbiter {
        FileArbiter {
            path,
            timeout: DEFAULT_TIMEOUT,
            stuck: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The same, with every call bounded by `timeout` instead of
    /// [`DEFAULT_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> FileArbiter {
        self.timeout = timeout;
        self
    }

    /// The lease file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `f` on the blocking pool, bounded by the timeout.
    async fn run<T, F>(&self, f: F) -> Result<T, ArbiterError>
    where
        T: Send + 'static,
        F: FnOnce(&Paths, Instant) -> Result<T, ArbiterError> + Send + 'static,
    {
        let stuck = self.stuck.load(Ordering::SeqCst);
        if stuck >= MAX_STUCK {
            return Err(ArbiterError::Unavailable {
                endpoint: self.endpoint(),
                message: format!(
                    "{stuck} earlier calls are still blocked in the filesystem \
                     (a hung mount?); not starting another"
                ),
            });
        }
        let paths = Paths::new(&self.path, self.timeout)?;
        let deadline = Instant::now() + self.timeout;
        // 0: running, 1: finished, 2: abandoned by its caller.
        let state = Arc::new(AtomicU8::new(0));
        let task = {
            let (state, stuck) = (state.clone(), self.stuck.clone());
            tokio::task::spawn_blocking(move || {
                let result = if Instant::now() >= deadline {
                    Err(paths.timeout())
                } else {
                    f(&paths, deadline)
                };
                if state
                    .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                    .is_err()
                {
                    stuck.fetch_sub(1, Ordering::SeqCst);
                }
                result
            })
        };
        match tokio::time::timeout(self.timeout, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(ArbiterError::Unavailable {
                endpoint: self.endpoint(),
                message: format!("the file I/O task failed: {join}"),
            }),
            Err(_) => {
                // Count it stuck before marking it abandoned, so that the
                // thread's decrement never comes first.
                self.stuck.fetch_add(1, Ordering::SeqCst);
                if state
                    .compare_exchange(0, 2, Ordering::SeqCst, Ordering::SeqCst)
                    .is_err()
                {
                    self.stuck.fetch_sub(1, Ordering::SeqCst);
                }
                Err(ArbiterError::Timeout {
                    endpoint: self.endpoint(),
                    timeout: self.timeout,
                })
            }
        }
    }

    fn endpoint(&self) -> String {
        self.path.display().to_string()
    }
}

#[async_trait::async_trait]
impl Arbiter for FileArbiter {
    async fn read(&self) -> Result<Option<Stored>, ArbiterError> {
        // No lock: the record is only ever replaced by a rename, so a reader
        // sees one whole record, and what a reader saw is only ever acted on
        // by a conditional write, which compares under the exclusive lock.
        // A shared lock here would let a frozen reader (SIGSTOP, a hung VM)
        // block every writer, the lease holder's renewals included.
        self.run(|paths, _| paths.read_record()).await
    }

    async fn write(
        &self,
        expected: Option<&Version>,
        record: &LeaseRecord,
    ) -> Result<Stored, ArbiterError> {
        let expected = expected.cloned();
        let record = record.clone();
        self.run(move |paths, deadline| {
            // The slow part (writing and syncing the new record) comes before
            // the lock: a writer frozen while holding the lock blocks every
            // other writer, so the lock covers only compare, rename and sync.
            let prepared = paths.prepare(record)?;
            let _lock = match paths.lock(deadline) {
                Ok(l) => l,
                Err(e) => return Err(prepared.discard(e)),
            };
            let current = match paths.read_record() {
                Ok(c) => c,
                Err(e) => return Err(prepared.discard(e)),
            };
            let matches = match (&current, &expected) {
                (None, None) => true,
                (Some(stored), Some(v)) => stored.version == *v,
                _ => false,
            };
            if !matches {
                return Err(prepared.discard(ArbiterError::Conflict));
            }
            paths.remove_stray_temps(&prepared.temp);
            paths.replace_record(prepared, deadline)
        })
        .await
    }

    fn probe(&self) -> Box<dyn Arbiter> {
        let mut name = self
            .path
            .file_name()
            .map(OsString::from)
            .unwrap_or_default();
        name.push(".check");
        Box::new(FileArbiter::new(self.path.with_file_name(name)).with_timeout(self.timeout))
    }

    fn info(&self) -> ArbiterInfo {
        ArbiterInfo {
            kind: "file".into(),
            endpoint: self.endpoint(),
            stateful: true,
        }
    }
}

/// The record file as stored.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    hadr_lease: u32,
    version: String,
    record: LeaseRecord,
}

/// The files one arbiter uses.
struct Paths {
    record: PathBuf,
    lock: PathBuf,
    dir: PathBuf,
    /// The record's file name, for the temporary files' names.
    name: String,
    /// The call's time limit, for the errors that report it.
    timeout: Duration,
}

impl Paths {
    fn new(record: &Path, timeout: Duration) -> Result<Paths, ArbiterError> {
        let name = record
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ArbiterError::Unavailable {
                endpoint: record.display().to_string(),
                message: "the arbiter path must name a file (UTF-8), e.g. /mnt/shared/hadr.lease"
                    .into(),
            })?
            .to_string();
        let dir = match record.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(Paths {
            record: record.to_path_buf(),
            lock: dir.join(format!("{name}.lock")),
            dir,
            name,
            timeout,
        })
    }

    fn endpoint(&self) -> String {
        self.record.display().to_string()
    }

    fn timeout(&self) -> ArbiterError {
        ArbiterError::Timeout {
            endpoint: self.endpoint(),
            timeout: self.timeout,
        }
    }

    /// An I/O error on `what` (a path), as an arbiter error saying plainly
    /// what to fix.
    fn io_error(&self, doing: &str, what: &Path, e: io::Error) -> ArbiterError {
        let message = match e.kind() {
            io::ErrorKind::NotFound if !self.dir.is_dir() => format!(
                "directory {} does not exist (is the shared storage mounted?)",
                self.dir.display()
            ),
            io::ErrorKind::PermissionDenied => format!(
                "permission denied {doing} {}: the directory and the arbiter's files must be \
                 readable and writable by the user hadr runs as (uid {}) ({e})",
                what.display(),
                current_uid()
            ),
            _ if e.raw_os_error() == Some(libc::EROFS) => format!(
                "{doing} {}: the file system is read-only ({e})",
                what.display()
            ),
            _ => format!("{doing} {}: {e}", what.display()),
        };
        ArbiterError::Unavailable {
            endpoint: self.endpoint(),
            message,
        }
    }

    /// Take the lock, polling until `deadline`. Held until the file closes.
    fn lock(&self, deadline: Instant) -> Result<File, ArbiterError> {
        let mut pause = Duration::from_micros(200);
        loop {
            let file = self.open_lock_file()?;
            loop {
                match try_lock(&file) {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => return Err(self.io_error("locking", &self.lock, e)),
                }
                let now = Instant::now();
                if now >= deadline {
                    return Err(self.timeout());
                }
                std::thread::sleep(pause.min(deadline - now));
                pause = (pause * 2).min(Duration::from_millis(10));
            }
            // A lock on a file someone removed (or replaced) while we waited
            // excludes no one who opens the path now: open it again.
            if self.is_still_the_lock_file(&file) {
                return Ok(file);
            }
            if Instant::now() >= deadline {
                return Err(self.timeout());
            }
        }
    }

    fn open_lock_file(&self) -> Result<File, ArbiterError> {
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        match options.clone().open(&self.lock) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => options
                .write(true)
                .create(true)
                .mode(0o644)
                .open(&self.lock)
                .map_err(|e| self.io_error("creating the lock file", &self.lock, e)),
            Err(e) => Err(self.io_error("opening the lock file", &self.lock, e)),
        }
    }

    fn is_still_the_lock_file(&self, file: &File) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), std::fs::metadata(&self.lock)) {
            (Ok(held), Ok(now)) => held.dev() == now.dev() && held.ino() == now.ino(),
            _ => false,
        }
    }

    /// The record, or None if there is no file.
    fn read_record(&self) -> Result<Option<Stored>, ArbiterError> {
        let mut file = match File::open(&self.record) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.dir.is_dir() => return Ok(None),
            Err(e) => return Err(self.io_error("opening", &self.record, e)),
        };
        let mut bytes = Vec::new();
        // A lease record is a few hundred bytes: anything much larger is not
        // one, and is not read whole.
        (&mut file)
            .take(1 << 20)
            .read_to_end(&mut bytes)
            .map_err(|e| self.io_error("reading", &self.record, e))?;
        let envelope: Envelope =
            serde_json::from_slice(&bytes).map_err(|e| ArbiterError::Corrupt {
                endpoint: self.endpoint(),
                message: format!("{e} (the file is left as it is: move it away by hand)"),
            })?;
        if envelope.hadr_lease != FORMAT || envelope.version.is_empty() {
            return Err(ArbiterError::Corrupt {
                endpoint: self.endpoint(),
                message: format!(
                    "format {} with version {:?}: this build reads format {FORMAT}",
                    envelope.hadr_lease, envelope.version
                ),
            });
        }
        Ok(Some(Stored {
            record: envelope.record,
            version: Version(envelope.version),
        }))
    }

    /// Temporary files of this record left by a writer that crashed before
    /// its rename. Called under the exclusive lock: no live writer has one.
    /// Remove temporary files a crashed writer left. Another writer's temp
    /// file is written before it takes the lock, so only files older than
    /// any call may live (ten times the timeout) count as stray.
    fn remove_stray_temps(&self, own: &Path) {
        let prefix = format!(".{}.tmp.", self.name);
        let young = self.timeout.saturating_mul(10);
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix))
            {
                let path = entry.path();
                let age = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok());
                if path == own || age.is_none_or(|a| a < young) {
                    continue;
                }
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), "removed a stray arbiter temp file")
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "could not remove a stray arbiter temp file")
                    }
                }
            }
        }
    }

    /// Write `record` to a new temporary file in the record's directory and
    /// sync it, ready to be renamed over the record.
    fn prepare(&self, record: LeaseRecord) -> Result<Prepared, ArbiterError> {
        let version = Version(format!("{}-{:016x}", record.token, write_id()));
        let envelope = Envelope {
            hadr_lease: FORMAT,
            version: version.0.clone(),
            record,
        };
        let mut bytes = serde_json::to_vec_pretty(&envelope).expect("a lease record serialises");
        bytes.push(b'\n');
        let temp = self.dir.join(format!(
            ".{}.tmp.{}.{:016x}",
            self.name,
            std::process::id(),
            write_id()
        ));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&temp)
            .and_then(|mut f| {
                f.write_all(&bytes)?;
                f.sync_all()
            });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(self.io_error("writing", &temp, e));
        }
        Ok(Prepared {
            temp,
            version,
            record: envelope.record,
        })
    }

    /// Rename a prepared record over the record (under the exclusive lock).
    fn replace_record(
        &self,
        prepared: Prepared,
        deadline: Instant,
    ) -> Result<Stored, ArbiterError> {
        let Prepared {
            temp,
            version,
            record,
        } = prepared;
        if Instant::now() >= deadline {
            // The caller has given up (or is about to): it must not find
            // later that it won after all.
            let _ = std::fs::remove_file(&temp);
            return Err(self.timeout());
        }
        if let Err(e) = std::fs::rename(&temp, &self.record) {
            let _ = std::fs::remove_file(&temp);
            return Err(self.io_error("renaming over", &self.record, e));
        }
        // Make the rename itself durable.
        let synced = File::open(&self.dir).and_then(|d| d.sync_all());
        match synced {
            Err(e) if e.raw_os_error() != Some(libc::EINVAL) => {
                return Err(self.io_error(
                    "syncing (the record was replaced but may not survive a crash)",
                    &self.dir,
                    e,
                ))
            }
            _ => {}
        }
        Ok(Stored { record, version })
    }
}

/// A new record written and synced to a temporary file, not yet in place.
struct Prepared {
    temp: PathBuf,
    version: Version,
    record: LeaseRecord,
}

impl Prepared {
    /// Give up on it: remove the temporary file and return `e`.
    fn discard(self, e: ArbiterError) -> ArbiterError {
        let _ = std::fs::remove_file(&self.temp);
        e
    }
}

/// Try to take the lock: Ok(false) if someone else holds it.
#[cfg(target_os = "linux")]
fn try_lock(file: &File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero `flock` is a valid value (whole file from offset
    // 0, l_pid 0 as OFD locks require); we set the type and whence.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as _;
    fl.l_whence = libc::SEEK_SET as _;
    // SAFETY: a valid descriptor and a pointer to an initialised `flock`.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        Some(libc::EINTR) => Ok(false),
        _ => Err(e),
    }
}

/// Try to take the lock: Ok(false) if someone else holds it.
#[cfg(not(target_os = "linux"))]
fn try_lock(file: &File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let op = libc::LOCK_EX | libc::LOCK_NB;
    // SAFETY: a valid descriptor.
    if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EWOULDBLOCK) | Some(libc::EINTR) => Ok(false),
        _ => Err(e),
    }
}

fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// 64 bits that differ from one write to the next, in this process and in
/// any other: std's `RandomState` is keyed from the OS's random source, and
/// the process id, the clock and a counter go into the hash.
fn write_id() -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    std::process::id().hash(&mut h);
    COUNTER.fetch_add(1, Ordering::Relaxed).hash(&mut h);
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
        .hash(&mut h);
    h.finish()
}
