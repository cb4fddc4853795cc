//! Peer connections: one outbound WebSocket per peer for what this node sends, and the inbound
//! `/raft` handler for what peers send it.
//!
//! Outbound: each peer has a task with a bounded queue. It dials `ws://ADDR/raft`, introduces
//! itself with a `Hello` (cluster id, from, to) and, once welcomed, writes every queued message,
//! batching whatever piled up into one frame. When the queue is full new messages are dropped
//! and counted: Raft tolerates loss (heartbeats and probes retransmit), but it does not tolerate
//! a node whose memory grows without bound behind a dead peer. While the peer is unreachable the
//! task redials with exponential backoff and discards what is queued, since stale appends and
//! votes would only be refused later.
//!
//! Inbound: a connection must open with a `Hello` naming our cluster and our id and a known
//! peer as sender; with TLS on, the connection's peer certificate must also name that sender
//! (see [`crate::tls`]). Anything else is refused with a reason, logged, and closed. The node
//! itself is never affected by what a connection sends.
//!
//! Idle connections: the dialer pings after [`PEER_KEEPALIVE`] without traffic, and the listener
//! drops a connection silent for [`PEER_IDLE_TIMEOUT`], so a half-open or abandoned connection
//! cannot hold one of the bounded peer slots forever.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::extract::ws::{Message as WsMessage, WebSocket};
use futures_util::{SinkExt, StreamExt};
use keyval_core::{Envelope, Message, NodeId};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message as TMessage};

use crate::bounded;
use crate::listener::BoxIo;
use crate::membership::{Eviction, Roster, Standing};
use crate::metrics::{Metrics, kind_index};
use crate::peer_inbox::PeerInbox;
use crate::tls::{Access, TlsStore, node_name};
use crate::wire::{self, MAX_PEER_FRAME_BYTES, PeerFrame};

/// Messages queued per peer before new ones are dropped.
pub const PEER_QUEUE: usize = 4096;
/// Estimated bytes queued per peer before new messages are dropped (Raft resends them): 4096
/// appends of 4 MiB would be 16 GiB for one slow peer.
pub const PEER_QUEUE_BYTES: usize = 64 << 20;
/// Estimated bytes after which a batch is sent even if more messages are queued.
const BATCH_BYTES: usize = 4 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// The dialer pings an otherwise idle connection this often (a follower may have nothing to say
/// to another follower for a long time).
pub const PEER_KEEPALIVE: Duration = Duration::from_secs(5);
/// The listener drops a connection that sent nothing, ping included, for this long.
pub const PEER_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The node loop's handle on one peer's outbound queue.
pub struct PeerSender {
    tx: bounded::Sender<Envelope>,
}

impl PeerSender {
    /// Queues a message without waiting; a queue full in messages or bytes drops it (and
    /// counts the drop).
    pub fn send(&self, env: Envelope, metrics: &Metrics) {
        if let Err(env) = self.tx.try_send(env) {
            metrics.dropped(&env.msg)
        }
    }
}

impl bounded::Weighed for Envelope {
    fn queued_bytes(&self) -> usize {
        estimate(self)
    }
}

/// Identity this node presents and checks in handshakes.
#[derive(Clone, Debug)]
pub struct Identity {
    pub cluster_id: String,
    pub id: NodeId,
    /// Who may connect: updated by the node loop as configurations apply.
    pub roster: Arc<Roster>,
    /// Where a peer's "you were removed" answer goes: it stops this node.
    pub eviction: Arc<Eviction>,
    /// Wakes an outbound connection waiting out its backoff (see [`Redial`]).
    pub redial: Arc<Redial>,
}

/// Per peer, a wake-up for its outbound task. A peer that connects to us is up again, so our
/// connection to it should not wait out a backoff that grew while it was down (up to
/// [`BACKOFF_MAX`]): a restarted follower would hear nothing from the leader for that long,
/// time out and campaign instead of being caught up.
#[derive(Debug, Default)]
pub struct Redial(std::sync::Mutex<std::collections::HashMap<NodeId, Arc<tokio::sync::Notify>>>);

impl Redial {
    fn of(&self, peer: NodeId) -> Arc<tokio::sync::Notify> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(peer).or_default().clone()
    }

    /// Ends the backoff of the connection to `peer` now, or the next one if none is waiting (at
    /// most one early redial is remembered).
    pub fn poke(&self, peer: NodeId) {
        self.of(peer).notify_one();
    }
}

fn estimate(env: &Envelope) -> usize {
    64 + match &env.msg {
        Message::AppendEntries { entries, .. } => entries.iter().map(|e| e.size_hint()).sum(),
        Message::InstallSnapshot { data, .. } => data.len(),
        _ => 0,
    }
}

/// Starts the outbound task for `peer` at `addr`.
pub fn spawn_peer(
    me: Identity,
    tls: Option<Arc<TlsStore>>,
    peer: NodeId,
    addr: String,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> PeerSender {
    let (tx, rx) = bounded::channel(PEER_QUEUE, PEER_QUEUE_BYTES);
    tokio::spawn(run_peer(me, tls, peer, addr, rx, metrics, shutdown));
    PeerSender { tx }
}

async fn run_peer(
    me: Identity,
    tls: Option<Arc<TlsStore>>,
    peer: NodeId,
    addr: String,
    mut rx: bounded::Receiver<Envelope>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let url = format!("ws://{addr}/raft");
    let tls = tls.as_deref();
    let redial = me.redial.of(peer);
    let mut backoff = BACKOFF_MIN;
    let mut logged_down = false;
    metrics.set_peer_up(peer, false);
    loop {
        if *shutdown.borrow() {
            return;
        }
        match dial(&me, tls, peer, &addr, &url).await {
            Ok(ws) => {
                metrics.peer_connects.fetch_add(1, Relaxed);
                tracing::info!(peer, %addr, "connected to peer");
                logged_down = false;
                backoff = BACKOFF_MIN;
                metrics.set_peer_up(peer, true);
                let reason = pump(ws, &mut rx, &metrics, &mut shutdown).await;
                metrics.set_peer_up(peer, false);
                if *shutdown.borrow() {
                    return;
                }
                if let Some(removed) = reason.strip_prefix(REMOVED_PREFIX) {
                    tracing::error!(peer, %addr, reason = %removed, "peer says this node was removed from the cluster");
                    me.eviction.evict(removed.to_string());
                    return;
                }
                tracing::info!(peer, %addr, %reason, "peer connection closed");
            }
            Err(DialError::Removed(reason)) => {
                tracing::error!(peer, %addr, %reason, "peer says this node was removed from the cluster");
                me.eviction.evict(reason);
                return;
            }
            Err(e) => {
                if !logged_down {
                    tracing::warn!(peer, %addr, error = %e, "cannot reach peer; retrying with backoff");
                    logged_down = true;
                } else {
                    tracing::debug!(peer, %addr, error = %e, "peer still unreachable");
                }
            }
        }
        // Wait before redialing, discarding what arrives meanwhile: it would be stale by then.
        let sleep = tokio::time::sleep(jitter(backoff));
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                _ = redial.notified() => {
                    tracing::debug!(peer, %addr, "peer connected to us: redialing now");
                    backoff = BACKOFF_MIN / 2; // doubled below
                    break;
                }
                _ = shutdown.changed() => return,
                env = rx.recv() => match env {
                    Some(env) => metrics.dropped(&env.msg),
                    None => return,
                },
            }
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Up to 25% random slack so peers that lost each other at once do not redial in lockstep.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    d + d.mul_f64((nanos % 1000) as f64 / 4000.0)
}

type ClientWs = tokio_tungstenite::WebSocketStream<BoxIo>;

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("connect timed out")]
    Timeout,
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error(transparent)]
    Ws(#[from] tungstenite::Error),
    #[error("peer refused the handshake: {0}")]
    Refused(String),
    #[error("{0}")]
    Removed(String),
    #[error("unexpected handshake answer: {0}")]
    Protocol(String),
}

/// Opens a byte stream to `addr`: plain TCP, or TLS that authenticates the server as
/// `node-<peer>` against the peer CA and presents our peer certificate.
pub async fn connect_stream(
    addr: &str,
    tls: Option<(Arc<rustls::ClientConfig>, String)>,
) -> Result<BoxIo, DialError> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(DialError::Connect)?;
    let _ = tcp.set_nodelay(true);
    let Some((config, name)) = tls else {
        return Ok(Box::pin(tcp));
    };
    let server_name = rustls::pki_types::ServerName::try_from(name)
        .map_err(|e| DialError::Tls(std::io::Error::other(e)))?;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(server_name, tcp)
        .await
        .map_err(DialError::Tls)?;
    Ok(Box::pin(stream))
}

async fn dial(
    me: &Identity,
    tls: Option<&TlsStore>,
    peer: NodeId,
    addr: &str,
    url: &str,
) -> Result<ClientWs, DialError> {
    let config = WebSocketConfig::default()
        .read_buffer_size(wire::READ_BUFFER_BYTES)
        .max_message_size(Some(MAX_PEER_FRAME_BYTES))
        .max_frame_size(Some(MAX_PEER_FRAME_BYTES));
    let tls = tls.map(|t| (t.current().dialer.clone(), node_name(peer)));
    let (mut ws, _) = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let stream = connect_stream(addr, tls).await?;
        tokio_tungstenite::client_async_with_config(url, stream, Some(config))
            .await
            .map_err(DialError::from)
    })
    .await
    .map_err(|_| DialError::Timeout)??;
    let hello = PeerFrame::Hello {
        cluster_id: me.cluster_id.clone(),
        from: me.id,
        to: peer,
    };
    ws.send(TMessage::Binary(wire::encode(&hello).into()))
        .await?;
    let answer = tokio::time::timeout(HANDSHAKE_TIMEOUT, ws.next())
        .await
        .map_err(|_| DialError::Timeout)?;
    match answer {
        Some(Ok(TMessage::Binary(b))) => match wire::decode::<PeerFrame>(&b) {
            Ok(PeerFrame::Welcome { node }) if node == peer => Ok(ws),
            Ok(PeerFrame::Welcome { node }) => Err(DialError::Refused(format!(
                "answered as node {node}, expected node {peer}"
            ))),
            Ok(PeerFrame::Refused { reason }) => Err(DialError::Refused(reason)),
            Ok(PeerFrame::Removed { reason, .. }) => Err(DialError::Removed(reason)),
            Ok(other) => Err(DialError::Protocol(format!("{other:?}"))),
            Err(e) => Err(DialError::Protocol(e.to_string())),
        },
        Some(Ok(other)) => Err(DialError::Protocol(format!("non-binary frame {other:?}"))),
        Some(Err(e)) => Err(e.into()),
        None => Err(DialError::Protocol("closed during handshake".into())),
    }
}

/// How [`pump`] reports that the peer answered "you were removed".
const REMOVED_PREFIX: &str = "removed: ";

/// Writes queued messages until the connection fails or the node shuts down.
async fn pump(
    ws: ClientWs,
    rx: &mut bounded::Receiver<Envelope>,
    metrics: &Metrics,
    shutdown: &mut watch::Receiver<bool>,
) -> String {
    let (mut sink, mut stream) = ws.split();
    let mut batch = Vec::new();
    let mut keepalive = tokio::time::interval(PEER_KEEPALIVE);
    keepalive.reset();
    loop {
        let first = tokio::select! {
            _ = shutdown.changed() => {
                let _ = sink.send(TMessage::Close(None)).await;
                return "shutting down".into();
            }
            _ = keepalive.tick() => {
                if let Err(e) = sink.send(TMessage::Ping(Vec::new().into())).await {
                    return e.to_string();
                }
                continue;
            }
            // The listener sends nothing after Welcome; reading notices a close or reset
            // promptly even while we have nothing to write.
            incoming = stream.next() => match incoming {
                Some(Ok(TMessage::Close(_))) | None => return "closed by peer".into(),
                Some(Err(e)) => return e.to_string(),
                // The one frame a listener sends after Welcome: this node was removed.
                Some(Ok(TMessage::Binary(b))) => match wire::decode::<PeerFrame>(&b) {
                    Ok(PeerFrame::Removed { reason, .. }) => {
                        return format!("{REMOVED_PREFIX}{reason}");
                    }
                    _ => continue,
                },
                Some(Ok(_)) => continue,
            },
            env = rx.recv() => match env {
                Some(env) => env,
                None => return "node stopped".into(),
            },
        };
        let mut bytes = estimate(&first);
        batch.push(first);
        while bytes < BATCH_BYTES {
            match rx.try_recv() {
                Ok(env) => {
                    bytes += estimate(&env);
                    batch.push(env);
                }
                Err(_) => break,
            }
        }
        let envs = std::mem::take(&mut batch);
        let kinds: Vec<usize> = envs.iter().map(|e| kind_index(&e.msg)).collect();
        let frame = wire::encode(&PeerFrame::Raft(envs));
        if let Err(e) = sink.send(TMessage::Binary(frame.into())).await {
            for &k in &kinds {
                metrics.dropped_kind(k);
            }
            return e.to_string();
        }
        for &k in &kinds {
            metrics.sent_kind(k);
        }
        keepalive.reset();
    }
}

/// Serves one inbound `/raft` connection: handshake, then forward batches to the node loop.
pub async fn serve_inbound(
    mut socket: WebSocket,
    me: Arc<Identity>,
    access: Access,
    remote: std::net::SocketAddr,
    to_node: PeerInbox,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let hello = tokio::time::timeout(HANDSHAKE_TIMEOUT, socket.recv()).await;
    let from = match hello {
        Ok(Some(Ok(WsMessage::Binary(b)))) => match wire::decode::<PeerFrame>(&b) {
            Ok(PeerFrame::Hello {
                cluster_id,
                from,
                to,
            }) => match access
                .authorizes_node(from)
                .map_err(PeerFrame::refused)
                .and_then(|()| check_hello(&me, &cluster_id, from, to))
            {
                Ok(()) => from,
                Err(frame) => {
                    metrics.peer_rejections.fetch_add(1, Relaxed);
                    tracing::warn!(%remote, answer = ?frame, "refused peer handshake");
                    let _ = socket
                        .send(WsMessage::Binary(wire::encode(&frame).into()))
                        .await;
                    let _ = socket.send(WsMessage::Close(None)).await;
                    return;
                }
            },
            Ok(PeerFrame::Join { from, address }) => {
                let answer = answer_join(&me, &access, from, &address);
                match &answer {
                    PeerFrame::Joined { .. } => {
                        tracing::info!(node = from, %address, %remote, "handed the cluster identity to a joining node")
                    }
                    other => {
                        metrics.peer_rejections.fetch_add(1, Relaxed);
                        tracing::warn!(node = from, %address, %remote, answer = ?other, "refused a join")
                    }
                }
                let _ = socket
                    .send(WsMessage::Binary(wire::encode(&answer).into()))
                    .await;
                let _ = socket.send(WsMessage::Close(None)).await;
                return;
            }
            Ok(other) => {
                return refuse_frame(
                    socket,
                    &metrics,
                    remote,
                    format!("expected Hello, got {other:?}"),
                )
                .await;
            }
            Err(e) => return refuse_frame(socket, &metrics, remote, e.to_string()).await,
        },
        Ok(Some(Ok(other))) => {
            return refuse_frame(
                socket,
                &metrics,
                remote,
                format!("expected a binary Hello, got {other:?}"),
            )
            .await;
        }
        Ok(Some(Err(e))) => {
            metrics.bad_frames.fetch_add(1, Relaxed);
            tracing::warn!(%remote, error = %e, "peer connection failed during handshake");
            return;
        }
        Ok(None) => return,
        Err(_) => {
            return refuse_frame(
                socket,
                &metrics,
                remote,
                "no Hello within the handshake timeout".into(),
            )
            .await;
        }
    };
    let welcome = wire::encode(&PeerFrame::Welcome { node: me.id });
    if socket
        .send(WsMessage::Binary(welcome.into()))
        .await
        .is_err()
    {
        return;
    }
    tracing::debug!(peer = from, %remote, "peer connected");
    let connection = to_node.opened(from);
    me.redial.poke(from);
    loop {
        let msg = tokio::select! {
            _ = shutdown.changed() => break,
            m = tokio::time::timeout(PEER_IDLE_TIMEOUT, socket.recv()) => match m {
                Ok(m) => m,
                Err(_) => {
                    tracing::info!(peer = from, %remote, "peer connection idle too long; closing it");
                    break;
                }
            },
        };
        match msg {
            Some(Ok(WsMessage::Binary(b))) => match wire::decode::<PeerFrame>(&b) {
                Ok(PeerFrame::Raft(_)) if me.roster.standing(from) == Standing::Removed => {
                    // Removed since it connected (it may never have learnt that its removal
                    // committed): the distinct answer makes it stop, as at the handshake.
                    metrics.peer_rejections.fetch_add(1, Relaxed);
                    tracing::info!(peer = from, %remote, "traffic from a removed node: telling it to stop");
                    let frame = wire::encode(&PeerFrame::removed(from));
                    let _ = socket.send(WsMessage::Binary(frame.into())).await;
                    let _ = socket.send(WsMessage::Close(None)).await;
                    return;
                }
                Ok(PeerFrame::Raft(envs)) => {
                    // A peer speaks for itself only, and only in shapes a correct node sends:
                    // the core trusts message structure (it asserts its own log invariants), so
                    // malformed messages stop here instead of reaching it.
                    let total = envs.len();
                    let envs: Vec<Envelope> = envs
                        .into_iter()
                        .filter(|e| e.from == from && e.to == me.id && well_formed(&e.msg))
                        .collect();
                    if envs.len() != total {
                        metrics.bad_frames.fetch_add(1, Relaxed);
                        tracing::warn!(
                            peer = from,
                            %remote,
                            dropped = total - envs.len(),
                            "dropped malformed or misaddressed peer messages"
                        );
                    }
                    for e in &envs {
                        metrics.received(&e.msg);
                    }
                    if !envs.is_empty() && to_node.send(envs, b.len()).await.is_err() {
                        break;
                    }
                }
                Ok(other) => {
                    return refuse_frame(
                        socket,
                        &metrics,
                        remote,
                        format!("unexpected frame {other:?} from peer {from}"),
                    )
                    .await;
                }
                Err(e) => {
                    return refuse_frame(
                        socket,
                        &metrics,
                        remote,
                        format!("from peer {from}: {e}"),
                    )
                    .await;
                }
            },
            Some(Ok(WsMessage::Close(_))) | None => break,
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
            Some(Ok(other)) => {
                return refuse_frame(
                    socket,
                    &metrics,
                    remote,
                    format!("unexpected non-binary frame {other:?}"),
                )
                .await;
            }
            Some(Err(e)) => {
                metrics.bad_frames.fetch_add(1, Relaxed);
                tracing::warn!(peer = from, %remote, error = %e, "dropping peer connection");
                break;
            }
        }
    }
    // A killed leader closes its connections at once: telling the loop lets the followers
    // campaign without waiting out a whole election timeout.
    connection.closed();
}

/// Whether a message has a shape a correct peer can produce: the core's own check
/// ([`Message::check_shape`]), applied here too so malformed messages are counted per
/// connection and never queued for the node loop.
pub fn well_formed(msg: &Message) -> bool {
    msg.check_shape().is_ok()
}

/// The handshake checks, answered with the frame to send back when they fail: a node that was
/// removed gets the distinct `Removed` refusal (it stops on it), anything else `Refused`.
fn check_hello(me: &Identity, cluster_id: &str, from: NodeId, to: NodeId) -> Result<(), PeerFrame> {
    if cluster_id != me.cluster_id {
        return Err(PeerFrame::refused(format!(
            "cluster id mismatch: peer says {cluster_id:?}, this node belongs to {:?}",
            me.cluster_id
        )));
    }
    if to != me.id {
        return Err(PeerFrame::refused(format!(
            "addressed to node {to}, this is node {}",
            me.id
        )));
    }
    match me.roster.standing(from) {
        _ if from == me.id => Err(PeerFrame::refused(format!(
            "node {from} is this node; a peer cannot claim it"
        ))),
        Standing::Member => Ok(()),
        Standing::Removed => Err(PeerFrame::removed(from)),
        Standing::Unknown => Err(PeerFrame::refused(format!(
            "node {from} is not a member of this cluster"
        ))),
    }
}

/// Whether a node started with `--join` gets the cluster identity: it must have been added
/// (and not removed), must prove its id (with TLS, by its peer certificate), and without TLS
/// must listen at the address it was added with, so a typo in `--id` cannot take over another
/// member's slot.
fn answer_join(me: &Identity, access: &Access, from: NodeId, address: &str) -> PeerFrame {
    if let Err(reason) = access.authorizes_node(from) {
        return PeerFrame::refused(reason);
    }
    if from == me.id {
        return PeerFrame::refused(format!("node {from} is the node being asked to admit it"));
    }
    let applied = me.roster.applied();
    match me.roster.standing(from) {
        Standing::Removed => PeerFrame::removed(from),
        Standing::Unknown => PeerFrame::refused(format!(
            "node {from} was never added to this cluster: run `kvctl member add {from} {address}` first"
        )),
        Standing::Member => match applied.view.address_of(from) {
            Some(added) if !same_address(added, address) && matches!(access, Access::Plain) => {
                PeerFrame::refused(format!(
                    "node {from} was added with address {added}, but this node listens on {address}"
                ))
            }
            _ => PeerFrame::Joined {
                cluster_id: me.cluster_id.clone(),
                membership: Box::new(applied.membership),
                index: applied.index,
            },
        },
    }
}

/// Whether a joining node listening on `listening` is the one added at `added`: the same
/// address, or the same port when it listens on all interfaces.
fn same_address(added: &str, listening: &str) -> bool {
    if added == listening {
        return true;
    }
    match (
        added.parse::<std::net::SocketAddr>(),
        listening.parse::<std::net::SocketAddr>(),
    ) {
        (Ok(a), Ok(l)) => l.ip().is_unspecified() && a.port() == l.port(),
        (Err(_), Ok(l)) => {
            l.ip().is_unspecified()
                && added
                    .rsplit_once(':')
                    .is_some_and(|(_, p)| p.parse::<u16>().ok() == Some(l.port()))
        }
        _ => false,
    }
}

async fn refuse_frame(
    mut socket: WebSocket,
    metrics: &Metrics,
    remote: std::net::SocketAddr,
    reason: String,
) {
    metrics.bad_frames.fetch_add(1, Relaxed);
    tracing::warn!(%remote, %reason, "refused frame on peer connection; closing it");
    let frame = wire::encode(&PeerFrame::Refused { reason });
    let _ = socket.send(WsMessage::Binary(frame.into())).await;
    let _ = socket.send(WsMessage::Close(None)).await;
}

#[cfg(test)]
mod queue_tests {
    use super::*;
    use keyval_core::{ClientRequest, Entry, EntryPayload, KvOp};

    fn append_of(value_bytes: usize) -> Envelope {
        let entry = Entry {
            term: 1,
            index: 1,
            payload: EntryPayload::Command(ClientRequest {
                client_id: 1,
                seq: 1,
                op: KvOp::Put {
                    key: b"k".to_vec(),
                    value: vec![0; value_bytes],
                },
            }),
        };
        Envelope {
            from: 1,
            to: 2,
            msg: Message::AppendEntries {
                term: 1,
                prev_log_index: 0,
                prev_log_term: 0,
                entries: vec![entry],
                leader_commit: 0,
            },
        }
    }

    /// A hundred 1 MiB appends for a peer that is not reading: far fewer than [`PEER_QUEUE`]
    /// messages, but the queue takes only [`PEER_QUEUE_BYTES`] of them and drops the rest.
    #[test]
    fn a_peer_queue_full_in_bytes_drops_what_does_not_fit() {
        let (tx, mut rx) = bounded::channel(PEER_QUEUE, PEER_QUEUE_BYTES);
        let sender = PeerSender { tx };
        let metrics = Metrics::default();
        for _ in 0..100 {
            sender.send(append_of(1 << 20), &metrics);
        }
        let mut queued = 0;
        while rx.try_recv().is_ok() {
            queued += 1;
        }
        assert!((60..64).contains(&queued), "{queued} appends queued");
        sender.send(append_of(1 << 20), &metrics);
        assert!(rx.try_recv().is_ok(), "room again once the queue drained");
    }
}
