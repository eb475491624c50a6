//! COPY FROM's rows decoded on a thread of their own while the session's
//! thread inserts the previous ones (crates/hadr-server/src/session/copy.rs):
//! decoding (splitting lines and fields, escapes, UTF-8 checks) was a fifth
//! of the session thread's time in a text load, and on two cores it can
//! run beside SQLite's inserts.
//!
//! The session hands the client's CopyData over in chunks of about
//! [`CHUNK`] bytes, gets rows back in batches of several INSERTs' worth,
//! and returns the emptied batches for reuse. Every channel is bounded; the
//! session never blocks on a full one without taking the decoder's output
//! meanwhile, so neither side can wait on the other for good. The thread
//! ends when the data does, when it finds a bad row (the error goes to the
//! session, with its line), or when the session stops (its ends of the
//! channels are dropped).

use std::sync::mpsc::{
    sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError,
};
use std::time::Duration;

use hadr_sql::hadr_copy::{Decoder, Header, Row};

use crate::errors::{sqlstate, PgError};

/// Input handed to the decoder at a time.
const CHUNK: usize = 256 << 10;

/// INSERT batches per hand-over to the session: each hand-over can cost
/// both threads a wake-up, which at one INSERT's worth of rows ate what
/// decoding apart saved.
const INSERTS_PER_BATCH: usize = 16;

/// Chunks waiting for the decoder, batches waiting for the session.
const INPUT_BOUND: usize = 8;
const OUTPUT_BOUND: usize = 4;

/// How long the session waits for a batch before it tries its input again.
const POLL: Duration = Duration::from_millis(1);

/// Longest the session waits for the decoder to answer once it has all it
/// needs (its input ended, or it stopped): decoding a chunk takes
/// milliseconds, so this only ends a wait on a decoder gone wrong.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// What the decoder needs to know of the load.
pub(super) struct Decoding {
    pub decoder: Decoder,
    pub header: Header,
    /// The target columns' names (for `HEADER MATCH`), in data order.
    pub names: Vec<String>,
    pub table: String,
    /// Rows per INSERT; a batch holds [`INSERTS_PER_BATCH`] of them.
    pub per_insert: usize,
}

/// Rows decoded: the first `n` of `rows`; a batch that is not full only at
/// the end of the data.
pub(super) struct Batch {
    pub rows: Vec<Row>,
    pub n: usize,
}

enum Decoded {
    Rows(Batch),
    Failed(PgError),
    Done,
}

/// The session's ends of the channels.
pub(super) struct Pipe {
    input: SyncSender<Option<Vec<u8>>>,
    output: Receiver<Decoded>,
    recycle: SyncSender<Vec<Row>>,
    buf: Vec<u8>,
}

/// The decoder thread's ends.
pub(super) struct Ends {
    input: Receiver<Option<Vec<u8>>>,
    output: SyncSender<Decoded>,
    recycle: Receiver<Vec<Row>>,
}

/// A new pipe and the ends for [`run`].
pub(super) fn pipe() -> (Pipe, Ends) {
    let (in_tx, in_rx) = sync_channel(INPUT_BOUND);
    let (out_tx, out_rx) = sync_channel(OUTPUT_BOUND);
    let (re_tx, re_rx) = sync_channel(OUTPUT_BOUND + 2);
    (
        Pipe {
            input: in_tx,
            output: out_rx,
            recycle: re_tx,
            buf: Vec::with_capacity(CHUNK * 2),
        },
        Ends {
            input: in_rx,
            output: out_tx,
            recycle: re_rx,
        },
    )
}

fn gone() -> PgError {
    PgError::new(
        sqlstate::INTERNAL_ERROR,
        "the COPY decoder stopped without an answer",
    )
}

impl Pipe {
    /// Add client data; `sink` gets every batch decoded meanwhile.
    pub fn push(
        &mut self,
        data: &[u8],
        sink: &mut dyn FnMut(&Batch) -> Result<(), PgError>,
    ) -> Result<(), PgError> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK * 2));
            self.send(Some(chunk), sink)?;
        }
        self.ready(sink)
    }

    /// The data is over: every remaining batch to `sink`.
    pub fn finish(
        &mut self,
        sink: &mut dyn FnMut(&Batch) -> Result<(), PgError>,
    ) -> Result<(), PgError> {
        if !self.buf.is_empty() {
            let chunk = std::mem::take(&mut self.buf);
            self.send(Some(chunk), sink)?;
        }
        self.send(None, sink)?;
        loop {
            let d = self
                .output
                .recv_timeout(ANSWER_TIMEOUT)
                .map_err(|_| gone())?;
            if self.take(d, sink)? {
                return Ok(());
            }
        }
    }

    fn send(
        &mut self,
        mut item: Option<Vec<u8>>,
        sink: &mut dyn FnMut(&Batch) -> Result<(), PgError>,
    ) -> Result<(), PgError> {
        loop {
            match self.input.try_send(item) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(back)) => {
                    item = back;
                    // The decoder has input; take what it made meanwhile.
                    match self.output.recv_timeout(POLL) {
                        Ok(d) => {
                            if self.take(d, sink)? {
                                return Err(gone());
                            }
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return Err(gone()),
                    }
                }
                // It stopped: its reason is waiting in the output.
                Err(TrySendError::Disconnected(_)) => {
                    return match self.output.recv_timeout(ANSWER_TIMEOUT) {
                        Ok(d) => self.take(d, sink).and_then(|_| Err(gone())),
                        Err(_) => Err(gone()),
                    };
                }
            }
        }
    }

    /// Batches decoded already, without waiting.
    fn ready(
        &mut self,
        sink: &mut dyn FnMut(&Batch) -> Result<(), PgError>,
    ) -> Result<(), PgError> {
        loop {
            match self.output.try_recv() {
                Ok(d) => {
                    if self.take(d, sink)? {
                        return Err(gone());
                    }
                }
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Disconnected) => return Err(gone()),
            }
        }
    }

    /// One message from the decoder; true when it is the end.
    fn take(
        &mut self,
        d: Decoded,
        sink: &mut dyn FnMut(&Batch) -> Result<(), PgError>,
    ) -> Result<bool, PgError> {
        match d {
            Decoded::Rows(batch) => {
                sink(&batch)?;
                // A full recycle queue just lets this batch go.
                let _ = self.recycle.try_send(batch.rows);
                Ok(false)
            }
            Decoded::Failed(e) => Err(e),
            Decoded::Done => Ok(true),
        }
    }
}

/// The decoder thread: chunks in, checked rows out in batches.
pub(super) fn run(mut d: Decoding, ends: Ends) {
    let per_batch = d.per_insert * INSERTS_PER_BATCH;
    let fresh = || (0..per_batch).map(|_| Row::default()).collect::<Vec<_>>();
    let mut rows = fresh();
    let mut n = 0;
    loop {
        let Ok(item) = ends.input.recv() else {
            return; // the session stopped
        };
        let at_end = item.is_none();
        if let Some(chunk) = item {
            d.decoder.feed(&chunk);
        }
        loop {
            match next(&mut d, &mut rows[n], at_end) {
                Ok(false) => break,
                Ok(true) => {
                    n += 1;
                    if n == rows.len() {
                        let next_rows = ends.recycle.try_recv().unwrap_or_else(|_| fresh());
                        let full = std::mem::replace(&mut rows, next_rows);
                        if ends
                            .output
                            .send(Decoded::Rows(Batch { rows: full, n }))
                            .is_err()
                        {
                            return;
                        }
                        n = 0;
                    }
                }
                Err(e) => {
                    let _ = ends.output.send(Decoded::Failed(e));
                    return;
                }
            }
        }
        if at_end {
            if n > 0 && ends.output.send(Decoded::Rows(Batch { rows, n })).is_err() {
                return;
            }
            let _ = ends.output.send(Decoded::Done);
            return;
        }
    }
}

/// The next data row into `row` (a header line is checked and skipped):
/// false when the input so far holds no complete one.
fn next(d: &mut Decoding, row: &mut Row, at_end: bool) -> Result<bool, PgError> {
    loop {
        let more = d.decoder.next_row(row, at_end).map_err(|e| {
            PgError::new(e.sqlstate(), e.to_string()).with_context(format!(
                "COPY {}, line {}",
                d.table,
                e.line()
            ))
        })?;
        if !more {
            return Ok(false);
        }
        let context = || format!("COPY {}, line {}", d.table, row.line());
        if d.header != Header::Absent {
            let matched = d.header == Header::Present
                || (row.len() == d.names.len()
                    && d.names
                        .iter()
                        .enumerate()
                        .all(|(i, n)| row.field(i) == Some(n.as_str())));
            d.header = Header::Absent;
            if !matched {
                return Err(PgError::new(
                    sqlstate::BAD_COPY_FORMAT,
                    "column names in the header line do not match the columns of the table",
                )
                .with_context(context()));
            }
            continue;
        }
        if row.len() > d.names.len() {
            return Err(PgError::new(
                sqlstate::BAD_COPY_FORMAT,
                "extra data after last expected column",
            )
            .with_context(context()));
        }
        if let Some(missing) = d.names.get(row.len()) {
            return Err(PgError::new(
                sqlstate::BAD_COPY_FORMAT,
                format!("missing data for column \"{missing}\""),
            )
            .with_context(context()));
        }
        return Ok(true);
    }
}
