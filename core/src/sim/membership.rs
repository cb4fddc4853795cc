//! Membership changes as a simulator fault kind: the operator adds a learner (every other one
//! to be promoted by the leader once caught up), promotes, removes, demotes or replaces a
//! voter (joint consensus) through the current leader, at
//! random times, interleaved with crashes, partitions and message faults. A node that is
//! added starts empty with the configuration that added it (as a joining native node does)
//! and catches up from the leader; removed nodes keep running, which is how the checkers see
//! that they cannot disturb the cluster.

use serde::{Deserialize, Serialize};

use super::simulator::{Action, Simulator, MAX_NODES};
use super::storage::MemStorage;
use super::trace::TraceKind;
use crate::membership::{ChangeKind, ConfChange, Membership, SingleChange, Transition};
use crate::server::KvServer;
use crate::types::{Index, NodeId};

/// The operator's intent; the simulator picks the nodes when it applies it (from the
/// configuration the leader has then).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberOp {
    AddLearner,
    Promote,
    Remove,
    Demote,
    /// Replace a voter by a learner in one joint change.
    Replace,
}

/// Where a node that joined started: its configuration and the index that produced it.
pub type JoinPoint = (Membership, Index);

fn change(kind: ChangeKind, node: NodeId) -> SingleChange {
    SingleChange {
        kind,
        node,
        address: None,
    }
}

impl Simulator {
    /// Proposes one membership change through the current leader, if there is one and the
    /// operation makes sense for its configuration. Refusals are recorded, not failures.
    pub fn change_membership(&mut self, op: MemberOp) {
        let Some(leader) = self.leader() else {
            return;
        };
        let Some(m) = self.membership_of(leader) else {
            return;
        };
        let Some(cc) = self.pick_change(op, &m) else {
            return;
        };
        self.propose_change(leader, cc);
    }

    /// Proposes `cc` at `leader` (scenarios name it); a node it adds is started.
    pub fn propose_change(&mut self, leader: NodeId, cc: ConfChange) {
        let Some(server) = self.nodes.get_mut(&leader).and_then(|n| n.server.as_mut()) else {
            return;
        };
        let current = server.membership().clone();
        let result = server.propose_conf_change(cc.clone());
        let text = cc.to_string();
        match result {
            Ok(index) => {
                self.checker.on_conf_change_logged(self.now, server.raft());
                self.record(TraceKind::ConfChangeProposed {
                    leader,
                    index,
                    change: text,
                });
                if let Ok(next) = current.apply(&cc) {
                    for id in next.members() {
                        if !self.nodes.contains_key(&id) {
                            self.add_node(id, (next.clone(), index));
                        }
                    }
                }
            }
            Err(e) => self.record(TraceKind::ConfChangeRefused {
                leader,
                change: text,
                reason: e.to_string(),
            }),
        }
        self.drive(leader);
    }

    fn pick_change(&mut self, op: MemberOp, m: &Membership) -> Option<ConfChange> {
        let learners: Vec<NodeId> = m.learners.iter().copied().collect();
        let voters: Vec<NodeId> = m.voters.iter().copied().collect();
        let members = m.members();
        let pick = |sim: &mut Simulator, from: &[NodeId]| -> Option<NodeId> {
            (!from.is_empty()).then(|| from[sim.rng.below(from.len() as u64) as usize])
        };
        let single = |kind, node| Some(ConfChange::single(kind, node));
        match op {
            MemberOp::AddLearner => {
                if members.len() >= MAX_NODES {
                    return None;
                }
                // Every other new node is added to be promoted once caught up (by whichever
                // node leads then); chosen by id, not by the random stream, so the rest of a
                // seed's run draws what it drew before.
                let id = self.next_node_id();
                let kind = if id.is_multiple_of(2) {
                    ChangeKind::AddLearnerThenVoter
                } else {
                    ChangeKind::AddLearner
                };
                single(kind, id)
            }
            // Without a learner to promote (or to replace a voter with), add one first.
            MemberOp::Promote | MemberOp::Replace if learners.is_empty() => {
                self.pick_change(MemberOp::AddLearner, m)
            }
            MemberOp::Promote => single(ChangeKind::AddVoter, pick(self, &learners)?),
            MemberOp::Remove => {
                let all: Vec<NodeId> = members.into_iter().collect();
                single(ChangeKind::Remove, pick(self, &all)?)
            }
            MemberOp::Demote => single(ChangeKind::AddLearner, pick(self, &voters)?),
            MemberOp::Replace => {
                let out = pick(self, &voters)?;
                let into = pick(self, &learners)?;
                Some(ConfChange {
                    changes: vec![
                        change(ChangeKind::AddVoter, into),
                        change(ChangeKind::Remove, out),
                    ],
                    transition: Transition::JointImplicit,
                })
            }
        }
    }

    /// Ids are never reused: the next one is above every id the run has seen.
    fn next_node_id(&self) -> NodeId {
        self.nodes.keys().max().copied().unwrap_or(0) + 1
    }

    /// Starts a node that joins with the configuration `at`, on an empty disk.
    fn add_node(&mut self, id: NodeId, at: JoinPoint) {
        let seed = self.rng.next_u64();
        let server = Self::joined_server(id, &at, &self.cfg.raft, MemStorage::default(), seed);
        self.insert_node(id, server, Some(at));
        self.record(TraceKind::NodeAdded { node: id });
        let phase = self.now + self.rng.below(self.cfg.tick_us);
        self.schedule(
            phase,
            Action::Tick {
                node: id,
                incarnation: 0,
            },
        );
    }

    pub(super) fn joined_server(
        id: NodeId,
        at: &JoinPoint,
        config: &crate::config::Config,
        storage: MemStorage,
        seed: u64,
    ) -> KvServer {
        match KvServer::try_with_membership(
            id,
            at.0.clone(),
            at.1,
            config.clone(),
            storage.load(),
            seed,
        ) {
            Ok(mut s) => {
                // Snapshot jobs run in the simulator, as for every other node.
                s.set_background_jobs(true);
                s
            }
            Err(e) => panic!("simulated node {id} cannot start: {e}"),
        }
    }
}
