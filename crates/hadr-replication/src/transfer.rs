//! Moving a snapshot's pages from the primary to a cloner or a rewinder:
//! what `clone` and `rewind` share on both ends.
//!
//! The primary pins a snapshot (a read transaction begun while no writer can
//! commit, so its state is exactly the log up to an LSN X) and reads raw
//! pages from `sqlite_dbpage`: the backup API and VACUUM INTO both rewrite
//! page 1, and a copy must be byte-identical. It sends `CloneStart`, the
//! pages, whatever the caller adds after them (a rewind's log), then
//! `CloneEnd`; a failure on the way ends the stream with a `Refuse` whose
//! code tells the other side what to do.

use std::time::Duration;

use hadr_protocol::{check_hello, EpochStart, Hello, HelloMismatch, Message, Refuse, RefuseCode};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::context::{PrimaryCtx, SnapshotError};
use crate::link::{DialError, LinkTls};
use crate::wire::{Reader, WireError, Writer};

/// Pages per page message: 1 MiB at the default 4 KiB page size, and still
/// far below `MAX_FRAME` at SQLite's largest (64 KiB).
const PAGES_PER_MESSAGE: usize = 256;

/// How far a clone or rewind has got, for a progress bar.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Bytes received.
    pub bytes: u64,
    /// Bytes expected.
    pub total: u64,
}

/// Which of the snapshot's pages to send.
pub(crate) enum Wanted {
    /// Every page, in order (a clone).
    All,
    /// These (a rewind); numbers past the snapshot's end are dropped, since
    /// the database shrank there and the size in `CloneStart` says so.
    These(Vec<u32>),
}

/// Why the primary could not send a snapshot.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServeError {
    /// No snapshot could be taken.
    #[error("taking the snapshot: {0}")]
    Snapshot(#[from] SnapshotError),
    /// Reading the snapshot's pages failed.
    #[error("reading the snapshot's pages: {0}")]
    Pages(#[from] rusqlite::Error),
    /// The log no longer holds what the peer needs.
    #[error("reading the log at LSN {lsn}: {source}")]
    Log {
        /// Where the read started.
        lsn: u64,
        /// Why it failed.
        #[source]
        source: hadr_log::LogError,
    },
    /// The task writing to the connection stopped (it reports why).
    #[error("the connection was closed")]
    Closed,
    /// The blocking task panicked or was cancelled.
    #[error("the snapshot task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl ServeError {
    /// What the peer is told to do about it.
    fn code(&self) -> RefuseCode {
        match self {
            // The log the peer needs is gone: only a new copy helps.
            ServeError::Log { .. } => RefuseCode::NeedsClone,
            _ => RefuseCode::Other,
        }
    }
}

/// The blocking producer's end of the channel to the connection.
pub(crate) struct Sink(mpsc::Sender<Message>);

impl Sink {
    /// Queue a message for the connection.
    pub(crate) fn send(&self, m: Message) -> Result<(), ServeError> {
        self.0.blocking_send(m).map_err(|_| ServeError::Closed)
    }
}

/// What a producer sent, for the log.
struct Sent {
    lsn: u64,
    pages: usize,
    messages: usize,
}

/// Send a snapshot of the primary: `CloneStart`, the `wanted` pages, what
/// `then` sends (it is given the snapshot's LSN), `CloneEnd`.
///
/// Pages are read on a blocking thread inside the snapshot's read
/// transaction while this task writes them out. A failure of the snapshot
/// is logged and sent to the peer as a refusal, and is not an error here:
/// only the connection failing is.
pub(crate) async fn serve_snapshot(
    ctx: &PrimaryCtx,
    writer: &mut Writer,
    kind: &'static str,
    wanted: Wanted,
    then: impl FnOnce(u64, &Sink) -> Result<(), ServeError> + Send + 'static,
) -> Result<(), WireError> {
    let snapshot = ctx.snapshot.clone();
    let control = ctx.engine.control();
    let (tx, mut rx) = mpsc::channel::<Message>(8);
    let producer = tokio::task::spawn_blocking(move || -> Result<Sent, ServeError> {
        let sink = Sink(tx);
        let (conn, lsn) = snapshot()?;
        let page_size: u32 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let db_pages: u32 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        sink.send(Message::CloneStart {
            database_id: control.database_id,
            epoch_history: control.epoch_history,
            epoch: control.epoch,
            lsn,
            page_size,
            pages: db_pages,
        })?;
        let mut out = Outgoing::new(page_size, &sink);
        send_pages(&conn, wanted, db_pages, &mut out)?;
        out.flush()?;
        let (pages, messages) = (out.pages, out.messages);
        // What `then` adds (the log below the snapshot's LSN) does not change
        // any more: the read transaction need not hold back checkpoints for it.
        drop(conn);
        then(lsn, &sink)?;
        sink.send(Message::CloneEnd)?;
        Ok(Sent {
            lsn,
            pages,
            messages,
        })
    });
    while let Some(m) = rx.recv().await {
        writer.send(&m, ctx.timeout * 4).await?;
    }
    match producer.await.map_err(ServeError::from).and_then(|r| r) {
        Ok(sent) => {
            info!(
                kind,
                lsn = sent.lsn,
                pages = sent.pages,
                page_messages = sent.messages,
                "snapshot sent"
            );
            Ok(())
        }
        Err(e) => {
            warn!(kind, error = %e, "snapshot not sent; refusing the peer");
            let refuse = Refuse::new(e.code(), format!("{kind} failed on the primary: {e}"));
            writer.send(&Message::Refuse(refuse), ctx.timeout).await
        }
    }
}

/// Read the wanted pages of the snapshot in `conn` into `out`.
fn send_pages(
    conn: &rusqlite::Connection,
    wanted: Wanted,
    db_pages: u32,
    out: &mut Outgoing,
) -> Result<(), ServeError> {
    match wanted {
        Wanted::All => {
            let mut stmt = conn.prepare("SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                out.push(row.get(0)?, image(row, 1)?)?;
            }
        }
        Wanted::These(mut pgnos) => {
            pgnos.retain(|p| (1..=db_pages).contains(p));
            pgnos.sort_unstable();
            pgnos.dedup();
            // sqlite_dbpage answers `pgno = ?` without a scan; a scan would
            // read every page of the database for a few scattered ones.
            let mut stmt = conn.prepare("SELECT data FROM sqlite_dbpage WHERE pgno = ?1")?;
            for pgno in pgnos {
                let mut rows = stmt.query([pgno])?;
                let row = rows.next()?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
                out.push(pgno, image(row, 0)?)?;
            }
        }
    }
    Ok(())
}

fn image<'r>(row: &'r rusqlite::Row<'_>, column: usize) -> Result<&'r [u8], rusqlite::Error> {
    Ok(row.get_ref(column)?.as_blob()?)
}

/// Pages on their way into one message.
struct Outgoing<'s> {
    sink: &'s Sink,
    page_size: usize,
    pgnos: Vec<u32>,
    data: Vec<u8>,
    pages: usize,
    messages: usize,
}

impl<'s> Outgoing<'s> {
    fn new(page_size: u32, sink: &'s Sink) -> Self {
        let page_size = page_size as usize;
        Outgoing {
            sink,
            page_size,
            pgnos: Vec::with_capacity(PAGES_PER_MESSAGE),
            data: Vec::with_capacity(PAGES_PER_MESSAGE * page_size),
            pages: 0,
            messages: 0,
        }
    }

    /// Add a page; pages come in ascending order.
    fn push(&mut self, pgno: u32, image: &[u8]) -> Result<(), ServeError> {
        self.pgnos.push(pgno);
        self.data.extend_from_slice(image);
        if self.pgnos.len() == PAGES_PER_MESSAGE {
            self.flush()?;
        }
        Ok(())
    }

    /// Send what was added: as one run if it is one (a clone's always are),
    /// else with every page's number.
    fn flush(&mut self) -> Result<(), ServeError> {
        let Some(&first) = self.pgnos.first() else {
            return Ok(());
        };
        let data = std::mem::replace(
            &mut self.data,
            Vec::with_capacity(PAGES_PER_MESSAGE * self.page_size),
        );
        let pgnos = std::mem::replace(&mut self.pgnos, Vec::with_capacity(PAGES_PER_MESSAGE));
        self.pages += pgnos.len();
        self.messages += 1;
        let run = pgnos
            .iter()
            .enumerate()
            .all(|(i, p)| p.checked_sub(first) == Some(i as u32));
        self.sink.send(if run {
            Message::ClonePages {
                first_pgno: first,
                data,
            }
        } else {
            Message::ScatteredPages { pgnos, data }
        })
    }
}

/// Why fetching from the primary failed, for a clone and a rewind alike.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The primary could not be connected to (in time, or over TLS).
    #[error(transparent)]
    Dial(#[from] DialError),
    /// The connection failed.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The primary refused; its code says why.
    #[error("the primary refused: {}", .0.reason)]
    Refused(Refuse),
    /// The primary is of another protocol version or database.
    #[error(transparent)]
    Mismatch(#[from] HelloMismatch),
    /// The primary broke the protocol.
    #[error("the primary sent something other than {expected}")]
    Unexpected {
        /// What was expected.
        expected: &'static str,
    },
    /// A page message does not fit the snapshot it belongs to.
    #[error("the primary sent a malformed page message: {0}")]
    BadPages(&'static str),
}

/// Connect to the primary at `from` as a cloner (over TLS with `tls`) and
/// exchange Hellos; returns the primary's Hello and the connection.
pub(crate) async fn connect(
    from: &str,
    ours: &Hello,
    timeout: Duration,
    tls: Option<&LinkTls>,
) -> Result<(Hello, Reader, Writer), TransferError> {
    let link = crate::link::dial(from, tls, timeout).await?;
    let (mut reader, mut writer) = (link.reader, link.writer);
    writer.send(&Message::Hello(ours.clone()), timeout).await?;
    let theirs = match reader.next(timeout).await? {
        Message::Hello(h) => h,
        Message::Refuse(r) => return Err(TransferError::Refused(r)),
        _ => return Err(TransferError::Unexpected { expected: "Hello" }),
    };
    check_hello(ours, &theirs)?;
    Ok((theirs, reader, writer))
}

/// A snapshot's shape, from its `CloneStart`.
pub(crate) struct Start {
    pub database_id: String,
    pub epoch_history: Vec<EpochStart>,
    pub epoch: u64,
    /// The snapshot is the state after every record below this LSN.
    pub lsn: u64,
    pub page_size: u32,
    /// The database's size in pages.
    pub pages: u32,
}

/// The receiving end of a snapshot, after the Hellos.
pub(crate) struct Incoming {
    reader: Reader,
    timeout: Duration,
    /// The snapshot's shape.
    pub start: Start,
}

/// One piece of a snapshot after its start.
pub(crate) enum Part {
    /// Page images.
    Pages(PageBatch),
    /// Log records (a rewind's).
    Records {
        /// LSN of the first.
        start_lsn: u64,
        /// Encoded records.
        bytes: Vec<u8>,
    },
    /// The snapshot is complete.
    End,
}

/// Send `request` (a `CloneRequest` or `RewindRequest`) and wait for the
/// snapshot's start.
pub(crate) async fn request(
    mut reader: Reader,
    writer: &mut Writer,
    request: &Message,
    timeout: Duration,
) -> Result<Incoming, TransferError> {
    writer.send(request, timeout).await?;
    // The primary takes its snapshot first, which waits for the write lock.
    let start = match reader.next(timeout * 4).await? {
        Message::CloneStart {
            database_id,
            epoch_history,
            epoch,
            lsn,
            page_size,
            pages,
        } => Start {
            database_id,
            epoch_history,
            epoch,
            lsn,
            page_size,
            pages,
        },
        Message::Refuse(r) => return Err(TransferError::Refused(r)),
        _ => {
            return Err(TransferError::Unexpected {
                expected: "CloneStart",
            })
        }
    };
    if start.page_size == 0 {
        return Err(TransferError::BadPages("page size 0"));
    }
    Ok(Incoming {
        reader,
        timeout,
        start,
    })
}

impl Incoming {
    /// The next piece of the snapshot.
    pub(crate) async fn next(&mut self) -> Result<Part, TransferError> {
        let (pgnos, data) = match self.reader.next(self.timeout * 4).await? {
            Message::ClonePages { first_pgno, data } => {
                let n = (data.len() / self.start.page_size as usize) as u32;
                let end = first_pgno
                    .checked_add(n)
                    .ok_or(TransferError::BadPages("page numbers past 2^32"))?;
                ((first_pgno..end).collect(), data)
            }
            Message::ScatteredPages { pgnos, data } => (pgnos, data),
            Message::Records { start_lsn, bytes } => return Ok(Part::Records { start_lsn, bytes }),
            Message::CloneEnd => return Ok(Part::End),
            Message::Refuse(r) => return Err(TransferError::Refused(r)),
            _ => {
                return Err(TransferError::Unexpected {
                    expected: "pages, records or CloneEnd",
                })
            }
        };
        PageBatch::new(pgnos, data, &self.start).map(Part::Pages)
    }
}

/// Page images with their numbers, checked against the snapshot's shape.
pub(crate) struct PageBatch {
    pgnos: Vec<u32>,
    data: Vec<u8>,
    page_size: usize,
}

impl PageBatch {
    fn new(pgnos: Vec<u32>, data: Vec<u8>, start: &Start) -> Result<PageBatch, TransferError> {
        let page_size = start.page_size as usize;
        if pgnos.len().checked_mul(page_size) != Some(data.len()) {
            return Err(TransferError::BadPages(
                "its data is not one page for each page number",
            ));
        }
        if pgnos.iter().any(|p| !(1..=start.pages).contains(p)) {
            return Err(TransferError::BadPages(
                "a page number outside the database",
            ));
        }
        Ok(PageBatch {
            pgnos,
            data,
            page_size,
        })
    }

    /// Bytes of page images.
    pub(crate) fn bytes(&self) -> u64 {
        self.data.len() as u64
    }

    /// Each page and its image.
    pub(crate) fn pages(&self) -> impl Iterator<Item = (u32, &[u8])> {
        self.pgnos
            .iter()
            .copied()
            .zip(self.data.chunks(self.page_size))
    }

    /// Runs of consecutive pages: the first page's number and their images.
    pub(crate) fn runs(&self) -> impl Iterator<Item = (u32, &[u8])> {
        let mut i = 0;
        std::iter::from_fn(move || {
            let start = i;
            let first = *self.pgnos.get(start)?;
            i += 1;
            while i < self.pgnos.len()
                && Some(self.pgnos[i]) == first.checked_add((i - start) as u32)
            {
                i += 1;
            }
            Some((
                first,
                &self.data[start * self.page_size..i * self.page_size],
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(pages: u32) -> Start {
        Start {
            database_id: String::new(),
            epoch_history: vec![],
            epoch: 1,
            lsn: 0,
            page_size: 4,
            pages,
        }
    }

    /// The messages `Outgoing` makes of these pages (4-byte pages, each filled with its number).
    fn sent(pgnos: impl IntoIterator<Item = u32>) -> Vec<Message> {
        let (tx, mut rx) = mpsc::channel(1024);
        let sink = Sink(tx);
        let mut out = Outgoing::new(4, &sink);
        for p in pgnos {
            out.push(p, &[p as u8; 4]).unwrap();
        }
        out.flush().unwrap();
        drop(sink);
        std::iter::from_fn(|| rx.blocking_recv()).collect()
    }

    #[test]
    fn a_run_goes_as_clone_pages_and_scattered_pages_share_a_message() {
        let m = sent([3, 4, 5]);
        assert_eq!(
            m,
            vec![Message::ClonePages {
                first_pgno: 3,
                data: vec![3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5],
            }]
        );
        let m = sent([2, 7, 8]);
        assert_eq!(
            m,
            vec![Message::ScatteredPages {
                pgnos: vec![2, 7, 8],
                data: vec![2, 2, 2, 2, 7, 7, 7, 7, 8, 8, 8, 8],
            }]
        );
        let m = sent((1..=PAGES_PER_MESSAGE as u32 + 1).map(|p| p * 2));
        assert_eq!(m.len(), 2);
        assert!(
            matches!(&m[1], Message::ClonePages { first_pgno, data } if *first_pgno == 514 && data.len() == 4)
        );
    }

    #[test]
    fn a_batch_yields_its_runs_and_its_pages() {
        let data: Vec<u8> = [2u8, 3, 5].iter().flat_map(|p| [*p; 4]).collect();
        let b = PageBatch::new(vec![2, 3, 5], data, &start(5)).unwrap();
        let runs: Vec<(u32, usize)> = b.runs().map(|(p, d)| (p, d.len())).collect();
        assert_eq!(runs, vec![(2, 8), (5, 4)]);
        let pages: Vec<(u32, u8)> = b.pages().map(|(p, d)| (p, d[0])).collect();
        assert_eq!(pages, vec![(2, 2), (3, 3), (5, 5)]);
        assert_eq!(b.bytes(), 12);
    }

    #[test]
    fn page_messages_that_do_not_fit_the_snapshot_are_refused() {
        for (pgnos, len) in [
            (vec![0], 4),
            (vec![6], 4),
            (vec![1, 2], 4),
            (vec![1], 5),
            (vec![u32::MAX], 4),
        ] {
            assert!(
                matches!(
                    PageBatch::new(pgnos.clone(), vec![0; len], &start(5)),
                    Err(TransferError::BadPages(_))
                ),
                "{pgnos:?} with {len} bytes"
            );
        }
    }
}
