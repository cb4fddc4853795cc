//! `keyval --join ENDPOINTS`: how a node that was added with `kvctl member add` learns which
//! cluster it belongs to before its first start.
//!
//! It dials each endpoint's `/raft` as a peer would (with TLS on, presenting its own peer
//! certificate, see [`crate::tls::join_dialer`]) and sends `Join { from, address }` instead of
//! a `Hello`: it does not know the cluster id yet, and the cluster id is never handed to plain
//! clients. A member that has applied the node's addition answers `Joined` with the cluster id
//! and the membership; a node never added is refused, a removed one gets `Removed`. The answer
//! is persisted by the caller, so later starts need no `--join`.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use keyval_core::{Membership, NodeId};
use tokio_tungstenite::tungstenite::Message as TMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::tls::TlsStore;
use crate::transport::connect_stream;
use crate::wire::{self, MAX_PEER_FRAME_BYTES, PeerFrame};

/// How long one endpoint gets to answer.
const ENDPOINT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the whole join may take while endpoints are unreachable (not when they refuse).
const JOIN_PATIENCE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// One clear line from the cluster: this id was never added (or at another address).
    #[error("the cluster refused to let node {id} join: {reason}")]
    Refused { id: NodeId, reason: String },
    #[error("{0}")]
    Removed(String),
    #[error("cannot join: no endpoint of --join answered ({0})")]
    Unreachable(String),
}

/// What an accepted join hands over.
#[derive(Clone, Debug)]
pub struct Admission {
    pub cluster_id: String,
    pub membership: Membership,
    /// Log index of the configuration.
    pub index: u64,
}

/// Asks the endpoints in turn until one admits (or refuses) node `id` listening at `address`.
/// Unreachable endpoints are retried for a while; an endpoint that has not yet applied the
/// addition refuses, so every endpoint is asked before a refusal is final.
pub async fn join(
    id: NodeId,
    address: &str,
    endpoints: &[String],
    tls: Option<&TlsStore>,
) -> Result<Admission, JoinError> {
    let deadline = tokio::time::Instant::now() + JOIN_PATIENCE;
    loop {
        let mut refusal = None;
        let mut errors = Vec::new();
        for ep in endpoints {
            match ask(id, address, ep, tls).await {
                Ok(PeerFrame::Joined {
                    cluster_id,
                    membership,
                    index,
                }) => {
                    return Ok(Admission {
                        cluster_id,
                        membership: *membership,
                        index,
                    });
                }
                Ok(PeerFrame::Removed { reason, .. }) => return Err(JoinError::Removed(reason)),
                Ok(PeerFrame::Refused { reason }) => refusal = Some(reason),
                Ok(other) => errors.push(format!("{ep}: unexpected answer {other:?}")),
                Err(e) => errors.push(format!("{ep}: {e}")),
            }
        }
        if let Some(reason) = refusal {
            return Err(JoinError::Refused { id, reason });
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(JoinError::Unreachable(errors.join("; ")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn ask(
    id: NodeId,
    address: &str,
    endpoint: &str,
    tls: Option<&TlsStore>,
) -> Result<PeerFrame, String> {
    let config = WebSocketConfig::default()
        .read_buffer_size(wire::READ_BUFFER_BYTES)
        .max_message_size(Some(MAX_PEER_FRAME_BYTES))
        .max_frame_size(Some(MAX_PEER_FRAME_BYTES));
    let url = format!("ws://{endpoint}/raft");
    let tls = tls.map(|t| {
        (
            t.current().join_dialer.clone(),
            crate::tls::JOIN_NAME.to_string(),
        )
    });
    tokio::time::timeout(ENDPOINT_TIMEOUT, async {
        let stream = connect_stream(endpoint, tls)
            .await
            .map_err(|e| e.to_string())?;
        let (mut ws, _) = tokio_tungstenite::client_async_with_config(&url, stream, Some(config))
            .await
            .map_err(|e| e.to_string())?;
        let frame = PeerFrame::Join {
            from: id,
            address: address.to_string(),
        };
        ws.send(TMessage::Binary(wire::encode(&frame).into()))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            match ws.next().await {
                Some(Ok(TMessage::Binary(b))) => {
                    let _ = ws.close(None).await;
                    return wire::decode::<PeerFrame>(&b).map_err(|e| e.to_string());
                }
                Some(Ok(TMessage::Close(_))) | None => {
                    return Err("closed without an answer".into());
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.to_string()),
            }
        }
    })
    .await
    .map_err(|_| "no answer in time".to_string())?
}
