//! The disk side: what an entry is, walking a root without following
//! symlinks, and the path rules that keep every read and write inside it.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::{Settings, SyncError, TMP_PREFIX};

/// What kind of entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (stored as a link, never followed).
    Symlink,
}

impl Kind {
    /// As stored in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
        }
    }

    /// From the table.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "file" => Some(Kind::File),
            "dir" => Some(Kind::Dir),
            "symlink" => Some(Kind::Symlink),
            _ => None,
        }
    }
}

/// An entry as found on disk (content not read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskEntry {
    /// Kind.
    pub kind: Kind,
    /// Permission bits (07777).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// Size in bytes (files).
    pub size: u64,
    /// Link target (symlinks).
    pub target: Option<String>,
}

/// The result of walking (part of) a root.
#[derive(Debug, Default)]
pub struct Walk {
    /// Entries by relative path.
    pub entries: BTreeMap<String, DiskEntry>,
    /// Paths refused, with the reason (reported, not synced).
    pub problems: BTreeMap<String, String>,
    /// Files seen but too large (kept out of the table; reported).
    pub too_large: BTreeMap<String, u64>,
}

/// `root/rel` for a relative path checked by [`check_rel`].
pub fn join(root: &Path, rel: &str) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

/// A relative path as stored: `/`-separated normal components, no `.`, `..`,
/// empty components or NUL. Anything else could leave the root.
pub fn check_rel(rel: &str) -> Result<(), String> {
    if rel.is_empty() {
        return Err("empty path".into());
    }
    if rel.contains('\0') {
        return Err("NUL in path".into());
    }
    for c in rel.split('/') {
        if c.is_empty() || c == "." || c == ".." {
            return Err(format!("component {c:?} is not allowed"));
        }
    }
    Ok(())
}

/// Whether a symlink at `rel` with `target` stays inside the root when
/// resolved. Absolute targets and `..` past the root escape. A `..` after a
/// component that is itself a symlink on disk is refused too: the kernel
/// resolves `..` from the link's target, not lexically, so the lexical
/// answer would not hold.
pub fn symlink_contained(root: &Path, rel: &str, target: &str) -> Result<(), String> {
    let t = Path::new(target);
    if t.is_absolute() {
        return Err(format!(
            "absolute symlink target {target:?} leaves the root"
        ));
    }
    let mut cur: Vec<String> = rel.split('/').map(String::from).collect();
    cur.pop();
    for c in t.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if cur.is_empty() {
                    return Err(format!("symlink target {target:?} leaves the root"));
                }
                let here = join(root, &cur.join("/"));
                match std::fs::symlink_metadata(&here) {
                    Ok(m) if m.file_type().is_symlink() => {
                        return Err(format!(
                            "symlink target {target:?} goes up (..) from another symlink"
                        ))
                    }
                    _ => {}
                }
                cur.pop();
            }
            Component::Normal(n) => match n.to_str() {
                Some(n) => cur.push(n.to_string()),
                None => return Err("symlink target is not UTF-8".into()),
            },
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("symlink target {target:?} leaves the root"))
            }
        }
    }
    Ok(())
}

fn entry_of(path: &Path, md: &std::fs::Metadata) -> Result<Option<DiskEntry>, String> {
    let ft = md.file_type();
    let kind = if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else {
        return Err("not a regular file, directory or symlink".into());
    };
    let target = if kind == Kind::Symlink {
        let t = std::fs::read_link(path).map_err(|e| format!("cannot read the link: {e}"))?;
        Some(
            t.to_str()
                .ok_or_else(|| "symlink target is not UTF-8".to_string())?
                .to_string(),
        )
    } else {
        None
    };
    Ok(Some(DiskEntry {
        kind,
        mode: if kind == Kind::Symlink {
            0o777
        } else {
            md.permissions().mode() & 0o7777
        },
        uid: md.uid(),
        gid: md.gid(),
        mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
        size: if kind == Kind::File { md.len() } else { 0 },
        target,
    }))
}

/// Walk `root/start` (the whole root when `start` is empty) without following
/// symlinks. Excluded paths and the materializer's temporary files are
/// skipped; refused ones are listed in `problems`. A missing `start` gives
/// an empty walk.
pub fn walk(root: &Path, start: &str, settings: &Settings) -> Result<Walk, SyncError> {
    let mut w = Walk::default();
    if !start.is_empty() {
        // Every parent must be a real directory: a path under a symlink is
        // not in the tree (the link itself is).
        let parts: Vec<&str> = start.split('/').collect();
        for i in 1..parts.len() {
            let p = join(root, &parts[..i].join("/"));
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_dir() => {}
                _ => return Ok(w),
            }
        }
        if settings.excluded(start) || is_tmp(parts[parts.len() - 1]) {
            return Ok(w);
        }
        let p = join(root, start);
        match std::fs::symlink_metadata(&p) {
            Ok(md) => {
                if !visit(root, start, &p, &md, settings, &mut w) {
                    return Ok(w);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(w),
            Err(e) => {
                w.problems
                    .insert(start.to_string(), format!("unreadable: {e}"));
                return Ok(w);
            }
        }
    }
    let mut stack = vec![start.to_string()];
    while let Some(dir_rel) = stack.pop() {
        let dir = join(root, &dir_rel);
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir_rel.is_empty() => {
                return Err(SyncError::io(dir, e))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                if dir_rel.is_empty() {
                    return Err(SyncError::io(dir, e));
                }
                w.problems
                    .insert(dir_rel.clone(), format!("directory unreadable: {e}"));
                continue;
            }
        };
        for ent in rd {
            let ent = match ent {
                Ok(e) => e,
                Err(e) => {
                    w.problems
                        .insert(dir_rel.clone(), format!("directory unreadable: {e}"));
                    continue;
                }
            };
            let name = ent.file_name();
            let Some(name) = name.to_str() else {
                let shown = format!("{}/{}", dir_rel, name.to_string_lossy());
                w.problems.insert(shown, "file name is not UTF-8".into());
                continue;
            };
            if is_tmp(name) {
                continue;
            }
            let rel = if dir_rel.is_empty() {
                name.to_string()
            } else {
                format!("{dir_rel}/{name}")
            };
            if settings.excluded(&rel) {
                continue;
            }
            let p = ent.path();
            match std::fs::symlink_metadata(&p) {
                Ok(md) => {
                    if visit(root, &rel, &p, &md, settings, &mut w) {
                        stack.push(rel);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    w.problems.insert(rel, format!("unreadable: {e}"));
                }
            }
        }
    }
    Ok(w)
}

/// Record one entry; true if it is a directory to descend into.
fn visit(
    root: &Path,
    rel: &str,
    p: &Path,
    md: &std::fs::Metadata,
    settings: &Settings,
    w: &mut Walk,
) -> bool {
    match entry_of(p, md) {
        Ok(Some(e)) => {
            if e.kind == Kind::Symlink {
                let target = e.target.as_deref().unwrap_or_default();
                if let Err(why) = symlink_contained(root, rel, target) {
                    w.problems
                        .insert(rel.to_string(), format!("refused: {why}"));
                    return false;
                }
            }
            if e.kind == Kind::File && e.size > settings.max_file_size {
                w.too_large.insert(rel.to_string(), e.size);
                w.problems.insert(
                    rel.to_string(),
                    format!(
                        "too large: {} bytes, sync_max_file_size is {}",
                        e.size, settings.max_file_size
                    ),
                );
                return false;
            }
            let dir = e.kind == Kind::Dir;
            w.entries.insert(rel.to_string(), e);
            dir
        }
        Ok(None) => false,
        Err(why) => {
            w.problems.insert(rel.to_string(), why);
            false
        }
    }
}

/// Whether a name is one of the materializer's temporary files.
pub fn is_tmp(name: &str) -> bool {
    name.starts_with(TMP_PREFIX)
}

/// Open a regular file for reading without following a symlink that
/// replaced it since it was listed.
pub fn open_nofollow(p: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(p)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file any more"));
    }
    Ok(f)
}

/// The blake3 hash of a file's content (and its length).
pub fn hash_file(p: &Path) -> std::io::Result<([u8; 32], u64)> {
    let mut f = open_nofollow(p)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((*h.finalize().as_bytes(), n))
}

/// Read a whole (small) file.
pub fn read_small(p: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = open_nofollow(p)?;
    let mut v = Vec::new();
    f.read_to_end(&mut v)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(exclude: &[&str]) -> Settings {
        Settings {
            roots: vec![],
            exclude: crate::glob_set(&exclude.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap(),
            max_file_size: 100,
            scan_interval: std::time::Duration::from_secs(30),
        }
    }

    #[test]
    fn relative_paths_that_could_leave_the_root_are_rejected() {
        assert!(check_rel("a/b.txt").is_ok());
        for bad in ["", "/a", "a//b", "a/../b", "..", "./a", "a/.", "a\0b"] {
            assert!(check_rel(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn symlinks_that_escape_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("a/b")).unwrap();
        assert!(symlink_contained(r, "a/b/l", "../c").is_ok());
        assert!(symlink_contained(r, "a/b/l", "../../c").is_ok());
        assert!(symlink_contained(r, "a/b/l", "../../../c").is_err());
        assert!(symlink_contained(r, "l", "..").is_err());
        assert!(symlink_contained(r, "l", "/etc/passwd").is_err());
        assert!(symlink_contained(r, "l", "a/./b").is_ok());
        // `..` after a symlink resolves from the link's target: `z` points
        // at the root itself, so `z/..` is the root's parent.
        std::os::unix::fs::symlink(".", r.join("z")).unwrap();
        assert!(symlink_contained(r, "y", "z/../x").is_err());
    }

    #[test]
    fn walk_skips_excluded_and_reports_refused_and_too_large() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("sub/deep")).unwrap();
        std::fs::write(r.join("sub/deep/f"), b"x").unwrap();
        std::fs::write(r.join("big"), vec![0u8; 200]).unwrap();
        std::fs::write(r.join("skip.log"), b"x").unwrap();
        std::fs::write(r.join(format!("{TMP_PREFIX}x")), b"x").unwrap();
        std::os::unix::fs::symlink("/etc", r.join("out")).unwrap();
        std::os::unix::fs::symlink("sub/deep/f", r.join("in")).unwrap();
        let w = walk(r, "", &settings(&["*.log"])).unwrap();
        let names: Vec<&str> = w.entries.keys().map(String::as_str).collect();
        assert_eq!(names, ["in", "sub", "sub/deep", "sub/deep/f"]);
        assert!(
            w.problems["out"].contains("leaves the root"),
            "{:?}",
            w.problems
        );
        assert!(w.problems["big"].contains("too large"));
        assert_eq!(w.entries["in"].target.as_deref(), Some("sub/deep/f"));
        // A part of the tree.
        let w = walk(r, "sub/deep", &settings(&[])).unwrap();
        assert_eq!(
            w.entries.keys().collect::<Vec<_>>(),
            ["sub/deep", "sub/deep/f"]
        );
        // Under a symlink: nothing (the link is the entry).
        std::os::unix::fs::symlink("sub", r.join("ls")).unwrap();
        assert!(walk(r, "ls/deep", &settings(&[]))
            .unwrap()
            .entries
            .is_empty());
        assert!(walk(r, "gone", &settings(&[])).unwrap().entries.is_empty());
    }
}
