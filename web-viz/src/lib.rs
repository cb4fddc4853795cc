//! KeyVal playground: the real `keyval-core` Raft simulator compiled to WebAssembly, with a Yew
//! front end. The engine, narration, scenarios and UI reducer are platform-neutral (tested
//! natively and in the browser); the `app` module is the browser view.

pub mod course;
pub mod engine;
pub mod figure8;
pub mod narrate;
pub mod scenarios;
pub mod state;
pub mod story;

#[cfg(target_arch = "wasm32")]
pub mod app;
#[cfg(target_arch = "wasm32")]
mod live;

/// Mounts the playground on the page's body.
#[cfg(target_arch = "wasm32")]
pub fn run() {
    yew::Renderer::<app::App>::new().render();
}
