//! `hadr clone`: copy a running primary into a new standby.
//!
//! The primary pins a snapshot (a read transaction begun while no writer can
//! commit, so its state is exactly the log up to an LSN X), then streams the
//! raw pages from `sqlite_dbpage`. The backup API and VACUUM INTO are not
//! used: both rewrite page 1, and a standby must be byte-identical. The clone
//! writes the pages into a new file, starts its log at X, and from then on
//! streams records from X like any standby.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use hadr_engine::{Control, Engine, EpochStart, DB_FILE};
use hadr_log::LogConfig;
use hadr_protocol::{check_hello, Hello, Message, PeerRole};
use tokio::net::TcpStream;
use tracing::info;

use crate::context::PrimaryCtx;
use crate::wire::{Reader, WireError, Writer};

/// Pages per ClonePages message.
const PAGES_PER_MESSAGE: usize = 256;

/// Primary side: answer a CloneRequest with a snapshot.
pub async fn serve(ctx: &PrimaryCtx, writer: &mut Writer) -> Result<(), WireError> {
    let snapshot = ctx.snapshot.clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(8);
    let control = ctx.engine.control();
    // Pages are read on a blocking thread inside the snapshot's read transaction.
    let producer = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let (conn, lsn) = snapshot().map_err(|e| e.to_string())?;
        let page_size: u32 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(|e| e.to_string())?;
        let pages: u32 = conn
            .query_row("SELECT count(*) FROM sqlite_dbpage", [], |r| r.get(0))
            .map_err(|e| e.to_string())?;
        let start = Message::CloneStart {
            database_id: control.database_id.clone(),
            epoch_history: control.epoch_history.clone(),
            epoch: control.epoch,
            lsn,
            page_size,
            pages,
        };
        tx.blocking_send(start).map_err(|e| e.to_string())?;
        let mut stmt = conn
            .prepare("SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno")
            .map_err(|e| e.to_string())?;
        let mut rows = stmt.query([]).map_err(|e| e.to_string())?;
        let mut first = 1u32;
        let mut data = Vec::with_capacity(PAGES_PER_MESSAGE * page_size as usize);
        let mut n = 0usize;
        while let Some(row) = rows.next().map_err(|e| e.to_string())? {
            let pgno: u32 = row.get(0).map_err(|e| e.to_string())?;
            if n == 0 {
                first = pgno;
            }
            let bytes = row
                .get_ref(1)
                .map_err(|e| e.to_string())?
                .as_blob()
                .map_err(|e| e.to_string())?;
            data.extend_from_slice(bytes);
            n += 1;
            if n == PAGES_PER_MESSAGE {
                tx.blocking_send(Message::ClonePages {
                    first_pgno: first,
                    data: std::mem::take(&mut data),
                })
                .map_err(|e| e.to_string())?;
                n = 0;
            }
        }
        if n > 0 {
            tx.blocking_send(Message::ClonePages {
                first_pgno: first,
                data,
            })
            .map_err(|e| e.to_string())?;
        }
        tx.blocking_send(Message::CloneEnd)
            .map_err(|e| e.to_string())?;
        Ok(())
    });
    while let Some(m) = rx.recv().await {
        writer.send(&m, ctx.timeout * 4).await?;
    }
    match producer.await {
        Ok(Ok(())) => {
            info!("clone snapshot sent");
            Ok(())
        }
        Ok(Err(e)) => {
            let _ = writer
                .send(
                    &Message::Refuse(hadr_protocol::Refuse::new(
                        hadr_protocol::RefuseCode::Other,
                        format!("snapshot failed: {e}"),
                    )),
                    ctx.timeout,
                )
                .await;
            Err(WireError::Closed)
        }
        Err(_) => Err(WireError::Closed),
    }
}

/// Progress of a clone, for a progress bar.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Bytes received.
    pub bytes: u64,
    /// Bytes expected.
    pub total: u64,
}

/// Why a clone failed.
#[derive(Debug, thiserror::Error)]
pub enum CloneError {
    /// Connection problem.
    #[error("{0}")]
    Wire(#[from] WireError),
    /// The primary refused.
    #[error("the primary refused: {0}")]
    Refused(String),
    /// Local file problem.
    #[error("{0}")]
    Io(String),
    /// Engine problem.
    #[error("{0}")]
    Engine(#[from] hadr_engine::EngineError),
}

/// Client side: copy the primary at `from` into a new data directory `dir`.
/// The directory must not hold a database. Returns the snapshot LSN.
pub async fn clone_from(
    from: &str,
    dir: &Path,
    log_cfg: &LogConfig,
    timeout: Duration,
    mut progress: impl FnMut(Progress),
) -> Result<u64, CloneError> {
    if Control::path(dir).exists() || dir.join(DB_FILE).exists() {
        return Err(CloneError::Io(format!(
            "{} already holds a database; refusing to overwrite it",
            dir.display()
        )));
    }
    let stream = tokio::time::timeout(timeout, TcpStream::connect(from))
        .await
        .map_err(|_| CloneError::Io(format!("{from} did not answer within {timeout:?}")))?
        .map_err(|e| CloneError::Io(format!("cannot reach {from}: {e}")))?;
    let (r, w) = stream.into_split();
    let (mut reader, mut writer) = (Reader::new(r), Writer::new(w));
    let ours = Hello {
        version: hadr_protocol::PROTOCOL_VERSION,
        role: PeerRole::Cloner,
        database_id: String::new(),
        epoch: 0,
        epoch_history: vec![],
        lsn: 0,
        address: String::new(),
    };
    writer.send(&Message::Hello(ours.clone()), timeout).await?;
    let theirs = match reader.next(timeout).await? {
        Message::Hello(h) => h,
        Message::Refuse(r) => return Err(CloneError::Refused(r.reason)),
        _ => return Err(CloneError::Refused("unexpected answer to Hello".into())),
    };
    check_hello(&ours, &theirs).map_err(|e| CloneError::Refused(e.to_string()))?;
    writer.send(&Message::CloneRequest, timeout).await?;
    let (database_id, epoch_history, epoch, lsn, page_size, pages) =
        match reader.next(timeout * 4).await? {
            Message::CloneStart {
                database_id,
                epoch_history,
                epoch,
                lsn,
                page_size,
                pages,
            } => (database_id, epoch_history, epoch, lsn, page_size, pages),
            Message::Refuse(r) => return Err(CloneError::Refused(r.reason)),
            _ => return Err(CloneError::Refused("expected CloneStart".into())),
        };
    std::fs::create_dir_all(dir)
        .map_err(|e| CloneError::Io(format!("creating {}: {e}", dir.display())))?;
    // Written under a temporary name: a crash mid-clone leaves no half database
    // that could be mistaken for a complete one; running clone again starts over.
    let tmp = dir.join(format!("{DB_FILE}.clone"));
    let mut file = std::fs::File::create(&tmp)
        .map_err(|e| CloneError::Io(format!("creating {}: {e}", tmp.display())))?;
    let total = u64::from(pages) * u64::from(page_size);
    let mut got = 0u64;
    let started = Instant::now();
    loop {
        match reader.next(timeout * 4).await? {
            Message::ClonePages { first_pgno, data } => {
                use std::io::{Seek, SeekFrom};
                file.seek(SeekFrom::Start(
                    u64::from(first_pgno.saturating_sub(1)) * u64::from(page_size),
                ))
                .and_then(|_| file.write_all(&data))
                .map_err(|e| CloneError::Io(format!("writing {}: {e}", tmp.display())))?;
                got += data.len() as u64;
                progress(Progress { bytes: got, total });
            }
            Message::CloneEnd => break,
            Message::Refuse(r) => return Err(CloneError::Refused(r.reason)),
            _ => {
                return Err(CloneError::Refused(
                    "unexpected message during clone".into(),
                ))
            }
        }
    }
    file.sync_all()
        .map_err(|e| CloneError::Io(format!("syncing {}: {e}", tmp.display())))?;
    drop(file);
    std::fs::rename(&tmp, dir.join(DB_FILE))
        .map_err(|e| CloneError::Io(format!("renaming {}: {e}", tmp.display())))?;
    let mut control = Control::new(database_id);
    control.epoch = epoch;
    control.epoch_history = epoch_history;
    if control.epoch_history.is_empty() {
        control.epoch_history = vec![EpochStart {
            epoch,
            start_lsn: 0,
        }];
    }
    Engine::init_clone(dir, log_cfg, control, lsn)?;
    info!(
        bytes = got,
        secs = started.elapsed().as_secs_f64(),
        lsn,
        "clone complete"
    );
    Ok(lsn)
}
