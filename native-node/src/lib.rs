//! KeyVal's native executor: runs the sans-IO `keyval-core` Raft node with real sockets, real
//! disks and a real clock, plus the pieces the `kvctl` client shares with it.
//!
//! Module map: [`config`] (flags + TOML), [`meta`] (cluster identity in the data dir),
//! [`wal`] (byte-level segmented WAL), [`storage`] (typed Raft log store on the WAL, its
//! conformance suite and the storage thread), [`wire`] (versioned postcard frames),
//! [`transport`] (peer connections), [`http`] (routes on the one port), [`events`] (live event
//! stream), [`metrics`] and [`histogram`], [`health`] (`/livez`, `/readyz`), [`request_trace`]
//! (spans of a client request), [`telemetry`] (logs and OTLP export), [`node_loop`] (the task
//! that owns the Raft node), [`membership`] (the shared roster and reconfiguration policy),
//! [`join`] (`--join`: learning the cluster from it), [`startup`].
#![forbid(unsafe_code)]

pub mod bounded;
pub mod config;
pub mod events;
pub mod health;
pub mod histogram;
pub mod http;
pub mod idle_io;
pub mod join;
pub mod listener;
pub mod membership;
pub mod meta;
pub mod metrics;
pub mod node_loop;
pub mod peer_inbox;
pub mod request_trace;
pub mod snapshot_jobs;
pub mod startup;
pub mod storage;
pub mod telemetry;
pub mod tls;
pub mod transport;
pub mod wal;
pub mod wire;
