//! `keyval-fuzz [TARGET|all] [SECONDS] [SEED]`: fuzzes each target for SECONDS (default 60),
//! prints executions per second, and writes every crashing input to
//! `fuzz/artifacts/TARGET/crash-N` (replay one with `keyval-fuzz TARGET --replay FILE`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use keyval_fuzz::driver::{self, Budget};
use keyval_fuzz::{TARGETS, seeds};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.first().map_or("all", String::as_str);
    if args.get(1).map(String::as_str) == Some("--replay") {
        let (Some((_, target)), Some(file)) =
            (TARGETS.iter().find(|(n, _)| *n == which), args.get(2))
        else {
            eprintln!("usage: keyval-fuzz TARGET --replay FILE");
            return ExitCode::from(2);
        };
        let input = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("keyval-fuzz: cannot read {file}: {e}");
                return ExitCode::from(2);
            }
        };
        target(&input);
        println!("{which}: {file} ran without a panic");
        return ExitCode::SUCCESS;
    }
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(60);
    let seed: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let chosen: Vec<_> = TARGETS
        .iter()
        .filter(|(n, _)| which == "all" || *n == which)
        .collect();
    if chosen.is_empty() {
        let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!(
            "keyval-fuzz: unknown target {which}; targets: {}",
            names.join(", ")
        );
        return ExitCode::from(2);
    }
    let mut failed = false;
    for (name, target) in chosen {
        let seeds = seeds::for_target(name);
        let report = driver::run(
            *target,
            &seeds,
            Budget::Time(Duration::from_secs(seconds)),
            seed,
        );
        println!(
            "{name}: {} execs in {:.1}s ({:.0} execs/s), {} distinct crashes",
            report.execs,
            report.elapsed.as_secs_f64(),
            report.execs_per_sec(),
            report.crashes.len()
        );
        let dir = PathBuf::from("fuzz/artifacts").join(name);
        for (i, c) in report.crashes.iter().enumerate() {
            failed = true;
            let path = dir.join(format!("crash-{i}"));
            let saved =
                std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, &c.input));
            match saved {
                Ok(()) => println!("  crash: {} (input in {})", c.message, path.display()),
                Err(e) => println!("  crash: {} (cannot save input: {e})", c.message),
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
