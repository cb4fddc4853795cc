//! Membership changes on real processes: `kvctl member ...` and `keyval --join`, driven through
//! the contracts in SPEC.md. Each test starts its own cluster on ephemeral loopback ports.

mod common;

use std::time::Duration;

use common::*;

/// Runs `keyval --join` for node `id` and waits for it to exit; returns (exit code, stderr).
fn join_and_wait(c: &mut Cluster, id: u64) -> (Option<i32>, String) {
    c.restart(id);
    let status = {
        let node = c.node(id);
        let child = node.child.as_mut().expect("started");
        wait_exit(child, Duration::from_secs(20))
    };
    assert!(status.is_some(), "node {id} did not exit");
    c.node(id).child = None;
    (status.and_then(|s| s.code()), c.node(id).log_text())
}

#[test]
fn a_join_of_a_node_never_added_is_refused_with_one_clear_line() {
    let mut c = Cluster::start(3);
    c.add_slot(9);
    let (code, log) = join_and_wait(&mut c, 9);
    assert_eq!(code, Some(1), "{log}");
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.contains("node 9 was never added to this cluster")
            && last.contains("kvctl member add 9"),
        "{log}"
    );
    // It learnt nothing: no cluster identity was written, so a later start is a fresh join.
    assert!(!c.node(9).data_dir.join("cluster.json").exists());
    // The cluster is undisturbed and answers.
    ok(&c, &["put", "k", "v"]);
}
