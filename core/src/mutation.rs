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
    /// Serve ReadIndex reads before the leader committed an entry of its own term: its commit
    /// index may still be behind writes an earlier leader acknowledged.
    ReadBeforeCommitInTerm,
    /// Answer ReadIndex reads at the commit index without the heartbeat round that confirms
    /// the node still leads: a deposed leader answers from a stale state.
    ReadWithoutConfirmation,
    /// Lease reads for the whole election timeout, with no margin for clock drift: a follower
    /// whose clock runs fast elects a new leader while the old one still trusts its lease.
    LeaseWithoutDriftMargin,
    /// Recreate a forgotten session when a write arrives for it (the old LRU behaviour): a
    /// retry of a write applied before its session was forgotten applies a second time.
    RecreateExpiredSessions,
    /// A leader counts its own log toward the commit quorum before its write is durable: with
    /// appends sent ahead of its fsync, an entry can commit on one follower plus a leader
    /// that crashes before the entry reaches its disk.
    LeaderCountsSelfBeforeDurable,
    /// A follower acknowledges appended entries before they are durable.
    FollowerAcksBeforeDurable,
    /// A leader accepts a configuration change while an earlier one is not applied: two
    /// changes in flight, whose configurations need not overlap in a quorum.
    TwoConfChangesInFlight,
    /// Configurations take effect when appended instead of when applied, and a truncated
    /// configuration entry is not rolled back.
    ConfigOnAppend,
    /// Campaign while committed configuration changes are not applied yet (etcd-raft#469):
    /// the candidate counts votes under a configuration the cluster has left.
    CampaignWithUnappliedConfig,
    /// Learners are asked for votes and counted as voters of the incoming half.
    LearnerVoteCounts,
}

impl Mutation {
    pub const ALL: [Mutation; 14] = [
        Mutation::CommitPreviousTermByCounting,
        Mutation::VoteWithoutLogCheck,
        Mutation::VoteReplyBeforePersist,
        Mutation::InstallStaleSnapshot,
        Mutation::ReadBeforeCommitInTerm,
        Mutation::ReadWithoutConfirmation,
        Mutation::LeaseWithoutDriftMargin,
        Mutation::RecreateExpiredSessions,
        Mutation::LeaderCountsSelfBeforeDurable,
        Mutation::FollowerAcksBeforeDurable,
        Mutation::TwoConfChangesInFlight,
        Mutation::ConfigOnAppend,
        Mutation::CampaignWithUnappliedConfig,
        Mutation::LearnerVoteCounts,
    ];
}
