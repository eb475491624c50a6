//! The file sync's part of `hadr status` (docs/filesync.md).

use std::fmt::Write as _;

use hadr_admin_api::Status;

/// Problems listed per root in the text (the JSON has up to 100).
const PROBLEMS_SHOWN: usize = 10;

/// Append the `file sync` section, if the node has synced directories.
pub fn render(s: &mut String, st: &Status) {
    let Some(f) = &st.file_sync else { return };
    let _ = writeln!(
        s,
        "\nfile sync       {} error(s), {} bytes synced since start",
        f.errors_total, f.bytes_total
    );
    for r in &f.roots {
        let _ = writeln!(s, "  {:<14}{} ({})", r.name, r.path, r.state);
        let _ = writeln!(s, "    files         {} ({} bytes)", r.files, r.bytes);
        let _ = writeln!(
            s,
            "    seq           written {}, applied {}, pending {}",
            r.last_seq_written, r.last_seq_applied, r.pending
        );
        if let Some(lag) = r.lag_seconds {
            let _ = writeln!(s, "    lag           {lag:.3} s");
        }
        if let Some(e) = &r.last_error {
            let _ = writeln!(s, "    LAST ERROR    {e}");
        }
        if r.problems_total > 0 {
            let _ = writeln!(s, "    not synced    {} path(s)", r.problems_total);
            for p in r.problems.iter().take(PROBLEMS_SHOWN) {
                let _ = writeln!(s, "      {}: {}", p.path, p.reason);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_shows_its_error_and_refused_paths() {
        let mut st = crate::status_text::minimal_status();
        let mut s = String::new();
        render(&mut s, &st);
        assert!(s.is_empty(), "no sync_paths, no section");
        st.file_sync = Some(hadr_admin_api::FileSyncStatus {
            roots: vec![hadr_admin_api::FileSyncRoot {
                name: "www".into(),
                path: "/srv/www".into(),
                state: "materializing".into(),
                files: 3,
                last_error: Some("big: ENOSPC (disk full)".into()),
                problems: vec![hadr_admin_api::FileSyncProblem {
                    path: "out".into(),
                    reason: "refused: absolute symlink target".into(),
                }],
                problems_total: 1,
                ..Default::default()
            }],
            ..Default::default()
        });
        render(&mut s, &st);
        assert!(s.contains("www           /srv/www (materializing)"), "{s}");
        assert!(s.contains("LAST ERROR    big: ENOSPC"), "{s}");
        assert!(s.contains("out: refused"), "{s}");
    }
}
