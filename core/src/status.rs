//! A node's externally visible state: what `kvctl status`, `/healthz`, the live event stream
//! and the playground show. One type, so every view agrees on the fields.

use serde::{Deserialize, Serialize};

use crate::membership::Membership;
use crate::server::KvServer;
use crate::trace::TraceKind;
use crate::types::{Index, NodeId, Role, Term};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: NodeId,
    pub role: Role,
    pub term: Term,
    pub vote: Option<NodeId>,
    pub leader: Option<NodeId>,
    pub commit_index: Index,
    pub applied_index: Index,
    /// The cluster's commit index as this node knows it (see
    /// [`crate::RaftNode::leader_commit`]); None without a known leader.
    pub leader_commit: Option<Index>,
    pub last_index: Index,
    pub last_term: Term,
    /// Last index covered by the latest snapshot (0 without one).
    pub snapshot_index: Index,
    /// Every member: voters of both halves and learners.
    pub members: Vec<NodeId>,
    pub keys: u64,
    /// The configuration in force, with the log index that produced it (boxed: it is large and
    /// status frames share an enum with small ones).
    pub membership: Box<Membership>,
    pub membership_index: Index,
}

impl NodeStatus {
    pub fn of(server: &KvServer) -> Self {
        let raft = server.raft();
        NodeStatus {
            id: raft.id(),
            role: raft.role(),
            term: raft.term(),
            vote: raft.vote(),
            leader: raft.leader(),
            commit_index: raft.commit_index(),
            applied_index: raft.applied_index(),
            leader_commit: raft.leader_commit(),
            last_index: raft.log().last_index(),
            last_term: raft.log().last_term(),
            snapshot_index: raft.snapshot_index(),
            members: raft.membership().members().into_iter().collect(),
            keys: server.kv().len() as u64,
            membership: Box::new(raft.membership().clone()),
            membership_index: raft.membership_index(),
        }
    }
}

/// One frame of a native node's live event stream (`GET /events`, WebSocket, postcard-encoded
/// binary frames). The playground decodes it with this same crate compiled to WebAssembly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LiveFrame {
    /// Sent on connect and whenever the node's status changes (at most a few times a second).
    Status(NodeStatus),
    /// The same typed events the simulator records; `time_ms` is the node's wall clock
    /// (milliseconds since the Unix epoch), supplied by the native executor.
    Event { time_ms: u64, kind: TraceKind },
    /// The subscriber fell behind and `dropped` events were skipped (bounded per subscriber).
    Lagged { dropped: u64 },
}
