//! Page hashes: one digest over every page, equal on nodes holding the same data.

use rusqlite::Connection;

use crate::EngineError;

/// A digest of a database's pages.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PageHash {
    /// Number of pages hashed.
    pub pages: u32,
    /// Hex BLAKE3 digest.
    pub hash: String,
}

/// Hash every page visible to `conn`'s current read snapshot.
///
/// Page 1 bytes 24..28 (file change counter) and 92..100 (version-valid-for
/// and SQLite version number) are zeroed first: SQLite rewrites them on every
/// commit, so nodes with identical data legitimately differ there.
pub fn page_hash(conn: &Connection) -> Result<PageHash, EngineError> {
    let mut stmt = conn.prepare("SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno")?;
    let mut rows = stmt.query([])?;
    let mut hasher = blake3::Hasher::new();
    let mut pages = 0u32;
    while let Some(row) = rows.next()? {
        let pgno: u32 = row.get(0)?;
        let data = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
        hasher.update(&pgno.to_le_bytes());
        if pgno == 1 && data.len() >= 100 {
            let mut p1 = data.to_vec();
            p1[24..28].fill(0);
            p1[92..100].fill(0);
            hasher.update(&p1);
        } else {
            hasher.update(data);
        }
        pages += 1;
    }
    Ok(PageHash {
        pages,
        hash: hasher.finalize().to_hex().to_string(),
    })
}
