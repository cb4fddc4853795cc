//! Simulated clients: each issues one operation at a time over a small key space, follows
//! leader hints, retries (with the same sequence number, so the server deduplicates) on
//! timeouts and lost leadership, and records what it saw for the linearizability checker.
//!
//! A client opens a session before its first write and keeps it; a write refused because its
//! session expired (or superseded as stale) is recorded as indeterminate, as a real client must
//! report it, and the client opens a new session. Reads use one of the three read paths;
//! serializable reads are kept out of the linearizable history (they may be stale by design)
//! and checked against a weaker model instead: see [`check_serializable_reads`].

use serde::{Deserialize, Serialize};

use super::linearizability::{Op, OpResult, Operation};
use super::simulator::{Action, Simulator};
use super::trace::{Addr, Payload, TraceKind};
use crate::kv::{ClientError, KvOp, KvResult, ReadConsistency};
use crate::rng::Rng;
use crate::types::NodeId;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkloadConfig {
    pub clients: usize,
    pub ops_per_client: u32,
    pub keys: u32,
    /// Pause between one operation's completion and the next invocation.
    pub think_us: (u64, u64),
    /// A client that hears nothing for this long retries at another node.
    pub timeout_us: u64,
    /// While faults are active a client gives up after this many attempts (the outcome is then
    /// unknown); once they stop it retries until it gets an answer.
    pub max_attempts: u32,
    /// Relative weights of put, get and delete.
    pub mix: (u32, u32, u32),
    /// Relative weights of linearizable (ReadIndex), lease and serializable gets.
    #[serde(default = "default_read_mix")]
    pub read_mix: (u32, u32, u32),
}

fn default_read_mix() -> (u32, u32, u32) {
    (1, 0, 0)
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            clients: 0,
            ops_per_client: 0,
            keys: 3,
            think_us: (0, 20_000),
            timeout_us: 400_000,
            max_attempts: 8,
            mix: (5, 3, 2),
            read_mix: default_read_mix(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct PendingOp {
    pub seq: u64,
    pub op: KvOp,
    pub history_index: usize,
    pub attempt: u32,
    /// Set for reads: the path they take.
    pub consistency: Option<ReadConsistency>,
    /// A write waiting for the session it needs to be opened first.
    pub opening: bool,
}

#[derive(Clone, Debug)]
pub struct Client {
    pub id: u64,
    rng: Rng,
    seq: u64,
    target: NodeId,
    ops_left: u32,
    pub pending: Option<PendingOp>,
    /// Issues only what it is given (the playground's client), never generated operations.
    manual: bool,
    /// The session its writes run under, once opened.
    pub session: Option<u64>,
    /// Driven by a scenario script: sends to the node it is told, and never retries or
    /// redirects on its own (the script does, with `retry`).
    scripted: bool,
    /// The last node that answered "not the leader" without a hint, since the last success.
    knows_no_leader: Option<NodeId>,
}

/// Client id used for operations submitted by hand (the playground's put/get/delete box).
pub const MANUAL_CLIENT: u64 = 100;

impl Client {
    pub fn is_done(&self) -> bool {
        self.ops_left == 0 && self.pending.is_none()
    }
    /// The node the client sends its next request (or retry) to.
    pub fn target(&self) -> NodeId {
        self.target
    }
}

fn to_op(op: &KvOp) -> Op {
    match op {
        // Never recorded: sessions are opened on the way to a write.
        KvOp::OpenSession => Op::Get { key: Vec::new() },
        KvOp::Put { key, value } => Op::Put {
            key: key.clone(),
            value: value.clone(),
        },
        KvOp::Get { key } => Op::Get { key: key.clone() },
        KvOp::Delete { key } => Op::Delete { key: key.clone() },
    }
}

fn to_result(r: &KvResult) -> OpResult {
    match r {
        KvResult::Put | KvResult::Session { .. } => OpResult::Put,
        KvResult::Get(v) => OpResult::Get(v.clone()),
        KvResult::Delete { deleted } => OpResult::Delete { deleted: *deleted },
    }
}

impl Simulator {
    pub(super) fn start_workload(&mut self) {
        let w = self.cfg.workload.clone();
        for i in 0..w.clients as u64 {
            let id = i + 1;
            let mut rng = self.rng.fork();
            let target = 1 + rng.below(self.cfg.nodes as u64);
            self.clients.insert(
                id,
                Client {
                    id,
                    rng,
                    seq: 0,
                    target,
                    ops_left: w.ops_per_client,
                    pending: None,
                    manual: false,
                    session: None,
                    scripted: false,
                    knows_no_leader: None,
                },
            );
            let at = self.rng.range(w.think_us.0, w.think_us.1) + 200_000;
            self.schedule(at, Action::ClientWake { client: id });
        }
    }

    pub fn clients_done(&self) -> bool {
        self.clients.values().all(Client::is_done)
    }

    pub fn clients(&self) -> impl Iterator<Item = &Client> {
        self.clients.values()
    }

    /// Submits an operation as the manual client (the playground's request box). It is
    /// refused while the previous manual operation is still pending.
    pub fn submit(&mut self, op: KvOp) -> Result<u64, &'static str> {
        let consistency = matches!(op, KvOp::Get { .. }).then_some(ReadConsistency::Linearizable);
        self.submit_from(MANUAL_CLIENT, op, consistency, None)
    }

    /// Submits an operation as client `client` (created on first use, issuing only what it is
    /// given) to `node`, or to the leader when None. A `Get` takes the path `consistency`
    /// names. Refused while that client's previous operation is pending. Scripted scenarios
    /// use it to run several clients side by side.
    pub fn submit_from(
        &mut self,
        client: u64,
        op: KvOp,
        consistency: Option<ReadConsistency>,
        node: Option<NodeId>,
    ) -> Result<u64, &'static str> {
        let nodes = self.cfg.nodes as u64;
        let target = match node {
            Some(n) => n,
            None => self.leader().unwrap_or(1 + self.rng.below(nodes)),
        };
        let c = self.clients.entry(client).or_insert_with(|| Client {
            id: client,
            rng: Rng::new(client),
            seq: 0,
            target,
            ops_left: 0,
            pending: None,
            manual: true,
            session: None,
            scripted: false,
            knows_no_leader: None,
        });
        if c.pending.is_some() {
            return Err("the previous request is still pending");
        }
        if !c.manual {
            return Err("that client runs the generated workload");
        }
        c.target = target;
        let consistency = match op {
            KvOp::Get { .. } => Some(consistency.unwrap_or_default()),
            _ => None,
        };
        Ok(self.invoke(client, op, consistency))
    }

    /// Sends `op` as the scripted client `client` to `node`, creating the client on first use.
    /// A scripted client has one request outstanding at a time and never retries on its own:
    /// it is refused while the previous request waits for a successful answer.
    pub fn submit_to(&mut self, client: u64, node: NodeId, op: KvOp) -> Result<u64, String> {
        self.submit_to_with(client, node, op, None)
    }

    /// Like [`Simulator::submit_to`], with the read path a `Get` takes (linearizable when
    /// None); ignored for writes.
    pub fn submit_to_with(
        &mut self,
        client: u64,
        node: NodeId,
        op: KvOp,
        consistency: Option<ReadConsistency>,
    ) -> Result<u64, String> {
        let c = self.clients.entry(client).or_insert_with(|| Client {
            id: client,
            rng: Rng::new(client),
            seq: 0,
            target: node,
            ops_left: 0,
            pending: None,
            manual: true,
            scripted: true,
            knows_no_leader: None,
            session: None,
        });
        if !c.scripted {
            return Err(format!("c{client} is not a scripted client"));
        }
        if let Some(p) = &c.pending {
            return Err(format!(
                "c{client} still waits for an answer to seq={} (retry it, or use another client)",
                p.seq
            ));
        }
        c.target = node;
        let consistency = match op {
            KvOp::Get { .. } => Some(consistency.unwrap_or_default()),
            _ => None,
        };
        Ok(self.invoke(client, op, consistency))
    }

    /// Sends the scripted client's outstanding request again, with the same sequence number,
    /// to `node` (the way a real client retries after a timeout or a redirect).
    pub fn resend(&mut self, client: u64, node: NodeId) -> Result<u64, String> {
        let Some(c) = self.clients.get_mut(&client).filter(|c| c.scripted) else {
            return Err(format!("c{client} has sent nothing yet"));
        };
        let Some(p) = c.pending.as_mut() else {
            return Err(format!("c{client} has no request waiting for an answer"));
        };
        p.attempt += 1;
        c.target = node;
        let (seq, attempt) = (p.seq, p.attempt);
        self.record(TraceKind::ClientRetry {
            client,
            seq,
            node,
            reason: format!("attempt {attempt}"),
        });
        self.dispatch(client, attempt);
        Ok(seq)
    }

    pub(super) fn client_wake(&mut self, id: u64) {
        let ids = self.node_ids();
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        if c.pending.is_some() || c.ops_left == 0 || c.manual {
            return;
        }
        c.ops_left -= 1;
        let (put, get, del) = self.cfg.workload.mix;
        let key = format!("k{}", c.rng.below(self.cfg.workload.keys as u64)).into_bytes();
        let roll = c.rng.below((put + get + del) as u64) as u32;
        let mut consistency = None;
        let op = if roll < put {
            let value = format!("c{}-{}", id, c.seq + 1).into_bytes();
            KvOp::Put { key, value }
        } else if roll < put + get {
            consistency = Some(pick_consistency(&mut c.rng, self.cfg.workload.read_mix));
            // Half of the reads go to any node, as clients spreading read load do: followers
            // serve them by asking the leader, and a deposed leader still gets some.
            if c.rng.chance(0.5) {
                c.target = ids[c.rng.below(ids.len() as u64) as usize];
            }
            KvOp::Get { key }
        } else {
            KvOp::Delete { key }
        };
        self.invoke(id, op, consistency);
    }

    fn invoke(&mut self, id: u64, op: KvOp, consistency: Option<ReadConsistency>) -> u64 {
        let now = self.now;
        let history_index = self.history.len();
        let Some(c) = self.clients.get_mut(&id) else {
            return 0;
        };
        c.seq += 1;
        let seq = c.seq;
        let node = c.target;
        let serializable = consistency == Some(ReadConsistency::Serializable);
        let history_index = if serializable {
            self.serializable_reads.len()
        } else {
            history_index
        };
        c.pending = Some(PendingOp {
            seq,
            op: op.clone(),
            history_index,
            attempt: 0,
            consistency,
            opening: op.is_write() && c.session.is_none(),
        });
        let record = Operation {
            client: id,
            op: to_op(&op),
            invoke: now,
            complete: None,
        };
        if serializable {
            self.serializable_reads.push(record);
        } else {
            self.history.push(record);
        }
        self.record(TraceKind::ClientInvoke {
            client: id,
            seq,
            op,
            node,
        });
        self.dispatch(id, 0);
        seq
    }

    /// Sends the client's pending operation (or first the session it needs) to its target
    /// node, and arms the timeout of this attempt.
    fn dispatch(&mut self, id: u64, attempt: u32) {
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        let Some(p) = c.pending.as_ref() else {
            return;
        };
        let seq = p.seq;
        let payload = match (&p.op, p.consistency, c.session) {
            _ if p.opening => Payload::Request {
                seq: 0,
                op: KvOp::OpenSession,
            },
            (KvOp::Get { key }, Some(consistency), _) => Payload::Read {
                seq,
                key: key.clone(),
                consistency,
            },
            (op, _, Some(session)) => Payload::Write {
                session,
                seq,
                op: op.clone(),
            },
            (op, _, None) => Payload::Request {
                seq,
                op: op.clone(),
            },
        };
        let node = c.target;
        let scripted = c.scripted;
        self.send(Addr::Client(id), Addr::Node(node), payload);
        if scripted {
            return;
        }
        let at = self.now + self.cfg.workload.timeout_us;
        self.schedule(
            at,
            Action::ClientTimeout {
                client: id,
                seq,
                attempt,
            },
        );
    }

    pub(super) fn client_reply(
        &mut self,
        id: u64,
        seq: u64,
        outcome: Result<KvResult, ClientError>,
    ) {
        let now = self.now;
        let ids = self.node_ids();
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let opening = seq == 0;
        let Some(p) = c.pending.as_mut().filter(|p| {
            if opening {
                p.opening
            } else {
                p.seq == seq && !p.opening
            }
        }) else {
            return;
        };
        let seq = p.seq;
        match outcome {
            Ok(KvResult::Session { id: session }) if opening => {
                p.opening = false;
                p.attempt += 1;
                let attempt = p.attempt;
                c.session = Some(session);
                self.session_owner.insert(session, id);
                self.dispatch(id, attempt);
            }
            Err(ClientError::SessionExpired | ClientError::Stale) if !opening => {
                // The write may or may not have applied: report it open-ended, like a client
                // that must say "unknown", and start over with a new session.
                c.pending = None;
                c.session = None;
                self.record(TraceKind::ClientGaveUp { client: id, seq });
                self.schedule(now + 1_000, Action::ClientWake { client: id });
            }
            Ok(result) if !opening => {
                c.knows_no_leader = None;
                let hi = p.history_index;
                let serializable = p.consistency == Some(ReadConsistency::Serializable);
                c.pending = None;
                let history = if serializable {
                    &mut self.serializable_reads
                } else {
                    &mut self.history
                };
                if let Some(h) = history.get_mut(hi) {
                    h.complete = Some((now, to_result(&result)));
                }
                self.record(TraceKind::ClientComplete {
                    client: id,
                    seq,
                    result,
                });
                let (lo, hi) = self.cfg.workload.think_us;
                let at = now + self.rng.range(lo, hi);
                self.schedule(at, Action::ClientWake { client: id });
            }
            Ok(_) => {}
            Err(_) if c.scripted => {}
            Err(e) => {
                let delay = match e {
                    // A removed node's hint may be stale and point back at a node that just
                    // said it knows no leader: go round the nodes instead of in that circle.
                    ClientError::NotLeader {
                        leader_hint: Some(l),
                    } if l != c.target && c.knows_no_leader != Some(l) => {
                        c.target = l;
                        1_000
                    }
                    ClientError::Busy { .. } => 50_000,
                    // The leader hands over to `to` within an election timeout: ask it there.
                    ClientError::TransferInProgress { to } => {
                        c.target = to;
                        20_000
                    }
                    _ => {
                        if matches!(e, ClientError::NotLeader { leader_hint: None }) {
                            c.knows_no_leader = Some(c.target);
                        }
                        c.target = next_node(&ids, c.target);
                        50_000
                    }
                };
                self.schedule(now + delay, Action::ClientRetry { client: id, seq });
            }
        }
    }

    pub(super) fn client_timeout(&mut self, id: u64, seq: u64, attempt: u32) {
        let ids = self.node_ids();
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        if !c
            .pending
            .as_ref()
            .is_some_and(|p| p.seq == seq && p.attempt == attempt)
        {
            return;
        }
        c.target = next_node(&ids, c.target);
        self.client_retry(id, seq);
    }

    pub(super) fn client_retry(&mut self, id: u64, seq: u64) {
        let faults_active = self.faults_stopped_at.is_none();
        let max_attempts = self.cfg.workload.max_attempts;
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let Some(p) = c.pending.as_mut().filter(|p| p.seq == seq) else {
            return;
        };
        p.attempt += 1;
        if faults_active && p.attempt >= max_attempts && !c.manual {
            // The request may still be applied later: its history entry stays open-ended.
            c.pending = None;
            self.record(TraceKind::ClientGaveUp { client: id, seq });
            let at = self.now + 1_000;
            self.schedule(at, Action::ClientWake { client: id });
            return;
        }
        let (node, attempt) = (c.target, p.attempt);
        self.record(TraceKind::ClientRetry {
            client: id,
            seq,
            node,
            reason: format!("attempt {attempt}"),
        });
        self.dispatch(id, attempt);
    }
}

/// The node after `id` in `ids`, cyclically: round-robin over the nodes the run has (with the
/// bootstrap nodes 1..=n only, `id % n + 1`).
fn next_node(ids: &[NodeId], id: NodeId) -> NodeId {
    ids.iter()
        .copied()
        .find(|&i| i > id)
        .or(ids.first().copied())
        .unwrap_or(id)
}

fn pick_consistency(rng: &mut Rng, (lin, lease, ser): (u32, u32, u32)) -> ReadConsistency {
    if lease == 0 && ser == 0 {
        return ReadConsistency::Linearizable;
    }
    let roll = rng.below((lin + lease + ser) as u64) as u32;
    if roll < lin {
        ReadConsistency::Linearizable
    } else if roll < lin + lease {
        ReadConsistency::Lease
    } else {
        ReadConsistency::Serializable
    }
}

/// The weaker model serializable reads are held to: each value read was written by a put
/// invoked before the read returned (no value from nowhere or from the future). Staleness is
/// allowed. Returns a description of the first read that breaks it.
pub fn check_serializable_reads(history: &[Operation], reads: &[Operation]) -> Option<String> {
    for r in reads {
        let (Op::Get { key }, Some((done, OpResult::Get(Some(v))))) = (&r.op, &r.complete) else {
            continue;
        };
        let written = history.iter().any(|w| {
            w.invoke <= *done
                && matches!(&w.op, Op::Put { key: k, value } if k == key && value == v)
        });
        if !written {
            return Some(format!(
                "c{} read {:?}={:?} at t={done}, a value no put had written by then",
                r.client,
                String::from_utf8_lossy(key),
                String::from_utf8_lossy(v)
            ));
        }
    }
    None
}
