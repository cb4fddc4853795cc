//! Membership on a native node: the shared roster every task consults, and the server policy
//! (etcd's `--strict-reconfig-check`) that the core leaves to its executor.
//!
//! The core decides *whether* a configuration change is a legal Raft step; this module decides
//! whether it is a wise one on a real network: a change that would leave fewer connected voters
//! than a quorum of the new configuration is refused before it is proposed, with one line that
//! says why (research notes §1.6, etcd `server.go` `mayRemoveMember`/`mayAddMember`).

use std::collections::BTreeSet;
use std::sync::RwLock;

use keyval_core::{Membership, NodeId};
use tokio::sync::watch;

use crate::wire::{MemberRole, MemberRow, MembershipView};

/// The membership this node acts on, shared by the node loop (which updates it when a
/// configuration applies), the transport (which admits or refuses peers by it, and hands it to
/// joining nodes) and the client handlers (leader hints).
#[derive(Debug, Default)]
pub struct Roster {
    inner: RwLock<Applied>,
}

/// The core's configuration in force, the log index that produced it, and its view.
#[derive(Clone, Debug, Default)]
pub struct Applied {
    pub membership: Membership,
    pub index: u64,
    pub view: MembershipView,
}

/// What the roster says about a node id that wants to talk to us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    Member,
    /// Was a member and was removed: it gets the distinct refusal that makes it stop.
    Removed,
    Unknown,
}

impl Roster {
    /// `fallback`: addresses of bootstrap members, which the core's first configuration lacks
    /// in data directories written before it carried addresses.
    pub fn new(
        membership: Membership,
        index: u64,
        fallback: &std::collections::BTreeMap<NodeId, String>,
    ) -> Roster {
        let r = Roster::default();
        r.set(membership, index, fallback);
        r
    }

    pub fn applied(&self) -> Applied {
        self.inner.read().map(|a| a.clone()).unwrap_or_default()
    }

    pub fn view(&self) -> MembershipView {
        self.inner
            .read()
            .map(|a| a.view.clone())
            .unwrap_or_default()
    }

    pub fn set(
        &self,
        membership: Membership,
        index: u64,
        fallback: &std::collections::BTreeMap<NodeId, String>,
    ) {
        let view = view_of(&membership, index, fallback);
        if let Ok(mut a) = self.inner.write() {
            *a = Applied {
                membership,
                index,
                view,
            };
        }
    }

    pub fn standing(&self, id: NodeId) -> Standing {
        let Ok(a) = self.inner.read() else {
            return Standing::Unknown;
        };
        if a.membership.removed.contains(&id) {
            Standing::Removed
        } else if a.membership.contains(id) {
            Standing::Member
        } else {
            Standing::Unknown
        }
    }

    pub fn address_of(&self, id: NodeId) -> Option<String> {
        self.inner
            .read()
            .ok()?
            .view
            .address_of(id)
            .map(str::to_string)
    }
}

/// The news that this node was removed from the cluster, from wherever it is learnt first (a
/// peer's `Removed` answer, or applying the configuration that removes it): it stops the node.
#[derive(Debug)]
pub struct Eviction {
    tx: watch::Sender<Option<String>>,
}

impl Eviction {
    pub fn new() -> (std::sync::Arc<Eviction>, watch::Receiver<Option<String>>) {
        let (tx, rx) = watch::channel(None);
        (std::sync::Arc::new(Eviction { tx }), rx)
    }

    /// Records the first reason; later ones add nothing.
    pub fn evict(&self, reason: String) {
        self.tx.send_if_modified(|r| {
            if r.is_some() {
                return false;
            }
            *r = Some(reason);
            true
        });
    }
}

/// The view of the core's configuration at `index`. Members bootstrapped without an address
/// in the configuration take it from `fallback` (the `--peers` of the data directory).
pub fn view_of(
    m: &Membership,
    index: u64,
    fallback: &std::collections::BTreeMap<NodeId, String>,
) -> MembershipView {
    let address = |id: NodeId| {
        m.addresses
            .get(&id)
            .or_else(|| fallback.get(&id))
            .cloned()
            .unwrap_or_default()
    };
    let mut members: Vec<MemberRow> = m
        .members()
        .into_iter()
        .map(|id| MemberRow {
            id,
            address: address(id),
            role: if m.voters.contains(&id) || m.outgoing.contains(&id) {
                MemberRole::Voter
            } else {
                MemberRole::Learner
            },
            auto_promote: m.promote_when_caught_up.contains(&id),
        })
        .collect();
    members.sort_by_key(|r| r.id);
    MembershipView {
        index,
        members,
        outgoing: if m.is_joint() {
            m.outgoing.iter().copied().collect()
        } else {
            Vec::new()
        },
        removed: m.removed.iter().copied().collect(),
    }
}

/// Majority of `n` voters.
pub fn quorum(n: usize) -> usize {
    n / 2 + 1
}

/// Strict reconfiguration: refuses a change whose resulting voter set (`after`; while joint,
/// each of its halves must pass on its own) has fewer connected voters than its quorum.
/// `connected` says whether the leader hears from a voter now (the leader itself included).
pub fn check_quorum_after(
    after: &BTreeSet<NodeId>,
    connected: impl Fn(NodeId) -> bool,
    what: &str,
) -> Result<(), String> {
    if after.is_empty() {
        return Err(format!("{what} would leave no voter"));
    }
    let up: Vec<NodeId> = after.iter().copied().filter(|&id| connected(id)).collect();
    let need = quorum(after.len());
    if up.len() < need {
        let down: Vec<String> = after
            .iter()
            .filter(|id| !up.contains(id))
            .map(|id| id.to_string())
            .collect();
        return Err(format!(
            "{what} would leave {} voters of which only {} are connected (down: {}); a quorum needs {need} (strict reconfiguration)",
            after.len(),
            up.len(),
            down.join(",")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn strict_reconfig_counts_connected_voters_of_the_new_configuration() {
        // 3 voters, one down: removing a live one leaves {1, down 3}: 1 of 2 connected < 2.
        let up = |id: NodeId| id != 3;
        let err = check_quorum_after(&set(&[1, 3]), up, "removing node 2").expect_err("refused");
        assert!(err.contains("down: 3") && err.contains("needs 2"), "{err}");
        // Removing the dead one is fine: {1, 2} both connected.
        check_quorum_after(&set(&[1, 2]), up, "removing node 3").expect("allowed");
        // Growing 3 -> 4 with one of the old ones down: 3 of 4 connected >= 3.
        check_quorum_after(&set(&[1, 2, 3, 4]), up, "promoting node 4").expect("allowed");
        // ... but with two down it is refused: 2 of 4 < 3.
        let err = check_quorum_after(&set(&[1, 2, 3, 4]), |id| id <= 2, "promoting node 4")
            .expect_err("refused");
        assert!(
            err.starts_with("promoting node 4 would leave 4 voters"),
            "{err}"
        );
        assert!(check_quorum_after(&set(&[]), up, "x").is_err());
    }

    #[test]
    fn the_view_of_a_joint_configuration_names_both_halves_and_learners() {
        let mut m =
            Membership::bootstrap([1, 2, 4], [(4, "h4:4".to_string())].into_iter().collect());
        m.outgoing = set(&[1, 2, 3]);
        m.learners = set(&[5]);
        m.removed = set(&[9]);
        let fallback = [(1, "h1:1".to_string()), (3, "h3:3".to_string())]
            .into_iter()
            .collect();
        let v = view_of(&m, 12, &fallback);
        assert!(v.joint());
        assert_eq!(v.outgoing, vec![1, 2, 3]);
        assert_eq!(v.voters().collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        assert_eq!(v.learners().collect::<Vec<_>>(), vec![5]);
        assert_eq!(v.address_of(4), Some("h4:4"));
        assert_eq!(v.address_of(3), Some("h3:3"));
        assert_eq!(v.removed, vec![9]);
        assert_eq!(v.index, 12);
    }

    #[test]
    fn roster_tells_members_removed_and_strangers_apart() {
        let addrs = [(1, "a".to_string()), (2, "b".to_string())]
            .into_iter()
            .collect();
        let mut m = Membership::bootstrap([1, 2], std::collections::BTreeMap::new());
        m.removed = set(&[7]);
        let r = Roster::new(m, 0, &addrs);
        assert_eq!(r.standing(1), Standing::Member);
        assert_eq!(r.standing(7), Standing::Removed);
        assert_eq!(r.standing(9), Standing::Unknown);
        assert_eq!(r.address_of(2).as_deref(), Some("b"));
    }
}
