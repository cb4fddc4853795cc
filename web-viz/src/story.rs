//! The narration as a story that reads top-down: one line per cause, oldest first.
//!
//! A put or an election makes every node echo the same thing (persists, applies, advances its
//! commit index, grants a vote). Narrated one by one, those echoes push the event the learner
//! caused out of view. Here an echo joins the recent line it repeats ("Each of n2, n3 and n5
//! applies entry 3 …"), so each cause takes one line whatever the cluster size.

use keyval_core::NodeId;

use crate::engine::Engine;
use crate::narrate::{narrate_in, Narration, Seen};

/// How many recent lines an echo may join: far enough to reach past the interleaved echoes of
/// other kinds (persist, commit, apply of the same entry), near enough not to merge two causes.
const GROUP_WINDOW: usize = 12;
/// Trace events scanned per line shown, at most: a bound on the work of one render.
const SCAN_PER_LINE: usize = 8;

#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub time: u64,
    /// Nodes the line is about, in the order they did it; empty for cluster-wide events.
    pub nodes: Vec<NodeId>,
    /// The sentence after the node ("applies entry 3 …"), or the whole sentence.
    pub rest: String,
    pub rule: &'static str,
    pub class: &'static str,
    /// Produced by the most recent step: highlighted, and shown even when filtered out.
    pub latest: bool,
}

impl Line {
    pub fn sentence(&self) -> String {
        match self.nodes.as_slice() {
            [] => self.rest.clone(),
            [one] => format!("n{one} {}", self.rest),
            [init @ .., last] => {
                let init: Vec<String> = init.iter().map(|n| format!("n{n}")).collect();
                format!("Each of {} and n{last} {}", init.join(", "), self.rest)
            }
        }
    }
}

/// What the learner chose to see.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Filters {
    pub heartbeats: bool,
    pub deliveries: bool,
}

/// The last `max_lines` lines of the story so far, oldest first.
pub fn story(e: &Engine, filters: Filters, max_lines: usize) -> Vec<Line> {
    let trace = e.trace();
    let (b0, b1) = e.last_batch;
    let dense = filters.heartbeats || filters.deliveries;
    let budget = max_lines * SCAN_PER_LINE;
    // Newest first: the notable events (cheap to walk), or every event when the dense kinds
    // are wanted; the last step's events always, so Step shows what it did.
    let mut picked: Vec<usize> = if dense {
        (trace.len().saturating_sub(budget * 4)..trace.len()).collect()
    } else {
        let from = e.notable.len().saturating_sub(budget);
        e.notable[from..].to_vec()
    };
    picked.extend(b0..b1.min(trace.len()));
    picked.sort_unstable();
    picked.dedup();

    let mut events: Vec<(usize, Narration)> = Vec::new();
    for &i in picked.iter().rev() {
        if events.len() >= budget {
            break;
        }
        let latest = (b0..b1).contains(&i);
        let seen = Seen {
            heartbeats: filters.heartbeats || latest,
            deliveries: filters.deliveries || latest,
            by_leader: e.leader_commits.contains(&i),
            removed: e.was_removed(i),
        };
        if let Some(n) = narrate_in(&trace[i], seen) {
            events.push((i, n));
        }
    }
    events.reverse();

    let mut lines: Vec<Line> = Vec::new();
    for (i, nar) in events {
        let latest = (b0..b1).contains(&i);
        let (node, rest) = split_subject(&nar.text);
        if let Some(n) = node {
            let from = lines.len().saturating_sub(GROUP_WINDOW);
            if let Some(l) = lines[from..].iter_mut().rev().find(|l| {
                !l.nodes.is_empty()
                    && l.rest == rest
                    && l.class == nar.class
                    && !l.nodes.contains(&n)
            }) {
                l.nodes.push(n);
                l.latest |= latest;
                continue;
            }
        }
        lines.push(Line {
            time: trace[i].time,
            nodes: node.into_iter().collect(),
            rest,
            rule: nar.rule,
            class: nar.class,
            latest,
        });
    }
    let skip = lines.len().saturating_sub(max_lines);
    lines.split_off(skip)
}

/// "n3 applies …" → (3, "applies …").
fn split_subject(text: &str) -> (Option<NodeId>, String) {
    if let Some((first, rest)) = text.split_once(' ') {
        if let Some(id) = first.strip_prefix('n').and_then(|d| d.parse().ok()) {
            return (Some(id), rest.to_string());
        }
    }
    (None, text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyval_core::sim::SimConfig;
    use keyval_core::KvOp;

    use crate::engine::UserAction;

    const QUIET: Filters = Filters {
        heartbeats: false,
        deliveries: false,
    };

    fn elected(nodes: usize) -> Engine {
        let mut e = Engine::new(SimConfig::new(nodes, 1));
        e.run_until_time(1_000_000, u64::MAX);
        assert!(e.sim.leader().is_some());
        e
    }

    #[test]
    fn a_put_on_five_nodes_is_one_line_per_cause() {
        let mut e = elected(5);
        e.act(UserAction::Submit(KvOp::Put {
            key: b"x".to_vec(),
            value: b"1".to_vec(),
        }));
        e.run_until_time(e.now() + 300_000, u64::MAX);
        let lines = story(&e, QUIET, 40);
        let applies: Vec<&Line> = lines
            .iter()
            .filter(|l| l.rest.contains("applies entry") && l.rest.contains("put x=1"))
            .collect();
        assert_eq!(applies.len(), 1, "{lines:#?}");
        assert_eq!(applies[0].nodes.len(), 5, "every node applies the put");
        let invokes = lines
            .iter()
            .filter(|l| l.sentence().contains("sends request #"))
            .count();
        assert_eq!(
            invokes, 1,
            "the client request is narrated once: {lines:#?}"
        );
        // The story reads top-down.
        assert!(lines.windows(2).all(|w| w[0].time <= w[1].time));
    }

    #[test]
    fn a_step_in_a_quiet_cluster_always_shows_what_it_did() {
        let mut e = elected(3);
        e.run_until_time(e.now() + 2_000_000, u64::MAX);
        for _ in 0..20 {
            e.step_visible();
            let lines = story(&e, QUIET, 40);
            assert!(
                lines.iter().any(|l| l.latest),
                "the step's event is not in the story"
            );
        }
    }
}
