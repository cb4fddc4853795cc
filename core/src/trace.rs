//! The typed event trace: what happened, when, to whom.
//!
//! Every executor of the core emits these events: the simulator (times in virtual microseconds)
//! and the native node's live event stream. The playground renders them, the insta snapshots and
//! scenario outputs record their text form ([`TraceEvent::render`]), and a trace exported from
//! the browser replays in `cargo test`. The live stream encodes [`TraceKind`] with postcard, by
//! variant position: new variants go last.

use serde::{Deserialize, Serialize};

use crate::kv::{ClientError, KvOp, KvResult, ReadConsistency};
use crate::message::Message;
use crate::ready::NodeEvent;
use crate::types::{Index, NodeId, Term};

/// Where a message comes from or goes to: a Raft node or a simulated client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Addr {
    Node(NodeId),
    Client(u64),
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addr::Node(n) => write!(f, "n{n}"),
            Addr::Client(c) => write!(f, "c{c}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    Raft(Message),
    Request {
        seq: u64,
        op: KvOp,
    },
    Reply {
        seq: u64,
        outcome: Result<KvResult, ClientError>,
    },
    /// A write under an open session (`session` is the client id the node sees).
    Write {
        session: u64,
        seq: u64,
        op: KvOp,
    },
    /// A read by one of the read paths; it needs no session.
    Read {
        seq: u64,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        consistency: ReadConsistency,
    },
}

impl Payload {
    pub fn kind(&self) -> &'static str {
        match self {
            Payload::Raft(m) => m.kind(),
            Payload::Request { .. } | Payload::Write { .. } => "ClientRequest",
            Payload::Reply { .. } => "ClientReply",
            Payload::Read { .. } => "ClientRead",
        }
    }

    pub fn summary(&self) -> String {
        match self {
            Payload::Raft(m) => m.summary(),
            Payload::Request { seq, op } => format!("seq={seq} {}", op_text(op)),
            Payload::Reply { seq, outcome } => format!("seq={seq} {}", outcome_text(outcome)),
            Payload::Write { session, seq, op } => {
                format!("session={session} seq={seq} {}", op_text(op))
            }
            Payload::Read {
                seq,
                key,
                consistency,
            } => format!("seq={seq} get {} ({})", bytes_text(key), consistency.name()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DropReason {
    Random,
    Partitioned,
    Crashed,
    InboxFull,
    /// Held on its link and then dropped by a scenario script (`drop`). New variants go last.
    Script,
    /// Dropped on purpose by whoever drives the simulator ([`crate::sim::FaultAction::DropMessage`]:
    /// the playground's "drop this message").
    ByHand,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TraceKind {
    Node {
        node: NodeId,
        event: NodeEvent,
    },
    Sent {
        id: u64,
        from: Addr,
        to: Addr,
        deliver_at: u64,
        payload: Payload,
    },
    Delivered {
        id: u64,
        from: Addr,
        to: Addr,
    },
    Dropped {
        id: u64,
        from: Addr,
        to: Addr,
        reason: DropReason,
    },
    /// Entries made durable on a node (the executor finished the persist step).
    Persisted {
        node: NodeId,
        first: Index,
        last: Index,
        term: Term,
    },
    Truncated {
        node: NodeId,
        from: Index,
    },
    Applied {
        node: NodeId,
        index: Index,
        term: Term,
        op: Option<KvOp>,
        result: Option<KvResult>,
    },
    Crashed {
        node: NodeId,
    },
    Restarted {
        node: NodeId,
    },
    Paused {
        node: NodeId,
    },
    Resumed {
        node: NodeId,
    },
    LinkCut {
        from: NodeId,
        to: NodeId,
    },
    LinkRestored {
        from: NodeId,
        to: NodeId,
    },
    Partitioned {
        groups: Vec<Vec<NodeId>>,
    },
    LinkLatency {
        from: NodeId,
        to: NodeId,
        latency_ms: (u32, u32),
    },
    Healed,
    NetworkChanged {
        drop_rate_pct: u32,
        latency_ms: (u32, u32),
    },
    ClientInvoke {
        client: u64,
        seq: u64,
        op: KvOp,
        node: NodeId,
    },
    ClientRetry {
        client: u64,
        seq: u64,
        node: NodeId,
        reason: String,
    },
    ClientComplete {
        client: u64,
        seq: u64,
        result: KvResult,
    },
    ClientGaveUp {
        client: u64,
        seq: u64,
    },
    FaultsStopped,
    // Log compaction. New variants go last: postcard (the live event stream) encodes variants
    // by position.
    /// A snapshot made durable on a node (taken by it or installed from a leader).
    SnapshotSaved {
        node: NodeId,
        index: Index,
        term: Term,
        bytes: u64,
    },
    /// The log prefix up to and including `through` removed from a node's disk.
    LogCompacted {
        node: NodeId,
        through: Index,
    },
    /// What a restarted node recovered, when it had a snapshot: the snapshot and the log tail
    /// after it (`log_last` equal to `index` when the tail is empty).
    RestoredSnapshot {
        node: NodeId,
        index: Index,
        term: Term,
        log_last: Index,
    },
    /// A node's clock now runs `per_mille` fast (positive) or slow (negative).
    ClockDrift {
        node: NodeId,
        per_mille: i32,
    },
    /// A message reached a link the scenario script holds: it waits there until the script
    /// delivers or drops it (see `sim::hold`).
    Held {
        id: u64,
        from: Addr,
        to: Addr,
    },
    /// The operator proposed a membership change at the leader; it is done when applied.
    ConfChangeProposed {
        leader: NodeId,
        index: Index,
        change: String,
    },
    /// The leader refused a membership change.
    ConfChangeRefused {
        leader: NodeId,
        change: String,
        reason: String,
    },
    /// A new node started, empty, with the configuration that added it.
    NodeAdded {
        node: NodeId,
    },
    /// Whoever drives the simulator made the node's election timer run out now
    /// ([`crate::sim::FaultAction::ElectionTimeout`]); the node's own events follow.
    TimeoutForced {
        node: NodeId,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceEvent {
    pub time: u64,
    pub kind: TraceKind,
}

pub fn bytes_text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn op_text(op: &KvOp) -> String {
    match op {
        KvOp::Put { key, value } => format!("put {}={}", bytes_text(key), bytes_text(value)),
        KvOp::Get { key } => format!("get {}", bytes_text(key)),
        KvOp::Delete { key } => format!("delete {}", bytes_text(key)),
        KvOp::OpenSession => "open-session".into(),
    }
}

pub fn result_text(r: &KvResult) -> String {
    match r {
        KvResult::Put => "ok".into(),
        KvResult::Get(Some(v)) => format!("found {}", bytes_text(v)),
        KvResult::Get(None) => "not-found".into(),
        KvResult::Delete { deleted } => format!("deleted={deleted}"),
        KvResult::Session { id } => format!("session={id}"),
    }
}

fn outcome_text(o: &Result<KvResult, ClientError>) -> String {
    match o {
        Ok(r) => result_text(r),
        Err(e) => format!("error: {e}"),
    }
}

pub fn node_event_text(node: NodeId, e: &NodeEvent) -> String {
    match e {
        NodeEvent::ElectionTimeout { term, pre_vote } => {
            let what = if *pre_vote { "pre-vote" } else { "election" };
            format!("n{node} election timeout term={term}, starts {what}")
        }
        NodeEvent::RoleChanged {
            from,
            to,
            term,
            leader,
        } => {
            let l = leader.map_or(String::new(), |l| format!(" leader=n{l}"));
            format!("n{node} {from}->{to} term={term}{l}")
        }
        NodeEvent::VoteCast {
            candidate,
            term,
            granted,
            pre_vote,
        } => {
            let what = if *pre_vote { "pre-vote" } else { "vote" };
            let verb = if *granted { "grants" } else { "refuses" };
            format!("n{node} {verb} {what} to n{candidate} term={term}")
        }
        NodeEvent::CheckQuorumFailed { term } => {
            format!("n{node} lost contact with a majority, steps down term={term}")
        }
        NodeEvent::CommitAdvanced { from, to } => format!("n{node} commit {from}->{to}"),
        NodeEvent::ProtocolViolation { from, detail } => {
            format!("n{node} PROTOCOL VIOLATION from n{from}: {detail}")
        }
        NodeEvent::SnapshotTaken { index, term, bytes } => {
            format!("n{node} took snapshot {index}@{term} ({bytes} bytes), compacts log")
        }
        NodeEvent::SnapshotChunkSent {
            to,
            index,
            offset,
            bytes,
            done,
        } => {
            let last = if *done { " (last)" } else { "" };
            let end = offset.saturating_add(*bytes);
            format!("n{node} sends n{to} snapshot {index} bytes {offset}..{end}{last}")
        }
        NodeEvent::SnapshotChunkReceived {
            from,
            index,
            offset,
            bytes,
            done,
        } => {
            let last = if *done { " (last)" } else { "" };
            let end = offset.saturating_add(*bytes);
            format!("n{node} stored snapshot {index} bytes {offset}..{end} from n{from}{last}")
        }
        NodeEvent::SnapshotInstalled {
            from,
            index,
            term,
            bytes,
            kept_entries,
        } => format!(
            "n{node} installed snapshot {index}@{term} from n{from} ({bytes} bytes, kept {kept_entries} log entries)"
        ),
        NodeEvent::ReadRoundStarted { seq, commit, reads } => format!(
            "n{node} starts read round {seq}: {reads} read(s) at read index {commit}, confirming leadership"
        ),
        NodeEvent::ReadConfirmed { seq, index, reads } => format!(
            "n{node} read round {seq} confirmed by a quorum: {reads} read(s) answered once index {index} is applied"
        ),
        NodeEvent::LeaseRead { index } => {
            format!("n{node} answers a lease read at index {index} (lease still valid)")
        }
        NodeEvent::TransferStarted { to, term } => format!(
            "n{node} starts leadership transfer to n{to} term={term}: refuses writes, lease revoked"
        ),
        NodeEvent::TransferCompleted { to, term } => {
            format!("n{node} leadership transfer done: n{to} leads term={term}")
        }
        NodeEvent::TransferAborted { to, term, reason } => {
            format!("n{node} leadership transfer to n{to} (term={term}) aborted: {reason}")
        }
        NodeEvent::TimeoutNowReceived { from, term } => {
            format!("n{node} told by n{from} to campaign now (TimeoutNow) term={term}")
        }
        NodeEvent::MembershipChanged { index, membership } => {
            format!("n{node} applies configuration at index {index}: {membership}")
        }
        NodeEvent::ConfChangeRefused { index, reason } => {
            format!("n{node} ignores configuration change at index {index}: {reason}")
        }
        NodeEvent::LeaderRemoved { term } => {
            format!("n{node} is no longer a voter, steps down as leader term={term}")
        }
        NodeEvent::LearnerPromoting { node: learner, index } => {
            format!("n{node} promotes caught-up learner n{learner} at index {index}")
        }
    }
}

impl TraceEvent {
    /// One readable line, e.g. `t=0.150s n2 follower->candidate term=2`.
    pub fn render(&self) -> String {
        format!("t={} {}", fmt_time(self.time), self.kind.render())
    }

    /// Heartbeats dominate a trace by count and say little; snapshot tests leave them out.
    pub fn is_heartbeat(&self) -> bool {
        let hb = |p: &Payload| {
            matches!(
                p,
                Payload::Raft(Message::Heartbeat { .. } | Message::HeartbeatResponse { .. })
            )
        };
        match &self.kind {
            TraceKind::Sent { payload, .. } => hb(payload),
            _ => false,
        }
    }
}

pub fn fmt_time(us: u64) -> String {
    format!("{}.{:03}s", us / 1_000_000, (us / 1000) % 1000)
}

impl TraceKind {
    pub fn render(&self) -> String {
        match self {
            TraceKind::Node { node, event } => node_event_text(*node, event),
            TraceKind::Sent {
                id,
                from,
                to,
                payload,
                ..
            } => format!(
                "{from}->{to} send #{id} {} {}",
                payload.kind(),
                payload.summary()
            ),
            TraceKind::Delivered { id, from, to } => format!("{from}->{to} deliver #{id}"),
            TraceKind::Dropped {
                id,
                from,
                to,
                reason,
            } => format!("{from}->{to} drop #{id} ({reason:?})"),
            TraceKind::Persisted {
                node,
                first,
                last,
                term,
            } => format!("n{node} persisted entries {first}..={last} term={term}"),
            TraceKind::Truncated { node, from } => format!("n{node} truncated log from {from}"),
            TraceKind::SnapshotSaved {
                node,
                index,
                term,
                bytes,
            } => format!("n{node} persisted snapshot {index}@{term} ({bytes} bytes)"),
            TraceKind::LogCompacted { node, through } => {
                format!("n{node} compacted log through {through}")
            }
            TraceKind::Applied {
                node,
                index,
                term,
                op,
                result,
            } => {
                let what = op.as_ref().map_or("no-op".to_string(), op_text);
                let res = result
                    .as_ref()
                    .map_or(String::new(), |r| format!(" -> {}", result_text(r)));
                format!("n{node} applied {index}@{term} {what}{res}")
            }
            TraceKind::Crashed { node } => format!("n{node} CRASHED"),
            TraceKind::ClockDrift { node, per_mille } => {
                format!(
                    "n{node} clock runs {:+}.{}% off",
                    per_mille / 10,
                    (per_mille % 10).abs()
                )
            }
            TraceKind::Restarted { node } => format!("n{node} restarted from disk"),
            TraceKind::RestoredSnapshot {
                node,
                index,
                term,
                log_last,
            } => {
                let tail = if log_last > index {
                    format!("log {}..={log_last}", index + 1)
                } else {
                    "an empty log".to_string()
                };
                format!("n{node} loaded snapshot {index}@{term} and {tail}, applied={index}")
            }
            TraceKind::Paused { node } => format!("n{node} paused"),
            TraceKind::Resumed { node } => format!("n{node} resumed"),
            TraceKind::LinkCut { from, to } => format!("link n{from}->n{to} cut"),
            TraceKind::LinkRestored { from, to } => format!("link n{from}->n{to} restored"),
            TraceKind::Partitioned { groups } => {
                let g: Vec<String> = groups
                    .iter()
                    .map(|g| {
                        let ids: Vec<String> = g.iter().map(|n| format!("n{n}")).collect();
                        format!("{{{}}}", ids.join(","))
                    })
                    .collect();
                format!("network partitioned {}", g.join(" | "))
            }
            TraceKind::LinkLatency {
                from,
                to,
                latency_ms,
            } => format!(
                "link n{from}->n{to} latency={}..{}ms",
                latency_ms.0, latency_ms.1
            ),
            TraceKind::Healed => "network healed".into(),
            TraceKind::NetworkChanged {
                drop_rate_pct,
                latency_ms,
            } => format!(
                "network drop={drop_rate_pct}% latency={}..{}ms",
                latency_ms.0, latency_ms.1
            ),
            TraceKind::ClientInvoke {
                client,
                seq,
                op,
                node,
            } => format!("c{client} invoke seq={seq} {} at n{node}", op_text(op)),
            TraceKind::ClientRetry {
                client,
                seq,
                node,
                reason,
            } => format!("c{client} retry seq={seq} at n{node} ({reason})"),
            TraceKind::ClientComplete {
                client,
                seq,
                result,
            } => format!("c{client} complete seq={seq} {}", result_text(result)),
            TraceKind::ClientGaveUp { client, seq } => {
                format!("c{client} gave up seq={seq} (outcome unknown)")
            }
            TraceKind::FaultsStopped => "faults stopped: all nodes up, network healed".into(),
            TraceKind::Held { id, from, to } => format!("{from}->{to} held #{id}"),
            TraceKind::ConfChangeProposed {
                leader,
                index,
                change,
            } => format!(
                "operator: n{leader} proposes configuration change [{change}] at index {index}"
            ),
            TraceKind::ConfChangeRefused {
                leader,
                change,
                reason,
            } => format!("operator: n{leader} refuses configuration change [{change}]: {reason}"),
            TraceKind::NodeAdded { node } => format!("n{node} starts empty, joining the cluster"),
            TraceKind::TimeoutForced { node } => {
                format!("n{node} election timer forced to run out")
            }
        }
    }
}

/// Picks the events worth reading: everything except heartbeat traffic, which dominates a
/// trace by count and says little. It leaves out the heartbeat and heartbeat-response sends
/// ([`TraceEvent::is_heartbeat`]) and also their holds, deliveries and drops, which carry only
/// the message id, so it must see every event in order, kept or not.
#[derive(Clone, Debug, Default)]
pub struct ReadableFilter {
    /// Heartbeats sent and not yet delivered or dropped: bounded by the messages in flight.
    heartbeats_in_flight: std::collections::BTreeSet<u64>,
}

impl ReadableFilter {
    pub fn keep(&mut self, e: &TraceEvent) -> bool {
        match &e.kind {
            TraceKind::Sent { id, .. } if e.is_heartbeat() => {
                self.heartbeats_in_flight.insert(*id);
                false
            }
            TraceKind::Held { id, .. } => !self.heartbeats_in_flight.contains(id),
            TraceKind::Delivered { id, .. } | TraceKind::Dropped { id, .. } => {
                !self.heartbeats_in_flight.remove(id)
            }
            _ => true,
        }
    }
}
