//! The playground's simulation engine: the real `keyval_core` simulator plus the log of what the
//! user did, so any moment of a run can be rebuilt exactly.
//!
//! A run is fully described by its [`SimConfig`] and its [`LoggedAction`]s (each applied after a
//! given number of simulator steps). Scrubbing back replays from the seed; acting in the past
//! truncates the log there and forks a new future. This module has no browser dependency, so
//! native `cargo test` exercises the same code the page runs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use keyval_core::sim::trace::Payload;
use keyval_core::sim::{FaultAction, SimConfig, Simulator, TraceEvent, TraceKind};
use keyval_core::{KvOp, Message, NodeEvent, NodeId, ReadConsistency, Role};
use serde::{Deserialize, Serialize};

/// Client id the simulator gives operations submitted by hand.
pub const MANUAL_CLIENT: u64 = keyval_core::sim::workload::MANUAL_CLIENT;

/// Something the learner did to the cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum UserAction {
    Fault(FaultAction),
    Submit(KvOp),
    /// The manual client sends `op` to `node` (the leader when None); a get takes the read
    /// path `consistency` names (linearizable when None). New variants go last: traces
    /// exported before still load.
    SubmitTo {
        op: KvOp,
        consistency: Option<ReadConsistency>,
        node: Option<NodeId>,
    },
    /// A membership change asked of the leader.
    Member(crate::member_action::MemberAction),
}

/// A user action applied after `step` simulator steps (before step `step + 1`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoggedAction {
    pub step: u64,
    pub action: UserAction,
}

/// A scripted action of a guided scenario, resolved against the cluster when it fires.
#[derive(Clone, Debug, PartialEq)]
pub enum ScriptAction {
    Fault(FaultAction),
    CrashLeader,
    PauseLeader,
    /// Crash a follower (the highest-numbered node that does not lead).
    CrashFollower,
    /// Crash the node the last `IsolateLeader` cut off.
    CrashIsolated,
    /// Restart crashed nodes, resume paused ones, heal the network.
    RestartAll,
    /// Cut the current leader off with `extra` other nodes (a minority when extra < quorum-1).
    IsolateLeader {
        extra: usize,
    },
    Submit(KvOp),
    /// A membership change, asked of whoever leads then.
    Member(crate::member_action::MemberAction),
    /// Replace the highest-numbered voter that does not lead by the most caught-up learner.
    ReplaceFollower,
    /// Remove the highest-numbered voter that does not lead.
    RemoveFollower,
}

/// A message on its way, for drawing.
#[derive(Clone, Debug, PartialEq)]
pub struct Flight {
    pub id: u64,
    pub from: keyval_core::trace::Addr,
    pub to: keyval_core::trace::Addr,
    pub sent_at: u64,
    pub deliver_at: u64,
    pub payload: Payload,
}

pub struct Engine {
    pub cfg: SimConfig,
    pub sim: Simulator,
    pub actions: Vec<LoggedAction>,
    /// Index of the next logged action to apply.
    next_action: usize,
    /// Furthest step reached under the current action log (the end of the timeline).
    pub horizon: u64,
    /// Steps that recorded at least one trace event so far (what "step" advances by one).
    pub visible_steps: u64,
    /// Trace events already folded into the derived state below.
    cursor: usize,
    /// Trace indices of the events worth narrating without heartbeats and deliveries, so the
    /// page never scans a long quiet stretch of heartbeats.
    pub notable: Vec<usize>,
    /// Trace index of the manual client's latest invocation.
    pub client_invoked_at: Option<usize>,
    /// Simulator step count after each visible step, to step back one event.
    pub visible_at: Vec<u64>,
    pub inflight: BTreeMap<u64, Flight>,
    /// Trace indices `[start, end)` produced by the most recent visible step.
    pub last_batch: (usize, usize),
    pub script: VecDeque<(u64, ScriptAction)>,
    /// Sequence number of the manual client's latest request.
    pub client_seq: Option<u64>,
    /// The leader a scripted `IsolateLeader` cut off.
    isolated: Option<NodeId>,
    /// Each node's role as of the folded trace (absent: crashed).
    pub roles: BTreeMap<NodeId, Role>,
    /// Trace indices of commit advances made by a leader (the others are followers learning).
    pub leader_commits: BTreeSet<usize>,
    /// Per candidate: the term and kind (pre-vote?) it campaigns in, and who granted it so far.
    pub tallies: BTreeMap<NodeId, Tally>,
    /// What the directed Figure 8 run established, when this is that scenario.
    pub figure8: Option<crate::figure8::Figure8>,
    /// Read-confirmation rounds that carried reads, as (leader, round number): heartbeats
    /// tagged with one of these confirm reads and are drawn as such.
    pub read_rounds: BTreeSet<(NodeId, u64)>,
    /// What a directed lease story established, when this is one.
    pub lease_story: Option<crate::lease_story::LeaseStory>,
    /// The leader's answer to the latest membership change: what it logged, or one line
    /// saying why it refused (or why nothing could be asked).
    pub member_answer: Option<Result<String, String>>,
    /// Per node removed from the cluster: the trace index of the first configuration
    /// applied (by any node) that lists it as removed.
    pub removed_at: BTreeMap<NodeId, usize>,
}

/// Votes granted to a candidate in its current campaign.
#[derive(Clone, Debug, PartialEq)]
pub struct Tally {
    pub term: u64,
    pub pre_vote: bool,
    pub granted: BTreeSet<NodeId>,
}

impl Engine {
    pub fn new(cfg: SimConfig) -> Self {
        let sim = Simulator::new(cfg.clone());
        Engine {
            cfg,
            sim,
            actions: Vec::new(),
            next_action: 0,
            horizon: 0,
            visible_steps: 0,
            cursor: 0,
            notable: Vec::new(),
            client_invoked_at: None,
            visible_at: Vec::new(),
            inflight: BTreeMap::new(),
            last_batch: (0, 0),
            script: VecDeque::new(),
            client_seq: None,
            isolated: None,
            roles: BTreeMap::new(),
            leader_commits: BTreeSet::new(),
            tallies: BTreeMap::new(),
            figure8: None,
            read_rounds: BTreeSet::new(),
            lease_story: None,
            member_answer: None,
            removed_at: BTreeMap::new(),
        }
    }

    /// An engine at step 0 whose future is already written: `actions` apply as the run reaches
    /// their steps (a directed scenario), and the timeline spans `horizon` steps.
    pub fn prepared(cfg: SimConfig, actions: Vec<LoggedAction>, horizon: u64) -> Self {
        let mut e = Engine::new(cfg);
        e.actions = actions;
        e.horizon = horizon;
        e
    }

    pub fn with_actions(cfg: SimConfig, actions: Vec<LoggedAction>, upto: u64) -> Self {
        let mut e = Engine::new(cfg);
        e.actions = actions;
        e.horizon = upto;
        e.run_to(upto);
        e
    }

    pub fn step_count(&self) -> u64 {
        self.sim.events_processed()
    }

    pub fn now(&self) -> u64 {
        self.sim.now()
    }

    pub fn trace(&self) -> &[TraceEvent] {
        self.sim.trace()
    }

    /// Applies logged actions due at the current step, fires due script actions, then processes
    /// one simulator event. Returns false when the simulator has nothing left to do.
    pub fn advance(&mut self) -> bool {
        self.apply_due_actions();
        self.fire_script();
        let before = self.sim.trace().len();
        if !self.sim.step() {
            return false;
        }
        let after = self.sim.trace().len();
        if after > before {
            self.visible_steps += 1;
            self.last_batch = (before, after);
            self.visible_at.push(self.sim.events_processed());
        }
        self.fold();
        let s = self.step_count();
        if s > self.horizon {
            self.horizon = s;
        }
        true
    }

    /// Advances to the end of the next step that records something. Returns the number of
    /// simulator steps taken.
    pub fn step_visible(&mut self) -> u64 {
        let start = self.step_count();
        let v = self.visible_steps;
        // Bounded: a cluster always ticks, but never loop forever on an empty queue.
        for _ in 0..1_000_000 {
            if !self.advance() || self.visible_steps > v {
                break;
            }
        }
        self.step_count() - start
    }

    /// Goes back to just after the previous visible event (a replay from the seed).
    pub fn step_back(&mut self) {
        let n = self.visible_at.len();
        let target = if n >= 2 { self.visible_at[n - 2] } else { 0 };
        self.seek(target);
    }

    /// Processes every event scheduled at or before virtual time `t`, at most `budget` of them.
    /// Returns the number processed.
    pub fn run_until_time(&mut self, t: u64, budget: u64) -> u64 {
        let mut n = 0;
        while n < budget {
            let next = self.sim.next_event_time();
            let due_script = self.script.front().map(|(st, _)| *st);
            match (next, due_script) {
                (Some(nt), _) if nt <= t => {}
                (_, Some(st)) if st <= t => {
                    self.fire_script();
                    continue;
                }
                _ => break,
            }
            if !self.advance() {
                break;
            }
            n += 1;
        }
        n
    }

    /// Steps forward until `step` simulator steps have been processed.
    fn run_to(&mut self, step: u64) {
        while self.step_count() < step {
            if !self.advance() {
                break;
            }
        }
        self.apply_due_actions();
    }

    /// Rebuilds the state after `step` steps: forward from here or, for the past, a replay from
    /// the seed and the action log (exact, because the simulator is deterministic).
    pub fn seek(&mut self, step: u64) {
        let step = step.min(self.horizon);
        if step < self.step_count() {
            let mut fresh = Engine::new(self.cfg.clone());
            fresh.actions = std::mem::take(&mut self.actions);
            fresh.horizon = self.horizon;
            fresh.script = std::mem::take(&mut self.script);
            fresh.isolated = self.isolated;
            fresh.figure8 = self.figure8.take();
            fresh.lease_story = self.lease_story.take();
            *self = fresh;
        }
        self.run_to(step);
    }

    fn apply_due_actions(&mut self) {
        let now = self.step_count();
        while let Some(a) = self.actions.get(self.next_action) {
            if a.step > now {
                break;
            }
            let action = a.action.clone();
            self.next_action += 1;
            self.execute(action);
        }
    }

    fn execute(&mut self, action: UserAction) {
        match action {
            UserAction::Fault(f) => self.sim.apply_fault(f),
            UserAction::Submit(op) => {
                if let Ok(seq) = self.sim.submit(op) {
                    self.client_seq = Some(seq);
                }
            }
            UserAction::SubmitTo {
                op,
                consistency,
                node,
            } => {
                if let Ok(seq) = self.sim.submit_from(MANUAL_CLIENT, op, consistency, node) {
                    self.client_seq = Some(seq);
                }
            }
            UserAction::Member(m) => {
                let before = self.sim.trace().len();
                self.member_answer = Some(match m.execute(&mut self.sim) {
                    Err(e) => Err(e),
                    Ok(()) => crate::member_action::outcome(self.sim.trace(), before)
                        .unwrap_or_else(|| Err("The leader could not be asked.".into())),
                });
            }
        }
        self.fold();
    }

    /// Does something now. Acting in the past drops the old future from here on.
    pub fn act(&mut self, action: UserAction) {
        let now = self.step_count();
        self.actions.truncate(self.next_action);
        self.actions.push(LoggedAction {
            step: now,
            action: action.clone(),
        });
        self.next_action = self.actions.len();
        self.horizon = now;
        self.execute(action);
    }

    /// Whether the manual client still waits for an answer (a new submit would be refused).
    pub fn client_busy(&self) -> bool {
        self.sim
            .clients()
            .any(|c| c.id == MANUAL_CLIENT && c.pending.is_some())
    }

    fn fire_script(&mut self) {
        let now = self.sim.now();
        let next = self.sim.next_event_time().unwrap_or(u64::MAX);
        while let Some((t, _)) = self.script.front() {
            // Fire once virtual time has reached the scripted moment.
            if *t > next.max(now) {
                break;
            }
            let (_, a) = self.script.pop_front().expect("front exists");
            if let Some(action) = self.resolve(a) {
                self.act(action);
            }
        }
    }

    fn resolve(&mut self, a: ScriptAction) -> Option<UserAction> {
        let nodes: Vec<NodeId> = self.sim.voters();
        Some(match a {
            ScriptAction::Fault(f) => UserAction::Fault(f),
            ScriptAction::Submit(op) => UserAction::Submit(op),
            ScriptAction::Member(m) => UserAction::Member(m),
            ScriptAction::ReplaceFollower | ScriptAction::RemoveFollower => {
                use crate::member_action::MemberAction;
                use crate::membership_view::Standing;
                let view = crate::membership_view::MembershipView::of(self);
                let leader = self.sim.leader()?;
                let out = view
                    .membership
                    .voters
                    .iter()
                    .rev()
                    .copied()
                    .find(|&v| v != leader)?;
                UserAction::Member(match a {
                    ScriptAction::ReplaceFollower => MemberAction::Replace {
                        out,
                        // A node still joining (its change not applied yet) is asked for too:
                        // the leader's refusal is the lesson.
                        into: view.best_learner().or_else(|| {
                            view.rows
                                .iter()
                                .rev()
                                .find(|r| r.standing == Standing::Joining)
                                .map(|r| r.id)
                        })?,
                    },
                    _ => MemberAction::Remove(out),
                })
            }
            ScriptAction::CrashLeader => UserAction::Fault(FaultAction::Crash(self.sim.leader()?)),
            ScriptAction::CrashIsolated => UserAction::Fault(FaultAction::Crash(self.isolated?)),
            ScriptAction::CrashFollower => {
                let l = self.sim.leader();
                let f = nodes.iter().rev().copied().find(|n| {
                    Some(*n) != l && self.sim.nodes().get(n).is_some_and(|x| x.is_up())
                })?;
                UserAction::Fault(FaultAction::Crash(f))
            }
            ScriptAction::PauseLeader => UserAction::Fault(FaultAction::Pause(self.sim.leader()?)),
            ScriptAction::RestartAll => UserAction::Fault(FaultAction::StopFaults),
            ScriptAction::IsolateLeader { extra } => {
                let l = self.sim.leader()?;
                self.isolated = Some(l);
                let mut minority = vec![l];
                minority.extend(nodes.iter().copied().filter(|&n| n != l).take(extra));
                let rest: Vec<NodeId> = nodes
                    .iter()
                    .copied()
                    .filter(|n| !minority.contains(n))
                    .collect();
                UserAction::Fault(FaultAction::Partition(vec![minority, rest]))
            }
        })
    }

    /// Folds new trace events into the in-flight message set.
    fn fold(&mut self) {
        let trace = self.sim.trace();
        for (i, ev) in trace.iter().enumerate().skip(self.cursor) {
            if is_notable(&ev.kind) {
                self.notable.push(i);
            }
            if matches!(
                ev.kind,
                TraceKind::ClientInvoke {
                    client: MANUAL_CLIENT,
                    ..
                }
            ) {
                self.client_invoked_at = Some(i);
            }
            match &ev.kind {
                TraceKind::Node { node, event } => match event {
                    NodeEvent::RoleChanged { to, term, .. } => {
                        self.roles.insert(*node, *to);
                        if matches!(to, Role::Candidate | Role::PreCandidate) {
                            self.tallies.insert(
                                *node,
                                Tally {
                                    term: *term,
                                    pre_vote: *to == Role::PreCandidate,
                                    granted: BTreeSet::from([*node]),
                                },
                            );
                        }
                    }
                    NodeEvent::MembershipChanged { membership, .. } => {
                        for &gone in &membership.removed {
                            self.removed_at.entry(gone).or_insert(i);
                        }
                    }
                    NodeEvent::ReadRoundStarted { seq, .. } => {
                        self.read_rounds.insert((*node, *seq));
                    }
                    NodeEvent::CommitAdvanced { .. }
                        if self.roles.get(node) == Some(&Role::Leader) =>
                    {
                        self.leader_commits.insert(i);
                    }
                    NodeEvent::VoteCast {
                        candidate,
                        term,
                        granted: true,
                        pre_vote,
                    } => {
                        if let Some(t) = self.tallies.get_mut(candidate) {
                            // A pre-vote is asked for the term after the pre-candidate's.
                            let asked = if *pre_vote { t.term + 1 } else { t.term };
                            if t.pre_vote == *pre_vote && (asked == *term || t.term == *term) {
                                t.granted.insert(*node);
                            }
                        }
                    }
                    _ => {}
                },
                TraceKind::Crashed { node } => {
                    self.roles.remove(node);
                }
                TraceKind::Restarted { node } => {
                    self.roles.insert(*node, Role::Follower);
                }
                TraceKind::Sent {
                    id,
                    from,
                    to,
                    deliver_at,
                    payload,
                } => {
                    self.inflight.insert(
                        *id,
                        Flight {
                            id: *id,
                            from: *from,
                            to: *to,
                            sent_at: ev.time,
                            deliver_at: *deliver_at,
                            payload: payload.clone(),
                        },
                    );
                }
                TraceKind::Delivered { id, .. } | TraceKind::Dropped { id, .. } => {
                    self.inflight.remove(id);
                }
                _ => {}
            }
        }
        self.cursor = trace.len();
        // A message to a crashed or paused node may wait without a matching event: forget
        // anything far past its delivery time so the picture stays clean.
        let now = self.sim.now();
        if self.inflight.len() > 64 {
            self.inflight.retain(|_, f| f.deliver_at + 1_000_000 > now);
        }
    }

    /// The read-confirmation round a heartbeat (or its acknowledgement) belongs to, when that
    /// round carried reads.
    pub fn read_round_of(&self, f: &Flight) -> Option<u64> {
        use keyval_core::trace::Addr;
        let (leader, ctx) = match (&f.payload, f.from, f.to) {
            (Payload::Raft(Message::Heartbeat { ctx, .. }), Addr::Node(l), _) => (l, *ctx),
            (Payload::Raft(Message::HeartbeatResponse { ctx, .. }), _, Addr::Node(l)) => (l, *ctx),
            _ => return None,
        };
        self.read_rounds.contains(&(leader, ctx)).then_some(ctx)
    }

    /// The sides the network is split into, as cut links leave them (connected components of
    /// the links that work both ways), one per node in [`Simulator::node_ids`] order (ids 1 to
    /// `cfg.nodes` first, then nodes added since); None when nothing is cut. At most 3 sides
    /// are named (0, 1, 2); more fall into 2.
    pub fn sides(&self) -> Option<Vec<u8>> {
        let net = self.sim.network();
        net.cut_links().next()?;
        let ids = self.sim.node_ids();
        let mut side: Vec<Option<u8>> = vec![None; ids.len()];
        let mut next = 0u8;
        for start in 0..ids.len() {
            if side[start].is_some() {
                continue;
            }
            side[start] = Some(next.min(2));
            let mut stack = vec![start];
            while let Some(a) = stack.pop() {
                let x = ids[a];
                for (b, s) in side.iter_mut().enumerate() {
                    let y = ids[b];
                    if s.is_none() && !net.is_cut(x, y) && !net.is_cut(y, x) {
                        *s = Some(next.min(2));
                        stack.push(b);
                    }
                }
            }
            next += 1;
        }
        Some(side.into_iter().map(|s| s.unwrap_or(0)).collect())
    }

    /// The network after moving `node` across the partition line: with no partition it is cut
    /// off alone; otherwise it joins the first side (or, from the first side, the second).
    /// One side left means the network heals.
    pub fn move_across(&self, node: NodeId) -> FaultAction {
        let ids = self.sim.node_ids();
        let mut side = self.sides().unwrap_or_else(|| vec![0; ids.len()]);
        let Some(at) = ids.iter().position(|&i| i == node) else {
            return FaultAction::Heal;
        };
        let mine = side[at];
        let split = side.iter().any(|&s| s != 0);
        let to = if !split || mine == 0 { 1 } else { 0 };
        side[at] = to;
        let mut groups: Vec<Vec<NodeId>> = vec![Vec::new(); 3];
        for (i, g) in side.iter().enumerate() {
            groups[*g as usize].push(ids[i]);
        }
        groups.retain(|g| !g.is_empty());
        if groups.len() < 2 {
            FaultAction::Heal
        } else {
            FaultAction::Partition(groups)
        }
    }

    /// Whether the node trace event `i` is about had been removed from the configuration by
    /// then.
    pub fn was_removed(&self, i: usize) -> bool {
        use keyval_core::trace::Addr;
        let node = match self.sim.trace().get(i).map(|ev| &ev.kind) {
            Some(TraceKind::Node { node, .. }) => *node,
            Some(TraceKind::Sent {
                from: Addr::Node(n),
                ..
            }) => *n,
            _ => return false,
        };
        self.removed_at.get(&node).is_some_and(|&at| i >= at)
    }

    /// Whether this entry is the manual client's latest request.
    pub fn is_client_entry(&self, e: &keyval_core::Entry) -> bool {
        match (&e.payload, self.client_seq) {
            (keyval_core::EntryPayload::Command(r), Some(seq)) => {
                r.client_id == MANUAL_CLIENT && r.seq == seq
            }
            _ => false,
        }
    }

    /// The log index holding the manual client's latest request, looked up on the leader first
    /// (where it is appended), then on any node.
    pub fn client_entry_index(&self) -> Option<u64> {
        self.client_seq?;
        let leader = self.sim.leader();
        let mut nodes: Vec<_> = self.sim.nodes().values().collect();
        nodes.sort_by_key(|n| Some(n.id) != leader);
        for n in nodes {
            let Some(s) = &n.server else { continue };
            if let Some(e) = s
                .raft()
                .log()
                .entries()
                .iter()
                .rev()
                .find(|e| self.is_client_entry(e))
            {
                return Some(e.index);
            }
        }
        None
    }

    /// Nodes on which the manual client's request is committed at `index`.
    pub fn client_committed_on(&self, index: u64) -> Vec<NodeId> {
        self.sim
            .nodes()
            .values()
            .filter(|n| {
                n.server.as_ref().is_some_and(|s| {
                    s.raft().commit_index() >= index
                        && s.raft()
                            .log()
                            .get(index)
                            .is_some_and(|e| self.is_client_entry(e))
                })
            })
            .map(|n| n.id)
            .collect()
    }

    /// Whether a message belongs to the manual client's current request (for highlighting).
    pub fn follows_client(&self, f: &Flight, entry: Option<u64>) -> bool {
        use keyval_core::trace::Addr;
        if matches!(f.from, Addr::Client(MANUAL_CLIENT))
            || matches!(f.to, Addr::Client(MANUAL_CLIENT))
        {
            return true;
        }
        if entry.is_none() {
            return false;
        }
        match &f.payload {
            Payload::Raft(Message::AppendEntries { entries, .. }) => {
                entries.iter().any(|e| self.is_client_entry(e))
            }
            _ => false,
        }
    }
}

/// Whether an event says more than "the cluster is alive": everything but heartbeats and
/// message deliveries.
pub fn is_notable(kind: &TraceKind) -> bool {
    match kind {
        TraceKind::Sent { payload, .. } => !matches!(
            payload,
            Payload::Raft(Message::Heartbeat { .. } | Message::HeartbeatResponse { .. })
        ),
        TraceKind::Delivered { .. } => false,
        _ => true,
    }
}

/// The exported form of a run: enough to rebuild it exactly, plus the trace it produced so a
/// replay can be checked event for event. See web-viz/README.md.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceFile {
    pub format: String,
    pub config: SimConfig,
    pub actions: Vec<LoggedAction>,
    /// Simulator steps the run had processed when exported.
    pub steps: u64,
    pub trace: Vec<TraceEvent>,
    /// `TraceEvent::render()` of each event, for people and diffs.
    pub rendered: Vec<String>,
}

pub const TRACE_FORMAT: &str = "keyval-playground-trace/1";

impl TraceFile {
    pub fn of(e: &Engine) -> Self {
        let trace = e.trace().to_vec();
        let rendered = trace.iter().map(|t| t.render()).collect();
        TraceFile {
            format: TRACE_FORMAT.into(),
            config: e.cfg.clone(),
            actions: e.actions.clone(),
            steps: e.step_count(),
            trace,
            rendered,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("trace serializes")
    }

    pub fn from_json(s: &str) -> Result<Self, String> {
        let t: TraceFile = serde_json::from_str(s).map_err(|e| format!("not a trace file: {e}"))?;
        if t.format != TRACE_FORMAT {
            return Err(format!("unknown trace format {:?}", t.format));
        }
        Ok(t)
    }

    /// Rebuilds the run and checks that it reproduces the recorded trace.
    pub fn replay(&self) -> Result<Engine, String> {
        let e = Engine::with_actions(self.config.clone(), self.actions.clone(), self.steps);
        let got = e.trace();
        if got.len() != self.trace.len() {
            return Err(format!(
                "replay produced {} events, the file records {}",
                got.len(),
                self.trace.len()
            ));
        }
        if let Some(i) = (0..got.len()).find(|&i| got[i] != self.trace[i]) {
            return Err(format!(
                "replay diverges at event {i}: {} vs {}",
                got[i].render(),
                self.trace[i].render()
            ));
        }
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str, v: &str) -> KvOp {
        KvOp::Put {
            key: k.into(),
            value: v.into(),
        }
    }

    #[test]
    fn seeking_back_replays_exactly() {
        let mut e = Engine::new(SimConfig::new(3, 7));
        for _ in 0..3000 {
            e.advance();
        }
        e.act(UserAction::Submit(put("a", "1")));
        for _ in 0..2000 {
            e.advance();
        }
        let at_end = e.trace().to_vec();
        e.seek(1000);
        assert_eq!(e.step_count(), 1000);
        e.seek(5000);
        assert_eq!(e.trace(), &at_end[..]);
    }

    #[test]
    fn acting_in_the_past_forks() {
        let mut e = Engine::new(SimConfig::new(3, 1));
        for _ in 0..2000 {
            e.advance();
        }
        e.act(UserAction::Fault(FaultAction::Crash(1)));
        for _ in 0..500 {
            e.advance();
        }
        e.seek(1000);
        e.act(UserAction::Fault(FaultAction::Crash(2)));
        assert_eq!(e.actions.len(), 1);
        assert_eq!(e.horizon, 1000);
    }

    #[test]
    fn export_import_round_trip() {
        let mut e = Engine::new(SimConfig::new(5, 3));
        for _ in 0..4000 {
            e.advance();
        }
        e.act(UserAction::Submit(put("k", "v")));
        e.act(UserAction::Fault(FaultAction::Crash(2)));
        for _ in 0..3000 {
            e.advance();
        }
        let file = TraceFile::of(&e);
        let back = TraceFile::from_json(&file.to_json()).unwrap();
        let r = back.replay().unwrap();
        assert_eq!(r.step_count(), e.step_count());
        assert_eq!(r.trace(), e.trace());
    }

    #[test]
    fn notable_index_matches_the_trace() {
        let mut e = Engine::new(SimConfig::new(5, 2));
        for _ in 0..20_000 {
            e.advance();
        }
        let want: Vec<usize> = (0..e.trace().len())
            .filter(|&i| is_notable(&e.trace()[i].kind))
            .collect();
        assert_eq!(e.notable, want);
        e.seek(5_000);
        assert!(e.notable.iter().all(|&i| i < e.trace().len()));
    }

    #[test]
    fn step_back_undoes_one_visible_step() {
        let mut e = Engine::new(SimConfig::new(3, 9));
        for _ in 0..30 {
            e.step_visible();
        }
        let trace = e.trace().to_vec();
        e.step_visible();
        e.step_back();
        assert_eq!(e.visible_steps, 30);
        assert_eq!(e.trace(), &trace[..]);
    }

    #[test]
    fn step_visible_records_something() {
        let mut e = Engine::new(SimConfig::new(3, 9));
        for _ in 0..50 {
            let len = e.trace().len();
            let v = e.visible_steps;
            e.step_visible();
            assert_eq!(e.visible_steps, v + 1);
            assert!(e.trace().len() > len);
        }
    }
}
