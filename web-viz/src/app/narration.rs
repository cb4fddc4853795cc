//! The narration panel: what the cluster just did, in words, with the rule behind it.

use yew::prelude::*;

use super::format::fmt_time;
use crate::engine::Engine;
use crate::narrate::narrate;
use crate::scenarios::SCENARIOS;
use crate::state::{Msg, Ui};

pub fn narration_panel(state: &UseReducerHandle<Ui>, e: &Engine) -> Html {
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
