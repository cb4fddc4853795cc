//! Leadership transfer (Raft thesis §3.10, etcd-raft's state machine).
//!
//! The leader is asked to hand over to a voter (or to the most caught-up one). It stops
//! accepting proposals and lease reads, and revokes its lease, so nothing it does can outlive
//! the handover. It catches the target up with ordinary appends; once the target's match index
//! equals the leader's last index it sends `TimeoutNow`. The target campaigns at once, skipping
//! Pre-Vote, and its `RequestVote` carries `transfer: true`, which makes voters skip the vote
//! lease (the Check-Quorum "heard from a leader recently" refusal and the lease-reads
//! quiet-after-start refusal): the request comes from the leader itself, not from a node cut
//! off by a partition.
//!
//! The transfer ends as `Completed` when this node sees the target lead in a later term,
//! `Aborted` when another node does, when this node campaigns itself, or when one election
//! timeout passes first (the leader then goes on leading, as it was).
//!
//! Followers do not forward a transfer request: they refuse it with the leader's id, and the
//! client asks that node (as it does for writes), which gives it a definite answer.
//!
//! The lease: a voter grants a transfer vote whenever it is asked, however recently it heard
//! from the leader, so a lease the leader renews while a `TimeoutNow` may still be on its way
//! would not be backed by those refusals any more. A leader that sent `TimeoutNow` in a term
//! therefore serves no lease read for the rest of that term (it falls back to ReadIndex).

use crate::message::Message;
use crate::node::{invariant, RaftNode};
use crate::ready::NodeEvent;
use crate::types::{NodeId, Role, Term};
use crate::validate::MAX_TERM;

/// Why a transfer request was refused. Definite: nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("not the leader; ask the leader (node {})", leader.map_or("unknown".to_string(), |l| l.to_string()))]
    NotLeader { leader: Option<NodeId> },
    #[error("node {0} is already the leader")]
    ToSelf(NodeId),
    #[error("node {0} is not a member of the cluster")]
    UnknownNode(NodeId),
    #[error("node {0} is not a voter and cannot lead")]
    NotVoter(NodeId),
    #[error("no other voter to transfer leadership to")]
    NoOtherVoter,
}

/// A transfer this node started as leader and whose outcome it has not seen yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PendingTransfer {
    pub(crate) to: NodeId,
    /// The term the transfer started in: the target's election is for a later one.
    pub(crate) term: Term,
    /// Ticks since it started; at one election timeout it is aborted.
    pub(crate) elapsed: u32,
    pub(crate) timeout_now_sent: bool,
}

impl RaftNode {
    /// Asks this leader to hand leadership to `to`, or with `None` to the voter whose log
    /// matches the leader's furthest (ties: the lowest id). Returns the target. Asking again
    /// for the pending target changes nothing; asking for another voter aborts the pending
    /// transfer and starts a new one. Proposals and lease reads are refused until it ends.
    pub fn transfer_leadership(&mut self, to: Option<NodeId>) -> Result<NodeId, TransferError> {
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader {
                leader: self.leader,
            });
        }
        let to = match to {
            Some(t) => t,
            None => self
                .most_caught_up_voter()
                .ok_or(TransferError::NoOtherVoter)?,
        };
        if to == self.id {
            return Err(TransferError::ToSelf(to));
        }
        if !self.membership.contains(to) {
            return Err(TransferError::UnknownNode(to));
        }
        if !self.membership.is_voter(to) {
            return Err(TransferError::NotVoter(to));
        }
        if self.transfer.as_ref().is_some_and(|t| t.to == to) {
            return Ok(to);
        }
        self.start_transfer(to);
        Ok(to)
    }

    /// The pending transfer's target, while the leader hands over.
    pub fn transfer_target(&self) -> Option<NodeId> {
        self.transfer.as_ref().map(|t| t.to)
    }

    /// The voter other than this node whose log matches the leader's furthest; ties go to the
    /// lowest id so the choice replays exactly.
    pub(crate) fn most_caught_up_voter(&self) -> Option<NodeId> {
        self.peers()
            .into_iter()
            .filter(|&p| self.membership.is_voter(p))
            .map(|p| (self.progress.get(&p).map_or(0, |pr| pr.match_index), p))
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
            .map(|(_, p)| p)
    }

    /// Starts handing leadership to `to`, a voter other than this leader (the caller checked).
    /// A pending transfer to another node is aborted first. Also the entry point for "a removed
    /// leader transfers first".
    pub(crate) fn start_transfer(&mut self, to: NodeId) {
        invariant!(
            self,
            self.role == Role::Leader && to != self.id && self.membership.is_voter(to),
            "transfer to {to} started by a non-leader or to a non-voter"
        );
        if let Some(old) = self.transfer.take() {
            let reason = format!("superseded by a transfer to node {to}");
            self.emit(NodeEvent::TransferAborted {
                to: old.to,
                term: old.term,
                reason,
            });
        }
        self.transfer = Some(PendingTransfer {
            to,
            term: self.term,
            elapsed: 0,
            timeout_now_sent: false,
        });
        // The lease rests on voters refusing votes; the target's transfer vote is granted
        // regardless, so the lease ends now (openraft #1749, etcd raft#99).
        self.revoke_lease();
        self.emit(NodeEvent::TransferStarted {
            to,
            term: self.term,
        });
        self.maybe_send_timeout_now();
        if !self.transfer.as_ref().is_some_and(|t| t.timeout_now_sent) {
            self.send_append(to);
        }
    }

    /// Sends `TimeoutNow` to the target if its log matches the leader's last index. Called on
    /// start, on every acknowledgement from the target, and on its heartbeat responses (a lost
    /// `TimeoutNow` is sent again; a duplicate arrives in an older term and is ignored).
    pub(crate) fn maybe_send_timeout_now(&mut self) {
        let Some(t) = &self.transfer else { return };
        if self.role != Role::Leader {
            return;
        }
        let to = t.to;
        let matched = self.progress.get(&to).map_or(0, |p| p.match_index);
        if matched != self.log.last_index() {
            return;
        }
        if let Some(t) = self.transfer.as_mut() {
            t.timeout_now_sent = true;
        }
        self.lease_void_term = Some(self.term);
        let term = self.term;
        self.send(to, Message::TimeoutNow { term });
    }

    /// One tick of a pending transfer: past one election timeout it is aborted.
    pub(crate) fn tick_transfer(&mut self) {
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
        t.elapsed = t.elapsed.saturating_add(1);
        if t.elapsed >= self.config.election_ticks {
            let reason = if t.timeout_now_sent {
                "the target did not take over within an election timeout"
            } else {
                "the target did not catch up within an election timeout"
            };
            self.abort_transfer(reason.to_string());
        }
    }

    /// Settles a pending transfer once this node has seen its outcome: a leader in a later
    /// term (the target or another), or its own campaign.
    pub(crate) fn settle_transfer(&mut self) {
        let Some(t) = &self.transfer else { return };
        match self.role {
            Role::Leader if self.term == t.term => {}
            Role::Leader | Role::Candidate | Role::PreCandidate => {
                self.abort_transfer("this node campaigned itself".to_string())
            }
            Role::Follower => match self.leader {
                Some(l) if self.term > t.term && l == t.to => {
                    let (to, term) = (t.to, self.term);
                    self.transfer = None;
                    self.emit(NodeEvent::TransferCompleted { to, term });
                }
                Some(l) if self.term > t.term => {
                    self.abort_transfer(format!("node {l} leads term {}", self.term))
                }
                _ => {}
            },
        }
    }

    pub(crate) fn abort_transfer(&mut self, reason: String) {
        if let Some(t) = self.transfer.take() {
            self.emit(NodeEvent::TransferAborted {
                to: t.to,
                term: t.term,
                reason,
            });
        }
    }

    /// The leader asks this node to campaign now: its log is as long as the leader's.
    pub(crate) fn handle_timeout_now(&mut self, from: NodeId) {
        if self.role != Role::Follower || self.term >= MAX_TERM || !self.can_campaign() {
            return;
        }
        self.emit(NodeEvent::TimeoutNowReceived {
            from,
            term: self.term,
        });
        self.campaign_for_transfer = true;
        self.become_candidate();
        self.campaign_for_transfer = false;
    }
}
