//! Effects the app runs for its whole life: the animation loop, keyboard shortcuts, the URL
//! and live-mode sockets.

use std::cell::RefCell;
use std::rc::Rc;

use gloo::events::EventListener;
use gloo::render::{request_animation_frame, AnimationFrame};
use wasm_bindgen::JsCast;
use web_sys::KeyboardEvent;
use yew::prelude::*;

use super::url::set_url;
use crate::live::LiveLinks;
use crate::state::{Mode, Msg, Ui};

/// One Frame message per display refresh.
#[hook]
pub fn use_animation_frames(state: &UseReducerHandle<Ui>) {
    let dispatcher = state.dispatcher();
    use_effect_with((), move |_| {
        let handle: Rc<RefCell<Option<AnimationFrame>>> = Rc::new(RefCell::new(None));
        fn schedule(h: Rc<RefCell<Option<AnimationFrame>>>, d: UseReducerDispatcher<Ui>) {
            let h2 = h.clone();
            let af = request_animation_frame(move |ts| {
                d.dispatch(Msg::Frame(ts));
                schedule(h2, d);
            });
            *h.borrow_mut() = Some(af);
        }
        schedule(handle.clone(), dispatcher);
        move || {
            handle.borrow_mut().take();
        }
    });
}

/// Space plays and pauses, → steps, ← steps back.
#[hook]
pub fn use_keyboard_shortcuts(state: &UseReducerHandle<Ui>) {
    let dispatcher = state.dispatcher();
    use_effect_with((), move |_| {
        let l = EventListener::new(&gloo::utils::document(), "keydown", move |e| {
            let Some(e) = e.dyn_ref::<KeyboardEvent>() else {
                return;
            };
            let typing = e
                .target()
                .and_then(|t| t.dyn_into::<web_sys::HtmlElement>().ok())
                .is_some_and(|t| matches!(t.tag_name().as_str(), "INPUT" | "TEXTAREA" | "SELECT"));
            if typing {
                return;
            }
            match e.key().as_str() {
                " " => {
                    e.prevent_default();
                    dispatcher.dispatch(Msg::TogglePlay);
                }
                "ArrowRight" => {
                    e.prevent_default();
                    dispatcher.dispatch(Msg::Step);
                }
                "ArrowLeft" => {
                    e.prevent_default();
                    dispatcher.dispatch(Msg::StepBack);
                }
                _ => {}
            }
        });
        move || drop(l)
    });
}

/// Keeps the URL in step with the run, so it can be shared.
#[hook]
pub fn use_url_sync(state: &UseReducerHandle<Ui>) {
    let (nodes, seed, mode, sc) = (state.nodes(), state.seed(), state.mode, state.scenario);
    use_effect_with((nodes, seed, mode, sc), move |(n, s, m, sc)| {
        set_url(*n, *s, *m, *sc);
    });
}

/// Live mode: one WebSocket per node while the mode is on.
#[hook]
pub fn use_live_links(state: &UseReducerHandle<Ui>) {
    let dispatcher = state.dispatcher();
    let addrs: Vec<String> = state
        .live
        .borrow()
        .nodes
        .iter()
        .map(|n| n.addr.clone())
        .collect();
    use_effect_with(state.mode, move |mode| {
        let links = (*mode == Mode::Live).then(|| {
            let d = dispatcher.clone();
            LiveLinks::open(&addrs, Rc::new(move |m| d.dispatch(m)))
        });
        move || {
            if let Some(l) = links {
                l.close();
            }
        }
    });
}
