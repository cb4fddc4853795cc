//! A node's simulated disk: what survives a crash.

use std::sync::Arc;

use crate::node::Persisted;
use crate::ready::PersistOp;
use crate::snapshot::Snapshot;
use crate::types::{Entry, HardState, Index};

#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    pub hard_state: HardState,
    /// The latest saved snapshot, shared with the node that saved it (a restart copies it).
    pub snapshot: Option<Arc<Snapshot>>,
    /// Index just before `entries[0]`: the last index compacted away (0 before any compaction).
    pub offset: Index,
    pub entries: Vec<Entry>,
}

impl MemStorage {
    pub fn apply(&mut self, op: &PersistOp) {
        match op {
            PersistOp::HardState(hs) => self.hard_state = *hs,
            PersistOp::TruncateFrom(i) => {
                assert!(
                    *i > self.offset,
                    "persisted truncation into compacted entries"
                );
                self.entries.truncate((i - self.offset - 1) as usize);
            }
            PersistOp::Append(es) => {
                for e in es {
                    assert_eq!(
                        e.index,
                        self.last_index() + 1,
                        "persisted append leaves a gap"
                    );
                    self.entries.push(e.clone());
                }
            }
            PersistOp::SaveSnapshot(s) => self.snapshot = Some(Arc::clone(s)),
            PersistOp::CompactLog(i) => {
                if *i <= self.offset {
                    return;
                }
                let drop = ((i - self.offset) as usize).min(self.entries.len());
                self.entries.drain(..drop);
                self.offset = *i;
            }
        }
    }

    pub fn last_index(&self) -> Index {
        self.offset + self.entries.len() as u64
    }

    /// Whether the entry `index`@`term` is on this disk, in the log or covered by the snapshot.
    pub fn holds(&self, index: Index, term: crate::types::Term) -> bool {
        if index <= self.offset {
            // Compaction keeps only committed entries, and those never change (log matching).
            return self.snapshot.is_some();
        }
        self.entries
            .get((index - self.offset - 1) as usize)
            .is_some_and(|e| e.term == term)
    }

    /// Index of the latest saved snapshot (0 without one).
    pub fn snapshot_index(&self) -> Index {
        self.snapshot.as_ref().map_or(0, |s| s.meta.last_index)
    }

    pub fn load(&self) -> Persisted {
        // The core saves a snapshot before compacting up to it, in one batch; a disk whose log
        // starts anywhere else was written by a broken executor.
        assert_eq!(
            self.offset,
            self.snapshot_index(),
            "stored log does not start right after the stored snapshot"
        );
        Persisted {
            hard_state: self.hard_state,
            snapshot: self.snapshot.as_deref().cloned(),
            entries: self.entries.clone(),
        }
    }
}
