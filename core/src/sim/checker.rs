//! Safety checkers that watch every run of the simulator (Raft §5.2–5.4, Figure 3):
//! election safety, leader append-only, log matching, leader completeness, state machine safety,
//! and monotonic terms, commit and applied indexes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::log::RaftLog;
use crate::types::{Entry, Index, NodeId, Term};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub time: u64,
    pub property: String,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "t={} {}: {}",
            super::trace::fmt_time(self.time),
            self.property,
            self.detail
        )
    }
}

#[derive(Clone, Debug, Default)]
pub struct Checker {
    leaders: BTreeMap<Term, NodeId>,
    /// Every entry known committed, by index. Any later disagreement is a safety failure.
    committed: BTreeMap<Index, Entry>,
    /// The earliest term in which some node knew each committed index committed.
    committed_in: BTreeMap<Index, Term>,
    max_term: BTreeMap<NodeId, Term>,
    /// Last applied index per node in its current incarnation.
    applied: BTreeMap<NodeId, Index>,
    violations: Vec<Violation>,
}

/// Keeps a pathological run from collecting millions of copies of one failure.
const MAX_VIOLATIONS: usize = 100;

impl Checker {
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    pub fn committed(&self) -> &BTreeMap<Index, Entry> {
        &self.committed
    }

    pub fn leaders(&self) -> &BTreeMap<Term, NodeId> {
        &self.leaders
    }

    pub fn fail(&mut self, time: u64, property: &str, detail: String) {
        if self.violations.len() < MAX_VIOLATIONS {
            self.violations.push(Violation {
                time,
                property: property.to_string(),
                detail,
            });
        }
    }

    /// Election safety (at most one leader per term) and leader completeness (§5.4: a leader
    /// of term T holds every entry committed in a term before T). Entries committed in T or
    /// later are not its business: a candidate paused mid-election can legitimately win an
    /// old term after a newer leader has committed more.
    pub fn on_leader(&mut self, time: u64, node: NodeId, term: Term, log: &RaftLog) {
        if let Some(&other) = self.leaders.get(&term) {
            if other != node {
                self.fail(
                    time,
                    "election safety",
                    format!("n{other} and n{node} both leaders in term {term}"),
                );
            }
        }
        self.leaders.insert(term, node);
        let missing: Vec<Index> = self
            .committed
            .iter()
            .filter(|(i, e)| {
                self.committed_in.get(i).is_some_and(|&t| t < term)
                    && log.get(**i).map(|x| x.term) != Some(e.term)
            })
            .map(|(i, _)| *i)
            .take(5)
            .collect();
        if !missing.is_empty() {
            self.fail(
                time,
                "leader completeness",
                format!("n{node} leader of term {term} lacks committed entries {missing:?}"),
            );
        }
    }

    /// Durable term per node: what reached disk, and what a restart recovers, never decreases.
    /// (A term held only in memory may be lost by a crash; nobody can have seen it.)
    pub fn on_term(&mut self, time: u64, node: NodeId, term: Term) {
        let prev = self.max_term.entry(node).or_insert(0);
        if term < *prev {
            let p = *prev;
            self.fail(
                time,
                "monotonic term",
                format!("n{node} term went from {p} back to {term}"),
            );
        } else {
            *prev = term;
        }
    }

    /// Records entries a node declared committed and checks they agree with earlier commits.
    pub fn on_commit(
        &mut self,
        time: u64,
        node: NodeId,
        term: Term,
        (from, to): (Index, Index),
        log: &RaftLog,
    ) {
        if to < from {
            self.fail(
                time,
                "monotonic commit",
                format!("n{node} commit went from {from} back to {to}"),
            );
        }
        for i in from + 1..=to {
            let Some(e) = log.get(i) else {
                self.fail(
                    time,
                    "commit",
                    format!("n{node} committed index {i} it does not hold"),
                );
                continue;
            };
            self.record_committed(time, node, e, term, "state machine safety (commit)");
        }
    }

    fn record_committed(&mut self, time: u64, node: NodeId, e: &Entry, term: Term, property: &str) {
        let first_term = self.committed_in.entry(e.index).or_insert(term);
        *first_term = (*first_term).min(term);
        match self.committed.get(&e.index) {
            Some(known) if known != e => {
                let detail = format!(
                    "n{node} has {}@{} at committed index {} where {}@{} was committed",
                    e.index, e.term, e.index, known.index, known.term
                );
                self.fail(time, property, detail);
            }
            Some(_) => {}
            None => {
                self.committed.insert(e.index, e.clone());
            }
        }
    }

    /// State machine safety: no two nodes apply different entries at one index; each node
    /// applies in order without gaps.
    pub fn on_applied(&mut self, time: u64, node: NodeId, term: Term, entry: &Entry) {
        let last = self.applied.entry(node).or_insert(0);
        if entry.index != *last + 1 {
            let l = *last;
            self.fail(
                time,
                "monotonic applied",
                format!("n{node} applied {} after {l}", entry.index),
            );
        }
        *self.applied.entry(node).or_insert(0) = entry.index;
        self.record_committed(time, node, entry, term, "state machine safety");
    }

    pub fn on_restart(&mut self, node: NodeId) {
        self.applied.insert(node, 0);
    }

    /// Log matching (§5.3): if two logs hold an entry with the same index and term, they are
    /// identical up to that index. Checked pairwise from the highest common agreement down.
    pub fn check_log_matching(&mut self, time: u64, logs: &[(NodeId, &[Entry])]) {
        for (a, (na, la)) in logs.iter().enumerate() {
            for (nb, lb) in logs.iter().skip(a + 1) {
                let common = la.len().min(lb.len());
                let Some(top) = (0..common).rev().find(|&i| la[i].term == lb[i].term) else {
                    continue;
                };
                if let Some(i) = (0..=top).find(|&i| la[i] != lb[i]) {
                    let detail = format!(
                        "n{na} and n{nb} agree at {}@{} but differ at index {}",
                        la[top].index, la[top].term, la[i].index
                    );
                    self.fail(time, "log matching", detail);
                    return;
                }
            }
        }
    }
}
