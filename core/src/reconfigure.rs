//! Membership changes in the Raft node: proposing one (with the rules that keep consecutive
//! configurations overlapping), activating a configuration when its entry is applied, and what
//! the leader does when the configuration changes under it.
//!
//! The rules (each with a test in `core/tests/membership.rs`):
//! - one change in flight: refused while an earlier change is not applied
//!   (`pending_conf_index`, set to the last index when a node becomes leader);
//! - no change before the leader has committed an entry of its own term (the 2015
//!   single-server bug: an uncommitted change of an earlier term may still commit);
//! - a node does not campaign while committed configuration changes are unapplied
//!   (etcd-raft#469), nor while it is not a voter;
//! - a node becomes a voter only while its log is within `Config::max_promotion_lag` entries of
//!   the leader's last index;
//! - a joint configuration with `auto_leave` is left by the leader once it is applied;
//! - a learner in `Membership::promote_when_caught_up` is promoted by whichever node leads,
//!   once it has acknowledged entries and been heard from recently, is within
//!   `max_promotion_lag` and the grown voter set keeps a recently active quorum; one change at
//!   a time, like every change;
//! - a leader that is no longer a voter steps down once the change is applied.

use std::sync::Arc;

use crate::membership::{caught_up, majority, ChangeKind, ConfChange, ConfChangeError, Membership};
use crate::mutation::Mutation;
use crate::node::{invariant, RaftNode};
use crate::progress::Progress;
use crate::ready::NodeEvent;
use crate::replication::ProposeError;
use crate::types::{Entry, EntryPayload, Index, NodeId, Role};

impl RaftNode {
    /// Proposes a configuration change. The change is done when the entry at the returned index
    /// is applied; a leadership change before that makes the outcome unknown (like a write).
    pub fn propose_conf_change(&mut self, cc: ConfChange) -> Result<Index, ConfChangeError> {
        if self.role != Role::Leader {
            return Err(ConfChangeError::NotLeader {
                leader: self.leader,
            });
        }
        if self.transfer_target().is_some() {
            return Err(ConfChangeError::TransferInProgress);
        }
        if self.log.term(self.commit) != Some(self.term) {
            return Err(ConfChangeError::NoCommitInTerm);
        }
        if self.pending_conf_index > self.applied
            && !self.config.has_mutation(Mutation::TwoConfChangesInFlight)
        {
            return Err(ConfChangeError::ChangeInProgress {
                pending: self.pending_conf_index,
            });
        }
        let next = self.membership.apply(&cc)?;
        self.check_new_voters_caught_up(&next)?;
        let index = self
            .propose(EntryPayload::ConfChange(cc))
            .map_err(|e| match e {
                ProposeError::NotLeader { leader_hint } => ConfChangeError::NotLeader {
                    leader: leader_hint,
                },
                ProposeError::TransferInProgress { .. } => ConfChangeError::TransferInProgress,
                ProposeError::Busy { uncommitted, .. } => ConfChangeError::Invalid(format!(
                    "too many uncommitted entries ({uncommitted})"
                )),
            })?;
        self.pending_conf_index = index;
        Ok(index)
    }

    /// Refuses a configuration that makes a voter of a node whose log lags the leader's by
    /// more than `max_promotion_lag` entries (a node the leader has no progress for: 0).
    fn check_new_voters_caught_up(&self, next: &Membership) -> Result<(), ConfChangeError> {
        let last = self.log.last_index();
        for &node in next.voters.iter() {
            if self.membership.is_voter(node) || node == self.id {
                continue;
            }
            let matched = self.progress.get(&node).map_or(0, |p| p.match_index);
            if matched.saturating_add(self.config.max_promotion_lag) < last {
                return Err(ConfChangeError::LearnerNotCaughtUp {
                    node,
                    matched,
                    last,
                });
            }
        }
        Ok(())
    }

    /// Applies the configuration change logged at `index` (called as the entry is applied).
    /// A change the changer refuses here is ignored on every node alike (the log is the same
    /// everywhere), so it cannot split the cluster's view of its membership.
    pub(crate) fn apply_conf_entry(&mut self, index: Index, cc: &ConfChange) {
        if index <= self.membership_index {
            return; // already in force: a joined node's starting configuration, or on append
        }
        match self.membership.apply(cc) {
            Ok(next) => self.switch_to(index, next),
            Err(e) => self.emit(NodeEvent::ConfChangeRefused {
                index,
                reason: e.to_string(),
            }),
        }
    }

    /// Makes `next` the configuration in force as of `index`.
    pub(crate) fn switch_to(&mut self, index: Index, next: Membership) {
        invariant!(
            self,
            next.check_invariants().is_ok(),
            "configuration {next} breaks an invariant"
        );
        self.membership = Arc::new(next);
        self.membership_index = index;
        self.conf_commit = self.conf_commit.max(self.commit);
        self.emit(NodeEvent::MembershipChanged {
            index,
            membership: (*self.membership).clone(),
        });
        if self.role != Role::Leader {
            return;
        }
        self.sync_progress();
        if let Some(to) = self.transfer_target() {
            if !self.membership.is_voter(to) {
                self.abort_transfer(format!("node {to} is no longer a voter"));
            }
        }
        if !self.membership.is_voter(self.id) {
            // Removed or demoted: hand over to the most caught-up voter first (thesis §3.10),
            // so the cluster has no leaderless gap; step down if there is none to hand to.
            // Meanwhile proposals are refused (a transfer is pending).
            self.emit(NodeEvent::LeaderRemoved { term: self.term });
            match self.most_caught_up_voter() {
                Some(to) => self.start_transfer(to),
                None => self.become_follower(self.term, None),
            }
            self.pending_broadcast = true;
            return;
        }
        // The quorum may have shrunk: entries may commit now.
        self.maybe_commit();
        self.pending_broadcast = true;
    }

    /// Tracks exactly the current members: new ones start probing from our last index and
    /// count as recently active (so check-quorum does not step down for a peer just added).
    fn sync_progress(&mut self) {
        let peers = self.peers();
        self.progress.retain(|id, _| peers.contains(id));
        let next = self.log.last_index() + 1;
        for id in peers {
            self.progress.entry(id).or_insert_with(|| {
                let mut p = Progress::new(next);
                p.recent_active = true;
                p
            });
        }
    }

    /// A leader that is not a voter any more whose handover ended without a new leader (the
    /// transfer was aborted) steps down.
    pub(crate) fn step_down_if_removed(&mut self) {
        if self.role == Role::Leader
            && self.transfer.is_none()
            && !self.membership.is_voter(self.id)
        {
            self.become_follower(self.term, None);
        }
    }

    /// Leaves a joint configuration with `auto_leave` once everything up to the latest change is
    /// applied (etcd-raft's `appliedTo`). Retried after every apply until it is proposed.
    pub(crate) fn maybe_auto_leave(&mut self) {
        if self.role != Role::Leader
            || !self.membership.is_joint()
            || !self.membership.auto_leave
            || self.pending_conf_index > self.applied
        {
            return;
        }
        // Refusals here are transient (back-pressure): the next apply retries.
        let _ = self.propose_conf_change(ConfChange::leave_joint());
    }

    /// Promotes one learner of `promote_when_caught_up` that has caught up (the intent is in
    /// the replicated configuration, so any leader does it, after any leader change, restart or
    /// snapshot install). Called on every leader tick and after every apply; does nothing while
    /// another change is in flight (the next call retries).
    ///
    /// The rule mirrors a manual promotion's: the learner is connected (it answered in the
    /// current check-quorum window, and has acknowledged entries to this leader: a progress
    /// just created counts as active but has matched nothing), its log is within
    /// `max_promotion_lag` of ours, and the voter set it joins still has a quorum of recently
    /// active voters, so a promotion never leaves the cluster unable to commit. Without
    /// `check_quorum`, "recently" is "ever, in this term": activity is never reset.
    pub(crate) fn maybe_auto_promote(&mut self) {
        if self.role != Role::Leader
            || self.membership.promote_when_caught_up.is_empty()
            || self.membership.is_joint()
            || self.transfer_target().is_some()
            || self.pending_conf_index > self.applied
            || self.log.term(self.commit) != Some(self.term)
        {
            return;
        }
        let Some(node) = self.learner_ready_for_promotion() else {
            return;
        };
        let cc = ConfChange::single(ChangeKind::AddVoter, node);
        // Refusals here are transient (back-pressure, a change just proposed): retried later.
        if let Ok(index) = self.propose_conf_change(cc) {
            self.emit(NodeEvent::LearnerPromoting { node, index });
        }
    }

    /// The first learner to promote whose promotion the rule allows now.
    fn learner_ready_for_promotion(&self) -> Option<NodeId> {
        let last = self.log.last_index();
        let active =
            |id: NodeId| id == self.id || self.progress.get(&id).is_some_and(|p| p.recent_active);
        self.membership
            .promote_when_caught_up
            .iter()
            .copied()
            .find(|&node| {
                let Some(p) = self.progress.get(&node) else {
                    return false;
                };
                let mut voters = self.membership.voters.clone();
                voters.insert(node);
                p.recent_active
                    && caught_up(p.match_index, last, self.config.max_promotion_lag)
                    && majority(&voters, &active)
            })
    }

    /// Whether the node may start an election: it is a voter, has no snapshot waiting to be
    /// installed, and has applied every committed configuration change.
    pub(crate) fn can_campaign(&self) -> bool {
        self.membership.is_voter(self.id)
            && self.received_snapshot.is_none()
            && (!self.has_unapplied_conf_change()
                || self
                    .config
                    .has_mutation(Mutation::CampaignWithUnappliedConfig))
    }

    fn has_unapplied_conf_change(&self) -> bool {
        self.commit > self.applied
            && self
                .log
                .slice(self.applied + 1, self.commit)
                .iter()
                .any(|e| matches!(e.payload, EntryPayload::ConfChange(_)))
    }

    /// With [`Mutation::ConfigOnAppend`]: activate configuration entries as they are appended.
    pub(crate) fn on_appended(&mut self, entries: &[Entry]) {
        if !self.config.has_mutation(Mutation::ConfigOnAppend) {
            return;
        }
        for e in entries {
            if let EntryPayload::ConfChange(cc) = &e.payload {
                self.apply_conf_entry(e.index, cc);
            }
        }
    }
}
