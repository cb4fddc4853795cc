//! Log compaction: the snapshot a node takes of its state machine, and the follower side of a
//! chunked InstallSnapshot transfer.
//!
//! A snapshot replaces the log prefix it covers. It is only ever taken of *applied* (hence
//! committed) entries, so every node's snapshot at index `i` must equal every other node's: the
//! simulator's checker verifies exactly that. The state machine bytes are opaque here (the KV
//! layer encodes its `KvStore` with postcard), which keeps the Raft core free of the state machine.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::membership::Membership;
use crate::types::{Index, Term};

/// Largest chunk a node sends or accepts in one InstallSnapshot message. Bounds the memory a
/// single message can make a follower allocate, whatever the sender's configuration says.
pub const MAX_SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// Largest snapshot a follower assembles from chunks. Without a bound, a peer that never sets
/// `done` could make it buffer without limit.
pub const MAX_SNAPSHOT_BYTES: usize = 1 << 30;

/// What a snapshot covers: everything up to and including `last_index` (of `last_term`), and
/// the configuration in force there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub last_index: Index,
    pub last_term: Term,
    pub membership: Membership,
}

/// A state machine snapshot: its metadata and the encoded state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub meta: SnapshotMeta,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// A snapshot transfer a follower is in the middle of receiving. It belongs to one leader term
/// and one snapshot; a chunk of any other transfer discards it (a new leader restarts at 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IncomingSnapshot {
    pub term: Term,
    pub meta: SnapshotMeta,
    pub data: Vec<u8>,
    /// Chunks that arrived ahead of a gap (the leader keeps a window in flight and the network
    /// may reorder), by offset, with their `done` flag; at most [`MAX_CHUNKS_AHEAD`].
    pub ahead: BTreeMap<u64, (Vec<u8>, bool)>,
}

/// Out-of-order chunks a follower keeps per transfer; more are dropped (the leader resends).
pub const MAX_CHUNKS_AHEAD: usize = 16;

/// What a follower does with one InstallSnapshot chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ChunkOutcome {
    /// Stored (or a duplicate/gap): tell the leader the byte offset expected next.
    Continue { next_offset: u64 },
    /// The last chunk arrived: the snapshot is complete and ready to be installed.
    Complete(Snapshot),
    /// Bad input: refuse and report (never panic on what a peer sent).
    Malformed(String),
}

impl IncomingSnapshot {
    /// Folds one chunk into the transfer in `slot`, starting, restarting or discarding it as the
    /// chunk's term and metadata say. Offsets that do not continue the buffered bytes exactly
    /// (lost, duplicated or reordered chunks) are not stored: the reply names the offset wanted.
    pub fn receive(
        slot: &mut Option<IncomingSnapshot>,
        term: Term,
        meta: &SnapshotMeta,
        offset: u64,
        data: &[u8],
        done: bool,
    ) -> ChunkOutcome {
        if data.len() > MAX_SNAPSHOT_CHUNK_BYTES {
            return ChunkOutcome::Malformed(format!(
                "snapshot chunk of {} bytes exceeds {MAX_SNAPSHOT_CHUNK_BYTES}",
                data.len()
            ));
        }
        let same_transfer = slot
            .as_ref()
            .is_some_and(|s| s.term == term && &s.meta == meta);
        if !same_transfer {
            // Another leader or another snapshot: a partial transfer of it is worthless. (A
            // repeated chunk 0 of the same transfer is a duplicate, not a restart: the reply
            // tells the leader where we really are.)
            *slot = None;
        }
        let incoming = slot.get_or_insert_with(|| IncomingSnapshot {
            term,
            meta: meta.clone(),
            data: Vec::new(),
            ahead: BTreeMap::new(),
        });
        let have = incoming.data.len() as u64;
        if offset != have {
            let room = incoming.ahead.len() < MAX_CHUNKS_AHEAD;
            if offset > have
                && room
                && offset.saturating_add(data.len() as u64) <= MAX_SNAPSHOT_BYTES as u64
            {
                incoming.ahead.insert(offset, (data.to_vec(), done));
            }
            return ChunkOutcome::Continue { next_offset: have };
        }
        let mut next = Some((data.to_vec(), done));
        while let Some((bytes, done)) = next.take() {
            let total = incoming.data.len() + bytes.len();
            if total > MAX_SNAPSHOT_BYTES {
                *slot = None;
                return ChunkOutcome::Malformed(format!(
                    "snapshot grows to {total} bytes, over the limit of {MAX_SNAPSHOT_BYTES}"
                ));
            }
            incoming.data.extend_from_slice(&bytes);
            if done {
                let Some(complete) = slot.take() else {
                    return ChunkOutcome::Continue { next_offset: 0 };
                };
                return ChunkOutcome::Complete(Snapshot {
                    meta: complete.meta,
                    data: complete.data,
                });
            }
            let have = incoming.data.len() as u64;
            // Chunks that the one just stored has made contiguous; older ones are stale.
            incoming.ahead.retain(|&o, _| o >= have);
            next = incoming.ahead.remove(&have);
        }
        ChunkOutcome::Continue {
            next_offset: incoming.data.len() as u64,
        }
    }
}

/// The bytes of one chunk: `[offset, offset + max)` of `data`, clipped, and whether it is the
/// last. An offset past the end yields an empty final chunk (the caller validates offsets).
pub(crate) fn chunk(data: &[u8], offset: u64, max: usize) -> (&[u8], bool) {
    let start = (offset as usize).min(data.len());
    let end = start.saturating_add(max.max(1)).min(data.len());
    (&data[start..end], end == data.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(i: Index) -> SnapshotMeta {
        SnapshotMeta {
            last_index: i,
            last_term: 1,
            membership: Membership::bootstrap([1, 2, 3], Default::default()),
        }
    }

    #[test]
    fn chunks_assemble_in_order_and_gaps_ask_for_the_expected_offset() {
        let mut slot = None;
        let m = meta(5);
        assert_eq!(
            IncomingSnapshot::receive(&mut slot, 2, &m, 0, b"abc", false),
            ChunkOutcome::Continue { next_offset: 3 }
        );
        // A chunk overtaken by the next: that one arrives at offset 6 and waits for the gap.
        assert_eq!(
            IncomingSnapshot::receive(&mut slot, 2, &m, 6, b"ghi", true),
            ChunkOutcome::Continue { next_offset: 3 }
        );
        // A duplicate of the first.
        assert_eq!(
            IncomingSnapshot::receive(&mut slot, 2, &m, 0, b"abc", false),
            ChunkOutcome::Continue { next_offset: 3 }
        );
        // The gap fills: the chunk kept ahead of it completes the snapshot.
        match IncomingSnapshot::receive(&mut slot, 2, &m, 3, b"def", false) {
            ChunkOutcome::Complete(s) => assert_eq!(s.data, b"abcdefghi"),
            other => panic!("{other:?}"),
        }
        assert!(slot.is_none());
    }

    #[test]
    fn chunks_ahead_of_a_gap_are_bounded() {
        let mut slot = None;
        let m = meta(5);
        for i in 1..=(MAX_CHUNKS_AHEAD as u64 + 4) {
            IncomingSnapshot::receive(&mut slot, 2, &m, i * 3, b"xyz", false);
        }
        assert_eq!(slot.as_ref().map(|s| s.ahead.len()), Some(MAX_CHUNKS_AHEAD));
        assert_eq!(
            IncomingSnapshot::receive(&mut slot, 2, &m, 0, b"abc", false),
            ChunkOutcome::Continue {
                next_offset: 3 * (MAX_CHUNKS_AHEAD as u64 + 1)
            }
        );
    }

    #[test]
    fn another_term_or_snapshot_discards_a_partial_transfer() {
        let mut slot = None;
        IncomingSnapshot::receive(&mut slot, 2, &meta(5), 0, b"abc", false);
        assert_eq!(
            IncomingSnapshot::receive(&mut slot, 3, &meta(5), 3, b"def", false),
            ChunkOutcome::Continue { next_offset: 0 }
        );
        IncomingSnapshot::receive(&mut slot, 3, &meta(5), 0, b"abc", false);
        assert_eq!(
            IncomingSnapshot::receive(&mut slot, 3, &meta(7), 3, b"def", false),
            ChunkOutcome::Continue { next_offset: 0 }
        );
    }

    #[test]
    fn oversized_chunks_are_refused() {
        let mut slot = None;
        let big = vec![0; MAX_SNAPSHOT_CHUNK_BYTES + 1];
        assert!(matches!(
            IncomingSnapshot::receive(&mut slot, 1, &meta(1), 0, &big, true),
            ChunkOutcome::Malformed(_)
        ));
    }

    #[test]
    fn chunking_clips_to_the_data() {
        assert_eq!(chunk(b"abcdef", 0, 4), (&b"abcd"[..], false));
        assert_eq!(chunk(b"abcdef", 4, 4), (&b"ef"[..], true));
        assert_eq!(chunk(b"abcdef", 9, 4), (&b""[..], true));
        assert_eq!(chunk(b"", 0, 4), (&b""[..], true));
    }
}
