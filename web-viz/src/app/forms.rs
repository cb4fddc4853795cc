//! Callbacks that feed form fields and clicks into the reducer.

use web_sys::{HtmlInputElement, HtmlSelectElement};
use yew::prelude::*;

use crate::state::{Field, Msg, Ui};

/// A click handler that dispatches `m`.
pub fn click(d: &UseReducerDispatcher<Ui>, m: Msg) -> Callback<MouseEvent> {
    let d = d.clone();
    Callback::from(move |_: MouseEvent| d.dispatch(m.clone()))
}

pub fn field_input(d: &UseReducerDispatcher<Ui>, f: Field) -> Callback<InputEvent> {
    let d = d.clone();
    Callback::from(move |ev: InputEvent| {
        let v = ev.target_unchecked_into::<HtmlInputElement>().value();
        d.dispatch(Msg::Field(f, v));
    })
}

pub fn field_select(d: &UseReducerDispatcher<Ui>, f: Field) -> Callback<Event> {
    let d = d.clone();
    Callback::from(move |ev: Event| {
        let v = ev.target_unchecked_into::<HtmlSelectElement>().value();
        d.dispatch(Msg::Field(f, v));
    })
}
