//! The fuzz corpus replay that runs in `make test`: every seed, every saved input under
//! `fuzz/corpus/TARGET/` (regressions: inputs that once crashed a target), and a fixed number of
//! deterministic mutations per target. About three seconds in all.

use keyval_fuzz::driver::{self, Budget};
use keyval_fuzz::{TARGETS, seeds};

/// Mutations per target: the WAL target makes a directory and files per input (~8 ms each in a
/// debug build), the others run in microseconds.
fn mutations(target: &str) -> u64 {
    if target == "wal_replay" { 200 } else { 5_000 }
}

#[test]
fn every_target_survives_its_corpus_and_mutations() {
    let corpus_root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (name, target) in TARGETS {
        let mut inputs = seeds::for_target(name);
        assert!(!inputs.is_empty(), "{name} has seeds");
        if let Ok(dir) = std::fs::read_dir(corpus_root.join(name)) {
            for entry in dir.flatten() {
                inputs.push(std::fs::read(entry.path()).expect("read corpus file"));
            }
        }
        let report = driver::run(*target, &inputs, Budget::Execs(mutations(name)), 42);
        eprintln!(
            "{name}: {} execs in {:.2}s",
            report.execs,
            report.elapsed.as_secs_f64()
        );
        assert!(
            report.crashes.is_empty(),
            "{name} panicked: {:?}",
            report
                .crashes
                .iter()
                .map(|c| (&c.message, &c.input))
                .collect::<Vec<_>>()
        );
    }
}

/// The harness itself: a target that panics on one byte is caught and reported.
#[test]
fn the_driver_reports_a_panicking_target() {
    fn fragile(data: &[u8]) {
        assert!(data.first() != Some(&0x42), "found the byte");
    }
    let report = driver::run(fragile, &[vec![0x41]], Budget::Execs(5_000), 7);
    assert_eq!(report.crashes.len(), 1);
    assert!(report.crashes[0].message.contains("found the byte"));
}

/// The peer target reaches the core: most seeds and many mutations decode to envelopes.
#[test]
fn peer_seeds_decode_to_messages() {
    let seeds = seeds::peer_frame();
    let decoded = seeds
        .iter()
        .filter(|s| {
            native_node::wire::decode::<native_node::wire::PeerFrame>(s).is_ok()
                || postcard::from_bytes::<keyval_core::Envelope>(s).is_ok()
        })
        .count();
    assert_eq!(decoded, seeds.len());
}
