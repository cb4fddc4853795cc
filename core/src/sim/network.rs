//! The simulated network between nodes: per-link latency, loss, duplication, long delays and
//! partitions (symmetric or one-way). Client links are reliable; clients see faults through the
//! nodes they talk to.

use std::collections::BTreeSet;

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

    pub fn fate(&self, rng: &mut Rng) -> Fate {
        let c = &self.config;
        if rng.chance(c.drop_rate) {
            return Fate::Drop;
        }
        let copies = if rng.chance(c.duplicate_rate) { 2 } else { 1 };
        Fate::Deliver((0..copies).map(|_| self.delay(rng)).collect())
    }

    fn delay(&self, rng: &mut Rng) -> u64 {
        let c = &self.config;
        let mut d = rng.range(c.latency_us.0, c.latency_us.1);
        if c.long_delay_us > 0 && rng.chance(c.long_delay_rate) {
            d += rng.range(0, c.long_delay_us);
        }
        d
    }
}
