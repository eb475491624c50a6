//! Capture: turning new committed frames of SQLite's `-wal` file into log records.
//!
//! We read the WAL file ourselves rather than hooking SQLite's pager: the file
//! format is stable and documented (https://sqlite.org/fileformat2.html#walformat),
//! and reading it after the commit keeps capture out of SQLite's internals.
//! A frame belongs to the current WAL generation only if its salts match the
//! header and its cumulative checksum chains from the previous frame; a
//! transaction exists only once its commit frame (non-zero db size) is valid.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use hadr_log::{CaptureMark, Page};

use crate::EngineError;

const WAL_HEADER: usize = 32;
const FRAME_HEADER: usize = 24;
const WAL_MAGIC_LE: u32 = 0x377f_0682;
const WAL_MAGIC_BE: u32 = 0x377f_0683;

/// One committed transaction found in the WAL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedTxn {
    /// Database size in pages after the commit.
    pub db_size_pages: u32,
    /// Page size of the database.
    pub page_size: u32,
    /// The last image of every page the transaction wrote, by page number.
    pub pages: Vec<Page>,
    /// Where the commit frame sits, so that recovery knows what was captured.
    pub mark: CaptureMark,
}

#[derive(Clone, Copy, Debug)]
struct Header {
    big_endian_cksum: bool,
    page_size: u32,
    salt1: u32,
    salt2: u32,
    cksum: (u32, u32),
}

/// Reads committed transactions from a WAL file, remembering how far it got.
pub struct WalCapture {
    path: PathBuf,
    /// Kept open between captures: SQLite truncates and rewrites the WAL in
    /// place but never replaces the file while a connection has it open.
    file: Option<File>,
    /// Position after the last captured commit frame: salts, frame count, running checksum.
    cursor: Option<CaptureMark>,
    /// Frames read (committed or not) beyond the cursor in the last pass; a
    /// metric for how much an in-flight transaction made us re-read.
    pub last_scan_frames: u64,
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing from `s`.
fn wal_checksum(big_endian: bool, data: &[u8], s: (u32, u32)) -> (u32, u32) {
    let (mut s0, mut s1) = s;
    for chunk in data.chunks_exact(8) {
        let (x0, x1) = if big_endian {
            (be32(&chunk[0..4]), be32(&chunk[4..8]))
        } else {
            (
                u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]),
            )
        };
        s0 = s0.wrapping_add(x0).wrapping_add(s1);
        s1 = s1.wrapping_add(x1).wrapping_add(s0);
    }
    (s0, s1)
}

impl WalCapture {
    /// A capturer for `wal_path` that resumes after `mark` (None: from the start of
    /// whatever generation the WAL holds).
    pub fn new(wal_path: PathBuf, mark: Option<CaptureMark>) -> Self {
        WalCapture {
            path: wal_path,
            file: None,
            cursor: mark.filter(|m| *m != CaptureMark::default()),
            last_scan_frames: 0,
        }
    }

    /// Forget the position: the WAL was truncated, so the next generation is all new.
    pub fn reset(&mut self) {
        self.cursor = None;
        self.file = None;
    }

    /// The current position.
    pub fn cursor(&self) -> Option<CaptureMark> {
        self.cursor
    }

    fn read_header(file: &File) -> Result<Option<Header>, std::io::Error> {
        let mut h = [0u8; WAL_HEADER];
        match file.read_exact_at(&mut h, 0) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let magic = be32(&h[0..4]);
        if magic != WAL_MAGIC_LE && magic != WAL_MAGIC_BE {
            return Ok(None);
        }
        let big_endian_cksum = magic == WAL_MAGIC_BE;
        let page_size = be32(&h[8..12]);
        // SQLite stores 65536 as 1 in some places; in the WAL header it is the real value.
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Ok(None);
        }
        let cksum = (be32(&h[24..28]), be32(&h[28..32]));
        // A header whose checksum fails means SQLite treats the WAL as empty.
        if wal_checksum(big_endian_cksum, &h[0..24], (0, 0)) != cksum {
            return Ok(None);
        }
        Ok(Some(Header {
            big_endian_cksum,
            page_size,
            salt1: be32(&h[16..20]),
            salt2: be32(&h[20..24]),
            cksum,
        }))
    }

    /// Read every transaction committed after the cursor and advance past them.
    ///
    /// Must run while no other connection can write (the caller holds the write
    /// permit), so the WAL is not being appended to underneath us.
    pub fn capture(&mut self) -> Result<Vec<CapturedTxn>, EngineError> {
        let io = |e: std::io::Error| EngineError::Io {
            what: format!("reading {}", self.path.display()),
            source: e,
        };
        if self.file.is_none() {
            match File::open(&self.path) {
                Ok(f) => self.file = Some(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(io(e)),
            }
        }
        let Some(file) = self.file.as_ref() else {
            return Ok(Vec::new());
        };
        let Some(hdr) = Self::read_header(file).map_err(io)? else {
            return Ok(Vec::new());
        };
        let (mut frame, mut sum) = match self.cursor {
            Some(c) if c.salt1 == hdr.salt1 && c.salt2 == hdr.salt2 => {
                (c.frame_end, (c.cksum1, c.cksum2))
            }
            // A new generation: everything in it came after the last capture,
            // because the WAL only restarts after a checkpoint we ran post-capture.
            _ => (0, hdr.cksum),
        };
        let psz = hdr.page_size as usize;
        let frame_len = FRAME_HEADER + psz;
        let len = file.metadata().map_err(io)?.len();
        let mut buf = vec![0u8; frame_len];
        let mut pending: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        let mut out = Vec::new();
        let mut scanned = 0u64;
        loop {
            let off = WAL_HEADER as u64 + u64::from(frame) * frame_len as u64;
            if off + frame_len as u64 > len {
                break;
            }
            file.read_exact_at(&mut buf, off).map_err(io)?;
            if be32(&buf[8..12]) != hdr.salt1 || be32(&buf[12..16]) != hdr.salt2 {
                break;
            }
            let s = wal_checksum(hdr.big_endian_cksum, &buf[0..8], sum);
            let s = wal_checksum(hdr.big_endian_cksum, &buf[FRAME_HEADER..], s);
            if s != (be32(&buf[16..20]), be32(&buf[20..24])) {
                break;
            }
            scanned += 1;
            sum = s;
            frame += 1;
            let pgno = be32(&buf[0..4]);
            let commit_size = be32(&buf[4..8]);
            if pgno == 0 {
                break;
            }
            pending.insert(pgno, buf[FRAME_HEADER..].to_vec());
            if commit_size != 0 {
                let pages = std::mem::take(&mut pending)
                    .into_iter()
                    // Frames for pages beyond the new end belong to a shrink (VACUUM);
                    // the truncation, not their images, is what a replica must apply.
                    .filter(|(p, _)| *p <= commit_size)
                    .map(|(pgno, data)| Page { pgno, data })
                    .collect();
                let mark = CaptureMark {
                    salt1: hdr.salt1,
                    salt2: hdr.salt2,
                    frame_end: frame,
                    cksum1: sum.0,
                    cksum2: sum.1,
                };
                out.push(CapturedTxn {
                    db_size_pages: commit_size,
                    page_size: hdr.page_size,
                    pages,
                    mark,
                });
                self.cursor = Some(mark);
            }
        }
        self.last_scan_frames = scanned;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_sqlite_reference_vector() {
        // Eight zero bytes from (0,0) stay zero; one word pair adds in the documented order.
        assert_eq!(wal_checksum(false, &[0u8; 8], (0, 0)), (0, 0));
        let data = [1, 0, 0, 0, 2, 0, 0, 0];
        // s0 = 0 + 1 + 0 = 1; s1 = 0 + 2 + 1 = 3
        assert_eq!(wal_checksum(false, &data, (0, 0)), (1, 3));
        assert_eq!(
            wal_checksum(true, &data, (0, 0)),
            (0x0100_0000, 0x0300_0000)
        );
    }
}
