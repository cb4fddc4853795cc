//! The browser view (Yew, client-side rendering), one module per part of the page.

mod client_box;
mod cluster;
mod faults;
mod files;
mod format;
mod forms;
mod geometry;
mod header;
mod hooks;
mod legend;
mod live_view;
mod log_table;
mod narration;
mod node_card;
pub mod palette;
mod tools;
mod transport;
mod url;

use std::rc::Rc;

use yew::prelude::*;

use crate::state::{Mode, Msg, Ui};
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
                <div class="notice" data-testid="notice" onclick={forms::click(&d, Msg::DismissNotice)}>{n}<span class="x">{" ✕"}</span></div>
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
                { client_box::client_box(state, &e) }
                { faults::faults_panel(state, &e) }
                { tools::tools_panel(state, reader) }
            </section>
        </main>
    }
}
