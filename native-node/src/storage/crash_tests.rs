//! Crash consistency of the WAL store and its snapshot files under power loss.
//!
//! A workload runs on [`SimFs`], which records every write, fsync, rename and directory fsync.
//! Then, for every prefix of that record (every crash point) and several ways the unsynced
//! tail could have reached the disk (none of it, all of it, seeded per-file prefixes with torn
//! last writes, which also reorders writes across files), recovery runs on the resulting disk
//! image. It must start, with every acknowledged operation (everything before the last
//! successful `sync`) and a state the writer actually passed through (the reference model
//! `MemStorage` after some later operation) — never a state that mixes or invents. The
//! recovered store must then take new writes.

use std::path::Path;
use std::sync::Arc;

use keyval_core::sim::storage::MemStorage;
use keyval_core::{HardState, PersistOp, Persisted};

use super::conformance::{entry, snapshot};
use super::{LogStore, StorageError, WalStore};
use crate::wal::WalOptions;
use crate::wal::simfs::{Fault, Image, Plan, SimFs};

const WAL: &str = "/d/wal";
const SNAPS: &str = "/d/snapshots";

fn opts(segment_bytes: u64) -> WalOptions {
    WalOptions {
        segment_bytes,
        fsync: true,
    }
}

fn open(fs: &SimFs, segment_bytes: u64) -> Result<(WalStore, Persisted), StorageError> {
    WalStore::open_with(
        Arc::new(fs.clone()),
        Path::new(WAL),
        Path::new(SNAPS),
        opts(segment_bytes),
    )
    .map(|(s, p, _)| (s, p))
}

/// A recorded workload: the file system's record, the model state after every operation
/// (where the model is in a loadable state), and the acknowledgement points.
struct Recorded {
    fs: SimFs,
    /// (operations applied, model state).
    states: Vec<(usize, Persisted)>,
    /// (events recorded when `sync` returned Ok, operations acknowledged by it).
    acks: Vec<(usize, usize)>,
    segment_bytes: u64,
}

fn loadable(m: &MemStorage) -> Option<Persisted> {
    (m.offset == m.snapshot_index()).then(|| m.load())
}

fn record(batches: &[Vec<PersistOp>], segment_bytes: u64) -> Recorded {
    let fs = SimFs::new(Image::with_dirs(&["/d"]));
    let (mut store, _) = open(&fs, segment_bytes).expect("open a fresh store");
    let mut model = MemStorage::default();
    let mut states = vec![(0, model.load())];
    let mut acks = vec![(fs.events(), 0)];
    let mut ops = 0;
    for batch in batches {
        store.write(batch).expect("write");
        for op in batch {
            model.apply(op);
            ops += 1;
            if let Some(p) = loadable(&model) {
                states.push((ops, p));
            }
        }
        store.sync().expect("sync");
        acks.push((fs.events(), ops));
    }
    Recorded {
        fs,
        states,
        acks,
        segment_bytes,
    }
}

fn same(a: &Persisted, b: &Persisted) -> bool {
    a.hard_state == b.hard_state && a.snapshot == b.snapshot && a.entries == b.entries
}

fn describe(p: &Persisted) -> String {
    format!(
        "hard state {:?}, snapshot {:?}, entries {:?}",
        p.hard_state,
        p.snapshot
            .as_ref()
            .map(|s| (s.meta.last_index, s.meta.last_term)),
        p.entries
            .iter()
            .map(|e| (e.index, e.term))
            .collect::<Vec<_>>()
    )
}

/// Recovers from the image a crash after `at` events left under `plan`, and checks it.
fn check_crash(rec: &Recorded, at: usize, plan: &Plan) {
    let image = rec.fs.crash_image(at, plan);
    let fs = SimFs::new(image.clone());
    let acked = rec
        .acks
        .iter()
        .filter(|(events, _)| *events <= at)
        .map(|(_, ops)| *ops)
        .max()
        .unwrap_or(0);
    let ctx = || format!("crash after event {at} of {} ({plan:?})", rec.fs.events());
    let (mut store, got) = match open(&fs, rec.segment_bytes) {
        Ok(x) => x,
        Err(e) => panic!(
            "{}: recovery refused a disk a power loss can leave: {e}\nfiles: {:?}",
            ctx(),
            image.paths()
        ),
    };
    assert!(
        rec.states
            .iter()
            .any(|(ops, s)| *ops >= acked && same(s, &got)),
        "{}: recovered a state the writer never acknowledged or passed through \
         ({acked} operations acknowledged):\n  {}",
        ctx(),
        describe(&got)
    );
    // The recovered store takes new writes, and they survive a clean reopen.
    let next = got
        .entries
        .last()
        .map(|e| e.index)
        .or(got.snapshot.as_ref().map(|s| s.meta.last_index))
        .unwrap_or(0)
        + 1;
    let term = got.hard_state.term.max(1) + 1;
    store
        .write(&[
            PersistOp::HardState(HardState {
                term,
                vote: Some(1),
                commit: 0,
            }),
            PersistOp::Append(vec![entry(next, term, b"after")]),
        ])
        .unwrap_or_else(|e| panic!("{}: write after recovery: {e}", ctx()));
    store
        .sync()
        .unwrap_or_else(|e| panic!("{}: sync after recovery: {e}", ctx()));
    drop(store);
    let (_, again) = open(&fs, rec.segment_bytes)
        .unwrap_or_else(|e| panic!("{}: reopen after recovery: {e}", ctx()));
    assert_eq!(again.hard_state.term, term, "{}", ctx());
    assert_eq!(
        again.entries.last().map(|e| e.index),
        Some(next),
        "{}",
        ctx()
    );
}

/// Every crash point, each with the plans: nothing unsynced, everything, and `random`
/// seeded partial outcomes. Returns the number of crash images recovered.
fn every_crash_point(rec: &Recorded, random: u64) -> usize {
    let mut checked = 0;
    for at in 0..=rec.fs.events() {
        let mut plans = vec![Plan::DropUnsynced, Plan::KeepAll];
        plans.extend((0..random).map(|s| Plan::Random(s * 7919 + at as u64)));
        for plan in &plans {
            check_crash(rec, at, plan);
            checked += 1;
        }
    }
    println!(
        "{checked} crash images recovered over {} crash points",
        rec.fs.events() + 1
    );
    checked
}

fn appends(from: u64, to: u64, term: u64) -> PersistOp {
    PersistOp::Append(
        (from..=to)
            .map(|i| entry(i, term, &[i as u8; 30]))
            .collect(),
    )
}

fn hs(term: u64, vote: u64) -> PersistOp {
    PersistOp::HardState(HardState {
        term,
        vote: Some(vote),
        commit: 0,
    })
}

#[test]
fn crash_anywhere_in_appends_and_segment_rolls() {
    let batches = vec![
        vec![hs(1, 1), appends(1, 3, 1)],
        vec![appends(4, 6, 1)],
        vec![appends(7, 12, 1)],
        vec![hs(2, 2), appends(13, 15, 2)],
    ];
    // ~70-byte records in 400-byte segments: several rolls.
    let rec = record(&batches, 400);
    let n = every_crash_point(&rec, 16);
    assert!(n > 100, "only {n} crash images");
}

#[test]
fn crash_anywhere_in_truncation() {
    let batches = vec![
        vec![hs(1, 1), appends(1, 6, 1)],
        vec![hs(2, 2), PersistOp::TruncateFrom(4), appends(4, 5, 2)],
        vec![hs(3, 3), PersistOp::TruncateFrom(2), appends(2, 8, 3)],
    ];
    every_crash_point(&record(&batches, 400), 16);
}

#[test]
fn crash_anywhere_in_snapshot_save_and_compaction() {
    let batches = vec![
        vec![hs(1, 1), appends(1, 10, 1)],
        vec![
            PersistOp::SaveSnapshot(std::sync::Arc::new(snapshot(6, 1))),
            PersistOp::CompactLog(6),
        ],
        vec![appends(11, 16, 1)],
        vec![
            PersistOp::SaveSnapshot(std::sync::Arc::new(snapshot(14, 1))),
            PersistOp::CompactLog(14),
        ],
        vec![appends(17, 18, 1)],
    ];
    let n = every_crash_point(&record(&batches, 400), 16);
    assert!(n > 100, "only {n} crash images");
}

#[test]
fn crash_anywhere_in_a_follower_snapshot_install() {
    let batches = vec![
        vec![hs(1, 1), appends(1, 5, 1)],
        // A conflicting snapshot beyond the log: the follower's log is replaced.
        vec![
            hs(2, 2),
            PersistOp::SaveSnapshot(std::sync::Arc::new(snapshot(9, 2))),
            PersistOp::TruncateFrom(2),
            PersistOp::CompactLog(9),
        ],
        vec![appends(10, 12, 2)],
    ];
    every_crash_point(&record(&batches, 400), 16);
}

/// Longer seeded workloads (appends, elections, conflicts, compactions, installs), crashed at
/// random points with random outcomes.
#[test]
fn crash_at_random_points_in_long_workloads() {
    let mut images = 0;
    for seed in 1..=24u64 {
        let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n.max(1)
        };
        let mut model = MemStorage::default();
        let mut batches = Vec::new();
        let mut term = 1;
        for _ in 0..60 {
            let last = model.last_index();
            let batch = match next(8) {
                0 => {
                    term += 1;
                    vec![hs(term, next(3) + 1)]
                }
                1 if last > model.offset + 1 => {
                    let from = model.offset + 1 + next(last - model.offset);
                    term += 1;
                    vec![
                        hs(term, 1),
                        PersistOp::TruncateFrom(from),
                        appends(from, from + next(4), term),
                    ]
                }
                2 if last > model.offset => {
                    let at = model.offset + 1 + next(last - model.offset);
                    let t = model.entries[(at - model.offset - 1) as usize].term;
                    vec![
                        PersistOp::SaveSnapshot(std::sync::Arc::new(snapshot(at, t))),
                        PersistOp::CompactLog(at),
                    ]
                }
                _ => {
                    let t = model.entries.last().map_or(term, |e| e.term.max(term));
                    vec![appends(last + 1, last + 1 + next(5), t)]
                }
            };
            for op in &batch {
                model.apply(op);
            }
            batches.push(batch);
        }
        let rec = record(&batches, 300 + next(1000));
        for _ in 0..300 {
            let at = next(rec.fs.events() as u64 + 1) as usize;
            check_crash(&rec, at, &Plan::Random(next(u64::MAX)));
            images += 1;
        }
    }
    assert_eq!(images, 24 * 300);
}

/// A failed fsync or a full disk: the store refuses every later write (no retry of the failed
/// fsync, which could report success for pages the kernel already dropped), and a restart from
/// whatever reached the disk recovers every acknowledged operation.
#[test]
fn fsync_failure_and_enospc_stop_writes_and_lose_nothing_acknowledged() {
    for fault in (0..40).flat_map(|n| [Fault::FsyncEio(n), Fault::WriteEnospc(n)]) {
        let fs = SimFs::new(Image::with_dirs(&["/d"]));
        let (mut store, _) = open(&fs, 400).expect("open");
        fs.inject(fault);
        let mut model = MemStorage::default();
        let mut acked = model.load();
        let mut failed = false;
        for b in 0..12u64 {
            let batch = vec![hs(b + 1, 1), appends(b * 3 + 1, b * 3 + 3, b + 1)];
            let result = store.write(&batch).and_then(|()| store.sync());
            if failed {
                assert!(
                    result.is_err(),
                    "{fault:?}: a write was accepted after a failure"
                );
                continue;
            }
            match result {
                Ok(()) => {
                    for op in &batch {
                        model.apply(op);
                    }
                    acked = model.load();
                }
                Err(e) => {
                    failed = true;
                    let msg = e.to_string();
                    assert!(
                        msg.contains("fsync") || msg.contains("write") || msg.contains("create"),
                        "{fault:?}: unclear error: {msg}"
                    );
                }
            }
        }
        assert_eq!(
            fs.fsyncs_after_failure(),
            0,
            "{fault:?}: fsync retried after a failure"
        );
        drop(store);
        for plan in [Plan::DropUnsynced, Plan::KeepAll, Plan::Random(7)] {
            let image = fs.crash_image(fs.events(), &plan);
            let (_, got) = open(&SimFs::new(image), 400)
                .unwrap_or_else(|e| panic!("{fault:?} {plan:?}: restart refused: {e}"));
            assert!(
                got.hard_state.term >= acked.hard_state.term,
                "{fault:?} {plan:?}: lost the acknowledged hard state"
            );
            for e in &acked.entries {
                assert!(
                    got.entries.iter().any(|g| g == e),
                    "{fault:?} {plan:?}: lost acknowledged entry {}",
                    e.index
                );
            }
        }
    }
}

/// A store opened in a data directory that does not exist yet: after a power loss the
/// directories themselves must still be there, or every synced record vanishes with them.
#[test]
fn new_directories_survive_power_loss() {
    let fs = SimFs::new(Image::with_dirs(&["/d"]));
    let open_nested = |fs: &SimFs| {
        WalStore::open_with(
            Arc::new(fs.clone()),
            Path::new("/d/node1/wal"),
            Path::new("/d/node1/snapshots"),
            opts(4096),
        )
    };
    let (mut store, _, _) = open_nested(&fs).expect("open");
    store.write(&[hs(3, 1), appends(1, 4, 3)]).expect("write");
    store.sync().expect("sync");
    drop(store);
    let crashed = SimFs::new(fs.crash_image(fs.events(), &Plan::DropUnsynced));
    let (_, got, _) = open_nested(&crashed).expect("reopen after power loss");
    assert_eq!(
        got.hard_state.term, 3,
        "the acknowledged hard state is gone"
    );
    assert_eq!(got.entries.len(), 4, "acknowledged entries are gone");
}

/// Without its WAL a node would start from the snapshot with term 0 and no vote, and could
/// vote twice in a term it already voted in: refuse, naming what is missing.
#[test]
fn a_missing_wal_next_to_a_snapshot_is_refused() {
    for how in ["removed", "emptied"] {
        let fs = SimFs::new(Image::with_dirs(&["/d"]));
        let (mut store, _) = open(&fs, 4096).expect("open");
        store
            .write(&[
                hs(5, 2),
                appends(1, 8, 5),
                PersistOp::SaveSnapshot(std::sync::Arc::new(snapshot(6, 5))),
                PersistOp::CompactLog(6),
            ])
            .expect("write");
        store.sync().expect("sync");
        drop(store);
        let mut image = fs.live();
        image.remove_tree(Path::new(WAL));
        if how == "emptied" {
            image = {
                let f = SimFs::new(image);
                crate::wal::io::Vfs::create_dir_all(&f, Path::new(WAL)).expect("mkdir");
                f.live()
            };
        }
        let err = match open(&SimFs::new(image), 4096) {
            Ok((_, p)) => panic!(
                "WAL {how}: started with term {} and vote {:?} next to snapshot 6",
                p.hard_state.term, p.hard_state.vote
            ),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains("WAL") && err.contains("snap-"),
            "WAL {how}: {err}"
        );
    }
}
