//! Tunables of one Raft node. Time is counted in ticks: the executor decides how long a tick is.

use serde::{Deserialize, Serialize};

#[cfg(feature = "mutations")]
use crate::mutation::Mutation;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// A leader sends heartbeats every this many ticks.
    pub heartbeat_ticks: u32,
    /// Lower bound of the randomized election timeout; the actual timeout is drawn from
    /// `[election_ticks, 2 * election_ticks)` after every reset, which is what breaks split votes.
    pub election_ticks: u32,
    pub pre_vote: bool,
    pub check_quorum: bool,
    /// Append messages a leader may have unacknowledged per follower (pipelining window).
    pub max_inflight_msgs: usize,
    /// Upper bound on entries in one append message (at least one is always sent).
    pub max_entries_per_msg: usize,
    /// Upper bound on the approximate payload bytes of one append message.
    pub max_bytes_per_msg: usize,
    /// A leader refuses proposals while this many entries are uncommitted: back-pressure instead
    /// of an unbounded log when followers cannot keep up.
    pub max_uncommitted_entries: u64,
    /// A leader refuses proposals while the uncommitted entries hold this many payload bytes
    /// (approximate, [`crate::types::Entry::size_hint`]): with 1 MiB values the entry cap
    /// alone would let 20 GB pile up. The tail lives in the leader's memory and in every
    /// follower's queue; 64 MiB is over half a second of a fast disk's writing, so more only
    /// adds queueing latency. An entry is always admitted when nothing is uncommitted, so one
    /// larger than the cap still goes through alone.
    #[serde(default = "default_max_uncommitted_bytes")]
    pub max_uncommitted_bytes: u64,
    /// Take a snapshot and compact the log once this many entries were applied since the last
    /// snapshot; 0 never compacts (the log then grows forever and a restart replays all of it).
    #[serde(default)]
    pub snapshot_threshold: u64,
    /// Upper bound on the state bytes in one InstallSnapshot message (at most
    /// [`crate::snapshot::MAX_SNAPSHOT_CHUNK_BYTES`]), so a large state never travels as one
    /// huge message and a lost chunk costs only one chunk.
    #[serde(default = "default_snapshot_chunk_bytes")]
    pub snapshot_chunk_bytes: usize,
    /// Serve [`crate::kv::ReadConsistency::Lease`] reads. Must be on for every node of the
    /// cluster (a node with it on also refuses votes for an election timeout after it starts),
    /// and needs `check_quorum`.
    #[serde(default)]
    pub lease_reads: bool,
    /// The part of the election timeout a lease gives up for clock drift, in percent: a lease
    /// lasts `election_ticks * (100 - pct) / 100` ticks from when the heartbeats a quorum
    /// acknowledged were sent. Clocks must not drift apart by more than this over a timeout.
    #[serde(default = "default_lease_drift_margin_pct")]
    pub lease_drift_margin_pct: u32,
    /// Bound on the bytes of the state machine's session table (see [`crate::kv`]). Replicated
    /// state: every node of a cluster must use the same value.
    #[serde(default = "default_session_limit_bytes")]
    pub session_limit_bytes: u64,
    /// InstallSnapshot chunks a leader may have unacknowledged per follower: a transfer moves
    /// a window of chunks per round trip instead of one.
    #[serde(default = "default_snapshot_chunks_in_flight")]
    pub max_snapshot_chunks_in_flight: usize,
    /// A node becomes a voter (promoted learner, or added directly) only while the leader knows
    /// its log matches to within this many entries of the leader's last index: a voter that
    /// lags far behind would make the cluster wait for it (or lose availability) as soon as
    /// it counts for quorum. Leader-local policy; nodes may differ.
    #[serde(default = "default_max_promotion_lag")]
    pub max_promotion_lag: u64,
    /// Upper bound on the committed entries one `take_ready` applies (0: all of them), so one
    /// batch stays short after a long outage; the rest apply in the following batches.
    #[serde(default)]
    pub max_applied_per_ready: u64,
    /// Test-only deliberate bug; see [`crate::mutation`].
    #[cfg(feature = "mutations")]
    #[serde(skip)]
    pub mutation: Option<Mutation>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            heartbeat_ticks: 1,
            election_ticks: 10,
            pre_vote: true,
            check_quorum: true,
            max_inflight_msgs: 256,
            max_entries_per_msg: 1024,
            max_bytes_per_msg: 4 << 20,
            max_uncommitted_entries: 20_000,
            max_uncommitted_bytes: default_max_uncommitted_bytes(),
            snapshot_threshold: 0,
            snapshot_chunk_bytes: default_snapshot_chunk_bytes(),
            lease_reads: false,
            lease_drift_margin_pct: default_lease_drift_margin_pct(),
            session_limit_bytes: default_session_limit_bytes(),
            max_snapshot_chunks_in_flight: default_snapshot_chunks_in_flight(),
            max_promotion_lag: default_max_promotion_lag(),
            max_applied_per_ready: 0,
            #[cfg(feature = "mutations")]
            mutation: None,
        }
    }
}

fn default_max_uncommitted_bytes() -> u64 {
    64 << 20
}

fn default_snapshot_chunks_in_flight() -> usize {
    8
}

/// One full append message of the default size: a learner this close catches up in one round
/// trip once it votes.
fn default_max_promotion_lag() -> u64 {
    1024
}

fn default_snapshot_chunk_bytes() -> usize {
    64 << 10
}

fn default_lease_drift_margin_pct() -> u32 {
    10
}

fn default_session_limit_bytes() -> u64 {
    crate::kv::DEFAULT_SESSION_LIMIT_BYTES
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("heartbeat_ticks must be at least 1")]
    ZeroHeartbeat,
    #[error("election_ticks ({election}) must be greater than heartbeat_ticks ({heartbeat})")]
    ElectionNotAboveHeartbeat { election: u32, heartbeat: u32 },
    #[error("{0} must be at least 1")]
    ZeroLimit(&'static str),
    #[error("snapshot_chunk_bytes ({0}) is over the limit of {max}", max = crate::snapshot::MAX_SNAPSHOT_CHUNK_BYTES)]
    ChunkTooLarge(usize),
    #[error("lease_reads needs check_quorum: the lease rests on followers refusing votes")]
    LeaseWithoutCheckQuorum,
    #[error("lease_drift_margin_pct ({0}) must be below 100")]
    DriftMarginTooLarge(u32),
}

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.heartbeat_ticks == 0 {
            return Err(ConfigError::ZeroHeartbeat);
        }
        if self.election_ticks <= self.heartbeat_ticks {
            return Err(ConfigError::ElectionNotAboveHeartbeat {
                election: self.election_ticks,
                heartbeat: self.heartbeat_ticks,
            });
        }
        if self.max_inflight_msgs == 0 {
            return Err(ConfigError::ZeroLimit("max_inflight_msgs"));
        }
        if self.max_entries_per_msg == 0 {
            return Err(ConfigError::ZeroLimit("max_entries_per_msg"));
        }
        if self.max_uncommitted_entries == 0 {
            return Err(ConfigError::ZeroLimit("max_uncommitted_entries"));
        }
        if self.max_uncommitted_bytes == 0 {
            return Err(ConfigError::ZeroLimit("max_uncommitted_bytes"));
        }
        if self.max_snapshot_chunks_in_flight == 0 {
            return Err(ConfigError::ZeroLimit("max_snapshot_chunks_in_flight"));
        }
        if self.snapshot_chunk_bytes == 0 {
            return Err(ConfigError::ZeroLimit("snapshot_chunk_bytes"));
        }
        if self.snapshot_chunk_bytes > crate::snapshot::MAX_SNAPSHOT_CHUNK_BYTES {
            return Err(ConfigError::ChunkTooLarge(self.snapshot_chunk_bytes));
        }
        if self.lease_reads && !self.check_quorum {
            return Err(ConfigError::LeaseWithoutCheckQuorum);
        }
        if self.lease_drift_margin_pct >= 100 {
            return Err(ConfigError::DriftMarginTooLarge(
                self.lease_drift_margin_pct,
            ));
        }
        Ok(())
    }

    #[cfg(feature = "mutations")]
    pub(crate) fn has_mutation(&self, m: Mutation) -> bool {
        self.mutation == Some(m)
    }

    #[cfg(not(feature = "mutations"))]
    #[inline(always)]
    pub(crate) fn has_mutation(&self, _m: crate::mutation::Mutation) -> bool {
        false
    }
}
