//! Queues bounded in bytes as well as in items.
//!
//! A count bound alone does not bound memory: 8192 client requests of 1 MiB values, or 4096
//! appends of 4 MiB for one slow peer, are gigabytes. [`ByteBudget`] is the shared piece: a
//! semaphore of bytes whose permits an item holds while it is queued. [`channel`] pairs it with
//! an mpsc queue whose items release their bytes when they are received; the peer inbox
//! ([`crate::peer_inbox`]) holds them until the loop has stepped a batch.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Bytes an item is estimated to occupy while queued.
pub trait Weighed {
    fn queued_bytes(&self) -> usize;
}

/// A byte budget shared by the senders of one queue.
#[derive(Clone, Debug)]
pub struct ByteBudget {
    bytes: Arc<Semaphore>,
    limit: usize,
}

/// Bytes of a budget held by one queued item, given back when dropped.
#[derive(Debug)]
pub struct HeldBytes {
    bytes: usize,
    _permit: OwnedSemaphorePermit,
}

impl HeldBytes {
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the receiving side has stopped")]
pub struct Closed;

impl ByteBudget {
    /// A budget of `limit` bytes (at least 1, at most what a semaphore can count).
    pub fn new(limit: usize) -> Self {
        let limit = limit
            .clamp(1, Semaphore::MAX_PERMITS)
            .min(u32::MAX as usize);
        ByteBudget {
            bytes: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// An item of `bytes` costs this much of the budget: at least 1, and at most the whole
    /// budget, so an item larger than the limit still gets in alone instead of wedging.
    fn cost(&self, bytes: usize) -> usize {
        bytes.clamp(1, self.limit)
    }

    /// Waits until `bytes` fit.
    pub async fn acquire(&self, bytes: usize) -> Result<HeldBytes, Closed> {
        let bytes = self.cost(bytes);
        let permit = self
            .bytes
            .clone()
            .acquire_many_owned(bytes as u32)
            .await
            .map_err(|_| Closed)?;
        Ok(HeldBytes {
            bytes,
            _permit: permit,
        })
    }

    /// Takes `bytes` if they fit now.
    pub fn try_acquire(&self, bytes: usize) -> Option<HeldBytes> {
        let bytes = self.cost(bytes);
        let permit = self
            .bytes
            .clone()
            .try_acquire_many_owned(bytes as u32)
            .ok()?;
        Some(HeldBytes {
            bytes,
            _permit: permit,
        })
    }

    /// Bytes free now.
    pub fn free(&self) -> usize {
        self.bytes.available_permits()
    }
}

/// A queue of at most `items` items and `bytes` estimated bytes.
pub fn channel<T: Weighed>(items: usize, bytes: usize) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = mpsc::channel(items);
    let budget = ByteBudget::new(bytes);
    (Sender { tx, budget }, Receiver { rx })
}

pub struct Sender<T> {
    tx: mpsc::Sender<(T, HeldBytes)>,
    budget: ByteBudget,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender {
            tx: self.tx.clone(),
            budget: self.budget.clone(),
        }
    }
}

impl<T: Weighed> Sender<T> {
    /// Queues `item`, waiting while the queue is full in items or in bytes.
    pub async fn send(&self, item: T) -> Result<(), Closed> {
        let held = self.budget.acquire(item.queued_bytes()).await?;
        self.tx.send((item, held)).await.map_err(|_| Closed)
    }

    /// Queues `item` if it fits now; gives it back otherwise (full or closed).
    pub fn try_send(&self, item: T) -> Result<(), T> {
        let Some(held) = self.budget.try_acquire(item.queued_bytes()) else {
            return Err(item);
        };
        self.tx.try_send((item, held)).map_err(|e| match e {
            mpsc::error::TrySendError::Full((item, _)) => item,
            mpsc::error::TrySendError::Closed((item, _)) => item,
        })
    }

    /// Bytes free in the queue now.
    pub fn free_bytes(&self) -> usize {
        self.budget.free()
    }
}

/// What one loop turn may still take from a queue, in items and in bytes. The item that
/// crosses the byte bound is still taken, so one oversized item cannot stall its queue.
#[derive(Debug)]
pub struct TurnBudget {
    items: usize,
    bytes: usize,
}

impl TurnBudget {
    pub fn new(items: usize, bytes: usize) -> Self {
        TurnBudget { items, bytes }
    }

    pub fn charge(&mut self, bytes: usize) {
        self.items = self.items.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(bytes);
    }

    pub fn spent(&self) -> bool {
        self.items == 0 || self.bytes == 0
    }
}

/// The receiving side: an item's bytes are free again once it is received.
pub struct Receiver<T> {
    rx: mpsc::Receiver<(T, HeldBytes)>,
}

impl<T> Receiver<T> {
    /// The next item; None once every sender is gone. Cancel-safe, like `mpsc::Receiver::recv`.
    pub async fn recv(&mut self) -> Option<T> {
        self.rx.recv().await.map(|(item, _held)| item)
    }

    pub fn try_recv(&mut self) -> Result<T, mpsc::error::TryRecvError> {
        self.rx.try_recv().map(|(item, _held)| item)
    }

    /// The next queued item, without waiting, while `budget` lasts; the item is charged to it.
    pub fn try_recv_within(&mut self, budget: &mut TurnBudget) -> Option<T>
    where
        T: Weighed,
    {
        if budget.spent() {
            return None;
        }
        let (item, _held) = self.rx.try_recv().ok()?;
        budget.charge(item.queued_bytes());
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Blob(usize);

    impl Weighed for Blob {
        fn queued_bytes(&self) -> usize {
            self.0
        }
    }

    /// Two items fill the bytes of a queue with room for a thousand: the third waits until one
    /// is received.
    #[tokio::test]
    async fn a_sender_waits_while_the_queue_is_full_in_bytes() {
        let (tx, mut rx) = channel(1000, 2_000);
        tx.send(Blob(1_000)).await.expect("fits");
        tx.send(Blob(1_000)).await.expect("fits");
        assert_eq!(tx.free_bytes(), 0);
        let third = tx.send(Blob(1_000));
        tokio::pin!(third);
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(50), third.as_mut()).await;
        assert!(waited.is_err(), "a third item must wait for room");
        rx.recv().await.expect("queued");
        third.await.expect("fits once the first was received");
    }

    /// A turn takes what its budget allows and leaves the rest queued, in order: a flood of
    /// large items cannot make one turn (and so one WAL batch) unbounded.
    #[tokio::test]
    async fn a_turn_stops_at_its_byte_budget_and_leaves_the_rest_queued() {
        let (tx, mut rx) = channel(1000, 100_000);
        for size in [1_000, 1_000, 3_000, 1_000, 1_000] {
            tx.send(Blob(size)).await.expect("fits");
        }
        let take = |rx: &mut Receiver<Blob>, mut budget: TurnBudget| {
            std::iter::from_fn(|| rx.try_recv_within(&mut budget).map(|b| b.0)).collect::<Vec<_>>()
        };
        assert_eq!(
            take(&mut rx, TurnBudget::new(1000, 4_000)),
            [1_000, 1_000, 3_000],
            "the item crossing the byte bound is taken, nothing after it"
        );
        assert_eq!(take(&mut rx, TurnBudget::new(1, usize::MAX)), [1_000]);
        assert_eq!(take(&mut rx, TurnBudget::new(1000, 0)), Vec::<usize>::new());
        assert_eq!(take(&mut rx, TurnBudget::new(1000, 1)), [1_000]);
    }

    #[tokio::test]
    async fn try_send_refuses_what_does_not_fit_in_bytes_and_an_oversized_item_goes_alone() {
        let (tx, mut rx) = channel(1000, 2_000);
        assert!(tx.try_send(Blob(1_500)).is_ok());
        let refused = tx.try_send(Blob(1_000)).expect_err("over the byte bound");
        assert_eq!(refused.0, 1_000);
        assert!(tx.try_send(Blob(400)).is_ok(), "what fits still gets in");
        rx.recv().await.expect("queued");
        rx.recv().await.expect("queued");
        assert!(
            tx.try_send(Blob(10_000)).is_ok(),
            "alone, a huge item is admitted"
        );
        assert!(tx.try_send(Blob(1)).is_err());
    }
}

#[cfg(test)]
mod client_inbox_tests {
    use crate::node_loop::{CLIENT_INBOX, CLIENT_INBOX_BYTES, Input};
    use keyval_core::{ClientRequest, KvOp};
    use tokio::sync::mpsc;

    fn put(seq: u64, reply_to: &mpsc::Sender<crate::wire::ServerFrame>) -> Input {
        Input::Client {
            req: ClientRequest {
                client_id: 1,
                seq,
                op: KvOp::Put {
                    key: b"k".to_vec(),
                    value: vec![0; 1 << 20],
                },
            },
            reply_to: reply_to.clone(),
        }
    }

    /// The client inbox as the node builds it fills up with 1 MiB puts after about 64 of its
    /// 8192 places; the next client waits (its connection stops being read) until the loop
    /// takes one.
    #[tokio::test]
    async fn the_client_inbox_is_bounded_in_bytes() {
        let (reply_to, _replies) = mpsc::channel(1);
        let (tx, mut rx) = super::channel(CLIENT_INBOX, CLIENT_INBOX_BYTES);
        let mut queued = 0;
        while tx.try_send(put(queued + 1, &reply_to)).is_ok() {
            queued += 1;
            assert!(queued < 1_000, "the byte bound never refused");
        }
        assert!((60..64).contains(&queued), "{queued} puts queued");
        let next = tx.send(put(0, &reply_to));
        tokio::pin!(next);
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(50), next.as_mut()).await;
        assert!(waited.is_err(), "a full inbox makes the client wait");
        rx.recv().await.expect("queued");
        next.await.expect("room once the loop took one");
    }
}
