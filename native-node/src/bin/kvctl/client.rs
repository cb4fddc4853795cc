//! The request path of `kvctl`: sessions, leader discovery, redirects, retries, and the line
//! between a definite failure and an indeterminate one.
//!
//! Writes run under a session the client opens through the log before its first write (see
//! `keyval_core::kv`); a request keeps its (session, seq) across every retry, so the cluster
//! applies it at most once whichever node finally takes it, however many other clients come
//! and go. Any attempt that might have reached a leader (the frame was written and no definite
//! answer came back) marks the request "maybe applied"; a request that then fails is reported
//! as indeterminate, never as a definite failure. Reads need no session: any node takes them
//! (followers ask the leader for a read index), so they are not redirected to the leader.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use keyval_core::{ClientError, ClientRequest, KvOp, KvResult, NodeId, ReadConsistency};
use native_node::wire::{
    self, ClientFrame, LeaderHint, MAX_CLIENT_FRAME_BYTES, MemberError, MemberOp, MembershipView,
    ServerFrame, StatusReply,
};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as TMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Longest pause between retry rounds (see `Client::pause`).
const MAX_RETRY_PAUSE_MS: u64 = 50;

pub type Conn = tokio_tungstenite::WebSocketStream<native_node::listener::BoxIo>;

/// TLS settings of this process (`--cacert`, `--cert`, `--key`), set once by `main` before any
/// connection is made; unset or `None` means plain connections.
pub static TLS: std::sync::OnceLock<Option<Arc<rustls::ClientConfig>>> = std::sync::OnceLock::new();

/// The TLS server name of an endpoint: its host (an IP address or a DNS name).
fn host_of(target: &str) -> String {
    let host = target.rsplit_once(':').map_or(target, |(h, _)| h);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// Longest a single connection attempt may take, so a black-holed endpoint cannot eat the
/// whole timeout while others are up.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

/// Why a request did not succeed.
#[derive(Debug, Clone)]
pub struct Failure {
    pub message: String,
    /// True when the request certainly did not and will not take effect.
    pub definite: bool,
}

/// A random 64-bit id from the OS-seeded std hasher: unique enough per process to keep
/// clients' deduplication sessions apart.
pub fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

pub struct Client {
    endpoints: Vec<String>,
    /// Random: tags session openings and reads, whose replies carry it back.
    nonce: u64,
    /// The session writes run under, once opened.
    session: Option<u64>,
    seq: u64,
    timeout: Duration,
    /// Where the leader was last seen; tried first.
    leader: Option<String>,
    conn: Option<(String, Conn)>,
    next_endpoint: usize,
}

/// A failed `run`, with whether the session is gone.
struct RunFailure {
    message: String,
    definite: bool,
    session_lost: bool,
}

impl RunFailure {
    fn new(message: String, definite: bool) -> Self {
        RunFailure {
            message,
            definite,
            session_lost: false,
        }
    }
}

impl From<RunFailure> for Failure {
    fn from(f: RunFailure) -> Failure {
        Failure {
            message: f.message,
            definite: f.definite,
        }
    }
}

enum AttemptError {
    /// Could not connect or send: the request certainly did not reach this node.
    NotSent(String),
    /// Sent, then the connection failed or nothing came back in time.
    Lost(String),
}

impl Client {
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Client {
        Client {
            endpoints,
            nonce: random_u64(),
            session: None,
            seq: 0,
            timeout,
            leader: None,
            conn: None,
            next_endpoint: 0,
        }
    }

    /// Runs one operation to completion, retrying within the timeout. A `Get` is a
    /// linearizable read; writes open a session first if the client has none.
    pub async fn execute(&mut self, op: KvOp) -> Result<KvResult, Failure> {
        if let KvOp::Get { key } = op {
            return self.read(key, ReadConsistency::Linearizable).await;
        }
        let deadline = Instant::now() + self.timeout;
        let session = match self.session {
            Some(s) => s,
            None => self.open_session(deadline).await?,
        };
        self.seq += 1;
        let frame = ClientFrame::Request(ClientRequest {
            client_id: session,
            seq: self.seq,
            op,
        });
        let result = self.run(frame, (session, self.seq), deadline, true).await;
        if let Err(f) = &result
            && f.session_lost
        {
            self.session = None;
        }
        result.map_err(Failure::from)
    }

    /// Reads `key` by the given path. Reads change nothing, so every failure is definite
    /// unless the request was sent and then lost (exit 4 as for any request, per SPEC).
    pub async fn read(
        &mut self,
        key: Vec<u8>,
        consistency: ReadConsistency,
    ) -> Result<KvResult, Failure> {
        let deadline = Instant::now() + self.timeout;
        self.seq += 1;
        let frame = ClientFrame::Read {
            client_id: self.nonce,
            seq: self.seq,
            key,
            consistency,
        };
        let to_leader = consistency == ReadConsistency::Lease;
        self.run(frame, (self.nonce, self.seq), deadline, to_leader)
            .await
            .map_err(Failure::from)
    }

    /// The leader's endpoint, found by opening this client's session there (following
    /// redirects).
    pub async fn find_leader(&mut self) -> Result<String, Failure> {
        let deadline = Instant::now() + self.timeout;
        if self.session.is_none() {
            self.open_session(deadline).await?;
        }
        self.leader.clone().ok_or_else(|| Failure {
            message: "no leader found".into(),
            definite: true,
        })
    }

    /// Opens a session through the log. A lost answer leaves a session nobody uses, which the
    /// cluster forgets in time; retrying is harmless.
    async fn open_session(&mut self, deadline: Instant) -> Result<u64, Failure> {
        let frame = ClientFrame::Request(ClientRequest {
            client_id: self.nonce,
            seq: 0,
            op: KvOp::OpenSession,
        });
        match self.run(frame, (self.nonce, 0), deadline, true).await {
            Ok(KvResult::Session { id }) => {
                self.session = Some(id);
                self.seq = 0;
                Ok(id)
            }
            Ok(other) => Err(Failure {
                message: format!("unexpected answer to opening a session: {other:?}"),
                definite: true,
            }),
            // Nothing the caller asked for was sent yet: whatever happened, it is definite.
            Err(f) => Err(Failure {
                message: format!("could not open a session: {}", f.message),
                definite: true,
            }),
        }
    }

    /// Sends `frame` (tagged `tag`) until a definite answer or the deadline. `to_leader`
    /// follows NotLeader redirects; reads other than lease reads are taken by any node.
    async fn run(
        &mut self,
        frame: ClientFrame,
        tag: (u64, u64),
        deadline: Instant,
        to_leader: bool,
    ) -> Result<KvResult, RunFailure> {
        let mut maybe_applied = false;
        let mut last_error = String::from("no endpoint tried");
        let mut failures_in_row = 0usize;
        loop {
            if Instant::now() >= deadline {
                let message = if maybe_applied {
                    format!(
                        "timed out after sending; the outcome is unknown (last error: {last_error})"
                    )
                } else {
                    format!("timed out; the request was not applied (last error: {last_error})")
                };
                return Err(RunFailure::new(message, !maybe_applied));
            }
            let target = self.pick_target();
            match self.attempt(&target, &frame, tag, deadline).await {
                Ok(ServerFrame::Reply { reply, leader }) => match reply.outcome {
                    Ok(result) => {
                        if to_leader {
                            self.leader = Some(target);
                        }
                        return Ok(result);
                    }
                    Err(ClientError::NotLeader { .. }) => {
                        last_error = format!("{target} is not the leader");
                        match leader.and_then(|l| l.address) {
                            Some(addr) if addr != target => self.leader = Some(addr),
                            // No leader known yet (an election is running): ask around slowly.
                            _ => {
                                failures_in_row += 1;
                                self.pause(failures_in_row, deadline).await;
                            }
                        }
                    }
                    Err(e @ ClientError::LeadershipLost) => {
                        maybe_applied = true;
                        last_error = e.to_string();
                        failures_in_row += 1;
                        self.pause(failures_in_row, deadline).await;
                    }
                    Err(e @ (ClientError::Busy { .. } | ClientError::ReadNotConfirmed { .. })) => {
                        last_error = e.to_string();
                        failures_in_row += 1;
                        if matches!(e, ClientError::ReadNotConfirmed { .. }) {
                            // Perhaps a cut-off node: try the next one.
                            self.conn = None;
                        } else {
                            self.leader = Some(target);
                        }
                        self.pause(failures_in_row, deadline).await;
                    }
                    // The leader is handing over (within an election timeout): it will soon
                    // answer NotLeader with the new leader, so ask it again after a pause.
                    Err(e @ ClientError::TransferInProgress { .. }) => {
                        last_error = e.to_string();
                        failures_in_row += 1;
                        self.pause(failures_in_row, deadline).await;
                    }
                    Err(e @ (ClientError::TooLarge { .. } | ClientError::LeaseReadsDisabled)) => {
                        return Err(RunFailure::new(e.to_string(), !maybe_applied));
                    }
                    // A retry whose session was forgotten, or superseded: the first attempt
                    // may have applied.
                    Err(e @ (ClientError::Stale | ClientError::SessionExpired)) => {
                        let mut f = RunFailure::new(e.to_string(), false);
                        f.session_lost = matches!(e, ClientError::SessionExpired);
                        return Err(f);
                    }
                },
                Ok(ServerFrame::Error { reason }) => {
                    return Err(RunFailure::new(
                        format!("{target} refused the request: {reason}"),
                        !maybe_applied,
                    ));
                }
                Ok(
                    ServerFrame::Status(_) | ServerFrame::Member { .. } | ServerFrame::Transfer(_),
                ) => {
                    self.conn = None;
                    maybe_applied = true;
                    last_error = format!("{target} answered out of turn");
                }
                Err(AttemptError::NotSent(e)) => {
                    last_error = e;
                    failures_in_row += 1;
                    // After trying every endpoint once, wait a little before the next round.
                    if failures_in_row.is_multiple_of(self.endpoints.len().max(1)) {
                        self.pause(failures_in_row / self.endpoints.len().max(1), deadline)
                            .await;
                    }
                }
                Err(AttemptError::Lost(e)) => {
                    maybe_applied = true;
                    last_error = e;
                    failures_in_row += 1;
                }
            }
        }
    }

    /// Runs a membership request at the leader (following its redirects) within the timeout.
    /// A change whose answer is lost after sending is indeterminate: it is not retried,
    /// since a retry of an applied `add` would be refused and read as a definite failure.
    pub async fn member(&mut self, op: MemberOp) -> Result<MembershipView, Failure> {
        let deadline = Instant::now() + self.timeout;
        let change = op != MemberOp::List;
        let mut last_error = String::from("no endpoint tried");
        let mut failures_in_row = 0usize;
        loop {
            if Instant::now() >= deadline {
                return Err(Failure {
                    message: format!(
                        "timed out; the request was not applied (last error: {last_error})"
                    ),
                    definite: true,
                });
            }
            let target = self.pick_target();
            self.seq += 1;
            let tag = self.seq;
            let frame = ClientFrame::Member {
                tag,
                op: op.clone(),
            };
            match self.attempt_member(&target, &frame, tag, deadline).await {
                Ok((Ok(view), _)) => return Ok(view),
                Ok((Err(MemberError::NotLeader { .. }), leader)) => {
                    last_error = format!("{target} is not the leader");
                    match leader.and_then(|l| l.address) {
                        Some(addr) if addr != target => self.leader = Some(addr),
                        _ => {
                            self.conn = None;
                            failures_in_row += 1;
                            self.pause(failures_in_row, deadline).await;
                        }
                    }
                }
                Ok((Err(MemberError::Refused(message)), _)) => {
                    return Err(Failure {
                        message,
                        definite: true,
                    });
                }
                Ok((Err(MemberError::Busy(message)), _)) => {
                    // Passing (a change in flight, a new leader, a hand-over): retry until the
                    // deadline, which then reports this refusal (nothing was proposed).
                    last_error = message;
                    failures_in_row += 1;
                    if Instant::now() + Duration::from_millis(MAX_RETRY_PAUSE_MS) >= deadline {
                        return Err(Failure {
                            message: last_error,
                            definite: true,
                        });
                    }
                    self.pause(failures_in_row, deadline).await;
                }
                Ok((Err(MemberError::Indeterminate(message)), _)) => {
                    return Err(Failure {
                        message,
                        definite: false,
                    });
                }
                Err(AttemptError::NotSent(e)) => {
                    last_error = e;
                    failures_in_row += 1;
                    if failures_in_row.is_multiple_of(self.endpoints.len().max(1)) {
                        self.pause(failures_in_row / self.endpoints.len().max(1), deadline)
                            .await;
                    }
                }
                Err(AttemptError::Lost(e)) if change => {
                    return Err(Failure {
                        message: format!(
                            "lost the answer after sending; the outcome is unknown: {e}"
                        ),
                        definite: false,
                    });
                }
                Err(AttemptError::Lost(e)) => {
                    last_error = e;
                    failures_in_row += 1;
                }
            }
        }
    }

    async fn attempt_member(
        &mut self,
        target: &str,
        frame: &ClientFrame,
        tag: u64,
        deadline: Instant,
    ) -> Result<(Result<MembershipView, MemberError>, Option<LeaderHint>), AttemptError> {
        let mut conn = match self.conn.take() {
            Some((addr, c)) if addr == target => c,
            _ => connect(target, deadline)
                .await
                .map_err(AttemptError::NotSent)?,
        };
        if let Err(e) = conn
            .send(TMessage::Binary(wire::encode(frame).into()))
            .await
        {
            return Err(AttemptError::Lost(format!("{target}: {e}")));
        }
        loop {
            match tokio::time::timeout_at(deadline, conn.next()).await {
                Err(_) => return Err(AttemptError::Lost(format!("{target}: no reply in time"))),
                Ok(None) | Ok(Some(Ok(TMessage::Close(_)))) => {
                    return Err(AttemptError::Lost(format!("{target}: connection closed")));
                }
                Ok(Some(Err(e))) => return Err(AttemptError::Lost(format!("{target}: {e}"))),
                Ok(Some(Ok(TMessage::Binary(b)))) => match wire::decode::<ServerFrame>(&b) {
                    Ok(ServerFrame::Member {
                        tag: t,
                        outcome,
                        leader,
                    }) if t == tag => {
                        self.conn = Some((target.to_string(), conn));
                        return Ok((outcome, leader));
                    }
                    Ok(ServerFrame::Error { reason }) => {
                        return Ok((
                            Err(MemberError::Refused(format!(
                                "{target} refused the request: {reason}"
                            ))),
                            None,
                        ));
                    }
                    Ok(_) => continue,
                    Err(e) => {
                        return Err(AttemptError::Lost(format!("{target}: bad frame: {e}")));
                    }
                },
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Closes the connection politely so the server does not log a reset.
    pub async fn close(&mut self) {
        if let Some((_, mut c)) = self.conn.take() {
            let _ = tokio::time::timeout(Duration::from_millis(200), c.close(None)).await;
        }
    }

    fn pick_target(&mut self) -> String {
        if let Some(l) = self.leader.take() {
            return l;
        }
        if let Some((addr, _)) = &self.conn {
            return addr.clone();
        }
        let n = self.endpoints.len().max(1);
        let t = self.endpoints[self.next_endpoint % n].clone();
        self.next_endpoint = (self.next_endpoint + 1) % n;
        t
    }

    async fn pause(&self, round: usize, deadline: Instant) {
        // 20, 40, 50, 50 ms...: an election here takes a few hundred ms, and a longer pause
        // only adds to the time a client sees after the new leader is up. One probe per
        // endpoint every 50 ms costs the cluster nothing.
        let ms = (10u64 << round.min(5)).min(MAX_RETRY_PAUSE_MS);
        let until = (Instant::now() + Duration::from_millis(ms)).min(deadline);
        tokio::time::sleep_until(until).await;
    }

    async fn attempt(
        &mut self,
        target: &str,
        frame: &ClientFrame,
        (client_id, seq): (u64, u64),
        deadline: Instant,
    ) -> Result<ServerFrame, AttemptError> {
        let mut conn = match self.conn.take() {
            Some((addr, c)) if addr == target => c,
            _ => connect(target, deadline)
                .await
                .map_err(AttemptError::NotSent)?,
        };
        let frame = wire::encode(frame);
        // A failed write may still have delivered the frame: count it as sent.
        if let Err(e) = conn.send(TMessage::Binary(frame.into())).await {
            return Err(AttemptError::Lost(format!("{target}: {e}")));
        }
        loop {
            let next = tokio::time::timeout_at(deadline, conn.next()).await;
            match next {
                Err(_) => return Err(AttemptError::Lost(format!("{target}: no reply in time"))),
                Ok(None) => return Err(AttemptError::Lost(format!("{target}: connection closed"))),
                Ok(Some(Err(e))) => return Err(AttemptError::Lost(format!("{target}: {e}"))),
                Ok(Some(Ok(TMessage::Binary(b)))) => match wire::decode::<ServerFrame>(&b) {
                    Ok(ServerFrame::Reply { reply, leader })
                        if reply.client_id == client_id && reply.seq == seq =>
                    {
                        self.conn = Some((target.to_string(), conn));
                        return Ok(ServerFrame::Reply { reply, leader });
                    }
                    // The answer to an earlier attempt that we gave up on: not ours.
                    Ok(ServerFrame::Reply { .. }) => continue,
                    Ok(other) => return Ok(other),
                    Err(e) => {
                        return Err(AttemptError::Lost(format!("{target}: bad frame: {e}")));
                    }
                },
                Ok(Some(Ok(TMessage::Close(_)))) => {
                    return Err(AttemptError::Lost(format!("{target}: connection closed")));
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }
}

pub async fn connect(target: &str, deadline: Instant) -> Result<Conn, String> {
    let url = format!("ws://{target}/client");
    let config = WebSocketConfig::default()
        .read_buffer_size(wire::READ_BUFFER_BYTES)
        .max_message_size(Some(MAX_CLIENT_FRAME_BYTES * 2))
        .max_frame_size(Some(MAX_CLIENT_FRAME_BYTES * 2));
    let limit = (Instant::now() + CONNECT_TIMEOUT).min(deadline);
    let tls = TLS.get().cloned().flatten().map(|c| (c, host_of(target)));
    let opened = tokio::time::timeout_at(limit, async {
        let stream = native_node::transport::connect_stream(target, tls)
            .await
            .map_err(|e| e.to_string())?;
        tokio_tungstenite::client_async_with_config(&url, stream, Some(config))
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    match opened {
        Ok(Ok((conn, _))) => Ok(conn),
        Ok(Err(e)) => Err(format!("{target}: {e}")),
        Err(_) => Err(format!("{target}: connect timed out")),
    }
}

/// One endpoint's answer to `status`.
pub struct EndpointStatus {
    pub address: String,
    pub result: Result<StatusReply, String>,
}

pub async fn status_of(address: String, timeout: Duration) -> EndpointStatus {
    let deadline = Instant::now() + timeout;
    let result = async {
        let mut conn = connect(&address, deadline).await?;
        conn.send(TMessage::Binary(wire::encode(&ClientFrame::Status).into()))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            match tokio::time::timeout_at(deadline, conn.next()).await {
                Err(_) => return Err("no answer in time".to_string()),
                Ok(None) => return Err("connection closed".to_string()),
                Ok(Some(Err(e))) => return Err(e.to_string()),
                Ok(Some(Ok(TMessage::Binary(b)))) => match wire::decode::<ServerFrame>(&b) {
                    Ok(ServerFrame::Status(s)) => {
                        let _ = conn.close(None).await;
                        return Ok(s);
                    }
                    Ok(_) => continue,
                    Err(e) => return Err(e.to_string()),
                },
                Ok(Some(Ok(_))) => continue,
            }
        }
    }
    .await;
    EndpointStatus { address, result }
}

/// id -> address as the reachable nodes report it, to name unreachable endpoints too.
pub fn known_members(all: &[EndpointStatus]) -> BTreeMap<NodeId, String> {
    all.iter()
        .filter_map(|e| e.result.as_ref().ok())
        .flat_map(|s| s.members.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn tls_server_name_is_the_endpoint_host() {
        assert_eq!(super::host_of("127.0.0.1:7001"), "127.0.0.1");
        assert_eq!(super::host_of("node-1.example:7001"), "node-1.example");
        assert_eq!(super::host_of("[::1]:7001"), "::1");
    }
}
