//! `hadr verify`'s file part: does a node's disk match its table?

use std::collections::BTreeSet;

use crate::table::{self, Row};
use crate::tree::{self, Kind};
use crate::{Db, Settings, SyncError};

/// A difference between a disk and its table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Root name.
    pub root: String,
    /// Relative path.
    pub path: String,
    /// What differs.
    pub why: String,
}

/// Compare each root's disk with its table: content hash, kind, mode,
/// symlink target; paths on one side only. `unsynced` lists the paths the
/// scanner refuses (reported in status, not a mismatch).
pub fn verify(
    settings: &Settings,
    db: &dyn Db,
) -> Result<(Vec<Mismatch>, Vec<Mismatch>), SyncError> {
    let mut live: Vec<Vec<Row>> = vec![vec![]; settings.roots.len()];
    db.read(&mut |conn| {
        for (i, r) in settings.roots.iter().enumerate() {
            live[i] = table::live_rows(conn, &r.name)?;
        }
        Ok(())
    })?;
    let (mut bad, mut unsynced) = (Vec::new(), Vec::new());
    for (i, root) in settings.roots.iter().enumerate() {
        let w = tree::walk(&root.path, "", settings)?;
        let mut m = |path: &str, why: String| {
            bad.push(Mismatch {
                root: root.name.clone(),
                path: path.to_string(),
                why,
            })
        };
        let mut in_table = BTreeSet::new();
        for r in &live[i] {
            if settings.excluded(&r.path) {
                continue;
            }
            in_table.insert(r.path.clone());
            let Some(e) = w.entries.get(&r.path) else {
                if !w.problems.contains_key(&r.path) {
                    m(&r.path, "missing on disk".into());
                }
                continue;
            };
            if e.kind != r.kind {
                m(
                    &r.path,
                    format!(
                        "a {} on disk, a {} in the table",
                        e.kind.as_str(),
                        r.kind.as_str()
                    ),
                );
                continue;
            }
            match r.kind {
                Kind::Dir => {}
                Kind::Symlink if e.target != r.target => m(
                    &r.path,
                    format!("symlink target {:?}, table {:?}", e.target, r.target),
                ),
                Kind::Symlink => {}
                Kind::File => {
                    let p = tree::join(&root.path, &r.path);
                    match tree::hash_file(&p) {
                        Ok((h, n)) if n == r.size && r.hash.as_deref() == Some(&h[..]) => {}
                        Ok(_) => m(&r.path, "content differs".into()),
                        Err(e) => m(&r.path, format!("unreadable: {e}")),
                    }
                }
            }
            if r.kind != Kind::Symlink && e.mode != r.mode {
                m(
                    &r.path,
                    format!("mode {:o} on disk, {:o} in the table", e.mode, r.mode),
                );
            }
        }
        for p in w.entries.keys() {
            if !in_table.contains(p) {
                m(p, "not in the table".into());
            }
        }
        for (p, why) in &w.problems {
            unsynced.push(Mismatch {
                root: root.name.clone(),
                path: p.clone(),
                why: why.clone(),
            });
        }
    }
    Ok((bad, unsynced))
}
