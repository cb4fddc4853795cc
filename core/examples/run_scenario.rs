//! Runs one scenario script and prints its whole output (`make scenario FILE=...`).
//!
//! ```text
//! cargo run -p keyval-core --example run_scenario -- snapshots/scenarios/split_vote.scn
//! ```
//! Exits with status 1 and a `file:line: ...` message when the script fails.

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: run_scenario FILE.scn");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::from(2);
        }
    };
    let script = match keyval_core::scenario::parse(&path, &text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut session = keyval_core::scenario::Session::new(script);
    while let Some(step) = session.step() {
        if let Err(e) = step {
            print!("{}", session.output());
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    }
    print!("{}", session.output());
    if let Err(e) = session.finish() {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
