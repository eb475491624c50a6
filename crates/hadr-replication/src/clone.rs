//! `hadr clone`: copy a running primary into a new standby.
//!
//! The primary sends a snapshot of every page ([`crate::transfer`]); the
//! clone writes the pages into a new file, starts its log at the snapshot's
//! LSN X, and from then on streams records from X like any standby.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hadr_engine::{Control, Engine, EpochStart, DB_FILE};
use hadr_log::LogConfig;
use hadr_protocol::{Hello, Message, PeerRole};
use tracing::info;

use crate::context::PrimaryCtx;
use crate::link::LinkTls;
pub use crate::transfer::Progress;
use crate::transfer::{self, Part, TransferError, Wanted};
use crate::wire::{WireError, Writer};

/// Primary side: answer a CloneRequest with a snapshot of every page.
pub async fn serve(ctx: &PrimaryCtx, writer: &mut Writer) -> Result<(), WireError> {
    transfer::serve_snapshot(ctx, writer, "clone", Wanted::All, |_, _| Ok(())).await
}

/// Why a clone failed.
#[derive(Debug, thiserror::Error)]
pub enum CloneError {
    /// The target directory already holds a database; nothing was written.
    #[error("{} already holds a database; refusing to overwrite it", .0.display())]
    TargetNotEmpty(PathBuf),
    /// Reaching the primary or receiving its snapshot failed.
    #[error(transparent)]
    Transfer(#[from] TransferError),
    /// Writing the new data directory failed.
    #[error("{action} {}: {source}", path.display())]
    File {
        /// What was being done.
        action: &'static str,
        /// To which file or directory.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// Setting up the new data directory failed.
    #[error(transparent)]
    Engine(#[from] hadr_engine::EngineError),
}

fn file_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CloneError {
    let path = path.to_path_buf();
    move |source| CloneError::File {
        action,
        path,
        source,
    }
}

/// Client side: copy the primary at `from` into a new data directory `dir`
/// (over mutual TLS with `tls`). The directory must not hold a database.
/// Returns the snapshot LSN.
pub async fn clone_from(
    from: &str,
    dir: &Path,
    log_cfg: &LogConfig,
    timeout: Duration,
    tls: Option<&LinkTls>,
    mut progress: impl FnMut(Progress),
) -> Result<u64, CloneError> {
    if Control::path(dir).exists() || dir.join(DB_FILE).exists() {
        return Err(CloneError::TargetNotEmpty(dir.to_path_buf()));
    }
    // A new node has no identity yet: the primary checks nothing but the version.
    let ours = Hello {
        version: hadr_protocol::PROTOCOL_VERSION,
        role: PeerRole::Cloner,
        database_id: String::new(),
        epoch: 0,
        epoch_history: vec![],
        lsn: 0,
        address: String::new(),
    };
    let (_, reader, mut writer) = transfer::connect(from, &ours, timeout, tls).await?;
    let mut incoming =
        transfer::request(reader, &mut writer, &Message::CloneRequest, timeout).await?;
    std::fs::create_dir_all(dir).map_err(file_error("creating", dir))?;
    // Written under a temporary name: a crash mid-clone leaves no half database
    // that could be mistaken for a complete one; running clone again starts over.
    let tmp = dir.join(format!("{DB_FILE}.clone"));
    let mut file = std::fs::File::create(&tmp).map_err(file_error("creating", &tmp))?;
    let page_size = u64::from(incoming.start.page_size);
    let total = u64::from(incoming.start.pages) * page_size;
    let mut got = 0u64;
    let started = Instant::now();
    loop {
        match incoming.next().await? {
            Part::Pages(batch) => {
                for (first, images) in batch.runs() {
                    file.seek(SeekFrom::Start(u64::from(first - 1) * page_size))
                        .and_then(|_| file.write_all(images))
                        .map_err(file_error("writing", &tmp))?;
                }
                got += batch.bytes();
                progress(Progress { bytes: got, total });
            }
            Part::End => break,
            Part::Records { .. } => {
                return Err(TransferError::Unexpected {
                    expected: "pages or CloneEnd",
                }
                .into())
            }
        }
    }
    file.sync_all().map_err(file_error("syncing", &tmp))?;
    drop(file);
    std::fs::rename(&tmp, dir.join(DB_FILE)).map_err(file_error("renaming", &tmp))?;
    let start = incoming.start;
    let mut control = Control::new(start.database_id);
    control.epoch = start.epoch;
    control.epoch_history = start.epoch_history;
    if control.epoch_history.is_empty() {
        control.epoch_history = vec![EpochStart {
            epoch: start.epoch,
            start_lsn: 0,
        }];
    }
    Engine::init_clone(dir, log_cfg, control, start.lsn)?;
    info!(
        bytes = got,
        secs = started.elapsed().as_secs_f64(),
        lsn = start.lsn,
        "clone complete"
    );
    Ok(start.lsn)
}
