//! Helpers shared by the scenario and trace tests: building clusters, waiting on conditions in
//! virtual time, submitting client operations, and the scripted Figure 8 scenario.
//!
//! Every wait is bounded by a virtual deadline and returns or asserts, so a broken protocol fails
//! a test instead of hanging it.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use keyval_core::kv::KvOp;
use keyval_core::log::RaftLog;
use keyval_core::mutation::Mutation;
use keyval_core::sim::linearizability::OpResult;
use keyval_core::sim::workload::MANUAL_CLIENT;
use keyval_core::sim::{FaultAction, SimConfig, Simulator};
use keyval_core::trace::Payload;
use keyval_core::trace::{ReadableFilter, TraceEvent, TraceKind};
use keyval_core::{Entry, EntryPayload, Index, Message, NodeId, RaftNode, Role};

/// Virtual microseconds.
pub const MS: u64 = 1_000;
pub const SEC: u64 = 1_000_000;

/// A fault-free cluster of `n` nodes with the simulator's default timing (10 ms ticks,
/// heartbeats every 5 ticks, election timeouts of 15..30 ticks) and no workload clients.
pub fn cluster(n: usize, seed: u64) -> Simulator {
    Simulator::new(SimConfig::new(n, seed))
}

/// The Raft state of a node that is up. Panics if it is crashed.
pub fn raft(sim: &Simulator, id: NodeId) -> &RaftNode {
    sim.nodes()[&id]
        .server
        .as_ref()
        .unwrap_or_else(|| panic!("n{id} is down"))
        .raft()
}

pub fn is_up(sim: &Simulator, id: NodeId) -> bool {
    sim.nodes()[&id].is_up()
}

pub fn voters(sim: &Simulator) -> Vec<NodeId> {
    sim.voters()
}

/// Steps the simulator one event at a time until `pred` holds or virtual time would pass
/// `deadline`. Returns whether `pred` held.
pub fn run_until_true(
    sim: &mut Simulator,
    deadline: u64,
    mut pred: impl FnMut(&Simulator) -> bool,
) -> bool {
    loop {
        if pred(sim) {
            return true;
        }
        match sim.next_event_time() {
            Some(t) if t <= deadline => {
                sim.step();
            }
            _ => {
                sim.run_until(deadline);
                return pred(sim);
            }
        }
    }
}

/// Runs for `duration` more virtual time.
pub fn run_for(sim: &mut Simulator, duration: u64) {
    let t = sim.now() + duration;
    sim.run_until(t);
}

/// Waits until some live node leads, and returns the one with the highest term.
pub fn wait_for_leader(sim: &mut Simulator, deadline: u64) -> NodeId {
    assert!(
        run_until_true(sim, deadline, |s| s.leader().is_some()),
        "no leader by t={}us\n{}",
        deadline,
        status(sim)
    );
    sim.leader().expect("leader")
}

/// Whether every node in `nodes` is up, in `leader`'s term, and knows `leader` leads.
pub fn all_follow(sim: &Simulator, nodes: &[NodeId], leader: NodeId) -> bool {
    if !is_up(sim, leader) || !raft(sim, leader).is_leader() {
        return false;
    }
    let term = raft(sim, leader).term();
    nodes.iter().all(|&n| {
        is_up(sim, n) && raft(sim, n).term() == term && raft(sim, n).leader() == Some(leader)
    })
}

/// Waits until one leader is known to every node of the cluster; returns it.
pub fn wait_for_stable_leader(sim: &mut Simulator, deadline: u64) -> NodeId {
    let all = sim.voters();
    let ok = run_until_true(sim, deadline, |s| {
        s.leader().is_some_and(|l| all_follow(s, &all, l))
    });
    assert!(
        ok,
        "no leader known to all nodes by t={deadline}us\n{}",
        status(sim)
    );
    sim.leader().expect("leader")
}

/// Nodes currently in the leader role (not paused, up), in id order.
pub fn leaders(sim: &Simulator) -> Vec<NodeId> {
    sim.nodes()
        .values()
        .filter(|n| n.role() == Some(Role::Leader) && !n.paused)
        .map(|n| n.id)
        .collect()
}

/// One line per node: role, term, log end, commit and applied index.
pub fn status(sim: &Simulator) -> String {
    sim.nodes()
        .values()
        .map(|n| match &n.server {
            Some(s) => {
                let r = s.raft();
                format!(
                    "  n{} {} term={} leader={:?} last={}@{} commit={} applied={}",
                    n.id,
                    r.role(),
                    r.term(),
                    r.leader(),
                    r.log().last_index(),
                    r.log().last_term(),
                    r.commit_index(),
                    r.applied_index()
                )
            }
            None => format!(
                "  n{} down (disk holds {} entries)",
                n.id,
                n.storage.entries.len()
            ),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn put(key: &str, value: &str) -> KvOp {
    KvOp::Put {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
    }
}

pub fn get(key: &str) -> KvOp {
    KvOp::Get {
        key: key.as_bytes().to_vec(),
    }
}

pub fn delete(key: &str) -> KvOp {
    KvOp::Delete {
        key: key.as_bytes().to_vec(),
    }
}

/// Submits `op` as the manual client; returns its position in the history.
pub fn submit(sim: &mut Simulator, op: KvOp) -> usize {
    let at = sim.history().len();
    sim.submit(op).expect("the manual client is idle");
    at
}

/// The result the client saw for the operation at `history_index`, if it completed.
pub fn outcome(sim: &Simulator, history_index: usize) -> Option<OpResult> {
    sim.history()[history_index]
        .complete
        .as_ref()
        .map(|(_, r)| r.clone())
}

/// Submits `op` and runs until the client sees its result (at most `within` of virtual time).
pub fn submit_and_wait(sim: &mut Simulator, op: KvOp, within: u64) -> OpResult {
    let h = submit(sim, op.clone());
    let deadline = sim.now() + within;
    assert!(
        run_until_true(sim, deadline, |s| outcome(s, h).is_some()),
        "{op:?} did not complete by t={deadline}us\n{}",
        status(sim)
    );
    outcome(sim, h).expect("completed")
}

/// All nodes up, one leader, every log identical to the leader's and fully committed and
/// applied everywhere, and every state machine identical.
pub fn converged(sim: &Simulator) -> bool {
    let Some(l) = sim.leader() else {
        return false;
    };
    let Some(ls) = sim.nodes()[&l].server.as_ref() else {
        return false;
    };
    let last = ls.raft().log().last_index();
    ls.raft().commit_index() == last
        && sim.nodes().values().all(|n| {
            n.server.as_ref().is_some_and(|s| {
                s.raft().applied_index() == last
                    && same_log_tail(s.raft().log(), ls.raft().log())
                    && s.kv() == ls.kv()
            })
        })
}

/// Whether two logs end at the same index and hold the same entries wherever both still hold
/// one (log compaction drops different prefixes on different nodes).
pub fn same_log_tail(a: &RaftLog, b: &RaftLog) -> bool {
    let from = a.first_index().max(b.first_index());
    a.last_index() == b.last_index()
        && a.slice(from, a.last_index()) == b.slice(from, b.last_index())
}

/// A fault-free cluster that snapshots every `threshold` applied entries and sends snapshots in
/// chunks of at most `chunk_bytes`.
pub fn snapshot_cluster(n: usize, seed: u64, threshold: u64, chunk_bytes: usize) -> Simulator {
    let mut cfg = SimConfig::new(n, seed);
    cfg.raft.snapshot_threshold = threshold;
    cfg.raft.snapshot_chunk_bytes = chunk_bytes;
    Simulator::new(cfg)
}

/// The InstallSnapshot chunks `from` sent `to` after `since`, as `(time, snapshot index,
/// offset, bytes, done)`.
pub fn snapshot_chunks_sent(
    sim: &Simulator,
    since: u64,
    from: NodeId,
    to: NodeId,
) -> Vec<(u64, Index, u64, usize, bool)> {
    sim.trace()
        .iter()
        .filter(|e| e.time > since)
        .filter_map(|e| match &e.kind {
            TraceKind::Sent {
                from: keyval_core::trace::Addr::Node(f),
                to: keyval_core::trace::Addr::Node(t),
                payload:
                    Payload::Raft(Message::InstallSnapshot {
                        meta,
                        offset,
                        data,
                        done,
                        ..
                    }),
                ..
            } if *f == from && *t == to => {
                Some((e.time, meta.last_index, *offset, data.len(), *done))
            }
            _ => None,
        })
        .collect()
}

/// Waits (at most `within` of virtual time) until [`converged`].
pub fn wait_converged(sim: &mut Simulator, within: u64) {
    let deadline = sim.now() + within;
    assert!(
        run_until_true(sim, deadline, converged),
        "replicas did not converge by t={deadline}us\n{}",
        status(sim)
    );
}

/// Checks log matching across all nodes now, then asserts that no checker saw a violation.
pub fn assert_safe(sim: &mut Simulator) {
    sim.check_log_matching();
    let v = sim.checker().violations();
    assert!(
        v.is_empty(),
        "checker violations:\n{}",
        v.iter().map(|v| format!("  {v}\n")).collect::<String>()
    );
}

/// Command entries in a log, as (client, seq) pairs in log order.
pub fn commands(entries: &[Entry]) -> Vec<(u64, u64)> {
    entries
        .iter()
        .filter_map(|e| match &e.payload {
            EntryPayload::Command(r) => Some((r.client_id, r.seq)),
            EntryPayload::Noop | EntryPayload::ConfChange(_) => None,
        })
        .collect()
}

/// Raft messages `from` sent to `to` (of kind `kind`, e.g. "Append") in trace events after
/// `since`.
pub fn sent_count(sim: &Simulator, since: u64, from: NodeId, to: NodeId, kind: &str) -> usize {
    sim.trace()
        .iter()
        .filter(|e| e.time > since)
        .filter(|e| match &e.kind {
            TraceKind::Sent {
                from: f,
                to: t,
                payload,
                ..
            } => {
                *f == keyval_core::trace::Addr::Node(from)
                    && *t == keyval_core::trace::Addr::Node(to)
                    && payload.kind() == kind
            }
            _ => false,
        })
        .count()
}

/// Whether `node` sent the manual client a successful reply after `since`.
pub fn replied_ok_to_manual_client(sim: &Simulator, node: NodeId, since: u64) -> bool {
    sim.trace()
        .iter()
        .filter(|e| e.time >= since)
        .any(|e| match &e.kind {
            TraceKind::Sent {
                from: keyval_core::trace::Addr::Node(n),
                to: keyval_core::trace::Addr::Client(c),
                payload: Payload::Reply { outcome, .. },
                ..
            } => *n == node && *c == MANUAL_CLIENT && outcome.is_ok(),
            _ => false,
        })
}

/// The readable form of a trace between two times, one line per event, leaving out heartbeat
/// traffic ([`ReadableFilter`]).
pub fn readable_trace(events: &[TraceEvent], from: u64, to: u64) -> String {
    let mut filter = ReadableFilter::default();
    let mut out = String::new();
    for e in events {
        if filter.keep(e) && e.time >= from && e.time <= to {
            out.push_str(&e.render());
            out.push('\n');
        }
    }
    out
}

/// Outcome of the scripted Figure 8 scenario.
pub struct Figure8 {
    pub sim: Simulator,
    /// The client entry appended in the first leader's term and stored on a majority by a
    /// later leader: the entry §5.4.2 says must not commit by counting.
    pub old_entry: Entry,
    /// A: leader of the first term (S1 in the paper).
    pub first_leader: NodeId,
    /// A2: the follower that received the old entry in the first term, then leader of the third
    /// (playing S1, which in the paper leads both).
    pub third_leader: NodeId,
    /// B: leader of the second term, isolated before its no-op left it (S5).
    pub second_leader: NodeId,
    /// C and D: the nodes the third leader copied the old entry to (S2 and S3).
    pub copies: [NodeId; 2],
    /// The third leader's commit index when it was stopped, with the old entry on a majority.
    pub third_leader_commit: Index,
    /// Nodes whose log held the old entry at that moment.
    pub old_entry_holders: Vec<NodeId>,
    /// History position of the client write that became the old entry.
    pub write: usize,
    /// Whether all logs and state machines agreed in the end.
    pub converged: bool,
    /// When the script's first fault struck (step a) and when B had overwritten X and committed
    /// (end of step d): the window worth reading.
    pub started_at: u64,
    pub overwritten_at: u64,
}

/// Figure 8 of the Raft paper, rebuilt from partitions, crashes and one client write on five
/// nodes (each new leader's no-op takes the place of the paper's client entries):
///
/// - (a) A leads term t1; the client write X is appended by A and copied to A2 only.
/// - (b) A crashes; B wins term t2 with the remaining nodes' votes and is cut off the moment it
///   wins, so its no-op (index of X, term t2) stays on B alone; then B crashes.
/// - (c) A2 wins term t3 and copies X to C and D: X is now on a majority (A2, C, D). Links from
///   A2 to C and D are cut as soon as each acknowledged X, so A2's own no-op reaches neither,
///   and A2 crashes. Correct Raft must not have committed X: it is not of A2's term.
/// - (d) B restarts and wins with C's and D's votes (its last term t2 beats their t1) and
///   overwrites X with its t2 entry, which then commits.
/// - (e) Everyone restarts, the network heals, and the cluster must converge.
///
/// `max_entries_per_msg` is 1 so that X and A2's no-op travel in separate appends, as the
/// paper's entries do.
pub fn figure_8(seed: u64, mutation: Option<Mutation>) -> Figure8 {
    let mut cfg = SimConfig::new(5, seed);
    cfg.raft.max_entries_per_msg = 1;
    cfg.raft.mutation = mutation;
    // One proposal, one entry: the client must not retry X at a later leader.
    cfg.workload.timeout_us = 600 * SEC;
    let mut sim = Simulator::new(cfg);
    let limit = |sim: &Simulator| sim.now() + 5 * SEC;

    // (a) A leads and commits its no-op everywhere; X reaches A2 only.
    let a = wait_for_stable_leader(&mut sim, SEC);
    let base = raft(&sim, a).log().last_index();
    let all = sim.voters();
    let d = limit(&sim);
    let committed_everywhere =
        |s: &Simulator| all.iter().all(|&n| raft(s, n).commit_index() == base);
    assert!(run_until_true(&mut sim, d, committed_everywhere));
    let others: Vec<NodeId> = all.iter().copied().filter(|&n| n != a).collect();
    let a2 = others[0];
    let rest: Vec<NodeId> = others[1..].to_vec();
    let started_at = sim.now();
    sim.apply_fault(FaultAction::Partition(vec![vec![a, a2], rest.clone()]));
    let write = submit(&mut sim, put("x", "old"));
    let x_index = base + 1;
    let d = limit(&sim);
    assert!(
        run_until_true(&mut sim, d, |s| raft(s, a2).log().last_index() == x_index),
        "X never reached A2\n{}",
        status(&sim)
    );
    let old_entry = raft(&sim, a2).log().get(x_index).expect("X").clone();
    assert!(matches!(old_entry.payload, EntryPayload::Command(_)));
    sim.apply_fault(FaultAction::Crash(a));

    // (b) B wins among the rest and is cut off before its no-op leaves it.
    let d = limit(&sim);
    assert!(run_until_true(&mut sim, d, |s| rest
        .iter()
        .any(|&n| raft(s, n).is_leader())));
    let b = *rest
        .iter()
        .find(|&&n| raft(&sim, n).is_leader())
        .expect("B");
    let cd: Vec<NodeId> = rest.iter().copied().filter(|&n| n != b).collect();
    let mut majority_side = vec![a, a2];
    majority_side.extend(&cd);
    sim.apply_fault(FaultAction::Partition(vec![vec![b], majority_side]));
    let d = limit(&sim);
    assert!(
        run_until_true(&mut sim, d, |s| s.nodes()[&b].storage.entries.len() as u64
            == x_index),
        "B's no-op never became durable"
    );
    assert!(raft(&sim, b).log().term(x_index) > Some(old_entry.term));
    sim.apply_fault(FaultAction::Crash(b));

    // (c) A2 wins and copies X, and only X, to C and D.
    let d = limit(&sim);
    assert!(
        run_until_true(&mut sim, d, |s| raft(s, a2).is_leader()),
        "A2 did not win the third term\n{}",
        status(&sim)
    );
    let mut waiting = cd.clone();
    let d = limit(&sim);
    loop {
        let acked: Vec<NodeId> = waiting
            .iter()
            .copied()
            .filter(|&n| {
                raft(&sim, a2)
                    .progress(n)
                    .is_some_and(|p| p.match_index >= x_index)
            })
            .collect();
        for n in acked {
            // Its acknowledgement got through; the no-op that follows it must not.
            sim.apply_fault(FaultAction::CutLink(a2, n));
            waiting.retain(|&w| w != n);
        }
        if waiting.is_empty() {
            break;
        }
        assert!(
            sim.now() <= d && raft(&sim, a2).is_leader(),
            "A2 lost leadership or never copied X to {waiting:?}\n{}",
            status(&sim)
        );
        assert!(sim.step(), "simulation ran dry");
    }
    let third_leader_commit = raft(&sim, a2).commit_index();
    let old_entry_holders = sim
        .logs()
        .into_iter()
        .filter(|(_, log)| log.get(x_index as usize - 1) == Some(&old_entry))
        .map(|(n, _)| n)
        .collect();
    sim.apply_fault(FaultAction::Crash(a2));
    // A leader's appends leave before its own fsync, so A2's no-op may already be on the wire:
    // keep the links cut until it has been dropped.
    let in_flight = sim.now() + sim.config().network.latency_us.1;
    sim.run_until(in_flight);

    // (d) B returns and wins with C's and D's votes, then overwrites X and commits.
    sim.apply_fault(FaultAction::Heal);
    sim.apply_fault(FaultAction::Restart(b));
    let d = limit(&sim);
    assert!(
        run_until_true(&mut sim, d, |s| is_up(s, b)
            && raft(s, b).is_leader()
            && raft(s, b).commit_index() > x_index),
        "B did not lead and commit in the fourth term\n{}",
        status(&sim)
    );
    let overwritten_at = sim.now();

    // (e) Everyone returns.
    sim.apply_fault(FaultAction::Restart(a));
    sim.apply_fault(FaultAction::Restart(a2));
    let d = limit(&sim);
    let converged = run_until_true(&mut sim, d, converged);
    Figure8 {
        sim,
        old_entry,
        first_leader: a,
        third_leader: a2,
        second_leader: b,
        copies: [cd[0], cd[1]],
        third_leader_commit,
        old_entry_holders,
        write,
        converged,
        started_at,
        overwritten_at,
    }
}
