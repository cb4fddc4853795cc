//! A hostile peer for the simulator: messages no correct peer sends, aimed at running nodes in
//! the middle of ordinary faulty runs.
//!
//! Two kinds of sender, matching the two doors a message passes:
//! - an *outsider*, a node id that is not a member (the transport let it in, the membership
//!   must not): it sends anything at all, random bytes that happen to decode as a message or
//!   structurally random messages, and every one must be dropped without a trace;
//! - a *spoofed member*, a voter's id: it sends messages made implausible on purpose (terms at
//!   or beyond the ceiling or too far ahead, indexes past the limit, malformed entry runs and
//!   snapshots), and every one must be refused as a protocol violation.
//!
//! A *plausible* message under a member's id is not sent: Raft does not survive a Byzantine
//! member (a forged append in the current term rewrites a follower's log), and keeping members
//! out is mutual TLS's job, not validation's.

use serde::{Deserialize, Serialize};

use crate::kv::{ClientRequest, KvOp};
use crate::message::{AppendResult, Message, SnapshotResult};
use crate::rng::Rng;
use crate::snapshot::SnapshotMeta;
use crate::types::{Entry, EntryPayload, NodeId, Term};
use crate::validate::{MAX_INDEX, MAX_TERM, MAX_TERM_JUMP};

/// An id no simulated member has (members are 1..=`MAX_NODES`).
pub const OUTSIDER: NodeId = 1_000;

/// Message variants: random bytes start with a valid tag so that a useful share decodes.
const VARIANTS: u64 = 12;
/// Attempts at decoding random bytes before falling back to a structurally random message.
const DECODE_ATTEMPTS: usize = 16;
/// Longest random byte string tried.
const MAX_RANDOM_BYTES: u64 = 48;

/// Who the hostile message claims to come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    /// Not a member. The core takes messages from any sender, as etcd-raft does (a node that
    /// joined, or restarted with an older configuration, must follow a leader it has not heard
    /// of yet); keeping strangers out is the transport's job (roster and mutual TLS). So an
    /// outsider's message is made implausible too, and must be refused like a spoofed one.
    Outsider,
    /// A member's id on an implausible message: it must be refused as a protocol violation.
    Spoofed(NodeId),
}

/// What the hostile peer did and what the nodes answered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostileStats {
    /// Messages handed to a running node.
    pub sent: u64,
    /// Of those, decoded from random bytes (the rest were built field by field).
    pub from_random_bytes: u64,
    /// Spoofed-member messages refused with a protocol violation.
    pub refused: u64,
    /// Outsider messages refused with a protocol violation, without effect.
    pub dropped: u64,
}

/// The hostile peer's own random stream (so turning it on does not change what the rest of a
/// seed does before its first message) and its counters.
#[derive(Clone, Debug)]
pub struct HostilePeer {
    pub rng: Rng,
    pub stats: HostileStats,
}

impl HostilePeer {
    pub fn new(seed: u64) -> Self {
        HostilePeer {
            rng: Rng::new(seed ^ 0xB4D_9EE2),
            stats: HostileStats::default(),
        }
    }

    /// One hostile message for a node at `local_term` whose fellow members are `others`.
    pub fn next_message(&mut self, local_term: Term, others: &[NodeId]) -> (Sender, Message) {
        let rng = &mut self.rng;
        let decoded = if rng.chance(0.5) {
            random_bytes_message(rng)
        } else {
            None
        };
        if decoded.is_some() {
            self.stats.from_random_bytes += 1;
        }
        let msg = decoded.unwrap_or_else(|| random_message(rng, local_term));
        if others.is_empty() || rng.chance(0.3) {
            return (Sender::Outsider, poison(rng, msg, local_term));
        }
        let from = others[rng.below(others.len() as u64) as usize];
        (Sender::Spoofed(from), poison(rng, msg, local_term))
    }
}

/// Random bytes decoded as a message, if any of a few tries decodes.
pub fn random_bytes_message(rng: &mut Rng) -> Option<Message> {
    (0..DECODE_ATTEMPTS).find_map(|_| {
        let len = rng.range(1, MAX_RANDOM_BYTES);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
        bytes[0] = rng.below(VARIANTS) as u8;
        postcard::from_bytes::<Message>(&bytes).ok()
    })
}

/// A number a hostile peer likes: small, near the receiver's term, at or past a limit, or
/// anything at all.
fn number(rng: &mut Rng, local_term: Term) -> u64 {
    match rng.below(8) {
        0 => rng.below(8),
        1 => local_term.saturating_add(rng.below(3)),
        2 => local_term.saturating_sub(rng.below(3)),
        3 => MAX_TERM + rng.below(2),
        4 => u64::MAX - rng.below(2),
        5 => local_term.saturating_add(MAX_TERM_JUMP + rng.below(2)),
        _ => rng.next_u64(),
    }
}

/// A message of a random kind with every field drawn from [`number`].
pub fn random_message(rng: &mut Rng, local_term: Term) -> Message {
    let n = |rng: &mut Rng| number(rng, local_term);
    match rng.below(VARIANTS) {
        0 => Message::PreVote {
            term: n(rng),
            last_log_index: n(rng),
            last_log_term: n(rng),
        },
        1 => Message::PreVoteResponse {
            term: n(rng),
            granted: rng.chance(0.5),
        },
        2 => Message::RequestVote {
            term: n(rng),
            last_log_index: n(rng),
            last_log_term: n(rng),
            transfer: rng.chance(0.5),
        },
        3 => Message::RequestVoteResponse {
            term: n(rng),
            granted: rng.chance(0.5),
        },
        4 => {
            let prev_log_index = n(rng);
            let entries = (0..rng.below(4))
                .map(|i| Entry {
                    index: if rng.chance(0.7) {
                        prev_log_index.wrapping_add(i + 1)
                    } else {
                        n(rng)
                    },
                    term: n(rng),
                    payload: if rng.chance(0.5) {
                        EntryPayload::Noop
                    } else {
                        EntryPayload::Command(ClientRequest {
                            client_id: n(rng),
                            seq: n(rng),
                            op: KvOp::Put {
                                key: b"hostile".to_vec(),
                                value: vec![0xFF; 3],
                            },
                        })
                    },
                })
                .collect();
            Message::AppendEntries {
                term: n(rng),
                prev_log_index,
                prev_log_term: n(rng),
                entries,
                leader_commit: n(rng),
            }
        }
        5 => Message::AppendEntriesResponse {
            term: n(rng),
            result: if rng.chance(0.5) {
                AppendResult::Success {
                    match_index: n(rng),
                }
            } else {
                AppendResult::Reject {
                    rejected_prev: n(rng),
                    conflict_term: rng.chance(0.5).then(|| n(rng)),
                    hint_index: n(rng),
                }
            },
        },
        6 => Message::Heartbeat {
            term: n(rng),
            commit: n(rng),
            ctx: n(rng),
        },
        7 => Message::HeartbeatResponse {
            term: n(rng),
            ctx: n(rng),
        },
        8 => Message::InstallSnapshot {
            term: n(rng),
            meta: SnapshotMeta {
                last_index: n(rng),
                last_term: n(rng),
                membership: crate::membership::Membership::bootstrap(
                    (0..rng.below(4)).map(|_| n(rng)),
                    std::collections::BTreeMap::new(),
                ),
            },
            offset: n(rng),
            data: (0..rng.below(16)).map(|_| rng.below(256) as u8).collect(),
            done: rng.chance(0.5),
        },
        9 => Message::InstallSnapshotResponse {
            term: n(rng),
            snapshot_index: n(rng),
            result: if rng.chance(0.5) {
                SnapshotResult::Continue {
                    next_offset: n(rng),
                }
            } else {
                SnapshotResult::Done {
                    match_index: n(rng),
                }
            },
        },
        10 => Message::ReadIndex {
            term: n(rng),
            ctx: n(rng),
        },
        _ => Message::ReadIndexResponse {
            term: n(rng),
            ctx: n(rng),
            index: rng.chance(0.5).then(|| n(rng)),
        },
    }
}

/// Makes `msg` implausible for a receiver at `local_term`, with a defect drawn from those its
/// kind can carry: a term at or past the ceiling or too far ahead, an index past the limit, a
/// log term above the message term, a malformed entry run or snapshot.
pub fn poison(rng: &mut Rng, mut msg: Message, local_term: Term) -> Message {
    let past_index = MAX_INDEX + 1 + rng.below(1 << 20);
    let defect = rng.below(4);
    match (&mut msg, defect) {
        (
            Message::PreVote {
                term,
                last_log_term,
                ..
            }
            | Message::RequestVote {
                term,
                last_log_term,
                ..
            },
            0,
        ) => {
            *term = local_term.saturating_add(rng.below(3)).min(MAX_TERM - 1);
            *last_log_term = *term + 1;
        }
        (
            Message::PreVote { last_log_index, .. } | Message::RequestVote { last_log_index, .. },
            1,
        ) => *last_log_index = past_index,
        (
            Message::AppendEntries {
                term,
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
            },
            d,
        ) if d < 3 => {
            *term = local_term.saturating_add(rng.below(3)).min(MAX_TERM - 1);
            *prev_log_term = (*prev_log_term).min(*term);
            *prev_log_index = (*prev_log_index).min(MAX_INDEX - 8);
            match d {
                0 => *leader_commit = past_index,
                1 => entries.push(Entry {
                    index: *prev_log_index + 1 + entries.len() as u64 + 1 + rng.below(5),
                    term: *term,
                    payload: EntryPayload::Noop,
                }),
                _ => entries.push(Entry {
                    index: *prev_log_index + 1 + entries.len() as u64,
                    term: *term + 1,
                    payload: EntryPayload::Noop,
                }),
            }
        }
        (Message::Heartbeat { commit, .. }, 0) => *commit = past_index,
        (
            Message::AppendEntriesResponse {
                result: AppendResult::Success { match_index },
                ..
            },
            0,
        ) => *match_index = past_index,
        (Message::InstallSnapshot { term, meta, .. }, d) if d < 2 => {
            *term = local_term.saturating_add(rng.below(3)).min(MAX_TERM - 1);
            if d == 0 {
                meta.membership.voters.clear();
            } else {
                meta.last_term = *term + 1;
                meta.membership = crate::membership::Membership::bootstrap(
                    [1],
                    std::collections::BTreeMap::new(),
                );
            }
        }
        (Message::InstallSnapshotResponse { snapshot_index, .. }, 0) => {
            *snapshot_index = past_index
        }
        (Message::ReadIndexResponse { index, .. }, 0) => *index = Some(past_index),
        _ => set_term(&mut msg, hostile_term(rng, local_term)),
    }
    msg
}

/// A term no receiver at `local_term` may adopt.
fn hostile_term(rng: &mut Rng, local_term: Term) -> Term {
    match rng.below(3) {
        0 => u64::MAX,
        1 => MAX_TERM + 1 + rng.below(1 << 20),
        _ => local_term.saturating_add(MAX_TERM_JUMP + 1 + rng.below(1 << 20)),
    }
}

fn set_term(msg: &mut Message, value: Term) {
    *msg.term_mut() = value;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisoned_messages_are_implausible_and_random_bytes_often_decode() {
        let mut rng = Rng::new(7);
        let mut decoded = 0;
        for i in 0..5_000 {
            let local = [0, 1, 40, MAX_TERM - 1][i % 4];
            let msg = random_bytes_message(&mut rng).inspect(|_| decoded += 1);
            let msg = msg.unwrap_or_else(|| random_message(&mut rng, local));
            let poisoned = poison(&mut rng, msg, local);
            assert!(
                poisoned.check_plausible(local).is_err(),
                "{poisoned:?} at local term {local}"
            );
        }
        assert!(decoded > 1_000, "only {decoded} of 5000 decoded");
    }
}
