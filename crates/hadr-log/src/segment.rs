//! Segment files: naming, headers, preallocation, listing, and the sequential record scan shared
//! by open and verify.
//!
//! A segment file is created at its full preallocated size with real zero bytes written and
//! fsynced before it gets its real name, so appends overwrite blocks that already exist and the
//! commit fdatasync never has to journal a size or extent change. The logical end of a segment is
//! therefore where its records stop, not the file length: for every segment but the last it is
//! the start LSN of the next segment, and for the last one it is found by scanning (records,
//! then nothing but zeros).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::LogError;
use crate::record::{check_frame, frame_len, Record, RecordError, PREFIX_LEN, RECORD_MAGIC};
use crate::Lsn;

/// Size of the segment header in bytes.
pub(crate) const SEG_HEADER_LEN: u64 = 32;
const SEG_MAGIC: [u8; 8] = *b"HADRLOG\0";
/// Segment format version written by this build.
pub(crate) const SEG_VERSION: u32 = 1;
const SEG_EXT: &str = "hlog";
const TMP_SUFFIX: &str = ".hlog.tmp";
/// A preallocated, fsynced, all-zero segment file waiting to become the next segment.
pub(crate) const SPARE_NAME: &str = "spare.hlog.spare";
/// The spare while it is being written; ends in TMP_SUFFIX so an open after a crash removes it.
const SPARE_TMP: &str = "spare.hlog.tmp";
/// Zeros are written in chunks of this size, so the buffer stays small and a cancelled spare
/// preparation stops quickly.
const ZERO_CHUNK: usize = 1 << 20;
/// Granularity of the all-zero test when looking for where data ends.
const ZERO_BLOCK: usize = 4096;

/// A segment file and the LSN range it holds.
#[derive(Clone, Debug)]
pub(crate) struct SegMeta {
    /// LSN of the first byte after the header.
    pub start: Lsn,
    /// LSN just past the last record (the logical end; zeros may follow in the file).
    ///
    /// Straight from `list_segments`, the last segment's `end` is still its physical end
    /// (`phys_end`) until a scan has found where its records stop.
    pub end: Lsn,
    /// Path of the file.
    pub path: PathBuf,
    /// Size of the file in bytes, preallocated space included.
    pub file_len: u64,
}

impl SegMeta {
    /// File offset of `lsn`, which must lie in `start..=end`.
    pub fn file_offset(&self, lsn: Lsn) -> u64 {
        SEG_HEADER_LEN + (lsn - self.start)
    }

    /// LSN the last byte of the file would have: the most the segment can hold without growing.
    pub fn phys_end(&self) -> Lsn {
        self.start + self.file_len.saturating_sub(SEG_HEADER_LEN)
    }
}

/// Length a new segment file is preallocated to for a configured `segment_size`.
pub(crate) fn prealloc_len(segment_size: u64) -> u64 {
    segment_size.max(SEG_HEADER_LEN)
}

/// Overwrite `from..to` of `f` with zeros (positioned writes; the file grows if `to` is past its end).
pub(crate) fn write_zeros(f: &File, from: u64, to: u64) -> std::io::Result<()> {
    let zeros =
        vec![0u8; ZERO_CHUNK.min(usize::try_from(to.saturating_sub(from)).unwrap_or(ZERO_CHUNK))];
    let mut off = from;
    while off < to {
        let n = (to - off).min(zeros.len() as u64) as usize;
        f.write_all_at(&zeros[..n], off)?;
        off += n as u64;
    }
    Ok(())
}

/// Writing zeros with `O_DIRECT`: no copy into the page cache.
struct DirectZeros {
    file: File,
    /// ZERO_CHUNK + alignment bytes of zeros; the chunk starts at `at`.
    buf: Vec<u8>,
    at: usize,
}

/// `O_DIRECT`'s alignment of buffers, offsets and lengths.
const DIRECT_ALIGN: usize = 4096;

impl DirectZeros {
    /// None where the file system has no `O_DIRECT` (tmpfs).
    fn open(path: &Path) -> Option<DirectZeros> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .ok()?;
        let buf = vec![0u8; ZERO_CHUNK + DIRECT_ALIGN];
        let at = buf.as_ptr().align_offset(DIRECT_ALIGN);
        (at < DIRECT_ALIGN).then_some(DirectZeros { file, buf, at })
    }

    /// Zero `from..to`; false if it could not (unaligned, or refused), for
    /// the caller to do it the ordinary way.
    fn write(&mut self, from: u64, to: u64) -> bool {
        let n = (to - from) as usize;
        if !from.is_multiple_of(DIRECT_ALIGN as u64)
            || !n.is_multiple_of(DIRECT_ALIGN)
            || n > ZERO_CHUNK
        {
            return false;
        }
        self.file
            .write_all_at(&self.buf[self.at..self.at + n], from)
            .is_ok()
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

/// Create the segment starting at `start`, header included and zero-filled to `len` bytes, and
/// return it open for reading and writing.
///
/// The file is written under a temporary name, fsynced (when `sync`), and renamed into place, so
/// a segment file with the real name always has a complete header and its full preallocated,
/// durable size. The caller fsyncs the directory.
pub(crate) fn create_segment_file(
    dir: &Path,
    start: Lsn,
    len: u64,
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
        write_zeros(&f, SEG_HEADER_LEN, len)?;
        if sync {
            // sync_all: the size and extents are new, and must be durable before the rename.
            f.sync_all()?;
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

/// Write a spare segment under a temporary name: `len` zero bytes, fsynced when `sync`.
///
/// `cancelled` is polled between chunks; returns Ok(None) if it said stop. The spare has no
/// header yet because its start LSN is only known when it is put to use (`activate_spare`).
/// `publish_spare` gives it the name a switch looks for.
pub(crate) fn create_spare(
    dir: &Path,
    len: u64,
    sync: bool,
    cancelled: &dyn Fn() -> bool,
) -> Result<Option<File>, LogError> {
    let tmp = dir.join(SPARE_TMP);
    let result = (|| {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        // The zeros go around the page cache where the file system lets
        // them: copying 64 MiB of zeros into it cost the spare thread
        // about a quarter of a second of CPU per segment, taken from the
        // sessions on a small machine in the middle of a bulk load.
        let mut direct = DirectZeros::open(&tmp);
        let mut off = 0;
        while off < len {
            if cancelled() {
                return Ok(None);
            }
            let next = (off + ZERO_CHUNK as u64).min(len);
            let done = direct.as_mut().is_some_and(|d| d.write(off, next));
            if !done {
                direct = None;
                write_zeros(&f, off, next)?;
            }
            off = next;
        }
        if sync {
            f.sync_all()?;
        }
        Ok(Some(f))
    })();
    match result {
        Ok(Some(f)) => Ok(Some(f)),
        Ok(None) => {
            discard_spare_tmp(dir);
            Ok(None)
        }
        Err(e) => {
            discard_spare_tmp(dir);
            Err(LogError::io(&tmp, e))
        }
    }
}

/// Rename the finished spare from `create_spare` to SPARE_NAME.
///
/// Only a complete, durable spare may carry the name a switch trusts. The caller must make sure
/// no other spare holds that name (it would be replaced).
pub(crate) fn publish_spare(dir: &Path) -> Result<(), LogError> {
    let tmp = dir.join(SPARE_TMP);
    std::fs::rename(&tmp, dir.join(SPARE_NAME)).map_err(|e| {
        discard_spare_tmp(dir);
        LogError::io(&tmp, e)
    })
}

/// Remove an unfinished or unwanted spare. Best effort: the next open removes it anyway.
pub(crate) fn discard_spare_tmp(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(SPARE_TMP));
}

/// Open the spare left by an earlier run, if there is one of the right length; a spare of any
/// other length (the segment size was changed) is removed.
pub(crate) fn open_spare(dir: &Path, len: u64) -> Result<Option<File>, LogError> {
    let path = dir.join(SPARE_NAME);
    let f = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LogError::io(&path, e)),
    };
    let have = f.metadata().map_err(|e| LogError::io(&path, e))?.len();
    if have == len {
        return Ok(Some(f));
    }
    drop(f);
    tracing::debug!(path = %path.display(), have, len, "removing spare log segment of another size");
    std::fs::remove_file(&path).map_err(|e| LogError::io(&path, e))?;
    Ok(None)
}

/// Turn the spare into the segment starting at `start`: write its header, make that durable
/// (when `sync`), and rename it into place. The caller fsyncs the directory.
///
/// The header is synced before the rename so a crash can never leave a segment file whose
/// header is still zeros.
pub(crate) fn activate_spare(
    dir: &Path,
    spare: File,
    start: Lsn,
    sync: bool,
) -> Result<(File, PathBuf), LogError> {
    let path = dir.join(segment_name(start));
    let result = (|| {
        spare.write_all_at(&encode_header(start), 0)?;
        if sync {
            // Overwrites preallocated bytes only, so fdatasync has no metadata to journal.
            spare.sync_data()?;
        }
        std::fs::rename(dir.join(SPARE_NAME), &path)
    })();
    match result {
        Ok(()) => Ok((spare, path)),
        Err(e) => Err(LogError::io(&path, e)),
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
            // A crash during segment creation; it never held records. An unfinished spare is
            // routine (preparing one is cut short by a crash), so it gets no warning.
            if name == SPARE_TMP {
                tracing::debug!(path = %ent.path().display(), "removing unfinished spare log segment");
            } else {
                tracing::warn!(path = %ent.path().display(), "removing unfinished log segment");
            }
            std::fs::remove_file(ent.path()).map_err(|e| LogError::io(ent.path(), e))?;
        }
    }
    found.sort_by_key(|(s, _)| *s);
    // Every segment but the last ends where the next one starts (records never span segments);
    // the last one gets its physical end here and its logical end from a scan.
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
        if let Some(prev) = segs.last_mut() {
            // A segment is only left when the next record does not fit in it, so a missing
            // segment always shows as a start beyond what the previous file can hold. Records
            // that stop short of the next start, or data past it, are found by the scan.
            if start > prev.phys_end() {
                return Err(LogError::corrupt(
                    &path,
                    0,
                    format!(
                        "gap in the log: segment starts at LSN {start} but the previous segment {} can hold records only up to LSN {}",
                        prev.path.display(),
                        prev.phys_end()
                    ),
                ));
            }
            prev.end = start;
        }
        let mut seg = SegMeta {
            start,
            end: start,
            path,
            file_len: len,
        };
        seg.end = seg.phys_end();
        segs.push(seg);
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
/// With `zeros_end_log` (for the last segment, before its logical end is known), reaching a
/// zero header before `stop` means `stop` lies past the end of the log, reported as BadLsn.
pub(crate) fn walk_headers(
    seg: &SegMeta,
    stop: Lsn,
    zeros_end_log: bool,
) -> Result<Option<Lsn>, LogError> {
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
        if zeros_end_log && pre.iter().all(|&b| b == 0) {
            return Err(LogError::BadLsn {
                lsn: stop,
                reason: format!(
                    "past the end of the log (the records of segment {} stop at LSN {pos})",
                    seg.path.display()
                ),
            });
        }
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

/// Start LSN of the newest record in `segs`, found by walking headers of the newest non-empty
/// segment. Every `end` must already be a logical end.
pub(crate) fn find_last_record(segs: &[SegMeta]) -> Result<Option<Lsn>, LogError> {
    for seg in segs.iter().rev() {
        if seg.end > seg.start {
            return walk_headers(seg, seg.end, false);
        }
    }
    Ok(None)
}

/// A bad region at the very end of the last segment, safe to zero out.
#[derive(Debug)]
pub(crate) struct TornTail {
    /// LSN where the bad region starts.
    pub at: Lsn,
    /// Bytes from there to the last non-zero byte of the file (the zeros after it are the
    /// normal preallocated tail).
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
    /// Logical end of the log: where the valid records of the last segment stop.
    pub end: Lsn,
}

/// Decode every record from `from` (a record boundary) to the end, applying the end-of-log and
/// torn-tail rules. The last segment's `end` may be its physical end; `ScanOutcome::end` says
/// where its records really stop.
pub(crate) fn scan(segs: &[SegMeta], from: Lsn) -> Result<ScanOutcome, LogError> {
    let mut out = ScanOutcome::default();
    let Some(last_seg) = segs.last() else {
        return Ok(out);
    };
    // Unless a record is found to be bad, the records fill the last segment to its end.
    out.end = last_seg.end;
    let first = seg_index(segs, from);
    let mut buf = Vec::new();
    for (i, seg) in segs.iter().enumerate().skip(first) {
        let is_last = i + 1 == segs.len();
        let mut pos = if i == first { from } else { seg.start };
        if pos < seg.end {
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
                        return bad_record(seg, is_last, pos, &e).map(|torn| {
                            out.end = pos;
                            out.torn = torn;
                            out
                        });
                    }
                }
            }
        }
        // The rest of a non-last segment is preallocated space the log moved on from; anything
        // but zeros there means two segments claim the same LSNs.
        if !is_last && !matches!(classify_tail(seg, seg.end)?, Tail::Zeros) {
            return Err(LogError::corrupt(
                &seg.path,
                seg.file_offset(seg.end),
                format!(
                    "data after LSN {}, where the next segment starts (overlapping segments)",
                    seg.end
                ),
            ));
        }
    }
    Ok(out)
}

/// Decide what a bad record at `pos` of `seg` means: the normal end of the log (Ok(None)), a
/// torn tail (Ok(Some)), or corruption (Err).
fn bad_record(
    seg: &SegMeta,
    is_last: bool,
    pos: Lsn,
    e: &RecordError,
) -> Result<Option<TornTail>, LogError> {
    let offset = seg.file_offset(pos);
    let tail = classify_tail(seg, pos)?;
    if !is_last {
        let hint = match tail {
            Tail::Zeros => format!(
                "; only zeros follow, but the next segment starts at LSN {}: a gap in the log",
                seg.end
            ),
            _ => String::new(),
        };
        return Err(LogError::corrupt(
            &seg.path,
            offset,
            format!("bad record at LSN {pos} in a segment that is not the last: {e}{hint}"),
        ));
    }
    match tail {
        Tail::Zeros => Ok(None),
        Tail::Valid(good) => Err(LogError::corrupt(
            &seg.path,
            offset,
            format!("bad record at LSN {pos} ({e}) with a valid record after it at LSN {good}"),
        )),
        Tail::Garbage { nonzero_end } => Ok(Some(TornTail {
            at: pos,
            bytes: nonzero_end - pos,
            reason: e.to_string(),
        })),
    }
}

/// What the file holds from some LSN to its physical end.
enum Tail {
    /// Nothing but zeros: the unused preallocated space of a segment.
    Zeros,
    /// Non-zero bytes up to (not including) LSN `nonzero_end`, but no intact record.
    Garbage {
        /// LSN just past the last non-zero byte.
        nonzero_end: Lsn,
    },
    /// An intact record at its own LSN.
    Valid(Lsn),
}

/// Classify the file contents of `seg` from `at` to the end of the file, looking for any intact
/// record after `at` itself (which is known to be bad or absent).
fn classify_tail(seg: &SegMeta, at: Lsn) -> Result<Tail, LogError> {
    let io = |e| LogError::io(&seg.path, e);
    let file = File::open(&seg.path).map_err(io)?;
    // The real length, not the listed one: it is what a later open would read.
    let file_len = file.metadata().map_err(io)?.len();
    let from = seg.file_offset(at);
    let magic = RECORD_MAGIC.to_le_bytes();
    let mut buf = vec![0u8; ZERO_CHUNK];
    let zeros = vec![0u8; ZERO_BLOCK];
    let mut nonzero_end = None;
    let mut off = from;
    while off < file_len {
        let n = (file_len - off).min(ZERO_CHUNK as u64) as usize;
        let chunk = &mut buf[..n];
        file.read_exact_at(chunk, off).map_err(io)?;
        // Preallocated tails are long runs of zeros; skip them without a byte-wise search.
        let Some((first, last)) = nonzero_span(chunk, &zeros) else {
            off += n as u64;
            continue;
        };
        nonzero_end = Some(off + last as u64 + 1);
        for i in first..=last {
            let cand = off + i as u64;
            if chunk[i] != magic[0] || cand == from {
                continue;
            }
            // A magic split across two chunks is checked by intact_record_at itself.
            if i + magic.len() <= n && chunk[i..i + magic.len()] != magic {
                continue;
            }
            if let Some(lsn) = intact_record_at(&file, seg, cand, file_len)? {
                return Ok(Tail::Valid(lsn));
            }
        }
        off += n as u64;
    }
    Ok(match nonzero_end {
        None => Tail::Zeros,
        Some(end) => Tail::Garbage {
            nonzero_end: seg.start + (end - SEG_HEADER_LEN),
        },
    })
}

/// Indexes of the first and last non-zero byte of `b`, or None if it is all zeros.
///
/// Whole blocks are compared with `zeros` (a memcmp, fast even in debug builds); only the two
/// blocks holding the answers are searched byte by byte.
fn nonzero_span(b: &[u8], zeros: &[u8]) -> Option<(usize, usize)> {
    let block = zeros.len();
    let is_zero = |s: &[u8]| s == &zeros[..s.len()];
    let first_block = (0..b.len())
        .step_by(block)
        .find(|&i| !is_zero(&b[i..(i + block).min(b.len())]))?;
    let last_block = (first_block..b.len())
        .step_by(block)
        .rev()
        .find(|&i| !is_zero(&b[i..(i + block).min(b.len())]))
        .unwrap_or(first_block);
    let end = (first_block + block).min(b.len());
    let first = first_block + b[first_block..end].iter().position(|&x| x != 0)?;
    let end = (last_block + block).min(b.len());
    let last = last_block + b[last_block..end].iter().rposition(|&x| x != 0)?;
    Some((first, last))
}

/// The LSN of the intact record at file offset `off` of `seg`, if there is one.
fn intact_record_at(
    file: &File,
    seg: &SegMeta,
    off: u64,
    file_len: u64,
) -> Result<Option<Lsn>, LogError> {
    let remaining = file_len - off;
    if remaining < PREFIX_LEN as u64 {
        return Ok(None);
    }
    let mut pre = [0u8; PREFIX_LEN];
    file.read_exact_at(&mut pre, off)
        .map_err(|e| LogError::io(&seg.path, e))?;
    let Ok(total) = frame_len(&pre) else {
        return Ok(None);
    };
    if total as u64 > remaining {
        return Ok(None);
    }
    let mut frame = vec![0u8; total];
    file.read_exact_at(&mut frame, off)
        .map_err(|e| LogError::io(&seg.path, e))?;
    let lsn = seg.start + (off - SEG_HEADER_LEN);
    Ok(check_frame(&frame, lsn).is_ok().then_some(lsn))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spare is all zeros to its length, whether written around the page
    /// cache (O_DIRECT, where the file system has it) or through it, over a
    /// file that held data before.
    #[test]
    fn a_spare_is_zeros_to_its_length() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SPARE_TMP), vec![0xAB; 3 << 20]).unwrap();
        let len = (2 << 20) + 8192 + 100;
        let f = create_spare(dir.path(), len, true, &|| false)
            .unwrap()
            .unwrap();
        let mut data = Vec::new();
        (&f).seek(SeekFrom::Start(0)).unwrap();
        (&f).read_to_end(&mut data).unwrap();
        assert_eq!(data.len() as u64, len);
        assert!(data.iter().all(|&b| b == 0));
        // Cancelled: nothing left behind.
        assert!(create_spare(dir.path(), len, true, &|| true)
            .unwrap()
            .is_none());
        assert!(!dir.path().join(SPARE_TMP).exists());
    }
}
