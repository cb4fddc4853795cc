//! One Raft node: state, the step function and role transitions.
//!
//! The node is driven by three kinds of input: [`RaftNode::tick`] (time passes), [`RaftNode::step`]
//! (a peer's message arrives) and [`RaftNode::propose`] (a leader is asked to append). Each only
//! changes memory and queues effects; [`RaftNode::take_ready`] hands them to the executor (see
//! [`crate::ready`] for the order they must be carried out in). Elections live in
//! [`crate::election`], log replication and commit in [`crate::replication`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use crate::config::Config;
use crate::log::RaftLog;
use crate::membership::Membership;
use crate::message::{Envelope, Message};
use crate::progress::Progress;
use crate::read::ReadState;
use crate::ready::{NodeEvent, PersistOp, Ready};
use crate::rng::Rng;
use crate::snapshot::{IncomingSnapshot, Snapshot};
use crate::transfer::PendingTransfer;
use crate::types::{Entry, EntryPayload, HardState, Index, NodeId, Role, Term};

/// Panics with the node's state when one of its own invariants breaks. These guard against bugs
/// in this crate, never against bad input (input is refused, see `NodeEvent::ProtocolViolation`).
macro_rules! invariant {
    ($node:expr, $cond:expr, $($fmt:tt)+) => {
        if !$cond {
            panic!(
                "raft invariant violated on node {}: {} [{}]",
                $node.id,
                format!($($fmt)+),
                $node.state_summary()
            );
        }
    };
}
pub(crate) use invariant;

/// What a node recovers from stable storage at start-up: its hard state, its latest snapshot
/// and the log entries after it (`entries` start at the snapshot's last index + 1, or at 1
/// without a snapshot). A restart loads the snapshot and replays only that tail.
#[derive(Clone, Debug, Default)]
pub struct Persisted {
    pub hard_state: HardState,
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
}

/// What one batch of persist work makes durable, remembered until the executor reports it.
#[derive(Clone, Debug)]
pub(crate) struct UnstableBatch {
    pub(crate) id: u64,
    /// The last log position the batch writes (index, term), if it ends with one.
    pub(crate) last: Option<(Index, Term)>,
    /// The term of the hard state the batch writes, if it writes one.
    pub(crate) hard_state_term: Option<Term>,
}

#[derive(Clone, Debug)]
pub struct RaftNode {
    pub(crate) id: NodeId,
    pub(crate) config: Config,
    /// The configuration produced by the applied log (see [`crate::membership`]).
    /// Shared: the simulator's checkers keep the configuration before each batch, on every
    /// event; a reference count instead of a copy of six sets.
    pub(crate) membership: Arc<Membership>,
    /// The index of the entry (or snapshot) that produced `membership`; configuration entries
    /// at or below it are not applied again (a node that joined started with a later one).
    pub(crate) membership_index: Index,
    /// The index of the latest configuration change this leader knows of in its log: no new
    /// change is accepted until it is applied (one change in flight). A new leader sets it to
    /// its last index, since it cannot tell which entries there are changes (etcd-raft).
    pub(crate) pending_conf_index: Index,
    /// A leader's payload bytes after its commit index, for `Config::max_uncommitted_bytes`:
    /// counted when an entry is proposed, released when it commits, recounted on election.
    pub(crate) uncommitted_bytes: u64,
    /// The commit index last written with the hard state because a configuration applied;
    /// see [`HardState::commit`].
    pub(crate) conf_commit: Index,
    pub(crate) term: Term,
    pub(crate) vote: Option<NodeId>,
    pub(crate) role: Role,
    pub(crate) leader: Option<NodeId>,
    pub(crate) log: RaftLog,
    pub(crate) commit: Index,
    pub(crate) applied: Index,
    /// The highest commit index the current leader has told this follower (appends carry the
    /// leader's commit, heartbeats at most the follower's match): how far behind the cluster
    /// this node is, for readiness. 0 until the leader's first message in its term.
    pub(crate) leader_commit: Index,
    /// Votes received in the current (pre-)election, granted or not.
    pub(crate) votes: BTreeMap<NodeId, bool>,
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    pub(crate) election_elapsed: u32,
    pub(crate) heartbeat_elapsed: u32,
    pub(crate) randomized_timeout: u32,
    pub(crate) rng: Rng,
    /// The hard state last handed to the executor, to emit it only when it changes.
    pub(crate) persisted_hard_state: HardState,
    /// The highest log index known durable on this node's own disk (the executor said so with
    /// [`RaftNode::on_persisted`]). A leader counts itself toward a commit quorum up to here
    /// only; truncating the log lowers it at once.
    pub(crate) durable_index: Index,
    /// The term of the latest hard state known durable. A leader's messages may leave before
    /// their batch is durable only when this is its current term.
    pub(crate) durable_term: Term,
    /// Batches handed to the executor and not yet reported durable, oldest first.
    pub(crate) unstable: VecDeque<UnstableBatch>,
    /// The id the next batch with persist work gets (ids grow by one per such batch).
    pub(crate) next_persist_id: u64,
    /// Set by proposals; followers are sent the new entries once per `take_ready`, so a burst of
    /// proposals in one executor turn travels in one append per follower.
    pub(crate) pending_broadcast: bool,
    /// The latest snapshot, taken or installed; the log starts right after it. Leaders send it
    /// to followers that need the entries it replaced.
    pub(crate) snapshot: Option<Arc<Snapshot>>,
    /// A follower's partly received InstallSnapshot transfer.
    pub(crate) incoming_snapshot: Option<IncomingSnapshot>,
    /// A completely received snapshot (and its sender) waiting for the state machine layer to
    /// validate and install it ([`RaftNode::take_received_snapshot`]).
    pub(crate) received_snapshot: Option<(NodeId, Snapshot)>,
    /// The transfer received completely and being installed: (leader's term, snapshot index,
    /// length). Chunks of it that arrive meanwhile are answered "have it all" instead of
    /// starting it over.
    pub(crate) installing: Option<(Term, Index, u64)>,
    /// Reads waiting for confirmation, the lease and the node's tick clock; see [`crate::read`].
    pub(crate) reads: ReadState,
    /// With lease reads on, a node that just started refuses votes for an election timeout as
    /// if it had just heard from a leader: it may have acknowledged a leader's heartbeat right
    /// before it crashed, and that leader's lease counts on the refusal.
    pub(crate) quiet_after_start: bool,
    /// A leadership transfer this node started and whose outcome it has not seen yet; see
    /// [`crate::transfer`].
    pub(crate) transfer: Option<PendingTransfer>,
    /// Set while `become_candidate` runs for a `TimeoutNow`: the vote requests carry the
    /// transfer flag.
    pub(crate) campaign_for_transfer: bool,
    /// The term in which this node sent `TimeoutNow`: it holds no lease for the rest of it.
    pub(crate) lease_void_term: Option<Term>,
    pub(crate) ready: Ready,
}

impl RaftNode {
    /// Starts (or restarts) a node from its persisted state. `seed` feeds the election-timer
    /// randomness; the caller owns it so a run can be replayed.
    pub fn new(
        id: NodeId,
        voters: impl IntoIterator<Item = NodeId>,
        config: Config,
        persisted: Persisted,
        seed: u64,
    ) -> Self {
        let membership = Membership::bootstrap(voters, BTreeMap::new());
        assert!(
            membership.voters.contains(&id),
            "node {id} is not among the voters"
        );
        Self::with_membership(id, membership, 0, config, persisted, seed)
    }

    /// Starts (or restarts) a node whose configuration at log index `membership_index` was
    /// `membership`: a bootstrap configuration has index 0; a node that joins a running cluster
    /// starts with the configuration that added it and that entry's index (configuration
    /// entries at or below it are then not applied again). A persisted snapshot past that index
    /// brings its own, and the log up to the persisted commit index is applied again before
    /// the node does anything, so a restart recovers exactly the configuration it had.
    pub fn with_membership(
        id: NodeId,
        membership: Membership,
        membership_index: Index,
        config: Config,
        persisted: Persisted,
        seed: u64,
    ) -> Self {
        let (offset, offset_term) = persisted
            .snapshot
            .as_ref()
            .map_or((0, 0), |s| (s.meta.last_index, s.meta.last_term));
        let (membership, membership_index) = match &persisted.snapshot {
            Some(s) if s.meta.last_index >= membership_index => {
                (s.meta.membership.clone(), s.meta.last_index)
            }
            _ => (membership, membership_index),
        };
        let log = RaftLog::restore(offset, offset_term, persisted.entries);
        let commit = persisted
            .hard_state
            .commit
            .min(log.last_index())
            .max(offset);
        let mut node = RaftNode {
            id,
            config,
            membership: Arc::new(membership),
            membership_index,
            pending_conf_index: 0,
            uncommitted_bytes: 0,
            conf_commit: persisted.hard_state.commit,
            term: persisted.hard_state.term,
            vote: persisted.hard_state.vote,
            role: Role::Follower,
            leader: None,
            log,
            // Everything a snapshot covers was committed and applied before it was taken; the
            // state machine layer restores it from the same snapshot and applies the rest.
            commit,
            applied: offset,
            leader_commit: 0,
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_timeout: 0,
            rng: Rng::new(seed),
            persisted_hard_state: persisted.hard_state,
            durable_index: 0,
            durable_term: persisted.hard_state.term,
            unstable: VecDeque::new(),
            next_persist_id: 1,
            pending_broadcast: false,
            snapshot: persisted.snapshot.map(Arc::new),
            incoming_snapshot: None,
            received_snapshot: None,
            installing: None,
            reads: ReadState::default(),
            quiet_after_start: false,
            transfer: None,
            campaign_for_transfer: false,
            lease_void_term: None,
            ready: Ready::default(),
        };
        node.quiet_after_start = node.config.lease_reads;
        // Everything recovered was read back from the disk.
        node.durable_index = node.log.last_index();
        node.reset_election_timer();
        node
    }

    pub fn id(&self) -> NodeId {
        self.id
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn term(&self) -> Term {
        self.term
    }
    pub fn vote(&self) -> Option<NodeId> {
        self.vote
    }
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn commit_index(&self) -> Index {
        self.commit
    }
    /// The commit index of the cluster as far as this node knows: its own if it leads, the
    /// highest its leader has sent (never below its own) if it follows, None without a leader.
    pub fn leader_commit(&self) -> Option<Index> {
        match self.leader {
            Some(l) if l == self.id => Some(self.commit),
            Some(_) => Some(self.leader_commit.max(self.commit)),
            None => None,
        }
    }
    pub fn applied_index(&self) -> Index {
        self.applied
    }
    pub fn log(&self) -> &RaftLog {
        &self.log
    }
    /// The voters of the applied configuration (the incoming half while joint).
    pub fn voters(&self) -> &BTreeSet<NodeId> {
        &self.membership.voters
    }
    /// The configuration in force: the one the applied log produced.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }
    /// The configuration in force, shared (an O(1) copy that stays as it is when a later
    /// change applies).
    pub fn membership_shared(&self) -> Arc<Membership> {
        Arc::clone(&self.membership)
    }
    /// The log index of the entry (or snapshot) that produced [`RaftNode::membership`].
    pub fn membership_index(&self) -> Index {
        self.membership_index
    }
    /// A leader's view of a peer's log: (match index, next index).
    pub fn progress_of(&self, id: NodeId) -> Option<(Index, Index)> {
        self.progress
            .get(&id)
            .map(|p| (p.match_index, p.next_index))
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }
    /// Ticks since the election timer was last reset, and the timeout it is running towards.
    pub fn election_timer(&self) -> (u32, u32) {
        (self.election_elapsed, self.randomized_timeout)
    }
    /// The latest snapshot this node took or installed.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_deref()
    }
    /// Last index covered by the latest snapshot (0 without one).
    pub fn snapshot_index(&self) -> Index {
        self.log.snapshot_index()
    }
    pub fn progress(&self, peer: NodeId) -> Option<&Progress> {
        self.progress.get(&peer)
    }
    /// The highest log index this node knows is on its own disk.
    pub fn durable_index(&self) -> Index {
        self.durable_index
    }

    /// Every other member: the leader replicates to voters and learners alike.
    pub(crate) fn peers(&self) -> Vec<NodeId> {
        let me = self.id;
        self.membership
            .members()
            .into_iter()
            .filter(|&p| p != me)
            .collect()
    }

    /// The other voters of either half: whom a (pre-)candidate asks for votes.
    pub(crate) fn voter_peers(&self) -> Vec<NodeId> {
        let me = self.id;
        let mut to = self.membership.all_voters();
        if self
            .config
            .has_mutation(crate::mutation::Mutation::LearnerVoteCounts)
        {
            to.extend(self.membership.learners.iter().copied());
        }
        to.into_iter().filter(|&p| p != me).collect()
    }

    pub(crate) fn state_summary(&self) -> String {
        format!(
            "role={} term={} vote={:?} leader={:?} snap={} last={}@{} commit={} applied={}",
            self.role,
            self.term,
            self.vote,
            self.leader,
            self.log.snapshot_index(),
            self.log.last_index(),
            self.log.last_term(),
            self.commit,
            self.applied
        )
    }

    /// Time passes by one tick.
    pub fn tick(&mut self) {
        self.election_elapsed = self.election_elapsed.saturating_add(1);
        self.reads.ticks += 1;
        if self.election_elapsed >= self.config.election_ticks {
            self.quiet_after_start = false;
        }
        self.expire_reads();
        self.tick_transfer();
        self.step_down_if_removed();
        if self.role == Role::Leader {
            self.tick_leader();
        } else if self.election_elapsed >= self.randomized_timeout && self.can_campaign() {
            // A node that may not campaign (a learner, a removed node, one with configuration
            // changes to apply first) lets its timer run on: past an election timeout without
            // a leader it votes for whoever asks.
            self.election_elapsed = 0;
            self.on_election_timeout();
        }
        self.settle_transfer();
    }

    /// The election timer runs out now instead of at its randomized time (an operator's or a
    /// teacher's "time out now"). What follows is the ordinary timeout path: Pre-Vote first
    /// when configured, so a node forced to time out under a healthy leader is refused. A
    /// leader has no election timer: nothing happens.
    pub fn force_election_timeout(&mut self) {
        if self.role == Role::Leader {
            return;
        }
        self.election_elapsed = 0;
        self.on_election_timeout();
    }

    fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
        self.age_outstanding_appends();
        if self.election_elapsed >= self.config.election_ticks {
            self.election_elapsed = 0;
            if self.config.check_quorum && !self.quorum_recently_active() {
                self.emit(NodeEvent::CheckQuorumFailed { term: self.term });
                self.become_follower(self.term, None);
                return;
            }
        }
        self.maybe_auto_promote();
    }

    /// Handles one message from a peer. Messages addressed to another node are dropped; the
    /// transport authenticates the cluster, not the membership.
    pub fn step(&mut self, env: Envelope) {
        self.step_message(env);
        self.settle_transfer();
    }

    fn step_message(&mut self, env: Envelope) {
        if env.to != self.id || env.from == self.id {
            return;
        }
        // Messages are taken from any sender, members or not (as etcd-raft does): a node that
        // joined, or restarted with an old configuration, may not know the leader yet, nor a
        // candidate that needs its vote. A removed node cannot disrupt the cluster all the
        // same: it is not a voter, so it does not campaign once it knows; before it knows, its
        // log lacks the committed entry that removed it, so no quorum grants it a (pre-)vote,
        // and Check-Quorum's leader lease makes members ignore it while a leader is alive.
        // The leader ignores answers of nodes it does not replicate to (no progress entry).
        if let Err(e) = env.msg.check_plausible(self.term) {
            self.emit(NodeEvent::ProtocolViolation {
                from: env.from,
                detail: e.to_string(),
            });
            return;
        }
        let from = env.from;
        let msg = env.msg;
        let term = msg.term();

        if term > self.term {
            match &msg {
                // Pre-votes ask about a future term; answering them must not move ours.
                Message::PreVote { .. } => {}
                // Granted pre-vote responses echo our proposed term, which we have not taken.
                Message::PreVoteResponse { granted: true, .. } => {}
                Message::RequestVote {
                    transfer: false, ..
                } if self.in_leader_lease() => {
                    // A live leader exists (we heard from it within the election timeout):
                    // a node that was partitioned away must not depose it (thesis §4.2.3).
                    // A transfer vote is that leader's own request and skips this.
                    return;
                }
                Message::AppendEntries { .. }
                | Message::Heartbeat { .. }
                | Message::InstallSnapshot { .. } => {
                    self.become_follower(term, Some(from));
                }
                _ => self.become_follower(term, None),
            }
        } else if term < self.term {
            self.step_stale(from, &msg);
            return;
        }

        match msg {
            Message::PreVote {
                term,
                last_log_index,
                last_log_term,
            } => self.handle_pre_vote(from, term, last_log_index, last_log_term),
            Message::RequestVote {
                term,
                last_log_index,
                last_log_term,
                ..
            } => self.handle_request_vote(from, term, last_log_index, last_log_term),
            Message::PreVoteResponse { term, granted } => {
                self.handle_vote_response(from, term, granted, true)
            }
            Message::RequestVoteResponse { term, granted } => {
                self.handle_vote_response(from, term, granted, false)
            }
            Message::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
                ..
            } => self.handle_append(from, prev_log_index, prev_log_term, entries, leader_commit),
            Message::AppendEntriesResponse { result, .. } => {
                self.handle_append_response(from, result)
            }
            Message::Heartbeat { commit, ctx, .. } => self.handle_heartbeat(from, commit, ctx),
            Message::HeartbeatResponse { ctx, .. } => self.handle_heartbeat_response(from, ctx),
            Message::InstallSnapshot {
                term,
                meta,
                offset,
                data,
                done,
            } => self.handle_snapshot_chunk(from, term, meta, offset, data, done),
            Message::InstallSnapshotResponse {
                snapshot_index,
                result,
                ..
            } => self.handle_snapshot_response(from, snapshot_index, result),
            Message::ReadIndex { ctx, .. } => self.handle_read_index(from, ctx),
            Message::ReadIndexResponse { ctx, index, .. } => {
                self.handle_read_index_response(ctx, index)
            }
            Message::TimeoutNow { .. } => self.handle_timeout_now(from),
        }
    }

    /// A message from an older term. Stale leaders are told the current term so they step down;
    /// a stale pre-candidate is refused so it learns the term; everything else is ignored.
    fn step_stale(&mut self, from: NodeId, msg: &Message) {
        match msg {
            Message::AppendEntries { .. }
            | Message::Heartbeat { .. }
            | Message::InstallSnapshot { .. } => {
                let term = self.term;
                self.send(from, Message::HeartbeatResponse { term, ctx: 0 });
            }
            Message::PreVote { .. } => self.send(
                from,
                Message::PreVoteResponse {
                    term: self.term,
                    granted: false,
                },
            ),
            _ => {}
        }
    }

    /// The executor saw the connection from `peer` close. When `peer` is this follower's leader,
    /// it has most likely crashed (a killed process closes its sockets at once): instead of
    /// waiting out a whole election timeout of silence, the follower forgets the leader and
    /// campaigns within one heartbeat interval (randomized, so the followers that all saw the
    /// close do not split the vote). Liveness only: pre-vote still asks a quorum first, and a
    /// follower that still hears the leader refuses it, so a connection that merely dropped
    /// does not depose a live leader.
    ///
    /// Ignored with lease reads on: a leader's lease counts on its followers refusing votes for
    /// a whole election timeout after they last heard from it, which a dropped connection must
    /// not cut short.
    pub fn peer_disconnected(&mut self, peer: NodeId) {
        if self.role != Role::Follower || self.leader != Some(peer) || self.config.lease_reads {
            return;
        }
        self.become_follower(self.term, None);
        let jitter = self.config.heartbeat_ticks.max(1);
        // Past the election timeout: the lease this node gave the leader is over.
        self.election_elapsed = self.config.election_ticks;
        self.randomized_timeout =
            self.config.election_ticks + 1 + self.rng.below(jitter as u64) as u32;
    }

    /// Whether this node heard from a leader within the minimum election timeout.
    pub(crate) fn in_leader_lease(&self) -> bool {
        self.config.check_quorum
            && (self.leader.is_some() || self.quiet_after_start)
            && self.election_elapsed < self.config.election_ticks
    }

    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        let from = self.role;
        invariant!(self, term >= self.term, "term would go back to {term}");
        if term > self.term || self.leader != leader {
            self.leader_commit = 0;
        }
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        let leader_changed = self.leader != leader;
        if from != Role::Follower || leader_changed {
            self.abort_reads("leadership changed");
        }
        self.leader = leader;
        self.role = Role::Follower;
        self.votes.clear();
        self.progress.clear();
        self.pending_broadcast = false;
        self.reset_election_timer();
        if from != Role::Follower || leader_changed {
            self.emit(NodeEvent::RoleChanged {
                from,
                to: Role::Follower,
                term: self.term,
                leader,
            });
        }
    }

    pub(crate) fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        let base = self.config.election_ticks;
        self.randomized_timeout = base + self.rng.below(base as u64) as u32;
    }

    pub(crate) fn send(&mut self, to: NodeId, msg: Message) {
        self.ready.messages.push(Envelope {
            from: self.id,
            to,
            msg,
        });
    }

    pub(crate) fn emit(&mut self, event: NodeEvent) {
        self.ready.events.push(event);
    }

    pub(crate) fn persist(&mut self, op: PersistOp) {
        self.ready.persist.push(op);
    }

    /// Hands over everything queued since the last call. Newly committed entries are returned in
    /// `Ready::applied` only by the KV layer; here they are available through
    /// [`RaftNode::take_committed`].
    pub fn take_ready(&mut self) -> Ready {
        if self.pending_broadcast {
            self.pending_broadcast = false;
            self.maybe_commit();
            self.broadcast_append();
        }
        self.start_read_round();
        let hs = self.hard_state_to_persist();
        if hs != self.persisted_hard_state {
            self.persisted_hard_state = hs;
            // Hard state goes first so a vote is never behind the message that reveals it.
            self.ready.persist.insert(0, PersistOp::HardState(hs));
        }
        if !self.ready.persist.is_empty() {
            self.track_unstable_batch();
        }
        self.hold_messages_until_durable();
        invariant!(
            self,
            self.commit <= self.log.last_index(),
            "commit beyond the log"
        );
        invariant!(
            self,
            self.durable_index <= self.log.last_index(),
            "durable index beyond the log"
        );
        invariant!(self, self.applied <= self.commit, "applied beyond commit");
        invariant!(
            self,
            self.log.snapshot_index() <= self.applied,
            "log compacted beyond the applied index"
        );
        std::mem::take(&mut self.ready)
    }

    /// Gives this batch's persist work an id and remembers what it makes durable.
    fn track_unstable_batch(&mut self) {
        let id = self.next_persist_id;
        self.next_persist_id += 1;
        let mut last = None;
        let mut hard_state_term = None;
        for op in &self.ready.persist {
            match op {
                PersistOp::HardState(hs) => hard_state_term = Some(hs.term),
                PersistOp::Append(es) => last = es.last().map(|e| (e.index, e.term)).or(last),
                PersistOp::TruncateFrom(i) => {
                    if last.is_some_and(|(l, _)| l >= *i) {
                        last = None;
                    }
                }
                PersistOp::SaveSnapshot(s) => {
                    if last.is_none_or(|(l, _)| l < s.meta.last_index) {
                        last = Some((s.meta.last_index, s.meta.last_term));
                    }
                }
                PersistOp::CompactLog(_) => {}
            }
        }
        self.unstable.push_back(UnstableBatch {
            id,
            last,
            hard_state_term,
        });
        self.ready.persist_id = Some(id);
    }

    /// Splits the batch's messages: a leader's replication whose term is durable may leave at
    /// once; everything else (acknowledgements, votes, anything from a term not yet durable)
    /// waits for the batch to be durable.
    fn hold_messages_until_durable(&mut self) {
        let leading = self.role == Role::Leader && self.durable_term == self.term;
        let ack_early = self
            .config
            .has_mutation(crate::mutation::Mutation::FollowerAcksBeforeDurable);
        let term = self.term;
        let (now, later): (Vec<Envelope>, Vec<Envelope>) = std::mem::take(&mut self.ready.messages)
            .into_iter()
            .partition(|env| match &env.msg {
                Message::AppendEntries { .. }
                | Message::Heartbeat { .. }
                | Message::InstallSnapshot { .. } => leading && env.msg.term() == term,
                Message::AppendEntriesResponse { .. } => ack_early,
                _ => false,
            });
        self.ready.messages = now;
        self.ready.persisted_messages.extend(later);
    }

    /// The executor reports that the batch `persist_id` (and every earlier one) is durable.
    /// An entry counts as durable only if the log still holds it: a notice about entries a
    /// later batch truncated is ignored (the ABA case). Unknown or repeated ids change nothing.
    pub fn on_persisted(&mut self, persist_id: u64) {
        while let Some(b) = self.unstable.front() {
            if b.id > persist_id {
                break;
            }
            if let Some(t) = b.hard_state_term {
                self.durable_term = self.durable_term.max(t);
            }
            if let Some((index, term)) = b.last {
                if index > self.durable_index && self.log.term(index) == Some(term) {
                    self.durable_index = index;
                }
            }
            self.unstable.pop_front();
        }
        if self.role == Role::Leader {
            self.maybe_commit();
        }
    }

    /// Removes every log entry from `index` on, in memory and (queued) on disk; what was known
    /// durable there no longer is.
    pub(crate) fn truncate_log_from(&mut self, index: Index) {
        self.log.truncate_from(index);
        self.persist(PersistOp::TruncateFrom(index));
        self.durable_index = self.durable_index.min(index.saturating_sub(1));
    }

    fn hard_state_to_persist(&self) -> HardState {
        let vote = if self
            .config
            .has_mutation(crate::mutation::Mutation::VoteReplyBeforePersist)
        {
            None
        } else {
            self.vote
        };
        HardState {
            term: self.term,
            vote,
            commit: self.conf_commit,
        }
    }

    /// Whether effects are queued that the next `take_ready` would hand out.
    pub(crate) fn has_queued_work(&self) -> bool {
        self.pending_broadcast || !self.ready.is_empty()
    }

    /// Committed entries not yet handed out for applying, marking them applied. Configuration
    /// changes among them take effect here, in log order.
    pub fn take_committed(&mut self) -> Vec<Entry> {
        if self.applied >= self.commit {
            return Vec::new();
        }
        let upto = match self.config.max_applied_per_ready {
            0 => self.commit,
            max => self.commit.min(self.applied + max),
        };
        let entries = self.log.slice(self.applied + 1, upto).to_vec();
        invariant!(
            self,
            entries.len() as u64 == upto - self.applied,
            "committed entries missing from the log"
        );
        for e in &entries {
            self.applied = e.index;
            if let EntryPayload::ConfChange(cc) = &e.payload {
                self.apply_conf_entry(e.index, cc);
            }
        }
        self.maybe_auto_leave();
        self.maybe_auto_promote();
        entries
    }
}
