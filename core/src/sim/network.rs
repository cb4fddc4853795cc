//! The simulated network between nodes: per-link latency, loss, duplication, long delays and
//! partitions (symmetric or one-way). Client links are reliable; clients see faults through the
//! nodes they talk to.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::rng::Rng;
use crate::types::NodeId;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// Per-message one-way latency, uniform in this range (microseconds).
    pub latency_us: (u64, u64),
    pub drop_rate: f64,
    pub duplicate_rate: f64,
    /// Chance that a message is held back for up to `long_delay_us`, overtaking newer ones.
    pub long_delay_rate: f64,
    pub long_delay_us: u64,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            latency_us: (1_000, 5_000),
            drop_rate: 0.0,
            duplicate_rate: 0.0,
            long_delay_rate: 0.0,
            long_delay_us: 0,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Network {
    pub config: NetworkConfig,
    /// Directed links that are down: (from, to).
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Directed links with their own latency range, overriding `config.latency_us` (a slow
    /// WAN link, one far-away replica).
    link_latency: BTreeMap<(NodeId, NodeId), (u64, u64)>,
}

/// What the network decided for one message.
pub enum Fate {
    Drop,
    /// Deliver after each of these delays (two for a duplicate).
    Deliver(Vec<u64>),
}

impl Network {
    pub fn new(config: NetworkConfig) -> Self {
        Network {
            config,
            cut: BTreeSet::new(),
            link_latency: BTreeMap::new(),
        }
    }

    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cut.contains(&(from, to))
    }

    pub fn cut_link(&mut self, from: NodeId, to: NodeId) {
        self.cut.insert((from, to));
    }

    pub fn restore_link(&mut self, from: NodeId, to: NodeId) {
        self.cut.remove(&(from, to));
    }

    /// Whether any link from `node` is cut (it is at least partly isolated).
    pub fn is_isolated(&self, node: NodeId) -> bool {
        self.cut_links().any(|&(from, _)| from == node)
    }

    pub fn cut_links(&self) -> impl Iterator<Item = &(NodeId, NodeId)> {
        self.cut.iter()
    }

    /// Cuts every link between different groups, both ways; links inside a group stay up.
    pub fn partition(&mut self, groups: &[Vec<NodeId>]) {
        self.cut.clear();
        for (i, a) in groups.iter().enumerate() {
            for (j, b) in groups.iter().enumerate() {
                if i != j {
                    for &x in a {
                        for &y in b {
                            self.cut.insert((x, y));
                        }
                    }
                }
            }
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Gives the directed link its own latency range; `None` returns it to the default.
    pub fn set_link_latency(&mut self, from: NodeId, to: NodeId, range: Option<(u64, u64)>) {
        match range {
            Some(r) => self.link_latency.insert((from, to), r),
            None => self.link_latency.remove(&(from, to)),
        };
    }

    pub fn link_latency(&self, from: NodeId, to: NodeId) -> (u64, u64) {
        self.link_latency
            .get(&(from, to))
            .copied()
            .unwrap_or(self.config.latency_us)
    }

    pub fn fate(&self, from: NodeId, to: NodeId, rng: &mut Rng) -> Fate {
        let c = &self.config;
        if rng.chance(c.drop_rate) {
            return Fate::Drop;
        }
        let copies = if rng.chance(c.duplicate_rate) { 2 } else { 1 };
        let latency = self.link_latency(from, to);
        Fate::Deliver((0..copies).map(|_| self.delay(latency, rng)).collect())
    }

    fn delay(&self, latency: (u64, u64), rng: &mut Rng) -> u64 {
        let c = &self.config;
        let mut d = rng.range(latency.0, latency.1);
        if c.long_delay_us > 0 && rng.chance(c.long_delay_rate) {
            d += rng.range(0, c.long_delay_us);
        }
        d
    }
}
