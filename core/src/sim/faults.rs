//! Random fault plans: which faults strike when, drawn from the run's seed.

use serde::{Deserialize, Serialize};

use super::membership::MemberOp;
use super::network::NetworkConfig;
use super::simulator::FaultAction;
use crate::rng::Rng;
use crate::types::NodeId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultProfile {
    /// A healthy cluster on a clean network.
    None,
    /// Every fault kind: crashes and restarts, pauses, partitions (symmetric and one-way),
    /// loss, duplication and long reordering.
    Mixed,
    /// Frequent crashes with quick restarts and lossy links: the shape of the schedules that
    /// expose persistence and commit-rule bugs.
    CrashHeavy,
    /// Reads on every path (ReadIndex, lease, follower, serializable) under clock drift within
    /// the lease margin, long pauses, partitions and crashes, with a leader isolated right after
    /// it confirms its lease: the schedules in which a lease or read-index bug serves a stale
    /// read.
    Clocks,
    /// The `Mixed` faults plus membership changes (add a learner, promote, remove, demote,
    /// replace through joint consensus) on clusters that grow and shrink between 1 and
    /// [`MAX_NODES`](super::simulator::MAX_NODES) members; now and then two changes at the same
    /// instant (the second must be refused) and power cuts (every node down and back at
    /// once). Some seeds also run a slow state machine without snapshots (see
    /// `RunConfig::sim_config`), so restarted nodes time out with committed configuration
    /// changes still unapplied.
    Membership,
}

/// Drift the `Clocks` profile draws, in per mille either way: far more than real clocks drift,
/// so the gap a lease without margin leaves is wide enough for random schedules to hit. A lease
/// stays safe while `(1 - margin) * (1 + drift) <= 1 - drift` (a follower's clock fast by
/// `drift`, the leader's slow by as much), so ±20 % needs a margin of 1/3; the profile runs
/// with [`CLOCKS_LEASE_MARGIN_PCT`].
pub const CLOCKS_MAX_DRIFT_PER_MILLE: i32 = 200;
pub const CLOCKS_LEASE_MARGIN_PCT: u32 = 35;

/// Draws `(time, action)` pairs in `[start, end)`.
pub fn plan(
    rng: &mut Rng,
    profile: FaultProfile,
    nodes: usize,
    start: u64,
    end: u64,
) -> Vec<(u64, FaultAction)> {
    let mut out = Vec::new();
    if profile == FaultProfile::None {
        return out;
    }
    // With membership changes, nodes added later (higher ids) suffer faults too.
    let n = match profile {
        FaultProfile::Membership => nodes as u64 + 4,
        _ => nodes as u64,
    };
    let pick = |rng: &mut Rng| -> NodeId { 1 + rng.below(n) };
    if profile == FaultProfile::Clocks {
        for id in 1..=n {
            out.push((start, FaultAction::SetClockDrift(id, drift(rng))));
        }
    }
    let (gap_lo, gap_hi) = match profile {
        FaultProfile::CrashHeavy => (20_000, 250_000),
        _ => (50_000, 500_000),
    };
    let mut t = start;
    loop {
        t += rng.range(gap_lo, gap_hi);
        if t >= end {
            break;
        }
        let action = match profile {
            FaultProfile::CrashHeavy => match rng.below(12) {
                0..=2 => FaultAction::Crash(pick(rng)),
                3..=5 => FaultAction::Restart(pick(rng)),
                6..=7 => {
                    // A crash with an immediate restart: the window in which an
                    // acknowledged-but-not-durable state is lost.
                    let node = pick(rng);
                    out.push((t, FaultAction::Crash(node)));
                    FaultAction::Restart(node)
                }
                8..=9 => FaultAction::Partition(split(rng, nodes)),
                10 => FaultAction::SetNetwork(random_network(rng)),
                _ => FaultAction::Heal,
            },
            FaultProfile::Clocks => match rng.below(10) {
                0 => FaultAction::Crash(pick(rng)),
                1 => FaultAction::Restart(pick(rng)),
                // Long pauses: a leader that wakes up after its lease must know it lapsed.
                2..=3 => {
                    let node = pick(rng);
                    out.push((t, FaultAction::Pause(node)));
                    t += rng.range(50_000, 1_500_000);
                    FaultAction::Resume(node)
                }
                4..=5 => FaultAction::Partition(split(rng, nodes)),
                6 => FaultAction::SetClockDrift(pick(rng), drift(rng)),
                _ => FaultAction::Heal,
            },
            FaultProfile::Membership => match rng.below(29) {
                // Two changes at once: the second must wait for the first to apply.
                26 => {
                    out.push((t, FaultAction::Member(member_op(rng))));
                    FaultAction::Member(member_op(rng))
                }
                // Every node goes down at once and comes back soon (a power cut): nodes
                // restart with committed entries, configuration changes among them, that they
                // have not applied yet, and no leader to hear from.
                27..=28 => {
                    for id in 1..=n {
                        out.push((t, FaultAction::Crash(id)));
                    }
                    let back = t + rng.range(1_000, 20_000);
                    for id in 1..=n {
                        out.push((back + rng.range(0, 5_000), FaultAction::Restart(id)));
                    }
                    t = back;
                    continue;
                }
                16..=18 => FaultAction::Member(MemberOp::AddLearner),
                19..=21 => FaultAction::Member(MemberOp::Promote),
                22 => FaultAction::Member(MemberOp::Remove),
                23 => FaultAction::Member(MemberOp::Demote),
                24..=25 => FaultAction::Member(MemberOp::Replace),
                roll => mixed(rng, roll, n as usize),
            },
            _ => {
                let roll = rng.below(16);
                mixed(rng, roll, nodes)
            }
        };
        let at = match (&action, out.last()) {
            (FaultAction::Restart(n), Some((_, FaultAction::Crash(m)))) if n == m => {
                t + rng.range(1_000, 40_000)
            }
            _ => t,
        };
        out.push((at, action));
    }
    out.sort_by_key(|(t, _)| *t);
    out
}

fn member_op(rng: &mut Rng) -> MemberOp {
    [
        MemberOp::AddLearner,
        MemberOp::Promote,
        MemberOp::Remove,
        MemberOp::Demote,
        MemberOp::Replace,
    ][rng.below(5) as usize]
}

/// One fault of the `Mixed` profile, by `roll` in `0..16`, on nodes `1..=nodes`.
fn mixed(rng: &mut Rng, roll: u64, nodes: usize) -> FaultAction {
    let n = nodes as u64;
    let pick = |rng: &mut Rng| -> NodeId { 1 + rng.below(n) };
    match roll {
        0..=2 => FaultAction::Crash(pick(rng)),
        3..=5 => FaultAction::Restart(pick(rng)),
        6 => FaultAction::Pause(pick(rng)),
        7 => FaultAction::Resume(pick(rng)),
        8..=9 => FaultAction::Partition(split(rng, nodes)),
        10 => {
            let a = pick(rng);
            let b = pick(rng);
            FaultAction::CutLink(a, b)
        }
        11 if rng.chance(0.5) => {
            let (a, b) = (pick(rng), pick(rng));
            let lo = rng.range(1_000, 50_000);
            FaultAction::SetLinkLatency(a, b, Some((lo, lo + rng.range(0, 100_000))))
        }
        11..=12 => FaultAction::Heal,
        13 if rng.chance(0.5) => FaultAction::TransferLeadership {
            from: None,
            to: rng.chance(0.5).then(|| pick(rng)),
        },
        _ => FaultAction::SetNetwork(random_network(rng)),
    }
}

/// Clocks at the extremes of the allowed drift most of the time: the schedules where a lease
/// with too little margin breaks.
fn drift(rng: &mut Rng) -> i32 {
    match rng.below(4) {
        0 => -CLOCKS_MAX_DRIFT_PER_MILLE,
        1 => CLOCKS_MAX_DRIFT_PER_MILLE,
        _ => {
            rng.range(0, 2 * CLOCKS_MAX_DRIFT_PER_MILLE as u64 + 1) as i32
                - CLOCKS_MAX_DRIFT_PER_MILLE
        }
    }
}

/// A random split of the nodes into two groups (either may hold the majority).
fn split(rng: &mut Rng, nodes: usize) -> Vec<Vec<NodeId>> {
    let mut a = Vec::new();
    let mut b = Vec::new();
    for id in 1..=nodes as u64 {
        if rng.chance(0.5) {
            a.push(id);
        } else {
            b.push(id);
        }
    }
    vec![a, b]
}

fn random_network(rng: &mut Rng) -> NetworkConfig {
    let lo = rng.range(500, 5_000);
    NetworkConfig {
        latency_us: (lo, lo + rng.range(0, 20_000)),
        drop_rate: rng.below(20) as f64 / 100.0,
        duplicate_rate: rng.below(10) as f64 / 100.0,
        long_delay_rate: rng.below(10) as f64 / 100.0,
        long_delay_us: rng.range(0, 1_000_000),
    }
}
