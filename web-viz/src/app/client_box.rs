//! The client box: send a put, get or delete and follow its request to the answer.

use keyval_core::sim::trace::op_text;
use yew::prelude::*;

use super::format::fmt_time;
use super::forms::{click, field_input, field_select};
use crate::engine::{Engine, MANUAL_CLIENT};
use crate::state::{Field, Msg, Ui};

pub fn client_box(state: &UseReducerHandle<Ui>, e: &Engine) -> Html {
    let d = state.dispatcher();
    let client_status = client_status(e);
    let n = e.cfg.nodes;
    let lease = e.cfg.raft.lease_reads;
    let margin = e.cfg.raft.lease_drift_margin_pct;
    let on_lease = {
        let d = d.clone();
        Callback::from(move |ev: Event| {
            let on = ev
                .target_unchecked_into::<web_sys::HtmlInputElement>()
                .checked();
            d.dispatch(Msg::SetReads {
                lease: on,
                margin_pct: margin,
            });
        })
    };
    let on_margin = {
        let d = d.clone();
        Callback::from(move |ev: Event| {
            let v = ev
                .target_unchecked_into::<web_sys::HtmlSelectElement>()
                .value();
            d.dispatch(Msg::SetReads {
                lease,
                margin_pct: v.parse().unwrap_or(10),
            });
        })
    };
    let margins = [0u32, 10, 20, 35];
    html! {
        <div class="client-box">

            <div class="row wrap">
                <label for="client-op">{"Operation"}</label>
                <select id="client-op" data-testid="client-op" onchange={field_select(&d, Field::ClientOp)}>
                    { for ["put", "get", "delete"].iter().map(|o| html! {
                        <option value={*o} selected={state.form.op == *o}>{*o}</option>
                    }) }
                </select>
                <label for="client-key">{"key"}</label>
                <input id="client-key" data-testid="client-key" placeholder="key" size="6" value={state.form.key.clone()} oninput={field_input(&d, Field::ClientKey)} />
                if state.form.op == "put" {
                    <label for="client-value">{"value"}</label>
                    <input id="client-value" data-testid="client-value" placeholder="value" size="6" value={state.form.value.clone()} oninput={field_input(&d, Field::ClientValue)} />
                }
                if state.form.op == "get" {
                    <label for="client-consistency">{"read"}</label>
                    <select id="client-consistency" data-testid="client-consistency" onchange={field_select(&d, Field::Consistency)}
                        title="linearizable: ReadIndex, one heartbeat round; lease: no round trip while the leader's lease lasts; serializable: any node's own state, possibly stale">
                        { for ["linearizable", "lease", "serializable"].iter().map(|o| html! {
                            <option value={*o} selected={state.form.consistency == *o}>{*o}</option>
                        }) }
                    </select>
                }
                <label for="client-target">{"to"}</label>
                <select id="client-target" data-testid="client-target" onchange={field_select(&d, Field::Target)}>
                    <option value="leader" selected={state.form.target == "leader"}>{"leader"}</option>
                    { for (1..=n).map(|i| { let v = format!("n{i}"); html! {
                        <option value={v.clone()} selected={state.form.target == v}>{v.clone()}</option>
                    }}) }
                </select>
                <button data-testid="client-send" class="primary" onclick={click(&d, Msg::SubmitForm)}>{"Send"}</button>
            </div>
            <div class="row wrap reads-config">
                <label><input type="checkbox" data-testid="lease-reads" checked={lease} onchange={on_lease} />{" lease reads"}</label>
                <label for="lease-margin">{"drift margin"}</label>
                <select id="lease-margin" data-testid="lease-margin" onchange={on_margin} title="The part of the election timeout a lease gives up for clock drift">
                    { for margins.iter().map(|m| html! {
                        <option value={m.to_string()} selected={*m == margin}>{format!("{m}%")}</option>
                    }) }
                    if !margins.contains(&margin) {
                        <option value={margin.to_string()} selected=true>{format!("{margin}%")}</option>
                    }
                </select>
                <span class="muted small">{"(restarts the run, same seed)"}</span>
            </div>
            <div class="client-status" data-testid="client-status">{client_status}</div>
        </div>
    }
}

fn client_status(e: &Engine) -> Html {
    use keyval_core::sim::TraceKind;
    let Some(seq) = e.client_seq else {
        return html! { <span class="muted">{"Send a request and follow its messages (highlighted)."}</span> };
    };
    let mut lines: Vec<String> = Vec::new();
    let mut done = false;
    // From the invocation on, over notable events only: the trace can be long.
    let from = e.client_invoked_at.unwrap_or(0);
    let start = e.notable.partition_point(|&i| i < from);
    let mut seen: Vec<&keyval_core::sim::TraceEvent> = e.notable[start..]
        .iter()
        .take(5_000)
        .map(|&i| &e.trace()[i])
        .collect();
    seen.reverse();
    for ev in seen {
        match &ev.kind {
            TraceKind::ClientInvoke {
                client,
                seq: s,
                op,
                node,
            } if *client == MANUAL_CLIENT && *s == seq => {
                lines.push(format!(
                    "{} sent {} to n{node}",
                    fmt_time(ev.time),
                    op_text(op)
                ));
                break;
            }
            TraceKind::ClientRetry {
                client,
                seq: s,
                node,
                ..
            } if *client == MANUAL_CLIENT && *s == seq => {
                lines.push(format!("{} retry at n{node}", fmt_time(ev.time)));
            }
            TraceKind::ClientComplete {
                client,
                seq: s,
                result,
            } if *client == MANUAL_CLIENT && *s == seq => {
                lines.push(format!(
                    "{} answered: {}",
                    fmt_time(ev.time),
                    keyval_core::sim::trace::result_text(result)
                ));
                done = true;
            }
            _ => {}
        }
    }
    let idx = e.client_entry_index();
    let commits: Vec<String> = idx
        .map(|i| e.client_committed_on(i))
        .unwrap_or_default()
        .iter()
        .map(|n| format!("n{n}"))
        .collect();
    html! {
        <div data-state={if done { "done" } else { "pending" }}>
            <b>{ if done { "✔ answered" } else { "… pending" } }</b>
            if let Some(i) = idx {
                <span class="muted">{format!(" · entry {i}, committed on {}", if commits.is_empty() { "none yet".to_string() } else { commits.join(", ") })}</span>
            }
            <ul>{ for lines.iter().take(4).map(|l| html!{ <li>{l}</li> }) }</ul>
        </div>
    }
}
