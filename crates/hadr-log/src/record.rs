//! Record encoding: one committed SQLite transaction as a self-checking byte frame.

use crate::Lsn;

/// Record magic, "HREC" read as a little-endian u32.
pub(crate) const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"HREC");
/// Record format version written by this build.
pub(crate) const RECORD_VERSION: u8 = 1;
/// Length of the fixed record header.
pub(crate) const HEADER_LEN: usize = 68;
/// Bytes of the header needed to learn a record's total length.
pub(crate) const PREFIX_LEN: usize = 12;
/// Length of the trailing CRC.
const CRC_LEN: usize = 4;
/// Per-page header: pgno u32, encoding u8, len u32.
const PAGE_HEADER_LEN: usize = 9;
/// Upper bound on a record, so a corrupt length never drives a huge allocation.
pub(crate) const MAX_RECORD_LEN: usize = 1 << 30;
/// Smallest possible record (no pages).
pub(crate) const MIN_RECORD_LEN: usize = HEADER_LEN + CRC_LEN;

const ENC_RAW: u8 = 0;
const ENC_LZ4: u8 = 1;
/// Reserved for a future XOR-with-previous-version delta encoding.
const ENC_XOR_DELTA: u8 = 2;

const OFF_TOTAL_LEN: usize = 8;
const OFF_LSN: usize = 12;

/// Why a byte buffer is not a valid encoded record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The buffer ends before the record does; `needed` is the minimum total length required.
    #[error("record incomplete: need at least {needed} bytes")]
    Incomplete {
        /// Minimum number of bytes (from the start of the record) needed to go further.
        needed: usize,
    },
    /// The record does not start with the record magic.
    #[error("bad record magic")]
    BadMagic,
    /// The record was written by a newer hadr with an unknown record format.
    #[error("record format version {0} is not supported (this hadr supports up to {max})", max = RECORD_VERSION)]
    UnsupportedVersion(u8),
    /// The CRC32C stored in the record does not match its contents.
    #[error("record CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc {
        /// CRC stored at the end of the record.
        stored: u32,
        /// CRC computed over the record bytes.
        computed: u32,
    },
    /// The record is intact but belongs at a different LSN.
    #[error("record LSN mismatch: record says {stored}, expected {expected}")]
    LsnMismatch {
        /// LSN stored inside the record.
        stored: Lsn,
        /// LSN the record was read at.
        expected: Lsn,
    },
    /// A field holds an impossible value.
    #[error("malformed record: {0}")]
    Malformed(String),
}

/// Why a [`Record`] cannot be encoded into bytes that [`Record::decode`] would accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The page size is not one SQLite can use.
    #[error("page_size {0} is not a power of two in 512..=65536")]
    PageSize(u32),
    /// The page count does not fit the record's u32 field.
    #[error("too many pages ({0})")]
    TooManyPages(usize),
    /// SQLite page numbers start at 1.
    #[error("page number 0 is invalid")]
    PageZero,
    /// A page image is not exactly one page long.
    #[error("page {pgno} has {len} bytes but page_size is {page_size}")]
    PageLen {
        /// Page number of the offending page.
        pgno: u32,
        /// Length of its image.
        len: usize,
        /// The record's page size.
        page_size: u32,
    },
    /// Even uncompressed the record could exceed the size `decode` accepts.
    #[error("record would be up to {worst} bytes, over the {max} byte limit", max = MAX_RECORD_LEN)]
    TooLarge {
        /// Worst-case encoded length (every page stored raw).
        worst: u64,
    },
}

/// Where a record's commit frame sits in the SQLite -wal file of the node that captured it (all zero = none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureMark {
    /// WAL header salt 1.
    pub salt1: u32,
    /// WAL header salt 2.
    pub salt2: u32,
    /// Frame number just after the commit frame.
    pub frame_end: u32,
    /// Running WAL checksum word 1 after the commit frame.
    pub cksum1: u32,
    /// Running WAL checksum word 2 after the commit frame.
    pub cksum2: u32,
}

/// A full page image changed by a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// SQLite page number (1-based).
    pub pgno: u32,
    /// Page contents; `data.len() == page_size`.
    pub data: Vec<u8>,
}

/// One committed transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// HADR epoch (term) of the primary that produced the record.
    pub epoch: u64,
    /// Commit time, unix microseconds.
    pub commit_time_micros: u64,
    /// Database size in pages after this transaction.
    pub db_size_pages: u32,
    /// SQLite page size in bytes.
    pub page_size: u32,
    /// Position of the commit frame in the capturing node's -wal file.
    pub mark: CaptureMark,
    /// Changed pages.
    pub pages: Vec<Page>,
}

fn page_size_ok(page_size: u32) -> bool {
    page_size.is_power_of_two() && (512..=65536).contains(&page_size)
}

impl Record {
    /// Encoded bytes of the record placed at `lsn`.
    pub fn encode(&self, lsn: Lsn) -> Vec<u8> {
        let mut buf = self.encode_unsealed();
        seal(&mut buf, lsn);
        buf
    }

    /// Decode one record from the start of `buf`; checks magic, version, CRC, and that its stored LSN equals `lsn`. Returns the record and its encoded length. Err(RecordError::Incomplete{needed}) when buf is too short.
    pub fn decode(buf: &[u8], lsn: Lsn) -> Result<(Record, usize), RecordError> {
        let total = check_frame(buf, lsn)?;
        let rec = parse_body(&buf[..total - CRC_LEN])?;
        Ok((rec, total))
    }

    /// Sum of page bytes (uncompressed), for metrics.
    pub fn page_bytes(&self) -> u64 {
        self.pages.iter().map(|p| p.data.len() as u64).sum()
    }

    /// Check that the record can be encoded into something `decode` accepts.
    pub(crate) fn validate(&self) -> Result<(), EncodeError> {
        if !page_size_ok(self.page_size) {
            return Err(EncodeError::PageSize(self.page_size));
        }
        if u32::try_from(self.pages.len()).is_err() {
            return Err(EncodeError::TooManyPages(self.pages.len()));
        }
        let mut worst = MIN_RECORD_LEN as u64;
        for p in &self.pages {
            if p.pgno == 0 {
                return Err(EncodeError::PageZero);
            }
            if p.data.len() != self.page_size as usize {
                return Err(EncodeError::PageLen {
                    pgno: p.pgno,
                    len: p.data.len(),
                    page_size: self.page_size,
                });
            }
            worst += (PAGE_HEADER_LEN + p.data.len()) as u64;
        }
        if worst > MAX_RECORD_LEN as u64 {
            return Err(EncodeError::TooLarge { worst });
        }
        Ok(())
    }

    /// Encode everything but the LSN and CRC, so the costly part (compression) can run outside the append lock.
    pub(crate) fn encode_unsealed(&self) -> Vec<u8> {
        let cap =
            HEADER_LEN + CRC_LEN + self.pages.len() * PAGE_HEADER_LEN + self.page_bytes() as usize;
        let mut buf = Vec::with_capacity(cap);
        buf.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
        buf.push(RECORD_VERSION);
        buf.push(0); // flags
        buf.extend_from_slice(&0u16.to_le_bytes()); // reserved
        buf.extend_from_slice(&0u32.to_le_bytes()); // total_len, patched below
        buf.extend_from_slice(&0u64.to_le_bytes()); // lsn, patched by seal()
        buf.extend_from_slice(&self.epoch.to_le_bytes());
        buf.extend_from_slice(&self.commit_time_micros.to_le_bytes());
        buf.extend_from_slice(&self.db_size_pages.to_le_bytes());
        buf.extend_from_slice(&self.page_size.to_le_bytes());
        for w in [
            self.mark.salt1,
            self.mark.salt2,
            self.mark.frame_end,
            self.mark.cksum1,
            self.mark.cksum2,
        ] {
            buf.extend_from_slice(&w.to_le_bytes());
        }
        // Saturating: validate() rejects > u32::MAX pages before anything is written.
        let n_pages = u32::try_from(self.pages.len()).unwrap_or(u32::MAX);
        buf.extend_from_slice(&n_pages.to_le_bytes());
        debug_assert_eq!(buf.len(), HEADER_LEN);
        let compressed = compress_pages(&self.pages);
        for (p, compressed) in self.pages.iter().zip(compressed) {
            buf.extend_from_slice(&p.pgno.to_le_bytes());
            let (enc, bytes): (u8, &[u8]) = if compressed.len() < p.data.len() {
                (ENC_LZ4, &compressed)
            } else {
                (ENC_RAW, &p.data)
            };
            buf.push(enc);
            buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            buf.extend_from_slice(bytes);
        }
        let total = (buf.len() + CRC_LEN) as u32;
        buf[OFF_TOTAL_LEN..OFF_TOTAL_LEN + 4].copy_from_slice(&total.to_le_bytes());
        buf
    }
}

/// Records with at least this many pages are compressed on every core.
const PARALLEL_PAGES: usize = 256;

/// Each page, LZ4-compressed. A big record (a bulk load, a table rebuild)
/// is compressed in as many pieces as there are cores: it is encoded
/// on the committing session's thread, and a 50 MiB load spent 8% of
/// that thread's time here.
fn compress_pages(pages: &[Page]) -> Vec<Vec<u8>> {
    // Asked once: available_parallelism reads the cgroup's CPU limit from
    // /sys on every call, which on the commit path of small records cost
    // more than their compression.
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let threads = if pages.len() < PARALLEL_PAGES {
        1
    } else {
        *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    };
    if threads < 2 {
        return pages
            .iter()
            .map(|p| lz4_flex::block::compress(&p.data))
            .collect();
    }
    let chunk = pages.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = pages
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|p| lz4_flex::block::compress(&p.data))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|h| {
                // A panic in lz4 is a bug; it surfaces here as it would inline.
                h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
            })
            .collect()
    })
}

/// Write `lsn` into an unsealed record and append its CRC.
pub(crate) fn seal(buf: &mut Vec<u8>, lsn: Lsn) {
    buf[OFF_LSN..OFF_LSN + 8].copy_from_slice(&lsn.to_le_bytes());
    let crc = crc32c::crc32c(buf);
    buf.extend_from_slice(&crc.to_le_bytes());
}

fn le_u32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// Validate the frame (magic, version, length, CRC, LSN) without parsing pages; returns its total length.
pub(crate) fn check_frame(buf: &[u8], lsn: Lsn) -> Result<usize, RecordError> {
    let total = frame_len(buf)?;
    if buf.len() < total {
        return Err(RecordError::Incomplete { needed: total });
    }
    let body = &buf[..total - CRC_LEN];
    let stored = le_u32(buf, total - CRC_LEN);
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(RecordError::Crc { stored, computed });
    }
    let stored_lsn = le_u64(buf, OFF_LSN);
    if stored_lsn != lsn {
        return Err(RecordError::LsnMismatch {
            stored: stored_lsn,
            expected: lsn,
        });
    }
    Ok(total)
}

/// Read the total length from the first PREFIX_LEN bytes, checking magic and version on the way.
pub(crate) fn frame_len(buf: &[u8]) -> Result<usize, RecordError> {
    if buf.len() < PREFIX_LEN {
        return Err(RecordError::Incomplete {
            needed: MIN_RECORD_LEN,
        });
    }
    if le_u32(buf, 0) != RECORD_MAGIC {
        return Err(RecordError::BadMagic);
    }
    let version = buf[4];
    if version != RECORD_VERSION {
        return Err(RecordError::UnsupportedVersion(version));
    }
    let total = le_u32(buf, OFF_TOTAL_LEN) as usize;
    if !(MIN_RECORD_LEN..=MAX_RECORD_LEN).contains(&total) {
        return Err(RecordError::Malformed(format!(
            "total length {total} outside {MIN_RECORD_LEN}..={MAX_RECORD_LEN}"
        )));
    }
    Ok(total)
}

/// Parse a CRC-verified record body (everything before the CRC).
fn parse_body(body: &[u8]) -> Result<Record, RecordError> {
    if body.len() < HEADER_LEN {
        return Err(RecordError::Malformed(format!(
            "total length {} shorter than the header",
            body.len() + CRC_LEN
        )));
    }
    let flags = body[5];
    let reserved = u16::from_le_bytes([body[6], body[7]]);
    if flags != 0 || reserved != 0 {
        return Err(RecordError::Malformed(format!(
            "unknown flags {flags:#x} / reserved {reserved:#x}"
        )));
    }
    let epoch = le_u64(body, 20);
    let commit_time_micros = le_u64(body, 28);
    let db_size_pages = le_u32(body, 36);
    let page_size = le_u32(body, 40);
    let mark = CaptureMark {
        salt1: le_u32(body, 44),
        salt2: le_u32(body, 48),
        frame_end: le_u32(body, 52),
        cksum1: le_u32(body, 56),
        cksum2: le_u32(body, 60),
    };
    let n_pages = le_u32(body, 64) as usize;
    if !page_size_ok(page_size) {
        return Err(RecordError::Malformed(format!(
            "page_size {page_size} is not a power of two in 512..=65536"
        )));
    }
    // Every page costs at least its header plus one byte, which bounds n_pages by the
    // record length and so bounds the allocations below.
    let room = body.len() - HEADER_LEN;
    if n_pages > room / (PAGE_HEADER_LEN + 1) {
        return Err(RecordError::Malformed(format!(
            "{n_pages} pages cannot fit in {room} bytes"
        )));
    }
    let mut pages = Vec::with_capacity(n_pages);
    let mut off = HEADER_LEN;
    for i in 0..n_pages {
        if body.len() - off < PAGE_HEADER_LEN {
            return Err(RecordError::Malformed(format!(
                "page {i} header runs past the record end"
            )));
        }
        let pgno = le_u32(body, off);
        let enc = body[off + 4];
        let len = le_u32(body, off + 5) as usize;
        off += PAGE_HEADER_LEN;
        if pgno == 0 {
            return Err(RecordError::Malformed(format!(
                "page {i} has page number 0"
            )));
        }
        if len > body.len() - off {
            return Err(RecordError::Malformed(format!(
                "page {pgno} claims {len} bytes, past the record end"
            )));
        }
        let bytes = &body[off..off + len];
        off += len;
        let data = match enc {
            ENC_RAW => {
                if len != page_size as usize {
                    return Err(RecordError::Malformed(format!(
                        "raw page {pgno} has {len} bytes, page_size is {page_size}"
                    )));
                }
                bytes.to_vec()
            }
            ENC_LZ4 => {
                let mut out = vec![0u8; page_size as usize];
                let n = lz4_flex::block::decompress_into(bytes, &mut out).map_err(|e| {
                    RecordError::Malformed(format!("page {pgno}: lz4 decompression failed: {e}"))
                })?;
                if n != out.len() {
                    return Err(RecordError::Malformed(format!(
                        "page {pgno} decompressed to {n} bytes, page_size is {page_size}"
                    )));
                }
                out
            }
            ENC_XOR_DELTA => {
                return Err(RecordError::Malformed(format!(
                    "page {pgno} uses the XOR delta encoding, which this hadr does not support"
                )))
            }
            other => {
                return Err(RecordError::Malformed(format!(
                    "page {pgno} has unknown encoding {other}"
                )))
            }
        };
        pages.push(Page { pgno, data });
    }
    if off != body.len() {
        return Err(RecordError::Malformed(format!(
            "{} unexpected bytes after the last page",
            body.len() - off
        )));
    }
    Ok(Record {
        epoch,
        commit_time_micros,
        db_size_pages,
        page_size,
        mark,
        pages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            epoch: 3,
            commit_time_micros: 1_700_000_000_000_000,
            db_size_pages: 10,
            page_size: 4096,
            mark: CaptureMark {
                salt1: 1,
                salt2: 2,
                frame_end: 3,
                cksum1: 4,
                cksum2: 5,
            },
            pages: vec![
                Page {
                    pgno: 1,
                    data: vec![7u8; 4096],
                },
                Page {
                    pgno: 9,
                    data: (0..4096u32)
                        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                        .collect(),
                },
            ],
        }
    }

    #[test]
    fn round_trip_and_compression_choice() {
        let r = sample();
        let enc = r.encode(1234);
        // The constant page must be compressed, so the record is well below two raw pages.
        assert!(enc.len() < HEADER_LEN + 2 * 4096);
        let (d, n) = Record::decode(&enc, 1234).expect("decode");
        assert_eq!(n, enc.len());
        assert_eq!(d, r);
        assert_eq!(r.page_bytes(), 8192);
    }

    #[test]
    fn a_big_record_compressed_in_pieces_round_trips_in_order() {
        let mut r = sample();
        r.db_size_pages = 1000;
        r.pages = (1..=(PARALLEL_PAGES as u32 * 3 + 7))
            .map(|pgno| Page {
                pgno,
                // Some compressible, some not, each page its own.
                data: (0..4096u32)
                    .map(|i| {
                        if pgno % 3 == 0 {
                            (pgno % 251) as u8
                        } else {
                            (i.wrapping_mul(2654435761).wrapping_add(pgno) >> 13) as u8
                        }
                    })
                    .collect(),
            })
            .collect();
        let enc = r.encode(77);
        let (d, n) = Record::decode(&enc, 77).expect("decode");
        assert_eq!(n, enc.len());
        assert_eq!(d, r);
    }

    #[test]
    fn lsn_mismatch_detected() {
        let enc = sample().encode(10);
        assert_eq!(
            Record::decode(&enc, 11),
            Err(RecordError::LsnMismatch {
                stored: 10,
                expected: 11
            })
        );
    }

    #[test]
    fn huge_length_is_malformed_not_allocated() {
        let mut enc = sample().encode(0);
        enc[OFF_TOTAL_LEN..OFF_TOTAL_LEN + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Record::decode(&enc, 0),
            Err(RecordError::Malformed(_))
        ));
    }

    #[test]
    fn bad_page_size_and_pgno_rejected_even_with_valid_crc() {
        let mut r = sample();
        r.page_size = 1000;
        r.pages.clear();
        assert!(matches!(
            Record::decode(&r.encode(0), 0),
            Err(RecordError::Malformed(_))
        ));
        let mut r = sample();
        r.pages[0].pgno = 0;
        assert!(matches!(
            Record::decode(&r.encode(0), 0),
            Err(RecordError::Malformed(_))
        ));
        assert_eq!(r.validate(), Err(EncodeError::PageZero));
    }

    #[test]
    fn newer_version_rejected() {
        let mut enc = sample().encode(0);
        enc[4] = 2;
        assert_eq!(
            Record::decode(&enc, 0),
            Err(RecordError::UnsupportedVersion(2))
        );
    }
}
