//! What `/livez` and `/readyz` decide, as etcd's endpoints of the same names do.
//!
//! - live: the process serves HTTP and its node loop answers within [`LIVEZ_TIMEOUT`]; a
//!   failing liveness probe gets the process restarted, so only a hung node should fail it.
//! - ready: this node can serve clients now: it is a voting member, it follows or is a known
//!   leader (not campaigning), and its applied index is within [`MAX_APPLY_LAG`] entries of the
//!   leader's commit index (which a follower learns from the leader's appends and heartbeats).
//!   A follower that is far behind the cluster (just restarted, cut off and catching up) or
//!   that stopped applying is not ready; nor is a learner. A failing readiness probe only
//!   takes the node out of the client Service.

use std::time::Duration;

use keyval_core::NodeStatus;

/// How long `/livez` waits for the node loop. Long enough that a node under heavy load with a
/// slow disk is not restarted (a turn is one fsync plus bounded work), short enough that a
/// deadlocked loop is caught within a probe period or two.
pub const LIVEZ_TIMEOUT: Duration = Duration::from_secs(5);

/// How far a ready node's applied index may trail the leader's commit index, in entries. A
/// healthy follower trails by what is in flight: a few append batches (up to 4096 entries
/// each) and the turn of the node loop that applies them; at 10 000 it is whole seconds of
/// full-speed writes behind, or not applying at all.
pub const MAX_APPLY_LAG: u64 = 10_000;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("no leader known")]
    NoLeader,
    #[error("campaigning ({0})")]
    Campaigning(&'static str),
    #[error("role {0} does not serve clients")]
    Role(&'static str),
    #[error("not a voting member (a learner or a removed node)")]
    NotVoter,
    #[error("applied index {applied} is {lag} behind the leader's commit index {commit}")]
    Behind { applied: u64, commit: u64, lag: u64 },
}

/// Whether a node with this status should receive client traffic.
pub fn readiness(status: &NodeStatus) -> Result<(), NotReady> {
    // `members` also lists learners; only a voter (of either half of a joint configuration)
    // takes client traffic.
    if !status.membership.is_voter(status.id) {
        return Err(NotReady::NotVoter);
    }
    match status.role.name() {
        "leader" | "follower" => {}
        "precandidate" => return Err(NotReady::Campaigning("pre-candidate")),
        "candidate" => return Err(NotReady::Campaigning("candidate")),
        other => return Err(NotReady::Role(other)),
    }
    if status.leader.is_none() {
        return Err(NotReady::NoLeader);
    }
    let commit = status
        .leader_commit
        .unwrap_or(status.commit_index)
        .max(status.commit_index);
    let lag = commit.saturating_sub(status.applied_index);
    if lag > MAX_APPLY_LAG {
        return Err(NotReady::Behind {
            applied: status.applied_index,
            commit,
            lag,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use keyval_core::Role;

    use super::*;

    fn status(role: Role, leader: Option<u64>) -> NodeStatus {
        NodeStatus {
            id: 2,
            role,
            term: 3,
            vote: None,
            leader,
            commit_index: 10,
            applied_index: 10,
            leader_commit: Some(10),
            last_index: 10,
            last_term: 3,
            snapshot_index: 0,
            members: vec![1, 2, 3],
            keys: 0,
            membership: Box::new(keyval_core::Membership::bootstrap(
                [1, 2, 3],
                Default::default(),
            )),
            membership_index: 0,
        }
    }

    #[test]
    fn a_caught_up_follower_or_leader_is_ready() {
        assert_eq!(readiness(&status(Role::Follower, Some(1))), Ok(()));
        assert_eq!(readiness(&status(Role::Leader, Some(2))), Ok(()));
    }

    #[test]
    fn no_leader_campaigning_learner_or_lagging_is_not_ready() {
        assert_eq!(
            readiness(&status(Role::Follower, None)),
            Err(NotReady::NoLeader)
        );
        assert!(matches!(
            readiness(&status(Role::Candidate, None)),
            Err(NotReady::Campaigning(_))
        ));
        assert!(matches!(
            readiness(&status(Role::PreCandidate, Some(1))),
            Err(NotReady::Campaigning(_))
        ));
        let mut learner = status(Role::Follower, Some(1));
        learner.membership.voters.remove(&2);
        learner.membership.learners.insert(2);
        assert_eq!(readiness(&learner), Err(NotReady::NotVoter));
        let mut removed = status(Role::Follower, Some(1));
        removed.membership.voters.remove(&2);
        removed.membership.removed.insert(2);
        assert_eq!(readiness(&removed), Err(NotReady::NotVoter));
        let mut outgoing = status(Role::Follower, Some(1));
        outgoing.membership.voters.remove(&2);
        outgoing.membership.outgoing = [1, 2, 3].into();
        assert_eq!(
            readiness(&outgoing),
            Ok(()),
            "a voter of the outgoing half still votes"
        );
        let mut behind = status(Role::Follower, Some(1));
        behind.commit_index = 20_011;
        behind.applied_index = 10_010;
        assert!(matches!(
            readiness(&behind),
            Err(NotReady::Behind { lag: 10_001, .. })
        ));
        behind.applied_index = 10_011;
        assert_eq!(readiness(&behind), Ok(()));
    }

    /// A follower's own commit index only covers what it holds; the leader's tells how far
    /// behind the cluster it is.
    #[test]
    fn a_follower_far_behind_the_leaders_commit_is_not_ready_though_it_applied_its_own() {
        let mut far = status(Role::Follower, Some(1));
        (far.commit_index, far.applied_index) = (50, 50);
        far.leader_commit = Some(50 + MAX_APPLY_LAG + 1);
        assert_eq!(
            readiness(&far),
            Err(NotReady::Behind {
                applied: 50,
                commit: 50 + MAX_APPLY_LAG + 1,
                lag: MAX_APPLY_LAG + 1
            })
        );
        far.leader_commit = Some(50 + MAX_APPLY_LAG);
        assert_eq!(readiness(&far), Ok(()), "exactly at the threshold");
        // Committed (by the leader's word) but not applied: a node that stopped applying.
        let mut stuck = status(Role::Follower, Some(1));
        (stuck.commit_index, stuck.applied_index) = (MAX_APPLY_LAG + 20, 10);
        stuck.leader_commit = Some(MAX_APPLY_LAG + 20);
        assert!(matches!(readiness(&stuck), Err(NotReady::Behind { .. })));
    }
}
