//! The queue from the inbound peer connections into the node loop, bounded in bytes as well as
//! in batches.
//!
//! A count bound alone does not bound memory: one 16 MiB peer frame of tiny messages decodes
//! into hundreds of thousands of envelopes, and [`PEER_INBOX`] such batches would be gigabytes.
//! Each batch therefore holds permits of a byte semaphore for its estimated in-memory size
//! while it is queued and until the loop has stepped it; a connection whose batch does not fit
//! waits (back-pressure on that peer's TCP stream, which stops reading), and the loop's
//! per-turn budget ([`MAX_PEER_BYTES_PER_TURN`]) keeps one huge batch from starving ticks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use keyval_core::{Envelope, NodeId};
use tokio::sync::mpsc;

use crate::bounded::{ByteBudget, HeldBytes};

/// Batches queued at most.
pub const PEER_INBOX: usize = 1024;
/// Estimated bytes of queued peer batches at most (a batch larger than this alone still gets
/// in once the queue is empty, so no frame the transport accepts can wedge its connection).
pub const PEER_INBOX_BYTES: usize = 64 << 20;
/// Peer bytes the loop steps in one turn before it serves ticks, the disk and clients again
/// (at least one batch per turn).
pub const MAX_PEER_BYTES_PER_TURN: usize = 4 << 20;

/// What the inbound peer connections tell the loop.
pub enum PeerInput {
    /// Raft messages from one frame of one peer, with the inbox bytes they hold.
    Batch(Vec<Envelope>, InboxBytes),
    /// The last open connection from this peer closed (its process may have died; see
    /// `KvServer::peer_disconnected`).
    Closed(NodeId),
}

/// Inbox bytes held by a queued batch, given back when it is dropped (after the loop stepped it).
pub type InboxBytes = HeldBytes;

/// The sending side, one clone per inbound connection.
#[derive(Clone)]
pub struct PeerInbox {
    tx: mpsc::Sender<PeerInput>,
    bytes: ByteBudget,
    /// Welcomed inbound connections per peer. A peer can hold two for a while (it reconnected
    /// before the old connection was noticed dead, or another holder of its certificate
    /// connected): only the last one closing means the peer may be gone.
    open: Arc<Mutex<HashMap<NodeId, usize>>>,
}

/// One welcomed inbound connection from a peer, counted until dropped.
pub struct Connection {
    inbox: PeerInbox,
    peer: NodeId,
    notify: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("the node loop has stopped")]
pub struct LoopGone;

/// A new inbox bounded to `batches` and `bytes`.
pub fn channel(batches: usize, bytes: usize) -> (PeerInbox, mpsc::Receiver<PeerInput>) {
    let (tx, rx) = mpsc::channel(batches);
    let inbox = PeerInbox {
        tx,
        bytes: ByteBudget::new(bytes),
        open: Arc::default(),
    };
    (inbox, rx)
}

/// What a decoded batch costs in memory: its envelopes plus the bytes it carries (the frame
/// length bounds the latter).
pub fn estimated_bytes(envs: &[Envelope], frame_bytes: usize) -> usize {
    envs.len()
        .saturating_mul(std::mem::size_of::<Envelope>())
        .saturating_add(frame_bytes)
}

impl PeerInbox {
    /// Queues one batch, waiting while the inbox is full (in batches or in bytes).
    pub async fn send(&self, envs: Vec<Envelope>, frame_bytes: usize) -> Result<(), LoopGone> {
        let held = self
            .bytes
            .acquire(estimated_bytes(&envs, frame_bytes))
            .await
            .map_err(|_| LoopGone)?;
        self.tx
            .send(PeerInput::Batch(envs, held))
            .await
            .map_err(|_| LoopGone)
    }

    /// Counts a welcomed connection from `peer` until the returned guard is dropped.
    pub fn opened(&self, peer: NodeId) -> Connection {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        *open.entry(peer).or_insert(0) += 1;
        Connection {
            inbox: self.clone(),
            peer,
            notify: false,
        }
    }

    /// Bytes free in the inbox now.
    pub fn free_bytes(&self) -> usize {
        self.bytes.free()
    }
}

impl Connection {
    /// The connection ended the way a dying peer's does (closed or broken, not refused): when
    /// it was the peer's last one, the loop is told without waiting (with a full inbox the
    /// notice is dropped; the election timer still runs).
    pub fn closed(mut self) {
        self.notify = true;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut open = self.inbox.open.lock().unwrap_or_else(|e| e.into_inner());
        let last = match open.get_mut(&self.peer) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            _ => {
                open.remove(&self.peer);
                true
            }
        };
        drop(open);
        if last && self.notify {
            let _ = self.inbox.tx.try_send(PeerInput::Closed(self.peer));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyval_core::Message;

    fn heartbeat() -> Envelope {
        Envelope {
            from: 2,
            to: 1,
            msg: Message::AppendEntries {
                term: 1,
                prev_log_index: 0,
                prev_log_term: 0,
                entries: Vec::new(),
                leader_commit: 0,
            },
        }
    }

    /// A full inbox in bytes makes the next sender wait until the loop has stepped (dropped) a
    /// batch, however few batches are queued.
    #[tokio::test]
    async fn a_sender_waits_while_the_inbox_is_full_in_bytes() {
        let one = estimated_bytes(&[heartbeat()], 100);
        let (inbox, mut rx) = channel(1024, 2 * one);
        inbox.send(vec![heartbeat()], 100).await.expect("fits");
        inbox.send(vec![heartbeat()], 100).await.expect("fits");
        assert_eq!(inbox.free_bytes(), 0);
        let third = inbox.send(vec![heartbeat()], 100);
        tokio::pin!(third);
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(50), third.as_mut()).await;
        assert!(waited.is_err(), "a third batch must wait for room");
        let first = rx.recv().await.expect("queued");
        drop(first);
        third.await.expect("fits once the first batch was stepped");
        assert_eq!(inbox.free_bytes(), 0);
    }

    /// A batch larger than the whole inbox still gets in (alone), so a frame the transport
    /// accepted cannot wedge its connection.
    #[tokio::test]
    async fn an_oversized_batch_gets_in_alone() {
        let (inbox, mut rx) = channel(4, 1000);
        let many = vec![heartbeat(); 100];
        inbox.send(many, 10_000).await.expect("alone");
        assert_eq!(inbox.free_bytes(), 0);
        match rx.recv().await {
            Some(PeerInput::Batch(envs, held)) => {
                assert_eq!(envs.len(), 100);
                assert_eq!(held.bytes(), 1000);
            }
            _ => panic!("expected the batch"),
        }
        assert_eq!(
            inbox.free_bytes(),
            1000,
            "bytes come back once the batch is dropped"
        );
    }

    fn closed_notices(rx: &mut mpsc::Receiver<PeerInput>) -> Vec<NodeId> {
        let mut out = Vec::new();
        while let Ok(input) = rx.try_recv() {
            if let PeerInput::Closed(peer) = input {
                out.push(peer);
            }
        }
        out
    }

    /// A second connection from the same peer closing (a stale one after a reconnect, or a
    /// stranger holding the peer's certificate) must not tell the loop the peer is gone: the
    /// loop would drop a live leader and campaign.
    #[tokio::test]
    async fn only_the_last_connection_of_a_peer_reports_it_closed() {
        let (inbox, mut rx) = channel(16, 1 << 20);
        let first = inbox.opened(2);
        let second = inbox.opened(2);
        let other = inbox.opened(3);
        second.closed();
        assert_eq!(closed_notices(&mut rx), Vec::<NodeId>::new());
        first.closed();
        assert_eq!(closed_notices(&mut rx), vec![2]);
        drop(other);
        assert_eq!(
            closed_notices(&mut rx),
            Vec::<NodeId>::new(),
            "a refused connection is no sign of death"
        );
        inbox.opened(3).closed();
        assert_eq!(closed_notices(&mut rx), vec![3]);
    }
}
