//! The node loop: the one task that owns the [`KvServer`] and executes its `Ready` batches.
//!
//! Each turn it waits for something to do (a peer batch, a client request, the next tick),
//! then drains everything else already queued, up to a bound, so a burst of inputs becomes one
//! batch. A turn has two phases, peer traffic (and ticks) first, then client requests, and each
//! phase ends by taking ONE `Ready` and executing it in the order `keyval_core::ready` requires:
//!
//! 1. persist: all persist ops go to the storage thread, which writes them and fsyncs once
//!    (group commit); the loop waits for that before anything else;
//! 2. send: messages go to the peers' bounded queues;
//! 3. answer: replies go to the client connections waiting for them.
//!
//! While the loop waits for the disk, new inputs queue in bounded channels and all join the next
//! batch: the slower the disk, the bigger the batches, which is what keeps throughput up.
//! Splitting the turn keeps a leader's replies off the critical path of its next fsync: the
//! acknowledgements that commit entries persist nothing, so the peer phase's batch answers
//! clients without touching the disk, and only then do new proposals pay for their fsync.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use keyval_core::sim::trace::{Addr, Payload, TraceKind};
use keyval_core::{
    ClientError, ClientReply, ClientRequest, Envelope, KvServer, NodeEvent, NodeId, NodeStatus,
    PersistOp, Ready,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::events::{EventHub, now_ms};
use crate::metrics::Metrics;
use crate::request_trace::RequestTraces;
use crate::storage::worker::{StorageWorker, WorkerError};
use crate::transport::PeerSender;
use crate::wire::{LeaderHint, ServerFrame, StatusReply};

/// Inputs handled per turn at most, so ticks and the disk are never starved by a flood.
const MAX_INPUTS_PER_TURN: usize = 8192;
/// Client requests waiting for their reply; beyond this new ones are refused as Busy.
const MAX_WAITERS: usize = 65_536;
/// Status frames for the live view go out at most this often unless role, term or leader change.
const STATUS_MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Capacity of the queue from peer connections into the loop (batches, not messages).
pub const PEER_INBOX: usize = 1024;
/// Capacity of the queue from client connections into the loop.
pub const CLIENT_INBOX: usize = 8192;

/// A request from a client connection.
pub enum Input {
    Client {
        req: ClientRequest,
        reply_to: mpsc::Sender<ServerFrame>,
    },
    Status {
        reply_to: oneshot::Sender<StatusReply>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error("persisting to the WAL failed, stopping the node: {0}")]
    Storage(#[from] WorkerError),
}

pub struct NodeLoop {
    pub server: KvServer,
    pub storage: StorageWorker,
    pub peers: BTreeMap<NodeId, PeerSender>,
    pub peer_rx: mpsc::Receiver<Vec<Envelope>>,
    pub input_rx: mpsc::Receiver<Input>,
    pub members: BTreeMap<NodeId, String>,
    pub cluster_id: String,
    pub metrics: Arc<Metrics>,
    pub events: EventHub,
    pub status_tx: watch::Sender<NodeStatus>,
    pub tick: Duration,
    pub shutdown: watch::Receiver<bool>,
    /// What recovery loaded from a snapshot, published once as a live trace event.
    pub restored: Option<TraceKind>,
}

struct State {
    /// Client connections waiting for the reply to (client_id, seq). An entry exists exactly
    /// while the core owes that request an answer, so a retry of a pending request joins it
    /// instead of being proposed twice.
    waiters: HashMap<(u64, u64), Vec<mpsc::Sender<ServerFrame>>>,
    last_status: NodeStatus,
    last_status_at: Instant,
    sent_ids: u64,
    /// Spans of the requests in flight, when a tracing subscriber records them.
    traces: RequestTraces,
}

impl NodeLoop {
    pub async fn run(mut self) -> Result<(), LoopError> {
        let mut st = State {
            waiters: HashMap::new(),
            last_status: NodeStatus::of(&self.server),
            last_status_at: Instant::now(),
            sent_ids: 0,
            traces: RequestTraces::default(),
        };
        if let Some(kind) = self.restored.take() {
            self.events.publish(now_ms(), kind);
        }
        let max_catch_up = self.server.raft().config().election_ticks;
        let mut next_tick = Instant::now() + self.tick;
        let result = loop {
            if *self.shutdown.borrow() {
                break Ok(());
            }
            let mut first_input = None;
            tokio::select! {
                biased;
                _ = self.shutdown.changed() => break Ok(()),
                _ = tokio::time::sleep_until(next_tick) => {}
                Some(envs) = self.peer_rx.recv() => self.step_peers(envs),
                Some(input) = self.input_rx.recv() => first_input = Some(input),
            }
            // Time that passed while we waited on the disk still counts; catching up is capped
            // so a stalled process does not fire a burst of elections when it wakes.
            let now = Instant::now();
            let mut ticks = 0;
            while now >= next_tick {
                self.server.tick();
                next_tick += self.tick;
                ticks += 1;
                if ticks >= max_catch_up {
                    next_tick = now + self.tick;
                    break;
                }
            }
            // Phase 1: peer traffic and time. On a leader this is mostly acknowledgements, which
            // commit entries but persist nothing, so the replies they release go out at once
            // instead of waiting behind the fsync of the next proposals.
            let mut handled = 0;
            while handled < MAX_INPUTS_PER_TURN {
                let Ok(envs) = self.peer_rx.try_recv() else {
                    break;
                };
                self.step_peers(envs);
                handled += 1;
            }
            let ready = self.server.take_ready();
            if !ready.is_empty()
                && let Err(e) = self.execute(ready, &mut st).await
            {
                break Err(e);
            }
            // Phase 2: client requests; all proposals of the turn share one append and fsync.
            if let Some(input) = first_input {
                self.handle_input(input, &mut st);
            }
            let mut handled = 0;
            while handled < MAX_INPUTS_PER_TURN {
                let Ok(input) = self.input_rx.try_recv() else {
                    break;
                };
                self.handle_input(input, &mut st);
                handled += 1;
            }
            let ready = self.server.take_ready();
            if !ready.is_empty()
                && let Err(e) = self.execute(ready, &mut st).await
            {
                break Err(e);
            }
            self.publish_status(&mut st);
        };
        // Finish the in-flight fsync (if any) and close the WAL before reporting back.
        self.storage.close();
        result
    }

    fn step_peers(&mut self, envs: Vec<Envelope>) {
        for env in envs {
            self.metrics.observe_inbound(&env);
            self.server.step(env);
        }
    }

    fn handle_input(&mut self, input: Input, st: &mut State) {
        match input {
            Input::Status { reply_to } => {
                let _ = reply_to.send(StatusReply {
                    status: NodeStatus::of(&self.server),
                    cluster_id: self.cluster_id.clone(),
                    members: self.members.iter().map(|(k, v)| (*k, v.clone())).collect(),
                });
            }
            Input::Client { req, reply_to } => self.handle_client(req, reply_to, st),
        }
    }

    fn handle_client(
        &mut self,
        req: ClientRequest,
        reply_to: mpsc::Sender<ServerFrame>,
        st: &mut State,
    ) {
        self.metrics.client_requests.fetch_add(1, Relaxed);
        let key = (req.client_id, req.seq);
        if let Some(w) = st.waiters.get_mut(&key) {
            // Already pending here (a client retrying on the same node): one proposal, and the
            // answer goes to every connection that asked.
            w.push(reply_to);
            return;
        }
        // Answers the core would give at once are given here, so they can never be mistaken
        // for the answer to an earlier attempt of the same request that is still pending.
        let refuse = if let Err(e) = req.op.validate() {
            Some(e)
        } else if !self.server.raft().is_leader() {
            Some(ClientError::NotLeader {
                leader_hint: self.server.raft().leader(),
            })
        } else if st.waiters.len() >= MAX_WAITERS {
            Some(ClientError::Busy {
                uncommitted: st.waiters.len() as u64,
            })
        } else {
            None
        };
        if let Some(err) = refuse {
            let reply = ClientReply {
                client_id: req.client_id,
                seq: req.seq,
                outcome: Err(err),
            };
            self.metrics.client_replies_err.fetch_add(1, Relaxed);
            let _ = reply_to.try_send(self.reply_frame(reply));
            return;
        }
        if self.events.active() {
            self.events.publish(
                now_ms(),
                TraceKind::ClientInvoke {
                    client: req.client_id,
                    seq: req.seq,
                    op: req.op.clone(),
                    node: self.server.raft().id(),
                },
            );
        }
        st.waiters.insert(key, vec![reply_to]);
        self.metrics.proposals.fetch_add(1, Relaxed);
        let proposing = st.traces.begin(&req, self.server.raft().id());
        let last_before = self.server.raft().log().last_index();
        self.server.handle_client(req);
        let last = self.server.raft().log().last_index();
        st.traces
            .proposed(proposing, (last > last_before).then_some(last));
    }

    fn reply_frame(&self, reply: ClientReply) -> ServerFrame {
        let leader = match &reply.outcome {
            Err(ClientError::NotLeader {
                leader_hint: Some(id),
            }) => Some(LeaderHint {
                id: *id,
                address: self.members.get(id).cloned(),
            }),
            _ => None,
        };
        ServerFrame::Reply { reply, leader }
    }

    async fn execute(&mut self, ready: Ready, st: &mut State) -> Result<(), LoopError> {
        self.metrics.ready_batches.fetch_add(1, Relaxed);
        let Ready {
            persist,
            messages,
            applied,
            replies,
            events,
        } = ready;
        let me = self.server.raft().id();
        let tracing_events = self.events.active();

        // 1. persist (one write + one fsync for the whole batch)
        if !persist.is_empty() {
            let mut persisted_traces = Vec::new();
            let mut entries = 0u64;
            let mut appended_through = None;
            let mut saves_snapshot = false;
            for op in &persist {
                match op {
                    PersistOp::Append(es) => {
                        entries += es.len() as u64;
                        appended_through = es.last().map(|e| e.index).or(appended_through);
                        if let (Some(f), Some(l)) = (es.first(), es.last()) {
                            persisted_traces.push(TraceKind::Persisted {
                                node: me,
                                first: f.index,
                                last: l.index,
                                term: l.term,
                            });
                        }
                    }
                    PersistOp::TruncateFrom(i) => {
                        tracing::info!(from = i, "truncating conflicting log suffix");
                        persisted_traces.push(TraceKind::Truncated { node: me, from: *i });
                    }
                    PersistOp::HardState(_) => {}
                    PersistOp::SaveSnapshot(s) => {
                        saves_snapshot = true;
                        persisted_traces.push(TraceKind::SnapshotSaved {
                            node: me,
                            index: s.meta.last_index,
                            term: s.meta.last_term,
                            bytes: s.data.len() as u64,
                        });
                    }
                    PersistOp::CompactLog(i) => {
                        persisted_traces.push(TraceKind::LogCompacted {
                            node: me,
                            through: *i,
                        });
                    }
                }
            }
            let (took, stats) = self.storage.persist(persist).await?;
            self.metrics.observe_fsync(took);
            if saves_snapshot {
                self.metrics.snapshot_save.observe(took);
            }
            if let Some(i) = appended_through {
                st.traces.persisted(i);
            }
            self.metrics.observe_store(&stats);
            self.metrics.persisted_entries.fetch_add(entries, Relaxed);
            if tracing_events {
                let t = now_ms();
                for kind in persisted_traces {
                    self.events.publish(t, kind);
                }
            }
        }

        // 2. send
        let t = now_ms();
        st.traces.committed(self.server.raft().commit_index());
        for env in messages {
            self.metrics.observe_outbound(&env);
            if tracing_events {
                st.sent_ids += 1;
                self.events.publish(
                    t,
                    TraceKind::Sent {
                        id: st.sent_ids,
                        from: Addr::Node(env.from),
                        to: Addr::Node(env.to),
                        deliver_at: t,
                        payload: Payload::Raft(env.msg.clone()),
                    },
                );
            }
            match self.peers.get(&env.to) {
                Some(peer) => peer.send(env, &self.metrics),
                None => self.metrics.dropped(&env.msg),
            }
        }

        // 3. answer
        self.metrics
            .applied_entries
            .fetch_add(applied.len() as u64, Relaxed);
        if let Some(a) = applied.last() {
            st.traces.applied(a.index);
        }
        if tracing_events {
            for a in applied {
                self.events.publish(
                    t,
                    TraceKind::Applied {
                        node: me,
                        index: a.index,
                        term: a.term,
                        op: a.request.map(|r| r.op),
                        result: a.result,
                    },
                );
            }
        }
        for reply in replies {
            let Some(waiting) = st.waiters.remove(&(reply.client_id, reply.seq)) else {
                continue;
            };
            if reply.outcome.is_ok() {
                self.metrics.client_replies_ok.fetch_add(1, Relaxed);
            } else {
                self.metrics.client_replies_err.fetch_add(1, Relaxed);
                self.metrics.proposals_failed.fetch_add(1, Relaxed);
            }
            st.traces.replied(
                (reply.client_id, reply.seq),
                if reply.outcome.is_ok() { "ok" } else { "error" },
            );
            let frame = self.reply_frame(reply);
            for w in waiting {
                // A full or closed connection loses its answer; the client times out and
                // retries with the same sequence number, which the state machine deduplicates.
                let _ = w.try_send(frame.clone());
            }
        }

        for ev in events {
            log_event(&ev, &self.metrics);
            if tracing_events {
                self.events.publish(
                    t,
                    TraceKind::Node {
                        node: me,
                        event: ev,
                    },
                );
            }
        }
        Ok(())
    }

    fn publish_status(&mut self, st: &mut State) {
        let now = Instant::now();
        let status = NodeStatus::of(&self.server);
        self.metrics.observe_status(&status);
        self.metrics
            .proposals_pending
            .store(st.waiters.len() as u64, Relaxed);
        if status == st.last_status {
            return;
        }
        let important = status.role != st.last_status.role
            || status.term != st.last_status.term
            || status.leader != st.last_status.leader;
        if important || now.duration_since(st.last_status_at) >= STATUS_MIN_INTERVAL {
            st.last_status = status.clone();
            st.last_status_at = now;
            self.status_tx.send_replace(status);
        }
    }
}

fn log_event(ev: &NodeEvent, metrics: &Metrics) {
    match ev {
        NodeEvent::ElectionTimeout { term, pre_vote } => {
            metrics.elections.fetch_add(1, Relaxed);
            tracing::info!(term, pre_vote, "election timeout: campaigning");
        }
        NodeEvent::RoleChanged {
            from,
            to,
            term,
            leader,
        } => tracing::info!(%from, %to, term, leader = ?leader, "role changed"),
        NodeEvent::VoteCast {
            candidate,
            term,
            granted,
            pre_vote,
        } => tracing::debug!(candidate, term, granted, pre_vote, "vote cast"),
        NodeEvent::CheckQuorumFailed { term } => {
            tracing::warn!(term, "lost contact with a majority: stepping down")
        }
        NodeEvent::CommitAdvanced { from, to } => tracing::trace!(from, to, "commit advanced"),
        NodeEvent::ProtocolViolation { from, detail } => {
            tracing::warn!(from, %detail, "refused a message that breaks the protocol")
        }
        NodeEvent::SnapshotTaken { index, term, bytes } => {
            tracing::info!(index, term, bytes, "snapshot taken")
        }
        NodeEvent::SnapshotInstalled {
            from,
            index,
            term,
            bytes,
            kept_entries,
        } => {
            metrics.snapshots_installed.fetch_add(1, Relaxed);
            tracing::info!(from, index, term, bytes, kept_entries, "snapshot installed")
        }
        NodeEvent::SnapshotChunkSent {
            to,
            index,
            offset,
            bytes,
            done,
        } => tracing::debug!(to, index, offset, bytes, done, "snapshot chunk sent"),
        NodeEvent::SnapshotChunkReceived {
            from,
            index,
            offset,
            bytes,
            done,
        } => tracing::debug!(from, index, offset, bytes, done, "snapshot chunk received"),
    }
}
