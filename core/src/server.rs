//! A Raft node with the KV state machine on top: the unit both executors run.
//!
//! It turns client requests into proposals, applies committed entries, and answers each client
//! once its entry is applied (or tells it the outcome became unknown when leadership is lost).

use std::collections::BTreeMap;

use crate::config::Config;
use crate::kv::{
    ApplyOutcome, ClientError, ClientReply, ClientRequest, KvOp, KvResult, KvStore, ReadConsistency,
};
use crate::membership::{ConfChange, ConfChangeError, Membership};
use crate::message::Envelope;
use crate::mutation::Mutation;
use crate::node::{Persisted, RaftNode};
use crate::read::{ReadId, ReadResult};
use crate::ready::{Applied, Ready};
use crate::replication::ProposeError;
use crate::snapshot::Snapshot;
use crate::transfer::TransferError;
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

/// A read waiting for its read index, then for the state machine to apply it.
#[derive(Clone, Debug)]
struct PendingRead {
    client_id: u64,
    seq: u64,
    key: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct KvServer {
    raft: RaftNode,
    kv: KvStore,
    /// Proposed requests by log index, answered when that index applies.
    pending: BTreeMap<Index, Pending>,
    /// Reads waiting for the node to confirm them, by id; see [`crate::read`].
    reads: BTreeMap<ReadId, PendingRead>,
    /// Confirmed reads by read index, answered once the state machine reaches it.
    confirmed_reads: BTreeMap<(Index, ReadId), PendingRead>,
    next_read_id: ReadId,
    replies: Vec<ClientReply>,
    /// A snapshot due, for the executor to take.
    snapshot_job: Option<SnapshotJob>,
    /// A snapshot job was handed out and its bytes have not come back yet.
    snapshot_job_out: bool,
    /// A received snapshot waiting to be decoded by the executor.
    install_job: Option<InstallJob>,
    /// See [`KvServer::set_background_jobs`].
    background_jobs: bool,
}

/// A snapshot received completely from `from`, to be decoded off the node loop.
#[derive(Clone, Debug)]
pub struct InstallJob {
    pub from: NodeId,
    pub snapshot: Snapshot,
}

impl InstallJob {
    pub fn decode(&self) -> Result<KvStore, SnapshotError> {
        decode_snapshot(&self.snapshot)
    }
}

/// An immutable copy of the state machine at `index` (an O(1) clone of its persistent maps),
/// to be encoded into snapshot bytes off the node loop.
#[derive(Clone, Debug)]
pub struct SnapshotJob {
    pub index: Index,
    pub state: KvStore,
}

impl SnapshotJob {
    /// The snapshot bytes (what [`decode_snapshot`] reads back). Encoding an in-memory map
    /// cannot fail short of running out of memory; `None` then.
    pub fn encode(&self) -> Option<Vec<u8>> {
        postcard::to_allocvec(&self.state).ok()
    }
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
        let kv = Self::initial_state(&config, &persisted)?;
        Ok(Self::around(
            RaftNode::new(id, voters, config, persisted, seed),
            kv,
        ))
    }

    fn initial_state(config: &Config, persisted: &Persisted) -> Result<KvStore, SnapshotError> {
        match &persisted.snapshot {
            Some(s) => decode_snapshot(s),
            None => Ok(KvStore::with_session_limit(config.session_limit_bytes)),
        }
    }

    fn around(raft: RaftNode, kv: KvStore) -> Self {
        KvServer {
            raft,
            kv,
            pending: BTreeMap::new(),
            reads: BTreeMap::new(),
            confirmed_reads: BTreeMap::new(),
            next_read_id: 0,
            replies: Vec::new(),
            snapshot_job: None,
            snapshot_job_out: false,
            install_job: None,
            background_jobs: false,
        }
    }

    /// Starts (or restarts) a node whose configuration at `membership_index` was `membership`;
    /// see [`RaftNode::with_membership`] (a node joining a running cluster starts this way).
    pub fn try_with_membership(
        id: NodeId,
        membership: Membership,
        membership_index: Index,
        config: Config,
        persisted: Persisted,
        seed: u64,
    ) -> Result<Self, SnapshotError> {
        let kv = Self::initial_state(&config, &persisted)?;
        Ok(Self::around(
            RaftNode::with_membership(id, membership, membership_index, config, persisted, seed),
            kv,
        ))
    }

    pub fn raft(&self) -> &RaftNode {
        &self.raft
    }

    /// The configuration in force (the one the applied log produced).
    pub fn membership(&self) -> &Membership {
        self.raft.membership()
    }

    /// See [`RaftNode::membership_shared`].
    pub fn membership_shared(&self) -> std::sync::Arc<Membership> {
        self.raft.membership_shared()
    }

    /// Proposes a membership change (leader only); see [`RaftNode::propose_conf_change`]. The
    /// change is done when the entry at the returned index is applied.
    pub fn propose_conf_change(&mut self, cc: ConfChange) -> Result<Index, ConfChangeError> {
        self.raft.propose_conf_change(cc)
    }

    pub fn kv(&self) -> &KvStore {
        &self.kv
    }

    pub fn tick(&mut self) {
        self.raft.tick();
    }

    /// Hands leadership to `to` (or the most caught-up voter); see [`crate::transfer`]. Writes
    /// are refused with [`ClientError::TransferInProgress`] until it ends.
    pub fn transfer_leadership(&mut self, to: Option<NodeId>) -> Result<NodeId, TransferError> {
        self.raft.transfer_leadership(to)
    }

    /// See [`RaftNode::force_election_timeout`].
    pub fn force_election_timeout(&mut self) {
        self.raft.force_election_timeout();
    }

    /// The executor reports the batch `persist_id` (and all before it) durable; see
    /// [`RaftNode::on_persisted`]. Take the next `Ready` afterwards: entries may have committed.
    pub fn on_persisted(&mut self, persist_id: u64) {
        self.raft.on_persisted(persist_id);
    }

    /// See [`RaftNode::peer_disconnected`].
    pub fn peer_disconnected(&mut self, peer: NodeId) {
        self.raft.peer_disconnected(peer);
    }

    pub fn step(&mut self, env: Envelope) {
        self.raft.step(env);
        self.install_received_snapshot();
    }

    /// A snapshot the node finished receiving: decoded and swapped in at once, or handed to
    /// the executor as an [`InstallJob`] when jobs run in the background.
    fn install_received_snapshot(&mut self) {
        let Some((from, snapshot)) = self.raft.take_received_snapshot() else {
            return;
        };
        let job = InstallJob { from, snapshot };
        if self.background_jobs {
            self.install_job = Some(job);
        } else {
            let decoded = job.decode();
            self.snapshot_decoded(job, decoded);
        }
    }

    /// A received snapshot to decode, if one is waiting. The executor decodes it
    /// ([`InstallJob::decode`]) off the node loop and reports with
    /// [`KvServer::snapshot_decoded`]; meanwhile the node keeps answering its leader.
    pub fn take_install_job(&mut self) -> Option<InstallJob> {
        self.install_job.take()
    }

    /// The decoded state of a received snapshot: installed (if still newer than what the node
    /// applied meanwhile), or refused as a protocol violation when it did not decode (never a
    /// panic). Take the next `Ready` afterwards: it saves the snapshot and acknowledges it.
    pub fn snapshot_decoded(&mut self, job: InstallJob, decoded: Result<KvStore, SnapshotError>) {
        match decoded {
            Ok(kv) => {
                if self.raft.install_snapshot(job.from, job.snapshot) {
                    self.kv = kv;
                }
            }
            Err(e) => self.raft.refuse_snapshot(job.from, e.to_string()),
        }
    }

    /// Hand snapshot work to the executor ([`KvServer::take_snapshot_job`],
    /// [`KvServer::take_install_job`]) instead of doing it inside `take_ready` and `step`.
    /// Executors that turn this on must run every job they take and report back.
    pub fn set_background_jobs(&mut self, on: bool) {
        self.background_jobs = on;
    }

    /// Once `snapshot_threshold` entries were applied since the last snapshot, hands the
    /// executor an immutable copy of the state machine to encode (see [`SnapshotJob`]); the log
    /// is compacted when it reports the bytes with [`KvServer::snapshot_encoded`]. One job at a
    /// time: no new one starts while one is out.
    fn maybe_snapshot(&mut self) {
        let threshold = self.raft.config().snapshot_threshold;
        let applied = self.raft.applied_index();
        if threshold == 0
            || self.snapshot_job_out
            || applied - self.raft.snapshot_index() < threshold
            || self.raft.compaction_would_strand_a_follower(applied)
        {
            return;
        }
        assert_eq!(
            self.kv.applied_index(),
            applied,
            "state machine and raft disagree on the applied index"
        );
        self.snapshot_job_out = true;
        let job = SnapshotJob {
            index: applied,
            state: self.kv.clone(),
        };
        if self.background_jobs {
            self.snapshot_job = Some(job);
        } else {
            self.snapshot_encoded(job.index, job.encode());
        }
    }

    /// The state machine copy to snapshot, if one is due. The executor encodes it
    /// ([`SnapshotJob::encode`]) wherever it likes (the native node on a background thread, so
    /// the node loop keeps ticking and answering; the simulator at once) and reports the bytes
    /// with [`KvServer::snapshot_encoded`].
    pub fn take_snapshot_job(&mut self) -> Option<SnapshotJob> {
        self.snapshot_job.take()
    }

    /// The bytes of the job for `index`: the node saves the snapshot and compacts its log in
    /// the next `Ready` (snapshot first, then the compaction, in one ordered batch). `None`
    /// (encoding failed) skips this snapshot; only compaction is delayed. A snapshot older than
    /// one installed meanwhile is dropped.
    ///
    /// A configuration applied while the job ran (its index is past the job's) drops the
    /// snapshot too: a snapshot carries the configuration in force, and the one in force now
    /// is not the one at the job's index. The next threshold takes a fresh one.
    pub fn snapshot_encoded(&mut self, index: Index, data: Option<Vec<u8>>) {
        self.snapshot_job_out = false;
        if let Some(data) = data {
            if index > self.raft.snapshot_index()
                && index <= self.raft.applied_index()
                && index >= self.raft.membership_index()
            {
                self.raft.compact(index, data);
            }
        }
    }

    /// Accepts a client request. The reply comes in a later `Ready` (possibly the very next).
    /// A `Get` is a linearizable read: it never enters the log.
    pub fn handle_client(&mut self, req: ClientRequest) {
        if let KvOp::Get { key } = req.op {
            return self.handle_read(req.client_id, req.seq, key, ReadConsistency::Linearizable);
        }
        let outcome = self.admit(&req);
        if let Err(e) = outcome {
            self.reply(req.client_id, req.seq, Err(e));
        }
    }

    /// Accepts a read of `key`; `(client_id, seq)` only tag the reply. Serializable reads are
    /// answered at once from this node's state; the others once the node has confirmed a read
    /// index and applied up to it (see [`crate::read`]).
    pub fn handle_read(
        &mut self,
        client_id: u64,
        seq: u64,
        key: Vec<u8>,
        consistency: ReadConsistency,
    ) {
        if let Err(e) = (KvOp::Get { key: key.clone() }).validate() {
            return self.reply(client_id, seq, Err(e));
        }
        if consistency == ReadConsistency::Serializable {
            let value = self.kv.read(&key);
            return self.reply(client_id, seq, Ok(KvResult::Get(value)));
        }
        self.next_read_id += 1;
        let id = self.next_read_id;
        self.reads.insert(
            id,
            PendingRead {
                client_id,
                seq,
                key,
            },
        );
        self.raft.read_index(id, consistency);
    }

    fn admit(&mut self, req: &ClientRequest) -> Result<(), ClientError> {
        req.op.validate()?;
        if !self.raft.is_leader() {
            return Err(ClientError::NotLeader {
                leader_hint: self.raft.leader(),
            });
        }
        if req.op.is_write() {
            match self.kv.cached(req.client_id, req.seq) {
                Some(ApplyOutcome::Duplicate(result)) => {
                    self.reply(req.client_id, req.seq, Ok(result));
                    return Ok(());
                }
                // The apply-time check is what counts; refusing early only saves a log entry.
                Some(ApplyOutcome::SessionExpired) if !self.recreates_sessions() => {
                    return Err(ClientError::SessionExpired)
                }
                Some(ApplyOutcome::SessionExpired) => {}
                Some(_) => return Err(ClientError::Stale),
                None => {}
            }
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
                ProposeError::Busy { uncommitted, .. } => ClientError::Busy { uncommitted },
                ProposeError::TransferInProgress { to } => ClientError::TransferInProgress { to },
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
                // A configuration change took effect in the node as it was handed out; for the
                // state machine it is a no-op that advances its applied index.
                EntryPayload::Noop | EntryPayload::ConfChange(_) => {
                    self.kv.apply_noop(entry.index);
                    (None, None)
                }
                EntryPayload::Command(req) => {
                    let recreate = self.recreates_sessions();
                    let (result, outcome) = match self.kv.apply_with(entry.index, req, recreate) {
                        ApplyOutcome::Applied(r) => (Some(r.clone()), Ok(r)),
                        ApplyOutcome::Duplicate(r) => (None, Ok(r)),
                        ApplyOutcome::Stale => (None, Err(ClientError::Stale)),
                        ApplyOutcome::SessionExpired => (None, Err(ClientError::SessionExpired)),
                    };
                    self.answer_applied(entry.index, entry.term, Some((req, outcome)));
                    (Some(req.clone()), result)
                }
            };
            if request.is_none() {
                self.answer_applied(entry.index, entry.term, None);
            }
            let conf_change = match entry.payload {
                EntryPayload::ConfChange(cc) => Some(cc),
                _ => None,
            };
            ready.applied.push(Applied {
                index: entry.index,
                term: entry.term,
                request,
                result,
                conf_change,
            });
        }
        if self.raft.role() != Role::Leader && !self.pending.is_empty() {
            // Proposed, not yet applied, and no longer ours to finish: the entries may still
            // commit under the next leader, so the outcome is unknown, not failed.
            for (_, p) in std::mem::take(&mut self.pending) {
                self.reply(p.client_id, p.seq, Err(ClientError::LeadershipLost));
            }
        }
        if self.raft.has_queued_work() {
            // Applying a configuration change may have queued work of its own (the automatic
            // leave of a joint configuration, a leader stepping down): hand it out now.
            ready.merge(self.raft.take_ready());
        }
        let results = self.raft.take_read_results();
        self.answer_reads(results);
        self.maybe_snapshot();
        if !self.background_jobs {
            // The snapshot was encoded at once: its save and compaction join this batch.
            ready.merge(self.raft.take_ready());
        }
        ready.replies = std::mem::take(&mut self.replies);
        ready
    }

    fn recreates_sessions(&self) -> bool {
        self.raft
            .config()
            .has_mutation(Mutation::RecreateExpiredSessions)
    }

    /// Records the fate of reads the node confirmed or failed, then answers every confirmed
    /// read whose index the state machine has reached.
    fn answer_reads(&mut self, results: Vec<ReadResult>) {
        for r in results {
            let Some(p) = self.reads.remove(&r.id) else {
                continue;
            };
            match r.outcome {
                Ok(index) => {
                    self.confirmed_reads.insert((index, r.id), p);
                }
                Err(e) => self.reply(p.client_id, p.seq, Err(e)),
            }
        }
        let applied = self.kv.applied_index();
        while let Some(entry) = self.confirmed_reads.first_entry() {
            if entry.key().0 > applied {
                break;
            }
            let p = entry.remove();
            let value = self.kv.read(&p.key);
            self.reply(p.client_id, p.seq, Ok(KvResult::Get(value)));
        }
    }

    fn answer_applied(
        &mut self,
        index: Index,
        term: Term,
        applied: Option<(&ClientRequest, Result<KvResult, ClientError>)>,
    ) {
        let Some(p) = self.pending.remove(&index) else {
            return;
        };
        let outcome = match applied {
            Some((r, outcome))
                if p.term == term && r.client_id == p.client_id && r.seq == p.seq =>
            {
                outcome
            }
            _ => Err(ClientError::LeadershipLost),
        };
        self.reply(p.client_id, p.seq, outcome);
    }
}
