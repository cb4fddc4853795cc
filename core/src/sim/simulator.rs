//! The deterministic simulator: a virtual clock, an event queue, simulated disks and network,
//! and the same [`KvServer`] the native node runs. One `u64` seed decides every choice, so a
//! seed replays a run exactly — in tests, in the browser and in a bug report.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::checker::Checker;
use super::event_queue::EventQueue;
use super::hold::Holds;
use super::hostile::{HostilePeer, HostileStats, Sender, OUTSIDER};
use super::linearizability::Operation;
use super::network::{Fate, Network, NetworkConfig};
use super::storage::MemStorage;
use super::trace::{Addr, DropReason, Payload, TraceEvent, TraceKind};
use super::workload::{Client, WorkloadConfig};
use crate::config::Config;
use crate::kv::ClientRequest;
use crate::membership::Membership;
use crate::message::{Envelope, Message};
use crate::node::RaftNode;
use crate::ready::{NodeEvent, PersistOp, Ready};
use crate::rng::Rng;
use crate::server::KvServer;
use crate::types::{Index, NodeId, Role, Term};

pub const MAX_NODES: usize = 7;
/// Messages a paused node can have waiting; more are dropped like a full socket buffer.
pub const MAX_INBOX: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    pub nodes: usize,
    pub seed: u64,
    pub raft: Config,
    /// Virtual microseconds per Raft tick.
    pub tick_us: u64,
    pub network: NetworkConfig,
    /// Time one persist step (write + fsync) takes, uniform in this range.
    pub fsync_us: (u64, u64),
    /// Chance that a persist step stalls for an extra `slow_fsync_us` (a disk hiccup). With
    /// appends sent before the sender's own fsync, stalls open the windows in which a node's
    /// peers are ahead of its disk.
    #[serde(default)]
    pub slow_fsync_rate: f64,
    #[serde(default)]
    pub slow_fsync_us: (u64, u64),
    pub workload: WorkloadConfig,
    /// Record every event (the playground and snapshot tests); randomized runs only count.
    pub record_trace: bool,
    /// Chance, while faults are active, that a node crashes (and soon restarts) right after a
    /// protocol-critical moment: granting a vote, becoming leader, or committing as leader. Random crashes
    /// rarely land in those sub-millisecond windows; targeted ones do (Jepsen-style nemesis).
    #[serde(default)]
    pub crash_on_critical_event: f64,
    /// Chance, while faults are active, that a leader is cut off from every peer right after it
    /// answered a lease read or confirmed a read round: it keeps its lease and its clients, and
    /// the others elect a new leader. The window in which a lease without enough margin for
    /// clock drift answers a stale read.
    #[serde(default)]
    pub isolate_on_lease: f64,
    /// A hostile peer hands a running node one message every so many microseconds (uniform
    /// in the range), for the whole run; None: no hostile peer. See [`super::hostile`].
    #[serde(default)]
    pub hostile_gap_us: Option<(u64, u64)>,
    /// Time a follower takes to decode a received snapshot, uniform in the range, during
    /// which it keeps answering (as the native node's background job does); None: at once.
    /// Long decodes are where a leader's stall detection once restarted a finished transfer.
    #[serde(default)]
    pub decode_us: Option<(u64, u64)>,
    /// Time a node takes to encode its own snapshot, uniform in the range, during which it
    /// keeps applying and answering (as the native node's background job does); None: at
    /// once. Configuration changes that apply meanwhile are where a finished job once tripped
    /// the compaction invariant.
    #[serde(default)]
    pub encode_us: Option<(u64, u64)>,
    /// Time the state machine takes per applied entry, added to the batch that hands it out
    /// (0: free). With `Config::max_applied_per_ready` it makes a long replay take time, so a
    /// node can reach its election timeout with committed entries still unapplied.
    #[serde(default)]
    pub apply_us_per_entry: u64,
}

impl SimConfig {
    pub fn new(nodes: usize, seed: u64) -> Self {
        SimConfig {
            nodes,
            seed,
            raft: Config {
                heartbeat_ticks: 5,
                election_ticks: 15,
                ..Config::default()
            },
            tick_us: 10_000,
            network: NetworkConfig::default(),
            fsync_us: (200, 1_000),
            slow_fsync_rate: 0.0,
            slow_fsync_us: (5_000, 50_000),
            workload: WorkloadConfig::default(),
            record_trace: true,
            crash_on_critical_event: 0.0,
            isolate_on_lease: 0.0,
            hostile_gap_us: None,
            decode_us: None,
            encode_us: None,
            apply_us_per_entry: 0,
        }
    }
}

/// A fault or operator action, applied now or scheduled for later.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FaultAction {
    Crash(NodeId),
    Restart(NodeId),
    Pause(NodeId),
    Resume(NodeId),
    CutLink(NodeId, NodeId),
    RestoreLink(NodeId, NodeId),
    Partition(Vec<Vec<NodeId>>),
    Heal,
    SetNetwork(NetworkConfig),
    /// Directed link latency range in microseconds; None restores the network default.
    SetLinkLatency(NodeId, NodeId, Option<(u64, u64)>),
    /// Restart every crashed node, resume every paused one, heal the network and stop
    /// dropping messages: from here on the cluster must make progress (liveness).
    StopFaults,
    /// The node's clock runs this many per mille fast (positive) or slow: its ticks come that
    /// much more (or less) often. Clock drift is what a lease's margin must absorb.
    SetClockDrift(NodeId, i32),
    /// Like `Pause`, but the node's clock stops too (a suspended VM): when it resumes it has
    /// not seen the time pass. Lease reads are not safe under this fault; see [`crate::read`].
    Freeze(NodeId),
    /// Asks `from` (None: the current leader) to hand leadership to `to` (None: its most
    /// caught-up voter); see [`crate::transfer`]. A refused request changes nothing.
    TransferLeadership {
        from: Option<NodeId>,
        to: Option<NodeId>,
    },
    /// An operator's membership change through the current leader.
    Member(super::membership::MemberOp),
    /// The node's election timer fires now (RaftScope's "timeout"): a follower or candidate
    /// campaigns at once, exactly as if its randomized timeout had run out. A leader has no
    /// election timer and a paused or crashed node no running code, so they ignore it.
    ElectionTimeout(NodeId),
    /// The message with this id, still on the wire, is lost (every copy of it, if the network
    /// duplicated it). Recorded as dropped [`DropReason::ByHand`].
    DropMessage(u64),
}

/// Deliveries are the largest action by far (a snapshot chunk carries a whole configuration);
/// they stay unboxed because actions sit in the event queue's slab and are moved once in and
/// once out, while a box would cost an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub(super) enum Action {
    Tick {
        node: NodeId,
        incarnation: u64,
    },
    Deliver {
        id: u64,
        from: Addr,
        to: Addr,
        payload: Payload,
    },
    PersistDone {
        node: NodeId,
        incarnation: u64,
    },
    /// The snapshot encode of [`SimNode::encoding`] finished.
    Encoded {
        node: NodeId,
        incarnation: u64,
    },
    /// The snapshot decode of [`SimNode::decoding`] finished.
    Decoded {
        node: NodeId,
        incarnation: u64,
    },
    ClientWake {
        client: u64,
    },
    ClientTimeout {
        client: u64,
        seq: u64,
        attempt: u32,
    },
    ClientRetry {
        client: u64,
        seq: u64,
    },
    Fault(FaultAction),
    Hostile,
}

/// One simulated process and its disk.
#[derive(Clone, Debug)]
pub struct SimNode {
    pub id: NodeId,
    /// None while crashed.
    pub server: Option<KvServer>,
    pub storage: MemStorage,
    pub paused: bool,
    inbox: VecDeque<(u64, Addr, Payload)>,
    /// Batches taken from the server whose persist step has not finished, oldest first.
    persist_queue: VecDeque<Ready>,
    persist_busy_until: u64,
    incarnation: u64,
    /// Clock drift in per mille; see [`FaultAction::SetClockDrift`].
    pub drift_per_mille: i32,
    /// Ticks that passed while paused: a paused process's clock keeps running, so it sees
    /// them all at once when it resumes, before any message that waited.
    missed_ticks: u64,
    /// Paused with its clock stopped ([`FaultAction::Freeze`]): no ticks are missed.
    frozen: bool,
    /// For a node added by a membership change: the configuration it started with.
    joined: Option<super::membership::JoinPoint>,
    /// A received snapshot being decoded "in the background" (see [`SimConfig::decode_us`]).
    decoding: Option<crate::server::InstallJob>,
    /// The node's own snapshot being encoded "in the background" (see [`SimConfig::encode_us`]).
    encoding: Option<crate::server::SnapshotJob>,
}

/// Clock drift is bounded so a tick interval stays positive and meaningful.
pub const MAX_DRIFT_PER_MILLE: i32 = 500;

impl SimNode {
    pub fn is_up(&self) -> bool {
        self.server.is_some()
    }
    pub fn role(&self) -> Option<Role> {
        self.server.as_ref().map(|s| s.raft().role())
    }
    /// Batches taken from the server whose persist step has not finished.
    pub fn persists_pending(&self) -> usize {
        self.persist_queue.len()
    }
}

pub struct Simulator {
    pub(super) cfg: SimConfig,
    pub(super) now: u64,
    pub(super) rng: Rng,
    queue: EventQueue<Action>,
    next_msg_id: u64,
    pub(super) nodes: BTreeMap<NodeId, SimNode>,
    pub(super) network: Network,
    pub(super) clients: BTreeMap<u64, Client>,
    pub(super) history: Vec<Operation>,
    /// Serializable reads: outside the linearizable history, held to a weaker model.
    pub(super) serializable_reads: Vec<Operation>,
    pub(super) checker: Checker,
    trace: Vec<TraceEvent>,
    pub(super) holds: Holds,
    /// Deliveries scheduled and not yet done (messages on the wire).
    in_flight: u64,
    events_processed: u64,
    messages_sent: u64,
    pub(super) faults_stopped_at: Option<u64>,
    /// Session id -> the client that opened it, to route write replies.
    pub(super) session_owner: BTreeMap<u64, u64>,
    /// The configuration of the node whose batch is being observed, before the batch.
    counting_membership: Option<Arc<Membership>>,
    /// Present when `SimConfig::hostile_gap_us` is set.
    hostile: Option<HostilePeer>,
    /// While a hostile message's batch executes: its sender, whose protocol violation is the
    /// expected refusal rather than a failure.
    hostile_sender: Option<NodeId>,
}

/// What a message must not change when it is refused or dropped.
#[derive(Debug, PartialEq, Eq)]
struct Footprint {
    term: Term,
    vote: Option<NodeId>,
    role: Role,
    leader: Option<NodeId>,
    commit: Index,
    applied: Index,
    last: (Index, Term),
}

impl Footprint {
    fn of(raft: &RaftNode) -> Self {
        Footprint {
            term: raft.term(),
            vote: raft.vote(),
            role: raft.role(),
            leader: raft.leader(),
            commit: raft.commit_index(),
            applied: raft.applied_index(),
            last: (raft.log().last_index(), raft.log().last_term()),
        }
    }
}

/// Reads are tagged `READ_TOKEN_BASE + client address`, a range no session id (a log index)
/// reaches in a simulated run, so a read's reply never goes to a session's owner.
pub const READ_TOKEN_BASE: u64 = 1 << 40;

fn read_token(client: u64) -> u64 {
    READ_TOKEN_BASE + client
}

/// A tick interval as seen by a clock `per_mille` fast (shorter) or slow (longer).
fn drifted_tick(tick_us: u64, per_mille: i32) -> u64 {
    let rate = (1000 + per_mille as i64).max(1) as u64;
    (tick_us * 1000 / rate).max(1)
}

impl Simulator {
    pub fn new(cfg: SimConfig) -> Self {
        assert!(
            (1..=MAX_NODES).contains(&cfg.nodes),
            "the simulator runs 1 to {MAX_NODES} nodes"
        );
        let mut rng = Rng::new(cfg.seed);
        let network = Network::new(cfg.network.clone());
        let hostile = cfg.hostile_gap_us.map(|_| HostilePeer::new(cfg.seed));
        let mut sim = Simulator {
            now: 0,
            queue: EventQueue::default(),
            next_msg_id: 0,
            nodes: BTreeMap::new(),
            network,
            clients: BTreeMap::new(),
            history: Vec::new(),
            serializable_reads: Vec::new(),
            checker: Checker::for_config(&cfg.raft),
            trace: Vec::new(),
            holds: Holds::default(),
            in_flight: 0,
            events_processed: 0,
            messages_sent: 0,
            faults_stopped_at: None,
            session_owner: BTreeMap::new(),
            counting_membership: None,
            hostile,
            hostile_sender: None,
            rng: rng.fork(),
            cfg,
        };
        for id in sim.voters() {
            let seed = rng.next_u64();
            let server = sim.new_server(id, MemStorage::default(), seed);
            sim.insert_node(id, server, None);
            let phase = rng.below(sim.cfg.tick_us);
            sim.schedule(
                phase,
                Action::Tick {
                    node: id,
                    incarnation: 0,
                },
            );
        }
        if let Some((lo, _)) = sim.cfg.hostile_gap_us {
            sim.schedule(lo, Action::Hostile);
        }
        sim.start_workload();
        sim
    }

    /// The bootstrap voters: nodes 1 to `cfg.nodes`.
    pub fn voters(&self) -> Vec<NodeId> {
        (1..=self.cfg.nodes as u64).collect()
    }

    /// Every node the run has started (removed ones keep running).
    /// The configuration node `id` has applied, if it is running.
    pub(super) fn membership_of(&self, id: NodeId) -> Option<Arc<Membership>> {
        self.nodes
            .get(&id)
            .and_then(|n| n.server.as_ref())
            .map(|s| s.membership_shared())
    }

    pub fn node_ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    pub(super) fn insert_node(
        &mut self,
        id: NodeId,
        server: KvServer,
        joined: Option<super::membership::JoinPoint>,
    ) {
        self.nodes.insert(
            id,
            SimNode {
                id,
                server: Some(server),
                storage: MemStorage::default(),
                paused: false,
                inbox: VecDeque::new(),
                persist_queue: VecDeque::new(),
                persist_busy_until: 0,
                incarnation: 0,
                drift_per_mille: 0,
                missed_ticks: 0,
                frozen: false,
                joined,
                decoding: None,
                encoding: None,
            },
        );
    }

    fn new_server(&self, id: NodeId, storage: MemStorage, seed: u64) -> KvServer {
        let mut server = match self.nodes.get(&id).and_then(|n| n.joined.as_ref()) {
            Some(at) => Self::joined_server(id, at, &self.cfg.raft, storage, seed),
            None => KvServer::new(
                id,
                self.voters(),
                self.cfg.raft.clone(),
                storage.load(),
                seed,
            ),
        };
        // The simulator runs the snapshot jobs itself, as the native node does on its
        // background thread; here they finish before the node's next input.
        server.set_background_jobs(true);
        server
    }

    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }
    pub fn now(&self) -> u64 {
        self.now
    }
    pub fn nodes(&self) -> &BTreeMap<NodeId, SimNode> {
        &self.nodes
    }
    pub fn network(&self) -> &Network {
        &self.network
    }
    pub fn trace(&self) -> &[TraceEvent] {
        &self.trace
    }
    /// Hands over the events recorded so far and forgets them, so a long-running viewer (the
    /// playground) can keep a bounded window instead of the whole run.
    pub fn take_trace(&mut self) -> Vec<TraceEvent> {
        std::mem::take(&mut self.trace)
    }
    pub fn history(&self) -> &[Operation] {
        &self.history
    }
    pub fn serializable_reads(&self) -> &[Operation] {
        &self.serializable_reads
    }
    pub fn checker(&self) -> &Checker {
        &self.checker
    }
    pub fn events_processed(&self) -> u64 {
        self.events_processed
    }
    pub fn messages_sent(&self) -> u64 {
        self.messages_sent
    }
    /// Messages on the wire: sent, not yet delivered or dropped (held messages are not on it).
    pub fn messages_in_flight(&self) -> u64 {
        self.in_flight
    }
    /// Whether no node has a persist step in progress.
    pub fn disks_idle(&self) -> bool {
        self.nodes.values().all(|n| n.persist_queue.is_empty())
    }
    /// When the last persist step in progress finishes (now if none is).
    pub fn disks_idle_at(&self) -> u64 {
        self.nodes
            .values()
            .filter(|n| !n.persist_queue.is_empty())
            .map(|n| n.persist_busy_until)
            .fold(self.now, u64::max)
    }
    /// Messages on the wire as `(arrival time, from, to)`, in no particular order.
    pub(super) fn on_the_wire(&self) -> impl Iterator<Item = (u64, Addr, Addr)> + '_ {
        self.queue.iter().filter_map(|(time, action)| match action {
            Action::Deliver { from, to, .. } => Some((time, *from, *to)),
            _ => None,
        })
    }
    /// Time of the next scheduled event, if any.
    pub fn next_event_time(&self) -> Option<u64> {
        self.queue.peek_time()
    }

    /// Asks node `at` to hand its leadership to `to` (or its most caught-up voter) and returns
    /// the target, or why it was refused.
    pub fn transfer_leadership(
        &mut self,
        at: NodeId,
        to: Option<NodeId>,
    ) -> Result<NodeId, String> {
        let node = self
            .nodes
            .get_mut(&at)
            .ok_or_else(|| format!("n{at} is not in the cluster"))?;
        if node.paused {
            return Err(format!("n{at} is paused"));
        }
        let server = node
            .server
            .as_mut()
            .ok_or_else(|| format!("n{at} is down"))?;
        let target = server
            .transfer_leadership(to)
            .map_err(|e| format!("n{at} refused: {e}"))?;
        self.drive(at);
        Ok(target)
    }

    /// The current leader with the highest term among live nodes, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .values()
            .filter_map(|n| n.server.as_ref().map(|s| (n, s)))
            .filter(|(n, s)| s.raft().is_leader() && !n.paused)
            .max_by_key(|(_, s)| s.raft().term())
            .map(|(n, _)| n.id)
    }

    pub(super) fn schedule(&mut self, at: u64, action: Action) {
        if matches!(action, Action::Deliver { .. }) {
            self.in_flight += 1;
        }
        self.queue.push(at, action);
    }

    pub fn schedule_fault(&mut self, at: u64, action: FaultAction) {
        self.schedule(at, Action::Fault(action));
    }

    pub(super) fn record(&mut self, kind: TraceKind) {
        if self.cfg.record_trace {
            self.trace.push(TraceEvent {
                time: self.now,
                kind,
            });
        }
    }

    /// Processes the next scheduled event. Returns false when nothing is left to do.
    pub fn step(&mut self) -> bool {
        let Some((time, action)) = self.queue.pop() else {
            return false;
        };
        debug_assert!(time >= self.now, "virtual time went backwards");
        self.now = time;
        self.events_processed += 1;
        match action {
            Action::Tick { node, incarnation } => self.on_tick(node, incarnation),
            Action::Deliver {
                id,
                from,
                to,
                payload,
            } => {
                self.in_flight = self.in_flight.saturating_sub(1);
                self.on_deliver(id, from, to, payload)
            }
            Action::PersistDone { node, incarnation } => self.on_persist_done(node, incarnation),
            Action::Decoded { node, incarnation } => self.on_decoded(node, incarnation),
            Action::Encoded { node, incarnation } => self.on_encoded(node, incarnation),
            Action::ClientWake { client } => self.client_wake(client),
            Action::ClientTimeout {
                client,
                seq,
                attempt,
            } => self.client_timeout(client, seq, attempt),
            Action::ClientRetry { client, seq } => self.client_retry(client, seq),
            Action::Fault(f) => self.apply_fault(f),
            Action::Hostile => self.on_hostile(),
        }
        true
    }

    /// Runs every event scheduled up to and including `time`, then sets the clock to it.
    pub fn run_until(&mut self, time: u64) {
        while self.next_event_time().is_some_and(|t| t <= time) {
            self.step();
        }
        self.now = self.now.max(time);
    }

    fn on_tick(&mut self, id: NodeId, incarnation: u64) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        if node.incarnation != incarnation || node.server.is_none() {
            return;
        }
        let interval = drifted_tick(self.cfg.tick_us, node.drift_per_mille);
        let next = self.now + interval;
        self.schedule(
            next,
            Action::Tick {
                node: id,
                incarnation,
            },
        );
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        if node.paused {
            if !node.frozen {
                node.missed_ticks += 1;
            }
            return;
        }
        if let Some(s) = node.server.as_mut() {
            s.tick();
        }
        self.drive(id);
    }

    fn on_deliver(&mut self, id: u64, from: Addr, to: Addr, payload: Payload) {
        if let Some(payload) = self.hold_if_held(id, from, to, payload) {
            self.deliver_now(id, from, to, payload);
        }
    }

    /// A message arrives at `to`: dropped if the link is cut or the node down, queued while it
    /// is paused, handled otherwise.
    pub(super) fn deliver_now(&mut self, id: u64, from: Addr, to: Addr, payload: Payload) {
        match to {
            Addr::Client(c) => {
                self.record(TraceKind::Delivered { id, from, to });
                if let Payload::Reply { seq, outcome } = payload {
                    self.client_reply(c, seq, outcome);
                }
            }
            Addr::Node(n) => {
                if let Addr::Node(f) = from {
                    if self.network.is_cut(f, n) {
                        self.record_drop(id, from, to, DropReason::Partitioned);
                        return;
                    }
                }
                let Some(node) = self.nodes.get_mut(&n) else {
                    return;
                };
                if node.server.is_none() {
                    self.record_drop(id, from, to, DropReason::Crashed);
                    return;
                }
                if node.paused {
                    if node.inbox.len() >= MAX_INBOX {
                        self.record_drop(id, from, to, DropReason::InboxFull);
                    } else {
                        node.inbox.push_back((id, from, payload));
                    }
                    return;
                }
                self.record(TraceKind::Delivered { id, from, to });
                self.input(n, from, payload);
            }
        }
    }

    /// Hands one message to a running node's server and executes what it produces.
    fn input(&mut self, n: NodeId, from: Addr, payload: Payload) {
        // The votes a candidate can count are those delivered to it.
        if let (Addr::Node(f), Payload::Raft(Message::RequestVoteResponse { term, granted })) =
            (&from, &payload)
        {
            if *granted {
                self.checker.on_vote(*f, n, *term);
            }
        }
        let Some(server) = self.nodes.get_mut(&n).and_then(|x| x.server.as_mut()) else {
            return;
        };
        match (from, payload) {
            (Addr::Node(f), Payload::Raft(msg)) => server.step(Envelope {
                from: f,
                to: n,
                msg,
            }),
            (Addr::Client(c), Payload::Request { seq, op }) => {
                server.handle_client(ClientRequest {
                    client_id: c,
                    seq,
                    op,
                })
            }
            (Addr::Client(_), Payload::Write { session, seq, op }) => {
                server.handle_client(ClientRequest {
                    client_id: session,
                    seq,
                    op,
                })
            }
            (
                Addr::Client(c),
                Payload::Read {
                    seq,
                    key,
                    consistency,
                },
            ) => server.handle_read(read_token(c), seq, key, consistency),
            _ => {}
        }
        self.drive(n);
    }

    /// Takes the server's batch, records its events and queues its persist step. Batches
    /// persist one after another, so a later batch never becomes durable before an earlier one.
    pub(super) fn drive(&mut self, id: NodeId) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        let Some(server) = node.server.as_mut() else {
            return;
        };
        let before = server.membership_shared();
        let mut background_decode = None;
        if let Some(job) = server.take_install_job() {
            if self.cfg.decode_us.is_some() {
                background_decode = Some(job);
            } else {
                let decoded = job.decode();
                server.snapshot_decoded(job, decoded);
            }
        }
        let mut ready = server.take_ready();
        let mut background_encode = None;
        if let Some(job) = server.take_snapshot_job() {
            if self.cfg.encode_us.is_some() {
                background_encode = Some(job);
            } else {
                server.snapshot_encoded(job.index, job.encode());
                ready.merge(server.take_ready());
            }
        }
        let incarnation = node.incarnation;
        let encoding = background_encode.is_some();
        if background_encode.is_some() {
            node.encoding = background_encode;
        }
        if let (Some(job), Some((lo, hi))) = (background_decode, self.cfg.decode_us) {
            node.decoding = Some(job);
            let done = self.now + self.rng.range(lo, hi);
            self.schedule(
                done,
                Action::Decoded {
                    node: id,
                    incarnation,
                },
            );
        }
        if let (true, Some((lo, hi))) = (encoding, self.cfg.encode_us) {
            let done = self.now + self.rng.range(lo, hi);
            self.schedule(
                done,
                Action::Encoded {
                    node: id,
                    incarnation,
                },
            );
        }
        self.execute(id, before, ready);
    }

    /// Sends a batch's messages, queues its persist step and observes its events. `before` is
    /// the node's configuration before the batch.
    fn execute(&mut self, id: NodeId, before: Arc<Membership>, mut ready: Ready) {
        if ready.is_empty() {
            return;
        }
        // The commit checks count with the configuration of the moment: the one before this
        // batch applied a change, or the one after (a leader whose quorum shrank commits under
        // the new one; one change is in flight at a time, so there is no third).
        self.counting_membership = Some(before);
        let events = std::mem::take(&mut ready.events);
        // Installing a snapshot moves the node's applied index; the checker learns it when the
        // batch is durable, in order with the entries applied by earlier batches.
        ready.events = events
            .iter()
            .filter(|e| matches!(e, NodeEvent::SnapshotInstalled { .. }))
            .cloned()
            .collect();
        // A leader's replication leaves before its own write is durable (see `crate::ready`).
        for env in std::mem::take(&mut ready.messages) {
            self.send(
                Addr::Node(env.from),
                Addr::Node(env.to),
                Payload::Raft(env.msg),
            );
        }
        let fsync = if ready.needs_sync() {
            self.rng.range(self.cfg.fsync_us.0, self.cfg.fsync_us.1) + self.fsync_stall(id)
        } else {
            0
        };
        let cost = fsync + ready.applied.len() as u64 * self.cfg.apply_us_per_entry;
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        let done = node.persist_busy_until.max(self.now) + cost;
        node.persist_busy_until = done;
        node.persist_queue.push_back(ready);
        let incarnation = node.incarnation;
        self.schedule(
            done,
            Action::PersistDone {
                node: id,
                incarnation,
            },
        );
        for e in events {
            self.observe(id, e);
        }
        self.counting_membership = None;
    }

    /// The hostile peer's turn: one implausible message (under a member's id or a stranger's)
    /// to a running node, which must refuse it without changing its state, answering, or
    /// writing.
    fn on_hostile(&mut self) {
        let (Some((lo, hi)), Some(peer)) = (self.cfg.hostile_gap_us, self.hostile.as_mut()) else {
            return;
        };
        let next = self.now + peer.rng.range(lo, hi);
        let targets: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|n| n.server.is_some() && !n.paused)
            .map(|n| n.id)
            .collect();
        let target = targets
            .get(peer.rng.below(targets.len() as u64) as usize)
            .copied();
        self.schedule(next, Action::Hostile);
        let Some(target) = target else {
            return;
        };
        let others: Vec<NodeId> = self.voters().into_iter().filter(|&v| v != target).collect();
        let (Some(peer), Some(server)) = (
            self.hostile.as_mut(),
            self.nodes.get_mut(&target).and_then(|n| n.server.as_mut()),
        ) else {
            return;
        };
        let before = Footprint::of(server.raft());
        let (sender, msg) = peer.next_message(before.term, &others);
        peer.stats.sent += 1;
        let from = match sender {
            Sender::Outsider => OUTSIDER,
            Sender::Spoofed(id) => id,
        };
        let shown = format!("{} {} from n{from}", msg.kind(), msg.summary());
        server.step(Envelope {
            from,
            to: target,
            msg,
        });
        let after = Footprint::of(server.raft());
        let mut ready = server.take_ready();
        let refusals = ready
            .events
            .iter()
            .filter(|e| matches!(e, NodeEvent::ProtocolViolation { from: f, .. } if *f == from))
            .count();
        let answered = {
            let mut rest = ready.clone();
            rest.events
                .retain(|e| !matches!(e, NodeEvent::ProtocolViolation { .. }));
            !rest.is_empty()
        };
        let expected = 1;
        match sender {
            Sender::Spoofed(_) if refusals == 1 => peer.stats.refused += 1,
            Sender::Outsider if refusals == 1 => peer.stats.dropped += 1,
            _ => {}
        }
        if before != after || answered || refusals != expected {
            let d = format!(
                "n{target} took hostile {shown}: {refusals} refusals (want {expected}), \
                 answered or wrote: {answered}, before {before:?}, after {after:?}"
            );
            self.checker.fail(self.now, "hostile input refused", d);
        }
        self.hostile_sender = Some(from);
        let Some(membership) = self.membership_of(target) else {
            return;
        };
        self.execute(target, membership, std::mem::take(&mut ready));
        self.hostile_sender = None;
    }

    /// What the hostile peer sent and what it got; None without a hostile peer.
    pub fn hostile_stats(&self) -> Option<&HostileStats> {
        self.hostile.as_ref().map(|h| &h.stats)
    }

    /// Extra time a persist step takes when the disk stalls (seeded). While faults are active a
    /// stalled node may be crashed inside the stall, before the write is durable: the window in
    /// which anything counted or acknowledged ahead of the disk is lost.
    fn fsync_stall(&mut self, id: NodeId) -> u64 {
        let rate = self.cfg.slow_fsync_rate;
        if rate <= 0.0 || !self.rng.chance(rate) {
            return 0;
        }
        let stall = self
            .rng
            .range(self.cfg.slow_fsync_us.0, self.cfg.slow_fsync_us.1);
        let crash = self.cfg.crash_on_critical_event;
        if crash > 0.0 && self.faults_stopped_at.is_none() && self.rng.chance(crash) {
            let at = self.now + self.rng.range(0, stall);
            let back_at = at + self.rng.range(1_000, 300_000);
            self.schedule(at, Action::Fault(FaultAction::Crash(id)));
            self.schedule(back_at, Action::Fault(FaultAction::Restart(id)));
        }
        stall
    }

    /// Commit means durable on a majority of voters (etcd #14370): when a leader advances its
    /// commit index, the entry there must already be on the simulated disks of a quorum.
    fn check_commit_durable(&mut self, leader: NodeId, index: crate::types::Index) {
        let before = self.counting_membership.clone();
        let Some(term) = self
            .nodes
            .get(&leader)
            .and_then(|n| n.server.as_ref())
            .and_then(|s| s.raft().log().term(index))
        else {
            return;
        };
        // The quorum of the configuration the leader counts with at this moment.
        let Some(membership) = self.membership_of(leader) else {
            return;
        };
        let holds = |id: NodeId| {
            self.nodes
                .get(&id)
                .is_some_and(|n| n.storage.holds(index, term))
        };
        if !membership.has_quorum(holds) && !before.is_some_and(|m| m.has_quorum(holds)) {
            let holders: Vec<NodeId> = self
                .nodes
                .values()
                .filter(|n| n.storage.holds(index, term))
                .map(|n| n.id)
                .collect();
            let d = format!(
                "n{leader} committed {index}@{term} while only {holders:?} hold it on disk (configuration {membership})"
            );
            self.checker.fail(self.now, "commit durable on a quorum", d);
        }
    }

    /// Feeds a node's own events to the checkers and the trace.
    fn observe(&mut self, id: NodeId, e: NodeEvent) {
        let now = self.now;
        if let Some(s) = self.nodes.get(&id).and_then(|n| n.server.as_ref()) {
            let log = s.raft().log();
            match &e {
                NodeEvent::RoleChanged {
                    to: Role::Leader,
                    term,
                    ..
                } => {
                    self.checker.on_leader(now, id, *term, log);
                    self.checker.on_leader_votes(now, s.raft(), *term);
                }

                NodeEvent::CommitAdvanced { from, to } => {
                    let term = s.raft().term();
                    let leading = s.raft().is_leader();
                    self.checker.on_commit(now, id, term, (*from, *to), log);
                    if leading {
                        self.check_commit_durable(id, *to);
                    }
                }
                // A change the leader logged on its own: checked like an operator's.
                NodeEvent::LearnerPromoting { .. } => {
                    self.checker.on_conf_change_logged(now, s.raft());
                }
                NodeEvent::ProtocolViolation { from, .. } if self.hostile_sender == Some(*from) => {
                }
                NodeEvent::ProtocolViolation { from, detail } => {
                    let d = format!("n{id} refused a message from n{from}: {detail}");
                    self.checker.fail(now, "protocol", d);
                }
                NodeEvent::SnapshotTaken { index, .. }
                | NodeEvent::SnapshotInstalled { index, .. } => {
                    let installed = matches!(e, NodeEvent::SnapshotInstalled { .. });
                    match s.raft().snapshot().filter(|x| x.meta.last_index == *index) {
                        Some(snap) => self.checker.on_snapshot(now, id, snap, installed, s.kv()),
                        None => self.checker.fail(
                            now,
                            "snapshot",
                            format!("n{id} reported snapshot {index} it does not hold"),
                        ),
                    }
                }
                _ => {}
            }
        }
        self.maybe_crash_after(id, &e);
        self.maybe_isolate_after_lease(id, &e);
        self.record(TraceKind::Node { node: id, event: e });
    }

    fn maybe_crash_after(&mut self, id: NodeId, e: &NodeEvent) {
        let rate = self.cfg.crash_on_critical_event;
        if rate <= 0.0 || self.faults_stopped_at.is_some() {
            return;
        }
        let is_vote = matches!(
            e,
            NodeEvent::VoteCast {
                granted: true,
                pre_vote: false,
                ..
            }
        );
        let critical = match e {
            _ if is_vote => true,
            // A leader that dies right after its election leaves an unreplicated no-op behind:
            // the divergent logs that Figure 8 is made of.
            NodeEvent::RoleChanged {
                to: Role::Leader, ..
            } => true,
            NodeEvent::CommitAdvanced { .. } => {
                self.nodes.get(&id).and_then(SimNode::role) == Some(Role::Leader)
            }
            // Crashes around taking, receiving and installing snapshots: before the batch that
            // saves it is durable (lost), or right after (the restart loads it).
            NodeEvent::SnapshotTaken { .. }
            | NodeEvent::SnapshotInstalled { .. }
            | NodeEvent::SnapshotChunkReceived { .. } => true,
            _ => false,
        };
        if critical && self.rng.chance(rate) {
            let at = self.now + self.rng.range(0, 2_000);
            let back_at = at + self.rng.range(1_000, 600_000);
            // A vote is forgotten only by a crash; a leader's fresh entries are stranded best
            // by isolation.
            if is_vote || self.rng.chance(0.5) {
                self.schedule(at, Action::Fault(FaultAction::Crash(id)));
                self.schedule(back_at, Action::Fault(FaultAction::Restart(id)));
            } else {
                // Isolation also stops what the node already sent: messages still in flight
                // are dropped at delivery, unlike after a crash.
                let rest: Vec<NodeId> = self.nodes.keys().copied().filter(|&n| n != id).collect();
                let groups = vec![vec![id], rest];
                self.schedule(at, Action::Fault(FaultAction::Partition(groups)));
                self.schedule(back_at, Action::Fault(FaultAction::Heal));
            }
        }
    }

    fn maybe_isolate_after_lease(&mut self, id: NodeId, e: &NodeEvent) {
        let rate = self.cfg.isolate_on_lease;
        if rate <= 0.0 || self.faults_stopped_at.is_some() || self.network.is_isolated(id) {
            return;
        }
        let lease = matches!(
            e,
            NodeEvent::LeaseRead { .. } | NodeEvent::ReadConfirmed { .. }
        );
        if lease && self.rng.chance(rate) {
            let rest: Vec<NodeId> = self.nodes.keys().copied().filter(|&n| n != id).collect();
            let back_at = self.now + self.rng.range(300_000, 1_500_000);
            self.schedule(
                self.now,
                Action::Fault(FaultAction::Partition(vec![vec![id], rest])),
            );
            self.schedule(back_at, Action::Fault(FaultAction::Heal));
        }
    }

    /// Whether node `id` can finish a background job scheduled in `incarnation` now: not if
    /// it crashed since (the job died with it), and not while it is paused (`again` is
    /// scheduled for the next tick: a paused process finishes the job once it runs again).
    fn job_may_finish(&mut self, id: NodeId, incarnation: u64, again: Action) -> bool {
        let tick_us = self.cfg.tick_us;
        let Some(node) = self.nodes.get(&id) else {
            return false;
        };
        if node.incarnation != incarnation {
            return false;
        }
        if node.paused {
            self.schedule(self.now + tick_us, again);
            return false;
        }
        true
    }

    /// A background decode finished: the node installs the snapshot.
    fn on_decoded(&mut self, id: NodeId, incarnation: u64) {
        let again = Action::Decoded {
            node: id,
            incarnation,
        };
        if !self.job_may_finish(id, incarnation, again) {
            return;
        }
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        let (Some(job), Some(server)) = (node.decoding.take(), node.server.as_mut()) else {
            return;
        };
        let decoded = job.decode();
        server.snapshot_decoded(job, decoded);
        self.drive(id);
    }

    /// A background encode finished: the node saves the snapshot and compacts.
    fn on_encoded(&mut self, id: NodeId, incarnation: u64) {
        let again = Action::Encoded {
            node: id,
            incarnation,
        };
        if !self.job_may_finish(id, incarnation, again) {
            return;
        }
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        let (Some(job), Some(server)) = (node.encoding.take(), node.server.as_mut()) else {
            return;
        };
        let data = job.encode();
        server.snapshot_encoded(job.index, data);
        self.drive(id);
    }

    fn on_persist_done(&mut self, id: NodeId, incarnation: u64) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        if node.incarnation != incarnation {
            return;
        }
        let Some(ready) = node.persist_queue.pop_front() else {
            return;
        };
        let is_leader = node.role() == Some(Role::Leader);
        for op in &ready.persist {
            node.storage.apply(op);
        }
        if let (Some(persist_id), Some(server)) = (ready.persist_id, node.server.as_mut()) {
            server.on_persisted(persist_id);
        }
        for op in &ready.persist {
            match op {
                PersistOp::Append(es) => {
                    if let (Some(f), Some(l)) = (es.first(), es.last()) {
                        let (first, last, term) = (f.index, l.index, l.term);
                        self.record(TraceKind::Persisted {
                            node: id,
                            first,
                            last,
                            term,
                        });
                    }
                }
                PersistOp::TruncateFrom(from) => {
                    if is_leader {
                        let d = format!("leader n{id} truncated its log from {from}");
                        self.checker.fail(self.now, "leader append-only", d);
                    }
                    self.record(TraceKind::Truncated {
                        node: id,
                        from: *from,
                    });
                }
                PersistOp::HardState(hs) => self.checker.on_term(self.now, id, hs.term),
                PersistOp::SaveSnapshot(snap) => {
                    self.checker.on_snapshot_saved(id, snap.meta.last_index);
                    let oldest = self
                        .nodes
                        .values()
                        .map(|n| n.storage.snapshot_index())
                        .min();
                    self.checker.forget_reference_before(oldest.unwrap_or(0));
                    self.record(TraceKind::SnapshotSaved {
                        node: id,
                        index: snap.meta.last_index,
                        term: snap.meta.last_term,
                        bytes: snap.data.len() as u64,
                    });
                }
                PersistOp::CompactLog(through) => self.record(TraceKind::LogCompacted {
                    node: id,
                    through: *through,
                }),
            }
        }
        for e in &ready.events {
            if let NodeEvent::SnapshotInstalled { index, .. } = e {
                self.checker.on_install_durable(self.now, id, *index);
            }
        }
        for env in ready.persisted_messages {
            self.send(
                Addr::Node(env.from),
                Addr::Node(env.to),
                Payload::Raft(env.msg),
            );
        }
        let node_term = self
            .nodes
            .get(&id)
            .and_then(|n| n.server.as_ref())
            .map(|s| s.raft().term());
        for a in ready.applied {
            let entry = crate::types::Entry {
                term: a.term,
                index: a.index,
                payload: match (&a.request, &a.conf_change) {
                    (Some(r), _) => crate::types::EntryPayload::Command(r.clone()),
                    (None, Some(cc)) => crate::types::EntryPayload::ConfChange(cc.clone()),
                    (None, None) => crate::types::EntryPayload::Noop,
                },
            };
            let term = node_term.unwrap_or(entry.term);
            self.checker.on_applied(self.now, id, term, &entry);
            self.record(TraceKind::Applied {
                node: id,
                index: a.index,
                term: a.term,
                op: a.request.map(|r| r.op),
                result: a.result,
            });
        }
        for r in ready.replies {
            let to = self.reply_address(r.client_id, r.seq);
            let payload = Payload::Reply {
                seq: r.seq,
                outcome: r.outcome,
            };
            self.send(Addr::Node(id), Addr::Client(to), payload);
        }
        // The notice may have committed entries (a leader counting itself).
        self.drive(id);
    }

    pub(super) fn send(&mut self, from: Addr, to: Addr, payload: Payload) {
        self.next_msg_id += 1;
        self.messages_sent += 1;
        let id = self.next_msg_id;
        let delays = match (from, to) {
            (Addr::Node(a), Addr::Node(b)) => {
                if self.network.is_cut(a, b) {
                    self.record_send(id, from, to, self.now, &payload);
                    self.record_drop(id, from, to, DropReason::Partitioned);
                    return;
                }
                match self.network.fate(a, b, &mut self.rng) {
                    Fate::Drop => {
                        self.record_send(id, from, to, self.now, &payload);
                        self.record_drop(id, from, to, DropReason::Random);
                        return;
                    }
                    Fate::Deliver(d) => d,
                }
            }
            // Client links are reliable and short: clients see faults through the nodes.
            _ => vec![self.rng.range(200, 1_000)],
        };
        self.record_send(id, from, to, self.now + delays[0], &payload);
        // A duplicate gets a copy; the last delivery takes the payload itself.
        let (&last, copies) = delays
            .split_last()
            .expect("a delivered message has a delay");
        for &d in copies {
            let payload = payload.clone();
            self.schedule(
                self.now + d,
                Action::Deliver {
                    id,
                    from,
                    to,
                    payload,
                },
            );
        }
        self.schedule(
            self.now + last,
            Action::Deliver {
                id,
                from,
                to,
                payload,
            },
        );
    }

    fn record_drop(&mut self, id: u64, from: Addr, to: Addr, reason: DropReason) {
        self.record(TraceKind::Dropped {
            id,
            from,
            to,
            reason,
        });
    }

    fn record_send(&mut self, id: u64, from: Addr, to: Addr, deliver_at: u64, p: &Payload) {
        if self.cfg.record_trace {
            self.record(TraceKind::Sent {
                id,
                from,
                to,
                deliver_at,
                payload: p.clone(),
            });
        }
    }

    pub fn apply_fault(&mut self, f: FaultAction) {
        match f {
            FaultAction::Crash(n) => self.crash(n),
            FaultAction::Restart(n) => self.restart(n),
            FaultAction::Pause(n) | FaultAction::Freeze(n) => {
                let frozen = matches!(f, FaultAction::Freeze(_));
                if let Some(node) = self.nodes.get_mut(&n).filter(|x| x.is_up() && !x.paused) {
                    node.paused = true;
                    node.frozen = frozen;
                    self.record(TraceKind::Paused { node: n });
                }
            }
            FaultAction::Resume(n) => self.resume(n),
            FaultAction::CutLink(a, b) => {
                self.network.cut_link(a, b);
                self.record(TraceKind::LinkCut { from: a, to: b });
            }
            FaultAction::RestoreLink(a, b) => {
                self.network.restore_link(a, b);
                self.record(TraceKind::LinkRestored { from: a, to: b });
            }
            FaultAction::Partition(groups) => {
                self.network.partition(&groups);
                self.record(TraceKind::Partitioned { groups });
            }
            FaultAction::Heal => {
                self.network.heal();
                self.record(TraceKind::Healed);
            }
            FaultAction::SetNetwork(c) => {
                let kind = TraceKind::NetworkChanged {
                    drop_rate_pct: (c.drop_rate * 100.0).round() as u32,
                    latency_ms: (
                        (c.latency_us.0 / 1000) as u32,
                        (c.latency_us.1 / 1000) as u32,
                    ),
                };
                self.network.config = c;
                self.record(kind);
            }
            FaultAction::SetLinkLatency(a, b, range) => {
                self.network.set_link_latency(a, b, range);
                let (lo, hi) = self.network.link_latency(a, b);
                self.record(TraceKind::LinkLatency {
                    from: a,
                    to: b,
                    latency_ms: ((lo / 1000) as u32, (hi / 1000) as u32),
                });
            }
            FaultAction::StopFaults => self.stop_faults(),
            FaultAction::TransferLeadership { from, to } => {
                if let Some(at) = from.or_else(|| self.leader()) {
                    // A refusal (not the leader, to itself, ...) is part of the fault space.
                    let _ = self.transfer_leadership(at, to);
                }
            }
            FaultAction::Member(op) => self.change_membership(op),
            FaultAction::ElectionTimeout(n) => self.force_election_timeout(n),
            FaultAction::DropMessage(id) => self.drop_message(id),
            FaultAction::SetClockDrift(n, per_mille) => {
                let per_mille = per_mille.clamp(-MAX_DRIFT_PER_MILLE, MAX_DRIFT_PER_MILLE);
                if let Some(node) = self.nodes.get_mut(&n) {
                    node.drift_per_mille = per_mille;
                    self.record(TraceKind::ClockDrift { node: n, per_mille });
                }
            }
        }
    }

    fn force_election_timeout(&mut self, n: NodeId) {
        let runs = |x: &SimNode| !x.paused && x.role().is_some_and(|r| r != Role::Leader);
        if !self.nodes.get(&n).is_some_and(runs) {
            return;
        }
        self.record(TraceKind::TimeoutForced { node: n });
        if let Some(server) = self.nodes.get_mut(&n).and_then(|x| x.server.as_mut()) {
            server.force_election_timeout();
        }
        self.drive(n);
    }

    /// Takes every scheduled delivery of message `id` off the wire (and out of a held link).
    fn drop_message(&mut self, id: u64) {
        let mut dropped = None;
        let wire = self
            .queue
            .remove_where(|a| matches!(a, Action::Deliver { id: x, .. } if *x == id));
        for a in wire {
            if let Action::Deliver { from, to, .. } = a {
                self.in_flight = self.in_flight.saturating_sub(1);
                dropped = Some((from, to));
            }
        }
        if let Some(held) = self.take_held(id) {
            dropped = Some(held);
        }
        if let Some((from, to)) = dropped {
            self.record_drop(id, from, to, DropReason::ByHand);
        }
    }

    fn crash(&mut self, n: NodeId) {
        let Some(node) = self.nodes.get_mut(&n) else {
            return;
        };
        if node.server.is_none() {
            return;
        }
        node.server = None;
        node.paused = false;
        node.missed_ticks = 0;
        node.inbox.clear();
        node.persist_queue.clear();
        node.persist_busy_until = 0;
        node.decoding = None;
        node.encoding = None;
        node.incarnation += 1;
        self.record(TraceKind::Crashed { node: n });
    }

    fn restart(&mut self, n: NodeId) {
        let seed = self.rng.next_u64();
        let Some(node) = self.nodes.get(&n) else {
            return;
        };
        if node.server.is_some() {
            return;
        }
        let server = self.new_server(n, node.storage.clone(), seed);
        let term = server.raft().term();
        let incarnation = node.incarnation;
        self.checker.on_term(self.now, n, term);
        self.checker
            .on_restart(self.now, n, server.raft(), server.kv());
        let restored = server
            .raft()
            .snapshot()
            .map(|s| TraceKind::RestoredSnapshot {
                node: n,
                index: s.meta.last_index,
                term: s.meta.last_term,
                log_last: server.raft().log().last_index(),
            });
        if let Some(node) = self.nodes.get_mut(&n) {
            node.server = Some(server);
        }
        self.record(TraceKind::Restarted { node: n });
        if let Some(kind) = restored {
            self.record(kind);
        }
        let at = self.now + self.rng.below(self.cfg.tick_us);
        self.schedule(
            at,
            Action::Tick {
                node: n,
                incarnation,
            },
        );
    }

    fn resume(&mut self, n: NodeId) {
        let Some(node) = self.nodes.get_mut(&n).filter(|x| x.paused) else {
            return;
        };
        node.paused = false;
        node.frozen = false;
        let inbox = std::mem::take(&mut node.inbox);
        let missed = std::mem::take(&mut node.missed_ticks);
        self.record(TraceKind::Resumed { node: n });
        if let Some(server) = self.nodes.get_mut(&n).and_then(|x| x.server.as_mut()) {
            for _ in 0..missed {
                server.tick();
            }
        }
        self.drive(n);
        for (id, from, payload) in inbox {
            self.record(TraceKind::Delivered {
                id,
                from,
                to: Addr::Node(n),
            });
            self.input(n, from, payload);
        }
    }

    fn stop_faults(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for n in ids {
            self.resume(n);
            self.restart(n);
        }
        self.network.heal();
        let mut c = self.network.config.clone();
        c.drop_rate = 0.0;
        c.duplicate_rate = 0.0;
        c.long_delay_rate = 0.0;
        self.network.config = c;
        self.faults_stopped_at = Some(self.now);
        self.record(TraceKind::FaultsStopped);
    }

    /// Every node's log as it is now: in memory for live nodes, on disk for crashed ones.
    /// Compacted entries are not included: see [`Simulator::log_views`] for where each starts.
    pub fn logs(&self) -> Vec<(NodeId, Vec<crate::types::Entry>)> {
        self.log_views()
            .into_iter()
            .map(|(n, _, entries)| (n, entries))
            .collect()
    }

    /// Every node's log as `(node, snapshot index, entries after it)`.
    pub fn log_views(&self) -> Vec<(NodeId, crate::types::Index, Vec<crate::types::Entry>)> {
        self.nodes
            .values()
            .map(|n| match &n.server {
                Some(s) => {
                    let log = s.raft().log();
                    (n.id, log.snapshot_index(), log.entries().to_vec())
                }
                None => (n.id, n.storage.offset, n.storage.entries.clone()),
            })
            .collect()
    }

    pub fn check_log_matching(&mut self) {
        let logs = self.log_views();
        let views: Vec<(NodeId, &[crate::types::Entry])> =
            logs.iter().map(|(n, _, l)| (*n, l.as_slice())).collect();
        let now = self.now;
        self.checker.check_log_matching(now, &views);
    }

    /// Which client a reply goes to. Reads and session openings are tagged with the client's
    /// own address (reads offset by [`READ_TOKEN_BASE`]); writes carry their session id, whose
    /// owner the workload registered.
    fn reply_address(&self, client_id: u64, seq: u64) -> u64 {
        if client_id >= READ_TOKEN_BASE {
            client_id - READ_TOKEN_BASE
        } else if seq == 0 {
            client_id
        } else {
            self.session_owner
                .get(&client_id)
                .copied()
                .unwrap_or(client_id)
        }
    }

    pub fn fail(&mut self, property: &str, detail: String) {
        let now = self.now;
        self.checker.fail(now, property, detail);
    }
}
