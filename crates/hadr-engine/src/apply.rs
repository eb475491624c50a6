//! Apply: writing log records' page images into a database through `sqlite_dbpage`.
//!
//! Used by crash recovery, by tests that replay captured records onto a copy,
//! and by a standby's replay. Page images are idempotent and the last image of
//! a page wins, so replaying a record twice, or older records before newer
//! ones, always converges on the state at the last record.

use std::collections::BTreeMap;

use hadr_log::Record;
use rusqlite::{params, Connection};

use crate::EngineError;

/// Pages written per INSERT statement; bounded so that statements stay small.
const PAGES_PER_STATEMENT: usize = 64;

/// The final page images and size of a batch of records.
#[derive(Default)]
pub struct PageBatch {
    pages: BTreeMap<u32, Vec<u8>>,
    db_size: Option<u32>,
    page_size: Option<u32>,
    records: usize,
}

impl PageBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fold one record into the batch: its pages replace older images, and a
    /// shrink drops pending images beyond the new end.
    /// Takes the record by value: its page images move into the batch
    /// instead of being copied (replay runs at hundreds of MB/s).
    pub fn add(&mut self, rec: Record) -> Result<(), EngineError> {
        if let Some(ps) = self.page_size {
            if ps != rec.page_size {
                return Err(EngineError::Apply(format!(
                    "record page size {} differs from batch page size {ps}",
                    rec.page_size
                )));
            }
        }
        self.page_size = Some(rec.page_size);
        let size = rec.db_size_pages;
        if self.db_size.is_some_and(|old| size < old) {
            self.pages.retain(|p, _| *p <= size);
        }
        for p in rec.pages {
            if p.pgno == 0 || p.pgno > size {
                continue;
            }
            if p.data.len() != rec.page_size as usize {
                return Err(EngineError::Apply(format!(
                    "page {} has {} bytes, expected {}",
                    p.pgno,
                    p.data.len(),
                    rec.page_size
                )));
            }
            self.pages.insert(p.pgno, p.data);
        }
        self.db_size = Some(size);
        self.records += 1;
        Ok(())
    }

    /// Number of records folded in.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Bytes of page data pending.
    pub fn page_bytes(&self) -> usize {
        self.pages.values().map(Vec::len).sum()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Write the batch in one write transaction on `conn`.
    ///
    /// Page 1 goes last, in the same statement as the truncation row: page 1
    /// holds the schema cookie, and a statement prepared after page 1 changed
    /// would re-read a schema whose other pages are not written yet. The
    /// truncation row must be the very last write, because sqlite_dbpage
    /// cancels a pending truncation when another page is written after it.
    pub fn apply(self, conn: &mut Connection) -> Result<(), EngineError> {
        let Some(db_size) = self.db_size else {
            return Ok(());
        };
        let tx = conn.transaction()?;
        {
            let others: Vec<(&u32, &Vec<u8>)> =
                self.pages.iter().filter(|(p, _)| **p != 1).collect();
            for chunk in others.chunks(PAGES_PER_STATEMENT) {
                let mut sql = String::from("INSERT INTO sqlite_dbpage(pgno, data) VALUES ");
                for i in 0..chunk.len() {
                    if i > 0 {
                        sql.push(',');
                    }
                    sql.push_str(&format!("(?{}, ?{})", 2 * i + 1, 2 * i + 2));
                }
                let mut stmt = tx.prepare_cached(&sql)?;
                for (i, (pgno, data)) in chunk.iter().enumerate() {
                    stmt.raw_bind_parameter(2 * i + 1, **pgno)?;
                    stmt.raw_bind_parameter(2 * i + 2, data.as_slice())?;
                }
                stmt.raw_execute()?;
            }
            match self.pages.get(&1) {
                Some(page1) => {
                    tx.execute(
                        "INSERT INTO sqlite_dbpage(pgno, data) VALUES (1, ?1), (?2, NULL)",
                        params![page1.as_slice(), db_size + 1],
                    )?;
                }
                None => {
                    tx.execute(
                        "INSERT INTO sqlite_dbpage(pgno, data) VALUES (?1, NULL)",
                        params![db_size + 1],
                    )?;
                }
            }
        }
        tx.commit()?;
        // The applier never runs queries, but its page cache now holds images
        // parsed before the writes; drop them so nothing stale lingers.
        conn.release_memory()?;
        Ok(())
    }
}

/// Apply records in order, in one transaction.
pub fn apply_records<'a>(
    conn: &mut Connection,
    records: impl IntoIterator<Item = &'a Record>,
) -> Result<usize, EngineError> {
    let mut batch = PageBatch::new();
    for r in records {
        batch.add(r.clone())?;
    }
    let n = batch.records();
    batch.apply(conn)?;
    Ok(n)
}
