//! The vocabulary every other module speaks: ids, terms, indexes, log entries and durable state.

use serde::{Deserialize, Serialize};

use crate::kv::ClientRequest;
use crate::membership::ConfChange;

pub type NodeId = u64;
pub type Term = u64;
/// Log positions start at 1; index 0 is the empty prefix every log shares.
pub type Index = u64;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub term: Term,
    pub index: Index,
    pub payload: EntryPayload,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryPayload {
    /// Appended by every new leader so that it can commit, by counting, an entry of its own term
    /// (Raft §5.4.2 forbids committing older entries that way; this one drags them along).
    Noop,
    Command(ClientRequest),
    /// A membership change; it takes effect on each node when the node applies it.
    ConfChange(ConfChange),
}

impl Entry {
    /// Approximate encoded size, used to bound message and batch sizes without encoding twice.
    pub fn size_hint(&self) -> usize {
        24 + match &self.payload {
            EntryPayload::Noop => 0,
            EntryPayload::Command(req) => req.op.size_hint(),
            EntryPayload::ConfChange(cc) => cc
                .changes
                .iter()
                .map(|c| 16 + c.address.as_ref().map_or(0, String::len))
                .sum(),
        }
    }
}

/// What must survive a crash before a node may answer anyone: its term and its vote in it.
/// Losing either lets a node vote twice in one term (two leaders).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    pub term: Term,
    pub vote: Option<NodeId>,
    /// An index known committed, at least as high as every configuration change the node had
    /// applied when this was written. A restart re-applies the log up to here before it may
    /// campaign, so it recovers exactly the membership it had (etcd persists its commit index
    /// for the same reason). Written only when a configuration change applies, not on every
    /// commit advance: that would add an fsync to almost every batch.
    #[serde(default)]
    pub commit: Index,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    Follower,
    /// Pre-Vote phase (thesis §9.6): asks whether it *could* win before disturbing anyone's term.
    PreCandidate,
    Candidate,
    Leader,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::PreCandidate => "precandidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
