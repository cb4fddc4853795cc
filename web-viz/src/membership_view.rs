//! What the membership drawing shows: the configuration the cluster runs under (the leader's,
//! since it decides what commits), each node's standing in it, how far each learner has caught
//! up, and, while a joint configuration is in force, both majorities the leader needs.
//! Platform-neutral: computed from the engine, tested natively and in the browser.

use std::collections::BTreeSet;

use keyval_core::membership::Membership;
use keyval_core::{EntryPayload, Index, NodeId, Role};

use crate::engine::Engine;

/// A node's place in the configuration shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Votes in the configuration (in both halves while joint).
    Voter,
    /// Votes only in the new half of a joint configuration.
    Incoming,
    /// Votes only in the old half of a joint configuration (removed or demoted when it ends).
    Outgoing,
    /// Receives the log, never counts for a majority.
    Learner,
    /// Started, but the change that adds it is not applied yet.
    Joining,
    /// Was a member; its id is never reused. It may still run.
    Removed,
}

impl Standing {
    pub fn name(self) -> &'static str {
        match self {
            Standing::Voter => "voter",
            Standing::Incoming => "incoming",
            Standing::Outgoing => "outgoing",
            Standing::Learner => "learner",
            Standing::Joining => "joining",
            Standing::Removed => "removed",
        }
    }

    /// Counts towards a majority (of one half at least).
    pub fn votes(self) -> bool {
        matches!(
            self,
            Standing::Voter | Standing::Incoming | Standing::Outgoing
        )
    }
}

/// How far a non-leader's log matches the leader's, as the leader knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CatchUp {
    pub matched: Index,
    pub last: Index,
    /// The leader refuses to make it a voter while it lags by more than this many entries.
    pub max_lag: u64,
}

impl CatchUp {
    pub fn lag(&self) -> u64 {
        self.last.saturating_sub(self.matched)
    }

    /// Whether a promotion would pass the leader's catch-up rule now.
    pub fn promotable(&self) -> bool {
        self.matched.saturating_add(self.max_lag) >= self.last
    }

    /// Fraction of the leader's log it holds, for the bar (1 when the leader's log is empty).
    pub fn fraction(&self) -> f64 {
        if self.last == 0 {
            1.0
        } else {
            (self.matched as f64 / self.last as f64).clamp(0.0, 1.0)
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct MemberRow {
    pub id: NodeId,
    pub standing: Standing,
    pub up: bool,
    /// Known only while there is a leader (and not for the leader itself).
    pub catch_up: Option<CatchUp>,
}

/// One half of a joint configuration: its voters, the majority it needs, and how far it would
/// let the leader commit on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Half {
    pub voters: Vec<NodeId>,
    pub majority: usize,
    /// Voters holding the leader's last entry.
    pub holding_last: usize,
    /// The highest index a majority of this half holds.
    pub committed: Index,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joint {
    pub old: Half,
    pub new: Half,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MembershipView {
    /// Whose applied configuration is shown: the leader's, else the up node that applied the
    /// most recent one.
    pub source: Option<NodeId>,
    pub leader: Option<NodeId>,
    pub membership: Membership,
    /// The log index that produced it.
    pub index: Index,
    pub rows: Vec<MemberRow>,
    pub joint: Option<Joint>,
    /// A configuration entry the leader logged and has not applied yet: (index, change).
    pub pending: Option<(Index, String)>,
}

impl MembershipView {
    pub fn of(e: &Engine) -> MembershipView {
        let sim = &e.sim;
        let leader = sim.leader();
        let raft_of = |id: NodeId| {
            sim.nodes()
                .get(&id)
                .and_then(|n| n.server.as_ref())
                .map(|s| s.raft())
        };
        let source = leader.or_else(|| {
            sim.nodes()
                .values()
                .filter_map(|n| {
                    n.server
                        .as_ref()
                        .map(|s| (n.id, s.raft().membership_index()))
                })
                .max_by_key(|&(id, idx)| (idx, std::cmp::Reverse(id)))
                .map(|(id, _)| id)
        });
        let (membership, index) = source
            .and_then(raft_of)
            .map(|r| (r.membership().clone(), r.membership_index()))
            .unwrap_or_default();
        let lead = leader
            .and_then(raft_of)
            .filter(|r| r.role() == Role::Leader);
        let last = lead.map(|r| r.log().last_index());
        let matched = |id: NodeId| -> Option<Index> {
            let r = lead?;
            if Some(id) == leader {
                return Some(r.log().last_index());
            }
            r.progress_of(id).map(|(m, _)| m)
        };
        let rows = sim
            .nodes()
            .values()
            .map(|n| {
                let id = n.id;
                let catch_up = match (lead, last) {
                    (Some(r), Some(last)) if Some(id) != leader => {
                        matched(id).map(|matched| CatchUp {
                            matched,
                            last,
                            max_lag: r.config().max_promotion_lag,
                        })
                    }
                    _ => None,
                };
                MemberRow {
                    id,
                    standing: standing(&membership, id),
                    up: n.is_up(),
                    catch_up,
                }
            })
            .collect();
        let joint = membership.is_joint().then(|| {
            let half = |voters: &BTreeSet<NodeId>| {
                let holding = voters
                    .iter()
                    .filter(|&&v| last.is_some() && matched(v) == last)
                    .count();
                let only = Membership {
                    voters: voters.clone(),
                    ..Membership::default()
                };
                Half {
                    voters: voters.iter().copied().collect(),
                    majority: voters.len() / 2 + 1,
                    holding_last: holding,
                    committed: only.committed_index(|v| matched(v).unwrap_or(0)),
                }
            };
            Joint {
                old: half(&membership.outgoing),
                new: half(&membership.voters),
            }
        });
        let pending = lead.and_then(|r| {
            r.log()
                .entries()
                .iter()
                .rev()
                .take_while(|en| en.index > r.applied_index())
                .find_map(|en| match &en.payload {
                    EntryPayload::ConfChange(cc) => Some((en.index, cc.to_string())),
                    _ => None,
                })
        });
        MembershipView {
            source,
            leader,
            membership,
            index,
            rows,
            joint,
            pending,
        }
    }

    pub fn row(&self, id: NodeId) -> Option<&MemberRow> {
        self.rows.iter().find(|r| r.id == id)
    }

    pub fn learners(&self) -> impl Iterator<Item = &MemberRow> {
        self.rows.iter().filter(|r| r.standing == Standing::Learner)
    }

    /// The learner closest to the leader's log: the one to replace a voter with.
    pub fn best_learner(&self) -> Option<NodeId> {
        self.learners()
            .max_by_key(|r| (r.catch_up.map_or(0, |c| c.matched), std::cmp::Reverse(r.id)))
            .map(|r| r.id)
    }

    /// Voters of the configuration in force (both halves while joint).
    pub fn voter_count(&self) -> usize {
        self.membership.all_voters().len()
    }
}

fn standing(m: &Membership, id: NodeId) -> Standing {
    let new = m.voters.contains(&id);
    let old = m.outgoing.contains(&id);
    match (m.is_joint(), new, old) {
        (false, true, _) | (true, true, true) => Standing::Voter,
        (true, true, false) => Standing::Incoming,
        (_, false, true) => Standing::Outgoing,
        _ if m.is_learner(id) => Standing::Learner,
        _ if m.removed.contains(&id) => Standing::Removed,
        _ => Standing::Joining,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::UserAction;
    use crate::member_action::MemberAction;
    use keyval_core::sim::SimConfig;

    fn settled(nodes: usize, seed: u64) -> Engine {
        let mut e = Engine::new(SimConfig::new(nodes, seed));
        e.run_until_time(1_000_000, u64::MAX);
        assert!(e.sim.leader().is_some(), "a leader within 1 s");
        e
    }

    #[test]
    fn a_fresh_cluster_is_all_voters() {
        let e = settled(3, 1);
        let v = MembershipView::of(&e);
        assert_eq!(v.leader, e.sim.leader());
        assert_eq!(v.voter_count(), 3);
        assert!(v.rows.iter().all(|r| r.standing == Standing::Voter));
        assert_eq!(v.joint, None);
        assert_eq!(v.pending, None);
    }

    #[test]
    fn an_added_node_joins_then_learns_and_catches_up() {
        let mut e = settled(3, 1);
        e.act(UserAction::Member(MemberAction::AddLearner));
        assert!(
            matches!(e.member_answer, Some(Ok(_))),
            "{:?}",
            e.member_answer
        );
        let v = MembershipView::of(&e);
        assert_eq!(v.row(4).map(|r| r.standing), Some(Standing::Joining));
        assert!(v.pending.is_some(), "the change is logged, not applied");
        e.run_until_time(e.now() + 500_000, u64::MAX);
        let v = MembershipView::of(&e);
        let n4 = v.row(4).expect("n4 drawn");
        assert_eq!(n4.standing, Standing::Learner);
        let c = n4.catch_up.expect("the leader tracks its learner");
        assert_eq!(c.lag(), 0, "caught up in half a second: {c:?}");
        assert!(c.promotable());
        assert_eq!(v.voter_count(), 3, "a learner does not vote");
        assert_eq!(v.best_learner(), Some(4));
    }

    #[test]
    fn a_second_change_while_one_is_in_flight_is_refused_in_one_line() {
        let mut e = settled(3, 1);
        e.act(UserAction::Member(MemberAction::AddLearner));
        e.act(UserAction::Member(MemberAction::Remove(3)));
        let Some(Err(line)) = &e.member_answer else {
            panic!("expected a refusal, got {:?}", e.member_answer);
        };
        assert!(line.contains("is not applied yet"), "{line}");
        assert!(!line.contains('\n'));
        assert_eq!(
            crate::narrate::refusal_rule(line),
            crate::narrate::RULE_ONE_CHANGE
        );
    }

    #[test]
    fn replacing_a_voter_goes_through_a_joint_configuration() {
        let mut e = settled(3, 1);
        e.act(UserAction::Member(MemberAction::AddLearner));
        e.run_until_time(e.now() + 500_000, u64::MAX);
        let out = (1..=3).find(|&n| Some(n) != e.sim.leader()).unwrap();
        e.act(UserAction::Member(MemberAction::Replace { out, into: 4 }));
        assert!(
            matches!(e.member_answer, Some(Ok(_))),
            "{:?}",
            e.member_answer
        );
        let mut saw_joint = None;
        for _ in 0..20_000 {
            e.advance();
            let v = MembershipView::of(&e);
            if let Some(j) = v.joint.clone() {
                assert_eq!(v.row(out).map(|r| r.standing), Some(Standing::Outgoing));
                assert_eq!(v.row(4).map(|r| r.standing), Some(Standing::Incoming));
                saw_joint = Some(j);
                break;
            }
        }
        let j = saw_joint.expect("the joint configuration is in force at some step");
        assert_eq!(j.old.voters.len(), 3);
        assert_eq!(j.new.voters.len(), 3);
        assert!(j.old.voters.contains(&out) && !j.new.voters.contains(&out));
        assert!(j.new.voters.contains(&4) && !j.old.voters.contains(&4));
        assert_eq!((j.old.majority, j.new.majority), (2, 2));
        e.run_until_time(e.now() + 500_000, u64::MAX);
        let v = MembershipView::of(&e);
        assert_eq!(v.joint, None, "the joint configuration was left by itself");
        assert_eq!(v.row(4).map(|r| r.standing), Some(Standing::Voter));
        assert_eq!(v.row(out).map(|r| r.standing), Some(Standing::Removed));
        assert_eq!(v.voter_count(), 3);
    }

    #[test]
    fn without_a_leader_nothing_is_asked() {
        let mut e = Engine::new(SimConfig::new(3, 1));
        e.act(UserAction::Member(MemberAction::AddLearner));
        let Some(Err(line)) = &e.member_answer else {
            panic!("expected a refusal");
        };
        assert!(line.starts_with("No leader"), "{line}");
        assert_eq!(e.sim.nodes().len(), 3, "no node was started");
    }

    fn play(id: &str, until: u64) -> Engine {
        let sc = crate::scenarios::SCENARIOS
            .iter()
            .find(|s| s.id == id)
            .expect("scenario exists");
        let mut e = sc.engine();
        e.run_until_time(until, u64::MAX);
        e
    }

    fn narrated(e: &Engine) -> Vec<crate::narrate::Narration> {
        (0..e.trace().len())
            .filter_map(|i| {
                let seen = crate::narrate::Seen {
                    removed: e.was_removed(i),
                    ..Default::default()
                };
                crate::narrate::narrate_in(&e.trace()[i], seen)
            })
            .collect()
    }

    #[test]
    fn the_replace_scenario_refuses_early_then_goes_joint_and_leaves() {
        use crate::narrate::*;
        let e = play("replace-voter", 4_000_000);
        let lines = narrated(&e);
        let refused: Vec<_> = lines
            .iter()
            .filter(|n| n.class == "member-refused")
            .collect();
        let rules: Vec<&str> = refused.iter().map(|n| n.rule).collect();
        assert_eq!(rules, [RULE_ONE_CHANGE, RULE_PROMOTION_LAG], "{refused:?}");
        assert!(
            refused[1].text.contains("not caught up"),
            "{}",
            refused[1].text
        );
        assert!(lines.iter().any(|n| n.rule == RULE_LEARNER));
        let joint = lines.iter().filter(|n| n.rule == RULE_JOINT).count();
        assert!(
            joint >= 3,
            "every voter applies the joint configuration: {joint}"
        );
        assert!(lines
            .iter()
            .any(|n| n.rule == RULE_APPLY_TIME && n.text.contains("n4")));
        let v = MembershipView::of(&e);
        assert_eq!(v.joint, None);
        assert_eq!(v.row(4).map(|r| r.standing), Some(Standing::Voter));
        assert_eq!(v.voter_count(), 3);
        assert_eq!(
            v.rows
                .iter()
                .filter(|r| r.standing == Standing::Removed)
                .count(),
            1
        );
    }

    #[test]
    fn the_removed_node_campaigns_in_vain() {
        let e = play("removed-node", 4_000_000);
        let (&gone, _) = e.removed_at.iter().next().expect("a node was removed");
        let lines = narrated(&e);
        let tries = lines
            .iter()
            .filter(|n| n.rule == crate::narrate::RULE_REMOVED_NODE)
            .count();
        assert!(
            tries >= 3,
            "n{gone} timed out {tries} times after its removal"
        );
        let leaders = crate::scenarios::leaders_by_term(e.trace());
        assert_eq!(leaders.len(), 1, "one leader, one term: {leaders:?}");
        let v = MembershipView::of(&e);
        assert_eq!(v.row(gone).map(|r| r.standing), Some(Standing::Removed));
        assert!(v.row(gone).is_some_and(|r| r.up), "it still runs");
    }
}
