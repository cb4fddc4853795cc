//! The playground's direct actions as simulator inputs: forcing a node's election timeout now
//! and dropping one chosen message in flight. Both are `FaultAction`s, so a run that uses them
//! replays exactly from its seed and action log.

use keyval_core::sim::trace::{Addr, DropReason, Payload};
use keyval_core::sim::{FaultAction, SimConfig, Simulator, TraceKind};
use keyval_core::{Message, NodeEvent, Role};

const MS: u64 = 1_000;

fn stable_cluster(pre_vote: bool) -> Simulator {
    let mut c = SimConfig::new(3, 4);
    c.raft.pre_vote = pre_vote;
    let mut sim = Simulator::new(c);
    sim.run_until(1_000 * MS);
    assert!(sim.leader().is_some(), "a leader after 1 s");
    sim
}

fn follower(sim: &Simulator) -> u64 {
    let l = sim.leader().expect("leader");
    sim.voters()
        .into_iter()
        .find(|&n| n != l)
        .expect("a follower")
}

fn role(sim: &Simulator, n: u64) -> Option<Role> {
    sim.nodes()[&n].role()
}

#[test]
fn a_forced_timeout_makes_a_follower_campaign_at_once() {
    let mut sim = stable_cluster(false);
    let f = follower(&sim);
    let term = sim.nodes()[&f].server.as_ref().unwrap().raft().term();
    let from = sim.trace().len();
    sim.apply_fault(FaultAction::ElectionTimeout(f));
    assert_eq!(role(&sim, f), Some(Role::Candidate));
    let t = &sim.trace()[from..];
    assert!(matches!(t[0].kind, TraceKind::TimeoutForced { node } if node == f));
    assert!(t.iter().any(|e| matches!(&e.kind,
        TraceKind::Node { node, event: NodeEvent::RoleChanged { to: Role::Candidate, term: tt, .. } }
            if *node == f && *tt == term + 1)));
}

#[test]
fn with_pre_vote_a_forced_timeout_under_a_live_leader_is_refused() {
    let mut sim = stable_cluster(true);
    let leader = sim.leader().unwrap();
    let f = follower(&sim);
    sim.apply_fault(FaultAction::ElectionTimeout(f));
    assert_eq!(role(&sim, f), Some(Role::PreCandidate));
    sim.run_until(sim.now() + 300 * MS);
    assert_eq!(sim.leader(), Some(leader), "pre-vote kept the leader");
}

#[test]
fn a_leader_or_a_crashed_node_ignores_a_forced_timeout() {
    let mut sim = stable_cluster(true);
    let leader = sim.leader().unwrap();
    let f = follower(&sim);
    sim.apply_fault(FaultAction::Crash(f));
    let len = sim.trace().len();
    sim.apply_fault(FaultAction::ElectionTimeout(leader));
    sim.apply_fault(FaultAction::ElectionTimeout(f));
    assert_eq!(sim.trace().len(), len, "nothing happened");
    assert_eq!(role(&sim, leader), Some(Role::Leader));
}

/// The first message on the wire that is not yet delivered, sent from one node to another.
fn one_in_flight(sim: &Simulator) -> (u64, u64) {
    let t = sim.trace();
    t.iter()
        .rev()
        .find_map(|e| match &e.kind {
            TraceKind::Sent {
                id,
                from: Addr::Node(_),
                to: Addr::Node(_),
                deliver_at,
                payload: Payload::Raft(Message::Heartbeat { .. }),
            } if *deliver_at > sim.now() => Some((*id, *deliver_at)),
            _ => None,
        })
        .expect("a heartbeat in flight")
}

#[test]
fn a_dropped_message_is_never_delivered_and_the_drop_is_recorded() {
    let mut sim = stable_cluster(true);
    // Step until a heartbeat is on the wire.
    while !sim.trace().iter().rev().take(20).any(|e| {
        matches!(&e.kind, TraceKind::Sent { deliver_at, payload: Payload::Raft(Message::Heartbeat { .. }), .. } if *deliver_at > sim.now())
    }) {
        sim.step();
    }
    let (id, at) = one_in_flight(&sim);
    let wire = sim.messages_in_flight();
    sim.apply_fault(FaultAction::DropMessage(id));
    assert_eq!(sim.messages_in_flight(), wire - 1);
    sim.run_until(at + 50 * MS);
    let about: Vec<&TraceKind> = sim
        .trace()
        .iter()
        .map(|e| &e.kind)
        .filter(|k| matches!(k, TraceKind::Delivered { id: x, .. } | TraceKind::Dropped { id: x, .. } if *x == id))
        .collect();
    assert_eq!(about.len(), 1, "{about:?}");
    assert!(matches!(
        about[0],
        TraceKind::Dropped {
            reason: DropReason::ByHand,
            ..
        }
    ));
}

#[test]
fn runs_with_direct_actions_replay_exactly() {
    let run = || {
        let mut sim = stable_cluster(true);
        let f = follower(&sim);
        sim.step();
        let (id, _) = {
            while sim.messages_in_flight() == 0 {
                sim.step();
            }
            let t = sim.trace();
            t.iter()
                .rev()
                .find_map(|e| match &e.kind {
                    TraceKind::Sent { id, deliver_at, .. } if *deliver_at > sim.now() => {
                        Some((*id, ()))
                    }
                    _ => None,
                })
                .expect("in flight")
        };
        sim.apply_fault(FaultAction::DropMessage(id));
        sim.apply_fault(FaultAction::ElectionTimeout(f));
        sim.run_until(sim.now() + 2_000 * MS);
        sim.trace().to_vec()
    };
    assert_eq!(run(), run());
}
