//! Guided scenarios, trace export and import, and the simulator speed measurement.

use web_sys::HtmlInputElement;
use yew::prelude::*;

use super::files::{download, Reader};
use super::format::fmt_rate;
use super::forms::click;
use crate::engine::TraceFile;
use crate::scenarios::SCENARIOS;
use crate::state::{Msg, Ui};

pub fn tools_panel(state: &UseReducerHandle<Ui>, reader: Reader) -> Html {
    let d = state.dispatcher();
    let cb = |m: Msg| click(&d, m);
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
    html! {
        <div class="tools">
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
    }
}
