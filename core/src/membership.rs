//! Cluster membership: who votes, who only receives the log, and how a configuration changes.
//!
//! The model is etcd-raft's `ConfChangeV2`: a configuration has incoming `voters`, `outgoing`
//! voters (non-empty only while *joint*: both majorities are needed, Raft thesis §4.3),
//! `learners` (receive the log and snapshots, never count for quorum or campaign) and
//! `learners_next` (voters being demoted, which stay voters of the outgoing half until the joint
//! configuration is left, so no node is a voter and a learner at once) and
//! `promote_when_caught_up` (learners any leader promotes once they have caught up: the
//! operator's intent is part of the replicated configuration, so it survives leader changes,
//! restarts and snapshot installs).
//!
//! A change is a log entry ([`crate::types::EntryPayload::ConfChange`]) that takes effect when
//! it is *applied*, on every node, through the pure functions here ([`Membership::apply`]):
//! no node ever has to roll a configuration back when its log is truncated.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::types::{Index, NodeId};

/// The configuration in force on a node (the one its applied log produced).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// The voters of the (incoming) configuration.
    pub voters: BTreeSet<NodeId>,
    /// The voters of the configuration being left; non-empty only while joint.
    pub outgoing: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    /// Voters being demoted: voters of `outgoing`, learners once the joint config is left.
    pub learners_next: BTreeSet<NodeId>,
    /// Leave the joint configuration automatically once it is applied (the leader proposes it).
    pub auto_leave: bool,
    /// Opaque executor addresses of members (the simulator leaves them empty).
    pub addresses: BTreeMap<NodeId, String>,
    /// Ids that were members once: never reusable (a wiped node replaying old configurations
    /// under a reused id could elect itself in a configuration of its own).
    pub removed: BTreeSet<NodeId>,
    /// Learners added with [`ChangeKind::AddLearnerThenVoter`]: the leader, whichever node it
    /// is, promotes each once it has caught up (see `RaftNode::maybe_auto_promote`). A subset
    /// of `learners`; a node leaves it when it becomes a voter or is removed. Last field:
    /// `#[serde(default)]` lets a JSON configuration written before it existed still read
    /// (postcard files carry a format version instead).
    #[serde(default)]
    pub promote_when_caught_up: BTreeSet<NodeId>,
}

/// What one change does to one node. `AddVoter` on a learner promotes it; `AddLearner` on a
/// voter demotes it. New variants go last: postcard encodes by position, and logs written
/// before a variant existed must still decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChangeKind {
    AddVoter,
    AddLearner,
    Remove,
    /// Adds a new node as a learner that the leader promotes to voter once it has caught up
    /// (`kvctl member add` without `--learner`). Only for a node that is not a member.
    AddLearnerThenVoter,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SingleChange {
    pub kind: ChangeKind,
    pub node: NodeId,
    /// The executor address of an added node (ignored for `Remove`).
    pub address: Option<String>,
}

/// How a change with voter changes is carried out (etcd-raft's `ConfChangeTransition`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Transition {
    /// One step when at most one voter changes, otherwise joint with automatic leave.
    #[default]
    Auto,
    /// Always joint, left automatically.
    JointImplicit,
    /// Always joint, left only when an empty change is proposed.
    JointExplicit,
}

/// A configuration change as proposed and logged. No changes = leave the joint configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfChange {
    pub changes: Vec<SingleChange>,
    pub transition: Transition,
}

/// Why a change was refused. Definite: nothing was appended. Display is one line for `kvctl`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfChangeError {
    #[error("not the leader (leader hint: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("another configuration change (log index {pending}) is not applied yet")]
    ChangeInProgress { pending: Index },
    #[error("the leader has not yet committed an entry of its term; retry shortly")]
    NoCommitInTerm,
    #[error("the change would leave no voters")]
    RemovesAllVoters,
    #[error("node id {0} was a member before; ids are never reused")]
    IdReused(NodeId),
    #[error("node {0} is not a member")]
    UnknownNode(NodeId),
    #[error("node {0} is already a member in that role")]
    AlreadyMember(NodeId),
    #[error(
        "node {node} is not caught up: its log matches to {matched}, the leader's ends at {last}"
    )]
    LearnerNotCaughtUp {
        node: NodeId,
        matched: Index,
        last: Index,
    },
    #[error("more than one voter changes: use a joint transition")]
    TooManyVoterChanges,
    #[error("the configuration is not joint: nothing to leave")]
    NotJoint,
    #[error("the configuration is joint: leave it before another change")]
    AlreadyJoint,
    #[error("a leadership transfer is in progress")]
    TransferInProgress,
    #[error("node {0} appears twice in one change")]
    DuplicateNode(NodeId),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Membership {
    /// The first configuration of a new cluster: these voters, no learners.
    pub fn bootstrap(
        voters: impl IntoIterator<Item = NodeId>,
        addresses: BTreeMap<NodeId, String>,
    ) -> Self {
        Membership {
            voters: voters.into_iter().collect(),
            addresses,
            ..Membership::default()
        }
    }

    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// A voter of either half: it votes and counts for quorum.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.outgoing.contains(&id)
    }

    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.contains(&id) || self.learners_next.contains(&id)
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.is_learner(id)
    }

    /// Every voter of either half.
    pub fn all_voters(&self) -> BTreeSet<NodeId> {
        self.voters.union(&self.outgoing).copied().collect()
    }

    /// Every member: voters of both halves and learners.
    pub fn members(&self) -> BTreeSet<NodeId> {
        let mut all = self.all_voters();
        all.extend(self.learners.iter().copied());
        all.extend(self.learners_next.iter().copied());
        all
    }

    /// Whether `yes` holds for a majority of every half (joint: both majorities).
    pub fn has_quorum(&self, yes: impl Fn(NodeId) -> bool) -> bool {
        majority(&self.voters, &yes) && majority(&self.outgoing, &yes)
    }

    /// The outcome of an election in which `votes` answered (granted or not).
    pub fn vote_result(&self, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
        let halves = [
            half_result(&self.voters, votes),
            half_result(&self.outgoing, votes),
        ];
        if halves.contains(&VoteResult::Lost) {
            VoteResult::Lost
        } else if halves.iter().all(|&r| r == VoteResult::Won) {
            VoteResult::Won
        } else {
            VoteResult::Pending
        }
    }

    /// The highest index stored on a majority of every half, given each voter's match.
    pub fn committed_index(&self, matched: impl Fn(NodeId) -> Index) -> Index {
        half_committed(&self.voters, &matched).min(half_committed(&self.outgoing, &matched))
    }

    /// The configuration `cc` produces, or why it cannot be applied (etcd-raft's `Changer`):
    /// enter joint, leave joint or one simple step. Pure: the caller decides what to do.
    pub fn apply(&self, cc: &ConfChange) -> Result<Membership, ConfChangeError> {
        if cc.changes.is_empty() {
            return self.leave_joint();
        }
        let simple = cc.transition == Transition::Auto && self.voter_changes(cc) <= 1;
        if simple {
            self.simple(&cc.changes)
        } else {
            self.enter_joint(cc.transition != Transition::JointExplicit, &cc.changes)
        }
    }

    /// How many voters `cc` adds or removes (a promotion or a demotion counts as one).
    fn voter_changes(&self, cc: &ConfChange) -> usize {
        cc.changes
            .iter()
            .filter(|c| match c.kind {
                ChangeKind::AddVoter => !self.voters.contains(&c.node),
                ChangeKind::AddLearner | ChangeKind::Remove | ChangeKind::AddLearnerThenVoter => {
                    self.voters.contains(&c.node)
                }
            })
            .count()
    }

    fn simple(&self, changes: &[SingleChange]) -> Result<Membership, ConfChangeError> {
        if self.is_joint() {
            return Err(ConfChangeError::AlreadyJoint);
        }
        let mut next = self.clone();
        next.apply_changes(changes)?;
        let changed = self.voters.symmetric_difference(&next.voters).count();
        if changed > 1 {
            return Err(ConfChangeError::TooManyVoterChanges);
        }
        next.check_invariants().map_err(ConfChangeError::Invalid)?;
        Ok(next)
    }

    fn enter_joint(
        &self,
        auto_leave: bool,
        changes: &[SingleChange],
    ) -> Result<Membership, ConfChangeError> {
        if self.is_joint() {
            return Err(ConfChangeError::AlreadyJoint);
        }
        if self.voters.is_empty() {
            return Err(ConfChangeError::RemovesAllVoters);
        }
        let mut next = self.clone();
        next.outgoing = self.voters.clone();
        next.apply_changes(changes)?;
        next.auto_leave = auto_leave;
        next.check_invariants().map_err(ConfChangeError::Invalid)?;
        Ok(next)
    }

    fn leave_joint(&self) -> Result<Membership, ConfChangeError> {
        if !self.is_joint() {
            return Err(ConfChangeError::NotJoint);
        }
        let mut next = self.clone();
        next.learners
            .extend(std::mem::take(&mut next.learners_next));
        next.outgoing.clear();
        next.auto_leave = false;
        next.drop_stale_addresses();
        next.check_invariants().map_err(ConfChangeError::Invalid)?;
        Ok(next)
    }

    fn apply_changes(&mut self, changes: &[SingleChange]) -> Result<(), ConfChangeError> {
        let mut seen = BTreeSet::new();
        for c in changes {
            if !seen.insert(c.node) {
                return Err(ConfChangeError::DuplicateNode(c.node));
            }
            match c.kind {
                ChangeKind::AddVoter => self.make_voter(c.node)?,
                ChangeKind::AddLearner => self.make_learner(c.node)?,
                ChangeKind::Remove => self.remove(c.node)?,
                ChangeKind::AddLearnerThenVoter => self.add_learner_then_voter(c.node)?,
            }
            if c.kind != ChangeKind::Remove {
                if let Some(addr) = &c.address {
                    self.addresses.insert(c.node, addr.clone());
                }
            }
        }
        if self.voters.is_empty() {
            return Err(ConfChangeError::RemovesAllVoters);
        }
        self.drop_stale_addresses();
        Ok(())
    }

    fn make_voter(&mut self, id: NodeId) -> Result<(), ConfChangeError> {
        if self.removed.contains(&id) {
            return Err(ConfChangeError::IdReused(id));
        }
        if self.voters.contains(&id) {
            return Err(ConfChangeError::AlreadyMember(id));
        }
        self.learners.remove(&id);
        self.learners_next.remove(&id);
        self.promote_when_caught_up.remove(&id);
        self.voters.insert(id);
        Ok(())
    }

    /// A new learner with the intent to promote it. Only a node that is not a member: the
    /// intent on a voter being demoted would promote it straight back.
    fn add_learner_then_voter(&mut self, id: NodeId) -> Result<(), ConfChangeError> {
        if self.contains(id) {
            return Err(ConfChangeError::AlreadyMember(id));
        }
        self.make_learner(id)?;
        self.promote_when_caught_up.insert(id);
        Ok(())
    }

    fn make_learner(&mut self, id: NodeId) -> Result<(), ConfChangeError> {
        if self.removed.contains(&id) {
            return Err(ConfChangeError::IdReused(id));
        }
        if self.is_learner(id) {
            return Err(ConfChangeError::AlreadyMember(id));
        }
        self.voters.remove(&id);
        // A voter of the outgoing half cannot be a learner until the joint config is left.
        if self.outgoing.contains(&id) {
            self.learners_next.insert(id);
        } else {
            self.learners.insert(id);
        }
        Ok(())
    }

    fn remove(&mut self, id: NodeId) -> Result<(), ConfChangeError> {
        if !self.voters.contains(&id) && !self.is_learner(id) {
            return Err(ConfChangeError::UnknownNode(id));
        }
        self.voters.remove(&id);
        self.learners.remove(&id);
        self.learners_next.remove(&id);
        self.promote_when_caught_up.remove(&id);
        self.removed.insert(id);
        Ok(())
    }

    fn drop_stale_addresses(&mut self) {
        let members = self.members();
        self.addresses.retain(|id, _| members.contains(id));
    }

    /// The structural rules every configuration obeys (etcd-raft's `checkInvariants`).
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.voters.is_empty() {
            return Err("no voters".into());
        }
        if let Some(id) = self.learners.iter().find(|id| self.is_voter(**id)) {
            return Err(format!("n{id} is a learner and a voter"));
        }
        if let Some(id) = self.learners_next.iter().find(|id| {
            !self.outgoing.contains(id) || self.voters.contains(id) || self.learners.contains(id)
        }) {
            return Err(format!(
                "n{id} is a next learner but not only an outgoing voter"
            ));
        }
        if let Some(id) = self
            .promote_when_caught_up
            .iter()
            .find(|id| !self.learners.contains(id))
        {
            return Err(format!("n{id} is to be promoted but is not a learner"));
        }
        if !self.is_joint() && (self.auto_leave || !self.learners_next.is_empty()) {
            return Err("auto_leave or next learners outside a joint configuration".into());
        }
        let current: BTreeSet<NodeId> = self
            .voters
            .iter()
            .chain(&self.learners)
            .chain(&self.learners_next)
            .copied()
            .collect();
        if let Some(id) = self.removed.iter().find(|id| current.contains(id)) {
            return Err(format!("removed n{id} is still a member"));
        }
        let members = self.members();
        if let Some(id) = self.addresses.keys().find(|id| !members.contains(id)) {
            return Err(format!("address of non-member n{id}"));
        }
        Ok(())
    }
}

impl std::fmt::Display for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |s: &BTreeSet<NodeId>| {
            s.iter()
                .map(|id| format!("n{id}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        write!(f, "voters=[{}]", list(&self.voters))?;
        if self.is_joint() {
            write!(f, "&&[{}]", list(&self.outgoing))?;
        }
        if !self.learners.is_empty() {
            write!(f, " learners=[{}]", list(&self.learners))?;
        }
        if !self.learners_next.is_empty() {
            write!(f, " learners_next=[{}]", list(&self.learners_next))?;
        }
        if !self.promote_when_caught_up.is_empty() {
            write!(f, " promote=[{}]", list(&self.promote_when_caught_up))?;
        }
        if self.auto_leave {
            f.write_str(" autoleave")?;
        }
        Ok(())
    }
}

impl std::fmt::Display for ConfChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.changes.is_empty() {
            return f.write_str("leave-joint");
        }
        let parts: Vec<String> = self
            .changes
            .iter()
            .map(|c| {
                let op = match c.kind {
                    ChangeKind::AddVoter => "v",
                    ChangeKind::AddLearner => "l",
                    ChangeKind::Remove => "r",
                    ChangeKind::AddLearnerThenVoter => "lv",
                };
                format!("{op}{}", c.node)
            })
            .collect();
        write!(f, "{}", parts.join(" "))?;
        match self.transition {
            Transition::Auto => Ok(()),
            Transition::JointImplicit => f.write_str(" (joint)"),
            Transition::JointExplicit => f.write_str(" (joint, explicit leave)"),
        }
    }
}

impl ConfChange {
    pub fn single(kind: ChangeKind, node: NodeId) -> Self {
        ConfChange {
            changes: vec![SingleChange {
                kind,
                node,
                address: None,
            }],
            transition: Transition::Auto,
        }
    }

    pub fn leave_joint() -> Self {
        ConfChange::default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    Won,
    Lost,
    Pending,
}

/// Whether a learner that matched `matched` is close enough to the leader's `last` index
/// (within `Config::max_promotion_lag`) to become a voter: the rule of a manual promotion and
/// of an automatic one. A learner that never acknowledged anything (`matched` 0) is not,
/// however young the log: it may not even run.
pub fn caught_up(matched: Index, last: Index, max_lag: u64) -> bool {
    matched > 0 && last.saturating_sub(matched) <= max_lag
}

/// An empty half (the outgoing half of a non-joint config) agrees to everything.
pub(crate) fn majority(set: &BTreeSet<NodeId>, yes: &impl Fn(NodeId) -> bool) -> bool {
    set.is_empty() || set.iter().filter(|&&id| yes(id)).count() > set.len() / 2
}

fn half_result(set: &BTreeSet<NodeId>, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
    if set.is_empty() {
        return VoteResult::Won;
    }
    let quorum = set.len() / 2 + 1;
    let granted = set.iter().filter(|id| votes.get(id) == Some(&true)).count();
    let rejected = set
        .iter()
        .filter(|id| votes.get(id) == Some(&false))
        .count();
    if granted >= quorum {
        VoteResult::Won
    } else if rejected >= quorum {
        // A majority refused (with an even size, a tie stays pending until the timeout).
        VoteResult::Lost
    } else {
        VoteResult::Pending
    }
}

fn half_committed(set: &BTreeSet<NodeId>, matched: &impl Fn(NodeId) -> Index) -> Index {
    if set.is_empty() {
        return Index::MAX;
    }
    let mut m: Vec<Index> = set.iter().map(|&id| matched(id)).collect();
    m.sort_unstable_by(|a, b| b.cmp(a));
    m[set.len() / 2]
}

#[cfg(test)]
mod tests;
