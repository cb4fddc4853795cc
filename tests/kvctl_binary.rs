//! kvctl and binary values: written with `--hex`, read back exactly as hex, as base64 in JSON
//! (with a field saying so) and as raw bytes in text mode. UTF-8 values keep SPEC's JSON. ~3 s.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

#[test]
fn binary_values_round_trip_through_kvctl() {
    let c = Cluster::start(3);
    ok(&c, &["--hex", "put", "bin", "ff00fe61"]);
    assert_eq!(
        ok(&c, &["get", "bin"]),
        json!({"ok": true, "found": true, "value": "/wD+YQ==", "encoding": "base64"})
    );
    assert_eq!(
        ok(&c, &["--hex", "get", "bin"]),
        json!({"ok": true, "found": true, "value": "ff00fe61", "encoding": "hex"})
    );
    let text = kvctl_raw(&["--endpoints", &c.endpoints(), "get", "bin"]);
    assert_eq!(text.stdout, b"\xff\x00\xfea\n");
    let hex = kvctl_raw(&["--endpoints", &c.endpoints(), "--hex", "get", "bin"]);
    assert_eq!(hex.stdout, b"ff00fe61\n");
    ok(&c, &["put", "plain", "héllo"]);
    assert_eq!(
        ok(&c, &["get", "plain"]),
        json!({"ok": true, "found": true, "value": "héllo"})
    );
    let (code, _, _) = c.kvctl(&["--hex", "put", "bad", "xyz"]);
    assert_eq!(code, Some(2), "odd or non-hex VALUE is a usage error");
}

/// `kvctl bench --interval-ms` reports throughput per interval (to see a dip during a change);
/// the intervals account for the operations the summary counts.
#[test]
fn bench_reports_throughput_per_interval() {
    let c = Cluster::start(3);
    let v = ok(
        &c,
        &[
            "bench",
            "--clients",
            "4",
            "--duration",
            "1.6",
            "--interval-ms",
            "500",
        ],
    );
    let intervals: Vec<f64> = v["intervals"]
        .as_array()
        .expect("intervals")
        .iter()
        .map(|r| r.as_f64().expect("a rate"))
        .collect();
    assert_eq!(intervals.len(), 3, "{v}");
    assert!(intervals.iter().all(|&r| r > 0.0), "{v}");
    let counted: f64 = intervals.iter().map(|r| r * 0.5).sum();
    let ops = v["ops"].as_f64().expect("ops");
    assert!(
        counted <= ops * 1.1 && counted >= ops * 0.5,
        "the intervals ({counted:.0} ops) do not match the total ({ops})"
    );
    assert!(v["started_unix_ms"].as_u64().is_some_and(|t| t > 0), "{v}");
    let (code, _, _) = c.kvctl(&["bench", "--duration", "1", "--interval-ms", "250"]);
    assert_eq!(
        code,
        Some(2),
        "an interval off the 100 ms grid is a usage error"
    );
}

fn client_connects(c: &Cluster, id: u64) -> u64 {
    let metrics = http_get(c.nodes[(id - 1) as usize].port, "/metrics");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("keyval_client_connects_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("keyval_client_connects_total in /metrics")
}

/// `kvctl bench --conns N` shares N connections to the leader among the clients (as etcd's
/// benchmark does): every operation is answered over them, each client keeps its own session,
/// and the leader sees N connections (plus the one that found it), not one per client.
#[test]
fn bench_clients_share_connections_to_the_leader() {
    let c = Cluster::start(3);
    let leader = c.wait_leader(Duration::from_secs(10)).expect("a leader");
    let before = client_connects(&c, leader);
    let v = ok(
        &c,
        &["bench", "--clients", "16", "--conns", "2", "--total", "400"],
    );
    assert_eq!(v["ops"], 400, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["fallbacks"], 0, "{v}");
    assert_eq!(v["conns"], 2, "{v}");
    let opened = client_connects(&c, leader) - before;
    assert!(
        (2..=4).contains(&opened),
        "16 clients over 2 shared connections opened {opened} connections at the leader"
    );
    let reads = ok(
        &c,
        &[
            "bench",
            "--op",
            "get",
            "--clients",
            "8",
            "--conns",
            "1",
            "--total",
            "200",
        ],
    );
    assert_eq!(reads["ops"], 200, "{reads}");
    assert_eq!(reads["errors"], 0, "{reads}");
    let (code, _, _) = c.kvctl(&["bench", "--clients", "2", "--conns", "3", "--total", "1"]);
    assert_eq!(
        code,
        Some(2),
        "more connections than clients is a usage error"
    );
}

/// A client whose shared connection dies (here with its leader) goes on over its own
/// connection, which finds the new leader: the run completes with no failed operation.
#[test]
fn bench_clients_leave_a_dead_shared_connection_for_their_own() {
    let mut c = Cluster::start(3);
    let leader = c.wait_leader(Duration::from_secs(10)).expect("a leader");
    let bench = kvctl_command(&[
        "--endpoints",
        &c.endpoints(),
        "--timeout-ms",
        "10000",
        "-o",
        "json",
        "bench",
        "--clients",
        "8",
        "--conns",
        "1",
        "--duration",
        "4",
    ])
    .stdout(std::process::Stdio::piped())
    .spawn()
    .expect("kvctl bench");
    std::thread::sleep(Duration::from_millis(1500));
    c.kill9(leader);
    let out = bench.wait_with_output().expect("kvctl bench output");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bench JSON");
    assert!(out.status.success(), "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(
        v["fallbacks"], 8,
        "every client left the dead connection: {v}"
    );
    assert!(v["ops"].as_u64().is_some_and(|n| n > 100), "{v}");
}

/// `kvctl floor` needs no cluster: it measures the machine's own path of a put (five lines of
/// percentiles, in order) in a scratch directory that it removes, and refuses a directory it
/// cannot write in with an error instead of a report.
#[test]
fn floor_measures_the_machine_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir_arg = dir.path().to_str().expect("utf-8 temp path");
    let out = kvctl_raw(&["-o", "json", "floor", "--dir", dir_arg, "--requests", "50"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["requests"], 50);
    assert!(v["record_bytes"].as_u64().expect("record_bytes") > 16 + 256);
    let lines = v["latency_ms"].as_object().expect("latency_ms");
    let names: Vec<&str> = lines.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "disk_fdatasync",
            "disk_fdatasync_3_writers",
            "replicated_no_fsync",
            "replicated_followers_fsync",
            "replicated_fsync"
        ]
    );
    for (name, l) in lines {
        let p = |q: &str| l[q].as_f64().unwrap_or_else(|| panic!("{name}.{q}"));
        assert!(
            0.0 < p("p50") && p("p50") <= p("p90") && p("p90") <= p("p99"),
            "{name}: {l}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("read dir").collect();
    assert!(
        left.is_empty(),
        "the scratch directory is removed: {left:?}"
    );

    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"x").expect("write");
    let out = kvctl_raw(&[
        "-o",
        "json",
        "floor",
        "--dir",
        file.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["ok"], false);
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("not-a-directory")),
        "{v}"
    );
}
