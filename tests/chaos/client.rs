//! A minimal blocking client on the node's wire types, and the recorded history of what each
//! chaos client asked and saw.
//!
//! A request is sent once, to one node, with a fresh sequence number: no retries, so every
//! outcome maps cleanly onto the history. A definite refusal (not the leader, busy, too large)
//! is a failure that did not happen; a timeout, a dropped connection after the frame was
//! written, `LeadershipLost` or `Stale` is unknown (it may happen at any later time), and as in
//! Jepsen the client then continues as a new process with a new client id, so no later request
//! of its own can be confused with the one left hanging.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use keyval_core::{ClientRequest, KvOp, KvResult, NodeId, NodeStatus, ReadConsistency};
use native_node::wire::{self, ClientFrame, ServerFrame};
use serde_json::{json, Value};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<TcpStream>;

/// How an operation ended, as the client saw it.
#[derive(Clone, Debug)]
pub enum Outcome {
    Ok(KvResult),
    /// Certainly did not and will not take effect.
    Fail(String),
    /// May or may not take effect, at any time after its invocation.
    Unknown(String),
}

/// One completed (or abandoned) operation of the history.
#[derive(Clone, Debug)]
pub struct Record {
    /// The client process (a new one after every unknown outcome).
    pub process: u64,
    pub node: NodeId,
    pub op: KvOp,
    /// Microseconds since the run started.
    pub invoke_us: u64,
    pub complete_us: u64,
    pub outcome: Outcome,
}

impl Record {
    pub fn to_json(&self) -> Value {
        let (op, key, value) = match &self.op {
            KvOp::Put { key, value } => ("put", key, Some(text(value))),
            KvOp::Get { key } => ("get", key, None),
            KvOp::Delete { key } => ("delete", key, None),
            KvOp::OpenSession => ("open-session", &Vec::new(), None),
        };
        let (kind, result) = match &self.outcome {
            Outcome::Ok(KvResult::Put) => ("ok", Value::Null),
            Outcome::Ok(KvResult::Get(v)) => ("ok", json!(v.as_deref().map(text))),
            Outcome::Ok(KvResult::Delete { deleted }) => ("ok", json!(deleted)),
            Outcome::Ok(KvResult::Session { id }) => ("ok", json!(id)),
            Outcome::Fail(why) => ("fail", json!(why)),
            Outcome::Unknown(why) => ("unknown", json!(why)),
        };
        json!({
            "process": self.process, "node": self.node, "op": op, "key": text(key),
            "value": value, "invoke_us": self.invoke_us, "complete_us": self.complete_us,
            "type": kind, "result": result,
        })
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// One connection to one node.
pub struct Conn {
    pub node: NodeId,
    ws: Ws,
}

impl Conn {
    /// Connects within `timeout`, handshake included (a paused node accepts TCP but never
    /// answers, so the handshake must be bounded too).
    pub fn open(node: NodeId, addr: &str, timeout: Duration) -> Result<Conn, String> {
        let sa: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
        let tcp = TcpStream::connect_timeout(&sa, timeout).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        tcp.set_write_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let config = WebSocketConfig::default()
            .max_message_size(Some(wire::MAX_CLIENT_FRAME_BYTES))
            .max_frame_size(Some(wire::MAX_CLIENT_FRAME_BYTES));
        let (ws, _) = tungstenite::client::client_with_config(
            format!("ws://{addr}/client"),
            tcp,
            Some(config),
        )
        .map_err(|e| e.to_string())?;
        Ok(Conn { node, ws })
    }

    fn send(&mut self, frame: &ClientFrame) -> Result<(), String> {
        self.ws
            .send(Message::Binary(wire::encode(frame).into()))
            .map_err(|e| e.to_string())
    }

    /// The next server frame, waiting at most until `deadline`.
    fn recv(&mut self, deadline: Instant) -> Result<ServerFrame, String> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("timed out".into());
            }
            self.ws
                .get_ref()
                .set_read_timeout(Some(left))
                .map_err(|e| e.to_string())?;
            match self.ws.read() {
                Ok(Message::Binary(b)) => return wire::decode(&b).map_err(|e| e.to_string()),
                Ok(Message::Close(_)) => return Err("connection closed".into()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Sends one request and waits for its reply. Returns the outcome and, on a redirect, the
    /// leader the node named.
    pub fn request(&mut self, req: ClientRequest, timeout: Duration) -> (Outcome, Option<NodeId>) {
        let tag = (req.client_id, req.seq);
        self.exchange(&ClientFrame::Request(req), tag, timeout)
    }

    /// A read by one of the read paths; `(client_id, seq)` only tag the reply.
    pub fn read(
        &mut self,
        (client_id, seq): (u64, u64),
        key: Vec<u8>,
        consistency: ReadConsistency,
        timeout: Duration,
    ) -> (Outcome, Option<NodeId>) {
        let frame = ClientFrame::Read {
            client_id,
            seq,
            key,
            consistency,
        };
        self.exchange(&frame, (client_id, seq), timeout)
    }

    /// Opens a session (through the log) for the writes of process `nonce`.
    pub fn open_session(&mut self, nonce: u64, timeout: Duration) -> (Outcome, Option<NodeId>) {
        let req = ClientRequest {
            client_id: nonce,
            seq: 0,
            op: KvOp::OpenSession,
        };
        self.request(req, timeout)
    }

    fn exchange(
        &mut self,
        frame: &ClientFrame,
        (client_id, seq): (u64, u64),
        timeout: Duration,
    ) -> (Outcome, Option<NodeId>) {
        let deadline = Instant::now() + timeout;
        if let Err(e) = self.send(frame) {
            // The frame may be partly or wholly written: that is not a definite failure.
            return (Outcome::Unknown(format!("send: {e}")), None);
        }
        loop {
            match self.recv(deadline) {
                Ok(ServerFrame::Reply { reply, leader })
                    if reply.client_id == client_id && reply.seq == seq =>
                {
                    let hint = leader.map(|l| l.id);
                    return match reply.outcome {
                        Ok(r) => (Outcome::Ok(r), hint),
                        Err(e) if e.is_definite() => (Outcome::Fail(e.to_string()), hint),
                        Err(e) => (Outcome::Unknown(e.to_string()), hint),
                    };
                }
                Ok(ServerFrame::Error { reason }) => {
                    return (Outcome::Unknown(format!("server error: {reason}")), None);
                }
                Ok(_) => {}
                Err(e) => return (Outcome::Unknown(e), None),
            }
        }
    }

    pub fn status(&mut self, timeout: Duration) -> Option<NodeStatus> {
        let deadline = Instant::now() + timeout;
        self.send(&ClientFrame::Status).ok()?;
        loop {
            match self.recv(deadline).ok()? {
                ServerFrame::Status(s) => return Some(s.status),
                _ => continue,
            }
        }
    }
}

/// The status of the node at `addr`, or None if it does not answer within `timeout`.
pub fn status_of(addr: &str, timeout: Duration) -> Option<NodeStatus> {
    Conn::open(0, addr, timeout).ok()?.status(timeout)
}
