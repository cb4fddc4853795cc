//! `/readyz` on a real cluster: every caught-up member is ready; a follower cut off from the
//! rest of the cluster stops being ready (it loses its leader and campaigns) and is ready
//! again once it hears from a leader and has applied up to its commit index. The lag rule
//! (applied index against the leader's commit index) is unit-tested in `native-node::health`.

mod common;

use std::time::Duration;

use common::*;

fn ready(port: u16) -> Option<(u16, String)> {
    http_status(port, "/readyz")
}

#[test]
fn a_follower_cut_off_from_the_cluster_becomes_not_ready_and_recovers() {
    let mut c = Cluster::start(3);
    for i in 0..20 {
        ok(&c, &["put", &format!("k{i}"), "v"]);
    }
    for n in &c.nodes {
        assert!(
            wait_until(Duration::from_secs(10), || ready(n.port)
                .is_some_and(|(s, _)| s == 200)),
            "node {} not ready: {:?}",
            n.id,
            ready(n.port)
        );
    }
    let leader = c.wait_leader(Duration::from_secs(10)).expect("a leader");
    let follower = (1..=3).find(|&i| i != leader).expect("a follower");
    let port = c.node(follower).port;
    let others: Vec<u32> = (1..=3)
        .filter(|&i| i != follower)
        .map(|i| c.node(i).child.as_ref().expect("running").id())
        .collect();

    // The rest of the cluster stops answering: the follower is on its own.
    for &pid in &others {
        signal(pid, "STOP");
    }
    let mut last = None;
    let went = wait_until(Duration::from_secs(10), || {
        last = ready(port);
        last.as_ref().is_some_and(|(s, _)| *s == 503)
    });
    for &pid in &others {
        signal(pid, "CONT");
    }
    assert!(went, "the cut-off follower stayed ready: {last:?}");
    let (_, why) = last.expect("answered");
    assert!(
        why.starts_with("not ready: ")
            && (why.contains("campaigning") || why.contains("no leader")),
        "{why}"
    );

    assert!(
        wait_until(Duration::from_secs(15), || ready(port)
            .is_some_and(|(s, _)| s == 200)),
        "never ready again: {:?}",
        ready(port)
    );
    ok(&c, &["put", "after", "v"]);
}
