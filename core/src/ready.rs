//! The effects contract: what a step asks its executor to do, and in which order.
//!
//! Every input (`tick`, `step`, a client request) only changes memory. The executor then calls
//! `take_ready()` and carries out the batch **in this order**:
//!
//! 1. **persist**: apply [`Ready::persist`] to stable storage in order (hard state, truncations,
//!    appends, snapshots and compactions) and make it durable (fsync). A crash before this
//!    completes must lose the whole batch, including its messages and replies. An installed
//!    snapshot's acknowledgement is in the same batch as its `SaveSnapshot`, so a follower never
//!    promises state it could lose.
//! 2. **send**: only then send [`Ready::messages`]. A vote reply or an append acknowledgement
//!    promises that the durable state above exists; sending first would break election safety
//!    or let a leader count an entry that a crash can still erase.
//! 3. **answer**: deliver [`Ready::replies`] to clients. Their entries are committed (durable on a
//!    majority) and have been applied to the in-memory state machine by the core.
//!
//! Batches must be executed one at a time, in the order they were taken. An executor may gather
//! the inputs of a whole event-loop turn before taking one batch: all their entries then share a
//! single fsync (group commit). The native node and the simulator are the two executors.

use serde::{Deserialize, Serialize};

use crate::kv::{ClientReply, ClientRequest, KvResult};
use crate::message::Envelope;
use crate::snapshot::Snapshot;
use crate::types::{Entry, HardState, Index, NodeId, Role, Term};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PersistOp {
    HardState(HardState),
    /// Remove every entry at this index and after (a follower resolving a conflict).
    TruncateFrom(Index),
    Append(Vec<Entry>),
    /// Make this snapshot the durable latest one, replacing the previous. Always queued before
    /// the [`PersistOp::CompactLog`] that drops what it covers: a crash in between must leave
    /// either the old snapshot with the full log or the new one, never a log with a hole.
    SaveSnapshot(Snapshot),
    /// Remove every entry at this index and before (they are covered by the saved snapshot);
    /// entries after it stay. A log that ends earlier becomes empty, starting after this index.
    CompactLog(Index),
}

/// An entry the state machine applied, for traces and checkers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub index: Index,
    pub term: Term,
    /// None for a no-op entry.
    pub request: Option<ClientRequest>,
    /// None when the entry changed nothing: a no-op, or a stale duplicate of an older request.
    pub result: Option<KvResult>,
}

/// Things a node observed about itself, for traces, logs and the playground.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeEvent {
    ElectionTimeout {
        term: Term,
        pre_vote: bool,
    },
    RoleChanged {
        from: Role,
        to: Role,
        term: Term,
        leader: Option<NodeId>,
    },
    VoteCast {
        candidate: NodeId,
        term: Term,
        granted: bool,
        pre_vote: bool,
    },
    /// A leader that has not heard from a majority for an election timeout steps down
    /// (Check-Quorum), so clients stop waiting on it.
    CheckQuorumFailed {
        term: Term,
    },
    CommitAdvanced {
        from: Index,
        to: Index,
    },
    /// A peer sent something no correct peer sends (e.g. asked to overwrite committed entries).
    /// It is refused; the simulator counts any occurrence as a safety failure.
    ProtocolViolation {
        from: NodeId,
        detail: String,
    },
    /// The node snapshotted its state machine at `index` and compacted its log up to there.
    SnapshotTaken {
        index: Index,
        term: Term,
        bytes: u64,
    },
    /// A leader sent one InstallSnapshot chunk (`bytes` long, starting at `offset`).
    SnapshotChunkSent {
        to: NodeId,
        index: Index,
        offset: u64,
        bytes: u64,
        done: bool,
    },
    /// A follower stored one InstallSnapshot chunk that continued its transfer.
    SnapshotChunkReceived {
        from: NodeId,
        index: Index,
        offset: u64,
        bytes: u64,
        done: bool,
    },
    /// A follower replaced its state with a leader's snapshot; `kept_entries` of its log after
    /// the snapshot matched and were kept.
    SnapshotInstalled {
        from: NodeId,
        index: Index,
        term: Term,
        bytes: u64,
        kept_entries: u64,
    },
    /// A leader started a heartbeat round to confirm `reads` reads at read index `commit`.
    ReadRoundStarted {
        seq: u64,
        commit: Index,
        reads: u64,
    },
    /// A quorum acknowledged round `seq` (or a later one): `reads` reads may be answered once
    /// `index` is applied.
    ReadConfirmed {
        seq: u64,
        index: Index,
        reads: u64,
    },
    /// A leader answered a read under its lease, with no round trip.
    LeaseRead {
        index: Index,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    pub persist: Vec<PersistOp>,
    pub messages: Vec<Envelope>,
    pub applied: Vec<Applied>,
    pub replies: Vec<ClientReply>,
    pub events: Vec<NodeEvent>,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.persist.is_empty()
            && self.messages.is_empty()
            && self.applied.is_empty()
            && self.replies.is_empty()
            && self.events.is_empty()
    }

    /// Appends `later` to this batch, as if both had been taken as one: its persist ops run
    /// after ours, its messages are still sent only after all of them are durable.
    pub fn merge(&mut self, later: Ready) {
        self.persist.extend(later.persist);
        self.messages.extend(later.messages);
        self.applied.extend(later.applied);
        self.replies.extend(later.replies);
        self.events.extend(later.events);
    }

    /// Whether executing this batch needs an fsync.
    pub fn needs_sync(&self) -> bool {
        !self.persist.is_empty()
    }
}
