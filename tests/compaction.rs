//! Process-level tests of log compaction in the native node: real `keyval` processes with a
//! small `--snapshot-threshold` and small WAL segments, so snapshots, segment deletion and
//! InstallSnapshot all happen within a few hundred writes.
//!
//! Writes go through a raw WebSocket client on `/client` (one request at a time, following the
//! leader), which is ~100x faster than spawning `kvctl` per key.

mod common;

use std::fs;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use keyval_core::{ClientError, ClientRequest, KvOp, KvResult};
use native_node::wire::{self, ClientFrame, ServerFrame};
use serde_json::Value;

const THRESHOLD: u64 = 50;
const SEGMENT_BYTES: u64 = 16 << 10;

fn args() -> Vec<String> {
    vec![
        "--snapshot-threshold".into(),
        THRESHOLD.to_string(),
        "--wal-segment-bytes".into(),
        SEGMENT_BYTES.to_string(),
    ]
}

type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

/// A minimal client: one request in flight, retried (same seq) on whichever node leads.
/// Writes run under a session it opens first (`client_id` then becomes the session's id).
struct Client {
    ws: Option<Ws>,
    client_id: u64,
    seq: u64,
    session_open: bool,
}

impl Client {
    fn new(client_id: u64) -> Client {
        Client {
            ws: None,
            client_id,
            seq: 0,
            session_open: false,
        }
    }

    fn open_session(&mut self, c: &Cluster) {
        let seq = std::mem::replace(&mut self.seq, 0);
        match self.retry(c, KvOp::OpenSession) {
            KvResult::Session { id } => self.client_id = id,
            other => panic!("opening a session answered {other:?}"),
        }
        self.seq = seq;
        self.session_open = true;
    }

    fn connect(c: &Cluster) -> Option<Ws> {
        let leader = c.wait_leader(Duration::from_secs(10))?;
        let port = c.nodes[(leader - 1) as usize].port;
        let (ws, _) = tungstenite::client::connect(format!("ws://127.0.0.1:{port}/client")).ok()?;
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        }
        Some(ws)
    }

    fn attempt(&mut self, c: &Cluster, op: &KvOp) -> Option<Result<KvResult, ClientError>> {
        if self.ws.is_none() {
            self.ws = Client::connect(c);
        }
        let ws = self.ws.as_mut()?;
        let req = ClientFrame::Request(ClientRequest {
            client_id: self.client_id,
            seq: self.seq,
            op: op.clone(),
        });
        ws.send(tungstenite::Message::Binary(wire::encode(&req).into()))
            .ok()?;
        loop {
            match ws.read().ok()? {
                tungstenite::Message::Binary(b) => match wire::decode::<ServerFrame>(&b).ok()? {
                    ServerFrame::Reply { reply, .. } if reply.seq == self.seq => {
                        return Some(reply.outcome);
                    }
                    _ => continue,
                },
                tungstenite::Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    fn run(&mut self, c: &Cluster, op: KvOp) -> KvResult {
        if op.is_write() && !self.session_open {
            self.open_session(c);
        }
        self.seq += 1;
        self.retry(c, op)
    }

    fn retry(&mut self, c: &Cluster, op: KvOp) -> KvResult {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.attempt(c, &op) {
                Some(Ok(r)) => return r,
                other => {
                    assert!(
                        Instant::now() < deadline,
                        "request {op:?} kept failing: {other:?}"
                    );
                    // Not the leader, leadership lost, connection gone: find the leader and
                    // retry with the same seq (the state machine deduplicates).
                    self.ws = None;
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    fn put(&mut self, c: &Cluster, key: &str, value: Vec<u8>) {
        let r = self.run(
            c,
            KvOp::Put {
                key: key.as_bytes().to_vec(),
                value,
            },
        );
        assert_eq!(r, KvResult::Put);
    }

    fn get(&mut self, c: &Cluster, key: &str) -> Option<Vec<u8>> {
        match self.run(
            c,
            KvOp::Get {
                key: key.as_bytes().to_vec(),
            },
        ) {
            KvResult::Get(v) => v,
            other => panic!("get {key}: {other:?}"),
        }
    }
}

fn value_of(key: &str, version: u64, len: usize) -> Vec<u8> {
    let mut v = format!("{key}={version};").into_bytes();
    v.resize(len, b'x');
    v
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(m) = e.metadata() {
                total += m.len();
            }
        }
    }
    total
}

fn count_files(dir: &Path, suffix: &str) -> usize {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
                .count()
        })
        .unwrap_or(0)
}

fn metric(port: u16, name: &str) -> Option<u64> {
    let text = http_metrics(port)?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn http_metrics(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    Some(out)
}

fn row_u64(row: &Value, field: &str) -> u64 {
    row[field].as_u64().unwrap_or(0)
}

#[test]
fn killed_follower_catches_up_by_snapshot_and_every_key_reads_back() {
    let started = Instant::now();
    let extra = args();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut c = Cluster::start_with(3, &extra);
    let mut client = Client::new(0xC0FFEE);

    // Enough distinct keys for several snapshots on every node.
    for i in 0..200 {
        let k = format!("a{i:04}");
        client.put(&c, &k, value_of(&k, 1, 100));
    }
    let leader = c.wait_leader(Duration::from_secs(10)).expect("leader");
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    // Followers learn the last commits with the next heartbeat.
    wait_until(Duration::from_secs(5), || {
        let st = c.status();
        st.len() == 3
            && st
                .values()
                .all(|r| row_u64(r, "snapshot_index") >= 3 * THRESHOLD)
    });
    let st = c.status();
    assert_eq!(st.len(), 3, "{st:?}");
    for (id, row) in &st {
        assert!(
            row_u64(row, "snapshot_index") >= 3 * THRESHOLD,
            "node {id} has not compacted several times: {row}"
        );
    }
    let follower_last = row_u64(&st[&follower], "last_index");

    // kill -9 the follower and write more: the leader compacts past everything it has.
    c.kill9(follower);
    for i in 0..300 {
        let k = format!("b{i:04}");
        client.put(&c, &k, value_of(&k, 1, 100));
        // Overwrites too, so the snapshot is not just the union of the logs.
        if i % 10 == 0 {
            let k = format!("a{:04}", i / 10);
            client.put(&c, &k, value_of(&k, 2, 100));
        }
    }
    let st = c.status();
    let leader_row = st.values().find(|r| r["role"] == "leader").expect("leader");
    let leader_snap = row_u64(leader_row, "snapshot_index");
    assert!(
        leader_snap > follower_last + THRESHOLD,
        "the leader's snapshot ({leader_snap}) must cover entries the follower lacks (it had {follower_last})"
    );
    let target = row_u64(leader_row, "commit_index");

    c.restart(follower);
    let port = c.nodes[(follower - 1) as usize].port;
    let caught_up = wait_until(Duration::from_secs(15), || {
        c.status()
            .get(&follower)
            .is_some_and(|r| row_u64(r, "applied_index") >= target)
    });
    if !caught_up {
        let log = c.nodes[(follower - 1) as usize].log_text();
        let head: Vec<&str> = log
            .lines()
            .filter(|l| !l.starts_with("  "))
            .take(60)
            .collect();
        panic!(
            "follower {follower} did not catch up to {target}; its log:\n{}",
            head.join("\n")
        );
    }
    let installed = metric(port, "keyval_snapshots_installed_total").unwrap_or(0);
    assert!(installed >= 1, "follower caught up without a snapshot");
    let log = c.nodes[(follower - 1) as usize].log_text();
    assert!(log.contains("snapshot installed"), "no install in the log");
    let st = c.status();
    let f = &st[&follower];
    assert!(row_u64(f, "snapshot_index") >= leader_snap, "{f}");
    assert!(metric(port, "keyval_snapshot_size_bytes").unwrap_or(0) > 0);

    // Every key reads back, through a majority that includes the restarted follower: the
    // old leader is gone.
    c.kill9(leader);
    for i in 0..200 {
        let k = format!("a{i:04}");
        // a0000..a0029 were overwritten while the follower was down.
        let want = if i < 30 { 2 } else { 1 };
        assert_eq!(client.get(&c, &k), Some(value_of(&k, want, 100)), "key {k}");
    }
    for i in 0..300 {
        let k = format!("b{i:04}");
        assert_eq!(client.get(&c, &k), Some(value_of(&k, 1, 100)), "key {k}");
    }
    // The old leader restarts from its own snapshot plus log tail and catches up too.
    let target = c
        .status()
        .values()
        .map(|r| row_u64(r, "commit_index"))
        .max()
        .unwrap_or(0);
    c.restart(leader);
    let back = wait_until(Duration::from_secs(15), || {
        c.status()
            .get(&leader)
            .is_some_and(|r| row_u64(r, "applied_index") >= target)
    });
    assert!(back, "old leader {leader} did not catch up after restart");
    let log = c.nodes[(leader - 1) as usize].log_text();
    let recovered = log
        .lines()
        .rfind(|l| l.contains("recovered id="))
        .expect("recovery line");
    assert!(
        !recovered.contains("snapshot_index=0 "),
        "restart did not load a snapshot: {recovered}"
    );
    eprintln!("catch-up test took {:.1}s", started.elapsed().as_secs_f64());
}

#[test]
fn disk_use_stays_bounded_under_continuous_overwrites() {
    const KEYS: u64 = 20;
    const VALUE: usize = 1024;
    const WRITES: u64 = 20 * THRESHOLD;
    let extra = args();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut c = Cluster::start_with(3, &extra);
    let mut client = Client::new(0xD15C);
    let dirs: Vec<_> = c.nodes.iter().map(|n| n.data_dir.clone()).collect();
    let mut max_total = 0;
    let mut max_wal = 0;
    for i in 0..WRITES {
        let k = format!("k{:02}", i % KEYS);
        client.put(&c, &k, value_of(&k, i, VALUE));
        if i % 25 == 24 {
            for d in &dirs {
                max_total = max_total.max(dir_bytes(d));
                max_wal = max_wal.max(dir_bytes(&d.join("wal")));
            }
        }
    }
    // One entry is ~VALUE + 60 bytes in the WAL; the log between two snapshots is THRESHOLD
    // entries. The WAL frees space in whole segments, so it may also hold up to two segments
    // that are partly covered (the one being cut and the active one).
    let per_threshold = THRESHOLD * (VALUE as u64 + 100);
    let wal_bound = 2 * per_threshold + 2 * SEGMENT_BYTES;
    // The snapshot file holds KEYS values plus the client table; a stray old snapshot is
    // deleted as soon as the next is durable, so at most one is on disk between saves... plus
    // the new one while it is being written.
    let snapshot_bound = 2 * (KEYS * (VALUE as u64 + 64) + 4096);
    let total_bound = wal_bound + snapshot_bound + 4096;
    let written = WRITES * VALUE as u64;
    eprintln!(
        "wrote {written} bytes of values ({WRITES} writes, {}x the threshold); max data dir {max_total} B, max WAL {max_wal} B; bounds: WAL {wal_bound} B = 2x threshold-worth + 2 segments, total {total_bound} B",
        WRITES / THRESHOLD
    );
    assert!(max_wal <= wal_bound, "WAL grew to {max_wal} > {wal_bound}");
    assert!(
        max_total <= total_bound,
        "data dir grew to {max_total} > {total_bound}"
    );
    for d in &dirs {
        // A snapshot written off the storage thread sits beside the previous one until the
        // storage thread adopts it and deletes the old one: two for a moment, then one.
        let snaps = d.join("snapshots");
        assert!(
            wait_until(Duration::from_secs(5), || count_files(&snaps, ".snap") == 1),
            "{d:?} keeps {} snapshot files",
            count_files(&snaps, ".snap")
        );
        assert!(
            count_files(&d.join("wal"), ".wal")
                <= 2 * per_threshold as usize / SEGMENT_BYTES as usize + 3
        );
    }
    for i in 0..KEYS {
        let k = format!("k{i:02}");
        let last = (0..WRITES)
            .filter(|w| w % KEYS == i)
            .max()
            .expect("written");
        assert_eq!(client.get(&c, &k), Some(value_of(&k, last, VALUE)));
    }

    // A damaged snapshot file stops the node at start-up with one line naming the file.
    assert!(c.terminate(3).is_some_and(|s| s.success()));
    let snap_dir = c.nodes[2].data_dir.join("snapshots");
    let file = fs::read_dir(&snap_dir)
        .expect("snapshots dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "snap"))
        .expect("a snapshot file");
    let mut bytes = fs::read(&file).expect("read");
    let at = bytes.len() - 10;
    bytes[at] ^= 0xff;
    fs::write(&file, bytes).expect("write");
    let out = c.keyval_cmd(3).output().expect("run keyval");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let name = file.file_name().and_then(|n| n.to_str()).expect("name");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("keyval: error:"))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(
        line.contains(name) && line.contains("checksum"),
        "unclear error line: {line}"
    );
}

/// Measurement, not a check (no timed assertion): how long a follower that missed a whole
/// state of ~`KEYVAL_MEASURE_MB` MB (default 100) takes to receive and install it as a
/// snapshot over loopback, and the snapshot size for that many keys. Run with
/// `cargo test --release --test compaction -- --ignored --nocapture measure`.
#[test]
#[ignore]
fn measure_snapshot_transfer_of_a_large_state() {
    let mb: usize = std::env::var("KEYVAL_MEASURE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    const VALUE: usize = 256 << 10;
    let keys = mb * (1 << 20) / VALUE;
    let mut c = Cluster::start_with(
        3,
        &[
            "--snapshot-threshold",
            "100",
            "--wal-segment-bytes",
            "67108864",
        ],
    );
    let mut client = Client::new(0xB16);
    let leader = c.wait_leader(Duration::from_secs(10)).expect("leader");
    let follower = (1..=3).find(|&id| id != leader).expect("follower");
    c.kill9(follower);
    let t = Instant::now();
    for i in 0..keys {
        let k = format!("big{i:06}");
        client.put(&c, &k, value_of(&k, 1, VALUE));
    }
    // One more round of small writes so the leader's latest snapshot covers the whole state.
    for i in 0..100 {
        client.put(&c, &format!("small{i}"), b"x".to_vec());
    }
    let write_s = t.elapsed().as_secs_f64();
    let st = c.status();
    let lrow = st.values().find(|r| r["role"] == "leader").expect("leader");
    let lport = c.nodes[(row_u64(lrow, "id") - 1) as usize].port;
    let target = row_u64(lrow, "commit_index");
    let snap_bytes = metric(lport, "keyval_snapshot_size_bytes").unwrap_or(0);
    let t = Instant::now();
    c.restart(follower);
    let port = c.nodes[(follower - 1) as usize].port;
    let caught_up = wait_until(Duration::from_secs(300), || {
        metric(port, "keyval_applied_index").is_some_and(|a| a >= target)
    });
    let catch_up_s = t.elapsed().as_secs_f64();
    assert!(caught_up, "follower did not catch up");
    let installed = metric(port, "keyval_snapshots_installed_total").unwrap_or(0);
    let data = dir_bytes(&c.nodes[(follower - 1) as usize].data_dir);
    // Where the time went, from the follower's own log (start-up, install, first snapshot).
    let log = c.nodes[(follower - 1) as usize].log_text();
    for l in log.lines().filter(|l| {
        ["recovered", "snapshot installed", "serving"]
            .iter()
            .any(|w| l.contains(w))
    }) {
        eprintln!(
            "MEASURE follower log: {}",
            l.chars().take(160).collect::<String>()
        );
    }
    eprintln!(
        "MEASURE keys={keys} value={VALUE} state~{mb}MB: leader snapshot file {snap_bytes} B ({:.1} MB); \
         writes took {write_s:.1}s; follower restart -> applied {target}: {catch_up_s:.2}s \
         ({:.0} MB/s) with {installed} snapshot(s) installed; follower data dir {data} B",
        snap_bytes as f64 / 1e6,
        snap_bytes as f64 / 1e6 / catch_up_s
    );
}

/// Measurement: snapshot file size for N small keys (16 B keys, 256 B values).
#[test]
#[ignore]
fn measure_snapshot_size_per_key() {
    let c = Cluster::start_with(1, &["--snapshot-threshold", "1000"]);
    let mut client = Client::new(0x5123);
    let port = c.nodes[0].port;
    let mut done = 0;
    for n in [1000usize, 5000, 20000] {
        while done < n {
            let k = format!("key-{done:011}");
            client.put(&c, &k, value_of(&k, 1, 256));
            done += 1;
        }
        // Wait for the snapshot that covers them.
        wait_until(Duration::from_secs(10), || {
            metric(port, "keyval_snapshot_index").is_some_and(|i| i as usize >= n)
        });
        let bytes = metric(port, "keyval_snapshot_size_bytes").unwrap_or(0);
        eprintln!(
            "MEASURE {n} keys (16 B key, 256 B value): snapshot file {bytes} B = {:.0} B/key",
            bytes as f64 / n as f64
        );
    }
}
