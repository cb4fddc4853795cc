//! The changer's rules, in the spirit of etcd-raft's `confchange/testdata`.

use super::*;

fn cfg(voters: &[NodeId]) -> Membership {
    Membership::bootstrap(voters.iter().copied(), BTreeMap::new())
}

fn ch(kind: ChangeKind, node: NodeId) -> SingleChange {
    SingleChange {
        kind,
        node,
        address: None,
    }
}

fn cc(changes: Vec<SingleChange>, transition: Transition) -> ConfChange {
    ConfChange {
        changes,
        transition,
    }
}

use ChangeKind::*;

#[test]
fn simple_add_learner_then_promote() {
    let m = cfg(&[1, 2, 3]);
    let m = m.apply(&ConfChange::single(AddLearner, 4)).unwrap();
    assert!(m.is_learner(4) && !m.is_voter(4) && !m.is_joint());
    let m = m.apply(&ConfChange::single(AddVoter, 4)).unwrap();
    assert!(m.is_voter(4) && !m.is_learner(4));
    assert_eq!(m.to_string(), "voters=[n1,n2,n3,n4]");
}

#[test]
fn the_intent_to_promote_is_set_by_adding_and_cleared_by_promotion_or_removal() {
    let m = cfg(&[1, 2, 3])
        .apply(&ConfChange::single(AddLearnerThenVoter, 4))
        .unwrap();
    assert!(m.is_learner(4) && !m.is_voter(4));
    assert_eq!(m.promote_when_caught_up, BTreeSet::from([4]));
    assert_eq!(
        m.to_string(),
        "voters=[n1,n2,n3] learners=[n4] promote=[n4]"
    );
    let promoted = m.apply(&ConfChange::single(AddVoter, 4)).unwrap();
    assert!(promoted.promote_when_caught_up.is_empty());
    let removed = m.apply(&ConfChange::single(Remove, 4)).unwrap();
    assert!(removed.promote_when_caught_up.is_empty());
    // Only a new node carries the intent: a member (learner or voter) is refused.
    assert_eq!(
        m.apply(&ConfChange::single(AddLearnerThenVoter, 4)),
        Err(ConfChangeError::AlreadyMember(4))
    );
    assert_eq!(
        m.apply(&ConfChange::single(AddLearnerThenVoter, 1)),
        Err(ConfChangeError::AlreadyMember(1))
    );
    // The intent belongs to learners only.
    let mut broken = m.clone();
    broken.promote_when_caught_up.insert(2);
    assert!(broken.check_invariants().is_err());
}

#[test]
fn simple_refuses_two_voter_changes() {
    let m = cfg(&[1, 2, 3]);
    let two = cc(vec![ch(AddVoter, 4), ch(Remove, 1)], Transition::Auto);
    // Auto falls back to joint for two voter changes...
    assert!(m.apply(&two).unwrap().is_joint());
    // ...and the simple path itself refuses them.
    assert_eq!(
        m.simple(&two.changes),
        Err(ConfChangeError::TooManyVoterChanges)
    );
}

#[test]
fn replace_goes_through_joint_and_leaves_automatically() {
    let m = cfg(&[1, 2, 3]);
    let joint = m
        .apply(&cc(vec![ch(AddVoter, 4), ch(Remove, 3)], Transition::Auto))
        .unwrap();
    assert_eq!(joint.to_string(), "voters=[n1,n2,n4]&&[n1,n2,n3] autoleave");
    assert!(joint.is_voter(3), "an outgoing voter still votes");
    assert_eq!(
        joint.apply(&ConfChange::single(AddLearner, 5)),
        Err(ConfChangeError::AlreadyJoint)
    );
    let left = joint.apply(&ConfChange::leave_joint()).unwrap();
    assert_eq!(left.to_string(), "voters=[n1,n2,n4]");
    assert!(left.removed.contains(&3));
    assert_eq!(
        left.apply(&ConfChange::leave_joint()),
        Err(ConfChangeError::NotJoint)
    );
}

#[test]
fn explicit_joint_does_not_auto_leave() {
    let m = cfg(&[1, 2, 3]);
    let j = m
        .apply(&cc(vec![ch(AddVoter, 4)], Transition::JointExplicit))
        .unwrap();
    assert!(j.is_joint() && !j.auto_leave);
}

#[test]
fn demoting_a_voter_in_joint_stages_it_in_learners_next() {
    let m = cfg(&[1, 2, 3]);
    let j = m
        .apply(&cc(
            vec![ch(AddLearner, 3), ch(AddVoter, 4)],
            Transition::JointImplicit,
        ))
        .unwrap();
    assert!(j.learners_next.contains(&3) && !j.learners.contains(&3));
    assert!(j.is_voter(3));
    j.check_invariants().unwrap();
    let left = j.apply(&ConfChange::leave_joint()).unwrap();
    assert!(left.learners.contains(&3) && !left.is_voter(3));
}

#[test]
fn zero_voters_and_reused_ids_are_refused() {
    let m = cfg(&[1]);
    assert_eq!(
        m.apply(&ConfChange::single(Remove, 1)),
        Err(ConfChangeError::RemovesAllVoters)
    );
    assert_eq!(
        m.apply(&ConfChange::single(AddLearner, 1)),
        Err(ConfChangeError::RemovesAllVoters)
    );
    let m = cfg(&[1, 2]).apply(&ConfChange::single(Remove, 2)).unwrap();
    assert_eq!(
        m.apply(&ConfChange::single(AddLearner, 2)),
        Err(ConfChangeError::IdReused(2))
    );
    assert_eq!(
        m.apply(&ConfChange::single(Remove, 9)),
        Err(ConfChangeError::UnknownNode(9))
    );
    assert_eq!(
        m.apply(&ConfChange::single(AddVoter, 1)),
        Err(ConfChangeError::AlreadyMember(1))
    );
    assert_eq!(
        m.apply(&cc(
            vec![ch(AddLearner, 5), ch(Remove, 5)],
            Transition::Auto
        )),
        Err(ConfChangeError::DuplicateNode(5))
    );
}

#[test]
fn joint_quorum_needs_both_majorities() {
    let j = cfg(&[1, 2, 3])
        .apply(&cc(
            vec![ch(AddVoter, 4), ch(AddVoter, 5), ch(Remove, 3)],
            Transition::Auto,
        ))
        .unwrap();
    // incoming {1,2,4,5}, outgoing {1,2,3}
    let votes = |ids: &[NodeId]| ids.iter().map(|&i| (i, true)).collect::<BTreeMap<_, _>>();
    assert_eq!(j.vote_result(&votes(&[1, 2, 4])), VoteResult::Won);
    assert_eq!(j.vote_result(&votes(&[1, 4, 5])), VoteResult::Pending);
    let mut lost = votes(&[4, 5]);
    lost.insert(1, false);
    lost.insert(2, false);
    assert_eq!(j.vote_result(&lost), VoteResult::Lost);
    let matched = |id: NodeId| match id {
        1 => 10,
        2 => 8,
        3 => 9,
        4 => 7,
        _ => 0,
    };
    // incoming {10,8,7,0} -> 7; outgoing {10,9,8} -> 9
    assert_eq!(j.committed_index(matched), 7);
    assert!(j.has_quorum(|id| [1, 2].contains(&id) || id == 4));
    assert!(!j.has_quorum(|id| [1, 4, 5].contains(&id)));
}

#[test]
fn addresses_follow_membership() {
    let m = cfg(&[1, 2, 3]);
    let add = ConfChange {
        changes: vec![SingleChange {
            kind: AddLearner,
            node: 4,
            address: Some("10.0.0.4:7000".into()),
        }],
        transition: Transition::Auto,
    };
    let m = m.apply(&add).unwrap();
    assert_eq!(
        m.addresses.get(&4).map(String::as_str),
        Some("10.0.0.4:7000")
    );
    let m = m.apply(&ConfChange::single(Remove, 4)).unwrap();
    assert!(!m.addresses.contains_key(&4));
}

#[test]
fn every_change_sequence_keeps_the_invariants() {
    // A small exhaustive walk: every single change from every reachable config, three deep.
    let mut frontier = vec![cfg(&[1, 2, 3])];
    for _ in 0..3 {
        let mut next = Vec::new();
        for m in &frontier {
            for node in 1..=5 {
                for kind in [AddVoter, AddLearner, Remove, AddLearnerThenVoter] {
                    for t in [Transition::Auto, Transition::JointImplicit] {
                        if let Ok(n) = m.apply(&cc(vec![ch(kind, node)], t)) {
                            n.check_invariants().unwrap();
                            next.push(n);
                        }
                    }
                }
            }
            if let Ok(n) = m.apply(&ConfChange::leave_joint()) {
                n.check_invariants().unwrap();
                next.push(n);
            }
        }
        next.dedup();
        frontier = next;
    }
    assert!(frontier.len() > 100);
}

#[test]
fn caught_up_means_acknowledged_and_within_the_lag() {
    assert!(caught_up(10, 1010, 1000) && !caught_up(9, 1010, 1000));
    assert!(
        !caught_up(0, 5, 1000),
        "a learner that never answered is not caught up"
    );
}
