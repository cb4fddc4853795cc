//! The page header: title, mode switch and the run setup (nodes, seed).

use wasm_bindgen::JsCast;
use web_sys::{HtmlInputElement, HtmlSelectElement};
use yew::prelude::*;

use super::forms::{click, field_input};
use crate::state::{Field, Mode, Msg, Ui};

pub fn header(state: &UseReducerHandle<Ui>) -> Html {
    let d = state.dispatcher();
    let cb = |m: Msg| click(&d, m);
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
            </nav>
            if sim {
                <div class="runbar">
                    <label title="Voters of a new run; change a running cluster with + node on the drawing or the Members tab">{"Nodes "}
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
}
