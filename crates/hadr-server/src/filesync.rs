//! Files kept in sync through the log (docs/filesync.md): the node's side.
//!
//! A primary runs the scanner (disk → tables), a standby the materializer
//! (tables → disk), each on a thread of its own (file and SQLite I/O
//! block). A node that becomes primary first materializes the whole table,
//! and only then lets its disk become the source: a disk that lags the
//! table would otherwise revert newer content.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hadr_filesync::{Db, Settings, SyncError};
use rusqlite::{Connection, TransactionBehavior};
use tracing::{info, warn};

use crate::node::Node;

/// Left in the data directory by a standby's materializer: a node that
/// starts as primary with it finishes materializing before it scans, even
/// if the promotion that made it primary was cut short by a crash.
const STANDBY_MARKER: &str = "filesync.standby";

/// The file-sync settings of a configuration (None: no `sync_paths`).
pub fn settings(config: &crate::Config) -> Option<Settings> {
    if config.sync_paths.is_empty() {
        return None;
    }
    Some(Settings {
        roots: config.sync_roots(),
        // Validated with the configuration.
        exclude: hadr_filesync::glob_set(&config.sync_exclude).unwrap_or_default(),
        max_file_size: config.sync_max_file_size.0,
        scan_interval: config.sync_scan_interval.0,
    })
}

/// The running sync thread of a role run.
pub struct FileSync {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FileSync {
    /// Ask the thread to stop (it also gives up a wait for the write lock).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Wait (blocking) for the thread to end, at most `timeout`.
    pub fn join(mut self, timeout: Duration) {
        self.stop();
        let Some(t) = self.thread.take() else { return };
        let deadline = Instant::now() + timeout;
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if t.is_finished() {
            let _ = t.join();
        } else {
            warn!("file sync thread did not stop in time");
        }
    }
}

/// Create the synced directories that are missing (saying so in the log).
pub fn prepare(config: &crate::Config) -> Result<(), crate::NodeError> {
    let Some(settings) = settings(config) else {
        return Ok(());
    };
    for r in &settings.roots {
        if !r.path.exists() {
            std::fs::create_dir_all(&r.path).map_err(|e| {
                crate::NodeError::Role(format!(
                    "sync_paths.{}: cannot create {}: {e}",
                    r.name,
                    r.path.display()
                ))
            })?;
            info!(name = %r.name, path = %r.path.display(), "file sync: created the missing directory");
        } else if !r.path.is_dir() {
            return Err(crate::NodeError::Role(format!(
                "sync_paths.{}: {} is not a directory",
                r.name,
                r.path.display()
            )));
        }
    }
    Ok(())
}

/// Start the file sync of the node's role, if `sync_paths` is set.
pub fn start(node: &Arc<Node>) -> Result<Option<FileSync>, crate::NodeError> {
    let (Some(settings), Some(status)) = (settings(&node.config), node.file_sync.clone()) else {
        return Ok(None);
    };
    let conn = node.engine.connect()?;
    let stop = Arc::new(AtomicBool::new(false));
    let db = NodeDb {
        node: node.clone(),
        conn: Mutex::new(conn),
        cancel: stop.clone(),
    };
    let marker = node.config.data.join(STANDBY_MARKER);
    let (flag, standby, promoted) = (stop.clone(), node.is_standby(), node.config.promoted);
    let engine = node.engine.clone();
    let needs_settle = !standby && (promoted || marker.exists());
    if !needs_settle {
        node.files_ready.store(true, Ordering::SeqCst);
    }
    let ready_node = node.clone();
    let thread = std::thread::Builder::new()
        .name("hadr-filesync".into())
        .spawn(move || {
            if standby {
                if let Err(e) = std::fs::write(&marker, b"") {
                    warn!(error = %e, "file sync: cannot write {}", marker.display());
                }
                info!(roots = settings.roots.len(), "file sync: materializing the synced directories (standby)");
                hadr_filesync::materialize::run(&settings, &db, &status, &flag, &|| {
                    engine.applied_lsn()
                });
                return;
            }
            if needs_settle {
                info!("file sync: this node was a standby; writing the table onto the disk before scanning it");
                if !hadr_filesync::materialize::settle(&settings, &db, &status, &flag) {
                    return;
                }
                remove_marker(&marker);
                ready_node.files_ready.store(true, Ordering::SeqCst);
            }
            info!(roots = settings.roots.len(), "file sync: scanning the synced directories (primary)");
            hadr_filesync::watch::run(&settings, &db, &status, &flag);
        })
        .map_err(|e| crate::NodeError::Internal(e.to_string()))?;
    Ok(Some(FileSync {
        stop,
        thread: Some(thread),
    }))
}

fn remove_marker(marker: &PathBuf) {
    if let Err(e) = std::fs::remove_file(marker) {
        if e.kind() != std::io::ErrorKind::NotFound {
            warn!(error = %e, "file sync: cannot remove {}", marker.display());
        }
    }
}

/// The database as the file sync uses it: its own connection, and commits
/// made as a client's are.
struct NodeDb {
    node: Arc<Node>,
    conn: Mutex<Connection>,
    cancel: Arc<AtomicBool>,
}

impl Db for NodeDb {
    fn write(
        &self,
        f: &mut dyn FnMut(&rusqlite::Transaction<'_>) -> Result<(), SyncError>,
    ) -> Result<(), SyncError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        self.node.internal_write(&mut conn, &self.cancel, f)
    }

    fn read(
        &self,
        f: &mut dyn FnMut(&Connection) -> Result<(), SyncError>,
    ) -> Result<(), SyncError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        read_snapshot(&self.node, &conn, f)
    }

    fn refusal(&self) -> Option<String> {
        self.node.write_refusal()
    }

    fn latest_seq(&self) -> Result<i64, SyncError> {
        // One autocommit read: the latest committed state, without the
        // replay lock a snapshot with its position takes.
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        hadr_filesync::table::max_row_seq(&conn)
    }
}

/// The write lock is waited for in slices this long, so that a demotion or
/// shutdown that began meanwhile is noticed.
const LOCK_SLICE: Duration = Duration::from_millis(500);

impl Node {
    /// Run `f` in one internal write transaction, committed the way a
    /// client's commit is (crates/hadr-server/src/session/state.rs): under
    /// the write lock, then, once it is released, captured into the log,
    /// durable, and confirmed by the standbys as the sync mode says.
    pub fn internal_write(
        &self,
        conn: &mut Connection,
        cancel: &AtomicBool,
        f: &mut dyn FnMut(&rusqlite::Transaction<'_>) -> Result<(), SyncError>,
    ) -> Result<(), SyncError> {
        let deadline = Instant::now() + self.config.write_wait_timeout.0;
        let permit = loop {
            if let Some(why) = self.write_refusal() {
                return Err(SyncError::NotWritable(why));
            }
            match self.write_lock.acquire(LOCK_SLICE, cancel) {
                Ok(p) => break p,
                Err(crate::write_lock::WriteLockError::Timeout) if Instant::now() < deadline => {}
                Err(e) => return Err(SyncError::Write(e.to_string())),
            }
        };
        // A demotion may have begun while this waited.
        if let Some(why) = self.write_refusal() {
            return Err(SyncError::NotWritable(why));
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        f(&tx)?;
        tx.commit()?;
        drop(permit);
        let lsn = self
            .engine
            .capture_for_commit()
            .map_err(|e| SyncError::Write(format!("could not write the transaction log: {e}")))?;
        self.log_grew(lsn);
        self.wait_durable(lsn)
            .map_err(|e| SyncError::Write(e.message.clone()))?;
        self.wait_replicated(lsn)
            .map_err(|e| SyncError::Write(e.message.clone()))?;
        Ok(())
    }

    /// `GET /files/verify`: compare the node's synced directories with its tables.
    pub fn verify_files(&self) -> Result<hadr_admin_api::FileVerify, String> {
        let Some(settings) = settings(&self.config) else {
            return Ok(hadr_admin_api::FileVerify {
                identical: true,
                ..Default::default()
            });
        };
        let conn = self.engine.connect().map_err(|e| e.to_string())?;
        let db = ReadOnly {
            node: self,
            conn: Mutex::new(conn),
        };
        let (bad, unsynced) =
            hadr_filesync::verify::verify(&settings, &db).map_err(|e| e.to_string())?;
        let conv = |m: hadr_filesync::verify::Mismatch| hadr_admin_api::FileMismatch {
            root: m.root,
            path: m.path,
            why: m.why,
        };
        Ok(hadr_admin_api::FileVerify {
            roots: settings.roots.len(),
            identical: bad.is_empty(),
            mismatches: bad.into_iter().map(conv).collect(),
            unsynced: unsynced.into_iter().map(conv).collect(),
        })
    }

    /// The `file_sync` section of `/status`.
    pub fn file_sync_status(&self) -> Option<hadr_admin_api::FileSyncStatus> {
        let st = self.file_sync.as_ref()?;
        Some(hadr_admin_api::FileSyncStatus {
            roots: st
                .views()
                .into_iter()
                .map(|v| hadr_admin_api::FileSyncRoot {
                    name: v.name,
                    path: v.path,
                    state: v.state,
                    files: v.files,
                    bytes: v.bytes,
                    last_seq_written: v.last_seq_written,
                    last_seq_applied: v.last_seq_applied,
                    lag_seconds: v.lag_us.map(|us| us as f64 / 1e6),
                    pending: v.pending,
                    last_error: v.last_error,
                    last_error_at_micros: v.last_error_at_us,
                    problems: v
                        .problems
                        .into_iter()
                        .map(|p| hadr_admin_api::FileSyncProblem {
                            path: p.path,
                            reason: p.reason,
                        })
                        .collect(),
                    problems_total: v.problems_total,
                })
                .collect(),
            errors_total: st.errors_total.load(Ordering::Relaxed),
            bytes_total: st.bytes_total.load(Ordering::Relaxed),
        })
    }

    /// The file sync's Prometheus metrics.
    pub fn file_sync_metrics(&self, s: &mut String) {
        use std::fmt::Write;
        let Some(st) = self.file_sync_status() else {
            return;
        };
        let _ = writeln!(s, "# HELP hadr_file_sync_lag_seconds Standby: now minus when the primary wrote the last file change applied (or the oldest not applied).\n# TYPE hadr_file_sync_lag_seconds gauge");
        for r in &st.roots {
            let _ = writeln!(
                s,
                "hadr_file_sync_lag_seconds{{root=\"{}\"}} {:.6}",
                r.name,
                r.lag_seconds.unwrap_or(0.0)
            );
        }
        let _ = writeln!(s, "# HELP hadr_file_sync_errors_total File-sync errors since start.\n# TYPE hadr_file_sync_errors_total counter\nhadr_file_sync_errors_total {}", st.errors_total);
        let _ = writeln!(s, "# HELP hadr_file_sync_bytes_total File content bytes written into the tables (primary) or onto the disk (standby).\n# TYPE hadr_file_sync_bytes_total counter\nhadr_file_sync_bytes_total {}", st.bytes_total);
    }
}

/// One read transaction: on a standby, on the replayed state (replay's
/// snapshot rule); on a primary, a plain one.
fn read_snapshot(
    node: &Node,
    conn: &Connection,
    f: &mut dyn FnMut(&Connection) -> Result<(), SyncError>,
) -> Result<(), SyncError> {
    if node.is_standby() {
        node.engine
            .begin_replay_snapshot(conn)
            .map_err(|e| SyncError::Write(e.to_string()))?;
    } else {
        conn.execute_batch("BEGIN")?;
    }
    let r = f(conn);
    let _ = conn.execute_batch("ROLLBACK");
    r
}

/// Reads only (verify), on a connection of its own.
struct ReadOnly<'a> {
    node: &'a Node,
    conn: Mutex<Connection>,
}

impl Db for ReadOnly<'_> {
    fn write(
        &self,
        _f: &mut dyn FnMut(&rusqlite::Transaction<'_>) -> Result<(), SyncError>,
    ) -> Result<(), SyncError> {
        Err(SyncError::NotWritable("verification only reads".into()))
    }

    fn read(
        &self,
        f: &mut dyn FnMut(&Connection) -> Result<(), SyncError>,
    ) -> Result<(), SyncError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        read_snapshot(self.node, &conn, f)
    }

    fn refusal(&self) -> Option<String> {
        Some("verification only reads".into())
    }
}
