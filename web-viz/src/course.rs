//! The course: chapters in the spirit of The Secret Lives of Data, each a short explanation, a
//! scripted situation on the real core (a guided scenario), a question, and the answer the run
//! itself gives. A chapter's verdict is read from the run's trace, never from a stored answer, so
//! if the core changed behaviour the course would say what the core now does.

use keyval_core::sim::{TraceEvent, TraceKind};
use keyval_core::{NodeEvent, Role};

use crate::engine::{Engine, MANUAL_CLIENT};
use crate::scenarios::{leaders_by_term, split_term, SCENARIOS};

pub struct Chapter {
    pub id: &'static str,
    pub title: &'static str,
    /// What to know before watching.
    pub explain: &'static str,
    /// The guided scenario (`SCENARIOS` id) that sets the situation up.
    pub scenario: &'static str,
    pub question: &'static str,
    pub choices: &'static [&'static str],
    /// The choice the run has shown to be right, once it has shown it.
    pub verdict: fn(&Engine) -> Option<usize>,
    /// Why, shown with the answer.
    pub why: &'static str,
}

impl Chapter {
    pub fn scenario_index(&self) -> Option<usize> {
        SCENARIOS.iter().position(|s| s.id == self.scenario)
    }
}

fn node_events(t: &[TraceEvent]) -> impl Iterator<Item = (u64, u64, &NodeEvent)> {
    t.iter().filter_map(|ev| match &ev.kind {
        TraceKind::Node { node, event } => Some((ev.time, *node, event)),
        _ => None,
    })
}

fn first_leader(e: &Engine) -> Option<usize> {
    let (_, nodes) = leaders_by_term(e.trace()).into_iter().next()?;
    nodes.into_iter().next().map(|n| n as usize - 1)
}

fn split_then_leader(e: &Engine) -> Option<usize> {
    let t = e.trace();
    let leaders = leaders_by_term(t);
    let (&first_won, _) = leaders.iter().next()?;
    Some(match split_term(t) {
        Some(split) if split < first_won => 1,
        _ => 0,
    })
}

fn manual_put_outcome(e: &Engine) -> Option<usize> {
    e.trace().iter().find_map(|ev| match &ev.kind {
        TraceKind::ClientComplete { client, .. } if *client == MANUAL_CLIENT => Some(0),
        TraceKind::ClientGaveUp { client, .. } if *client == MANUAL_CLIENT => Some(1),
        _ => None,
    })
}

/// The leader cut off at 1 s: does it step down (check-quorum) or keep leading?
fn isolated_leader_fate(e: &Engine) -> Option<usize> {
    let t = e.trace();
    let cut_at = t
        .iter()
        .find(|ev| matches!(ev.kind, TraceKind::Partitioned { .. }))?
        .time;
    let stepped_down = node_events(t)
        .any(|(time, _, ev)| time >= cut_at && matches!(ev, NodeEvent::CheckQuorumFailed { .. }));
    if stepped_down {
        return Some(1);
    }
    // Still leading two seconds on: it kept leading its side.
    (e.now() > cut_at + 2_000_000).then_some(0)
}

/// The old leader restarts: does it come back as leader or as a follower of the new one?
fn restarted_leader_role(e: &Engine) -> Option<usize> {
    let t = e.trace();
    let (at, node) = t.iter().find_map(|ev| match ev.kind {
        TraceKind::Restarted { node } => Some((ev.time, node)),
        _ => None,
    })?;
    if e.now() < at + 500_000 {
        return None;
    }
    let led_again = node_events(t).any(|(time, n, ev)| {
        time >= at
            && n == node
            && matches!(
                ev,
                NodeEvent::RoleChanged {
                    to: Role::Leader,
                    ..
                }
            )
    });
    Some(if led_again { 0 } else { 1 })
}

/// Figure 8: is the old-term entry stored on a majority committed, or overwritten?
fn old_entry_fate(e: &Engine) -> Option<usize> {
    let x = e.figure8.as_ref()?;
    let index = x.old_entry.index;
    if e.sim.checker().committed().get(&index) == Some(&x.old_entry) {
        return Some(0);
    }
    let overwritten = e.trace().iter().any(|ev| {
        matches!(ev.kind, TraceKind::Truncated { node, from }
            if from <= index && x.old_entry_holders.contains(&node))
    });
    overwritten.then_some(1)
}

fn catch_up_by(e: &Engine) -> Option<usize> {
    let t = e.trace();
    let restarted = t
        .iter()
        .position(|ev| matches!(ev.kind, TraceKind::Restarted { .. }))?;
    let installed = node_events(&t[restarted..])
        .any(|(_, _, ev)| matches!(ev, NodeEvent::SnapshotInstalled { .. }));
    if installed {
        return Some(1);
    }
    (e.now() > t[restarted].time + 2_000_000).then_some(0)
}

fn stale_leader_fate(e: &Engine) -> Option<usize> {
    let t = e.trace();
    let (at, node) = t.iter().find_map(|ev| match ev.kind {
        TraceKind::Resumed { node } => Some((ev.time, node)),
        _ => None,
    })?;
    let stepped = node_events(t).any(|(time, n, ev)| {
        time >= at
            && n == node
            && matches!(
                ev,
                NodeEvent::RoleChanged {
                    from: Role::Leader,
                    ..
                }
            )
    });
    if stepped {
        return Some(1);
    }
    (e.now() > at + 2_000_000).then_some(0)
}

/// Is a read that reached a brand-new leader answered before or after its first commit?
fn first_read_waits(e: &Engine) -> Option<usize> {
    let (answered, committed) = crate::lease_story::answered_vs_first_commit(e)?;
    Some(match committed {
        Some(c) if answered >= c => 1,
        _ => 0,
    })
}

/// What the cut-off old leader answers to the story's read: the old value, or a refusal (or,
/// after a retry elsewhere, the new value).
fn stale_read_answer(e: &Engine) -> Option<usize> {
    Some(match crate::lease_story::read_outcome(e)? {
        Ok(Some(v)) if v == b"old" => 0,
        _ => 1,
    })
}

/// Configurations applied by the leader of the moment, in trace order, with their time.
fn leader_configurations(e: &Engine) -> Vec<(u64, keyval_core::membership::Membership)> {
    node_events(e.trace())
        .filter_map(|(time, n, ev)| match ev {
            NodeEvent::MembershipChanged { membership, .. } if membership.voters.contains(&n) => {
                Some((time, membership.clone()))
            }
            _ => None,
        })
        .collect()
}

/// Replacing a voter: did the cluster pass through a joint configuration (both majorities)
/// before the new one, or switch in one step?
fn replacement_path(e: &Engine) -> Option<usize> {
    let configs = leader_configurations(e);
    let replaced = configs.iter().position(|(_, m)| {
        !m.is_joint() && !m.removed.is_empty() && m.voters.iter().any(|&v| v > e.cfg.nodes as u64)
    })?;
    Some(if configs[..replaced].iter().any(|(_, m)| m.is_joint()) {
        1
    } else {
        0
    })
}

/// A removed node keeps running: within two seconds of its removal, did any election change
/// the leader or its term?
fn removed_node_effect(e: &Engine) -> Option<usize> {
    let t = e.trace();
    let (&gone, &at) = e.removed_at.iter().next()?;
    let removed_time = t.get(at)?.time;
    let disrupted = node_events(&t[at..]).any(|(_, n, ev)| {
        n != gone
            && matches!(
                ev,
                NodeEvent::RoleChanged {
                    to: Role::Candidate | Role::Leader,
                    ..
                } | NodeEvent::RoleChanged {
                    from: Role::Leader,
                    ..
                }
            )
    });
    if disrupted {
        return Some(0);
    }
    (e.now() > removed_time + 2_000_000).then_some(1)
}

pub const CHAPTERS: &[Chapter] = &[
    Chapter {
        id: "election",
        title: "1. Electing a leader",
        explain: "Every node starts as a follower with a randomized election timer (the ring around it). The first whose timer runs out asks the others for pre-votes, then for votes; a majority makes it leader of a new term.",
        scenario: "first-election",
        question: "Which node becomes the first leader?",
        choices: &["n1", "n2", "n3", "n4", "n5"],
        verdict: first_leader,
        why: "The node whose randomized timeout fired first asked first, and every other node, hearing no leader, granted it its vote.",
    },
    Chapter {
        id: "split-vote",
        title: "2. Split vote",
        explain: "On a slow network two nodes can time out before either's vote request arrives. Each votes for itself, and the others split between them.",
        scenario: "split-vote",
        question: "Does the first election produce a leader?",
        choices: &["Yes: one of them wins", "No: the vote splits, and a later term elects a leader"],
        verdict: split_then_leader,
        why: "Nobody had a majority in the split term. Each candidate drew a new random timeout; the one that fired first won the next term alone (§5.2).",
    },
    Chapter {
        id: "commit",
        title: "3. Replication and commit",
        explain: "A client's put is appended to the leader's log and copied to followers. An entry is committed once a majority stores it, and only then applied and answered.",
        scenario: "commit-two-down",
        question: "Two of the five nodes crash, then the client sends a put. Will it commit?",
        choices: &["Yes: three of five is a majority", "No: every node must store it"],
        verdict: manual_put_outcome,
        why: "The leader and two followers are three of five: a majority. The put commits and the client gets its answer; the crashed nodes will catch up when they return (§5.3).",
    },
    Chapter {
        id: "partition",
        title: "4. Partitions and check-quorum",
        explain: "At 1 s the leader and one follower are cut off from the other three. The majority side will elect its own leader.",
        scenario: "minority-partition",
        question: "What happens to the cut-off leader?",
        choices: &["It keeps leading its side", "It steps down: it cannot hear a majority"],
        verdict: isolated_leader_fate,
        why: "With check-quorum a leader that has not heard from a majority for an election timeout steps down, so clients stop waiting on a leader that cannot commit (thesis §6.2).",
    },
    Chapter {
        id: "figure-8",
        title: "5. Figure 8: stored on a majority is not committed",
        explain: "Leader A appends X (put x=old) in its term and copies it to one follower, then crashes. B wins the next term and crashes too. A2, which holds X, leads a third term and copies X to two more nodes: X, from an old term, is now stored on three of five. Watch the log table.",
        scenario: "figure-8",
        question: "X is on a majority. Is it committed?",
        choices: &["Yes: a majority stores it, so it is safe", "No: a later leader can still overwrite it"],
        verdict: old_entry_fate,
        why: "B restarts; its last entry is from a newer term than X, so C and D vote for it, and it overwrites X. A leader counts replicas only for entries of its own term (§5.4.2); try the \"break Raft\" menu to count old ones and watch the checker catch it.",
    },
    Chapter {
        id: "crash-recovery",
        title: "6. Crash and recovery",
        explain: "The leader crashes at 1 s; a follower times out and wins a new term. At 3 s the old leader restarts from its disk: term, vote and log, but nothing in memory.",
        scenario: "leader-crash",
        question: "When the old leader restarts, what does it become?",
        choices: &["Leader again", "A follower of the new leader"],
        verdict: restarted_leader_role,
        why: "Every node restarts as a follower. The first message from the new leader carries a higher term, and the old leader follows it and is caught up (§5.1, §5.3).",
    },
    Chapter {
        id: "stale-leader",
        title: "7. A stale leader",
        explain: "At 1 s the leader is paused (think of a long garbage-collection pause). The others elect a new leader in a higher term. At 3 s the old one wakes up, still believing it leads.",
        scenario: "stale-leader",
        question: "What does the old leader do when it wakes?",
        choices: &["It goes on leading", "It steps down when it hears the higher term"],
        verdict: stale_leader_fate,
        why: "Terms act as a logical clock: the first reply carrying the newer term makes it step down, and nothing it appended in its old term could commit without a majority (§5.1).",
    },
    Chapter {
        id: "snapshot",
        title: "8. Log compaction and InstallSnapshot",
        explain: "Nodes snapshot their key-value store every 4 applied entries and discard the log before it. A follower crashes and misses eight puts.",
        scenario: "snapshot-catch-up",
        question: "How does the returning follower catch up?",
        choices: &["The leader sends it the missing log entries", "The leader sends its snapshot (InstallSnapshot)"],
        verdict: catch_up_by,
        why: "The entries it lacks were compacted away on the leader, so the leader sends its snapshot instead, then the log after it (§7).",
    },
    Chapter {
        id: "read-index",
        title: "9. Reads without the log: ReadIndex",
        explain: "A get need not be a log entry. The leader records its commit index as the read index, confirms with one heartbeat round that a majority still follows it (heartbeats tagged R and the round number; reads that arrive meanwhile share the next round), waits until it has applied that index, and answers. Here a read reaches a leader the instant it is elected. Watch the read queue under the leader.",
        scenario: "read-before-first-commit",
        question: "The new leader has not committed anything in its term yet. When does it answer the read?",
        choices: &["At once, from its state", "Only after an entry of its own term commits and a heartbeat round confirms it"],
        verdict: first_read_waits,
        why: "Until its no-op commits, a new leader does not know the true commit index: the previous leader may have committed entries it has not marked yet. So the read waits for the term's first commit, then for one confirmation round (thesis §6.4, steps 1 and 2).",
    },
    Chapter {
        id: "lease",
        title: "10. Leases and clock drift",
        explain: "A lease read skips even the heartbeat round: followers refuse to vote for an election timeout after they last heard the leader, so for that long after its acknowledged heartbeats were sent, no other leader can exist. The leader counts that time on its own clock, minus a drift margin. Here the margin is 0, the leader's clock runs 20% slow and the followers' 20% fast (⏱ on the nodes); the leader is cut off just after renewing its lease (the bar under it), and the others elect a new leader that writes x=new.",
        scenario: "lease-stale-read",
        question: "The old leader then gets a lease read of x. What does it answer?",
        choices: &["x=old: its slow clock says the lease still holds", "Nothing stale: a lease is always safe"],
        verdict: stale_read_answer,
        why: "By the old leader's slow clock the lease had time left, but by real time the followers' fast timers had already run out and a new leader had committed x=new. It answered x=old, a stale read; open History to see the linearizability checker flag it. The margin exists exactly for this: it must exceed how far clocks can drift apart in one election timeout (thesis §6.4.1).",
    },
    Chapter {
        id: "read-index-vs-lease",
        title: "11. The same fault under ReadIndex",
        explain: "The same schedule, the same slow and fast clocks, the same cut-off leader. This time the read is linearizable: the leader must confirm with a heartbeat round (R) that a majority still follows it before answering.",
        scenario: "read-index-refuses",
        question: "Does the cut-off leader answer x=old?",
        choices: &["Yes, x=old", "No: no majority confirms its round, so it never answers from its state"],
        verdict: stale_read_answer,
        why: "Its heartbeat round never reaches a majority, so the read waits in its queue. The client times out and retries at another node, which reads x=new; later the round expires and the old leader fails the read with a retryable error. ReadIndex trusts no clock, only a majority's answer: the history stays linearizable.",
    },
    Chapter {
        id: "replace-voter",
        title: "12. Replacing a voter: joint consensus",
        explain: "A new node joins as a learner (dashed, with a bar showing how much of the leader's log it holds): it gets the log but does not vote, so it cannot slow commits while it catches up. Then one change makes it a voter and removes a follower. Switching straight from the old voters to the new could, for a moment, let each set elect its own leader. Watch the rings and the caption while the change is under way, and the Members tab.",
        scenario: "replace-voter",
        question: "While the replacement is under way, whose majority must the leader get to commit?",
        choices: &["The new voters' only: the change is logged", "A majority of the old voters AND one of the new, until the joint configuration is left"],
        verdict: replacement_path,
        why: "The change first puts the joint configuration (old voters && new voters) in force: every commit and election needs both majorities, so no moment exists at which two leaders could be elected. Once the leader has applied it, it proposes leaving it by itself (auto-leave), and the new voters alone decide. The two early attempts were refused: one change at a time, and no vote for a learner whose log lags the leader's by more than the promotion lag (thesis §4.2.1, §4.3).",
    },
    Chapter {
        id: "removed-node",
        title: "13. A removed node does not disrupt",
        explain: "A follower is removed while it keeps running. The leader applies the change as soon as it commits and stops sending to the removed node, so that node may never learn it is out: it still thinks it is a voter, and its election timer keeps firing.",
        scenario: "removed-node",
        question: "Does the removed node's campaigning depose the leader?",
        choices: &["Yes: its higher terms force a new election", "No: the leader and its term stand"],
        verdict: removed_node_effect,
        why: "It first asks for pre-votes, which bump no term; the members hear from their leader and refuse. Even a real vote request would be ignored while the members hear from a leader (check-quorum's lease). So the removed node wastes only its own time (thesis §4.2.3); an operator shuts it down.",
    },
];

pub fn chapter_index(id: &str) -> Option<usize> {
    CHAPTERS.iter().position(|c| c.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every chapter's situation reaches a verdict within 8 s of virtual time, the way the
    /// page plays it.
    #[test]
    fn every_chapter_reaches_its_outcome() {
        for c in CHAPTERS {
            let sc = &SCENARIOS[c.scenario_index().expect("chapter scenario exists")];
            let mut e = sc.engine();
            let mut verdict = None;
            while e.now() < 8_000_000 && verdict.is_none() {
                e.run_until_time(e.now() + 50_000, u64::MAX);
                verdict = (c.verdict)(&e);
            }
            let v = verdict.unwrap_or_else(|| panic!("chapter {} reached no verdict", c.id));
            assert!(v < c.choices.len(), "chapter {}", c.id);
            println!("{}: {}", c.id, c.choices[v]);
        }
    }

    /// The answers the course explains are the ones the core gives.
    #[test]
    fn chapters_teach_what_the_core_does() {
        let expect = [
            ("split-vote", 1),
            ("commit", 0),
            ("partition", 1),
            ("figure-8", 1),
            ("crash-recovery", 1),
            ("stale-leader", 1),
            ("snapshot", 1),
            ("read-index", 1),
            ("lease", 0),
            ("read-index-vs-lease", 1),
            ("replace-voter", 1),
            ("removed-node", 1),
        ];
        for (id, want) in expect {
            let c = &CHAPTERS[chapter_index(id).expect("chapter")];
            let mut e = SCENARIOS[c.scenario_index().expect("scenario")].engine();
            let mut verdict = None;
            while e.now() < 8_000_000 && verdict.is_none() {
                e.run_until_time(e.now() + 50_000, u64::MAX);
                verdict = (c.verdict)(&e);
            }
            assert_eq!(verdict, Some(want), "chapter {id}");
        }
    }
}
