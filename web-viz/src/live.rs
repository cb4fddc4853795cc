//! WebSocket connections to native nodes' `/events` streams, with reconnection and backoff.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use gloo::timers::callback::Timeout;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BinaryType, CloseEvent, Event, MessageEvent, WebSocket};

use crate::state::{LiveMsg, Msg};

type Dispatch = Rc<dyn Fn(Msg)>;

struct Conn {
    ws: Option<WebSocket>,
    _on_open: Option<Closure<dyn FnMut(Event)>>,
    _on_message: Option<Closure<dyn FnMut(MessageEvent)>>,
    _on_close: Option<Closure<dyn FnMut(CloseEvent)>>,
    retry: Option<Timeout>,
    backoff_ms: u32,
}

/// Every connection of the live view; dropping it (via `close`) stops reconnecting.
pub struct LiveLinks {
    conns: Rc<RefCell<Vec<Conn>>>,
    alive: Rc<Cell<bool>>,
}

impl LiveLinks {
    pub fn open(addrs: &[String], dispatch: Dispatch) -> Self {
        let conns = Rc::new(RefCell::new(
            addrs
                .iter()
                .map(|_| Conn {
                    ws: None,
                    _on_open: None,
                    _on_message: None,
                    _on_close: None,
                    retry: None,
                    backoff_ms: 250,
                })
                .collect::<Vec<_>>(),
        ));
        let alive = Rc::new(Cell::new(true));
        for (i, a) in addrs.iter().enumerate() {
            connect(i, a.clone(), dispatch.clone(), conns.clone(), alive.clone());
        }
        LiveLinks { conns, alive }
    }

    pub fn close(&self) {
        self.alive.set(false);
        for c in self.conns.borrow_mut().iter_mut() {
            c.retry = None;
            if let Some(ws) = c.ws.take() {
                ws.set_onclose(None);
                ws.set_onmessage(None);
                ws.set_onopen(None);
                let _ = ws.close();
            }
        }
    }
}

fn url_of(addr: &str) -> String {
    if addr.starts_with("ws://") || addr.starts_with("wss://") {
        addr.to_string()
    } else {
        format!("ws://{addr}/events")
    }
}

fn connect(
    i: usize,
    addr: String,
    dispatch: Dispatch,
    conns: Rc<RefCell<Vec<Conn>>>,
    alive: Rc<Cell<bool>>,
) {
    if !alive.get() {
        return;
    }
    let ws = match WebSocket::new(&url_of(&addr)) {
        Ok(ws) => ws,
        Err(_) => {
            retry_later(i, addr, dispatch, conns, alive);
            return;
        }
    };
    ws.set_binary_type(BinaryType::Arraybuffer);

    let on_open = {
        let d = dispatch.clone();
        let conns = conns.clone();
        Closure::<dyn FnMut(Event)>::new(move |_| {
            if let Some(c) = conns.borrow_mut().get_mut(i) {
                c.backoff_ms = 250;
            }
            d(Msg::Live(LiveMsg::Open(i)));
        })
    };
    let on_message = {
        let d = dispatch.clone();
        Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            if let Ok(buf) = e.data().dyn_into::<js_sys::ArrayBuffer>() {
                let bytes = js_sys::Uint8Array::new(&buf).to_vec();
                d(Msg::Live(LiveMsg::Frame(i, bytes)));
            }
        })
    };
    let on_close = {
        let d = dispatch.clone();
        let conns2 = conns.clone();
        let alive2 = alive.clone();
        let addr2 = addr.clone();
        Closure::<dyn FnMut(CloseEvent)>::new(move |_| {
            d(Msg::Live(LiveMsg::Closed(i)));
            retry_later(i, addr2.clone(), d.clone(), conns2.clone(), alive2.clone());
        })
    };
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    if let Some(c) = conns.borrow_mut().get_mut(i) {
        c.ws = Some(ws);
        c._on_open = Some(on_open);
        c._on_message = Some(on_message);
        c._on_close = Some(on_close);
    }
}

/// Reconnects after a delay that doubles up to 4 s while the node stays unreachable.
fn retry_later(
    i: usize,
    addr: String,
    dispatch: Dispatch,
    conns: Rc<RefCell<Vec<Conn>>>,
    alive: Rc<Cell<bool>>,
) {
    if !alive.get() {
        return;
    }
    let delay = {
        let mut cs = conns.borrow_mut();
        let Some(c) = cs.get_mut(i) else { return };
        let d = c.backoff_ms;
        c.backoff_ms = (d * 2).min(4000);
        d
    };
    let conns2 = conns.clone();
    let t = Timeout::new(delay, move || {
        connect(i, addr, dispatch, conns2, alive);
    });
    if let Some(c) = conns.borrow_mut().get_mut(i) {
        c.retry = Some(t);
    }
}
