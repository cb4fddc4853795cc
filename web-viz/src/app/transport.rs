//! The transport controls: play, step, step back, speed, the timeline and the counters.

use web_sys::HtmlInputElement;
use yew::prelude::*;

use super::format::{fmt_rate, fmt_time};
use super::forms::click;
use keyval_core::sim::FaultAction;

use crate::engine::{Engine, UserAction};
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
                <button data-testid="play" data-transport="" class="primary big" onclick={cb(Msg::TogglePlay)} title="Play / pause (space)">
                    { if state.playing { "❚❚ Pause" } else { "▶ Play" } }
                </button>
                <button data-testid="step-back" data-transport="" aria-label="Step back one event" onclick={cb(Msg::StepBack)} title="Previous event (←): replays the run from its seed">{"|◂"}</button>
                <button data-testid="step" data-transport="" class="big" onclick={cb(Msg::Step)} title="Next event (→)">{"Step ▸|"}</button>
                <label class="speed">{"Speed "}
                    <input data-testid="speed" type="range" min="0" max="100" step="1" value={state.speed.to_string()} oninput={on_speed} />
                    <span class="val" data-testid="speed-value">{speed_text}</span>
                    if state.saturated && state.playing { <span class="warn">{" (max)"}</span> }
                </label>
            </div>
            <div class="row timeline">
                <div class="timeline-wrap">
                    { markers(&d, e) }
                    <input data-testid="timeline" aria-label="Timeline: drag back in time" type="range" min="0" max={e.horizon.to_string()} value={e.step_count().to_string()} oninput={on_seek} title="Drag back in time: the run is replayed from its seed" />
                </div>
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

/// At most this many markers: a long run with many actions keeps a readable timeline.
const MAX_MARKERS: usize = 80;

/// Markers above the timeline for what was done to the cluster (crashes, partitions, client
/// requests, scripted steps), placed at their simulator step; activating one jumps there.
fn markers(d: &UseReducerDispatcher<Ui>, e: &Engine) -> Html {
    let horizon = e.horizon.max(1) as f64;
    // One marker per bucket of the timeline (4%, about a finger's width), so none overlap.
    let mut buckets: Vec<(u64, &'static str, &'static str, Vec<String>)> = Vec::new();
    for a in e.actions.iter().take(MAX_MARKERS) {
        let (icon, class, what) = match &a.action {
            UserAction::Submit(op) => (
                "✉",
                "client",
                format!("client sends {}", keyval_core::sim::trace::op_text(op)),
            ),
            UserAction::SubmitTo {
                op,
                consistency,
                node,
            } => (
                "✉",
                "client",
                format!(
                    "client sends {}{}{}",
                    keyval_core::sim::trace::op_text(op),
                    consistency.map_or(String::new(), |c| format!(" ({})", c.name())),
                    node.map_or(String::new(), |n| format!(" to n{n}"))
                ),
            ),
            UserAction::Member(m) => ("⚙", "member", m.describe()),
            UserAction::Fault(f) => match f {
                FaultAction::Crash(n) => ("✕", "fault", format!("n{n} crashes")),
                FaultAction::Restart(n) => ("↻", "fault", format!("n{n} restarts")),
                FaultAction::Pause(n) => ("‖", "fault", format!("n{n} paused")),
                FaultAction::Resume(n) => ("▶", "fault", format!("n{n} resumes")),
                FaultAction::Partition(_) => ("⧉", "fault", "network partitioned".to_string()),
                FaultAction::CutLink(a, b) => ("✂", "fault", format!("link n{a}→n{b} cut")),
                FaultAction::RestoreLink(a, b) => {
                    ("⎯", "fault", format!("link n{a}→n{b} restored"))
                }
                FaultAction::Heal | FaultAction::StopFaults => {
                    ("✚", "fault", "network healed".to_string())
                }
                FaultAction::ElectionTimeout(n) => {
                    ("⏰", "fault", format!("n{n} forced to time out"))
                }
                FaultAction::DropMessage(id) => ("✕", "fault", format!("message #{id} dropped")),
                FaultAction::SetClockDrift(n, d) => (
                    "⏱",
                    "fault",
                    format!("n{n}'s clock {:+}%", *d as f64 / 10.0),
                ),
                _ => ("•", "script", "network settings changed".to_string()),
            },
        };
        let bucket = (a.step as f64 / horizon * 25.0) as u64;
        match buckets.last_mut() {
            Some(last) if (last.0 as f64 / horizon * 25.0) as u64 == bucket => last.3.push(what),
            _ => buckets.push((a.step, icon, class, vec![what])),
        }
    }
    let items = buckets.into_iter().map(|(step, icon, class, whats)| {
        let left = (step as f64 / horizon * 100.0).clamp(2.0, 98.0);
        let label = format!("Jump to step {step}: {}", whats.join(", "));
        html! {
            <button class={classes!("marker", class)} data-testid="timeline-marker" style={format!("left:{left:.2}%")}
                title={label.clone()} aria-label={label} onclick={click(d, Msg::Seek(step))}>{icon}</button>
        }
    });
    html! { <div class="markers">{ for items }</div> }
}
