//! The fuzz targets. Each returns normally on any input; a panic is a finding.

use std::path::Path;
use std::sync::OnceLock;

use keyval_core::{Config, Envelope, KvServer, Persisted, Snapshot};
use native_node::storage::{WalStore, snapfile};
use native_node::transport::well_formed;
use native_node::wal::{Wal, WalOptions};
use native_node::wire::{self, ClientFrame, PeerFrame, ServerFrame};

/// Messages taken from one input, so one input cannot make a run arbitrarily long.
const MAX_MESSAGES: usize = 64;

fn config() -> Config {
    Config {
        // Compaction on, so hostile input also meets snapshot and compaction code.
        snapshot_threshold: 4,
        snapshot_chunk_bytes: 64,
        ..Config::default()
    }
}

fn follower() -> KvServer {
    KvServer::new(1, [1, 2, 3], config(), Persisted::default(), 1)
}

/// Node 1 elected leader of {1, 2, 3} by granting every vote it asks for, built once.
fn leader() -> &'static KvServer {
    static LEADER: OnceLock<KvServer> = OnceLock::new();
    LEADER.get_or_init(|| {
        let mut s = follower();
        for _ in 0..1000 {
            s.tick();
            // Executed as an executor would: durable at once, then every message sent.
            let ready = s.take_ready();
            if let Some(id) = ready.persist_id {
                s.on_persisted(id);
            }
            for env in ready.messages.into_iter().chain(ready.persisted_messages) {
                let reply = match env.msg {
                    keyval_core::Message::PreVote { term, .. } => {
                        keyval_core::Message::PreVoteResponse {
                            term,
                            granted: true,
                        }
                    }
                    keyval_core::Message::RequestVote { term, .. } => {
                        keyval_core::Message::RequestVoteResponse {
                            term,
                            granted: true,
                        }
                    }
                    _ => continue,
                };
                s.step(Envelope {
                    from: env.to,
                    to: 1,
                    msg: reply,
                });
            }
            if s.raft().is_leader() {
                let _ = s.take_ready();
                return s;
            }
        }
        panic!("the fuzz harness could not elect its leader");
    })
}

/// Envelopes in `data`: a whole `/raft` frame if it decodes as one, else a run of
/// postcard-encoded envelopes (what mutation most often keeps intact).
fn envelopes(data: &[u8]) -> Vec<Envelope> {
    if let Ok(PeerFrame::Raft(envs)) = wire::decode::<PeerFrame>(data) {
        return envs.into_iter().take(MAX_MESSAGES).collect();
    }
    let mut out = Vec::new();
    let mut rest = data;
    while out.len() < MAX_MESSAGES {
        match postcard::take_from_bytes::<Envelope>(rest) {
            Ok((env, tail)) if tail.len() < rest.len() => {
                out.push(env);
                rest = tail;
            }
            _ => break,
        }
    }
    out
}

/// Mostly from a member to node 1, so messages get past the membership filter into the core.
fn address(mut env: Envelope) -> Envelope {
    if !env.from.is_multiple_of(8) {
        env.from = 2 + env.from % 2;
        env.to = 1;
    }
    env
}

pub fn peer_frame(data: &[u8]) {
    let _ = wire::decode::<PeerFrame>(data);
    let envs = envelopes(data);
    if envs.is_empty() {
        return;
    }
    let mut nodes = [follower(), leader().clone()];
    for (i, env) in envs.into_iter().enumerate() {
        let env = address(env);
        let _ = well_formed(&env.msg);
        for node in &mut nodes {
            node.step(env.clone());
            let _ = node.take_ready();
            if i % 4 == 3 {
                node.tick();
                let _ = node.take_ready();
            }
        }
    }
}

pub fn client_frame(data: &[u8]) {
    if let Ok(ClientFrame::Request(req)) = wire::decode::<ClientFrame>(data) {
        let _ = req.op.validate();
        // The leader takes client requests straight from the network too.
        let mut node = leader().clone();
        node.handle_client(req);
        let _ = node.take_ready();
    }
    // kvctl decodes what a node (or anything answering on its port) sends back.
    let _ = wire::decode::<ServerFrame>(data);
}

const WAL_OPTIONS: WalOptions = WalOptions {
    segment_bytes: 1 << 20,
    fsync: false,
};

/// First byte odd: the rest are record payloads separated by 0xff, appended through the WAL
/// (valid framing and checksums, arbitrary contents). Otherwise: the rest is a segment file.
pub fn wal_replay(data: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let (wal_dir, snap_dir) = (dir.path().join("wal"), dir.path().join("snapshots"));
    if std::fs::create_dir_all(&wal_dir).is_err() || std::fs::create_dir_all(&snap_dir).is_err() {
        return;
    }
    match data.split_first() {
        Some((mode, rest)) if mode % 2 == 1 => {
            let Ok((mut wal, _)) = Wal::open(&wal_dir, WAL_OPTIONS.clone()) else {
                return;
            };
            for payload in rest.split(|&b| b == 0xff).take(MAX_MESSAGES) {
                if wal.append(payload).is_err() {
                    break;
                }
            }
            let _ = wal.sync();
        }
        Some((_, rest)) => {
            if std::fs::write(wal_dir.join(format!("{:020}.wal", 1)), rest).is_err() {
                return;
            }
        }
        None => return,
    }
    let _ = WalStore::open(&wal_dir, &snap_dir, WAL_OPTIONS.clone());
}

pub fn snapshot_file(data: &[u8]) {
    let _ = snapfile::decode(Path::new("fuzz.snap"), data, 0);
    // Past the checksum: the payload as a peer's InstallSnapshot or a file would carry it.
    if let Ok(s) = postcard::from_bytes::<Snapshot>(data) {
        let _ = keyval_core::server::decode_snapshot(&s);
    }
}
