//! `hadr arbiter check`: prove an arbiter can do its job before it is
//! trusted (DB2's `samtb_cld` step): it answers, the credentials work, and
//! it honours conditional writes — a store that silently ignores a
//! condition would let two nodes both "win", so it is refused.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::{Arbiter, ArbiterError, ArbiterInfo, LeaseRecord, Stored, Version};

/// What a check found.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    /// The backend.
    pub info: ArbiterInfo,
    /// The lease record as it stands.
    pub current: Option<Stored>,
    /// Round trip of one conditional write.
    pub write_round_trip: Duration,
}

/// Check an arbiter on its probe key; the real record is only read.
pub async fn check(arbiter: &dyn Arbiter) -> Result<CheckReport, ArbiterError> {
    let info = arbiter.info();
    let current = arbiter.read().await?;
    if !info.stateful {
        return Ok(CheckReport {
            info,
            current,
            write_round_trip: Duration::ZERO,
        });
    }
    let probe = arbiter.probe();
    let mut rec = LeaseRecord {
        holder: Some("hadr-arbiter-check".into()),
        ..LeaseRecord::default()
    };
    let started = Instant::now();
    // Start from a known version: create, or take whatever an earlier check left.
    let mine = match probe.read().await? {
        None => probe.write(None, &rec).await?,
        Some(s) => {
            rec.token = s.record.token + 1;
            probe.write(Some(&s.version), &rec).await?
        }
    };
    let write_round_trip = started.elapsed();
    rec.token = mine.record.token + 1;
    rec.nonce = rec.nonce.wrapping_add(1);
    let stale = Version(format!("{}-not-the-stored-version", mine.version.0));
    match probe.write(Some(&stale), &rec).await {
        Err(ArbiterError::Conflict) => {}
        Ok(_) => return Err(ArbiterError::NotConditional(info.endpoint)),
        Err(e) => return Err(e),
    }
    match probe.write(None, &rec).await {
        Err(ArbiterError::Conflict) => {}
        Ok(_) => return Err(ArbiterError::NotConditional(info.endpoint)),
        Err(e) => return Err(e),
    }
    // The right version must still win.
    probe.write(Some(&mine.version), &rec).await?;
    Ok(CheckReport {
        info,
        current,
        write_round_trip,
    })
}
