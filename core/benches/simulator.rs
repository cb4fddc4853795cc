//! Simulator throughput: simulated events per second and checked seeds per second.
//!
//! A plain `harness = false` benchmark (no criterion): each figure is one long measurement of a
//! fixed seed range, which is what CI capacity planning needs ("how many seeds fit in a
//! minute"). Run with `cargo bench -p keyval-core --bench simulator` or `make bench`.

use std::time::Instant;

use keyval_core::sim::{run, FaultProfile, RunConfig};

fn measure(label: &str, nodes: usize, profile: FaultProfile, seeds: u64) {
    let start = Instant::now();
    let mut events = 0u64;
    let mut failures = 0u64;
    for seed in 0..seeds {
        let mut cfg = RunConfig::new(nodes, seed);
        cfg.profile = profile;
        let report = run(&cfg);
        events += report.events;
        failures += u64::from(!report.is_ok());
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{label:<24} {seeds:>6} seeds in {secs:>6.2}s: {:>8.0} seeds/s, {:>10.0} events/s ({} failures)",
        seeds as f64 / secs,
        events as f64 / secs,
        failures
    );
}

fn main() {
    let seeds = std::env::var("KEYVAL_BENCH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    measure("3 nodes, no faults", 3, FaultProfile::None, seeds);
    measure("3 nodes, mixed faults", 3, FaultProfile::Mixed, seeds);
    measure("5 nodes, mixed faults", 5, FaultProfile::Mixed, seeds);
    measure("5 nodes, crash-heavy", 5, FaultProfile::CrashHeavy, seeds);
}
