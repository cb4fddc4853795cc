//! # keyval-core
//!
//! The one Raft implementation KeyVal runs everywhere: in the native `keyval` nodes and, compiled
//! to WebAssembly, in the browser playground. It is *sans-IO*: no clocks, threads, sockets, files
//! or OS randomness. Time arrives as [`RaftNode::tick`], messages as [`RaftNode::step`], and
//! everything the node wants done comes back as a [`Ready`] batch whose ordering rules are in
//! [`ready`]. That makes every run reproducible from its inputs, which is what the deterministic
//! simulator in [`sim`] exploits to check safety over thousands of faulty runs.
//!
//! Module map: [`types`] (ids, entries, hard state), [`message`], [`log`], [`membership`] (configurations and the pure changer), [`progress`], [`read`] (ReadIndex, leases, follower reads),
//! [`node`] (state and step), `election`, `replication`, `compaction`, [`kv`] (state machine and client
//! protocol), [`server`] (node + state machine), [`ready`] (the effects contract), [`snapshot`] (log compaction), [`rng`],
//! [`transfer`] (leadership transfer), [`config`], [`mutation`] (test-only deliberate bugs), [`trace`] (the typed event trace every
//! executor emits), [`sim`] (simulator and checkers), [`scenario`] (scripted protocol tests).

#![forbid(unsafe_code)]

mod compaction;
pub mod config;
mod election;
pub mod kv;
pub mod log;
pub mod membership;
pub mod message;
pub mod mutation;
pub mod node;
pub mod progress;
pub mod read;
pub mod ready;
mod reconfigure;
mod replication;
pub mod rng;
pub mod scenario;
pub mod server;
pub mod sim;
pub mod snapshot;
pub mod status;
pub mod trace;
pub mod transfer;
pub mod types;
pub mod validate;

pub use config::Config;
pub use kv::{ClientError, ClientReply, ClientRequest, KvOp, KvResult, KvStore, ReadConsistency};
pub use membership::{
    ChangeKind, ConfChange, ConfChangeError, Membership, SingleChange, Transition,
};
pub use message::{AppendResult, Envelope, Message, SnapshotResult};
pub use node::{Persisted, RaftNode};
pub use ready::{Applied, NodeEvent, PersistOp, Ready};
pub use replication::ProposeError;
pub use server::{InstallJob, KvServer, SnapshotJob};
pub use snapshot::{Snapshot, SnapshotMeta};
pub use status::{LiveFrame, NodeStatus};
pub use transfer::TransferError;
pub use types::{Entry, EntryPayload, HardState, Index, NodeId, Role, Term};
pub use validate::Implausible;
