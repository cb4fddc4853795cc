//! Runs a parsed script one command at a time against the simulator, collecting the trace
//! lines each command caused.

use crate::sim::linearizability;
use crate::sim::{FaultAction, SimConfig, Simulator};
use crate::trace::{ReadableFilter, TraceEvent};
use crate::types::{NodeId, Role};

use super::inspect;
use super::parse::{ClusterSpec, Command, Line, Script, Until};
use super::ScenarioError;

/// Trace lines one command may print; more means the step is too long to read.
pub const MAX_LINES_PER_COMMAND: usize = 20_000;
/// Search budget of the linearizability check at the end of a script (per key).
const LINEARIZABILITY_BUDGET: u64 = 2_000_000;

/// What one command did.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// Script line number (1-based).
    pub line: usize,
    /// The command as written.
    pub command: String,
    /// The readable events it caused (heartbeats left out), in order.
    pub events: Vec<TraceEvent>,
    /// The output printed under the command: the events' lines, then what an inspection
    /// command shows. Empty for most commands that only change something.
    pub output: String,
}

/// A script being run. [`Session::step`] runs the next command; the browser calls it once per
/// click, the tests until the end.
pub struct Session {
    script: Script,
    next: usize,
    sim: Option<Simulator>,
    filter: ReadableFilter,
    output: String,
    violations_seen: usize,
    failed: bool,
}

impl Session {
    pub fn new(script: Script) -> Self {
        Session {
            script,
            next: 0,
            sim: None,
            filter: ReadableFilter::default(),
            output: String::new(),
            violations_seen: 0,
            failed: false,
        }
    }

    pub fn script(&self) -> &Script {
        &self.script
    }

    /// The simulator, once the `cluster` line has run.
    pub fn sim(&self) -> Option<&Simulator> {
        self.sim.as_ref()
    }

    /// What the `status` command prints, once the cluster is set up.
    pub fn status(&self) -> Option<String> {
        self.sim.as_ref().map(inspect::status)
    }

    /// Everything printed so far: each command (`> command`), then its output.
    pub fn output(&self) -> &str {
        &self.output
    }

    /// Index (into the script's lines) of the next command to run.
    pub fn position(&self) -> usize {
        self.next
    }

    /// Whether every line ran, or one failed (a failed session runs nothing more).
    pub fn is_done(&self) -> bool {
        self.failed || self.next >= self.script.lines.len()
    }

    /// Runs the next line. None when the script is done or has failed.
    pub fn step(&mut self) -> Option<Result<Step, ScenarioError>> {
        if self.is_done() {
            return None;
        }
        let line = self.script.lines[self.next].clone();
        self.next += 1;
        Some(self.execute(&line))
    }

    /// Parses `text` as one more command for this cluster (a command typed in the browser),
    /// appends it to the script and runs it.
    pub fn run_extra(&mut self, text: &str) -> Result<Step, ScenarioError> {
        let number = self.script.lines.last().map_or(1, |l| l.number + 1);
        let mut with_cluster = String::new();
        for l in self.script.lines.iter().filter(|l| l.number < number) {
            if matches!(l.command, Command::Cluster(_)) {
                with_cluster = l.text.clone();
            }
        }
        let probe = format!("{with_cluster}\n{text}");
        let parsed = super::parse(&self.script.name, &probe)
            .map_err(|e| ScenarioError::new(&self.script.name, number, e.message))?;
        let Some(mut line) = parsed.lines.into_iter().nth(1) else {
            return Err(ScenarioError::new(
                &self.script.name,
                number,
                "expected a command".into(),
            ));
        };
        if self.sim.is_none() || matches!(line.command, Command::Cluster(_)) {
            return Err(ScenarioError::new(
                &self.script.name,
                number,
                "commands can be added after the cluster is set up, not a second cluster".into(),
            ));
        }
        line.number = number;
        self.script.lines.push(line.clone());
        self.next = self.script.lines.len();
        self.execute(&line)
    }

    /// The script as it ran, as a scenario file (what the browser exports).
    pub fn to_scenario_text(&self) -> String {
        let mut s = String::new();
        for l in &self.script.lines[..self.next.min(self.script.lines.len())] {
            s.push_str(&l.text);
            s.push('\n');
        }
        s
    }

    /// End-of-script checks: the logs match everywhere, no checker saw a violation and the
    /// scripted clients' history is linearizable.
    pub fn finish(&mut self) -> Result<(), ScenarioError> {
        let line = self.script.lines.last().map_or(0, |l| l.number);
        self.check_safe()
            .map_err(|m| ScenarioError::new(&self.script.name, line, m))
    }

    fn execute(&mut self, line: &Line) -> Result<Step, ScenarioError> {
        let result = self.command(&line.command);
        let events = self.take_events();
        let mut out = String::new();
        for e in &events {
            out.push_str(&e.render());
            out.push('\n');
        }
        let name = self.script.name.clone();
        let err = |m: String| ScenarioError::new(&name, line.number, m);
        let shown = match result {
            Ok(s) => s,
            Err(m) => {
                self.failed = true;
                self.append(line, &out);
                return Err(err(format!("`{}`: {m}", line.text)));
            }
        };
        out.push_str(&shown);
        if events.len() > MAX_LINES_PER_COMMAND {
            self.failed = true;
            return Err(err(format!(
                "`{}` printed {} trace lines (limit {MAX_LINES_PER_COMMAND}): split it into shorter steps",
                line.text,
                events.len()
            )));
        }
        self.append(line, &out);
        if let Err(m) = self.check_new_violations() {
            self.failed = true;
            return Err(err(m));
        }
        Ok(Step {
            line: line.number,
            command: line.text.clone(),
            events,
            output: out,
        })
    }

    fn append(&mut self, line: &Line, out: &str) {
        match &line.command {
            Command::Comment(_) => self.output.push_str(&line.text),
            _ => {
                self.output.push_str("> ");
                self.output.push_str(&line.text);
            }
        }
        self.output.push('\n');
        self.output.push_str(out);
    }

    fn take_events(&mut self) -> Vec<TraceEvent> {
        let Some(sim) = self.sim.as_mut() else {
            return Vec::new();
        };
        let filter = &mut self.filter;
        sim.take_trace()
            .into_iter()
            .filter(|e| filter.keep(e))
            .collect()
    }

    fn check_new_violations(&mut self) -> Result<(), String> {
        let Some(sim) = self.sim.as_ref() else {
            return Ok(());
        };
        let v = sim.checker().violations();
        if v.len() > self.violations_seen {
            let new: Vec<String> = v[self.violations_seen..]
                .iter()
                .map(|v| v.to_string())
                .collect();
            self.violations_seen = v.len();
            return Err(format!("SAFETY VIOLATION:\n  {}", new.join("\n  ")));
        }
        Ok(())
    }

    fn check_safe(&mut self) -> Result<(), String> {
        let Some(sim) = self.sim.as_mut() else {
            return Ok(());
        };
        sim.check_log_matching();
        self.check_new_violations()?;
        let Some(sim) = self.sim.as_ref() else {
            return Ok(());
        };
        let (verdict, _) = linearizability::check(sim.history(), LINEARIZABILITY_BUDGET);
        match verdict {
            linearizability::Verdict::Linearizable => Ok(()),
            linearizability::Verdict::NotLinearizable { explanation, .. } => Err(format!(
                "the clients' history is not linearizable:\n{explanation}"
            )),
            linearizability::Verdict::Timeout { key, .. } => Err(format!(
                "the linearizability check ran out of budget on key {}",
                String::from_utf8_lossy(&key)
            )),
        }
    }

    fn sim_mut(&mut self) -> Result<&mut Simulator, String> {
        self.sim
            .as_mut()
            .ok_or_else(|| "no cluster yet (the first command is `cluster`)".to_string())
    }

    /// Runs one command; returns what it shows besides trace lines.
    fn command(&mut self, c: &Command) -> Result<String, String> {
        match c {
            Command::Comment(_) => Ok(String::new()),
            Command::Cluster(spec) => {
                let cfg = sim_config(spec)?;
                let summary = inspect::cluster_summary(&cfg);
                self.sim = Some(Simulator::new(cfg));
                Ok(summary)
            }
            Command::Status => Ok(inspect::status(self.sim_mut()?)),
            Command::Log(n) => Ok(inspect::log(self.sim_mut()?, *n)),
            Command::Kv(n) => inspect::kv(self.sim_mut()?, *n),
            Command::ShowHeld => Ok(inspect::held(self.sim_mut()?)),
            Command::Expect { what, expected } => {
                let seen = inspect::observe(self.sim_mut()?, what);
                if &seen == expected {
                    Ok(String::new())
                } else {
                    Err(format!("expected {expected}, saw {seen}"))
                }
            }
            Command::ExpectSafe => self.check_safe().map(|_| String::new()),
            other => {
                let sim = self.sim_mut()?;
                drive(sim, other)
            }
        }
    }
}

fn sim_config(spec: &ClusterSpec) -> Result<SimConfig, String> {
    let mut cfg = SimConfig::new(spec.nodes, spec.seed);
    cfg.raft.pre_vote = spec.pre_vote;
    cfg.raft.check_quorum = spec.check_quorum;
    cfg.raft.heartbeat_ticks = spec.heartbeat_ticks;
    cfg.raft.election_ticks = spec.election_ticks;
    cfg.raft.snapshot_threshold = spec.snapshot_threshold;
    cfg.raft.snapshot_chunk_bytes = spec.snapshot_chunk_bytes;
    cfg.raft.max_entries_per_msg = spec.max_entries_per_msg;
    cfg.raft.lease_reads = spec.lease_reads;
    cfg.raft.lease_drift_margin_pct = spec.lease_margin_pct;
    cfg.raft.validate().map_err(|e| e.to_string())?;
    cfg.tick_us = spec.tick_us;
    cfg.network.latency_us = spec.latency_us;
    cfg.fsync_us = spec.fsync_us;
    Ok(cfg)
}

/// The commands that change the cluster or let time pass.
fn drive(sim: &mut Simulator, c: &Command) -> Result<String, String> {
    match c {
        Command::Tick(n) => {
            let us = n
                .checked_mul(sim.config().tick_us)
                .filter(|&us| us <= super::parse::MAX_DURATION_US)
                .ok_or("over the limit of one hour of virtual time")?;
            run_for(sim, us);
        }
        Command::Run(us) => run_for(sim, *us),
        Command::TickUntil { until, within } => tick_until(sim, *until, *within)?,
        Command::Stabilize { within } => stabilize(sim, *within)?,
        Command::Hold(link) => {
            if !sim.hold(*link) {
                return Err(format!(
                    "too many hold patterns (limit {})",
                    crate::sim::hold::MAX_HOLDS
                ));
            }
        }
        Command::Unhold(link) => {
            sim.unhold(*link);
            settle_disks(sim);
        }
        Command::Deliver { link, limit } => {
            wait_for_arrivals(sim, link);
            if sim.deliver_held(*link, *limit) == 0 {
                return Ok(format!("(no message waits on {link})\n"));
            }
            settle_disks(sim);
        }
        Command::Drop { link, limit } => {
            wait_for_arrivals(sim, link);
            if sim.drop_held(*link, *limit) == 0 {
                return Ok(format!("(no message waits on {link})\n"));
            }
        }
        Command::Partition(groups) => sim.apply_fault(FaultAction::Partition(groups.clone())),
        Command::Isolate(n) => {
            let rest: Vec<NodeId> = sim.voters().into_iter().filter(|x| x != n).collect();
            sim.apply_fault(FaultAction::Partition(vec![vec![*n], rest]));
        }
        Command::Cut { from, to, both } => {
            sim.apply_fault(FaultAction::CutLink(*from, *to));
            if *both {
                sim.apply_fault(FaultAction::CutLink(*to, *from));
            }
        }
        Command::Restore { from, to, both } => {
            sim.apply_fault(FaultAction::RestoreLink(*from, *to));
            if *both {
                sim.apply_fault(FaultAction::RestoreLink(*to, *from));
            }
        }
        Command::Heal => sim.apply_fault(FaultAction::Heal),
        Command::Crash(ns) => each(sim, ns, |s, n| {
            require(s.nodes()[&n].is_up(), n, "is already down")?;
            s.apply_fault(FaultAction::Crash(n));
            Ok(())
        })?,
        Command::Restart(ns) => each(sim, ns, |s, n| {
            require(!s.nodes()[&n].is_up(), n, "is up (crash it first)")?;
            s.apply_fault(FaultAction::Restart(n));
            Ok(())
        })?,
        Command::Pause(ns) => each(sim, ns, |s, n| {
            let node = &s.nodes()[&n];
            require(node.is_up() && !node.paused, n, "is down or already paused")?;
            s.apply_fault(FaultAction::Pause(n));
            Ok(())
        })?,
        Command::Resume(ns) => each(sim, ns, |s, n| {
            require(s.nodes()[&n].paused, n, "is not paused")?;
            s.apply_fault(FaultAction::Resume(n));
            settle_disks(s);
            Ok(())
        })?,
        Command::Request {
            client,
            node,
            op,
            consistency,
        } => {
            sim.submit_to_with(*client, *node, op.clone(), *consistency)?;
        }
        Command::Transfer { from, to } => {
            // A refusal is an answer worth showing, not a script error.
            return Ok(match sim.transfer_leadership(*from, *to) {
                Ok(target) => {
                    settle_disks(sim);
                    format!("(n{from} transfers leadership to n{target})\n")
                }
                Err(why) => format!("({why})\n"),
            });
        }
        Command::Member(cc) => {
            let leader = sim.leader().ok_or("member: there is no leader to ask")?;
            sim.propose_change(leader, cc.clone());
            settle_disks(sim);
        }
        Command::Drift { node, per_mille } => {
            sim.apply_fault(FaultAction::SetClockDrift(*node, *per_mille));
        }
        Command::Retry { client, node } => {
            let target = match node {
                Some(n) => *n,
                None => sim
                    .clients()
                    .find(|c| c.id == *client)
                    .map(|c| c.target())
                    .ok_or_else(|| format!("c{client} has sent nothing yet"))?,
            };
            sim.resend(*client, target)?;
        }
        _ => unreachable!("inspection commands are handled by the session"),
    }
    Ok(String::new())
}

fn each(
    sim: &mut Simulator,
    nodes: &[NodeId],
    mut f: impl FnMut(&mut Simulator, NodeId) -> Result<(), String>,
) -> Result<(), String> {
    nodes.iter().try_for_each(|&n| f(sim, n))
}

fn require(ok: bool, n: NodeId, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("n{n} {what}"))
    }
}

fn run_for(sim: &mut Simulator, us: u64) {
    let t = sim.now().saturating_add(us);
    sim.run_until(t);
}

/// Lets the messages on the wire over `link` arrive (and wait there, if it is held).
fn wait_for_arrivals(sim: &mut Simulator, link: &crate::sim::LinkPattern) {
    if let Some(t) = sim.last_arrival(*link) {
        sim.run_until(t);
    }
}

/// Lets the persist steps in progress finish, so a delivered message's answers are sent.
fn settle_disks(sim: &mut Simulator) {
    let t = sim.disks_idle_at();
    sim.run_until(t);
}

/// Steps until `pred` holds or `within` of virtual time passed; returns whether it held.
fn run_until(sim: &mut Simulator, within: u64, mut pred: impl FnMut(&Simulator) -> bool) -> bool {
    let deadline = sim.now().saturating_add(within);
    loop {
        if pred(sim) {
            return true;
        }
        match sim.next_event_time() {
            Some(t) if t <= deadline => {
                sim.step();
            }
            _ => {
                sim.run_until(deadline);
                return pred(sim);
            }
        }
    }
}

fn role_of(sim: &Simulator, n: NodeId) -> Option<Role> {
    sim.nodes().get(&n).and_then(|x| x.role())
}

fn tick_until(sim: &mut Simulator, until: Until, within: u64) -> Result<(), String> {
    let reached = match until {
        Until::AnyLeader => run_until(sim, within, |s| s.leader().is_some()),
        Until::Role(n, r) => run_until(sim, within, |s| role_of(s, n) == Some(r)),
        Until::RoleChanges(n) => {
            let start = role_of(sim, n);
            run_until(sim, within, |s| role_of(s, n) != start)
        }
    };
    if reached {
        // The role change's effects (vote requests, a new leader's first appends) leave once
        // its persist step is done: let them, so the next command can hold or deliver them.
        settle_disks(sim);
        return Ok(());
    }
    let seen = match until {
        Until::AnyLeader => "no node leads".to_string(),
        Until::Role(n, _) | Until::RoleChanges(n) => match sim.nodes()[&n].server.as_ref() {
            Some(s) => format!("n{n} is {} at term {}", s.raft().role(), s.raft().term()),
            None => format!("n{n} is down"),
        },
    };
    Err(format!(
        "not reached within {} ({seen})",
        crate::trace::fmt_time(within)
    ))
}

/// Everything `stabilize` watches: when none of it changed for a while, the cluster is stable.
fn fingerprint(sim: &Simulator) -> Vec<u64> {
    let mut f = Vec::new();
    for n in sim.nodes().values() {
        match &n.server {
            None => f.push(0),
            Some(s) => {
                let r = s.raft();
                f.extend([
                    1 + n.paused as u64,
                    r.role() as u64,
                    r.term(),
                    r.leader().unwrap_or(0),
                    r.log().last_index(),
                    r.commit_index(),
                    r.applied_index(),
                    r.snapshot_index(),
                ]);
            }
        }
    }
    f.push(sim.held().count() as u64);
    f.extend(
        sim.clients()
            .map(|c| c.pending.as_ref().map_or(0, |p| p.seq)),
    );
    f
}

/// Runs until no message is on the wire, no disk is busy, and no node's role, term, leader,
/// log, commit or applied index changed for the longest election timeout (so every timeout that
/// would fire has fired). Fails if that does not happen within `within`.
fn stabilize(sim: &mut Simulator, within: u64) -> Result<(), String> {
    let c = sim.config();
    let quiet = 2 * u64::from(c.raft.election_ticks) * c.tick_us + c.network.latency_us.1;
    let deadline = sim.now().saturating_add(within);
    let mut last = fingerprint(sim);
    let mut changed_at = sim.now();
    loop {
        let calm = sim.now().saturating_sub(changed_at) >= quiet;
        if calm && sim.messages_in_flight() == 0 && sim.disks_idle() {
            return Ok(());
        }
        match sim.next_event_time() {
            Some(t) if t <= deadline => {
                sim.step();
            }
            // Nothing is scheduled at all (every node is down): nothing can change any more.
            None => return Ok(()),
            Some(_) => {
                return Err(format!(
                    "still changing after {} (last change at t={})",
                    crate::trace::fmt_time(within),
                    crate::trace::fmt_time(changed_at)
                ))
            }
        }
        let now = fingerprint(sim);
        if now != last {
            last = now;
            changed_at = sim.now();
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::scenario::run;

    fn error(text: &str) -> String {
        run("t.scn", text).unwrap_err().to_string()
    }

    #[test]
    fn a_failed_expect_names_file_line_expected_and_seen() {
        let e = error("cluster nodes=3 seed=1\ntick-until leader\nexpect leader n1");
        assert_eq!(e, "t.scn:3: `expect leader n1`: expected n1, saw n2");
        let e = error("cluster nodes=3 seed=1\n# a comment\n\nexpect kv n3 x 1");
        assert_eq!(e, "t.scn:4: `expect kv n3 x 1`: expected 1, saw absent");
    }

    #[test]
    fn commands_that_cannot_apply_are_errors_not_no_ops() {
        let e = error("cluster nodes=3\ncrash n1\ncrash n1");
        assert_eq!(e, "t.scn:3: `crash n1`: n1 is already down");
        let e = error("cluster nodes=3\nrestart n2");
        assert_eq!(e, "t.scn:2: `restart n2`: n2 is up (crash it first)");
        let e = error("cluster nodes=3\nresume n2");
        assert_eq!(e, "t.scn:2: `resume n2`: n2 is not paused");
        let e = error("cluster nodes=3\nretry c4");
        assert_eq!(e, "t.scn:2: `retry c4`: c4 has sent nothing yet");
        let e = error("cluster nodes=3\nput n1 a 1\nput n1 b 2");
        assert_eq!(
            e,
            "t.scn:3: `put n1 b 2`: c1 still waits for an answer to seq=1 (retry it, or use another client)"
        );
        let e = error("cluster nodes=3 heartbeat=20 election=10");
        assert_eq!(
            e,
            "t.scn:1: `cluster nodes=3 heartbeat=20 election=10`: election_ticks (10) must be greater than heartbeat_ticks (20)"
        );
    }

    #[test]
    fn bounded_waits_fail_instead_of_hanging() {
        let e = error("cluster nodes=3 seed=1\ncrash n1 n2\ntick-until leader within=2s");
        assert_eq!(
            e,
            "t.scn:3: `tick-until leader within=2s`: not reached within 2.000s (no node leads)"
        );
        // Without pre-vote an isolated node raises its term at every timeout: never stable.
        let e = error("cluster nodes=3 seed=1 pre-vote=off\nisolate n1\nstabilize within=3s");
        assert!(
            e.starts_with("t.scn:3: `stabilize within=3s`: still changing after 3.000s"),
            "{e}"
        );
    }

    /// Whatever a script says, the core does not panic: every command word with missing,
    /// odd or out-of-range arguments is either run or refused with an error.
    #[test]
    fn hostile_scripts_never_panic() {
        let args = [
            "",
            "n0",
            "n9",
            "n1",
            "n1 n1",
            "c0",
            "c1",
            "* ->",
            "n1->n1",
            "n1<->n2",
            "x=y",
            "count=99999999999999999999",
            "within=0s",
            "0",
            "18446744073709551615",
            "leader",
            "n1 changes",
            "n1 leader within=1ms",
            "n1 | n2,n3",
            "n1,n2",
            "n1 k",
            "n1 k v as=c0",
            "n1 \u{0} v",
            "role n1 x",
            "entry n1 99999999999",
            "kv n1",
            "safe",
        ];
        for word in crate::scenario::parse::COMMANDS {
            for a in args {
                let text = format!("cluster nodes=3 seed=1 latency=0ms..1ms\nhold *\n{word} {a}\nstabilize within=1s\nheld");
                let _ = run("t.scn", &text);
            }
        }
    }

    #[test]
    fn held_messages_wait_until_delivered_or_dropped() {
        let out = run(
            "t.scn",
            "cluster nodes=3 seed=1\nhold *\ntick-until n2 precandidate\ndeliver n2->n1\n\
             drop n2->n3\nexpect held 1\ndeliver n1->n2\nexpect role n2 candidate",
        )
        .unwrap();
        assert!(out.contains("n2->n1 held #1\n"), "{out}");
        assert!(out.contains("n2->n3 drop #2 (Script)\n"), "{out}");
        assert!(out.contains("n2 precandidate->candidate term=1\n"), "{out}");
    }
}
