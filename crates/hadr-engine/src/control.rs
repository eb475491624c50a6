//! The control file: the small piece of node state that must survive restarts
//! (database id, epoch history, role, last checkpointed LSN).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use hadr_log::Lsn;
use serde::{Deserialize, Serialize};

use crate::EngineError;

/// The newest control-file format this build understands.
pub const CONTROL_FORMAT_VERSION: u32 = 1;

/// Name of the control file inside a data directory.
pub const CONTROL_FILE: &str = "control.json";

pub use hadr_log::EpochStart;

/// What a node is in its cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A single node, not part of an HADR pair.
    Standard,
    /// Accepts writes and ships its log.
    Primary,
    /// Receives and replays a primary's log.
    Standby,
}

impl Role {
    /// Lowercase name, as shown in status.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Standard => "standard",
            Role::Primary => "primary",
            Role::Standby => "standby",
        }
    }
}

/// Persistent node state, written atomically (temp file, fsync, rename, fsync dir).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Control {
    /// Format of this file.
    pub format_version: u32,
    /// Random id shared by every copy of one database; peers with another id are refused.
    pub database_id: String,
    /// The current epoch.
    pub epoch: u64,
    /// Every term this database went through, oldest first.
    pub epoch_history: Vec<EpochStart>,
    /// The node's role.
    pub role: Role,
    /// Every record below this LSN is durably in the database file.
    pub checkpoint_lsn: Lsn,
    /// Records below this LSN were not captured from this node's own WAL, so their
    /// capture marks say nothing about it (a promoted standby starts capturing here).
    #[serde(default)]
    pub capture_base_lsn: Lsn,
    /// The highest epoch this node has heard of (a takeover it handed over
    /// to, a peer that fenced it). A promotion goes above it, so that no two
    /// primaries ever share an epoch.
    #[serde(default)]
    pub highest_seen_epoch: u64,
    /// Set while a rewind rewrites this directory (the divergence LSN): a
    /// crash in the middle leaves it set, and the node then re-clones
    /// instead of trusting a half-rewound database.
    #[serde(default)]
    pub rewind_pending: Option<Lsn>,
}

impl Control {
    /// A fresh control file for a new database.
    pub fn new(database_id: String) -> Self {
        Control {
            format_version: CONTROL_FORMAT_VERSION,
            database_id,
            epoch: 1,
            epoch_history: vec![EpochStart {
                epoch: 1,
                start_lsn: 0,
            }],
            role: Role::Standard,
            checkpoint_lsn: 0,
            capture_base_lsn: 0,
            highest_seen_epoch: 0,
            rewind_pending: None,
        }
    }

    /// Path of the control file in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(CONTROL_FILE)
    }

    /// Read and validate the control file of `dir`.
    pub fn load(dir: &Path) -> Result<Control, EngineError> {
        let path = Self::path(dir);
        let text = fs::read_to_string(&path).map_err(|e| EngineError::Io {
            what: format!("reading {}", path.display()),
            source: e,
        })?;
        // Look at the version before the full parse so that a newer format gets a
        // clear "upgrade" message rather than a confusing field error.
        let probe: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            EngineError::BadControl(format!("{} is not valid JSON: {e}", path.display()))
        })?;
        let version = probe
            .get("format_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| {
                EngineError::BadControl(format!("{} has no format_version", path.display()))
            })?;
        if version > u64::from(CONTROL_FORMAT_VERSION) {
            return Err(EngineError::NewerFormat {
                path,
                found: version,
                supported: CONTROL_FORMAT_VERSION,
            });
        }
        let control: Control = serde_json::from_value(probe)
            .map_err(|e| EngineError::BadControl(format!("{}: {e}", path.display())))?;
        if control.epoch_history.is_empty() {
            return Err(EngineError::BadControl(format!(
                "{}: empty epoch history",
                path.display()
            )));
        }
        Ok(control)
    }

    /// Write atomically to `dir`.
    pub fn store(&self, dir: &Path) -> Result<(), EngineError> {
        let path = Self::path(dir);
        let tmp = dir.join(format!("{CONTROL_FILE}.tmp"));
        let io = |what: &str, e: std::io::Error| EngineError::Io {
            what: format!("{what} {}", tmp.display()),
            source: e,
        };
        let body = serde_json::to_vec_pretty(self)
            .map_err(|e| EngineError::BadControl(format!("cannot encode control file: {e}")))?;
        {
            let mut f = fs::File::create(&tmp).map_err(|e| io("creating", e))?;
            f.write_all(&body).map_err(|e| io("writing", e))?;
            f.sync_all().map_err(|e| io("syncing", e))?;
        }
        fs::rename(&tmp, &path).map_err(|e| io("renaming", e))?;
        sync_dir(dir)
    }
}

/// fsync a directory so that a rename or create in it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), EngineError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| EngineError::Io {
            what: format!("syncing directory {}", dir.display()),
            source: e,
        })
}
