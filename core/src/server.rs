//! A Raft node with the KV state machine on top: the unit both executors run.
//!
//! It turns client requests into proposals, applies committed entries, and answers each client
//! once its entry is applied (or tells it the outcome became unknown when leadership is lost).

use std::collections::BTreeMap;

use crate::config::Config;
use crate::kv::{ApplyOutcome, ClientError, ClientReply, ClientRequest, KvStore};
use crate::message::Envelope;
use crate::node::{Persisted, RaftNode};
use crate::ready::{Applied, Ready};
use crate::replication::ProposeError;
use crate::snapshot::Snapshot;
use crate::types::{EntryPayload, Index, NodeId, Role, Term};

/// A snapshot whose bytes are not the state machine it claims to be.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot at index {index} does not decode: {reason}")]
    Undecodable { index: Index, reason: String },
    #[error("snapshot claims index {claimed} but its state is at index {actual}")]
    IndexMismatch { claimed: Index, actual: Index },
}

/// Decodes a snapshot's state machine, refusing trailing bytes and a state at another index.
pub fn decode_snapshot(s: &Snapshot) -> Result<KvStore, SnapshotError> {
    let index = s.meta.last_index;
    let (kv, rest) =
        postcard::take_from_bytes::<KvStore>(&s.data).map_err(|e| SnapshotError::Undecodable {
            index,
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(SnapshotError::Undecodable {
            index,
            reason: format!("{} trailing bytes", rest.len()),
        });
    }
    if kv.applied_index() != index {
        return Err(SnapshotError::IndexMismatch {
            claimed: index,
            actual: kv.applied_index(),
        });
    }
    Ok(kv)
}

/// Upper bound on requests waiting for their entry to apply; more are refused as Busy.
pub const MAX_PENDING_REQUESTS: usize = 100_000;

#[derive(Clone, Debug)]
struct Pending {
    term: Term,
    client_id: u64,
    seq: u64,
}

#[derive(Clone, Debug)]
pub struct KvServer {
    raft: RaftNode,
    kv: KvStore,
    /// Proposed requests by log index, answered when that index applies.
    pending: BTreeMap<Index, Pending>,
    replies: Vec<ClientReply>,
}

impl KvServer {
    pub fn new(
        id: NodeId,
        voters: impl IntoIterator<Item = NodeId>,
        config: Config,
        persisted: Persisted,
        seed: u64,
    ) -> Self {
        match Self::try_new(id, voters, config, persisted, seed) {
            Ok(server) => server,
            Err(e) => panic!("node {id} cannot start: {e}"),
        }
    }

    /// Starts (or restarts) a node: the state machine is the persisted snapshot's (if any) and
    /// the log entries after it are applied again as they commit. Fails, instead of starting on
    /// a state it cannot trust, when the snapshot does not decode.
    pub fn try_new(
        id: NodeId,
        voters: impl IntoIterator<Item = NodeId>,
        config: Config,
        persisted: Persisted,
        seed: u64,
    ) -> Result<Self, SnapshotError> {
        let kv = match &persisted.snapshot {
            Some(s) => decode_snapshot(s)?,
            None => KvStore::default(),
        };
        Ok(KvServer {
            raft: RaftNode::new(id, voters, config, persisted, seed),
            kv,
            pending: BTreeMap::new(),
            replies: Vec::new(),
        })
    }

    pub fn raft(&self) -> &RaftNode {
        &self.raft
    }

    pub fn kv(&self) -> &KvStore {
        &self.kv
    }

    pub fn tick(&mut self) {
        self.raft.tick();
    }

    /// The executor reports the batch `persist_id` (and all before it) durable; see
    /// [`RaftNode::on_persisted`]. Take the next `Ready` afterwards: entries may have committed.
    pub fn on_persisted(&mut self, persist_id: u64) {
        self.raft.on_persisted(persist_id);
    }

    pub fn step(&mut self, env: Envelope) {
        self.raft.step(env);
        self.install_received_snapshot();
    }

    /// Validates a snapshot the node finished receiving and swaps it in for the state machine.
    /// Undecodable bytes are refused (a protocol violation), never a panic.
    fn install_received_snapshot(&mut self) {
        let Some((from, snapshot)) = self.raft.take_received_snapshot() else {
            return;
        };
        match decode_snapshot(&snapshot) {
            Ok(kv) => {
                if self.raft.install_snapshot(from, snapshot) {
                    self.kv = kv;
                }
            }
            Err(e) => self.raft.refuse_snapshot(from, e.to_string()),
        }
    }

    /// Snapshots the state machine and compacts the log once `snapshot_threshold` entries
    /// were applied since the last snapshot. Returns the batch that saves it.
    fn maybe_snapshot(&mut self) -> Option<Ready> {
        let threshold = self.raft.config().snapshot_threshold;
        let applied = self.raft.applied_index();
        if threshold == 0 || applied - self.raft.snapshot_index() < threshold {
            return None;
        }
        assert_eq!(
            self.kv.applied_index(),
            applied,
            "state machine and raft disagree on the applied index"
        );
        // Encoding an in-memory map into a Vec cannot fail short of running out of memory; if
        // it ever did, skipping this snapshot only delays compaction.
        let data = postcard::to_allocvec(&self.kv).ok()?;
        self.raft.compact(applied, data);
        Some(self.raft.take_ready())
    }

    /// Accepts a client request. The reply comes in a later `Ready` (possibly the very next).
    pub fn handle_client(&mut self, req: ClientRequest) {
        let outcome = self.admit(&req);
        if let Err(e) = outcome {
            self.reply(req.client_id, req.seq, Err(e));
        }
    }

    fn admit(&mut self, req: &ClientRequest) -> Result<(), ClientError> {
        req.op.validate()?;
        if !self.raft.is_leader() {
            return Err(ClientError::NotLeader {
                leader_hint: self.raft.leader(),
            });
        }
        match self.kv.cached(req.client_id, req.seq) {
            Some(ApplyOutcome::Duplicate(result)) => {
                self.reply(req.client_id, req.seq, Ok(result));
                return Ok(());
            }
            Some(_) => return Err(ClientError::Stale),
            None => {}
        }
        if self.pending.len() >= MAX_PENDING_REQUESTS {
            return Err(ClientError::Busy {
                uncommitted: self.pending.len() as u64,
            });
        }
        let index = self
            .raft
            .propose(EntryPayload::Command(req.clone()))
            .map_err(|e| match e {
                ProposeError::NotLeader { leader_hint } => ClientError::NotLeader { leader_hint },
                ProposeError::Busy { uncommitted } => ClientError::Busy { uncommitted },
            })?;
        self.pending.insert(
            index,
            Pending {
                term: self.raft.term(),
                client_id: req.client_id,
                seq: req.seq,
            },
        );
        Ok(())
    }

    fn reply(
        &mut self,
        client_id: u64,
        seq: u64,
        outcome: Result<crate::kv::KvResult, ClientError>,
    ) {
        self.replies.push(ClientReply {
            client_id,
            seq,
            outcome,
        });
    }

    /// Collects the step's effects, applying newly committed entries to the state machine.
    pub fn take_ready(&mut self) -> Ready {
        let mut ready = self.raft.take_ready();
        for entry in self.raft.take_committed() {
            let (request, result) = match &entry.payload {
                EntryPayload::Noop => {
                    self.kv.apply_noop(entry.index);
                    (None, None)
                }
                EntryPayload::Command(req) => {
                    let result = match self.kv.apply(entry.index, req) {
                        ApplyOutcome::Applied(r) => Some(r),
                        ApplyOutcome::Duplicate(_) | ApplyOutcome::Stale => None,
                    };
                    (Some(req.clone()), result)
                }
            };
            self.answer_applied(entry.index, entry.term, request.as_ref());
            ready.applied.push(Applied {
                index: entry.index,
                term: entry.term,
                request,
                result,
            });
        }
        if self.raft.role() != Role::Leader && !self.pending.is_empty() {
            // Proposed, not yet applied, and no longer ours to finish: the entries may still
            // commit under the next leader, so the outcome is unknown, not failed.
            for (_, p) in std::mem::take(&mut self.pending) {
                self.reply(p.client_id, p.seq, Err(ClientError::LeadershipLost));
            }
        }
        if let Some(compaction) = self.maybe_snapshot() {
            ready.merge(compaction);
        }
        ready.replies = std::mem::take(&mut self.replies);
        ready
    }

    fn answer_applied(&mut self, index: Index, term: Term, request: Option<&ClientRequest>) {
        let Some(p) = self.pending.remove(&index) else {
            return;
        };
        let ours =
            p.term == term && request.is_some_and(|r| r.client_id == p.client_id && r.seq == p.seq);
        let outcome = if ours {
            match self.kv.cached(p.client_id, p.seq) {
                Some(ApplyOutcome::Duplicate(result)) => Ok(result),
                _ => Err(ClientError::Stale),
            }
        } else {
            Err(ClientError::LeadershipLost)
        };
        self.reply(p.client_id, p.seq, outcome);
    }
}
