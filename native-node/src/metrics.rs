//! Counters the node keeps for `GET /metrics` (Prometheus text format, version 0.0.4).
//!
//! Plain atomics written from the node loop, the peer tasks and the storage path, read by the
//! HTTP handler: no locks on the hot path. The encoder is hand-written rather than
//! prometheus-client's: every counter here is a field other modules bump with one
//! `fetch_add`, the exposition is a few dozen lines of a stable text format, and a test parses
//! the whole output and checks every name the shipped dashboard and alerts use
//! (`tests/deploy.rs`). Histograms are [`Histogram`] (atomic buckets, fixed bounds).
//!
//! The etcd names (`etcd_server_*`, `etcd_disk_*`, `etcd_network_*`) are mirrored under
//! `keyval_`, with etcd's meanings and buckets, so etcd dashboards and runbooks transfer.
//!
//! To add a metric: a field here (an `AtomicU64` or a [`Histogram`]), one line in
//! [`Metrics::render`], and a bump where the thing happens.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use keyval_core::read::ReadStats;
use keyval_core::{Message, NodeStatus, ReadConsistency};

/// Message kinds in a fixed order, so per-kind counters are array slots.
const KINDS: [&str; 13] = [
    "PreVote",
    "PreVoteResp",
    "Vote",
    "VoteResp",
    "Append",
    "AppendResp",
    "Heartbeat",
    "HeartbeatResp",
    "Snapshot",
    "SnapshotResp",
    "ReadIndex",
    "ReadIndexResp",
    "TimeoutNow",
];

pub fn kind_index(m: &Message) -> usize {
    match m {
        Message::PreVote { .. } => 0,
        Message::PreVoteResponse { .. } => 1,
        Message::RequestVote { .. } => 2,
        Message::RequestVoteResponse { .. } => 3,
        Message::AppendEntries { .. } => 4,
        Message::AppendEntriesResponse { .. } => 5,
        Message::Heartbeat { .. } => 6,
        Message::HeartbeatResponse { .. } => 7,
        Message::InstallSnapshot { .. } => 8,
        Message::InstallSnapshotResponse { .. } => 9,
        Message::ReadIndex { .. } => 10,
        Message::ReadIndexResponse { .. } => 11,
        Message::TimeoutNow { .. } => 12,
    }
}

pub use crate::histogram::{DISK_BUCKETS, Histogram, RTT_BUCKETS};

#[derive(Default)]
pub struct Metrics {
    pub proposals: AtomicU64,
    pub client_requests: AtomicU64,
    pub client_replies_ok: AtomicU64,
    pub client_replies_err: AtomicU64,
    pub applied_entries: AtomicU64,
    pub persisted_entries: AtomicU64,
    /// WAL write+fsync per group commit (etcd: `disk_wal_fsync_duration_seconds`).
    pub wal_fsync: Histogram,
    /// Batches that made a snapshot durable: how long their write+fsync took.
    pub snapshot_save: Histogram,
    /// Leader changes this node has seen (etcd: `server_leader_changes_seen_total`).
    pub leader_changes: AtomicU64,
    /// Leader id at the last status this node published (0: none).
    last_leader: AtomicU64,
    /// Client proposals waiting for their answer (etcd: `server_proposals_pending`).
    pub proposals_pending: AtomicU64,
    /// Proposals that entered the log but were answered with an error, or dropped because this
    /// node lost leadership (etcd: `server_proposals_failed_total`).
    pub proposals_failed: AtomicU64,
    /// Heartbeat -> response time per peer, seen from the node loop (etcd:
    /// `network_peer_round_trip_time_seconds`).
    peer_rtt: std::sync::Mutex<PeerRtt>,
    pub ready_batches: AtomicU64,
    sent: [AtomicU64; KINDS.len()],
    received: [AtomicU64; KINDS.len()],
    dropped: [AtomicU64; KINDS.len()],
    pub peer_connects: AtomicU64,
    pub peer_rejections: AtomicU64,
    pub bad_frames: AtomicU64,
    /// Client WebSocket connections accepted since start-up.
    pub client_connects: AtomicU64,
    pub event_subscribers_lagged: AtomicU64,
    pub elections: AtomicU64,
    /// Snapshots installed from a leader (InstallSnapshot), counted by the node loop.
    pub snapshots_installed: AtomicU64,
    /// Mirrors of the log store's counters, refreshed after every persisted batch.
    snapshots_saved: AtomicU64,
    snapshot_bytes: AtomicU64,
    compactions: AtomicU64,
    wal_segments_removed: AtomicU64,
    wal_bytes: AtomicU64,
    wal_segments: AtomicU64,
    /// Whether the outbound connection to each peer is up; touched only on (dis)connects.
    peer_up: std::sync::Mutex<std::collections::BTreeMap<u64, bool>>,
    pub reads: ReadMetrics,
}

/// Reads by consistency level and how the read paths did, for `GET /metrics`.
#[derive(Default)]
pub struct ReadMetrics {
    requests: [AtomicU64; 3],
    failures: [AtomicU64; 3],
    /// Mirrors of the core's [`ReadStats`], refreshed every node-loop turn.
    rounds: AtomicU64,
    lease_hits: AtomicU64,
    lease_misses: AtomicU64,
    follower_reads: AtomicU64,
}

fn level(c: ReadConsistency) -> usize {
    match c {
        ReadConsistency::Linearizable => 0,
        ReadConsistency::Lease => 1,
        ReadConsistency::Serializable => 2,
    }
}

impl ReadMetrics {
    pub fn request(&self, c: ReadConsistency) {
        self.requests[level(c)].fetch_add(1, Relaxed);
    }

    pub fn failure(&self, c: ReadConsistency) {
        self.failures[level(c)].fetch_add(1, Relaxed);
    }

    pub fn observe(&self, s: ReadStats) {
        self.rounds.store(s.rounds, Relaxed);
        self.lease_hits.store(s.lease_hits, Relaxed);
        self.lease_misses.store(s.lease_misses, Relaxed);
        self.follower_reads.store(s.follower_reads, Relaxed);
    }

    pub fn render(&self, out: &mut String) {
        for (name, help, counts) in [
            (
                "keyval_read_requests_total",
                "Reads received, by consistency level.",
                &self.requests,
            ),
            (
                "keyval_read_failures_total",
                "Reads answered with an error, by consistency level.",
                &self.failures,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for c in ReadConsistency::ALL {
                let v = counts[level(c)].load(Relaxed);
                let _ = writeln!(out, "{name}{{consistency=\"{}\"}} {v}", c.name());
            }
        }
        for (name, help, v) in [
            (
                "keyval_read_index_rounds_total",
                "Heartbeat rounds this node led to confirm reads (ReadIndex).",
                &self.rounds,
            ),
            (
                "keyval_lease_read_hits_total",
                "Lease reads answered under a valid lease, without a round trip.",
                &self.lease_hits,
            ),
            (
                "keyval_lease_read_misses_total",
                "Lease reads that found the lease lapsed and took a ReadIndex round instead.",
                &self.lease_misses,
            ),
            (
                "keyval_follower_reads_total",
                "Linearizable reads this node served as a follower by asking the leader.",
                &self.follower_reads,
            ),
        ] {
            let v = v.load(Relaxed);
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
    }
}

impl Metrics {
    pub fn observe_fsync(&self, took: Duration) {
        self.wal_fsync.observe(took);
    }

    /// Counts leader changes as etcd does: each time the known leader becomes a different,
    /// present node. Called with every status the node loop publishes (it never skips a
    /// change of leader).
    pub fn observe_status(&self, status: &NodeStatus) {
        let leader = status.leader.unwrap_or(0);
        let before = self.last_leader.swap(leader, Relaxed);
        if leader != 0 && leader != before {
            self.leader_changes.fetch_add(1, Relaxed);
        }
    }

    /// Starts a round-trip probe when a heartbeat goes to a peer; the first heartbeat response
    /// from that peer ends it. Only the oldest unanswered heartbeat is timed, so the figure is
    /// an upper bound of the network round trip plus both nodes' queueing, as etcd's prober's.
    pub fn observe_outbound(&self, env: &keyval_core::Envelope) {
        if matches!(env.msg, Message::Heartbeat { .. })
            && let Ok(mut rtt) = self.peer_rtt.lock()
        {
            rtt.sent(env.to, Instant::now());
        }
    }

    pub fn observe_inbound(&self, env: &keyval_core::Envelope) {
        if matches!(env.msg, Message::HeartbeatResponse { .. })
            && let Ok(mut rtt) = self.peer_rtt.lock()
        {
            rtt.answered(env.from, Instant::now());
        }
    }

    /// Copies the log store's counters (cumulative since start-up) and sizes.
    pub fn observe_store(&self, s: &crate::storage::StoreStats) {
        self.snapshots_saved.store(s.snapshots_saved, Relaxed);
        self.snapshot_bytes.store(s.last_snapshot_bytes, Relaxed);
        self.compactions.store(s.compactions, Relaxed);
        self.wal_segments_removed.store(s.segments_removed, Relaxed);
        self.wal_bytes.store(s.wal_bytes, Relaxed);
        self.wal_segments.store(s.wal_segments as u64, Relaxed);
    }

    /// Whether the outbound connection to `peer` is up now.
    pub fn peer_is_up(&self, peer: u64) -> bool {
        self.peer_up
            .lock()
            .is_ok_and(|m| m.get(&peer).copied().unwrap_or(false))
    }

    /// Stops reporting a peer that is no longer a member.
    pub fn forget_peer(&self, peer: u64) {
        if let Ok(mut m) = self.peer_up.lock() {
            m.remove(&peer);
        }
    }

    pub fn set_peer_up(&self, peer: u64, up: bool) {
        if let Ok(mut m) = self.peer_up.lock() {
            m.insert(peer, up);
        }
    }

    pub fn sent(&self, m: &Message) {
        self.sent[kind_index(m)].fetch_add(1, Relaxed);
    }
    pub fn received(&self, m: &Message) {
        self.received[kind_index(m)].fetch_add(1, Relaxed);
    }
    pub fn dropped(&self, m: &Message) {
        self.dropped[kind_index(m)].fetch_add(1, Relaxed);
    }
    /// Like [`Metrics::sent`], by [`kind_index`], for callers that no longer hold the message.
    pub fn sent_kind(&self, kind: usize) {
        if let Some(c) = self.sent.get(kind) {
            c.fetch_add(1, Relaxed);
        }
    }
    pub fn dropped_kind(&self, kind: usize) {
        if let Some(c) = self.dropped.get(kind) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// The Prometheus text exposition of every counter plus the node's current status.
    pub fn render(&self, status: &NodeStatus) -> String {
        let mut out = String::with_capacity(4096);
        let mut gauge = |name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge("keyval_term", "Current Raft term.", status.term);
        gauge(
            "keyval_commit_index",
            "Highest committed log index.",
            status.commit_index,
        );
        gauge(
            "keyval_applied_index",
            "Highest applied log index.",
            status.applied_index,
        );
        gauge("keyval_last_index", "Last log index.", status.last_index);
        gauge(
            "keyval_leader_id",
            "Known leader id (0: none).",
            status.leader.unwrap_or(0),
        );
        gauge("keyval_keys", "Keys in the state machine.", status.keys);
        let m = &status.membership;
        gauge(
            "keyval_members",
            "Voting members (of the incoming configuration while joint).",
            m.voters.len() as u64,
        );
        gauge(
            "keyval_membership_voters",
            "Voters of the configuration in force (the incoming half while joint).",
            m.voters.len() as u64,
        );
        gauge(
            "keyval_membership_outgoing_voters",
            "Voters of the configuration being left while joint (0 otherwise).",
            m.outgoing.len() as u64,
        );
        gauge(
            "keyval_membership_learners",
            "Learners: members that receive the log but do not vote.",
            (m.learners.len() + m.learners_next.len()) as u64,
        );
        gauge(
            "keyval_membership_joint",
            "1 while a joint configuration (both majorities needed) is in force.",
            u64::from(m.is_joint()),
        );
        gauge(
            "keyval_membership_index",
            "Log index of the configuration in force (0: the bootstrap one).",
            status.membership_index,
        );
        gauge(
            "keyval_membership_removed",
            "Node ids removed from the cluster for good.",
            m.removed.len() as u64,
        );
        gauge(
            "keyval_snapshot_index",
            "Last index covered by the latest snapshot (0: none).",
            status.snapshot_index,
        );
        gauge(
            "keyval_snapshot_count",
            "Snapshots made durable since start-up (taken or installed).",
            self.snapshots_saved.load(Relaxed),
        );
        gauge(
            "keyval_snapshot_size_bytes",
            "Size of the latest snapshot file on disk (header included).",
            self.snapshot_bytes.load(Relaxed),
        );
        gauge(
            "keyval_wal_bytes",
            "Bytes in WAL segment files.",
            self.wal_bytes.load(Relaxed),
        );
        gauge(
            "keyval_wal_segments",
            "WAL segment files.",
            self.wal_segments.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP keyval_role Current role (1 for the active one).\n# TYPE keyval_role gauge"
        );
        for role in ["follower", "precandidate", "candidate", "leader"] {
            let v = u8::from(status.role.name() == role);
            let _ = writeln!(out, "keyval_role{{role=\"{role}\"}} {v}");
        }
        let mut counter = |name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Relaxed)
            );
        };
        counter(
            "keyval_proposals_total",
            "Client commands proposed to the log.",
            &self.proposals,
        );
        counter(
            "keyval_client_requests_total",
            "Client requests received.",
            &self.client_requests,
        );
        counter(
            "keyval_client_replies_ok_total",
            "Client requests answered with a result.",
            &self.client_replies_ok,
        );
        counter(
            "keyval_client_replies_error_total",
            "Client requests answered with an error.",
            &self.client_replies_err,
        );
        counter(
            "keyval_applied_entries_total",
            "Entries applied to the state machine.",
            &self.applied_entries,
        );
        counter(
            "keyval_persisted_entries_total",
            "Entries made durable in the WAL.",
            &self.persisted_entries,
        );
        counter(
            "keyval_ready_batches_total",
            "Ready batches executed by the node loop.",
            &self.ready_batches,
        );
        counter(
            "keyval_elections_total",
            "Election timeouts (pre-vote or vote) started.",
            &self.elections,
        );
        counter(
            "keyval_snapshots_installed_total",
            "Snapshots installed from a leader.",
            &self.snapshots_installed,
        );
        counter(
            "keyval_log_compactions_total",
            "Log compactions carried out on disk since start-up.",
            &self.compactions,
        );
        counter(
            "keyval_wal_segments_removed_total",
            "WAL segments deleted because a snapshot covers them.",
            &self.wal_segments_removed,
        );
        counter(
            "keyval_peer_connects_total",
            "Outbound peer connections established.",
            &self.peer_connects,
        );
        counter(
            "keyval_peer_rejections_total",
            "Peer handshakes refused (wrong cluster or node id).",
            &self.peer_rejections,
        );
        counter(
            "keyval_client_connects_total",
            "Client WebSocket connections accepted.",
            &self.client_connects,
        );
        counter(
            "keyval_bad_frames_total",
            "Frames refused as undecodable, oversized or unexpected.",
            &self.bad_frames,
        );
        counter(
            "keyval_event_subscribers_lagged_total",
            "Live-event subscribers that fell behind.",
            &self.event_subscribers_lagged,
        );

        self.render_etcd(&mut out, status);

        let _ = writeln!(
            out,
            "# HELP keyval_peer_connected Outbound connection to the peer is up (1) or not (0).\n# TYPE keyval_peer_connected gauge"
        );
        if let Ok(m) = self.peer_up.lock() {
            for (peer, up) in m.iter() {
                let _ = writeln!(
                    out,
                    "keyval_peer_connected{{peer=\"{peer}\"}} {}",
                    u8::from(*up)
                );
            }
        }
        for (name, help, arr) in [
            (
                "keyval_messages_sent_total",
                "Raft messages queued to peers.",
                &self.sent,
            ),
            (
                "keyval_messages_received_total",
                "Raft messages received from peers.",
                &self.received,
            ),
            (
                "keyval_messages_dropped_total",
                "Raft messages dropped (peer queue full or peer down).",
                &self.dropped,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (i, kind) in KINDS.iter().enumerate() {
                let _ = writeln!(out, "{name}{{type=\"{kind}\"}} {}", arr[i].load(Relaxed));
            }
        }
        self.reads.render(&mut out);
        out
    }

    /// The etcd-named metrics, under `keyval_` with etcd's meanings.
    fn render_etcd(&self, out: &mut String, status: &NodeStatus) {
        let mut one = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        one(
            "keyval_server_has_leader",
            "gauge",
            "Whether a leader is known to this node (1) or not (0).",
            u64::from(status.leader.is_some()),
        );
        one(
            "keyval_server_is_leader",
            "gauge",
            "Whether this node is the leader (1) or not (0).",
            u64::from(status.role.name() == "leader"),
        );
        one(
            "keyval_server_leader_changes_seen_total",
            "counter",
            "Leader changes seen by this node.",
            self.leader_changes.load(Relaxed),
        );
        // etcd exports these two as gauges holding the commit and applied index.
        one(
            "keyval_server_proposals_committed_total",
            "gauge",
            "Consensus proposals committed (the commit index).",
            status.commit_index,
        );
        one(
            "keyval_server_proposals_applied_total",
            "gauge",
            "Consensus proposals applied (the applied index).",
            status.applied_index,
        );
        one(
            "keyval_server_proposals_pending",
            "gauge",
            "Client proposals waiting for their answer.",
            self.proposals_pending.load(Relaxed),
        );
        one(
            "keyval_server_proposals_failed_total",
            "counter",
            "Proposals that failed after entering the log (lost leadership, dropped).",
            self.proposals_failed.load(Relaxed),
        );
        self.wal_fsync.render(
            out,
            "keyval_disk_wal_fsync_duration_seconds",
            "Latency of the WAL write+fsync of one group commit.",
            "",
        );
        // The name this histogram had before the etcd names; kept for existing scrapers.
        self.wal_fsync.render(
            out,
            "keyval_fsync_duration_seconds",
            "WAL write+fsync latency per group commit (old name of keyval_disk_wal_fsync_duration_seconds).",
            "",
        );
        self.snapshot_save.render(
            out,
            "keyval_disk_snapshot_save_duration_seconds",
            "Latency of the write+fsync batch that made a snapshot durable.",
            "",
        );
        let name = "keyval_network_peer_round_trip_time_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Heartbeat round trip to each peer.\n# TYPE {name} histogram"
        );
        if let Ok(rtt) = self.peer_rtt.lock() {
            for (peer, h) in &rtt.histograms {
                h.render_series(out, name, &format!("To=\"{peer}\""));
            }
        }
    }
}

/// Per-peer heartbeat round trips: when the oldest unanswered heartbeat left, and the
/// histogram of answered ones.
#[derive(Default)]
struct PeerRtt {
    outstanding: BTreeMap<u64, Instant>,
    histograms: BTreeMap<u64, Histogram>,
}

impl PeerRtt {
    fn sent(&mut self, peer: u64, at: Instant) {
        self.outstanding.entry(peer).or_insert(at);
    }

    fn answered(&mut self, peer: u64, at: Instant) {
        if let Some(sent) = self.outstanding.remove(&peer) {
            self.histograms
                .entry(peer)
                .or_insert_with(|| Histogram::new(&RTT_BUCKETS))
                .observe(at.saturating_duration_since(sent));
        }
    }
}

#[cfg(test)]
mod tests {
    use keyval_core::{Membership, NodeStatus, Role};

    use super::Metrics;

    /// Scrapers see both halves of a joint configuration and the learners apart.
    #[test]
    fn membership_gauges_show_voters_learners_and_the_joint_state() {
        let mut m = Membership::bootstrap([1, 2, 4], Default::default());
        m.outgoing = [1, 2, 3].into();
        m.learners = [5].into();
        m.learners_next = [3].into();
        m.removed = [9].into();
        let status = NodeStatus {
            id: 1,
            role: Role::Leader,
            term: 3,
            vote: Some(1),
            leader: Some(1),
            commit_index: 12,
            applied_index: 12,
            leader_commit: Some(12),
            last_index: 12,
            last_term: 3,
            snapshot_index: 0,
            members: vec![1, 2, 3, 4, 5],
            keys: 0,
            membership: Box::new(m),
            membership_index: 11,
        };
        let text = Metrics::default().render(&status);
        for line in [
            "keyval_membership_voters 3",
            "keyval_membership_outgoing_voters 3",
            "keyval_membership_learners 2",
            "keyval_membership_joint 1",
            "keyval_membership_index 11",
            "keyval_membership_removed 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
