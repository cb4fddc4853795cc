//! Valid inputs for each target, built from the real encoders: mutations of well-formed bytes
//! get much deeper into a decoder than random bytes do.

use keyval_core::{
    AppendResult, ClientReply, ClientRequest, Entry, EntryPayload, Envelope, HardState, KvOp,
    KvResult, KvStore, Message, Snapshot, SnapshotMeta, SnapshotResult,
};
use native_node::storage::{LogRecord, snapfile};
use native_node::wire::{self, ClientFrame, LeaderHint, PeerFrame, ServerFrame};

fn put(client_id: u64, seq: u64, key: &str, value: &str) -> ClientRequest {
    ClientRequest {
        client_id,
        seq,
        op: KvOp::Put {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
        },
    }
}

fn entries(first: u64, term: u64, n: u64) -> Vec<Entry> {
    (first..first + n)
        .map(|index| Entry {
            index,
            term,
            payload: if index == 1 {
                EntryPayload::Noop
            } else {
                EntryPayload::Command(put(7, index, "k", "v"))
            },
        })
        .collect()
}

/// One of each peer message, from node 2 to node 1, at plausible terms and indexes.
pub fn messages() -> Vec<Message> {
    let meta = SnapshotMeta {
        last_index: 4,
        last_term: 1,
        membership: keyval_core::Membership::bootstrap([1, 2, 3], Default::default()),
    };
    vec![
        Message::PreVote {
            term: 2,
            last_log_index: 3,
            last_log_term: 1,
        },
        Message::PreVoteResponse {
            term: 2,
            granted: true,
        },
        Message::RequestVote {
            term: 2,
            last_log_index: 3,
            last_log_term: 1,
            transfer: false,
        },
        Message::RequestVote {
            term: 2,
            last_log_index: 3,
            last_log_term: 1,
            transfer: true,
        },
        Message::TimeoutNow { term: 2 },
        Message::RequestVoteResponse {
            term: 1,
            granted: true,
        },
        Message::AppendEntries {
            term: 2,
            prev_log_index: 0,
            prev_log_term: 0,
            entries: entries(1, 2, 3),
            leader_commit: 2,
        },
        Message::AppendEntriesResponse {
            term: 1,
            result: AppendResult::Success { match_index: 1 },
        },
        Message::AppendEntriesResponse {
            term: 1,
            result: AppendResult::Reject {
                rejected_prev: 1,
                conflict_term: Some(1),
                hint_index: 1,
            },
        },
        Message::Heartbeat {
            term: 2,
            commit: 1,
            ctx: 3,
        },
        Message::HeartbeatResponse { term: 1, ctx: 3 },
        Message::ReadIndex { term: 2, ctx: 4 },
        Message::ReadIndexResponse {
            term: 2,
            ctx: 4,
            index: Some(9),
        },
        Message::InstallSnapshot {
            term: 2,
            meta,
            offset: 0,
            data: snapshot_state(4),
            done: true,
        },
        Message::InstallSnapshotResponse {
            term: 1,
            snapshot_index: 1,
            result: SnapshotResult::Done { match_index: 1 },
        },
        Message::InstallSnapshotResponse {
            term: 1,
            snapshot_index: 1,
            result: SnapshotResult::Continue { next_offset: 64 },
        },
    ]
}

fn env(msg: Message) -> Envelope {
    Envelope {
        from: 2,
        to: 1,
        msg,
    }
}

pub fn peer_frame() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = messages()
        .into_iter()
        .map(|m| wire::encode(&PeerFrame::Raft(vec![env(m)])))
        .collect();
    out.push(wire::encode(&PeerFrame::Raft(
        messages().into_iter().map(env).collect(),
    )));
    out.push(
        messages()
            .into_iter()
            .flat_map(|m| postcard::to_allocvec(&env(m)).unwrap_or_default())
            .collect(),
    );
    out.push(wire::encode(&PeerFrame::Hello {
        cluster_id: "c".into(),
        from: 2,
        to: 1,
    }));
    out.push(wire::encode(&PeerFrame::Welcome { node: 1 }));
    out.push(wire::encode(&PeerFrame::Refused {
        reason: "no".into(),
    }));
    out
}

pub fn client_frame() -> Vec<Vec<u8>> {
    let reply = |outcome| ServerFrame::Reply {
        reply: ClientReply {
            client_id: 7,
            seq: 1,
            outcome,
        },
        leader: Some(LeaderHint {
            id: 1,
            address: Some("127.0.0.1:7001".into()),
        }),
    };
    vec![
        wire::encode(&ClientFrame::Request(put(7, 1, "key", "value"))),
        wire::encode(&ClientFrame::Request(ClientRequest {
            client_id: 7,
            seq: 2,
            op: KvOp::Get {
                key: b"key".to_vec(),
            },
        })),
        wire::encode(&ClientFrame::Request(ClientRequest {
            client_id: 7,
            seq: 3,
            op: KvOp::Delete {
                key: b"key".to_vec(),
            },
        })),
        wire::encode(&ClientFrame::Status),
        wire::encode(&reply(Ok(KvResult::Get(Some(b"v".to_vec()))))),
        wire::encode(&reply(Err(keyval_core::ClientError::Stale))),
        wire::encode(&ServerFrame::Error {
            reason: "bad".into(),
        }),
    ]
}

fn records() -> Vec<Vec<u8>> {
    [
        LogRecord::HardState(HardState {
            term: 2,
            vote: Some(1),
            commit: 0,
        }),
        LogRecord::Append(entries(1, 2, 3)),
        LogRecord::TruncateFrom(3),
        LogRecord::Append(entries(3, 2, 2)),
        LogRecord::Compact(2),
    ]
    .iter()
    .map(|r| postcard::to_allocvec(r).unwrap_or_default())
    .collect()
}

pub fn wal_replay() -> Vec<Vec<u8>> {
    // Mode 1: record payloads, appended (and framed) by the WAL itself.
    let mut framed = vec![1u8];
    framed.extend(records().join(&0xff));
    // Mode 0: the segment file the same records make.
    let mut segment = vec![0u8];
    if let Ok(dir) = tempfile::tempdir()
        && let Ok((mut wal, _)) = native_node::wal::Wal::open(
            dir.path(),
            native_node::wal::WalOptions {
                segment_bytes: 1 << 20,
                fsync: false,
            },
        )
    {
        for r in records() {
            let _ = wal.append(&r);
        }
        let _ = wal.sync();
        drop(wal);
        if let Ok(bytes) = std::fs::read(dir.path().join(format!("{:020}.wal", 1))) {
            segment.extend(bytes);
        }
    }
    vec![framed, segment]
}

/// The encoded state machine after applying a few writes, at `index`.
fn snapshot_state(index: u64) -> Vec<u8> {
    let mut kv = KvStore::default();
    for i in 1..=index {
        kv.apply(i, &put(7, i, &format!("k{i}"), "v"));
    }
    postcard::to_allocvec(&kv).unwrap_or_default()
}

pub fn snapshot_file() -> Vec<Vec<u8>> {
    let snapshot = Snapshot {
        meta: SnapshotMeta {
            last_index: 4,
            last_term: 1,
            membership: keyval_core::Membership::bootstrap([1, 2, 3], Default::default()),
        },
        data: snapshot_state(4),
    };
    vec![
        snapfile::encode(&snapshot).unwrap_or_default(),
        postcard::to_allocvec(&snapshot).unwrap_or_default(),
    ]
}

/// Seeds of the target called `name`.
pub fn for_target(name: &str) -> Vec<Vec<u8>> {
    match name {
        "peer_frame" => peer_frame(),
        "client_frame" => client_frame(),
        "wal_replay" => wal_replay(),
        "snapshot_file" => snapshot_file(),
        _ => Vec::new(),
    }
}
