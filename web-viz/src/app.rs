//! The browser view (Yew, client-side rendering).

use std::cell::RefCell;
use std::rc::Rc;

use gloo::events::EventListener;
use gloo::render::{request_animation_frame, AnimationFrame};
use keyval_core::sim::trace::{op_text, Payload};
use keyval_core::sim::{Addr, FaultAction};
use keyval_core::{EntryPayload, KvOp, Message, NodeId, Role};
use wasm_bindgen::JsCast;
use web_sys::{HtmlInputElement, HtmlSelectElement, KeyboardEvent};
use yew::prelude::*;

use crate::engine::{Flight, TraceFile, UserAction};
use crate::live::LiveLinks;
use crate::narrate::narrate;
use crate::scenarios::SCENARIOS;
use crate::state::{now_ms, speed_factor, Field, Mode, Msg, Ui};

impl Reducible for Ui {
    type Action = Msg;
    fn reduce(self: Rc<Self>, action: Msg) -> Rc<Self> {
        self.apply(action)
    }
}

const VIEW_W: f64 = 560.0;
const VIEW_H: f64 = 540.0;
const CX: f64 = VIEW_W / 2.0;
const CY: f64 = VIEW_H / 2.0;
const RING: f64 = 200.0;
const NODE_R: f64 = 38.0;

/// Okabe–Ito palette (colour-blind safe).
pub const OI_ORANGE: &str = "#E69F00";
pub const OI_SKY: &str = "#56B4E9";
pub const OI_GREEN: &str = "#009E73";
pub const OI_YELLOW: &str = "#F0E442";
pub const OI_BLUE: &str = "#0072B2";
pub const OI_VERMILLION: &str = "#D55E00";
pub const OI_PURPLE: &str = "#CC79A7";
const TERM_COLORS: [&str; 7] = [
    OI_SKY,
    OI_ORANGE,
    OI_GREEN,
    OI_YELLOW,
    OI_PURPLE,
    OI_BLUE,
    OI_VERMILLION,
];

fn term_color(term: u64) -> &'static str {
    TERM_COLORS[(term as usize) % TERM_COLORS.len()]
}

fn role_color(r: Option<Role>) -> &'static str {
    match r {
        Some(Role::Leader) => OI_GREEN,
        Some(Role::Candidate) => OI_ORANGE,
        Some(Role::PreCandidate) => OI_YELLOW,
        Some(Role::Follower) => OI_SKY,
        None => "#b8b8b8",
    }
}

fn role_label(r: Option<Role>, paused: bool) -> &'static str {
    if paused {
        return "PAUSED";
    }
    match r {
        Some(Role::Leader) => "★ LEADER",
        Some(Role::Candidate) => "CANDIDATE",
        Some(Role::PreCandidate) => "PRE-CAND.",
        Some(Role::Follower) => "follower",
        None => "✕ CRASHED",
    }
}

fn pos(n: usize, id: NodeId) -> (f64, f64) {
    let i = (id - 1) as f64;
    let a = -std::f64::consts::FRAC_PI_2 + i * 2.0 * std::f64::consts::PI / n as f64;
    (CX + RING * a.cos(), CY + RING * a.sin())
}

fn addr_pos(n: usize, a: Addr) -> (f64, f64) {
    match a {
        Addr::Node(id) => pos(n, id),
        Addr::Client(_) => (CX, CY),
    }
}

/// Colour, short label and whether the message is a response (drawn hollow).
fn msg_style(p: &Payload) -> (&'static str, &'static str, bool) {
    match p {
        Payload::Raft(m) => match m {
            Message::PreVote { .. } => (OI_YELLOW, "PV", false),
            Message::PreVoteResponse { .. } => (OI_YELLOW, "PV", true),
            Message::RequestVote { .. } => (OI_ORANGE, "V", false),
            Message::RequestVoteResponse { .. } => (OI_ORANGE, "V", true),
            Message::AppendEntries { .. } => (OI_BLUE, "A", false),
            Message::AppendEntriesResponse { .. } => (OI_BLUE, "A", true),
            Message::Heartbeat { .. } => (OI_SKY, "H", false),
            Message::HeartbeatResponse { .. } => (OI_SKY, "H", true),
            Message::InstallSnapshot { .. } => (OI_VERMILLION, "S", false),
            Message::InstallSnapshotResponse { .. } => (OI_VERMILLION, "S", true),
        },
        Payload::Request { .. } => (OI_PURPLE, "C", false),
        Payload::Reply { .. } => (OI_PURPLE, "C", true),
    }
}

fn field_input(d: &UseReducerDispatcher<Ui>, f: Field) -> Callback<InputEvent> {
    let d = d.clone();
    Callback::from(move |ev: InputEvent| {
        let v = ev.target_unchecked_into::<HtmlInputElement>().value();
        d.dispatch(Msg::Field(f, v));
    })
}

fn field_select(d: &UseReducerDispatcher<Ui>, f: Field) -> Callback<Event> {
    let d = d.clone();
    Callback::from(move |ev: Event| {
        let v = ev.target_unchecked_into::<HtmlSelectElement>().value();
        d.dispatch(Msg::Field(f, v));
    })
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M", r / 1e6)
    } else if r >= 1e4 {
        format!("{:.0}k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

fn fmt_time(us: u64) -> String {
    format!("{}.{:03} s", us / 1_000_000, (us / 1000) % 1000)
}

fn query() -> web_sys::UrlSearchParams {
    let search = web_sys::window()
        .and_then(|w| w.location().search().ok())
        .unwrap_or_default();
    web_sys::UrlSearchParams::new_with_str(&search)
        .unwrap_or_else(|_| web_sys::UrlSearchParams::new().expect("params"))
}

fn live_addrs_from_query() -> Vec<String> {
    query()
        .get("live")
        .filter(|s| !s.is_empty())
        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect())
        .unwrap_or_else(|| (1..=3).map(|i| format!("127.0.0.1:{}", 7000 + i)).collect())
}

fn initial_state() -> Ui {
    let q = query();
    let nodes = q
        .get("nodes")
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|n| [3, 5, 7].contains(n))
        .unwrap_or(5);
    let seed = q.get("seed").and_then(|s| s.parse().ok()).unwrap_or(1);
    let mode = if q.get("mode").as_deref() == Some("live") {
        Mode::Live
    } else {
        Mode::Sim
    };
    let mut ui = Ui::new(nodes, seed, mode, &live_addrs_from_query());
    if let Some(i) = q
        .get("scenario")
        .and_then(|id| SCENARIOS.iter().position(|s| s.id == id))
    {
        ui = (*Rc::new(ui).apply(Msg::Scenario(i))).clone();
    }
    if q.get("paused").is_some() {
        ui.playing = false;
    }
    if let Some(s) = q.get("speed").and_then(|s| s.parse().ok()) {
        ui.speed = s;
    }
    ui
}

fn set_url(nodes: usize, seed: u64, mode: Mode, scenario: Option<usize>) {
    let Some(w) = web_sys::window() else { return };
    let q = query();
    q.set("nodes", &nodes.to_string());
    q.set("seed", &seed.to_string());
    match scenario.and_then(|i| SCENARIOS.get(i)) {
        Some(sc) => q.set("scenario", sc.id),
        None => q.delete("scenario"),
    }
    if mode == Mode::Live {
        q.set("mode", "live");
    } else {
        q.delete("mode");
    }
    let path = w.location().pathname().unwrap_or_default();
    let url = format!("{path}?{}", String::from(q.to_string()));
    if let Ok(h) = w.history() {
        let _ = h.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&url));
    }
}

fn download(name: &str, text: &str) {
    let parts = js_sys::Array::of1(&wasm_bindgen::JsValue::from_str(text));
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type("application/json");
    let Ok(blob) = web_sys::Blob::new_with_str_sequence_and_options(&parts, &opts) else {
        return;
    };
    let Ok(url) = web_sys::Url::create_object_url_with_blob(&blob) else {
        return;
    };
    let doc = gloo::utils::document();
    if let Ok(a) = doc.create_element("a") {
        let a: web_sys::HtmlAnchorElement = a.unchecked_into();
        a.set_href(&url);
        a.set_download(name);
        let _ = gloo::utils::body().append_child(&a);
        a.click();
        a.remove();
    }
    let _ = web_sys::Url::revoke_object_url(&url);
}

#[function_component(App)]
pub fn app() -> Html {
    let state = use_reducer_eq(initial_state);
    // Keeps a trace file read alive until it completes.
    let reader: Reader = use_mut_ref(|| None);

    // The animation loop: one Frame message per display refresh.
    {
        let dispatcher = state.dispatcher();
        use_effect_with((), move |_| {
            let handle: Rc<RefCell<Option<AnimationFrame>>> = Rc::new(RefCell::new(None));
            fn schedule(h: Rc<RefCell<Option<AnimationFrame>>>, d: UseReducerDispatcher<Ui>) {
                let h2 = h.clone();
                let af = request_animation_frame(move |ts| {
                    d.dispatch(Msg::Frame(ts));
                    schedule(h2, d);
                });
                *h.borrow_mut() = Some(af);
            }
            schedule(handle.clone(), dispatcher);
            move || {
                handle.borrow_mut().take();
            }
        });
    }

    // Keyboard shortcuts: space play/pause, right arrow step.
    {
        let dispatcher = state.dispatcher();
        use_effect_with((), move |_| {
            let l = EventListener::new(&gloo::utils::document(), "keydown", move |e| {
                let Some(e) = e.dyn_ref::<KeyboardEvent>() else {
                    return;
                };
                let typing = e
                    .target()
                    .and_then(|t| t.dyn_into::<web_sys::HtmlElement>().ok())
                    .is_some_and(|t| {
                        matches!(t.tag_name().as_str(), "INPUT" | "TEXTAREA" | "SELECT")
                    });
                if typing {
                    return;
                }
                match e.key().as_str() {
                    " " => {
                        e.prevent_default();
                        dispatcher.dispatch(Msg::TogglePlay);
                    }
                    "ArrowRight" => {
                        e.prevent_default();
                        dispatcher.dispatch(Msg::Step);
                    }
                    "ArrowLeft" => {
                        e.prevent_default();
                        dispatcher.dispatch(Msg::StepBack);
                    }
                    _ => {}
                }
            });
            move || drop(l)
        });
    }

    // Keep the URL in step with the run, so it can be shared.
    {
        let (nodes, seed, mode, sc) = (state.nodes(), state.seed(), state.mode, state.scenario);
        use_effect_with((nodes, seed, mode, sc), move |(n, s, m, sc)| {
            set_url(*n, *s, *m, *sc);
        });
    }

    // Live mode: one WebSocket per node while the mode is on.
    {
        let dispatcher = state.dispatcher();
        let addrs: Vec<String> = state
            .live
            .borrow()
            .nodes
            .iter()
            .map(|n| n.addr.clone())
            .collect();
        use_effect_with(state.mode, move |mode| {
            let links = (*mode == Mode::Live).then(|| {
                let d = dispatcher.clone();
                LiveLinks::open(&addrs, Rc::new(move |m| d.dispatch(m)))
            });
            move || {
                if let Some(l) = links {
                    l.close();
                }
            }
        });
    }

    let d = state.dispatcher();
    let cb = move |m: Msg| {
        let d = d.clone();
        Callback::from(move |_: MouseEvent| d.dispatch(m.clone()))
    };

    let header = {
        let d = state.dispatcher();
        let field = |f: Field| {
            let d = d.clone();
            Callback::from(move |ev: Event| {
                let t = ev.target().expect("event target");
                let v = if let Some(i) = t.dyn_ref::<HtmlInputElement>() {
                    i.value()
                } else if let Some(s) = t.dyn_ref::<HtmlSelectElement>() {
                    s.value()
                } else {
                    return;
                };
                d.dispatch(Msg::Field(f, v));
            })
        };
        let random = {
            let d = d.clone();
            let nodes = state.nodes();
            Callback::from(move |_: MouseEvent| {
                let seed = (js_sys::Math::random() * 1_000_000.0) as u64;
                d.dispatch(Msg::NewRun { nodes, seed });
            })
        };
        let sim = state.mode == Mode::Sim;
        html! {
            <header class="top">
                <div class="brand">
                    <span class="logo">{"⬡"}</span>
                    <h1>{"KeyVal playground"}</h1>
                    <span class="tagline">{"the real Raft code of KeyVal, running in your browser"}</span>
                </div>
                <nav class="modes">
                    <button data-testid="mode-sim" class={classes!(sim.then_some("on"))} onclick={cb(Msg::SetMode(Mode::Sim))}>{"Simulation"}</button>
                    <button data-testid="mode-live" class={classes!((!sim).then_some("on"))} onclick={cb(Msg::SetMode(Mode::Live))}>{"Live cluster"}</button>
                    <a data-testid="mode-scenarios" href="?scn=initial_election_3_nodes">{"Scenario scripts"}</a>
                </nav>
                if sim {
                    <div class="runbar">
                        <label>{"Nodes "}
                            <select id="nodes-select" data-testid="nodes-select" onchange={field(Field::Nodes)}>
                                { for [3usize, 5, 7].iter().map(|n| html!{
                                    <option value={n.to_string()} selected={n.to_string() == state.form.nodes}>{n}</option>
                                }) }
                            </select>
                        </label>
                        <label>{"Seed "}
                            <input id="seed-input" data-testid="seed-input" type="number" min="0" value={state.form.seed.clone()} oninput={field_input(&d, Field::Seed)} />
                        </label>
                        <button data-testid="new-run" class="primary" onclick={cb(Msg::NewRunFromForm)}>{"New run"}</button>
                        <button data-testid="random-seed" onclick={random} title="New run with a random seed">{"Random seed"}</button>
                    </div>
                }
            </header>
        }
    };

    let body = if state.mode == Mode::Live {
        live_view(&state)
    } else {
        sim_view(&state, reader)
    };

    html! {
        <div class="app">
            { header }
            if let Some(n) = state.notice.clone() {
                <div class="notice" data-testid="notice" onclick={cb(Msg::DismissNotice)}>{n}<span class="x">{" ✕"}</span></div>
            }
            { body }
        </div>
    }
}

fn sim_view(state: &UseReducerHandle<Ui>, reader: Reader) -> Html {
    let d = state.dispatcher();
    let cb = {
        let d = d.clone();
        move |m: Msg| {
            let d = d.clone();
            Callback::from(move |_: MouseEvent| d.dispatch(m.clone()))
        }
    };
    let e = state.engine.borrow();
    let n = e.cfg.nodes;
    let t = state.display_time;
    let leader = e.sim.leader();
    let client_entry = e.client_entry_index();

    // Links between every pair of nodes; click to cut or restore.
    let mut links = Vec::new();
    for a in 1..=n as u64 {
        for b in (a + 1)..=n as u64 {
            let (x1, y1) = pos(n, a);
            let (x2, y2) = pos(n, b);
            let cut = e.sim.network().is_cut(a, b) || e.sim.network().is_cut(b, a);
            let (mx, my) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
            links.push(html! {
                <g class={classes!("link", cut.then_some("cut"))}
                   data-testid={format!("link-{a}-{b}")} data-cut={cut.to_string()}
                   onclick={cb(Msg::ToggleLink(a, b))}>
                    <title>{ if cut { format!("n{a}–n{b} is cut: click to restore") } else { format!("n{a}–n{b}: click to cut this link") } }</title>
                    <line class="link-line" x1={x1.to_string()} y1={y1.to_string()} x2={x2.to_string()} y2={y2.to_string()} />
                    <line class="link-hit" x1={x1.to_string()} y1={y1.to_string()} x2={x2.to_string()} y2={y2.to_string()} />
                    if cut {
                        <text class="cut-mark" x={mx.to_string()} y={(my + 6.0).to_string()}>{"✂"}</text>
                    }
                </g>
            });
        }
    }

    let inspected = state.inspected.as_ref().map(|f| f.id);
    // Messages in flight, positioned by the displayed time.
    let flights: Vec<&Flight> = e.inflight.values().collect();
    let msgs = flights.iter().map(|f| {
        let (x1, y1) = addr_pos(n, f.from);
        let (x2, y2) = addr_pos(n, f.to);
        let span = f.deliver_at.saturating_sub(f.sent_at).max(1) as f64;
        let p = (t.saturating_sub(f.sent_at) as f64 / span).clamp(0.0, 1.0);
        // Offset each direction a little so requests and responses do not overlap.
        let (dx, dy) = (x2 - x1, y2 - y1);
        let len = (dx * dx + dy * dy).sqrt().max(1.0);
        let side = if f.from < f.to { 7.0 } else { -7.0 };
        let (ox, oy) = (-dy / len * side, dx / len * side);
        // Start and end at the node's rim, not its centre.
        let r0 = if matches!(f.from, Addr::Node(_)) { NODE_R / len } else { 0.0 };
        let r1 = if matches!(f.to, Addr::Node(_)) { NODE_R / len } else { 0.0 };
        let q = r0 + p * (1.0 - r0 - r1);
        let x = x1 + dx * q + ox;
        let y = y1 + dy * q + oy;
        let (color, label, hollow) = msg_style(&f.payload);
        let follow = e.follows_client(f, client_entry);
        let tip = format!("#{} {} {}→{}: {}", f.id, f.payload.kind(), f.from, f.to, f.payload.summary());
        html! {
            <g class={classes!("msg", follow.then_some("follow"), (inspected == Some(f.id)).then_some("inspected"))} transform={format!("translate({x:.1},{y:.1})")}
               data-testid="msg" data-kind={f.payload.kind()} onclick={cb(Msg::InspectMsg(Some(f.id)))}>
                <title>{tip}</title>
                if follow { <circle class="halo" r="15" /> }
                <circle r="10" fill={if hollow { "#ffffff" } else { color }} stroke={color} stroke-width={if hollow { "3" } else { "1.5" }} />
                <text class="msg-label" y="3.5">{label}</text>
            </g>
        }
    });

    // Nodes.
    let nodes = e.sim.nodes().values().map(|sn| {
        let id = sn.id;
        let (x, y) = pos(n, id);
        let role = sn.role();
        let raft = sn.server.as_ref().map(|s| s.raft());
        let term = raft.map_or(sn.storage.hard_state.term, |r| r.term());
        let (elapsed, timeout) = raft.map_or((0, 1), |r| r.election_timer());
        let frac = if role == Some(Role::Leader) || role.is_none() {
            0.0
        } else {
            (elapsed as f64 / timeout.max(1) as f64).clamp(0.0, 1.0)
        };
        let arc_r = NODE_R + 9.0;
        let arc = if frac > 0.0 {
            let a0 = -std::f64::consts::FRAC_PI_2;
            let a1 = a0 + frac * 2.0 * std::f64::consts::PI - 0.0001;
            let (sx, sy) = (arc_r * a0.cos(), arc_r * a0.sin());
            let (ex, ey) = (arc_r * a1.cos(), arc_r * a1.sin());
            let large = if frac > 0.5 { 1 } else { 0 };
            format!("M {sx:.1} {sy:.1} A {arc_r} {arc_r} 0 {large} 1 {ex:.1} {ey:.1}")
        } else {
            String::new()
        };
        let class = classes!(
            "node",
            match role {
                Some(Role::Leader) => "leader",
                Some(Role::Candidate) => "candidate",
                Some(Role::PreCandidate) => "precandidate",
                Some(Role::Follower) => "follower",
                None => "crashed",
            },
            sn.paused.then_some("paused"),
            (state.selected == Some(id)).then_some("selected")
        );
        let vote = raft.and_then(|r| r.vote()).map_or("–".to_string(), |v| format!("n{v}"));
        let role_name = role.map_or("crashed", |r| r.name());
        html! {
            <g class={class} transform={format!("translate({x:.1},{y:.1})")}
               data-testid={format!("node-{id}")} data-role={role_name} data-term={term.to_string()}
               data-paused={sn.paused.to_string()}
               onclick={cb(Msg::Select(Some(id)))}>
                <title>{format!("n{id}: {role_name}, term {term}, voted for {vote}. Click for actions.")}</title>
                <circle class="timer-track" r={arc_r.to_string()} />
                if !arc.is_empty() { <path class="timer-arc" d={arc} /> }
                if role == Some(Role::Leader) { <circle class="leader-ring" r={(NODE_R + 5.0).to_string()} /> }
                <circle class="body" r={NODE_R.to_string()} fill={role_color(role)} />
                <text class="node-id" y="-8">{format!("n{id}")}</text>
                <text class="node-role" y="8">{role_label(role, sn.paused)}</text>
                <text class="node-term" y="22">{format!("term {term}")}</text>
                <text class="node-vote" y={(NODE_R + 26.0).to_string()}>{format!("vote {vote}")}</text>
            </g>
        }
    });

    // The node menu, over the picture next to the selected node.
    let menu = state.selected.and_then(|id| {
        let sn = e.sim.nodes().get(&id)?;
        let (x, y) = pos(n, id);
        let left = (x / VIEW_W * 100.0).clamp(5.0, 70.0);
        let top = ((y + NODE_R + 10.0) / VIEW_H * 100.0).clamp(0.0, 75.0);
        let act = |f: FaultAction| cb(Msg::Act(UserAction::Fault(f)));
        let up = sn.is_up();
        Some(html! {
            <div class="node-menu" data-testid="node-menu" style={format!("left:{left:.1}%;top:{top:.1}%")}>
                <div class="menu-title">{format!("n{id}")}<button class="x" onclick={cb(Msg::Select(None))}>{"✕"}</button></div>
                if up {
                    <button data-testid="menu-crash" onclick={act(FaultAction::Crash(id))}>{"✕ Crash"}</button>
                } else {
                    <button data-testid="menu-restart" onclick={act(FaultAction::Restart(id))}>{"↻ Restart"}</button>
                }
                if up && !sn.paused {
                    <button data-testid="menu-pause" onclick={act(FaultAction::Pause(id))}>{"❚❚ Pause node"}</button>
                }
                if sn.paused {
                    <button data-testid="menu-resume" onclick={act(FaultAction::Resume(id))}>{"▶ Resume node"}</button>
                }
            </div>
        })
    });

    let cluster = html! {
        <div class="card cluster">
            <div class="svgwrap">
                <svg viewBox={format!("0 0 {VIEW_W} {VIEW_H}")} data-testid="cluster" role="img" aria-label="cluster">
                    <g class="links">{ for links }</g>
                    <g class="client" transform={format!("translate({CX},{CY})")}>
                        <rect x="-26" y="-14" width="52" height="28" rx="6" />
                        <text y="5">{"client"}</text>
                    </g>
                    <g class="nodes">{ for nodes }</g>
                    <g class="msgs">{ for msgs }</g>
                </svg>
                { menu.unwrap_or_default() }
                <div class="leader-badge" data-testid="leader">
                    { match leader { Some(l) => format!("leader: n{l}"), None => "no leader".to_string() } }
                </div>
            </div>
            if let Some(f) = state.inspected.clone() {
                <div class="inspector" data-testid="msg-inspector">
                    <b>{format!("#{} {}", f.id, f.payload.kind())}</b>
                    {format!(" {}→{} · sent {} · arrives {} · ", f.from, f.to, fmt_time(f.sent_at), fmt_time(f.deliver_at))}
                    <code>{f.payload.summary()}</code>
                    <button class="x" onclick={cb(Msg::InspectMsg(None))}>{"✕"}</button>
                </div>
            }
            { legend() }
        </div>
    };

    // Transport: play, step, speed, timeline.
    let transport = {
        let on_speed = {
            let d = d.clone();
            Callback::from(move |ev: InputEvent| {
                let v: f64 = ev
                    .target_unchecked_into::<HtmlInputElement>()
                    .value()
                    .parse()
                    .unwrap_or(10.0);
                d.dispatch(Msg::SetSpeed(v));
            })
        };
        let on_seek = {
            let d = d.clone();
            Callback::from(move |ev: InputEvent| {
                let v: u64 = ev
                    .target_unchecked_into::<HtmlInputElement>()
                    .value()
                    .parse()
                    .unwrap_or(0);
                d.dispatch(Msg::Seek(v));
            })
        };
        let factor = speed_factor(state.speed);
        let speed_text = if factor >= 10.0 {
            format!("{factor:.0}×")
        } else if factor >= 1.0 {
            format!("{factor:.1}×")
        } else {
            format!("{factor:.3}×")
        };
        html! {
            <div class="card transport">
                <div class="row">
                    <button data-testid="play" class="primary big" onclick={cb(Msg::TogglePlay)} title="Play / pause (space)">
                        { if state.playing { "❚❚ Pause" } else { "▶ Play" } }
                    </button>
                    <button data-testid="step-back" onclick={cb(Msg::StepBack)} title="Previous event (←): replays the run from its seed">{"|◂"}</button>
                    <button data-testid="step" class="big" onclick={cb(Msg::Step)} title="Next event (→)">{"Step ▸|"}</button>
                    <label class="speed">{"Speed "}
                        <input data-testid="speed" type="range" min="0" max="100" step="1" value={state.speed.to_string()} oninput={on_speed} />
                        <span class="val" data-testid="speed-value">{speed_text}</span>
                        if state.saturated && state.playing { <span class="warn">{" (max)"}</span> }
                    </label>
                </div>
                <div class="row timeline">
                    <input data-testid="timeline" type="range" min="0" max={e.horizon.to_string()} value={e.step_count().to_string()} oninput={on_seek} title="Drag back in time: the run is replayed from its seed" />
                </div>
                <div class="row stats">
                    <span>{"time "}<b data-testid="sim-time">{fmt_time(t.max(e.now()))}</b></span>
                    <span>{"event "}<b data-testid="event-count">{e.visible_steps}</b></span>
                    <span>{"step "}<b data-testid="step-count">{e.step_count()}</b>{format!(" / {}", e.horizon)}</span>
                    <span title="simulator events per second while playing">{"sim "}<b data-testid="eps">{fmt_rate(state.eps)}</b>{" ev/s"}</span>
                    <span title="frames per second of the animation">{"fps "}<b data-testid="fps">{format!("{:.0}", state.fps)}</b></span>
                    <span>{"actions "}<b data-testid="action-count">{e.actions.len()}</b></span>
                </div>
            </div>
        }
    };

    let narration = narration_panel(state, &e);
    let side = side_panels(state, &e, reader);
    let logs = logs_panel(state, &e);
    drop(e);

    html! {
        <main class="sim">
            <section class="left">
                { cluster }
                { transport }
                { logs }
            </section>
            <section class="right">
                { narration }
                { side }
            </section>
        </main>
    }
}

fn legend() -> Html {
    let item = |c: &str, l: &str, hollow: bool, name: &str| {
        html! {
            <span class="li">
                <svg width="22" height="22" viewBox="-11 -11 22 22">
                    <circle r="9" fill={if hollow { "#fff".to_string() } else { c.to_string() }} stroke={c.to_string()} stroke-width={if hollow { "3" } else { "1.5" }} />
                    <text class="msg-label" y="3.5">{l.to_string()}</text>
                </svg>
                {name.to_string()}
            </span>
        }
    };
    let role = |c: &str, name: &str| {
        html! { <span class="li"><span class="swatch" style={format!("background:{c}")}></span>{name.to_string()}</span> }
    };
    html! {
        <div class="legend">
            <div>
                { role(OI_GREEN, "leader ★") }
                { role(OI_ORANGE, "candidate") }
                { role(OI_YELLOW, "pre-candidate") }
                { role(OI_SKY, "follower") }
                { role("#b8b8b8", "crashed ✕") }
                <span class="li muted">{"ring = election timer"}</span>
            </div>
            <div>
                { item(OI_YELLOW, "PV", false, "pre-vote") }
                { item(OI_ORANGE, "V", false, "vote") }
                { item(OI_BLUE, "A", false, "append") }
                { item(OI_SKY, "H", false, "heartbeat") }
                { item(OI_VERMILLION, "S", false, "snapshot") }
                { item(OI_PURPLE, "C", false, "client") }
                { item("#555", "", true, "hollow = response") }
            </div>
        </div>
    }
}

fn narration_panel(state: &UseReducerHandle<Ui>, e: &crate::engine::Engine) -> Html {
    let d = state.dispatcher();
    let trace = e.trace();
    let (b0, b1) = e.last_batch;
    // Newest first. Identical events of several nodes in a row are merged into one line
    // ("Each of n2, n4 and n5 applies entry 3 ...").
    struct Line {
        time: u64,
        nodes: Vec<String>,
        rest: String,
        nar: crate::narrate::Narration,
        latest: bool,
    }
    let mut lines: Vec<Line> = Vec::new();
    let mut newest_time = None;
    // Without heartbeats and deliveries, walk the index of notable events; with them, they are
    // dense, so a bounded window of the tail is enough.
    let indices: Box<dyn Iterator<Item = usize>> = if state.show_heartbeats || state.show_deliveries
    {
        Box::new((trace.len().saturating_sub(20_000)..trace.len()).rev())
    } else {
        Box::new(e.notable.iter().rev().copied())
    };
    for i in indices {
        let ev = &trace[i];
        if lines.len() >= 40 {
            break;
        }
        let Some(nar) = narrate(ev, state.show_heartbeats, state.show_deliveries) else {
            continue;
        };
        newest_time.get_or_insert(ev.time);
        let latest = i >= b0 && i < b1;
        let (node, rest) = match nar.text.split_once(' ') {
            Some((n, r))
                if n.len() >= 2
                    && n.starts_with('n')
                    && n[1..].chars().all(|c| c.is_ascii_digit()) =>
            {
                (Some(n.to_string()), r.to_string())
            }
            _ => (None, nar.text.clone()),
        };
        if let (Some(n), Some(last)) = (&node, lines.last_mut()) {
            if !last.nodes.is_empty()
                && last.rest == rest
                && last.nar.class == nar.class
                && !last.nodes.contains(n)
            {
                last.nodes.push(n.clone());
                last.latest |= latest;
                continue;
            }
        }
        lines.push(Line {
            time: ev.time,
            nodes: node.into_iter().collect(),
            rest,
            nar,
            latest,
        });
    }
    let quiet = newest_time.filter(|t| e.now() > t + 500_000 && !state.show_heartbeats).map(|t| {
        let leader = e.sim.leader().map_or(String::new(), |l| format!("leader n{l} keeps its followers from timing out with "));
        html! {
            <li class="nar quiet">
                <span class="t">{fmt_time(e.now())}</span>
                <span class="txt">{format!("All quiet since {}: {leader}heartbeats (tick “heartbeats” to see them).", fmt_time(t))}</span>
            </li>
        }
    });
    let items = lines.into_iter().map(|l| {
        let text = match l.nodes.len() {
            0 => l.rest,
            1 => format!("{} {}", l.nodes[0], l.rest),
            _ => {
                let mut ns = l.nodes.clone();
                ns.sort();
                let last = ns.pop().unwrap_or_default();
                format!("Each of {} and {last} {}", ns.join(", "), l.rest)
            }
        };
        html! {
            <li class={classes!("nar", l.nar.class, l.latest.then_some("latest"))} data-testid="narration-item">
                <span class="t">{fmt_time(l.time)}</span>
                <span class="txt">{text}</span>
                if !l.nar.rule.is_empty() { <span class="rule">{l.nar.rule}</span> }
            </li>
        }
    });
    let toggle_hb = {
        let d = d.clone();
        Callback::from(move |_: Event| d.dispatch(Msg::ToggleHeartbeats))
    };
    let toggle_dl = {
        let d = d.clone();
        Callback::from(move |_: Event| d.dispatch(Msg::ToggleDeliveries))
    };
    let scenario = state.scenario.and_then(|i| SCENARIOS.get(i));
    html! {
        <div class="card narration">
            <div class="card-head">
                <h2>{"What is happening"}</h2>
                <label class="small"><input type="checkbox" checked={state.show_heartbeats} onchange={toggle_hb} />{" heartbeats"}</label>
                <label class="small"><input type="checkbox" checked={state.show_deliveries} onchange={toggle_dl} />{" deliveries"}</label>
            </div>
            if let Some(sc) = scenario {
                <div class="scenario-note" data-testid="scenario-note"><b>{sc.title}</b>{": "}{sc.what}</div>
            }
            <ol class="nar-list" data-testid="narration">{ for quiet }{ for items }</ol>
        </div>
    }
}

type Reader = Rc<RefCell<Option<gloo::file::callbacks::FileReader>>>;

fn side_panels(state: &UseReducerHandle<Ui>, e: &crate::engine::Engine, reader: Reader) -> Html {
    let d = state.dispatcher();
    let cb = {
        let d = d.clone();
        move |m: Msg| {
            let d = d.clone();
            Callback::from(move |_: MouseEvent| d.dispatch(m.clone()))
        }
    };
    let n = e.cfg.nodes;

    let client_status = client_status(e);
    let client = html! {
        <div class="card client-box">
            <h2>{"Client"}</h2>
            <div class="row">
                <select id="client-op" data-testid="client-op" onchange={field_select(&d, Field::ClientOp)}>
                    { for ["put", "get", "delete"].iter().map(|o| html! {
                        <option value={*o} selected={state.form.op == *o}>{*o}</option>
                    }) }
                </select>
                <input id="client-key" data-testid="client-key" placeholder="key" size="6" value={state.form.key.clone()} oninput={field_input(&d, Field::ClientKey)} />
                if state.form.op == "put" {
                    <input id="client-value" data-testid="client-value" placeholder="value" size="6" value={state.form.value.clone()} oninput={field_input(&d, Field::ClientValue)} />
                }
                <button data-testid="client-send" class="primary" onclick={cb(Msg::SubmitForm)}>{"Send"}</button>
            </div>
            <div class="client-status" data-testid="client-status">{client_status}</div>
        </div>
    };

    // Faults.
    let on_drop = {
        let d = d.clone();
        Callback::from(move |ev: Event| {
            let v: f64 = ev
                .target_unchecked_into::<HtmlInputElement>()
                .value()
                .parse()
                .unwrap_or(0.0);
            d.dispatch(Msg::SetDropRate(v / 100.0));
        })
    };
    let lat = state.latency_ms;
    let on_lat = {
        let d = d.clone();
        Callback::from(move |ev: Event| {
            let v: u64 = ev
                .target_unchecked_into::<HtmlInputElement>()
                .value()
                .parse()
                .unwrap_or(5);
            d.dispatch(Msg::SetLatency((v / 5).max(1), v.max(1)));
        })
    };
    let groups = (1..=n as u64).map(|id| {
        let g = state.groups.get(id as usize - 1).copied().unwrap_or(0);
        let next = (g + 1) % 3;
        html! {
            <button class={format!("grp g{g}")} data-testid={format!("group-{id}")} onclick={cb(Msg::SetGroup(id, next))}
                title="Click to move this node to the next group">
                {format!("n{id}·{}", ["A", "B", "C"][g as usize])}
            </button>
        }
    });
    let faults = html! {
        <div class="card faults">
            <h2>{"Faults"}</h2>
            <p class="hint">{"Click a node to crash, restart or pause it. Click a link to cut it."}</p>
            <div class="row groups">{"Partition: "}{ for groups }
                <button data-testid="partition-apply" onclick={cb(Msg::ApplyPartition)}>{"Split"}</button>
                <button data-testid="heal" class="primary" onclick={cb(Msg::Act(UserAction::Fault(FaultAction::Heal)))}>{"Heal"}</button>
            </div>
            <label class="row">{"Drop rate "}
                <input data-testid="drop-rate" type="range" min="0" max="50" step="1" value={((state.drop_rate * 100.0).round() as u32).to_string()} onchange={on_drop} />
                <span class="val">{format!("{:.0}%", state.drop_rate * 100.0)}</span>
            </label>
            <label class="row">{"Latency "}
                <input data-testid="latency" type="range" min="1" max="100" step="1" value={lat.1.to_string()} onchange={on_lat} />
                <span class="val">{format!("{}–{} ms", lat.0, lat.1)}</span>
            </label>
        </div>
    };

    // Scenarios.
    let scenarios = SCENARIOS.iter().enumerate().map(|(i, s)| {
        html! {
            <button data-testid={format!("scenario-{}", s.id)} class={classes!((state.scenario == Some(i)).then_some("on"))}
                onclick={cb(Msg::Scenario(i))} title={s.what}>{s.title}</button>
        }
    });

    // Trace export / import.
    let export = {
        let engine = state.engine.clone();
        Callback::from(move |_: MouseEvent| {
            let e = engine.borrow();
            let json = TraceFile::of(&e).to_json();
            let name = format!(
                "keyval-n{}-seed{}-step{}.json",
                e.cfg.nodes,
                e.cfg.seed,
                e.step_count()
            );
            download(&name, &json);
        })
    };
    let import = {
        let d = d.clone();
        Callback::from(move |ev: Event| {
            let input: HtmlInputElement = ev.target_unchecked_into();
            let Some(file) = input.files().and_then(|f| f.get(0)) else {
                return;
            };
            let d = d.clone();
            let file = gloo::file::File::from(file);
            let task = gloo::file::callbacks::read_as_text(&file, move |r| {
                if let Ok(text) = r {
                    d.dispatch(Msg::Import(text));
                }
            });
            *reader.borrow_mut() = Some(task);
            input.set_value("");
        })
    };
    let bench = state.bench;
    let tools = html! {
        <div class="card tools">
            <h2>{"Guided scenarios"}</h2>
            <div class="row wrap scenarios">{ for scenarios }</div>
            <h2>{"Trace"}</h2>
            <div class="row wrap">
                <button data-testid="export" onclick={export}>{"⤓ Export trace"}</button>
                <label class="file">{"⤒ Import trace"}<input data-testid="import" type="file" accept=".json,application/json" onchange={import} /></label>
                <button data-testid="bench" onclick={cb(Msg::Bench)} title="Run this configuration flat out for a moment">{"Measure sim speed"}</button>
                if let Some(b) = bench {
                    <span data-testid="bench-result" class="val">{format!("{} events/s", fmt_rate(b))}</span>
                }
            </div>
            <p class="hint">{"Shortcuts: space = play/pause, → = step, ← = step back. Drag the timeline to go back; acting in the past forks a new future."}</p>
        </div>
    };

    html! { <>{client}{faults}{tools}</> }
}

fn client_status(e: &crate::engine::Engine) -> Html {
    use keyval_core::sim::TraceKind;
    let Some(seq) = e.client_seq else {
        return html! { <span class="muted">{"Send a request and follow its messages (highlighted)."}</span> };
    };
    let mut lines: Vec<String> = Vec::new();
    let mut done = false;
    // From the invocation on, over notable events only: the trace can be long.
    let from = e.client_invoked_at.unwrap_or(0);
    let start = e.notable.partition_point(|&i| i < from);
    let mut seen: Vec<&keyval_core::sim::TraceEvent> = e.notable[start..]
        .iter()
        .take(5_000)
        .map(|&i| &e.trace()[i])
        .collect();
    seen.reverse();
    for ev in seen {
        match &ev.kind {
            TraceKind::ClientInvoke {
                client,
                seq: s,
                op,
                node,
            } if *client == crate::engine::MANUAL_CLIENT && *s == seq => {
                lines.push(format!(
                    "{} sent {} to n{node}",
                    fmt_time(ev.time),
                    op_text(op)
                ));
                break;
            }
            TraceKind::ClientRetry {
                client,
                seq: s,
                node,
                ..
            } if *client == crate::engine::MANUAL_CLIENT && *s == seq => {
                lines.push(format!("{} retry at n{node}", fmt_time(ev.time)));
            }
            TraceKind::ClientComplete {
                client,
                seq: s,
                result,
            } if *client == crate::engine::MANUAL_CLIENT && *s == seq => {
                lines.push(format!(
                    "{} answered: {}",
                    fmt_time(ev.time),
                    keyval_core::sim::trace::result_text(result)
                ));
                done = true;
            }
            _ => {}
        }
    }
    let idx = e.client_entry_index();
    let commits: Vec<String> = idx
        .map(|i| e.client_committed_on(i))
        .unwrap_or_default()
        .iter()
        .map(|n| format!("n{n}"))
        .collect();
    html! {
        <div data-state={if done { "done" } else { "pending" }}>
            <b>{ if done { "✔ answered" } else { "… pending" } }</b>
            if let Some(i) = idx {
                <span class="muted">{format!(" · entry {i}, committed on {}", if commits.is_empty() { "none yet".to_string() } else { commits.join(", ") })}</span>
            }
            <ul>{ for lines.iter().take(4).map(|l| html!{ <li>{l}</li> }) }</ul>
        </div>
    }
}

fn logs_panel(state: &UseReducerHandle<Ui>, e: &crate::engine::Engine) -> Html {
    let _ = state;
    let logs = e.sim.logs();
    let rows = logs.iter().map(|(id, entries)| {
        let sn = &e.sim.nodes()[id];
        let raft = sn.server.as_ref().map(|s| s.raft());
        let commit = raft.map_or(0, |r| r.commit_index());
        let applied = raft.map_or(0, |r| r.applied_index());
        let role = sn.role();
        const SHOWN: usize = 28;
        let skip = entries.len().saturating_sub(SHOWN);
        let snap = raft.map_or(0, |r| r.log().first_index().saturating_sub(1));
        let cells = entries[skip..].iter().map(|en| {
            let what = match &en.payload {
                EntryPayload::Noop => "no-op".to_string(),
                EntryPayload::Command(r) => op_text(&r.op),
            };
            let committed = en.index <= commit;
            let is_applied = en.index <= applied;
            let short = match &en.payload {
                EntryPayload::Noop => "·".to_string(),
                EntryPayload::Command(r) => match &r.op {
                    KvOp::Put { key, .. } => format!("{}=", String::from_utf8_lossy(key).chars().take(3).collect::<String>()),
                    KvOp::Get { key } => format!("{}?", String::from_utf8_lossy(key).chars().take(3).collect::<String>()),
                    KvOp::Delete { key } => format!("-{}", String::from_utf8_lossy(key).chars().take(3).collect::<String>()),
                },
            };
            html! {
                <span class={classes!("entry", (!committed).then_some("uncommitted"), (en.index == commit).then_some("commit-mark"), (en.index == applied).then_some("applied-mark"))}
                      style={format!("background:{}", term_color(en.term))}
                      title={format!("index {} · term {} · {}{}{}", en.index, en.term, what, if committed { " · committed" } else { " · not committed" }, if is_applied { " · applied" } else { "" })}>
                    <span class="et">{en.term}</span>
                    <span class="eo">{short}</span>
                </span>
            }
        });
        let kv: Vec<String> = sn
            .server
            .as_ref()
            .map(|s| {
                s.kv()
                    .iter()
                    .map(|(k, v)| format!("{}={}", String::from_utf8_lossy(k), String::from_utf8_lossy(v)))
                    .collect()
            })
            .unwrap_or_default();
        let term = raft.map_or(sn.storage.hard_state.term, |r| r.term());
        html! {
            <tr data-testid={format!("row-{id}")}>
                <td class="nid"><span class="dot" style={format!("background:{}", role_color(role))}></span>{format!("n{id}")}</td>
                <td class="role">{role_label(role, sn.paused)}</td>
                <td class="num">{term}</td>
                <td class="num" data-testid={format!("commit-{id}")}>{commit}</td>
                <td class="num" data-testid={format!("applied-{id}")}>{applied}</td>
                <td class="log" data-testid={format!("log-{id}")}>
                    if snap > 0 { <span class="snap" title="entries up to here are compacted into a snapshot">{format!("⟦snapshot ≤{snap}⟧")}</span> }
                    if skip > 0 { <span class="more">{format!("…{skip}")}</span> }
                    { for cells }
                </td>
                <td class="kv" data-testid={format!("kv-{id}")}>{ if sn.server.is_none() { "(down: memory lost)".to_string() } else if kv.is_empty() { "∅".to_string() } else { kv.join("  ") } }</td>
            </tr>
        }
    });
    html! {
        <div class="card logs">
            <table>
                <thead><tr>
                    <th>{"node"}</th><th>{"role"}</th><th>{"term"}</th><th title="commit index">{"commit"}</th><th title="applied index">{"applied"}</th>
                    <th>{"log (number & colour = term · faded = uncommitted · ▌ commit · ▁ applied)"}</th><th>{"key-value store"}</th>
                </tr></thead>
                <tbody>{ for rows }</tbody>
            </table>
        </div>
    }
}

fn live_view(state: &UseReducerHandle<Ui>) -> Html {
    let now = now_ms();
    let live = state.live.borrow();
    let leader = live.leader(now);
    let n = live.nodes.len().max(1);
    let nodes = live.nodes.iter().enumerate().map(|(i, ln)| {
        let dead = ln.is_dead(now);
        let s = ln.status.as_ref();
        let role = if dead { None } else { s.map(|s| s.role) };
        let id = s.map_or(i as u64 + 1, |s| s.id);
        let (x, y) = pos(n, i as u64 + 1);
        html! {
            <g class={classes!("node", if dead { "crashed" } else { role.map_or("follower", |r| r.name()) })}
               transform={format!("translate({x:.1},{y:.1})")}
               data-testid={format!("live-node-{}", i + 1)} data-state={if dead { "dead" } else { "alive" }}
               data-role={role.map_or("unknown", |r| r.name())}>
                if role == Some(Role::Leader) { <circle class="leader-ring" r={(NODE_R + 5.0).to_string()} /> }
                <circle class="body" r={NODE_R.to_string()} fill={role_color(role)} />
                <text class="node-id" y="-8">{format!("n{id}")}</text>
                <text class="node-role" y="8">{ if dead { "✕ DEAD" } else { role_label(role, false) } }</text>
                <text class="node-term" y="22">{ s.map_or(String::new(), |s| format!("term {}", s.term)) }</text>
                <text class="node-vote" y={(NODE_R + 26.0).to_string()}>{ln.addr.clone()}</text>
            </g>
        }
    });
    let mut live_links = Vec::new();
    for a in 1..=n as u64 {
        for b in (a + 1)..=n as u64 {
            let (x1, y1) = pos(n, a);
            let (x2, y2) = pos(n, b);
            live_links.push(html! {
                <g class="link"><line class="link-line" x1={x1.to_string()} y1={y1.to_string()} x2={x2.to_string()} y2={y2.to_string()} /></g>
            });
        }
    }
    let rows = live.nodes.iter().enumerate().map(|(i, ln)| {
        let dead = ln.is_dead(now);
        let s = ln.status.as_ref();
        let f = |v: Option<String>| v.unwrap_or_else(|| "–".into());
        html! {
            <tr data-testid={format!("live-row-{}", i + 1)}>
                <td>{ln.addr.clone()}</td>
                <td data-testid={format!("live-status-{}", i + 1)} class={if dead { "dead" } else { "alive" }}>
                    { if dead { if ln.connected { "dead (silent > 1 s)" } else { "dead (disconnected)" } } else { "alive" } }
                </td>
                <td>{f(s.map(|s| s.role.name().to_string()))}</td>
                <td>{f(s.map(|s| s.term.to_string()))}</td>
                <td>{f(s.and_then(|s| s.leader).map(|l| format!("n{l}")))}</td>
                <td>{f(s.map(|s| s.commit_index.to_string()))}</td>
                <td>{f(s.map(|s| s.applied_index.to_string()))}</td>
                <td>{f(s.map(|s| s.last_index.to_string()))}</td>
                <td>{ln.events}</td>
            </tr>
        }
    });
    let events = live.events.iter().rev().take(60).map(|(i, t, k)| {
        let ev = keyval_core::sim::TraceEvent { time: 0, kind: k.clone() };
        let text = narrate(&ev, false, false).map_or_else(|| k.render(), |n| n.text);
        html! { <li class="nar" data-testid="live-event"><span class="t">{format!("{:02}:{:02}:{:02}.{:03}", (t / 3_600_000) % 24, (t / 60_000) % 60, (t / 1000) % 60, t % 1000)}</span><span class="txt">{format!("[{}] {text}", live.nodes.get(*i).map_or("?", |n| n.addr.as_str()))}</span></li> }
    });
    html! {
        <main class="live">
            <section class="left">
                <div class="card cluster">
                    <div class="svgwrap">
                        <svg viewBox={format!("0 0 {VIEW_W} {VIEW_H}")} data-testid="live-cluster">
                            <g class="links">{ for live_links }</g>
                            <g class="nodes">{ for nodes }</g>
                        </svg>
                        <div class="leader-badge" data-testid="live-leader">{ leader.map_or("no leader".to_string(), |l| format!("leader: n{l}")) }</div>
                    </div>
                </div>
            </section>
            <section class="right">
                <div class="card">
                    <h2>{"Live cluster"}</h2>
                    <p class="hint">{"Each node streams its typed trace events and status over WebSocket (/events). A node whose socket closes or that stays silent for over a second is shown dead; the page reconnects with backoff. Try "}<code>{"make cluster-start"}</code>{", kill a node, or "}<code>{"kvctl put k v"}</code>{"."}</p>
                    <table class="live-table">
                        <thead><tr><th>{"node"}</th><th>{"state"}</th><th>{"role"}</th><th>{"term"}</th><th>{"leader"}</th><th>{"commit"}</th><th>{"applied"}</th><th>{"last"}</th><th>{"events"}</th></tr></thead>
                        <tbody>{ for rows }</tbody>
                    </table>
                </div>
                <div class="card narration">
                    <h2>{"Events"}</h2>
                    <ol class="nar-list">{ for events }</ol>
                </div>
            </section>
        </main>
    }
}
