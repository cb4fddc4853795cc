//! Log compaction scenarios: snapshots taken at the threshold, a follower that fell behind the
//! leader's compacted log catching up by chunked InstallSnapshot (also when a chunk is lost),
//! and restarts from a snapshot plus the log tail after it. Each ends with the safety checkers
//! (which compare every snapshot with a reference state machine) reporting nothing.

mod common;

use common::*;
use keyval_core::sim::linearizability::OpResult;
use keyval_core::sim::{FaultAction, Simulator};
use keyval_core::trace::{Addr, TraceKind};
use keyval_core::{NodeEvent, NodeId};

/// Snapshot every 10 applied entries; 64-byte chunks, so a snapshot takes several messages.
const THRESHOLD: u64 = 10;
const CHUNK: usize = 64;

fn writes(sim: &mut Simulator, prefix: &str, count: usize) {
    for i in 0..count {
        let (k, v) = (format!("{prefix}{i}"), format!("v{i}"));
        assert_eq!(submit_and_wait(sim, put(&k, &v), SEC), OpResult::Put);
    }
}

fn installs(sim: &Simulator, since: u64, node: NodeId) -> Vec<u64> {
    sim.trace()
        .iter()
        .filter(|e| e.time > since)
        .filter_map(|e| match &e.kind {
            TraceKind::Node {
                node: n,
                event: NodeEvent::SnapshotInstalled { index, .. },
            } if *n == node => Some(*index),
            _ => None,
        })
        .collect()
}

fn kv_of(sim: &Simulator, n: NodeId) -> &keyval_core::KvStore {
    sim.nodes()[&n].server.as_ref().expect("up").kv()
}

/// Partitions one follower away, writes `count` keys (the leader compacts past everything the
/// follower has), and returns `(leader, follower, time of the heal)` once the network heals.
fn lag_one_follower(sim: &mut Simulator, count: usize) -> (NodeId, NodeId, u64) {
    let leader = wait_for_stable_leader(sim, SEC);
    let follower = sim.voters().into_iter().find(|&n| n != leader).unwrap();
    let rest: Vec<NodeId> = sim
        .voters()
        .into_iter()
        .filter(|&n| n != follower)
        .collect();
    sim.apply_fault(FaultAction::Partition(vec![vec![follower], rest]));
    writes(sim, "k", count);
    let behind = raft(sim, follower).log().last_index();
    assert!(
        raft(sim, leader).snapshot_index() > behind,
        "the leader compacted past the follower's log"
    );
    sim.apply_fault(FaultAction::Heal);
    (leader, follower, sim.now())
}

/// A follower cut off for 40 writes comes back to a leader that compacted everything it
/// lacks: the leader sends its snapshot in several chunks, the follower installs it and then
/// takes the log tail by plain appends, ending with the same state as everyone else.
#[test]
fn partitioned_follower_catches_up_by_install_snapshot() {
    for seed in [201, 202, 203] {
        let mut sim = snapshot_cluster(3, seed, THRESHOLD, CHUNK);
        let (leader, follower, healed) = lag_one_follower(&mut sim, 40);
        wait_converged(&mut sim, 3 * SEC);

        let chunks = snapshot_chunks_sent(&sim, healed, leader, follower);
        assert!(
            chunks.len() >= 3,
            "seed {seed}: snapshot sent in {} chunks",
            chunks.len()
        );
        assert!(chunks.iter().all(|c| c.3 <= CHUNK));
        assert_eq!(
            chunks.last().map(|c| c.4),
            Some(true),
            "last chunk marked done"
        );
        let installed = installs(&sim, healed, follower);
        assert_eq!(installed.len(), 1, "seed {seed}: installs {installed:?}");
        assert!(raft(&sim, follower).snapshot_index() >= installed[0]);
        assert_eq!(kv_of(&sim, follower), kv_of(&sim, leader));
        assert!(sim.checker().snapshots_checked() > 0);
        for i in 0..40 {
            let want = format!("v{i}").into_bytes();
            assert_eq!(
                kv_of(&sim, follower).get(format!("k{i}").as_bytes()),
                Some(&want)
            );
        }
        assert_safe(&mut sim);
    }
}

/// On a clean network one transfer sends every chunk exactly once, however many heartbeats
/// pass meanwhile (a heartbeat response used to start a second, never-ending chunk stream).
#[test]
fn a_transfer_sends_each_chunk_once() {
    for seed in [221, 222, 223] {
        let mut sim = snapshot_cluster(3, seed, THRESHOLD, 16);
        let (leader, follower, healed) = lag_one_follower(&mut sim, 60);
        wait_converged(&mut sim, 3 * SEC);
        let chunks = snapshot_chunks_sent(&sim, healed, leader, follower);
        let index = chunks.first().expect("a transfer").1;
        let of_transfer: Vec<_> = chunks.iter().filter(|c| c.1 == index).collect();
        let bytes = raft(&sim, leader)
            .snapshot()
            .filter(|s| s.meta.last_index == index)
            .map(|s| s.data.len());
        let expected = of_transfer.iter().map(|c| c.3).sum::<usize>();
        let offsets: std::collections::BTreeSet<u64> = of_transfer.iter().map(|c| c.2).collect();
        assert_eq!(
            offsets.len(),
            of_transfer.len(),
            "seed {seed}: {} chunks sent for {} distinct offsets ({expected} bytes, snapshot {bytes:?})",
            of_transfer.len(),
            offsets.len()
        );
        assert!(
            of_transfer.len() >= 5,
            "seed {seed}: only {} chunks",
            of_transfer.len()
        );
        assert_eq!(installs(&sim, healed, follower), vec![index]);
        assert_safe(&mut sim);
    }
}

/// Three nodes whose snapshots go in 16-byte chunks and take 300-400 ms to decode: a transfer
/// spans many heartbeats and many writes.
fn slow_install_cluster(seed: u64) -> Simulator {
    let mut cfg = keyval_core::sim::SimConfig::new(3, seed);
    cfg.raft.snapshot_threshold = THRESHOLD;
    cfg.raft.snapshot_chunk_bytes = 16;
    cfg.decode_us = Some((300_000, 400_000));
    Simulator::new(cfg)
}

/// The follower takes a long time to decode what it received (here 300-400 ms, many
/// heartbeats): the leader waits for the install instead of sending the snapshot again. It
/// used to count the heartbeats of the decode as a stalled transfer and resend, from the last
/// chunk and then, since the follower no longer held a partial transfer, from offset 0 (seen
/// natively: an 89 MB snapshot went out twice).
#[test]
fn a_slow_install_is_waited_for_not_sent_again() {
    for seed in [231, 232, 233] {
        let mut sim = slow_install_cluster(seed);
        let (leader, follower, healed) = lag_one_follower(&mut sim, 60);
        wait_converged(&mut sim, 5 * SEC);
        let chunks = snapshot_chunks_sent(&sim, healed, leader, follower);
        let index = chunks.first().expect("a transfer").1;
        let data: Vec<_> = chunks.iter().filter(|c| c.1 == index && c.3 > 0).collect();
        let offsets: std::collections::BTreeSet<u64> = data.iter().map(|c| c.2).collect();
        let restarts = data.iter().filter(|c| c.2 == 0).count();
        assert_eq!(restarts, 1, "seed {seed}: the transfer started over");
        // (The simulated network reorders: an acknowledgement overtaken by an older one can
        // still make the leader resume one chunk early, as it would after a loss.)
        assert!(
            data.len() <= offsets.len() + 2,
            "seed {seed}: {} chunks with data sent for {} distinct offsets",
            data.len(),
            offsets.len()
        );
        assert_eq!(installs(&sim, healed, follower), vec![index]);
        assert_eq!(kv_of(&sim, follower), kv_of(&sim, leader));
        assert_safe(&mut sim);
    }
}

/// Writes go on while a follower is caught up by a slow snapshot transfer, more of them than
/// the snapshot threshold: the leader must not compact past the snapshot being sent, or the
/// follower, done with it, finds the entries after it gone and needs another snapshot (and
/// under steady load another, and another: seen natively when a node joined a 100 MB cluster
/// under writes, which installed three snapshots in a row).
#[test]
fn writes_during_a_snapshot_transfer_do_not_cost_the_follower_a_second_snapshot() {
    for seed in [241, 242, 243] {
        let mut sim = slow_install_cluster(seed);
        let (leader, follower, healed) = lag_one_follower(&mut sim, 60);
        // Past the threshold, within the cap on postponing (MAX_POSTPONED_THRESHOLDS).
        writes(&mut sim, "during", 2 * THRESHOLD as usize + 5);
        wait_converged(&mut sim, 5 * SEC);
        let installed = installs(&sim, healed, follower);
        assert_eq!(installed.len(), 1, "seed {seed}: installs {installed:?}");
        // Compaction waits no longer once the follower is through its backlog.
        writes(&mut sim, "after", THRESHOLD as usize + 1);
        wait_converged(&mut sim, 5 * SEC);
        assert!(
            raft(&sim, leader).snapshot_index() > installed[0],
            "seed {seed}: the leader compacted again once the follower caught up"
        );
        assert_eq!(kv_of(&sim, follower), kv_of(&sim, leader));
        assert_safe(&mut sim);
    }
}

/// The chunk after the first is lost on the wire: the leader resends from the offset the
/// follower acknowledged (once heartbeats show the transfer stalled), without restarting it.
#[test]
fn lost_snapshot_chunk_is_resumed() {
    let mut sim = snapshot_cluster(3, 211, THRESHOLD, CHUNK);
    let (leader, follower, healed) = lag_one_follower(&mut sim, 40);
    // Wait for the leader to send the second chunk, and cut the link under it.
    let deadline = sim.now() + SEC;
    assert!(run_until_true(&mut sim, deadline, |s| {
        snapshot_chunks_sent(s, healed, leader, follower)
            .iter()
            .any(|c| c.2 > 0)
    }));
    let (sent_at, index, lost_offset, _, _) = snapshot_chunks_sent(&sim, healed, leader, follower)
        .into_iter()
        .find(|c| c.2 > 0)
        .unwrap();
    sim.apply_fault(FaultAction::CutLink(leader, follower));
    let lost = |s: &Simulator| {
        s.trace().iter().any(|e| {
            e.time >= sent_at
                && matches!(e.kind, TraceKind::Dropped { from: Addr::Node(f), to: Addr::Node(t), .. }
                    if f == leader && t == follower)
        })
    };
    let deadline = sim.now() + SEC;
    assert!(run_until_true(&mut sim, deadline, lost));
    let dropped_at = sim.now();
    sim.apply_fault(FaultAction::RestoreLink(leader, follower));
    wait_converged(&mut sim, 3 * SEC);

    let after: Vec<_> = snapshot_chunks_sent(&sim, dropped_at, leader, follower)
        .into_iter()
        .filter(|c| c.1 == index)
        .collect();
    // With a window in flight the chunks after the lost one may have gone out already: what
    // is resent starts at what the follower acknowledged, never at 0.
    assert!(!after.is_empty(), "nothing was resent");
    assert!(
        after.iter().all(|c| c.2 >= lost_offset),
        "the transfer restarted: {after:?}"
    );
    assert_eq!(installs(&sim, healed, follower), vec![index]);
    assert_eq!(kv_of(&sim, follower), kv_of(&sim, leader));
    assert_safe(&mut sim);
}

/// Every node snapshots, then all crash and restart: each loads its latest snapshot, replays
/// only the log tail after it (applying from snapshot index + 1), and every write reads back.
#[test]
fn restart_from_snapshot_plus_log_tail() {
    for seed in [221, 222] {
        let mut sim = snapshot_cluster(3, seed, THRESHOLD, CHUNK);
        wait_for_stable_leader(&mut sim, SEC);
        writes(&mut sim, "k", 25);
        wait_converged(&mut sim, SEC);
        for n in sim.voters() {
            sim.apply_fault(FaultAction::Crash(n));
        }
        for n in sim.voters() {
            let disk = &sim.nodes()[&n].storage;
            assert!(disk.snapshot_index() >= THRESHOLD, "n{n} saved a snapshot");
            assert!(!disk.entries.is_empty(), "n{n} has a log tail after it");
            assert_eq!(disk.entries[0].index, disk.snapshot_index() + 1);
        }
        let restarted = sim.now();
        let mut restored = Vec::new();
        for n in sim.voters() {
            sim.apply_fault(FaultAction::Restart(n));
            let r = raft(&sim, n);
            assert_eq!(r.applied_index(), r.snapshot_index());
            assert_eq!(r.commit_index(), r.snapshot_index());
            assert_eq!(kv_of(&sim, n).applied_index(), r.snapshot_index());
            assert!(r.log().last_index() > r.snapshot_index());
            restored.push((n, r.snapshot_index()));
        }
        let deadline = sim.now() + 2 * SEC;
        wait_for_stable_leader(&mut sim, deadline);
        for i in [0, 12, 24] {
            let want = Some(format!("v{i}").into_bytes());
            assert_eq!(
                submit_and_wait(&mut sim, get(&format!("k{i}")), SEC),
                OpResult::Get(want)
            );
        }
        wait_converged(&mut sim, 2 * SEC);
        // Each node's first application after the restart is right after its snapshot.
        for (n, snap) in restored {
            let first = sim.trace().iter().find_map(|e| match e.kind {
                TraceKind::Applied { node, index, .. } if e.time >= restarted && node == n => {
                    Some(index)
                }
                _ => None,
            });
            assert_eq!(
                first,
                Some(snap + 1),
                "n{n} resumed applying after its snapshot"
            );
        }
        assert_safe(&mut sim);
    }
}

/// With the default configuration (threshold 0) nothing is ever compacted.
#[test]
fn threshold_zero_never_compacts() {
    let mut sim = cluster(3, 231);
    wait_for_stable_leader(&mut sim, SEC);
    writes(&mut sim, "k", 30);
    wait_converged(&mut sim, SEC);
    for n in sim.voters() {
        assert_eq!(raft(&sim, n).snapshot_index(), 0);
        assert!(raft(&sim, n).snapshot().is_none());
    }
    assert_safe(&mut sim);
}

mod hostile_input {
    //! A follower fed InstallSnapshot messages directly: malformed ones are refused without a
    //! panic (a reply naming the expected offset, or a protocol violation), a good one is
    //! installed and persisted in the same batch as its acknowledgement.

    use keyval_core::message::SnapshotResult;
    use keyval_core::snapshot::{SnapshotMeta, MAX_SNAPSHOT_CHUNK_BYTES};
    use keyval_core::{
        Config, Envelope, KvServer, KvStore, Message, NodeEvent, PersistOp, Persisted, Ready,
    };

    fn follower() -> KvServer {
        KvServer::new(2, [1, 2, 3], Config::default(), Persisted::default(), 7)
    }

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_index: index,
            last_term: 1,
            membership: keyval_core::Membership::bootstrap([1, 2, 3], Default::default()),
        }
    }

    fn chunk(
        s: &mut KvServer,
        meta: SnapshotMeta,
        offset: u64,
        data: Vec<u8>,
        done: bool,
    ) -> Ready {
        s.step(Envelope {
            from: 1,
            to: 2,
            msg: Message::InstallSnapshot {
                term: 1,
                meta,
                offset,
                data,
                done,
            },
        });
        s.take_ready()
    }

    fn state_at(index: u64) -> Vec<u8> {
        let mut kv = KvStore::default();
        for i in 1..=index {
            kv.apply_noop(i);
        }
        postcard::to_allocvec(&kv).unwrap()
    }

    fn violations(r: &Ready) -> usize {
        r.events
            .iter()
            .filter(|e| matches!(e, NodeEvent::ProtocolViolation { .. }))
            .count()
    }

    /// The last answer of the batch (a completed transfer is first acknowledged as received,
    /// then as installed).
    fn snapshot_reply(r: &Ready) -> Option<SnapshotResult> {
        r.persisted_messages
            .iter()
            .rev()
            .find_map(|m| match &m.msg {
                Message::InstallSnapshotResponse { result, .. } => Some(result.clone()),
                _ => None,
            })
    }

    #[test]
    fn a_chunk_at_the_wrong_offset_is_answered_with_the_expected_one() {
        let mut s = follower();
        let r = chunk(&mut s, meta(5), 10, vec![1; 4], false);
        assert_eq!(
            snapshot_reply(&r),
            Some(SnapshotResult::Continue { next_offset: 0 })
        );
        assert_eq!(violations(&r), 0);
    }

    #[test]
    fn an_oversized_chunk_is_a_protocol_violation() {
        let mut s = follower();
        let r = chunk(
            &mut s,
            meta(5),
            0,
            vec![0; MAX_SNAPSHOT_CHUNK_BYTES + 1],
            true,
        );
        assert_eq!(violations(&r), 1);
        assert!(snapshot_reply(&r).is_none());
        assert_eq!(s.raft().snapshot_index(), 0);
    }

    #[test]
    fn undecodable_state_or_impossible_membership_is_refused() {
        let mut s = follower();
        let r = chunk(&mut s, meta(5), 0, vec![0xff; 40], true);
        assert_eq!(violations(&r), 1);
        // A state at another index than the snapshot claims.
        let r = chunk(&mut s, meta(5), 0, state_at(4), true);
        assert_eq!(violations(&r), 1);
        let mut m = meta(5);
        // A node that is a voter and a learner at once.
        m.membership.learners.insert(1);
        let r = chunk(&mut s, m, 0, state_at(5), true);
        assert_eq!(violations(&r), 1);
        assert_eq!(s.raft().snapshot_index(), 0);
        assert!(r.persist.is_empty());
    }

    #[test]
    fn a_good_snapshot_is_persisted_with_its_acknowledgement_and_a_stale_one_is_ignored() {
        let mut s = follower();
        let data = state_at(5);
        let half = data.len() / 2;
        let r = chunk(&mut s, meta(5), 0, data[..half].to_vec(), false);
        assert_eq!(
            snapshot_reply(&r),
            Some(SnapshotResult::Continue {
                next_offset: half as u64
            })
        );
        let r = chunk(&mut s, meta(5), half as u64, data[half..].to_vec(), true);
        assert_eq!(violations(&r), 0);
        assert_eq!(
            snapshot_reply(&r),
            Some(SnapshotResult::Done { match_index: 5 })
        );
        assert!(
            matches!(r.persist.first(), Some(PersistOp::SaveSnapshot(x)) if x.meta.last_index == 5)
        );
        assert!(r.persist.contains(&PersistOp::CompactLog(5)));
        assert_eq!(s.raft().commit_index(), 5);
        assert_eq!(s.raft().applied_index(), 5);
        assert_eq!(s.kv().applied_index(), 5);

        // Not newer than the commit index: acknowledged with what we have, not installed.
        let r = chunk(&mut s, meta(3), 0, state_at(3), true);
        assert_eq!(
            snapshot_reply(&r),
            Some(SnapshotResult::Done { match_index: 5 })
        );
        assert!(r.persist.is_empty());
        assert_eq!(s.kv().applied_index(), 5);
    }
}
