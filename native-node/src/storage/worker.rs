//! The storage thread: owns the [`LogStore`] and does the blocking writes and fsyncs, so the
//! async runtime never stalls on the disk.
//!
//! It is the FIFO writer of the core's asynchronous persist contract (`keyval_core::ready`):
//! the node loop submits each batch's persist ops with the batch's persist id and carries on
//! (a leader's appends are already on their way to the followers). The thread takes every batch
//! queued by the time it is free, writes them in order and fsyncs once (group commit across
//! batches), then reports the last id it made durable, which covers every earlier one.
//!
//! A failed write or fsync is reported once and the thread stops: nothing after it is written,
//! and the node loop treats it as fatal (never retried).

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use keyval_core::PersistOp;
use tokio::sync::mpsc as tokio_mpsc;

use super::{LogStore, StorageError, StoreStats};

/// Batches submitted and not yet reported durable, at most. The node loop waits for a
/// completion before submitting more, so a slow disk slows the loop down instead of queueing
/// without bound.
pub const MAX_BATCHES_IN_FLIGHT: usize = 64;

struct Job {
    id: u64,
    ops: Vec<PersistOp>,
}

/// Batches up to `last_id` are durable.
#[derive(Debug)]
pub struct Durable {
    pub last_id: u64,
    /// Batches covered by this one fsync.
    pub batches: usize,
    /// Time from the first write to the end of the fsync.
    pub took: Duration,
    pub stats: StoreStats,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the storage thread has stopped")]
    Stopped,
}

/// Handle to the storage thread. Dropping it lets the thread finish the batches already
/// submitted and exit; [`StorageWorker::close`] also waits for that.
pub struct StorageWorker {
    tx: Option<mpsc::SyncSender<Job>>,
    done_rx: tokio_mpsc::Receiver<Result<Durable, StorageError>>,
    thread: Option<thread::JoinHandle<()>>,
    in_flight: usize,
}

impl StorageWorker {
    pub fn spawn<S: LogStore>(mut store: S) -> std::io::Result<StorageWorker> {
        let (tx, rx) = mpsc::sync_channel::<Job>(MAX_BATCHES_IN_FLIGHT);
        let (done_tx, done_rx) = tokio_mpsc::channel(MAX_BATCHES_IN_FLIGHT);
        let thread = thread::Builder::new()
            .name("keyval-storage".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let started = Instant::now();
                    let mut last_id = first.id;
                    let mut batches = 1;
                    let mut result = store.write(&first.ops);
                    // Group commit: everything queued meanwhile shares this fsync.
                    while result.is_ok() {
                        let Ok(job) = rx.try_recv() else { break };
                        last_id = job.id;
                        batches += 1;
                        result = store.write(&job.ops);
                    }
                    let result = result.and_then(|()| store.sync()).map(|()| Durable {
                        last_id,
                        batches,
                        took: started.elapsed(),
                        stats: store.stats(),
                    });
                    let failed = result.is_err();
                    // The node loop may have gone away (shutdown): the remaining batches are
                    // still written, only nobody hears about it.
                    let _ = done_tx.blocking_send(result);
                    if failed {
                        return;
                    }
                }
            })?;
        Ok(StorageWorker {
            tx: Some(tx),
            done_rx,
            thread: Some(thread),
            in_flight: 0,
        })
    }

    /// Whether another batch may be submitted now (see [`MAX_BATCHES_IN_FLIGHT`]).
    pub fn has_room(&self) -> bool {
        self.in_flight < MAX_BATCHES_IN_FLIGHT
    }

    /// Batches submitted and not yet reported durable.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Queues batch `id` for writing without waiting for it. Call only when
    /// [`StorageWorker::has_room`]; the answer comes from [`StorageWorker::durable`].
    pub fn submit(&mut self, id: u64, ops: Vec<PersistOp>) -> Result<(), WorkerError> {
        let tx = self.tx.as_ref().ok_or(WorkerError::Stopped)?;
        // The queue holds MAX_BATCHES_IN_FLIGHT jobs and the loop never has more outstanding,
        // so a full queue means the thread died.
        tx.try_send(Job { id, ops })
            .map_err(|_| WorkerError::Stopped)?;
        self.in_flight += 1;
        Ok(())
    }

    /// The next durability report. Cancel-safe (a `select!` branch).
    pub async fn durable(&mut self) -> Result<Durable, WorkerError> {
        match self.done_rx.recv().await {
            Some(Ok(d)) => {
                self.in_flight = self.in_flight.saturating_sub(d.batches);
                Ok(d)
            }
            Some(Err(e)) => Err(e.into()),
            None => Err(WorkerError::Stopped),
        }
    }

    /// Stops accepting batches and waits for the ones submitted (their fsync included).
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.tx.take();
        // Unblocks a thread waiting to report: nobody reads reports any more.
        self.done_rx.close();
        while self.done_rx.try_recv().is_ok() {}
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for StorageWorker {
    fn drop(&mut self) {
        self.shutdown();
    }
}
