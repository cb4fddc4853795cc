//! A conformance suite any [`LogStore`] can run: append, truncate, reopen, torn tail, corruption.
//!
//! It is a plain module (not `#[cfg(test)]`) so that another store implementation, in this crate
//! or elsewhere, proves itself against the same checks by implementing [`StoreHarness`] and
//! calling [`run_all`] from a test. Checks panic with a message on failure, like assertions.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use keyval_core::{ClientRequest, Entry, EntryPayload, HardState, KvOp, PersistOp, Persisted};

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
    let checks: [(&str, Check<H>); 7] = [
        ("empty store recovers empty", empty_store_recovers_empty),
        ("append, sync, reopen", append_sync_reopen),
        ("hard state: latest wins", hard_state_latest_wins),
        ("truncate then append", truncate_then_append),
        ("reopen and continue", reopen_and_continue),
        ("torn tail recovers a prefix", torn_tail_recovers_prefix),
        ("corruption is refused", corruption_is_refused),
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
        };
        write_sync(&mut s, &[PersistOp::HardState(hs)]);
    }
    drop(s);
    let (_, p) = reopen(h, dir);
    assert_eq!(
        p.hard_state,
        HardState {
            term: 5,
            vote: None
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
