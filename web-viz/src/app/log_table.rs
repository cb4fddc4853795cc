//! The per-node table: role, term, commit and applied indices, the leader's view of each
//! follower (nextIndex / matchIndex), the logs as a grid aligned by index, and the key-value
//! store.

use std::collections::BTreeMap;

use keyval_core::sim::trace::op_text;
use keyval_core::{Entry, EntryPayload, KvOp};
use yew::prelude::*;

use super::palette::{role_color, role_label, term_color, tint};
use crate::engine::Engine;
use crate::state::Ui;

/// Log indices shown: the most recent ones, the same for every row so columns line up.
const SHOWN: u64 = 12;

fn short(en: &Entry) -> String {
    let k = |key: &[u8]| {
        String::from_utf8_lossy(key)
            .chars()
            .take(3)
            .collect::<String>()
    };
    match &en.payload {
        EntryPayload::Noop => "·".to_string(),
        EntryPayload::Command(r) => match &r.op {
            KvOp::Put { key, .. } => format!("{}=", k(key)),
            KvOp::Get { key } => format!("{}?", k(key)),
            KvOp::Delete { key } => format!("-{}", k(key)),
            KvOp::OpenSession => "§".to_string(),
        },
        EntryPayload::ConfChange(_) => "⚙".to_string(),
    }
}

pub fn logs_panel(_state: &UseReducerHandle<Ui>, e: &Engine) -> Html {
    let logs = e.sim.logs();
    let n = logs.len();
    let last = logs
        .iter()
        .map(|(_, es)| es.last().map_or(0, |x| x.index))
        .max()
        .unwrap_or(0);
    let lo = last.saturating_sub(SHOWN - 1).max(1);
    // How many nodes hold each (index, term): "replicated on k/N".
    let mut copies: BTreeMap<(u64, u64), usize> = BTreeMap::new();
    for (_, es) in &logs {
        for en in es.iter().filter(|x| x.index >= lo) {
            *copies.entry((en.index, en.term)).or_default() += 1;
        }
    }
    let leader = e.sim.leader();
    let leader_raft = leader
        .and_then(|l| e.sim.nodes().get(&l))
        .and_then(|sn| sn.server.as_ref())
        .map(|s| s.raft());
    let leader_log: BTreeMap<u64, &Entry> = leader
        .and_then(|l| logs.iter().find(|(id, _)| *id == l))
        .map(|(_, es)| {
            es.iter()
                .filter(|x| x.index >= lo)
                .map(|x| (x.index, x))
                .collect()
        })
        .unwrap_or_default();
    let index_head = (lo..=last).map(|i| {
        let on = leader_log.get(&i).map(|en| copies.get(&(i, en.term)).copied().unwrap_or(0));
        html! {
            <th class="ix" title={on.map_or(format!("index {i}"), |k| format!("index {i}: the leader's entry is on {k}/{n} nodes"))}>
                {i}
                if let Some(k) = on { <span class="replicated" data-testid={format!("replicated-{i}")}>{format!("{k}/{n}")}</span> }
            </th>
        }
    });

    let rows = logs.iter().map(|(id, entries)| {
        let id = *id;
        let sn = &e.sim.nodes()[&id];
        let raft = sn.server.as_ref().map(|s| s.raft());
        let commit = raft.map_or(0, |r| r.commit_index());
        let applied = raft.map_or(0, |r| r.applied_index());
        let role = sn.role();
        let snap = raft.map_or(0, |r| r.log().first_index().saturating_sub(1));
        let by_index: BTreeMap<u64, &Entry> = entries.iter().filter(|x| x.index >= lo).map(|x| (x.index, x)).collect();
        let cells = (lo..=last).map(|i| {
            let Some(en) = by_index.get(&i) else {
                let compacted = i <= snap;
                return html! {
                    <td class={classes!("cell", compacted.then_some("compacted"))} title={if compacted { format!("index {i}: compacted into the snapshot") } else { format!("index {i}: no entry") }}>
                        if compacted { <span class="entry snapcell">{"▦"}</span> }
                    </td>
                };
            };
            let what = match &en.payload {
                EntryPayload::Noop => "no-op".to_string(),
                EntryPayload::Command(r) => op_text(&r.op),
                EntryPayload::ConfChange(cc) => format!("configuration [{cc}]"),
            };
            let committed = en.index <= commit;
            let is_applied = en.index <= applied;
            let k = copies.get(&(en.index, en.term)).copied().unwrap_or(0);
            let color = term_color(en.term);
            let tip = format!(
                "index {} · term {} · {} · on {k}/{n} nodes{}{}",
                en.index,
                en.term,
                what,
                if committed { " · committed here" } else { " · not committed here" },
                if is_applied { " · applied" } else { "" }
            );
            html! {
                <td class="cell">
                    <span class={classes!("entry", (!committed).then_some("uncommitted"), (en.index == commit).then_some("commit-mark"), (en.index == applied).then_some("applied-mark"))}
                          style={format!("background:{};border-top:4px solid {color}", tint(color, 0.45))}
                          title={tip}>
                        <span class="et">{en.term}</span>
                        <span class="eo">{short(en)}</span>
                    </span>
                </td>
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
        // The leader's view of this follower: what it will send next and what it knows matches.
        let progress = match (leader, leader_raft.and_then(|r| r.progress(id))) {
            (Some(l), Some(p)) if l != id => format!("{}/{}", p.next_index, p.match_index),
            (Some(l), _) if l == id => "leader".to_string(),
            _ => "–".to_string(),
        };
        html! {
            <tr data-testid={format!("row-{id}")}>
                <td class="nid"><span class="dot" style={format!("background:{}", role_color(role))}></span>{format!("n{id}")}</td>
                <td class="role">{role_label(role)}{ if sn.paused { " ❚❚" } else { "" } }</td>
                <td class="num">{term}</td>
                <td class="num" data-testid={format!("commit-{id}")}>{commit}</td>
                <td class="num" data-testid={format!("applied-{id}")}>{applied}</td>
                <td class="num" data-testid={format!("progress-{id}")} title="As the leader sees this follower: nextIndex / matchIndex">{progress}</td>
                <td class="log" data-testid={format!("log-{id}")}>
                    <table class="grid"><tr>{ for cells }</tr></table>
                </td>
                <td class="kv" data-testid={format!("kv-{id}")}>{ if sn.server.is_none() { "(down: memory lost)".to_string() } else if kv.is_empty() { "∅".to_string() } else { kv.join("  ") } }</td>
            </tr>
        }
    });
    html! {
        <div class="card logs log-grid">
            <table>
                <thead><tr>
                    <th>{"node"}</th><th>{"role"}</th><th>{"term"}</th><th title="commit index">{"commit"}</th><th title="applied index">{"applied"}</th>
                    <th title="The leader's view of each follower: nextIndex / matchIndex">{"next/match"}</th>
                    <th class="log">
                        <table class="grid"><tr>{ for index_head }</tr></table>
                    </th>
                    <th>{"key-value store"}</th>
                </tr></thead>
                <tbody>{ for rows }</tbody>
            </table>
            <p class="hint">{"Columns are log indices (k/N: nodes holding the leader's entry). Number = term; dashed = not committed on that node; ▌ commit, ▁ applied, ▦ compacted into a snapshot. Hover an entry for its value."}</p>
        </div>
    }
}
