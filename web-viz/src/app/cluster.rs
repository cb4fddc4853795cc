//! The cluster drawing: nodes on a ring with their election timers, the links between them and
//! the messages in flight, positioned by the displayed virtual time. Nodes, links and messages
//! are buttons: reachable with Tab, activated with Enter or Space.

use keyval_core::sim::Addr;
use keyval_core::Role;
use wasm_bindgen::JsCast;
use yew::prelude::*;

use super::format::fmt_time;
use super::forms::click;
use super::geometry::{Layout, CUT_RADIUS, CX, CY, NODE_R, VIEW_H, VIEW_W};
use super::legend::legend;
use super::node_card::node_card;
use super::palette::{msg_style, role_color, role_label};
use super::reads::{lease_bar, read_queue};
use crate::engine::{Engine, Flight, UserAction};
use crate::member_action::MemberAction;
use crate::membership_view::{CatchUp, Half, MembershipView, Standing};
use crate::state::{Msg, Ui};
use keyval_core::sim::FaultAction;
use keyval_core::NodeId;

/// Enter or Space on a focused drawing element does what a click does.
fn on_key(d: &UseReducerDispatcher<Ui>, m: Msg) -> Callback<KeyboardEvent> {
    let d = d.clone();
    Callback::from(move |e: KeyboardEvent| {
        if e.key() == "Enter" || e.key() == " " {
            e.prevent_default();
            d.dispatch(m.clone());
        }
    })
}

/// The pointer's place in the drawing's units (the SVG scales to fit its box, centred).
fn svg_point(ev: &PointerEvent) -> Option<(f64, f64)> {
    let r = drawing_of(ev)?.get_bounding_client_rect();
    let scale = (r.width() / VIEW_W).min(r.height() / VIEW_H);
    if scale <= 0.0 {
        return None;
    }
    let ox = r.left() + (r.width() - VIEW_W * scale) / 2.0;
    let oy = r.top() + (r.height() - VIEW_H * scale) / 2.0;
    Some((
        (ev.client_x() as f64 - ox) / scale,
        (ev.client_y() as f64 - oy) / scale,
    ))
}

/// The cluster drawing the event happened in. (Yew listens on the document, so the event's
/// current target is not the drawing.)
fn drawing_of(ev: &PointerEvent) -> Option<web_sys::Element> {
    let el: web_sys::Element = ev.target()?.dyn_into().ok()?;
    el.closest("svg[data-testid=\"cluster\"]").ok().flatten()
}

fn on_pointer(d: &UseReducerDispatcher<Ui>, m: fn(f64, f64) -> Msg) -> Callback<PointerEvent> {
    let d = d.clone();
    Callback::from(move |ev: PointerEvent| {
        if let Some((x, y)) = svg_point(&ev) {
            d.dispatch(m(x, y));
        }
    })
}

pub fn cluster_card(state: &UseReducerHandle<Ui>, e: &Engine) -> Html {
    let d = state.dispatcher();
    let leader = e.sim.leader();
    let layout = Layout::of(e);
    let view = MembershipView::of(e);
    let dragging = state.drag.is_some();
    html! {
        <div class="card cluster">
            <div class="svgwrap">
                <svg viewBox={format!("0 0 {VIEW_W} {VIEW_H}")} data-testid="cluster" role="group" aria-label="The cluster: nodes, links and messages in flight. Drag a node across the partition line to cut it off."
                    class={classes!(dragging.then_some("dragging"))}
                    onpointermove={state.drag.map_or(Callback::noop(), |dr| on_drag_move(&d, dr.from))}
                    onpointerup={if dragging { on_pointer(&d, Msg::DragEnd) } else { Callback::noop() }}
                    onpointercancel={if dragging { click_pointer(&d, Msg::DragCancel) } else { Callback::noop() }}
                    onpointerleave={if dragging { click_pointer(&d, Msg::DragCancel) } else { Callback::noop() }}>
                    { partition_line(state, &layout) }
                    <g class="links">{ links(&d, e, &layout) }</g>
                    <g class="client" transform={format!("translate({CX},{CY})")} aria-hidden="true">
                        <rect x="-30" y="-16" width="60" height="32" rx="6" />
                        <text y="6">{"client"}</text>
                    </g>
                    { joint_halves(&view, &layout) }
                    <g class="nodes">{ nodes(state, e, &view, &layout) }</g>
                    <g class="msgs">{ messages(state, e, &layout) }</g>
                    { drag_ghost(state, &layout) }
                    { joint_caption(&view) }
                </svg>
                { read_queue(e) }
                { node_card(state, e).unwrap_or_default() }
                { members_badge(&d, &view) }
                <div class="leader-badge" data-testid="leader">
                    { match leader { Some(l) => format!("leader: n{l}"), None => "no leader".to_string() } }
                </div>
            </div>
            if let Some(f) = state.inspected.clone() {
                <div class="inspector" data-testid="msg-inspector">
                    <b>{format!("#{} {}", f.id, f.payload.kind())}</b>
                    {format!(" {}→{} · sent {} · arrives {} · ", f.from, f.to, fmt_time(f.sent_at), fmt_time(f.deliver_at))}
                    <code>{f.payload.summary()}</code>
                    if e.inflight.contains_key(&f.id) {
                        <button class="drop-msg" data-testid="drop-msg" onclick={click(&d, Msg::Act(UserAction::Fault(FaultAction::DropMessage(f.id))))}
                            title="Lose this message on the wire (Delete on a focused message)">{"✕ Drop this message"}</button>
                    } else {
                        <span class="muted">{" (no longer on the wire)"}</span>
                    }
                    <button class="x" aria-label="Close the message inspector" onclick={click(&d, Msg::InspectMsg(None))}>{"✕"}</button>
                </div>
            }
            { legend() }
        </div>
    }
}

/// Follows a dragged node. Once it has really moved, the drawing captures the pointer, so the
/// release reaches it even over the badges on top of it (a click without movement stays a
/// click on the node).
fn on_drag_move(d: &UseReducerDispatcher<Ui>, from: (f64, f64)) -> Callback<PointerEvent> {
    let d = d.clone();
    Callback::from(move |ev: PointerEvent| {
        let Some((x, y)) = svg_point(&ev) else { return };
        if (x - from.0).hypot(y - from.1) > 8.0 {
            if let Some(el) = drawing_of(&ev) {
                let _ = el.set_pointer_capture(ev.pointer_id());
            }
        }
        d.dispatch(Msg::DragMove(x, y));
    })
}

fn click_pointer(d: &UseReducerDispatcher<Ui>, m: Msg) -> Callback<PointerEvent> {
    let d = d.clone();
    Callback::from(move |_: PointerEvent| d.dispatch(m.clone()))
}

/// The partition line: between the two sides of a split cluster, or (while a node is dragged
/// in a whole one) the circle outside the ring beyond which a node is cut off.
fn partition_line(state: &UseReducerHandle<Ui>, layout: &Layout) -> Html {
    if layout.split {
        html! {
            <g class="partition-line" data-testid="partition-line" aria-hidden="true">
                <line x1={CX.to_string()} y1="8" x2={CX.to_string()} y2={(VIEW_H - 8.0).to_string()} />
                <text x={(CX + 6.0).to_string()} y="22">{"partition"}</text>
            </g>
        }
    } else if state.drag.is_some() {
        html! {
            <g class="partition-line" data-testid="partition-line" aria-hidden="true">
                <circle cx={CX.to_string()} cy={CY.to_string()} r={CUT_RADIUS.to_string()} />
                <text x={CX.to_string()} y={(CY - CUT_RADIUS - 6.0).max(14.0).to_string()} text-anchor="middle">{"drop outside to cut it off"}</text>
            </g>
        }
    } else {
        Html::default()
    }
}

/// The node being dragged, drawn under the pointer (the node stays put until it is dropped).
fn drag_ghost(state: &UseReducerHandle<Ui>, layout: &Layout) -> Html {
    let Some(dr) = state.drag else {
        return Html::default();
    };
    let crosses = layout.crosses(dr.node, dr.at.0, dr.at.1);
    html! {
        <g class={classes!("drag-ghost", crosses.then_some("crosses"))} data-testid="drag-ghost" transform={format!("translate({:.1},{:.1})", dr.at.0, dr.at.1)} aria-hidden="true">
            <circle r={NODE_R.to_string()} />
            <text y="6">{format!("n{}", dr.node)}</text>
        </g>
    }
}

/// While a joint configuration is in force: a ring around each voter of the old half and one
/// around each voter of the new half (a node in both wears both), so both majorities the
/// leader needs are visible.
fn joint_halves(view: &MembershipView, layout: &Layout) -> Html {
    let Some(j) = &view.joint else {
        return Html::default();
    };
    let ring = |half: &Half, class: &'static str, r: f64| {
        half.voters
            .iter()
            .map(|&id| {
                let (x, y) = layout.pos(id);
                html! { <circle class={classes!("half-ring", class)} data-testid={format!("{class}-{id}")} cx={format!("{x:.1}")} cy={format!("{y:.1}")} r={r.to_string()} /> }
            })
            .collect::<Html>()
    };
    html! {
        <g class="joint" aria-hidden="true">
            { ring(&j.old, "half-old", NODE_R + 15.0) }
            { ring(&j.new, "half-new", NODE_R + 20.0) }
        </g>
    }
}

/// The live membership in a few words, and the quickest way to grow it: the size picker only
/// sets the voters of a new run.
fn members_badge(d: &UseReducerDispatcher<Ui>, view: &MembershipView) -> Html {
    let learners = view.membership.learners.len();
    let voters = match &view.joint {
        Some(j) => format!("joint {}→{} voters", j.old.voters.len(), j.new.voters.len()),
        None => format!("{} voters", view.membership.voters.len()),
    };
    let text = match learners {
        0 => voters,
        1 => format!("{voters} + 1 learner"),
        n => format!("{voters} + {n} learners"),
    };
    html! {
        <div class="members-badge" data-testid="live-members">
            {text}
            <button data-testid="add-node" onclick={click(d, Msg::Member(MemberAction::AddLearner))}
                title="Add a node to this run, as a learner (the Members tab has every change)">{"+ node"}</button>
        </div>
    }
}

/// The caption of the joint configuration: each half, its majority, and how many of it hold
/// the leader's last entry.
fn joint_caption(view: &MembershipView) -> Html {
    let Some(j) = &view.joint else {
        return Html::default();
    };
    let line = |h: &Half, name: &str| {
        let ids: Vec<String> = h.voters.iter().map(|i| format!("n{i}")).collect();
        let ok = if h.holding_last >= h.majority {
            "✓"
        } else {
            "…"
        };
        format!(
            "{name} {}: need {}, have {} {ok}",
            ids.join(" "),
            h.majority,
            h.holding_last
        )
    };
    html! {
        <g class="joint-caption" data-testid="joint-config" data-old={j.old.voters.len().to_string()} data-new={j.new.voters.len().to_string()}>
            <title>{"While the joint configuration is in force, every commit and every election needs a majority of the old voters AND a majority of the new voters. \"have\": voters holding the leader's last entry."}</title>
            <rect x="4" y="40" width="200" height="56" rx="6" />
            <text x="10" y="56" class="title">{"joint: both majorities"}</text>
            <text x="10" y="72" class="half-old">{line(&j.old, "old")}</text>
            <text x="10" y="88" class="half-new">{line(&j.new, "new")}</text>
        </g>
    }
}

/// A learner's catch-up bar: how much of the leader's log it holds, green once a promotion
/// would pass the promotion-lag rule.
fn catch_up_bar(id: NodeId, c: CatchUp) -> Html {
    let w = 2.0 * NODE_R;
    html! {
        <g class={classes!("catch-up", c.promotable().then_some("ok"))} data-testid={format!("catchup-{id}")}
           data-matched={c.matched.to_string()} data-last={c.last.to_string()} transform={format!("translate({},{})", -NODE_R, NODE_R + 32.0)}>
            <rect class="track" width={w.to_string()} height="7" rx="3" />
            <rect class="fill" width={format!("{:.1}", w * c.fraction())} height="7" rx="3" />
            <text x={NODE_R.to_string()} y="19">{format!("log {}/{}", c.matched, c.last)}</text>
        </g>
    }
}

/// Links between every pair of nodes; click to cut or restore.
fn links(d: &UseReducerDispatcher<Ui>, e: &Engine, layout: &Layout) -> Html {
    let mut out = Vec::new();
    let ids = e.sim.node_ids();
    for (i, &a) in ids.iter().enumerate() {
        for &b in &ids[i + 1..] {
            let (x1, y1) = layout.pos(a);
            let (x2, y2) = layout.pos(b);
            let cut = e.sim.network().is_cut(a, b) || e.sim.network().is_cut(b, a);
            let (mx, my) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
            let label = if cut {
                format!("Link n{a}–n{b} is cut: activate to restore it")
            } else {
                format!("Link n{a}–n{b}: activate to cut it")
            };
            out.push(html! {
                <g class={classes!("link", cut.then_some("cut"))}
                   data-testid={format!("link-{a}-{b}")} data-cut={cut.to_string()}
                   tabindex="0" role="button" aria-label={label.clone()}
                   onclick={click(d, Msg::ToggleLink(a, b))} onkeydown={on_key(d, Msg::ToggleLink(a, b))}>
                    <title>{label}</title>
                    <line class="link-line" x1={x1.to_string()} y1={y1.to_string()} x2={x2.to_string()} y2={y2.to_string()} />
                    <line class="link-hit" x1={x1.to_string()} y1={y1.to_string()} x2={x2.to_string()} y2={y2.to_string()} />
                    if cut {
                        <text class="cut-mark" aria-hidden="true" x={mx.to_string()} y={(my + 6.0).to_string()}>{"✂"}</text>
                    }
                </g>
            });
        }
    }
    out.into_iter().collect()
}

/// Messages in flight, each at the fraction of its trip the displayed time has reached.
fn messages(state: &UseReducerHandle<Ui>, e: &Engine, layout: &Layout) -> Html {
    let d = state.dispatcher();
    let t = state.display_time;
    let inspected = state.inspected.as_ref().map(|f| f.id);
    let client_entry = e.client_entry_index();
    let flights: Vec<&Flight> = e.inflight.values().collect();
    flights
        .iter()
        .map(|f| {
            let (x1, y1) = layout.addr_pos(f.from);
            let (x2, y2) = layout.addr_pos(f.to);
            let span = f.deliver_at.saturating_sub(f.sent_at).max(1) as f64;
            let p = (t.saturating_sub(f.sent_at) as f64 / span).clamp(0.0, 1.0);
            // Offset each direction a little so requests and responses do not overlap.
            let (dx, dy) = (x2 - x1, y2 - y1);
            let len = (dx * dx + dy * dy).sqrt().max(1.0);
            let side = if f.from < f.to { 18.0 } else { -18.0 };
            let (ox, oy) = (-dy / len * side, dx / len * side);
            // Start and end at the node's rim, not its centre.
            let r0 = if matches!(f.from, Addr::Node(_)) { NODE_R / len } else { 0.0 };
            let r1 = if matches!(f.to, Addr::Node(_)) { NODE_R / len } else { 0.0 };
            let q = r0 + p * (1.0 - r0 - r1);
            let x = x1 + dx * q + ox;
            let y = y1 + dy * q + oy;
            let (color, label, hollow) = msg_style(&f.payload);
            let follow = e.follows_client(f, client_entry);
            let round = e.read_round_of(f);
            let label = round.map_or(label.to_string(), |r| format!("R{r}"));
            let what = match round {
                Some(r) => format!("read confirmation round R{r}: "),
                None => String::new(),
            };
            let tip = format!("Message #{} {} {}→{}: {what}{}. Enter: inspect; Delete: drop it.", f.id, f.payload.kind(), f.from, f.to, f.payload.summary());
            html! {
                <g class={classes!("msg", follow.then_some("follow"), round.is_some().then_some("read-confirm"), (inspected == Some(f.id)).then_some("inspected"))} transform={format!("translate({x:.1},{y:.1})")}
                   data-testid="msg" data-kind={f.payload.kind()} data-id={f.id.to_string()} data-progress={format!("{p:.4}")}
                   data-round={round.map(|r| r.to_string())}
                   tabindex="0" role="button" aria-label={tip.clone()}
                   onclick={click(&d, Msg::InspectMsg(Some(f.id)))} onkeydown={on_msg_key(&d, f.id)}>
                    <title>{tip}</title>
                    if follow { <circle class="halo" r="22" /> }
                    if round.is_some() { <circle class="read-ring" r="22" /> }
                    <circle r="17" fill={if hollow { "#ffffff" } else { color }} stroke={color} stroke-width={if hollow { "3" } else { "1.5" }} />
                    <text class={classes!("msg-label", (label.len() > 2).then_some("long"))} aria-hidden="true" y="5">{label}</text>
                </g>
            }
        })
        .collect()
}

/// Enter or Space inspects a focused message; Delete or Backspace drops it.
fn on_msg_key(d: &UseReducerDispatcher<Ui>, id: u64) -> Callback<KeyboardEvent> {
    let d = d.clone();
    Callback::from(move |e: KeyboardEvent| match e.key().as_str() {
        "Enter" | " " => {
            e.prevent_default();
            d.dispatch(Msg::InspectMsg(Some(id)));
        }
        "Delete" | "Backspace" => {
            e.prevent_default();
            d.dispatch(Msg::Act(UserAction::Fault(FaultAction::DropMessage(id))));
        }
        _ => {}
    })
}

fn on_node_down(d: &UseReducerDispatcher<Ui>, id: NodeId) -> Callback<PointerEvent> {
    let d = d.clone();
    Callback::from(move |ev: PointerEvent| {
        if ev.button() != 0 {
            return;
        }
        if let Some((x, y)) = svg_point(&ev) {
            d.dispatch(Msg::DragStart(id, x, y));
        }
    })
}

fn nodes(state: &UseReducerHandle<Ui>, e: &Engine, view: &MembershipView, layout: &Layout) -> Html {
    let d = state.dispatcher();
    let n = view.voter_count().max(1);
    e.sim
        .nodes()
        .values()
        .map(|sn| {
            let id = sn.id;
            let (x, y) = layout.pos(id);
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
            let role_name = role.map_or("crashed", |r| r.name());
            let member = view.row(id);
            let standing = member.map_or(Standing::Voter, |m| m.standing);
            let bar = member
                .and_then(|m| m.catch_up)
                .filter(|_| matches!(standing, Standing::Learner | Standing::Joining | Standing::Incoming));
            let class = classes!(
                "node",
                role_name,
                standing.name(),
                sn.paused.then_some("paused"),
                (state.selected == Some(id)).then_some("selected")
            );
            let vote = raft.and_then(|r| r.vote()).map_or("–".to_string(), |v| format!("n{v}"));
            // A candidate shows its tally; everyone else whom it voted for.
            let tally = e.tallies.get(&id).filter(|t| {
                matches!(role, Some(Role::Candidate | Role::PreCandidate))
                    && t.pre_vote == (role == Some(Role::PreCandidate))
            });
            let below = match tally {
                Some(t) => format!("{} {}/{}", if t.pre_vote { "pre-votes" } else { "votes" }, t.granted.len(), n),
                None => format!("vote {vote}"),
            };
            let drift = sn.drift_per_mille;
            let mut flags: Vec<String> = Vec::new();
            if sn.paused {
                flags.push("❚❚ paused".into());
            }
            if drift != 0 {
                flags.push(format!("⏱ {:+}%", drift as f64 / 10.0));
            }
            let flag = flags.join(" ");
            // Starts with the visible text, in its order, so speech input can name it.
            let label = format!(
                "n{id} {}{} term {term} {below}{}. Activate for actions.",
                role_label(role),
                if standing == Standing::Voter { String::new() } else { format!(" ({})", standing.name()) },
                if flag.is_empty() { String::new() } else { format!(" {flag}") }
            );
            html! {
                <g class={class} transform={format!("translate({x:.1},{y:.1})")}
                   data-testid={format!("node-{id}")} data-role={role_name} data-term={term.to_string()} data-standing={standing.name()}
                   data-paused={sn.paused.to_string()} data-drift={drift.to_string()}
                   tabindex="0" role="button"
                   onpointerdown={on_node_down(&d, id)}
                   onclick={click(&d, Msg::Select(Some(id)))} onkeydown={on_key(&d, Msg::Select(Some(id)))}>
                    <title>{label}</title>
                    <circle class="timer-track" r={arc_r.to_string()} />
                    if !arc.is_empty() { <path class="timer-arc" d={arc} /> }
                    if role == Some(Role::Leader) { <circle class="leader-ring" r={(NODE_R + 5.0).to_string()} /> }
                    <circle class="body" r={NODE_R.to_string()} fill={role_color(role)} />
                    <text class="node-id" y="-14">{format!("n{id}")}</text>
                    <text class="node-role" y="6">{role_label(role)}</text>
                    <text class="node-term" y="25">{format!("term {term}")}</text>
                    if standing != Standing::Voter {
                        <text class="node-standing" y={(-NODE_R - 26.0).to_string()} data-testid={format!("standing-{id}")}>{standing.name()}</text>
                    }
                    { bar.map(|c| catch_up_bar(id, c)).unwrap_or_default() }
                    <text class={classes!("node-vote", tally.is_some().then_some("tally"))} y={(NODE_R + 24.0).to_string()} data-testid={format!("below-{id}")}>{below}</text>
                    if !flag.is_empty() {
                        <text class="node-flag" data-testid={format!("flag-{id}")} y={(-NODE_R - 14.0).to_string()}>{flag}</text>
                    }
                    { raft.map(lease_bar).unwrap_or_default() }
                </g>
            }
        })
        .collect()
}
