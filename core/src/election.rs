//! Leader election: timeouts, Pre-Vote, votes, and becoming leader.

use crate::membership::VoteResult;
use crate::message::Message;
use crate::mutation::Mutation;
use crate::node::{invariant, RaftNode};
use crate::progress::Progress;
use crate::ready::{NodeEvent, PersistOp};
use crate::types::{Entry, EntryPayload, Index, NodeId, Role, Term};
use crate::validate::MAX_TERM;

impl RaftNode {
    pub(crate) fn on_election_timeout(&mut self) {
        if self.term >= MAX_TERM {
            // Unreachable through messages (terms above the ceiling are refused), so only a
            // damaged hard state gets here: stay a follower rather than overflow the term.
            return;
        }
        if self.config.pre_vote {
            self.emit(NodeEvent::ElectionTimeout {
                term: self.term,
                pre_vote: true,
            });
            self.become_pre_candidate();
        } else {
            self.emit(NodeEvent::ElectionTimeout {
                term: self.term,
                pre_vote: false,
            });
            self.become_candidate();
        }
    }

    /// Asks peers whether they would vote for us in `term + 1` without bumping any term, so a
    /// node that was cut off cannot force a working cluster into a new election when it returns.
    fn become_pre_candidate(&mut self) {
        let from = self.role;
        self.abort_reads("leadership changed");
        self.role = Role::PreCandidate;
        self.leader = None;
        self.votes.clear();
        self.reset_election_timer();
        self.emit(NodeEvent::RoleChanged {
            from,
            to: Role::PreCandidate,
            term: self.term,
            leader: None,
        });
        self.votes.insert(self.id, true);
        if self.tally() == Some(true) {
            self.become_candidate();
            return;
        }
        let (last_log_index, last_log_term) = (self.log.last_index(), self.log.last_term());
        let term = self.term + 1;
        for peer in self.voter_peers() {
            self.send(
                peer,
                Message::PreVote {
                    term,
                    last_log_index,
                    last_log_term,
                },
            );
        }
    }

    pub(crate) fn become_candidate(&mut self) {
        let from = self.role;
        self.abort_reads("leadership changed");
        self.term += 1;
        self.vote = Some(self.id);
        self.role = Role::Candidate;
        self.leader = None;
        self.votes.clear();
        self.reset_election_timer();
        self.emit(NodeEvent::RoleChanged {
            from,
            to: Role::Candidate,
            term: self.term,
            leader: None,
        });
        self.votes.insert(self.id, true);
        if self.tally() == Some(true) {
            self.become_leader();
            return;
        }
        let (last_log_index, last_log_term) = (self.log.last_index(), self.log.last_term());
        let term = self.term;
        let transfer = self.campaign_for_transfer;
        for peer in self.voter_peers() {
            self.send(
                peer,
                Message::RequestVote {
                    term,
                    last_log_index,
                    last_log_term,
                    transfer,
                },
            );
        }
    }

    fn become_leader(&mut self) {
        invariant!(
            self,
            self.role == Role::Candidate,
            "only a candidate can become leader"
        );
        let from = self.role;
        self.role = Role::Leader;
        self.leader = Some(self.id);
        self.votes.clear();
        self.reset_election_timer();
        let next = self.log.last_index() + 1;
        self.progress = self
            .peers()
            .into_iter()
            .map(|p| (p, Progress::new(next)))
            .collect();
        // Any entry of the log may be an unapplied configuration change: none is accepted
        // before everything up to here is applied (etcd-raft's pendingConfIndex).
        self.pending_conf_index = self.log.last_index();
        self.emit(NodeEvent::RoleChanged {
            from,
            to: Role::Leader,
            term: self.term,
            leader: Some(self.id),
        });
        // The no-op lets this leader commit (and so apply and answer) everything earlier terms
        // left behind, without waiting for a client write (§5.4.2, §8).
        let noop = Entry {
            term: self.term,
            index: next,
            payload: EntryPayload::Noop,
        };
        self.log.append(noop.clone());
        self.persist(PersistOp::Append(vec![noop]));
        self.pending_broadcast = true;
        self.uncommitted_bytes = self.uncommitted_tail_bytes();
    }

    /// Payload bytes of the entries after the commit index (the leader's tail).
    fn uncommitted_tail_bytes(&self) -> u64 {
        let (commit, last) = (self.commit, self.log.last_index());
        let tail = self.log.slice(commit + 1, last);
        tail.iter().map(|e| e.size_hint() as u64).sum()
    }

    /// Counts the votes of the current (pre-)election: Some(true) won, Some(false) lost.
    fn tally(&self) -> Option<bool> {
        let result = if self.config.has_mutation(Mutation::LearnerVoteCounts) {
            let mut m = (*self.membership).clone();
            m.voters.extend(std::mem::take(&mut m.learners));
            m.vote_result(&self.votes)
        } else {
            self.membership.vote_result(&self.votes)
        };
        match result {
            VoteResult::Won => Some(true),
            VoteResult::Lost => Some(false),
            VoteResult::Pending => None,
        }
    }

    fn log_ok(&self, last_log_index: Index, last_log_term: Term) -> bool {
        self.config.has_mutation(Mutation::VoteWithoutLogCheck)
            || self.log.is_up_to_date(last_log_index, last_log_term)
    }

    pub(crate) fn handle_pre_vote(
        &mut self,
        from: NodeId,
        term: Term,
        last_log_index: Index,
        last_log_term: Term,
    ) {
        let granted = term > self.term
            && !self.in_leader_lease()
            && self.log_ok(last_log_index, last_log_term);
        self.emit(NodeEvent::VoteCast {
            candidate: from,
            term,
            granted,
            pre_vote: true,
        });
        let reply_term = if granted { term } else { self.term };
        self.send(
            from,
            Message::PreVoteResponse {
                term: reply_term,
                granted,
            },
        );
    }

    pub(crate) fn handle_request_vote(
        &mut self,
        from: NodeId,
        term: Term,
        last_log_index: Index,
        last_log_term: Term,
    ) {
        invariant!(self, term == self.term, "vote request term not adopted");
        let can_vote = self.vote.is_none() || self.vote == Some(from);
        let granted = can_vote && self.log_ok(last_log_index, last_log_term);
        if granted {
            self.vote = Some(from);
            // Granting a vote restarts the timer: this node just helped start an election and
            // must give the candidate time to win it.
            self.reset_election_timer();
        }
        self.emit(NodeEvent::VoteCast {
            candidate: from,
            term,
            granted,
            pre_vote: false,
        });
        self.send(
            from,
            Message::RequestVoteResponse {
                term: self.term,
                granted,
            },
        );
    }

    pub(crate) fn handle_vote_response(
        &mut self,
        from: NodeId,
        term: Term,
        granted: bool,
        pre_vote: bool,
    ) {
        let expected_role = if pre_vote {
            Role::PreCandidate
        } else {
            Role::Candidate
        };
        let expected_term = if pre_vote {
            self.term.saturating_add(1)
        } else {
            self.term
        };
        if self.role != expected_role || (granted && term != expected_term) {
            return;
        }
        self.votes.entry(from).or_insert(granted);
        match self.tally() {
            Some(true) if pre_vote => self.become_candidate(),
            Some(true) => self.become_leader(),
            Some(false) => self.become_follower(self.term, None),
            None => {}
        }
    }
}
