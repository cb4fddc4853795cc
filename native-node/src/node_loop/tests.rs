//! The node loop in-process: one single-voter node on a temporary WAL.

use std::sync::Arc;

use keyval_core::{ClientRequest, KvOp, KvResult, KvServer, NodeStatus, Role};
use tokio::sync::{mpsc, watch};

use super::*;
use crate::snapshot_jobs::{JobGate, SnapshotJobs};
use crate::storage::WalStore;
use crate::wal::WalOptions;

struct Harness {
    input: crate::bounded::Sender<Input>,
    status: watch::Receiver<NodeStatus>,
    shutdown: watch::Sender<bool>,
    /// Held so the loop's handover signal stays open (a closed one stops the loop).
    _stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), LoopError>>,
    session: u64,
    seq: u64,
    _dir: TempDir,
}

/// A directory removed at the end of the test.
struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start(snapshot_threshold: u64, gate: Option<JobGate>) -> Harness {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "keyval-node-loop-{}-{}-{}",
        std::process::id(),
        now_ms(),
        NEXT.fetch_add(1, Relaxed)
    ));
    let (store, persisted, _) = WalStore::open(
        &dir.join("wal"),
        &dir.join("snapshots"),
        WalOptions::default(),
    )
    .expect("open WAL");
    let config = keyval_core::Config {
        snapshot_threshold,
        ..keyval_core::Config::default()
    };
    let server = KvServer::new(1, [1], config, persisted, 7);
    let (_peer_tx, peer_rx) =
        crate::peer_inbox::channel(PEER_INBOX, crate::peer_inbox::PEER_INBOX_BYTES);
    let (input_tx, input_rx) = crate::bounded::channel(CLIENT_INBOX, CLIENT_INBOX_BYTES);
    let (status_tx, status_rx) = watch::channel(NodeStatus::of(&server));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // The handover signal stays quiet: these tests stop the loop with `shutdown`.
    let (stop_tx, stop_rx) = watch::channel(false);
    let node = NodeLoop {
        server,
        storage: StorageWorker::spawn(store).expect("storage thread"),
        snapshots: SnapshotJobs::new(gate),
        peers: BTreeMap::new(),
        peer_rx,
        input_rx,
        members: BTreeMap::from([(1, "127.0.0.1:1".to_string())]),
        cluster_id: "test".into(),
        metrics: Arc::new(Metrics::default()),
        events: EventHub::default(),
        status_tx,
        tick: Duration::from_millis(10),
        shutdown: shutdown_rx,
        stop: stop_rx,
        restored: None,
    };
    let task = tokio::spawn(node.run());
    let mut h = Harness {
        input: input_tx,
        status: status_rx,
        shutdown: shutdown_tx,
        _stop: stop_tx,
        task,
        session: 0,
        seq: 0,
        _dir: TempDir(dir),
    };
    h.wait_for(|s| s.role == Role::Leader).await;
    h.session = match h.request(1 << 40, 0, KvOp::OpenSession).await {
        KvResult::Session { id } => id,
        other => panic!("open session answered {other:?}"),
    };
    h
}

impl Harness {
    async fn request(&mut self, client_id: u64, seq: u64, op: KvOp) -> KvResult {
        let (tx, mut rx) = mpsc::channel(1);
        let req = ClientRequest { client_id, seq, op };
        self.input
            .send(Input::Client { req, reply_to: tx })
            .await
            .expect("loop alive");
        let frame = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the node loop answers within 10 s")
            .expect("reply");
        match frame {
            ServerFrame::Reply { reply, .. } => reply.outcome.expect("request succeeds"),
            _ => panic!("unexpected frame"),
        }
    }

    async fn put(&mut self, key: &str) {
        self.seq += 1;
        let op = KvOp::Put {
            key: key.as_bytes().to_vec(),
            value: vec![7; 256],
        };
        self.request(self.session, self.seq, op).await;
    }

    async fn wait_for(&mut self, cond: impl Fn(&NodeStatus) -> bool) -> NodeStatus {
        tokio::time::timeout(Duration::from_secs(10), self.status.wait_for(|s| cond(s)))
            .await
            .expect("status reached within 10 s")
            .expect("loop alive")
            .clone()
    }

    async fn stop(self) {
        let _ = self.shutdown.send(true);
        let r = self.task.await.expect("loop task");
        assert!(r.is_ok(), "loop ended with an error");
    }
}

/// While a snapshot is being encoded (held at the gate, as a large state would hold it), the
/// loop keeps ticking and answering: writes commit and are acknowledged, the node stays leader
/// in the same term, and nothing is compacted yet. Once the encode finishes the snapshot is
/// saved and the log compacted. Before snapshots left the loop, the encode ran inside a loop
/// turn: the same gate would have stopped every answer until it opened (checked: with the
/// encode run inline the first put after the threshold times out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_keeps_answering_while_a_snapshot_is_taken() {
    let gate: JobGate = Arc::new(tokio::sync::RwLock::new(()));
    let held = gate.clone().write_owned().await;
    let mut h = start(20, Some(gate.clone())).await;
    let before = h.status.borrow().clone();
    for i in 0..25 {
        h.put(&format!("k{i}")).await;
    }
    // The snapshot job started at index 20 or so and is held: more writes still go through,
    // ticks included (let a few election timeouts' worth of time pass).
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 25..60 {
        h.put(&format!("k{i}")).await;
    }
    // (The status is published at most every 100 ms unless the role changes: wait for it.)
    let during = h.wait_for(|s| s.applied_index >= 60).await;
    assert_eq!(during.role, Role::Leader);
    assert_eq!(
        during.term, before.term,
        "no election while the snapshot is taken"
    );
    assert_eq!(
        during.snapshot_index, 0,
        "the held snapshot is not saved yet"
    );

    drop(held);
    let after = h.wait_for(|s| s.snapshot_index >= 20).await;
    assert_eq!(after.term, before.term);
    h.put("after").await;
    h.stop().await;
}

/// Without a gate, snapshots are taken and the log compacted as writes go on.
#[tokio::test]
async fn snapshots_are_taken_in_the_background() {
    let mut h = start(10, None).await;
    for i in 0..45 {
        h.put(&format!("k{i}")).await;
    }
    let s = h.wait_for(|s| s.snapshot_index >= 30).await;
    assert!(s.snapshot_index <= s.applied_index);
    h.stop().await;
}
