//! Safety checkers that watch every run of the simulator (Raft §5.2–5.4, Figure 3):
//! election safety, leader append-only, log matching, leader completeness, state machine safety,
//! and monotonic terms, commit and applied indexes — across snapshot boundaries: a snapshot must
//! equal the state a reference state machine reaches by applying the committed entries in index
//! order, and a node that installs or restores one continues applying right after it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config_check::{unsafe_change, Ballots};
use crate::kv::KvStore;
use crate::log::RaftLog;
use crate::node::RaftNode;
use crate::snapshot::Snapshot;
use crate::types::{Entry, EntryPayload, Index, NodeId, Term};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub time: u64,
    pub property: String,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "t={} {}: {}",
            super::trace::fmt_time(self.time),
            self.property,
            self.detail
        )
    }
}

#[derive(Clone, Debug, Default)]
pub struct Checker {
    leaders: BTreeMap<Term, NodeId>,
    /// Every entry known committed, by index. Any later disagreement is a safety failure.
    committed: BTreeMap<Index, Entry>,
    /// The earliest term in which some node knew each committed index committed.
    committed_in: BTreeMap<Index, Term>,
    max_term: BTreeMap<NodeId, Term>,
    /// Last applied index per node in its current incarnation.
    applied: BTreeMap<NodeId, Index>,
    /// Highest snapshot index each node made durable: a restart must come back at least there.
    snapshot_floor: BTreeMap<NodeId, Index>,
    /// The reference state machine: the committed entries applied in index order.
    reference: KvStore,
    /// Digest of the reference state after each index (8 bytes per committed entry, like the
    /// `committed` map itself), so a snapshot at any index can be compared with it.
    reference_digests: BTreeMap<Index, u64>,
    /// Snapshots at indexes the reference has not reached yet: `(time, node, index, digest)`.
    pending_snapshots: Vec<(u64, NodeId, Index, u64)>,
    snapshots_checked: u64,
    violations: Vec<Violation>,
    /// The reference applies what the nodes are configured to apply (including a session
    /// mutation under test), so a divergence it reports is a replication bug, and a state
    /// machine bug must be caught by the client-history checks.
    reference_recreates_sessions: bool,
    /// Votes granted, for the check that each leader won by a quorum of its committed
    /// configuration.
    ballots: Ballots,
}

impl Checker {
    /// A checker whose reference state machine is configured like the nodes of `raft`.
    pub fn for_config(raft: &crate::config::Config) -> Self {
        Checker {
            reference: KvStore::with_session_limit(raft.session_limit_bytes),
            reference_recreates_sessions: raft
                .has_mutation(crate::mutation::Mutation::RecreateExpiredSessions),
            ..Checker::default()
        }
    }
}

/// Snapshots waiting for the reference state machine; more are not checked (a run that keeps
/// snapshotting past what is known committed is broken in other, reported ways).
const MAX_PENDING_SNAPSHOTS: usize = 1_000;

/// The entry at absolute index `i` of a contiguous run starting at index `first`.
fn entry_at(l: &[Entry], first: Index, i: Index) -> &Entry {
    &l[(i - first) as usize]
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// One step of FNV-1a over `bytes`, from the digest `h` of what came before.
fn fnv1a(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// FNV-1a: a stable 64-bit digest of a snapshot's bytes (std's hashers are not stable).
fn digest(bytes: &[u8]) -> u64 {
    fnv1a(FNV_OFFSET, bytes)
}

/// A postcard output that digests the bytes as they are produced: the digest of the encoding
/// without the encoding. The reference state is digested after every committed entry, and
/// building each encoding in a fresh `Vec` only to hash it cost an allocation and a copy.
struct DigestFlavor(u64);

impl postcard::ser_flavors::Flavor for DigestFlavor {
    type Output = u64;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0 = fnv1a(self.0, data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.try_extend(&[data])
    }

    fn finalize(self) -> postcard::Result<u64> {
        Ok(self.0)
    }
}

/// `digest(&postcard::to_allocvec(value))`, computed without the bytes.
fn digest_encoding<T: Serialize>(value: &T) -> postcard::Result<u64> {
    postcard::serialize_with_flavor(value, DigestFlavor(FNV_OFFSET))
}

/// Keeps a pathological run from collecting millions of copies of one failure.
const MAX_VIOLATIONS: usize = 100;

impl Checker {
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    pub fn committed(&self) -> &BTreeMap<Index, Entry> {
        &self.committed
    }

    pub fn leaders(&self) -> &BTreeMap<Term, NodeId> {
        &self.leaders
    }

    /// Snapshots (taken, installed or restored) compared with the reference state machine so
    /// far: proof in tests that the snapshot check is not vacuous.
    pub fn snapshots_checked(&self) -> u64 {
        self.snapshots_checked
    }

    pub fn fail(&mut self, time: u64, property: &str, detail: String) {
        if self.violations.len() < MAX_VIOLATIONS {
            self.violations.push(Violation {
                time,
                property: property.to_string(),
                detail,
            });
        }
    }

    /// Election safety (at most one leader per term) and leader completeness (§5.4: a leader
    /// of term T holds every entry committed in a term before T). Entries committed in T or
    /// later are not its business: a candidate paused mid-election can legitimately win an
    /// old term after a newer leader has committed more.
    pub fn on_leader(&mut self, time: u64, node: NodeId, term: Term, log: &RaftLog) {
        if let Some(&other) = self.leaders.get(&term) {
            if other != node {
                self.fail(
                    time,
                    "election safety",
                    format!("n{other} and n{node} both leaders in term {term}"),
                );
            }
        }
        self.leaders.insert(term, node);
        let missing: Vec<Index> = self
            .committed
            .iter()
            .filter(|(i, e)| {
                // An entry the leader's snapshot covers is present: it was applied to make it.
                self.committed_in.get(i).is_some_and(|&t| t < term)
                    && **i > log.snapshot_index()
                    && log.get(**i).map(|x| x.term) != Some(e.term)
            })
            .map(|(i, _)| *i)
            .take(5)
            .collect();
        if !missing.is_empty() {
            self.fail(
                time,
                "leader completeness",
                format!("n{node} leader of term {term} lacks committed entries {missing:?}"),
            );
        }
    }

    /// A vote granted in a real election reached its candidate.
    pub fn on_vote(&mut self, voter: NodeId, candidate: NodeId, term: Term) {
        self.ballots.record(voter, candidate, term);
    }

    /// Election quorum: a leader's votes form a quorum of the configuration committed in its
    /// log, not of an older one it has not applied yet, nor of one counting learners.
    pub fn on_leader_votes(&mut self, time: u64, leader: &RaftNode, term: Term) {
        if let Some(d) = self.ballots.unsupported_win(leader, term) {
            self.fail(time, "election quorum (committed configuration)", d);
        }
        // Elections of older terms may still end (a paused candidate); keep a few terms.
        self.ballots.forget_before(term.saturating_sub(16));
    }

    /// Configuration overlap: a change a leader just logged leads to a configuration whose
    /// quorums meet those of the configuration committed before it (one voter apart, or
    /// joint). Two changes in flight can step two voters away and split the cluster.
    pub fn on_conf_change_logged(&mut self, time: u64, leader: &RaftNode) {
        if let Some(d) = unsafe_change(leader) {
            self.fail(time, "configuration overlap", d);
        }
    }

    /// Durable term per node: what reached disk, and what a restart recovers, never decreases.
    /// (A term held only in memory may be lost by a crash; nobody can have seen it.)
    pub fn on_term(&mut self, time: u64, node: NodeId, term: Term) {
        let prev = self.max_term.entry(node).or_insert(0);
        if term < *prev {
            let p = *prev;
            self.fail(
                time,
                "monotonic term",
                format!("n{node} term went from {p} back to {term}"),
            );
        } else {
            *prev = term;
        }
    }

    /// Records entries a node declared committed and checks they agree with earlier commits.
    pub fn on_commit(
        &mut self,
        time: u64,
        node: NodeId,
        term: Term,
        (from, to): (Index, Index),
        log: &RaftLog,
    ) {
        if to < from {
            self.fail(
                time,
                "monotonic commit",
                format!("n{node} commit went from {from} back to {to}"),
            );
        }
        // Entries the node compacted in the same batch were applied, and checked, already.
        for i in (from + 1).max(log.snapshot_index() + 1)..=to {
            let Some(e) = log.get(i) else {
                self.fail(
                    time,
                    "commit",
                    format!("n{node} committed index {i} it does not hold"),
                );
                continue;
            };
            self.record_committed(time, node, e, term, "state machine safety (commit)");
        }
    }

    fn record_committed(&mut self, time: u64, node: NodeId, e: &Entry, term: Term, property: &str) {
        let first_term = self.committed_in.entry(e.index).or_insert(term);
        *first_term = (*first_term).min(term);
        match self.committed.get(&e.index) {
            Some(known) if known != e => {
                let detail = format!(
                    "n{node} has {}@{} at committed index {} where {}@{} was committed",
                    e.index, e.term, e.index, known.index, known.term
                );
                self.fail(time, property, detail);
            }
            Some(_) => {}
            None => {
                self.committed.insert(e.index, e.clone());
                self.advance_reference(time);
            }
        }
    }

    /// Applies newly known committed entries to the reference state machine, in order, and
    /// checks snapshots that were waiting for it.
    fn advance_reference(&mut self, time: u64) {
        loop {
            let next = self.reference.applied_index() + 1;
            let Some(e) = self.committed.get(&next) else {
                return;
            };
            match &e.payload {
                EntryPayload::Noop | EntryPayload::ConfChange(_) => self.reference.apply_noop(next),
                EntryPayload::Command(req) => {
                    self.reference
                        .apply_with(next, req, self.reference_recreates_sessions);
                }
            }
            let Ok(d) = digest_encoding(&self.reference) else {
                return;
            };
            self.reference_digests.insert(next, d);
            let waiting: Vec<_> = self
                .pending_snapshots
                .iter()
                .filter(|p| p.2 == next)
                .copied()
                .collect();
            self.pending_snapshots.retain(|p| p.2 != next);
            for (at, node, index, got) in waiting {
                self.compare_snapshot(at.max(time), node, index, got, d);
            }
        }
    }

    fn compare_snapshot(&mut self, time: u64, node: NodeId, index: Index, got: u64, want: u64) {
        self.snapshots_checked += 1;
        if got != want {
            self.fail(
                time,
                "state machine safety (snapshot)",
                format!(
                    "n{node}'s snapshot at {index} differs from the committed entries applied in order"
                ),
            );
        }
    }

    /// A node took (`installed` false) or installed a snapshot: its state must be the reference
    /// state at that index. An installed snapshot is now exactly the node's state machine; a
    /// taken one was encoded from a copy in the background, and the state machine may have
    /// applied more entries meanwhile (a leader whose quorum shrank commits more in the same
    /// turn), but never fewer.
    pub fn on_snapshot(
        &mut self,
        time: u64,
        node: NodeId,
        snap: &Snapshot,
        installed: bool,
        kv: &KvStore,
    ) {
        let index = snap.meta.last_index;
        let consistent = if installed {
            kv.applied_index() == index
        } else {
            kv.applied_index() >= index
        };
        if !consistent {
            let what = if installed { "installed" } else { "took" };
            self.fail(
                time,
                "snapshot",
                format!(
                    "n{node} {what} snapshot {index} but its state machine is at {}",
                    kv.applied_index()
                ),
            );
        }
        let got = digest(&snap.data);
        match self.reference_digests.get(&index) {
            Some(&want) => self.compare_snapshot(time, node, index, got, want),
            None if self.pending_snapshots.len() < MAX_PENDING_SNAPSHOTS => {
                self.pending_snapshots.push((time, node, index, got));
            }
            None => {}
        }
    }

    /// Forgets reference digests below `index`: no node can take, install or restart from a
    /// snapshot older than the oldest snapshot on any disk, so memory stays bounded by what is
    /// not yet covered everywhere.
    pub fn forget_reference_before(&mut self, index: Index) {
        self.reference_digests = self.reference_digests.split_off(&index);
    }

    /// A snapshot reached a node's disk.
    pub fn on_snapshot_saved(&mut self, node: NodeId, index: Index) {
        let floor = self.snapshot_floor.entry(node).or_insert(0);
        *floor = (*floor).max(index);
    }

    /// An installed snapshot became durable (with the acknowledgement): from here the node
    /// applies `index + 1` next, and it must not have applied beyond `index` before.
    pub fn on_install_durable(&mut self, time: u64, node: NodeId, index: Index) {
        let last = self.applied.entry(node).or_insert(0);
        if index < *last {
            let l = *last;
            self.fail(
                time,
                "monotonic applied",
                format!("n{node} installed snapshot {index} after applying up to {l}"),
            );
        }
        self.applied.insert(node, index);
    }

    /// State machine safety: no two nodes apply different entries at one index; each node
    /// applies in order without gaps.
    pub fn on_applied(&mut self, time: u64, node: NodeId, term: Term, entry: &Entry) {
        let last = self.applied.entry(node).or_insert(0);
        if entry.index != *last + 1 {
            let l = *last;
            self.fail(
                time,
                "monotonic applied",
                format!("n{node} applied {} after {l}", entry.index),
            );
        }
        *self.applied.entry(node).or_insert(0) = entry.index;
        self.record_committed(time, node, entry, term, "state machine safety");
    }

    /// A node restarted from its disk: it resumes at its snapshot (if any), which must be the
    /// latest it made durable, with its state machine restored from it.
    pub fn on_restart(&mut self, time: u64, node: NodeId, raft: &RaftNode, kv: &KvStore) {
        let floor = self.snapshot_floor.get(&node).copied().unwrap_or(0);
        let at = raft.snapshot_index();
        if at < floor || raft.commit_index() < at || raft.applied_index() != at {
            self.fail(
                time,
                "monotonic commit/applied (restart)",
                format!(
                    "n{node} restarted at snapshot {at}, commit {}, applied {} after saving snapshot {floor}",
                    raft.commit_index(),
                    raft.applied_index()
                ),
            );
        }
        if let Some(snap) = raft.snapshot() {
            self.on_snapshot(time, node, snap, true, kv);
        }
        self.applied.insert(node, at);
    }

    /// Log matching (§5.3): if two logs hold an entry with the same index and term, they are
    /// identical up to that index. Checked pairwise from the highest common agreement down, over
    /// the indexes both still hold (what either compacted is covered by the snapshot checks).
    /// Each log is a contiguous run of entries, starting anywhere.
    pub fn check_log_matching(&mut self, time: u64, logs: &[(NodeId, &[Entry])]) {
        for (a, (na, la)) in logs.iter().enumerate() {
            for (nb, lb) in logs.iter().skip(a + 1) {
                let (Some(fa), Some(fb)) = (la.first(), lb.first()) else {
                    continue;
                };
                let lo = fa.index.max(fb.index);
                let hi = (fa.index + la.len() as u64).min(fb.index + lb.len() as u64);
                let at = entry_at;
                let Some(top) = (lo..hi)
                    .rev()
                    .find(|&i| at(la, fa.index, i).term == at(lb, fb.index, i).term)
                else {
                    continue;
                };
                if let Some(i) = (lo..=top).find(|&i| at(la, fa.index, i) != at(lb, fb.index, i)) {
                    let detail = format!(
                        "n{na} and n{nb} agree at {top}@{} but differ at index {i}",
                        at(la, fa.index, top).term
                    );
                    self.fail(time, "log matching", detail);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{ClientRequest, KvOp};

    #[test]
    fn the_streamed_digest_is_the_digest_of_the_encoding() {
        let mut kv = KvStore::default();
        kv.apply(
            1,
            &ClientRequest {
                client_id: 0,
                seq: 0,
                op: KvOp::OpenSession,
            },
        );
        for i in 2..40u64 {
            let op = KvOp::Put {
                key: format!("k{}", i % 7).into_bytes(),
                value: vec![i as u8; i as usize * 3],
            };
            kv.apply(
                i,
                &ClientRequest {
                    client_id: 1,
                    seq: i,
                    op,
                },
            );
            let bytes = postcard::to_allocvec(&kv).unwrap();
            assert_eq!(digest_encoding(&kv).unwrap(), digest(&bytes));
        }
    }
}
