//! KeyVal playground: the real `keyval-core` Raft simulator compiled to WebAssembly, with a Yew
//! front end. The engine, narration, scenarios and UI reducer are platform-neutral (tested
//! natively and in the browser); the `app` module is the browser view.

pub mod course;
pub mod engine;
pub mod figure8;
pub mod layout;
pub mod lease_story;
pub mod member_action;
pub mod membership_view;
pub mod narrate;
pub mod scenario_player;
pub mod scenarios;
pub mod state;
pub mod story;

#[cfg(target_arch = "wasm32")]
pub mod app;
#[cfg(target_arch = "wasm32")]
mod live;

/// Mounts the playground on the page's body, or the scenario player when the URL asks for a
/// scenario (`?scn=NAME`).
#[cfg(target_arch = "wasm32")]
pub fn run() {
    let search = web_sys::window()
        .and_then(|w| w.location().search().ok())
        .unwrap_or_default();
    let wants_scenario =
        web_sys::UrlSearchParams::new_with_str(&search).is_ok_and(|p| p.has("scn"));
    if wants_scenario {
        yew::Renderer::<scenario_player::ScenarioPage>::new().render();
    } else {
        yew::Renderer::<app::App>::new().render();
    }
}
