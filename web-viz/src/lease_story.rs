//! Directed read scenarios on the real core: a stale read that a lease without drift margin
//! serves, the same schedule with ReadIndex refusing it, and a read that reaches a new leader
//! before its first commit.
//!
//! Like [`crate::figure8`], the faults must strike at protocol moments (the old leader is cut
//! off right after a read round was confirmed, the write goes to the new leader once it has
//! committed its no-op), so the run is watched once and each action recorded at the simulator
//! step where it struck. The learner then plays that action log from step 0 and it replays
//! exactly. The stale-read schedule mirrors core's
//! `tests/reads.rs::a_lease_without_drift_margin_serves_a_stale_read_that_the_checker_catches`.

use keyval_core::sim::{FaultAction, SimConfig, Simulator, TraceKind};
use keyval_core::{KvOp, NodeEvent, NodeId, RaftNode, ReadConsistency};

use crate::engine::{Engine, LoggedAction, UserAction, MANUAL_CLIENT};

const MS: u64 = 1_000;
const SEC: u64 = 1_000_000;

/// Which read the story ends with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Story {
    /// The old leader, cut off and with a slow clock, gets a lease read (margin 0).
    StaleLease,
    /// The same schedule with a linearizable (ReadIndex) read.
    ReadIndex,
    /// A read reaches a leader that has not yet committed an entry of its term.
    FirstCommit,
}

/// What the directed run established, for the course's questions and the tests.
#[derive(Clone, Debug, PartialEq)]
pub struct LeaseStory {
    pub story: Story,
    pub actions: Vec<LoggedAction>,
    /// Simulator steps of the whole directed run (the timeline's end).
    pub steps: u64,
    /// The leader the read is sent to.
    pub reader: NodeId,
    /// The leader elected while `reader` was cut off (StaleLease and ReadIndex).
    pub new_leader: Option<NodeId>,
    /// Sequence number of the manual client's final read.
    pub read_seq: u64,
}

/// Three nodes with lease reads on and no drift margin. A long election timeout (40 ticks)
/// leaves room to see the lease bar drain; 4-tick heartbeats renew it ten times per timeout.
pub fn config(seed: u64) -> SimConfig {
    let mut c = SimConfig::new(3, seed);
    c.raft.lease_reads = true;
    c.raft.lease_drift_margin_pct = 0;
    c.raft.election_ticks = 40;
    c.raft.heartbeat_ticks = 4;
    c
}

fn raft(sim: &Simulator, n: NodeId) -> Option<&RaftNode> {
    sim.nodes().get(&n)?.server.as_ref().map(|s| s.raft())
}

/// A leader that has committed an entry of its own term.
fn settled_leader(s: &Simulator, n: NodeId) -> bool {
    raft(s, n).is_some_and(|r| r.is_leader() && r.log().term(r.commit_index()) == Some(r.term()))
}

/// Steps until `pred` holds or `limit` µs of virtual time pass. Returns whether it held.
fn run_until(e: &mut Engine, limit: u64, pred: impl Fn(&Engine) -> bool) -> bool {
    let deadline = e.now() + limit;
    loop {
        if pred(e) {
            return true;
        }
        if e.now() > deadline || !e.advance() {
            return false;
        }
    }
}

fn client_idle(e: &Engine) -> bool {
    !e.client_busy()
}

fn send(e: &mut Engine, op: KvOp, consistency: Option<ReadConsistency>, node: NodeId) {
    e.act(UserAction::SubmitTo {
        op,
        consistency,
        node: Some(node),
    });
}

fn put(v: &str) -> KvOp {
    KvOp::Put {
        key: b"x".to_vec(),
        value: v.as_bytes().to_vec(),
    }
}

fn get() -> KvOp {
    KvOp::Get { key: b"x".to_vec() }
}

/// Directs `story` on `cfg`; `None` when this seed's timing does not produce it.
pub fn direct(cfg: SimConfig, story: Story) -> Option<LeaseStory> {
    let mut e = Engine::new(cfg);
    if story == Story::FirstCommit {
        // The instant a node becomes leader, before its no-op can have committed.
        if !run_until(&mut e, 3 * SEC, |e| e.sim.leader().is_some()) {
            return None;
        }
        let l = e.sim.leader()?;
        if settled_leader(&e.sim, l) {
            return None;
        }
        send(&mut e, get(), Some(ReadConsistency::Linearizable), l);
        let seq = e.client_seq?;
        run_until(&mut e, 500 * MS, |_| false);
        return Some(LeaseStory {
            story,
            actions: e.actions.clone(),
            steps: e.step_count(),
            reader: l,
            new_leader: None,
            read_seq: seq,
        });
    }
    if !run_until(&mut e, 3 * SEC, |e| {
        e.sim.leader().is_some_and(|l| settled_leader(&e.sim, l))
    }) {
        return None;
    }
    let old = e.sim.leader()?;
    send(&mut e, put("old"), None, old);
    if !run_until(&mut e, SEC, client_idle) {
        return None;
    }
    let rest: Vec<NodeId> = e.sim.voters().into_iter().filter(|&n| n != old).collect();
    e.act(UserAction::Fault(FaultAction::SetClockDrift(old, -200)));
    for &n in &rest {
        e.act(UserAction::Fault(FaultAction::SetClockDrift(n, 200)));
    }
    // Right after a follower's acknowledgement renewed the lease, cut the leader off.
    let since = e.trace().len();
    if !run_until(&mut e, SEC, |e| {
        raft(&e.sim, old).is_some_and(|r| r.lease_valid())
            && e.trace()[since..].iter().any(|ev| {
                matches!(&ev.kind, TraceKind::Node { node, event: NodeEvent::ReadConfirmed { .. } } if *node == old)
                    || matches!(&ev.kind, TraceKind::Delivered { from: keyval_core::trace::Addr::Node(f), to: keyval_core::trace::Addr::Node(t), .. } if *t == old && *f != old)
            })
    }) {
        return None;
    }
    e.act(UserAction::Fault(FaultAction::Partition(vec![
        vec![old],
        rest.clone(),
    ])));
    if !run_until(&mut e, 3 * SEC, |e| {
        rest.iter().any(|&n| settled_leader(&e.sim, n))
    }) {
        return None;
    }
    let new = *rest.iter().find(|&&n| settled_leader(&e.sim, n))?;
    send(&mut e, put("new"), None, new);
    if !run_until(&mut e, SEC, client_idle) {
        return None;
    }
    // Strictly after the write returned, read at the old leader.
    run_until(&mut e, MS, |_| false);
    let consistency = match story {
        Story::StaleLease => ReadConsistency::Lease,
        _ => ReadConsistency::Linearizable,
    };
    send(&mut e, get(), Some(consistency), old);
    let seq = e.client_seq?;
    // Long enough for a ReadIndex round to expire or check-quorum to depose the old leader.
    run_until(&mut e, 1_500 * MS, |_| false);
    e.act(UserAction::Fault(FaultAction::Heal));
    run_until(&mut e, 300 * MS, |_| false);
    Some(LeaseStory {
        story,
        actions: e.actions.clone(),
        steps: e.step_count(),
        reader: old,
        new_leader: Some(new),
        read_seq: seq,
    })
}

/// A prepared engine for `story` on the first seed from `seed` on whose timing it plays out,
/// with `tune` applied to the configuration (a deliberate bug, for the break menu).
pub fn engine(seed: u64, tune: &dyn Fn(&mut SimConfig), story: Story) -> Option<Engine> {
    (seed..seed + 20).find_map(|s| {
        let mut cfg = config(s);
        tune(&mut cfg);
        let found = direct(cfg.clone(), story)?;
        let mut e = Engine::prepared(cfg, found.actions.clone(), found.steps);
        e.lease_story = Some(found);
        Some(e)
    })
}

pub fn stale_lease(seed: u64, tune: &dyn Fn(&mut SimConfig)) -> Option<Engine> {
    engine(seed, tune, Story::StaleLease)
}

pub fn read_index(seed: u64, tune: &dyn Fn(&mut SimConfig)) -> Option<Engine> {
    engine(seed, tune, Story::ReadIndex)
}

pub fn first_commit(seed: u64, tune: &dyn Fn(&mut SimConfig)) -> Option<Engine> {
    engine(seed, tune, Story::FirstCommit)
}

/// How the story's final read ended, once it has: `Some(Ok(value))` answered (the value read,
/// None for not-found), `Some(Err(()))` refused by the node it was sent to.
pub fn read_outcome(e: &Engine) -> Option<Result<Option<Vec<u8>>, ()>> {
    use keyval_core::sim::trace::{Addr, Payload};
    let story = e.lease_story.as_ref()?;
    e.trace().iter().find_map(|ev| match &ev.kind {
        TraceKind::ClientComplete {
            client,
            seq,
            result: keyval_core::KvResult::Get(v),
        } if *client == MANUAL_CLIENT && *seq == story.read_seq => Some(Ok(v.clone())),
        TraceKind::Sent {
            from: Addr::Node(n),
            to: Addr::Client(MANUAL_CLIENT),
            payload:
                Payload::Reply {
                    seq,
                    outcome: Err(_),
                },
            ..
        } if *n == story.reader && *seq == story.read_seq => Some(Err(())),
        _ => None,
    })
}

/// Trace time at which the reader answered or refused the story's read, and the time its
/// term's first commit happened there (None if it never did).
pub fn answered_vs_first_commit(e: &Engine) -> Option<(u64, Option<u64>)> {
    use keyval_core::sim::trace::{Addr, Payload};
    let story = e.lease_story.as_ref()?;
    let answered = e.trace().iter().find_map(|ev| match &ev.kind {
        TraceKind::Sent {
            from: Addr::Node(n),
            to: Addr::Client(MANUAL_CLIENT),
            payload: Payload::Reply { seq, .. },
            ..
        } if *n == story.reader && *seq == story.read_seq => Some(ev.time),
        _ => None,
    })?;
    let committed = e.trace().iter().find_map(|ev| match &ev.kind {
        TraceKind::Node {
            node,
            event: NodeEvent::CommitAdvanced { .. },
        } if *node == story.reader => Some(ev.time),
        _ => None,
    });
    Some((answered, committed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn play(mut e: Engine) -> Engine {
        let h = e.horizon;
        while e.step_count() < h && e.advance() {}
        e
    }

    #[test]
    fn a_lease_without_margin_answers_the_old_value_and_the_checker_flags_it() {
        let e = play(stale_lease(1, &|_| {}).expect("a seed plays the story"));
        assert_eq!(read_outcome(&e), Some(Ok(Some(b"old".to_vec()))));
        let (verdict, _) = keyval_core::sim::linearizability::check(e.sim.history(), 1_000_000);
        assert!(
            matches!(
                verdict,
                keyval_core::sim::linearizability::Verdict::NotLinearizable { .. }
            ),
            "{verdict:?}"
        );
    }

    #[test]
    fn read_index_refuses_the_same_read() {
        let e = play(read_index(1, &|_| {}).expect("a seed plays the story"));
        // The cut-off leader never answers x=old: the client's retry elsewhere reads x=new (or
        // the round expires first and the read fails).
        let outcome = read_outcome(&e).expect("the read ended");
        assert!(matches!(&outcome, Err(()) | Ok(Some(_))), "{outcome:?}");
        assert_ne!(outcome, Ok(Some(b"old".to_vec())));
        let refused = e.trace().iter().any(|ev| {
            matches!(&ev.kind, TraceKind::Sent { from: keyval_core::trace::Addr::Node(n), payload: keyval_core::sim::trace::Payload::Reply { outcome: Err(_), .. }, .. } if Some(*n) == e.lease_story.as_ref().map(|s| s.reader))
        });
        assert!(refused, "the old leader refused the read");
        let (verdict, _) = keyval_core::sim::linearizability::check(e.sim.history(), 1_000_000);
        assert_eq!(
            verdict,
            keyval_core::sim::linearizability::Verdict::Linearizable
        );
    }

    #[test]
    fn a_read_waits_for_the_leaders_first_commit() {
        let e = play(first_commit(1, &|_| {}).expect("a seed plays the story"));
        let (answered, committed) = answered_vs_first_commit(&e).expect("answered");
        let committed = committed.expect("the no-op committed");
        assert!(
            answered >= committed,
            "answered at {answered}, committed at {committed}"
        );
    }

    #[test]
    fn the_recorded_story_replays_exactly() {
        let e = play(stale_lease(1, &|_| {}).unwrap());
        let file = crate::engine::TraceFile::of(&e);
        let back = file.replay().expect("replays");
        assert_eq!(back.trace(), e.trace());
    }
}
