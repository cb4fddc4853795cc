//! Deliberate protocol bugs that prove the simulator's checkers have teeth.
//!
//! Each is switched on only through `Config::mutation`, which exists only with the `mutations`
//! cargo feature (enabled by the core's own test targets). A checker that lets one of these pass
//! within the default seed budget is not doing its job.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mutation {
    /// Commit entries of earlier terms by counting replicas (the Figure 8 bug, Raft §5.4.2).
    CommitPreviousTermByCounting,
    /// Grant votes without the "candidate's log is at least as up to date" check (§5.4.1).
    VoteWithoutLogCheck,
    /// Answer a vote request before the vote is durable: the granted vote never reaches the
    /// persisted hard state, so a crash and restart forgets it and the node can vote again.
    VoteReplyBeforePersist,
    /// Install a snapshot that is not newer than the follower's commit index, replacing a newer
    /// log and state: commit and applied go backwards, and the state machine with them.
    InstallStaleSnapshot,
    /// A leader counts its own log toward the commit quorum before its write is durable: with
    /// appends sent ahead of its fsync, an entry can commit on one follower plus a leader
    /// that crashes before the entry reaches its disk.
    LeaderCountsSelfBeforeDurable,
    /// A follower acknowledges appended entries before they are durable.
    FollowerAcksBeforeDurable,
}

impl Mutation {
    pub const ALL: [Mutation; 6] = [
        Mutation::CommitPreviousTermByCounting,
        Mutation::VoteWithoutLogCheck,
        Mutation::VoteReplyBeforePersist,
        Mutation::InstallStaleSnapshot,
        Mutation::LeaderCountsSelfBeforeDurable,
        Mutation::FollowerAcksBeforeDurable,
    ];
}
