//! Reads that skip the log: ReadIndex, leader leases and follower reads (Raft thesis §6.4).
//!
//! A read needs no log entry, only proof that the state it is answered from is at least as new
//! as every write acknowledged before the read arrived. The node hands out that proof as a
//! *read index*; the state machine layer answers once it has applied up to it.
//!
//! - **ReadIndex** (leader): record the commit index, confirm with one heartbeat round that a
//!   quorum still follows this leader, then the commit index is the read index. A leader serves
//!   no read before it has committed an entry of its own term (until then its commit index may
//!   be behind what an earlier leader acknowledged). One read round is in flight at a time and
//!   every read that arrives meanwhile shares the next (group commit for reads: under load one
//!   heartbeat round confirms hundreds of reads). Rounds are keyed by a sequence number the
//!   leader generates, never by anything a client sends (etcd once answered stale reads because
//!   client request ids were reused).
//! - **Lease** (leader, opt-in): followers refuse votes for an election timeout after they last
//!   heard from the leader (the vote-refusal lease of Check-Quorum). So for an election timeout
//!   after it *sent* heartbeats that a quorum acknowledged, no other leader can exist, and the
//!   leader answers without a round trip. Counted in the leader's ticks minus a margin for
//!   followers whose clocks run faster: the assumption is that clocks drift apart by less than
//!   that margin over one election timeout.
//! - **Follower reads**: a follower asks the leader for a read index (`ReadIndex` message), waits
//!   until it has applied that index, and answers from its own state.
//!
//! Every queue here is bounded: rounds expire after an election timeout without a quorum, and
//! at most [`MAX_PENDING_READS`] reads wait at once.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::kv::{ClientError, ReadConsistency};
use crate::message::Message;
use crate::mutation::Mutation;
use crate::node::RaftNode;
use crate::ready::NodeEvent;
use crate::types::{Index, NodeId, Role};

/// The caller's token for one read, echoed in its [`ReadResult`].
pub type ReadId = u64;

/// Reads a node keeps waiting for confirmation at once; more are refused.
pub const MAX_PENDING_READS: usize = 100_000;

/// A read whose fate is known: `Ok(index)` once the state machine has applied `index` it may be
/// answered from it; `Err` fails it (definitely: reads change nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadResult {
    pub id: ReadId,
    pub outcome: Result<Index, ClientError>,
}

/// Counters for metrics and the playground.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Heartbeat rounds that carried at least one read.
    pub rounds: u64,
    pub lease_hits: u64,
    /// Lease reads that fell back to a ReadIndex round because the lease had lapsed.
    pub lease_misses: u64,
    pub follower_reads: u64,
}

/// What a node's read machinery holds right now, for the playground's read queue and lease bar.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadView {
    /// Leader: reads waiting for this term's first commit (thesis §6.4 step 1).
    pub before_commit: usize,
    /// Leader: reads waiting for the next confirmation round (one round runs at a time).
    pub queued: usize,
    /// Leader: heartbeat rounds sent and not yet acknowledged by a quorum, oldest first.
    pub rounds: Vec<RoundView>,
    /// Follower: reads it asked the leader a read index for.
    pub asked: usize,
    /// Ticks of lease left (0 when the lease is not valid).
    pub lease_remaining: u64,
    /// How long a lease lasts, in ticks: the election timeout minus the drift margin.
    pub lease_ticks: u64,
    /// The election timeout in ticks (the lease plus its margin).
    pub election_ticks: u64,
}

/// One confirmation round in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoundView {
    /// The leader-generated sequence number its heartbeats carry (`ctx`).
    pub seq: u64,
    /// The read index the round will confirm.
    pub commit: Index,
    /// Nodes that acknowledged it, the leader included.
    pub acks: Vec<NodeId>,
    /// Reads that ride on it (0 for a plain heartbeat round).
    pub reads: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Requester {
    Local(ReadId),
    /// A follower's read, answered with a `ReadIndexResponse` carrying its `ctx`.
    Remote {
        from: NodeId,
        ctx: u64,
    },
}

#[derive(Clone, Debug)]
struct Round {
    seq: u64,
    sent_tick: u64,
    commit: Index,
    acks: BTreeSet<NodeId>,
    reads: Vec<Requester>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct ReadState {
    /// Ticks since the node started: the clock for leases and read timeouts.
    pub(crate) ticks: u64,
    next_seq: u64,
    /// Leader: heartbeat rounds not yet acknowledged by a quorum, oldest first.
    rounds: VecDeque<Round>,
    /// Leader: reads waiting for the next round, which starts at `take_ready`.
    queued: Vec<Requester>,
    /// Leader: reads that arrived before an entry of this term committed.
    before_commit: Vec<Requester>,
    /// Leader: the send tick of the newest round a quorum acknowledged in this term.
    lease_from: Option<u64>,
    /// Follower: reads asked of the leader, by ctx, with the tick they were asked at.
    asked: BTreeMap<u64, (ReadId, u64)>,
    results: Vec<ReadResult>,
    pub(crate) stats: ReadStats,
}

impl ReadState {
    fn pending(&self) -> usize {
        self.queued.len()
            + self.before_commit.len()
            + self.asked.len()
            + self.rounds.iter().map(|r| r.reads.len()).sum::<usize>()
    }
}

fn not_confirmed(reason: &str) -> ClientError {
    ClientError::ReadNotConfirmed {
        reason: reason.to_string(),
    }
}

impl RaftNode {
    /// Asks for a read index for read `id`. The answer arrives in
    /// [`RaftNode::take_read_results`], possibly after later steps. Serializable reads need no
    /// index and never come here.
    pub fn read_index(&mut self, id: ReadId, consistency: ReadConsistency) {
        if self.reads.pending() >= MAX_PENDING_READS {
            return self.read_done(id, Err(not_confirmed("too many reads pending")));
        }
        if consistency == ReadConsistency::Lease && !self.config.lease_reads {
            return self.read_done(id, Err(ClientError::LeaseReadsDisabled));
        }
        match self.role {
            Role::Leader => {
                if let (ReadConsistency::Lease, Some(to)) = (consistency, self.transfer_target()) {
                    return self.read_done(id, Err(ClientError::TransferInProgress { to }));
                }
                if consistency == ReadConsistency::Lease {
                    if self.lease_valid() {
                        self.reads.stats.lease_hits += 1;
                        let index = self.commit;
                        self.emit(NodeEvent::LeaseRead { index });
                        return self.read_done(id, Ok(index));
                    }
                    self.reads.stats.lease_misses += 1;
                }
                self.enqueue_read(Requester::Local(id));
            }
            Role::Follower if self.leader.is_some() => self.ask_leader(id),
            _ => self.read_done(id, Err(not_confirmed("no leader known"))),
        }
    }

    /// Read results since the last call.
    pub fn take_read_results(&mut self) -> Vec<ReadResult> {
        std::mem::take(&mut self.reads.results)
    }

    pub fn read_stats(&self) -> ReadStats {
        self.reads.stats
    }

    /// The read queue, rounds in flight and lease, as they are now.
    pub fn read_view(&self) -> ReadView {
        let r = &self.reads;
        ReadView {
            before_commit: r.before_commit.len(),
            queued: r.queued.len(),
            rounds: r
                .rounds
                .iter()
                .map(|x| RoundView {
                    seq: x.seq,
                    commit: x.commit,
                    acks: x.acks.iter().copied().collect(),
                    reads: x.reads.len(),
                })
                .collect(),
            asked: r.asked.len(),
            lease_remaining: self.lease_remaining(),
            lease_ticks: self.lease_ticks(),
            election_ticks: self.config.election_ticks as u64,
        }
    }

    /// Whether a lease read would be answered now without a round trip.
    pub fn lease_valid(&self) -> bool {
        self.role == Role::Leader
            && self.config.lease_reads
            && self.config.check_quorum
            && self.committed_in_term()
            && self.transfer.is_none()
            && self.lease_void_term != Some(self.term)
            && self
                .reads
                .lease_from
                .is_some_and(|from| self.reads.ticks < from + self.lease_ticks())
    }

    /// Ticks of lease left (0 when none), for the playground's lease bar.
    pub fn lease_remaining(&self) -> u64 {
        match self.reads.lease_from {
            Some(from) if self.lease_valid() => from + self.lease_ticks() - self.reads.ticks,
            _ => 0,
        }
    }

    /// How long a lease lasts: the election timeout minus the clock-drift margin.
    pub fn lease_ticks(&self) -> u64 {
        let election = self.config.election_ticks as u64;
        let margin = if self.config.has_mutation(Mutation::LeaseWithoutDriftMargin) {
            0
        } else {
            (election * self.config.lease_drift_margin_pct as u64).div_ceil(100)
        };
        election.saturating_sub(margin)
    }

    /// Ends the lease now; a later confirmed round renews it (unless `lease_valid` says no).
    pub(crate) fn revoke_lease(&mut self) {
        self.reads.lease_from = None;
    }

    /// Whether this leader's commit index is known to be current: an entry of its own term
    /// has committed (thesis §6.4 step 1).
    pub(crate) fn committed_in_term(&self) -> bool {
        self.log.term(self.commit) == Some(self.term)
    }

    fn read_done(&mut self, id: ReadId, outcome: Result<Index, ClientError>) {
        self.reads.results.push(ReadResult { id, outcome });
    }

    fn enqueue_read(&mut self, r: Requester) {
        if self.committed_in_term() || self.config.has_mutation(Mutation::ReadBeforeCommitInTerm) {
            self.reads.queued.push(r);
        } else {
            self.reads.before_commit.push(r);
        }
    }

    fn ask_leader(&mut self, id: ReadId) {
        let Some(leader) = self.leader else {
            return self.read_done(id, Err(not_confirmed("no leader known")));
        };
        self.reads.next_seq += 1;
        let ctx = self.reads.next_seq;
        self.reads.asked.insert(ctx, (id, self.reads.ticks));
        self.reads.stats.follower_reads += 1;
        let term = self.term;
        self.send(leader, Message::ReadIndex { term, ctx });
    }

    /// Called by `take_ready`: starts one confirmation round for every read queued since the
    /// last batch (they share it), after moving reads that waited for this term's first commit.
    pub(crate) fn start_read_round(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        if self.committed_in_term() && !self.reads.before_commit.is_empty() {
            let waiting = std::mem::take(&mut self.reads.before_commit);
            self.reads.queued.extend(waiting);
        }
        // One read round at a time: reads arriving meanwhile share the next one, started as
        // soon as this one is confirmed (group commit for reads).
        if self.reads.queued.is_empty() || self.reads.rounds.iter().any(|r| !r.reads.is_empty()) {
            return;
        }
        let reads = std::mem::take(&mut self.reads.queued);
        if self.config.has_mutation(Mutation::ReadWithoutConfirmation) {
            let commit = self.commit;
            for r in reads {
                self.confirm(r, commit);
            }
            return;
        }
        self.reads.stats.rounds += 1;
        let n = reads.len() as u64;
        let seq = self.open_round(reads);
        let commit = self.commit;
        self.emit(NodeEvent::ReadRoundStarted {
            seq,
            commit,
            reads: n,
        });
        self.send_heartbeats(seq);
        self.check_rounds();
    }

    /// Opens a heartbeat round (with or without reads) and returns its sequence number.
    pub(crate) fn open_round(&mut self, reads: Vec<Requester>) -> u64 {
        self.reads.next_seq += 1;
        let seq = self.reads.next_seq;
        let mut acks = BTreeSet::new();
        acks.insert(self.id);
        self.reads.rounds.push_back(Round {
            seq,
            sent_tick: self.reads.ticks,
            commit: self.commit,
            acks,
            reads,
        });
        seq
    }

    /// A follower acknowledged heartbeat round `ctx`: it still followed us after every round up
    /// to `ctx` began, so it counts for all of them.
    pub(crate) fn on_heartbeat_ack(&mut self, from: NodeId, ctx: u64) {
        for r in self.reads.rounds.iter_mut().filter(|r| r.seq <= ctx) {
            r.acks.insert(from);
        }
        self.check_rounds();
    }

    /// Confirms the newest round a quorum acknowledged, and every older one with it.
    fn check_rounds(&mut self) {
        let membership = &self.membership;
        let Some(pos) = self
            .reads
            .rounds
            .iter()
            .rposition(|r| membership.has_quorum(|id| r.acks.contains(&id)))
        else {
            return;
        };
        let confirmed: Vec<Round> = self.reads.rounds.drain(..=pos).collect();
        let newest = &confirmed[confirmed.len() - 1];
        let (seq, sent_tick) = (newest.seq, newest.sent_tick);
        self.reads.lease_from = Some(
            self.reads
                .lease_from
                .map_or(sent_tick, |t| t.max(sent_tick)),
        );
        for round in confirmed {
            if round.reads.is_empty() {
                continue;
            }
            let (index, n) = (round.commit, round.reads.len() as u64);
            self.emit(NodeEvent::ReadConfirmed {
                seq: round.seq.max(seq),
                index,
                reads: n,
            });
            for r in round.reads {
                self.confirm(r, index);
            }
        }
        self.start_read_round();
    }

    fn confirm(&mut self, r: Requester, index: Index) {
        match r {
            Requester::Local(id) => self.read_done(id, Ok(index)),
            Requester::Remote { from, ctx } => {
                let term = self.term;
                self.send(
                    from,
                    Message::ReadIndexResponse {
                        term,
                        ctx,
                        index: Some(index),
                    },
                );
            }
        }
    }

    fn refuse(&mut self, r: Requester, reason: &str) {
        match r {
            Requester::Local(id) => self.read_done(id, Err(not_confirmed(reason))),
            Requester::Remote { from, ctx } => {
                let term = self.term;
                self.send(
                    from,
                    Message::ReadIndexResponse {
                        term,
                        ctx,
                        index: None,
                    },
                );
            }
        }
    }

    /// Leader side: rounds that no quorum acknowledged within an election timeout fail their
    /// reads (the leader is probably cut off; Check-Quorum will depose it). Follower side:
    /// reads the leader did not answer within an election timeout fail.
    pub(crate) fn expire_reads(&mut self) {
        let now = self.reads.ticks;
        let timeout = self.config.election_ticks as u64;
        while self
            .reads
            .rounds
            .front()
            .is_some_and(|r| now >= r.sent_tick + timeout)
        {
            let Some(round) = self.reads.rounds.pop_front() else {
                break;
            };
            for r in round.reads {
                self.refuse(r, "no quorum confirmed leadership in time");
            }
        }
        self.start_read_round();
        let expired: Vec<u64> = self
            .reads
            .asked
            .iter()
            .filter(|(_, &(_, at))| now >= at + timeout)
            .map(|(&ctx, _)| ctx)
            .collect();
        for ctx in expired {
            if let Some((id, _)) = self.reads.asked.remove(&ctx) {
                self.read_done(id, Err(not_confirmed("the leader did not answer in time")));
            }
        }
    }

    /// Fails every read in flight: the node's role or leader changed, so neither its rounds nor
    /// the leader it asked can confirm them any more.
    pub(crate) fn abort_reads(&mut self, reason: &str) {
        let rounds = std::mem::take(&mut self.reads.rounds);
        let mut all: Vec<Requester> = rounds.into_iter().flat_map(|r| r.reads).collect();
        all.append(&mut self.reads.queued);
        all.append(&mut self.reads.before_commit);
        for r in all {
            // A deposed leader answers a follower's read only locally: the follower's own
            // leader change or timeout fails it.
            if let Requester::Local(id) = r {
                self.read_done(id, Err(not_confirmed(reason)));
            }
        }
        for (_, (id, _)) in std::mem::take(&mut self.reads.asked) {
            self.read_done(id, Err(not_confirmed(reason)));
        }
        self.reads.lease_from = None;
    }

    pub(crate) fn handle_read_index(&mut self, from: NodeId, ctx: u64) {
        let r = Requester::Remote { from, ctx };
        if self.role != Role::Leader {
            return self.refuse(r, "not the leader");
        }
        if self.reads.pending() >= MAX_PENDING_READS {
            return self.refuse(r, "too many reads pending");
        }
        self.enqueue_read(r);
        // Answered by the next round, which `take_ready` starts.
    }

    pub(crate) fn handle_read_index_response(&mut self, ctx: u64, index: Option<Index>) {
        let Some((id, _)) = self.reads.asked.remove(&ctx) else {
            return;
        };
        let outcome = match index {
            // The leader's commit index may be ahead of our log; we answer once we applied it.
            Some(i) => Ok(i),
            None => Err(not_confirmed("the leader refused the read")),
        };
        self.read_done(id, outcome);
    }
}
