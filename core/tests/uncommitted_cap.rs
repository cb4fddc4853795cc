//! The leader's back-pressure on uncommitted entries counts bytes as well as entries: a few
//! large writes fill the byte cap long before the entry cap, and committing frees it.

use keyval_core::kv::KvOp;
use keyval_core::{ClientRequest, Config, EntryPayload, Persisted, ProposeError, RaftNode};

const VALUE: usize = 1_000;

fn put(seq: u64) -> EntryPayload {
    EntryPayload::Command(ClientRequest {
        client_id: 1,
        seq,
        op: KvOp::Put {
            key: b"k".to_vec(),
            value: vec![7; VALUE],
        },
    })
}

/// A single-voter leader whose own writes are not durable yet: nothing it proposes commits
/// until the test says so.
fn leader(cap: u64) -> RaftNode {
    let config = Config {
        max_uncommitted_bytes: cap,
        ..Config::default()
    };
    let mut n = RaftNode::new(1, [1], config, Persisted::default(), 7);
    for _ in 0..100 {
        n.tick();
        make_durable(&mut n);
        if n.is_leader() {
            return n;
        }
    }
    panic!("a single voter did not become leader");
}

fn make_durable(n: &mut RaftNode) {
    if let Some(id) = n.take_ready().persist_id {
        n.on_persisted(id);
    }
}

#[test]
fn proposals_are_refused_once_the_uncommitted_bytes_reach_the_cap() {
    let mut n = leader(10_000);
    let mut accepted = 0u64;
    let refusal = loop {
        match n.propose(put(accepted + 1)) {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 100, "the byte cap never refused");
    };
    // About ten 1 KB entries fit under 10 KB, far below the 20,000-entry cap.
    assert!((8..=10).contains(&accepted), "accepted {accepted}");
    match refusal {
        ProposeError::Busy {
            uncommitted,
            uncommitted_bytes,
        } => {
            assert_eq!(uncommitted, accepted);
            assert!(uncommitted_bytes <= 10_000);
            assert!(uncommitted_bytes + VALUE as u64 > 10_000);
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    // Once the entries are durable (a single voter's quorum), they commit and the cap frees.
    make_durable(&mut n);
    assert_eq!(n.commit_index(), n.log().last_index());
    assert!(n.propose(put(100)).is_ok());
}

#[test]
fn one_entry_larger_than_the_cap_still_goes_through_alone() {
    let mut n = leader(500);
    make_durable(&mut n);
    assert!(n.propose(put(1)).is_ok(), "nothing was uncommitted");
    assert!(matches!(n.propose(put(2)), Err(ProposeError::Busy { .. })));
}
