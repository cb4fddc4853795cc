//! The effects contract: what a step asks its executor to do, and in which order.
//!
//! Every input (`tick`, `step`, a client request) only changes memory. The executor then calls
//! `take_ready()` and gets one batch. Persistence is **asynchronous** (etcd-raft's
//! `AsyncStorageWrites`, raft-rs's async ready): the executor may take and start the next batch
//! before the previous one is durable, as long as it keeps these rules.
//!
//! 1. **persist, in order**: [`Ready::persist`] (hard state, truncations, appends, snapshots and
//!    compactions) is an ordered stream. Batches are written in the order they were taken and a
//!    later batch never becomes durable before an earlier one (one FIFO writer; it may coalesce
//!    several queued batches into one fsync: group commit). When a batch with a
//!    [`Ready::persist_id`] is durable, the executor tells the core with
//!    `on_persisted(persist_id)`, which also covers every earlier batch. A crash before that
//!    may lose the batch and everything after it, never part of an earlier one.
//! 2. **send now**: [`Ready::messages`] may go out at once, before this batch is durable. They
//!    are a leader's appends, heartbeats and snapshot chunks (thesis §10.2.1: the leader writes
//!    to its disk in parallel with its followers), and only ever carry a term that is already
//!    durable. The leader counts itself toward a commit quorum only for entries it has been told
//!    are durable, so sending early never lets it commit what a crash can erase.
//! 3. **send after durable**: [`Ready::persisted_messages`] go out only once this batch (and so
//!    every earlier one) is durable. A vote, an append or snapshot acknowledgement promises that
//!    the durable state exists; sending it first would break election safety or let a leader
//!    count an entry a crash can still erase. An installed snapshot's acknowledgement is in the
//!    same batch as its `SaveSnapshot`.
//! 4. **answer**: [`Ready::replies`] may be delivered at once: their entries are committed (durable
//!    on a majority of voters, which need not include this node yet) and were applied by the
//!    core. An executor may also hold them back to the batch's durability; the simulator does,
//!    so its applied-index bookkeeping stays in batch order.
//!
//! After `on_persisted` the executor takes the next batch: the notice may commit entries (a
//! leader counting itself, a single-node cluster) and so produce replies.
//!
//! Stale notices are safe. The core remembers, per unacknowledged batch, the last entry it wrote
//! (index and term) and counts that entry as durable only if its log still holds the same term
//! at that index: a notice about entries a later batch truncated and rewrote (the ABA case
//! etcd-raft guards against) is ignored; truncations lower the durable index at once.
//!
//! A failed write or fsync is fatal for the node: the executor stops it (never retries), and it
//! recovers from what its disk holds. Persist ops of one batch may be partly durable after a
//! crash only in a prefix order (a WAL replayed up to its first bad record).
//!
//! The native node and the simulator are the two executors.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::kv::{ClientReply, ClientRequest, KvResult};
use crate::membership::{ConfChange, Membership};
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
    SaveSnapshot(Arc<Snapshot>),
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
    /// The configuration change the entry carried, if it was one.
    pub conf_change: Option<ConfChange>,
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
    /// The leader started handing leadership to `to` (in its term `term`): it refuses
    /// proposals and lease reads until the transfer ends.
    TransferStarted {
        to: NodeId,
        term: Term,
    },
    /// The old leader saw `to` lead term `term`.
    TransferCompleted {
        to: NodeId,
        term: Term,
    },
    /// The transfer to `to`, started in `term`, ended without `to` leading.
    TransferAborted {
        to: NodeId,
        term: Term,
        reason: String,
    },
    /// The leader asked this node (in `term`) to campaign at once.
    TimeoutNowReceived {
        from: NodeId,
        term: Term,
    },
    /// The configuration change at `index` was applied: `membership` is now in force here.
    MembershipChanged {
        index: Index,
        membership: Membership,
    },
    /// The configuration change at `index` could not be applied to the configuration in force
    /// (every node refuses it alike) and changed nothing.
    ConfChangeRefused {
        index: Index,
        reason: String,
    },
    /// This leader applied a configuration in which it is not a voter: it hands leadership to
    /// the most caught-up voter (a transfer) and steps down.
    LeaderRemoved {
        term: Term,
    },
    /// This leader proposed, at `index`, the promotion of a learner added to be promoted once
    /// caught up (`Membership::promote_when_caught_up`): it has caught up.
    LearnerPromoting {
        node: NodeId,
        index: Index,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// Persist work, in order; see the module docs.
    pub persist: Vec<PersistOp>,
    /// Identifies this batch's persist work (Some exactly when `persist` is non-empty): pass it
    /// to `on_persisted` once the batch is durable.
    pub persist_id: Option<u64>,
    /// Messages that may be sent before `persist` is durable (a leader's replication).
    pub messages: Vec<Envelope>,
    /// Messages that may be sent only after `persist` is durable (acknowledgements, votes).
    pub persisted_messages: Vec<Envelope>,
    pub applied: Vec<Applied>,
    pub replies: Vec<ClientReply>,
    pub events: Vec<NodeEvent>,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.persist.is_empty()
            && self.messages.is_empty()
            && self.persisted_messages.is_empty()
            && self.applied.is_empty()
            && self.replies.is_empty()
            && self.events.is_empty()
    }

    /// Appends `later` to this batch, as if both had been taken as one: its persist ops run
    /// after ours and its persist id (the later one) covers both.
    pub fn merge(&mut self, later: Ready) {
        self.persist.extend(later.persist);
        if later.persist_id.is_some() {
            self.persist_id = later.persist_id;
        }
        self.messages.extend(later.messages);
        self.persisted_messages.extend(later.persisted_messages);
        self.applied.extend(later.applied);
        self.replies.extend(later.replies);
        self.events.extend(later.events);
    }

    /// Whether executing this batch needs an fsync.
    pub fn needs_sync(&self) -> bool {
        !self.persist.is_empty()
    }
}
