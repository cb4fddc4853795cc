//! The nemesis: a schedule of faults drawn from a seed up front (so it can be printed, saved and
//! replayed), applied to a [`ChaosCluster`] one step at a time.
//!
//! A step names its targets abstractly where the target only exists at run time ("the
//! leader"); the log says which node that turned out to be. Every step is healed before the
//! next one starts, so faults never leak from one step into the next.

use std::fmt;
use std::time::Duration;

use super::cluster::ChaosCluster;
use super::proxy::Cut;
use super::rng::Rng;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Node(u64),
    Leader,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `kill -9`; restarted at the heal.
    Kill(Target),
    KillAll,
    /// SIGSTOP; SIGCONT at the heal (a paused leader wakes up into a newer term).
    Pause(Target),
    /// Both directions between `side` and the rest are cut.
    Halves {
        side: Vec<u64>,
        cut: Cut,
    },
    IsolateLeader {
        cut: Cut,
    },
    /// Two halves that cannot see each other but both see `bridge` (5 nodes).
    Bridge {
        bridge: u64,
        a: Vec<u64>,
        b: Vec<u64>,
        cut: Cut,
    },
    /// What `from` sends to each of `to` is lost; the other direction still works.
    OneWay {
        from: Target,
        to: Vec<u64>,
    },
    /// Every chunk on these directed links is delayed.
    Slow {
        links: Vec<(u64, u64)>,
        delay_ms: u64,
    },
}

/// One step: faults applied together at `at_ms`, healed after `hold_ms`.
#[derive(Clone, Debug)]
pub struct Step {
    pub at_ms: u64,
    pub hold_ms: u64,
    pub faults: Vec<Fault>,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at {:>6} ms hold {:>5} ms:", self.at_ms, self.hold_ms)?;
        for (i, x) in self.faults.iter().enumerate() {
            write!(f, "{} {x:?}", if i == 0 { "" } else { " +" })?;
        }
        Ok(())
    }
}

/// Draws a schedule for `nodes` nodes that fits in `duration`.
pub fn schedule(seed: u64, nodes: usize, duration: Duration) -> Vec<Step> {
    let mut rng = Rng::new(seed);
    let ids: Vec<u64> = (1..=nodes as u64).collect();
    let end = duration.as_millis() as u64;
    let mut steps = Vec::new();
    // A calm start: the clients' first operations run against a healthy cluster.
    let mut t = rng.range(1_000, 2_500);
    while t + 500 < end {
        let hold = rng.range(500, 4_000).min(end - t);
        let mut faults = vec![one_fault(&mut rng, &ids)];
        if rng.chance(25) {
            let second = one_fault(&mut rng, &ids);
            if compatible(&faults[0], &second) {
                faults.push(second);
            }
        }
        steps.push(Step {
            at_ms: t,
            hold_ms: hold,
            faults,
        });
        t += hold + rng.range(500, 2_500);
    }
    steps
}

fn one_fault(rng: &mut Rng, ids: &[u64]) -> Fault {
    let n = ids.len();
    let target = |rng: &mut Rng| {
        if rng.chance(50) {
            Target::Leader
        } else {
            Target::Node(*rng.pick(ids))
        }
    };
    let cut = |rng: &mut Rng| {
        if rng.chance(50) {
            Cut::Stall
        } else {
            Cut::Reset
        }
    };
    match rng.below(if n >= 5 { 9 } else { 8 }) {
        0 => Fault::Kill(target(rng)),
        1 => Fault::KillAll,
        2 => Fault::Pause(target(rng)),
        3 => {
            let k = rng.range(1, (n / 2 + 1) as u64) as usize;
            Fault::Halves {
                side: rng.subset(ids, k),
                cut: cut(rng),
            }
        }
        4 => Fault::IsolateLeader { cut: cut(rng) },
        5 => {
            let from = target(rng);
            let k = rng.range(1, n as u64) as usize;
            Fault::OneWay {
                from,
                to: rng.subset(ids, k),
            }
        }
        6 | 7 => {
            let mut links = Vec::new();
            for &a in ids {
                for &b in ids {
                    if a != b && rng.chance(40) {
                        links.push((a, b));
                    }
                }
            }
            if links.is_empty() {
                let pair = rng.subset(ids, 2);
                links.push((pair[0], pair[1]));
            }
            Fault::Slow {
                links,
                delay_ms: rng.range(20, 250),
            }
        }
        _ => {
            let order = rng.subset(ids, n);
            let mut shuffled = order.clone();
            for i in (1..shuffled.len()).rev() {
                shuffled.swap(i, rng.below(i + 1));
            }
            let bridge = shuffled[0];
            let half = (n - 1) / 2;
            let mut a = shuffled[1..=half].to_vec();
            let mut b = shuffled[half + 1..].to_vec();
            a.sort_unstable();
            b.sort_unstable();
            Fault::Bridge {
                bridge,
                a,
                b,
                cut: cut(rng),
            }
        }
    }
}

/// One process fault plus one network fault; two of a kind would fight over the same nodes.
fn compatible(a: &Fault, b: &Fault) -> bool {
    let is_process = |f: &Fault| matches!(f, Fault::Kill(_) | Fault::KillAll | Fault::Pause(_));
    is_process(a) != is_process(b)
}

/// Applies steps to a cluster and heals them, logging what each abstract target resolved to.
pub struct Nemesis<'a> {
    pub cluster: &'a mut ChaosCluster,
    pub log: Vec<String>,
    pub faults_applied: usize,
}

impl Nemesis<'_> {
    fn resolve(&self, t: &Target) -> Option<u64> {
        match t {
            Target::Node(id) => Some(*id),
            Target::Leader => self.cluster.leader(),
        }
    }

    fn cut_between(&self, a: &[u64], b: &[u64], how: Cut) {
        for &x in a {
            for &y in b {
                if x != y {
                    self.cluster.links[&(x, y)].cut(how);
                    self.cluster.links[&(y, x)].cut(how);
                }
            }
        }
    }

    /// Applies `f`; returns a line saying what it did.
    pub fn apply(&mut self, f: &Fault) -> String {
        self.faults_applied += 1;
        let ids = self.cluster.ids();
        let others = |keep: &[u64]| -> Vec<u64> {
            ids.iter().copied().filter(|i| !keep.contains(i)).collect()
        };
        match f {
            Fault::Kill(t) => match self.resolve(t) {
                Some(id) => {
                    self.cluster.kill9(id);
                    format!("kill -9 node {id}")
                }
                None => "kill: no leader to target; skipped".into(),
            },
            Fault::KillAll => {
                for id in &ids {
                    self.cluster.kill9(*id);
                }
                "kill -9 every node".into()
            }
            Fault::Pause(t) => match self.resolve(t) {
                Some(id) => {
                    self.cluster.pause(id);
                    format!("SIGSTOP node {id}")
                }
                None => "pause: no leader to target; skipped".into(),
            },
            Fault::Halves { side, cut } => {
                self.cut_between(side, &others(side), *cut);
                format!("partition {side:?} | {:?} ({cut:?})", others(side))
            }
            Fault::IsolateLeader { cut } => match self.cluster.leader() {
                Some(l) => {
                    self.cut_between(&[l], &others(&[l]), *cut);
                    format!("isolate leader {l} ({cut:?})")
                }
                None => "isolate leader: no leader; skipped".into(),
            },
            Fault::Bridge { bridge, a, b, cut } => {
                self.cut_between(a, b, *cut);
                format!("bridge {a:?} <-> {bridge} <-> {b:?} ({cut:?})")
            }
            Fault::OneWay { from, to } => match self.resolve(from) {
                Some(from) => {
                    // "The leader" may turn out to be one of `to`: then it loses its way to
                    // every other node in the list, or to all of them if none is left.
                    let mut to: Vec<u64> = to.iter().copied().filter(|&t| t != from).collect();
                    if to.is_empty() {
                        to = others(&[from]);
                    }
                    for &t in &to {
                        self.cluster.links[&(from, t)].cut(Cut::Reset);
                    }
                    format!("one-way loss {from} -> {to:?}")
                }
                None => "one-way: no leader to target; skipped".into(),
            },
            Fault::Slow { links, delay_ms } => {
                for l in links {
                    self.cluster.links[l].set_delay(Duration::from_millis(*delay_ms));
                }
                format!("slow links {links:?} +{delay_ms} ms")
            }
        }
    }

    /// Undoes every fault: links clean, paused nodes resumed, killed nodes restarted.
    pub fn heal(&mut self) {
        self.cluster.heal_all();
    }
}
