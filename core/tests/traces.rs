//! Readable protocol traces, pinned with insta snapshots in the top-level `snapshots/` folder.
//!
//! Each test runs one short, fault-scripted scenario on a fixed seed and renders its trace one
//! event per line (`TraceEvent::render`), leaving out heartbeats. A changed line means the
//! protocol, the simulator or the trace format changed behaviour: review the diff with
//! `cargo insta review` (or `INSTA_UPDATE=always` and `git diff snapshots/`). CI runs with
//! `INSTA_UPDATE=no`, so an unreviewed change fails it.

mod common;

use common::*;
use keyval_core::sim::linearizability::OpResult;
use keyval_core::sim::{FaultAction, Simulator};
use keyval_core::NodeId;

/// Longest trace we still consider readable.
const MAX_LINES: usize = 400;

/// Snapshots the readable trace of `sim` between virtual times `from` and `to`.
fn assert_trace_snapshot(name: &str, sim: &Simulator, from: u64, to: u64) {
    let text = readable_trace(sim.trace(), from, to);
    let lines = text.lines().count();
    assert!(
        (10..=MAX_LINES).contains(&lines),
        "{name}: {lines} lines is not a readable trace"
    );
    insta::with_settings!({
        snapshot_path => "../../snapshots",
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!(name, text);
    });
}

/// Every node up, the leader's log fully committed, and applied everywhere.
fn all_applied(sim: &Simulator, nodes: &[NodeId]) -> bool {
    sim.leader().is_some_and(|l| {
        let last = raft(sim, l).log().last_index();
        raft(sim, l).commit_index() == last
            && nodes
                .iter()
                .all(|&n| is_up(sim, n) && raft(sim, n).applied_index() == last)
    })
}

fn settle(sim: &mut Simulator, nodes: &[NodeId]) {
    let deadline = sim.now() + 2 * SEC;
    assert!(run_until_true(sim, deadline, |s| all_applied(s, nodes)));
    run_for(sim, 20 * MS);
}

/// Initial election of a 3-node cluster: timeouts, pre-votes, votes, the new leader's no-op
/// replicated, committed and applied everywhere.
#[test]
fn trace_initial_election_3_nodes() {
    let mut sim = cluster(3, 1);
    let all = sim.voters();
    settle(&mut sim, &all);
    assert_safe(&mut sim);
    assert_trace_snapshot("initial_election_3_nodes", &sim, 0, sim.now());
}

/// The leader of a 3-node cluster crashes; a survivor times out, wins the next term with the
/// other's vote and commits its no-op.
#[test]
fn trace_leader_crash_and_reelection() {
    let mut sim = cluster(3, 2);
    let all = sim.voters();
    settle(&mut sim, &all);
    let from = sim.now();
    let old = sim.leader().unwrap();
    sim.apply_fault(FaultAction::Crash(old));
    let survivors: Vec<NodeId> = all.iter().copied().filter(|&n| n != old).collect();
    let deadline = sim.now() + 2 * SEC;
    assert!(run_until_true(&mut sim, deadline, |s| s
        .leader()
        .is_some_and(|l| l != old && all_applied(s, &survivors))));
    run_for(&mut sim, 20 * MS);
    assert_safe(&mut sim);
    assert_trace_snapshot("leader_crash_and_reelection", &sim, from, sim.now());
}

/// Three client writes on a 3-node cluster: request, append, replicate, commit, apply, reply.
#[test]
fn trace_three_replicated_writes() {
    let mut sim = cluster(3, 3);
    let all = sim.voters();
    settle(&mut sim, &all);
    let from = sim.now();
    for (k, v) in [("x", "1"), ("y", "2"), ("x", "3")] {
        assert_eq!(submit_and_wait(&mut sim, put(k, v), SEC), OpResult::Put);
    }
    settle(&mut sim, &all);
    assert_safe(&mut sim);
    assert_trace_snapshot("three_replicated_writes", &sim, from, sim.now());
}

/// A 5-node cluster splits into the leader with one follower (minority) and three others
/// (majority): the majority elects a new leader and commits a write, the old leader steps down
/// (Check-Quorum); after healing, the minority's nodes rejoin and catch up.
#[test]
fn trace_minority_majority_partition_and_heal() {
    let mut sim = cluster(5, 4);
    let all = sim.voters();
    settle(&mut sim, &all);
    let from = sim.now();
    let old = sim.leader().unwrap();
    let buddy = all.iter().copied().find(|&n| n != old).unwrap();
    let majority: Vec<NodeId> = all
        .iter()
        .copied()
        .filter(|&n| n != old && n != buddy)
        .collect();
    sim.apply_fault(FaultAction::Partition(vec![
        vec![old, buddy],
        majority.clone(),
    ]));
    let deadline = sim.now() + 2 * SEC;
    assert!(run_until_true(&mut sim, deadline, |s| s
        .leader()
        .is_some_and(
            |l| majority.contains(&l) && all_applied(s, &majority)
        )));
    assert_eq!(submit_and_wait(&mut sim, put("k", "v"), SEC), OpResult::Put);
    let deadline = sim.now() + SEC;
    assert!(run_until_true(&mut sim, deadline, |s| !raft(s, old).is_leader()));
    sim.apply_fault(FaultAction::Heal);
    settle(&mut sim, &all);
    assert_safe(&mut sim);
    assert_trace_snapshot(
        "minority_majority_partition_and_heal",
        &sim,
        from,
        sim.now(),
    );
}

/// Figure 8 of the Raft paper, scripted (see `common::figure_8`): the old-term write reaches a
/// majority under a later leader without being committed, and is then overwritten.
#[test]
fn trace_figure_8() {
    let mut fig = figure_8(0, None);
    assert!(fig.converged);
    assert!(fig.third_leader_commit < fig.old_entry.index);
    assert_safe(&mut fig.sim);
    // From the first fault until B has overwritten X and committed; the catch-up of the
    // restarted nodes afterwards is left out.
    let to = fig.overwritten_at + 20 * MS;
    assert_trace_snapshot("figure_8", &fig.sim, fig.started_at, to);
}

/// A follower is partitioned away while the leader takes 20 writes and compacts its log past
/// everything the follower holds. After the heal, the leader sends its snapshot in 64-byte
/// chunks, each answered with the next offset wanted; the follower installs it (persisting it
/// before the last answer) and takes the rest of the log by ordinary appends.
#[test]
fn trace_follower_catches_up_by_install_snapshot() {
    let mut sim = snapshot_cluster(3, 5, 10, 64);
    let all = sim.voters();
    settle(&mut sim, &all);
    let leader = sim.leader().unwrap();
    let follower = all.iter().copied().find(|&n| n != leader).unwrap();
    let rest: Vec<NodeId> = all.iter().copied().filter(|&n| n != follower).collect();
    sim.apply_fault(FaultAction::Partition(vec![vec![follower], rest]));
    for i in 0..20 {
        let (k, v) = (format!("k{i}"), format!("v{i}"));
        assert_eq!(submit_and_wait(&mut sim, put(&k, &v), SEC), OpResult::Put);
    }
    assert!(raft(&sim, leader).snapshot_index() > raft(&sim, follower).log().last_index());
    let from = sim.now();
    sim.apply_fault(FaultAction::Heal);
    settle(&mut sim, &all);
    assert_eq!(
        sim.nodes()[&follower].server.as_ref().unwrap().kv(),
        sim.nodes()[&leader].server.as_ref().unwrap().kv()
    );
    assert_safe(&mut sim);
    assert_trace_snapshot(
        "follower_catches_up_by_install_snapshot",
        &sim,
        from,
        sim.now(),
    );
}

/// Every node has snapshotted (every 10 entries) and holds a short log tail after its
/// snapshot when all three crash. Each restarts from its snapshot plus that tail: a leader is
/// elected, its no-op commits the tail, and every node applies from its snapshot index + 1.
#[test]
fn trace_restart_from_snapshot_plus_log_tail() {
    let mut sim = snapshot_cluster(3, 6, 10, 128);
    let all = sim.voters();
    settle(&mut sim, &all);
    for i in 0..14 {
        let (k, v) = (format!("k{i}"), format!("v{i}"));
        assert_eq!(submit_and_wait(&mut sim, put(&k, &v), SEC), OpResult::Put);
    }
    settle(&mut sim, &all);
    let from = sim.now();
    for &n in &all {
        sim.apply_fault(FaultAction::Crash(n));
    }
    for &n in &all {
        assert!(sim.nodes()[&n].storage.snapshot_index() > 0);
        assert!(!sim.nodes()[&n].storage.entries.is_empty());
        sim.apply_fault(FaultAction::Restart(n));
    }
    settle(&mut sim, &all);
    assert_safe(&mut sim);
    assert_trace_snapshot("restart_from_snapshot_plus_log_tail", &sim, from, sim.now());
}
