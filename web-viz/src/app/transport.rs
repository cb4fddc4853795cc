//! The transport controls: play, step, step back, speed, the timeline and the counters.

use web_sys::HtmlInputElement;
use yew::prelude::*;

use super::format::{fmt_rate, fmt_time};
use super::forms::click;
use crate::engine::Engine;
use crate::state::{speed_factor, Msg, Ui};

pub fn transport(state: &UseReducerHandle<Ui>, e: &Engine) -> Html {
    let d = state.dispatcher();
    let cb = |m: Msg| click(&d, m);
    let t = state.display_time;
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
}
