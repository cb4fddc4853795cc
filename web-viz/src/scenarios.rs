//! Guided scenarios: a cluster size, a seed and a script of actions at virtual times.

use std::collections::{BTreeMap, BTreeSet};

use keyval_core::sim::{FaultAction, SimConfig};
use keyval_core::trace::{TraceEvent, TraceKind};
use keyval_core::{KvOp, NodeEvent, Role};

use crate::engine::{Engine, ScriptAction};
use crate::member_action::MemberAction;

/// A property of a run's trace.
pub type TracePredicate = fn(&[TraceEvent]) -> bool;

pub struct Scenario {
    pub id: &'static str,
    pub title: &'static str,
    pub what: &'static str,
    pub nodes: usize,
    pub seed: u64,
    /// Speed slider position to start at, if the scenario wants one.
    pub speed: Option<f64>,
    pub script: fn() -> Vec<(u64, ScriptAction)>,
    /// When set, the scenario needs a seed on which this holds after `until` µs; if `seed`
    /// does not (the core's behaviour changed), the next seeds are tried.
    pub needs: Option<(u64, TracePredicate)>,
    /// Changes to `SimConfig::new(nodes, seed)` the scenario needs (recorded in exported traces).
    pub tune: Option<fn(&mut SimConfig)>,
    /// A directed scenario: its actions are found by watching a run (see `figure8` and
    /// `lease_story`), not fixed in time; `script` is then unused.
    pub directed: Option<Director>,
}

/// Builds a directed scenario's engine from a first seed to try and a change to its
/// configuration; None when no seed nearby plays it out.
pub type Director = fn(u64, &dyn Fn(&mut SimConfig)) -> Option<Engine>;

impl Scenario {
    /// An engine set up for this scenario: its seed (or the first after it that shows what the
    /// scenario is about) and its script.
    pub fn engine(&self) -> Engine {
        self.engine_with(&|_| {})
    }

    /// The same with a further change to the configuration (a deliberate bug switched on).
    pub fn engine_with(&self, extra: &dyn Fn(&mut SimConfig)) -> Engine {
        if let Some(direct) = self.directed {
            let tune = |c: &mut SimConfig| {
                if let Some(t) = self.tune {
                    t(c);
                }
                extra(c);
            };
            if let Some(e) = direct(self.seed, &tune) {
                return e;
            }
        }
        let make = |seed| {
            let mut cfg = SimConfig::new(self.nodes, seed);
            if let Some(t) = self.tune {
                t(&mut cfg);
            }
            extra(&mut cfg);
            let mut e = Engine::new(cfg);
            e.script = (self.script)().into_iter().collect();
            e
        };
        if let Some((until, holds)) = self.needs {
            for seed in self.seed..self.seed + 500 {
                let mut probe = make(seed);
                probe.run_until_time(until, u64::MAX);
                if holds(probe.trace()) {
                    return make(seed);
                }
            }
        }
        make(self.seed)
    }
}

pub fn leaders_by_term(trace: &[TraceEvent]) -> BTreeMap<u64, BTreeSet<u64>> {
    let mut m: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for ev in trace {
        if let TraceKind::Node {
            node,
            event:
                NodeEvent::RoleChanged {
                    to: Role::Leader,
                    term,
                    ..
                },
        } = &ev.kind
        {
            m.entry(*term).or_default().insert(*node);
        }
    }
    m
}

/// A term in which two or more nodes stood as candidates and nobody won.
pub fn split_term(trace: &[TraceEvent]) -> Option<u64> {
    let leaders = leaders_by_term(trace);
    let mut cands: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    for ev in trace {
        if let TraceKind::Node {
            node,
            event:
                NodeEvent::RoleChanged {
                    to: Role::Candidate,
                    term,
                    ..
                },
        } = &ev.kind
        {
            cands.entry(*term).or_default().insert(*node);
        }
    }
    cands
        .into_iter()
        .find(|(t, c)| c.len() >= 2 && !leaders.contains_key(t))
        .map(|(t, _)| t)
}

const MS: u64 = 1_000;

fn put(k: &str, v: &str) -> ScriptAction {
    ScriptAction::Submit(KvOp::Put {
        key: k.into(),
        value: v.into(),
    })
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        id: "first-election",
        title: "First election",
        what: "Five followers, each with a randomized election timeout (the ring around the node). The first to time out asks for pre-votes, then votes, and with a majority leads term 1 or 2.",
        nodes: 5,
        seed: 1,
        speed: Some(10.0),
        needs: None,
        tune: None,
        directed: None,
        script: Vec::new,
    },
    Scenario {
        id: "commit-two-down",
        title: "Commit with two nodes down",
        what: "Two followers crash at 0.6 s; at 0.8 s the client sends a put. The leader and the two remaining followers are three of five, a majority, so the put commits and is answered (§5.3).",
        nodes: 5,
        seed: 1,
        speed: None,
        needs: None,
        tune: None,
        directed: None,
        script: || {
            vec![
                (600 * MS, ScriptAction::CrashFollower),
                (610 * MS, ScriptAction::CrashFollower),
                (800 * MS, put("x", "1")),
            ]
        },
    },
    Scenario {
        id: "split-vote",
        title: "Split vote",
        what: "Two nodes time out almost together and split the votes: no one gets a majority in that term. Randomized election timeouts (§5.2) make the next round very likely to produce one winner.",
        nodes: 5,
        seed: SPLIT_VOTE_SEED,
        speed: Some(10.0),
        needs: Some((1_500_000, |t| split_term(t).is_some() && !leaders_by_term(t).is_empty())),
        tune: None,
        directed: None,
        script: || {
            vec![(
                0,
                ScriptAction::Fault(FaultAction::SetNetwork(keyval_core::sim::NetworkConfig {
                    latency_us: (8 * MS, 20 * MS),
                    ..Default::default()
                })),
            )]
        },
    },
    Scenario {
        id: "leader-crash",
        title: "Leader crash",
        what: "The leader crashes at 1 s. Followers stop hearing heartbeats, one times out, wins a pre-vote and then a real election (§5.2), and the cluster goes on. At 3 s the old leader restarts from disk as a follower and catches up (§5.3).",
        nodes: 5,
        seed: 1,
        speed: None,
        needs: None,
        tune: None,
        directed: None,
        script: || {
            vec![
                (700 * MS, put("x", "1")),
                (1_000 * MS, ScriptAction::CrashLeader),
                (3_000 * MS, ScriptAction::RestartAll),
            ]
        },
    },
    Scenario {
        id: "minority-partition",
        title: "Minority partition",
        what: "At 1 s the leader and one follower are cut off from the other three. The old leader cannot commit anything (no majority, §5.4.2) and steps down when check-quorum fails (thesis §6.2); the majority side elects a new leader that serves the client. At 4 s the network heals and the minority catches up.",
        nodes: 5,
        seed: 2,
        speed: None,
        needs: None,
        tune: None,
        directed: None,
        script: || {
            vec![
                (1_000 * MS, ScriptAction::IsolateLeader { extra: 1 }),
                (1_010 * MS, put("y", "2")),
                (4_000 * MS, ScriptAction::RestartAll),
            ]
        },
    },
    Scenario {
        id: "stale-leader",
        title: "Stale leader returns",
        what: "At 1 s the leader is paused (a long GC pause). The others elect a new leader in a higher term. At 3 s the old leader wakes up still believing it leads; the first reply carrying the higher term makes it step down (§5.1).",
        nodes: 5,
        seed: 3,
        speed: None,
        needs: None,
        tune: None,
        directed: None,
        script: || {
            vec![
                (1_000 * MS, ScriptAction::PauseLeader),
                (3_000 * MS, ScriptAction::RestartAll),
            ]
        },
    },
    Scenario {
        id: "figure-8",
        title: "Figure 8: an old-term entry on a majority is overwritten",
        what: "Exactly the paper's Figure 8 (§5.4.2). A leads the first term; the client's X (put x=old) reaches A and one follower, A2; A crashes. B wins the second term, appends its own entry at X's index, is cut off and crashes. A2 wins the third term and copies X to two more nodes: X, from the first term, is now stored on a majority (3 of 5). It is still not committed: A2 crashes, B returns, wins with the votes of the nodes holding X (its last term is newer), and overwrites X. A leader counts replicas only for entries of its own term.",
        nodes: 5,
        seed: 0,
        speed: None,
        needs: None,
        tune: None,
        directed: Some(crate::figure8::engine),
        script: Vec::new,
    },
    Scenario {
        id: "snapshot-catch-up",
        title: "Follower caught up by snapshot",
        what: "Nodes snapshot their state every 4 applied entries and discard the log before it (§7). A follower crashes at 0.6 s and misses eight puts; when it returns at 1.8 s the leader no longer has the entries it needs, so it sends its snapshot (InstallSnapshot, S) instead, then the log after it.",
        nodes: 3,
        seed: 5,
        speed: None,
        needs: None,
        tune: Some(|c| c.raft.snapshot_threshold = 4),
        directed: None,
        script: || {
            let mut s = vec![(600 * MS, ScriptAction::CrashFollower)];
            for i in 0..8u64 {
                s.push((700 * MS + i * 120 * MS, put(&format!("k{i}"), &format!("v{i}"))));
            }
            s.push((1_800 * MS, ScriptAction::RestartAll));
            s
        },
    },
    Scenario {
        id: "read-before-first-commit",
        title: "ReadIndex: a new leader's first read",
        what: "A linearizable read reaches a new leader the instant it wins, before its no-op has committed. Its commit index may still be behind what the previous leader acknowledged, so it holds the read (the read queue under the node) until an entry of its own term commits, then confirms its leadership with one heartbeat round (tagged R and its round number) and answers from its state. No log entry is written for the read (thesis §6.4).",
        nodes: 3,
        seed: 1,
        speed: Some(30.0),
        needs: None,
        tune: None,
        directed: Some(crate::lease_story::first_commit),
        script: Vec::new,
    },
    Scenario {
        id: "lease-stale-read",
        title: "Lease without drift margin: a stale read",
        what: "Lease reads on, drift margin 0. The leader's clock runs 20% slow, the followers' 20% fast. Right after a heartbeat round renewed its lease the leader is cut off; the others time out (fast clocks), elect a new leader and commit x=new. The old leader's slow clock says its lease still holds, so it answers a lease read with x=old: a stale read. The History tab shows the linearizability checker catching it. A lease is only as safe as the clock assumption its margin encodes (thesis §6.4.1).",
        nodes: 3,
        seed: 1,
        speed: Some(30.0),
        needs: None,
        tune: None,
        directed: Some(crate::lease_story::stale_lease),
        script: Vec::new,
    },
    Scenario {
        id: "read-index-refuses",
        title: "Same fault, ReadIndex: the read is refused",
        what: "The same schedule as the stale lease read, but the read is linearizable (ReadIndex). The cut-off leader records its commit index and sends a heartbeat round to confirm it still leads; no follower can answer, so no majority confirms it and the read waits in its queue. The client times out and retries at another node, which reads x=new; the round then expires and the old leader refuses the read with a retryable error. ReadIndex never trusts a clock (thesis §6.4).",
        nodes: 3,
        seed: 1,
        speed: Some(30.0),
        needs: None,
        tune: None,
        directed: Some(crate::lease_story::read_index),
        script: Vec::new,
    },
    Scenario {
        id: "replace-voter",
        title: "Replace a voter through joint consensus",
        what: "At 0.8 s a new node, n4, is added as a learner: it receives the log but does not vote (dashed, with its catch-up bar). A replacement asked for at once is refused: the learner's change is not applied yet, and only one change may be in flight. n4 is then paused while the client writes, and a replacement at 1.15 s is refused again: n4's log lags the leader's by more than the promotion lag (2 entries here). n4 resumes and catches up; at 1.8 s one joint change makes it a voter and removes a follower. While the joint configuration is in force (orange and blue rings), every commit and election needs a majority of the old voters AND of the new; the leader leaves it by itself once it has applied it (auto-leave).",
        nodes: 3,
        seed: 1,
        speed: Some(22.0),
        needs: None,
        tune: Some(|c| c.raft.max_promotion_lag = 2),
        directed: None,
        script: || {
            vec![
                (
                    0,
                    ScriptAction::Fault(FaultAction::SetNetwork(keyval_core::sim::NetworkConfig {
                        latency_us: (15 * MS, 30 * MS),
                        ..Default::default()
                    })),
                ),
                (600 * MS, put("x", "1")),
                (800 * MS, ScriptAction::Member(MemberAction::AddLearner)),
                (805 * MS, ScriptAction::ReplaceFollower),
                (810 * MS, ScriptAction::Fault(FaultAction::Pause(4))),
                (900 * MS, put("y", "2")),
                (1_000 * MS, put("z", "3")),
                (1_150 * MS, ScriptAction::ReplaceFollower),
                (1_250 * MS, ScriptAction::Fault(FaultAction::Resume(4))),
                (1_800 * MS, ScriptAction::ReplaceFollower),
                (2_600 * MS, put("w", "4")),
            ]
        },
    },
    Scenario {
        id: "removed-node",
        title: "A removed node does not disrupt the cluster",
        what: "At 1 s a follower is removed. The leader applies the change once it commits and stops replicating to the removed node, which never learns it is out and goes on believing it is a voter. Its election timer fires again and again and it asks for pre-votes; the members hear from their leader and refuse, and a pre-vote bumps no term (pre-vote, check-quorum: thesis §4.2.3). The leader and its term stand; the client's put at 2 s commits on the two remaining voters.",
        nodes: 3,
        seed: 2,
        speed: Some(22.0),
        needs: None,
        tune: None,
        directed: None,
        script: || {
            vec![
                (600 * MS, put("x", "1")),
                (1_000 * MS, ScriptAction::RemoveFollower),
                (2_000 * MS, put("y", "2")),
            ]
        },
    },
];

/// A seed whose first election splits the vote with the scenario's network (found by
/// `cargo test -p web-viz --test replay find_split_vote_seed -- --ignored --nocapture`; if a
/// change of the core makes it stop splitting, `Scenario::engine` looks for the next one).
pub const SPLIT_VOTE_SEED: u64 = 46;
