//! Holding messages on chosen links: a held message waits at the receiving end of its link until
//! someone delivers or drops it. Scenario scripts use this to deliver by hand, reorder, lose one
//! message on purpose or freeze a link without cutting it, the way etcd-raft's interaction tests
//! step messages one at a time. Randomized runs never hold anything: with no hold set, delivery
//! is exactly what it was.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::simulator::Simulator;
use crate::trace::{Addr, DropReason, Payload, TraceKind};

/// Messages that may wait on held links at once; more are dropped like a full buffer.
pub const MAX_HELD: usize = 10_000;
/// Hold patterns that may be active at once.
pub const MAX_HOLDS: usize = 64;

/// One end of a link pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AddrPattern {
    Any,
    Is(Addr),
}

impl AddrPattern {
    fn matches(self, a: Addr) -> bool {
        match self {
            AddrPattern::Any => true,
            AddrPattern::Is(x) => x == a,
        }
    }

    fn covers(self, other: AddrPattern) -> bool {
        self == AddrPattern::Any || self == other
    }
}

impl std::fmt::Display for AddrPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddrPattern::Any => write!(f, "*"),
            AddrPattern::Is(a) => write!(f, "{a}"),
        }
    }
}

/// A set of directed links, e.g. `n1->n2`, `n1->*` (everything n1 sends), `*->*` (all links).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkPattern {
    pub from: AddrPattern,
    pub to: AddrPattern,
}

impl LinkPattern {
    pub const ALL: LinkPattern = LinkPattern {
        from: AddrPattern::Any,
        to: AddrPattern::Any,
    };

    pub fn matches(&self, from: Addr, to: Addr) -> bool {
        self.from.matches(from) && self.to.matches(to)
    }

    /// Whether every link of `other` is also one of this pattern's.
    pub fn covers(&self, other: &LinkPattern) -> bool {
        self.from.covers(other.from) && self.to.covers(other.to)
    }
}

impl std::fmt::Display for LinkPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}->{}", self.from, self.to)
    }
}

/// A message waiting on a held link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldMessage {
    pub id: u64,
    pub from: Addr,
    pub to: Addr,
    pub payload: Payload,
    /// When it reached the held link.
    pub since: u64,
}

/// The hold state: which links hold, and what waits on them (oldest first).
#[derive(Clone, Debug, Default)]
pub struct Holds {
    links: Vec<LinkPattern>,
    held: VecDeque<HeldMessage>,
}

impl Holds {
    fn holds(&self, from: Addr, to: Addr) -> bool {
        self.links.iter().any(|l| l.matches(from, to))
    }
}

impl Simulator {
    /// From now on, messages arriving on links in `link` wait until delivered or dropped.
    /// Returns false (and changes nothing) when [`MAX_HOLDS`] patterns are already active.
    pub fn hold(&mut self, link: LinkPattern) -> bool {
        if self.holds.links.contains(&link) {
            return true;
        }
        if self.holds.links.len() >= MAX_HOLDS {
            return false;
        }
        self.holds.links.push(link);
        true
    }

    /// Stops holding every pattern `link` covers and delivers, oldest first, the waiting
    /// messages no remaining pattern holds. Returns how many it delivered.
    pub fn unhold(&mut self, link: LinkPattern) -> usize {
        self.holds.links.retain(|l| !link.covers(l));
        let free: Vec<bool> = self
            .holds
            .held
            .iter()
            .map(|m| !self.holds.holds(m.from, m.to))
            .collect();
        self.release(|i, _| free[i], None, true)
    }

    /// Delivers now the waiting messages on `link`, oldest first, at most `limit` of them.
    pub fn deliver_held(&mut self, link: LinkPattern, limit: Option<usize>) -> usize {
        self.release(|_, m| link.matches(m.from, m.to), limit, true)
    }

    /// Drops the waiting messages on `link`, oldest first, at most `limit` of them.
    pub fn drop_held(&mut self, link: LinkPattern, limit: Option<usize>) -> usize {
        self.release(|_, m| link.matches(m.from, m.to), limit, false)
    }

    /// When the last message now on the wire over `link` arrives; None if none is. A script
    /// runs until then before it delivers or drops, so that "deliver n1->n2" also covers the
    /// request n1 sent a moment ago.
    pub fn last_arrival(&self, link: LinkPattern) -> Option<u64> {
        self.on_the_wire()
            .filter(|(_, from, to)| link.matches(*from, *to))
            .map(|(t, _, _)| t)
            .max()
    }

    /// The messages waiting on held links, oldest first.
    pub fn held(&self) -> impl Iterator<Item = &HeldMessage> {
        self.holds.held.iter()
    }

    /// The active hold patterns, in the order they were set.
    pub fn hold_links(&self) -> &[LinkPattern] {
        &self.holds.links
    }

    /// Called when a message reaches the end of its link: keeps it if the link is held and
    /// hands it back otherwise.
    pub(super) fn hold_if_held(
        &mut self,
        id: u64,
        from: Addr,
        to: Addr,
        payload: Payload,
    ) -> Option<Payload> {
        if !self.holds.holds(from, to) {
            return Some(payload);
        }
        if self.holds.held.len() >= MAX_HELD {
            self.record(TraceKind::Dropped {
                id,
                from,
                to,
                reason: DropReason::InboxFull,
            });
            return None;
        }
        let since = self.now;
        self.holds.held.push_back(HeldMessage {
            id,
            from,
            to,
            payload,
            since,
        });
        self.record(TraceKind::Held { id, from, to });
        None
    }

    /// Removes message `id` from its held link, if it waits on one; returns its link.
    pub(super) fn take_held(&mut self, id: u64) -> Option<(Addr, Addr)> {
        let pos = self.holds.held.iter().position(|m| m.id == id)?;
        let m = self.holds.held.remove(pos)?;
        Some((m.from, m.to))
    }

    fn release(
        &mut self,
        pick: impl Fn(usize, &HeldMessage) -> bool,
        limit: Option<usize>,
        deliver: bool,
    ) -> usize {
        let limit = limit.unwrap_or(usize::MAX);
        let mut chosen = Vec::new();
        let mut kept = VecDeque::new();
        for (i, m) in std::mem::take(&mut self.holds.held).into_iter().enumerate() {
            if chosen.len() < limit && pick(i, &m) {
                chosen.push(m);
            } else {
                kept.push_back(m);
            }
        }
        self.holds.held = kept;
        let n = chosen.len();
        for m in chosen {
            if deliver {
                self.deliver_now(m.id, m.from, m.to, m.payload);
            } else {
                self.record(TraceKind::Dropped {
                    id: m.id,
                    from: m.from,
                    to: m.to,
                    reason: DropReason::Script,
                });
            }
        }
        n
    }
}
