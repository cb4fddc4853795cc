//! One WebSocket shared by many closed-loop clients (`kvctl bench --conns N`), the way etcd's
//! benchmark shares one gRPC connection among its clients: every request is tagged by its
//! (client id, seq), the node answers each as it completes, and the answers are routed back by
//! that tag. Requests queued while the socket is busy go out under one flush.
//!
//! A multiplexed connection does no retries, redirects or leader discovery: a caller whose
//! request fails falls back to its own [`crate::client::Client`], which does.

use std::collections::HashMap;

use futures_util::{SinkExt, StreamExt};
use native_node::wire::{self, ClientFrame, ServerFrame};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as TMessage;

/// Requests queued towards one connection at most; callers wait beyond it.
const MAX_QUEUED: usize = 1024;
/// Requests written per flush at most.
const MAX_PER_FLUSH: usize = 256;
/// Answers awaited on one connection at most, below the node's per-connection reply queue
/// (1024), which drops answers beyond it.
pub const MAX_IN_FLIGHT: usize = 1000;

type Tag = (u64, u64);

struct Call {
    tag: Tag,
    frame: Vec<u8>,
    answer: oneshot::Sender<ServerFrame>,
}

/// A handle to one shared connection; clone it for every client that uses it.
#[derive(Clone)]
pub struct Mux {
    calls: mpsc::Sender<Call>,
}

impl Mux {
    pub async fn connect(target: &str, deadline: Instant) -> Result<Mux, String> {
        let conn = crate::client::connect(target, deadline).await?;
        let (calls, rx) = mpsc::channel(MAX_QUEUED);
        tokio::spawn(drive(conn, rx));
        Ok(Mux { calls })
    }

    /// Sends `frame`, tagged `tag` (its client id and seq), and waits for its answer until
    /// `deadline`. An error means the connection failed or the answer did not come in time.
    pub async fn call(
        &self,
        tag: Tag,
        frame: &ClientFrame,
        deadline: Instant,
    ) -> Result<ServerFrame, String> {
        let (answer, answered) = oneshot::channel();
        let call = Call {
            tag,
            frame: wire::encode(frame),
            answer,
        };
        self.calls
            .send(call)
            .await
            .map_err(|_| "the shared connection is closed".to_string())?;
        match tokio::time::timeout_at(deadline, answered).await {
            Ok(Ok(frame)) => Ok(frame),
            Ok(Err(_)) => Err("the shared connection closed before the answer".into()),
            Err(_) => Err("no answer in time on the shared connection".into()),
        }
    }
}

/// Owns the socket: writes queued calls, routes answers by tag, and ends (failing every call
/// waiting on it) when the socket fails or every handle is dropped.
async fn drive(conn: crate::client::Conn, mut calls: mpsc::Receiver<Call>) {
    let (mut sink, mut stream) = conn.split();
    let mut waiting: HashMap<Tag, oneshot::Sender<ServerFrame>> = HashMap::new();
    let mut batch = Vec::with_capacity(MAX_PER_FLUSH);
    loop {
        if waiting.len() >= MAX_IN_FLIGHT {
            // Calls whose callers gave up (their deadline passed) hold no room.
            waiting.retain(|_, w| !w.is_closed());
        }
        let room = MAX_IN_FLIGHT
            .saturating_sub(waiting.len())
            .min(MAX_PER_FLUSH);
        tokio::select! {
            n = calls.recv_many(&mut batch, room), if room > 0 => {
                if n == 0 {
                    break;
                }
                let mut failed = false;
                for call in batch.drain(..) {
                    if failed {
                        continue;
                    }
                    failed = sink.feed(TMessage::Binary(call.frame.into())).await.is_err();
                    // A request the caller stopped waiting for (its deadline passed) may still
                    // be answered; the answer is then dropped.
                    waiting.insert(call.tag, call.answer);
                }
                if failed || sink.flush().await.is_err() {
                    break;
                }
            }
            msg = stream.next() => match msg {
                Some(Ok(TMessage::Binary(b))) => match wire::decode::<ServerFrame>(&b) {
                    Ok(ServerFrame::Reply { reply, leader }) => {
                        if let Some(w) = waiting.remove(&(reply.client_id, reply.seq)) {
                            let _ = w.send(ServerFrame::Reply { reply, leader });
                        }
                    }
                    // The node refused the connection or a frame: it closes the socket.
                    Ok(ServerFrame::Error { .. }) | Err(_) => break,
                    Ok(_) => {}
                },
                Some(Ok(TMessage::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = sink.close().await;
}
