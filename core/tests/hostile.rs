//! Hostile peer input: messages no correct peer sends, with terms and indexes chosen to break
//! arithmetic (`u64::MAX`, far-future terms). Each must be refused as a protocol violation and
//! leave the node's term, vote and log untouched; the node must keep working afterwards.

use keyval_core::{
    AppendResult, Config, Entry, EntryPayload, Envelope, Message, NodeEvent, Persisted, RaftNode,
    Role, SnapshotMeta, SnapshotResult,
};

fn node() -> RaftNode {
    RaftNode::new(1, [1, 2, 3], Config::default(), Persisted::default(), 7)
}

fn from2(msg: Message) -> Envelope {
    Envelope {
        from: 2,
        to: 1,
        msg,
    }
}

fn violations(node: &mut RaftNode) -> usize {
    node.take_ready()
        .events
        .iter()
        .filter(|e| matches!(e, NodeEvent::ProtocolViolation { .. }))
        .count()
}

/// Ticks until the node has campaigned at least once on its own.
fn run_elections(node: &mut RaftNode) {
    for _ in 0..100 {
        node.tick();
        let _ = node.take_ready();
    }
}

#[test]
fn max_term_heartbeat_is_refused_and_the_next_election_does_not_overflow() {
    let mut n = node();
    n.step(from2(Message::Heartbeat {
        term: u64::MAX,
        commit: 0,
        ctx: 0,
    }));
    assert_eq!(
        violations(&mut n),
        1,
        "a u64::MAX term is a protocol violation"
    );
    assert_eq!(n.term(), 0, "the forged term was not adopted");
    run_elections(&mut n);
    assert!(n.term() < 10, "elections proceed from the real term");
    assert_ne!(n.role(), Role::Follower, "the node campaigns normally");
}

#[test]
fn far_future_terms_are_refused_for_every_message_kind() {
    let far = 1u64 << 40;
    let meta = SnapshotMeta {
        last_index: 1,
        last_term: 1,
        membership: keyval_core::Membership::bootstrap([1, 2, 3], Default::default()),
    };
    let msgs = vec![
        Message::PreVote {
            term: far,
            last_log_index: 0,
            last_log_term: 0,
        },
        Message::RequestVote {
            term: far,
            last_log_index: 0,
            last_log_term: 0,
            transfer: true,
        },
        Message::TimeoutNow { term: far },
        Message::RequestVoteResponse {
            term: far,
            granted: false,
        },
        Message::AppendEntries {
            term: far,
            prev_log_index: 0,
            prev_log_term: 0,
            entries: vec![],
            leader_commit: 0,
        },
        Message::AppendEntriesResponse {
            term: far,
            result: AppendResult::Success { match_index: 0 },
        },
        Message::HeartbeatResponse { term: far, ctx: 0 },
        Message::InstallSnapshot {
            term: far,
            meta,
            offset: 0,
            data: vec![],
            done: false,
        },
        Message::InstallSnapshotResponse {
            term: far,
            snapshot_index: 0,
            result: SnapshotResult::Continue { next_offset: 0 },
        },
    ];
    for msg in msgs {
        let mut n = node();
        let kind = msg.kind();
        n.step(from2(msg));
        assert_eq!(violations(&mut n), 1, "{kind}: refused as a violation");
        assert_eq!((n.term(), n.vote(), n.leader()), (0, None, None), "{kind}");
    }
}

#[test]
fn plausible_term_jumps_are_still_adopted() {
    let mut n = node();
    n.step(from2(Message::Heartbeat {
        term: 1_000,
        commit: 0,
        ctx: 0,
    }));
    assert_eq!(violations(&mut n), 0);
    assert_eq!((n.term(), n.leader()), (1_000, Some(2)));
}

/// A leader at term 1 with one entry, so index fields have something to be compared with.
fn leader() -> RaftNode {
    let mut n = node();
    for _ in 0..100 {
        n.tick();
        // Executed as an executor would: persisted at once, then every message sent.
        let ready = n.take_ready();
        if let Some(id) = ready.persist_id {
            n.on_persisted(id);
        }
        for env in ready.messages.into_iter().chain(ready.persisted_messages) {
            let reply = match env.msg {
                Message::PreVote { term, .. } => Message::PreVoteResponse {
                    term,
                    granted: true,
                },
                Message::RequestVote { term, .. } => Message::RequestVoteResponse {
                    term,
                    granted: true,
                },
                _ => continue,
            };
            n.step(Envelope {
                from: env.to,
                to: 1,
                msg: reply,
            });
        }
        if n.is_leader() {
            let _ = n.take_ready();
            return n;
        }
    }
    panic!("no leader");
}

#[test]
fn absurd_indexes_are_refused_without_panicking() {
    let hostile = |term: u64| {
        vec![
            Message::AppendEntriesResponse {
                term,
                result: AppendResult::Reject {
                    rejected_prev: u64::MAX,
                    conflict_term: Some(u64::MAX),
                    hint_index: u64::MAX,
                },
            },
            Message::AppendEntriesResponse {
                term,
                result: AppendResult::Success {
                    match_index: u64::MAX,
                },
            },
            Message::AppendEntries {
                term,
                prev_log_index: u64::MAX,
                prev_log_term: term,
                entries: vec![Entry {
                    index: 0,
                    term,
                    payload: EntryPayload::Noop,
                }],
                leader_commit: u64::MAX,
            },
            Message::Heartbeat {
                term,
                commit: u64::MAX,
                ctx: 0,
            },
            Message::InstallSnapshotResponse {
                term,
                snapshot_index: u64::MAX,
                result: SnapshotResult::Done {
                    match_index: u64::MAX,
                },
            },
            Message::InstallSnapshot {
                term,
                meta: SnapshotMeta {
                    last_index: u64::MAX,
                    last_term: u64::MAX,
                    membership: keyval_core::Membership::bootstrap([1, 2, 3], Default::default()),
                },
                offset: u64::MAX,
                data: vec![1, 2, 3],
                done: true,
            },
        ]
    };
    for msg in hostile(1) {
        let kind = msg.kind();
        let mut n = leader();
        let before = (n.term(), n.commit_index(), n.log().last_index());
        n.step(from2(msg));
        assert_eq!(violations(&mut n), 1, "{kind}: refused as a violation");
        assert_eq!(
            (n.term(), n.commit_index(), n.log().last_index()),
            before,
            "{kind}"
        );
        // The node still works: it keeps ticking and stays consistent.
        for _ in 0..30 {
            n.tick();
            let _ = n.take_ready();
        }
    }
}

/// A `Stale` answer means a later request of the same client superseded this one in the
/// deduplication table: the superseded request may have been applied before that, so its
/// client cannot know; it must not be reported as a definite failure.
#[test]
fn stale_is_indeterminate() {
    assert!(!keyval_core::ClientError::Stale.is_definite());
    assert!(!keyval_core::ClientError::LeadershipLost.is_definite());
}
