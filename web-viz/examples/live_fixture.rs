//! Produces live-stream frames for the playground's live-mode tests, without a native node:
//! runs a 3-node simulation and prints, one JSON object per line, what each node would send on
//! its `/events` WebSocket: `{"node":N,"at_ms":T,"hex":"<postcard LiveFrame>"}`.
//!
//! `cargo run -p web-viz --example live_fixture -- [seconds] [seed] > frames.jsonl`

use keyval_core::sim::{SimConfig, Simulator};
use keyval_core::trace::{Addr, TraceKind};
use keyval_core::{LiveFrame, NodeStatus};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn emit(node: u64, at_us: u64, f: &LiveFrame) {
    let bytes = postcard::to_allocvec(f).expect("frame encodes");
    println!(
        "{{\"node\":{node},\"at_ms\":{},\"hex\":\"{}\"}}",
        at_us / 1000,
        hex(&bytes)
    );
}

fn concerns(kind: &TraceKind) -> Option<u64> {
    match kind {
        TraceKind::Node { node, .. }
        | TraceKind::Persisted { node, .. }
        | TraceKind::Applied { node, .. }
        | TraceKind::Truncated { node, .. } => Some(*node),
        TraceKind::Sent {
            from: Addr::Node(n),
            ..
        } => Some(*n),
        TraceKind::Delivered {
            to: Addr::Node(n), ..
        } => Some(*n),
        _ => None,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let seed: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut sim = Simulator::new(SimConfig::new(3, seed));
    let mut cursor = 0;
    let mut next_status = 0;
    let end = secs * 1_000_000;
    // Each node reports its status every 100 ms of simulated time (a keep-alive the real node
    // sends too) and every trace event that concerns it.
    while sim.now() < end {
        if !sim.step() {
            break;
        }
        let trace = sim.trace();
        for ev in &trace[cursor..] {
            if let Some(n) = concerns(&ev.kind) {
                let f = LiveFrame::Event {
                    time_ms: 1_700_000_000_000 + ev.time / 1000,
                    kind: ev.kind.clone(),
                };
                emit(n, ev.time, &f);
            }
        }
        cursor = trace.len();
        if sim.now() >= next_status {
            for n in sim.nodes().values() {
                if let Some(s) = &n.server {
                    emit(n.id, sim.now(), &LiveFrame::Status(NodeStatus::of(s)));
                }
            }
            next_status += 100_000;
        }
    }
}
