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
