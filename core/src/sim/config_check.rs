//! Checks on configurations (thesis §4): every election is won by a quorum of the
//! configuration committed in the winner's log, and every configuration change a leader
//! proposes leads to a configuration that shares a quorum with the one committed before it.
//! Both are stated on logs and votes, not on the rules the core enforces to keep them (one
//! change in flight, no campaign with unapplied changes, learners not counted), so a bug in
//! any of those rules shows up here as the unsafe state it produces.

use std::collections::{BTreeMap, BTreeSet};

use crate::membership::Membership;
use crate::node::RaftNode;
use crate::types::{EntryPayload, Index, NodeId, Term};

/// The configuration `raft`'s own log puts in force once everything up to `index` is applied:
/// the one in force now plus the changes logged after it, up to `index`. A change the changer
/// refuses is skipped, as every node skips it.
pub fn configuration_at(raft: &RaftNode, index: Index) -> Membership {
    let from = raft.applied_index().max(raft.membership_index());
    let mut m = raft.membership().clone();
    if index <= from {
        return m;
    }
    for e in raft.log().slice(from + 1, index) {
        if let EntryPayload::ConfChange(cc) = &e.payload {
            if let Ok(next) = m.apply(cc) {
                m = next;
            }
        }
    }
    m
}

/// Whether every quorum of `a` intersects every quorum of `b` (the overlap that keeps two
/// leaders of one term apart). Checked over every subset of their voters: at most a few
/// hundred for the simulator's clusters of up to seven nodes plus joint halves.
pub fn quorums_overlap(a: &Membership, b: &Membership) -> bool {
    let ids: Vec<NodeId> = a.all_voters().union(&b.all_voters()).copied().collect();
    assert!(
        ids.len() < 24,
        "too many voters to enumerate: {}",
        ids.len()
    );
    (0u32..1 << ids.len()).all(|mask| {
        let chosen = |id: NodeId| {
            ids.iter()
                .position(|&x| x == id)
                .is_some_and(|i| mask & (1 << i) != 0)
        };
        !(a.has_quorum(chosen) && b.has_quorum(|id| !chosen(id)))
    })
}

/// Votes granted in real (not pre-vote) elections and delivered to their candidate, by term
/// and candidate: what the candidate can have counted when it declared itself leader.
#[derive(Clone, Debug, Default)]
pub struct Ballots {
    granted: BTreeMap<(Term, NodeId), BTreeSet<NodeId>>,
}

impl Ballots {
    pub fn record(&mut self, voter: NodeId, candidate: NodeId, term: Term) {
        self.granted
            .entry((term, candidate))
            .or_default()
            .insert(voter);
    }

    /// Why `leader`'s win in `term` was not by a quorum of the configuration committed in its
    /// log, if it was not. The candidate votes for itself.
    pub fn unsupported_win(&self, leader: &RaftNode, term: Term) -> Option<String> {
        let committed = configuration_at(leader, leader.commit_index());
        let empty = BTreeSet::new();
        let votes = self.granted.get(&(term, leader.id())).unwrap_or(&empty);
        let yes = |id: NodeId| id == leader.id() || votes.contains(&id);
        (!committed.has_quorum(yes)).then(|| {
            format!(
                "n{} won term {term} with votes {votes:?} (and its own), not a quorum of \
                 {committed}, the configuration committed in its log at {} (it counted with \
                 {} of index {})",
                leader.id(),
                leader.commit_index(),
                leader.membership(),
                leader.membership_index()
            )
        })
    }

    /// Forgets the ballots of terms before `term` (a leader was elected in a later one).
    pub fn forget_before(&mut self, term: Term) {
        self.granted = self.granted.split_off(&(term, 0));
    }
}

/// Why the change just logged at `leader`'s last index leads to a configuration that shares no
/// quorum with the one committed in its log, if so.
pub fn unsafe_change(leader: &RaftNode) -> Option<String> {
    let committed = configuration_at(leader, leader.commit_index());
    let next = configuration_at(leader, leader.log().last_index());
    (!quorums_overlap(&committed, &next)).then(|| {
        format!(
            "n{} logged a change to {next} at {} whose quorums need not meet those of {committed}, \
             the configuration committed at {}",
            leader.id(),
            leader.log().last_index(),
            leader.commit_index()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voters(ids: &[NodeId]) -> Membership {
        Membership::bootstrap(ids.iter().copied(), BTreeMap::new())
    }

    #[test]
    fn one_voter_apart_overlaps_two_apart_does_not() {
        assert!(quorums_overlap(&voters(&[1, 2, 3]), &voters(&[1, 2, 3, 4])));
        assert!(quorums_overlap(&voters(&[1, 2, 3]), &voters(&[1, 2])));
        assert!(!quorums_overlap(
            &voters(&[1, 2, 3]),
            &voters(&[1, 2, 3, 4, 5])
        ));
        assert!(!quorums_overlap(&voters(&[1, 2, 3]), &voters(&[1])));
        assert!(!quorums_overlap(&voters(&[1, 2, 3]), &voters(&[1, 4, 5])));
    }
}
