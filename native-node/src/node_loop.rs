//! The node loop: the one task that owns the [`KvServer`] and executes its `Ready` batches.
//!
//! Each turn it waits for something to do (a durability report from the disk, a peer batch, a
//! client request, the next tick), then drains everything else already queued, up to a bound,
//! and takes ONE `Ready`, executed as `keyval_core::ready` requires:
//!
//! 1. send now: a leader's appends and heartbeats go to the peers' queues at once, so the
//!    followers write in parallel with the leader's own fsync (thesis §10.2.1);
//! 2. persist: the batch's persist ops go to the storage thread without waiting; it writes
//!    every batch queued by the time it is free and fsyncs once (group commit);
//! 3. answer: replies go to the client connections waiting for them (their entries are
//!    committed, i.e. durable on a majority);
//! 4. send after durable: acknowledgements and votes wait, per batch, until the storage thread
//!    reports that batch durable; the report also tells the core (`on_persisted`), which is
//!    how a leader counts its own copy toward the commit quorum.
//!
//! Snapshots are encoded and decoded off the loop ([`crate::snapshot_jobs`]); peer input is
//! bounded in bytes ([`crate::peer_inbox`]) and a turn steps at most
//! [`crate::peer_inbox::MAX_PEER_BYTES_PER_TURN`] of it.
//!
//! The loop never waits for the disk itself, so ticks, heartbeats and acknowledgements keep
//! flowing during an fsync; only when
//! [`crate::storage::worker::MAX_BATCHES_IN_FLIGHT`] batches are outstanding does
//! it wait for the disk before submitting more.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use keyval_core::trace::{Addr, Payload, TraceKind};
use keyval_core::{
    ChangeKind, ClientError, ClientReply, ClientRequest, ConfChange, ConfChangeError, Envelope,
    KvOp, KvServer, Membership, NodeEvent, NodeId, NodeStatus, PersistOp, ReadConsistency, Ready,
    SingleChange, TransferError, Transition,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::bounded::{TurnBudget, Weighed};
use crate::events::{EventHub, now_ms};
use crate::membership;
use crate::metrics::Metrics;
use crate::peer_inbox::MAX_PEER_BYTES_PER_TURN;
use crate::request_trace::RequestTraces;
use crate::snapshot_jobs::{JobDone, SnapshotJobs};
use crate::storage::worker::{Durable, StorageWorker, WorkerError};
use crate::tls::TlsStore;
use crate::transport::{Identity, PeerSender};
use crate::wire::{
    LeaderHint, MemberError, MemberOp, MembershipView, ServerFrame, StatusReply, TransferOutcome,
};

/// Inputs handled per turn at most, so ticks and the disk are never starved by a flood.
const MAX_INPUTS_PER_TURN: usize = 8192;
/// Client bytes (requests' estimated size) handled per turn: a turn's proposals become one
/// WAL batch, so 8192 puts of 1 MiB must not make one 8 GiB write while ticks wait.
const MAX_CLIENT_BYTES_PER_TURN: usize = 4 << 20;
/// Client requests waiting for their reply; beyond this new ones are refused as Busy.
const MAX_WAITERS: usize = 65_536;
/// Status frames for the live view go out at most this often unless role, term or leader change.
const STATUS_MIN_INTERVAL: Duration = Duration::from_millis(100);

/// How long a stopping leader waits for its leadership transfer, in (minimum) election
/// timeouts. The core aborts a transfer after one; the margin covers the target's election.
pub const HANDOVER_ELECTION_TIMEOUTS: u32 = 2;
/// Transfer requests waiting for their outcome at once; more are refused.
const MAX_TRANSFER_WAITERS: usize = 64;

pub use crate::peer_inbox::{PEER_INBOX, PeerInput};
/// Capacity of the queue from client connections into the loop.
pub const CLIENT_INBOX: usize = 8192;
/// Estimated bytes of queued client inputs at most: 8192 puts of 1 MiB values would be 8 GiB.
/// A connection whose request does not fit waits (and stops reading its socket).
pub const CLIENT_INBOX_BYTES: usize = 64 << 20;

/// A request from a client connection.
pub enum Input {
    Client {
        req: ClientRequest,
        reply_to: mpsc::Sender<ServerFrame>,
    },
    Status {
        reply_to: oneshot::Sender<StatusReply>,
    },
    Read {
        client_id: u64,
        seq: u64,
        key: Vec<u8>,
        consistency: ReadConsistency,
        reply_to: mpsc::Sender<ServerFrame>,
    },
    /// `kvctl leader transfer`: answered once the transfer completed or was aborted.
    Transfer {
        to: Option<NodeId>,
        reply_to: oneshot::Sender<TransferOutcome>,
    },
    Member {
        tag: u64,
        op: MemberOp,
        reply_to: mpsc::Sender<ServerFrame>,
    },
}

impl Weighed for Input {
    fn queued_bytes(&self) -> usize {
        let payload = match self {
            Input::Client { req, .. } => req.op.size_hint(),
            Input::Read { key, .. } => key.len(),
            Input::Status { .. } | Input::Transfer { .. } | Input::Member { .. } => 0,
        };
        std::mem::size_of::<Input>() + payload
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error("persisting to the WAL failed, stopping the node: {0}")]
    Storage(#[from] WorkerError),
    #[error("writing a snapshot failed, stopping the node: {0}")]
    Snapshot(#[from] crate::storage::snapfile::SnapshotFileError),
    /// The loop's task was cancelled (a runtime shutting down under it).
    #[error("the node loop was cancelled")]
    Cancelled,
    /// This node is no longer a member: it stops and never serves again.
    #[error("{0}")]
    Removed(String),
}

pub struct NodeLoop {
    pub server: KvServer,
    pub storage: StorageWorker,
    /// Encodes and decodes snapshots off the loop (see [`crate::snapshot_jobs`]).
    pub snapshots: SnapshotJobs,
    /// One outbound connection per other member, with the address it dials.
    pub peers: BTreeMap<NodeId, (String, PeerSender)>,
    pub peer_rx: mpsc::Receiver<PeerInput>,
    pub input_rx: crate::bounded::Receiver<Input>,
    /// Who this node is; its roster is the membership the transport admits peers by.
    pub identity: Arc<Identity>,
    pub tls: Option<Arc<TlsStore>>,
    /// Addresses of the members this data directory started with (a fallback for
    /// configurations that lack them).
    pub bootstrap_addresses: BTreeMap<NodeId, String>,
    /// Set when a peer answered that this node was removed.
    pub evicted: watch::Receiver<Option<String>>,
    pub metrics: Arc<Metrics>,
    pub events: EventHub,
    pub status_tx: watch::Sender<NodeStatus>,
    pub tick: Duration,
    pub shutdown: watch::Receiver<bool>,
    /// SIGTERM/SIGINT: a leader hands leadership over first (bounded by
    /// [`HANDOVER_ELECTION_TIMEOUTS`] election timeouts), then the loop ends.
    pub stop: watch::Receiver<bool>,
    /// What recovery loaded from a snapshot, published once as a live trace event.
    pub restored: Option<TraceKind>,
}

/// Client connections waiting for one answer, and the read path when it is a read.
struct Waiter {
    senders: Vec<mpsc::Sender<ServerFrame>>,
    read: Option<ReadConsistency>,
}

struct State {
    /// Client connections waiting for the reply to (client_id, seq). An entry exists exactly
    /// while the core owes that request an answer, so a retry of a pending request joins it
    /// instead of being proposed twice.
    waiters: HashMap<(u64, u64), Waiter>,
    next_tick: Instant,
    last_status: NodeStatus,
    last_status_at: Instant,
    sent_ids: u64,
    /// Spans of the requests in flight, when a tracing subscriber records them.
    traces: RequestTraces,
    /// Batches handed to the storage thread and not yet durable, oldest first, with what
    /// waits for them.
    unstable: VecDeque<Unstable>,
    /// Transfer requests waiting for their outcome, by target.
    transfers: Vec<(NodeId, oneshot::Sender<TransferOutcome>)>,
    /// Set once a stop was asked for: the loop ends at this instant, or as soon as this node
    /// no longer leads or its transfer ended.
    stopping_at: Option<Instant>,
    /// Membership requests proposed by this leader, waiting for their entry to apply.
    members_pending: Vec<PendingChange>,
    /// This node applied a configuration without itself: it stops soon (see [`Leaving`]).
    leaving: Option<Leaving>,
    /// The node's own snapshot writes (see [`crate::snapshot_jobs`]).
    own: OwnSnapshots,
}

/// The node's own snapshots on their way to disk off the storage thread: the core's
/// `SaveSnapshot` + `CompactLog` pair is taken out of its batch, the file is written by a
/// snapshot job, and the pair goes to the storage thread afterwards, which then only adopts
/// the file and compacts.
#[derive(Default)]
struct OwnSnapshots {
    /// The index of the snapshot the core was just given encoded bytes for: its
    /// `SaveSnapshot` comes in the next batch.
    expected: Option<u64>,
    /// A save job is running.
    saving: bool,
    /// A newer snapshot waiting for the running save (an older waiting one is superseded).
    next: Option<(Arc<keyval_core::Snapshot>, u64)>,
    /// Written snapshots to hand to the storage thread with the next submission.
    adopt: Vec<PersistOp>,
    /// The last persist id submitted: extra submissions reuse it (a repeated durability
    /// notice is a no-op for the core).
    last_persist_id: u64,
}

/// When a node that applied its own removal stops: after a short grace that lets its last
/// messages out, and, when it led, once the core's hand-over to the most caught-up voter has
/// ended (bounded like a SIGTERM hand-over), so the cluster sees no leaderless gap.
struct Leaving {
    grace_until: Instant,
    hard_until: Instant,
    reason: String,
}

/// A membership change proposed for a client, answered when its entry applies.
struct PendingChange {
    index: u64,
    term: u64,
    tag: u64,
    reply_to: mpsc::Sender<ServerFrame>,
}

/// How long a node that applied its own removal keeps running before it stops: enough for
/// its last acknowledgements and a leader's hand-over to go out.
const REMOVED_GRACE: Duration = Duration::from_millis(500);

/// What waits for one batch to be durable.
struct Unstable {
    persist_id: u64,
    messages: Vec<Envelope>,
    /// Live-view events describing the writes, published once they are durable.
    traces: Vec<TraceKind>,
    entries: u64,
    /// The last index the batch appends (the request spans' persist stage ends there).
    appended_through: Option<u64>,
    saves_snapshot: bool,
}

impl NodeLoop {
    pub async fn run(mut self) -> Result<(), LoopError> {
        let mut st = State {
            waiters: HashMap::new(),
            next_tick: Instant::now() + self.tick,
            last_status: NodeStatus::of(&self.server),
            last_status_at: Instant::now(),
            sent_ids: 0,
            unstable: VecDeque::new(),
            traces: RequestTraces::default(),
            transfers: Vec::new(),
            stopping_at: None,
            own: OwnSnapshots::default(),
            members_pending: Vec::new(),
            leaving: None,
        };
        if let Some(kind) = self.restored.take() {
            self.events.publish(now_ms(), kind);
        }
        self.server.set_background_jobs(true);
        let result = loop {
            if *self.shutdown.borrow() {
                break Ok(());
            }
            if self.handover_over(&st) {
                let raft = self.server.raft();
                tracing::info!(
                    role = %raft.role(),
                    term = raft.term(),
                    leader = ?raft.leader(),
                    "stopping: leadership handover finished"
                );
                break Ok(());
            }
            let mut first_input = None;
            let mut peer_bytes = 0;
            tokio::select! {
                biased;
                _ = self.shutdown.changed() => break Ok(()),
                changed = self.stop.changed(), if st.stopping_at.is_none() => {
                    if changed.is_err() || !self.begin_handover(&mut st) {
                        break Ok(());
                    }
                }
                // The sender lives in `self.identity`, so this never reports a closed channel.
                _ = self.evicted.changed() => {
                    if let Some(reason) = self.evicted.borrow().clone() {
                        break Err(LoopError::Removed(reason));
                    }
                }
                durable = self.storage.durable() => {
                    if let Err(e) = self.on_durable(durable, &mut st) {
                        break Err(e);
                    }
                }
                _ = tokio::time::sleep_until(st.next_tick) => {}
                done = self.snapshots.done() => {
                    if let Err(e) = self.on_snapshot_job(done, &mut st) {
                        break Err(e);
                    }
                }
                Some(input) = self.peer_rx.recv() => {
                    peer_bytes = self.step_peers(input);
                }
                Some(input) = self.input_rx.recv() => first_input = Some(input),
            }
            self.catch_up_ticks(&mut st);
            // Bounded in batches and in bytes: one huge batch (a 16 MiB frame of tiny
            // messages) ends the peer part of the turn, so ticks and the disk come next.
            let mut handled = 0;
            while handled < MAX_INPUTS_PER_TURN && peer_bytes < MAX_PEER_BYTES_PER_TURN {
                let Ok(input) = self.peer_rx.try_recv() else {
                    break;
                };
                peer_bytes += self.step_peers(input);
                handled += 1;
            }
            let mut budget = TurnBudget::new(MAX_INPUTS_PER_TURN, MAX_CLIENT_BYTES_PER_TURN);
            if let Some(input) = first_input {
                budget.charge(input.queued_bytes());
                self.handle_input(input, &mut st);
            }
            while let Some(input) = self.input_rx.try_recv_within(&mut budget) {
                self.handle_input(input, &mut st);
            }
            // All proposals and acknowledgements of the turn share one batch (and so one write).
            if let Err(e) = self.execute_ready(&mut st).await {
                break Err(e);
            }
            self.settle_member_requests(&mut st);
            if let Some(l) = &st.leaving {
                let now = Instant::now();
                let handed_over = self.server.raft().transfer_target().is_none();
                if now >= l.hard_until || (now >= l.grace_until && handed_over) {
                    break Err(LoopError::Removed(l.reason.clone()));
                }
            }
            self.metrics.reads.observe(self.server.raft().read_stats());
            self.publish_status(&mut st);
        };
        // Finish the batches already submitted (their fsync included) and close the WAL.
        self.storage.close();
        result
    }

    /// Delivers the ticks that are due by the monotonic clock. Time that passed while the loop
    /// waited on the disk, or while the process was stopped, still counts: that is what expires
    /// a lease after a pause. Catching up is capped at one election timeout's worth (enough to
    /// expire any lease and any read round) so a stalled process does not fire a burst of
    /// elections when it wakes.
    fn catch_up_ticks(&mut self, st: &mut State) {
        let max_catch_up = self.server.raft().config().election_ticks;
        let now = Instant::now();
        let mut ticks = 0;
        while now >= st.next_tick {
            self.server.tick();
            st.next_tick += self.tick;
            ticks += 1;
            if ticks >= max_catch_up {
                st.next_tick = now + self.tick;
                break;
            }
        }
    }

    /// Steps one peer input; the inbox bytes it held (given back when it is dropped here).
    fn step_peers(&mut self, input: PeerInput) -> usize {
        let (envs, held) = match input {
            PeerInput::Batch(envs, held) => (envs, held),
            PeerInput::Closed(peer) => {
                self.server.peer_disconnected(peer);
                return 0;
            }
        };
        for env in envs {
            self.metrics.observe_inbound(&env);
            self.server.step(env);
        }
        held.bytes()
    }

    fn handle_input(&mut self, input: Input, st: &mut State) {
        match input {
            Input::Status { reply_to } => {
                let membership = self.identity.roster.view();
                let _ = reply_to.send(StatusReply {
                    status: NodeStatus::of(&self.server),
                    members: membership
                        .members
                        .iter()
                        .map(|m| (m.id, m.address.clone()))
                        .collect(),
                    membership,
                });
            }
            Input::Member { tag, op, reply_to } => self.handle_member(tag, op, reply_to, st),
            Input::Client { req, reply_to } => match req.op {
                KvOp::Get { key } => self.handle_read(
                    (req.client_id, req.seq),
                    key,
                    ReadConsistency::Linearizable,
                    reply_to,
                    st,
                ),
                _ => self.handle_client(req, reply_to, st),
            },
            Input::Read {
                client_id,
                seq,
                key,
                consistency,
                reply_to,
            } => self.handle_read((client_id, seq), key, consistency, reply_to, st),
            Input::Transfer { to, reply_to } => self.handle_transfer(to, reply_to, st),
        }
    }

    fn handle_transfer(
        &mut self,
        to: Option<NodeId>,
        reply_to: oneshot::Sender<TransferOutcome>,
        st: &mut State,
    ) {
        if st.transfers.len() >= MAX_TRANSFER_WAITERS {
            let reason = "too many transfer requests pending; retry later".to_string();
            let _ = reply_to.send(TransferOutcome::Failed { reason });
            return;
        }
        match self.server.transfer_leadership(to) {
            Ok(target) => {
                tracing::info!(to = target, "leadership transfer requested");
                st.transfers.push((target, reply_to));
            }
            Err(TransferError::NotLeader { leader }) => {
                let leader = leader.map(|id| LeaderHint {
                    id,
                    address: self.identity.roster.address_of(id),
                });
                let _ = reply_to.send(TransferOutcome::NotLeader { leader });
            }
            Err(e) => {
                let _ = reply_to.send(TransferOutcome::Failed {
                    reason: e.to_string(),
                });
            }
        }
    }

    /// Answers the transfer requests waiting on `to`, once the core says how it ended.
    fn settle_transfer_waiters(&mut self, ev: &NodeEvent, st: &mut State) {
        let (to, outcome) = match ev {
            NodeEvent::TransferCompleted { to, .. } => (*to, TransferOutcome::Done { leader: *to }),
            NodeEvent::TransferAborted { to, reason, .. } => (
                *to,
                TransferOutcome::Failed {
                    reason: format!("transfer to node {to} aborted: {reason}"),
                },
            ),
            _ => return,
        };
        for (_, w) in st.transfers.extract_if(.., |(t, _)| *t == to) {
            let _ = w.send(outcome.clone());
        }
    }

    /// A stop was asked for: a leader with another voter hands over first. Returns false when
    /// there is nothing to wait for.
    fn begin_handover(&mut self, st: &mut State) -> bool {
        let ticks = self.server.raft().config().election_ticks * HANDOVER_ELECTION_TIMEOUTS;
        st.stopping_at = Some(Instant::now() + self.tick * ticks);
        if !self.server.raft().is_leader() {
            return false;
        }
        match self.server.transfer_leadership(None) {
            Ok(to) => {
                tracing::info!(to, "stopping: handing leadership over first");
                true
            }
            Err(e) => {
                tracing::info!(reason = %e, "stopping without a leadership transfer");
                false
            }
        }
    }

    /// Whether a stopping node is done handing over: its transfer ended (completed once it
    /// saw the target lead, so its own vote went out; or aborted: it stops anyway), or the
    /// bound passed.
    fn handover_over(&self, st: &State) -> bool {
        let Some(at) = st.stopping_at else {
            return false;
        };
        self.server.raft().transfer_target().is_none() || Instant::now() >= at
    }

    /// Reads are not proposals: any node takes them (a follower asks the leader for a read
    /// index; see `keyval_core::read`), and they never wait for an fsync of their own.
    fn handle_read(
        &mut self,
        (client_id, seq): (u64, u64),
        key: Vec<u8>,
        consistency: ReadConsistency,
        reply_to: mpsc::Sender<ServerFrame>,
        st: &mut State,
    ) {
        self.metrics.client_requests.fetch_add(1, Relaxed);
        self.metrics.reads.request(consistency);
        if let Some(w) = st.waiters.get_mut(&(client_id, seq)) {
            w.senders.push(reply_to);
            return;
        }
        let raft = self.server.raft();
        let refusal = if st.waiters.len() >= MAX_WAITERS {
            Some(ClientError::Busy {
                uncommitted: st.waiters.len() as u64,
            })
        } else if consistency == ReadConsistency::Lease
            && !raft.is_leader()
            && raft.leader().is_some()
        {
            // The lease lives on the leader: the core would serve this as a follower read, a
            // round trip to the leader the client asked a lease read to avoid. Send the client
            // there instead (kvctl follows the hint and stays).
            Some(ClientError::NotLeader {
                leader_hint: raft.leader(),
            })
        } else {
            None
        };
        if let Some(e) = refusal {
            let reply = ClientReply {
                client_id,
                seq,
                outcome: Err(e),
            };
            self.metrics.client_replies_err.fetch_add(1, Relaxed);
            self.metrics.reads.failure(consistency);
            let _ = reply_to.try_send(self.reply_frame(reply));
            return;
        }
        st.waiters.insert(
            (client_id, seq),
            Waiter {
                senders: vec![reply_to],
                read: Some(consistency),
            },
        );
        self.server.handle_read(client_id, seq, key, consistency);
    }

    fn handle_client(
        &mut self,
        req: ClientRequest,
        reply_to: mpsc::Sender<ServerFrame>,
        st: &mut State,
    ) {
        self.metrics.client_requests.fetch_add(1, Relaxed);
        let key = (req.client_id, req.seq);
        if let Some(w) = st.waiters.get_mut(&key) {
            // Already pending here (a client retrying on the same node): one proposal, and the
            // answer goes to every connection that asked.
            w.senders.push(reply_to);
            return;
        }
        // Answers the core would give at once are given here, so they can never be mistaken
        // for the answer to an earlier attempt of the same request that is still pending.
        let refuse = if let Err(e) = req.op.validate() {
            Some(e)
        } else if !self.server.raft().is_leader() {
            Some(ClientError::NotLeader {
                leader_hint: self.server.raft().leader(),
            })
        } else if st.waiters.len() >= MAX_WAITERS {
            Some(ClientError::Busy {
                uncommitted: st.waiters.len() as u64,
            })
        } else {
            None
        };
        if let Some(err) = refuse {
            let reply = ClientReply {
                client_id: req.client_id,
                seq: req.seq,
                outcome: Err(err),
            };
            self.metrics.client_replies_err.fetch_add(1, Relaxed);
            let _ = reply_to.try_send(self.reply_frame(reply));
            return;
        }
        if self.events.active() {
            self.events.publish(
                now_ms(),
                TraceKind::ClientInvoke {
                    client: req.client_id,
                    seq: req.seq,
                    op: req.op.clone(),
                    node: self.server.raft().id(),
                },
            );
        }
        st.waiters.insert(
            key,
            Waiter {
                senders: vec![reply_to],
                read: None,
            },
        );
        self.metrics.proposals.fetch_add(1, Relaxed);
        let proposing = st.traces.begin(&req, self.server.raft().id());
        let last_before = self.server.raft().log().last_index();
        self.server.handle_client(req);
        let last = self.server.raft().log().last_index();
        st.traces
            .proposed(proposing, (last > last_before).then_some(last));
    }

    /// Makes the outbound connections match `view`: members this node has no connection to
    /// get one (a new member, or one whose address changed), connections to nodes no longer
    /// members are dropped (their tasks end when their queues close).
    fn sync_peers(&mut self, view: &MembershipView) {
        let me = self.identity.id;
        let wanted: BTreeMap<NodeId, &str> = view
            .members
            .iter()
            .filter(|m| m.id != me)
            .map(|m| (m.id, m.address.as_str()))
            .collect();
        self.peers.retain(|id, (addr, _)| {
            let keep = wanted.get(id) == Some(&addr.as_str());
            if !keep {
                tracing::info!(peer = id, %addr, "dropping the connection to a former member");
                self.metrics.forget_peer(*id);
            }
            keep
        });
        for (id, addr) in wanted {
            if self.peers.contains_key(&id) {
                continue;
            }
            tracing::info!(peer = id, %addr, "connecting to a new member");
            let sender = crate::transport::spawn_peer(
                (*self.identity).clone(),
                self.tls.clone(),
                id,
                addr.to_string(),
                self.metrics.clone(),
                self.shutdown.clone(),
            );
            self.peers.insert(id, (addr.to_string(), sender));
        }
    }

    /// `kvctl member ...`: only the leader takes membership requests. Changes pass the strict
    /// reconfiguration check (see [`crate::membership`]) before they are proposed; the answer
    /// comes when the entry applies ([`NodeLoop::settle_member_requests`]).
    fn handle_member(
        &mut self,
        tag: u64,
        op: MemberOp,
        reply_to: mpsc::Sender<ServerFrame>,
        st: &mut State,
    ) {
        let raft = self.server.raft();
        if !raft.is_leader() {
            let node = raft.id();
            return self.answer_member(tag, Err(MemberError::NotLeader { node }), &reply_to);
        }
        let applied = self.identity.roster.applied();
        let voters = &applied.membership.voters;
        let change = match op {
            MemberOp::List => return self.answer_member(tag, Ok(applied.view), &reply_to),
            MemberOp::Add {
                id,
                address,
                learner,
            } => {
                if let Some(other) = applied.view.members.iter().find(|m| m.address == address) {
                    let e = format!(
                        "address {address} is already node {}'s; a node has one address",
                        other.id
                    );
                    return self.answer_member(tag, Err(MemberError::Refused(e)), &reply_to);
                }
                // Without `--learner` the intent to promote is part of the configuration:
                // whichever node leads promotes it once caught up (the core's rule).
                let kind = if learner {
                    ChangeKind::AddLearner
                } else {
                    ChangeKind::AddLearnerThenVoter
                };
                SingleChange {
                    kind,
                    node: id,
                    address: Some(address),
                }
            }
            MemberOp::Promote { id } => {
                if let Err(e) = self.check_promotion(id, &applied.membership) {
                    return self.answer_member(tag, Err(MemberError::Refused(e)), &reply_to);
                }
                single(ChangeKind::AddVoter, id)
            }
            MemberOp::Remove { id } => {
                if voters.contains(&id) {
                    let after: std::collections::BTreeSet<NodeId> =
                        voters.iter().copied().filter(|&v| v != id).collect();
                    if let Err(e) = membership::check_quorum_after(
                        &after,
                        |v| self.connected(v),
                        &format!("removing node {id}"),
                    ) {
                        return self.answer_member(tag, Err(MemberError::Refused(e)), &reply_to);
                    }
                }
                single(ChangeKind::Remove, id)
            }
        };
        let cc = ConfChange {
            changes: vec![change],
            transition: Transition::Auto,
        };
        let term = self.server.raft().term();
        match self.server.propose_conf_change(cc.clone()) {
            Ok(index) => {
                tracing::info!(index, change = ?cc, "proposed a membership change");
                st.members_pending.push(PendingChange {
                    index,
                    term,
                    tag,
                    reply_to,
                });
            }
            Err(e) => self.answer_member(tag, Err(member_error(e)), &reply_to),
        }
    }

    /// Whether the leader hears from `id` now: itself, or a peer whose connection is up.
    fn connected(&self, id: NodeId) -> bool {
        id == self.server.raft().id() || self.metrics.peer_is_up(id)
    }

    /// A learner may become a voter when it is caught up and the grown voter set keeps a
    /// connected quorum.
    fn check_promotion(&self, id: NodeId, m: &Membership) -> Result<(), String> {
        if !m.is_learner(id) {
            return Err(if m.is_voter(id) {
                format!("node {id} is already a voter")
            } else {
                format!("node {id} is not a learner of this cluster")
            });
        }
        let raft = self.server.raft();
        let last = raft.log().last_index();
        let matched = raft.progress_of(id).map_or(0, |(m, _)| m);
        let max_lag = raft.config().max_promotion_lag;
        if !self.connected(id) {
            return Err(format!(
                "node {id} is not connected to the leader: start it with `keyval --id {id} ... --join ENDPOINTS` and promote it once it has caught up"
            ));
        }
        if !keyval_core::membership::caught_up(matched, last, max_lag) {
            return Err(format!(
                "node {id} is not caught up: its log matches to {matched}, the leader's ends at {last} (a learner is promoted within {max_lag} entries)"
            ));
        }
        let mut after = m.voters.clone();
        after.insert(id);
        membership::check_quorum_after(
            &after,
            |v| self.connected(v),
            &format!("promoting node {id}"),
        )
    }

    /// Answers the membership requests whose entries applied, and those whose outcome this
    /// node can no longer know (it lost the leadership before they applied).
    fn settle_member_requests(&mut self, st: &mut State) {
        if st.members_pending.is_empty() {
            return;
        }
        let raft = self.server.raft();
        let (applied, term, leader) = (raft.applied_index(), raft.term(), raft.is_leader());
        let view = self.identity.roster.view();
        let pending = std::mem::take(&mut st.members_pending);
        for p in pending {
            if leader && term == p.term && applied >= p.index {
                self.answer_member(p.tag, Ok(view.clone()), &p.reply_to);
            } else if !leader || term != p.term {
                let e = format!(
                    "leadership changed before the change at log index {} applied; it may or may not take effect: check with `kvctl member list`",
                    p.index
                );
                self.answer_member(p.tag, Err(MemberError::Indeterminate(e)), &p.reply_to);
            } else {
                st.members_pending.push(p);
            }
        }
    }

    /// A configuration applied: the roster, the connections and (when this node is no longer
    /// a member) the node's own life follow it.
    fn on_membership(&mut self, index: u64, m: &Membership, st: &mut State) {
        self.identity
            .roster
            .set(m.clone(), index, &self.bootstrap_addresses);
        // `log_event` logs the configuration itself.
        let view = self.identity.roster.view();
        self.sync_peers(&view);
        let me = self.server.raft().id();
        // Removed means named in `removed`, not merely absent: a node added after the leader's
        // last snapshot installs that snapshot's older configuration first, and learns of its
        // own addition from the log that follows.
        if m.removed.contains(&me) && !m.contains(me) && st.leaving.is_none() {
            let reason = format!(
                "node {me} was removed from the cluster (configuration at log index {index}); it stops and will not serve again"
            );
            tracing::warn!(%reason, "removed from the cluster");
            let now = Instant::now();
            let ticks = self.server.raft().config().election_ticks * HANDOVER_ELECTION_TIMEOUTS;
            st.leaving = Some(Leaving {
                grace_until: now + REMOVED_GRACE,
                hard_until: now + REMOVED_GRACE.max(self.tick * ticks),
                reason,
            });
        }
    }

    fn answer_member(
        &self,
        tag: u64,
        outcome: Result<MembershipView, MemberError>,
        reply_to: &mpsc::Sender<ServerFrame>,
    ) {
        let leader = match &outcome {
            Err(MemberError::NotLeader { .. }) => {
                self.server.raft().leader().map(|id| LeaderHint {
                    id,
                    address: self.identity.roster.address_of(id),
                })
            }
            _ => None,
        };
        let _ = reply_to.try_send(ServerFrame::Member {
            tag,
            outcome,
            leader,
        });
    }

    fn reply_frame(&self, reply: ClientReply) -> ServerFrame {
        let leader = match &reply.outcome {
            Err(ClientError::NotLeader {
                leader_hint: Some(id),
            }) => Some(LeaderHint {
                id: *id,
                address: self.identity.roster.address_of(*id),
            }),
            _ => None,
        };
        ServerFrame::Reply { reply, leader }
    }

    /// Takes the core's batch and executes it (see the module docs), and starts the snapshot
    /// work the core handed out.
    async fn execute_ready(&mut self, st: &mut State) -> Result<(), LoopError> {
        if let Some(job) = self.server.take_install_job() {
            self.snapshots.decode(job);
        }
        let ready = self.server.take_ready();
        if let Some(job) = self.server.take_snapshot_job() {
            self.snapshots.encode(job);
        }
        if ready.is_empty() {
            return self.submit_adopted(st).await;
        }
        self.execute(ready, st).await
    }

    /// Hands written snapshots to the storage thread when no batch of the core carries them.
    async fn submit_adopted(&mut self, st: &mut State) -> Result<(), LoopError> {
        if st.own.adopt.is_empty() {
            return Ok(());
        }
        while !self.storage.has_room() {
            let durable = self.storage.durable().await;
            self.on_durable(durable, st)?;
        }
        let ops = std::mem::take(&mut st.own.adopt);
        self.storage.submit(st.own.last_persist_id, ops)?;
        Ok(())
    }

    /// Takes the node's own `SaveSnapshot` (and the `CompactLog` behind it) out of `persist`
    /// and starts writing it in the background.
    fn divert_own_snapshot(&mut self, persist: &mut Vec<PersistOp>, st: &mut State) {
        let Some(index) = st.own.expected else {
            return;
        };
        let Some(at) = persist
            .iter()
            .position(|op| matches!(op, PersistOp::SaveSnapshot(s) if s.meta.last_index == index))
        else {
            return;
        };
        st.own.expected = None;
        // The core queues the compaction right behind the save; anything else is not the
        // pair this path knows how to defer, so the storage thread keeps it in order.
        if !matches!(persist.get(at + 1), Some(PersistOp::CompactLog(i)) if *i == index) {
            return;
        }
        let mut pair = persist.drain(at..at + 2);
        let Some(PersistOp::SaveSnapshot(snapshot)) = pair.next() else {
            return;
        };
        drop(pair);
        if st.own.saving {
            st.own.next = Some((snapshot, index));
        } else {
            st.own.saving = true;
            self.snapshots.save(snapshot, index);
        }
    }

    /// A snapshot encoded or decoded in the background: the core saves and compacts (or
    /// installs) in the batch this turn takes.
    fn on_snapshot_job(&mut self, done: JobDone, st: &mut State) -> Result<(), LoopError> {
        match done {
            JobDone::Encoded { index, data, took } => {
                let bytes = data.as_ref().map_or(0, Vec::len);
                tracing::debug!(index, bytes, ?took, "snapshot encoded");
                if data.is_some() && self.snapshots.saves() {
                    st.own.expected = Some(index);
                }
                self.server.snapshot_encoded(index, data);
            }
            JobDone::Saved {
                snapshot,
                compact,
                result,
                took,
            } => {
                let bytes = result?;
                tracing::debug!(index = compact, bytes, ?took, "snapshot written");
                // A snapshot installed from the leader meanwhile supersedes it; its file is
                // older than the installed one, and the next start removes it.
                if compact >= self.server.raft().snapshot_index() {
                    st.own.adopt.push(PersistOp::SaveSnapshot(snapshot));
                    st.own.adopt.push(PersistOp::CompactLog(compact));
                }
                st.own.saving = false;
                if let Some((next, index)) = st.own.next.take() {
                    st.own.saving = true;
                    self.snapshots.save(next, index);
                }
            }
            JobDone::Decoded { job, result, took } => {
                tracing::debug!(
                    index = job.snapshot.meta.last_index,
                    ?took,
                    "snapshot decoded"
                );
                self.server.snapshot_decoded(*job, result);
            }
        }
        Ok(())
    }

    /// The storage thread made every batch up to `last_id` durable: tell the core, release what
    /// waited for those batches, and execute what the notice produced (a leader may commit).
    fn on_durable(
        &mut self,
        durable: Result<Durable, WorkerError>,
        st: &mut State,
    ) -> Result<(), LoopError> {
        let d = durable?;
        self.metrics.observe_fsync(d.took);
        self.metrics.observe_store(&d.stats);
        self.server.on_persisted(d.last_id);
        let tracing_events = self.events.active();
        let t = now_ms();
        while st
            .unstable
            .front()
            .is_some_and(|u| u.persist_id <= d.last_id)
        {
            let Some(u) = st.unstable.pop_front() else {
                break;
            };
            self.metrics.persisted_entries.fetch_add(u.entries, Relaxed);
            if u.saves_snapshot {
                self.metrics.snapshot_save.observe(d.took);
            }
            if let Some(i) = u.appended_through {
                st.traces.persisted(i);
            }
            if tracing_events {
                for kind in u.traces {
                    self.events.publish(t, kind);
                }
            }
            self.send_all(u.messages, st);
        }
        Ok(())
    }

    fn send_all(&mut self, messages: Vec<Envelope>, st: &mut State) {
        let tracing_events = self.events.active();
        let t = now_ms();
        st.traces.committed(self.server.raft().commit_index());
        for env in messages {
            self.metrics.observe_outbound(&env);
            if tracing_events {
                st.sent_ids += 1;
                self.events.publish(
                    t,
                    TraceKind::Sent {
                        id: st.sent_ids,
                        from: Addr::Node(env.from),
                        to: Addr::Node(env.to),
                        deliver_at: t,
                        payload: Payload::Raft(env.msg.clone()),
                    },
                );
            }
            match self.peers.get(&env.to) {
                Some((_, peer)) => peer.send(env, &self.metrics),
                None => self.metrics.dropped(&env.msg),
            }
        }
    }

    async fn execute(&mut self, ready: Ready, st: &mut State) -> Result<(), LoopError> {
        self.metrics.ready_batches.fetch_add(1, Relaxed);
        let Ready {
            mut persist,
            persist_id,
            messages,
            persisted_messages,
            applied,
            replies,
            events,
        } = ready;
        let me = self.server.raft().id();
        let tracing_events = self.events.active();

        // 1. send now: a leader's replication, in parallel with its own write.
        self.send_all(messages, st);

        // 2. persist, without waiting for the disk.
        self.divert_own_snapshot(&mut persist, st);
        if let Some(persist_id) = persist_id {
            st.own.last_persist_id = persist_id;
            persist.append(&mut st.own.adopt);
            let mut traces = Vec::new();
            let mut entries = 0u64;
            let mut appended_through = None;
            let mut saves_snapshot = false;
            for op in &persist {
                match op {
                    PersistOp::Append(es) => {
                        entries += es.len() as u64;
                        appended_through = es.last().map(|e| e.index).or(appended_through);
                        if let (Some(f), Some(l)) = (es.first(), es.last()) {
                            traces.push(TraceKind::Persisted {
                                node: me,
                                first: f.index,
                                last: l.index,
                                term: l.term,
                            });
                        }
                    }
                    PersistOp::TruncateFrom(i) => {
                        tracing::info!(from = i, "truncating conflicting log suffix");
                        traces.push(TraceKind::Truncated { node: me, from: *i });
                    }
                    PersistOp::HardState(_) => {}
                    PersistOp::SaveSnapshot(s) => {
                        saves_snapshot = true;
                        traces.push(TraceKind::SnapshotSaved {
                            node: me,
                            index: s.meta.last_index,
                            term: s.meta.last_term,
                            bytes: s.data.len() as u64,
                        });
                    }
                    PersistOp::CompactLog(i) => {
                        traces.push(TraceKind::LogCompacted {
                            node: me,
                            through: *i,
                        });
                    }
                }
            }
            // A slow disk with a full pipeline: wait for it here, so the queue stays bounded.
            while !self.storage.has_room() {
                let durable = self.storage.durable().await;
                self.on_durable(durable, st)?;
            }
            self.storage.submit(persist_id, persist)?;
            st.unstable.push_back(Unstable {
                persist_id,
                messages: persisted_messages,
                traces,
                entries,
                appended_through,
                saves_snapshot,
            });
        } else if let Some(last) = st.unstable.back_mut() {
            // Nothing to write, but what they acknowledge may be in a batch still in flight.
            last.messages.extend(persisted_messages);
        } else {
            self.send_all(persisted_messages, st);
        }
        self.submit_adopted(st).await?;
        let t = now_ms();

        // 3. answer
        self.metrics
            .applied_entries
            .fetch_add(applied.len() as u64, Relaxed);
        if let Some(a) = applied.last() {
            st.traces.applied(a.index);
        }
        if tracing_events {
            for a in applied {
                self.events.publish(
                    t,
                    TraceKind::Applied {
                        node: me,
                        index: a.index,
                        term: a.term,
                        op: a.request.map(|r| r.op),
                        result: a.result,
                    },
                );
            }
        }
        for reply in replies {
            let Some(waiting) = st.waiters.remove(&(reply.client_id, reply.seq)) else {
                continue;
            };
            if reply.outcome.is_ok() {
                self.metrics.client_replies_ok.fetch_add(1, Relaxed);
            } else {
                self.metrics.client_replies_err.fetch_add(1, Relaxed);
                match waiting.read {
                    Some(c) => self.metrics.reads.failure(c),
                    None => {
                        self.metrics.proposals_failed.fetch_add(1, Relaxed);
                    }
                }
            }
            st.traces.replied(
                (reply.client_id, reply.seq),
                if reply.outcome.is_ok() { "ok" } else { "error" },
            );
            let frame = self.reply_frame(reply);
            for w in waiting.senders {
                // A full or closed connection loses its answer; the client times out and
                // retries with the same sequence number, which the state machine deduplicates.
                let _ = w.try_send(frame.clone());
            }
        }

        for ev in &events {
            if let NodeEvent::MembershipChanged { index, membership } = ev {
                self.on_membership(*index, membership, st);
            }
            if let NodeEvent::ConfChangeRefused { index, reason } = ev
                && let Some(i) = st.members_pending.iter().position(|p| p.index == *index)
            {
                let p = st.members_pending.swap_remove(i);
                self.answer_member(
                    p.tag,
                    Err(MemberError::Refused(reason.clone())),
                    &p.reply_to,
                );
            }
        }
        for ev in events {
            log_event(&ev, &self.metrics);
            self.settle_transfer_waiters(&ev, st);
            if tracing_events {
                self.events.publish(
                    t,
                    TraceKind::Node {
                        node: me,
                        event: ev,
                    },
                );
            }
        }
        Ok(())
    }

    fn publish_status(&mut self, st: &mut State) {
        let now = Instant::now();
        let status = NodeStatus::of(&self.server);
        self.metrics.observe_status(&status);
        self.metrics
            .proposals_pending
            .store(st.waiters.len() as u64, Relaxed);
        if status == st.last_status {
            return;
        }
        let important = status.role != st.last_status.role
            || status.term != st.last_status.term
            || status.leader != st.last_status.leader;
        if important || now.duration_since(st.last_status_at) >= STATUS_MIN_INTERVAL {
            st.last_status = status.clone();
            st.last_status_at = now;
            self.status_tx.send_replace(status);
        }
    }
}

/// A refusal of the core as `kvctl` sees it: the passing ones are retried by the client.
fn member_error(e: ConfChangeError) -> MemberError {
    match e {
        ConfChangeError::ChangeInProgress { .. }
        | ConfChangeError::NoCommitInTerm
        | ConfChangeError::TransferInProgress => MemberError::Busy(e.to_string()),
        e => MemberError::Refused(e.to_string()),
    }
}

fn single(kind: ChangeKind, node: NodeId) -> SingleChange {
    SingleChange {
        kind,
        node,
        address: None,
    }
}

fn log_event(ev: &NodeEvent, metrics: &Metrics) {
    match ev {
        NodeEvent::ElectionTimeout { term, pre_vote } => {
            metrics.elections.fetch_add(1, Relaxed);
            tracing::info!(term, pre_vote, "election timeout: campaigning");
        }
        NodeEvent::RoleChanged {
            from,
            to,
            term,
            leader,
        } => tracing::info!(%from, %to, term, leader = ?leader, "role changed"),
        NodeEvent::VoteCast {
            candidate,
            term,
            granted,
            pre_vote,
        } => tracing::debug!(candidate, term, granted, pre_vote, "vote cast"),
        NodeEvent::CheckQuorumFailed { term } => {
            tracing::warn!(term, "lost contact with a majority: stepping down")
        }
        NodeEvent::CommitAdvanced { from, to } => tracing::trace!(from, to, "commit advanced"),
        NodeEvent::ProtocolViolation { from, detail } => {
            tracing::warn!(from, %detail, "refused a message that breaks the protocol")
        }
        NodeEvent::SnapshotTaken { index, term, bytes } => {
            tracing::info!(index, term, bytes, "snapshot taken")
        }
        NodeEvent::SnapshotInstalled {
            from,
            index,
            term,
            bytes,
            kept_entries,
        } => {
            metrics.snapshots_installed.fetch_add(1, Relaxed);
            tracing::info!(from, index, term, bytes, kept_entries, "snapshot installed")
        }
        NodeEvent::SnapshotChunkSent {
            to,
            index,
            offset,
            bytes,
            done,
        } => tracing::debug!(to, index, offset, bytes, done, "snapshot chunk sent"),
        NodeEvent::SnapshotChunkReceived {
            from,
            index,
            offset,
            bytes,
            done,
        } => tracing::debug!(from, index, offset, bytes, done, "snapshot chunk received"),
        NodeEvent::ReadRoundStarted { seq, commit, reads } => {
            tracing::trace!(seq, commit, reads, "read round started")
        }
        NodeEvent::ReadConfirmed { seq, index, reads } => {
            tracing::trace!(seq, index, reads, "read round confirmed")
        }
        NodeEvent::LeaseRead { index } => tracing::trace!(index, "lease read"),
        NodeEvent::TransferStarted { to, term } => {
            tracing::info!(to, term, "leadership transfer started")
        }
        NodeEvent::TransferCompleted { to, term } => {
            tracing::info!(to, term, "leadership transfer completed")
        }
        NodeEvent::TransferAborted { to, term, reason } => {
            tracing::warn!(to, term, %reason, "leadership transfer aborted")
        }
        NodeEvent::TimeoutNowReceived { from, term } => {
            tracing::info!(from, term, "asked by the leader to campaign now")
        }
        NodeEvent::MembershipChanged { index, membership } => {
            tracing::info!(index, %membership, "configuration applied")
        }
        NodeEvent::ConfChangeRefused { index, reason } => {
            tracing::warn!(index, %reason, "configuration change ignored")
        }
        NodeEvent::LeaderRemoved { term } => {
            tracing::warn!(term, "no longer a voter: stepping down as leader")
        }
        NodeEvent::LearnerPromoting { node, index } => {
            tracing::info!(node, index, "learner caught up: promoting it to voter")
        }
    }
}

#[cfg(test)]
mod tests;
