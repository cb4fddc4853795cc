//! Messages Raft peers exchange. Client traffic is not here: it enters through
//! [`crate::server::KvServer::handle_client`].

use serde::{Deserialize, Serialize};

use crate::snapshot::SnapshotMeta;
use crate::types::{Entry, Index, NodeId, Term};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub from: NodeId,
    pub to: NodeId,
    pub msg: Message,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// `term` is the term the sender *would* campaign in; receivers do not adopt it.
    PreVote {
        term: Term,
        last_log_index: Index,
        last_log_term: Term,
    },
    /// Granted responses echo the requested term; rejections carry the responder's term.
    PreVoteResponse {
        term: Term,
        granted: bool,
    },
    RequestVote {
        term: Term,
        last_log_index: Index,
        last_log_term: Term,
        /// The candidate campaigns because the leader asked it to (`TimeoutNow`): voters skip
        /// the vote lease (see [`crate::transfer`]).
        transfer: bool,
    },
    RequestVoteResponse {
        term: Term,
        granted: bool,
    },
    AppendEntries {
        term: Term,
        prev_log_index: Index,
        prev_log_term: Term,
        #[serde(deserialize_with = "crate::validate::deserialize_entries")]
        entries: Vec<Entry>,
        leader_commit: Index,
    },
    AppendEntriesResponse {
        term: Term,
        result: AppendResult,
    },
    /// Carries `min(follower match, leader commit)`, so a follower never commits past what it
    /// is known to share with the leader.
    ///
    /// `ctx` numbers the leader's confirmation round (see [`crate::read`]); the response echoes
    /// it, so one acknowledgement confirms every read queued up to that round.
    Heartbeat {
        term: Term,
        commit: Index,
        ctx: u64,
    },
    HeartbeatResponse {
        term: Term,
        ctx: u64,
    },
    /// One chunk of the leader's snapshot, for a follower that needs entries the leader has
    /// compacted away. `data` holds bytes `[offset, offset + data.len())` of the encoded state;
    /// `done` marks the last chunk. Chunks travel one at a time per follower.
    InstallSnapshot {
        term: Term,
        meta: SnapshotMeta,
        offset: u64,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        done: bool,
    },
    /// Answer to a chunk of the snapshot ending at `snapshot_index`.
    InstallSnapshotResponse {
        term: Term,
        snapshot_index: Index,
        result: SnapshotResult,
    },
    /// A follower asks the leader for a read index for one of its reads (`ctx` is the
    /// follower's own number for it).
    ReadIndex {
        term: Term,
        ctx: u64,
    },
    /// The leader's answer: the index the follower must apply before it answers the read, or
    /// None when the leader could not confirm it.
    ReadIndexResponse {
        term: Term,
        ctx: u64,
        index: Option<Index>,
    },
    /// A leader handing over asks its caught-up target to campaign at once, skipping Pre-Vote
    /// (thesis §3.10).
    TimeoutNow {
        term: Term,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotResult {
    /// The transfer is not complete: send from this byte offset next. Also the answer to a
    /// lost, duplicated or reordered chunk, which is how a transfer resumes where it stopped.
    Continue { next_offset: u64 },
    /// The follower installed the snapshot (or already had everything it covers): its log
    /// matches the leader's up to and including `match_index`.
    Done { match_index: Index },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppendResult {
    /// The follower's log matches the leader's up to and including `match_index`.
    Success { match_index: Index },
    /// The consistency check failed at `rejected_prev`. The hints let the leader skip a whole
    /// conflicting term per round trip instead of one index (thesis §5.3 optimization):
    /// `conflict_term` is the follower's term at `rejected_prev` (None when its log is shorter)
    /// and `hint_index` the first index the follower holds of that term (or its last index + 1).
    Reject {
        rejected_prev: Index,
        conflict_term: Option<Term>,
        hint_index: Index,
    },
}

impl Message {
    pub fn term(&self) -> Term {
        match self {
            Message::PreVote { term, .. }
            | Message::PreVoteResponse { term, .. }
            | Message::RequestVote { term, .. }
            | Message::RequestVoteResponse { term, .. }
            | Message::AppendEntries { term, .. }
            | Message::AppendEntriesResponse { term, .. }
            | Message::Heartbeat { term, .. }
            | Message::HeartbeatResponse { term, .. }
            | Message::InstallSnapshot { term, .. }
            | Message::InstallSnapshotResponse { term, .. }
            | Message::ReadIndex { term, .. }
            | Message::ReadIndexResponse { term, .. }
            | Message::TimeoutNow { term } => *term,
        }
    }

    /// The term field, for tools that forge messages (the simulator's hostile peer).
    pub fn term_mut(&mut self) -> &mut Term {
        match self {
            Message::PreVote { term, .. }
            | Message::PreVoteResponse { term, .. }
            | Message::RequestVote { term, .. }
            | Message::RequestVoteResponse { term, .. }
            | Message::AppendEntries { term, .. }
            | Message::AppendEntriesResponse { term, .. }
            | Message::Heartbeat { term, .. }
            | Message::HeartbeatResponse { term, .. }
            | Message::InstallSnapshot { term, .. }
            | Message::InstallSnapshotResponse { term, .. }
            | Message::ReadIndex { term, .. }
            | Message::ReadIndexResponse { term, .. }
            | Message::TimeoutNow { term } => term,
        }
    }

    /// Short stable name for traces, metrics and the playground's colour legend.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::PreVote { .. } => "PreVote",
            Message::PreVoteResponse { .. } => "PreVoteResp",
            Message::RequestVote { .. } => "Vote",
            Message::RequestVoteResponse { .. } => "VoteResp",
            Message::AppendEntries { .. } => "Append",
            Message::AppendEntriesResponse { .. } => "AppendResp",
            Message::Heartbeat { .. } => "Heartbeat",
            Message::HeartbeatResponse { .. } => "HeartbeatResp",
            Message::InstallSnapshot { .. } => "Snapshot",
            Message::InstallSnapshotResponse { .. } => "SnapshotResp",
            Message::ReadIndex { .. } => "ReadIndex",
            Message::ReadIndexResponse { .. } => "ReadIndexResp",
            Message::TimeoutNow { .. } => "TimeoutNow",
        }
    }

    /// One-line human summary of the fields, used in traces.
    pub fn summary(&self) -> String {
        match self {
            Message::PreVote {
                term,
                last_log_index,
                last_log_term,
            }
            | Message::RequestVote {
                term,
                last_log_index,
                last_log_term,
                transfer: false,
            } => format!("term={term} last={last_log_index}@{last_log_term}"),
            Message::RequestVote {
                term,
                last_log_index,
                last_log_term,
                transfer: true,
            } => format!("term={term} last={last_log_index}@{last_log_term} transfer"),
            Message::TimeoutNow { term } => format!("term={term}"),
            Message::PreVoteResponse { term, granted }
            | Message::RequestVoteResponse { term, granted } => {
                format!("term={term} granted={granted}")
            }
            Message::AppendEntries {
                term,
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
            } => {
                let span = match (entries.first(), entries.last()) {
                    (Some(f), Some(l)) => format!(" entries={}..={}", f.index, l.index),
                    _ => String::new(),
                };
                format!(
                    "term={term} prev={prev_log_index}@{prev_log_term}{span} commit={leader_commit}"
                )
            }
            Message::AppendEntriesResponse { term, result } => match result {
                AppendResult::Success { match_index } => {
                    format!("term={term} ok match={match_index}")
                }
                AppendResult::Reject {
                    rejected_prev,
                    conflict_term,
                    hint_index,
                } => {
                    let ct = conflict_term.map_or("-".to_string(), |t| t.to_string());
                    format!(
                        "term={term} reject prev={rejected_prev} conflict_term={ct} hint={hint_index}"
                    )
                }
            },
            Message::Heartbeat { term, commit, ctx } => {
                format!("term={term} commit={commit} round={ctx}")
            }
            Message::HeartbeatResponse { term, ctx } => format!("term={term} round={ctx}"),
            Message::ReadIndex { term, ctx } => format!("term={term} ctx={ctx}"),
            Message::ReadIndexResponse { term, ctx, index } => match index {
                Some(i) => format!("term={term} ctx={ctx} index={i}"),
                None => format!("term={term} ctx={ctx} refused"),
            },
            Message::InstallSnapshot {
                term,
                meta,
                offset,
                data,
                done,
            } => {
                let last = if *done { " last" } else { "" };
                format!(
                    "term={term} snap={}@{} bytes={}..{}{last}",
                    meta.last_index,
                    meta.last_term,
                    offset,
                    offset.saturating_add(data.len() as u64)
                )
            }
            Message::InstallSnapshotResponse {
                term,
                snapshot_index,
                result,
            } => match result {
                SnapshotResult::Continue { next_offset } => {
                    format!("term={term} snap={snapshot_index} next_offset={next_offset}")
                }
                SnapshotResult::Done { match_index } => {
                    format!("term={term} snap={snapshot_index} done match={match_index}")
                }
            },
        }
    }
}
