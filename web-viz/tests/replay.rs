#![cfg(not(target_arch = "wasm32"))]
//! Native checks of the playground engine: exported traces replay in `cargo test`, and the
//! guided scenarios show what they promise.

use keyval_core::sim::SimConfig;
use keyval_core::trace::TraceKind;
use keyval_core::NodeEvent;
use web_viz::engine::{Engine, TraceFile};
use web_viz::scenarios::{leaders_by_term, split_term, SCENARIOS, SPLIT_VOTE_SEED};

/// Every trace exported from the browser and saved under tests/traces/ (or in the folder named
/// by WEB_VIZ_TRACES, where `make web-test` puts the traces its browser tests export) replays
/// event for event.
#[test]
fn saved_traces_replay_exactly() {
    let mut dirs = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/traces")];
    if let Some(d) = std::env::var_os("WEB_VIZ_TRACES") {
        dirs.push(d.into());
    }
    let mut n = 0;
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let file =
                TraceFile::from_json(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if let Err(e) = file.replay() {
                panic!("{} does not replay: {e}", path.display());
            }
            n += 1;
        }
    }
    println!("replayed {n} saved trace(s)");
    if std::env::var_os("WEB_VIZ_TRACES").is_some() {
        assert!(n > 0, "WEB_VIZ_TRACES is set but holds no trace");
    }
}

fn run_scenario(id: &str, until_us: u64) -> Engine {
    let sc = SCENARIOS
        .iter()
        .find(|s| s.id == id)
        .expect("scenario exists");
    let mut e = sc.engine();
    e.run_until_time(until_us, u64::MAX);
    e
}

#[test]
fn split_vote_scenario_splits_the_vote() {
    let e = run_scenario("split-vote", 3_000_000);
    assert!(
        split_term(e.trace()).is_some(),
        "no split vote in the scenario"
    );
    assert!(e.sim.leader().is_some(), "a leader is eventually elected");
    if e.cfg.seed != SPLIT_VOTE_SEED {
        println!(
            "seed {SPLIT_VOTE_SEED} no longer splits the vote, {} does: update SPLIT_VOTE_SEED",
            e.cfg.seed
        );
    }
}

#[test]
fn leader_crash_scenario_elects_a_new_leader() {
    let e = run_scenario("leader-crash", 4_000_000);
    let leaders = leaders_by_term(e.trace());
    assert!(leaders.len() >= 2, "expected a second leader: {leaders:?}");
    assert!(e
        .trace()
        .iter()
        .any(|ev| matches!(ev.kind, TraceKind::Crashed { .. })));
}

#[test]
fn minority_partition_scenario_serves_the_client() {
    let e = run_scenario("minority-partition", 6_000_000);
    assert!(e
        .trace()
        .iter()
        .any(|ev| matches!(ev.kind, TraceKind::ClientComplete { client: 100, .. })));
    assert!(e.trace().iter().any(|ev| matches!(
        ev.kind,
        TraceKind::Node {
            event: NodeEvent::CheckQuorumFailed { .. },
            ..
        }
    )));
}

#[test]
fn stale_leader_scenario_steps_down() {
    let e = run_scenario("stale-leader", 5_000_000);
    assert!(leaders_by_term(e.trace()).len() >= 2);
}

/// Figure 8 exactly as in the paper: X, appended in the first leader's term, is stored on a
/// majority by the third leader and still not committed; the second term's leader overwrites it
/// on every node, and the cluster agrees without it. Played from its action log, the page's run.
#[test]
fn figure_8_scenario_overwrites_an_old_term_entry_stored_on_a_majority() {
    let sc = SCENARIOS
        .iter()
        .find(|s| s.id == "figure-8")
        .expect("scenario");
    let mut e = sc.engine();
    let fig = e
        .figure8
        .clone()
        .expect("the directed run found the figure");
    let x = fig.old_entry.clone();
    assert!(
        fig.old_entry_holders.len() >= 3,
        "X on {:?} only",
        fig.old_entry_holders
    );
    assert!(
        fig.third_leader_commit < x.index,
        "X was committed by counting"
    );
    // Replay from step 0 to the moment X sat on a majority: the same logs as the directed run.
    while e.step_count() < fig.majority_at_step {
        assert!(e.advance());
    }
    let holders = e
        .sim
        .logs()
        .into_iter()
        .filter(|(_, log)| log.get(x.index as usize - 1) == Some(&x))
        .count();
    assert!(holders >= 3, "replayed: X on {holders} nodes");
    e.run_until_time(e.now() + 3_000_000, u64::MAX);
    assert!(e
        .trace()
        .iter()
        .any(|ev| matches!(ev.kind, TraceKind::Truncated { from, .. } if from <= x.index)));
    let committed = e
        .sim
        .checker()
        .committed()
        .get(&x.index)
        .cloned()
        .expect("index committed");
    assert_ne!(committed, x, "the overwritten entry was committed");
    assert_eq!(committed.term, raft_term_of(&e, fig.second_leader, x.index));
    for (id, log) in e.sim.logs() {
        assert!(!log.contains(&x), "n{id} still holds X");
    }
    assert!(e.sim.checker().violations().is_empty());
}

fn raft_term_of(e: &Engine, node: u64, index: u64) -> u64 {
    e.sim
        .logs()
        .into_iter()
        .find(|(id, _)| *id == node)
        .and_then(|(_, l)| l.get(index as usize - 1).map(|x| x.term))
        .unwrap_or(0)
}

/// The "break Raft" menu's first bug on the same situation: the third leader commits X by
/// counting, B overwrites it, and the safety checker reports it.
#[cfg(feature = "mutations")]
#[test]
fn figure_8_with_the_counting_bug_is_caught_by_the_checker() {
    use keyval_core::mutation::Mutation;
    let sc = SCENARIOS
        .iter()
        .find(|s| s.id == "figure-8")
        .expect("scenario");
    let mut e = sc.engine_with(&|c| {
        web_viz::state::set_mutation(c, Some(Mutation::CommitPreviousTermByCounting))
    });
    e.run_until_time(8_000_000, u64::MAX);
    let v = e.sim.checker().violations();
    assert!(
        v.iter()
            .any(|v| v.property.starts_with("state machine safety")),
        "not caught: {v:?}"
    );
}

#[test]
fn snapshot_scenario_catches_a_follower_up_by_snapshot() {
    let e = run_scenario("snapshot-catch-up", 3_000_000);
    assert!(
        e.trace().iter().any(|ev| matches!(
            ev.kind,
            TraceKind::Node {
                event: NodeEvent::SnapshotInstalled { .. },
                ..
            }
        )),
        "no snapshot installed in the snapshot scenario"
    );
    let kvs: Vec<usize> = e
        .sim
        .nodes()
        .values()
        .filter_map(|n| n.server.as_ref().map(|s| s.kv().len()))
        .collect();
    assert!(
        kvs.iter().all(|&k| k == 8),
        "every node holds the 8 keys: {kvs:?}"
    );
}

/// Finds seeds for the split-vote scenario: `cargo test -p web-viz --test replay
/// find_split_vote_seed -- --ignored --nocapture`.
#[test]
#[ignore]
fn find_split_vote_seed() {
    let sc = SCENARIOS.iter().find(|s| s.id == "split-vote").unwrap();
    for seed in 0..300 {
        let mut e = Engine::new(SimConfig::new(sc.nodes, seed));
        e.script = (sc.script)().into_iter().collect();
        e.run_until_time(1_500_000, u64::MAX);
        if let Some(t) = split_term(e.trace()) {
            let first_leader = leaders_by_term(e.trace()).keys().next().copied();
            println!("seed {seed}: split in term {t}, first leader term {first_leader:?}");
        }
    }
}
