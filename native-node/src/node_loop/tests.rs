//! The node loop in-process: one single-voter node on a temporary WAL.

use std::sync::Arc;

use keyval_core::{ClientRequest, KvOp, KvResult, KvServer, NodeStatus, Role};
use tokio::sync::{mpsc, watch};

use super::*;
use crate::snapshot_jobs::{JobGate, SaveTo, SnapshotJobs};
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
    start_saving(snapshot_threshold, gate, None).await
}

/// With `save_gate`, the node writes its own snapshots off the storage thread (as `keyval`
/// does), each write held at that gate.
async fn start_saving(
    snapshot_threshold: u64,
    gate: Option<JobGate>,
    save_gate: Option<JobGate>,
) -> Harness {
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
    let server_membership = server.membership().clone();
    let bootstrap_addresses = BTreeMap::from([(1, "127.0.0.1:1".to_string())]);
    let (eviction, evicted) = crate::membership::Eviction::new();
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
        snapshots: match save_gate {
            Some(g) => SnapshotJobs::new(gate).saving_to(SaveTo {
                dir: dir.join("snapshots"),
                fsync: false,
                gate: Some(g),
            }),
            None => SnapshotJobs::new(gate),
        },
        peers: BTreeMap::new(),
        peer_rx,
        input_rx,
        identity: Arc::new(Identity {
            cluster_id: "test".into(),
            id: 1,
            roster: Arc::new(crate::membership::Roster::new(
                server_membership,
                0,
                &bootstrap_addresses,
            )),
            eviction,
            redial: Default::default(),
        }),
        tls: None,
        bootstrap_addresses,
        evicted,
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

fn snapshot_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("snapshots"))
        .expect("snapshot directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".snap"))
        .collect();
    names.sort();
    names
}

/// The node's own snapshot file is written off the storage thread: while that write is held,
/// writes keep committing (their WAL appends do not queue behind it) and no snapshot file
/// exists yet; once it is released the file appears, the log is compacted behind it, and the
/// data directory reopens to the snapshot plus a log that continues it. Before, the storage
/// thread wrote the file between two WAL batches, holding every acknowledgement for as long
/// as a 100 MB write takes (elections on a loaded machine); checked: with the write inline the
/// file exists while the gate is still held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_own_snapshot_is_written_beside_the_wal() {
    let gate: JobGate = Arc::new(tokio::sync::RwLock::new(()));
    let held = gate.clone().write_owned().await;
    let mut h = start_saving(20, None, Some(gate.clone())).await;
    // Kept past `stop`, which drops the harness, for the restart at the end.
    let kept = std::mem::replace(&mut h._dir, TempDir(std::path::PathBuf::new()));
    let dir = kept.0.clone();
    let before = h.status.borrow().clone();
    for i in 0..60 {
        h.put(&format!("k{i}")).await;
    }
    let during = h.wait_for(|s| s.applied_index >= 60).await;
    assert_eq!(during.role, Role::Leader);
    assert_eq!(
        during.term, before.term,
        "no election while the file is written"
    );
    assert!(
        snapshot_files(&dir).is_empty(),
        "the held write left a file: {:?}",
        snapshot_files(&dir)
    );

    drop(held);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while snapshot_files(&dir).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot file after release"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    h.put("after").await;
    let last = h.wait_for(|s| s.applied_index >= 61).await;
    h.stop().await;

    let (_, persisted, _) = WalStore::open(
        &dir.join("wal"),
        &dir.join("snapshots"),
        WalOptions::default(),
    )
    .expect("reopen");
    let snap = persisted
        .snapshot
        .as_ref()
        .expect("a snapshot after restart");
    assert!(snap.meta.last_index >= 20, "{:?}", snap.meta);
    let first = persisted.entries.first().map(|e| e.index);
    let last_index = persisted
        .entries
        .last()
        .map_or(snap.meta.last_index, |e| e.index);
    assert!(
        first.is_none_or(|f| f <= snap.meta.last_index + 1),
        "the log continues the snapshot: it starts at {first:?} after {}",
        snap.meta.last_index
    );
    assert!(last_index >= last.applied_index, "every write survived");
}

/// `kvctl member` at the loop: a second change while the first is in flight is refused as
/// passing (the client retries it), a promotion of a learner that never connected and the
/// removal of the last voter are refused for good, each with one line.
#[tokio::test]
async fn member_requests_are_answered_when_applied_and_refusals_say_why() {
    let h = start(0, None).await;
    let (tx, mut rx) = mpsc::channel(8);
    let add = |tag, id: u64| Input::Member {
        tag,
        op: MemberOp::Add {
            id,
            address: format!("127.0.0.1:{}", 9000 + id),
            learner: true,
        },
        reply_to: tx.clone(),
    };
    // Back to back, without yielding: both reach the loop in one turn.
    h.input.send(add(1, 2)).await.expect("loop alive");
    h.input.send(add(2, 3)).await.expect("loop alive");
    let mut answers = BTreeMap::new();
    for _ in 0..2 {
        let frame = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("answered")
            .expect("frame");
        let ServerFrame::Member { tag, outcome, .. } = frame else {
            panic!("unexpected frame {frame:?}");
        };
        answers.insert(tag, outcome);
    }
    let view = answers[&1].as_ref().expect("the first add applies");
    assert_eq!(view.learners().collect::<Vec<_>>(), vec![2]);
    match &answers[&2] {
        Err(MemberError::Busy(why)) => assert!(why.contains("not applied yet"), "{why}"),
        other => panic!("the second change in flight answered {other:?}"),
    }
    for (tag, op, expected) in [
        (3, MemberOp::Promote { id: 2 }, "node 2 is not connected"),
        (4, MemberOp::Remove { id: 1 }, "would leave no voter"),
    ] {
        h.input
            .send(Input::Member {
                tag,
                op,
                reply_to: tx.clone(),
            })
            .await
            .expect("loop alive");
        match rx.recv().await {
            Some(ServerFrame::Member {
                outcome: Err(MemberError::Refused(why)),
                ..
            }) => assert!(why.contains(expected) && !why.contains('\n'), "{why}"),
            other => panic!("tag {tag} answered {other:?}"),
        }
    }
    h.stop().await;
}
