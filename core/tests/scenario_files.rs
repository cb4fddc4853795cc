//! Runs every scenario script in `snapshots/scenarios/*.scn` and compares its output with the
//! golden snapshot beside it (`<name>.snap`), one snapshot per file like etcd-raft's datadriven
//! files. A new `.scn` file needs no Rust: run the tests, then approve its output with
//! `cargo insta review` (CI runs with `INSTA_UPDATE=no`, so an unreviewed output fails).
//! One file alone, with its whole output: `make scenario FILE=snapshots/scenarios/<name>.scn`.

use std::path::{Path, PathBuf};

fn scenario_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../snapshots/scenarios")
}

fn scenario_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(scenario_dir())
        .expect("snapshots/scenarios exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "scn"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_scenario_file_matches_its_golden_output() {
    let files = scenario_files();
    assert!(
        files.len() >= 17,
        "expected the 17 scenarios of issue 15, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("?");
        let file = format!("snapshots/scenarios/{name}.scn");
        let text = std::fs::read_to_string(path).expect("readable scenario file");
        let output = match keyval_core::scenario::run(&file, &text) {
            Ok(o) => o,
            Err(e) => {
                failures.push(format!("{e}"));
                continue;
            }
        };
        let matched = std::panic::catch_unwind(|| {
            insta::with_settings!({
                snapshot_path => scenario_dir(),
                prepend_module_to_snapshot => false,
                omit_expression => true,
                input_file => path,
            }, {
                insta::assert_snapshot!(name, output);
            });
        });
        if matched.is_err() {
            failures.push(format!("{file}: output differs from {name}.snap"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

/// The same script gives the same output: the golden files are stable, not luck.
#[test]
fn a_scenario_replays_byte_for_byte() {
    let path = scenario_dir().join("three_replicated_writes.scn");
    let text = std::fs::read_to_string(path).expect("readable scenario file");
    let a = keyval_core::scenario::run("a.scn", &text).expect("runs");
    let b = keyval_core::scenario::run("b.scn", &text).expect("runs");
    assert_eq!(a, b);
}
