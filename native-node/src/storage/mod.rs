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
#[cfg(test)]
mod crash_tests;
pub mod snapfile;
pub mod worker;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keyval_core::{Entry, HardState, Index, PersistOp, Persisted, Snapshot};
use serde::{Deserialize, Serialize};

use crate::wal::io::Vfs;
use crate::wal::{TornTail, Wal, WalError, WalOptions};
use snapfile::{SnapshotDir, SnapshotFileError};

/// Version byte in front of every record, so a future format is refused with a clear message.
/// 2: the hard state carries a commit index (see `keyval_core::HardState::commit`). 3: a
/// configuration change may add a learner to promote once caught up
/// (`ChangeKind::AddLearnerThenVoter`, a new last variant), which a version 2 build cannot
/// decode: the new version makes it refuse the record by name instead of calling it corrupt.
/// Version 2 records are a subset of version 3 and decode as they are; version 1 records are
/// still read (their hard state has commit 0).
const RECORD_VERSION: u8 = 3;
const RECORD_VERSION_NO_PROMOTE: u8 = 2;
const RECORD_VERSION_NO_COMMIT: u8 = 1;

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
    /// Drop every entry at this index and before: a snapshot covering them is durable. A log
    /// that ends earlier becomes empty, starting after this index (a follower that installed
    /// a snapshot beyond its log). New variants go last: postcard encodes by position.
    Compact(Index),
}

/// A version 1 record: the hard state had no commit index.
#[derive(Deserialize)]
enum LogRecordV1 {
    HardState {
        term: u64,
        vote: Option<keyval_core::NodeId>,
    },
    Append(Vec<Entry>),
    TruncateFrom(Index),
    Compact(Index),
}

impl From<LogRecordV1> for LogRecord {
    fn from(r: LogRecordV1) -> LogRecord {
        match r {
            LogRecordV1::HardState { term, vote } => LogRecord::HardState(HardState {
                term,
                vote,
                commit: 0,
            }),
            LogRecordV1::Append(es) => LogRecord::Append(es),
            LogRecordV1::TruncateFrom(i) => LogRecord::TruncateFrom(i),
            LogRecordV1::Compact(i) => LogRecord::Compact(i),
        }
    }
}

/// Bytes one append record of `entries` takes in the WAL (frame header, version, payload): for
/// tools that write like the WAL does (`kvctl floor`).
pub fn append_record_bytes(entries: &[Entry]) -> Result<usize, postcard::Error> {
    let payload = postcard::to_extend(&LogRecordRef::Append(entries), vec![RECORD_VERSION])?;
    Ok(crate::wal::RECORD_HEADER_BYTES + payload.len())
}

/// The borrowed twin of [`LogRecord`]: same serde shape, so appends are encoded without cloning.
#[derive(Serialize)]
enum LogRecordRef<'a> {
    HardState(&'a HardState),
    Append(&'a [Entry]),
    TruncateFrom(Index),
    Compact(Index),
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
    /// The WAL and the newest snapshot do not fit together (entries between them are missing).
    #[error("WAL {} does not continue snapshot {}: {reason}", dir.display(), snapshot.as_ref().map_or("(none)".to_string(), |p| p.display().to_string()))]
    Mismatch {
        dir: PathBuf,
        snapshot: Option<PathBuf>,
        reason: String,
    },
    #[error(transparent)]
    Snapshot(#[from] SnapshotFileError),
    #[error("failed to encode a Raft log record: {0}")]
    Encode(#[from] postcard::Error),
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
    /// The newest snapshot's last index and term (0 without one), file and file size.
    pub snapshot_index: Index,
    pub snapshot_term: u64,
    pub snapshot_file: Option<PathBuf>,
    pub snapshot_bytes: u64,
    /// Stray temp files and superseded snapshots removed at start-up.
    pub removed_snapshot_files: Vec<PathBuf>,
    /// A compaction that a crash interrupted (snapshot durable, log not yet cut) was finished;
    /// `Some(dropped)` counts log entries after the snapshot dropped as conflicting with it.
    pub finished_compaction: Option<u64>,
}

/// A durable home for a node's Raft state. Implementations buffer in [`LogStore::write`] and
/// make everything written so far durable in [`LogStore::sync`]; the node sends nothing that
/// depends on a batch before `sync` returns.
pub trait LogStore: Send + 'static {
    fn write(&mut self, ops: &[PersistOp]) -> Result<(), StorageError>;
    fn sync(&mut self) -> Result<(), StorageError>;
    /// Cumulative counters and current on-disk size, for metrics.
    fn stats(&self) -> StoreStats {
        StoreStats::default()
    }
}

/// The production store: typed records in the segmented WAL, snapshots in their own files.
///
/// Compaction: the WAL can only drop whole segments, so it remembers, for every append record
/// still on disk, its LSN and the highest entry index it holds. `CompactLog(i)` writes the
/// current hard state (the records that carried it may be in the segments about to go) and a
/// `Compact(i)` record, syncs, and deletes the segments before the first append record that
/// holds an entry after `i`. The WAL may still hold entries at or below `i`; replay skips them.
#[derive(Debug)]
pub struct WalStore {
    wal: Wal,
    snapshots: SnapshotDir,
    /// Scratch buffer for encoding records, reused so a busy node does not allocate per record.
    buf: Vec<u8>,
    /// The latest hard state written, re-written before old segments are deleted.
    hard_state: HardState,
    /// (LSN, highest entry index) of every append record still on disk, in LSN order.
    appends: VecDeque<(u64, Index)>,
    stats: StoreStats,
}

/// Counters the node loop reads after a batch (for `/metrics` and logs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub snapshots_saved: u64,
    pub last_snapshot_bytes: u64,
    pub compactions: u64,
    pub segments_removed: u64,
    pub wal_bytes: u64,
    pub wal_segments: usize,
}

impl WalStore {
    /// Opens the WAL in `dir` and the snapshots in `snapshot_dir`, and replays the WAL after the
    /// newest snapshot. A torn tail is truncated (and reported in the summary); anything else
    /// damaged is an error naming the file and offset or record.
    pub fn open(
        dir: &Path,
        snapshot_dir: &Path,
        opts: WalOptions,
    ) -> Result<(WalStore, Persisted, RecoverySummary), StorageError> {
        WalStore::open_with(crate::wal::io::std_fs(), dir, snapshot_dir, opts)
    }

    /// [`WalStore::open`] on the given file system (tests pass one that simulates crashes).
    pub fn open_with(
        fs: Arc<dyn Vfs>,
        dir: &Path,
        snapshot_dir: &Path,
        opts: WalOptions,
    ) -> Result<(WalStore, Persisted, RecoverySummary), StorageError> {
        let (snapshots, loaded) = SnapshotDir::open_with(fs.clone(), snapshot_dir, opts.fsync)?;
        if let Some(file) = &loaded.file {
            refuse_missing_wal(fs.as_ref(), dir, file)?;
        }
        let (wal, recovery) = Wal::open_with(fs, dir, opts)?;
        let mut replay = Replay::new(recovery.records.first().map(|(lsn, _)| *lsn) == Some(1));
        for (lsn, payload) in &recovery.records {
            let bad = |reason| StorageError::BadRecord {
                dir: dir.to_path_buf(),
                lsn: *lsn,
                reason,
            };
            let record = decode_record(payload).map_err(bad)?;
            replay.apply(*lsn, record).map_err(bad)?;
        }
        let (snap_index, snap_term) = loaded
            .snapshot
            .as_ref()
            .map_or((0, 0), |s| (s.meta.last_index, s.meta.last_term));
        let outcome = replay
            .after_snapshot(snap_index, snap_term)
            .map_err(|reason| StorageError::Mismatch {
                dir: dir.to_path_buf(),
                snapshot: loaded.file.clone(),
                reason,
            })?;
        let mut store = WalStore {
            wal,
            snapshots,
            buf: Vec::new(),
            hard_state: replay.hard_state,
            appends: std::mem::take(&mut replay.appends),
            stats: StoreStats {
                last_snapshot_bytes: loaded.file_bytes,
                ..StoreStats::default()
            },
        };
        let mut entries = replay.kept(snap_index);
        let finished_compaction = match outcome {
            Reconciled::Clean => None,
            Reconciled::Unfinished { conflict_from } => {
                // A crash came between saving the snapshot and cutting the log: finish it,
                // exactly as the interrupted batch would have.
                let mut dropped = 0;
                if let Some(from) = conflict_from {
                    dropped = entries.len() as u64;
                    entries.clear();
                    store.append_record(&LogRecordRef::TruncateFrom(from))?;
                }
                store.append_record(&LogRecordRef::Compact(snap_index))?;
                store.wal.sync()?;
                Some(dropped)
            }
        };
        store.refresh_stats();
        let summary = RecoverySummary {
            records: recovery.records.len(),
            segments: recovery.segments,
            first_index: entries.first().map_or(0, |e| e.index),
            last_index: entries.last().map_or(snap_index, |e| e.index),
            last_term: entries.last().map_or(snap_term, |e| e.term),
            hard_state: replay.hard_state,
            torn_tail: recovery.torn_tail,
            snapshot_index: snap_index,
            snapshot_term: snap_term,
            snapshot_file: loaded.file,
            snapshot_bytes: loaded.file_bytes,
            removed_snapshot_files: loaded.removed,
            finished_compaction,
        };
        let persisted = Persisted {
            snapshot: loaded.snapshot,
            hard_state: replay.hard_state,
            entries,
        };
        Ok((store, persisted, summary))
    }

    pub fn snapshot_dir(&self) -> &Path {
        self.snapshots.dir()
    }

    fn refresh_stats(&mut self) {
        self.stats.wal_bytes = self.wal.disk_bytes();
        self.stats.wal_segments = self.wal.segment_count();
    }

    fn append_record(&mut self, record: &LogRecordRef<'_>) -> Result<u64, StorageError> {
        self.buf.clear();
        self.buf.push(RECORD_VERSION);
        let encoded = postcard::to_extend(record, std::mem::take(&mut self.buf))?;
        self.buf = encoded;
        Ok(self.wal.append(&self.buf)?)
    }

    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        // Everything queued before the snapshot in this batch is made durable first, so the
        // disk never holds a snapshot newer than records that precede it.
        self.wal.sync()?;
        let bytes = self.snapshots.save(snapshot)?;
        self.stats.snapshots_saved += 1;
        self.stats.last_snapshot_bytes = bytes;
        Ok(())
    }

    fn compact(&mut self, index: Index) -> Result<(), StorageError> {
        let hs = self.hard_state;
        let hs_lsn = self.append_record(&LogRecordRef::HardState(&hs))?;
        self.append_record(&LogRecordRef::Compact(index))?;
        self.wal.sync()?;
        // Seal the active segment: what it holds becomes removable at the next compaction
        // instead of when the segment fills, so the WAL stays within about two snapshot
        // intervals of entries whatever --wal-segment-bytes is (one extra fsync per snapshot).
        self.wal.roll()?;
        // The hard state record just written (and the Compact record after it) must survive
        // even when no append holds an entry past `index`.
        let cut = self
            .appends
            .iter()
            .find(|(_, max)| *max > index)
            .map_or(hs_lsn, |(lsn, _)| (*lsn).min(hs_lsn));
        let removed = self.wal.remove_segments_before(cut)?;
        let first = self.wal.first_lsn();
        while self.appends.front().is_some_and(|(lsn, _)| *lsn < first) {
            self.appends.pop_front();
        }
        self.stats.compactions += 1;
        self.stats.segments_removed += removed as u64;
        Ok(())
    }
}

impl LogStore for WalStore {
    fn write(&mut self, ops: &[PersistOp]) -> Result<(), StorageError> {
        for op in ops {
            match op {
                PersistOp::HardState(hs) => {
                    self.append_record(&LogRecordRef::HardState(hs))?;
                    self.hard_state = *hs;
                }
                PersistOp::TruncateFrom(i) => {
                    self.append_record(&LogRecordRef::TruncateFrom(*i))?;
                }
                PersistOp::Append(entries) => {
                    for chunk in append_chunks(entries) {
                        let lsn = self.append_record(&LogRecordRef::Append(chunk))?;
                        if let Some(last) = chunk.last() {
                            self.appends.push_back((lsn, last.index));
                        }
                    }
                }
                PersistOp::SaveSnapshot(s) => self.save_snapshot(s)?,
                PersistOp::CompactLog(i) => self.compact(*i)?,
            }
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.wal.sync()?;
        self.refresh_stats();
        Ok(())
    }

    /// What the store did so far (cumulative) and its current WAL size.
    fn stats(&self) -> StoreStats {
        self.stats.clone()
    }
}

/// A snapshot is only ever saved after the WAL's first segment was created and synced, and the
/// active segment is never deleted, so a snapshot without any segment means the WAL was lost.
/// Starting anyway would create an empty WAL: term 0 and no vote, so the node could vote twice
/// in a term it already voted in.
fn refuse_missing_wal(fs: &dyn Vfs, dir: &Path, snapshot: &Path) -> Result<(), StorageError> {
    let has_segment = fs.is_dir(dir)
        && fs
            .list(dir)
            .map_err(|e| WalError::Io {
                op: "list",
                path: dir.to_path_buf(),
                source: e,
            })?
            .iter()
            .any(|n| n.ends_with(".wal"));
    if has_segment {
        return Ok(());
    }
    Err(StorageError::Mismatch {
        dir: dir.to_path_buf(),
        snapshot: Some(snapshot.to_path_buf()),
        reason: "the WAL is missing (no segment file) although a snapshot exists; starting would \
                 forget this node's term and vote. Restore the WAL, or remove the whole data \
                 directory to rejoin as a new member"
            .into(),
    })
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
    let (record, rest) = match version {
        RECORD_VERSION | RECORD_VERSION_NO_PROMOTE => postcard::take_from_bytes::<LogRecord>(body),
        RECORD_VERSION_NO_COMMIT => postcard::take_from_bytes::<LogRecordV1>(body)
            .map(|(r, rest)| (LogRecord::from(r), rest)),
        _ => {
            return Err(format!(
                "unsupported record version {version} (this build reads versions 1 to {RECORD_VERSION})"
            ));
        }
    }
    .map_err(|e| format!("undecodable record: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes after the record", rest.len()));
    }
    Ok(record)
}

/// How the replayed WAL fits the newest snapshot.
enum Reconciled {
    /// The WAL's last compaction is the snapshot's (or there is no snapshot).
    Clean,
    /// The snapshot is newer than the WAL's last compaction: a crash came between saving it
    /// and cutting the log. `conflict_from`: the log holds the snapshot's index with another
    /// term, so it and everything after conflict with the snapshot (the interrupted batch's
    /// `TruncateFrom`).
    Unfinished { conflict_from: Option<Index> },
}

/// Rebuilds the hard state and log from records, refusing anything a correct writer never wrote.
///
/// The log is `base` (the index just before `entries[0]`) plus contiguous entries. After old
/// segments were deleted, the first records seen may start anywhere at or below the snapshot:
/// `base` stays unknown until the first append or compaction record sets it.
struct Replay {
    hard_state: HardState,
    base: Option<Index>,
    entries: Vec<Entry>,
    /// The index of the latest `Compact` record (0 without one).
    compacted: Index,
    appends: VecDeque<(u64, Index)>,
}

impl Replay {
    /// `from_start`: the WAL still begins at its first LSN, so the log starts at index 1.
    fn new(from_start: bool) -> Replay {
        Replay {
            hard_state: HardState::default(),
            base: from_start.then_some(0),
            entries: Vec::new(),
            compacted: 0,
            appends: VecDeque::new(),
        }
    }

    fn last(&self) -> Option<(Index, u64)> {
        let base = self.base?;
        Some(self.entries.last().map_or((base, 0), |e| (e.index, e.term)))
    }

    fn apply(&mut self, lsn: u64, record: LogRecord) -> Result<(), String> {
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
                // Before the first append after deleted segments there is nothing visible to
                // truncate: what it cut was in those segments, all covered by the snapshot.
                let Some(base) = self.base else {
                    return Ok(());
                };
                let (last, _) = self.last().unwrap_or((base, 0));
                if index == 0 || index > last + 1 {
                    return Err(format!(
                        "truncation from index {index} but the log holds {}..={last}",
                        base + 1
                    ));
                }
                if index <= base {
                    // Cuts into entries compacted away: the visible log restarts there.
                    self.entries.clear();
                    self.base = Some(index - 1);
                } else {
                    self.entries.truncate((index - base - 1) as usize);
                }
            }
            LogRecord::Append(new) => {
                if let Some(last) = new.last() {
                    self.appends.push_back((lsn, last.index));
                }
                for e in new {
                    let (last, last_term) = match self.last() {
                        Some(l) => l,
                        None => {
                            self.base = Some(e.index.saturating_sub(1));
                            (e.index.saturating_sub(1), 0)
                        }
                    };
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
            LogRecord::Compact(index) => {
                match self.base {
                    Some(base) if index <= base => {}
                    Some(base) => {
                        let drop = ((index - base) as usize).min(self.entries.len());
                        self.entries.drain(..drop);
                        self.base = Some(index);
                    }
                    // Records before it were deleted: entries up to the newest snapshot may
                    // be missing, so the log's start stays unknown until the next append
                    // (`after_snapshot` checks that it starts within the snapshot).
                    None => {}
                }
                self.compacted = self.compacted.max(index);
            }
        }
        Ok(())
    }

    /// Checks that the log continues the snapshot ending at `index` (of `term`).
    fn after_snapshot(&self, index: Index, term: u64) -> Result<Reconciled, String> {
        let base = self.base.unwrap_or(index);
        if base > index {
            return Err(format!(
                "the log starts after index {base} but the snapshot ends at index {index}: \
                 entries {}..={base} are missing (a newer snapshot file was lost?)",
                index + 1
            ));
        }
        if self.compacted > index {
            return Err(format!(
                "the log was compacted up to index {} but the newest snapshot ends at {index}",
                self.compacted
            ));
        }
        if self.compacted == index || index == 0 {
            return Ok(Reconciled::Clean);
        }
        // Snapshot newer than the last compaction record: entry `index` tells whether the
        // log after it belongs to the snapshot's history.
        let conflict_from = match self.entry(index) {
            Some(e) if e.term != term => Some(index),
            _ => None,
        };
        Ok(Reconciled::Unfinished { conflict_from })
    }

    fn entry(&self, index: Index) -> Option<&Entry> {
        let base = self.base?;
        if index <= base {
            return None;
        }
        self.entries.get((index - base - 1) as usize)
    }

    /// The entries after `index`.
    fn kept(&mut self, index: Index) -> Vec<Entry> {
        let base = self.base.unwrap_or(index);
        let skip = (index.saturating_sub(base) as usize).min(self.entries.len());
        self.entries.split_off(skip)
    }
}

#[cfg(test)]
mod tests {
    use super::conformance::{self, StoreHarness};
    use super::*;

    /// A record written before hard states carried a commit index still reads (commit 0).
    #[test]
    fn a_version_1_hard_state_record_is_read_with_commit_0() {
        #[derive(Serialize)]
        enum V1 {
            HardState { term: u64, vote: Option<u64> },
        }
        let mut payload = vec![RECORD_VERSION_NO_COMMIT];
        payload.extend(
            postcard::to_allocvec(&V1::HardState {
                term: 7,
                vote: Some(2),
            })
            .unwrap(),
        );
        assert_eq!(
            decode_record(&payload),
            Ok(LogRecord::HardState(HardState {
                term: 7,
                vote: Some(2),
                commit: 0,
            }))
        );
        let hs = HardState {
            term: 7,
            vote: Some(2),
            commit: 12,
        };
        let mut current = vec![RECORD_VERSION];
        current.extend(postcard::to_allocvec(&LogRecord::HardState(hs)).unwrap());
        assert_eq!(decode_record(&current), Ok(LogRecord::HardState(hs)));
    }

    /// An append record written before configuration changes could carry the intent to
    /// promote (version 2, `ChangeKind` with three variants) still reads, change for change;
    /// a current record with the new change kind round-trips.
    #[test]
    fn a_version_2_append_of_a_configuration_change_is_read() {
        use keyval_core::{ChangeKind, ConfChange, EntryPayload, SingleChange, Transition};
        #[derive(Serialize)]
        enum KindV2 {
            _AddVoter,
            AddLearner,
            _Remove,
        }
        #[derive(Serialize)]
        struct ChangeV2 {
            kind: KindV2,
            node: u64,
            address: Option<String>,
        }
        #[derive(Serialize)]
        struct ConfChangeV2 {
            changes: Vec<ChangeV2>,
            transition: Transition,
        }
        #[derive(Serialize)]
        enum PayloadV2 {
            _Noop,
            _Command(()),
            ConfChange(ConfChangeV2),
        }
        #[derive(Serialize)]
        struct EntryV2 {
            term: u64,
            index: u64,
            payload: PayloadV2,
        }
        #[derive(Serialize)]
        enum RecordV2 {
            _HardState(HardState),
            Append(Vec<EntryV2>),
        }
        let old = RecordV2::Append(vec![EntryV2 {
            term: 2,
            index: 7,
            payload: PayloadV2::ConfChange(ConfChangeV2 {
                changes: vec![ChangeV2 {
                    kind: KindV2::AddLearner,
                    node: 4,
                    address: Some("h4:7004".into()),
                }],
                transition: Transition::Auto,
            }),
        }]);
        let mut payload = vec![RECORD_VERSION_NO_PROMOTE];
        payload.extend(postcard::to_allocvec(&old).unwrap());
        let change = |kind| ConfChange {
            changes: vec![SingleChange {
                kind,
                node: 4,
                address: Some("h4:7004".into()),
            }],
            transition: Transition::Auto,
        };
        let entry = |kind| Entry {
            term: 2,
            index: 7,
            payload: EntryPayload::ConfChange(change(kind)),
        };
        assert_eq!(
            decode_record(&payload),
            Ok(LogRecord::Append(vec![entry(ChangeKind::AddLearner)]))
        );
        let record = LogRecord::Append(vec![entry(ChangeKind::AddLearnerThenVoter)]);
        let mut current = vec![RECORD_VERSION];
        current.extend(postcard::to_allocvec(&record).unwrap());
        assert_eq!(decode_record(&current), Ok(record));
    }

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
            WalStore::open(&dir.join("wal"), &dir.join("snapshots"), opts).map(|(s, p, _)| (s, p))
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

    /// With small segments, steady compaction keeps the WAL to a few segments however much
    /// is written, and the snapshot directory to one file.
    #[test]
    fn compaction_bounds_the_wal_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = WalHarness {
            segment_bytes: 4096,
        };
        let (mut s, _) = h.open(dir.path()).expect("open");
        let value = [9u8; 100];
        let mut max_bytes = 0;
        for i in 1..=5000u64 {
            s.write(&[PersistOp::Append(vec![conformance::entry(i, 1, &value)])])
                .expect("write");
            if i % 100 == 0 {
                s.write(&[
                    PersistOp::SaveSnapshot(std::sync::Arc::new(conformance::snapshot(i - 10, 1))),
                    PersistOp::CompactLog(i - 10),
                ])
                .expect("compact");
            }
            s.sync().expect("sync");
            max_bytes = max_bytes.max(s.stats().wal_bytes);
        }
        let stats = s.stats();
        assert_eq!(stats.snapshots_saved, 50);
        assert!(stats.segments_removed > 100, "{stats:?}");
        // 100 entries of ~130 bytes between compactions is ~13 KB: a few 4 KiB segments.
        assert!(max_bytes < 32 << 10, "WAL grew to {max_bytes} bytes");
        drop(s);
        let snaps = std::fs::read_dir(dir.path().join("snapshots"))
            .expect("list")
            .count();
        assert_eq!(snaps, 1);
        let (_, p) = h.open(dir.path()).expect("reopen");
        assert_eq!(p.snapshot.map(|s| s.meta.last_index), Some(4990));
        assert_eq!(p.entries.first().map(|e| e.index), Some(4991));
        assert_eq!(p.entries.last().map(|e| e.index), Some(5000));
    }

    /// Deleting the newest snapshot after its compaction cut the WAL must not let the node
    /// start on an older state with a hole in the log.
    #[test]
    fn a_lost_snapshot_file_is_refused_not_papered_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = WalHarness { segment_bytes: 512 };
        let (mut s, _) = h.open(dir.path()).expect("open");
        for i in 1..=60u64 {
            s.write(&[PersistOp::Append(vec![conformance::entry(i, 1, b"v")])])
                .expect("write");
        }
        s.write(&[
            PersistOp::SaveSnapshot(std::sync::Arc::new(conformance::snapshot(50, 1))),
            PersistOp::CompactLog(50),
        ])
        .expect("compact");
        s.sync().expect("sync");
        drop(s);
        for f in std::fs::read_dir(dir.path().join("snapshots")).expect("list") {
            std::fs::remove_file(f.expect("entry").path()).expect("rm");
        }
        let err = h.open(dir.path()).expect_err("must refuse");
        let msg = err.to_string();
        assert!(msg.contains("does not continue snapshot"), "{msg}");
    }

    /// Random histories a correct core could write (appends, conflicts, leader compactions,
    /// installs that match or conflict or lie beyond the log, crashes in the middle of a
    /// batch) replayed against `MemStorage`, the reference semantics, with reopens in between.
    #[test]
    fn random_histories_recover_like_the_reference_model() {
        use keyval_core::sim::storage::MemStorage;
        for seed in 1..=60u64 {
            let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut next = move |n: u64| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng % n.max(1)
            };
            let dir = tempfile::tempdir().expect("tempdir");
            let h = WalHarness {
                segment_bytes: 256 + next(2048),
            };
            let (mut store, _) = h.open(dir.path()).expect("open");
            let mut model = MemStorage::default();
            let mut term = 1;
            for step in 0..150 {
                let last = model.last_index();
                let last_term = model.entries.last().map_or(0, |e| e.term);
                let term_of = |m: &MemStorage, i: Index| {
                    m.entries.get((i - m.offset - 1) as usize).map(|e| e.term)
                };
                let batch: Vec<PersistOp> = match next(10) {
                    0 => {
                        term += next(2);
                        vec![PersistOp::HardState(HardState {
                            term,
                            vote: Some(next(3) + 1),
                            commit: 0,
                        })]
                    }
                    1 if last > model.offset => {
                        let from = model.offset + 1 + next(last - model.offset);
                        term += 1;
                        vec![
                            PersistOp::TruncateFrom(from),
                            PersistOp::Append(
                                (from..from + 1 + next(4))
                                    .map(|i| conformance::entry(i, term, b"t"))
                                    .collect(),
                            ),
                        ]
                    }
                    2 if last > model.offset => {
                        // A leader's compaction.
                        let at = model.offset + 1 + next(last - model.offset);
                        let t = term_of(&model, at).expect("in log");
                        vec![
                            PersistOp::SaveSnapshot(std::sync::Arc::new(conformance::snapshot(
                                at, t,
                            ))),
                            PersistOp::CompactLog(at),
                        ]
                    }
                    3 => {
                        // A follower installing a leader's snapshot, as the core emits it.
                        let at = model.offset + 1 + next(last - model.offset + 10);
                        let matches = next(2) == 0 && at <= last;
                        let t = if matches {
                            term_of(&model, at).expect("in log")
                        } else {
                            term += 1;
                            term
                        };
                        let mut ops = vec![PersistOp::SaveSnapshot(std::sync::Arc::new(
                            conformance::snapshot(at, t),
                        ))];
                        let cut = at.max(model.offset + 1);
                        if !matches && last >= cut {
                            ops.push(PersistOp::TruncateFrom(cut));
                        }
                        ops.push(PersistOp::CompactLog(at));
                        ops
                    }
                    _ => {
                        let t = last_term.max(term);
                        vec![PersistOp::Append(
                            (last + 1..=last + 1 + next(6))
                                .map(|i| conformance::entry(i, t, &[step as u8; 40]))
                                .collect(),
                        )]
                    }
                };
                // A crash now and then: only a prefix of the batch reaches the disk.
                let crash = next(8) == 0;
                let written = if crash {
                    next(batch.len() as u64 + 1) as usize
                } else {
                    batch.len()
                };
                store.write(&batch[..written]).expect("write");
                store.sync().expect("sync");
                // What recovery must show: the prefix, except that a prefix ending after a
                // SaveSnapshot is completed (the interrupted compaction is finished).
                let finish = batch[..written]
                    .iter()
                    .any(|op| matches!(op, PersistOp::SaveSnapshot(_)));
                let upto = if finish { batch.len() } else { written };
                for op in &batch[..upto] {
                    model.apply(op);
                }
                if crash || next(10) == 0 {
                    drop(store);
                    let (s, p) = h
                        .open(dir.path())
                        .unwrap_or_else(|e| panic!("seed {seed} step {step}: reopen: {e}"));
                    let want = model.load();
                    assert_eq!(p.hard_state, want.hard_state, "seed {seed} step {step}");
                    assert_eq!(p.snapshot, want.snapshot, "seed {seed} step {step}");
                    assert_eq!(p.entries, want.entries, "seed {seed} step {step}");
                    store = s;
                }
            }
        }
    }
}
