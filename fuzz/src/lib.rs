//! Fuzz targets: every decoder that reads bytes from the network or the disk, each a function
//! that must return (never panic, never allocate without bound) whatever bytes it is given.
//!
//! - [`targets::peer_frame`]: `/raft` frame decoding, `well_formed`, and `RaftNode::step` (via
//!   `KvServer`, so a snapshot installed from hostile chunks is decoded too) on a follower and
//!   on a leader, with ticks in between; the core asserts its own invariants at every
//!   `take_ready`, so a message that breaks them panics here.
//! - [`targets::client_frame`]: `/client` frame decoding and request validation.
//! - [`targets::wal_replay`]: a WAL segment of arbitrary bytes, and well-framed records with
//!   arbitrary payloads, recovered by `WalStore::open`.
//! - [`targets::snapshot_file`]: snapshot file decoding, and snapshot payload decoding past
//!   the checksum.

pub mod driver;
pub mod seeds;
pub mod targets;

/// A target: consumes one input.
pub type Target = fn(&[u8]);

/// Every target by name, for the driver and the replay test.
pub const TARGETS: &[(&str, Target)] = &[
    ("peer_frame", targets::peer_frame),
    ("client_frame", targets::client_frame),
    ("wal_replay", targets::wal_replay),
    ("snapshot_file", targets::snapshot_file),
];
