//! The browser view (Yew, client-side rendering), one module per part of the page.

mod break_raft;
mod client_box;
mod cluster;
mod course_panel;
mod faults;
mod files;
mod format;
mod forms;
mod geometry;
mod header;
mod history;
mod hooks;
mod legend;
mod live_view;
mod log_table;
mod members;
mod narration;
mod node_card;
pub mod palette;
mod reads;
mod tools;
mod transport;
mod url;

use std::rc::Rc;

use yew::prelude::*;

use crate::state::{Mode, Msg, Tab, Ui};
use files::Reader;

impl Reducible for Ui {
    type Action = Msg;
    fn reduce(self: Rc<Self>, action: Msg) -> Rc<Self> {
        self.apply(action)
    }
}

#[function_component(App)]
pub fn app() -> Html {
    let state = use_reducer_eq(url::initial_state);
    let reader: Reader = use_mut_ref(|| None);
    hooks::use_animation_frames(&state);
    hooks::use_keyboard_shortcuts(&state);
    hooks::use_url_sync(&state);
    hooks::use_live_links(&state);

    let d = state.dispatcher();
    let body = if state.mode == Mode::Live {
        live_view::live_view(&state)
    } else {
        sim_view(&state, reader)
    };
    html! {
        <div class="app">
            { header::header(&state) }
            if let Some(n) = state.notice.clone() {
                <div class="notice" data-testid="notice" role="status">{n}<button class="x" aria-label="Dismiss" onclick={forms::click(&d, Msg::DismissNotice)}>{"✕"}</button></div>
            }
            { body }
        </div>
    }
}

/// The simulation page: drawing, transport and log table on the left; narration, client,
/// faults and tools on the right.
fn sim_view(state: &UseReducerHandle<Ui>, reader: Reader) -> Html {
    let e = state.engine.borrow();
    html! {
        <main class="sim">
            <section class="left">
                { cluster::cluster_card(state, &e) }
                { transport::transport(state, &e) }
                { log_table::logs_panel(state, &e) }
            </section>
            <section class="right">
                { narration::narration_panel(state, &e) }
                { tools_tabs(state, &e, reader) }
            </section>
        </main>
    }
}

const TABS: [(Tab, &str, &str); 7] = [
    (Tab::Course, "course", "Course"),
    (Tab::Client, "client", "Client"),
    (Tab::Faults, "faults", "Faults"),
    (Tab::Members, "members", "Members"),
    (Tab::History, "history", "History"),
    (Tab::Break, "break", "Break Raft"),
    (Tab::Scenarios, "scenarios", "Scenarios & trace"),
];

/// The tools, one tab at a time, so the main view fits one screen.
fn tools_tabs(state: &UseReducerHandle<Ui>, e: &crate::engine::Engine, reader: Reader) -> Html {
    let d = state.dispatcher();
    let buttons = TABS.iter().map(|(tab, id, name)| {
        let on = state.tab == *tab;
        html! {
            <button role="tab" id={format!("tab-{id}")} data-testid={format!("tab-{id}")} aria-selected={on.to_string()}
                aria-controls="tabpanel" onclick={forms::click(&d, Msg::Tab(*tab))}>{*name}</button>
        }
    });
    let panel = match state.tab {
        Tab::Course => course_panel::course_panel(state),
        Tab::Client => client_box::client_box(state, e),
        Tab::Faults => faults::faults_panel(state, e),
        Tab::History => history::history_panel(e),
        Tab::Break => break_raft::break_panel(state, e),
        Tab::Scenarios => tools::tools_panel(state, reader),
        Tab::Members => members::members_panel(state, e),
    };
    let label = TABS
        .iter()
        .find(|(t, ..)| *t == state.tab)
        .map_or("course", |(_, id, _)| *id);
    html! {
        <div class="card tools-tabs">
            <div class="tabs" role="tablist" aria-label="Tools">{ for buttons }</div>
            <div class="tabpanel" id="tabpanel" role="tabpanel" aria-labelledby={format!("tab-{label}")}>{panel}</div>
        </div>
    }
}
