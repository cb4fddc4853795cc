//! Membership changes the learner asks for in the playground, and how they reach the core.
//!
//! Every change goes to the current leader as one `ConfChange` entry
//! ([`keyval_core::sim::Simulator::propose_change`]): the leader applies the core's rules and
//! either logs the change or refuses it, and the trace records which (`ConfChangeProposed` or
//! `ConfChangeRefused`). The playground never edits a configuration itself.

use keyval_core::membership::{ChangeKind, ConfChange, SingleChange, Transition};
use keyval_core::sim::simulator::MAX_NODES;
use keyval_core::sim::{Simulator, TraceEvent, TraceKind};
use keyval_core::NodeId;
use serde::{Deserialize, Serialize};

/// Nodes a run may start in all (removed nodes keep running and keep their place in the
/// drawing; ids are never reused).
pub const MAX_STARTED: usize = 10;

/// What the learner asked for. Serialized in exported traces: new variants go last.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberAction {
    /// Start a new, empty node and add it as a learner (it gets the next unused id).
    AddLearner,
    /// Make a learner a voter (refused until it has caught up).
    Promote(NodeId),
    /// Make a voter a learner.
    Demote(NodeId),
    /// Take a node out of the configuration.
    Remove(NodeId),
    /// Replace voter `out` by learner `into` in one joint change (both majorities needed
    /// until the joint configuration is left).
    Replace { out: NodeId, into: NodeId },
}

impl MemberAction {
    /// The change the leader is asked to log, or why the playground cannot even ask.
    pub fn conf_change(&self, sim: &Simulator) -> Result<ConfChange, String> {
        let single = |kind, node| Ok(ConfChange::single(kind, node));
        match *self {
            MemberAction::AddLearner => {
                let started = sim.nodes().len();
                if started >= MAX_STARTED {
                    return Err(format!(
                        "This run has started {started} nodes, the most the drawing holds: start a new run."
                    ));
                }
                let members = leader_members(sim);
                if members >= MAX_NODES {
                    return Err(format!(
                        "The configuration has {members} members, the most the simulator runs: remove one first."
                    ));
                }
                single(ChangeKind::AddLearner, next_id(sim))
            }
            MemberAction::Promote(n) => single(ChangeKind::AddVoter, n),
            MemberAction::Demote(n) => single(ChangeKind::AddLearner, n),
            MemberAction::Remove(n) => single(ChangeKind::Remove, n),
            MemberAction::Replace { out, into } => Ok(ConfChange {
                changes: vec![
                    SingleChange {
                        kind: ChangeKind::AddVoter,
                        node: into,
                        address: None,
                    },
                    SingleChange {
                        kind: ChangeKind::Remove,
                        node: out,
                        address: None,
                    },
                ],
                transition: Transition::JointImplicit,
            }),
        }
    }

    /// The request in words (timeline markers, exported traces).
    pub fn describe(&self) -> String {
        match self {
            MemberAction::AddLearner => "add a node as learner".into(),
            MemberAction::Promote(n) => format!("promote n{n} to voter"),
            MemberAction::Demote(n) => format!("demote n{n} to learner"),
            MemberAction::Remove(n) => format!("remove n{n}"),
            MemberAction::Replace { out, into } => format!("replace n{out} by n{into} (joint)"),
        }
    }

    /// Asks the current leader for the change. Without a leader nothing is asked (a change
    /// goes through the leader's log): the returned line says so.
    pub fn execute(&self, sim: &mut Simulator) -> Result<(), String> {
        let Some(leader) = sim.leader() else {
            return Err(
                "No leader right now: a configuration change is a log entry, so only a leader can take one. Wait for an election."
                    .into(),
            );
        };
        let cc = self.conf_change(sim)?;
        sim.propose_change(leader, cc);
        Ok(())
    }
}

/// The next id no node of the run has had.
fn next_id(sim: &Simulator) -> NodeId {
    sim.nodes().keys().max().copied().unwrap_or(0) + 1
}

fn leader_members(sim: &Simulator) -> usize {
    sim.leader()
        .and_then(|l| sim.nodes().get(&l))
        .and_then(|n| n.server.as_ref())
        .map_or(0, |s| s.membership().members().len())
}

/// How the leader answered the latest request, from the trace it left (events from `from`
/// on): `Ok(text)` when it logged the change, `Err(reason)` when it refused it.
pub fn outcome(trace: &[TraceEvent], from: usize) -> Option<Result<String, String>> {
    trace.get(from..)?.iter().find_map(|ev| match &ev.kind {
        TraceKind::ConfChangeProposed {
            leader,
            index,
            change,
        } => Some(Ok(format!(
            "n{leader} logged the change [{change}] at index {index}; it takes effect on each node when that entry is applied."
        ))),
        TraceKind::ConfChangeRefused {
            leader,
            change,
            reason,
        } => Some(Err(format!("n{leader} refused [{change}]: {reason}."))),
        _ => None,
    })
}
