//! Effects the app runs for its whole life: the animation loop, keyboard shortcuts, the URL
//! and live-mode sockets.

use std::cell::RefCell;
use std::rc::Rc;

use gloo::events::{EventListener, EventListenerOptions};
use gloo::render::{request_animation_frame, AnimationFrame};
use wasm_bindgen::JsCast;
use web_sys::KeyboardEvent;
use yew::prelude::*;

use super::url::{set_url, CourseUrl};
use crate::live::LiveLinks;
use crate::state::{Mode, Msg, Tab, Ui};

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

/// Space plays and pauses, → steps, ← steps back, wherever the focus is, except where the key
/// has its own meaning: typing in a field, and Space/Enter on a button (or a drawing element)
/// other than the transport buttons. The listener is not passive, so it can keep the page from
/// scrolling and a focused Play button from toggling a second time.
#[hook]
pub fn use_keyboard_shortcuts(state: &UseReducerHandle<Ui>) {
    let dispatcher = state.dispatcher();
    use_effect_with((), move |_| {
        let doc = gloo::utils::document();
        let options = EventListenerOptions::enable_prevent_default();
        let down = EventListener::new_with_options(&doc, "keydown", options, move |e| {
            let Some(e) = e.dyn_ref::<KeyboardEvent>() else {
                return;
            };
            if e.alt_key() || e.ctrl_key() || e.meta_key() {
                return;
            }
            let msg = match e.key().as_str() {
                " " => Msg::TogglePlay,
                "ArrowRight" => Msg::Step,
                "ArrowLeft" => Msg::StepBack,
                _ => return,
            };
            let target = e
                .target()
                .and_then(|t| t.dyn_into::<web_sys::Element>().ok());
            if let Some(el) = &target {
                if types_text(el) {
                    return;
                }
                let space = e.key() == " ";
                if space
                    && activates_on_space(el)
                    && el.closest("[data-transport]").ok().flatten().is_none()
                {
                    return;
                }
            }
            e.prevent_default();
            dispatcher.dispatch(msg);
        });
        // A button activates on Space's keyup: the transport buttons' Space is ours.
        let up = EventListener::new_with_options(&doc, "keyup", options, |e| {
            let Some(e) = e.dyn_ref::<KeyboardEvent>() else {
                return;
            };
            let on_transport = e
                .target()
                .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
                .is_some_and(|el| el.closest("[data-transport]").ok().flatten().is_some());
            if e.key() == " " && on_transport {
                e.prevent_default();
            }
        });
        move || drop((down, up))
    });
}

/// A field where keys type text (or choose an option): shortcuts stay out of its way.
fn types_text(el: &web_sys::Element) -> bool {
    match el.tag_name().as_str() {
        "TEXTAREA" | "SELECT" => true,
        "INPUT" => {
            let kind = el.get_attribute("type").unwrap_or_default();
            !matches!(kind.as_str(), "range" | "checkbox" | "button" | "file")
        }
        _ => false,
    }
}

/// An element that Space activates by itself.
fn activates_on_space(el: &web_sys::Element) -> bool {
    matches!(el.tag_name().as_str(), "BUTTON" | "A" | "SUMMARY")
        || el.get_attribute("role").as_deref() == Some("button")
        || el.get_attribute("type").as_deref() == Some("checkbox")
}

/// Keeps the URL in step with the run, so it can be shared.
#[hook]
pub fn use_url_sync(state: &UseReducerHandle<Ui>) {
    let (nodes, seed, mode, sc) = (state.nodes(), state.seed(), state.mode, state.scenario);
    let chapter = crate::course::CHAPTERS
        .get(state.course.chapter)
        .filter(|ch| ch.scenario_index() == sc && sc.is_some())
        .map(|_| state.course.chapter);
    let course = CourseUrl {
        open: state.tab == Tab::Course,
        chapter,
        done: state.course.done.iter().copied().collect(),
    };
    use_effect_with((nodes, seed, mode, sc, course), move |(n, s, m, sc, c)| {
        set_url(*n, *s, *m, *sc, c);
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
