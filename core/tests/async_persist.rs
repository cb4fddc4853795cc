//! The asynchronous persist contract (`keyval_core::ready`), driven by hand on single nodes:
//! a leader's appends leave before its own write is durable, it counts itself only once told
//! the write is durable, followers acknowledge only durable entries, and a stale durability
//! notice about entries that were since truncated is ignored (the ABA case).

use keyval_core::{
    AppendResult, Config, Entry, EntryPayload, Envelope, Message, Persisted, RaftNode, Ready, Role,
};

fn config() -> Config {
    Config {
        pre_vote: false,
        ..Config::default()
    }
}

fn step(n: &mut RaftNode, from: u64, msg: Message) -> Ready {
    n.step(Envelope {
        from,
        to: n.id(),
        msg,
    });
    n.take_ready()
}

/// Ticks until the node stands for election, and reports that batch durable.
fn campaign(n: &mut RaftNode) -> Ready {
    for _ in 0..100 {
        n.tick();
        if n.role() == Role::Candidate {
            let r = n.take_ready();
            if let Some(id) = r.persist_id {
                n.on_persisted(id);
            }
            return r;
        }
    }
    panic!("no election within 100 ticks");
}

/// Node 1 of {1, 2, 3} elected at term 1 with its no-op (index 1) durable and acknowledged by
/// both followers, so the no-op is committed and both are in Replicate.
fn leader() -> RaftNode {
    let mut n = RaftNode::new(1, [1, 2, 3], config(), Persisted::default(), 1);
    let r = campaign(&mut n);
    assert!(r
        .persisted_messages
        .iter()
        .any(|m| matches!(m.msg, Message::RequestVote { .. })));
    let term = n.term();
    let r = step(
        &mut n,
        2,
        Message::RequestVoteResponse {
            term,
            granted: true,
        },
    );
    assert!(n.is_leader());
    n.on_persisted(r.persist_id.expect("the no-op is persisted"));
    let r = step(&mut n, 2, ack(term, 1));
    assert_eq!(n.commit_index(), 1, "{r:?}");
    step(&mut n, 3, ack(term, 1));
    n
}

fn ack(term: u64, match_index: u64) -> Message {
    Message::AppendEntriesResponse {
        term,
        result: AppendResult::Success { match_index },
    }
}

fn append(term: u64, prev: (u64, u64), entries: &[(u64, u64)], commit: u64) -> Message {
    Message::AppendEntries {
        term,
        prev_log_index: prev.0,
        prev_log_term: prev.1,
        entries: entries
            .iter()
            .map(|&(index, term)| Entry {
                index,
                term,
                payload: EntryPayload::Noop,
            })
            .collect(),
        leader_commit: commit,
    }
}

#[test]
fn a_leader_sends_appends_before_its_write_is_durable() {
    let mut n = leader();
    let index = n.propose(EntryPayload::Noop).unwrap();
    let r = n.take_ready();
    assert!(r.persist_id.is_some(), "the entry is persisted");
    let carried = |m: &Envelope| match &m.msg {
        Message::AppendEntries { entries, .. } => entries.iter().any(|e| e.index == index),
        _ => false,
    };
    assert_eq!(
        r.messages.iter().filter(|m| carried(m)).count(),
        2,
        "both followers get the entry in the send-now messages: {r:?}"
    );
    assert!(!r.persisted_messages.iter().any(carried));
}

#[test]
fn a_leader_counts_itself_only_once_its_write_is_durable() {
    let mut n = leader();
    let index = n.propose(EntryPayload::Noop).unwrap();
    let r = n.take_ready();
    let term = n.term();
    // One follower holds it durably, the leader not yet: one of three, not a quorum.
    step(&mut n, 2, ack(term, index));
    assert_eq!(n.commit_index(), index - 1);
    assert_eq!(n.durable_index(), index - 1);
    n.on_persisted(r.persist_id.unwrap());
    assert_eq!(n.durable_index(), index);
    assert_eq!(n.commit_index(), index, "leader + follower 2 are a quorum");
}

#[test]
fn two_followers_commit_without_the_leaders_disk() {
    let mut n = leader();
    let index = n.propose(EntryPayload::Noop).unwrap();
    n.take_ready();
    let term = n.term();
    step(&mut n, 2, ack(term, index));
    step(&mut n, 3, ack(term, index));
    assert_eq!(n.commit_index(), index, "durable on two of three disks");
    assert_eq!(n.durable_index(), index - 1);
}

#[test]
fn a_single_node_commits_only_after_its_write_is_durable() {
    let mut n = RaftNode::new(1, [1], config(), Persisted::default(), 1);
    for _ in 0..100 {
        n.tick();
        if n.is_leader() {
            break;
        }
    }
    assert!(n.is_leader());
    let r = n.take_ready();
    assert_eq!(n.commit_index(), 0, "the no-op is not durable yet");
    n.on_persisted(r.persist_id.unwrap());
    assert_eq!(n.commit_index(), 1);
}

#[test]
fn a_follower_acknowledges_only_after_its_batch_is_durable() {
    let mut n = RaftNode::new(2, [1, 2, 3], config(), Persisted::default(), 1);
    let r = step(&mut n, 1, append(1, (0, 0), &[(1, 1), (2, 1)], 0));
    assert!(r.persist_id.is_some());
    assert!(
        r.messages.is_empty(),
        "nothing leaves before the batch is durable: {r:?}"
    );
    assert!(r.persisted_messages.iter().any(|m| matches!(
        m.msg,
        Message::AppendEntriesResponse {
            result: AppendResult::Success { match_index: 2 },
            ..
        }
    )));
}

#[test]
fn a_vote_waits_for_the_term_and_vote_to_be_durable() {
    let mut n = RaftNode::new(2, [1, 2, 3], config(), Persisted::default(), 1);
    let r = step(
        &mut n,
        1,
        Message::RequestVote {
            term: 1,
            last_log_index: 0,
            last_log_term: 0,
            transfer: false,
        },
    );
    assert!(r.messages.is_empty());
    assert!(r
        .persisted_messages
        .iter()
        .any(|m| matches!(m.msg, Message::RequestVoteResponse { granted: true, .. })));
}

#[test]
fn a_stale_durability_notice_about_truncated_entries_is_ignored() {
    let mut n = RaftNode::new(2, [1, 2, 3], config(), Persisted::default(), 1);
    // Term 1: entries 1..=3, not yet durable.
    let first = step(&mut n, 1, append(1, (0, 0), &[(1, 1), (2, 1), (3, 1)], 0));
    // Term 2: a new leader keeps entry 1 and replaces 2..=3 with 2@2 and 3@2.
    let second = step(&mut n, 3, append(2, (1, 1), &[(2, 2), (3, 2)], 0));
    assert_eq!(n.log().term(3), Some(2));
    // The notice for the first batch names 3@1, which the log no longer holds.
    n.on_persisted(first.persist_id.unwrap());
    assert_eq!(
        n.durable_index(),
        0,
        "3@1 is gone: the notice proves nothing about 3@2"
    );
    n.on_persisted(second.persist_id.unwrap());
    assert_eq!(n.durable_index(), 3);
}

#[test]
fn a_truncation_lowers_the_durable_index_at_once() {
    let mut n = RaftNode::new(2, [1, 2, 3], config(), Persisted::default(), 1);
    let r = step(&mut n, 1, append(1, (0, 0), &[(1, 1), (2, 1), (3, 1)], 0));
    n.on_persisted(r.persist_id.unwrap());
    assert_eq!(n.durable_index(), 3);
    step(&mut n, 3, append(2, (1, 1), &[(2, 2)], 0));
    assert_eq!(n.durable_index(), 1);
}

#[test]
fn a_new_leader_holds_its_appends_until_its_term_is_durable() {
    let mut n = RaftNode::new(1, [1, 2, 3], config(), Persisted::default(), 1);
    // Campaign, but do not report the candidate's hard state durable yet.
    for _ in 0..100 {
        n.tick();
        if n.role() == Role::Candidate {
            break;
        }
    }
    let candidacy = n.take_ready();
    let term = n.term();
    let r = step(
        &mut n,
        2,
        Message::RequestVoteResponse {
            term,
            granted: true,
        },
    );
    assert!(n.is_leader());
    assert!(
        r.messages.is_empty(),
        "its term {term} is not durable yet: {r:?}"
    );
    assert!(r
        .persisted_messages
        .iter()
        .any(|m| matches!(m.msg, Message::AppendEntries { .. })));
    n.on_persisted(candidacy.persist_id.unwrap());
    step(&mut n, 2, ack(term, 1));
    n.propose(EntryPayload::Noop).unwrap();
    let r = n.take_ready();
    assert!(r
        .messages
        .iter()
        .any(|m| matches!(m.msg, Message::AppendEntries { .. })));
}
