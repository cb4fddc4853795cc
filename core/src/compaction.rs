//! Log compaction in the Raft node: taking a snapshot, sending it in chunks to a follower that
//! needs compacted entries, and installing one (Raft §7, thesis chapter 5).
//!
//! The node never looks inside the snapshot bytes: the state machine layer
//! ([`crate::server::KvServer`]) encodes them when it asks to compact, and decodes and validates
//! a received snapshot before it is installed ([`RaftNode::take_received_snapshot`], then
//! [`RaftNode::install_snapshot`] or [`RaftNode::refuse_snapshot`]).

use std::sync::Arc;

use crate::message::{Message, SnapshotResult};
use crate::mutation::Mutation;
use crate::node::{invariant, RaftNode};
use crate::progress::ProgressState;
use crate::ready::{NodeEvent, PersistOp};
use crate::snapshot::{
    chunk, ChunkOutcome, IncomingSnapshot, Snapshot, SnapshotMeta, MAX_SNAPSHOT_CHUNK_BYTES,
};
use crate::types::{Index, NodeId, Role, Term};

/// How many snapshot thresholds of entries the log may hold past its snapshot while compaction
/// waits for a follower being caught up by snapshot.
pub const MAX_POSTPONED_THRESHOLDS: u64 = 4;

impl RaftNode {
    /// Replaces the log up to and including `index` with a snapshot whose state machine bytes
    /// are `data`. `index` must be applied: compacting an entry the state machine has not seen
    /// would lose it. The snapshot is saved before the prefix is dropped (one batch, in order).
    pub fn compact(&mut self, index: Index, data: Vec<u8>) {
        invariant!(
            self,
            index <= self.applied,
            "compacting to {index} beyond the applied index"
        );
        if index <= self.log.snapshot_index() {
            return;
        }
        invariant!(
            self,
            index >= self.membership_index || self.config.has_mutation(Mutation::ConfigOnAppend),
            "compacting to {index} before the configuration change at {}",
            self.membership_index
        );
        let Some(term) = self.log.term(index) else {
            invariant!(self, false, "no term for applied index {index}");
            return;
        };
        let snapshot = Snapshot {
            meta: SnapshotMeta {
                last_index: index,
                last_term: term,
                membership: (*self.membership).clone(),
            },
            data,
        };
        let bytes = snapshot.data.len() as u64;
        // Shared, not copied: the executor writes the very bytes the leader will send.
        let snapshot = Arc::new(snapshot);
        self.persist(PersistOp::SaveSnapshot(Arc::clone(&snapshot)));
        self.persist(PersistOp::CompactLog(index));
        self.log.compact_to(index, term);
        self.snapshot = Some(snapshot);
        self.emit(NodeEvent::SnapshotTaken { index, term, bytes });
    }

    /// Whether compacting the log to `index` now would cost a follower being caught up by
    /// snapshot a second snapshot: it continues from its snapshot's index by appends, so the
    /// entries after that index must outlive its transfer and the log catch-up that follows.
    /// Under load a large transfer lasts longer than the leader takes to reach its next
    /// snapshot, and without this the follower was sent snapshot after snapshot (seen
    /// natively: a node added to a 100 MB cluster under writes installed three in a row).
    /// Compaction waits at most until the log holds [`MAX_POSTPONED_THRESHOLDS`] thresholds
    /// of entries past the last snapshot, so a follower that died mid-transfer cannot make the
    /// log grow without bound.
    pub fn compaction_would_strand_a_follower(&mut self, index: Index) -> bool {
        if self.role != Role::Leader {
            return false;
        }
        let past = index.saturating_sub(self.log.snapshot_index());
        let cap = self
            .config
            .snapshot_threshold
            .saturating_mul(MAX_POSTPONED_THRESHOLDS);
        if past >= cap {
            return false;
        }
        let (me, last) = (self.id, self.log.last_index());
        let mut strands = false;
        for (&id, pr) in self.progress.iter_mut() {
            if id == me {
                continue;
            }
            if pr.state == ProgressState::Snapshot {
                strands = true;
                continue;
            }
            if pr.pending_snapshot == 0 {
                continue;
            }
            // Its backlog: what the leader's log held when the transfer was first seen done.
            if pr.catch_up_to == 0 {
                pr.catch_up_to = last;
            }
            if pr.match_index >= pr.catch_up_to {
                // Through its backlog: an ordinary follower again, whose lag is the window.
                pr.pending_snapshot = 0;
                pr.catch_up_to = 0;
            } else if pr.match_index < index {
                strands = true;
            }
        }
        strands
    }

    /// Sends `peer` the next chunks of a snapshot, starting a transfer of the latest snapshot
    /// if none is under way, as many as the window of chunks in flight allows.
    pub(crate) fn send_snapshot_chunk(&mut self, peer: NodeId) {
        let Some(latest) = self.snapshot.clone() else {
            invariant!(
                self,
                false,
                "peer {peer} needs a snapshot but there is none"
            );
            return;
        };
        let max = self
            .config
            .snapshot_chunk_bytes
            .clamp(1, MAX_SNAPSHOT_CHUNK_BYTES);
        let term = self.term;
        let Some(pr) = self.progress.get_mut(&peer) else {
            return;
        };
        if pr.state != ProgressState::Snapshot || pr.transfer.is_none() {
            pr.become_snapshot(latest);
        }
        let Some(snap) = pr.transfer.clone() else {
            return;
        };
        let window = self.config.max_snapshot_chunks_in_flight.max(1);
        loop {
            let Some(pr) = self.progress.get_mut(&peer) else {
                return;
            };
            if !pr.snapshot_window_open(max as u64, window) {
                return;
            }
            let offset = pr.snapshot_offset;
            let (data, done) = chunk(&snap.data, offset, max);
            let bytes = data.len() as u64;
            pr.snapshot_offset = offset + bytes;
            pr.snapshot_done_sent = done;
            let msg = Message::InstallSnapshot {
                term,
                meta: snap.meta.clone(),
                offset,
                data: data.to_vec(),
                done,
            };
            self.send(peer, msg);
            self.emit(NodeEvent::SnapshotChunkSent {
                to: peer,
                index: snap.meta.last_index,
                offset,
                bytes,
                done,
            });
        }
    }

    /// A follower receives one chunk from the leader of `term` (already adopted by `step`).
    pub(crate) fn handle_snapshot_chunk(
        &mut self,
        from: NodeId,
        term: Term,
        meta: SnapshotMeta,
        offset: u64,
        data: Vec<u8>,
        done: bool,
    ) {
        if self.role != Role::Follower {
            self.become_follower(self.term, Some(from));
        }
        self.leader = Some(from);
        self.election_elapsed = 0;
        if let Some(detail) = self.meta_problem(&meta, term) {
            self.incoming_snapshot = None;
            self.emit(NodeEvent::ProtocolViolation { from, detail });
            return;
        }
        let index = meta.last_index;
        let stale_ok = self.config.has_mutation(Mutation::InstallStaleSnapshot)
            && index >= self.log.snapshot_index();
        if index <= self.commit && !stale_ok {
            // We already hold everything it covers (committed entries are the same on every
            // node): say so, and the leader moves on to plain appends.
            self.incoming_snapshot = None;
            self.reply_snapshot(
                from,
                index,
                SnapshotResult::Done {
                    match_index: self.commit,
                },
            );
            return;
        }
        if let Some((_, _, total)) = self.installing.filter(|&(t, i, _)| t == term && i == index) {
            self.reply_snapshot(from, index, SnapshotResult::Continue { next_offset: total });
            return;
        }
        let len = data.len() as u64;
        match IncomingSnapshot::receive(
            &mut self.incoming_snapshot,
            term,
            &meta,
            offset,
            &data,
            done,
        ) {
            ChunkOutcome::Continue { next_offset } => {
                if next_offset == offset.saturating_add(len) {
                    self.emit(NodeEvent::SnapshotChunkReceived {
                        from,
                        index,
                        offset,
                        bytes: len,
                        done: false,
                    });
                }
                self.reply_snapshot(from, index, SnapshotResult::Continue { next_offset });
            }
            ChunkOutcome::Complete(snapshot) => {
                self.emit(NodeEvent::SnapshotChunkReceived {
                    from,
                    index,
                    offset,
                    bytes: len,
                    done: true,
                });
                // Everything arrived: say so now. Decoding and saving a large snapshot takes
                // many heartbeats, which the leader would otherwise read as a stalled transfer.
                let total = snapshot.data.len() as u64;
                self.installing = Some((term, index, total));
                self.reply_snapshot(from, index, SnapshotResult::Continue { next_offset: total });
                self.received_snapshot = Some((from, snapshot));
            }
            ChunkOutcome::Malformed(detail) => {
                self.emit(NodeEvent::ProtocolViolation { from, detail });
            }
        }
    }

    /// Why a snapshot's metadata cannot be right, if it cannot.
    fn meta_problem(&self, meta: &SnapshotMeta, term: Term) -> Option<String> {
        if meta.last_index == 0 || meta.last_term == 0 {
            return Some(format!(
                "snapshot of the empty log ({}@{})",
                meta.last_index, meta.last_term
            ));
        }
        if meta.last_term > term {
            return Some(format!(
                "snapshot ends in term {} after the sender's term {term}",
                meta.last_term
            ));
        }
        if let Err(e) = meta.membership.check_invariants() {
            return Some(format!("snapshot membership {}: {e}", meta.membership));
        }
        None
    }

    fn reply_snapshot(&mut self, to: NodeId, snapshot_index: Index, result: SnapshotResult) {
        let term = self.term;
        self.send(
            to,
            Message::InstallSnapshotResponse {
                term,
                snapshot_index,
                result,
            },
        );
    }

    /// A snapshot received completely, with its sender, for the state machine layer to decode.
    /// It must answer with [`RaftNode::install_snapshot`] or [`RaftNode::refuse_snapshot`].
    pub fn take_received_snapshot(&mut self) -> Option<(NodeId, Snapshot)> {
        self.received_snapshot.take()
    }

    /// Adopts a received snapshot whose state the caller has already decoded and swapped in.
    /// If the log holds the snapshot's last entry (same index and term) the entries after it are
    /// kept, since they may still be the leader's; otherwise the whole log is discarded. The
    /// snapshot is persisted in the same batch as the acknowledgement (effects contract).
    /// Returns false, changing nothing, when the snapshot is not newer than what we applied.
    pub fn install_snapshot(&mut self, from: NodeId, snapshot: Snapshot) -> bool {
        self.installing = None;
        let index = snapshot.meta.last_index;
        let term = snapshot.meta.last_term;
        let stale_ok = self.config.has_mutation(Mutation::InstallStaleSnapshot);
        let matches = self.log.term(index) == Some(term);
        let ours = self.log.snapshot_index();
        if index < ours || (index == ours && !matches) || (index <= self.commit && !stale_ok) {
            self.reply_snapshot(
                from,
                index,
                SnapshotResult::Done {
                    match_index: self.commit,
                },
            );
            return false;
        }
        let kept_entries = if matches {
            self.log.last_index() - index
        } else {
            0
        };
        let snapshot = Arc::new(snapshot);
        self.persist(PersistOp::SaveSnapshot(Arc::clone(&snapshot)));
        // A different entry at the snapshot's index: it and everything after it conflict with
        // the leader (log matching), so the whole log goes.
        let cut = index.max(self.log.snapshot_index() + 1);
        if !matches && self.log.last_index() >= cut {
            self.truncate_log_from(cut);
        }
        self.persist(PersistOp::CompactLog(index));
        self.log.compact_to(index, term);
        self.commit = index;
        self.applied = index;
        if snapshot.meta.membership != *self.membership {
            let membership = snapshot.meta.membership.clone();
            self.switch_to(index, membership);
        } else {
            self.membership_index = index;
        }
        let bytes = snapshot.data.len() as u64;
        self.snapshot = Some(snapshot);
        self.emit(NodeEvent::SnapshotInstalled {
            from,
            index,
            term,
            bytes,
            kept_entries,
        });
        self.reply_snapshot(from, index, SnapshotResult::Done { match_index: index });
        true
    }

    /// Refuses a received snapshot the state machine layer could not decode. Nothing is
    /// acknowledged; the leader's next attempt starts over.
    pub fn refuse_snapshot(&mut self, from: NodeId, detail: String) {
        self.incoming_snapshot = None;
        self.installing = None;
        self.emit(NodeEvent::ProtocolViolation { from, detail });
    }

    /// The leader hears how a follower's transfer goes.
    pub(crate) fn handle_snapshot_response(
        &mut self,
        from: NodeId,
        snapshot_index: Index,
        result: SnapshotResult,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        match result {
            SnapshotResult::Done { match_index } => self.on_follower_matched(from, match_index),
            SnapshotResult::Continue { next_offset } => {
                let current =
                    pr.state == ProgressState::Snapshot && pr.pending_snapshot == snapshot_index;
                if !current {
                    return; // an answer about an earlier transfer
                }
                let len = pr.transfer.as_ref().map_or(0, |s| s.data.len() as u64);
                if next_offset > len {
                    let detail = format!("asked for snapshot offset {next_offset} of {len}");
                    self.emit(NodeEvent::ProtocolViolation { from, detail });
                    return;
                }
                pr.on_snapshot_progress(next_offset);
                self.send_snapshot_chunk(from);
            }
        }
    }
}
