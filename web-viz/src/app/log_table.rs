//! The per-node table: role, term, commit and applied indices, the log and the key-value store.

use keyval_core::sim::trace::op_text;
use keyval_core::{EntryPayload, KvOp};
use yew::prelude::*;

use super::palette::{role_color, role_label, term_color};
use crate::engine::Engine;
use crate::state::Ui;

pub fn logs_panel(state: &UseReducerHandle<Ui>, e: &Engine) -> Html {
    let _ = state;
    let logs = e.sim.logs();
    let rows = logs.iter().map(|(id, entries)| {
        let sn = &e.sim.nodes()[id];
        let raft = sn.server.as_ref().map(|s| s.raft());
        let commit = raft.map_or(0, |r| r.commit_index());
        let applied = raft.map_or(0, |r| r.applied_index());
        let role = sn.role();
        const SHOWN: usize = 28;
        let skip = entries.len().saturating_sub(SHOWN);
        let snap = raft.map_or(0, |r| r.log().first_index().saturating_sub(1));
        let cells = entries[skip..].iter().map(|en| {
            let what = match &en.payload {
                EntryPayload::Noop => "no-op".to_string(),
                EntryPayload::Command(r) => op_text(&r.op),
            };
            let committed = en.index <= commit;
            let is_applied = en.index <= applied;
            let short = match &en.payload {
                EntryPayload::Noop => "·".to_string(),
                EntryPayload::Command(r) => match &r.op {
                    KvOp::Put { key, .. } => format!("{}=", String::from_utf8_lossy(key).chars().take(3).collect::<String>()),
                    KvOp::Get { key } => format!("{}?", String::from_utf8_lossy(key).chars().take(3).collect::<String>()),
                    KvOp::Delete { key } => format!("-{}", String::from_utf8_lossy(key).chars().take(3).collect::<String>()),
                },
            };
            html! {
                <span class={classes!("entry", (!committed).then_some("uncommitted"), (en.index == commit).then_some("commit-mark"), (en.index == applied).then_some("applied-mark"))}
                      style={format!("background:{}", term_color(en.term))}
                      title={format!("index {} · term {} · {}{}{}", en.index, en.term, what, if committed { " · committed" } else { " · not committed" }, if is_applied { " · applied" } else { "" })}>
                    <span class="et">{en.term}</span>
                    <span class="eo">{short}</span>
                </span>
            }
        });
        let kv: Vec<String> = sn
            .server
            .as_ref()
            .map(|s| {
                s.kv()
                    .iter()
                    .map(|(k, v)| format!("{}={}", String::from_utf8_lossy(k), String::from_utf8_lossy(v)))
                    .collect()
            })
            .unwrap_or_default();
        let term = raft.map_or(sn.storage.hard_state.term, |r| r.term());
        html! {
            <tr data-testid={format!("row-{id}")}>
                <td class="nid"><span class="dot" style={format!("background:{}", role_color(role))}></span>{format!("n{id}")}</td>
                <td class="role">{role_label(role, sn.paused)}</td>
                <td class="num">{term}</td>
                <td class="num" data-testid={format!("commit-{id}")}>{commit}</td>
                <td class="num" data-testid={format!("applied-{id}")}>{applied}</td>
                <td class="log" data-testid={format!("log-{id}")}>
                    if snap > 0 { <span class="snap" title="entries up to here are compacted into a snapshot">{format!("⟦snapshot ≤{snap}⟧")}</span> }
                    if skip > 0 { <span class="more">{format!("…{skip}")}</span> }
                    { for cells }
                </td>
                <td class="kv" data-testid={format!("kv-{id}")}>{ if sn.server.is_none() { "(down: memory lost)".to_string() } else if kv.is_empty() { "∅".to_string() } else { kv.join("  ") } }</td>
            </tr>
        }
    });
    html! {
        <div class="card logs">
            <table>
                <thead><tr>
                    <th>{"node"}</th><th>{"role"}</th><th>{"term"}</th><th title="commit index">{"commit"}</th><th title="applied index">{"applied"}</th>
                    <th>{"log (number & colour = term · faded = uncommitted · ▌ commit · ▁ applied)"}</th><th>{"key-value store"}</th>
                </tr></thead>
                <tbody>{ for rows }</tbody>
            </table>
        </div>
    }
}
