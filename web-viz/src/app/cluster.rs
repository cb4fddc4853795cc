//! The cluster drawing: nodes on a ring with their election timers, the links between them and
//! the messages in flight, positioned by the displayed virtual time.

use keyval_core::sim::Addr;
use keyval_core::Role;
use yew::prelude::*;

use super::format::fmt_time;
use super::forms::click;
use super::geometry::{addr_pos, pos, CX, CY, NODE_R, VIEW_H, VIEW_W};
use super::legend::legend;
use super::node_card::node_card;
use super::palette::{msg_style, role_color, role_label};
use crate::engine::{Engine, Flight};
use crate::state::{Msg, Ui};

pub fn cluster_card(state: &UseReducerHandle<Ui>, e: &Engine) -> Html {
    let d = state.dispatcher();
    let cb = |m: Msg| click(&d, m);
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

    let menu = node_card(state, e);

    html! {
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
    }
}
