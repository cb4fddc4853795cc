//! kvctl and binary values: written with `--hex`, read back exactly as hex, as base64 in JSON
//! (with a field saying so) and as raw bytes in text mode. UTF-8 values keep SPEC's JSON. ~3 s.

mod common;

use common::*;
use serde_json::json;

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
