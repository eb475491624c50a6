//! Rewind: bring an old primary whose log went past the takeover point back
//! in line with the new primary, without copying the whole database.
//!
//! The divergence LSN D comes from the two epoch histories
//! ([`hadr_ha::rejoin::rejoin`]). The old primary lists every page its own
//! records after D touched, asks the new primary for the current image of
//! those pages and for its log from D, truncates its own log at D, appends
//! the new primary's records, and applies them with the fetched images on
//! top, in one transaction. Page images are idempotent and the last one
//! wins, so the result is the new primary's state at the end of what was
//! sent. If either side's log no longer reaches back to D, the caller
//! re-clones instead ([`RewindError::NeedsClone`]).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hadr_engine::{Engine, EpochStart, Role};
use hadr_log::{LogConfig, Page};
use hadr_protocol::{check_hello, Message, PeerRole, Refuse, RefuseCode};
use serde::Serialize;
use tokio::net::TcpStream;
use tracing::{info, warn};

use crate::clone::Progress;
use crate::context::PrimaryCtx;
use crate::wire::{Reader, WireError, Writer};
use hadr_ha::rejoin::{rejoin, Rejoin};

/// Pages per ClonePages message.
const PAGES_PER_MESSAGE: usize = 256;

/// What a rewind did.
#[derive(Clone, Debug, Serialize)]
pub struct RewindReport {
    /// Divergence LSN D.
    pub divergence: u64,
    /// This node's log end before the rewind (its records in D..this were dropped).
    pub old_end: u64,
    /// Log end after the rewind (the new primary's snapshot LSN).
    pub end: u64,
    /// Pages fetched from the new primary.
    pub pages: usize,
    /// Bytes of the new primary's log received.
    pub log_bytes: u64,
    /// Wall time.
    pub secs: f64,
    /// Of which opening the data directory (the node's own crash recovery).
    pub open_secs: f64,
}

/// What [`rewind`] found to do.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RewindOutcome {
    /// The log does not go past the divergence point: the node can follow as is.
    NotNeeded,
    /// Rewound.
    Rewound(RewindReport),
}

/// Why a rewind failed.
#[derive(Debug, thiserror::Error)]
pub enum RewindError {
    /// A log no longer reaches back to the divergence point: re-clone.
    #[error("rewind impossible, needs clone: {0}")]
    NeedsClone(String),
    /// Connection problem.
    #[error("{0}")]
    Wire(#[from] WireError),
    /// The peer refused or is not a usable primary.
    #[error("{0}")]
    Refused(String),
    /// Local database or log problem.
    #[error("{0}")]
    Engine(#[from] hadr_engine::EngineError),
    /// Log problem.
    #[error("{0}")]
    Log(#[from] hadr_log::LogError),
    /// A blocking task failed.
    #[error("internal error: {0}")]
    Internal(String),
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RewindError> + Send + 'static,
) -> Result<T, RewindError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RewindError::Internal(e.to_string()))?
}

/// Rewind the stopped node in `dir` against the primary at `from` (its
/// replication address). Opens and closes the data directory itself.
pub async fn rewind(
    from: &str,
    dir: &Path,
    log_cfg: &LogConfig,
    timeout: Duration,
    mut progress: impl FnMut(Progress),
) -> Result<RewindOutcome, RewindError> {
    let started = Instant::now();
    let (d, cfg) = (dir.to_path_buf(), log_cfg.clone());
    let engine = blocking(move || Ok(Arc::new(Engine::open(&d, &cfg)?.0))).await?;
    let open_secs = started.elapsed().as_secs_f64();
    info!(
        secs = open_secs,
        "rewind: data directory opened (recovery done)"
    );
    let result = rewind_open(from, &engine, timeout, &mut progress, started).await;
    let e2 = engine.clone();
    let closed = blocking(move || Ok(e2.close()?)).await;
    let mut outcome = result?;
    closed?;
    if let RewindOutcome::Rewound(r) = &mut outcome {
        r.open_secs = open_secs;
    }
    Ok(outcome)
}

async fn rewind_open(
    from: &str,
    engine: &Arc<Engine>,
    timeout: Duration,
    progress: &mut impl FnMut(Progress),
    started: Instant,
) -> Result<RewindOutcome, RewindError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(from))
        .await
        .map_err(|_| RewindError::Refused(format!("{from} did not answer within {timeout:?}")))?
        .map_err(|e| RewindError::Refused(format!("cannot reach {from}: {e}")))?;
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    let (mut reader, mut writer) = (Reader::new(r), Writer::new(w));
    let ours = crate::hello(engine, PeerRole::Cloner, "");
    writer.send(&Message::Hello(ours.clone()), timeout).await?;
    let theirs = match reader.next(timeout).await? {
        Message::Hello(h) => h,
        Message::Refuse(r) => return Err(RewindError::Refused(r.reason)),
        _ => return Err(RewindError::Refused("unexpected answer to Hello".into())),
    };
    check_hello(&ours, &theirs).map_err(|e| RewindError::Refused(e.to_string()))?;
    if theirs.role != PeerRole::Primary {
        return Err(RewindError::Refused(format!("{from} is not a primary")));
    }
    let old_end = ours.lsn;
    let d = match rejoin(
        ours.epoch,
        &ours.epoch_history,
        old_end,
        theirs.epoch,
        &theirs.epoch_history,
    ) {
        Rejoin::Rewind { divergence } => divergence,
        Rejoin::Follow | Rejoin::Adopt => return Ok(RewindOutcome::NotNeeded),
        Rejoin::Superseded => {
            return Err(RewindError::Refused(format!(
                "{from} is a primary of epoch {}, older than this node's {}: it was superseded",
                theirs.epoch, ours.epoch
            )))
        }
    };
    let log = engine.log().clone();
    if log.start_lsn() > d {
        return Err(RewindError::NeedsClone(format!(
            "this node's log starts at LSN {}, after the divergence point {d}: it cannot tell which pages it changed",
            log.start_lsn()
        )));
    }
    info!(divergence = d, old_end, primary = %from, "rewinding: listing the pages changed after the divergence point");
    let l2 = log.clone();
    let touched = blocking(move || {
        let mut set = BTreeSet::new();
        for item in l2.read_from(d)? {
            let (_, rec) = item?;
            set.extend(rec.pages.iter().map(|p| p.pgno));
        }
        Ok(set)
    })
    .await?;
    info!(
        pages = touched.len(),
        secs = started.elapsed().as_secs_f64(),
        "rewind: pages changed after the divergence point listed"
    );
    writer
        .send(
            &Message::RewindRequest {
                from_lsn: d,
                pages: touched.iter().copied().collect(),
            },
            timeout,
        )
        .await?;
    let (epoch, history, end, page_size, db_pages) = match reader.next(timeout * 4).await? {
        Message::CloneStart {
            epoch,
            epoch_history,
            lsn,
            page_size,
            pages,
            ..
        } => (epoch, epoch_history, lsn, page_size, pages),
        Message::Refuse(r) if r.code == RefuseCode::NeedsClone => {
            return Err(RewindError::NeedsClone(r.reason))
        }
        Message::Refuse(r) => return Err(RewindError::Refused(r.reason)),
        _ => return Err(RewindError::Refused("expected CloneStart".into())),
    };
    if end < d {
        return Err(RewindError::Refused(format!(
            "the primary's snapshot LSN {end} is before the divergence point {d}"
        )));
    }
    let total = touched.len() as u64 * u64::from(page_size) + (end - d);
    let mut got = 0u64;
    progress(Progress { bytes: 0, total });
    // From here on the directory changes: a crash leaves `rewind_pending`
    // set and the node re-clones. The checkpoint LSN drops to D so that
    // recovery never looks for a truncated record.
    engine.update_control(|c| {
        c.rewind_pending = Some(d);
        c.role = Role::Standby;
        c.checkpoint_lsn = c.checkpoint_lsn.min(d);
        c.capture_base_lsn = c.capture_base_lsn.min(d);
    })?;
    let l2 = log.clone();
    blocking(move || Ok(l2.truncate_after(d)?)).await?;
    let mut pages: Vec<Page> = Vec::with_capacity(touched.len());
    let mut log_bytes = 0u64;
    loop {
        match reader.next(timeout * 4).await? {
            Message::ClonePages { first_pgno, data } => {
                if page_size == 0 || data.len() % page_size as usize != 0 {
                    return Err(RewindError::Refused(
                        "page data is not a whole number of pages".into(),
                    ));
                }
                got += data.len() as u64;
                for (i, chunk) in data.chunks(page_size as usize).enumerate() {
                    pages.push(Page {
                        pgno: first_pgno + i as u32,
                        data: chunk.to_vec(),
                    });
                }
            }
            Message::Records { start_lsn, bytes } => {
                got += bytes.len() as u64;
                log_bytes += bytes.len() as u64;
                let l2 = log.clone();
                blocking(move || Ok(l2.append_encoded(start_lsn, &bytes)?)).await?;
            }
            Message::CloneEnd => break,
            Message::Refuse(r) => return Err(RewindError::Refused(r.reason)),
            _ => {
                return Err(RewindError::Refused(
                    "unexpected message during rewind".into(),
                ))
            }
        }
        progress(Progress { bytes: got, total });
    }
    info!(
        pages = pages.len(),
        log_bytes,
        secs = started.elapsed().as_secs_f64(),
        "rewind: pages and log received"
    );
    let (l2, e2) = (log.clone(), engine.clone());
    let n_pages = pages.len();
    blocking(move || {
        l2.flush()?;
        if l2.end_lsn() != end {
            return Err(RewindError::Refused(format!(
                "the primary sent its log up to LSN {}, not to its snapshot LSN {end}",
                l2.end_lsn()
            )));
        }
        e2.finish_rewind(d, pages, db_pages, page_size)?;
        Ok(())
    })
    .await?;
    info!(
        secs = started.elapsed().as_secs_f64(),
        "rewind: applied and checkpointed"
    );
    let history: Vec<EpochStart> = history
        .iter()
        .map(|e| EpochStart {
            epoch: e.epoch,
            start_lsn: e.start_lsn,
        })
        .collect();
    engine.update_control(|c| {
        c.highest_seen_epoch = c.highest_seen_epoch.max(c.epoch).max(epoch);
        c.epoch = epoch;
        c.epoch_history = history;
        c.rewind_pending = None;
    })?;
    let report = RewindReport {
        divergence: d,
        old_end,
        end,
        pages: n_pages,
        log_bytes,
        secs: started.elapsed().as_secs_f64(),
        open_secs: 0.0,
    };
    info!(?report, "rewind complete");
    Ok(RewindOutcome::Rewound(report))
}

/// Primary side: answer a RewindRequest with a snapshot's images of the
/// asked-for pages and the log from `from_lsn` to the snapshot.
pub async fn serve(
    ctx: &PrimaryCtx,
    writer: &mut Writer,
    from_lsn: u64,
    pages: Vec<u32>,
) -> Result<(), WireError> {
    let log = ctx.engine.log().clone();
    if from_lsn < log.start_lsn() || from_lsn > log.end_lsn() {
        let reason = format!(
            "rewind from LSN {from_lsn}: this primary keeps its log only for {}..{}; needs clone",
            log.start_lsn(),
            log.end_lsn()
        );
        warn!(%reason);
        writer
            .send(
                &Message::Refuse(Refuse::new(RefuseCode::NeedsClone, reason)),
                ctx.timeout,
            )
            .await?;
        return Ok(());
    }
    let snapshot = ctx.snapshot.clone();
    let control = ctx.engine.control();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(8);
    let producer = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let (conn, lsn) = snapshot().map_err(|e| e.to_string())?;
        let page_size: u32 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(|e| e.to_string())?;
        let db_pages: u32 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .map_err(|e| e.to_string())?;
        tx.blocking_send(Message::CloneStart {
            database_id: control.database_id.clone(),
            epoch_history: control.epoch_history.clone(),
            epoch: control.epoch,
            lsn,
            page_size,
            pages: db_pages,
        })
        .map_err(|e| e.to_string())?;
        let mut stmt = conn
            .prepare("SELECT data FROM sqlite_dbpage WHERE pgno = ?1")
            .map_err(|e| e.to_string())?;
        let mut wanted: Vec<u32> = pages
            .into_iter()
            .filter(|p| *p >= 1 && *p <= db_pages)
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        // Consecutive pages travel together.
        let mut i = 0;
        while i < wanted.len() {
            let first = wanted[i];
            let mut data = Vec::new();
            let mut n = 0;
            while i < wanted.len() && wanted[i] == first + n && (n as usize) < PAGES_PER_MESSAGE {
                let bytes: Vec<u8> = stmt
                    .query_row([wanted[i]], |r| r.get(0))
                    .map_err(|e| e.to_string())?;
                data.extend_from_slice(&bytes);
                n += 1;
                i += 1;
            }
            tx.blocking_send(Message::ClonePages {
                first_pgno: first,
                data,
            })
            .map_err(|e| e.to_string())?;
        }
        drop(stmt);
        let mut pos = from_lsn;
        while pos < lsn {
            let (bytes, next) = log
                .read_raw(pos, lsn, 4 << 20)
                .map_err(|e| format!("reading the log at LSN {pos}: {e}; needs clone"))?;
            tx.blocking_send(Message::Records {
                start_lsn: pos,
                bytes,
            })
            .map_err(|e| e.to_string())?;
            pos = next;
        }
        tx.blocking_send(Message::CloneEnd)
            .map_err(|e| e.to_string())?;
        info!(from_lsn, to_lsn = lsn, "rewind data sent");
        Ok(())
    });
    while let Some(m) = rx.recv().await {
        writer.send(&m, ctx.timeout * 4).await?;
    }
    match producer.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            let _ = writer
                .send(
                    &Message::Refuse(Refuse::new(
                        RefuseCode::Other,
                        format!("rewind failed on the primary: {e}"),
                    )),
                    ctx.timeout,
                )
                .await;
            Err(WireError::Closed)
        }
        Err(_) => Err(WireError::Closed),
    }
}
