//! Scripted scenarios for the classic Raft situations, each asserting its outcome: elections,
//! agreement, commit rules, log repair, persistence and the behaviour under an unreliable network
//! and churn. Every scenario also ends by asserting that the simulator's safety checkers (election
//! safety, leader append-only, log matching, leader completeness, state machine safety, monotonic
//! term/commit/applied) saw no violation.
//!
//! Timing (SimConfig defaults): 10 ms ticks, heartbeats every 5 ticks, election timeouts drawn
//! from 15..30 ticks, 1..5 ms network latency.

mod common;

use common::*;
use keyval_core::mutation::Mutation;
use keyval_core::rng::Rng;
use keyval_core::sim::linearizability::{self, OpResult, Verdict};
use keyval_core::sim::workload::MANUAL_CLIENT;
use keyval_core::sim::{FaultAction, NetworkConfig, SimConfig, Simulator};
use keyval_core::trace::DropReason;
use keyval_core::trace::{Addr, TraceKind};
use keyval_core::{NodeEvent, NodeId, Role};

/// A cluster with `clients` workload clients issuing `ops` operations each.
fn cluster_with_clients(n: usize, seed: u64, clients: usize, ops: u32) -> Simulator {
    let mut cfg = SimConfig::new(n, seed);
    cfg.workload.clients = clients;
    cfg.workload.ops_per_client = ops;
    Simulator::new(cfg)
}

/// Every client operation in the history is explained by one sequential order (per key), and
/// the search finished within its budget.
fn assert_linearizable(sim: &Simulator) {
    let (verdict, stats) = linearizability::check(sim.history(), 5_000_000);
    assert_eq!(
        verdict,
        Verdict::Linearizable,
        "{} operations over {} keys",
        stats.operations,
        stats.keys
    );
}

/// Stops the faults, then waits for every client to finish and the replicas to converge.
fn finish_and_converge(sim: &mut Simulator, within: u64) {
    sim.apply_fault(FaultAction::StopFaults);
    let deadline = sim.now() + within;
    assert!(
        run_until_true(sim, deadline, |s| s.clients_done()),
        "clients still pending {within}us after faults stopped\n{}",
        status(sim)
    );
    wait_converged(sim, 5 * SEC);
}

fn trace_has(sim: &Simulator, since: u64, pred: impl Fn(&TraceKind) -> bool) -> bool {
    sim.trace().iter().any(|e| e.time >= since && pred(&e.kind))
}

/// Election: a fault-free cluster elects one leader within a few election timeouts, every node
/// learns it, and heartbeats then keep the same leader and term for 10 s: no election timeout
/// fires and no role changes.
#[test]
fn initial_election_and_stable_term() {
    for (n, seed) in [(3, 1), (3, 2), (5, 3), (7, 4)] {
        let mut sim = cluster(n, seed);
        let leader = wait_for_stable_leader(&mut sim, SEC);
        let term = raft(&sim, leader).term();
        assert!(term >= 1);
        assert_eq!(leaders(&sim), vec![leader]);

        let t0 = sim.now();
        run_for(&mut sim, 10 * SEC);
        assert_eq!(sim.leader(), Some(leader), "seed {seed}: leader changed");
        for id in sim.voters() {
            assert_eq!(
                raft(&sim, id).term(),
                term,
                "seed {seed}: n{id} changed term"
            );
            assert_eq!(raft(&sim, id).leader(), Some(leader));
        }
        let unrest = sim.trace().iter().filter(|e| e.time > t0).find(|e| {
            matches!(
                e.kind,
                TraceKind::Node {
                    event: NodeEvent::ElectionTimeout { .. } | NodeEvent::RoleChanged { .. },
                    ..
                }
            )
        });
        assert!(
            unrest.is_none(),
            "seed {seed}: {}",
            unrest.unwrap().render()
        );
        assert_safe(&mut sim);
    }
}

/// Re-election and Check-Quorum: when the leader is cut off, the majority elects a new leader
/// in a higher term, and the old leader steps down on its own within two check-quorum rounds.
/// Pre-Vote keeps the isolated node's term from climbing, so when the network heals it rejoins
/// as a follower without disturbing the new leader's term.
#[test]
fn reelection_after_leader_is_cut_off() {
    for seed in [11, 12, 13] {
        let mut sim = cluster(5, seed);
        let old = wait_for_stable_leader(&mut sim, SEC);
        let old_term = raft(&sim, old).term();
        let others: Vec<NodeId> = sim.voters().into_iter().filter(|&n| n != old).collect();
        sim.apply_fault(FaultAction::Partition(vec![vec![old], others.clone()]));
        let cut_at = sim.now();

        let deadline = cut_at + 2 * SEC;
        let elected = run_until_true(&mut sim, deadline, |s| {
            others.iter().any(|&n| raft(s, n).is_leader())
        });
        assert!(
            elected,
            "seed {seed}: majority elected no leader\n{}",
            status(&sim)
        );
        let new = *others.iter().find(|&&n| raft(&sim, n).is_leader()).unwrap();
        let new_term = raft(&sim, new).term();
        assert!(new_term > old_term);

        // Check-Quorum: the leader checks every election_ticks ticks; the first check after the
        // cut may still count responses from before it, the second cannot.
        let cfg = sim.config().clone();
        let bound = cut_at + (2 * cfg.raft.election_ticks as u64 + 1) * cfg.tick_us;
        run_until_true(&mut sim, bound, |s| !raft(s, old).is_leader());
        let stepped_down = sim.trace().iter().find(|e| {
            e.time >= cut_at
                && matches!(
                    e.kind,
                    TraceKind::Node { node, event: NodeEvent::CheckQuorumFailed { term } }
                        if node == old && term == old_term
                )
        });
        let at = stepped_down
            .expect("the old leader never failed Check-Quorum")
            .time;
        assert!(
            at <= bound,
            "seed {seed}: stepped down {}us after the cut",
            at - cut_at
        );
        assert_ne!(raft(&sim, old).role(), Role::Leader);

        run_for(&mut sim, 2 * SEC);
        assert_ne!(raft(&sim, old).role(), Role::Leader);
        assert_eq!(
            raft(&sim, old).term(),
            old_term,
            "Pre-Vote must keep the isolated node's term"
        );

        sim.apply_fault(FaultAction::Heal);
        let all = sim.voters();
        let deadline = sim.now() + SEC;
        assert!(run_until_true(&mut sim, deadline, |s| all_follow(
            s, &all, new
        )));
        run_for(&mut sim, SEC);
        assert_eq!(sim.leader(), Some(new));
        assert_eq!(
            raft(&sim, new).term(),
            new_term,
            "the rejoining node disrupted the leader"
        );
        assert_safe(&mut sim);
    }
}

/// No leader without a majority: with 3 of 5 nodes crashed, the two survivors never elect a
/// leader (and, thanks to Pre-Vote, do not even raise their terms) and a submitted write never
/// commits. Restarting one node restores a majority, a leader, and the write.
#[test]
fn no_leader_without_a_majority() {
    for seed in [21, 22, 23] {
        let mut sim = cluster(5, seed);
        let leader = wait_for_stable_leader(&mut sim, SEC);
        assert_eq!(submit_and_wait(&mut sim, put("a", "1"), SEC), OpResult::Put);
        let term = raft(&sim, leader).term();
        let mut down = vec![leader];
        down.extend(sim.voters().into_iter().filter(|&n| n != leader).take(2));
        let up: Vec<NodeId> = sim
            .voters()
            .into_iter()
            .filter(|n| !down.contains(n))
            .collect();
        let commits: Vec<u64> = up.iter().map(|&n| raft(&sim, n).commit_index()).collect();
        for &n in &down {
            sim.apply_fault(FaultAction::Crash(n));
        }
        let write = submit(&mut sim, put("b", "2"));

        let deadline = sim.now() + 10 * SEC;
        let some_leader = run_until_true(&mut sim, deadline, |s| !leaders(s).is_empty());
        assert!(
            !some_leader,
            "a leader emerged without a majority\n{}",
            status(&sim)
        );
        for (&n, &c) in up.iter().zip(&commits) {
            assert_eq!(
                raft(&sim, n).commit_index(),
                c,
                "n{n} committed without a majority"
            );
            assert_eq!(
                raft(&sim, n).term(),
                term,
                "n{n} raised its term without a majority"
            );
        }
        assert!(outcome(&sim, write).is_none());

        sim.apply_fault(FaultAction::Restart(down[1]));
        let deadline = sim.now() + 5 * SEC;
        assert!(run_until_true(&mut sim, deadline, |s| outcome(s, write).is_some()));
        assert_eq!(outcome(&sim, write), Some(OpResult::Put));
        assert_safe(&mut sim);
    }
}

/// Many elections (7 nodes): repeatedly isolate three random nodes from each other and from
/// the rest; the four connected nodes always have a leader they all follow, and after healing
/// exactly one leader exists, known to all seven.
#[test]
fn many_elections_under_random_disconnections() {
    for seed in [31, 32] {
        let mut sim = cluster(7, seed);
        let mut rng = Rng::new(seed);
        wait_for_stable_leader(&mut sim, SEC);
        let all = sim.voters();
        for round in 0..20 {
            let mut pool = all.clone();
            let mut groups: Vec<Vec<NodeId>> = Vec::new();
            for _ in 0..3 {
                let i = rng.below(pool.len() as u64) as usize;
                groups.push(vec![pool.remove(i)]);
            }
            let majority = pool;
            groups.push(majority.clone());
            sim.apply_fault(FaultAction::Partition(groups));

            let deadline = sim.now() + 3 * SEC;
            let ok = run_until_true(&mut sim, deadline, |s| {
                majority
                    .iter()
                    .any(|&l| raft(s, l).is_leader() && all_follow(s, &majority, l))
            });
            assert!(
                ok,
                "round {round}: majority {majority:?} has no leader\n{}",
                status(&sim)
            );
            run_for(&mut sim, rng.range(0, 500) * MS);

            sim.apply_fault(FaultAction::Heal);
            let deadline = sim.now() + 3 * SEC;
            let ok = run_until_true(&mut sim, deadline, |s| {
                let l = leaders(s);
                l.len() == 1 && all_follow(s, &all, l[0])
            });
            assert!(
                ok,
                "round {round}: no single leader after healing\n{}",
                status(&sim)
            );
        }
        assert_safe(&mut sim);
    }
}

/// Agreement: operations submitted to the leader commit once each, every node applies the same
/// entries in the same order, and the results are those of a sequential key-value store.
#[test]
fn agreement() {
    for seed in [41, 42, 43] {
        let mut sim = cluster(3, seed);
        wait_for_stable_leader(&mut sim, SEC);
        let script = [
            (put("a", "1"), OpResult::Put),
            (put("b", "2"), OpResult::Put),
            (get("a"), OpResult::Get(Some(b"1".to_vec()))),
            (delete("b"), OpResult::Delete { deleted: true }),
            (get("b"), OpResult::Get(None)),
            (put("a", "3"), OpResult::Put),
        ];
        for (op, expected) in script.clone() {
            assert_eq!(submit_and_wait(&mut sim, op, SEC), expected);
        }
        wait_converged(&mut sim, SEC);
        let logs = sim.logs();
        // The log holds the session's opening (tagged with the client's own id, seq 0) and then
        // the writes under the session, whose id is the index of that opening entry. Reads
        // never enter the log.
        let (_, leader_log) = &logs[0];
        let open_index = leader_log
            .iter()
            .find(|e| commands(std::slice::from_ref(e)) == vec![(MANUAL_CLIENT, 0)])
            .map(|e| e.index)
            .expect("the session was opened through the log");
        let mut expected = vec![(MANUAL_CLIENT, 0)];
        expected.extend(
            script
                .iter()
                .enumerate()
                .filter(|(_, (op, _))| op.is_write())
                .map(|(i, _)| (open_index, i as u64 + 1)),
        );
        for (id, log) in &logs {
            assert_eq!(
                commands(log),
                expected,
                "n{id} holds each command exactly once, in order"
            );
        }
        for node in sim.nodes().values() {
            let kv = node.server.as_ref().unwrap().kv();
            assert_eq!(kv.get(b"a"), Some(&b"3".to_vec()));
            assert_eq!(kv.get(b"b"), None);
        }
        assert_safe(&mut sim);
    }
}

/// Agreement despite a failed follower: with one of three nodes down the other two still
/// commit; the crashed node's disk does not receive the entries, and once restarted it catches
/// up to the same log and state.
#[test]
fn agreement_despite_a_failed_follower() {
    for seed in [51, 52, 53] {
        let mut sim = cluster(3, seed);
        let leader = wait_for_stable_leader(&mut sim, SEC);
        submit_and_wait(&mut sim, put("k", "0"), SEC);
        let follower = sim.voters().into_iter().find(|&n| n != leader).unwrap();
        sim.apply_fault(FaultAction::Crash(follower));
        let on_disk = sim.nodes()[&follower].storage.entries.len();
        for i in 1..=5 {
            let v = i.to_string();
            assert_eq!(submit_and_wait(&mut sim, put("k", &v), SEC), OpResult::Put);
        }
        assert_eq!(sim.nodes()[&follower].storage.entries.len(), on_disk);
        assert_eq!(sim.leader(), Some(leader));

        sim.apply_fault(FaultAction::Restart(follower));
        assert_eq!(
            submit_and_wait(&mut sim, get("k"), SEC),
            OpResult::Get(Some(b"5".to_vec()))
        );
        wait_converged(&mut sim, 2 * SEC);
        assert_eq!(
            sim.nodes()[&follower]
                .server
                .as_ref()
                .unwrap()
                .kv()
                .get(b"k"),
            Some(&b"5".to_vec())
        );
        assert_safe(&mut sim);
    }
}

/// No commit without a majority: a leader whose three of four followers crashed still appends
/// a submitted write to its log, but neither it nor anyone commits it; the leader then steps
/// down (Check-Quorum). With the followers back, the write (retried by its client) commits.
#[test]
fn no_commit_without_a_majority() {
    for seed in [61, 62, 63] {
        let mut sim = cluster(5, seed);
        let leader = wait_for_stable_leader(&mut sim, SEC);
        submit_and_wait(&mut sim, put("a", "1"), SEC);
        let commit = raft(&sim, leader).commit_index();
        let crashed: Vec<NodeId> = sim
            .voters()
            .into_iter()
            .filter(|&n| n != leader)
            .take(3)
            .collect();
        for &n in &crashed {
            sim.apply_fault(FaultAction::Crash(n));
        }
        let write = submit(&mut sim, put("b", "2"));
        let index = commit + 1;
        let deadline = sim.now() + 100 * MS;
        assert!(
            run_until_true(&mut sim, deadline, |s| raft(s, leader).log().last_index()
                == index),
            "the leader did not append the write"
        );

        let deadline = sim.now() + 3 * SEC;
        let committed = run_until_true(&mut sim, deadline, |s| {
            s.voters()
                .into_iter()
                .any(|n| is_up(s, n) && raft(s, n).commit_index() >= index)
        });
        assert!(!committed, "index {index} committed without a majority");
        assert!(outcome(&sim, write).is_none());
        assert_ne!(
            raft(&sim, leader).role(),
            Role::Leader,
            "Check-Quorum did not step down"
        );

        for &n in &crashed {
            sim.apply_fault(FaultAction::Restart(n));
        }
        let deadline = sim.now() + 5 * SEC;
        assert!(run_until_true(&mut sim, deadline, |s| outcome(s, write).is_some()));
        assert_eq!(
            submit_and_wait(&mut sim, get("b"), SEC),
            OpResult::Get(Some(b"2".to_vec()))
        );
        assert_safe(&mut sim);
    }
}

/// Concurrent proposals: several clients issue operations at once over a small key space; every
/// operation completes, the history is linearizable, and all replicas end identical.
#[test]
fn concurrent_proposals_are_linearizable() {
    for (n, seed) in [(3, 71), (5, 72)] {
        let mut sim = cluster_with_clients(n, seed, 6, 25);
        let deadline = 30 * SEC;
        assert!(run_until_true(&mut sim, deadline, |s| s.clients_done()));
        assert_eq!(sim.history().len(), 6 * 25);
        assert!(sim.history().iter().all(|o| o.complete.is_some()));
        let invokes: Vec<u64> = sim.history().iter().map(|o| o.invoke).collect();
        let overlapping = sim
            .history()
            .iter()
            .filter(|o| {
                let end = o.complete.as_ref().unwrap().0;
                invokes.iter().filter(|&&t| t > o.invoke && t < end).count() > 0
            })
            .count();
        assert!(
            overlapping > 50,
            "only {overlapping} operations overlapped another"
        );
        assert_linearizable(&sim);
        wait_converged(&mut sim, 2 * SEC);
        assert_safe(&mut sim);
    }
}

/// A stale leader rejoining: a leader cut off from the majority accepts a client write but can
/// never commit it or answer it with success; the majority moves on under a new leader, and on
/// healing the old leader's uncommitted entry is truncated and its log overwritten with the new
/// leader's.
#[test]
fn stale_leader_rejoins_and_is_overwritten() {
    for seed in [81, 82, 83] {
        let mut sim = cluster(5, seed);
        let old = wait_for_stable_leader(&mut sim, SEC);
        submit_and_wait(&mut sim, put("a", "1"), SEC);
        let old_term = raft(&sim, old).term();
        let others: Vec<NodeId> = sim.voters().into_iter().filter(|&n| n != old).collect();
        sim.apply_fault(FaultAction::Partition(vec![vec![old], others.clone()]));
        let cut_at = sim.now();
        let write = submit(&mut sim, put("a", "stale"));
        let index = raft(&sim, old).log().last_index() + 1;
        let deadline = sim.now() + 100 * MS;
        assert!(run_until_true(&mut sim, deadline, |s| raft(s, old)
            .log()
            .last_index()
            == index));
        let stale = raft(&sim, old).log().get(index).unwrap().clone();
        assert_eq!(stale.term, old_term);

        // The majority elects a new leader and keeps serving writes (the client's retry included).
        let deadline = sim.now() + 3 * SEC;
        assert!(run_until_true(&mut sim, deadline, |s| outcome(s, write).is_some()));
        let new = sim.leader().unwrap();
        assert!(others.contains(&new));
        submit_and_wait(&mut sim, put("b", "2"), SEC);
        submit_and_wait(&mut sim, put("c", "3"), SEC);
        assert!(!raft(&sim, old).is_leader());
        assert!(
            !replied_ok_to_manual_client(&sim, old, cut_at),
            "the cut-off leader told its client the write succeeded"
        );

        sim.apply_fault(FaultAction::Heal);
        let healed_at = sim.now();
        wait_converged(&mut sim, 3 * SEC);
        run_for(&mut sim, 100 * MS); // the repair's persist step finishes
        assert_eq!(
            sim.nodes()[&old].storage.entries,
            raft(&sim, new).log().entries(),
            "the repaired log is durable"
        );
        let log = raft(&sim, old).log();
        assert_ne!(log.get(index), Some(&stale), "the stale entry survived");
        assert_eq!(log.entries(), raft(&sim, new).log().entries());
        assert!(trace_has(&sim, healed_at, |k| matches!(
            k,
            TraceKind::Truncated { node, from } if *node == old && *from <= index
        )));
        assert_ne!(sim.checker().committed().get(&index), Some(&stale));
        assert!(!replied_ok_to_manual_client(&sim, old, cut_at));
        assert_eq!(
            submit_and_wait(&mut sim, get("a"), SEC),
            OpResult::Get(Some(b"stale".to_vec())),
            "the client's retried write took effect through the new leader"
        );
        assert_safe(&mut sim);
    }
}

/// Fast log backup: a follower holding 50+ conflicting entries from an old term converges to the
/// leader's log in a handful of AppendEntries round trips (conflict term/index hints skip a whole
/// term per round trip), not one per conflicting entry.
///
/// Setup (Check-Quorum off so the cut-off leader keeps accepting writes): leader L1 and follower
/// F are cut off from the other three; the client's one write bounces between F (which points
/// it back at L1) and L1 (which appends it again each time), piling up uncommitted entries. L1
/// and F crash; the majority commits 50+ writes under L2, then re-elects (L3, a new term whose
/// leader starts with next_index past all of them). F and L1 restart and must be repaired.
#[test]
fn fast_backup_over_many_conflicting_entries() {
    for seed in [91, 92, 93] {
        let mut cfg = SimConfig::new(5, seed);
        cfg.raft.check_quorum = false;
        cfg.workload.timeout_us = 30 * MS;
        let mut sim = Simulator::new(cfg);
        let l1 = wait_for_stable_leader(&mut sim, SEC);
        submit_and_wait(&mut sim, put("a", "0"), SEC);
        let base = raft(&sim, l1).log().last_index();
        // The client moves on to the next node id after a timeout: make that L1's partner.
        let f = l1 % 5 + 1;
        let majority: Vec<NodeId> = sim
            .voters()
            .into_iter()
            .filter(|&n| n != l1 && n != f)
            .collect();
        sim.apply_fault(FaultAction::Partition(vec![vec![l1, f], majority.clone()]));
        let write = submit(&mut sim, put("x", "lost"));
        let deadline = sim.now() + 10 * SEC;
        assert!(
            run_until_true(&mut sim, deadline, |s| raft(s, f).log().last_index()
                >= base + 60),
            "conflicting entries did not pile up\n{}",
            status(&sim)
        );
        sim.apply_fault(FaultAction::Crash(l1));
        sim.apply_fault(FaultAction::Crash(f));

        // The majority takes the write (on its retry) and 55 more.
        let deadline = sim.now() + 5 * SEC;
        assert!(run_until_true(&mut sim, deadline, |s| outcome(s, write).is_some()));
        for i in 0..55 {
            submit_and_wait(&mut sim, put("y", &i.to_string()), SEC);
        }
        let l2 = sim.leader().unwrap();
        sim.apply_fault(FaultAction::Crash(l2));
        sim.apply_fault(FaultAction::Restart(l2));
        let deadline = sim.now() + 3 * SEC;
        assert!(run_until_true(&mut sim, deadline, |s| {
            s.leader()
                .is_some_and(|l| raft(s, l).commit_index() == raft(s, l).log().last_index())
        }));
        let l3 = sim.leader().unwrap();
        assert!(raft(&sim, l3).term() > raft(&sim, majority[0]).log().get(base + 1).unwrap().term);
        let leader_log = raft(&sim, l3).log().entries().to_vec();
        let conflicts = |disk: &[keyval_core::Entry]| {
            disk.iter()
                .filter(|e| leader_log.get(e.index as usize - 1) != Some(e))
                .count()
        };
        let mut conflicting = Vec::new();
        for n in [l1, f] {
            let c = conflicts(&sim.nodes()[&n].storage.entries);
            assert!(c >= 50, "n{n} holds only {c} conflicting entries");
            conflicting.push(c);
        }

        sim.apply_fault(FaultAction::Restart(f));
        sim.apply_fault(FaultAction::Restart(l1));
        sim.apply_fault(FaultAction::Heal);
        let since = sim.now();
        let deadline = since + 2 * SEC;
        assert!(
            run_until_true(&mut sim, deadline, |s| raft(s, f).log().entries()
                == leader_log
                && raft(s, l1).log().entries() == leader_log),
            "followers were not repaired\n{}",
            status(&sim)
        );
        assert_eq!(sim.leader(), Some(l3));
        for (n, c) in [l1, f].into_iter().zip(conflicting) {
            let appends = sent_count(&sim, since, l3, n, "Append");
            println!("n{n}: {c} conflicting entries repaired with {appends} appends");
            assert!(
                (1..=5).contains(&appends),
                "n{n} needed {appends} appends to repair 50+ conflicting entries"
            );
        }
        wait_converged(&mut sim, 2 * SEC);
        assert_safe(&mut sim);
    }
}

/// Figure 8 (Raft §5.4.2): an entry of an earlier term that a later leader has copied to a
/// majority is still not committed by counting replicas, because a leader of an intermediate
/// term can overwrite it, which is what then happens. The cluster ends in agreement, without
/// the old entry, and its client never got a success.
#[test]
fn figure_8_old_term_entry_is_not_committed_by_counting() {
    for seed in 0..6 {
        let mut fig = figure_8(seed, None);
        let x = fig.old_entry.clone();
        assert!(
            fig.old_entry_holders.len() >= 3,
            "seed {seed}: the old entry was only on {:?}",
            fig.old_entry_holders
        );
        assert!(
            fig.third_leader_commit < x.index,
            "seed {seed}: the old-term entry {}@{} was committed by counting",
            x.index,
            x.term
        );
        assert!(
            fig.converged,
            "seed {seed}: no agreement\n{}",
            status(&fig.sim)
        );
        let committed = fig.sim.checker().committed().get(&x.index).cloned();
        let winner = committed.expect("the index was committed in the end");
        assert_ne!(
            winner, x,
            "seed {seed}: the overwritten entry was committed"
        );
        assert!(winner.term > x.term && winner.term < raft(&fig.sim, fig.second_leader).term());
        for (id, log) in fig.sim.logs() {
            assert!(
                !log.contains(&x),
                "seed {seed}: n{id} still holds the old entry"
            );
        }
        assert!(outcome(&fig.sim, fig.write).is_none());
        assert_safe(&mut fig.sim);
    }
}

/// The same Figure 8 script with the deliberate bug "commit previous-term entries by counting"
/// makes the third leader commit the old entry, which the intermediate term's leader then
/// overwrites: the state machine safety checker must report it.
#[test]
fn figure_8_with_commit_by_counting_bug_is_caught() {
    for seed in 0..6 {
        let fig = figure_8(seed, Some(Mutation::CommitPreviousTermByCounting));
        assert!(
            fig.third_leader_commit >= fig.old_entry.index,
            "seed {seed}: the mutation did not commit the old entry"
        );
        let v = fig.sim.checker().violations();
        assert!(
            v.iter()
                .any(|v| v.property.starts_with("state machine safety")),
            "seed {seed}: violation not caught; got {v:?}"
        );
    }
}

/// Persistence: committed writes survive crashes of some nodes (a follower, then the leader)
/// and of all nodes at once: every committed entry is on a majority of disks, and after a full
/// restart the new leader serves every earlier write and all replicas rebuild the same state.
#[test]
fn persistence_across_crashes_of_some_and_all_nodes() {
    for seed in [101, 102, 103] {
        let mut sim = cluster(3, seed);
        let leader = wait_for_stable_leader(&mut sim, SEC);
        submit_and_wait(&mut sim, put("a", "1"), SEC);
        let follower = sim.voters().into_iter().find(|&n| n != leader).unwrap();
        sim.apply_fault(FaultAction::Crash(follower));
        submit_and_wait(&mut sim, put("b", "2"), SEC);
        sim.apply_fault(FaultAction::Restart(follower));
        submit_and_wait(&mut sim, put("c", "3"), SEC);
        sim.apply_fault(FaultAction::Crash(leader));
        let deadline = sim.now() + 2 * SEC;
        assert!(run_until_true(&mut sim, deadline, |s| s.leader().is_some()));
        submit_and_wait(&mut sim, put("d", "4"), 2 * SEC);
        sim.apply_fault(FaultAction::Restart(leader));
        submit_and_wait(&mut sim, delete("a"), SEC);

        for n in sim.voters() {
            sim.apply_fault(FaultAction::Crash(n));
        }
        let quorum = 2;
        for (index, entry) in sim.checker().committed() {
            let copies = sim
                .nodes()
                .values()
                .filter(|n| n.storage.entries.get(*index as usize - 1) == Some(entry))
                .count();
            assert!(
                copies >= quorum,
                "committed entry {index} is on {copies} disks"
            );
        }
        run_for(&mut sim, SEC);
        for n in sim.voters() {
            sim.apply_fault(FaultAction::Restart(n));
        }
        let deadline = sim.now() + 2 * SEC;
        wait_for_stable_leader(&mut sim, deadline);
        for (key, want) in [
            ("a", None),
            ("b", Some("2")),
            ("c", Some("3")),
            ("d", Some("4")),
        ] {
            let want = want.map(|v| v.as_bytes().to_vec());
            assert_eq!(
                submit_and_wait(&mut sim, get(key), SEC),
                OpResult::Get(want)
            );
        }
        wait_converged(&mut sim, 2 * SEC);
        let kv = sim.nodes()[&follower].server.as_ref().unwrap().kv().clone();
        assert_eq!(kv.len(), 3);
        assert_safe(&mut sim);
    }
}

/// Unreliable network with long reordering: with 10% loss, 10% duplication and 10% of messages
/// held back up to half a second (overtaking later ones), clients still see a linearizable
/// history, the checkers stay quiet, and once the network recovers every client finishes and the
/// replicas converge.
#[test]
fn unreliable_network_with_long_reordering() {
    for (n, seed) in [(3, 111), (3, 112), (5, 113), (5, 114)] {
        let mut sim = cluster_with_clients(n, seed, 4, 25);
        sim.apply_fault(FaultAction::SetNetwork(NetworkConfig {
            latency_us: (1_000, 20_000),
            drop_rate: 0.1,
            duplicate_rate: 0.1,
            long_delay_rate: 0.1,
            long_delay_us: 500_000,
        }));
        run_for(&mut sim, 15 * SEC);
        let completed = sim
            .history()
            .iter()
            .filter(|o| o.complete.is_some())
            .count();
        assert!(
            completed >= 20,
            "only {completed} operations completed on the bad network"
        );

        // The faults were real: drops, duplicate deliveries, and overtaking on a link.
        let drops = sim
            .trace()
            .iter()
            .filter(|e| {
                matches!(
                    e.kind,
                    TraceKind::Dropped {
                        reason: DropReason::Random,
                        ..
                    }
                )
            })
            .count();
        let mut delivered = std::collections::BTreeMap::<u64, u32>::new();
        let mut last_on_link = std::collections::BTreeMap::<(Addr, Addr), u64>::new();
        let mut overtaken = 0;
        for e in sim.trace() {
            if let TraceKind::Delivered { id, from, to } = e.kind {
                *delivered.entry(id).or_default() += 1;
                let last = last_on_link.entry((from, to)).or_default();
                if id < *last {
                    overtaken += 1;
                }
                *last = (*last).max(id);
            }
        }
        let duplicated = delivered.values().filter(|&&c| c > 1).count();
        assert!(
            drops > 50 && duplicated > 50 && overtaken > 50,
            "{drops} {duplicated} {overtaken}"
        );

        finish_and_converge(&mut sim, 20 * SEC);
        assert_linearizable(&sim);
        assert_safe(&mut sim);
    }
}

/// Churn: nodes crash and restart at random, at times leaving no majority, while clients keep
/// working; the history stays linearizable and the checkers quiet, and after the churn stops
/// every client finishes and the replicas converge.
#[test]
fn churn() {
    for (n, seed) in [(3, 121), (3, 122), (5, 123), (5, 124), (5, 125)] {
        let mut sim = cluster_with_clients(n, seed, 4, 30);
        let mut rng = Rng::new(seed);
        let (mut crashes, mut max_down) = (0, 0);
        while sim.now() < 8 * SEC {
            run_for(&mut sim, rng.range(50, 400) * MS);
            let id = 1 + rng.below(n as u64);
            if is_up(&sim, id) {
                sim.apply_fault(FaultAction::Crash(id));
                crashes += 1;
            } else {
                sim.apply_fault(FaultAction::Restart(id));
            }
            let down = sim
                .voters()
                .into_iter()
                .filter(|&v| !is_up(&sim, v))
                .count();
            max_down = max_down.max(down);
        }
        assert!(crashes >= 10, "seed {seed}: only {crashes} crashes");
        assert!(max_down > n / 2, "seed {seed}: the majority was never lost");
        finish_and_converge(&mut sim, 30 * SEC);
        let completed = sim
            .history()
            .iter()
            .filter(|o| o.complete.is_some())
            .count();
        assert!(
            completed >= 30,
            "seed {seed}: only {completed} operations completed"
        );
        assert_linearizable(&sim);
        assert_safe(&mut sim);
    }
}

/// Message count: an idle leader sends nothing but heartbeats, one to each follower every
/// `heartbeat_ticks` ticks, so over N ticks it sends between (n-1)*floor(N/h) and
/// (n-1)*ceil(N/h) messages, and nothing else (no appends, no elections).
#[test]
fn idle_leader_sends_a_bounded_number_of_heartbeats() {
    for (n, seed, ticks) in [(3, 131, 1_000u64), (5, 132, 997)] {
        let mut sim = cluster(n, seed);
        let leader = wait_for_stable_leader(&mut sim, SEC);
        run_for(&mut sim, SEC); // let the no-op commit everywhere
        let cfg = sim.config().clone();
        let h = cfg.raft.heartbeat_ticks as u64;
        let t0 = sim.now();
        let t1 = t0 + ticks * cfg.tick_us;
        sim.run_until(t1);

        let in_window = |e: &&keyval_core::trace::TraceEvent| e.time > t0 && e.time <= t1;
        let leader_sends: Vec<String> = sim
            .trace()
            .iter()
            .filter(in_window)
            .filter_map(|e| match &e.kind {
                TraceKind::Sent { from, payload, .. } if *from == Addr::Node(leader) => {
                    Some(payload.kind().to_string())
                }
                _ => None,
            })
            .collect();
        let heartbeats = leader_sends.iter().filter(|k| *k == "Heartbeat").count() as u64;
        let followers = n as u64 - 1;
        let (lo, hi) = (followers * (ticks / h), followers * ticks.div_ceil(h));
        assert!(
            (lo..=hi).contains(&heartbeats),
            "{heartbeats} heartbeats in {ticks} ticks, expected {lo}..={hi}"
        );
        assert_eq!(
            leader_sends.len() as u64,
            heartbeats,
            "non-heartbeat sends: {leader_sends:?}"
        );
        assert_eq!(sim.leader(), Some(leader));
        assert!(!sim.trace().iter().filter(in_window).any(|e| matches!(
            e.kind,
            TraceKind::Node {
                event: NodeEvent::ElectionTimeout { .. },
                ..
            }
        )));
        assert_safe(&mut sim);
    }
}

/// A candidate that stalls (here: frozen, clock included, like a suspended VM; a paused process
/// whose clock runs on would time out first) right after asking for votes becomes leader of its old
/// term when it resumes and reads the votes it was granted, long after the others moved on to a
/// later term and committed entries there. That is legal Raft: there is still one leader per
/// term, and leader completeness only promises a leader the entries committed in *earlier*
/// terms. It is also harmless: the stale leader steps down at the first reply, and cannot commit
/// because a majority is in a later term. The checkers must accept this run.
/// Regression test for a checker false positive first seen as seed 1000841 of the 5-node Mixed
/// sweep (fixed in a78b0cd).
#[test]
fn stale_candidate_may_lead_its_old_term_after_a_pause() {
    let mut sim = cluster(3, 141);
    let candidate = |s: &Simulator| {
        s.voters()
            .into_iter()
            .find(|&n| raft(s, n).role() == Role::Candidate)
    };
    assert!(run_until_true(&mut sim, SEC, |s| candidate(s).is_some()));
    let c = candidate(&sim).unwrap();
    let term = raft(&sim, c).term();
    sim.apply_fault(FaultAction::Freeze(c));

    let deadline = sim.now() + 2 * SEC;
    let moved_on = run_until_true(&mut sim, deadline, |s| {
        s.leader()
            .is_some_and(|l| l != c && raft(s, l).term() > term)
    });
    assert!(moved_on, "the others elected no leader\n{}", status(&sim));
    submit_and_wait(&mut sim, put("a", "1"), SEC);

    let resumed_at = sim.now();
    sim.apply_fault(FaultAction::Resume(c));
    assert!(trace_has(&sim, resumed_at, |k| matches!(
        k,
        TraceKind::Node { node, event: NodeEvent::RoleChanged { to: Role::Leader, term: t, .. } }
            if *node == c && *t == term
    )));
    assert_eq!(sim.checker().leaders().get(&term), Some(&c));
    wait_converged(&mut sim, 2 * SEC);
    assert_eq!(
        submit_and_wait(&mut sim, get("a"), SEC),
        OpResult::Get(Some(b"1".to_vec()))
    );
    assert_safe(&mut sim);
}

/// A removed node restarted with its old log (it never heard of its removal, so it still
/// believes it is a voter) times out and campaigns over and over, with and without Pre-Vote:
/// the remaining voters keep their leader and their term, and it never leads. Without the
/// membership check on incoming messages, its ever higher terms would depose the leader.
#[test]
fn a_removed_node_restarted_with_its_old_log_does_not_disturb_the_cluster() {
    use keyval_core::{ChangeKind, ConfChange};
    for (seed, pre_vote) in [(41, true), (42, false), (43, true), (44, false)] {
        let mut cfg = SimConfig::new(3, seed);
        cfg.raft.pre_vote = pre_vote;
        cfg.workload.clients = 0;
        let mut sim = Simulator::new(cfg);
        let leader = wait_for_stable_leader(&mut sim, 2 * SEC);
        // The leader commits its no-op first (no change before a commit in its term).
        run_for(&mut sim, 300 * MS);
        let removed = sim.voters().into_iter().find(|&v| v != leader).unwrap();
        sim.apply_fault(FaultAction::Crash(removed));
        sim.propose_change(leader, ConfChange::single(ChangeKind::Remove, removed));
        let rest: Vec<NodeId> = sim.voters().into_iter().filter(|&v| v != removed).collect();
        let deadline = sim.now() + SEC;
        let applied = run_until_true(&mut sim, deadline, |s| {
            rest.iter()
                .all(|&v| !raft(s, v).membership().contains(removed))
        });
        assert!(
            applied,
            "seed {seed}: the removal did not apply\n{}\n{}",
            status(&sim),
            readable_trace(sim.trace(), 0, sim.now())
        );
        let term = raft(&sim, leader).term();

        sim.apply_fault(FaultAction::Restart(removed));
        assert!(
            raft(&sim, removed).membership().is_voter(removed),
            "seed {seed}: the restarted node should still believe it is a voter"
        );
        let since = sim.now();
        run_for(&mut sim, 5 * SEC);

        let kind = if pre_vote { "PreVote" } else { "Vote" };
        let campaigns: usize = rest
            .iter()
            .map(|&v| sent_count(&sim, since, removed, v, kind))
            .sum();
        assert!(campaigns > 0, "seed {seed}: n{removed} never campaigned");
        assert_eq!(sim.leader(), Some(leader), "seed {seed}: leader changed");
        for &v in &rest {
            assert_eq!(raft(&sim, v).term(), term, "seed {seed}: n{v} changed term");
            assert_eq!(raft(&sim, v).leader(), Some(leader));
        }
        assert_ne!(raft(&sim, removed).role(), Role::Leader);
        assert_safe(&mut sim);
    }
}
