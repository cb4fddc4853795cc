//! Scenario scripts: a line-oriented language for protocol tests on the real core, run against
//! the deterministic simulator (after etcd-raft's datadriven "interaction" tests).
//!
//! ```text
//! cluster nodes=3 seed=1
//! tick-until leader
//! put n2 x 1
//! stabilize
//! expect kv n3 x 1
//! ```
//!
//! Each command's output is the trace lines it caused, in the same text form as every other
//! trace ([`crate::trace::TraceEvent::render`], heartbeats left out), so a script with its
//! output reads like a story; the golden outputs are insta snapshots. [`parse`] checks a whole
//! script before anything runs; [`Session`] runs it one command at a time (the browser plays it
//! that way) and [`run`] runs it to the end. Every command is documented in docs/scenarios.md.
//! A script can fail (a wrong argument, an `expect` that does not hold, a safety violation)
//! but never panic the core: every id, range and duration is checked, and every run is bounded.

mod inspect;
pub mod parse;
mod session;

pub use parse::{parse, ClusterSpec, Command, Line, Observable, Script, Until};
pub use session::{Session, Step};

/// What went wrong, and where: `file:line: message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ScenarioError {
    pub file: String,
    /// 1-based; 0 when the error concerns the whole script.
    pub line: usize,
    pub message: String,
}

impl ScenarioError {
    pub fn new(file: &str, line: usize, message: String) -> Self {
        ScenarioError {
            file: file.to_string(),
            line,
            message,
        }
    }
}

/// Parses and runs a whole script; returns its output (every command followed by what it
/// caused), or the first error.
pub fn run(name: &str, text: &str) -> Result<String, ScenarioError> {
    let mut session = Session::new(parse(name, text)?);
    while let Some(step) = session.step() {
        step?;
    }
    session.finish()?;
    Ok(session.output().to_string())
}
