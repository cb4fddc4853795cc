//! The in-memory Raft log of one node: what it believes, persisted or not yet.
//!
//! Indexes are absolute. `offset` is the index just before the first held entry (the last index a
//! snapshot covers, 0 without one), so compaction can drop a prefix without renumbering.

use crate::types::{Entry, Index, Term};

#[derive(Clone, Debug, Default)]
pub struct RaftLog {
    offset: Index,
    offset_term: Term,
    entries: Vec<Entry>,
}

impl RaftLog {
    /// Rebuilds a log from what storage returned. Entries must be contiguous after `offset`;
    /// storage validates that before it gets here, so a gap is a bug, not bad input.
    pub fn restore(offset: Index, offset_term: Term, entries: Vec<Entry>) -> Self {
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(
                e.index,
                offset + 1 + i as u64,
                "restored log is not contiguous after offset {offset}"
            );
        }
        RaftLog {
            offset,
            offset_term,
            entries,
        }
    }

    pub fn first_index(&self) -> Index {
        self.offset + 1
    }

    pub fn last_index(&self) -> Index {
        self.offset + self.entries.len() as u64
    }

    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(self.offset_term, |e| e.term)
    }

    /// Term of the entry at `index`; None when it is beyond the log or compacted away.
    pub fn term(&self, index: Index) -> Option<Term> {
        if index == self.offset {
            return Some(self.offset_term);
        }
        self.get(index).map(|e| e.term)
    }

    pub fn get(&self, index: Index) -> Option<&Entry> {
        if index <= self.offset {
            return None;
        }
        self.entries.get((index - self.offset - 1) as usize)
    }

    /// Entries in `[lo, hi]`, clipped to what the log holds.
    pub fn slice(&self, lo: Index, hi: Index) -> &[Entry] {
        let lo = lo.max(self.first_index());
        let hi = hi.min(self.last_index());
        if lo > hi {
            return &[];
        }
        &self.entries[(lo - self.offset - 1) as usize..(hi - self.offset) as usize]
    }

    pub fn append(&mut self, entry: Entry) {
        assert_eq!(
            entry.index,
            self.last_index() + 1,
            "append out of order: log ends at {}",
            self.last_index()
        );
        assert!(
            entry.term >= self.last_term(),
            "append of term {} after term {} breaks monotonic log terms",
            entry.term,
            self.last_term()
        );
        self.entries.push(entry);
    }

    /// Drops every entry at `index` and after.
    pub fn truncate_from(&mut self, index: Index) {
        assert!(index > self.offset, "truncating into the compacted prefix");
        self.entries.truncate((index - self.offset - 1) as usize);
    }

    /// Last index covered by the snapshot this log starts after (0 without one).
    pub fn snapshot_index(&self) -> Index {
        self.offset
    }

    /// Drops every entry up to and including `index`, which a snapshot ending at (`index`,
    /// `term`) now covers. Entries after it stay; a log that ends before `index` becomes empty.
    /// Callers make sure the entries dropped are applied (or replaced by an installed snapshot).
    pub fn compact_to(&mut self, index: Index, term: Term) {
        assert!(
            index >= self.offset,
            "compacting back to {index} behind the snapshot at {}",
            self.offset
        );
        if let Some(t) = self.term(index) {
            assert_eq!(t, term, "snapshot term differs from the log's at {index}");
        }
        let drop = ((index - self.offset) as usize).min(self.entries.len());
        self.entries.drain(..drop);
        self.offset = index;
        self.offset_term = term;
    }

    /// Whether a log ending at (`index`, `term`) is at least as up to date as this one (§5.4.1).
    pub fn is_up_to_date(&self, index: Index, term: Term) -> bool {
        term > self.last_term() || (term == self.last_term() && index >= self.last_index())
    }

    /// First index of the run of entries with the same term as `index`, scanning back no
    /// further than `floor`; used for the conflict hint a follower sends.
    pub fn first_index_of_term_at(&self, index: Index, floor: Index) -> Index {
        let Some(term) = self.term(index) else {
            return index;
        };
        let mut i = index;
        while i > floor.max(self.first_index()) && self.term(i - 1) == Some(term) {
            i -= 1;
        }
        i
    }

    /// Last index holding `term`, at or below `upto`; None when this log has no such entry.
    pub fn last_index_of_term(&self, term: Term, upto: Index) -> Option<Index> {
        let mut i = upto.min(self.last_index());
        while i >= self.first_index() {
            match self.term(i) {
                Some(t) if t == term => return Some(i),
                Some(t) if t < term => return None,
                _ => {}
            }
            i -= 1;
        }
        None
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
}
