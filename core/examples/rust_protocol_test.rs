//! A protocol test in Rust instead of the scenario language, for people who prefer it: drive the
//! deterministic simulator through the public API and pin the readable trace with insta.
//!
//! ```text
//! cargo run -p keyval-core --example rust_protocol_test     # print the trace
//! cargo test -p keyval-core --example rust_protocol_test    # compare it with the snapshot
//! ```
//! The snapshot lives in `snapshots/examples/`; review changes with `cargo insta review`.
//! The same story as a scenario file is ten lines: see docs/scenarios.md.

use keyval_core::kv::KvOp;
use keyval_core::sim::{FaultAction, SimConfig, Simulator};
use keyval_core::trace::ReadableFilter;
use keyval_core::NodeId;

const SEC: u64 = 1_000_000;

/// Steps the simulator until `pred` holds, at most `within` of virtual time.
fn run_until(sim: &mut Simulator, within: u64, pred: impl Fn(&Simulator) -> bool) -> bool {
    let deadline = sim.now() + within;
    while !pred(sim) {
        match sim.next_event_time() {
            Some(t) if t <= deadline => {
                sim.step();
            }
            _ => return false,
        }
    }
    true
}

fn applied(sim: &Simulator, node: NodeId) -> u64 {
    sim.nodes()[&node]
        .server
        .as_ref()
        .map_or(0, |s| s.raft().applied_index())
}

/// A write survives the crash of the leader that took it; returns the readable trace.
fn write_survives_leader_crash() -> String {
    let mut sim = Simulator::new(SimConfig::new(3, 1));
    assert!(run_until(&mut sim, SEC, |s| s.leader().is_some()));
    let leader = sim.leader().expect("a leader");
    let put = KvOp::Put {
        key: b"x".to_vec(),
        value: b"1".to_vec(),
    };
    sim.submit_to(1, leader, put).expect("client 1 is idle");
    // Committed and applied on every node: the no-op (1), the client's session (2), the put (3).
    assert!(run_until(&mut sim, SEC, |s| (1..=3).all(|n| applied(s, n) == 3)));
    sim.apply_fault(FaultAction::Crash(leader));
    assert!(run_until(&mut sim, 2 * SEC, |s| s
        .leader()
        .is_some_and(|l| l != leader)));
    let survivor = sim.leader().expect("a new leader");
    let kv = sim.nodes()[&survivor].server.as_ref().expect("up").kv();
    assert_eq!(kv.get(b"x").map(Vec::as_slice), Some(&b"1"[..]));

    let mut filter = ReadableFilter::default();
    sim.trace()
        .iter()
        .filter(|e| filter.keep(e))
        .map(|e| e.render() + "\n")
        .collect()
}

fn main() {
    print!("{}", write_survives_leader_crash());
}

#[test]
fn trace_matches_snapshot() {
    insta::with_settings!({
        snapshot_path => "../../snapshots/examples",
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!("write_survives_leader_crash", write_survives_leader_crash());
    });
}
