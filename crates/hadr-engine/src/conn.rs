//! Opening SQLite connections with the settings every hadr connection needs.

use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};

use crate::EngineError;

/// Page cache per connection in KiB; 200 sessions × this must fit in memory.
const CACHE_KIB: i64 = 8 * 1024;

/// Page cache of the one connection holding the write permit through a
/// bulk load (COPY FROM, a table rebuild), in KiB: past the normal cache,
/// SQLite spills dirty pages to the WAL mid-transaction and reads them
/// back, and every spilled frame is captured (compressed) once more at
/// commit. One writer at a time, so this is spent once, and given back
/// when the load ends ([`bulk_cache`]).
const BULK_CACHE_KIB: i64 = 256 * 1024;

/// Give `conn` the bulk-load page cache (`on`) or its normal one again,
/// which frees the pages beyond it.
pub fn bulk_cache(conn: &Connection, on: bool) -> rusqlite::Result<()> {
    let kib = if on { BULK_CACHE_KIB } else { CACHE_KIB };
    conn.execute_batch(&format!("PRAGMA cache_size=-{kib}"))
}

/// Open a read-write connection to the database at `path`.
///
/// - `wal_autocheckpoint=0` and no checkpoint on close: hadr alone decides
///   checkpoints, and only after capture, or uncaptured frames would be lost.
/// - `synchronous=NORMAL`: commits do not fsync the WAL (the hadr log is the
///   durable copy), but checkpoints fsync the database file.
pub fn open_connection(path: &Path) -> Result<Connection, EngineError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    // Writers are serialised by hadr's write permit, so SQLite's busy handler
    // only ever waits for checkpoints and WAL restarts, which are short.
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.execute_batch(&format!(
        "PRAGMA wal_autocheckpoint=0; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-{CACHE_KIB}; PRAGMA foreign_keys=ON;"
    ))?;
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(EngineError::Apply(format!(
            "database {} is in journal mode {mode}, expected wal",
            path.display()
        )));
    }
    Ok(conn)
}
