//! The one listening port: plain HTTP routes next to the WebSocket upgrades.
//!
//! - `GET /healthz`: 200 while the node runs; the body names role, term and leader.
//! - `GET /livez`: 200 while the node loop answers; 503 when it hangs (see [`crate::health`]).
//! - `GET /readyz`: 200 when the node can serve clients (a known leader, caught up, a voter);
//!   503 with the reason otherwise.
//! - `GET /metrics`: Prometheus text.
//! - `GET /raft`: WebSocket for peers (see [`crate::transport`]).
//! - `GET /client`: WebSocket for clients (`kvctl`): requests in, replies out, matched by
//!   (client_id, seq), so one connection may have several requests in flight.
//! - `GET /events`: WebSocket live event stream (see [`crate::events`]).
//! - with `--ui DIR`: the built playground, from DIR, at `/`.
//!
//! HTTP parsing is hyper's (through axum); frame size limits are set on each upgrade so an
//! oversized frame is refused before it is buffered.
//!
//! With TLS on (see [`crate::tls`]), `/raft` and `/events` (which streams keys and values) are
//! answered only on connections that completed the peer handshake; a client certificate gets
//! 403. `/events` can also be switched off entirely (`--disable-events`): it then answers 404.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::Router;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use keyval_core::NodeStatus;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};

use crate::events::{self, EventHub};
use crate::listener::ConnInfo;
use crate::metrics::Metrics;
use crate::node_loop::Input;
use crate::transport::{self, Identity};
use crate::wire::{self, ClientFrame, MAX_CLIENT_FRAME_BYTES, MAX_PEER_FRAME_BYTES, ServerFrame};

/// Replies buffered per client connection; a client that stops reading loses replies, not the
/// node's memory.
const CLIENT_REPLY_QUEUE: usize = 1024;
/// Replies written per flush at most (see `serve_client`).
const MAX_REPLIES_PER_FLUSH: usize = 256;
/// A reply the client does not take within this closes its connection.
const CLIENT_SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Open WebSocket connections allowed per kind. Every connection holds buffers and a task, so
/// the count is bounded like every queue; beyond it new upgrades get 503 and the node goes on
/// serving the connections it has.
pub const MAX_CLIENT_CONNECTIONS: usize = 4096;
pub const MAX_PEER_CONNECTIONS: usize = 256;
pub const MAX_EVENT_SUBSCRIBERS: usize = 256;

/// Connection slots, one semaphore per kind of WebSocket.
#[derive(Clone)]
pub struct Limits {
    clients: Arc<Semaphore>,
    peers: Arc<Semaphore>,
    subscribers: Arc<Semaphore>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            clients: Arc::new(Semaphore::new(MAX_CLIENT_CONNECTIONS)),
            peers: Arc::new(Semaphore::new(MAX_PEER_CONNECTIONS)),
            subscribers: Arc::new(Semaphore::new(MAX_EVENT_SUBSCRIBERS)),
        }
    }
}

fn slot(sem: &Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
    sem.clone().try_acquire_owned().ok()
}

fn too_many(what: &str) -> Response {
    tracing::warn!(what, "connection limit reached; refusing a new connection");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("too many {what} connections\n"),
    )
        .into_response()
}

#[derive(Clone)]
pub struct AppState {
    pub identity: Arc<Identity>,
    pub metrics: Arc<Metrics>,
    pub status: watch::Receiver<NodeStatus>,
    pub events: EventHub,
    pub peer_tx: crate::peer_inbox::PeerInbox,
    pub input_tx: crate::bounded::Sender<Input>,
    pub shutdown: watch::Receiver<bool>,
    pub limits: Limits,
    /// `/events` is served (`--disable-events` turns it off).
    pub events_enabled: bool,
    /// A client connection that sends nothing for this long is closed (`--idle-timeout-ms`).
    pub client_idle_timeout: std::time::Duration,
}

/// Refuses peer-only routes to connections that did not prove a peer identity.
fn peer_only(conn: &ConnInfo, what: &str) -> Option<Response> {
    if conn.access.is_peer_or_plain() {
        return None;
    }
    tracing::warn!(remote = %conn.remote, what, "refused a non-peer connection on a peer-only route");
    Some(
        (
            StatusCode::FORBIDDEN,
            format!("{what} needs a peer certificate\n"),
        )
            .into_response(),
    )
}

pub fn router(state: AppState, ui: Option<PathBuf>) -> Router {
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/raft", get(raft_ws))
        .route("/client", get(client_ws))
        .route("/events", get(events_ws))
        .with_state(state);
    match ui {
        Some(dir) => router.fallback_service(tower_http::services::ServeDir::new(dir)),
        None => router,
    }
}

async fn healthz(State(s): State<AppState>) -> Response {
    let st = s.status.borrow().clone();
    let leader = st.leader.map_or("none".to_string(), |l| l.to_string());
    let body = format!(
        "ok id={} role={} term={} leader={} commit={} applied={}\n",
        st.id, st.role, st.term, leader, st.commit_index, st.applied_index
    );
    (StatusCode::OK, body).into_response()
}

async fn livez(State(s): State<AppState>) -> Response {
    let (tx, rx) = oneshot::channel();
    let asked = s.input_tx.send(Input::Status { reply_to: tx });
    let answered = tokio::time::timeout(crate::health::LIVEZ_TIMEOUT, async move {
        asked.await.ok()?;
        rx.await.ok()
    })
    .await;
    match answered {
        Ok(Some(_)) => (StatusCode::OK, "ok\n").into_response(),
        Ok(None) => (StatusCode::SERVICE_UNAVAILABLE, "node loop stopped\n").into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "node loop did not answer in time\n",
        )
            .into_response(),
    }
}

async fn readyz(State(s): State<AppState>) -> Response {
    let st = s.status.borrow().clone();
    match crate::health::readiness(&st) {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    let st = s.status.borrow().clone();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(&st),
    )
        .into_response()
}

async fn raft_ws(
    ws: WebSocketUpgrade,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    State(s): State<AppState>,
) -> Response {
    if let Some(refused) = peer_only(&conn, "/raft") {
        s.metrics.peer_rejections.fetch_add(1, Relaxed);
        return refused;
    }
    let remote = conn.remote;
    let Some(permit) = slot(&s.limits.peers) else {
        return too_many("peer");
    };
    ws.read_buffer_size(wire::READ_BUFFER_BYTES)
        .max_message_size(MAX_PEER_FRAME_BYTES)
        .max_frame_size(MAX_PEER_FRAME_BYTES)
        .on_failed_upgrade(move |e| tracing::warn!(%remote, error = %e, "failed peer upgrade"))
        .on_upgrade(move |socket| async move {
            transport::serve_inbound(
                socket,
                s.identity,
                conn.access,
                remote,
                s.peer_tx,
                s.metrics,
                s.shutdown,
            )
            .await;
            drop(permit);
        })
}

async fn events_ws(
    ws: WebSocketUpgrade,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    State(s): State<AppState>,
) -> Response {
    if !s.events_enabled {
        return (
            StatusCode::NOT_FOUND,
            "the event stream is disabled on this node\n",
        )
            .into_response();
    }
    if let Some(refused) = peer_only(&conn, "/events") {
        return refused;
    }
    let Some(permit) = slot(&s.limits.subscribers) else {
        return too_many("event stream");
    };
    ws.read_buffer_size(wire::READ_BUFFER_BYTES)
        .max_message_size(64 << 10)
        .on_upgrade(move |socket| async move {
            let events = s.events.subscribe();
            events::serve_subscriber(socket, events, s.status, s.shutdown, s.metrics).await;
            drop(permit);
        })
}

async fn client_ws(
    ws: WebSocketUpgrade,
    ConnectInfo(ConnInfo { remote, .. }): ConnectInfo<ConnInfo>,
    State(s): State<AppState>,
) -> Response {
    let Some(permit) = slot(&s.limits.clients) else {
        return too_many("client");
    };
    ws.read_buffer_size(wire::READ_BUFFER_BYTES)
        .max_message_size(MAX_CLIENT_FRAME_BYTES)
        .max_frame_size(MAX_CLIENT_FRAME_BYTES)
        .on_upgrade(move |socket| async move {
            serve_client(socket, remote, s).await;
            drop(permit);
        })
}

/// Reads client frames and forwards them to the node loop; a writer half sends replies back as
/// the loop produces them, in whatever order they complete.
async fn serve_client(socket: WebSocket, remote: SocketAddr, s: AppState) {
    use futures_util::{SinkExt, StreamExt};
    s.metrics.client_connects.fetch_add(1, Relaxed);
    let (mut sink, mut stream) = socket.split();
    let (reply_tx, mut reply_rx) = mpsc::channel::<ServerFrame>(CLIENT_REPLY_QUEUE);
    let writer = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MAX_REPLIES_PER_FLUSH);
        while reply_rx.recv_many(&mut batch, MAX_REPLIES_PER_FLUSH).await > 0 {
            // Everything already queued goes out under one flush: a connection shared by many
            // clients (`kvctl bench --conns`, a multiplexing proxy) costs a few syscalls per
            // turn of the node loop instead of one per answer.
            let last = batch
                .iter()
                .position(|f| matches!(f, ServerFrame::Error { .. }));
            if let Some(i) = last {
                batch.truncate(i + 1);
            }
            let frames = batch.drain(..);
            let sent = tokio::time::timeout(CLIENT_SEND_TIMEOUT, async {
                for frame in frames {
                    sink.feed(WsMessage::Binary(wire::encode(&frame).into()))
                        .await?;
                }
                sink.flush().await
            })
            .await;
            if !matches!(sent, Ok(Ok(()))) {
                break;
            }
            if last.is_some() {
                let _ = sink.send(WsMessage::Close(None)).await;
                break;
            }
        }
    });
    let mut shutdown = s.shutdown.clone();
    loop {
        let msg = tokio::select! {
            _ = shutdown.changed() => break,
            m = tokio::time::timeout(s.client_idle_timeout, stream.next()) => match m {
                Ok(m) => m,
                Err(_) => {
                    tracing::debug!(%remote, "client connection idle too long; closing it");
                    break;
                }
            },
        };
        let bytes = match msg {
            Some(Ok(WsMessage::Binary(b))) => b,
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
            Some(Ok(WsMessage::Close(_))) | None => break,
            Some(Ok(WsMessage::Text(_))) => {
                refuse(
                    &s,
                    &reply_tx,
                    remote,
                    "text frames are not part of the protocol".into(),
                );
                break;
            }
            Some(Err(e)) => {
                // A client that exits without a closing handshake is ordinary; anything else
                // (oversized or malformed frames) is worth a warning.
                if is_reset(&e) {
                    tracing::debug!(%remote, "client went away");
                } else {
                    s.metrics.bad_frames.fetch_add(1, Relaxed);
                    tracing::warn!(%remote, error = %e, "dropping client connection");
                }
                break;
            }
        };
        match wire::decode::<ClientFrame>(&bytes) {
            Ok(ClientFrame::Request(req)) => {
                let input = Input::Client {
                    req,
                    reply_to: reply_tx.clone(),
                };
                if s.input_tx.send(input).await.is_err() {
                    break;
                }
            }
            Ok(ClientFrame::Read {
                client_id,
                seq,
                key,
                consistency,
            }) => {
                let input = Input::Read {
                    client_id,
                    seq,
                    key,
                    consistency,
                    reply_to: reply_tx.clone(),
                };
                if s.input_tx.send(input).await.is_err() {
                    break;
                }
            }
            Ok(ClientFrame::Member { tag, op }) => {
                let input = Input::Member {
                    tag,
                    op,
                    reply_to: reply_tx.clone(),
                };
                if s.input_tx.send(input).await.is_err() {
                    break;
                }
            }
            Ok(ClientFrame::TransferLeader { to }) => {
                let (tx, rx) = oneshot::channel();
                let input = Input::Transfer { to, reply_to: tx };
                if s.input_tx.send(input).await.is_err() {
                    break;
                }
                let Ok(outcome) = rx.await else { break };
                if reply_tx.send(ServerFrame::Transfer(outcome)).await.is_err() {
                    break;
                }
            }
            Ok(ClientFrame::Status) => {
                let (tx, rx) = oneshot::channel();
                if s.input_tx
                    .send(Input::Status { reply_to: tx })
                    .await
                    .is_err()
                {
                    break;
                }
                let Ok(status) = rx.await else { break };
                if reply_tx.send(ServerFrame::Status(status)).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                refuse(&s, &reply_tx, remote, e.to_string());
                break;
            }
        }
    }
    // The writer lives on until the node loop has answered (or dropped) every request still
    // owed to this connection, so a client that half-closed still gets its replies.
    drop(reply_tx);
    drop(writer);
}

fn is_reset(e: &axum::Error) -> bool {
    use std::error::Error;
    let mut source: Option<&(dyn Error + 'static)> = e.source();
    while let Some(s) = source {
        if let Some(t) = s.downcast_ref::<tokio_tungstenite::tungstenite::Error>() {
            return matches!(
                t,
                tokio_tungstenite::tungstenite::Error::Protocol(
                    tokio_tungstenite::tungstenite::error::ProtocolError::ResetWithoutClosingHandshake
                ) | tokio_tungstenite::tungstenite::Error::ConnectionClosed
                    | tokio_tungstenite::tungstenite::Error::Io(_)
            );
        }
        source = s.source();
    }
    false
}

fn refuse(s: &AppState, reply_tx: &mpsc::Sender<ServerFrame>, remote: SocketAddr, reason: String) {
    s.metrics.bad_frames.fetch_add(1, Relaxed);
    tracing::warn!(%remote, %reason, "refused client frame; closing the connection");
    let _ = reply_tx.try_send(ServerFrame::Error { reason });
}
