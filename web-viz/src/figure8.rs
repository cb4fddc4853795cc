//! Figure 8 of the Raft paper (§5.4.2), played on the real core: an entry of an earlier term,
//! stored on a majority, is still not committed, and a later leader overwrites it.
//!
//! The situation needs faults at exact protocol moments (a link cut the instant a follower has
//! acknowledged one entry), which fixed times cannot hit on every seed. So the script is
//! *directed*: it runs the simulator once, watching the state, and records each fault as a
//! [`LoggedAction`] at the simulator step where it struck. The learner then plays that action
//! log from step 0 like any recorded run, and it replays exactly (same as core's
//! `tests/common/mod.rs::figure_8`, which this mirrors step for step).

use keyval_core::sim::{FaultAction, SimConfig, Simulator};
use keyval_core::{Entry, EntryPayload, KvOp, NodeId, RaftNode};

use crate::engine::{Engine, LoggedAction, UserAction};

const SEC: u64 = 1_000_000;

/// What the directed run established, for the course's questions and the tests.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure8 {
    pub actions: Vec<LoggedAction>,
    /// Simulator steps of the whole directed run (the timeline's end).
    pub steps: u64,
    /// The client entry X, appended in the first leader's term.
    pub old_entry: Entry,
    /// A (S1): leader of the first term.
    pub first_leader: NodeId,
    /// A2: got X in the first term, leads the third and copies X to a majority.
    pub third_leader: NodeId,
    /// B (S5): leader of the second term; its entry at X's index overwrites X.
    pub second_leader: NodeId,
    /// Nodes holding X when the third leader stopped: a majority.
    pub old_entry_holders: Vec<NodeId>,
    /// The third leader's commit index at that moment (below X's index unless Raft is broken).
    pub third_leader_commit: u64,
    /// Simulator step at which the third leader crashed with X on a majority.
    pub majority_at_step: u64,
}

/// The configuration the scenario runs with: one entry per append (so X and the third leader's
/// no-op travel separately, as the paper's entries do) and a client that never retries X.
pub fn config(seed: u64) -> SimConfig {
    let mut cfg = SimConfig::new(5, seed);
    cfg.raft.max_entries_per_msg = 1;
    cfg.workload.timeout_us = 600 * SEC;
    cfg
}

fn raft(sim: &Simulator, n: NodeId) -> Option<&RaftNode> {
    sim.nodes().get(&n)?.server.as_ref().map(|s| s.raft())
}

fn is_leader(sim: &Simulator, n: NodeId) -> bool {
    raft(sim, n).is_some_and(|r| r.is_leader())
}

/// Steps until `pred` holds or `limit` µs of virtual time pass. Returns whether it held.
fn run_until(e: &mut Engine, limit: u64, pred: impl Fn(&Simulator) -> bool) -> bool {
    let deadline = e.now() + limit;
    loop {
        if pred(&e.sim) {
            return true;
        }
        if e.now() > deadline || !e.advance() {
            return false;
        }
    }
}

fn fault(e: &mut Engine, f: FaultAction) {
    e.act(UserAction::Fault(f));
}

/// Directs the Figure 8 run on `cfg` (see [`config`]); `None` when this seed's timing does not
/// produce the figure (the caller tries the next seed).
pub fn direct(cfg: SimConfig) -> Option<Figure8> {
    let mut e = Engine::new(cfg);
    let stable = |s: &Simulator| {
        s.leader()
            .and_then(|l| raft(s, l))
            .is_some_and(|r| r.commit_index() >= r.log().last_index() && r.commit_index() > 0)
    };
    // (a) A leads and its no-op is committed everywhere; the client's X reaches A2 only.
    if !run_until(&mut e, SEC, stable) {
        return None;
    }
    // The client writes once first, so its session is open before the partition: X must be
    // the very next entry, and a session opened on the minority side would never commit.
    e.act(UserAction::Submit(KvOp::Put {
        key: b"x".to_vec(),
        value: b"init".to_vec(),
    }));
    if !run_until(&mut e, SEC, |s| {
        stable(s) && s.clients().all(|c| c.pending.is_none())
    }) {
        return None;
    }
    let a = e.sim.leader()?;
    let base = raft(&e.sim, a)?.log().last_index();
    let all = e.sim.voters();
    if !run_until(&mut e, 5 * SEC, |s| {
        all.iter()
            .all(|&n| raft(s, n).is_some_and(|r| r.commit_index() == base))
    }) {
        return None;
    }
    let others: Vec<NodeId> = all.iter().copied().filter(|&n| n != a).collect();
    let a2 = others[0];
    let rest: Vec<NodeId> = others[1..].to_vec();
    fault(
        &mut e,
        FaultAction::Partition(vec![vec![a, a2], rest.clone()]),
    );
    e.act(UserAction::Submit(KvOp::Put {
        key: b"x".to_vec(),
        value: b"old".to_vec(),
    }));
    let x_index = base + 1;
    if !run_until(&mut e, 5 * SEC, |s| {
        raft(s, a2).is_some_and(|r| r.log().last_index() == x_index)
    }) {
        return None;
    }
    let old_entry = raft(&e.sim, a2)?.log().get(x_index)?.clone();
    if !matches!(old_entry.payload, EntryPayload::Command(_)) {
        return None;
    }
    fault(&mut e, FaultAction::Crash(a));

    // (b) B wins among the rest and is cut off before its no-op leaves it; then it crashes.
    if !run_until(&mut e, 5 * SEC, |s| rest.iter().any(|&n| is_leader(s, n))) {
        return None;
    }
    let b = *rest.iter().find(|&&n| is_leader(&e.sim, n))?;
    let cd: Vec<NodeId> = rest.iter().copied().filter(|&n| n != b).collect();
    let mut majority_side = vec![a, a2];
    majority_side.extend(&cd);
    fault(&mut e, FaultAction::Partition(vec![vec![b], majority_side]));
    if !run_until(&mut e, 5 * SEC, |s| {
        s.nodes()[&b].storage.entries.len() as u64 == x_index
    }) {
        return None;
    }
    if raft(&e.sim, b)?.log().term(x_index) <= Some(old_entry.term) {
        return None;
    }
    fault(&mut e, FaultAction::Crash(b));

    // (c) A2 wins the third term and copies X, and only X, to C and D: X is on a majority.
    if !run_until(&mut e, 5 * SEC, |s| is_leader(s, a2)) {
        return None;
    }
    let mut waiting = cd.clone();
    let deadline = e.now() + 5 * SEC;
    while !waiting.is_empty() {
        let acked: Vec<NodeId> = waiting
            .iter()
            .copied()
            .filter(|&n| {
                raft(&e.sim, a2)
                    .and_then(|r| r.progress(n))
                    .is_some_and(|p| p.match_index >= x_index)
            })
            .collect();
        for n in acked {
            // Its acknowledgement got through; the no-op that follows it must not.
            fault(&mut e, FaultAction::CutLink(a2, n));
            waiting.retain(|&w| w != n);
        }
        if waiting.is_empty() {
            break;
        }
        if e.now() > deadline || !is_leader(&e.sim, a2) || !e.advance() {
            return None;
        }
    }
    let third_leader_commit = raft(&e.sim, a2)?.commit_index();
    let old_entry_holders: Vec<NodeId> = e
        .sim
        .logs()
        .into_iter()
        .filter(|(_, log)| log.get(x_index as usize - 1) == Some(&old_entry))
        .map(|(n, _)| n)
        .collect();
    if old_entry_holders.len() < 3 {
        return None;
    }
    fault(&mut e, FaultAction::Crash(a2));
    let majority_at_step = e.step_count();
    // A leader's appends leave before its own fsync, so A2's last append may still be on the
    // wire: keep the links cut until it has been dropped (as the core's Figure 8 script does).
    let in_flight = e.sim.config().network.latency_us.1;
    run_until(&mut e, in_flight, |_| false);

    // (d) B returns and wins with C's and D's votes, overwrites X and commits its own entry.
    fault(&mut e, FaultAction::Heal);
    fault(&mut e, FaultAction::Restart(b));
    if !run_until(&mut e, 5 * SEC, |s| {
        is_leader(s, b) && raft(s, b).is_some_and(|r| r.commit_index() > x_index)
    }) {
        return None;
    }
    // (e) Everyone returns and the cluster converges without X.
    fault(&mut e, FaultAction::Restart(a));
    fault(&mut e, FaultAction::Restart(a2));
    run_until(&mut e, SEC, |_| false);
    Some(Figure8 {
        actions: e.actions.clone(),
        steps: e.step_count(),
        old_entry,
        first_leader: a,
        third_leader: a2,
        second_leader: b,
        old_entry_holders,
        third_leader_commit,
        majority_at_step,
    })
}

/// The first seed from `seed` on whose timing the figure plays out (the directed script needs a
/// stable first leader within a second; almost every seed has one).
pub fn find(seed: u64, tune: impl Fn(&mut SimConfig)) -> Option<(SimConfig, Figure8)> {
    (seed..seed + 20).find_map(|s| {
        let mut cfg = config(s);
        tune(&mut cfg);
        direct(cfg.clone()).map(|f| (cfg, f))
    })
}

/// The Figure 8 scenario's engine (a [`crate::scenarios::Director`]).
pub fn engine(seed: u64, tune: &dyn Fn(&mut SimConfig)) -> Option<Engine> {
    let (cfg, fig) = find(seed, tune)?;
    let mut e = Engine::prepared(cfg, fig.actions.clone(), fig.steps);
    e.figure8 = Some(fig);
    Some(e)
}
