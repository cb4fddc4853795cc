//! `kvctl leader transfer [--to ID]`: asks the leader to hand leadership to ID (or to its most
//! caught-up voter) and waits until the node it asked reports the outcome. The leader refuses
//! writes meanwhile (at most one election timeout); `put` retries through it.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Subcommand;
use futures_util::{SinkExt, StreamExt};
use keyval_core::{NodeId, Role};
use native_node::wire::{self, ClientFrame, ServerFrame, TransferOutcome};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as TMessage;

use crate::client::{self, Failure};

#[derive(Debug, Subcommand)]
pub enum LeaderCommand {
    /// Hand leadership to node ID (default: the most caught-up voter). Writes pause for at
    /// most an election timeout; prints the new leader.
    Transfer {
        #[arg(long)]
        to: Option<NodeId>,
    },
}

/// Redirects followed at most (a leader that changes while we ask).
const MAX_REDIRECTS: usize = 5;

pub async fn transfer(
    endpoints: Vec<String>,
    to: Option<NodeId>,
    timeout: Duration,
) -> Result<NodeId, Failure> {
    let deadline = Instant::now() + timeout;
    let (mut target, members) = find_leader(&endpoints, timeout).await?;
    for _ in 0..MAX_REDIRECTS {
        match ask(&target, to, deadline).await? {
            TransferOutcome::Done { leader } => return Ok(leader),
            TransferOutcome::Failed { reason } => return Err(definite(reason)),
            TransferOutcome::NotLeader { leader } => {
                let next = leader.and_then(|l| l.address.or_else(|| members.get(&l.id).cloned()));
                match next {
                    Some(addr) if addr != target => target = addr,
                    _ => {
                        return Err(definite(format!(
                            "{target} is not the leader and knows no leader; retry"
                        )));
                    }
                }
            }
        }
    }
    Err(definite("the leader kept changing; retry".into()))
}

fn definite(message: String) -> Failure {
    Failure {
        message,
        definite: true,
    }
}

/// The endpoint of the highest-term leader the endpoints report, and id -> address.
async fn find_leader(
    endpoints: &[String],
    timeout: Duration,
) -> Result<(String, BTreeMap<NodeId, String>), Failure> {
    let tasks: Vec<_> = endpoints
        .iter()
        .map(|e| tokio::spawn(client::status_of(e.clone(), timeout)))
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        if let Ok(s) = t.await {
            all.push(s);
        }
    }
    let members = client::known_members(&all);
    let leader = all
        .iter()
        .filter_map(|e| e.result.as_ref().ok().map(|r| (e, r)))
        .filter(|(_, r)| r.status.role == Role::Leader)
        .max_by_key(|(_, r)| r.status.term)
        .map(|(e, _)| e.address.clone());
    match leader {
        Some(l) => Ok((l, members)),
        None if all.iter().all(|e| e.result.is_err()) => {
            Err(definite("no endpoint is reachable".into()))
        }
        None => Err(definite(
            "no leader right now (an election is running); retry".into(),
        )),
    }
}

/// Sends the request to `target` and waits for its outcome. Anything lost after sending is
/// indeterminate: the transfer may have happened.
async fn ask(
    target: &str,
    to: Option<NodeId>,
    deadline: Instant,
) -> Result<TransferOutcome, Failure> {
    let mut conn = client::connect(target, deadline).await.map_err(definite)?;
    let frame = wire::encode(&ClientFrame::TransferLeader { to });
    let lost = |why: String| Failure {
        message: format!("{target}: {why}; leadership may or may not have moved"),
        definite: false,
    };
    conn.send(TMessage::Binary(frame.into()))
        .await
        .map_err(|e| lost(e.to_string()))?;
    loop {
        match tokio::time::timeout_at(deadline, conn.next()).await {
            Err(_) => return Err(lost("no answer in time".into())),
            Ok(None) | Ok(Some(Ok(TMessage::Close(_)))) => {
                return Err(lost("connection closed".into()));
            }
            Ok(Some(Err(e))) => return Err(lost(e.to_string())),
            Ok(Some(Ok(TMessage::Binary(b)))) => match wire::decode::<ServerFrame>(&b) {
                Ok(ServerFrame::Transfer(outcome)) => {
                    let _ = conn.close(None).await;
                    return Ok(outcome);
                }
                // An older node that does not know the frame refuses it.
                Ok(ServerFrame::Error { reason }) => {
                    return Err(definite(format!("{target} refused the request: {reason}")));
                }
                Ok(_) => continue,
                Err(e) => return Err(lost(format!("bad frame: {e}"))),
            },
            Ok(Some(Ok(_))) => continue,
        }
    }
}
