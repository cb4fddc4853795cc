//! Linearizability checker for key-value client histories.
//!
//! The simulator records what every client *saw* (invoke time, return time,
//! result); this module decides whether some single sequential order of those
//! operations explains all of it while respecting real time. It is the
//! Wing & Gong search with Lowe's memoization, as in Porcupine's
//! `checkSingle`.
//!
//! Linearizability is compositional (P-compositionality), so each key is
//! checked on its own: the search is exponential in the number of concurrent
//! operations, and splitting by key keeps that number small.
//!
//! Everything here is deterministic (keys in sorted order, fixed hasher, no
//! dependence on hash iteration order) so a failing seed reproduces the same
//! verdict and explanation, and the module uses only `std` without threads,
//! clocks or I/O so it also runs on `wasm32-unknown-unknown`.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasherDefault;

/// One client operation as the client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put { key: Vec<u8>, value: Vec<u8> },
    Get { key: Vec<u8> },
    Delete { key: Vec<u8> },
}

impl Op {
    /// The key the operation touches; histories are partitioned by it.
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Put { key, .. } | Op::Get { key } | Op::Delete { key } => key,
        }
    }
}

/// What the client observed when the operation returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpResult {
    Put,
    Get(Option<Vec<u8>>),
    Delete { deleted: bool },
}

#[derive(Clone, Debug)]
pub struct Operation {
    pub client: u64,
    pub op: Op,
    /// Virtual time the client invoked the operation.
    pub invoke: u64,
    /// Time and result of the return; None = indeterminate (timed out / lost):
    /// it may or may not have taken effect, at any time after `invoke`.
    ///
    /// A result whose variant does not match `op` (e.g. a `Put` that returned
    /// `OpResult::Get`) can never be explained, so it makes the key fail. A
    /// return time earlier than `invoke` is treated as equal to `invoke`
    /// rather than rejected, because the recorder, not the system under test,
    /// would be at fault.
    pub complete: Option<(u64, OpResult)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// `key` is the first key (in sorted key order) whose sub-history has no
    /// linearization; `explanation` is a readable multi-line description: the
    /// operations of that key (client, op, invoke, complete, result) sorted by
    /// invoke time, and the longest linearizable prefix the search found.
    NotLinearizable {
        key: Vec<u8>,
        explanation: String,
    },
    /// The search budget ran out for `key` before a verdict: this is never a
    /// pass.
    Timeout {
        key: Vec<u8>,
        steps: u64,
    },
}

impl Verdict {
    /// Only a completed search that found a linearization counts as a pass;
    /// a timeout is not.
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

/// Size of the work done, for logging and for tuning `budget_steps`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckStats {
    /// Distinct keys in the history (including any not reached because an
    /// earlier key failed).
    pub keys: usize,
    /// Operations in the history.
    pub operations: usize,
    /// Search steps spent over all keys actually checked.
    pub steps: u64,
}

/// Checks `history` for linearizability against a register-per-key model
/// (initially absent; put sets, get reads, delete clears and reports whether
/// the key was present).
///
/// `budget_steps`: limit on search steps (state expansions) per key. The
/// search is exponential in the worst case, so the limit turns a pathological
/// history into an explicit [`Verdict::Timeout`] instead of a hang.
pub fn check(history: &[Operation], budget_steps: u64) -> (Verdict, CheckStats) {
    let mut by_key: BTreeMap<&[u8], Vec<&Operation>> = BTreeMap::new();
    for operation in history {
        by_key
            .entry(operation.op.key())
            .or_default()
            .push(operation);
    }
    let mut stats = CheckStats {
        keys: by_key.len(),
        operations: history.len(),
        steps: 0,
    };
    for (key, mut ops) in by_key {
        // Stable sort: operations invoked at the same time keep history order,
        // which keeps the explanation's numbering reproducible.
        ops.sort_by_key(|operation| operation.invoke);
        let sub = SubHistory::new(&ops);
        let (outcome, steps) = sub.search(budget_steps);
        stats.steps = stats.steps.saturating_add(steps);
        match outcome {
            Outcome::Linearizable => {}
            Outcome::OutOfBudget => {
                return (
                    Verdict::Timeout {
                        key: key.to_vec(),
                        steps,
                    },
                    stats,
                );
            }
            Outcome::Exhausted { longest } => {
                let explanation = sub.explain(key, &ops, &longest);
                return (
                    Verdict::NotLinearizable {
                        key: key.to_vec(),
                        explanation,
                    },
                    stats,
                );
            }
        }
    }
    (Verdict::Linearizable, stats)
}

/// Fixed-key SipHash: membership-only sets don't need DoS resistance, and a
/// fixed key keeps runs bit-for-bit reproducible on every target.
type FixedState = BuildHasherDefault<DefaultHasher>;

/// Model state as a small integer so cache entries are cheap to hash and
/// copy: `ABSENT`, or `n > 0` meaning the `n`-th distinct value of the key.
type StateId = usize;
const ABSENT: StateId = 0;

/// An operation reduced to what the model needs: how it changes the state and
/// which result it must have observed (`None` = anything, for indeterminate
/// operations).
#[derive(Clone, Copy, Debug)]
enum Transition {
    Put {
        value: StateId,
    },
    Get {
        observed: Option<StateId>,
    },
    Delete {
        deleted: Option<bool>,
    },
    /// The recorded result does not belong to this kind of operation.
    Mismatched,
}

impl Transition {
    /// The state after applying this operation to `state`, or `None` if the
    /// recorded result is impossible from `state`.
    fn apply(self, state: StateId) -> Option<StateId> {
        match self {
            Transition::Put { value } => Some(value),
            Transition::Get { observed } => match observed {
                Some(seen) if seen != state => None,
                _ => Some(state),
            },
            Transition::Delete { deleted } => match deleted {
                Some(was_present) if was_present != (state != ABSENT) => None,
                _ => Some(ABSENT),
            },
            Transition::Mismatched => None,
        }
    }
}

/// Maps each distinct value of one key to a `StateId`, in order of first
/// appearance so ids do not depend on hashing.
#[derive(Default)]
struct Interner<'a> {
    ids: HashMap<&'a [u8], StateId, FixedState>,
    values: Vec<&'a [u8]>,
}

impl<'a> Interner<'a> {
    fn intern(&mut self, value: &'a [u8]) -> StateId {
        if let Some(&id) = self.ids.get(value) {
            return id;
        }
        self.values.push(value);
        let id = self.values.len();
        self.ids.insert(value, id);
        id
    }

    fn describe(&self, state: StateId) -> String {
        match state.checked_sub(1).and_then(|i| self.values.get(i)) {
            Some(value) => fmt_bytes(value),
            None => "absent".to_string(),
        }
    }
}

/// An operation that takes part in the search.
struct SearchOp {
    /// Index into the key's invoke-sorted operations (used for reporting).
    index: usize,
    transition: Transition,
    invoke: u64,
    /// `None` for indeterminate operations: they never force a backtrack and
    /// need not be linearized at all.
    ret: Option<u64>,
}

/// The sub-history of one key, prepared for the search.
struct SubHistory<'a> {
    interner: Interner<'a>,
    /// One per operation of the key, same order as the invoke-sorted list.
    transitions: Vec<Transition>,
    ops: Vec<SearchOp>,
}

enum Outcome {
    Linearizable,
    /// No linearization exists; `longest` is the longest prefix found, as
    /// indices into the key's invoke-sorted operations.
    Exhausted {
        longest: Vec<usize>,
    },
    OutOfBudget,
}

impl<'a> SubHistory<'a> {
    fn new(ops: &[&'a Operation]) -> Self {
        let mut interner = Interner::default();
        let mut transitions = Vec::with_capacity(ops.len());
        let mut search_ops = Vec::with_capacity(ops.len());
        for (index, operation) in ops.iter().enumerate() {
            let result = operation.complete.as_ref().map(|(_, result)| result);
            let transition = match (&operation.op, result) {
                (Op::Put { value, .. }, None | Some(OpResult::Put)) => Transition::Put {
                    value: interner.intern(value),
                },
                (Op::Get { .. }, None) => Transition::Get { observed: None },
                (Op::Get { .. }, Some(OpResult::Get(seen))) => Transition::Get {
                    observed: Some(
                        seen.as_deref()
                            .map_or(ABSENT, |value| interner.intern(value)),
                    ),
                },
                (Op::Delete { .. }, None) => Transition::Delete { deleted: None },
                (Op::Delete { .. }, Some(OpResult::Delete { deleted })) => Transition::Delete {
                    deleted: Some(*deleted),
                },
                _ => Transition::Mismatched,
            };
            transitions.push(transition);
            // An indeterminate get neither changes the state nor constrains
            // it, so placing it anywhere is always possible; leaving it out
            // avoids doubling the search space for nothing.
            if matches!(transition, Transition::Get { observed: None }) {
                continue;
            }
            search_ops.push(SearchOp {
                index,
                transition,
                invoke: operation.invoke,
                ret: operation
                    .complete
                    .as_ref()
                    .map(|(time, _)| (*time).max(operation.invoke)),
            });
        }
        SubHistory {
            interner,
            transitions,
            ops: search_ops,
        }
    }

    /// WGL search. Walks the call/return event list: at a call, tries to
    /// linearize that operation next (unless the resulting (set, state) pair
    /// was already explored); at a return of an operation not yet linearized,
    /// the current prefix is a dead end and the last choice is undone.
    fn search(&self, budget: u64) -> (Outcome, u64) {
        let ops = &self.ops;
        let mut list = EventList::new(ops);
        let mut linearized = vec![0u64; ops.len().div_ceil(64)];
        let mut cache: HashSet<(Vec<u64>, StateId), FixedState> = HashSet::default();
        // (operation, state before it) for each linearized operation.
        let mut stack: Vec<(usize, StateId)> = Vec::new();
        let mut longest: Vec<usize> = Vec::new();
        let mut state = ABSENT;
        // Success is "every completed operation placed": indeterminate ones
        // may be left out (they never took effect, or did so after the end).
        let mut remaining = ops.iter().filter(|op| op.ret.is_some()).count();
        let mut steps = 0u64;
        let mut entry = list.next(HEAD);
        while remaining > 0 {
            if steps >= budget {
                return (Outcome::OutOfBudget, steps);
            }
            steps += 1;
            let node = list.node(entry);
            if node.is_call {
                let op = node.op;
                let next = ops[op].transition.apply(state);
                let Some(next_state) = next else {
                    entry = node.next;
                    continue;
                };
                set_bit(&mut linearized, op);
                // Move the bitset into the probe to avoid cloning it for the
                // (common) cache-hit case.
                let probe = (std::mem::take(&mut linearized), next_state);
                if cache.contains(&probe) {
                    linearized = probe.0;
                    clear_bit(&mut linearized, op);
                    entry = node.next;
                    continue;
                }
                linearized = probe.0.clone();
                cache.insert(probe);
                stack.push((op, state));
                state = next_state;
                if ops[op].ret.is_some() {
                    remaining -= 1;
                }
                list.lift(op);
                if stack.len() > longest.len() {
                    longest = stack.iter().map(|&(op, _)| ops[op].index).collect();
                }
                entry = list.next(HEAD);
            } else {
                // A return (or the tail sentinel, which cannot be reached
                // while `remaining > 0` but is handled the same way).
                let Some((op, before)) = stack.pop() else {
                    return (Outcome::Exhausted { longest }, steps);
                };
                state = before;
                clear_bit(&mut linearized, op);
                if ops[op].ret.is_some() {
                    remaining += 1;
                }
                list.unlift(op);
                entry = list.next(list.call[op]);
            }
        }
        (Outcome::Linearizable, steps)
    }

    fn explain(&self, key: &[u8], ops: &[&Operation], longest: &[usize]) -> String {
        let mut lines = Vec::new();
        lines.push(format!(
            "key {}: no linearization exists for its {} operations",
            fmt_bytes(key),
            ops.len()
        ));
        lines.push("operations by invoke time:".to_string());
        for (index, operation) in ops.iter().enumerate() {
            lines.push(format!("  #{index} {}", describe_operation(operation)));
        }
        lines.push(format!(
            "longest linearizable prefix found ({} operations):",
            longest.len()
        ));
        if longest.is_empty() {
            lines.push("  (none: no operation can be linearized first)".to_string());
        }
        let mut state = ABSENT;
        let mut placed = vec![false; ops.len()];
        for &index in longest {
            if let (Some(transition), Some(flag)) =
                (self.transitions.get(index), placed.get_mut(index))
            {
                // The search only recorded successful steps, so this always
                // applies; keeping the old state is just a safe fallback.
                state = transition.apply(state).unwrap_or(state);
                *flag = true;
            }
            let op = ops.get(index).map_or_else(String::new, |operation| {
                describe_op(&operation.op, operation.client)
            });
            lines.push(format!(
                "  #{index} {op}  => {}",
                self.interner.describe(state)
            ));
        }
        let stuck: Vec<String> = ops
            .iter()
            .enumerate()
            .filter(|&(index, operation)| operation.complete.is_some() && !placed[index])
            .map(|(index, _)| format!("#{index}"))
            .collect();
        lines.push(format!(
            "completed operations not in that prefix: {}",
            stuck.join(", ")
        ));
        lines.join("\n")
    }
}

const HEAD: usize = 0;
const TAIL: usize = 1;

#[derive(Clone, Copy)]
struct Node {
    prev: usize,
    next: usize,
    op: usize,
    is_call: bool,
}

/// Index-based doubly linked list of call/return events ("dancing links"):
/// linearizing an operation unlinks its events, and backtracking relinks them
/// in reverse order, both in O(1).
struct EventList {
    nodes: Vec<Node>,
    call: Vec<usize>,
    ret: Vec<Option<usize>>,
}

impl EventList {
    fn new(ops: &[SearchOp]) -> Self {
        // Sort key (time, kind, op) with calls (0) before returns (1) at equal
        // times: an operation returning at t and one invoked at t are then
        // concurrent, so A precedes B exactly when A.return < B.invoke.
        let mut events: Vec<(u64, u8, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            events.push((op.invoke, 0, i));
            if let Some(ret) = op.ret {
                events.push((ret, 1, i));
            }
        }
        events.sort_unstable();
        let sentinel = Node {
            prev: HEAD,
            next: TAIL,
            op: usize::MAX,
            is_call: false,
        };
        let mut list = EventList {
            nodes: vec![sentinel, sentinel],
            call: vec![HEAD; ops.len()],
            ret: vec![None; ops.len()],
        };
        for (_, kind, op) in events {
            let id = list.nodes.len();
            let prev = list.nodes[TAIL].prev;
            list.nodes.push(Node {
                prev,
                next: TAIL,
                op,
                is_call: kind == 0,
            });
            list.nodes[prev].next = id;
            list.nodes[TAIL].prev = id;
            if kind == 0 {
                list.call[op] = id;
            } else {
                list.ret[op] = Some(id);
            }
        }
        list
    }

    fn node(&self, id: usize) -> Node {
        self.nodes[id]
    }

    fn next(&self, id: usize) -> usize {
        self.nodes[id].next
    }

    fn unlink(&mut self, id: usize) {
        let Node { prev, next, .. } = self.nodes[id];
        self.nodes[prev].next = next;
        self.nodes[next].prev = prev;
    }

    fn relink(&mut self, id: usize) {
        let Node { prev, next, .. } = self.nodes[id];
        self.nodes[prev].next = id;
        self.nodes[next].prev = id;
    }

    fn lift(&mut self, op: usize) {
        self.unlink(self.call[op]);
        if let Some(ret) = self.ret[op] {
            self.unlink(ret);
        }
    }

    fn unlift(&mut self, op: usize) {
        if let Some(ret) = self.ret[op] {
            self.relink(ret);
        }
        self.relink(self.call[op]);
    }
}

fn set_bit(bits: &mut [u64], i: usize) {
    bits[i / 64] |= 1 << (i % 64);
}

fn clear_bit(bits: &mut [u64], i: usize) {
    bits[i / 64] &= !(1 << (i % 64));
}

fn fmt_bytes(bytes: &[u8]) -> String {
    format!("\"{}\"", bytes.escape_ascii())
}

fn describe_op(op: &Op, client: u64) -> String {
    match op {
        Op::Put { value, .. } => format!("client {client} put {}", fmt_bytes(value)),
        Op::Get { .. } => format!("client {client} get"),
        Op::Delete { .. } => format!("client {client} delete"),
    }
}

fn describe_operation(operation: &Operation) -> String {
    let op = describe_op(&operation.op, operation.client);
    let Some((time, result)) = &operation.complete else {
        return format!(
            "{op}  invoke {} complete ? -> indeterminate",
            operation.invoke
        );
    };
    let result_text = match result {
        OpResult::Put => "ok".to_string(),
        OpResult::Get(Some(value)) => fmt_bytes(value),
        OpResult::Get(None) => "absent".to_string(),
        OpResult::Delete { deleted } => format!("deleted={deleted}"),
    };
    let kinds_match = matches!(
        (&operation.op, result),
        (Op::Put { .. }, OpResult::Put)
            | (Op::Get { .. }, OpResult::Get(_))
            | (Op::Delete { .. }, OpResult::Delete { .. })
    );
    let note = if kinds_match {
        ""
    } else {
        " (result does not match the operation kind)"
    };
    format!(
        "{op}  invoke {} complete {time} -> {result_text}{note}",
        operation.invoke
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: u64 = 1_000_000;

    fn put(client: u64, key: &str, value: &str, invoke: u64, complete: u64) -> Operation {
        Operation {
            client,
            op: Op::Put {
                key: key.into(),
                value: value.into(),
            },
            invoke,
            complete: Some((complete, OpResult::Put)),
        }
    }

    fn put_lost(client: u64, key: &str, value: &str, invoke: u64) -> Operation {
        Operation {
            client,
            op: Op::Put {
                key: key.into(),
                value: value.into(),
            },
            invoke,
            complete: None,
        }
    }

    fn get(client: u64, key: &str, invoke: u64, complete: u64, seen: Option<&str>) -> Operation {
        Operation {
            client,
            op: Op::Get { key: key.into() },
            invoke,
            complete: Some((complete, OpResult::Get(seen.map(Into::into)))),
        }
    }

    fn del(client: u64, key: &str, invoke: u64, complete: u64, deleted: bool) -> Operation {
        Operation {
            client,
            op: Op::Delete { key: key.into() },
            invoke,
            complete: Some((complete, OpResult::Delete { deleted })),
        }
    }

    fn verdict(history: &[Operation]) -> Verdict {
        check(history, BUDGET).0
    }

    fn assert_fails_on(history: &[Operation], expected_key: &str) -> String {
        match verdict(history) {
            Verdict::NotLinearizable { key, explanation } => {
                assert_eq!(key, expected_key.as_bytes());
                explanation
            }
            other => panic!("expected NotLinearizable on {expected_key:?}, got {other:?}"),
        }
    }

    #[test]
    fn empty_history_is_linearizable() {
        let (v, stats) = check(&[], 0);
        assert_eq!(v, Verdict::Linearizable);
        assert_eq!(stats, CheckStats::default());
    }

    #[test]
    fn sequential_put_get() {
        let h = [
            get(1, "k", 0, 1, None),
            put(1, "k", "a", 2, 3),
            get(2, "k", 4, 5, Some("a")),
            put(2, "k", "b", 6, 7),
            get(1, "k", 8, 9, Some("b")),
        ];
        let (v, stats) = check(&h, BUDGET);
        assert_eq!(v, Verdict::Linearizable);
        assert_eq!(stats.keys, 1);
        assert_eq!(stats.operations, 5);
        assert!(stats.steps >= 5);
    }

    #[test]
    fn read_of_value_never_written_fails() {
        let h = [put(1, "k", "a", 0, 1), get(2, "k", 2, 3, Some("zzz"))];
        let explanation = assert_fails_on(&h, "k");
        assert!(explanation.contains("\"zzz\""), "{explanation}");
    }

    #[test]
    fn stale_read_after_completed_overwrite_fails() {
        let h = [
            put(1, "k", "a", 0, 1),
            put(1, "k", "b", 2, 3),
            get(2, "k", 4, 5, Some("a")),
        ];
        assert_fails_on(&h, "k");
    }

    #[test]
    fn concurrent_get_may_see_old_or_new() {
        for seen in [None, Some("a")] {
            let h = [put(1, "k", "a", 0, 10), get(2, "k", 5, 6, seen)];
            assert_eq!(verdict(&h), Verdict::Linearizable, "seen {seen:?}");
        }
        // Overlapping puts: a later read may see either, but all later reads
        // must agree once both completed.
        let h = [
            put(1, "k", "a", 0, 10),
            put(2, "k", "b", 1, 9),
            get(3, "k", 11, 12, Some("a")),
            get(3, "k", 13, 14, Some("a")),
        ];
        assert_eq!(verdict(&h), Verdict::Linearizable);
        let h = [
            put(1, "k", "a", 0, 10),
            put(2, "k", "b", 1, 9),
            get(3, "k", 11, 12, Some("a")),
            get(3, "k", 13, 14, Some("b")),
        ];
        assert_fails_on(&h, "k");
    }

    #[test]
    fn return_and_invoke_at_same_time_are_concurrent() {
        let h = [put(1, "k", "a", 0, 5), get(2, "k", 5, 6, None)];
        assert_eq!(verdict(&h), Verdict::Linearizable);
        let h = [put(1, "k", "a", 0, 5), get(2, "k", 6, 7, None)];
        assert_fails_on(&h, "k");
    }

    #[test]
    fn delete_semantics() {
        assert_fails_on(&[del(1, "k", 0, 1, true)], "k");
        let h = [
            del(1, "k", 0, 1, false),
            put(1, "k", "a", 2, 3),
            del(2, "k", 4, 5, true),
            get(1, "k", 6, 7, None),
            del(2, "k", 8, 9, false),
        ];
        assert_eq!(verdict(&h), Verdict::Linearizable);
        // Two concurrent deletes of a present key: only one can win.
        let h = [
            put(1, "k", "a", 0, 1),
            del(1, "k", 2, 10, true),
            del(2, "k", 3, 9, true),
        ];
        assert_fails_on(&h, "k");
        let h = [
            put(1, "k", "a", 0, 1),
            del(1, "k", 2, 10, true),
            del(2, "k", 3, 9, false),
        ];
        assert_eq!(verdict(&h), Verdict::Linearizable);
    }

    #[test]
    fn indeterminate_put_later_observed() {
        let h = [
            put_lost(1, "k", "a", 0),
            get(2, "k", 10, 11, None),
            get(2, "k", 20, 21, Some("a")),
        ];
        // It may take effect at any time after invoke, even much later.
        assert_eq!(verdict(&h), Verdict::Linearizable);
    }

    #[test]
    fn indeterminate_put_never_observed() {
        let h = [
            put(1, "k", "a", 0, 1),
            put_lost(1, "k", "b", 2),
            get(2, "k", 10, 11, Some("a")),
            get(2, "k", 20, 21, Some("a")),
        ];
        assert_eq!(verdict(&h), Verdict::Linearizable);
    }

    #[test]
    fn indeterminate_put_cannot_act_before_invoke() {
        let h = [get(2, "k", 0, 1, Some("a")), put_lost(1, "k", "a", 5)];
        assert_fails_on(&h, "k");
    }

    #[test]
    fn observed_indeterminate_put_cannot_vanish() {
        let h = [
            put_lost(1, "k", "a", 0),
            get(2, "k", 10, 11, Some("a")),
            get(2, "k", 20, 21, None),
        ];
        assert_fails_on(&h, "k");
    }

    #[test]
    fn indeterminate_get_and_delete_accept_anything() {
        let h = [
            put(1, "k", "a", 0, 1),
            Operation {
                client: 2,
                op: Op::Get { key: "k".into() },
                invoke: 2,
                complete: None,
            },
            Operation {
                client: 3,
                op: Op::Delete { key: "k".into() },
                invoke: 3,
                complete: None,
            },
            get(1, "k", 10, 11, None),
            get(1, "k", 12, 13, None),
        ];
        assert_eq!(verdict(&h), Verdict::Linearizable);
    }

    #[test]
    fn mismatched_result_kind_fails() {
        let h = [Operation {
            client: 1,
            op: Op::Put {
                key: "k".into(),
                value: "a".into(),
            },
            invoke: 0,
            complete: Some((1, OpResult::Get(None))),
        }];
        let explanation = assert_fails_on(&h, "k");
        assert!(explanation.contains("does not match"), "{explanation}");
    }

    #[test]
    fn complete_before_invoke_is_clamped_not_a_panic() {
        let h = [put(1, "k", "a", 10, 3), get(2, "k", 11, 12, Some("a"))];
        assert_eq!(verdict(&h), Verdict::Linearizable);
    }

    #[test]
    fn keys_are_independent_and_first_failing_key_is_reported() {
        // Interleaved in time across keys: per key each is fine except "b".
        let h = [
            put(1, "c", "x", 0, 1),
            put(2, "a", "x", 0, 1),
            put(3, "b", "x", 0, 1),
            get(1, "a", 2, 3, Some("x")),
            get(2, "b", 2, 3, Some("stale")),
            get(3, "c", 2, 3, Some("x")),
        ];
        let (v, stats) = check(&h, BUDGET);
        assert!(matches!(&v, Verdict::NotLinearizable { key, .. } if key == b"b"));
        assert_eq!(stats.keys, 3);
        // A value on another key does not help: "a" reading "y" written only
        // to "b" fails, and "a" sorts before "b" so it is reported first.
        let mut h2 = h.to_vec();
        h2.push(put(1, "b", "y", 4, 5));
        h2.push(get(1, "a", 6, 7, Some("y")));
        assert_fails_on(&h2, "a");
    }

    #[test]
    fn explanation_lists_ops_by_invoke_and_the_prefix() {
        let h = [
            get(2, "k", 4, 5, Some("a")),
            put(1, "k", "b", 2, 3),
            put(1, "k", "a", 0, 1),
        ];
        let explanation = assert_fails_on(&h, "k");
        let lines: Vec<&str> = explanation.lines().collect();
        assert!(lines[0].contains("\"k\""), "{explanation}");
        assert!(
            lines[2].starts_with("  #0 client 1 put \"a\"  invoke 0 complete 1 -> ok"),
            "{explanation}"
        );
        assert!(lines[3].contains("put \"b\"  invoke 2"), "{explanation}");
        assert!(
            lines[4].contains("get  invoke 4 complete 5 -> \"a\""),
            "{explanation}"
        );
        assert_eq!(
            lines[5], "longest linearizable prefix found (2 operations):",
            "{explanation}"
        );
        assert!(lines[6].ends_with("=> \"a\""), "{explanation}");
        assert!(lines[7].ends_with("=> \"b\""), "{explanation}");
        assert_eq!(lines[8], "completed operations not in that prefix: #2");
        // Deterministic.
        assert_eq!(assert_fails_on(&h, "k"), explanation);
    }

    /// Many mutually concurrent puts of distinct values followed by a read of
    /// a value nobody wrote: refuting it needs to visit ~2^n (set, state)
    /// pairs.
    fn hard_history(n: u64) -> Vec<Operation> {
        let mut h: Vec<Operation> = (0..n)
            .map(|i| put(i, "k", &format!("v{i}"), i, 1000 + i))
            .collect();
        h.push(get(n, "k", 2000, 2001, Some("never")));
        h
    }

    #[test]
    fn tiny_budget_times_out_and_is_never_a_pass() {
        let (v, stats) = check(&hard_history(18), 10_000);
        assert_eq!(
            v,
            Verdict::Timeout {
                key: b"k".to_vec(),
                steps: 10_000
            }
        );
        assert!(!v.is_linearizable());
        assert_eq!(stats.steps, 10_000);
        // Even a linearizable history times out when it needs more steps than
        // allowed: one step can place at most one operation.
        let h = generate(7, 200, 3, 5);
        let (v, _) = check(&h, 10);
        assert!(matches!(v, Verdict::Timeout { .. }), "{v:?}");
        let (v, _) = check(&[put(1, "k", "a", 0, 1)], 0);
        assert!(matches!(v, Verdict::Timeout { steps: 0, .. }), "{v:?}");
    }

    /// Without the (set, state) cache this needs on the order of 12! steps;
    /// with it, about 2^12 states, so it fits the budget.
    #[test]
    fn memoization_keeps_concurrent_refutation_tractable() {
        let (v, stats) = check(&hard_history(12), BUDGET);
        assert!(matches!(v, Verdict::NotLinearizable { .. }), "{v:?}");
        assert!(stats.steps < BUDGET);
    }

    /// xorshift64: tiny, dependency-free, reproducible.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A history produced by a real sequential execution: every client runs
    /// its operations one after another, each takes effect at a random point
    /// inside its own [invoke, complete] window, and results come from
    /// executing those points in order. Some operations lose their reply
    /// (indeterminate); of those, half took effect and half did not.
    fn generate(seed: u64, n_ops: usize, n_keys: u64, n_clients: u64) -> Vec<Operation> {
        struct Planned {
            operation: Operation,
            lin: u64,
            complete: u64,
            lost: bool,
            applied: bool,
        }
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut clocks: Vec<u64> = (0..n_clients).map(|_| rng.below(10)).collect();
        let mut planned = Vec::with_capacity(n_ops);
        for i in 0..n_ops {
            let client = i as u64 % n_clients;
            let clock = &mut clocks[client as usize];
            let invoke = *clock;
            let lin = invoke + rng.below(20);
            let complete = lin + rng.below(20);
            *clock = complete + 1 + rng.below(10);
            let key = format!("key{}", rng.below(n_keys)).into_bytes();
            let op = match rng.below(10) {
                0..=3 => Op::Put {
                    key,
                    value: format!("v{i}").into_bytes(),
                },
                4..=7 => Op::Get { key },
                _ => Op::Delete { key },
            };
            let lost = rng.below(15) == 0;
            let applied = !lost || rng.below(2) == 0;
            planned.push(Planned {
                operation: Operation {
                    client,
                    op,
                    invoke,
                    complete: None,
                },
                lin,
                complete,
                lost,
                applied,
            });
        }
        let mut order: Vec<usize> = (0..planned.len()).collect();
        order.sort_by_key(|&i| (planned[i].lin, planned[i].operation.client));
        let mut store: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for i in order {
            let p = &mut planned[i];
            if !p.applied {
                continue;
            }
            let result = match &p.operation.op {
                Op::Put { key, value } => {
                    store.insert(key.clone(), value.clone());
                    OpResult::Put
                }
                Op::Get { key } => OpResult::Get(store.get(key).cloned()),
                Op::Delete { key } => OpResult::Delete {
                    deleted: store.remove(key).is_some(),
                },
            };
            if !p.lost {
                p.operation.complete = Some((p.complete, result));
            }
        }
        planned.into_iter().map(|p| p.operation).collect()
    }

    #[test]
    fn random_real_executions_are_linearizable() {
        for seed in 1..=20 {
            let h = generate(seed, 200, 3, 5);
            assert!(h.iter().any(|o| o.complete.is_none()), "seed {seed}");
            let (v, stats) = check(&h, BUDGET);
            assert_eq!(v, Verdict::Linearizable, "seed {seed}");
            assert_eq!(stats.keys, 3);
            assert_eq!(stats.operations, 200);
        }
        // A longer run on a single key with more clients.
        let h = generate(99, 1000, 1, 8);
        assert_eq!(verdict(&h), Verdict::Linearizable);
    }

    #[test]
    fn random_executions_with_a_forged_read_are_not_linearizable() {
        for seed in 1..=20 {
            let mut h = generate(seed, 200, 3, 5);
            let mut rng = Rng(seed + 1000);
            let gets: Vec<usize> = (0..h.len())
                .filter(|&i| {
                    matches!(h[i].op, Op::Get { .. })
                        && matches!(h[i].complete, Some((_, OpResult::Get(_))))
                })
                .collect();
            let target = gets[rng.below(gets.len() as u64) as usize];
            if let Some((_, result)) = &mut h[target].complete {
                *result = OpResult::Get(Some(b"never-written".to_vec()));
            }
            let key = h[target].op.key().to_vec();
            match check(&h, BUDGET).0 {
                Verdict::NotLinearizable {
                    key: failed,
                    explanation,
                } => {
                    assert_eq!(failed, key, "seed {seed}");
                    assert!(explanation.contains("never-written"), "seed {seed}");
                }
                other => panic!("seed {seed}: {other:?}"),
            }
        }
    }
}
