//! A follower told that its leader's connection closed campaigns within a heartbeat interval
//! instead of a whole election timeout, and only then (`RaftNode::peer_disconnected`).

use keyval_core::{Config, Envelope, Message, Persisted, RaftNode};

fn follower(config: Config) -> RaftNode {
    let mut n = RaftNode::new(2, [1, 2, 3], config, Persisted::default(), 9);
    // A heartbeat from leader 1 at term 1.
    n.step(Envelope {
        from: 1,
        to: 2,
        msg: Message::AppendEntries {
            term: 1,
            prev_log_index: 0,
            prev_log_term: 0,
            entries: Vec::new(),
            leader_commit: 0,
        },
    });
    let r = n.take_ready();
    if let Some(id) = r.persist_id {
        n.on_persisted(id);
    }
    assert_eq!(n.leader(), Some(1));
    n
}

/// Ticks until the node asks for (pre-)votes; the number of ticks it took.
fn ticks_to_campaign(n: &mut RaftNode, max: u32) -> Option<u32> {
    for t in 1..=max {
        n.tick();
        let r = n.take_ready();
        let asks = r
            .messages
            .iter()
            .chain(&r.persisted_messages)
            .any(|m| matches!(m.msg, Message::PreVote { .. } | Message::RequestVote { .. }));
        if asks {
            return Some(t);
        }
        if let Some(id) = r.persist_id {
            n.on_persisted(id);
        }
    }
    None
}

#[test]
fn losing_the_leaders_connection_starts_an_election_within_a_heartbeat() {
    let config = Config::default();
    let mut n = follower(config.clone());
    n.peer_disconnected(1);
    assert_eq!(n.leader(), None, "the leader is forgotten");
    let t = ticks_to_campaign(&mut n, config.election_ticks).expect("campaigns early");
    assert!(
        t <= config.heartbeat_ticks + 1,
        "campaigned after {t} ticks"
    );
}

#[test]
fn without_the_notice_a_follower_waits_a_whole_election_timeout() {
    let config = Config::default();
    let mut n = follower(config.clone());
    assert_eq!(ticks_to_campaign(&mut n, config.election_ticks - 1), None);
}

#[test]
fn another_peers_connection_closing_changes_nothing() {
    let config = Config::default();
    let mut n = follower(config.clone());
    n.peer_disconnected(3);
    assert_eq!(n.leader(), Some(1));
    assert_eq!(ticks_to_campaign(&mut n, config.election_ticks - 1), None);
}

/// A lease counts on followers refusing votes for a whole election timeout after they last
/// heard from the leader; a closed connection must not cut that short.
#[test]
fn with_lease_reads_the_notice_is_ignored() {
    let config = Config {
        lease_reads: true,
        ..Config::default()
    };
    let mut n = follower(config.clone());
    n.peer_disconnected(1);
    assert_eq!(n.leader(), Some(1));
    assert_eq!(ticks_to_campaign(&mut n, config.election_ticks - 1), None);
}
