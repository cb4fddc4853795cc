//! Network and node faults: partitions, drop rate, latency.

use keyval_core::sim::FaultAction;
use web_sys::HtmlInputElement;
use yew::prelude::*;

use super::forms::click;
use crate::engine::{Engine, UserAction};
use crate::state::{Msg, Ui};

pub fn faults_panel(state: &UseReducerHandle<Ui>, e: &Engine) -> Html {
    let d = state.dispatcher();
    let cb = |m: Msg| click(&d, m);
    let n = e.cfg.nodes;
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
    // While the network is split, the buttons show the sides it really has; otherwise the
    // learner's draft of the next split.
    let actual = e.sides();
    let lat = state_latency(e);
    let drop_rate = e.sim.network().config.drop_rate;
    let groups = (1..=n as u64).map(|id| {
        let g = actual
            .as_ref()
            .and_then(|s| s.get(id as usize - 1).copied())
            .unwrap_or_else(|| state.groups.get(id as usize - 1).copied().unwrap_or(0));
        let next = (g + 1) % 3;
        html! {
            <button class={format!("grp g{g}")} data-testid={format!("group-{id}")} onclick={cb(Msg::SetGroup(id, next))}
                title="Click to move this node to the next group" aria-label={format!("n{id} is in group {}: activate to move it to the next group", ["A", "B", "C"][g.min(2) as usize])}>
                {format!("n{id}·{}", ["A", "B", "C"][g.min(2) as usize])}
            </button>
        }
    });
    html! {
        <div class="faults">

            <p class="hint">{"Click a node to crash, restart, pause, time it out or skew its clock. Click a link to cut it; drag a node across the partition line to cut it off. Click a message to drop it."}</p>
            <div class="row groups">{"Partition: "}{ for groups }
                <button data-testid="partition-apply" onclick={cb(Msg::ApplyPartition)}>{"Split"}</button>
                <button data-testid="heal" class="primary" onclick={cb(Msg::Act(UserAction::Fault(FaultAction::Heal)))}>{"Heal"}</button>
            </div>
            <label class="row">{"Drop rate "}
                <input data-testid="drop-rate" type="range" min="0" max="50" step="1" value={((drop_rate * 100.0).round() as u32).to_string()} onchange={on_drop} />
                <span class="val">{format!("{:.0}%", drop_rate * 100.0)}</span>
            </label>
            <label class="row">{"Latency "}
                <input data-testid="latency" type="range" min="1" max="100" step="1" value={lat.1.to_string()} onchange={on_lat} />
                <span class="val">{format!("{}–{} ms", lat.0, lat.1)}</span>
            </label>
        </div>
    }
}

/// One-way latency range (ms) the simulated network has now; a scenario may have set it.
fn state_latency(e: &Engine) -> (u64, u64) {
    let (lo, hi) = e.sim.network().config.latency_us;
    ((lo / 1000).max(1), (hi / 1000).max(1))
}
