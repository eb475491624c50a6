//! Segment files: naming, headers, listing, and the sequential record scan shared by open and verify.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{LogError, RecordError};
use crate::record::{check_frame, frame_len, Record, PREFIX_LEN, RECORD_MAGIC};
use crate::Lsn;

/// Size of the segment header in bytes.
pub(crate) const SEG_HEADER_LEN: u64 = 32;
const SEG_MAGIC: [u8; 8] = *b"HADRLOG\0";
/// Segment format version written by this build.
pub(crate) const SEG_VERSION: u32 = 1;
const SEG_EXT: &str = "hlog";
const TMP_SUFFIX: &str = ".hlog.tmp";

/// A segment file and the LSN range it holds.
#[derive(Clone, Debug)]
pub(crate) struct SegMeta {
    /// LSN of the first byte after the header.
    pub start: Lsn,
    /// LSN just past the last byte in the file.
    pub end: Lsn,
    /// Path of the file.
    pub path: PathBuf,
}

impl SegMeta {
    /// Size of the file in bytes.
    pub fn file_len(&self) -> u64 {
        SEG_HEADER_LEN + (self.end - self.start)
    }

    /// File offset of `lsn`, which must lie in `start..=end`.
    pub fn file_offset(&self, lsn: Lsn) -> u64 {
        SEG_HEADER_LEN + (lsn - self.start)
    }
}

/// File name of the segment starting at `start`.
pub(crate) fn segment_name(start: Lsn) -> String {
    format!("{start:016x}.{SEG_EXT}")
}

fn parse_segment_name(name: &str) -> Option<Lsn> {
    let hex = name.strip_suffix(".hlog")?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

fn encode_header(start: Lsn) -> [u8; SEG_HEADER_LEN as usize] {
    let mut h = [0u8; SEG_HEADER_LEN as usize];
    h[0..8].copy_from_slice(&SEG_MAGIC);
    h[8..12].copy_from_slice(&SEG_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&start.to_le_bytes());
    // 20..28 reserved (zero).
    let crc = crc32c::crc32c(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Validate a segment header and return the start LSN it records.
fn check_header(path: &Path, h: &[u8]) -> Result<Lsn, LogError> {
    if h.len() < SEG_HEADER_LEN as usize {
        return Err(LogError::corrupt(
            path,
            0,
            format!("file is {} bytes, shorter than the segment header", h.len()),
        ));
    }
    if h[0..8] != SEG_MAGIC {
        return Err(LogError::corrupt(path, 0, "bad segment magic"));
    }
    let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    // The version is checked before the CRC because a newer format may lay the header out differently.
    if version > SEG_VERSION {
        return Err(LogError::UnsupportedSegmentVersion {
            segment: path.to_path_buf(),
            version,
            supported: SEG_VERSION,
        });
    }
    if version == 0 {
        return Err(LogError::corrupt(path, 8, "segment format version 0"));
    }
    let stored = u32::from_le_bytes([h[28], h[29], h[30], h[31]]);
    let computed = crc32c::crc32c(&h[..28]);
    if stored != computed {
        return Err(LogError::corrupt(
            path,
            28,
            format!(
                "segment header CRC mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
        ));
    }
    let mut s = [0u8; 8];
    s.copy_from_slice(&h[12..20]);
    Ok(u64::from_le_bytes(s))
}

/// fsync a directory so created, renamed or removed entries are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io(dir, e))
}

/// Create the segment starting at `start`, header included, and return it open for reading and writing.
///
/// The header is written to a temporary name and renamed into place so a segment file with the
/// real name always has a complete header. The caller fsyncs the directory.
pub(crate) fn create_segment_file(
    dir: &Path,
    start: Lsn,
    sync: bool,
) -> Result<(File, PathBuf), LogError> {
    let path = dir.join(segment_name(start));
    let tmp = dir.join(format!("{start:016x}{TMP_SUFFIX}"));
    let result = (|| {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(&encode_header(start))?;
        if sync {
            f.sync_data()?;
        }
        std::fs::rename(&tmp, &path)?;
        Ok(f)
    })();
    match result {
        Ok(f) => Ok((f, path)),
        Err(e) => {
            // Best effort: a leftover .tmp is also removed by the next open.
            let _ = std::fs::remove_file(&tmp);
            Err(LogError::io(&path, e))
        }
    }
}

/// List, validate and chain-check the segments of `dir`, oldest first.
pub(crate) fn list_segments(dir: &Path, remove_tmp: bool) -> Result<Vec<SegMeta>, LogError> {
    let rd = std::fs::read_dir(dir).map_err(|e| LogError::io(dir, e))?;
    let mut found = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| LogError::io(dir, e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(start) = parse_segment_name(name) {
            found.push((start, ent.path()));
        } else if remove_tmp && name.ends_with(TMP_SUFFIX) {
            // A crash during segment creation; it never held records.
            tracing::warn!(path = %ent.path().display(), "removing unfinished log segment");
            std::fs::remove_file(ent.path()).map_err(|e| LogError::io(ent.path(), e))?;
        }
    }
    found.sort_by_key(|(s, _)| *s);
    let mut segs: Vec<SegMeta> = Vec::with_capacity(found.len());
    for (name_start, path) in found {
        let f = File::open(&path).map_err(|e| LogError::io(&path, e))?;
        let len = f.metadata().map_err(|e| LogError::io(&path, e))?.len();
        let mut h = vec![0u8; SEG_HEADER_LEN.min(len) as usize];
        f.read_exact_at(&mut h, 0)
            .map_err(|e| LogError::io(&path, e))?;
        let start = check_header(&path, &h)?;
        if start != name_start {
            return Err(LogError::corrupt(
                &path,
                12,
                format!(
                    "header says the segment starts at LSN {start}, file name says {name_start}"
                ),
            ));
        }
        if let Some(prev) = segs.last() {
            if prev.end != start {
                let what = if start > prev.end { "gap" } else { "overlap" };
                return Err(LogError::corrupt(
                    &path,
                    0,
                    format!(
                        "{what} in the log: segment starts at LSN {start} but the previous segment {} ends at LSN {}",
                        prev.path.display(),
                        prev.end
                    ),
                ));
            }
        }
        segs.push(SegMeta {
            start,
            end: start + (len - SEG_HEADER_LEN),
            path,
        });
    }
    Ok(segs)
}

/// Index of the segment holding the record at `lsn` (or the last segment when `lsn` is the log end).
pub(crate) fn seg_index(segs: &[SegMeta], lsn: Lsn) -> usize {
    segs.iter()
        .position(|s| s.end > lsn)
        .unwrap_or(segs.len().saturating_sub(1))
}

/// Failure reading one record sequentially.
pub(crate) enum ReadError {
    /// The OS failed.
    Io(std::io::Error),
    /// The bytes are not a valid record.
    Record(RecordError),
}

/// Read and decode the record at `lsn` from a reader positioned there, with `remaining` bytes left in the segment.
pub(crate) fn read_record<R: Read>(
    r: &mut R,
    buf: &mut Vec<u8>,
    lsn: Lsn,
    remaining: u64,
) -> Result<(Record, usize), ReadError> {
    let remaining = usize::try_from(remaining).unwrap_or(usize::MAX);
    let pre = PREFIX_LEN.min(remaining);
    buf.resize(pre, 0);
    r.read_exact(buf).map_err(ReadError::Io)?;
    let total = frame_len(buf).map_err(ReadError::Record)?;
    if total > remaining {
        return Err(ReadError::Record(RecordError::Incomplete { needed: total }));
    }
    buf.resize(total, 0);
    r.read_exact(&mut buf[pre..]).map_err(ReadError::Io)?;
    Record::decode(buf, lsn).map_err(ReadError::Record)
}

/// Read the whole frame at `lsn` of `seg` into `buf` with positioned reads, checking length bounds only.
pub(crate) fn read_frame_at(
    file: &File,
    seg: &SegMeta,
    lsn: Lsn,
    buf: &mut Vec<u8>,
) -> Result<usize, LogError> {
    let off = seg.file_offset(lsn);
    let remaining = seg.end - lsn;
    let corrupt = |reason: String| LogError::corrupt(&seg.path, off, reason);
    if remaining < PREFIX_LEN as u64 {
        return Err(corrupt(format!(
            "only {remaining} bytes left in the segment at LSN {lsn}, too few for a record"
        )));
    }
    let mut pre = [0u8; PREFIX_LEN];
    file.read_exact_at(&mut pre, off)
        .map_err(|e| LogError::io(&seg.path, e))?;
    let total = frame_len(&pre).map_err(|e| corrupt(format!("record at LSN {lsn}: {e}")))?;
    if total as u64 > remaining {
        return Err(corrupt(format!(
            "record at LSN {lsn} is {total} bytes but only {remaining} remain in the segment"
        )));
    }
    let start = buf.len();
    buf.resize(start + total, 0);
    file.read_exact_at(&mut buf[start..], off)
        .map_err(|e| LogError::io(&seg.path, e))?;
    Ok(total)
}

/// Step from the start of `seg` through record headers until `stop` (or the segment end).
///
/// Returns the start LSN of the last record passed. Fails if `stop` is not a record boundary.
pub(crate) fn walk_headers(seg: &SegMeta, stop: Lsn) -> Result<Option<Lsn>, LogError> {
    let file = File::open(&seg.path).map_err(|e| LogError::io(&seg.path, e))?;
    let mut pos = seg.start;
    let mut last = None;
    while pos < stop {
        let off = seg.file_offset(pos);
        let remaining = seg.end - pos;
        let corrupt = |reason: String| LogError::corrupt(&seg.path, off, reason);
        if remaining < PREFIX_LEN as u64 {
            return Err(corrupt(format!(
                "only {remaining} bytes left in the segment at LSN {pos}, too few for a record"
            )));
        }
        let mut pre = [0u8; PREFIX_LEN];
        file.read_exact_at(&mut pre, off)
            .map_err(|e| LogError::io(&seg.path, e))?;
        let total = frame_len(&pre).map_err(|e| corrupt(format!("record at LSN {pos}: {e}")))?;
        if total as u64 > remaining {
            return Err(corrupt(format!(
                "record at LSN {pos} is {total} bytes but only {remaining} remain in the segment"
            )));
        }
        last = Some(pos);
        pos += total as u64;
    }
    if pos != stop {
        return Err(LogError::BadLsn {
            lsn: stop,
            reason: format!(
                "not a record boundary in segment {} (a record spans it)",
                seg.path.display()
            ),
        });
    }
    Ok(last)
}

/// Start LSN of the newest record in `segs`, found by walking headers of the newest non-empty segment.
pub(crate) fn find_last_record(segs: &[SegMeta]) -> Result<Option<Lsn>, LogError> {
    for seg in segs.iter().rev() {
        if seg.end > seg.start {
            return walk_headers(seg, seg.end);
        }
    }
    Ok(None)
}

/// A bad region at the very end of the last segment, safe to cut off.
#[derive(Debug)]
pub(crate) struct TornTail {
    /// LSN where the bad region starts.
    pub at: Lsn,
    /// Bytes from there to the end of the file.
    pub bytes: u64,
    /// What was wrong with the first bad record.
    pub reason: String,
}

/// Result of a sequential scan.
#[derive(Debug, Default)]
pub(crate) struct ScanOutcome {
    /// Records decoded.
    pub records: u64,
    /// LSN and epoch of the last good record scanned.
    pub last: Option<(Lsn, u64)>,
    /// Torn tail found at the end of the last segment.
    pub torn: Option<TornTail>,
}

/// Decode every record from `from` (a record boundary) to the end, applying the torn-tail rule.
pub(crate) fn scan(segs: &[SegMeta], from: Lsn) -> Result<ScanOutcome, LogError> {
    let mut out = ScanOutcome::default();
    if segs.is_empty() {
        return Ok(out);
    }
    let first = seg_index(segs, from);
    let mut buf = Vec::new();
    for (i, seg) in segs.iter().enumerate().skip(first) {
        let is_last = i + 1 == segs.len();
        let mut pos = if i == first { from } else { seg.start };
        if pos >= seg.end {
            continue;
        }
        let f = File::open(&seg.path).map_err(|e| LogError::io(&seg.path, e))?;
        let mut r = BufReader::with_capacity(1 << 20, f);
        r.seek(SeekFrom::Start(seg.file_offset(pos)))
            .map_err(|e| LogError::io(&seg.path, e))?;
        while pos < seg.end {
            match read_record(&mut r, &mut buf, pos, seg.end - pos) {
                Ok((rec, len)) => {
                    out.records += 1;
                    out.last = Some((pos, rec.epoch));
                    pos += len as u64;
                }
                Err(ReadError::Io(e)) => return Err(LogError::io(&seg.path, e)),
                Err(ReadError::Record(e)) => {
                    let offset = seg.file_offset(pos);
                    if !is_last {
                        return Err(LogError::corrupt(
                            &seg.path,
                            offset,
                            format!(
                                "bad record at LSN {pos} in a segment that is not the last: {e}"
                            ),
                        ));
                    }
                    if let Some(good) = valid_record_after(seg, pos)? {
                        return Err(LogError::corrupt(
                            &seg.path,
                            offset,
                            format!("bad record at LSN {pos} ({e}) with a valid record after it at LSN {good}"),
                        ));
                    }
                    out.torn = Some(TornTail {
                        at: pos,
                        bytes: seg.end - pos,
                        reason: e.to_string(),
                    });
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

/// Search the rest of `seg` after a bad record at `bad` for any intact record at its true LSN.
fn valid_record_after(seg: &SegMeta, bad: Lsn) -> Result<Option<Lsn>, LogError> {
    let mut f = File::open(&seg.path).map_err(|e| LogError::io(&seg.path, e))?;
    let base = bad + 1;
    f.seek(SeekFrom::Start(seg.file_offset(base)))
        .map_err(|e| LogError::io(&seg.path, e))?;
    let mut rest = Vec::new();
    f.take(seg.end - base)
        .read_to_end(&mut rest)
        .map_err(|e| LogError::io(&seg.path, e))?;
    let magic = RECORD_MAGIC.to_le_bytes();
    for i in 0..rest.len().saturating_sub(3) {
        if rest[i..i + 4] == magic {
            let lsn = base + i as u64;
            if check_frame(&rest[i..], lsn).is_ok() {
                return Ok(Some(lsn));
            }
        }
    }
    Ok(None)
}
