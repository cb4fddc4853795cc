//! The live event stream (`GET /events`): what the playground's live view of a native cluster
//! shows.
//!
//! The node loop publishes encoded [`LiveFrame`]s into a bounded broadcast channel; each
//! WebSocket subscriber reads from its own cursor. A subscriber that falls behind loses the
//! oldest frames and is told how many with `LiveFrame::Lagged`: the node never waits for a
//! slow browser. Frames are only built while someone is subscribed.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::ws::{Message as WsMessage, WebSocket};
use keyval_core::trace::TraceKind;
use keyval_core::{LiveFrame, NodeStatus};
use tokio::sync::{broadcast, watch};

use crate::metrics::Metrics;

/// Frames buffered per subscriber before it counts as lagging.
const EVENT_BUFFER: usize = 4096;
/// A quiet node still sends its status this often, so a viewer can tell "alive but idle" from
/// "hung" without relying on heartbeat events (the playground calls a node dead after 1 s).
const STATUS_KEEPALIVE: std::time::Duration = std::time::Duration::from_millis(500);

/// A frame the subscriber does not take within this ends its subscription.
const SUBSCRIBER_SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Clone)]
pub struct EventHub {
    tx: broadcast::Sender<Bytes>,
}

impl Default for EventHub {
    fn default() -> Self {
        EventHub {
            tx: broadcast::channel(EVENT_BUFFER).0,
        }
    }
}

fn encode(frame: &LiveFrame) -> Bytes {
    Bytes::from(postcard::to_allocvec(frame).unwrap_or_default())
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl EventHub {
    /// Whether anyone listens; the node loop skips building events otherwise.
    pub fn active(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    pub fn publish(&self, time_ms: u64, kind: TraceKind) {
        if self.active() {
            // No receiver between the check and the send is fine: the frame is just dropped.
            let _ = self.tx.send(encode(&LiveFrame::Event { time_ms, kind }));
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Bytes> {
        self.tx.subscribe()
    }
}

/// Streams to one subscriber until it leaves or the node shuts down: a status frame first and on
/// every change, then events as they happen.
pub async fn serve_subscriber(
    mut socket: WebSocket,
    mut events: broadcast::Receiver<Bytes>,
    mut status: watch::Receiver<NodeStatus>,
    mut shutdown: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
) {
    let first = encode(&LiveFrame::Status(status.borrow_and_update().clone()));
    if socket.send(WsMessage::Binary(first)).await.is_err() {
        return;
    }
    let mut keepalive = tokio::time::interval(STATUS_KEEPALIVE);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    keepalive.tick().await;
    loop {
        let frame = tokio::select! {
            _ = shutdown.changed() => break,
            _ = keepalive.tick() => encode(&LiveFrame::Status(status.borrow().clone())),
            changed = status.changed() => {
                if changed.is_err() {
                    break;
                }
                encode(&LiveFrame::Status(status.borrow_and_update().clone()))
            }
            ev = events.recv() => match ev {
                Ok(bytes) => bytes,
                Err(broadcast::error::RecvError::Lagged(dropped)) => {
                    metrics
                        .event_subscribers_lagged
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    encode(&LiveFrame::Lagged { dropped })
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            incoming = socket.recv() => match incoming {
                // Subscribers have nothing to say; anything but a close is ignored.
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => continue,
            },
        };
        // A subscriber that stops reading would block this send forever and keep its slot.
        let sent = tokio::time::timeout(
            SUBSCRIBER_SEND_TIMEOUT,
            socket.send(WsMessage::Binary(frame)),
        )
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            break;
        }
    }
    let _ = socket.send(WsMessage::Close(None)).await;
}
