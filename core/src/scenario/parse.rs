//! The scenario language's parser: one command per line, checked completely before anything
//! runs, so a typo on the last line costs no run. Every error names the line and what was
//! expected; docs/scenarios.md documents each command.

use crate::kv::{KvOp, ReadConsistency};
use crate::membership::{ChangeKind, ConfChange, SingleChange, Transition};
use crate::sim::simulator::{MAX_DRIFT_PER_MILLE, MAX_NODES};
use crate::sim::{AddrPattern, LinkPattern};
use crate::trace::Addr;
use crate::types::{NodeId, Role};

use super::ScenarioError;

/// Longest script accepted, in lines.
pub const MAX_LINES: usize = 10_000;
/// Longest virtual time one command may run.
pub const MAX_DURATION_US: u64 = 3_600 * 1_000_000;
/// Default bound for `tick-until` and `stabilize`.
pub const DEFAULT_WITHIN_US: u64 = 10 * 1_000_000;

/// A parsed scenario: its name (file name, for errors) and its lines in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Script {
    pub name: String,
    pub lines: Vec<Line>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// 1-based line number in the file.
    pub number: usize,
    /// The line as written, trimmed.
    pub text: String,
    pub command: Command,
}

/// The cluster a scenario runs on (`cluster ...`).
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterSpec {
    pub nodes: usize,
    pub seed: u64,
    pub pre_vote: bool,
    pub check_quorum: bool,
    pub heartbeat_ticks: u32,
    pub election_ticks: u32,
    pub tick_us: u64,
    pub latency_us: (u64, u64),
    pub fsync_us: (u64, u64),
    pub snapshot_threshold: u64,
    pub snapshot_chunk_bytes: usize,
    pub max_entries_per_msg: usize,
    pub lease_reads: bool,
    pub lease_margin_pct: u32,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        let sim = crate::sim::SimConfig::new(3, 1);
        ClusterSpec {
            nodes: 3,
            seed: 1,
            pre_vote: sim.raft.pre_vote,
            check_quorum: sim.raft.check_quorum,
            heartbeat_ticks: sim.raft.heartbeat_ticks,
            election_ticks: sim.raft.election_ticks,
            tick_us: sim.tick_us,
            latency_us: sim.network.latency_us,
            fsync_us: sim.fsync_us,
            snapshot_threshold: sim.raft.snapshot_threshold,
            snapshot_chunk_bytes: sim.raft.snapshot_chunk_bytes,
            max_entries_per_msg: sim.raft.max_entries_per_msg,
            lease_reads: sim.raft.lease_reads,
            lease_margin_pct: sim.raft.lease_drift_margin_pct,
        }
    }
}

/// What `tick-until` waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// Some live, unpaused node leads.
    AnyLeader,
    /// The node's role differs from what it was when the command started.
    RoleChanges(NodeId),
    /// The node has this role.
    Role(NodeId, Role),
}

/// A value a script can inspect with `expect`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observable {
    /// The cluster's leader (highest-term live leader), or `none`.
    Leader,
    Role(NodeId),
    Term(NodeId),
    /// The leader this node knows of, or `none`.
    LeaderOf(NodeId),
    Vote(NodeId),
    Commit(NodeId),
    Applied(NodeId),
    /// Last log entry as `index@term`.
    Last(NodeId),
    /// Snapshot as `index@term`, or `none`.
    Snapshot(NodeId),
    /// The entry at an index as `index@term what`, or `none`.
    Entry(NodeId, u64),
    /// The value stored under a key, or `absent`.
    Kv(NodeId, String),
    /// `up`, `down` or `paused`.
    State(NodeId),
    /// The client's last answer, or `pending`.
    Client(u64),
    /// Number of messages waiting on held links.
    Held,
    /// The configuration the node applied, e.g. `voters=[n1,n2,n3] learners=[n4]`.
    Membership(NodeId),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// A comment line: printed in the output, so the story reads well.
    Comment(String),
    Cluster(ClusterSpec),
    Tick(u64),
    Run(u64),
    TickUntil {
        until: Until,
        within: u64,
    },
    Stabilize {
        within: u64,
    },
    Hold(LinkPattern),
    Unhold(LinkPattern),
    Deliver {
        link: LinkPattern,
        limit: Option<usize>,
    },
    Drop {
        link: LinkPattern,
        limit: Option<usize>,
    },
    Partition(Vec<Vec<NodeId>>),
    /// Ask `from` to hand leadership to `to` (None: its most caught-up voter).
    Transfer {
        from: NodeId,
        to: Option<NodeId>,
    },
    Isolate(NodeId),
    Cut {
        from: NodeId,
        to: NodeId,
        both: bool,
    },
    Restore {
        from: NodeId,
        to: NodeId,
        both: bool,
    },
    Heal,
    Crash(Vec<NodeId>),
    Restart(Vec<NodeId>),
    Pause(Vec<NodeId>),
    Resume(Vec<NodeId>),
    Request {
        client: u64,
        node: NodeId,
        op: KvOp,
        /// The read path of a `get` (None for writes).
        consistency: Option<ReadConsistency>,
    },
    /// `drift nX PER_MILLE`: the node's clock runs that much fast (positive) or slow.
    Drift {
        node: NodeId,
        per_mille: i32,
    },
    Retry {
        client: u64,
        node: Option<NodeId>,
    },
    Status,
    Log(NodeId),
    Kv(NodeId),
    ShowHeld,
    Expect {
        what: Observable,
        expected: String,
    },
    /// Checks now that the simulator's safety checkers saw no violation and the logs match.
    ExpectSafe,
    /// `member add|promote|demote|remove|replace ...`: a membership change proposed at the
    /// current leader (a node it adds starts empty and joins).
    Member(ConfChange),
}

/// Every command word, for the "unknown command" error.
pub const COMMANDS: &[&str] = &[
    "cluster",
    "tick",
    "run",
    "tick-until",
    "stabilize",
    "hold",
    "unhold",
    "deliver",
    "drop",
    "partition",
    "isolate",
    "cut",
    "restore",
    "heal",
    "crash",
    "restart",
    "pause",
    "resume",
    "put",
    "get",
    "delete",
    "retry",
    "drift",
    "transfer",
    "status",
    "log",
    "kv",
    "held",
    "expect",
    "member",
];

/// The read path a `get` names.
fn read_path(w: &str) -> R<ReadConsistency> {
    Ok(match w {
        "linearizable" => ReadConsistency::Linearizable,
        "lease" => ReadConsistency::Lease,
        "serializable" => ReadConsistency::Serializable,
        _ => {
            return Err(format!(
                "get: unknown read path `{w}` (linearizable, lease or serializable)"
            ))
        }
    })
}

/// Parses a whole script. The first command must be `cluster`; node ids are checked against
/// its size.
pub fn parse(name: &str, text: &str) -> Result<Script, ScenarioError> {
    let mut lines = Vec::new();
    let mut nodes: Option<usize> = None;
    for (i, raw) in text.lines().enumerate() {
        let number = i + 1;
        let err = |message: String| ScenarioError::new(name, number, message);
        if number > MAX_LINES {
            return Err(err(format!("scripts are limited to {MAX_LINES} lines")));
        }
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let command = if let Some(c) = line.strip_prefix('#') {
            Command::Comment(c.trim().to_string())
        } else {
            let mut p = LineParser {
                words: line.split_whitespace().collect(),
                pos: 0,
                nodes: nodes.unwrap_or(MAX_NODES),
            };
            let c = p.command().map_err(err)?;
            if matches!(c, Command::Member(_)) && nodes.is_some() {
                nodes = Some(p.nodes);
            }
            match (&c, nodes) {
                (Command::Cluster(spec), None) => nodes = Some(spec.nodes),
                (Command::Cluster(_), Some(_)) => {
                    return Err(err("a script sets up one cluster, on its first line".into()))
                }
                (_, None) => {
                    return Err(err(format!(
                        "the first command must be `cluster` (e.g. `cluster nodes=3 seed=1`), not `{line}`"
                    )))
                }
                _ => {}
            }
            c
        };
        lines.push(Line {
            number,
            text: line.to_string(),
            command,
        });
    }
    if nodes.is_none() {
        return Err(ScenarioError::new(
            name,
            0,
            "the script has no `cluster` line".into(),
        ));
    }
    Ok(Script {
        name: name.to_string(),
        lines,
    })
}

struct LineParser<'a> {
    words: Vec<&'a str>,
    pos: usize,
    nodes: usize,
}

type R<T> = Result<T, String>;

impl<'a> LineParser<'a> {
    fn next(&mut self, what: &str) -> R<&'a str> {
        let w = self.words.get(self.pos).copied();
        self.pos += 1;
        w.ok_or_else(|| format!("`{}`: expected {what}", self.words[0]))
    }

    fn peek(&self) -> Option<&'a str> {
        self.words.get(self.pos).copied()
    }

    /// Fails if words are left over.
    fn end(&self) -> R<()> {
        match self.peek() {
            None => Ok(()),
            Some(w) => Err(format!(
                "`{}`: unexpected `{w}` (see docs/scenarios.md)",
                self.words[0]
            )),
        }
    }

    /// The remaining words as `key=value` options, each key at most once and from `allowed`.
    fn options(&mut self, allowed: &[&str]) -> R<Vec<(&'a str, &'a str)>> {
        let mut out: Vec<(&str, &str)> = Vec::new();
        while let Some(w) = self.peek() {
            let Some((k, v)) = w.split_once('=') else {
                return Err(format!(
                    "`{}`: expected an option like {}=..., saw `{w}`",
                    self.words[0],
                    allowed.first().unwrap_or(&"key")
                ));
            };
            if !allowed.contains(&k) {
                return Err(format!(
                    "`{}`: unknown option `{k}` (known: {})",
                    self.words[0],
                    allowed.join(", ")
                ));
            }
            if out.iter().any(|(x, _)| *x == k) {
                return Err(format!("`{}`: option `{k}` given twice", self.words[0]));
            }
            out.push((k, v));
            self.pos += 1;
        }
        Ok(out)
    }

    fn node(&mut self) -> R<NodeId> {
        let w = self.next("a node like n1")?;
        node_id(w, self.nodes)
    }

    fn node_list(&mut self) -> R<Vec<NodeId>> {
        let mut out = Vec::new();
        while let Some(w) = self.peek() {
            for part in w.split(',').filter(|p| !p.is_empty()) {
                out.push(node_id(part, self.nodes)?);
            }
            self.pos += 1;
        }
        if out.is_empty() {
            return Err(format!("`{}`: expected one or more nodes", self.words[0]));
        }
        Ok(out)
    }

    fn within(&mut self) -> R<u64> {
        let mut within = DEFAULT_WITHIN_US;
        for (_, v) in self.options(&["within"])? {
            within = duration(v)?;
        }
        Ok(within)
    }

    fn link_and_count(&mut self) -> R<(LinkPattern, Option<usize>)> {
        let mut link = LinkPattern::ALL;
        if let Some(w) = self.peek().filter(|w| w.contains("->")) {
            link = link_pattern(w, self.nodes)?;
            self.pos += 1;
        }
        let mut limit = None;
        for (_, v) in self.options(&["count"])? {
            limit = Some(number::<usize>(v, "count")?);
        }
        Ok((link, limit))
    }

    fn command(&mut self) -> R<Command> {
        let word = self.next("a command")?;
        let c = match word {
            "cluster" => Command::Cluster(self.cluster()?),
            "tick" => {
                let n = match self.peek() {
                    Some(w) => {
                        self.pos += 1;
                        number::<u64>(w, "tick count")?
                    }
                    None => 1,
                };
                Command::Tick(n)
            }
            "run" => Command::Run(duration(self.next("a duration like 500ms")?)?),
            "tick-until" => {
                let until = self.until()?;
                let within = self.within()?;
                Command::TickUntil { until, within }
            }
            "stabilize" => Command::Stabilize {
                within: self.within()?,
            },
            "hold" | "unhold" => {
                let w = self.next("a link like n1->n2, n1->*, or *")?;
                let link = link_pattern(w, self.nodes)?;
                if word == "hold" {
                    Command::Hold(link)
                } else {
                    Command::Unhold(link)
                }
            }
            "deliver" => {
                let (link, limit) = self.link_and_count()?;
                Command::Deliver { link, limit }
            }
            "drop" => {
                let (link, limit) = self.link_and_count()?;
                Command::Drop { link, limit }
            }
            "partition" => self.partition()?,
            "isolate" => Command::Isolate(self.node()?),
            "cut" | "restore" => {
                let w = self.next("a link like n1->n2 or n1<->n2")?;
                let (from, to, both) = node_link(w, self.nodes)?;
                if word == "cut" {
                    Command::Cut { from, to, both }
                } else {
                    Command::Restore { from, to, both }
                }
            }
            "heal" => Command::Heal,
            "crash" => Command::Crash(self.node_list()?),
            "restart" => Command::Restart(self.node_list()?),
            "pause" => Command::Pause(self.node_list()?),
            "resume" => Command::Resume(self.node_list()?),
            "put" | "get" | "delete" => self.request(word)?,
            "retry" => {
                let client = client_id(self.next("a client like c1")?)?;
                let node = match self.peek() {
                    Some(_) => Some(self.node()?),
                    None => None,
                };
                Command::Retry { client, node }
            }
            "drift" => {
                let node = self.node()?;
                let v = self.next("a clock drift in per mille, like 50 or -50")?;
                let per_mille: i32 = number(v, "drift (per mille)")?;
                if per_mille.unsigned_abs() > MAX_DRIFT_PER_MILLE.unsigned_abs() {
                    return Err(format!(
                        "drift: expected -{MAX_DRIFT_PER_MILLE} to {MAX_DRIFT_PER_MILLE} per mille, saw {v}"
                    ));
                }
                Command::Drift { node, per_mille }
            }
            "transfer" => {
                let from = self.node()?;
                let to = match self.peek() {
                    Some("to") => {
                        self.next("to")?;
                        Some(self.node()?)
                    }
                    Some(w) => {
                        return Err(format!("transfer: expected `to nY` or nothing, saw `{w}`"))
                    }
                    None => None,
                };
                Command::Transfer { from, to }
            }
            "status" => Command::Status,
            "log" => Command::Log(self.node()?),
            "kv" => Command::Kv(self.node()?),
            "held" => Command::ShowHeld,
            "expect" => self.expect()?,
            "member" => Command::Member(self.member()?),
            other => {
                return Err(format!(
                    "unknown command `{other}` (known: {})",
                    COMMANDS.join(", ")
                ))
            }
        };
        self.end()?;
        Ok(c)
    }

    fn cluster(&mut self) -> R<ClusterSpec> {
        let mut c = ClusterSpec::default();
        let allowed = [
            "nodes",
            "seed",
            "pre-vote",
            "check-quorum",
            "heartbeat",
            "election",
            "tick",
            "latency",
            "fsync",
            "snapshot-every",
            "snapshot-chunk",
            "max-entries",
            "lease-reads",
            "lease-margin",
        ];
        for (k, v) in self.options(&allowed)? {
            match k {
                "nodes" => {
                    c.nodes = number(v, "nodes")?;
                    if !(1..=MAX_NODES).contains(&c.nodes) {
                        return Err(format!("nodes: expected 1 to {MAX_NODES}, saw {v}"));
                    }
                }
                "seed" => c.seed = number(v, "seed")?,
                "pre-vote" => c.pre_vote = on_off(v, k)?,
                "check-quorum" => c.check_quorum = on_off(v, k)?,
                "heartbeat" => c.heartbeat_ticks = number(v, "heartbeat (ticks)")?,
                "election" => c.election_ticks = number(v, "election (ticks)")?,
                "tick" => c.tick_us = duration(v)?,
                "latency" => c.latency_us = duration_range(v)?,
                "fsync" => c.fsync_us = duration_range(v)?,
                "snapshot-every" => c.snapshot_threshold = number(v, "snapshot-every")?,
                "snapshot-chunk" => c.snapshot_chunk_bytes = number(v, "snapshot-chunk")?,
                "max-entries" => c.max_entries_per_msg = number(v, "max-entries")?,
                "lease-reads" => c.lease_reads = on_off(v, k)?,
                "lease-margin" => {
                    c.lease_margin_pct = number(v, "lease-margin (percent)")?;
                    if !(1..100).contains(&c.lease_margin_pct) {
                        return Err(format!("lease-margin: expected 1 to 99 (percent), saw {v}"));
                    }
                }
                _ => unreachable!("options() only returns allowed keys"),
            }
        }
        if c.tick_us == 0 {
            return Err("tick: expected a duration above zero".into());
        }
        Ok(c)
    }

    fn until(&mut self) -> R<Until> {
        let w = self.next("`leader` or a node like n2")?;
        if w == "leader" {
            return Ok(Until::AnyLeader);
        }
        let n = node_id(w, self.nodes)?;
        let what = self.next("`changes` or a role (follower, precandidate, candidate, leader)")?;
        Ok(match what {
            "changes" => Until::RoleChanges(n),
            r => Until::Role(n, role(r)?),
        })
    }

    fn partition(&mut self) -> R<Command> {
        let rest: Vec<&str> = self.words[self.pos..].to_vec();
        self.pos = self.words.len();
        let joined = rest.join(" ");
        let mut groups = Vec::new();
        for g in joined.split('|') {
            let mut group = Vec::new();
            for part in g.split([',', ' ']).filter(|p| !p.is_empty()) {
                group.push(node_id(part, self.nodes)?);
            }
            if group.is_empty() {
                return Err("partition: empty group (write e.g. `partition n1,n2 | n3`)".into());
            }
            groups.push(group);
        }
        if groups.len() < 2 {
            return Err("partition: expected two or more groups separated by `|`".into());
        }
        let mut seen: Vec<NodeId> = groups.iter().flatten().copied().collect();
        seen.sort_unstable();
        let all: Vec<NodeId> = (1..=self.nodes as u64).collect();
        if seen != all {
            return Err(format!(
                "partition: every node must be in exactly one group (nodes are n1..n{})",
                self.nodes
            ));
        }
        Ok(Command::Partition(groups))
    }

    fn request(&mut self, word: &str) -> R<Command> {
        let node = self.node()?;
        let key = self.next("a key")?.as_bytes().to_vec();
        let op = match word {
            "put" => KvOp::Put {
                key,
                value: self.next("a value")?.as_bytes().to_vec(),
            },
            "get" => KvOp::Get { key },
            _ => KvOp::Delete { key },
        };
        let consistency = match op {
            KvOp::Get { .. } => Some(match self.peek() {
                Some(w) if !w.contains('=') => {
                    self.pos += 1;
                    read_path(w)?
                }
                _ => ReadConsistency::Linearizable,
            }),
            _ => None,
        };
        op.validate().map_err(|e| format!("{word}: {e}"))?;
        let mut client = 1;
        for (_, v) in self.options(&["as"])? {
            client = client_id(v)?;
        }
        Ok(Command::Request {
            client,
            node,
            op,
            consistency,
        })
    }

    /// `member add nX learner|promoted|voter`, `member promote nX`, `member demote nX`,
    /// `member remove nX`, `member replace nX nY` (nY, a learner, takes nX's place through
    /// joint consensus). An added node may have an id above the cluster's size (up to the
    /// simulator's limit); later lines may name it.
    fn member(&mut self) -> R<ConfChange> {
        let op = self.next("add, promote, demote, remove or replace")?;
        let one = |kind, node| Ok(ConfChange::single(kind, node));
        match op {
            "add" => {
                let node = node_id(self.next("a node like n4")?, MAX_NODES)?;
                self.nodes = self.nodes.max(node as usize);
                let kind = match self.next("learner, promoted or voter")? {
                    "learner" => ChangeKind::AddLearner,
                    "promoted" => ChangeKind::AddLearnerThenVoter,
                    "voter" => ChangeKind::AddVoter,
                    w => {
                        return Err(format!(
                            "member add: expected learner, promoted or voter, saw `{w}`"
                        ));
                    }
                };
                one(kind, node)
            }
            "promote" => one(ChangeKind::AddVoter, self.node()?),
            "demote" => one(ChangeKind::AddLearner, self.node()?),
            "remove" => one(ChangeKind::Remove, self.node()?),
            "replace" => {
                let out = self.node()?;
                let into = self.node()?;
                let change = |kind, node| SingleChange {
                    kind,
                    node,
                    address: None,
                };
                Ok(ConfChange {
                    changes: vec![
                        change(ChangeKind::AddVoter, into),
                        change(ChangeKind::Remove, out),
                    ],
                    transition: Transition::JointImplicit,
                })
            }
            w => Err(format!(
                "member: unknown change `{w}` (add, promote, demote, remove or replace)"
            )),
        }
    }

    fn expect(&mut self) -> R<Command> {
        let what = self.next("what to check, e.g. `role n1 leader`")?;
        let what = match what {
            "safe" => return Ok(Command::ExpectSafe),
            "leader" => Observable::Leader,
            "held" => Observable::Held,
            "client" => Observable::Client(client_id(self.next("a client like c1")?)?),
            "role" => Observable::Role(self.node()?),
            "term" => Observable::Term(self.node()?),
            "leader-of" => Observable::LeaderOf(self.node()?),
            "vote" => Observable::Vote(self.node()?),
            "commit" => Observable::Commit(self.node()?),
            "applied" => Observable::Applied(self.node()?),
            "last" => Observable::Last(self.node()?),
            "snapshot" => Observable::Snapshot(self.node()?),
            "state" => Observable::State(self.node()?),
            "membership" => Observable::Membership(self.node()?),
            "entry" => {
                let n = self.node()?;
                Observable::Entry(n, number(self.next("an index")?, "index")?)
            }
            "kv" => {
                let n = self.node()?;
                Observable::Kv(n, self.next("a key")?.to_string())
            }
            other => {
                return Err(format!(
                "expect: unknown check `{other}` (known: safe, leader, held, client, role, term, \
                     leader-of, vote, commit, applied, last, snapshot, state, entry, kv, membership)"
            ))
            }
        };
        let rest = &self.words[self.pos..];
        if rest.is_empty() {
            return Err("expect: expected the value to compare with at the end".into());
        }
        self.pos = self.words.len();
        Ok(Command::Expect {
            what,
            expected: rest.join(" "),
        })
    }
}

fn number<T: std::str::FromStr>(w: &str, what: &str) -> R<T> {
    w.parse()
        .map_err(|_| format!("{what}: expected a whole number, saw `{w}`"))
}

fn on_off(w: &str, what: &str) -> R<bool> {
    match w {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("{what}: expected on or off, saw `{w}`")),
    }
}

fn node_id(w: &str, nodes: usize) -> R<NodeId> {
    let n: Option<NodeId> = w.strip_prefix('n').and_then(|d| d.parse().ok());
    match n {
        Some(n) if (1..=nodes as u64).contains(&n) => Ok(n),
        _ => Err(format!("expected a node n1..n{nodes}, saw `{w}`")),
    }
}

fn client_id(w: &str) -> R<u64> {
    match w.strip_prefix('c').and_then(|d| d.parse::<u64>().ok()) {
        Some(c) if (1..=1_000_000).contains(&c) => Ok(c),
        _ => Err(format!("expected a client like c1, saw `{w}`")),
    }
}

fn role(w: &str) -> R<Role> {
    match w {
        "follower" => Ok(Role::Follower),
        "precandidate" => Ok(Role::PreCandidate),
        "candidate" => Ok(Role::Candidate),
        "leader" => Ok(Role::Leader),
        _ => Err(format!(
            "expected a role (follower, precandidate, candidate, leader), saw `{w}`"
        )),
    }
}

/// `250us`, `30ms`, `2s`.
pub fn duration(w: &str) -> R<u64> {
    let (digits, scale) = if let Some(d) = w.strip_suffix("us") {
        (d, 1)
    } else if let Some(d) = w.strip_suffix("ms") {
        (d, 1_000)
    } else if let Some(d) = w.strip_suffix('s') {
        (d, 1_000_000)
    } else {
        return Err(format!(
            "expected a duration like 500ms, 2s or 300us, saw `{w}`"
        ));
    };
    let n: u64 = number(digits, "duration")?;
    match n.checked_mul(scale) {
        Some(us) if us <= MAX_DURATION_US => Ok(us),
        _ => Err(format!("duration `{w}` is over the limit of one hour")),
    }
}

/// `1ms..5ms` or a single duration.
fn duration_range(w: &str) -> R<(u64, u64)> {
    let (lo, hi) = match w.split_once("..") {
        Some((a, b)) => (duration(a)?, duration(b)?),
        None => (duration(w)?, duration(w)?),
    };
    if lo > hi {
        return Err(format!("range `{w}`: the low end is above the high end"));
    }
    Ok((lo, hi))
}

fn addr_pattern(w: &str, nodes: usize) -> R<AddrPattern> {
    if w == "*" {
        return Ok(AddrPattern::Any);
    }
    if w.starts_with('c') {
        return Ok(AddrPattern::Is(Addr::Client(client_id(w)?)));
    }
    Ok(AddrPattern::Is(Addr::Node(node_id(w, nodes)?)))
}

/// `n1->n2`, `n1->*`, `*->n2`, `n1->c1`, `*` (every link).
fn link_pattern(w: &str, nodes: usize) -> R<LinkPattern> {
    if w == "*" || w == "all" {
        return Ok(LinkPattern::ALL);
    }
    let Some((a, b)) = w.split_once("->") else {
        return Err(format!(
            "expected a link like n1->n2, n1->*, *->n2 or *, saw `{w}`"
        ));
    };
    Ok(LinkPattern {
        from: addr_pattern(a, nodes)?,
        to: addr_pattern(b, nodes)?,
    })
}

/// `n1->n2` (one way) or `n1<->n2` (both ways).
fn node_link(w: &str, nodes: usize) -> R<(NodeId, NodeId, bool)> {
    let (a, b, both) = if let Some((a, b)) = w.split_once("<->") {
        (a, b, true)
    } else if let Some((a, b)) = w.split_once("->") {
        (a, b, false)
    } else {
        return Err(format!("expected a link like n1->n2 or n1<->n2, saw `{w}`"));
    };
    let (a, b) = (node_id(a, nodes)?, node_id(b, nodes)?);
    if a == b {
        return Err(format!("`{w}`: a link joins two different nodes"));
    }
    Ok((a, b, both))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse("t.scn", text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_line_and_what_was_expected() {
        assert_eq!(
            err("cluster nodes=3\ntick\nfrobnicate n1"),
            format!(
                "t.scn:3: unknown command `frobnicate` (known: {})",
                COMMANDS.join(", ")
            )
        );
        assert_eq!(
            err("cluster nodes=3\ncrash n4"),
            "t.scn:2: expected a node n1..n3, saw `n4`"
        );
        assert_eq!(
            err("tick"),
            "t.scn:1: the first command must be `cluster` (e.g. `cluster nodes=3 seed=1`), not `tick`"
        );
        assert_eq!(
            err("cluster nodes=9"),
            "t.scn:1: nodes: expected 1 to 7, saw 9"
        );
        assert_eq!(
            err("cluster\nrun 5 ms"),
            "t.scn:2: expected a duration like 500ms, 2s or 300us, saw `5`"
        );
        assert_eq!(
            err("cluster\npartition n1 | n2"),
            "t.scn:2: partition: every node must be in exactly one group (nodes are n1..n3)"
        );
        assert_eq!(
            err("cluster\nrun 2h"),
            "t.scn:2: expected a duration like 500ms, 2s or 300us, saw `2h`"
        );
        assert_eq!(
            err("cluster\nrun 3601s"),
            "t.scn:2: duration `3601s` is over the limit of one hour"
        );
        assert_eq!(
            err("# nothing"),
            "t.scn:0: the script has no `cluster` line"
        );
    }

    #[test]
    fn parses_links_requests_and_expectations() {
        let s = parse(
            "t.scn",
            "cluster nodes=5 seed=7 pre-vote=off\nhold n1->*\ndeliver *->n3 count=2\n\
             put n2 k v as=c4\nexpect kv n1 k v\npartition n1,n2 | n3 n4 n5",
        )
        .unwrap();
        let cmds: Vec<&Command> = s.lines.iter().map(|l| &l.command).collect();
        assert!(
            matches!(cmds[0], Command::Cluster(c) if c.nodes == 5 && c.seed == 7 && !c.pre_vote)
        );
        assert_eq!(
            cmds[1],
            &Command::Hold(LinkPattern {
                from: AddrPattern::Is(Addr::Node(1)),
                to: AddrPattern::Any
            })
        );
        assert_eq!(
            cmds[2],
            &Command::Deliver {
                link: LinkPattern {
                    from: AddrPattern::Any,
                    to: AddrPattern::Is(Addr::Node(3))
                },
                limit: Some(2)
            }
        );
        assert!(matches!(
            cmds[3],
            Command::Request {
                client: 4,
                node: 2,
                ..
            }
        ));
        assert_eq!(
            cmds[4],
            &Command::Expect {
                what: Observable::Kv(1, "k".into()),
                expected: "v".into()
            }
        );
        assert_eq!(
            cmds[5],
            &Command::Partition(vec![vec![1, 2], vec![3, 4, 5]])
        );
    }

    #[test]
    fn parses_read_paths_lease_knobs_and_drift() {
        let s = parse(
            "t.scn",
            "cluster lease-reads=on lease-margin=20\nget n1 k\nget n2 k lease as=c3\n\
             get n3 k serializable\nput n1 k v\ndrift n2 -50",
        )
        .unwrap();
        let cmds: Vec<&Command> = s.lines.iter().map(|l| &l.command).collect();
        assert!(
            matches!(cmds[0], Command::Cluster(c) if c.lease_reads && c.lease_margin_pct == 20)
        );
        let path = |c: &Command| match c {
            Command::Request { consistency, .. } => *consistency,
            other => panic!("not a request: {other:?}"),
        };
        assert_eq!(path(cmds[1]), Some(ReadConsistency::Linearizable));
        assert_eq!(path(cmds[2]), Some(ReadConsistency::Lease));
        assert!(matches!(
            cmds[2],
            Command::Request {
                client: 3,
                node: 2,
                ..
            }
        ));
        assert_eq!(path(cmds[3]), Some(ReadConsistency::Serializable));
        assert_eq!(path(cmds[4]), None);
        assert_eq!(
            cmds[5],
            &Command::Drift {
                node: 2,
                per_mille: -50
            }
        );
        assert_eq!(
            err("cluster\nget n1 k stale"),
            "t.scn:2: get: unknown read path `stale` (linearizable, lease or serializable)"
        );
        assert_eq!(
            err("cluster\ndrift n1 900"),
            "t.scn:2: drift: expected -500 to 500 per mille, saw 900"
        );
        assert_eq!(
            err("cluster lease-margin=100"),
            "t.scn:1: lease-margin: expected 1 to 99 (percent), saw 100"
        );
    }
}
