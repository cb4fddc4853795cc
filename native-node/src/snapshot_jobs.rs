//! Snapshot work off the node loop: encoding the state machine into snapshot bytes, and decoding
//! a snapshot received from the leader.
//!
//! Both take time proportional to the state (about a second per 100 MB here); done on the node
//! loop they stopped ticks, heartbeats, acknowledgements and client replies for that long, long
//! enough for followers to elect a new leader. The core hands out the work as jobs
//! (`KvServer::take_snapshot_job` / `take_install_job`, see `keyval_core::server`): a snapshot
//! job carries an O(1) copy of the state machine's persistent maps, so the loop keeps applying
//! writes while a blocking thread encodes the copy. The result comes back through
//! [`SnapshotJobs::done`]; the core then saves the snapshot and compacts the log in its next
//! batch, which the storage thread writes (snapshot file, then the log cut, in order).
//!
//! The node's own snapshot is also *written* here ([`SnapshotJobs::save`]): the storage thread
//! then only adopts the durable file and compacts the log, so WAL appends (and with them every
//! acknowledgement) never queue behind a 100 MB file write. An installed snapshot is still
//! written by the storage thread, in order, because its acknowledgement promises it is durable.
//!
//! At most one job of each kind runs at a time (the core hands out no second snapshot job until
//! the first is reported; a follower receives one snapshot at a time; the node loop starts a
//! save only when the previous one is done), so the completion queue is bounded by
//! [`MAX_JOBS`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyval_core::server::SnapshotError;
use keyval_core::{Index, InstallJob, KvStore, Snapshot, SnapshotJob};
use tokio::sync::mpsc;

use crate::storage::snapfile::{self, SnapshotFileError};

/// Jobs running at once at most: one encode, one decode and one save.
pub const MAX_JOBS: usize = 3;

/// A finished job.
pub enum JobDone {
    Encoded {
        index: u64,
        data: Option<Vec<u8>>,
        took: Duration,
    },
    Decoded {
        /// Boxed: the snapshot's metadata (its configuration) makes it the large variant.
        job: Box<InstallJob>,
        result: Result<KvStore, SnapshotError>,
        took: Duration,
    },
    /// The node's own snapshot is durable in its file (or failed to be); `compact` is the log
    /// compaction that was queued behind it.
    Saved {
        snapshot: Arc<Snapshot>,
        compact: Index,
        result: Result<u64, SnapshotFileError>,
        took: Duration,
    },
}

/// Where [`SnapshotJobs::save`] writes: the snapshot directory, and whether to fsync.
#[derive(Clone, Debug)]
pub struct SaveTo {
    pub dir: PathBuf,
    pub fsync: bool,
    /// Holds each save before it starts, like [`SnapshotJobs::new`]'s gate holds the others.
    pub gate: Option<JobGate>,
}

/// Holds a job before it starts while a test keeps the write side locked: lets a test observe
/// the node while a snapshot is being taken, however fast the machine encodes.
pub type JobGate = Arc<tokio::sync::RwLock<()>>;

pub struct SnapshotJobs {
    tx: mpsc::Sender<JobDone>,
    rx: mpsc::Receiver<JobDone>,
    running: usize,
    gate: Option<JobGate>,
    save_to: Option<SaveTo>,
}

impl Default for SnapshotJobs {
    fn default() -> Self {
        SnapshotJobs::new(None)
    }
}

impl SnapshotJobs {
    pub fn new(gate: Option<JobGate>) -> SnapshotJobs {
        let (tx, rx) = mpsc::channel(MAX_JOBS);
        SnapshotJobs {
            tx,
            rx,
            running: 0,
            gate,
            save_to: None,
        }
    }

    /// Writes the node's own snapshots off the storage thread, into `to`. Without it (tests of
    /// the loop alone) the storage thread writes them in its order, like installed ones.
    pub fn saving_to(mut self, to: SaveTo) -> SnapshotJobs {
        self.save_to = Some(to);
        self
    }

    /// Whether [`SnapshotJobs::save`] may be used.
    pub fn saves(&self) -> bool {
        self.save_to.is_some()
    }

    /// Jobs started and not yet reported through [`SnapshotJobs::done`].
    pub fn running(&self) -> usize {
        self.running
    }

    pub fn encode(&mut self, job: SnapshotJob) {
        self.spawn(move || {
            let started = Instant::now();
            let data = job.encode();
            JobDone::Encoded {
                index: job.index,
                data,
                took: started.elapsed(),
            }
        });
    }

    pub fn decode(&mut self, job: InstallJob) {
        self.spawn(move || {
            let started = Instant::now();
            let result = job.decode();
            JobDone::Decoded {
                job: Box::new(job),
                result,
                took: started.elapsed(),
            }
        });
    }

    /// Writes `snapshot` durably (see [`snapfile::write_durable`]); call only when
    /// [`SnapshotJobs::saves`].
    pub fn save(&mut self, snapshot: Arc<Snapshot>, compact: Index) {
        let Some(to) = self.save_to.clone() else {
            return;
        };
        self.spawn_gated(to.gate.clone(), move || {
            let started = Instant::now();
            let result = snapfile::write_durable(&to.dir, to.fsync, &snapshot);
            JobDone::Saved {
                snapshot,
                compact,
                result,
                took: started.elapsed(),
            }
        });
    }

    fn spawn(&mut self, work: impl FnOnce() -> JobDone + Send + 'static) {
        self.spawn_gated(self.gate.clone(), work);
    }

    fn spawn_gated(
        &mut self,
        gate: Option<JobGate>,
        work: impl FnOnce() -> JobDone + Send + 'static,
    ) {
        debug_assert!(
            self.running < MAX_JOBS,
            "more snapshot jobs than the core hands out"
        );
        self.running += 1;
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let _held = gate.as_ref().map(|g| g.blocking_read());
            let done = work();
            // The loop may have stopped meanwhile; the work is then simply dropped.
            let _ = tx.blocking_send(done);
        });
    }

    /// The next finished job. Pending forever while none runs. Cancel-safe (a `select!` branch).
    pub async fn done(&mut self) -> JobDone {
        loop {
            // The sender half lives in `self`, so the channel never closes.
            if let Some(d) = self.rx.recv().await {
                self.running = self.running.saturating_sub(1);
                return d;
            }
        }
    }
}
