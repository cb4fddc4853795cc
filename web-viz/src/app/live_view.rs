//! Live mode: a real cluster's nodes, status table and event stream.

use keyval_core::Role;
use yew::prelude::*;

use super::geometry::{pos, NODE_R, VIEW_H, VIEW_W};
use super::palette::{role_color, role_label};
use crate::narrate::narrate;
use crate::state::{now_ms, Ui};

pub fn live_view(state: &UseReducerHandle<Ui>) -> Html {
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
                <text class="node-role" y="8">{ if dead { "✕ DEAD" } else { role_label(role) } }</text>
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
