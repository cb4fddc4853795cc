//! The deterministic simulator and its checkers (platform-neutral: also runs in the browser).
//!
//! [`Simulator`] executes the core's effect batches against simulated disks and a simulated
//! network under a virtual clock; [`runner`] drives randomized faulty runs and checks them;
//! [`checker`] and [`linearizability`] hold the properties every run must satisfy.

pub mod checker;
pub mod config_check;
mod event_queue;
pub mod faults;
pub mod hold;
pub mod hostile;
pub mod linearizability;
pub mod membership;
mod network;
pub mod runner;
pub mod simulator;
pub mod storage;
/// The trace types moved to [`crate::trace`] (the native node emits them too); this keeps the
/// old `sim::trace::…` paths working.
pub use crate::trace;
pub mod workload;

pub use checker::Violation;
pub use hold::{AddrPattern, HeldMessage, LinkPattern};
pub use network::NetworkConfig;
pub use runner::{run, FaultProfile, RunConfig, RunReport};
pub use simulator::{FaultAction, SimConfig, SimNode, Simulator};
pub use trace::{Addr, TraceEvent, TraceKind};
pub use workload::WorkloadConfig;
