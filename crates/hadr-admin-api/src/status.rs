//! The answers of the admin endpoints.

use hadr_ha::{ConnectStatus, PairState, SyncMode, Transition, Writes};
use hadr_log::EpochStart;
use serde::{Deserialize, Serialize};

/// How a unit enum of this API is spelt in the JSON: `PEER`, `NEARSYNC`,
/// `CONNECTED`, `primary` (for messages and reports).
pub fn spelling<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// The `what` and `step` texts of [`Activity`] entries that clients look
/// for (the benchmark times takeover phases by them).
pub mod steps {
    /// `what` of a graceful takeover, on the standby that takes over.
    pub const GRACEFUL_TAKEOVER: &str = "graceful takeover";
    /// `what` of a forced takeover.
    pub const FORCED_TAKEOVER: &str = "forced takeover";
    /// The graceful takeover's step once the old primary has handed over.
    pub const HANDED_OVER: &str = "the primary handed over; restarting as primary";
}

/// What a node is in its cluster (`/status` `role`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// A single database, not part of an HADR pair.
    Standard,
    /// Accepts writes and ships its log.
    Primary,
    /// Receives and replays a primary's log.
    Standby,
}

impl NodeRole {
    /// Lowercase name, as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Standard => "standard",
            NodeRole::Primary => "primary",
            NodeRole::Standby => "standby",
        }
    }
}

impl std::fmt::Display for NodeRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `GET /status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The node's program version.
    pub version: String,
    /// Its role.
    pub role: NodeRole,
    /// Its current epoch.
    pub epoch: u64,
    /// Every term the database went through, oldest first.
    pub epoch_history: Vec<EpochStart>,
    /// The highest epoch the node has heard of.
    pub highest_seen_epoch: u64,
    /// Random id shared by every copy of one database.
    pub database_id: String,
    /// Whether a write may start now.
    pub writable: bool,
    /// The write guard: open, awaiting a standby, checking, fenced.
    pub writes: Writes,
    /// Why a write may not start now (none: it may).
    pub write_refusal: Option<String>,
    /// A role change in progress and its current step.
    pub activity: Option<Activity>,
    /// The steps of recent role changes on this data directory, oldest
    /// first, kept across the restarts a takeover or fencing makes within
    /// one server process (at most [`Status::ACTIVITY_HISTORY`]).
    #[serde(default)]
    pub activity_history: Vec<Activity>,
    /// The log.
    pub log: LogStatus,
    /// Every record below this LSN is durably in the database file.
    pub checkpoint_lsn: u64,
    /// Client sessions open.
    pub sessions_open: u64,
    /// Commits acknowledged since this start.
    pub commits: u64,
    /// Statements executed since this start.
    pub statements: u64,
    /// Checkpoints completed since this start.
    pub checkpoints: u64,
    /// Seconds since this start.
    pub uptime_seconds: u64,
    /// When this run of the node started, its recovery done (µs since the
    /// Unix epoch): a takeover or fencing restarts the node within the same
    /// process, so this is when a promoted standby began as primary.
    #[serde(default)]
    pub started_micros: u64,
    /// What start-up recovery did.
    pub recovery: Recovery,
    /// Replication: none, the primary's view of its standbys, or the standby's view.
    pub hadr: Option<HadrView>,
    /// Page hash at the LSN the database shows, when computed.
    pub page_hash: Option<PageHashStatus>,
    /// The node's recent role transitions, oldest first.
    #[serde(default)]
    pub transitions: Vec<Transition>,
    /// Automatic failover (None: no arbiter, or `failover = manual`).
    #[serde(default)]
    pub failover: Option<FailoverStatus>,
    /// Files kept in sync through the log (None: no `sync_paths`).
    #[serde(default)]
    pub file_sync: Option<crate::FileSyncStatus>,
    /// The resources that follow the role (None: none configured).
    #[serde(default)]
    pub resources: Option<ResourcesStatus>,
    /// Where clients reach the cluster's members, as sessions are told in
    /// the `hadr.topology` ParameterStatus (docs/clients.md).
    #[serde(default)]
    pub topology: Topology,
}

/// What every admin path answers, with 503, while the node is between two
/// runs (starting, promoting, rewinding, re-cloning…): its phase.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NotServing {
    /// One word: starting, promoting, rewinding, re-cloning, retrying, stopping, restarting.
    pub phase: String,
    /// A sentence for people, with progress where there is some.
    pub detail: String,
}

/// The cluster's members at the addresses clients reach them at; the same
/// JSON object as the `hadr.topology` ParameterStatus and `SHOW hadr.topology`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Topology {
    /// The epoch of the primary the topology comes from.
    pub epoch: u64,
    /// The primary's client address (None: the node knows of none).
    pub primary: Option<String>,
    /// The standbys' client addresses.
    pub standbys: Vec<String>,
}

impl Topology {
    /// The compact JSON that sessions are sent.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The node's resources (docs/resources.md).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResourcesStatus {
    /// Each resource, in start order.
    pub resources: Vec<ResourceView>,
    /// A resource whose stop could not be confirmed: the node accepts no
    /// writes until it is.
    pub blocked: Option<String>,
    /// Why the primary's resources wait to start.
    pub hold: Option<String>,
    /// Why the last takeover was asked by a resource.
    pub takeover_reason: Option<String>,
}

/// One resource.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResourceView {
    /// Name.
    pub name: String,
    /// `vip`, `service`, `mount`, `exec`.
    pub kind: String,
    /// `primary` or `standby`: the role it follows.
    pub role: String,
    /// `unknown`, `probing`, `offline`, `starting`, `online`, `stopping`,
    /// `killing`, `failed`, `stop-failed`.
    pub state: String,
    /// Since when (µs since the epoch).
    pub since_micros: u64,
    /// Failures in this term.
    pub failures: u32,
    /// Disabled by an operator.
    pub disabled: bool,
    /// The last lines its commands printed.
    pub output: Vec<String>,
}

/// Which arbiter, for status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArbiterView {
    /// `file`, `s3`, `etcd` or `net`.
    pub kind: String,
    /// Where.
    pub endpoint: String,
    /// False for `net`: it cannot stop two winners.
    pub stateful: bool,
}

/// Automatic failover as a node sees it (`db2pd -ha` / `lssam` in spirit).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverStatus {
    /// The arbiter.
    pub arbiter: Option<ArbiterView>,
    /// `primary` or `standby`.
    pub side: String,
    /// Paused by `hadr cluster pause`.
    pub paused: bool,
    /// The arbiter answered its last call.
    pub arbiter_ok: bool,
    /// Its last error.
    pub arbiter_error: Option<String>,
    /// The lease holder as last read or written.
    pub holder: Option<String>,
    /// The record's epoch.
    pub epoch: u64,
    /// Primary: the lease is ours this much longer (ms; 0: not ours).
    pub lease_left_ms: u64,
    /// Primary: may acknowledge commits its standby lacks.
    pub acknowledging_alone: bool,
    /// Primary: accepts writes.
    pub may_write: bool,
    /// Standbys recorded out of sync, with the LSN each may lack from.
    pub out_of_sync: Vec<(String, u64)>,
    /// Standby: why it is not promoting.
    pub hold: Option<String>,
    /// The last decisions with their reasons, newest last.
    pub decisions: Vec<String>,
    /// Primary: why it does not acknowledge alone the commits a standby it
    /// waits for lacks (None: it may, or no standby is out of PEER).
    #[serde(default)]
    pub alone_hold: Option<String>,
    /// The holder's standbys as the arbiter's record lists them: the
    /// cluster's actual members, whatever this node's own configuration says.
    #[serde(default)]
    pub members: Vec<ClusterMember>,
    /// The holder's log end when it wrote the record.
    #[serde(default)]
    pub holder_end_lsn: u64,
    /// Why automation is off although an arbiter is configured (its
    /// start-up check failed: a store that ignores conditional writes,
    /// refused credentials, a foreign record). The node still serves;
    /// `hadr takeover` still works.
    #[serde(default)]
    pub disabled: Option<String>,
}

/// A standby of the lease holder, as the arbiter's record lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMember {
    /// Its replication address.
    pub standby: String,
    /// The holder waits for it (principal, SYNC or NEARSYNC): it may promote
    /// automatically. False: an auxiliary, which never does.
    pub sync: bool,
    /// Its pair state as the holder saw it.
    pub state: String,
    /// Its flushed LSN as the holder knew it.
    pub flushed_lsn: u64,
}

impl Status {
    /// Most entries of [`Status::activity_history`].
    pub const ACTIVITY_HISTORY: usize = 32;

    /// A primary that accepts writes.
    pub fn is_writable_primary(&self) -> bool {
        self.role == NodeRole::Primary && self.writable
    }

    /// A standby connected to its primary.
    pub fn follows(&self) -> bool {
        self.role == NodeRole::Standby
            && self
                .standby_view()
                .is_some_and(|s| s.hadr_connect_status == ConnectStatus::Connected)
    }

    /// The primary's view, on a primary.
    pub fn primary_view(&self) -> Option<&PrimaryView> {
        match &self.hadr {
            Some(HadrView::Primary(p)) => Some(p),
            _ => None,
        }
    }

    /// The standby's view, on a standby.
    pub fn standby_view(&self) -> Option<&StandbyView> {
        match &self.hadr {
            Some(HadrView::Standby(s)) => Some(s),
            _ => None,
        }
    }

    /// On a primary: its principal standby (the first listed).
    pub fn principal(&self) -> Option<&StandbyPair> {
        self.primary_view()?.standbys.first()
    }

    /// On a primary: its principal standby is in `state` and connected.
    pub fn principal_in(&self, state: PairState) -> bool {
        self.principal().is_some_and(|s| {
            s.hadr_state == state && s.hadr_connect_status == ConnectStatus::Connected
        })
    }
}

/// A role change in progress (takeover, fencing, rejoin) and its step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// What is happening.
    pub what: String,
    /// The step it is at.
    pub step: String,
    /// Since when (µs since the Unix epoch).
    pub since_micros: u64,
}

/// `/status` `log`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogStatus {
    /// First LSN still on disk.
    pub start_lsn: u64,
    /// End of the written log.
    pub end_lsn: u64,
    /// End of the durable log.
    pub flushed_lsn: u64,
    /// Bytes of log segments on disk.
    pub size_bytes: u64,
}

/// What start-up recovery did (`/status` `recovery`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    /// Bytes of torn log tail removed.
    pub truncated_tail_bytes: u64,
    /// Transactions found in the WAL but not in the log, now captured.
    pub captured_from_wal: u64,
    /// Log records re-applied from the last checkpoint on.
    pub reapplied_records: u64,
    /// Log end after recovery.
    pub end_lsn: u64,
}

/// `/status` `page_hash`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageHashStatus {
    /// The LSN the hashed database state matches.
    pub lsn: u64,
    /// Pages hashed.
    pub pages: u32,
    /// Hex BLAKE3 digest.
    pub hash: String,
}

/// `/status` `hadr`, tagged by its `role`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role")]
pub enum HadrView {
    /// A primary's view of its standbys.
    #[serde(rename = "PRIMARY")]
    Primary(PrimaryView),
    /// A standby's view of its primary.
    #[serde(rename = "STANDBY")]
    Standby(StandbyView),
}

/// A primary's replication status (DB2's db2pd -hadr fields).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrimaryView {
    /// Its replication address.
    pub hadr_local: String,
    /// Each standby in `hadr_target_list` order; the first is the principal.
    pub standbys: Vec<StandbyPair>,
    /// How long the oldest commit waiting for a standby has waited.
    pub log_hadr_wait_cur_ms: u64,
    /// Total time commits waited for standbys.
    pub log_hadr_wait_accumulated_ms: u64,
    /// Commits that waited.
    pub log_hadr_wait_count: u64,
}

/// The primary's view of one standby.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandbyPair {
    /// The standby's replication address.
    pub standby: String,
    /// The principal standby (uses the primary's sync mode).
    pub principal: bool,
    /// Its sync mode.
    pub hadr_syncmode: SyncMode,
    /// The pair state.
    pub hadr_state: PairState,
    /// Connected or not.
    pub hadr_connect_status: ConnectStatus,
    /// Since when (µs since the Unix epoch).
    pub hadr_connect_status_time_us: u64,
    /// Heartbeat interval.
    pub heartbeat_interval_ms: u64,
    /// Heartbeats missed since the connection was made.
    pub heartbeats_missed: u64,
    /// Since anything was heard from the standby.
    pub time_since_last_recv_ms: u64,
    /// hadr_timeout.
    pub hadr_timeout_ms: u64,
    /// The primary's log end.
    pub primary_log_lsn: u64,
    /// Highest LSN handed to the socket.
    pub sent_lsn: u64,
    /// The standby's received position.
    pub standby_received_lsn: u64,
    /// The standby's flushed position.
    pub standby_flushed_lsn: u64,
    /// The standby's replayed position.
    pub standby_replay_lsn: u64,
    /// Log the standby has not received.
    pub hadr_log_gap_bytes: u64,
    /// Log the standby received but has not replayed.
    pub standby_recv_replay_gap_bytes: u64,
    /// hadr_peer_window.
    pub peer_window_ms: u64,
    /// The peer window end promised so far (µs since the Unix epoch; 0 = none).
    pub peer_window_end_us: u64,
    /// hadr_peer_wait_limit.
    pub peer_wait_limit_ms: u64,
    /// The reason of the last disconnect.
    pub last_error: Option<String>,
}

/// A standby's replication status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandbyView {
    /// Connected to the primary or not.
    pub hadr_connect_status: ConnectStatus,
    /// Since when (µs since the Unix epoch).
    pub hadr_connect_status_time_us: u64,
    /// The primary followed (or last followed).
    pub primary: Option<String>,
    /// The primary's log end as last heard.
    pub primary_log_lsn: u64,
    /// This standby's log end.
    pub standby_received_lsn: u64,
    /// Its durable log end.
    pub standby_flushed_lsn: u64,
    /// Its replay position.
    pub standby_replay_lsn: u64,
    /// Log the standby has not received.
    pub hadr_log_gap_bytes: u64,
    /// Log received but not replayed.
    pub standby_recv_replay_gap_bytes: u64,
    /// Since anything arrived from the primary.
    pub time_since_last_recv_ms: u64,
    /// Commit time of the newest replayed record (µs since the Unix epoch).
    pub standby_replay_log_time_us: u64,
    /// The peer window end the primary promised (µs since the Unix epoch; 0 = none).
    pub peer_window_end_us: u64,
    /// Last error (refusal, lost connection).
    pub last_error: Option<String>,
}

/// What a takeover has started (`takeover` of the answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TakeoverProgress {
    /// The standby restarts as primary.
    Promoting,
}

/// `POST /takeover`, accepted (a refusal is HTTP 409 with the reason as text).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakeoverAnswer {
    /// What happens now.
    pub takeover: TakeoverProgress,
    /// A forced takeover (the old primary did not hand over).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forced: bool,
    /// Forced: the standby's pair state it was allowed in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<PairState>,
    /// Where the new primary's log begins (graceful: the old primary's final log end).
    pub end_lsn: u64,
}

/// `POST /fence?epoch=N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceAnswer {
    /// This report fenced the node (a primary of an older epoch).
    pub fenced: bool,
    /// The node's epoch.
    pub epoch: u64,
    /// Whether it accepts writes now.
    pub writable: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A primary's /status as nodes sent it before these types existed
    /// (no activity_history, started_micros or transitions).
    const OLD_PRIMARY: &str = r#"{"version":"0.1.0","role":"primary","epoch":2,
        "epoch_history":[{"epoch":1,"start_lsn":0},{"epoch":2,"start_lsn":4096}],
        "highest_seen_epoch":2,"database_id":"d","writable":true,"writes":{"state":"open"},
        "write_refusal":null,"activity":null,
        "log":{"start_lsn":0,"end_lsn":5000,"flushed_lsn":5000,"size_bytes":65536},
        "checkpoint_lsn":4096,"sessions_open":1,"commits":3,"statements":9,"checkpoints":0,
        "uptime_seconds":12,
        "recovery":{"truncated_tail_bytes":0,"captured_from_wal":0,"reapplied_records":0,"end_lsn":4096},
        "hadr":{"role":"PRIMARY","hadr_local":"127.0.0.1:9433","standbys":[{"standby":"127.0.0.1:9434",
          "principal":true,"hadr_syncmode":"NEARSYNC","hadr_state":"PEER","hadr_connect_status":"CONNECTED",
          "hadr_connect_status_time_us":1,"heartbeat_interval_ms":250,"heartbeats_missed":0,
          "time_since_last_recv_ms":3,"hadr_timeout_ms":1000,"primary_log_lsn":5000,"sent_lsn":5000,
          "standby_received_lsn":5000,"standby_flushed_lsn":5000,"standby_replay_lsn":4900,
          "hadr_log_gap_bytes":0,"standby_recv_replay_gap_bytes":100,"peer_window_ms":0,
          "peer_window_end_us":0,"peer_wait_limit_ms":0,"last_error":null}],
          "log_hadr_wait_cur_ms":0,"log_hadr_wait_accumulated_ms":5,"log_hadr_wait_count":3},
        "page_hash":{"lsn":5000,"pages":4,"hash":"ab"}}"#;

    #[test]
    fn reads_a_status_without_the_newer_fields_and_writes_the_same_names() {
        let s: Status = serde_json::from_str(OLD_PRIMARY).unwrap();
        assert!(s.is_writable_primary());
        assert!(s.principal_in(PairState::Peer));
        assert!(s.transitions.is_empty() && s.activity_history.is_empty());
        let old: serde_json::Value = serde_json::from_str(OLD_PRIMARY).unwrap();
        let mut new = serde_json::to_value(&s).unwrap();
        let obj = new.as_object_mut().unwrap();
        for added in [
            "activity_history",
            "started_micros",
            "transitions",
            "failover",
            "resources",
            "file_sync",
            "topology",
        ] {
            assert!(obj.remove(added).is_some(), "{added}");
        }
        assert_eq!(new, old);
    }

    #[test]
    fn a_standby_view_and_no_hadr() {
        let v = serde_json::json!({"role":"STANDBY","hadr_connect_status":"DISCONNECTED",
            "hadr_connect_status_time_us":5,"primary":null,"primary_log_lsn":0,
            "standby_received_lsn":0,"standby_flushed_lsn":0,"standby_replay_lsn":0,
            "hadr_log_gap_bytes":0,"standby_recv_replay_gap_bytes":0,"time_since_last_recv_ms":0,
            "standby_replay_log_time_us":0,"peer_window_end_us":0,"last_error":"gone"});
        let h: HadrView = serde_json::from_value(v.clone()).unwrap();
        assert!(matches!(&h, HadrView::Standby(s) if s.last_error.as_deref() == Some("gone")));
        assert_eq!(serde_json::to_value(&h).unwrap(), v);
        let none: Option<HadrView> = serde_json::from_str("null").unwrap();
        assert!(none.is_none());
    }

    #[test]
    fn takeover_answers_keep_their_shapes() {
        let graceful = TakeoverAnswer {
            takeover: TakeoverProgress::Promoting,
            forced: false,
            state: None,
            end_lsn: 7,
        };
        assert_eq!(
            serde_json::to_string(&graceful).unwrap(),
            r#"{"takeover":"promoting","end_lsn":7}"#
        );
        let forced = TakeoverAnswer {
            forced: true,
            state: Some(PairState::DisconnectedPeer),
            ..graceful
        };
        let text = serde_json::to_string(&forced).unwrap();
        assert_eq!(
            text,
            r#"{"takeover":"promoting","forced":true,"state":"DISCONNECTED_PEER","end_lsn":7}"#
        );
        assert_eq!(
            serde_json::from_str::<TakeoverAnswer>(&text).unwrap(),
            forced
        );
    }
}
