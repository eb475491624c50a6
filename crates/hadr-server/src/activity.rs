//! The steps of recent role changes per data directory, kept for the whole
//! server process: a takeover or fencing restarts the node (a new [`Node`]),
//! and `/status` of the restarted node still shows how it got there
//! (`activity_history`; the benchmark times takeover phases from it).
//!
//! [`Node`]: crate::Node

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use hadr_admin_api::{Activity, Status};

fn history() -> &'static Mutex<HashMap<PathBuf, VecDeque<Activity>>> {
    static H: OnceLock<Mutex<HashMap<PathBuf, VecDeque<Activity>>>> = OnceLock::new();
    H.get_or_init(Mutex::default)
}

/// Remember a step of the node on `data`; the oldest go beyond
/// [`Status::ACTIVITY_HISTORY`].
pub fn record(data: &Path, step: &Activity) {
    let mut h = history().lock().unwrap_or_else(|p| p.into_inner());
    let steps = h.entry(data.to_path_buf()).or_default();
    if steps.len() == Status::ACTIVITY_HISTORY {
        steps.pop_front();
    }
    steps.push_back(step.clone());
}

/// The steps recorded for the node on `data`, oldest first.
pub fn recent(data: &Path) -> Vec<Activity> {
    let h = history().lock().unwrap_or_else(|p| p.into_inner());
    h.get(data)
        .map(|s| s.iter().cloned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_steps_per_directory() {
        let a = Path::new("/nonexistent/activity-test-a");
        let b = Path::new("/nonexistent/activity-test-b");
        for i in 0..Status::ACTIVITY_HISTORY + 3 {
            let step = Activity {
                what: "w".into(),
                step: format!("{i}"),
                since_micros: i as u64,
            };
            record(a, &step);
        }
        let got = recent(a);
        assert_eq!(got.len(), Status::ACTIVITY_HISTORY);
        assert_eq!(got[0].step, "3");
        assert!(recent(b).is_empty());
    }
}
