//! hadr's storage engine: SQLite in WAL mode plus hadr's own transaction log.
//!
//! Every SQLite commit is *captured* from the `-wal` file into a log record;
//! hadr, not SQLite, decides checkpoints, and only after capture. On start-up
//! the engine recovers: it captures committed frames the log lacks, re-applies
//! every record newer than the last checkpoint, and checkpoints, so that the
//! database holds exactly the log's state.

pub mod apply;
pub mod conn;
pub mod control;
pub mod hash;
pub mod wal;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use hadr_log::{Log, LogConfig, LogError, Lsn, Record};
use rusqlite::Connection;
use tracing::{info, warn};

pub use apply::{apply_records, PageBatch};
pub use conn::open_connection;
pub use control::{Control, EpochStart, Role};
pub use hash::{page_hash, PageHash};
pub use wal::{CapturedTxn, WalCapture};

/// File name of the SQLite database inside a data directory.
pub const DB_FILE: &str = "data.db";
/// Directory of the log inside a data directory.
pub const LOG_DIR: &str = "log";
/// Page size of new databases.
pub const PAGE_SIZE: u32 = 4096;

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// SQLite reported an error.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The log reported an error.
    #[error("log: {0}")]
    Log(#[from] LogError),
    /// The control file is unreadable.
    #[error("bad control file: {0}")]
    BadControl(String),
    /// The data directory was written by a newer hadr.
    #[error(
        "{path} has format version {found}; this hadr supports up to {supported}: upgrade hadr"
    )]
    NewerFormat {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u64,
        /// What we support.
        supported: u32,
    },
    /// `init` found an existing database.
    #[error("{0} already holds a database; refusing to overwrite it")]
    AlreadyExists(PathBuf),
    /// The directory is not a hadr data directory.
    #[error("{0} is not a hadr data directory (no control.json); create one with `hadr init --data {0}`")]
    NotADataDir(PathBuf),
    /// Applying records failed.
    #[error("apply: {0}")]
    Apply(String),
    /// Another process has the data directory open.
    #[error("{0} is in use by another hadr process ({1}); stop it first")]
    InUse(PathBuf, String),
}

/// An exclusive lock on a data directory, held while the engine is open; the
/// kernel drops it when the process dies, so a crash never leaves it stale.
struct DirLock {
    _file: std::fs::File,
}

impl DirLock {
    fn acquire(dir: &Path) -> Result<DirLock, EngineError> {
        use std::io::{Read, Seek, Write};
        use std::os::fd::AsRawFd;
        let path = dir.join("lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| EngineError::Io {
                what: format!("opening {}", path.display()),
                source: e,
            })?;
        // SAFETY: flock on a file descriptor we own; no memory is shared.
        let try_lock = |f: &std::fs::File| unsafe {
            libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB)
        };
        let mut rc = try_lock(&file);
        // A lock this very process held a moment ago (the previous role's
        // run, just closed) can still be held by a child being spawned: a
        // forked child shares the open file description until its exec
        // closes it (resource commands, docs/resources.md, are spawned at
        // role changes). That lasts a moment; another process's lock does
        // not go away, so only our own is waited for, and briefly.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while rc != 0 && std::time::Instant::now() < deadline {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let _ = file.rewind();
            if holder.trim() != std::process::id().to_string() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
            rc = try_lock(&file);
        }
        if rc != 0 {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(EngineError::InUse(
                dir.to_path_buf(),
                if holder.is_empty() {
                    "unknown pid".into()
                } else {
                    format!("pid {holder}")
                },
            ));
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        Ok(DirLock { _file: file })
    }
}

/// What start-up recovery did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RecoveryReport {
    /// Bytes of torn log tail removed.
    pub truncated_tail_bytes: u64,
    /// Transactions found in the WAL but not in the log, now captured.
    pub captured_from_wal: usize,
    /// Log records re-applied from the last checkpoint on.
    pub reapplied_records: usize,
    /// Log end after recovery.
    pub end_lsn: Lsn,
}

/// Result of a checkpoint attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checkpoint {
    /// Every WAL frame is in the database file, durably, up to this LSN.
    Complete(Lsn),
    /// Readers still use old frames; the checkpoint LSN did not move.
    Partial,
}

/// One node's database: SQLite file, log and control file.
pub struct Engine {
    dir: PathBuf,
    db_path: PathBuf,
    log: Arc<Log>,
    control: Mutex<Control>,
    capture: Mutex<WalCapture>,
    /// Connection used for capture-adjacent work: checkpoints and apply.
    admin: Mutex<Connection>,
    frames_since_checkpoint: AtomicU64,
    /// On a standby: every record below this LSN is applied to the database.
    applied_lsn: AtomicU64,
    /// Released by [`Engine::close`], so the directory can be reopened even
    /// while stray references to this engine are still being dropped.
    dir_lock: Mutex<Option<DirLock>>,
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind, not a
    // broken invariant of SQLite's, so carrying on is safe.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Engine {
    /// Create a new database in `dir` (created if missing; must not hold a database).
    pub fn init(dir: &Path, log_cfg: &LogConfig) -> Result<Control, EngineError> {
        let io = |what: String, e| EngineError::Io { what, source: e };
        if Control::path(dir).exists() || dir.join(DB_FILE).exists() {
            return Err(EngineError::AlreadyExists(dir.to_path_buf()));
        }
        std::fs::create_dir_all(dir).map_err(|e| io(format!("creating {}", dir.display()), e))?;
        let db_path = dir.join(DB_FILE);
        {
            let conn = Connection::open(&db_path)?;
            conn.execute_batch(&format!(
                "PRAGMA page_size={PAGE_SIZE}; PRAGMA journal_mode=WAL; PRAGMA wal_checkpoint(TRUNCATE);"
            ))?;
        }
        std::fs::File::open(&db_path)
            .and_then(|f| f.sync_all())
            .map_err(|e| io(format!("syncing {}", db_path.display()), e))?;
        let mut cfg = log_cfg.clone();
        cfg.dir = dir.join(LOG_DIR);
        Log::create(&cfg)?;
        let control = Control::new(uuid::Uuid::new_v4().to_string());
        control.store(dir)?;
        Ok(control)
    }

    /// Open the database in `dir` and recover it (see the crate docs).
    pub fn open(dir: &Path, log_cfg: &LogConfig) -> Result<(Engine, RecoveryReport), EngineError> {
        if !Control::path(dir).exists() {
            return Err(EngineError::NotADataDir(dir.to_path_buf()));
        }
        let lock = DirLock::acquire(dir)?;
        let mut control = Control::load(dir)?;
        let mut cfg = log_cfg.clone();
        cfg.dir = dir.join(LOG_DIR);
        let (log, open_report) = Log::open(cfg, control.checkpoint_lsn)?;
        let log = Arc::new(log);
        let db_path = dir.join(DB_FILE);
        let mut admin = open_connection(&db_path)?;
        let mut report = RecoveryReport {
            truncated_tail_bytes: open_report.truncated_tail_bytes,
            ..Default::default()
        };
        if open_report.truncated_tail_bytes > 0 {
            warn!(
                bytes = open_report.truncated_tail_bytes,
                "truncated a torn record at the end of the log (it was never acknowledged)"
            );
        }

        // 1. Frames committed to the WAL after the last captured record.
        let last = log.last_record()?;
        let mark = last
            .as_ref()
            .filter(|(lsn, _)| *lsn >= control.capture_base_lsn)
            .map(|(_, r)| r.mark);
        let wal_path = wal_path(&db_path);
        let mut capture = WalCapture::new(wal_path, mark);
        if control.role != Role::Standby {
            let txns = capture.capture()?;
            report.captured_from_wal = txns.len();
            for t in txns {
                log.append(&record_from(t, control.epoch))?;
            }
            log.flush()?;
        }

        // 2. Re-apply everything after the checkpoint: after a power loss the WAL
        //    may lack frames the log has. Images are idempotent, so this is safe.
        let end = log.end_lsn();
        if end > control.checkpoint_lsn {
            let mut batch = PageBatch::new();
            for item in log.read_from(control.checkpoint_lsn)? {
                let (_, rec) = item?;
                batch.add(rec)?;
            }
            report.reapplied_records = batch.records();
            batch.apply(&mut admin)?;
        }

        // 3. Checkpoint everything, so the WAL restarts empty and the applied
        //    frames are never mistaken for new transactions.
        truncate_wal(&admin, "recovery checkpoint")?;
        capture.reset();
        control.checkpoint_lsn = end;
        control.store(dir)?;
        report.end_lsn = end;
        info!(
            end_lsn = end,
            captured = report.captured_from_wal,
            reapplied = report.reapplied_records,
            "recovery complete"
        );
        Ok((
            Engine {
                dir: dir.to_path_buf(),
                db_path,
                log,
                control: Mutex::new(control),
                capture: Mutex::new(capture),
                admin: Mutex::new(admin),
                frames_since_checkpoint: AtomicU64::new(0),
                applied_lsn: AtomicU64::new(end),
                dir_lock: Mutex::new(Some(lock)),
            },
            report,
        ))
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The SQLite database file.
    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// The log.
    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    /// A copy of the control file's current contents.
    pub fn control(&self) -> Control {
        lock(&self.control).clone()
    }

    /// A new connection with hadr's settings.
    pub fn connect(&self) -> Result<Connection, EngineError> {
        open_connection(&self.db_path)
    }

    /// Capture transactions committed since the last capture and append them to
    /// the log. Returns the log end LSN if anything was appended.
    ///
    /// Call only while holding the write permit, right after a commit.
    pub fn capture_commits(&self) -> Result<Option<Lsn>, EngineError> {
        // A standby's WAL holds the applier's frames, which are already records.
        if self.is_standby() {
            return Ok(None);
        }
        let mut cap = lock(&self.capture);
        let txns = cap.capture()?;
        if txns.is_empty() {
            return Ok(None);
        }
        let epoch = lock(&self.control).epoch;
        let mut end = 0;
        for t in txns {
            self.frames_since_checkpoint
                .fetch_add(t.pages.len() as u64, Ordering::Relaxed);
            end = self.log.append(&record_from(t, epoch))?.1;
        }
        Ok(Some(end))
    }

    /// Capture after a commit, and return the log end: the commit's record ends
    /// at or before it, whether this call or a concurrent one captured it.
    ///
    /// Safe without the write permit: capture accepts only frames whose
    /// cumulative checksums validate up to a commit frame, so a concurrent
    /// writer's half-written frames are never taken, and the WAL is only
    /// restarted after a checkpoint, which captures first.
    pub fn capture_for_commit(&self) -> Result<Lsn, EngineError> {
        self.capture_commits()?;
        Ok(self.log.end_lsn())
    }

    /// Whether this node is a standby (replays records instead of capturing them).
    pub fn is_standby(&self) -> bool {
        lock(&self.control).role == Role::Standby
    }

    /// Records below this LSN are in the database (standby replay position;
    /// on a primary, the log end at start-up).
    pub fn applied_lsn(&self) -> Lsn {
        self.applied_lsn.load(Ordering::Acquire)
    }

    /// Apply a batch of records received from the primary (standby), in one
    /// transaction, and advance the replay position to `end`.
    pub fn replay(&self, records: Vec<Record>, end: Lsn) -> Result<(), EngineError> {
        let mut admin = lock(&self.admin);
        let mut batch = PageBatch::new();
        for r in records {
            self.frames_since_checkpoint
                .fetch_add(r.pages.len() as u64, Ordering::Relaxed);
            batch.add(r)?;
        }
        batch.apply(&mut admin)?;
        self.applied_lsn.store(end, Ordering::Release);
        Ok(())
    }

    /// Begin a read transaction on `conn` on a standby and return the replay
    /// position it shows: taken under the replay lock, so no batch is half in.
    pub fn begin_replay_snapshot(&self, conn: &Connection) -> Result<Lsn, EngineError> {
        let _admin = lock(&self.admin);
        conn.execute_batch("BEGIN")?;
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
        Ok(self.applied_lsn())
    }

    /// Make this (former) standby the primary of a new epoch that starts at
    /// `end`, the old primary's last LSN. Call right after [`Engine::open`],
    /// whose recovery ends with a truncating checkpoint: the WAL is then
    /// empty, so replayed frames can never be captured as new transactions.
    pub fn promote(&self, end: Lsn, epoch: u64) -> Result<Control, EngineError> {
        if self.log.end_lsn() != end {
            return Err(EngineError::Apply(format!(
                "cannot promote at LSN {end}: this node's log ends at {}",
                self.log.end_lsn()
            )));
        }
        let c = self.control();
        // The epoch is chosen by the HA rules (hadr-ha's `epoch::next_epoch`);
        // the engine only refuses one that would reuse a known term.
        if epoch <= c.epoch.max(c.highest_seen_epoch)
            || c.epoch_history.last().is_some_and(|e| e.start_lsn > end)
        {
            return Err(EngineError::Apply(format!(
                "cannot promote into epoch {epoch} at LSN {end}: this node knows epoch {} (highest seen {}) and its history {:?}",
                c.epoch, c.highest_seen_epoch, c.epoch_history
            )));
        }
        lock(&self.capture).reset();
        self.update_control(|c| {
            c.role = Role::Primary;
            c.epoch = epoch;
            c.highest_seen_epoch = c.highest_seen_epoch.max(epoch);
            c.epoch_history.push(EpochStart {
                epoch: c.epoch,
                start_lsn: end,
            });
            c.checkpoint_lsn = end;
            c.capture_base_lsn = end;
        })
    }

    /// Last step of a rewind: the log already holds the new primary's records
    /// from `from` on (this node's own records after `from` were truncated).
    /// Applies those records and then `pages`, the new primary's current
    /// images of every page this node's diverged records touched, in one
    /// transaction: the last image of each page wins, so the result is the
    /// new primary's state at the log end. Checkpoints, and moves the replay
    /// and checkpoint positions to the log end.
    pub fn finish_rewind(
        &self,
        from: Lsn,
        pages: Vec<hadr_log::Page>,
        db_size_pages: u32,
        page_size: u32,
    ) -> Result<Lsn, EngineError> {
        let end = self.log.end_lsn();
        let mut batch = PageBatch::new();
        for item in self.log.read_from(from)? {
            let (_, rec) = item?;
            batch.add(rec)?;
        }
        batch.add(Record {
            epoch: lock(&self.control).epoch,
            commit_time_micros: now_micros(),
            db_size_pages,
            page_size,
            mark: Default::default(),
            pages,
        })?;
        let mut admin = lock(&self.admin);
        batch.apply(&mut admin)?;
        truncate_wal(&admin, "the rewind checkpoint")?;
        drop(admin);
        self.applied_lsn.store(end, Ordering::Release);
        self.update_control(|c| {
            c.checkpoint_lsn = end;
            c.capture_base_lsn = end;
        })?;
        Ok(end)
    }

    /// Set up a data directory for a clone: `data.db` already holds the
    /// snapshot's pages; the log starts at `lsn`, the snapshot's position.
    pub fn init_clone(
        dir: &Path,
        log_cfg: &LogConfig,
        mut control: Control,
        lsn: Lsn,
    ) -> Result<Control, EngineError> {
        let mut cfg = log_cfg.clone();
        cfg.dir = dir.join(LOG_DIR);
        Log::create_at(&cfg, lsn)?;
        control.role = Role::Standby;
        control.checkpoint_lsn = lsn;
        control.capture_base_lsn = lsn;
        control.store(dir)?;
        Ok(control)
    }

    /// Frames (roughly) written to the WAL since the last complete checkpoint.
    pub fn frames_since_checkpoint(&self) -> u64 {
        self.frames_since_checkpoint.load(Ordering::Relaxed)
    }

    /// Checkpoint the WAL into the database file and, when complete, move the
    /// control file's checkpoint LSN.
    ///
    /// Call only while holding the write permit (no writer may commit
    /// uncaptured frames meanwhile). `truncate` also empties the WAL file, which
    /// needs every reader gone.
    pub fn checkpoint(&self, truncate: bool) -> Result<Checkpoint, EngineError> {
        // Anything committed but not captured must reach the log first. On a
        // standby the database holds exactly the applied records.
        self.capture_commits()?;
        let end = if self.is_standby() {
            self.applied_lsn()
        } else {
            self.log.end_lsn()
        };
        let admin = lock(&self.admin);
        let sql = if truncate {
            "PRAGMA wal_checkpoint(TRUNCATE)"
        } else {
            "PRAGMA wal_checkpoint(PASSIVE)"
        };
        let (busy, log_frames, done) = admin.query_row(sql, [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        drop(admin);
        if busy != 0 || log_frames != done {
            return Ok(Checkpoint::Partial);
        }
        // The database file now holds every captured record durably (SQLite
        // fsyncs it at checkpoint under synchronous=NORMAL); the records must be
        // durable too before recovery may start after them.
        self.log.flush()?;
        self.frames_since_checkpoint.store(0, Ordering::Relaxed);
        if truncate {
            lock(&self.capture).reset();
        }
        let mut c = lock(&self.control);
        if c.checkpoint_lsn != end {
            c.checkpoint_lsn = end;
            c.store(&self.dir)?;
        }
        Ok(Checkpoint::Complete(end))
    }

    /// Update the control file.
    pub fn update_control(&self, f: impl FnOnce(&mut Control)) -> Result<Control, EngineError> {
        let mut c = lock(&self.control);
        let mut next = c.clone();
        f(&mut next);
        next.store(&self.dir)?;
        *c = next.clone();
        Ok(next)
    }

    /// Clean shutdown: capture, checkpoint, flush and close the log.
    ///
    /// Call with the write permit held and after every other connection closed.
    pub fn close(&self) -> Result<(), EngineError> {
        match self.checkpoint(true) {
            Ok(Checkpoint::Complete(_)) => {}
            Ok(Checkpoint::Partial) => {
                warn!("final checkpoint incomplete; recovery will redo it at next start")
            }
            Err(e) => warn!(error = %e, "final checkpoint failed; recovery will redo it"),
        }
        self.log.flush()?;
        self.log.close()?;
        lock(&self.dir_lock).take();
        Ok(())
    }
}

/// Checkpoint every WAL frame into the database file and empty the WAL.
fn truncate_wal(conn: &Connection, what: &str) -> Result<(), EngineError> {
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
    if busy != 0 {
        return Err(EngineError::Apply(format!(
            "{what} could not complete (is another connection or process using the database?)"
        )));
    }
    Ok(())
}

/// Path of the WAL file of a database.
pub fn wal_path(db_path: &Path) -> PathBuf {
    let mut s = db_path.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

fn record_from(t: CapturedTxn, epoch: u64) -> Record {
    Record {
        epoch,
        commit_time_micros: now_micros(),
        db_size_pages: t.db_size_pages,
        page_size: t.page_size,
        mark: t.mark,
        pages: t.pages,
    }
}
