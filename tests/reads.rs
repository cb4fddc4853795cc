//! Process tests of the read paths on real `keyval` nodes: every path returns what was
//! written, at every node that takes it; a leader stopped with SIGSTOP and woken up after the
//! others moved on answers no stale read; `put` takes values from a file and from stdin.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::json;

fn pid(c: &mut Cluster, id: u64) -> u32 {
    c.node(id).child.as_ref().expect("running").id()
}

#[test]
fn every_read_path_returns_what_was_written_at_every_node() {
    let c = Cluster::start_with(3, &["--lease-reads"]);
    ok(&c, &["put", "greeting", "hello"]);
    let leader = c.wait_leader(Duration::from_secs(10)).expect("leader");
    for n in &c.nodes {
        for consistency in ["linearizable", "lease", "serializable"] {
            let args = ["get", "greeting", "--consistency", consistency];
            // Serializable reads at a follower may lag a moment behind the commit; the others
            // must be current at once.
            let want = json!({"ok": true, "found": true, "value": "hello"});
            let got = if consistency == "serializable" {
                let mut last = json!(null);
                wait_until(Duration::from_secs(5), || {
                    last = kvctl_json(&n.addr(), &args).1;
                    last == want
                });
                last
            } else {
                let (code, v, err) = kvctl_json(&n.addr(), &args);
                assert_eq!(code, Some(0), "{consistency} at n{}: {err}", n.id);
                v
            };
            assert_eq!(
                got, want,
                "{consistency} read at n{} (leader n{leader})",
                n.id
            );
        }
    }
    // The reads did not go through the log: no entry beyond the session and the write.
    let st = c.status();
    let last = st[&leader]["last_index"].as_u64().expect("last_index");
    assert!(
        last <= 3,
        "reads must not append log entries (last index {last})"
    );
    let metrics = http_get(c.nodes[(leader - 1) as usize].port, "/metrics");
    for needle in [
        "keyval_read_requests_total{consistency=\"lease\"}",
        "keyval_read_index_rounds_total",
        "keyval_lease_read_hits_total",
        "keyval_follower_reads_total",
    ] {
        assert!(metrics.contains(needle), "/metrics lacks {needle}");
    }
    // A lease read asked of a follower is sent to the leader and served from its lease (it
    // used to become a follower read, a round trip the client asked a lease read to avoid).
    let hits = metrics
        .lines()
        .find_map(|l| l.strip_prefix("keyval_lease_read_hits_total "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert_eq!(
        hits,
        Some(3),
        "every node's lease read ended at the leader's lease"
    );
}

#[test]
fn lease_reads_are_refused_where_they_are_off() {
    let c = Cluster::start(3);
    let (code, v, _) = c.kvctl(&["get", "k", "--consistency", "lease"]);
    assert_eq!(code, Some(3), "{v}");
    assert_eq!(v["ok"], false);
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("lease reads are disabled"),
        "{v}"
    );
}

/// A leader frozen by SIGSTOP wakes up still believing it leads. Meanwhile the others elected
/// a new leader and a newer value was written. Neither a linearizable nor a lease read at the
/// woken node may return the old value: the first needs a quorum it no longer has, and the
/// lease expired while it slept (its clock kept running).
#[test]
fn a_leader_woken_from_sigstop_serves_no_stale_read() {
    let mut c = Cluster::start_with(3, &["--lease-reads"]);
    ok(&c, &["put", "k", "old"]);
    let old = c.wait_leader(Duration::from_secs(10)).expect("leader");
    let old_addr = c.nodes[(old - 1) as usize].addr();
    let others: Vec<String> = c
        .nodes
        .iter()
        .filter(|n| n.id != old)
        .map(|n| n.addr())
        .collect();
    let others = others.join(",");
    let p = pid(&mut c, old);
    signal(p, "STOP");
    let moved_on = wait_until(Duration::from_secs(10), || {
        kvctl_json(&others, &["--timeout-ms", "1000", "put", "k", "new"]).0 == Some(0)
    });
    signal(p, "CONT");
    assert!(moved_on, "the other two did not elect a leader and write");
    for consistency in ["linearizable", "lease"] {
        let (code, v, _) = kvctl_json(
            &old_addr,
            &[
                "--timeout-ms",
                "2000",
                "get",
                "k",
                "--consistency",
                consistency,
            ],
        );
        assert_ne!(
            v["value"], "old",
            "{consistency} read at the woken leader returned the stale value (exit {code:?})"
        );
    }
    // The cluster as a whole answers the new value.
    assert_eq!(
        ok(&c, &["get", "k"]),
        json!({"ok": true, "found": true, "value": "new"})
    );
}

#[test]
fn put_takes_the_value_from_a_file_or_stdin() {
    let c = Cluster::start(3);
    // Larger than one command-line argument may be (128 KiB on Linux); the test binaries are
    // debug builds, where a full 1 MiB value takes seconds to move through a node.
    let big: Vec<u8> = (0..(300 << 10)).map(|i| b'a' + (i % 26) as u8).collect();
    let path = c.dir.path().join("value.bin");
    std::fs::write(&path, &big).expect("write value file");
    let p = path.to_string_lossy().to_string();
    ok(&c, &["put", "big", "--value-file", &p]);
    // Read back with stdout drained as it comes (the value is larger than a pipe's buffer).
    let out = kvctl_command(&["--endpoints", &c.endpoints(), "get", "big"])
        .output()
        .expect("kvctl get");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stdout.strip_suffix(b"\n"), Some(big.as_slice()));

    let mut child = kvctl_command(&[
        "--endpoints",
        &c.endpoints(),
        "-o",
        "json",
        "put",
        "piped",
        "-",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .spawn()
    .expect("spawn kvctl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"from stdin")
        .expect("write stdin");
    let out = child.wait_with_output().expect("kvctl output");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        ok(&c, &["get", "piped"]),
        json!({"ok": true, "found": true, "value": "from stdin"})
    );

    // One byte over the limit is refused before sending: a definite failure.
    let over = c.dir.path().join("over.bin");
    std::fs::write(&over, vec![b'x'; (1 << 20) + 1]).expect("write");
    let (code, v, _) = c.kvctl(&["put", "big", "--value-file", &over.to_string_lossy()]);
    assert_eq!(code, Some(3), "{v}");
    let (code, _, _) = c.kvctl(&["put", "big", "--value-file", "/nonexistent/file"]);
    assert_eq!(code, Some(2));
}
