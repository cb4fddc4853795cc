//! Leadership transfer (thesis §3.10), after etcd-raft's `TestLeaderTransfer*` cases. The
//! nodes run on a tiny synchronous network (etcd's `network`): every message is delivered at
//! once, every persist is durable at once, and time moves only when a test ticks a node, so each
//! case controls exactly what the leader knows when.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use keyval_core::kv::{ClientError, ClientRequest, KvOp, KvResult, ReadConsistency};
use keyval_core::{
    Config, Envelope, KvServer, Message, NodeEvent, NodeId, Persisted, ProposeError, RaftNode,
    Role, TransferError,
};

struct Net {
    nodes: BTreeMap<NodeId, KvServer>,
    /// Nodes cut off: nothing they send or are sent arrives.
    isolated: BTreeSet<NodeId>,
    /// Every message handed to the network, delivered or not, in order.
    sent: Vec<Envelope>,
    events: Vec<(NodeId, NodeEvent)>,
    replies: Vec<(NodeId, keyval_core::ClientReply)>,
    session: Option<u64>,
    seq: u64,
}

impl Net {
    fn new(n: u64, config: Config) -> Net {
        let ids: Vec<NodeId> = (1..=n).collect();
        let nodes = ids
            .iter()
            .map(|&id| {
                let s = KvServer::new(id, ids.clone(), config.clone(), Persisted::default(), id);
                (id, s)
            })
            .collect();
        Net {
            nodes,
            isolated: BTreeSet::new(),
            sent: Vec::new(),
            events: Vec::new(),
            replies: Vec::new(),
            session: None,
            seq: 0,
        }
    }

    fn node(&mut self, id: NodeId) -> &mut KvServer {
        self.nodes.get_mut(&id).expect("node exists")
    }

    fn raft(&self, id: NodeId) -> &RaftNode {
        self.nodes[&id].raft()
    }

    /// Runs every node's effects and delivers every message until the network is quiet.
    fn settle(&mut self) {
        let mut queue: VecDeque<Envelope> = VecDeque::new();
        for _ in 0..100_000 {
            for (&id, node) in self.nodes.iter_mut() {
                loop {
                    let ready = node.take_ready();
                    if ready.is_empty() {
                        break;
                    }
                    if let Some(p) = ready.persist_id {
                        node.on_persisted(p);
                    }
                    self.events
                        .extend(ready.events.into_iter().map(|e| (id, e)));
                    self.replies
                        .extend(ready.replies.into_iter().map(|r| (id, r)));
                    queue.extend(ready.messages);
                    queue.extend(ready.persisted_messages);
                }
            }
            let Some(env) = queue.pop_front() else {
                return;
            };
            self.sent.push(env.clone());
            if self.isolated.contains(&env.from) || self.isolated.contains(&env.to) {
                continue;
            }
            self.node(env.to).step(env);
        }
        panic!("network did not quiet down");
    }

    fn tick(&mut self, id: NodeId, times: u32) {
        for _ in 0..times {
            self.node(id).tick();
            self.settle();
        }
    }

    fn tick_all(&mut self, times: u32) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for _ in 0..times {
            for &id in &ids {
                self.node(id).tick();
            }
            self.settle();
        }
    }

    /// Makes `id` leader by letting only its election timer run out.
    fn elect(&mut self, id: NodeId) {
        for _ in 0..1000 {
            if self.raft(id).is_leader() {
                return self.settle();
            }
            self.tick(id, 1);
        }
        panic!("node {id} did not become leader");
    }

    /// Ticks `leader` (only) until `target` leads, at most `max` ticks.
    fn tick_until_leader(&mut self, leader: NodeId, target: NodeId, max: u32) {
        for _ in 0..max {
            if self.leader() == Some(target) {
                return;
            }
            self.tick(leader, 1);
        }
        assert_eq!(self.leader(), Some(target), "n{target} did not take over");
    }

    fn leader(&self) -> Option<NodeId> {
        let leaders: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.raft().is_leader())
            .map(|(&id, _)| id)
            .collect();
        leaders
            .iter()
            .max_by_key(|&&id| self.raft(id).term())
            .copied()
    }

    /// Writes `key` through the test's client session (opened on first use) and returns the
    /// request's (client id, seq) to find its reply.
    fn put(&mut self, at: NodeId, key: &str) -> (u64, u64) {
        let client = match self.session {
            Some(id) => id,
            None => {
                self.node(at).handle_client(ClientRequest {
                    client_id: 0,
                    seq: 0,
                    op: KvOp::OpenSession,
                });
                self.settle();
                let id = self
                    .replies
                    .iter()
                    .find_map(|(_, r)| match r.outcome {
                        Ok(KvResult::Session { id }) => Some(id),
                        _ => None,
                    })
                    .expect("session opened");
                self.session = Some(id);
                id
            }
        };
        self.seq += 1;
        let seq = self.seq;
        self.node(at).handle_client(ClientRequest {
            client_id: client,
            seq,
            op: KvOp::Put {
                key: key.as_bytes().to_vec(),
                value: b"v".to_vec(),
            },
        });
        self.settle();
        (client, self.seq)
    }

    fn outcome(&self, (client, seq): (u64, u64)) -> Option<Result<KvResult, ClientError>> {
        self.replies
            .iter()
            .find(|(_, r)| r.client_id == client && r.seq == seq)
            .map(|(_, r)| r.outcome.clone())
    }

    fn events_of(&self, id: NodeId) -> Vec<NodeEvent> {
        self.events
            .iter()
            .filter(|(n, _)| *n == id)
            .map(|(_, e)| e.clone())
            .collect()
    }

    fn transfer_events(&self, id: NodeId) -> Vec<NodeEvent> {
        self.events_of(id)
            .into_iter()
            .filter(|e| {
                matches!(
                    e,
                    NodeEvent::TransferStarted { .. }
                        | NodeEvent::TransferCompleted { .. }
                        | NodeEvent::TransferAborted { .. }
                )
            })
            .collect()
    }

    fn timeout_nows_to(&self, to: NodeId) -> usize {
        self.sent
            .iter()
            .filter(|e| e.to == to && matches!(e.msg, Message::TimeoutNow { .. }))
            .count()
    }
}

fn three() -> Net {
    let mut net = Net::new(3, Config::default());
    net.elect(1);
    net
}

fn aborted_reason(events: &[NodeEvent]) -> Option<String> {
    events.iter().find_map(|e| match e {
        NodeEvent::TransferAborted { reason, .. } => Some(reason.clone()),
        _ => None,
    })
}

#[test]
fn transfer_to_up_to_date_node_and_back() {
    let mut net = three();
    let term = net.raft(1).term();
    assert_eq!(net.node(1).transfer_leadership(Some(2)), Ok(2));
    net.settle();
    assert_eq!(net.leader(), Some(2));
    assert_eq!(net.raft(2).term(), term + 1);
    assert_eq!(net.raft(1).role(), Role::Follower);
    assert_eq!(
        net.transfer_events(1),
        vec![
            NodeEvent::TransferStarted { to: 2, term },
            NodeEvent::TransferCompleted {
                to: 2,
                term: term + 1
            },
        ]
    );
    // The target skipped Pre-Vote: it asked for real votes, flagged as a transfer.
    assert!(net.events_of(2).iter().any(|e| matches!(
        e,
        NodeEvent::RoleChanged {
            from: Role::Follower,
            to: Role::Candidate,
            ..
        }
    )));
    assert!(!net.events_of(2).iter().any(|e| matches!(
        e,
        NodeEvent::RoleChanged {
            to: Role::PreCandidate,
            ..
        }
    )));
    assert!(net
        .sent
        .iter()
        .any(|e| e.from == 2 && matches!(e.msg, Message::RequestVote { transfer: true, .. })));
    assert!(net.raft(1).transfer_target().is_none());

    // And back: the new leader hands over to the old one.
    assert_eq!(net.node(2).transfer_leadership(Some(1)), Ok(1));
    net.settle();
    assert_eq!(net.leader(), Some(1));
    assert_eq!(net.raft(1).term(), term + 2);
}

#[test]
fn follower_refuses_with_the_leaders_id() {
    let mut net = three();
    assert_eq!(
        net.node(2).transfer_leadership(Some(3)),
        Err(TransferError::NotLeader { leader: Some(1) })
    );
    net.settle();
    assert_eq!(net.leader(), Some(1));
    assert!(net
        .events
        .iter()
        .all(|(_, e)| !matches!(e, NodeEvent::TransferStarted { .. })));
}

#[test]
fn transfer_to_self_non_member_is_refused() {
    let mut net = three();
    assert_eq!(
        net.node(1).transfer_leadership(Some(1)),
        Err(TransferError::ToSelf(1))
    );
    assert_eq!(
        net.node(1).transfer_leadership(Some(9)),
        Err(TransferError::UnknownNode(9))
    );
    net.settle();
    assert_eq!(net.leader(), Some(1));
    assert!(net.raft(1).transfer_target().is_none());
    assert!(net.transfer_events(1).is_empty());
}

#[test]
fn single_voter_has_no_one_to_transfer_to() {
    let mut net = Net::new(1, Config::default());
    net.elect(1);
    assert_eq!(
        net.node(1).transfer_leadership(None),
        Err(TransferError::NoOtherVoter)
    );
}

/// Every voter heard from the leader within the election timeout, so with Check-Quorum they
/// refuse an ordinary campaign; the transfer vote skips that refusal.
#[test]
fn transfer_with_check_quorum_while_voters_are_in_lease() {
    let mut net = three();
    net.tick_all(2);
    // An ordinary campaign by n2 now fails: n1 and n3 heard from the leader recently.
    let term = net.raft(1).term();
    let mut probe = net.nodes[&2].raft().clone();
    let timeout = probe.election_timer().1;
    for _ in 0..timeout {
        probe.tick();
    }
    let ready = probe.take_ready();
    assert!(ready
        .events
        .iter()
        .any(|e| matches!(e, NodeEvent::ElectionTimeout { pre_vote: true, .. })));
    let mut other = net.nodes[&3].raft().clone();
    for env in ready.messages.into_iter().chain(ready.persisted_messages) {
        if env.to == 3 {
            other.step(env);
        }
    }
    let answer = other.take_ready();
    assert!(
        answer
            .messages
            .iter()
            .chain(&answer.persisted_messages)
            .all(|e| !matches!(e.msg, Message::PreVoteResponse { granted: true, .. })),
        "a voter in lease granted an ordinary pre-vote"
    );

    assert_eq!(net.node(1).transfer_leadership(Some(2)), Ok(2));
    net.settle();
    assert_eq!(net.leader(), Some(2));
    assert_eq!(net.raft(2).term(), term + 1);
}

/// With lease reads on, a node that just started refuses votes for an election timeout (it
/// may have backed a leader's lease before it crashed), but not a transfer vote.
#[test]
fn transfer_vote_skips_the_quiet_after_start_refusal() {
    let config = Config {
        lease_reads: true,
        ..Config::default()
    };
    for (transfer, granted) in [(false, None), (true, Some(true))] {
        let mut n = RaftNode::new(3, [1, 2, 3], config.clone(), Persisted::default(), 1);
        n.step(Envelope {
            from: 2,
            to: 3,
            msg: Message::RequestVote {
                term: 1,
                last_log_index: 0,
                last_log_term: 0,
                transfer,
            },
        });
        let ready = n.take_ready();
        let answer = ready
            .messages
            .iter()
            .chain(&ready.persisted_messages)
            .find_map(|e| match e.msg {
                Message::RequestVoteResponse { granted, .. } => Some(granted),
                _ => None,
            });
        assert_eq!(answer, granted, "transfer={transfer}");
    }
}

#[test]
fn transfer_to_slow_follower_catches_it_up_first() {
    let mut net = three();
    net.put(1, "open");
    net.isolated.insert(3);
    for _ in 0..5 {
        net.put(1, "k");
    }
    net.isolated.clear();
    let last = net.raft(1).log().last_index();
    assert!(net.raft(3).log().last_index() < last);
    assert_eq!(net.node(1).transfer_leadership(Some(3)), Ok(3));
    net.settle();
    // The appends n3 missed are resent as the leader's heartbeats find it behind.
    let election = net.raft(1).config().election_ticks;
    net.tick_until_leader(1, 3, election - 1);
    // TimeoutNow went out only once n3's log matched the leader's.
    let first_timeout_now = net
        .sent
        .iter()
        .position(|e| matches!(e.msg, Message::TimeoutNow { .. }))
        .expect("TimeoutNow sent");
    let caught_up = net
        .sent
        .iter()
        .position(|e| {
            e.from == 3
                && matches!(
                    e.msg,
                    Message::AppendEntriesResponse {
                        result: keyval_core::AppendResult::Success { match_index },
                        ..
                    } if match_index == last
                )
        })
        .expect("n3 caught up");
    assert!(caught_up < first_timeout_now);
    assert!(
        net.raft(3).log().last_index() > last,
        "n3 appended its own no-op"
    );
}

#[test]
fn transfer_after_snapshot_installs_it_first() {
    let config = Config {
        snapshot_threshold: 3,
        ..Config::default()
    };
    let mut net = Net::new(3, config);
    net.elect(1);
    net.put(1, "open");
    net.isolated.insert(3);
    for _ in 0..8 {
        net.put(1, "k");
    }
    assert!(net.raft(1).snapshot_index() > net.raft(3).log().last_index());
    net.isolated.clear();
    assert_eq!(net.node(1).transfer_leadership(Some(3)), Ok(3));
    net.settle();
    let election = net.raft(1).config().election_ticks;
    net.tick_until_leader(1, 3, election - 1);
    assert!(net
        .events_of(3)
        .iter()
        .any(|e| matches!(e, NodeEvent::SnapshotInstalled { .. })));
    assert_eq!(net.leader(), Some(3));
    assert_eq!(net.node(3).kv().read(b"k"), Some(b"v".to_vec()));
}

#[test]
fn transfer_aborts_after_an_election_timeout() {
    let mut net = three();
    net.isolated.insert(3);
    let term = net.raft(1).term();
    assert_eq!(net.node(1).transfer_leadership(Some(3)), Ok(3));
    net.settle();
    let election = net.raft(1).config().election_ticks;
    net.tick(1, election - 1);
    assert_eq!(net.raft(1).transfer_target(), Some(3));
    net.tick(1, 1);
    assert_eq!(net.raft(1).transfer_target(), None);
    assert_eq!(net.leader(), Some(1));
    assert_eq!(net.raft(1).term(), term);
    let reason = aborted_reason(&net.transfer_events(1)).expect("aborted");
    assert!(reason.contains("election timeout"), "{reason}");
    // Writes are accepted again.
    net.put(1, "after");
    assert_eq!(net.node(1).kv().read(b"after"), Some(b"v".to_vec()));
}

#[test]
fn proposals_and_lease_reads_are_refused_while_transferring() {
    let config = Config {
        lease_reads: true,
        ..Config::default()
    };
    let mut net = Net::new(3, config);
    // With lease reads, fresh nodes refuse votes for an election timeout: let it pass.
    net.tick_all(net.raft(1).config().election_ticks);
    net.elect(1);
    net.put(1, "open");
    net.tick(1, 2);
    assert!(net.raft(1).lease_valid());
    net.isolated.insert(3);
    assert_eq!(net.node(1).transfer_leadership(Some(3)), Ok(3));
    assert!(!net.raft(1).lease_valid(), "lease revoked on start");

    let last = net.raft(1).log().last_index();
    let mut raft = net.raft(1).clone();
    assert_eq!(
        raft.propose(keyval_core::EntryPayload::Noop),
        Err(ProposeError::TransferInProgress { to: 3 })
    );
    let write = net.put(1, "refused");
    let (client, _) = write;
    net.node(1)
        .handle_read(client, 100, b"refused".to_vec(), ReadConsistency::Lease);
    net.node(1).handle_read(
        client,
        101,
        b"refused".to_vec(),
        ReadConsistency::Linearizable,
    );
    net.settle();
    assert_eq!(net.raft(1).log().last_index(), last, "nothing appended");
    let refused = Some(Err(ClientError::TransferInProgress { to: 3 }));
    assert_eq!(net.outcome(write), refused);
    assert!(ClientError::TransferInProgress { to: 3 }.is_definite());
    assert_eq!(net.outcome((client, 100)), refused);
    // A ReadIndex read is still safe: a quorum confirms it.
    let read = net.outcome((client, 101));
    assert!(matches!(read, Some(Ok(_))), "{read:?}");
}

#[test]
fn no_lease_for_the_rest_of_a_term_in_which_timeout_now_was_sent() {
    let config = Config {
        lease_reads: true,
        ..Config::default()
    };
    let mut net = Net::new(3, config);
    net.tick_all(net.raft(1).config().election_ticks);
    net.elect(1);
    // n3 is up to date, so TimeoutNow goes out at once; it is lost.
    net.tick(1, 2);
    net.isolated.insert(3);
    assert_eq!(net.node(1).transfer_leadership(Some(3)), Ok(3));
    net.settle();
    assert_eq!(net.timeout_nows_to(3), 1);
    let election = net.raft(1).config().election_ticks;
    net.tick(1, election);
    assert_eq!(net.raft(1).transfer_target(), None, "aborted");
    assert_eq!(net.leader(), Some(1));
    // Heartbeats keep being acknowledged by n2, yet the lost TimeoutNow could still make n3
    // campaign with a vote that ignores the voters' lease: no lease in this term.
    net.tick(1, 3);
    assert!(!net.raft(1).lease_valid());
}

#[test]
fn second_transfer_to_another_node_replaces_the_first() {
    let mut net = three();
    net.isolated.insert(3);
    assert_eq!(net.node(1).transfer_leadership(Some(3)), Ok(3));
    net.settle();
    assert_eq!(net.node(1).transfer_leadership(Some(2)), Ok(2));
    net.settle();
    assert_eq!(net.leader(), Some(2));
    let events = net.transfer_events(1);
    let reason = aborted_reason(&events).expect("first transfer aborted");
    assert!(reason.contains("superseded"), "{reason}");
    assert!(matches!(
        events.last(),
        Some(NodeEvent::TransferCompleted { to: 2, .. })
    ));
}

#[test]
fn second_transfer_to_the_same_node_does_not_restart_it() {
    let mut net = three();
    net.isolated.insert(3);
    assert_eq!(net.node(1).transfer_leadership(Some(3)), Ok(3));
    net.settle();
    let election = net.raft(1).config().election_ticks;
    net.tick(1, election / 2);
    assert_eq!(net.node(1).transfer_leadership(Some(3)), Ok(3));
    net.settle();
    net.tick(1, election - election / 2);
    // Aborted at the first request's deadline: the repeat did not extend it.
    assert_eq!(net.raft(1).transfer_target(), None);
    let starts = net
        .transfer_events(1)
        .iter()
        .filter(|e| matches!(e, NodeEvent::TransferStarted { .. }))
        .count();
    assert_eq!(starts, 1);
}

#[test]
fn no_target_picks_the_most_caught_up_voter() {
    let mut net = three();
    net.put(1, "open");
    net.isolated.insert(2);
    net.put(1, "k");
    net.isolated.clear();
    // n2 lags (the leader has not heard it acknowledge the write), n3 matches: n3 is picked.
    assert_eq!(net.node(1).transfer_leadership(None), Ok(3));
    net.settle();
    assert_eq!(net.leader(), Some(3));
}

#[test]
fn a_lost_timeout_now_is_sent_again_on_the_next_heartbeat_response() {
    let mut net = three();
    // Drop just the first TimeoutNow: n3 sends and receives everything else.
    assert_eq!(net.node(1).transfer_leadership(Some(3)), Ok(3));
    let ready = net.node(1).take_ready();
    if let Some(p) = ready.persist_id {
        net.node(1).on_persisted(p);
    }
    let lost: Vec<_> = ready
        .messages
        .iter()
        .chain(&ready.persisted_messages)
        .filter(|e| matches!(e.msg, Message::TimeoutNow { .. }))
        .collect();
    assert_eq!(lost.len(), 1, "up to date: TimeoutNow at once");
    assert_eq!(net.leader(), Some(1));
    net.tick(1, net.raft(1).config().heartbeat_ticks);
    assert_eq!(net.leader(), Some(3));
}

/// Transfers are a random fault of the Mixed profile: over a few seeds some complete and some
/// abort, and every checker still passes (the default sweep in `simulation.rs` runs thousands).
#[test]
fn random_transfers_happen_in_the_mixed_fault_sweep() {
    use keyval_core::sim::runner::{run, RunConfig};
    use keyval_core::sim::{FaultProfile, TraceKind};
    let (mut started, mut completed) = (0, 0);
    for seed in 0..30 {
        let mut cfg = RunConfig::new(3, seed);
        cfg.profile = FaultProfile::Mixed;
        cfg.record_trace = true;
        let report = run(&cfg);
        assert!(report.is_ok(), "{}", report.failure_text());
        for e in &report.trace {
            match &e.kind {
                TraceKind::Node {
                    event: NodeEvent::TransferStarted { .. },
                    ..
                } => started += 1,
                TraceKind::Node {
                    event: NodeEvent::TransferCompleted { .. },
                    ..
                } => completed += 1,
                _ => {}
            }
        }
    }
    assert!(
        started > 0 && completed > 0,
        "started {started}, completed {completed}"
    );
}
