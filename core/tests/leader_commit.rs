//! What a follower knows of the leader's commit index (readiness compares its applied index
//! with it): the highest the current leader sent in appends and heartbeats, forgotten when the
//! leader or the term changes.

use keyval_core::{Config, Entry, EntryPayload, Envelope, Message, Persisted, RaftNode};

fn follower() -> RaftNode {
    RaftNode::new(1, [1, 2, 3], Config::default(), Persisted::default(), 7)
}

fn from(node: &mut RaftNode, sender: u64, msg: Message) {
    node.step(Envelope {
        from: sender,
        to: 1,
        msg,
    });
    let _ = node.take_ready();
}

fn append(term: u64, entries: u64, leader_commit: u64) -> Message {
    Message::AppendEntries {
        term,
        prev_log_index: 0,
        prev_log_term: 0,
        entries: (1..=entries)
            .map(|index| Entry {
                index,
                term,
                payload: EntryPayload::Noop,
            })
            .collect(),
        leader_commit,
    }
}

#[test]
fn a_follower_learns_the_leaders_commit_from_appends_and_heartbeats() {
    let mut n = follower();
    assert_eq!(n.leader_commit(), None, "no leader known yet");
    // A far-behind follower: the leader has committed 50 000, this one holds 3 entries.
    from(&mut n, 2, append(1, 3, 50_000));
    assert_eq!(n.leader_commit(), Some(50_000));
    assert!(
        n.commit_index() <= 3,
        "its own commit covers only what it holds"
    );
    // Heartbeats carry at most the follower's match: they never lower what an append said.
    from(
        &mut n,
        2,
        Message::Heartbeat {
            term: 1,
            commit: 3,
            ctx: 0,
        },
    );
    assert_eq!(n.leader_commit(), Some(50_000));
    from(
        &mut n,
        2,
        Message::Heartbeat {
            term: 1,
            commit: 60_000,
            ctx: 0,
        },
    );
    assert_eq!(n.leader_commit(), Some(60_000));
    // A new leader in a new term: what the old one said no longer counts.
    from(
        &mut n,
        3,
        Message::Heartbeat {
            term: 2,
            commit: 2,
            ctx: 0,
        },
    );
    assert_eq!(n.leader_commit(), Some(n.commit_index().max(2)));
    assert!(n.leader_commit() < Some(60_000));
}

#[test]
fn a_leader_reports_its_own_commit() {
    let mut n = RaftNode::new(1, [1], Config::default(), Persisted::default(), 7);
    for _ in 0..100 {
        n.tick();
        let ready = n.take_ready();
        if let Some(id) = ready.persist_id {
            n.on_persisted(id);
        }
    }
    assert!(n.is_leader());
    assert_eq!(n.leader_commit(), Some(n.commit_index()));
}
