//! The storage thread: owns the [`LogStore`] and does the blocking writes and fsyncs, so the
//! async runtime never stalls on the disk.
//!
//! The node loop hands it one batch of persist ops per `Ready` and waits for the answer before
//! sending anything that depends on them. The hand-off queue holds one batch: the node loop
//! never has more than one in flight, so anything deeper would only hide a bug.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use keyval_core::PersistOp;
use tokio::sync::oneshot;

use super::{LogStore, StorageError, StoreStats};

struct Job {
    ops: Vec<PersistOp>,
    done: oneshot::Sender<Result<(Duration, StoreStats), StorageError>>,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the storage thread has stopped")]
    Stopped,
}

/// Handle to the storage thread. Dropping it lets the thread finish its current batch and exit;
/// [`StorageWorker::close`] also waits for that.
pub struct StorageWorker {
    tx: Option<mpsc::SyncSender<Job>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl StorageWorker {
    pub fn spawn<S: LogStore>(mut store: S) -> std::io::Result<StorageWorker> {
        let (tx, rx) = mpsc::sync_channel::<Job>(1);
        let thread = thread::Builder::new()
            .name("keyval-storage".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    let started = Instant::now();
                    let result = store
                        .write(&job.ops)
                        .and_then(|()| store.sync())
                        .map(|()| (started.elapsed(), store.stats()));
                    // The node loop may have gone away (shutdown); the batch is durable anyway.
                    let _ = job.done.send(result);
                }
            })?;
        Ok(StorageWorker {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Writes and fsyncs `ops`; returns how long the disk took once they are durable, and the
    /// store's counters after the batch.
    pub async fn persist(
        &self,
        ops: Vec<PersistOp>,
    ) -> Result<(Duration, StoreStats), WorkerError> {
        let (done, wait) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or(WorkerError::Stopped)?;
        match tx.try_send(Job { ops, done }) {
            Ok(()) => {}
            // Only one batch is ever in flight, so the slot is free; if that ever changes,
            // wait for it off the runtime rather than fail.
            Err(mpsc::TrySendError::Full(job)) => {
                let tx = tx.clone();
                tokio::task::spawn_blocking(move || tx.send(job))
                    .await
                    .map_err(|_| WorkerError::Stopped)?
                    .map_err(|_| WorkerError::Stopped)?;
            }
            Err(mpsc::TrySendError::Disconnected(_)) => return Err(WorkerError::Stopped),
        }
        Ok(wait.await.map_err(|_| WorkerError::Stopped)??)
    }

    /// Stops accepting batches and waits for the one in progress (its fsync included) to finish.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.tx.take();
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
