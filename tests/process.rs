//! Process-level tests of the native node and kvctl: real `keyval` processes on ephemeral
//! loopback ports with temp data directories, driven through the contracts in SPEC.md (flags,
//! kvctl JSON output, exit codes). Nothing here asserts on timing beyond generous bounds.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;
use keyval_core::trace::TraceKind;
use keyval_core::{ClientRequest, Entry, EntryPayload, Envelope, KvOp, LiveFrame, Message};
use native_node::wire::{self, ClientFrame, PeerFrame, ServerFrame};
use serde_json::{json, Value};

#[test]
fn three_nodes_elect_a_leader_and_serve_put_get_delete_json() {
    let c = Cluster::start(3);
    assert_eq!(ok(&c, &["put", "greeting", "hello"]), json!({"ok": true}));
    assert_eq!(
        ok(&c, &["get", "greeting"]),
        json!({"ok": true, "found": true, "value": "hello"})
    );
    // Exact one-line shapes from SPEC.md, key order included.
    let (_, _, _) = c.kvctl(&["put", "k2", "v2"]);
    let out = kvctl_raw(&["--endpoints", &c.endpoints(), "-o", "json", "get", "k2"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"ok\":true,\"found\":true,\"value\":\"v2\"}\n"
    );
    assert_eq!(
        ok(&c, &["delete", "greeting"]),
        json!({"ok": true, "deleted": true})
    );
    assert_eq!(
        ok(&c, &["delete", "greeting"]),
        json!({"ok": true, "deleted": false})
    );
    assert_eq!(
        ok(&c, &["get", "greeting"]),
        json!({"ok": true, "found": false})
    );

    let st = ok(&c, &["status"]);
    let nodes = st["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3);
    let leaders: Vec<&Value> = nodes.iter().filter(|n| n["role"] == "leader").collect();
    assert_eq!(leaders.len(), 1, "{st}");
    let leader_id = leaders[0]["id"].clone();
    for n in nodes {
        for field in [
            "id",
            "address",
            "reachable",
            "role",
            "term",
            "leader",
            "commit_index",
            "applied_index",
            "last_index",
            "snapshot_index",
            "members",
        ] {
            assert!(n.get(field).is_some(), "status row lacks {field}: {n}");
        }
        assert_eq!(n["members"], json!([1, 2, 3]));
        assert_eq!(n["snapshot_index"], json!(0));
        // Followers learn the leader with its first heartbeat.
        assert!(n["leader"] == leader_id || n["leader"].is_null(), "{n}");
    }

    // The live event stream: a status frame on connect, then events as they happen.
    let mut events = ws(c.nodes[0].port, "/events");
    let first = events.read().expect("first frame");
    let frame: LiveFrame = postcard::from_bytes(&first.into_data()).expect("LiveFrame");
    assert!(
        matches!(frame, LiveFrame::Status(ref s) if s.id == 1),
        "{frame:?}"
    );
    ok(&c, &["put", "watched", "yes"]);
    let mut saw_applied = false;
    for _ in 0..500 {
        let Ok(msg) = events.read() else { break };
        let frame = postcard::from_bytes::<LiveFrame>(&msg.into_data());
        if let Ok(LiveFrame::Event {
            kind:
                TraceKind::Applied {
                    op: Some(KvOp::Put { key, .. }),
                    ..
                },
            ..
        }) = frame
        {
            if key == b"watched" {
                saw_applied = true;
                break;
            }
        }
    }
    assert!(saw_applied, "no Applied event for the put on /events");
    // An idle node keeps sending its status (every 500 ms), so a viewer can tell a quiet node
    // from a hung one; over ~1.5 s at least two status frames must arrive.
    let until = std::time::Instant::now() + std::time::Duration::from_millis(1_500);
    let mut statuses = 0;
    while std::time::Instant::now() < until {
        let Ok(msg) = events.read() else { break };
        if let Ok(LiveFrame::Status(_)) = postcard::from_bytes::<LiveFrame>(&msg.into_data()) {
            statuses += 1;
        }
    }
    assert!(
        statuses >= 2,
        "only {statuses} status frames in 1.5 s on /events"
    );
    drop(events);

    // /healthz and /metrics on the same port.
    let health = http_get(c.nodes[0].port, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("role=") && health.contains("term=") && health.contains("leader="));
    let metrics = http_get(c.nodes[0].port, "/metrics");
    for m in [
        "keyval_term",
        "keyval_commit_index",
        "keyval_fsync_duration_seconds_count",
        "keyval_messages_sent_total{type=\"Heartbeat\"}",
        "keyval_peer_connected{peer=\"2\"} 1",
    ] {
        assert!(metrics.contains(m), "metrics lack {m}");
    }
}

#[test]
fn killing_the_leader_elects_a_new_one_and_the_old_one_catches_up() {
    let mut c = Cluster::start(3);
    ok(&c, &["put", "before", "1"]);
    let old = c.wait_leader(Duration::from_secs(10)).expect("leader");
    c.kill9(old);
    // Writes continue: kvctl finds the new leader itself.
    for i in 0..20 {
        let v = i.to_string();
        assert_eq!(
            ok(
                &c,
                &["--timeout-ms", "10000", "put", &format!("after{i}"), &v]
            ),
            json!({"ok": true})
        );
    }
    let new = c.wait_leader(Duration::from_secs(10)).expect("new leader");
    assert_ne!(new, old);

    c.restart(old);
    let caught_up = wait_until(Duration::from_secs(20), || {
        let st = c.status();
        match (st.get(&old), st.get(&new)) {
            (Some(o), Some(l)) => {
                o["applied_index"].as_u64() >= l["commit_index"].as_u64()
                    && o["leader"].as_u64() == Some(new)
            }
            _ => false,
        }
    });
    assert!(caught_up, "restarted node {old} did not catch up");
    assert_eq!(
        ok(&c, &["get", "after19"]),
        json!({"ok": true, "found": true, "value": "19"})
    );
}

#[test]
fn kill_all_nodes_during_writes_keeps_every_acknowledged_write() {
    let mut c = Cluster::start(3);
    let endpoints = c.endpoints();
    let acked = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let (acked, stop, endpoints) = (acked.clone(), stop.clone(), endpoints.clone());
            thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) && i < 2000 {
                    let (k, v) = (format!("w{w}-{i}"), format!("value-{w}-{i}"));
                    let (code, out, _) =
                        kvctl_json(&endpoints, &["--timeout-ms", "1500", "put", &k, &v]);
                    match code {
                        Some(0) => acked.lock().expect("lock").push((k, v)),
                        // Definite or indeterminate failures while the cluster is down.
                        Some(3) | Some(4) => {}
                        other => panic!("unexpected kvctl exit {other:?}: {out}"),
                    }
                    i += 1;
                }
            })
        })
        .collect();
    assert!(
        wait_until(Duration::from_secs(20), || acked
            .lock()
            .expect("lock")
            .len()
            >= 30),
        "writes did not get going"
    );
    for id in 1..=3 {
        c.kill9(id);
    }
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer");
    }
    let acked = acked.lock().expect("lock").clone();
    for id in 1..=3 {
        c.restart(id);
    }
    c.wait_leader(Duration::from_secs(20))
        .expect("leader after restart");
    for (k, v) in &acked {
        assert_eq!(
            ok(&c, &["--timeout-ms", "10000", "get", k]),
            json!({"ok": true, "found": true, "value": v}),
            "acknowledged write {k} lost"
        );
    }
    eprintln!("{} acknowledged writes all survived", acked.len());
}

#[test]
fn sigterm_stops_a_node_cleanly_with_exit_0() {
    let mut c = Cluster::start(1);
    ok(&c, &["put", "k", "v"]);
    let status = c.terminate(1).expect("exited");
    assert_eq!(status.code(), Some(0));
    assert!(c.nodes[0].log_text().contains("stopped cleanly"));
    c.restart(1);
    c.wait_leader(Duration::from_secs(10)).expect("leader");
    assert_eq!(
        ok(&c, &["get", "k"]),
        json!({"ok": true, "found": true, "value": "v"})
    );
}

fn segments(data_dir: &std::path::Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(data_dir.join("wal"))
        .expect("wal dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v
}

/// Where a segment's records end: the newest segment is preallocated, so its file goes on in
/// zeros. Frames are `[len u32][crc u32][payload]` after a 32-byte header, and an all-zero frame
/// header is not a record (a real record's checksum is never 0 with length 0).
fn records_end(bytes: &[u8]) -> usize {
    let mut off = 32;
    while let Some(frame) = bytes.get(off..off + 8) {
        if frame == [0u8; 8] {
            break;
        }
        let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        off += 8 + len;
    }
    off.min(bytes.len())
}

#[test]
fn torn_wal_tail_is_truncated_and_the_node_starts() {
    let mut c = Cluster::start(1);
    for i in 0..10 {
        ok(&c, &["put", &format!("k{i}"), "v"]);
    }
    c.kill9(1);
    // A crash in the middle of writing a record: a header promising more bytes than follow.
    let seg = segments(&c.nodes[0].data_dir).pop().expect("segment");
    let end = records_end(&fs::read(&seg).expect("read"));
    let f = fs::OpenOptions::new().write(true).open(&seg).expect("open");
    std::os::unix::fs::FileExt::write_all_at(&f, &[200, 0, 0, 0, 1, 2, 3, 4, 9, 9, 9], end as u64)
        .expect("write");
    drop(f);
    c.restart(1);
    c.wait_leader(Duration::from_secs(10))
        .expect("node starts after a torn tail");
    for i in 0..10 {
        assert_eq!(
            ok(&c, &["get", &format!("k{i}")]),
            json!({"ok": true, "found": true, "value": "v"})
        );
    }
    let log = c.nodes[0].log_text();
    assert!(log.contains("torn"), "truncation not logged:\n{log}");
}

#[test]
fn flipped_byte_mid_wal_refuses_to_start_naming_file_and_offset() {
    let mut c = Cluster::start(1);
    for i in 0..20 {
        ok(&c, &["put", &format!("key{i}"), &"x".repeat(100)]);
    }
    c.terminate(1);
    let seg = segments(&c.nodes[0].data_dir).pop().expect("segment");
    let mut bytes = fs::read(&seg).expect("read");
    let mid = records_end(&bytes) / 2;
    bytes[mid] ^= 0xff;
    fs::write(&seg, bytes).expect("write");
    let out = c
        .keyval_cmd(1)
        .stdin(Stdio::null())
        .output()
        .expect("run keyval");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started on a corrupt WAL");
    // Exactly one line: the refusal, naming file and offset.
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line:\n{stderr}");
    let line = lines[0];
    assert!(line.starts_with("keyval: error:"), "{line}");
    let name = seg.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(line.contains("corrupt"), "{line}");
    assert!(line.contains(name), "error does not name the file: {line}");
    assert!(
        line.contains("offset"),
        "error does not name the offset: {line}"
    );
}

#[test]
fn locked_data_dir_is_refused_and_bad_flags_exit_2() {
    let c = Cluster::start(1);
    let port = free_ports(1)[0];
    let out = std::process::Command::new(keyval_bin())
        .args(["--id", "1", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--peers", &c.peers, "--data-dir"])
        .arg(&c.nodes[0].data_dir)
        .output()
        .expect("run keyval");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("locked"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(out.status.code(), Some(1));
    // The running node is unaffected.
    ok(&c, &["put", "still", "serving"]);

    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_string_lossy().to_string();
    for args in [
        vec!["--id", "x"],
        vec![
            "--listen",
            "127.0.0.1:1",
            "--peers",
            "1=127.0.0.1:1",
            "--data-dir",
            &d,
        ],
        vec![
            "--id",
            "2",
            "--listen",
            "127.0.0.1:1",
            "--peers",
            "1=127.0.0.1:1",
            "--data-dir",
            &d,
        ],
        vec![
            "--id",
            "1",
            "--listen",
            "127.0.0.1:1",
            "--peers",
            "1=nope",
            "--data-dir",
            &d,
        ],
        vec![
            "--id",
            "1",
            "--listen",
            "127.0.0.1:1",
            "--peers",
            "1=127.0.0.1:1",
            "--data-dir",
            &d,
            "--heartbeat-ms",
            "500",
        ],
    ] {
        let out = std::process::Command::new(keyval_bin())
            .args(&args)
            .output()
            .expect("run keyval");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
}

type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

fn ws(port: u16, path: &str) -> Ws {
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None);
    let (ws, _) = tungstenite::client::connect_with_config(
        format!("ws://127.0.0.1:{port}{path}"),
        Some(config),
        3,
    )
    .expect("websocket connect");
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
    }
    ws
}

/// Reads until the server closes or errors; returns the binary frames it sent first.
fn drain(ws: &mut Ws) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    for _ in 0..10 {
        match ws.read() {
            Ok(tungstenite::Message::Binary(b)) => frames.push(b.to_vec()),
            Ok(tungstenite::Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    frames
}

#[test]
fn hostile_input_leaves_the_node_up_and_serving() {
    let c = Cluster::start(3);
    let port = c.nodes[0].port;

    // Garbage bytes instead of HTTP.
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = s.write_all(b"\x00\xff\x13garbage\r\n\r\n\x16\x03\x01");
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);

    // A wrong cluster id is refused with a reason.
    let mut w = ws(port, "/raft");
    let hello = PeerFrame::Hello {
        cluster_id: "some-other-cluster".into(),
        from: 2,
        to: 1,
    };
    w.send(tungstenite::Message::Binary(wire::encode(&hello).into()))
        .expect("send");
    let frames = drain(&mut w);
    let refused = frames
        .iter()
        .any(|f| matches!(wire::decode::<PeerFrame>(f), Ok(PeerFrame::Refused { .. })));
    assert!(refused, "wrong cluster id was not refused");

    // An oversized frame on the peer port and on the client port.
    for (path, size) in [("/raft", 17 << 20), ("/client", 3 << 20)] {
        let mut w = ws(port, path);
        let _ = w.send(tungstenite::Message::Binary(vec![1u8; size].into()));
        drain(&mut w);
    }

    // Random binary frames, a text frame, and a valid handshake followed by junk.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for path in ["/raft", "/client", "/events"] {
        for len in [0usize, 1, 7, 100, 5000] {
            let mut w = ws(port, path);
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = w.send(tungstenite::Message::Binary(junk.into()));
            let _ = w.send(tungstenite::Message::Text("hello?".into()));
            drain(&mut w);
        }
    }
    let cluster_id = fs::read_to_string(c.nodes[0].data_dir.join("cluster.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .and_then(|v| v["cluster_id"].as_str().map(str::to_string))
        .expect("cluster id");
    let mut w = ws(port, "/raft");
    let hello = PeerFrame::Hello {
        cluster_id,
        from: 2,
        to: 1,
    };
    let hello_again = hello.clone();
    w.send(tungstenite::Message::Binary(wire::encode(&hello).into()))
        .expect("send");
    let _ = w.send(tungstenite::Message::Binary(
        vec![1, 0xff, 0xff, 0xff].into(),
    ));
    drain(&mut w);

    // A well-framed but malformed append (an index gap) from a handshaken "peer" is dropped
    // before it reaches the Raft core, whose log invariants would otherwise be violated.
    let mut w = ws(port, "/raft");
    w.send(tungstenite::Message::Binary(
        wire::encode(&hello_again).into(),
    ))
    .expect("send");
    let bad = PeerFrame::Raft(vec![Envelope {
        from: 2,
        to: 1,
        msg: Message::AppendEntries {
            term: 1000,
            prev_log_index: 0,
            prev_log_term: 0,
            entries: vec![Entry {
                index: 5,
                term: 1000,
                payload: EntryPayload::Noop,
            }],
            leader_commit: 5,
        },
    }]);
    w.send(tungstenite::Message::Binary(wire::encode(&bad).into()))
        .expect("send");
    thread::sleep(Duration::from_millis(200));
    drop(w);

    // A value over 1 MiB sent straight to the server is refused as a definite failure.
    let mut w = ws(port, "/client");
    let req = ClientFrame::Request(ClientRequest {
        client_id: 99,
        seq: 1,
        op: KvOp::Put {
            key: b"big".to_vec(),
            value: vec![0; (1 << 20) + 1],
        },
    });
    w.send(tungstenite::Message::Binary(wire::encode(&req).into()))
        .expect("send");
    let frames = drain(&mut w);
    let too_large = frames.iter().any(|f| {
        matches!(
            wire::decode::<ServerFrame>(f),
            Ok(ServerFrame::Reply { reply, .. })
                if matches!(&reply.outcome, Err(e) if e.is_definite())
        )
    });
    assert!(too_large, "oversized value not refused definitely");

    // Still up, still serving, and it said why it refused.
    let health = http_get(port, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    ok(&c, &["put", "after", "abuse"]);
    assert_eq!(
        ok(&c, &["get", "after"]),
        json!({"ok": true, "found": true, "value": "abuse"})
    );
    let log = c.nodes[0].log_text();
    assert!(log.contains("cluster id mismatch"), "{log}");
    assert!(log.contains("refused"), "{log}");
    assert!(log.contains("malformed"), "{log}");
}

#[test]
fn kvctl_bad_input_gets_the_documented_exit_codes() {
    // Usage errors: 2.
    for args in [
        vec![],
        vec!["put", "only-key"],
        vec!["get"],
        vec!["-o", "yaml", "status"],
        vec!["--timeout-ms", "soon", "get", "k"],
        vec!["frobnicate"],
    ] {
        let out = kvctl_raw(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?} printed no error");
    }
    // A key over 1 KiB is refused before sending: definite failure, 3.
    let big_key = "k".repeat(1025);
    let (code, v, _) = kvctl_json("127.0.0.1:1", &["put", &big_key, "v"]);
    assert_eq!(code, Some(3));
    assert_eq!(v["ok"], json!(false));
    assert_eq!(v["definite"], json!(true));
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("key")),
        "{v}"
    );
    let out = kvctl_raw(&["--endpoints", "127.0.0.1:1", "get", &big_key]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);

    // Unreachable endpoints: nothing was sent, so definitely not applied (3).
    let dead = free_ports(2)
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let (code, v, _) = kvctl_json(&dead, &["--timeout-ms", "500", "put", "k", "v"]);
    assert_eq!(code, Some(3), "{v}");
    assert_eq!(v["definite"], json!(true));
    let (code, v, _) = kvctl_json(&dead, &["--timeout-ms", "500", "status"]);
    assert_eq!(code, Some(3), "{v}");
    let rows = v["nodes"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r["reachable"] == json!(false)));

    // KVCTL_ENDPOINTS is honoured.
    let out = std::process::Command::new(kvctl_bin())
        .env("KVCTL_ENDPOINTS", &dead)
        .args(["-o", "json", "--timeout-ms", "300", "get", "k"])
        .output()
        .expect("run kvctl");
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn config_file_and_ui_dir_are_honoured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ui = dir.path().join("ui");
    fs::create_dir_all(&ui).expect("mkdir");
    fs::write(ui.join("index.html"), "<h1>playground</h1>").expect("write");
    let toml = dir.path().join("keyval.toml");
    fs::write(&toml, "heartbeat_ms = 20\nelection_timeout_ms = 200\n").expect("write");
    let ui_s = ui.to_string_lossy().to_string();
    let toml_s = toml.to_string_lossy().to_string();
    let c = Cluster::start_with(1, &["--ui", &ui_s, "--config", &toml_s]);
    let page = http_get(c.nodes[0].port, "/");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("<h1>playground</h1>"), "{page}");
    // The API routes still win over the static files.
    assert!(http_get(c.nodes[0].port, "/healthz").contains("role=leader"));
}
