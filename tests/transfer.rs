//! Leadership transfer on real `keyval` processes: `kvctl leader transfer` and the handover a
//! leader makes when it is stopped with SIGTERM.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;

fn term_of(c: &Cluster, id: u64) -> u64 {
    c.status()[&id]["term"].as_u64().expect("term")
}

#[test]
fn kvctl_leader_transfer_moves_leadership_and_writes_keep_working() {
    let c = Cluster::start(3);
    let old = c.wait_leader(Duration::from_secs(10)).expect("leader");
    ok(&c, &["put", "before", "1"]);
    let target = if old == 3 { 2 } else { 3 };
    let term = term_of(&c, old);

    let to = target.to_string();
    let v = ok(&c, &["leader", "transfer", "--to", &to]);
    assert_eq!(v, json!({"ok": true, "leader": target}));
    let st = c.status();
    assert_eq!(st[&target]["role"], "leader", "{st:?}");
    assert_eq!(
        st[&target]["term"].as_u64(),
        Some(term + 1),
        "one election, at once"
    );
    assert_eq!(st[&old]["role"], "follower");

    ok(&c, &["put", "after", "2"]);
    assert_eq!(
        ok(&c, &["get", "before"]),
        json!({"ok": true, "found": true, "value": "1"})
    );
    assert_eq!(
        ok(&c, &["get", "after"]),
        json!({"ok": true, "found": true, "value": "2"})
    );

    // Refusals are one clear line and a definite failure (exit 3).
    let (code, v, _) = c.kvctl(&["leader", "transfer", "--to", &to]);
    assert_eq!(code, Some(3), "{v}");
    assert_eq!(v["ok"], false);
    assert_eq!(v["definite"], true);
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("already the leader"),
        "{v}"
    );
    let (code, v, _) = c.kvctl(&["leader", "transfer", "--to", "9"]);
    assert_eq!(code, Some(3), "{v}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("not a member"),
        "{v}"
    );

    // Without --to: the most caught-up voter; text output names it.
    let out = kvctl_raw(&["--endpoints", &c.endpoints(), "leader", "transfer"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let now = c.wait_leader(Duration::from_secs(5)).expect("leader");
    assert_ne!(now, target);
    assert_eq!(text.trim(), format!("leader is now node {now}"));
}

/// SIGTERM of the leader hands leadership over before the process exits: the next leader is
/// elected in the very next term at the old leader's request (no node waits for its election
/// timer), and a client writing all along sees every write succeed. The pause writes see is
/// bounded by one election timeout (the transfer aborts then) plus one election round trip;
/// with the defaults, 300 ms plus a few ms, well inside the client's 3 s timeout.
#[test]
fn sigterm_of_the_leader_hands_over_without_failing_a_writer() {
    let mut c = Cluster::start(3);
    let old = c.wait_leader(Duration::from_secs(10)).expect("leader");
    ok(&c, &["put", "k0", "v"]);
    let term = term_of(&c, old);

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let endpoints = c.endpoints();
        std::thread::spawn(move || {
            let mut results = Vec::new();
            let mut i = 1;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("k{i}");
                let (code, v, err) =
                    kvctl_json(&endpoints, &["--timeout-ms", "3000", "put", &key, "v"]);
                results.push((key, code, v, err));
                i += 1;
            }
            results
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let before: Vec<usize> = c.nodes.iter().map(|n| n.log_text().len()).collect();
    let status = c.terminate(old).expect("exited");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let results = writer.join().expect("writer");
    assert_eq!(status.code(), Some(0));
    let log = c.nodes[(old - 1) as usize].log_text();
    assert!(log.contains("handing leadership over first"), "{log}");
    assert!(log.contains("leadership transfer completed"), "{log}");
    assert!(log.contains("stopped cleanly"), "{log}");

    let failed: Vec<_> = results.iter().filter(|r| r.1 != Some(0)).collect();
    assert!(results.len() >= 3, "the writer barely ran: {results:?}");
    assert!(
        failed.is_empty(),
        "writes failed during the handover: {failed:?}"
    );

    let new = c.wait_leader(Duration::from_secs(5)).expect("leader");
    assert_ne!(new, old);
    assert_eq!(term_of(&c, new), term + 1, "elected at once, by transfer");
    for id in (1..=3).filter(|&id| id != old) {
        let log = c.nodes[(id - 1) as usize].log_text();
        let since = &log[before[(id - 1) as usize]..];
        assert!(
            !since.contains("election timeout: campaigning"),
            "n{id} had to wait for its election timer: {since}"
        );
    }
    assert!(c.nodes[(new - 1) as usize]
        .log_text()
        .contains("asked by the leader to campaign now"));
    for (key, ..) in &results {
        assert_eq!(
            ok(&c, &["get", key]),
            json!({"ok": true, "found": true, "value": "v"}),
            "{key}"
        );
    }
}
