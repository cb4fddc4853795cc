//! Plain-words explanations of trace events, each with the Raft rule that caused it.

use keyval_core::message::AppendResult;
use keyval_core::trace::{op_text, result_text, Addr, DropReason, Payload, TraceEvent, TraceKind};
use keyval_core::{Message, NodeEvent, Role};

/// One narrated line: what happened and which rule of the paper says so.
#[derive(Clone, Debug, PartialEq)]
pub struct Narration {
    pub text: String,
    /// e.g. "§5.2 leader election"; empty when no protocol rule is involved.
    pub rule: &'static str,
    /// A category for styling and filtering.
    pub class: &'static str,
}

fn n(text: String, rule: &'static str, class: &'static str) -> Option<Narration> {
    Some(Narration { text, rule, class })
}

pub const RULE_ELECTION: &str = "§5.2 leader election";
pub const RULE_PREVOTE: &str = "thesis §9.6 pre-vote";
pub const RULE_LOG_MATCH: &str = "§5.3 log matching";
pub const RULE_COMMIT: &str = "§5.4.2 commit rule";
pub const RULE_ELECTION_RESTRICTION: &str = "§5.4.1 election restriction";
pub const RULE_CHECK_QUORUM: &str = "thesis §6.2 / §4.2.3 check-quorum";
pub const RULE_TERMS: &str = "§5.1 terms";
pub const RULE_PERSIST: &str = "§5.1 / Fig. 2 persistent state";
pub const RULE_CLIENT: &str = "§8 client interaction";
pub const RULE_SM: &str = "§5.3 state machine safety";
pub const RULE_SNAPSHOT: &str = "§7 log compaction";
pub const RULE_READ_INDEX: &str = "thesis §6.4 ReadIndex";
pub const RULE_LEASE: &str = "thesis §6.4.1 leases and clocks";
pub const RULE_ONE_CHANGE: &str = "thesis §4.1 one configuration change at a time";
pub const RULE_TERM_COMMIT: &str = "thesis §4.1 no change before the leader commits in its term";
pub const RULE_APPLY_TIME: &str = "etcd-raft: a configuration takes effect when applied";
pub const RULE_JOINT: &str = "thesis §4.3 joint consensus";
pub const RULE_AUTO_LEAVE: &str = "thesis §4.3 / etcd-raft auto-leave";
pub const RULE_LEARNER: &str = "thesis §4.2.1 learners do not count";
pub const RULE_PROMOTION_LAG: &str = "thesis §4.2.1 promote only when caught up";
pub const RULE_REMOVED_LEADER: &str = "thesis §3.10 / §4.2.2 removed leader transfers first";
pub const RULE_REMOVED_NODE: &str = "thesis §4.2.3 disruptive servers: pre-vote, check-quorum";
pub const RULE_TRANSFER: &str = "thesis §3.10 leadership transfer";

/// What the reader chose to see, and what the trace alone does not say.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Seen {
    /// Include heartbeat traffic (frequent, says little on its own).
    pub heartbeats: bool,
    /// Include message deliveries and client request sends.
    pub deliveries: bool,
    /// The event's node was leading when it happened (a commit is the leader's decision; a
    /// follower only learns of it).
    pub by_leader: bool,
    /// The event's node had been removed from the cluster's configuration by then (it may
    /// not know it: the entry that removed it need not have reached it).
    pub removed: bool,
}

/// Explains one event. `heartbeats` includes heartbeat traffic; `deliveries` includes
/// message deliveries (both are very frequent and say little on their own).
pub fn narrate(ev: &TraceEvent, heartbeats: bool, deliveries: bool) -> Option<Narration> {
    narrate_in(
        ev,
        Seen {
            heartbeats,
            deliveries,
            by_leader: false,
            removed: false,
        },
    )
}

/// Explains one event in context.
pub fn narrate_in(ev: &TraceEvent, seen: Seen) -> Option<Narration> {
    let Seen {
        heartbeats,
        deliveries,
        by_leader,
        removed,
    } = seen;
    if removed {
        if let Some(line) = removed_node(&ev.kind) {
            return Some(line);
        }
    }
    if let Some(line) = membership(&ev.kind) {
        return Some(line);
    }
    match &ev.kind {
        TraceKind::Node { node, event } => node_event(*node, event, by_leader),
        TraceKind::Sent {
            from, to, payload, ..
        } => sent(*from, *to, payload, heartbeats, deliveries),
        TraceKind::Delivered { id, from, to } if deliveries => n(
            format!("{to} receives message #{id} from {from}."),
            "",
            "net",
        ),
        TraceKind::Delivered { .. } => None,
        TraceKind::Dropped {
            id,
            from,
            to,
            reason,
        } => {
            let why = match reason {
                DropReason::Random => "the network lost it (drop rate)",
                DropReason::Partitioned => "the link is cut",
                DropReason::Crashed => "the receiver is down",
                DropReason::InboxFull => "the paused receiver's buffer is full",
                DropReason::Script => "the scenario dropped it",
                DropReason::ByHand => "you dropped it",
            };
            n(
                format!("Message #{id} {from}→{to} is lost: {why}. Raft tolerates lost messages by retrying."),
                "§5.5 failures",
                "fault",
            )
        }
        TraceKind::Persisted {
            node,
            first,
            last,
            term,
        } => n(
            format!("n{node} made entries {first}..{last} (term {term}) durable on disk before acknowledging them."),
            RULE_PERSIST,
            "disk",
        ),
        TraceKind::Truncated { node, from } => n(
            format!("n{node} deletes its conflicting log suffix from index {from}: the leader's log wins."),
            RULE_LOG_MATCH,
            "log",
        ),
        TraceKind::Applied {
            node,
            index,
            term,
            op,
            result,
        } => {
            let what = op.as_ref().map_or("its no-op".to_string(), op_text);
            let res = result
                .as_ref()
                .map_or(String::new(), |r| format!(" → {}", result_text(r)));
            n(
                format!("n{node} applies entry {index} (term {term}) to its key-value store: {what}{res}. Every node applies the same commands in the same order."),
                RULE_SM,
                "apply",
            )
        }
        TraceKind::Crashed { node } => n(
            format!("n{node} crashes: it loses everything in memory but keeps its disk (term, vote, log)."),
            "§5.5 crashes",
            "fault",
        ),
        TraceKind::Restarted { node } => n(
            format!("n{node} restarts from its disk as a follower; it must catch up from the leader."),
            RULE_PERSIST,
            "fault",
        ),
        TraceKind::Paused { node } => n(
            format!("n{node} is paused (like a long GC pause): it keeps its state but stops reacting."),
            "",
            "fault",
        ),
        TraceKind::Resumed { node } => n(
            format!("n{node} resumes and handles the messages that queued up meanwhile."),
            "",
            "fault",
        ),
        TraceKind::LinkCut { from, to } => {
            n(format!("The link n{from}→n{to} is cut."), "", "fault")
        }
        TraceKind::LinkRestored { from, to } => {
            n(format!("The link n{from}→n{to} is restored."), "", "fault")
        }
        TraceKind::Partitioned { .. } => n(
            format!("{}: only a side holding a majority can elect a leader or commit.", ev.kind.render()),
            "§5.2 / §5.4 majorities",
            "fault",
        ),
        TraceKind::Healed => n("The network is healed.".into(), "", "fault"),
        TraceKind::NetworkChanged { .. } => n(
            format!("Network settings change: {}.", ev.kind.render()),
            "",
            "fault",
        ),
        TraceKind::ClientInvoke {
            client,
            seq,
            op,
            node,
        } => n(
            format!("Client c{client} sends request #{seq} ({}) to n{node}.", op_text(op)),
            RULE_CLIENT,
            "client",
        ),
        TraceKind::ClientRetry {
            client,
            seq,
            node,
            reason,
        } => n(
            format!("Client c{client} retries request #{seq} at n{node} ({reason}) with the same number, so it is never applied twice."),
            RULE_CLIENT,
            "client",
        ),
        TraceKind::ClientComplete {
            client,
            seq,
            result,
        } => n(
            format!("Client c{client} gets its answer to #{seq}: {}.", result_text(result)),
            RULE_CLIENT,
            "client",
        ),
        TraceKind::ClientGaveUp { client, seq } => n(
            format!("Client c{client} gives up on #{seq}; its outcome is unknown."),
            RULE_CLIENT,
            "client",
        ),
        TraceKind::FaultsStopped => n(
            "All faults stop: every node restarts and the network heals.".into(),
            "",
            "fault",
        ),
        TraceKind::SnapshotSaved { node, index, term, .. } => n(
            format!("n{node} has its snapshot through entry {index} (term {term}) safely on disk."),
            RULE_SNAPSHOT,
            "snapshot",
        ),
        TraceKind::LogCompacted { node, through } => n(
            format!("n{node} discards its log entries up to {through}: the snapshot holds their effect."),
            RULE_SNAPSHOT,
            "snapshot",
        ),
        TraceKind::RestoredSnapshot { node, index, log_last, .. } => n(
            format!("n{node} recovers from disk: its snapshot through entry {index}, then its log up to {log_last}."),
            RULE_SNAPSHOT,
            "snapshot",
        ),
        TraceKind::ClockDrift { node, per_mille } => {
            let text = if *per_mille == 0 {
                format!("n{node}'s clock runs at the right rate again.")
            } else {
                let pct = per_mille.unsigned_abs() as f64 / 10.0;
                let how = if *per_mille > 0 { "fast" } else { "slow" };
                format!("n{node}'s clock now runs {pct}% {how}: its election timer, heartbeats and lease all count in its own ticks. Raft's safety never depends on clocks; a lease does, and is safe only while drift stays within its margin.")
            };
            n(text, RULE_LEASE, "fault")
        }
        TraceKind::TimeoutForced { node } => n(
            format!("You make n{node}'s election timer run out now, as if it had heard nothing from a leader for its whole randomized timeout."),
            RULE_ELECTION,
            "fault",
        ),
        TraceKind::LinkLatency { .. } => n(
            format!("Link latency changes: {}. Slow links delay votes and appends but never break safety.", ev.kind.render()),
            "§5.6 timing and availability",
            "fault",
        ),
        // Events added to the core later are still shown, in the core's own words.
        #[allow(unreachable_patterns)]
        _ => n(ev.kind.render(), "", "net"),
    }
}

/// A removed node that does not know it is out (it never applied the entry that removed it)
/// still times out and campaigns; what keeps it from disturbing the cluster.
fn removed_node(kind: &TraceKind) -> Option<Narration> {
    match kind {
        TraceKind::Node {
            node,
            event: NodeEvent::ElectionTimeout { term, pre_vote: true },
        } => n(
            format!("n{node} was removed from the configuration but never applied that entry, so it believes it is still a voter. Its timer fires and it asks for pre-votes for term {}; the members refuse (they hear from their leader), and a pre-vote bumps no term, so the leader stands.", term + 1),
            RULE_REMOVED_NODE,
            "election",
        ),
        TraceKind::Node {
            node,
            event: NodeEvent::ElectionTimeout { term, pre_vote: false },
        } => n(
            format!("n{node}, removed from the configuration, starts an election for term {term}. The members ignore vote requests while they hear from a leader (check-quorum's leader lease), so the higher term does not depose it."),
            RULE_REMOVED_NODE,
            "election",
        ),
        _ => None,
    }
}

/// Membership changes: what the operator asked, what the leader logged or refused, and how
/// each node takes a configuration into force.
fn membership(kind: &TraceKind) -> Option<Narration> {
    match kind {
        TraceKind::ConfChangeProposed {
            leader,
            index,
            change,
        } => n(
            format!("Leader n{leader} logs the configuration change [{change}] at index {index}. Until that entry is applied it accepts no other change; each node switches configuration when it applies the entry, not when it commits."),
            RULE_ONE_CHANGE,
            "member",
        ),
        TraceKind::ConfChangeRefused {
            leader,
            change,
            reason,
        } => n(
            format!("Leader n{leader} refuses [{change}]: {reason}."),
            refusal_rule(reason),
            "member-refused",
        ),
        TraceKind::NodeAdded { node } => n(
            format!("n{node} starts empty and joins as a learner: the leader sends it the log (or a snapshot), but it neither votes nor counts towards any majority until it is promoted."),
            RULE_LEARNER,
            "member",
        ),
        TraceKind::Node {
            node,
            event: NodeEvent::MembershipChanged { index, membership },
        } => Some(applied_configuration(*node, *index, membership)),
        TraceKind::Node {
            node,
            event: NodeEvent::LeaderRemoved { term },
        } => n(
            format!("Leader n{node} applied a configuration in which it no longer votes: having handed leadership to the most caught-up voter first, it steps down in term {term}."),
            RULE_REMOVED_LEADER,
            "member",
        ),
        TraceKind::Node {
            node,
            event: NodeEvent::LearnerPromoting { node: learner, index },
        } => n(
            format!("Leader n{node} promotes learner n{learner} (index {index}): it was added to become a voter once caught up, and that intent is in the configuration, so whichever node leads does it once n{learner} is connected and its log is close to the leader's."),
            RULE_LEARNER,
            "member",
        ),
        TraceKind::Node {
            node,
            event: NodeEvent::ConfChangeRefused { index, reason },
        } => n(
            format!("n{node} skips the configuration entry at index {index}: {reason}."),
            RULE_APPLY_TIME,
            "member-refused",
        ),
        TraceKind::Node {
            node,
            event: NodeEvent::TransferStarted { to, term },
        } => n(
            format!("Leader n{node} hands leadership to n{to} (term {term}): it stops taking writes, catches n{to} up, then tells it to campaign at once (TimeoutNow)."),
            RULE_TRANSFER,
            "leader",
        ),
        _ => None,
    }
}

/// The rule behind a leader's refusal, from the core's one-line reason.
pub fn refusal_rule(reason: &str) -> &'static str {
    if reason.contains("not applied yet") || reason.contains("is joint") {
        RULE_ONE_CHANGE
    } else if reason.contains("entry of its term") {
        RULE_TERM_COMMIT
    } else if reason.contains("not caught up") {
        RULE_PROMOTION_LAG
    } else if reason.contains("joint transition") {
        RULE_JOINT
    } else if reason.contains("transfer") {
        RULE_TRANSFER
    } else {
        "thesis §4 cluster membership changes"
    }
}

fn applied_configuration(
    node: u64,
    index: u64,
    m: &keyval_core::membership::Membership,
) -> Narration {
    let list = |s: &std::collections::BTreeSet<u64>| {
        s.iter()
            .map(|i| format!("n{i}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let learners = if m.learners.is_empty() {
        String::new()
    } else {
        format!(
            " Learners {{{}}} receive the log but do not count.",
            list(&m.learners)
        )
    };
    if m.is_joint() {
        let leave = if m.auto_leave {
            " The leader proposes leaving it by itself once it has applied it (auto-leave)."
        } else {
            ""
        };
        Narration {
            text: format!("n{node} applies the joint configuration at index {index}: from now on every election and every commit needs a majority of the old voters {{{}}} AND a majority of the new voters {{{}}}.{leave}{learners}", list(&m.outgoing), list(&m.voters)),
            rule: RULE_JOINT,
            class: "member-joint",
        }
    } else {
        Narration {
            text: format!("n{node} applies the configuration at index {index}: voters {{{}}} (a majority is {}).{learners} It takes effect as soon as it is applied, so a truncated log never has to undo one.", list(&m.voters), m.voters.len() / 2 + 1),
            rule: RULE_APPLY_TIME,
            class: "member",
        }
    }
}

fn node_event(node: u64, e: &NodeEvent, by_leader: bool) -> Option<Narration> {
    match e {
        NodeEvent::ElectionTimeout { term, pre_vote } => {
            if *pre_vote {
                n(format!("n{node} heard no leader within its randomized election timeout. Before disturbing anyone it asks whether it could win term {} (pre-vote).", term + 1), RULE_PREVOTE, "election")
            } else {
                n(format!("n{node}'s election timeout fired: it starts an election for term {term}."), RULE_ELECTION, "election")
            }
        }
        NodeEvent::RoleChanged {
            from,
            to,
            term,
            leader,
        } => match to {
            Role::Leader => n(
                format!("n{node} won a majority of votes and becomes leader of term {term}. It appends a no-op entry so it can commit entries of its own term."),
                RULE_ELECTION,
                "leader",
            ),
            Role::Candidate => n(
                format!("n{node} becomes a candidate: it increments its term to {term}, votes for itself and asks every peer for a vote."),
                RULE_ELECTION,
                "election",
            ),
            Role::PreCandidate => n(
                format!("n{node} becomes a pre-candidate: it asks for pre-votes for term {} while staying in term {term}.", term + 1),
                RULE_PREVOTE,
                "election",
            ),
            Role::Follower => {
                let text = match (from, leader) {
                    (Role::Leader, _) => format!("n{node} steps down and follows in term {term}: a leader that learns of a newer term, or cannot hear a majority, stops leading."),
                    (Role::Candidate, Some(l)) => format!("n{node} stops campaigning: n{l} won term {term}, and n{node} follows it."),
                    (Role::Candidate, None) => format!("n{node} stops campaigning: it saw term {term}, newer than its own, and adopts it."),
                    (Role::PreCandidate, Some(l)) => format!("n{node} drops its pre-vote: n{l} leads term {term}."),
                    (Role::PreCandidate, None) => format!("n{node} drops its pre-vote and stays a follower in term {term}."),
                    (_, Some(l)) => format!("n{node} follows n{l} in term {term}. A node that sees a higher term always adopts it."),
                    (_, None) => format!("n{node} adopts term {term}: a node that sees a higher term always adopts it."),
                };
                n(text, RULE_TERMS, "role")
            }
        },
        NodeEvent::VoteCast {
            candidate,
            term,
            granted,
            pre_vote,
        } => {
            let what = if *pre_vote { "pre-vote" } else { "vote" };
            if *granted {
                let once = if *pre_vote {
                    ""
                } else {
                    " It can vote only once per term."
                };
                n(
                    format!("n{node} grants its {what} for term {term} to n{candidate}: the candidate's log is at least as up-to-date.{once}"),
                    if *pre_vote { RULE_PREVOTE } else { RULE_ELECTION_RESTRICTION },
                    "vote",
                )
            } else {
                n(
                    format!("n{node} refuses its {what} for term {term} to n{candidate} (already voted, has a leader, or its log is more up-to-date)."),
                    if *pre_vote { RULE_PREVOTE } else { RULE_ELECTION_RESTRICTION },
                    "vote",
                )
            }
        }
        NodeEvent::CheckQuorumFailed { term } => n(
            format!("Leader n{node} has not heard from a majority for an election timeout and steps down in term {term}, so clients stop waiting on it."),
            RULE_CHECK_QUORUM,
            "role",
        ),
        NodeEvent::CommitAdvanced { from, to } if by_leader => n(
            format!("n{node}, the leader, commits up to entry {to} (from {from}): stored on a majority, counting only entries of its current term."),
            RULE_COMMIT,
            "commit",
        ),
        NodeEvent::CommitAdvanced { to, .. } => n(
            format!("n{node} learns from the leader that entries up to {to} are committed."),
            RULE_COMMIT,
            "commit",
        ),
        NodeEvent::ProtocolViolation { from, detail } => n(
            format!("n{node} refused a message from n{from} that no correct node sends: {detail}"),
            "",
            "fault",
        ),
        NodeEvent::SnapshotTaken { index, term, bytes } => n(
            format!("n{node} snapshots its key-value store up to entry {index} (term {term}, {bytes} bytes): the log before it can be discarded."),
            RULE_SNAPSHOT,
            "snapshot",
        ),
        NodeEvent::SnapshotChunkSent { to, index, offset, bytes, done } => n(
            format!("Leader n{node} sends n{to} {bytes} bytes of its snapshot through entry {index} (offset {offset}{}): the entries n{to} lacks were compacted away.", if *done { ", last chunk" } else { "" }),
            RULE_SNAPSHOT,
            "snapshot",
        ),
        NodeEvent::SnapshotChunkReceived { from, index, offset, bytes, done } => n(
            format!("n{node} stores {bytes} bytes of n{from}'s snapshot through entry {index} (offset {offset}{}).", if *done { ", last chunk" } else { "" }),
            RULE_SNAPSHOT,
            "snapshot",
        ),
        NodeEvent::SnapshotInstalled { from, index, term, bytes, kept_entries } => n(
            format!("n{node} replaces its state with n{from}'s snapshot through entry {index} (term {term}, {bytes} bytes), keeping {kept_entries} matching log entries after it: caught up without replaying the log."),
            RULE_SNAPSHOT,
            "snapshot",
        ),
        NodeEvent::ReadRoundStarted { seq, commit, reads } => n(
            format!("Leader n{node} holds {} until it knows it still leads: it records read index {commit} and tags heartbeat round R{seq} to every follower; acknowledgements from a majority confirm that no newer leader existed when the reads arrived. No log entry, no disk write.", plural(*reads, "read")),
            RULE_READ_INDEX,
            "read",
        ),
        NodeEvent::ReadConfirmed { seq, index, reads } => n(
            format!("A majority acknowledged round R{seq}: n{node} was still leader, so its {} may be answered once entry {index} is applied.", plural(*reads, "read")),
            RULE_READ_INDEX,
            "read",
        ),
        NodeEvent::LeaseRead { index } => n(
            format!("Leader n{node} answers a lease read at once, from its state at index {index}: by its own clock a majority acknowledged its heartbeats less than an election timeout (minus the drift margin) ago, so it assumes no other leader can exist yet. Only as safe as that clock."),
            RULE_LEASE,
            "read",
        ),
        // Events added to the core later are still shown, in its own words.
        #[allow(unreachable_patterns)]
        other => n(keyval_core::trace::node_event_text(node, other), "", "net"),
    }
}

fn sent(
    from: Addr,
    to: Addr,
    p: &Payload,
    heartbeats: bool,
    deliveries: bool,
) -> Option<Narration> {
    match p {
        Payload::Raft(m) => match m {
            Message::PreVote { term, last_log_index, last_log_term } => n(
                format!("{from} asks {to}: would you vote for me in term {term}? (my log ends at {last_log_index}@{last_log_term})"),
                RULE_PREVOTE,
                "vote",
            ),
            Message::RequestVote { term, last_log_index, last_log_term, transfer: true } => n(
                format!("{from} asks {to} for its vote in term {term} at the leader's request (leadership transfer: no pre-vote, and {to} votes even though it heard from the leader recently; log ends at {last_log_index}@{last_log_term})."),
                RULE_ELECTION,
                "vote",
            ),
            Message::RequestVote { term, last_log_index, last_log_term, transfer: false } => n(
                format!("{from} asks {to} for its vote in term {term} (RequestVote; log ends at {last_log_index}@{last_log_term})."),
                RULE_ELECTION,
                "vote",
            ),
            Message::PreVoteResponse { term, granted } | Message::RequestVoteResponse { term, granted } => {
                let what = if matches!(m, Message::PreVoteResponse { .. }) { "pre-vote" } else { "vote" };
                let ans = if *granted { "yes" } else { "no" };
                n(format!("{from} answers {to}'s {what} request for term {term}: {ans}."), if what == "pre-vote" { RULE_PREVOTE } else { RULE_ELECTION }, "vote")
            }
            Message::AppendEntries { term, prev_log_index, prev_log_term, entries, leader_commit } => {
                let what = match (entries.first(), entries.last()) {
                    (Some(f), Some(l)) => format!("entries {}..{}", f.index, l.index),
                    _ => "no entries (a probe)".into(),
                };
                n(format!("Leader {from} sends {to} {what} in term {term}, after {prev_log_index}@{prev_log_term}; {to} accepts only if its log holds that entry (consistency check). Leader commit={leader_commit}."), RULE_LOG_MATCH, "append")
            }
            Message::AppendEntriesResponse { term, result } => match result {
                AppendResult::Success { match_index } => n(format!("{from} tells leader {to}: my log matches yours up to {match_index} (term {term})."), RULE_LOG_MATCH, "append"),
                AppendResult::Reject { rejected_prev, hint_index, .. } => n(format!("{from} rejects {to}'s append: no matching entry at {rejected_prev}; the leader backs up to {hint_index} and retries."), RULE_LOG_MATCH, "append"),
            },
            Message::ReadIndex { ctx, .. } => n(format!("Follower {from} asks leader {to} for a read index (request {ctx}): it will answer its client from its own state once it has applied that index (a follower read)."), RULE_READ_INDEX, "read"),
            Message::ReadIndexResponse { index: Some(i), .. } => n(format!("Leader {from} confirmed its leadership and tells {to}: read at index {i} or later."), RULE_READ_INDEX, "read"),
            Message::ReadIndexResponse { index: None, .. } => n(format!("{from} refuses {to}'s read index request: it is not a confirmed leader."), RULE_READ_INDEX, "read"),
            Message::Heartbeat { term, commit, .. } if heartbeats => n(format!("Leader {from} sends {to} a heartbeat (term {term}, commit {commit}) to keep its authority and suppress elections."), RULE_ELECTION, "heartbeat"),
            Message::InstallSnapshot { .. } => n(format!("Leader {from} sends {to} part of its snapshot ({}).", m.summary()), RULE_SNAPSHOT, "snapshot"),
            Message::InstallSnapshotResponse { .. } => n(format!("{from} answers {to}'s snapshot chunk ({}).", m.summary()), RULE_SNAPSHOT, "snapshot"),
            Message::HeartbeatResponse { term, .. } if heartbeats => n(format!("{from} acknowledges {to}'s heartbeat (term {term})."), RULE_CHECK_QUORUM, "heartbeat"),
            Message::TimeoutNow { term } => n(format!("Leader {from} hands over: {to}'s log is as long as its own, so it tells {to} to campaign now (TimeoutNow, term {term})."), RULE_ELECTION, "vote"),
            _ => None,
        },
        // The client's invocation already says this; the send itself only with deliveries.
        Payload::Request { .. } if !deliveries => None,
        Payload::Request { seq, op } => n(
            format!("{from} sends request #{seq} ({}) to {to}.", op_text(op)),
            RULE_CLIENT,
            "client",
        ),
        Payload::Reply { seq, outcome } => {
            let what = match outcome {
                Ok(r) => result_text(r),
                Err(e) => format!("error: {e}"),
            };
            n(format!("{from} answers {to}'s request #{seq}: {what}."), RULE_CLIENT, "client")
        }
        Payload::Write { session, seq, op } => n(
            format!("{from} sends write #{seq} ({}) to {to} under session {session}: a retry with the same number is answered from the session table, never applied twice.", op_text(op)),
            RULE_CLIENT,
            "client",
        ),
        Payload::Read { seq, key, consistency } => n(
            format!("{from} asks {to} to read {} ({} read #{seq}): no log entry is written for it.", String::from_utf8_lossy(key), consistency.name()),
            RULE_CLIENT,
            "client",
        ),
    }
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
