//! Counters the node keeps for `GET /metrics` (Prometheus text format, version 0.0.4).
//!
//! Plain atomics written from the node loop, the peer tasks and the storage path, read by the
//! HTTP handler: no locks on the hot path and no metrics dependency for a few dozen numbers.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use keyval_core::read::ReadStats;
use keyval_core::{Message, NodeStatus, ReadConsistency};

/// Message kinds in a fixed order, so per-kind counters are array slots.
const KINDS: [&str; 12] = [
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
    }
}

/// Upper bounds (seconds) of the fsync latency histogram buckets.
const FSYNC_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024,
];

#[derive(Default)]
pub struct Metrics {
    pub proposals: AtomicU64,
    pub client_requests: AtomicU64,
    pub client_replies_ok: AtomicU64,
    pub client_replies_err: AtomicU64,
    pub applied_entries: AtomicU64,
    pub persisted_entries: AtomicU64,
    pub fsyncs: AtomicU64,
    fsync_micros_sum: AtomicU64,
    fsync_buckets: [AtomicU64; FSYNC_BUCKETS.len()],
    pub ready_batches: AtomicU64,
    sent: [AtomicU64; KINDS.len()],
    received: [AtomicU64; KINDS.len()],
    dropped: [AtomicU64; KINDS.len()],
    pub peer_connects: AtomicU64,
    pub peer_rejections: AtomicU64,
    pub bad_frames: AtomicU64,
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
        self.fsyncs.fetch_add(1, Relaxed);
        self.fsync_micros_sum
            .fetch_add(took.as_micros() as u64, Relaxed);
        let secs = took.as_secs_f64();
        // Cumulative buckets are computed at render time; store per-bucket counts here.
        let slot = FSYNC_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(FSYNC_BUCKETS.len() - 1);
        if secs <= FSYNC_BUCKETS[FSYNC_BUCKETS.len() - 1] {
            self.fsync_buckets[slot].fetch_add(1, Relaxed);
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
        gauge(
            "keyval_members",
            "Voting members.",
            status.members.len() as u64,
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
            "keyval_bad_frames_total",
            "Frames refused as undecodable, oversized or unexpected.",
            &self.bad_frames,
        );
        counter(
            "keyval_event_subscribers_lagged_total",
            "Live-event subscribers that fell behind.",
            &self.event_subscribers_lagged,
        );

        let _ = writeln!(
            out,
            "# HELP keyval_fsync_duration_seconds WAL write+fsync latency per group commit.\n# TYPE keyval_fsync_duration_seconds histogram"
        );
        let mut cumulative = 0;
        for (i, b) in FSYNC_BUCKETS.iter().enumerate() {
            cumulative += self.fsync_buckets[i].load(Relaxed);
            let _ = writeln!(
                out,
                "keyval_fsync_duration_seconds_bucket{{le=\"{b}\"}} {cumulative}"
            );
        }
        let count = self.fsyncs.load(Relaxed);
        let _ = writeln!(
            out,
            "keyval_fsync_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "keyval_fsync_duration_seconds_sum {}",
            self.fsync_micros_sum.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "keyval_fsync_duration_seconds_count {count}");

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
}
