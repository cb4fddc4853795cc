//! The node's accepting side: TCP, then TLS when configured, handed to axum with what each
//! connection proved about itself ([`ConnInfo`]).
//!
//! TLS handshakes run in their own tasks (bounded in number and in time), so a client that
//! opens a connection and never speaks cannot stall the accept loop or keep a slot for long.
//! With TLS on, a connection that fails the handshake (plain HTTP included) is closed: the port
//! serves only TLS.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::LazyConfigAcceptor;

use crate::idle_io::IdleIo;
use crate::tls::{Access, JOIN_NAME, TlsStore, node_name};

/// A TLS handshake must finish within this, or the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; beyond it new connections wait in the kernel backlog.
const MAX_HANDSHAKES: usize = 256;
/// Accepted connections waiting for axum to pick them up.
const ACCEPTED_QUEUE: usize = 64;

/// A byte stream, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Io for T {}
pub type BoxIo = Pin<Box<dyn Io>>;

/// Who is on the other end of a connection, for handlers (`ConnectInfo<ConnInfo>`).
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    pub access: Access,
}

impl Connected<IncomingStream<'_, NodeListener>> for ConnInfo {
    fn connect_info(stream: IncomingStream<'_, NodeListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// Accepts connections (TLS-terminated when `tls` is set) in a background task.
pub struct NodeListener {
    local: SocketAddr,
    accepted: mpsc::Receiver<(BoxIo, ConnInfo)>,
}

impl NodeListener {
    /// Every connection is closed after `idle_timeout` without a byte in either direction
    /// (see [`IdleIo`]).
    pub fn spawn(
        tcp: TcpListener,
        tls: Option<Arc<TlsStore>>,
        idle_timeout: Duration,
    ) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, accepted) = mpsc::channel(ACCEPTED_QUEUE);
        tokio::spawn(accept_loop(tcp, tls, idle_timeout, tx));
        Ok(NodeListener { local, accepted })
    }
}

impl Listener for NodeListener {
    type Io = BoxIo;
    type Addr = ConnInfo;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(c) => c,
            // The accept loop only ends with the runtime; nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(ConnInfo {
            remote: self.local,
            access: Access::Plain,
        })
    }
}

async fn accept_loop(
    tcp: TcpListener,
    tls: Option<Arc<TlsStore>>,
    idle_timeout: Duration,
    tx: mpsc::Sender<(BoxIo, ConnInfo)>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let (stream, remote) = match tcp.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Raft and client frames are small and latency-bound.
        let _ = stream.set_nodelay(true);
        let Some(tls) = tls.clone() else {
            let info = ConnInfo {
                remote,
                access: Access::Plain,
            };
            let io = IdleIo::new(stream, idle_timeout);
            if tx.send((Box::pin(io), info)).await.is_err() {
                return;
            }
            continue;
        };
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(stream, &tls)).await {
                Ok(Ok((io, access))) => {
                    drop(permit);
                    let io = Box::pin(IdleIo::new(io, idle_timeout));
                    let _ = tx.send((io, ConnInfo { remote, access })).await;
                }
                Ok(Err(e)) => {
                    tracing::warn!(%remote, error = %e, "TLS handshake failed");
                }
                Err(_) => {
                    tracing::warn!(%remote, "TLS handshake timed out");
                }
            }
        });
    }
}

/// Picks the peer or the client configuration by the server name asked for, and completes the
/// handshake.
async fn handshake(stream: TcpStream, tls: &TlsStore) -> io::Result<(BoxIo, Access)> {
    let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
    let hello = start.client_hello();
    let sni = hello.server_name();
    let wants_peer = sni == Some(node_name(tls.me()).as_str()) || sni == Some(JOIN_NAME);
    let configs = tls.current();
    if wants_peer {
        let s = start.into_stream(configs.peer_server.clone()).await?;
        let leaf = s
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .cloned()
            .ok_or_else(|| io::Error::other("peer handshake without a certificate"))?;
        Ok((Box::pin(s), Access::Peer(leaf)))
    } else {
        let s = start.into_stream(configs.client_server.clone()).await?;
        Ok((Box::pin(s), Access::Client))
    }
}
