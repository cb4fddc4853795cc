//! The narration panel: what the cluster just did, in words, with the rule behind it. It reads
//! top-down, oldest first, one line per cause (see `story`), and scrolls with the story.

use yew::prelude::*;

use super::format::fmt_time;
use crate::engine::Engine;
use crate::scenarios::SCENARIOS;
use crate::state::{Msg, Ui};
use crate::story::{story, Filters};

/// Lines kept in the panel.
const LINES: usize = 40;
/// After this long without a narrated event, say that the cluster is quiet, and why.
const QUIET_US: u64 = 500_000;

pub fn narration_panel(state: &UseReducerHandle<Ui>, e: &Engine) -> Html {
    let d = state.dispatcher();
    let filters = Filters {
        heartbeats: state.show_heartbeats,
        deliveries: state.show_deliveries,
    };
    let lines = story(e, filters, LINES);
    let newest = lines.last().map(|l| l.time);
    let quiet = newest
        .filter(|t| e.now() > t + QUIET_US && !state.show_heartbeats)
        .map(|t| {
            let leader = e.sim.leader().map_or(String::new(), |l| {
                format!("leader n{l} keeps its followers from timing out with ")
            });
            html! {
                <li class="nar quiet">
                    <span class="t">{fmt_time(e.now())}</span>
                    <span class="txt">{format!("All quiet since {}: {leader}heartbeats (tick “heartbeats” to see them, or Step to see each event).", fmt_time(t))}</span>
                </li>
            }
        });
    let items = lines.into_iter().map(|l| {
        html! {
            <li class={classes!("nar", l.class, l.latest.then_some("latest"))} data-testid="narration-item">
                <span class="t">{fmt_time(l.time)}</span>
                <span class="txt">{l.sentence()}</span>
                if !l.rule.is_empty() { <span class="rule">{l.rule}</span> }
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
            <div class="nar-scroll" tabindex="0" role="region" aria-label="Narration, oldest first">
                <ol class="nar-list" data-testid="narration">{ for items }{ for quiet }</ol>
            </div>
        </div>
    }
}
