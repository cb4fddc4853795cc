//! Verdicts on a recorded history: linearizability (the core's WGL checker) and a set-style
//! durability check on the final state.

use std::collections::BTreeMap;

use keyval_core::sim::linearizability::{self, Op, OpResult, Operation, Verdict};
use keyval_core::{KvOp, KvResult};

use super::client::{text, Outcome, Record};

/// Search steps per key before the checker gives up (a give-up is a failure, never a pass).
const CHECK_BUDGET_STEPS: u64 = 50_000_000;

/// The history as the checker sees it. Failed operations did not happen and are left out;
/// unknown reads constrain nothing and are left out too; unknown writes stay open forever.
pub fn to_operations(history: &[Record]) -> Vec<Operation> {
    history
        .iter()
        .filter_map(|r| {
            let op = match &r.op {
                KvOp::Put { key, value } => Op::Put {
                    key: key.clone(),
                    value: value.clone(),
                },
                KvOp::Get { key } => Op::Get { key: key.clone() },
                KvOp::Delete { key } => Op::Delete { key: key.clone() },
                // Sessions are opened on the way to a write, never recorded.
                KvOp::OpenSession => return None,
            };
            let complete = match &r.outcome {
                Outcome::Fail(_) => return None,
                Outcome::Unknown(_) if matches!(r.op, KvOp::Get { .. }) => return None,
                Outcome::Unknown(_) => None,
                Outcome::Ok(res) => Some((
                    r.complete_us,
                    match res {
                        KvResult::Put | KvResult::Session { .. } => OpResult::Put,
                        KvResult::Get(v) => OpResult::Get(v.clone()),
                        KvResult::Delete { deleted } => OpResult::Delete { deleted: *deleted },
                    },
                )),
            };
            Some(Operation {
                client: r.process,
                op,
                invoke: r.invoke_us,
                complete,
            })
        })
        .collect()
}

/// Linearizability of the whole history; Err holds the checker's explanation.
pub fn linearizable(history: &[Record]) -> Result<u64, String> {
    let (verdict, stats) = linearizability::check(&to_operations(history), CHECK_BUDGET_STEPS);
    match verdict {
        Verdict::Linearizable => Ok(stats.steps),
        Verdict::NotLinearizable { key, explanation } => Err(format!(
            "NOT linearizable on key {}:\n{explanation}",
            text(&key)
        )),
        Verdict::Timeout { key, steps } => Err(format!(
            "linearizability check gave up on key {} after {steps} steps (not a pass)",
            text(&key)
        )),
    }
}

/// The set check on the final state read after healing: for each key, the final value must be
/// one that was written (acknowledged or unknown), never one nobody wrote, and an acknowledged
/// write may only be missing if a later-or-concurrent write could have replaced it.
pub fn final_state(history: &[Record], finals: &BTreeMap<Vec<u8>, Option<Vec<u8>>>) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, final_value) in finals {
        let writes: Vec<&Record> = history
            .iter()
            .filter(|r| r.op.key() == key.as_slice())
            .filter(|r| matches!(r.op, KvOp::Put { .. } | KvOp::Delete { .. }))
            .filter(|r| !matches!(r.outcome, Outcome::Fail(_)))
            .collect();
        let value_of = |r: &Record| match &r.op {
            KvOp::Put { value, .. } => Some(value.clone()),
            _ => None,
        };
        if let Some(v) = final_value {
            if !writes.iter().any(|w| value_of(w).as_ref() == Some(v)) {
                problems.push(format!(
                    "key {}: final value {:?} was never written",
                    text(key),
                    text(v)
                ));
                continue;
            }
        }
        // The acknowledged write that completed last: only writes not finished before it was
        // invoked can have replaced it.
        let Some(last_ok) = writes
            .iter()
            .filter(|w| matches!(w.outcome, Outcome::Ok(_)))
            .max_by_key(|w| w.complete_us)
        else {
            continue;
        };
        let candidates: Vec<Option<Vec<u8>>> = writes
            .iter()
            // An unknown write may take effect at any time after its invocation, even after
            // `last_ok`; an acknowledged one only if it overlapped `last_ok` or followed it.
            .filter(|w| {
                matches!(w.outcome, Outcome::Unknown(_)) || w.complete_us >= last_ok.invoke_us
            })
            .map(|w| value_of(w))
            .collect();
        if !candidates.contains(final_value) {
            problems.push(format!(
                "key {}: acknowledged write {:?} (completed at {} us) is lost: final value {:?}",
                text(key),
                value_of(last_ok).map(|v| text(&v)),
                last_ok.complete_us,
                final_value.as_deref().map(text)
            ));
        }
    }
    problems
}
