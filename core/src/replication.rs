//! Log replication: proposals, appends with the consistency check, fast conflict backtracking,
//! pipelining, heartbeats and the commit rule.

use crate::message::{AppendResult, Message};
use crate::mutation::Mutation;
use crate::node::{invariant, RaftNode};
use crate::progress::ProgressState;
use crate::ready::{NodeEvent, PersistOp};
use crate::types::{Entry, EntryPayload, Index, NodeId, Role};

/// Why a proposal was refused. Definite: nothing was appended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader { leader_hint: Option<NodeId> },
    #[error("too many uncommitted entries ({uncommitted}, {uncommitted_bytes} bytes)")]
    Busy {
        uncommitted: u64,
        uncommitted_bytes: u64,
    },
    #[error("leadership is being transferred to node {to}")]
    TransferInProgress { to: NodeId },
}

impl RaftNode {
    /// Appends a command to the leader's log; followers receive it at the next `take_ready`.
    /// Returns the index the entry will commit at, if it commits.
    pub fn propose(&mut self, payload: EntryPayload) -> Result<Index, ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader_hint: self.leader,
            });
        }
        if let Some(to) = self.transfer_target() {
            return Err(ProposeError::TransferInProgress { to });
        }
        let entry = Entry {
            term: self.term,
            index: self.log.last_index() + 1,
            payload,
        };
        let uncommitted = self.log.last_index() - self.commit;
        let bytes = self.uncommitted_bytes;
        let over_bytes = bytes > 0
            && bytes.saturating_add(entry.size_hint() as u64) > self.config.max_uncommitted_bytes;
        if uncommitted >= self.config.max_uncommitted_entries || over_bytes {
            return Err(ProposeError::Busy {
                uncommitted,
                uncommitted_bytes: bytes,
            });
        }
        self.uncommitted_bytes = bytes + entry.size_hint() as u64;
        let index = entry.index;
        self.log.append(entry.clone());
        self.on_appended(std::slice::from_ref(&entry));
        match self.ready.persist.last_mut() {
            Some(PersistOp::Append(batch)) => batch.push(entry),
            _ => self.persist(PersistOp::Append(vec![entry])),
        }
        self.pending_broadcast = true;
        Ok(index)
    }

    pub(crate) fn broadcast_append(&mut self) {
        for peer in self.peers() {
            self.send_append(peer);
        }
    }

    /// Sends as many appends as the follower's window allows. In Probe one append goes out even
    /// without new entries: it is how the leader finds where the follower's log diverges.
    pub(crate) fn send_append(&mut self, peer: NodeId) {
        let max_inflight = self.config.max_inflight_msgs;
        loop {
            let Some(pr) = self.progress.get(&peer) else {
                return;
            };
            if pr.state == ProgressState::Snapshot {
                self.send_snapshot_chunk(peer);
                return;
            }
            if pr.is_paused(max_inflight) {
                return;
            }
            let next = pr.next_index;
            let has_entries = next <= self.log.last_index();
            if !has_entries && pr.state == ProgressState::Replicate {
                return;
            }
            let prev = next - 1;
            let Some(prev_term) = self.log.term(prev) else {
                // Compacted away: only the snapshot that replaced it can catch this peer up.
                invariant!(
                    self,
                    prev < self.log.snapshot_index(),
                    "no term for prev index {prev} of peer {peer}"
                );
                self.send_snapshot_chunk(peer);
                return;
            };
            let entries = self.batch_from(next);
            let last = entries.last().map_or(prev, |e| e.index);
            let carried = !entries.is_empty();
            let msg = Message::AppendEntries {
                term: self.term,
                prev_log_index: prev,
                prev_log_term: prev_term,
                entries,
                leader_commit: self.commit,
            };
            self.send(peer, msg);
            let Some(pr) = self.progress.get_mut(&peer) else {
                return;
            };
            pr.on_sent(last, carried);
            if pr.state == ProgressState::Probe || !carried {
                return;
            }
        }
    }

    fn batch_from(&self, next: Index) -> Vec<Entry> {
        let mut bytes = 0;
        let mut out = Vec::new();
        for e in self.log.slice(next, self.log.last_index()) {
            if !out.is_empty()
                && (out.len() >= self.config.max_entries_per_msg
                    || bytes + e.size_hint() > self.config.max_bytes_per_msg)
            {
                break;
            }
            bytes += e.size_hint();
            out.push(e.clone());
        }
        out
    }

    /// Ages the outstanding appends of every follower; see [`Progress::tick_stalled`].
    pub(crate) fn age_outstanding_appends(&mut self) {
        for pr in self.progress.values_mut() {
            pr.tick_stalled();
        }
    }

    /// A periodic heartbeat is also a confirmation round: its acknowledgements renew the
    /// leader's lease (see [`crate::read`]).
    pub(crate) fn broadcast_heartbeat(&mut self) {
        let seq = self.open_round(Vec::new());
        self.send_heartbeats(seq);
    }

    /// Sends every follower a heartbeat of round `ctx`, which it echoes in its response.
    pub(crate) fn send_heartbeats(&mut self, ctx: u64) {
        for peer in self.peers() {
            let matched = self.progress.get(&peer).map_or(0, |p| p.match_index);
            let commit = self.commit.min(matched);
            let term = self.term;
            self.send(peer, Message::Heartbeat { term, commit, ctx });
        }
    }

    pub(crate) fn quorum_recently_active(&mut self) -> bool {
        let me = self.id;
        let progress = &self.progress;
        let active = self
            .membership
            .has_quorum(|id| id == me || progress.get(&id).is_some_and(|p| p.recent_active));
        for pr in self.progress.values_mut() {
            pr.recent_active = false;
        }
        active
    }

    pub(crate) fn handle_append(
        &mut self,
        from: NodeId,
        prev: Index,
        prev_term: u64,
        entries: Vec<Entry>,
        leader_commit: Index,
    ) {
        if self.role != Role::Follower {
            self.become_follower(self.term, Some(from));
        }
        self.leader = Some(from);
        self.election_elapsed = 0;
        self.leader_commit = self.leader_commit.max(leader_commit);
        let term = self.term;

        if prev < self.commit {
            // Everything up to our commit is known to match any leader's log (leader
            // completeness); answer with what we have so the leader can move on.
            let match_index = self.commit;
            self.send(
                from,
                Message::AppendEntriesResponse {
                    term,
                    result: AppendResult::Success { match_index },
                },
            );
            return;
        }
        if self.log.term(prev) != Some(prev_term) {
            let (conflict_term, hint_index) = match self.log.term(prev) {
                None => (None, self.log.last_index() + 1),
                Some(t) => (
                    Some(t),
                    self.log.first_index_of_term_at(prev, self.commit + 1),
                ),
            };
            self.send(
                from,
                Message::AppendEntriesResponse {
                    term,
                    result: AppendResult::Reject {
                        rejected_prev: prev,
                        conflict_term,
                        hint_index,
                    },
                },
            );
            return;
        }
        if let Some(bad) = entries.iter().enumerate().find(|(i, e)| {
            let before = if *i == 0 {
                prev_term
            } else {
                entries[i - 1].term
            };
            e.index != prev + 1 + *i as u64 || e.term < before || e.term > term
        }) {
            let detail = format!("append entries not contiguous at position {}", bad.0);
            self.emit(NodeEvent::ProtocolViolation { from, detail });
            return;
        }
        let match_index = prev + entries.len() as u64;
        let mut new_entries = Vec::new();
        for e in entries {
            match self.log.term(e.index) {
                Some(t) if t == e.term => continue,
                Some(_) => {
                    if e.index <= self.commit {
                        let detail = format!(
                            "asked to overwrite committed entry {} (commit {})",
                            e.index, self.commit
                        );
                        self.emit(NodeEvent::ProtocolViolation { from, detail });
                        return;
                    }
                    self.truncate_log_from(e.index);
                }
                None => {}
            }
            self.log.append(e.clone());
            new_entries.push(e);
        }
        if !new_entries.is_empty() {
            self.on_appended(&new_entries);
            self.persist(PersistOp::Append(new_entries));
        }
        self.commit_to(leader_commit.min(match_index));
        self.send(
            from,
            Message::AppendEntriesResponse {
                term,
                result: AppendResult::Success { match_index },
            },
        );
    }

    /// A follower confirmed its log matches ours up to `match_index` (after an append or a
    /// snapshot install): maybe commit, then keep its pipeline full. Followers learn a new
    /// commit index with the next append or heartbeat.
    pub(crate) fn on_follower_matched(&mut self, from: NodeId, match_index: Index) {
        if match_index > self.log.last_index() {
            let detail = format!("acknowledged index {match_index} beyond our log");
            self.emit(NodeEvent::ProtocolViolation { from, detail });
            return;
        }
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        if pr.on_success(match_index) {
            self.maybe_commit();
        }
        self.send_append(from);
        if self.transfer_target() == Some(from) {
            self.maybe_send_timeout_now();
        }
    }

    pub(crate) fn handle_append_response(&mut self, from: NodeId, result: AppendResult) {
        if self.role != Role::Leader {
            return;
        }
        let last_index = self.log.last_index();
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        match result {
            AppendResult::Success { match_index } => self.on_follower_matched(from, match_index),
            AppendResult::Reject {
                rejected_prev,
                conflict_term,
                hint_index,
            } => {
                let stale = match pr.state {
                    // Equal is not stale: an append sent right after the acknowledged one was
                    // refused (it overtook its predecessor), so the entries after it are missing.
                    ProgressState::Replicate => rejected_prev < pr.match_index,
                    ProgressState::Probe => rejected_prev + 1 != pr.next_index,
                    // Sent before the transfer started; the transfer's answer decides.
                    ProgressState::Snapshot => true,
                };
                if stale {
                    return;
                }
                let next = match conflict_term {
                    Some(t) => self
                        .log
                        .last_index_of_term(t, rejected_prev)
                        .map_or(hint_index, |i| i + 1),
                    None => hint_index,
                };
                let Some(pr) = self.progress.get_mut(&from) else {
                    return;
                };
                // A reject can only move the leader back: never past its own log or the
                // follower's acknowledged prefix, whatever the hints say.
                pr.become_probe(next.min(rejected_prev).min(last_index + 1).max(1));
                self.send_append(from);
            }
        }
    }

    pub(crate) fn handle_heartbeat(&mut self, from: NodeId, commit: Index, ctx: u64) {
        if self.role != Role::Follower {
            self.become_follower(self.term, Some(from));
        }
        self.leader = Some(from);
        self.election_elapsed = 0;
        self.leader_commit = self.leader_commit.max(commit);
        // The leader sends min(our match, its commit), so this never passes what we share.
        self.commit_to(commit.min(self.log.last_index()));
        let term = self.term;
        self.send(from, Message::HeartbeatResponse { term, ctx });
    }

    pub(crate) fn handle_heartbeat_response(&mut self, from: NodeId, ctx: u64) {
        if self.role != Role::Leader {
            return;
        }
        self.on_heartbeat_ack(from, ctx);
        let last_index = self.log.last_index();
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        let stalled = pr.stalled_ticks >= self.config.election_ticks;
        pr.on_heartbeat_response();
        let replicate = pr.state == ProgressState::Replicate;
        let all_acked_but_behind =
            pr.inflight_count() == 0 && pr.match_index < last_index && pr.next_index > last_index;
        if replicate && (stalled || all_acked_but_behind) {
            // The follower is alive (it answers heartbeats) but lacks entries we believed sent:
            // appends were lost, in bulk if it went unanswered for an election timeout. Probe
            // again from what it acknowledged rather than freeing the window one slot a beat.
            let next = pr.match_index + 1;
            pr.become_probe(next);
        }
        if pr.match_index < last_index {
            self.send_append(from);
        } else if self.transfer_target() == Some(from) {
            self.maybe_send_timeout_now();
        }
    }

    /// The commit rule (§5.3, §5.4.2): the highest index stored on a majority commits, but only
    /// if it belongs to the current term; earlier entries then commit with it.
    pub(crate) fn maybe_commit(&mut self) -> bool {
        // Our own copy counts only once it is on our disk: with appends sent before the
        // leader's fsync, followers can be ahead of it.
        let own = if self
            .config
            .has_mutation(Mutation::LeaderCountsSelfBeforeDurable)
        {
            self.log.last_index()
        } else {
            self.durable_index
        };
        let candidate = self.membership.committed_index(|v| {
            if v == self.id {
                own
            } else {
                self.progress.get(&v).map_or(0, |p| p.match_index)
            }
        });
        if candidate <= self.commit {
            return false;
        }
        let current_term = self.log.term(candidate) == Some(self.term);
        if current_term
            || self
                .config
                .has_mutation(Mutation::CommitPreviousTermByCounting)
        {
            self.commit_to(candidate);
            return true;
        }
        false
    }

    pub(crate) fn commit_to(&mut self, index: Index) {
        if index <= self.commit {
            return;
        }
        invariant!(
            self,
            index <= self.log.last_index(),
            "commit {index} beyond last index"
        );
        let from = self.commit;
        if self.role == Role::Leader {
            let committed: u64 = self
                .log
                .slice(from + 1, index)
                .iter()
                .map(|e| e.size_hint() as u64)
                .sum();
            self.uncommitted_bytes = self.uncommitted_bytes.saturating_sub(committed);
        }
        self.commit = index;
        self.emit(NodeEvent::CommitAdvanced { from, to: index });
    }
}
