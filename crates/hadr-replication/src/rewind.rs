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

use hadr_engine::{Engine, Role};
use hadr_ha::rejoin::{rejoin, Rejoin};
use hadr_log::{LogConfig, Page};
use hadr_protocol::{Message, PeerRole, Refuse, RefuseCode};
use serde::Serialize;
use tracing::{info, warn};

use crate::context::PrimaryCtx;
use crate::link::LinkTls;
pub use crate::transfer::Progress;
use crate::transfer::{self, Part, ServeError, TransferError, Wanted};
use crate::wire::{WireError, Writer};

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
    NeedsClone(NeedsClone),
    /// Reaching the primary or receiving from it failed, or it refused.
    #[error(transparent)]
    Transfer(TransferError),
    /// The peer is not a primary.
    #[error("{peer} is not a primary")]
    NotPrimary {
        /// Its address.
        peer: String,
    },
    /// The peer is a primary of an older epoch than this node's.
    #[error(
        "{peer} is a primary of epoch {theirs}, older than this node's {ours}: it was superseded"
    )]
    Superseded {
        /// Its address.
        peer: String,
        /// Its epoch.
        theirs: u64,
        /// This node's.
        ours: u64,
    },
    /// The primary's snapshot is older than the point the rewind starts from.
    #[error("the primary's snapshot LSN {snapshot} is before the divergence point {divergence}")]
    SnapshotBeforeDivergence {
        /// The snapshot's LSN.
        snapshot: u64,
        /// The divergence point.
        divergence: u64,
    },
    /// The primary's log did not reach its snapshot.
    #[error("the primary sent its log up to LSN {sent}, not to its snapshot LSN {snapshot}")]
    LogShort {
        /// Where the log received ends.
        sent: u64,
        /// The snapshot's LSN.
        snapshot: u64,
    },
    /// Local database problem.
    #[error(transparent)]
    Engine(#[from] hadr_engine::EngineError),
    /// Local log problem.
    #[error(transparent)]
    Log(#[from] hadr_log::LogError),
    /// A blocking task panicked or was cancelled.
    #[error("internal error: {0}")]
    Internal(#[from] tokio::task::JoinError),
}

/// Why a rewind is impossible and the node must be cloned again instead.
#[derive(Debug, thiserror::Error)]
pub enum NeedsClone {
    /// This node's own log does not reach back to the divergence point.
    #[error("this node's log starts at LSN {log_start}, after the divergence point {divergence}: it cannot tell which pages it changed")]
    LogStartsLater {
        /// Where this node's log starts.
        log_start: u64,
        /// The divergence point.
        divergence: u64,
    },
    /// The primary's log does not.
    #[error("{}", .0.reason)]
    Refused(Refuse),
}

impl From<TransferError> for RewindError {
    fn from(e: TransferError) -> Self {
        match e {
            TransferError::Refused(r) if r.code == RefuseCode::NeedsClone => {
                RewindError::NeedsClone(NeedsClone::Refused(r))
            }
            e => RewindError::Transfer(e),
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RewindError> + Send + 'static,
) -> Result<T, RewindError> {
    tokio::task::spawn_blocking(f).await?
}

/// Rewind the stopped node in `dir` against the primary at `from` (its
/// replication address; over mutual TLS with `tls`). Opens and closes the
/// data directory itself.
pub async fn rewind(
    from: &str,
    dir: &Path,
    log_cfg: &LogConfig,
    timeout: Duration,
    tls: Option<&LinkTls>,
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
    let result = rewind_open(from, &engine, timeout, tls, &mut progress, started).await;
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
    tls: Option<&LinkTls>,
    progress: &mut impl FnMut(Progress),
    started: Instant,
) -> Result<RewindOutcome, RewindError> {
    let ours = crate::hello(engine, PeerRole::Cloner, "");
    let (theirs, reader, mut writer) = transfer::connect(from, &ours, timeout, tls).await?;
    if theirs.role != PeerRole::Primary {
        return Err(RewindError::NotPrimary { peer: from.into() });
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
            return Err(RewindError::Superseded {
                peer: from.into(),
                theirs: theirs.epoch,
                ours: ours.epoch,
            })
        }
    };
    let log = engine.log().clone();
    if log.start_lsn() > d {
        return Err(RewindError::NeedsClone(NeedsClone::LogStartsLater {
            log_start: log.start_lsn(),
            divergence: d,
        }));
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
    let request = Message::RewindRequest {
        from_lsn: d,
        pages: touched.iter().copied().collect(),
    };
    let mut incoming = transfer::request(reader, &mut writer, &request, timeout).await?;
    let (end, page_size) = (incoming.start.lsn, incoming.start.page_size);
    if end < d {
        return Err(RewindError::SnapshotBeforeDivergence {
            snapshot: end,
            divergence: d,
        });
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
        match incoming.next().await? {
            Part::Pages(batch) => {
                got += batch.bytes();
                pages.extend(batch.pages().map(|(pgno, image)| Page {
                    pgno,
                    data: image.to_vec(),
                }));
            }
            Part::Records { start_lsn, bytes } => {
                got += bytes.len() as u64;
                log_bytes += bytes.len() as u64;
                let l2 = log.clone();
                blocking(move || Ok(l2.append_encoded(start_lsn, &bytes)?)).await?;
            }
            Part::End => break,
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
    let db_pages = incoming.start.pages;
    blocking(move || {
        l2.flush()?;
        if l2.end_lsn() != end {
            return Err(RewindError::LogShort {
                sent: l2.end_lsn(),
                snapshot: end,
            });
        }
        e2.finish_rewind(d, pages, db_pages, page_size)?;
        Ok(())
    })
    .await?;
    info!(
        secs = started.elapsed().as_secs_f64(),
        "rewind: applied and checkpointed"
    );
    let (epoch, history) = (incoming.start.epoch, incoming.start.epoch_history);
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
    let send_log = move |lsn: u64, sink: &transfer::Sink| {
        let mut pos = from_lsn;
        while pos < lsn {
            let (bytes, next) = log
                .read_raw(pos, lsn, 4 << 20)
                .map_err(|source| ServeError::Log { lsn: pos, source })?;
            sink.send(Message::Records {
                start_lsn: pos,
                bytes,
            })?;
            pos = next;
        }
        Ok(())
    };
    transfer::serve_snapshot(ctx, writer, "rewind", Wanted::These(pages), send_log).await
}
