//! Concurrent clients doing put/get/delete on a small key set, each recording its history.
//!
//! Writes run under a session each process opens first; reads take the linearizable
//! (ReadIndex) or the lease path at random (the cluster runs with lease reads on).
//!
//! Even-numbered clients follow the cluster: a redirect takes them to the named leader and an
//! unknown outcome to a random node, so most operations succeed. Odd-numbered clients are
//! bound to one node, as Jepsen's are: they keep asking it through partitions, pauses and
//! restarts, which is what catches a deposed leader that still answers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use keyval_core::{ClientRequest, KvOp, KvResult, NodeId, ReadConsistency};

use super::client::{Conn, Outcome, Record};
use super::rng::Rng;

/// Longest a client waits for one reply before calling the outcome unknown.
pub const OP_TIMEOUT: Duration = Duration::from_millis(1_500);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

pub fn key(i: usize) -> Vec<u8> {
    format!("k{i}").into_bytes()
}

pub struct Workload {
    /// Node id -> client address (direct, not through the proxies).
    pub addrs: Vec<(NodeId, String)>,
    pub keys: usize,
    pub start: Instant,
    pub stop: Arc<AtomicBool>,
}

impl Workload {
    /// Starts client `worker`; its thread returns its history when `stop` is set.
    pub fn spawn(&self, worker: u64, seed: u64) -> JoinHandle<Vec<Record>> {
        let addrs = self.addrs.clone();
        let (keys, start, stop) = (self.keys, self.start, self.stop.clone());
        thread::spawn(move || run_client(worker, seed, &addrs, keys, start, &stop))
    }
}

fn run_client(
    worker: u64,
    seed: u64,
    addrs: &[(NodeId, String)],
    keys: usize,
    start: Instant,
    stop: &AtomicBool,
) -> Vec<Record> {
    let mut rng = Rng::new(seed ^ worker.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut generation = 0u64;
    let mut process = (worker << 32) | generation;
    let mut seq = 0u64;
    let mut session: Option<u64> = None;
    let mut written = 0u64;
    let bound = worker % 2 == 1;
    let mut node_ix = worker as usize % addrs.len();
    let mut conn: Option<Conn> = None;
    let mut history = Vec::new();
    let now_us = || start.elapsed().as_micros() as u64;
    while !stop.load(Ordering::SeqCst) {
        let (node, addr) = &addrs[node_ix];
        if conn.as_ref().is_none_or(|c| c.node != *node) {
            match Conn::open(*node, addr, CONNECT_TIMEOUT) {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    conn = None;
                    if !bound {
                        node_ix = rng.below(addrs.len());
                    }
                    thread::sleep(Duration::from_millis(50));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let k = key(rng.below(keys));
        let op = match rng.range(0, 100) {
            0..=39 => KvOp::Get { key: k },
            40..=84 => {
                written += 1;
                KvOp::Put {
                    key: k,
                    value: format!("w{worker}-{written}").into_bytes(),
                }
            }
            _ => KvOp::Delete { key: k },
        };
        let session_id = match session {
            Some(s) => s,
            None if op.is_write() => match c.open_session(process, OP_TIMEOUT) {
                (Outcome::Ok(KvResult::Session { id }), _) => {
                    session = Some(id);
                    id
                }
                (_, hint) => {
                    // Nothing of the operation was sent: not part of the history.
                    conn = None;
                    if !bound {
                        node_ix = hint
                            .and_then(|h| addrs.iter().position(|(id, _)| *id == h))
                            .unwrap_or_else(|| rng.below(addrs.len()));
                    }
                    thread::sleep(Duration::from_millis(30));
                    continue;
                }
            },
            None => 0,
        };
        seq += 1;
        let invoke_us = now_us();
        let (outcome, hint) = match &op {
            KvOp::Get { key } => {
                let consistency = if rng.below(2) == 0 {
                    ReadConsistency::Linearizable
                } else {
                    ReadConsistency::Lease
                };
                c.read((process, seq), key.clone(), consistency, OP_TIMEOUT)
            }
            _ => {
                let req = ClientRequest {
                    client_id: session_id,
                    seq,
                    op: op.clone(),
                };
                c.request(req, OP_TIMEOUT)
            }
        };
        let complete_us = now_us();
        let failed = matches!(outcome, Outcome::Fail(_));
        let unknown = matches!(outcome, Outcome::Unknown(_));
        history.push(Record {
            process,
            node: *node,
            op,
            invoke_us,
            complete_us,
            outcome,
        });
        if unknown {
            // As in Jepsen: the process that left an operation hanging is gone; a new one
            // (new client id, new connection) takes its place.
            generation += 1;
            process = (worker << 32) | generation;
            seq = 0;
            session = None;
            conn = None;
            if !bound {
                node_ix = rng.below(addrs.len());
            }
        } else if failed && bound {
            thread::sleep(Duration::from_millis(30));
        } else if failed {
            match hint.and_then(|h| addrs.iter().position(|(id, _)| *id == h)) {
                Some(ix) if ix != node_ix => node_ix = ix,
                _ => {
                    node_ix = rng.below(addrs.len());
                    thread::sleep(Duration::from_millis(30));
                }
            }
        }
        thread::sleep(Duration::from_millis(rng.range(0, 15)));
    }
    history
}
