//! A conformance suite any [`LogStore`] can run: append, truncate, reopen, torn tail, corruption,
//! snapshots and compaction. Snapshot checks compare with the simulator's `MemStorage`, the
//! reference semantics of every [`PersistOp`].
//!
//! It is a plain module (not `#[cfg(test)]`) so that another store implementation, in this crate
//! or elsewhere, proves itself against the same checks by implementing [`StoreHarness`] and
//! calling [`run_all`] from a test. Checks panic with a message on failure, like assertions.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use keyval_core::sim::storage::MemStorage;
use keyval_core::{
    ClientRequest, Entry, EntryPayload, HardState, KvOp, PersistOp, Persisted, Snapshot,
    SnapshotMeta,
};

use super::{LogStore, StorageError};

/// How the suite opens a store and how it damages one on disk.
pub trait StoreHarness {
    type Store: LogStore;

    /// Opens (creating if needed) the store in `dir` and returns what it recovered.
    fn open(&self, dir: &Path) -> Result<(Self::Store, Persisted), StorageError>;

    /// Simulates a crash in the middle of the last write: cuts `bytes` off the newest file.
    fn tear_tail(&self, dir: &Path, bytes: u64) {
        let file = files(dir).pop().expect("store wrote no file");
        let len = fs::metadata(&file).expect("stat").len();
        let f = OpenOptions::new().write(true).open(&file).expect("open");
        f.set_len(len.saturating_sub(bytes)).expect("truncate");
    }

    /// Where the store keeps its snapshot files (the damage checks below write there).
    fn snapshot_dir(&self, dir: &Path) -> PathBuf {
        dir.join("snapshots")
    }

    /// Flips one byte in the middle of the oldest file, far from its end: damage no crash can
    /// explain, which the store must refuse rather than repair.
    fn corrupt_middle(&self, dir: &Path) {
        let file = files(dir).into_iter().next().expect("store wrote no file");
        let mut bytes = fs::read(&file).expect("read");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x5a;
        fs::write(&file, bytes).expect("write");
    }
}

/// Regular files under `dir` (recursively), sorted by path, skipping lock files.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n != "LOCK") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A command entry whose value makes every entry distinguishable.
pub fn entry(index: u64, term: u64, value: &[u8]) -> Entry {
    Entry {
        index,
        term,
        payload: EntryPayload::Command(ClientRequest {
            client_id: 1,
            seq: index,
            op: KvOp::Put {
                key: format!("k{index}").into_bytes(),
                value: value.to_vec(),
            },
        }),
    }
}

fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range.map(|i| entry(i, term, &i.to_le_bytes())).collect()
}

fn write_sync<S: LogStore>(store: &mut S, ops: &[PersistOp]) {
    store.write(ops).expect("write");
    store.sync().expect("sync");
}

fn reopen<H: StoreHarness>(h: &H, dir: &Path) -> (H::Store, Persisted) {
    match h.open(dir) {
        Ok(x) => x,
        Err(e) => panic!("reopen failed: {e}"),
    }
}

/// Runs every check, each in a fresh temporary directory.
pub fn run_all<H: StoreHarness>(h: &H) {
    type Check<H> = fn(&H, &Path);
    let checks: [(&str, Check<H>); 15] = [
        ("empty store recovers empty", empty_store_recovers_empty),
        ("append, sync, reopen", append_sync_reopen),
        ("hard state: latest wins", hard_state_latest_wins),
        ("truncate then append", truncate_then_append),
        ("reopen and continue", reopen_and_continue),
        ("torn tail recovers a prefix", torn_tail_recovers_prefix),
        ("corruption is refused", corruption_is_refused),
        ("snapshot save, compact, reopen", snapshot_compact_reopen),
        ("repeated compaction and reopen", repeated_compaction_reopen),
        (
            "crash between save and compact",
            crash_between_save_and_compact,
        ),
        (
            "crash during a conflicting install",
            crash_during_conflicting_install,
        ),
        ("install beyond the log end", install_beyond_log_end),
        ("corrupt snapshot file is refused", corrupt_snapshot_refused),
        (
            "truncated snapshot file is refused",
            truncated_snapshot_refused,
        ),
        ("stale tmp file is removed", stale_tmp_removed),
    ];
    for (name, check) in checks {
        let dir = tempfile::tempdir().expect("tempdir");
        eprintln!("log store conformance: {name}");
        check(h, dir.path());
    }
}

pub fn empty_store_recovers_empty<H: StoreHarness>(h: &H, dir: &Path) {
    let (_, p) = reopen(h, dir);
    assert_eq!(p.hard_state, HardState::default());
    assert!(p.entries.is_empty());
    let (_, p) = reopen(h, dir);
    assert!(
        p.entries.is_empty(),
        "reopening an empty store invented entries"
    );
}

pub fn append_sync_reopen<H: StoreHarness>(h: &H, dir: &Path) {
    let (mut s, _) = reopen(h, dir);
    let hs = HardState {
        term: 2,
        vote: Some(3),
        commit: 0,
    };
    write_sync(
        &mut s,
        &[
            PersistOp::HardState(hs),
            PersistOp::Append(entries(1..=3, 1)),
            PersistOp::Append(entries(4..=10, 2)),
        ],
    );
    drop(s);
    let (_, p) = reopen(h, dir);
    assert_eq!(p.hard_state, hs);
    let mut want = entries(1..=3, 1);
    want.extend(entries(4..=10, 2));
    assert_eq!(p.entries, want);
}

pub fn hard_state_latest_wins<H: StoreHarness>(h: &H, dir: &Path) {
    let (mut s, _) = reopen(h, dir);
    for term in 1..=5 {
        let hs = HardState {
            term,
            vote: (term % 2 == 0).then_some(term),
            commit: 0,
        };
        write_sync(&mut s, &[PersistOp::HardState(hs)]);
    }
    drop(s);
    let (_, p) = reopen(h, dir);
    assert_eq!(
        p.hard_state,
        HardState {
            term: 5,
            vote: None,
            commit: 0,
        }
    );
}

pub fn truncate_then_append<H: StoreHarness>(h: &H, dir: &Path) {
    let (mut s, _) = reopen(h, dir);
    write_sync(&mut s, &[PersistOp::Append(entries(1..=8, 1))]);
    // A follower resolving a conflict: entries 5.. of term 1 are replaced by term 2 ones.
    write_sync(
        &mut s,
        &[
            PersistOp::TruncateFrom(5),
            PersistOp::Append(entries(5..=6, 2)),
        ],
    );
    drop(s);
    let (mut s, p) = reopen(h, dir);
    let mut want = entries(1..=4, 1);
    want.extend(entries(5..=6, 2));
    assert_eq!(p.entries, want);
    // Truncating everything is allowed too.
    write_sync(&mut s, &[PersistOp::TruncateFrom(1)]);
    drop(s);
    let (_, p) = reopen(h, dir);
    assert!(p.entries.is_empty());
}

pub fn reopen_and_continue<H: StoreHarness>(h: &H, dir: &Path) {
    let mut want = Vec::new();
    for round in 0..5u64 {
        let (mut s, p) = reopen(h, dir);
        assert_eq!(p.entries, want, "round {round}");
        let next = entries(round * 20 + 1..=round * 20 + 20, round + 1);
        write_sync(&mut s, &[PersistOp::Append(next.clone())]);
        want.extend(next);
    }
    let (_, p) = reopen(h, dir);
    assert_eq!(p.entries, want);
}

pub fn torn_tail_recovers_prefix<H: StoreHarness>(h: &H, dir: &Path) {
    let (mut s, _) = reopen(h, dir);
    let batches: Vec<Vec<Entry>> = (0..10u64)
        .map(|b| entries(b * 3 + 1..=b * 3 + 3, 1))
        .collect();
    for b in &batches {
        write_sync(&mut s, &[PersistOp::Append(b.clone())]);
    }
    drop(s);
    h.tear_tail(dir, 5);
    let (mut s, p) = reopen(h, dir);
    let all: Vec<Entry> = batches.concat();
    assert!(
        p.entries.len() >= all.len() - 3,
        "a torn last write may lose that write only (recovered {} of {})",
        p.entries.len(),
        all.len()
    );
    assert_eq!(p.entries[..], all[..p.entries.len()], "not a prefix");
    // The repaired store accepts appends where the recovered log ends.
    let next = p.entries.len() as u64 + 1;
    write_sync(&mut s, &[PersistOp::Append(entries(next..=next + 1, 2))]);
    drop(s);
    let (_, p2) = reopen(h, dir);
    assert_eq!(p2.entries.len() as u64, next + 1);
}

pub fn corruption_is_refused<H: StoreHarness>(h: &H, dir: &Path) {
    let (mut s, _) = reopen(h, dir);
    for b in 0..20u64 {
        write_sync(
            &mut s,
            &[PersistOp::Append(vec![entry(b + 1, 1, &[b as u8; 64])])],
        );
    }
    drop(s);
    h.corrupt_middle(dir);
    match h.open(dir) {
        Ok((_, p)) => panic!(
            "a flipped byte in the middle was not detected; recovered {} entries",
            p.entries.len()
        ),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("corrupt"), "unclear corruption error: {msg}");
        }
    }
}

/// A snapshot whose state bytes identify it (the store never looks inside them).
pub fn snapshot(index: u64, term: u64) -> Snapshot {
    Snapshot {
        meta: SnapshotMeta {
            last_index: index,
            last_term: term,
            membership: keyval_core::Membership::bootstrap([1, 2, 3], Default::default()),
        },
        data: format!("state at {index}@{term}").into_bytes().repeat(8),
    }
}

/// Writes and syncs `ops` to the store and applies them to the reference model.
fn both<S: LogStore>(store: &mut S, model: &mut MemStorage, ops: &[PersistOp]) {
    write_sync(store, ops);
    for op in ops {
        model.apply(op);
    }
}

/// Reopens and checks the store recovers exactly what the reference model loads.
fn reopen_matches<H: StoreHarness>(h: &H, dir: &Path, model: &MemStorage) -> H::Store {
    let (s, p) = reopen(h, dir);
    let want = model.load();
    assert_eq!(p.hard_state, want.hard_state, "hard state");
    assert_eq!(p.snapshot, want.snapshot, "snapshot");
    assert_eq!(
        p.entries
            .iter()
            .map(|e| (e.index, e.term))
            .collect::<Vec<_>>(),
        want.entries
            .iter()
            .map(|e| (e.index, e.term))
            .collect::<Vec<_>>(),
        "log after the snapshot"
    );
    assert_eq!(p.entries, want.entries);
    s
}

pub fn snapshot_compact_reopen<H: StoreHarness>(h: &H, dir: &Path) {
    let (mut s, _) = reopen(h, dir);
    let mut m = MemStorage::default();
    let hs = HardState {
        term: 2,
        vote: Some(1),
        commit: 0,
    };
    both(
        &mut s,
        &mut m,
        &[
            PersistOp::HardState(hs),
            PersistOp::Append(entries(1..=30, 2)),
        ],
    );
    both(
        &mut s,
        &mut m,
        &[
            PersistOp::SaveSnapshot(std::sync::Arc::new(snapshot(20, 2))),
            PersistOp::CompactLog(20),
        ],
    );
    drop(s);
    let mut s = reopen_matches(h, dir, &m);
    both(&mut s, &mut m, &[PersistOp::Append(entries(31..=35, 2))]);
    drop(s);
    let mut s = reopen_matches(h, dir, &m);
    // A compaction of the whole log leaves it empty, starting after the snapshot.
    both(
        &mut s,
        &mut m,
        &[
            PersistOp::SaveSnapshot(std::sync::Arc::new(snapshot(35, 2))),
            PersistOp::CompactLog(35),
        ],
    );
    drop(s);
    let mut s = reopen_matches(h, dir, &m);
    both(&mut s, &mut m, &[PersistOp::Append(entries(36..=36, 3))]);
    drop(s);
    reopen_matches(h, dir, &m);
}

pub fn repeated_compaction_reopen<H: StoreHarness>(h: &H, dir: &Path) {
    let (mut s, _) = reopen(h, dir);
    let mut m = MemStorage::default();
    let mut next = 1;
    for round in 1..=12u64 {
        both(
            &mut s,
            &mut m,
            &[
                PersistOp::HardState(HardState {
                    term: round,
                    vote: Some(round % 3 + 1),
                    commit: 0,
                }),
                PersistOp::Append(entries(next..=next + 24, round)),
            ],
        );
        next += 25;
        // A follower conflict now and then, below what gets compacted next.
        if round % 4 == 0 {
            both(
                &mut s,
                &mut m,
                &[
                    PersistOp::TruncateFrom(next - 5),
                    PersistOp::Append(entries(next - 5..=next - 1, round)),
                ],
            );
        }
        let at = next - 8;
        both(
            &mut s,
            &mut m,
            &[
                PersistOp::SaveSnapshot(std::sync::Arc::new(snapshot(at, round))),
                PersistOp::CompactLog(at),
            ],
        );
        if round % 3 == 0 {
            drop(s);
            s = reopen_matches(h, dir, &m);
        }
    }
    drop(s);
    reopen_matches(h, dir, &m);
}

pub fn crash_between_save_and_compact<H: StoreHarness>(h: &H, dir: &Path) {
    let (mut s, _) = reopen(h, dir);
    let mut m = MemStorage::default();
    both(&mut s, &mut m, &[PersistOp::Append(entries(1..=30, 1))]);
    both(
        &mut s,
        &mut m,
        &[
            PersistOp::SaveSnapshot(std::sync::Arc::new(snapshot(10, 1))),
            PersistOp::CompactLog(10),
        ],
    );
    // The crash: the snapshot is durable, the compaction after it never ran.
    write_sync(
        &mut s,
        &[PersistOp::SaveSnapshot(std::sync::Arc::new(snapshot(
            25, 1,
        )))],
    );
    drop(s);
    // Recovery finishes the batch: the same state as if the compaction had happened.
    m.apply(&PersistOp::SaveSnapshot(std::sync::Arc::new(snapshot(
        25, 1,
    ))));
    m.apply(&PersistOp::CompactLog(25));
    let mut s = reopen_matches(h, dir, &m);
    both(&mut s, &mut m, &[PersistOp::Append(entries(31..=33, 1))]);
    drop(s);
    reopen_matches(h, dir, &m);
}

pub fn crash_during_conflicting_install<H: StoreHarness>(h: &H, dir: &Path) {
    let (mut s, _) = reopen(h, dir);
    let mut m = MemStorage::default();
    both(&mut s, &mut m, &[PersistOp::Append(entries(1..=30, 1))]);
    // A leader of term 2 installs a snapshot at 25 whose entry 25 is not ours: the core emits
    // SaveSnapshot, TruncateFrom(25), CompactLog(25). First the full batch, on a copy...
    let install = [
        PersistOp::SaveSnapshot(std::sync::Arc::new(snapshot(25, 2))),
        PersistOp::TruncateFrom(25),
        PersistOp::CompactLog(25),
    ];
    // ...but the crash comes right after the snapshot is durable.
    write_sync(&mut s, &install[..1]);
    drop(s);
    for op in &install {
        m.apply(op);
    }
    // Entries 26..30 of term 1 do not follow the snapshot's entry 25 of term 2: gone.
    let mut s = reopen_matches(h, dir, &m);
    both(&mut s, &mut m, &[PersistOp::Append(entries(26..=28, 2))]);
    drop(s);
    let mut s = reopen_matches(h, dir, &m);
    // And the complete batch, on a log that conflicts again.
    both(&mut s, &mut m, &[PersistOp::Append(entries(29..=40, 2))]);
    both(
        &mut s,
        &mut m,
        &[
            PersistOp::SaveSnapshot(std::sync::Arc::new(snapshot(35, 3))),
            PersistOp::TruncateFrom(35),
            PersistOp::CompactLog(35),
            PersistOp::Append(entries(36..=37, 3)),
        ],
    );
    drop(s);
    reopen_matches(h, dir, &m);
}

pub fn install_beyond_log_end<H: StoreHarness>(h: &H, dir: &Path) {
    let (mut s, _) = reopen(h, dir);
    let mut m = MemStorage::default();
    both(&mut s, &mut m, &[PersistOp::Append(entries(1..=10, 1))]);
    // A follower far behind: the snapshot ends after its log, nothing to truncate.
    both(
        &mut s,
        &mut m,
        &[
            PersistOp::SaveSnapshot(std::sync::Arc::new(snapshot(50, 2))),
            PersistOp::CompactLog(50),
        ],
    );
    drop(s);
    let mut s = reopen_matches(h, dir, &m);
    both(&mut s, &mut m, &[PersistOp::Append(entries(51..=55, 2))]);
    drop(s);
    let mut s = reopen_matches(h, dir, &m);
    // The same, with the crash right after the snapshot.
    write_sync(
        &mut s,
        &[PersistOp::SaveSnapshot(std::sync::Arc::new(snapshot(
            70, 3,
        )))],
    );
    drop(s);
    m.apply(&PersistOp::SaveSnapshot(std::sync::Arc::new(snapshot(
        70, 3,
    ))));
    m.apply(&PersistOp::CompactLog(70));
    let mut s = reopen_matches(h, dir, &m);
    both(&mut s, &mut m, &[PersistOp::Append(entries(71..=72, 3))]);
    drop(s);
    reopen_matches(h, dir, &m);
}

fn snapshot_files<H: StoreHarness>(h: &H, dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(h.snapshot_dir(dir))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn store_with_snapshot<H: StoreHarness>(h: &H, dir: &Path) -> PathBuf {
    let (mut s, _) = reopen(h, dir);
    write_sync(&mut s, &[PersistOp::Append(entries(1..=20, 1))]);
    write_sync(
        &mut s,
        &[
            PersistOp::SaveSnapshot(std::sync::Arc::new(snapshot(15, 1))),
            PersistOp::CompactLog(15),
        ],
    );
    drop(s);
    let files = snapshot_files(h, dir);
    assert_eq!(files.len(), 1, "one snapshot file expected: {files:?}");
    files[0].clone()
}

fn assert_refused_naming<H: StoreHarness>(h: &H, dir: &Path, file: &Path) {
    match h.open(dir) {
        Ok((_, p)) => panic!(
            "a damaged snapshot file was accepted (snapshot {:?})",
            p.snapshot.map(|s| s.meta)
        ),
        Err(e) => {
            let msg = e.to_string();
            let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("?");
            assert!(msg.contains("corrupt"), "unclear error: {msg}");
            assert!(msg.contains(name), "error does not name {name}: {msg}");
            assert!(!msg.contains('\n'), "not one line: {msg}");
        }
    }
}

pub fn corrupt_snapshot_refused<H: StoreHarness>(h: &H, dir: &Path) {
    let file = store_with_snapshot(h, dir);
    let mut bytes = fs::read(&file).expect("read");
    let at = bytes.len() - 3;
    bytes[at] ^= 0x40;
    fs::write(&file, bytes).expect("write");
    assert_refused_naming(h, dir, &file);
}

pub fn truncated_snapshot_refused<H: StoreHarness>(h: &H, dir: &Path) {
    let file = store_with_snapshot(h, dir);
    let len = fs::metadata(&file).expect("stat").len();
    let f = OpenOptions::new().write(true).open(&file).expect("open");
    f.set_len(len / 2).expect("truncate");
    drop(f);
    assert_refused_naming(h, dir, &file);
    // Even down to a few bytes (a torn header).
    let f = OpenOptions::new().write(true).open(&file).expect("open");
    f.set_len(5).expect("truncate");
    drop(f);
    assert_refused_naming(h, dir, &file);
}

pub fn stale_tmp_removed<H: StoreHarness>(h: &H, dir: &Path) {
    let file = store_with_snapshot(h, dir);
    // A crash in the middle of writing the next snapshot leaves a partial temp file.
    let tmp = h.snapshot_dir(dir).join("snapshot.tmp");
    fs::write(&tmp, b"KVSNAP\0\x01partial").expect("write tmp");
    let (_, p) = reopen(h, dir);
    assert_eq!(p.snapshot, Some(snapshot(15, 1)));
    assert_eq!(
        p.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
        (16..=20).collect::<Vec<_>>()
    );
    assert!(!tmp.exists(), "stale temp file left behind");
    assert_eq!(snapshot_files(h, dir), vec![file]);
}
