//! Membership changes on real processes: `kvctl member ...` and `keyval --join`, driven through
//! the contracts in SPEC.md. Each test starts its own cluster on ephemeral loopback ports; the
//! five run in parallel in about 5 s.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

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
fn a_node_never_added_is_refused_then_joins_as_a_learner_and_is_promoted_by_hand() {
    let mut c = Cluster::start(3);
    let addr = c.add_slot(9);
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

    // Added with --learner, it stays one: a promotion before it runs is refused in one line.
    let (code, v, err) = member(&c, &["add", "9", &addr, "--learner"]);
    assert_eq!((code, &v), (Some(0), &json!({"ok": true})), "{err}");
    let (code, v, _) = member(&c, &["promote", "9"]);
    assert_eq!(code, Some(3), "{v}");
    let e = v["error"].as_str().unwrap_or_default();
    assert!(
        e.contains("node 9 is not connected") && !e.contains('\n'),
        "{v}"
    );
    c.restart(9);
    let port = c.node(9).port;
    assert!(held_by(&c, 9, "k"), "the learner did not receive the log");
    let st = ok(&c, &["status"]);
    for row in st["nodes"].as_array().expect("rows") {
        assert_eq!(row["learners"], json!([9]), "{row}");
        assert_eq!(row["voters"], json!([1, 2, 3]), "{row}");
    }
    assert_eq!(metric(port, "keyval_membership_learners"), Some(1));
    assert_eq!(
        http_status(port, "/readyz").map(|r| r.0),
        Some(503),
        "a learner is not ready"
    );
    thread::sleep(Duration::from_millis(500));
    assert_eq!(
        role_of(&c, 9).as_deref(),
        Some("learner"),
        "--learner was promoted"
    );
    let (code, v, err) = member(&c, &["promote", "9"]);
    assert_eq!(code, Some(0), "{v} {err}");
    assert_eq!(role_of(&c, 9).as_deref(), Some("voter"));
    assert!(wait_until(Duration::from_secs(5), || {
        http_status(port, "/readyz").map(|r| r.0) == Some(200)
    }));
    assert_eq!(voters(&c), vec![1, 2, 3, 9]);
}

/// The intent to promote is in the replicated configuration: node 4 is added (without
/// `--learner`) while it is not running, the leader that took the request is killed (-9) and
/// leadership is transferred once more; when node 4 starts it catches up and is promoted by a
/// leader that never saw the request, with no `member promote`.
#[test]
fn a_learner_added_to_be_promoted_is_promoted_by_a_later_leader() {
    let mut c = Cluster::start(3);
    ok(&c, &["put", "k", "v"]);
    let first = c.wait_leader(Duration::from_secs(10)).expect("leader");
    let addr = c.add_slot(4);
    let (code, v, err) = member(&c, &["add", "4", &addr]);
    assert_eq!((code, &v), (Some(0), &json!({"ok": true})), "{err}");
    let row = member_row(&c, 4);
    assert_eq!(
        (&row["role"], &row["auto_promote"]),
        (&json!("learner"), &json!(true)),
        "{row}"
    );
    let text = kvctl_raw(&["--endpoints", &c.endpoints(), "member", "list"]);
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(
        text.lines().any(|l| l.starts_with("4 ")
            && l.ends_with("learner (promoted automatically once caught up)")),
        "{text}"
    );

    c.kill9(first);
    let second = wait_leader_other_than(&c, first);
    let third = (1..=3)
        .find(|&i| i != first && i != second)
        .expect("a third");
    let v = ok(&c, &["leader", "transfer", "--to", &third.to_string()]);
    assert_eq!(v["leader"], third, "{v}");
    assert_eq!(role_of(&c, 4).as_deref(), Some("learner"));
    ok(&c, &["put", "k2", "v2"]);

    c.restart(4);
    assert!(
        wait_until(Duration::from_secs(20), || role_of(&c, 4).as_deref()
            == Some("voter")),
        "node 4 was not promoted: {:?}",
        member(&c, &["list"])
    );
    assert_eq!(member_row(&c, 4).get("auto_promote"), None);
    assert!(held_by(&c, 4, "k2"), "node 4 lacks the data");
    assert_eq!(voters(&c), vec![1, 2, 3, 4]);
}

/// The leader once it is not `not`: polled until one of the others leads.
fn wait_leader_other_than(c: &Cluster, not: u64) -> u64 {
    let mut found = None;
    wait_until(Duration::from_secs(15), || {
        found = c
            .wait_leader(Duration::from_millis(200))
            .filter(|&l| l != not);
        found.is_some()
    });
    found.expect("a new leader")
}

/// Node `id`'s row of `member list` (JSON), or Null.
fn member_row(c: &Cluster, id: u64) -> Value {
    let (_, v, _) = member(c, &["list"]);
    v["members"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["id"] == id).cloned())
        .unwrap_or(Value::Null)
}

/// `kvctl member ARGS...` in JSON mode.
fn member(c: &Cluster, args: &[&str]) -> (Option<i32>, Value, String) {
    let mut all = vec!["--timeout-ms", "5000", "member"];
    all.extend_from_slice(args);
    c.kvctl(&all)
}

/// The role of node `id` in `member list` (None: not a member), as the leader reports it.
fn role_of(c: &Cluster, id: u64) -> Option<String> {
    let (_, v, _) = member(c, &["list"]);
    v["members"]
        .as_array()?
        .iter()
        .find(|m| m["id"] == id)
        .and_then(|m| m["role"].as_str().map(str::to_string))
}

fn voters(c: &Cluster) -> Vec<u64> {
    let (_, v, _) = member(c, &["list"]);
    v["members"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .filter(|m| m["role"] == "voter")
                .filter_map(|m| m["id"].as_u64())
                .collect()
        })
        .unwrap_or_default()
}

/// Adds node `id` (a new slot) with `kvctl member add`, starts it with `--join`, and waits
/// until the leader has promoted it.
fn grow(c: &mut Cluster, id: u64) {
    let addr = c.add_slot(id);
    let (code, v, err) = member(c, &["add", &id.to_string(), &addr]);
    assert_eq!(code, Some(0), "member add {id}: {v} {err}");
    assert_eq!(v, json!({"ok": true}));
    assert_eq!(role_of(c, id).as_deref(), Some("learner"));
    c.restart(id);
    assert!(
        wait_until(Duration::from_secs(20), || role_of(c, id).as_deref()
            == Some("voter")),
        "node {id} was not promoted: {:?}",
        member(c, &["list"])
    );
}

/// Writes keys in a loop through kvctl until told to stop; returns the keys acknowledged.
fn writer(endpoints: String, stop: Arc<AtomicBool>) -> thread::JoinHandle<Vec<String>> {
    thread::spawn(move || {
        let mut acked = Vec::new();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let key = format!("load-{i}");
            let (code, _, _) = kvctl_json(&endpoints, &["--timeout-ms", "3000", "put", &key, "v"]);
            if code == Some(0) {
                acked.push(key);
            }
        }
        acked
    })
}

/// Whether node `id` holds `key` in its own state within a few seconds: a learner is promoted
/// once within `PROMOTE_MAX_LAG` entries, so it may still be applying when it becomes a voter.
fn held_by(c: &Cluster, id: u64, key: &str) -> bool {
    let endpoints = c.endpoints_of(&[id]);
    wait_until(Duration::from_secs(5), || {
        kvctl_json(&endpoints, &["get", key, "--consistency", "serializable"]).1["found"] == true
    })
}

fn assert_all_readable(c: &Cluster, keys: &[String]) {
    for k in keys {
        let v = ok(c, &["get", k]);
        assert_eq!(v["found"], true, "acknowledged write {k} lost");
    }
}

fn metric(port: u16, name: &str) -> Option<u64> {
    let text = http_get(port, "/metrics");
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn grow_three_to_five_under_write_load_then_shrink_back_to_three() {
    let mut c = Cluster::start(3);
    let stop = Arc::new(AtomicBool::new(false));
    let load = writer(c.endpoints(), stop.clone());
    thread::sleep(Duration::from_millis(300));
    grow(&mut c, 4);
    grow(&mut c, 5);
    stop.store(true, Ordering::Relaxed);
    let acked = load.join().expect("writer");
    assert!(
        acked.len() > 5,
        "the load made too little progress: {}",
        acked.len()
    );
    assert_eq!(voters(&c), vec![1, 2, 3, 4, 5]);
    // Every node, the new ones included, reports the five voters.
    for id in 1..=5u64 {
        let port = c.node(id).port;
        assert!(
            wait_until(Duration::from_secs(5), || metric(
                port,
                "keyval_membership_voters"
            ) == Some(5)),
            "node {id} does not report 5 voters"
        );
        assert_eq!(metric(port, "keyval_membership_joint"), Some(0));
    }
    let st = ok(&c, &["status"]);
    for row in st["nodes"].as_array().expect("rows") {
        assert_eq!(row["voters"], json!([1, 2, 3, 4, 5]), "{row}");
        assert_eq!(row["learners"], json!([]), "{row}");
    }
    assert_all_readable(&c, &acked);
    // The new voters hold the data: read from them alone, serializable (their own state).
    assert!(held_by(&c, 5, &acked[0]), "node 5 lacks {}", acked[0]);

    // Shrink 5 -> 3: each removed node stops with one line and the rest keep serving.
    for id in [4u64, 5] {
        let (code, v, err) = member(&c, &["remove", &id.to_string()]);
        assert_eq!(code, Some(0), "member remove {id}: {v} {err}");
        let exited = {
            let child = c.node(id).child.as_mut().expect("running");
            wait_exit(child, Duration::from_secs(10))
        };
        assert_eq!(
            exited.and_then(|s| s.code()),
            Some(1),
            "node {id} kept running"
        );
        c.node(id).child = None;
        let log = c.node(id).log_text();
        assert!(
            log.lines()
                .last()
                .unwrap_or_default()
                .contains("was removed from the cluster"),
            "{log}"
        );
        c.drop_slot(id);
    }
    assert_eq!(voters(&c), vec![1, 2, 3]);
    ok(&c, &["put", "after-shrink", "v"]);
    // A removed id is never reused.
    let (code, v, _) = member(&c, &["add", "4", "127.0.0.1:1"]);
    assert_eq!(code, Some(3), "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("never reused"),
        "{v}"
    );
}

/// A node added after the leader's last snapshot is caught up through that snapshot, whose
/// configuration does not name it yet (its addition comes later in the log). It must wait for
/// the rest of the log, not take its absence for a removal: it used to stop at once, saying it
/// had been removed, whenever the leader's state was big enough to be sent as a snapshot.
#[test]
fn a_node_added_after_the_leaders_snapshot_joins_through_that_snapshot() {
    let mut c = Cluster::start_with(3, &["--snapshot-threshold", "20"]);
    for i in 0..60 {
        ok(&c, &["put", &format!("k{i}"), "v"]);
    }
    grow(&mut c, 4);
    // Past the grace a removed node gets to hand over before it stops.
    thread::sleep(Duration::from_secs(1));
    let exited = c.node(4).child.as_mut().expect("started").try_wait();
    assert!(
        matches!(exited, Ok(None)),
        "node 4 stopped ({exited:?}): {}",
        c.node(4).log_text()
    );
    assert!(
        !c.node(4).log_text().contains("was removed"),
        "node 4 took the snapshot's older configuration for its removal"
    );
    let snapshots = metric(c.node(4).port, "keyval_snapshots_installed_total");
    assert!(
        snapshots.is_some_and(|n| n >= 1),
        "node 4 was caught up by snapshot ({snapshots:?})"
    );
    ok(&c, &["put", "after-join", "1"]);
    assert!(held_by(&c, 4, "k0"), "node 4 lacks the snapshot's data");
    assert!(
        held_by(&c, 4, "after-join"),
        "node 4 lacks a write after its promotion"
    );
}

#[test]
fn replace_a_wiped_node_then_its_old_self_is_refused_then_remove_the_leader() {
    // Longer election timeouts than the default: this test asserts that no term moves for 2 s,
    // and a loaded CI machine must not fake a disturbance with an unrelated election.
    let mut c = Cluster::start_with(
        3,
        &["--heartbeat-ms", "100", "--election-timeout-ms", "1000"],
    );
    ok(&c, &["put", "before", "1"]);
    let leader = c.wait_leader(Duration::from_secs(10)).expect("leader");
    let victim = (1..=3).find(|&i| i != leader).expect("a follower");
    let survivor = (1..=3)
        .find(|&i| i != leader && i != victim)
        .expect("another");
    c.kill9(victim);
    // Strict reconfiguration: with the victim down, removing a live voter would leave one
    // connected voter of two: refused with one line, nothing proposed.
    let (code, v, _) = member(&c, &["remove", &survivor.to_string()]);
    assert_eq!(code, Some(3), "{v}");
    let e = v["error"].as_str().unwrap_or_default();
    assert!(
        e.contains("strict reconfiguration") && !e.contains('\n'),
        "{v}"
    );
    assert_eq!(voters(&c), vec![1, 2, 3]);

    // The victim's disk is lost: keep its old data aside, remove it, add a new id.
    let old = c.node(victim).data_dir.clone();
    let aside = old.with_extension("old");
    std::fs::rename(&old, &aside).expect("move data aside");
    let (code, v, err) = member(&c, &["remove", &victim.to_string()]);
    assert_eq!(code, Some(0), "{v} {err}");
    grow(&mut c, 4);
    ok(&c, &["put", "after-replace", "2"]);
    assert!(held_by(&c, 4, "before"), "the replacement lacks the data");

    // The removed node comes back with its old data: it refuses to serve and the cluster's
    // term and leader stay as they were.
    let before = c.status();
    let (term, leader_now) = (
        before[&leader]["term"].clone(),
        before[&leader]["leader"].clone(),
    );
    std::fs::rename(&aside, &old).expect("restore old data");
    c.restart(victim);
    let exited = {
        let child = c.node(victim).child.as_mut().expect("started");
        wait_exit(child, Duration::from_secs(15))
    };
    assert_eq!(exited.and_then(|s| s.code()), Some(1));
    c.node(victim).child = None;
    let log = c.node(victim).log_text();
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.contains(&format!("node {victim} was removed from the cluster")),
        "{log}"
    );
    // Over a few election timeouts, no member sees a new term or another leader.
    thread::sleep(Duration::from_secs(2));
    let after = c.status();
    for id in [leader, survivor, 4] {
        assert_eq!(
            after[&id]["term"], term,
            "the removed node disturbed node {id}'s term"
        );
        assert_eq!(after[&id]["leader"], leader_now, "node {id}");
    }
    // A restart of the same directory refuses at once, from what it recorded.
    c.restart(victim);
    let exited = {
        let child = c.node(victim).child.as_mut().expect("started");
        wait_exit(child, Duration::from_secs(10))
    };
    assert_eq!(exited.and_then(|s| s.code()), Some(1));
    c.drop_slot(victim);

    // Remove the leader: it hands over, steps down and stops; the rest elect and serve.
    let (code, v, err) = member(&c, &["remove", &leader.to_string()]);
    assert_eq!(code, Some(0), "{v} {err}");
    let exited = {
        let child = c.node(leader).child.as_mut().expect("running");
        wait_exit(child, Duration::from_secs(10))
    };
    assert_eq!(
        exited.and_then(|s| s.code()),
        Some(1),
        "the removed leader kept running"
    );
    let log = c.node(leader).log_text();
    assert!(
        log.contains("leadership transfer started"),
        "it did not hand over first: {log}"
    );
    c.drop_slot(leader);
    let new_leader = c
        .wait_leader(Duration::from_secs(10))
        .expect("a new leader");
    assert_ne!(new_leader, leader);
    let mut expected = vec![survivor, 4];
    expected.sort();
    assert_eq!(voters(&c), expected);
    ok(&c, &["put", "after-leader-removal", "3"]);
    for k in ["before", "after-replace", "after-leader-removal"] {
        assert_eq!(ok(&c, &["get", k])["found"], true, "{k}");
    }
}

#[test]
fn a_node_joins_a_tls_cluster_with_its_peer_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = common::pki::Pki::new(dir.path());
    for id in 1..=4 {
        pki.node(id);
    }
    let mut c = Cluster::start_tls(3, &[], dir.path());
    ok(&c, &["put", "k", "v"]);
    grow(&mut c, 4);
    let (endpoints, ca) = (c.endpoints_of(&[4]), pki.path("peer-ca.pem"));
    let ca = ca.to_string_lossy();
    let args = ["--cacert", &ca, "get", "k", "--consistency", "serializable"];
    assert!(
        wait_until(Duration::from_secs(5), || kvctl_json(&endpoints, &args).1
            ["found"]
            == true),
        "node 4 does not serve the data over TLS: {:?}",
        kvctl_json(&endpoints, &args)
    );
}
