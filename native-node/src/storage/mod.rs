//! The typed Raft log store: what a node persists, as records on the byte-level [`crate::wal`].
//!
//! Every [`PersistOp`] of a `Ready` batch becomes one record (large appends are split into
//! several, each still contiguous). Recovery replays the records in order into the
//! [`Persisted`] the core restarts from. Replay is strict: a record that could not have been
//! written by this code (an append that leaves a gap, a term that goes backwards, an undecodable
//! record) is reported as corruption with the file position, never skipped, because skipping it
//! could silently drop committed entries.
//!
//! Record payload: one version byte, then the postcard encoding of [`LogRecord`].

pub mod conformance;
pub mod worker;

use std::path::{Path, PathBuf};

use keyval_core::{Entry, HardState, Index, PersistOp, Persisted};
use serde::{Deserialize, Serialize};

use crate::wal::{TornTail, Wal, WalError, WalOptions};

/// Version byte in front of every record, so a future format is refused with a clear message.
const RECORD_VERSION: u8 = 1;

/// An append record is cut when it grows past this many estimated bytes, keeping every record
/// far below [`crate::wal::MAX_RECORD_BYTES`] even for a leader batch full of 1 MiB values.
const MAX_APPEND_RECORD_BYTES: usize = 8 << 20;

/// One durable change to the node's Raft state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogRecord {
    HardState(HardState),
    /// Contiguous entries, the first one directly after the log's current end.
    Append(Vec<Entry>),
    /// Drop every entry at this index and after.
    TruncateFrom(Index),
}

/// The borrowed twin of [`LogRecord`]: same serde shape, so appends are encoded without cloning.
#[derive(Serialize)]
enum LogRecordRef<'a> {
    HardState(&'a HardState),
    Append(&'a [Entry]),
    TruncateFrom(Index),
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Wal(#[from] WalError),
    /// A record that passed its checksum but cannot be a correct record of this log.
    #[error("corrupt Raft log record {lsn} in WAL {}: {reason}", dir.display())]
    BadRecord {
        dir: PathBuf,
        lsn: u64,
        reason: String,
    },
    #[error("failed to encode a Raft log record: {0}")]
    Encode(#[from] postcard::Error),
    /// Log compaction is not persisted by the native node yet, and it never asks the core for
    /// it (snapshot threshold 0); refusing is safer than acknowledging what is not on disk.
    #[error("snapshots are not yet supported by the native log store")]
    SnapshotUnsupported,
}

/// What recovery found, for the start-up log line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoverySummary {
    pub records: usize,
    pub segments: usize,
    pub first_index: Index,
    pub last_index: Index,
    pub last_term: u64,
    pub hard_state: HardState,
    pub torn_tail: Option<TornTail>,
}

/// A durable home for a node's Raft state. Implementations buffer in [`LogStore::write`] and
/// make everything written so far durable in [`LogStore::sync`]; the node sends nothing that
/// depends on a batch before `sync` returns.
pub trait LogStore: Send + 'static {
    fn write(&mut self, ops: &[PersistOp]) -> Result<(), StorageError>;
    fn sync(&mut self) -> Result<(), StorageError>;
}

/// The production store: typed records in the segmented WAL.
#[derive(Debug)]
pub struct WalStore {
    wal: Wal,
    /// Scratch buffer for encoding records, reused so a busy node does not allocate per record.
    buf: Vec<u8>,
}

impl WalStore {
    /// Opens the WAL in `dir` and replays it. A torn tail is truncated (and reported in the
    /// summary); anything else damaged is an error naming the file and offset or record.
    pub fn open(
        dir: &Path,
        opts: WalOptions,
    ) -> Result<(WalStore, Persisted, RecoverySummary), StorageError> {
        let (wal, recovery) = Wal::open(dir, opts)?;
        let mut replay = Replay::default();
        for (lsn, payload) in &recovery.records {
            let record = decode_record(payload).map_err(|reason| StorageError::BadRecord {
                dir: dir.to_path_buf(),
                lsn: *lsn,
                reason,
            })?;
            replay
                .apply(record)
                .map_err(|reason| StorageError::BadRecord {
                    dir: dir.to_path_buf(),
                    lsn: *lsn,
                    reason,
                })?;
        }
        let summary = RecoverySummary {
            records: recovery.records.len(),
            segments: recovery.segments,
            first_index: replay.entries.first().map_or(0, |e| e.index),
            last_index: replay.entries.last().map_or(0, |e| e.index),
            last_term: replay.entries.last().map_or(0, |e| e.term),
            hard_state: replay.hard_state,
            torn_tail: recovery.torn_tail,
        };
        let persisted = Persisted {
            snapshot: None,
            hard_state: replay.hard_state,
            entries: replay.entries,
        };
        Ok((
            WalStore {
                wal,
                buf: Vec::new(),
            },
            persisted,
            summary,
        ))
    }

    fn append_record(&mut self, record: &LogRecordRef<'_>) -> Result<(), StorageError> {
        self.buf.clear();
        self.buf.push(RECORD_VERSION);
        let encoded = postcard::to_extend(record, std::mem::take(&mut self.buf))?;
        self.buf = encoded;
        self.wal.append(&self.buf)?;
        Ok(())
    }
}

impl LogStore for WalStore {
    fn write(&mut self, ops: &[PersistOp]) -> Result<(), StorageError> {
        for op in ops {
            match op {
                PersistOp::HardState(hs) => self.append_record(&LogRecordRef::HardState(hs))?,
                PersistOp::TruncateFrom(i) => {
                    self.append_record(&LogRecordRef::TruncateFrom(*i))?
                }
                PersistOp::Append(entries) => {
                    for chunk in append_chunks(entries) {
                        self.append_record(&LogRecordRef::Append(chunk))?;
                    }
                }
                PersistOp::SaveSnapshot(_) | PersistOp::CompactLog(_) => {
                    return Err(StorageError::SnapshotUnsupported);
                }
            }
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.wal.sync()?;
        Ok(())
    }
}

/// Splits an append into contiguous runs of bounded estimated size (at least one entry each).
fn append_chunks(entries: &[Entry]) -> Vec<&[Entry]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, e) in entries.iter().enumerate() {
        let size = e.size_hint();
        if i > start && bytes + size > MAX_APPEND_RECORD_BYTES {
            out.push(&entries[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < entries.len() {
        out.push(&entries[start..]);
    }
    out
}

fn decode_record(payload: &[u8]) -> Result<LogRecord, String> {
    let Some((&version, body)) = payload.split_first() else {
        return Err("empty record".into());
    };
    if version != RECORD_VERSION {
        return Err(format!(
            "unsupported record version {version} (this build reads version {RECORD_VERSION})"
        ));
    }
    let (record, rest) = postcard::take_from_bytes::<LogRecord>(body)
        .map_err(|e| format!("undecodable record: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes after the record", rest.len()));
    }
    Ok(record)
}

/// Rebuilds the hard state and log from records, refusing anything a correct writer never wrote.
#[derive(Default)]
struct Replay {
    hard_state: HardState,
    entries: Vec<Entry>,
}

impl Replay {
    fn last(&self) -> (Index, u64) {
        self.entries.last().map_or((0, 0), |e| (e.index, e.term))
    }

    fn apply(&mut self, record: LogRecord) -> Result<(), String> {
        match record {
            LogRecord::HardState(hs) => {
                if hs.term < self.hard_state.term {
                    return Err(format!(
                        "hard state term goes back from {} to {}",
                        self.hard_state.term, hs.term
                    ));
                }
                self.hard_state = hs;
            }
            LogRecord::TruncateFrom(index) => {
                let (last, _) = self.last();
                if index == 0 || index > last + 1 {
                    return Err(format!(
                        "truncation from index {index} but the log holds 1..={last}"
                    ));
                }
                self.entries.truncate((index - 1) as usize);
            }
            LogRecord::Append(new) => {
                for e in new {
                    let (last, last_term) = self.last();
                    if e.index != last + 1 {
                        return Err(format!(
                            "append of index {} after index {last} leaves a gap or overlap",
                            e.index
                        ));
                    }
                    if e.term < last_term {
                        return Err(format!(
                            "entry {} has term {} below the previous entry's term {last_term}",
                            e.index, e.term
                        ));
                    }
                    self.entries.push(e);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::conformance::{self, StoreHarness};
    use super::*;

    /// The production configuration, with fsync off to keep the suite fast (durability across
    /// power loss is not what these tests can observe anyway).
    struct WalHarness {
        segment_bytes: u64,
    }

    impl StoreHarness for WalHarness {
        type Store = WalStore;
        fn open(&self, dir: &Path) -> Result<(WalStore, Persisted), StorageError> {
            let opts = WalOptions {
                segment_bytes: self.segment_bytes,
                fsync: false,
            };
            WalStore::open(dir, opts).map(|(s, p, _)| (s, p))
        }
    }

    #[test]
    fn conformance_wal_store_default_segments() {
        conformance::run_all(&WalHarness {
            segment_bytes: 64 << 20,
        });
    }

    /// Tiny segments: every check also crosses segment boundaries.
    #[test]
    fn conformance_wal_store_tiny_segments() {
        conformance::run_all(&WalHarness { segment_bytes: 512 });
    }

    #[test]
    fn appends_are_split_into_bounded_records() {
        let big = vec![7u8; 1 << 20];
        let entries: Vec<Entry> = (1..=20).map(|i| conformance::entry(i, 1, &big)).collect();
        let chunks = append_chunks(&entries);
        assert!(chunks.len() > 1);
        assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), 20);
        let dir = tempfile::tempdir().expect("tempdir");
        let h = WalHarness {
            segment_bytes: 64 << 20,
        };
        let (mut s, _) = h.open(dir.path()).expect("open");
        s.write(&[PersistOp::Append(entries.clone())])
            .expect("write");
        s.sync().expect("sync");
        drop(s);
        let (_, p) = h.open(dir.path()).expect("reopen");
        assert_eq!(p.entries, entries);
    }

    #[test]
    fn gap_in_replayed_appends_is_reported_with_its_lsn() {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = WalHarness {
            segment_bytes: 64 << 20,
        };
        let (mut s, _) = h.open(dir.path()).expect("open");
        s.write(&[
            PersistOp::Append(vec![conformance::entry(1, 1, b"a")]),
            PersistOp::Append(vec![conformance::entry(3, 1, b"c")]),
        ])
        .expect("write");
        s.sync().expect("sync");
        drop(s);
        let err = h.open(dir.path()).expect_err("gap must be refused");
        let msg = err.to_string();
        assert!(
            matches!(err, StorageError::BadRecord { lsn: 2, .. }),
            "{msg}"
        );
        assert!(msg.contains("gap"), "{msg}");
    }
}
