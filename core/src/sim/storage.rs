//! A node's simulated disk: what survives a crash.

use crate::node::Persisted;
use crate::ready::PersistOp;
use crate::types::{Entry, HardState};

#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    pub hard_state: HardState,
    pub entries: Vec<Entry>,
}

impl MemStorage {
    pub fn apply(&mut self, op: &PersistOp) {
        match op {
            PersistOp::HardState(hs) => self.hard_state = *hs,
            PersistOp::TruncateFrom(i) => {
                self.entries.truncate(i.saturating_sub(1) as usize);
            }
            PersistOp::Append(es) => {
                for e in es {
                    assert_eq!(
                        e.index,
                        self.entries.len() as u64 + 1,
                        "persisted append leaves a gap"
                    );
                    self.entries.push(e.clone());
                }
            }
        }
    }

    pub fn load(&self) -> Persisted {
        Persisted {
            hard_state: self.hard_state,
            entries: self.entries.clone(),
        }
    }
}
