//! Reads that skip the log (see `keyval_core::read`): ReadIndex with batched confirmation
//! rounds, leases and their clock-drift margin, follower reads and serializable reads, each
//! scripted on the simulator. Three of them are pinned as readable insta traces.

mod common;

use common::*;
use keyval_core::kv::ReadConsistency;
use keyval_core::sim::linearizability::{self, OpResult, Verdict};
use keyval_core::sim::{FaultAction, SimConfig, Simulator, TraceKind};
use keyval_core::{NodeEvent, NodeId};

const LIN: Option<ReadConsistency> = Some(ReadConsistency::Linearizable);
const LEASE: Option<ReadConsistency> = Some(ReadConsistency::Lease);

fn lease_cluster(seed: u64, margin_pct: u32) -> Simulator {
    let mut c = SimConfig::new(3, seed);
    c.raft.lease_reads = true;
    c.raft.lease_drift_margin_pct = margin_pct;
    Simulator::new(c)
}

/// Submits as `client` at `node` and returns the operation's position in the history.
fn submit_at(
    sim: &mut Simulator,
    client: u64,
    op: keyval_core::KvOp,
    consistency: Option<ReadConsistency>,
    node: NodeId,
) -> usize {
    let at = sim.history().len();
    sim.submit_from(client, op, consistency, Some(node))
        .expect("client idle");
    at
}

fn wait_outcome(sim: &mut Simulator, h: usize, within: u64) -> OpResult {
    let deadline = sim.now() + within;
    assert!(
        run_until_true(sim, deadline, |s| outcome(s, h).is_some()),
        "operation {h} did not complete\n{}",
        status(sim)
    );
    outcome(sim, h).expect("completed")
}

fn events_since(sim: &Simulator, since: u64, node: NodeId) -> Vec<NodeEvent> {
    sim.trace()
        .iter()
        .filter(|e| e.time >= since)
        .filter_map(|e| match &e.kind {
            TraceKind::Node { node: n, event } if *n == node => Some(event.clone()),
            _ => None,
        })
        .collect()
}

fn log_len(sim: &Simulator, n: NodeId) -> u64 {
    raft(sim, n).log().last_index()
}

fn snapshot_trace(name: &str, sim: &Simulator, from: u64) {
    let text = readable_trace(sim.trace(), from, sim.now());
    assert!(text.lines().count() >= 5, "{name}: trace too short");
    insta::with_settings!({
        snapshot_path => "../../snapshots",
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!(name, text);
    });
}

/// A ReadIndex read costs no log entry: the leader confirms with one heartbeat round, and
/// three reads that arrive while that round is in flight share the next one.
#[test]
fn trace_read_index_batched_with_two_others() {
    let mut sim = cluster(3, 5);
    let l = wait_for_stable_leader(&mut sim, SEC);
    assert_eq!(submit_and_wait(&mut sim, put("k", "v"), SEC), OpResult::Put);
    run_for(&mut sim, 20 * MS);
    let before = log_len(&sim, l);
    let from = sim.now();

    let first = submit_at(&mut sim, 101, get("k"), LIN, l);
    run_until_true(&mut sim, from + SEC, |s| {
        sim_has_event(s, from, l, |e| {
            matches!(e, NodeEvent::ReadRoundStarted { .. })
        })
    });
    let batched: Vec<usize> = (102..=104)
        .map(|c| submit_at(&mut sim, c, get("k"), LIN, l))
        .collect();
    for h in std::iter::once(first).chain(batched) {
        assert_eq!(
            wait_outcome(&mut sim, h, SEC),
            OpResult::Get(Some(b"v".to_vec()))
        );
    }
    assert_eq!(log_len(&sim, l), before, "reads must not enter the log");
    let rounds: Vec<u64> = events_since(&sim, from, l)
        .into_iter()
        .filter_map(|e| match e {
            NodeEvent::ReadRoundStarted { reads, .. } => Some(reads),
            _ => None,
        })
        .collect();
    assert_eq!(
        rounds,
        vec![1, 3],
        "one round, then one shared by the three that waited"
    );
    run_for(&mut sim, 5 * MS);
    snapshot_trace("read_index_batched_with_two_others", &sim, from);
    assert_safe(&mut sim);
}

fn sim_has_event(
    sim: &Simulator,
    since: u64,
    node: NodeId,
    pred: impl Fn(&NodeEvent) -> bool,
) -> bool {
    events_since(sim, since, node).iter().any(pred)
}

/// With its lease valid the leader answers at once: no round, no message.
#[test]
fn trace_lease_read() {
    let mut sim = lease_cluster(5, 10);
    let l = wait_for_stable_leader(&mut sim, SEC);
    assert_eq!(submit_and_wait(&mut sim, put("k", "v"), SEC), OpResult::Put);
    run_for(&mut sim, 120 * MS); // a few heartbeat rounds renew the lease
    assert!(raft(&sim, l).lease_valid(), "{}", status(&sim));
    let from = sim.now();
    let h = submit_at(&mut sim, 101, get("k"), LEASE, l);
    assert_eq!(
        wait_outcome(&mut sim, h, SEC),
        OpResult::Get(Some(b"v".to_vec()))
    );
    let events = events_since(&sim, from, l);
    assert!(events
        .iter()
        .any(|e| matches!(e, NodeEvent::LeaseRead { .. })));
    assert!(!events
        .iter()
        .any(|e| matches!(e, NodeEvent::ReadRoundStarted { .. })));
    assert_eq!(raft(&sim, l).read_stats().lease_hits, 1);
    snapshot_trace("lease_read", &sim, from);
    assert_safe(&mut sim);
}

/// A leader cut off from the others keeps believing it leads for a while, but its ReadIndex
/// round finds no quorum: the read fails (definitely: it is safe to retry) instead of
/// answering from a state the new leader has already moved past.
#[test]
fn trace_stale_leader_read_refused_after_partition() {
    let mut sim = cluster(3, 8);
    let old = wait_for_stable_leader(&mut sim, SEC);
    assert_eq!(
        submit_and_wait(&mut sim, put("k", "old"), SEC),
        OpResult::Put
    );
    run_for(&mut sim, 20 * MS);
    let rest: Vec<NodeId> = sim.voters().into_iter().filter(|&n| n != old).collect();
    sim.apply_fault(FaultAction::Partition(vec![vec![old], rest.clone()]));
    let deadline = sim.now() + 2 * SEC;
    assert!(run_until_true(&mut sim, deadline, |s| {
        rest.iter().any(|&n| raft(s, n).is_leader())
    }));
    let new = rest
        .iter()
        .copied()
        .find(|&n| raft(&sim, n).is_leader())
        .expect("new leader");
    let w = submit_at(&mut sim, 102, put("k", "new"), None, new);
    assert_eq!(wait_outcome(&mut sim, w, SEC), OpResult::Put);

    // The old leader has not noticed yet (Check-Quorum is slower than this script).
    let from = sim.now();
    assert!(raft(&sim, old).is_leader(), "{}", status(&sim));
    let h = submit_at(&mut sim, 101, get("k"), LIN, old);
    let deadline = sim.now() + 2 * SEC;
    run_until_true(&mut sim, deadline, |s| {
        s.trace().iter().any(|e| {
            e.time >= from
                && matches!(
                    &e.kind,
                    TraceKind::Delivered {
                        to: keyval_core::sim::trace::Addr::Client(101),
                        ..
                    }
                )
        })
    });
    assert_eq!(
        outcome(&sim, h),
        None,
        "a stale leader must not answer the read"
    );
    let refused = sim.trace().iter().any(|e| {
        e.time >= from
            && matches!(
                &e.kind,
                TraceKind::Sent {
                    payload: keyval_core::sim::trace::Payload::Reply {
                        outcome: Err(keyval_core::ClientError::ReadNotConfirmed { .. }),
                        ..
                    },
                    ..
                }
            )
    });
    assert!(refused, "the read is refused with a retryable error");
    snapshot_trace("stale_leader_read_refused_after_partition", &sim, from);
    sim.apply_fault(FaultAction::Heal);
    assert_safe(&mut sim);
}

/// A follower serves a linearizable read by asking the leader for a read index.
#[test]
fn follower_read_returns_the_latest_write() {
    let mut sim = cluster(3, 11);
    let l = wait_for_stable_leader(&mut sim, SEC);
    assert_eq!(
        submit_and_wait(&mut sim, put("k", "v1"), SEC),
        OpResult::Put
    );
    let f = sim
        .voters()
        .into_iter()
        .find(|&n| n != l)
        .expect("follower");
    let from = sim.now();
    let h = submit_at(&mut sim, 101, get("k"), LIN, f);
    assert_eq!(
        wait_outcome(&mut sim, h, SEC),
        OpResult::Get(Some(b"v1".to_vec()))
    );
    assert_eq!(raft(&sim, f).read_stats().follower_reads, 1);
    let asked = sim.trace().iter().any(|e| {
        e.time >= from
            && matches!(
                &e.kind,
                TraceKind::Sent {
                    payload: keyval_core::sim::trace::Payload::Raft(
                        keyval_core::Message::ReadIndex { .. }
                    ),
                    ..
                }
            )
    });
    assert!(asked, "the follower asked the leader for a read index");
    assert_safe(&mut sim);
}

/// A new leader answers no ReadIndex read before an entry of its own term commits: until then
/// its commit index may be behind writes the old leader acknowledged.
#[test]
fn a_new_leader_waits_for_its_first_commit_before_reading() {
    let mut sim = cluster(3, 21);
    let old = wait_for_stable_leader(&mut sim, SEC);
    assert_eq!(submit_and_wait(&mut sim, put("k", "v"), SEC), OpResult::Put);
    sim.apply_fault(FaultAction::Crash(old));
    let deadline = sim.now() + 2 * SEC;
    let new = {
        assert!(run_until_true(&mut sim, deadline, |s| s.leader().is_some()));
        sim.leader().expect("leader")
    };
    // Submitted the moment it leads: the read is held until the no-op commits.
    let h = submit_at(&mut sim, 101, get("k"), LIN, new);
    assert_eq!(
        wait_outcome(&mut sim, h, SEC),
        OpResult::Get(Some(b"v".to_vec()))
    );
    let term = raft(&sim, new).term();
    assert!(raft(&sim, new).log().term(raft(&sim, new).commit_index()) == Some(term));
    assert_safe(&mut sim);
}

/// Serializable reads are answered by any node from its own state, with no message at all.
#[test]
fn serializable_read_is_local() {
    let mut sim = cluster(3, 13);
    let l = wait_for_stable_leader(&mut sim, SEC);
    assert_eq!(submit_and_wait(&mut sim, put("k", "v"), SEC), OpResult::Put);
    run_for(&mut sim, 100 * MS);
    let f = sim
        .voters()
        .into_iter()
        .find(|&n| n != l)
        .expect("follower");
    let h = sim.serializable_reads().len();
    sim.submit_from(101, get("k"), Some(ReadConsistency::Serializable), Some(f))
        .expect("idle");
    let deadline = sim.now() + SEC;
    assert!(run_until_true(&mut sim, deadline, |s| s
        .serializable_reads()[h]
        .complete
        .is_some()));
    assert_eq!(
        sim.serializable_reads()[h]
            .complete
            .as_ref()
            .map(|c| c.1.clone()),
        Some(OpResult::Get(Some(b"v".to_vec())))
    );
    assert!(
        sim.history().iter().all(|o| o.client != 101),
        "serializable reads stay out of the linearizable history"
    );
}

/// A lease read asked of a node with lease reads off is refused, never silently degraded.
#[test]
fn lease_reads_must_be_enabled() {
    let mut sim = cluster(3, 14);
    let l = wait_for_stable_leader(&mut sim, SEC);
    let from = sim.now();
    submit_at(&mut sim, 101, get("k"), LEASE, l);
    run_for(&mut sim, 50 * MS);
    let refused = sim.trace().iter().any(|e| {
        e.time >= from
            && matches!(
                &e.kind,
                TraceKind::Sent {
                    payload: keyval_core::sim::trace::Payload::Reply {
                        outcome: Err(keyval_core::ClientError::LeaseReadsDisabled),
                        ..
                    },
                    ..
                }
            )
    });
    assert!(refused);
}

/// The proof that the lease's drift margin is real. The leader's clock runs 20 % slow and the
/// followers' 20 % fast; the leader is cut off right after a confirmed round, the followers
/// elect a new leader and a write commits there. A lease without margin still answers at the
/// old leader, and the checker flags the stale read; with the 35 % margin this drift needs,
/// the same schedule finds the lease lapsed and stays linearizable.
#[test]
fn a_lease_without_drift_margin_serves_a_stale_read_that_the_checker_catches() {
    let stale = lease_run_under_drift(0);
    assert!(
        matches!(stale, Verdict::NotLinearizable { .. }),
        "margin 0: expected a stale read, got {stale:?}"
    );
    let safe = lease_run_under_drift(35);
    assert_eq!(safe, Verdict::Linearizable, "margin 35 %");
}

fn lease_run_under_drift(margin_pct: u32) -> Verdict {
    let mut c = SimConfig::new(3, 1);
    c.raft.lease_reads = true;
    c.raft.lease_drift_margin_pct = margin_pct;
    c.raft.election_ticks = 40;
    c.raft.heartbeat_ticks = 4;
    let mut sim = Simulator::new(c);
    let old = wait_for_stable_leader(&mut sim, 3 * SEC);
    assert_eq!(
        submit_and_wait(&mut sim, put("k", "old"), SEC),
        OpResult::Put
    );
    let rest: Vec<NodeId> = sim.voters().into_iter().filter(|&n| n != old).collect();
    sim.apply_fault(FaultAction::SetClockDrift(old, -200));
    for &n in &rest {
        sim.apply_fault(FaultAction::SetClockDrift(n, 200));
    }
    // Right after a round is confirmed (the lease is as fresh as it gets), cut the leader off.
    let since = sim.now();
    assert!(run_until_true(&mut sim, since + SEC, |s| {
        raft(s, old).lease_valid()
        && s.trace().iter().any(|e| e.time > since
            && matches!(&e.kind, TraceKind::Delivered { from: keyval_core::sim::trace::Addr::Node(f), to: keyval_core::sim::trace::Addr::Node(t), .. } if *t == old && *f != old))
    }));
    sim.apply_fault(FaultAction::Partition(vec![vec![old], rest.clone()]));
    let deadline = sim.now() + 3 * SEC;
    assert!(run_until_true(&mut sim, deadline, |s| rest.iter().any(
        |&n| raft(s, n).is_leader() && raft(s, n).lease_ticks() > 0 && {
            let r = raft(s, n);
            r.log().term(r.commit_index()) == Some(r.term())
        }
    )));
    let new = rest
        .iter()
        .copied()
        .find(|&n| raft(&sim, n).is_leader())
        .expect("new leader");
    let w = submit_at(&mut sim, 102, put("k", "new"), None, new);
    assert_eq!(wait_outcome(&mut sim, w, SEC), OpResult::Put);
    // Strictly after the write returned, read at the old leader, under its lease.
    run_for(&mut sim, MS);
    submit_at(&mut sim, 103, get("k"), LEASE, old);
    run_for(&mut sim, 30 * MS);
    linearizability::check(sim.history(), 1_000_000).0
}
