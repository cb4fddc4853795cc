//! The UI state and its reducer. Platform-neutral (no Yew, no DOM): the app wraps it in
//! `use_reducer_eq`, and unit tests drive it directly, natively and under wasm-bindgen-test.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use std::collections::BTreeSet;

use keyval_core::mutation::Mutation;
use keyval_core::sim::{FaultAction, NetworkConfig, SimConfig, TraceKind};
use keyval_core::{KvOp, LiveFrame, NodeId, NodeStatus, ReadConsistency};

use crate::course::CHAPTERS;
use crate::engine::{Engine, TraceFile, UserAction};
use crate::scenarios::SCENARIOS;

/// Milliseconds from a monotonic clock (performance.now() in the browser).
pub fn now_ms() -> f64 {
    #[cfg(target_arch = "wasm32")]
    {
        web_sys::window()
            .and_then(|w| w.performance())
            .map_or(0.0, |p| p.now())
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::sync::OnceLock;
        use std::time::Instant;
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1000.0
    }
}

/// The tool shown under the narration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    Course,
    Client,
    Faults,
    History,
    Break,
    Scenarios,
    Members,
}

/// Where the learner is in the course.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Course {
    pub chapter: usize,
    /// The learner's guess, before running.
    pub choice: Option<usize>,
    /// Playing the chapter to find out.
    pub running: bool,
    /// The run's answer, once it has given one.
    pub verdict: Option<usize>,
    /// Chapters answered (kept in the URL).
    pub done: BTreeSet<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Sim,
    Live,
}

/// Speed slider position (0..=100) to a multiple of real time: 0 is 0.01×, 50 is 1× (real
/// time), 100 is 100× (10^(s/25 − 2)).
pub fn speed_factor(slider: f64) -> f64 {
    10f64.powf(slider / 25.0 - 2.0)
}

pub const DEFAULT_SPEED: f64 = 10.0;
/// Trace events after which playing stops: the simulator keeps every event in memory (a few
/// hundred MB at this size; about an hour of virtual time with 7 nodes).
pub const TRACE_LIMIT: usize = 2_000_000;
/// Time a frame may spend stepping the simulator before the page would stutter.
pub const FRAME_BUDGET_MS: f64 = 10.0;

#[derive(Clone, Debug, PartialEq)]
pub struct LiveNode {
    pub addr: String,
    pub connected: bool,
    pub status: Option<NodeStatus>,
    /// now_ms() of the last frame of any kind (status or event).
    pub last_frame_ms: f64,
    pub last_status_ms: f64,
    pub events: u64,
    pub lagged: u64,
}

impl LiveNode {
    /// Dead when the socket is closed or nothing arrived for more than a second.
    pub fn is_dead(&self, now: f64) -> bool {
        !self.connected || now - self.last_frame_ms > 1000.0
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct LiveState {
    pub nodes: Vec<LiveNode>,
    /// Latest events from every node, newest last: (node index, wall ms, event).
    pub events: VecDeque<(usize, u64, TraceKind)>,
    pub last_render_ms: f64,
}

pub const LIVE_EVENTS_KEPT: usize = 200;

impl LiveState {
    pub fn new(addrs: &[String]) -> Self {
        LiveState {
            nodes: addrs
                .iter()
                .map(|a| LiveNode {
                    addr: a.clone(),
                    connected: false,
                    status: None,
                    last_frame_ms: f64::NEG_INFINITY,
                    last_status_ms: f64::NEG_INFINITY,
                    events: 0,
                    lagged: 0,
                })
                .collect(),
            ..Default::default()
        }
    }

    /// The leader most live nodes agree on, preferring the highest term.
    pub fn leader(&self, now: f64) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter(|n| !n.is_dead(now))
            .filter_map(|n| n.status.as_ref())
            .filter(|s| s.role == keyval_core::Role::Leader)
            .max_by_key(|s| s.term)
            .map(|s| s.id)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum LiveMsg {
    Open(usize),
    Closed(usize),
    Frame(usize, Vec<u8>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Msg {
    /// An animation frame at this `now_ms()`.
    Frame(f64),
    TogglePlay,
    Pause,
    /// Advance to the next simulator event that records something.
    Step,
    /// Back to the previous visible event (replayed from the seed).
    StepBack,
    SetSpeed(f64),
    /// Jump to this simulator step (replaying from the seed when it is in the past).
    Seek(u64),
    NewRun {
        nodes: usize,
        seed: u64,
    },
    /// New run with the nodes and seed in the form.
    NewRunFromForm,
    /// Submit the operation in the client form.
    SubmitForm,
    Act(UserAction),
    /// Ask the leader for a membership change; a refusal shows as one line.
    Member(crate::member_action::MemberAction),
    Submit(KvOp),
    Select(Option<NodeId>),
    /// Inspect a message (pauses, so its fields can be read).
    InspectMsg(Option<u64>),
    /// Cut the link both ways, or restore it when either direction is cut.
    ToggleLink(NodeId, NodeId),
    /// Partition group (0, 1, 2) picked for a node.
    SetGroup(NodeId, u8),
    ApplyPartition,
    SetDropRate(f64),
    /// One-way latency range in milliseconds.
    SetLatency(u64, u64),
    ToggleHeartbeats,
    ToggleDeliveries,
    Import(String),
    Export,
    Scenario(usize),
    Bench,
    SetMode(Mode),
    Live(LiveMsg),
    DismissNotice,
    /// A form field edited by the user (kept in state so re-renders never undo typing).
    Field(Field, String),
    Tab(Tab),
    /// Open a course chapter: its situation, paused at the start.
    Chapter(usize),
    /// The learner's guess for the chapter's question.
    Choose(usize),
    /// Play the chapter until the run answers its question.
    RunChapter,
    /// Re-run the current scenario (Figure 8 if none) with a deliberate bug, or without.
    Break(Option<Mutation>),
    /// Restart the run (same nodes and seed) with lease reads on or off and this drift margin
    /// in percent of the election timeout.
    SetReads {
        lease: bool,
        margin_pct: u32,
    },
    /// A node picked up at this point of the drawing (SVG units).
    DragStart(NodeId, f64, f64),
    DragMove(f64, f64),
    /// The dragged node let go here: across the partition line it moves to the other side.
    DragEnd(f64, f64),
    DragCancel,
    /// Move a node across the partition line (the keyboard's way to drag it).
    MoveAcross(NodeId),
}

/// A node being dragged in the drawing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Drag {
    pub node: NodeId,
    /// Where it was picked up (SVG units).
    pub from: (f64, f64),
    /// Where the pointer is now (SVG units).
    pub at: (f64, f64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    ClientOp,
    ClientKey,
    ClientValue,
    Seed,
    Nodes,
    /// Read path of a get: linearizable, lease or serializable.
    Consistency,
    /// Node the request goes to: "leader" or "n1".."n7".
    Target,
}

/// What the form fields hold.
#[derive(Clone, Debug, PartialEq)]
pub struct Form {
    pub op: String,
    pub key: String,
    pub value: String,
    pub seed: String,
    pub nodes: String,
    pub consistency: String,
    pub target: String,
}

#[derive(Clone)]
pub struct Ui {
    pub engine: Rc<RefCell<Engine>>,
    /// Bumped on every change that should re-render.
    pub version: u64,
    pub playing: bool,
    pub speed: f64,
    /// Virtual time the picture shows (µs); runs ahead of the last event while playing.
    pub display_time: u64,
    pub last_frame_ms: Option<f64>,
    /// True when the last frames could not keep up with the chosen speed.
    pub saturated: bool,
    pub selected: Option<NodeId>,
    /// The message being inspected, as it was when clicked.
    pub inspected: Option<crate::engine::Flight>,
    pub show_heartbeats: bool,
    pub show_deliveries: bool,
    pub notice: Option<String>,
    /// Simulator events per second measured while playing (rolling).
    pub eps: f64,
    perf_events: u64,
    perf_ms: f64,
    perf_window: Option<f64>,
    pub bench: Option<f64>,
    pub groups: Vec<u8>,
    pub drop_rate: f64,
    pub latency_ms: (u64, u64),
    pub scenario: Option<usize>,
    pub mode: Mode,
    /// Shared, not cloned: frames that do not re-render must still be kept.
    pub live: Rc<RefCell<LiveState>>,
    /// A JSON trace prepared for download (the app saves it as a file).
    pub export: Option<Rc<String>>,
    pub fps: f64,
    pub form: Form,
    pub tab: Tab,
    pub course: Course,
    /// The deliberate bug this run has switched on.
    pub mutation: Option<Mutation>,
    pub drag: Option<Drag>,
}

impl PartialEq for Ui {
    fn eq(&self, other: &Self) -> bool {
        self.version == other.version && Rc::ptr_eq(&self.engine, &other.engine)
    }
}

impl Ui {
    pub fn new(nodes: usize, seed: u64, mode: Mode, live_addrs: &[String]) -> Self {
        let cfg = SimConfig::new(nodes.clamp(1, 7), seed);
        Ui {
            engine: Rc::new(RefCell::new(Engine::new(cfg))),
            version: 0,
            playing: mode == Mode::Sim,
            speed: DEFAULT_SPEED,
            display_time: 0,
            last_frame_ms: None,
            saturated: false,
            selected: None,
            inspected: None,
            show_heartbeats: false,
            show_deliveries: false,
            notice: None,
            eps: 0.0,
            perf_events: 0,
            perf_ms: 0.0,
            perf_window: None,
            bench: None,
            groups: vec![0; nodes.clamp(1, 7)],
            drop_rate: 0.0,
            latency_ms: (1, 5),
            scenario: None,
            mode,
            live: Rc::new(RefCell::new(LiveState::new(live_addrs))),
            export: None,
            fps: 0.0,
            tab: Tab::Client,
            course: Course::default(),
            mutation: None,
            drag: None,
            form: Form {
                op: "put".into(),
                key: "x".into(),
                value: "1".into(),
                seed: seed.to_string(),
                nodes: nodes.clamp(1, 7).to_string(),
                consistency: "linearizable".into(),
                target: "leader".into(),
            },
        }
    }

    pub fn nodes(&self) -> usize {
        self.engine.borrow().cfg.nodes
    }

    pub fn seed(&self) -> u64 {
        self.engine.borrow().cfg.seed
    }

    /// Applies one message. Returns the same state (no re-render) when nothing changed.
    pub fn apply(self: Rc<Self>, msg: Msg) -> Rc<Self> {
        let mut s = (*self).clone();
        s.export = None;
        let changed = s.update(msg);
        if changed {
            s.version += 1;
            Rc::new(s)
        } else {
            self
        }
    }

    fn update(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Frame(now) => return self.frame(now),
            // Pausing keeps the picture where it is: messages stay where they were drawn and the
            // clock does not jump back to the last event's time.
            Msg::TogglePlay => {
                self.playing = !self.playing;
                self.last_frame_ms = None;
                self.catch_up_display();
            }
            Msg::Pause => {
                self.playing = false;
                self.catch_up_display();
            }
            Msg::Step => {
                self.playing = false;
                self.engine.borrow_mut().step_visible();
                self.catch_up_display();
            }
            Msg::StepBack => {
                self.playing = false;
                self.engine.borrow_mut().step_back();
                self.sync_display();
            }
            Msg::SetSpeed(v) => self.speed = v.clamp(0.0, 100.0),
            Msg::Seek(step) => {
                self.engine.borrow_mut().seek(step);
                self.sync_display();
            }
            Msg::NewRun { nodes, seed } => {
                let nodes = nodes.clamp(1, 7);
                let mut form = self.form.clone();
                form.seed = seed.to_string();
                form.nodes = nodes.to_string();
                *self = Ui {
                    speed: self.speed,
                    show_heartbeats: self.show_heartbeats,
                    version: self.version,
                    form,
                    ..Ui::new(nodes, seed, Mode::Sim, &[])
                };
            }
            Msg::NewRunFromForm => {
                let nodes = self.form.nodes.parse().unwrap_or(5);
                let seed = self.form.seed.trim().parse().unwrap_or(1);
                return self.update(Msg::NewRun { nodes, seed });
            }
            Msg::SubmitForm => {
                let key = self.form.key.clone().into_bytes();
                let value = self.form.value.clone().into_bytes();
                let op = match self.form.op.as_str() {
                    "get" => KvOp::Get { key },
                    "delete" => KvOp::Delete { key },
                    _ => KvOp::Put { key, value },
                };
                let node = self
                    .form
                    .target
                    .strip_prefix('n')
                    .and_then(|n| n.parse::<NodeId>().ok())
                    .filter(|n| (1..=self.nodes() as u64).contains(n));
                let is_get = matches!(op, KvOp::Get { .. });
                if !is_get && node.is_none() {
                    return self.update(Msg::Submit(op));
                }
                let consistency = is_get.then_some(match self.form.consistency.as_str() {
                    "lease" => ReadConsistency::Lease,
                    "serializable" => ReadConsistency::Serializable,
                    _ => ReadConsistency::Linearizable,
                });
                if self.engine.borrow().client_busy() {
                    self.notice = Some("The previous request is still pending.".into());
                } else {
                    self.act(UserAction::SubmitTo {
                        op,
                        consistency,
                        node,
                    });
                }
            }
            Msg::Act(a) => {
                if let UserAction::Fault(FaultAction::DropMessage(id)) = a {
                    if self.inspected.as_ref().is_some_and(|f| f.id == id) {
                        self.inspected = None;
                    }
                }
                self.act(a)
            }
            Msg::Member(m) => {
                self.act(UserAction::Member(m));
                let answer = self.engine.borrow().member_answer.clone();
                if let Some(Err(line)) = answer {
                    self.notice = Some(line);
                }
            }
            Msg::Submit(op) => {
                if self.engine.borrow().client_busy() {
                    self.notice = Some("The previous request is still pending.".into());
                } else {
                    self.act(UserAction::Submit(op));
                }
            }
            Msg::InspectMsg(id) => {
                self.inspected = id.and_then(|id| self.engine.borrow().inflight.get(&id).cloned());
                if self.inspected.is_some() {
                    self.playing = false;
                }
            }
            Msg::Select(n) => self.selected = if self.selected == n { None } else { n },
            Msg::ToggleLink(a, b) => {
                let cut = {
                    let e = self.engine.borrow();
                    e.sim.network().is_cut(a, b) || e.sim.network().is_cut(b, a)
                };
                if cut {
                    self.act(UserAction::Fault(FaultAction::RestoreLink(a, b)));
                    self.act(UserAction::Fault(FaultAction::RestoreLink(b, a)));
                } else {
                    self.act(UserAction::Fault(FaultAction::CutLink(a, b)));
                    self.act(UserAction::Fault(FaultAction::CutLink(b, a)));
                }
            }
            Msg::SetGroup(n, g) => {
                if let Some(x) = self.groups.get_mut(n as usize - 1) {
                    *x = g.min(2);
                }
            }
            Msg::ApplyPartition => {
                let mut groups: Vec<Vec<NodeId>> = vec![Vec::new(); 3];
                for (i, g) in self.groups.iter().enumerate() {
                    groups[*g as usize].push(i as u64 + 1);
                }
                groups.retain(|g| !g.is_empty());
                if groups.len() < 2 {
                    self.act(UserAction::Fault(FaultAction::Heal));
                } else {
                    self.act(UserAction::Fault(FaultAction::Partition(groups)));
                }
            }
            Msg::SetDropRate(r) => {
                self.latency_ms = self.live_latency_ms();
                self.drop_rate = r.clamp(0.0, 1.0);
                self.act(UserAction::Fault(FaultAction::SetNetwork(self.net())));
            }
            Msg::SetLatency(lo, hi) => {
                self.drop_rate = self.engine.borrow().sim.network().config.drop_rate;
                self.latency_ms = (lo.max(1), hi.max(lo.max(1)));
                self.act(UserAction::Fault(FaultAction::SetNetwork(self.net())));
            }
            Msg::ToggleHeartbeats => self.show_heartbeats = !self.show_heartbeats,
            Msg::ToggleDeliveries => self.show_deliveries = !self.show_deliveries,
            Msg::Export => {
                let json = TraceFile::of(&self.engine.borrow()).to_json();
                self.export = Some(Rc::new(json));
            }
            Msg::Import(text) => match TraceFile::from_json(&text).and_then(|t| {
                let e = t.replay()?;
                Ok((t, e))
            }) {
                Ok((t, e)) => {
                    let nodes = t.config.nodes;
                    let prev =
                        std::mem::replace(self, Ui::new(nodes, t.config.seed, Mode::Sim, &[]));
                    self.engine = Rc::new(RefCell::new(e));
                    self.playing = false;
                    self.speed = prev.speed;
                    self.version = prev.version;
                    self.notice = Some(format!(
                        "Imported and replayed {} steps: all {} events match the file.",
                        t.steps,
                        t.trace.len()
                    ));
                    self.sync_display();
                }
                Err(e) => self.notice = Some(format!("Import failed: {e}")),
            },
            Msg::Scenario(i) => {
                let Some(sc) = SCENARIOS.get(i) else {
                    return false;
                };
                let version = self.version;
                let speed = self.speed;
                let (course, tab) = (self.course.clone(), self.tab);
                let mutation = self.mutation;
                let engine = sc.engine_with(&|c| set_mutation(c, mutation));
                *self = Ui::new(sc.nodes, engine.cfg.seed, Mode::Sim, &[]);
                self.engine = Rc::new(RefCell::new(engine));
                self.version = version;
                self.speed = sc.speed.unwrap_or(speed);
                self.scenario = Some(i);
                self.course = course;
                self.tab = tab;
                self.mutation = mutation;
            }
            Msg::Tab(tab) => self.tab = tab,
            Msg::Chapter(c) => {
                let Some(ch) = CHAPTERS.get(c) else {
                    return false;
                };
                let Some(sc) = ch.scenario_index() else {
                    return false;
                };
                self.course.chapter = c;
                self.course.choice = None;
                self.course.running = false;
                self.course.verdict = None;
                self.tab = Tab::Course;
                self.update(Msg::Scenario(sc));
                self.playing = false;
                self.course.chapter = c;
            }
            Msg::Choose(i) => {
                if self.course.verdict.is_none() {
                    self.course.choice = Some(i);
                }
            }
            Msg::RunChapter => {
                self.course.running = true;
                self.playing = true;
                self.last_frame_ms = None;
                // Brisk enough to see the answer within seconds, slow enough to follow.
                self.speed = self.speed.max(40.0);
            }
            Msg::Break(m) => {
                self.mutation = m;
                let sc = self
                    .scenario
                    .or_else(|| SCENARIOS.iter().position(|s| s.id == "figure-8"));
                if let Some(sc) = sc {
                    let tab = self.tab;
                    self.update(Msg::Scenario(sc));
                    self.tab = tab;
                    self.playing = true;
                }
            }
            Msg::Bench => self.bench = Some(bench(self.engine.borrow().cfg.clone())),
            Msg::SetMode(m) => {
                self.mode = m;
                if m == Mode::Live {
                    self.playing = false;
                }
            }
            Msg::Live(l) => return self.live(l),
            Msg::DismissNotice => self.notice = None,
            Msg::Field(f, v) => match f {
                Field::ClientOp => self.form.op = v,
                Field::ClientKey => self.form.key = v,
                Field::ClientValue => self.form.value = v,
                Field::Seed => self.form.seed = v,
                Field::Nodes => self.form.nodes = v,
                Field::Consistency => self.form.consistency = v,
                Field::Target => self.form.target = v,
            },
            Msg::SetReads { lease, margin_pct } => {
                let mut cfg = self.engine.borrow().cfg.clone();
                cfg.raft.lease_reads = lease;
                cfg.raft.lease_drift_margin_pct = margin_pct.min(99);
                let keep = (self.speed, self.tab, self.form.clone(), self.version);
                *self = Ui::new(cfg.nodes, cfg.seed, Mode::Sim, &[]);
                self.engine = Rc::new(RefCell::new(Engine::new(cfg)));
                (self.speed, self.tab, self.form, self.version) = keep;
                self.notice = Some(format!(
                    "New run, same seed: lease reads {}, drift margin {}%.",
                    if lease { "on" } else { "off" },
                    margin_pct.min(99)
                ));
            }
            Msg::DragStart(node, x, y) => {
                self.drag = Some(Drag {
                    node,
                    from: (x, y),
                    at: (x, y),
                });
            }
            Msg::DragMove(x, y) => match self.drag.as_mut() {
                Some(d) => d.at = (x, y),
                None => return false,
            },
            Msg::DragCancel => return self.drag.take().is_some(),
            Msg::DragEnd(x, y) => {
                let Some(d) = self.drag.take() else {
                    return false;
                };
                let crossed =
                    crate::layout::Layout::of(&self.engine.borrow()).crosses(d.node, x, y);
                if crossed {
                    return self.update(Msg::MoveAcross(d.node));
                }
            }
            Msg::MoveAcross(node) => {
                if !self.engine.borrow().sim.nodes().contains_key(&node) {
                    return false;
                }
                let f = self.engine.borrow().move_across(node);
                self.act(UserAction::Fault(f));
            }
        }
        true
    }

    /// The network as the simulator has it now (a scenario may have changed it), with the
    /// learner's latest setting applied.
    fn net(&self) -> NetworkConfig {
        let mut c = self.engine.borrow().sim.network().config.clone();
        c.latency_us = (self.latency_ms.0 * 1000, self.latency_ms.1 * 1000);
        c.drop_rate = self.drop_rate;
        c
    }

    fn act(&mut self, a: UserAction) {
        if matches!(
            a,
            UserAction::Fault(FaultAction::Heal | FaultAction::StopFaults)
        ) {
            self.groups.iter_mut().for_each(|g| *g = 0);
        }
        self.engine.borrow_mut().act(a);
        // Picture and clock agree after an action (it happens at the last event's time).
        self.display_time = self.display_time.max(self.engine.borrow().now());
    }

    fn sync_display(&mut self) {
        self.display_time = self.engine.borrow().now();
    }

    /// The picture never goes back in time except when the learner goes back.
    fn catch_up_display(&mut self) {
        self.display_time = self.display_time.max(self.engine.borrow().now());
    }

    /// The course chapter being run stops, paused, when the run has answered its question.
    fn check_chapter(&mut self) {
        if !self.course.running {
            return;
        }
        let Some(ch) = CHAPTERS.get(self.course.chapter) else {
            return;
        };
        let verdict = (ch.verdict)(&self.engine.borrow());
        if let Some(v) = verdict {
            self.course.verdict = Some(v);
            self.course.running = false;
            self.course.done.insert(self.course.chapter);
            self.playing = false;
        }
    }

    fn frame(&mut self, now: f64) -> bool {
        let prev = self.last_frame_ms.replace(now);
        if self.mode == Mode::Live {
            let mut live = self.live.borrow_mut();
            if now - live.last_render_ms > 200.0 {
                live.last_render_ms = now;
                return true;
            }
            return false;
        }
        if !self.playing {
            return false;
        }
        let dt = prev.map_or(0.0, |p| (now - p).clamp(0.0, 100.0));
        if dt > 0.0 {
            self.fps = 0.9 * self.fps + 0.1 * (1000.0 / dt);
        }
        let advance = (dt * speed_factor(self.speed) * 1000.0) as u64;
        let target = self.display_time + advance;
        let start = now_ms();
        let mut stepped = 0;
        let mut e = self.engine.borrow_mut();
        loop {
            let n = e.run_until_time(target, 256);
            stepped += n;
            if n < 256 {
                self.saturated = false;
                self.display_time = target;
                break;
            }
            if now_ms() - start > FRAME_BUDGET_MS {
                self.saturated = true;
                self.display_time = e.now();
                break;
            }
        }
        let spent = now_ms() - start;
        drop(e);
        self.check_chapter();
        let e = self.engine.borrow();
        if e.sim.next_event_time().is_none() {
            self.playing = false;
        }
        if e.trace().len() > TRACE_LIMIT {
            // The simulator keeps every event of the run in memory (about 150 bytes each).
            self.playing = false;
            self.notice = Some(format!(
                "Paused: this run has recorded {} events, the most a browser tab should hold. Scrub back to fork it, export it, or start a new run.",
                e.trace().len()
            ));
        }
        drop(e);
        // Events per second of stepping time, refreshed every half second of wall time.
        self.perf_events += stepped;
        self.perf_ms += spent;
        let window_start = *self.perf_window.get_or_insert(now);
        if now - window_start > 500.0 && self.perf_events > 0 {
            self.eps = self.perf_events as f64 / (self.perf_ms.max(0.01) / 1000.0);
            self.perf_events = 0;
            self.perf_ms = 0.0;
            self.perf_window = Some(now);
        }
        true
    }

    fn live(&mut self, m: LiveMsg) -> bool {
        let now = now_ms();
        let mut live = self.live.borrow_mut();
        match m {
            LiveMsg::Open(i) => {
                if let Some(n) = live.nodes.get_mut(i) {
                    n.connected = true;
                    n.last_frame_ms = now;
                }
            }
            LiveMsg::Closed(i) => {
                if let Some(n) = live.nodes.get_mut(i) {
                    n.connected = false;
                }
            }
            LiveMsg::Frame(i, bytes) => {
                let Some(n) = live.nodes.get_mut(i) else {
                    return false;
                };
                n.last_frame_ms = now;
                match postcard::from_bytes::<LiveFrame>(&bytes) {
                    Ok(LiveFrame::Status(s)) => {
                        n.status = Some(s);
                        n.last_status_ms = now;
                    }
                    Ok(LiveFrame::Event { time_ms, kind }) => {
                        n.events += 1;
                        // Heartbeats and deliveries are counted, not listed: they would push
                        // everything worth reading out of the list within a second.
                        let ev = keyval_core::trace::TraceEvent { time: 0, kind };
                        if crate::narrate::narrate(&ev, false, false).is_none() {
                            return false;
                        }
                        let kind = ev.kind;
                        live.events.push_back((i, time_ms, kind));
                        while live.events.len() > LIVE_EVENTS_KEPT {
                            live.events.pop_front();
                        }
                    }
                    Ok(LiveFrame::Lagged { dropped }) => n.lagged += dropped,
                    Err(_) => return false,
                }
                // Frames can arrive by the hundred per second: re-render at most every 100 ms.
                if now - live.last_render_ms < 100.0 {
                    return false;
                }
                live.last_render_ms = now;
            }
        }
        true
    }
}

/// Switches a deliberate bug on in a configuration (only in builds with the `mutations` feature).
pub fn set_mutation(cfg: &mut SimConfig, m: Option<Mutation>) {
    #[cfg(feature = "mutations")]
    {
        cfg.raft.mutation = m;
    }
    #[cfg(not(feature = "mutations"))]
    let _ = (cfg, m);
}

/// Whether this build can switch deliberate bugs on.
pub const MUTATIONS_BUILT: bool = cfg!(feature = "mutations");

impl Ui {
    /// One-way latency (ms) the simulated network has now.
    pub fn live_latency_ms(&self) -> (u64, u64) {
        let (lo, hi) = self.engine.borrow().sim.network().config.latency_us;
        ((lo / 1000).max(1), (hi / 1000).max(1))
    }
}

/// Runs a fresh copy of this configuration flat out for a fixed number of events and returns
/// simulator events per second (with trace recording on, as the page runs it).
pub fn bench(cfg: SimConfig) -> f64 {
    let mut e = Engine::new(cfg);
    let start = now_ms();
    let mut n = 0u64;
    while n < 200_000 && now_ms() - start < 1500.0 {
        for _ in 0..1000 {
            e.advance();
        }
        n += 1000;
    }
    n as f64 / ((now_ms() - start).max(0.001) / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ui() -> Rc<Ui> {
        Rc::new(Ui::new(3, 7, Mode::Sim, &[]))
    }

    #[test]
    fn step_advances_one_visible_event() {
        let mut s = ui();
        for i in 1..=5 {
            s = s.apply(Msg::Step);
            assert_eq!(s.engine.borrow().visible_steps, i);
            assert!(!s.playing);
        }
    }

    #[test]
    fn three_quick_messages_all_register() {
        let mut s = ui();
        let v = s.version;
        s = s.apply(Msg::Step);
        s = s.apply(Msg::Step);
        s = s.apply(Msg::Step);
        assert_eq!(s.engine.borrow().visible_steps, 3);
        assert_eq!(s.version, v + 3);
    }

    /// Plays `ms` of wall time in 16 ms frames.
    fn play_frames(mut s: Rc<Ui>, from: f64, ms: f64) -> Rc<Ui> {
        let mut now = from;
        while now < from + ms {
            s = s.apply(Msg::Frame(now));
            now += 16.0;
        }
        s
    }

    #[test]
    fn pausing_keeps_the_picture_where_it_was() {
        let mut s = Rc::new(Ui::new(5, 1, Mode::Sim, &[]));
        s = s.apply(Msg::SetSpeed(40.0));
        for round in 0..5 {
            s = play_frames(s, round as f64 * 10_000.0, 500.0);
            let shown = s.display_time;
            assert!(shown >= s.engine.borrow().now());
            s = s.apply(Msg::TogglePlay);
            assert!(!s.playing);
            assert_eq!(s.display_time, shown, "pause moved the picture");
            s = s.apply(Msg::Step);
            assert!(s.display_time >= shown, "a step went back in time");
            s = s.apply(Msg::TogglePlay);
        }
    }

    #[test]
    fn a_course_chapter_runs_until_the_run_answers() {
        let c = crate::course::chapter_index("commit").expect("chapter");
        let mut s = ui().apply(Msg::Chapter(c));
        assert!(!s.playing, "a chapter opens paused");
        s = s.apply(Msg::Choose(0)).apply(Msg::RunChapter);
        let mut now = 0.0;
        while s.course.verdict.is_none() && now < 600_000.0 {
            s = s.apply(Msg::Frame(now));
            now += 16.0;
        }
        assert_eq!(s.course.verdict, Some(0), "the put commits with 3 of 5 up");
        assert!(!s.playing, "the chapter pauses at its answer");
        assert!(s.course.done.contains(&c));
    }

    #[test]
    fn heal_resets_the_partition_draft() {
        let mut s = ui().apply(Msg::SetGroup(1, 1)).apply(Msg::ApplyPartition);
        assert_eq!(s.groups[0], 1);
        s = s.apply(Msg::Act(UserAction::Fault(FaultAction::Heal)));
        assert!(s.groups.iter().all(|g| *g == 0));
    }

    #[cfg(feature = "mutations")]
    #[test]
    fn the_break_menu_makes_the_checker_report_a_violation() {
        let mut s = ui().apply(Msg::Break(Some(Mutation::CommitPreviousTermByCounting)));
        assert!(s.playing);
        s = s.apply(Msg::SetSpeed(100.0));
        let mut now = 0.0;
        while s.engine.borrow().sim.checker().violations().is_empty() && now < 120_000.0 {
            s = s.apply(Msg::Frame(now));
            now += 16.0;
        }
        let e = s.engine.borrow();
        assert!(e
            .sim
            .checker()
            .violations()
            .iter()
            .any(|v| v.property.starts_with("state machine safety")));
    }

    fn run_to_leader(mut s: Rc<Ui>) -> Rc<Ui> {
        let mut now = 0.0;
        while s.engine.borrow().sim.leader().is_none() && now < 60_000.0 {
            s = s.apply(Msg::Frame(now));
            now += 16.0;
        }
        s.apply(Msg::Pause)
    }

    #[test]
    fn moving_a_node_across_the_line_cuts_it_off_and_back_heals() {
        let mut s = ui().apply(Msg::MoveAcross(2));
        assert_eq!(s.engine.borrow().sides(), Some(vec![0, 1, 0]));
        s = s.apply(Msg::MoveAcross(3));
        assert_eq!(s.engine.borrow().sides(), Some(vec![0, 1, 1]));
        s = s.apply(Msg::MoveAcross(2)).apply(Msg::MoveAcross(3));
        assert_eq!(s.engine.borrow().sides(), None, "one side left: healed");
    }

    #[test]
    fn a_drag_counts_only_when_it_crosses_the_partition_line() {
        use crate::layout::{Layout, CX, CY};
        let s = ui();
        let (x, y) = Layout::of(&s.engine.borrow()).pos(1);
        // Dropped a little off its place, inside the ring: nothing happens.
        let t = s
            .apply(Msg::DragStart(1, x, y))
            .apply(Msg::DragMove(x + 20.0, y + 30.0))
            .apply(Msg::DragEnd(x + 20.0, y + 30.0));
        assert_eq!(t.engine.borrow().sides(), None);
        assert!(t.drag.is_none());
        // Dragged out beyond the ring: cut off alone.
        let t = t.apply(Msg::DragStart(1, x, y)).apply(Msg::DragEnd(x, 2.0));
        assert_eq!(t.engine.borrow().sides(), Some(vec![0, 1, 1]));
        // Split now: n3 sits right of the line; dropping it left moves it to n1's side.
        let l = Layout::of(&t.engine.borrow());
        assert!(l.split && l.pos(3).0 > CX);
        let t = t
            .apply(Msg::DragStart(3, l.pos(3).0, l.pos(3).1))
            .apply(Msg::DragEnd(CX - 100.0, CY));
        assert_eq!(t.engine.borrow().sides(), Some(vec![0, 1, 0]));
        assert_eq!(
            t.engine.borrow().actions.len(),
            2,
            "each crossing is one logged action"
        );
    }

    #[test]
    fn a_get_from_the_form_takes_the_chosen_read_path_and_node() {
        let mut s = run_to_leader(ui());
        let follower = {
            let e = s.engine.borrow();
            let l = e.sim.leader().unwrap();
            (1..=3).find(|&n| n != l).unwrap()
        };
        s = s
            .apply(Msg::Field(Field::ClientOp, "get".into()))
            .apply(Msg::Field(Field::Consistency, "serializable".into()))
            .apply(Msg::Field(Field::Target, format!("n{follower}")))
            .apply(Msg::SubmitForm);
        let e = s.engine.borrow();
        assert_eq!(
            e.actions.last().map(|a| a.action.clone()),
            Some(UserAction::SubmitTo {
                op: KvOp::Get { key: b"x".to_vec() },
                consistency: Some(ReadConsistency::Serializable),
                node: Some(follower),
            })
        );
        assert!(e.trace().iter().any(|ev| matches!(&ev.kind,
            TraceKind::ClientInvoke { client: crate::engine::MANUAL_CLIENT, node, .. } if *node == follower)));
    }

    #[test]
    fn switching_lease_reads_restarts_the_run_with_them() {
        let s = ui().apply(Msg::SetReads {
            lease: true,
            margin_pct: 0,
        });
        let e = s.engine.borrow();
        assert!(e.cfg.raft.lease_reads);
        assert_eq!(e.cfg.raft.lease_drift_margin_pct, 0);
        assert_eq!(e.cfg.seed, 7);
        assert_eq!(e.step_count(), 0);
    }

    #[test]
    fn dropping_the_inspected_message_closes_the_inspector() {
        let mut s = ui();
        let id = loop {
            s = s.apply(Msg::Step);
            let e = s.engine.borrow();
            if let Some(id) = e.inflight.keys().next().copied() {
                break id;
            }
        };
        s = s.apply(Msg::InspectMsg(Some(id)));
        assert!(s.inspected.is_some());
        s = s.apply(Msg::Act(UserAction::Fault(FaultAction::DropMessage(id))));
        assert!(s.inspected.is_none());
        assert!(!s.engine.borrow().inflight.contains_key(&id));
    }

    #[test]
    fn paused_frames_do_not_rerender() {
        let s = ui().apply(Msg::Pause);
        let t = s.clone().apply(Msg::Frame(16.0));
        assert!(Rc::ptr_eq(&s, &t));
    }
}
