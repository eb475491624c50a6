//! Changing the log: appends, segment switches, retention and truncation.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{lock, Inner, Log, State};
use crate::error::LogError;
use crate::record::{check_frame, seal, Record};
use crate::segment::{
    activate_spare, create_segment_file, find_last_record, read_frame_at, seg_index, sync_dir,
    write_zeros, SegMeta,
};
use crate::Lsn;

/// Appends are padded with zeros to a multiple of this (the usual page size) in the file.
const WRITE_PAGE: u64 = 4096;

impl Log {
    /// Append a record at the current end; returns (lsn of the record, end lsn after it). Written with pwrite() over the segment's preallocated zeros but NOT fsynced; the flusher makes it durable. Thread-safe; appends are totally ordered.
    pub fn append(&self, rec: &Record) -> Result<(Lsn, Lsn), LogError> {
        rec.validate().map_err(LogError::InvalidRecord)?;
        // Compression happens here, outside the lock; only the LSN and CRC are filled in under it.
        let mut buf = rec.encode_unsealed();
        let (lsn, end) = {
            let mut st = lock(&self.inner.state);
            self.inner.check_writable(&st)?;
            let lsn = st.end();
            seal(&mut buf, lsn);
            let end = self.inner.write_locked(&mut st, lsn, &buf)?;
            (lsn, end)
        };
        self.inner.kick_flusher();
        Ok((lsn, end))
    }

    /// Append already-encoded record bytes (one or more whole records, as returned by `read_raw`) received from a primary; validates by decoding first; `lsn` must equal end_lsn(). Returns the new end LSN.
    pub fn append_encoded(&self, lsn: Lsn, bytes: &[u8]) -> Result<Lsn, LogError> {
        let mut frames = Vec::new();
        let mut off = 0usize;
        while off < bytes.len() {
            let at = lsn + off as u64;
            let (_, n) = Record::decode(&bytes[off..], at)
                .map_err(|source| LogError::BadEncoded { lsn: at, source })?;
            frames.push((at, off, n));
            off += n;
        }
        let end = {
            let mut st = lock(&self.inner.state);
            self.inner.check_writable(&st)?;
            let end = st.end();
            if end != lsn {
                return Err(LogError::BadLsn {
                    lsn,
                    reason: format!("append_encoded must start at the log end ({end})"),
                });
            }
            let mut end = end;
            for (at, off, n) in frames {
                end = self.inner.write_locked(&mut st, at, &bytes[off..off + n])?;
            }
            end
        };
        self.inner.kick_flusher();
        Ok(end)
    }

    /// Delete whole segments that end at or before `keep_from` while the total log size exceeds retention_bytes (never the current segment, nor the one holding the last record). Returns bytes removed.
    pub fn apply_retention(&self, keep_from: Lsn) -> Result<u64, LogError> {
        let victims: Vec<SegMeta> = {
            let mut st = lock(&self.inner.state);
            let mut total: u64 = st.segs.iter().map(|s| s.file_len).sum();
            let mut n = 0;
            while n + 1 < st.segs.len() {
                let seg = &st.segs[n];
                let holds_last = st.last_lsn.is_some_and(|l| l >= seg.start && l < seg.end);
                if total <= self.inner.retention_bytes || seg.end > keep_from || holds_last {
                    break;
                }
                total -= seg.file_len;
                n += 1;
            }
            // Dropped from the list first so no new reader picks them; unlinked outside the lock.
            st.segs.drain(..n).collect()
        };
        let mut removed = 0;
        // Oldest first: a failure part-way still leaves a contiguous chain on disk.
        for seg in &victims {
            std::fs::remove_file(&seg.path).map_err(|e| LogError::io(&seg.path, e))?;
            tracing::debug!(segment = %seg.path.display(), "log retention removed segment");
            removed += seg.file_len;
        }
        if removed > 0 && self.inner.sync {
            sync_dir(&self.inner.dir)?;
        }
        Ok(removed)
    }

    /// Remove everything at and after `lsn` (a record boundary) — for a rewinding old primary. fsyncs.
    pub fn truncate_after(&self, lsn: Lsn) -> Result<(), LogError> {
        let inner = &*self.inner;
        let _cycle = lock(&inner.cycle);
        let mut st = lock(&inner.state);
        inner.check_writable(&st)?;
        let start = st.segs.first().map_or(0, |s| s.start);
        let end = st.end();
        if lsn < start || lsn > end {
            return Err(LogError::BadLsn {
                lsn,
                reason: format!("truncation point outside the retained log {start}..={end}"),
            });
        }
        if lsn == end {
            return Ok(());
        }
        check_record_boundary(&st.segs[seg_index(&st.segs, lsn)], lsn)?;
        // Keep the segment holding `lsn` (or ending at it); later ones go away entirely.
        let keep = st.segs.iter().rposition(|s| s.start < lsn).unwrap_or(0);
        // Newest first, so a crash part-way leaves a contiguous prefix.
        for seg in st.segs[keep + 1..].iter().rev() {
            std::fs::remove_file(&seg.path).map_err(|e| LogError::io(&seg.path, e))?;
        }
        st.segs.truncate(keep + 1);
        let seg = &mut st.segs[keep];
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&seg.path)
            .map_err(|e| LogError::io(&seg.path, e))?;
        // Cut with set_len, not by writing zeros over the suffix: zeros that reached the disk
        // only in part would leave valid records after a zeroed one, which reads as corruption.
        let cut = seg.file_offset(lsn);
        f.set_len(cut).map_err(|e| LogError::io(&seg.path, e))?;
        seg.end = lsn;
        if inner.sync {
            if let Err(e) = f.sync_all() {
                return Err(inner.fail(format!("fsync of {} failed: {e}", seg.path.display())));
            }
            if let Err(e) = sync_dir(&inner.dir) {
                return Err(inner.fail(e.to_string()));
            }
        }
        // Then zero-fill back to the old length so appends keep overwriting in place. Only
        // zeros go past the cut, so a crash in here leaves a clean end either way.
        let refill = write_zeros(&f, cut, seg.file_len).and_then(|()| {
            if inner.sync {
                f.sync_all()
            } else {
                Ok(())
            }
        });
        if let Err(e) = refill {
            tracing::warn!(segment = %seg.path.display(), error = %e, "could not re-preallocate the truncated log segment; appends will grow it");
            seg.file_len = f.metadata().map_or(cut, |m| m.len());
        }
        st.current = Arc::new(f);
        st.last_lsn = find_last_record(&st.segs)?;
        let mut fl = lock(&inner.fl);
        inner.end.store(lsn, Ordering::Release);
        inner.flushed.store(lsn, Ordering::Release);
        fl.requested = false;
        drop(fl);
        tracing::info!(lsn, "log truncated");
        Ok(())
    }
}

impl Inner {
    /// Write one sealed record at `lsn` (== current end), switching segments first if it does not fit in the current one.
    fn write_locked(&self, st: &mut State, lsn: Lsn, bytes: &[u8]) -> Result<Lsn, LogError> {
        // Both callers checked it; a record written anywhere else would leave
        // a hole or overwrite one the flusher may already have made durable.
        debug_assert_eq!(lsn, st.end(), "a record must be written at the log end");
        let len = bytes.len() as u64;
        let seg = st.current_seg()?;
        // Records never span segments. One that does not fit in the preallocated space left
        // starts a new segment; only a record too big for any segment grows one (its own, as
        // it is then the first record there).
        if seg.end > seg.start && seg.file_offset(lsn) + len > self.segment_size {
            self.switch_segment(st)?;
        }
        let seg = st.current_seg()?;
        let off = seg.file_offset(lsn);
        // Fill the rest of the last page with the zeros already there: overwriting only part
        // of a page that has left the page cache makes the kernel read it from disk first,
        // which appending at the end of a file never cost.
        let padded;
        let mut data = bytes;
        let page_end = (off + len).next_multiple_of(WRITE_PAGE);
        if page_end > off + len && page_end <= seg.file_len {
            let mut v = Vec::with_capacity((page_end - off) as usize);
            v.extend_from_slice(bytes);
            v.resize((page_end - off) as usize, 0);
            padded = v;
            data = &padded;
        }
        if let Err(e) = st.current.write_all_at(data, off) {
            // Put back the zeros (and the length) of the tail, or a shorter next record would
            // leave part of this one behind it, to be reported as a torn tail on reopen.
            let undo = (|| {
                if off + len > seg.file_len {
                    st.current.set_len(seg.file_len)?;
                }
                write_zeros(&st.current, off, (off + len).min(seg.file_len))
            })();
            if let Err(e2) = undo {
                return Err(self.fail(format!(
                    "write to {} at offset {off} failed ({e}) and could not be undone ({e2})",
                    seg.path.display()
                )));
            }
            return Err(LogError::io(&seg.path, e));
        }
        let end = lsn + len;
        if let Some(seg) = st.segs.last_mut() {
            seg.end = end;
            seg.file_len = seg.file_len.max(off + len);
        }
        st.last_lsn = Some(lsn);
        self.end.store(end, Ordering::Release);
        self.appends.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(end)
    }

    /// Start a new segment at the current end.
    fn switch_segment(&self, st: &mut State) -> Result<(), LogError> {
        let start = st.end();
        if self.sync {
            // The old segment must be durable before any byte of the new one can be, or a crash
            // could leave a torn record in a non-last segment followed by valid data.
            if let Err(e) = st.current.sync_data() {
                let path = st.current_seg()?.path.display().to_string();
                return Err(self.fail(format!("fdatasync of {path} failed: {e}")));
            }
        }
        let activated = {
            let mut sp = lock(&self.spare);
            let activated = sp
                .ready
                .take()
                .map(|f| activate_spare(&self.dir, f, start, self.sync));
            sp.requested = true;
            self.spare_cv.notify_all();
            activated
        };
        let created = match activated {
            Some(Ok(created)) => Ok(created),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "could not use the spare log segment; creating one");
                create_segment_file(&self.dir, start, self.prealloc, self.sync)
            }
            None => {
                // Correctness first: appends wait while the segment is written here.
                tracing::debug!(start, "no spare log segment ready; creating one in line");
                create_segment_file(&self.dir, start, self.prealloc, self.sync)
            }
        };
        let (file, path) = created?;
        if self.sync {
            if let Err(e) = sync_dir(&self.dir) {
                return Err(self.fail(e.to_string()));
            }
        }
        tracing::debug!(segment = %path.display(), start, "new log segment");
        st.segs.push(SegMeta {
            start,
            end: start,
            path,
            file_len: self.prealloc,
        });
        st.current = Arc::new(file);
        Ok(())
    }
}

/// Refuse a truncation point inside a record: the result would be an undecodable tail.
fn check_record_boundary(seg: &SegMeta, lsn: Lsn) -> Result<(), LogError> {
    let not_boundary = |reason: &dyn std::fmt::Display| LogError::BadLsn {
        lsn,
        reason: format!("not a record boundary: {reason}"),
    };
    let file = File::open(&seg.path).map_err(|e| LogError::io(&seg.path, e))?;
    let mut buf = Vec::new();
    match read_frame_at(&file, seg, lsn, &mut buf) {
        Ok(_) => check_frame(&buf, lsn)
            .map(drop)
            .map_err(|e| not_boundary(&e)),
        Err(LogError::Corrupt { reason, .. }) => Err(not_boundary(&reason)),
        Err(e) => Err(e),
    }
}
