//! Reading the log back: record iteration, raw bytes for shipping, and the last record.

use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};

use super::{lock, Inner, Log};
use crate::error::LogError;
use crate::record::{check_frame, Record, RecordError};
use crate::segment::{read_frame_at, read_record, seg_index, ReadError, SegMeta};
use crate::Lsn;

impl Log {
    /// The last record in the log, if any.
    pub fn last_record(&self) -> Result<Option<(Lsn, Record)>, LogError> {
        let (lsn, seg) = {
            let st = lock(&self.inner.state);
            let Some(lsn) = st.last_lsn else {
                return Ok(None);
            };
            let seg = st.segs[seg_index(&st.segs, lsn)].clone();
            (lsn, seg)
        };
        let file = File::open(&seg.path).map_err(|e| LogError::io(&seg.path, e))?;
        let mut buf = Vec::new();
        read_frame_at(&file, &seg, lsn, &mut buf)?;
        let (rec, _) = Record::decode(&buf, lsn).map_err(|e| {
            LogError::corrupt(
                &seg.path,
                seg.file_offset(lsn),
                format!("record at LSN {lsn}: {e}"),
            )
        })?;
        Ok(Some((lsn, rec)))
    }

    /// Iterate records from `from` (a record boundary, >= start_lsn) up to the end_lsn at the time of the call.
    pub fn read_from(&self, from: Lsn) -> Result<LogReader, LogError> {
        let (segs, end) = self.inner.snapshot(from)?;
        Ok(LogReader {
            idx: seg_index(&segs, from),
            segs,
            pos: from,
            from,
            end,
            reader: None,
            buf: Vec::new(),
            done: false,
        })
    }

    /// Read raw encoded bytes of whole records starting at `from`, up to about `max_bytes` (at least one record), never past `upto`. For shipping. Returns (bytes, next lsn).
    pub fn read_raw(
        &self,
        from: Lsn,
        upto: Lsn,
        max_bytes: usize,
    ) -> Result<(Vec<u8>, Lsn), LogError> {
        let (segs, end) = self.inner.snapshot(from)?;
        let upto = upto.min(end);
        let mut out = Vec::new();
        let mut pos = from;
        let mut open: Option<(usize, File)> = None;
        while pos < upto {
            let idx = seg_index(&segs, pos);
            let seg = &segs[idx];
            let file = match &open {
                Some((i, f)) if *i == idx => f,
                _ => {
                    let f = File::open(&seg.path).map_err(|e| LogError::io(&seg.path, e))?;
                    &open.insert((idx, f)).1
                }
            };
            let before = out.len();
            let n = read_frame_at(file, seg, pos, &mut out)?;
            let next = pos + n as u64;
            if next > upto {
                out.truncate(before);
                if before == 0 {
                    return Err(LogError::BadLsn {
                        lsn: upto,
                        reason: format!("not a record boundary (record at {pos} ends at {next})"),
                    });
                }
                break;
            }
            if before > 0 && out.len() > max_bytes {
                out.truncate(before);
                break;
            }
            check_frame(&out[before..], pos).map_err(|e| {
                let reason = if pos == from {
                    format!("record at LSN {pos}: {e} (is {from} a record boundary?)")
                } else {
                    format!("record at LSN {pos}: {e}")
                };
                LogError::corrupt(&seg.path, seg.file_offset(pos), reason)
            })?;
            pos = next;
            if out.len() >= max_bytes {
                break;
            }
        }
        Ok((out, pos))
    }
}

impl Inner {
    /// Validate `from` and capture the segment list and end for a reader.
    fn snapshot(&self, from: Lsn) -> Result<(Vec<SegMeta>, Lsn), LogError> {
        let st = lock(&self.state);
        let start = st.segs.first().map_or(0, |s| s.start);
        let end = st.end();
        if from < start || from > end {
            return Err(LogError::BadLsn {
                lsn: from,
                reason: format!("outside the retained log {start}..={end}"),
            });
        }
        Ok((st.segs.clone(), end))
    }
}

/// Iterator over records from a start LSN to the end LSN at creation time.
pub struct LogReader {
    segs: Vec<SegMeta>,
    idx: usize,
    pos: Lsn,
    from: Lsn,
    end: Lsn,
    reader: Option<BufReader<File>>,
    buf: Vec<u8>,
    done: bool,
}

impl LogReader {
    /// LSN of the next record to be returned.
    pub fn position(&self) -> Lsn {
        self.pos
    }

    fn next_record(&mut self) -> Result<(Lsn, Record), LogError> {
        while self.segs[self.idx].end <= self.pos && self.idx + 1 < self.segs.len() {
            self.idx += 1;
            self.reader = None;
        }
        let seg = &self.segs[self.idx];
        let reader = match &mut self.reader {
            Some(r) => r,
            None => {
                let f = File::open(&seg.path).map_err(|e| LogError::io(&seg.path, e))?;
                let mut r = BufReader::with_capacity(256 << 10, f);
                r.seek(SeekFrom::Start(seg.file_offset(self.pos)))
                    .map_err(|e| LogError::io(&seg.path, e))?;
                self.reader.insert(r)
            }
        };
        let lsn = self.pos;
        match read_record(reader, &mut self.buf, lsn, seg.end - lsn) {
            Ok((rec, n)) => {
                self.pos += n as u64;
                Ok((lsn, rec))
            }
            Err(ReadError::Io(e)) => Err(LogError::io(&seg.path, e)),
            Err(ReadError::Record(e)) => {
                if lsn == self.from
                    && matches!(e, RecordError::BadMagic | RecordError::LsnMismatch { .. })
                {
                    return Err(LogError::BadLsn {
                        lsn,
                        reason: format!("not a record boundary ({e})"),
                    });
                }
                Err(LogError::corrupt(
                    &seg.path,
                    seg.file_offset(lsn),
                    format!("record at LSN {lsn}: {e}"),
                ))
            }
        }
    }
}

impl Iterator for LogReader {
    type Item = Result<(Lsn, Record), LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.end {
            return None;
        }
        let item = self.next_record();
        if item.is_err() {
            self.done = true;
        }
        Some(item)
    }
}

impl std::fmt::Debug for LogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("pos", &self.pos)
            .field("end", &self.end)
            .finish()
    }
}
