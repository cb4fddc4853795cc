//! The history of client operations, drawn as invoke→complete bars per client (as Porcupine
//! does), with the verdict of the core's linearizability checker and its safety checker.

use keyval_core::sim::linearizability::{check, Op, OpResult, Verdict};
use yew::prelude::*;

use super::format::fmt_time;
use crate::engine::Engine;

/// Search budget per key: a playground history is small; a timeout is reported, not a pass.
const BUDGET: u64 = 200_000;
/// Bars drawn, most recent last.
const SHOWN: usize = 60;

fn op_text(op: &Op) -> String {
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match op {
        Op::Put { key, value } => format!("put {}={}", s(key), s(value)),
        Op::Get { key } => format!("get {}", s(key)),
        Op::Delete { key } => format!("delete {}", s(key)),
    }
}

fn result_text(r: &OpResult) -> String {
    match r {
        OpResult::Put => "ok".into(),
        OpResult::Get(Some(v)) => format!("→ {}", String::from_utf8_lossy(v)),
        OpResult::Get(None) => "→ (absent)".into(),
        OpResult::Delete { deleted } => if *deleted { "deleted" } else { "absent" }.into(),
    }
}

/// The safety checker's and the linearizability checker's verdicts on this run so far.
pub fn verdicts(e: &Engine) -> Html {
    let violations = e.sim.checker().violations();
    let (lin, _) = check(e.sim.history(), BUDGET);
    let lin_ok = lin.is_linearizable();
    html! {
        <>
            <div class={classes!("verdict", if violations.is_empty() { "ok" } else { "bad" })} data-testid="checker"
                 data-ok={violations.is_empty().to_string()}>
                { if violations.is_empty() {
                    "Safety checker: no violation (election safety, log matching, leader completeness, state machine safety).".to_string()
                } else {
                    format!("Safety checker: {} violation(s)", violations.len())
                } }
                if !violations.is_empty() {
                    <pre>{ violations.iter().take(5).map(|v| v.to_string()).collect::<Vec<_>>().join("\n") }</pre>
                }
            </div>
            <div class={classes!("verdict", if lin_ok { "ok" } else { "bad" })} data-testid="lin-verdict" data-ok={lin_ok.to_string()}>
                { match &lin {
                    Verdict::Linearizable => format!("Linearizable: {} client operation(s) have a legal order.", e.sim.history().len()),
                    Verdict::NotLinearizable { key, .. } => format!("NOT linearizable on key {}:", String::from_utf8_lossy(key)),
                    Verdict::Timeout { key, steps } => format!("Checker gave up on key {} after {steps} steps (not a pass).", String::from_utf8_lossy(key)),
                } }
                if let Verdict::NotLinearizable { explanation, .. } = &lin {
                    <pre>{explanation.clone()}</pre>
                }
            </div>
        </>
    }
}

pub fn history_panel(e: &Engine) -> Html {
    let h = e.sim.history();
    let ops = &h[h.len().saturating_sub(SHOWN)..];
    let now = e.now().max(1);
    let t0 = ops.iter().map(|o| o.invoke).min().unwrap_or(0);
    let span = (now - t0.min(now)).max(1) as f64;
    let mut clients: Vec<u64> = ops.iter().map(|o| o.client).collect();
    clients.sort_unstable();
    clients.dedup();
    const W: f64 = 560.0;
    const ROW: f64 = 26.0;
    let x = |t: u64| 70.0 + (t.saturating_sub(t0) as f64 / span) * (W - 80.0);
    let bars = ops.iter().map(|o| {
        let row = clients.iter().position(|c| *c == o.client).unwrap_or(0) as f64;
        let y = 6.0 + row * ROW;
        let x0 = x(o.invoke);
        let (x1, pending, res) = match &o.complete {
            Some((t, r)) => (x(*t), false, result_text(r)),
            None => (x(now), true, "no answer (yet)".to_string()),
        };
        let tip = format!(
            "client {} · {} · invoked {} · {}",
            o.client,
            op_text(&o.op),
            fmt_time(o.invoke),
            match &o.complete {
                Some((t, _)) => format!("returned {} {res}", fmt_time(*t)),
                None => res.clone(),
            }
        );
        html! {
            <g data-testid="history-op">
                <title>{tip}</title>
                <rect class={classes!("bar", pending.then_some("pending"))} x={format!("{x0:.1}")} y={format!("{y:.1}")}
                      width={format!("{:.1}", (x1 - x0).max(4.0))} height="18" rx="3" />
                <text x={format!("{:.1}", x0 + 3.0)} y={format!("{:.1}", y + 13.0)} class="bar-label">{format!("{} {res}", op_text(&o.op))}</text>
            </g>
        }
    });
    let labels = clients.iter().enumerate().map(|(i, c)| {
        html! { <text x="4" y={format!("{:.1}", 19.0 + i as f64 * ROW)} class="bar-client">{format!("client {c}")}</text> }
    });
    let height = 12.0 + clients.len().max(1) as f64 * ROW;
    html! {
        <div class="history" data-testid="history">
            { verdicts(e) }
            if ops.is_empty() {
                <p class="hint">{"No client operation yet: send one from the Client tab."}</p>
            } else {
                <svg viewBox={format!("0 0 {W} {height:.0}")} role="img" aria-label="Client operations over time, one row per client">
                    { for labels }{ for bars }
                </svg>
                <p class="hint">{"Each bar runs from the client's request to its answer; a dashed bar has no answer yet (it may or may not take effect). The checker looks for one order of all operations that respects these intervals and a key-value register's rules."}</p>
            }
        </div>
    }
}
