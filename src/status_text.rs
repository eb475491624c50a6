//! `hadr status` as text: the node, then its replication (each standby of
//! a primary, or a standby's own view), then its recent role changes.

use std::fmt::Write as _;
use std::time::Duration;

use hadr_admin_api::{
    spelling, ConnectStatus, HadrView, PrimaryView, RoleEvent, StandbyPair, StandbyView, Status,
    Writes,
};

/// Most recent role-change steps shown.
const STEPS_SHOWN: usize = 5;

/// One line of `hadr cluster list` (in the spirit of `patronictl list`).
pub fn cluster_row(addr: &str, st: &Status) -> String {
    let (state, lag) = match &st.hadr {
        Some(HadrView::Primary(p)) => match p.standbys.first() {
            Some(sb) => (
                format!("{} to {}", spelling(&sb.hadr_state), sb.standby),
                sb.hadr_log_gap_bytes,
            ),
            None => ("no standby".to_string(), 0),
        },
        Some(HadrView::Standby(v)) => (
            format!(
                "{} {}",
                spelling(&v.hadr_connect_status),
                v.primary.as_deref().unwrap_or("-")
            ),
            v.hadr_log_gap_bytes,
        ),
        None => ("single".to_string(), 0),
    };
    let (lease, automation) = match &st.failover {
        None => ("-".to_string(), "manual".to_string()),
        Some(f) => {
            let lease = if f.side == "primary" && f.lease_left_ms > 0 {
                format!("ours, {:.1} s left", f.lease_left_ms as f64 / 1000.0)
            } else {
                match &f.holder {
                    Some(h) => format!("held by {h}"),
                    None if f.arbiter_ok => "free".into(),
                    None => "arbiter down".into(),
                }
            };
            let automation = if f.paused {
                "paused".to_string()
            } else if !f.arbiter_ok {
                "auto (arbiter down)".to_string()
            } else {
                "auto".to_string()
            };
            (lease, automation)
        }
    };
    format!(
        "{addr:<22} {:<8} {:>5}  {state:<24} {lag:>12}  {lease:<28} {automation}",
        spelling(&st.role),
        st.epoch
    )
}

/// The cluster's members as the arbiter's record lists them (written by
/// the lease holder at each renewal): the table `hadr cluster list` prints
/// after its per-node rows, from whichever node answered.
pub fn cluster_members(st: &Status) -> Option<String> {
    let f = st.failover.as_ref()?;
    let holder = f.holder.as_deref()?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nmembers per the arbiter's record (written by the lease holder, epoch {}):",
        f.epoch
    );
    let _ = writeln!(
        s,
        "{:<22} {:<10} {:<24} {:>12}",
        "member", "role", "state", "lag bytes"
    );
    let _ = writeln!(
        s,
        "{holder:<22} {:<10} {:<24} {:>12}",
        "primary", "holds the lease", 0
    );
    for m in &f.members {
        let _ = writeln!(
            s,
            "{:<22} {:<10} {:<24} {:>12}",
            m.standby,
            if m.sync { "principal" } else { "auxiliary" },
            if m.state.is_empty() { "-" } else { &m.state },
            f.holder_end_lsn.saturating_sub(m.flushed_lsn)
        );
    }
    Some(s)
}

/// The whole text; `now_us`: the current time, µs since the Unix epoch.
pub fn render(st: &Status, now_us: u64) -> String {
    let mut s = String::new();
    node(&mut s, st);
    match &st.hadr {
        None => {}
        Some(HadrView::Primary(p)) => primary(&mut s, p, now_us),
        Some(HadrView::Standby(v)) => standby(&mut s, v, now_us),
    }
    failover(&mut s, st);
    if st.resources.is_some() {
        let _ = writeln!(s);
        s.push_str(&resources_table(st));
    }
    crate::filesync_text::render(&mut s, st);
    history(&mut s, st, now_us);
    s
}

/// The resources as a table (docs/resources.md §Status and control), in
/// the spirit of TSA's `lssam`: one line per resource, then why the group
/// waits or blocks, then each resource's last output line.
pub fn resources_table(st: &Status) -> String {
    let mut s = String::new();
    let Some(r) = &st.resources else {
        s.push_str("  (no resources configured)\n");
        return s;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let _ = writeln!(
        s,
        "  {:<16} {:<8} {:<8} {:<12} {:>8}  {:>8}  last output",
        "resource", "kind", "role", "state", "for", "failures"
    );
    for v in &r.resources {
        let state = if v.disabled {
            format!("{} (disabled)", v.state)
        } else {
            v.state.clone()
        };
        let _ = writeln!(
            s,
            "  {:<16} {:<8} {:<8} {:<12} {:>8}  {:>8}  {}",
            v.name,
            v.kind,
            v.role,
            state,
            ago(v.since_micros, now),
            v.failures,
            v.output.last().map(String::as_str).unwrap_or("")
        );
    }
    if let Some(b) = &r.blocked {
        let _ = writeln!(s, "  BLOCKED  {b}");
    }
    if let Some(h) = &r.hold {
        let _ = writeln!(s, "  waiting  {h}");
    }
    if let Some(t) = &r.takeover_reason {
        let _ = writeln!(s, "  asked for a takeover: {t}");
    }
    s
}

fn failover(s: &mut String, st: &Status) {
    let Some(f) = &st.failover else { return };
    let _ = writeln!(s);
    let arbiter = f
        .arbiter
        .as_ref()
        .map(|a| format!("{} {}", a.kind, a.endpoint))
        .unwrap_or_else(|| "-".into());
    let _ = writeln!(
        s,
        "failover        automatic{} through {arbiter}",
        if f.paused { " (PAUSED)" } else { "" }
    );
    if let Some(why) = &f.disabled {
        let _ = writeln!(s, "  AUTOMATION OFF {why}");
    }
    if let Some(e) = &f.arbiter_error {
        let _ = writeln!(s, "  arbiter       DOWN: {e}");
    }
    let _ = writeln!(
        s,
        "  lease         {} (epoch {}){}",
        f.holder.as_deref().unwrap_or("nobody"),
        f.epoch,
        if f.side == "primary" && f.lease_left_ms > 0 {
            format!(", ours for {:.1} s more", f.lease_left_ms as f64 / 1000.0)
        } else {
            String::new()
        }
    );
    for (sb, lsn) in &f.out_of_sync {
        let _ = writeln!(s, "  out of sync   {sb} from LSN {lsn}");
    }
    if f.side == "primary" {
        let alone = match (&f.alone_hold, f.acknowledging_alone) {
            (Some(why), _) => why.clone(),
            (None, true) => {
                "acknowledging commits without the standby (it is recorded out of sync)".into()
            }
            (None, false) => "no".into(),
        };
        let _ = writeln!(s, "  alone         {alone}");
    }
    for m in &f.members {
        let _ = writeln!(
            s,
            "  member        {} {} {}, flushed LSN {} (lag {} bytes)",
            m.standby,
            if m.sync { "principal" } else { "auxiliary" },
            if m.state.is_empty() { "-" } else { &m.state },
            m.flushed_lsn,
            f.holder_end_lsn.saturating_sub(m.flushed_lsn)
        );
    }
    if let Some(h) = &f.hold {
        let _ = writeln!(s, "  decision      {h}");
    }
    for d in f.decisions.iter().rev().take(3) {
        let _ = writeln!(s, "  recently      {d}");
    }
}

fn node(s: &mut String, st: &Status) {
    let mut line = |label: &str, value: &dyn std::fmt::Display| {
        let _ = writeln!(s, "{label:<16}{value}");
    };
    line("role", &st.role);
    line("epoch", &st.epoch);
    let history: Vec<String> = st
        .epoch_history
        .iter()
        .map(|e| format!("{} from LSN {}", e.epoch, e.start_lsn))
        .collect();
    line("epoch history", &history.join(", "));
    line("writes", &writes(&st.writes));
    if let Some(why) = &st.write_refusal {
        line("  refused", why);
    }
    if let Some(a) = &st.activity {
        line("in progress", &format!("{}: {}", a.what, a.step));
    }
    line("database id", &st.database_id);
    line("writable", &st.writable);
    line("log end LSN", &st.log.end_lsn);
    line("log flushed LSN", &st.log.flushed_lsn);
    line("log start LSN", &st.log.start_lsn);
    line("checkpoint LSN", &st.checkpoint_lsn);
    line("sessions open", &st.sessions_open);
    line("commits", &st.commits);
    match &st.page_hash {
        Some(h) => line("page hash", &format!("{} at LSN {}", h.hash, h.lsn)),
        None => line(
            "page hash",
            &"- (not computed for a database over 256 MiB; hadr verify --node computes it)",
        ),
    }
}

fn writes(w: &Writes) -> String {
    match w {
        Writes::Open => "open".into(),
        Writes::AwaitingStandby => "awaiting a standby (start-up rule)".into(),
        Writes::Checking => "checking its peers (--force)".into(),
        Writes::Fenced { by_epoch, reason } => format!("fenced by epoch {by_epoch}: {reason}"),
    }
}

fn primary(s: &mut String, p: &PrimaryView, now: u64) {
    let _ = writeln!(
        s,
        "\nreplication     primary at {}; {} commit(s) waited for a standby, {} in all{}",
        p.hadr_local,
        p.log_hadr_wait_count,
        human(Duration::from_millis(p.log_hadr_wait_accumulated_ms)),
        if p.log_hadr_wait_cur_ms > 0 {
            format!(
                ", one waits now for {}",
                human(Duration::from_millis(p.log_hadr_wait_cur_ms))
            )
        } else {
            String::new()
        }
    );
    if p.standbys.is_empty() {
        let _ = writeln!(s, "  no standby listed (hadr_target_list)");
    }
    for sb in &p.standbys {
        standby_of_primary(s, sb, now);
    }
}

fn standby_of_primary(s: &mut String, sb: &StandbyPair, now: u64) {
    let _ = writeln!(
        s,
        "  standby {}{}",
        sb.standby,
        if sb.principal {
            " (principal)"
        } else {
            " (auxiliary)"
        }
    );
    let mut line = |label: &str, value: String| {
        let _ = writeln!(s, "    {label:<20}{value}");
    };
    line(
        "state",
        format!(
            "{}, {}",
            spelling(&sb.hadr_state),
            spelling(&sb.hadr_syncmode)
        ),
    );
    line(
        "connect status",
        connect(sb.hadr_connect_status, sb.hadr_connect_status_time_us, now),
    );
    line(
        "log gap",
        format!(
            "{} bytes (primary at LSN {}, sent {}, received {}, flushed {}, replayed {})",
            sb.hadr_log_gap_bytes,
            sb.primary_log_lsn,
            sb.sent_lsn,
            sb.standby_received_lsn,
            sb.standby_flushed_lsn,
            sb.standby_replay_lsn
        ),
    );
    line(
        "receive–replay gap",
        format!("{} bytes", sb.standby_recv_replay_gap_bytes),
    );
    line(
        "last heard",
        format!(
            "{} ago ({} heartbeats missed; every {}, timeout {})",
            human(Duration::from_millis(sb.time_since_last_recv_ms)),
            sb.heartbeats_missed,
            human(Duration::from_millis(sb.heartbeat_interval_ms)),
            human(Duration::from_millis(sb.hadr_timeout_ms)),
        ),
    );
    line(
        "peer window",
        if sb.peer_window_ms == 0 {
            "none (hadr_peer_window 0)".into()
        } else {
            format!(
                "{}, end {}",
                human(Duration::from_millis(sb.peer_window_ms)),
                window_end(sb.peer_window_end_us, now)
            )
        },
    );
    if let Some(e) = &sb.last_error {
        line("last error", e.clone());
    }
}

fn standby(s: &mut String, v: &StandbyView, now: u64) {
    let _ = writeln!(
        s,
        "\nreplication     standby of {}",
        v.primary.as_deref().unwrap_or("- (no primary reached yet)")
    );
    let mut line = |label: &str, value: String| {
        let _ = writeln!(s, "  {label:<22}{value}");
    };
    line(
        "connect status",
        connect(v.hadr_connect_status, v.hadr_connect_status_time_us, now),
    );
    line(
        "log gap",
        format!(
            "{} bytes (primary at LSN {}, received {}, flushed {}, replayed {})",
            v.hadr_log_gap_bytes,
            v.primary_log_lsn,
            v.standby_received_lsn,
            v.standby_flushed_lsn,
            v.standby_replay_lsn
        ),
    );
    line(
        "receive–replay gap",
        format!("{} bytes", v.standby_recv_replay_gap_bytes),
    );
    line(
        "last heard",
        format!(
            "{} ago",
            human(Duration::from_millis(v.time_since_last_recv_ms))
        ),
    );
    if v.standby_replay_log_time_us > 0 {
        line(
            "replayed commits of",
            format!("{} ago", ago(v.standby_replay_log_time_us, now)),
        );
    }
    line("peer window end", window_end(v.peer_window_end_us, now));
    if let Some(e) = &v.last_error {
        line("last error", e.clone());
    }
}

fn history(s: &mut String, st: &Status, now: u64) {
    if !st.transitions.is_empty() {
        let _ = writeln!(s, "\ntransitions");
        for t in &st.transitions {
            let _ = writeln!(s, "  {:>9} ago  {}", ago(t.at_micros, now), event(&t.event));
        }
    }
    if !st.activity_history.is_empty() {
        let n = st.activity_history.len();
        let _ = writeln!(s, "\nrecent role-change steps (of {n})");
        for a in &st.activity_history[n.saturating_sub(STEPS_SHOWN)..] {
            let _ = writeln!(
                s,
                "  {:>9} ago  {}: {}",
                ago(a.since_micros, now),
                a.what,
                a.step
            );
        }
    }
}

fn event(e: &RoleEvent) -> String {
    match e {
        RoleEvent::Starting => "starting (recovery)".into(),
        RoleEvent::Standard => "serving as a single database".into(),
        RoleEvent::Primary { epoch } => format!("primary of epoch {epoch}"),
        RoleEvent::Standby { epoch, targets } => {
            format!("standby (epoch {epoch}) of {}", targets.join(" or "))
        }
        RoleEvent::Promoting {
            epoch,
            start_lsn,
            forced,
        } => format!(
            "promoting to epoch {epoch} from LSN {start_lsn}{}",
            if *forced { " (forced)" } else { "" }
        ),
        RoleEvent::Demoting { reason } => format!("handing over: {reason}"),
        RoleEvent::Fenced { epoch, reason } => format!("fenced by epoch {epoch}: {reason}"),
        RoleEvent::Rewinding { from } => format!("rewinding to follow {from}"),
        RoleEvent::Recloning { from, reason } => format!("re-cloning from {from}: {reason}"),
        RoleEvent::Failed { during, error } => format!("failed while {during}: {error}"),
        RoleEvent::Stopped => "stopped".into(),
    }
}

fn connect(c: ConnectStatus, since_us: u64, now: u64) -> String {
    if since_us == 0 {
        return spelling(&c);
    }
    format!("{} for {}", spelling(&c), ago(since_us, now))
}

/// A peer window end: "in 4.2 s", "ended", or "none promised".
fn window_end(end_us: u64, now: u64) -> String {
    if end_us == 0 {
        "none promised".into()
    } else if end_us > now {
        format!("in {}", human(Duration::from_micros(end_us - now)))
    } else {
        "ended".into()
    }
}

fn ago(at_us: u64, now: u64) -> String {
    human(Duration::from_micros(now.saturating_sub(at_us)))
}

/// "450 ms", "4.2 s", "3m12s", "2h05m", "3d04h".
pub fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if secs < 60 {
        format!("{:.1} s", d.as_secs_f64())
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else if secs < 86_400 {
        format!("{}h{:02}m", secs / 3600, secs % 3600 / 60)
    } else {
        format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3600)
    }
}

/// A standby's status with only the fields every node has (for tests of
/// the sections that come and go).
#[cfg(test)]
pub fn minimal_status() -> Status {
    serde_json::from_value(serde_json::json!({
        "version": "x", "role": "standby", "epoch": 4, "epoch_history": [],
        "highest_seen_epoch": 4, "database_id": "d", "writable": false,
        "writes": {"state": "open"}, "write_refusal": null, "activity": null,
        "log": {"start_lsn": 0, "end_lsn": 0, "flushed_lsn": 0, "size_bytes": 0},
        "checkpoint_lsn": 0, "sessions_open": 0, "commits": 0, "statements": 0,
        "checkpoints": 0, "uptime_seconds": 1,
        "recovery": {"truncated_tail_bytes": 0, "captured_from_wal": 0,
                     "reapplied_records": 0, "end_lsn": 0},
        "hadr": null, "page_hash": null
    }))
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human(Duration::from_millis(450)), "450 ms");
        assert_eq!(human(Duration::from_millis(4200)), "4.2 s");
        assert_eq!(human(Duration::from_secs(192)), "3m12s");
        assert_eq!(human(Duration::from_secs(7500)), "2h05m");
        assert_eq!(human(Duration::from_secs(3 * 86_400 + 4 * 3600)), "3d04h");
    }

    #[test]
    fn the_members_table_lists_the_holder_then_its_standbys_with_their_lag() {
        let mut st = minimal_status();
        assert_eq!(cluster_members(&st), None);
        st.failover = Some(hadr_admin_api::FailoverStatus {
            holder: Some("b:1".into()),
            epoch: 4,
            holder_end_lsn: 1000,
            members: vec![
                hadr_admin_api::ClusterMember {
                    standby: "a:1".into(),
                    sync: true,
                    state: "PEER".into(),
                    flushed_lsn: 1000,
                },
                hadr_admin_api::ClusterMember {
                    standby: "c:1".into(),
                    sync: false,
                    state: "REMOTE_CATCHUP".into(),
                    flushed_lsn: 600,
                },
            ],
            ..Default::default()
        });
        let t = cluster_members(&st).unwrap();
        let rows: Vec<&str> = t.lines().filter(|l| l.contains(":1")).collect();
        assert!(
            rows[0].starts_with("b:1") && rows[0].contains("primary"),
            "{t}"
        );
        assert!(
            rows[1].contains("principal") && rows[1].ends_with(" 0"),
            "{t}"
        );
        assert!(
            rows[2].contains("auxiliary") && rows[2].ends_with(" 400"),
            "{t}"
        );
    }

    #[test]
    fn peer_window_ends() {
        assert_eq!(window_end(0, 10), "none promised");
        assert_eq!(window_end(5_200_000, 1_000_000), "in 4.2 s");
        assert_eq!(window_end(5, 10), "ended");
    }
}
