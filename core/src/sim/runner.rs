//! One randomized, fault-injected, fully checked run per seed.

use serde::{Deserialize, Serialize};

pub use super::faults::FaultProfile;
use super::hostile::HostileStats;
use super::linearizability::{self, Verdict};
use super::simulator::{FaultAction, SimConfig, Simulator};
use super::trace::TraceEvent;
use super::workload::WorkloadConfig;
use super::Violation;
use crate::rng::Rng;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub nodes: usize,
    pub seed: u64,
    pub profile: FaultProfile,
    pub clients: usize,
    pub ops_per_client: u32,
    /// Faults strike during `[0, fault_window_us)`; then they stop and liveness is required.
    pub fault_window_us: u64,
    /// After faults stop, everything pending must complete within this long.
    pub liveness_us: u64,
    pub record_trace: bool,
    /// Search steps per key for the linearizability checker.
    pub lin_budget: u64,
    /// Overrides the session table's byte bound; a tiny one makes every run forget sessions
    /// that clients still retry with.
    #[serde(default)]
    pub session_limit_bytes: Option<u64>,
    /// A hostile peer sends the nodes random and implausible messages throughout the run.
    #[serde(default)]
    pub hostile: bool,
    #[cfg(feature = "mutations")]
    #[serde(skip)]
    pub mutation: Option<crate::mutation::Mutation>,
}

impl RunConfig {
    pub fn new(nodes: usize, seed: u64) -> Self {
        RunConfig {
            nodes,
            seed,
            profile: FaultProfile::Mixed,
            clients: 3,
            ops_per_client: 15,
            fault_window_us: 3_000_000,
            liveness_us: 15_000_000,
            record_trace: false,
            lin_budget: 2_000_000,
            session_limit_bytes: None,
            hostile: false,
            #[cfg(feature = "mutations")]
            mutation: None,
        }
    }

    /// The simulator settings this run uses; tuning knobs vary with the seed so the search
    /// covers tiny batches and windows (which expose ordering bugs) as well as large ones.
    pub fn sim_config(&self) -> SimConfig {
        let mut knobs = Rng::new(self.seed ^ 0x5EED_C0DE);
        let mut c = SimConfig::new(self.nodes, self.seed);
        c.record_trace = self.record_trace;
        c.raft.max_entries_per_msg = match self.profile {
            // Tiny batches split a new leader's catch-up into one entry per round trip, the
            // shape in which commit-rule bugs (Figure 8) become visible.
            FaultProfile::CrashHeavy => [1, 1, 2, 8][knobs.below(4) as usize],
            _ => [1, 2, 8, 64][knobs.below(4) as usize],
        };
        c.raft.max_inflight_msgs = [1, 4, 64][knobs.below(3) as usize];
        // Without Pre-Vote, candidates of one term collide more often: the schedules in which a
        // forgotten vote becomes a second leader.
        c.raft.pre_vote = self.profile != FaultProfile::CrashHeavy && knobs.below(5) != 0;
        // Compaction on: small thresholds so every run snapshots several times, and chunks
        // small enough that a transfer spans several messages (and loses some of them).
        c.raft.snapshot_threshold = 5 + knobs.below(16);
        c.raft.snapshot_chunk_bytes = [64, 256, 1024, 64 << 10][knobs.below(4) as usize];
        c.workload = WorkloadConfig {
            clients: self.clients,
            ops_per_client: self.ops_per_client,
            ..WorkloadConfig::default()
        };
        // Drawn last so the knobs above keep their values for a given seed.
        c.raft.max_snapshot_chunks_in_flight = [1, 2, 8][knobs.below(3) as usize];
        if self.profile != FaultProfile::None {
            // Disk stalls: a leader's followers get ahead of its own disk, a follower's
            // acknowledgement waits; CrashHeavy also crashes nodes inside a stall.
            c.slow_fsync_rate = 0.05;
        }
        if self.profile == FaultProfile::CrashHeavy {
            // Some messages overtake others by up to an election timeout, so a vote request
            // can arrive after its voter crashed and came back.
            c.network.latency_us = (1_000, 10_000);
            c.network.long_delay_rate = 0.05;
            c.network.drop_rate = 0.1;
            c.network.long_delay_us = 300_000;
            // Enough writes in flight through the whole fault window that every crash leaves
            // uncommitted entries behind.
            c.workload.clients = self.clients.max(5);
            c.workload.ops_per_client = self.ops_per_client.max(60);
            c.crash_on_critical_event = 0.3;
        }
        if self.profile == FaultProfile::Membership {
            // Apply in small batches now and then: a node then ticks (and may time out) with
            // committed entries, configuration changes among them, not yet applied.
            c.raft.max_applied_per_ready = [0, 0, 1, 2][knobs.below(4) as usize];
            // Now and then a slow state machine and no snapshot at all: a node restarted after
            // a power cut then replays its whole log, a few entries per batch, and reaches its
            // election timeout with committed configuration changes still unapplied
            // (etcd-raft#469).
            if c.raft.max_applied_per_ready > 0 {
                c.raft.snapshot_threshold = 10_000;
                c.apply_us_per_entry = 10_000;
                // A log long enough that replaying it outlasts an election timeout.
                c.workload.ops_per_client = self.ops_per_client.max(60);
            } else if knobs.below(2) == 0 {
                // Snapshots encoded in the background, as the native node does: changes apply
                // while a job runs (a finished job overtaken by one once tripped the
                // compaction invariant natively).
                c.encode_us = Some((20_000, 200_000));
            }
        }
        if self.profile == FaultProfile::Clocks {
            // Long timeouts (in ticks of 10 ms) make the gap that clock drift opens between a
            // lease and the followers' vote refusal wide enough for a client to fall into.
            c.raft.election_ticks = 40;
            c.raft.heartbeat_ticks = 4;
            c.raft.lease_reads = true;
            c.raft.lease_drift_margin_pct = super::faults::CLOCKS_LEASE_MARGIN_PCT;
            c.network.latency_us = (500, 3_000);
            c.workload.mix = (4, 5, 1);
            c.workload.read_mix = (2, 3, 1);
            c.workload.clients = self.clients.max(4);
            c.workload.ops_per_client = self.ops_per_client.max(20);
            c.workload.timeout_us = 60_000;
            c.workload.think_us = (0, 5_000);
            c.isolate_on_lease = 0.5;
        } else {
            // Every read path in every profile; lease reads where the seed turns them on.
            c.raft.lease_reads = c.raft.check_quorum && knobs.below(2) == 0;
            c.workload.read_mix = if c.raft.lease_reads {
                (2, 1, 1)
            } else {
                (3, 0, 1)
            };
        }
        if self.hostile {
            // About 35 hostile messages a second of virtual time, a few hundred per run.
            c.hostile_gap_us = Some(HOSTILE_GAP_US);
        }
        if let Some(bytes) = self.session_limit_bytes {
            c.raft.session_limit_bytes = bytes;
        }
        #[cfg(feature = "mutations")]
        {
            c.raft.mutation = self.mutation;
        }
        c
    }

    /// The one-line command that replays this run with its trace printed.
    pub fn reproduce_command(&self) -> String {
        let hostile = if self.hostile {
            "KEYVAL_HOSTILE=1 "
        } else {
            ""
        };
        format!(
            "{hostile}KEYVAL_SEED={} KEYVAL_NODES={} KEYVAL_PROFILE={:?} cargo test -p keyval-core --test simulation replay_seed -- --ignored --nocapture",
            self.seed, self.nodes, self.profile
        )
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunReport {
    pub config: RunConfig,
    pub violations: Vec<Violation>,
    pub events: u64,
    pub messages: u64,
    pub end_time_us: u64,
    pub ops_completed: usize,
    pub ops_indeterminate: usize,
    pub max_term: u64,
    pub lin_steps: u64,
    pub trace: Vec<TraceEvent>,
    /// What the hostile peer sent and how the nodes answered, when there was one.
    #[serde(default)]
    pub hostile: Option<HostileStats>,
}

impl RunReport {
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// A readable failure summary ending with the reproduce command.
    pub fn failure_text(&self) -> String {
        let mut s = format!(
            "seed {} ({} nodes, {:?}) failed:\n",
            self.config.seed, self.config.nodes, self.config.profile
        );
        for v in self.violations.iter().take(10) {
            s.push_str(&format!("  {v}\n"));
        }
        s.push_str(&format!("reproduce: {}\n", self.config.reproduce_command()));
        s
    }
}

/// Time between two hostile messages, in virtual microseconds (uniform in the range).
pub const HOSTILE_GAP_US: (u64, u64) = (5_000, 50_000);

/// How often (in processed events) log matching is checked across all nodes.
const LOG_MATCHING_EVERY: u64 = 2_000;
/// Quiet time after the last client finishes, for followers to catch up before convergence is
/// checked.
const SETTLE_US: u64 = 2_000_000;

pub fn run(cfg: &RunConfig) -> RunReport {
    let mut sim = Simulator::new(cfg.sim_config());
    let mut plan_rng = Rng::new(cfg.seed.rotate_left(17) ^ 0xFA17);
    for (t, a) in super::faults::plan(
        &mut plan_rng,
        cfg.profile,
        cfg.nodes,
        100_000,
        cfg.fault_window_us,
    ) {
        sim.schedule_fault(t, a);
    }
    sim.schedule_fault(cfg.fault_window_us, FaultAction::StopFaults);
    let deadline = cfg.fault_window_us + cfg.liveness_us;

    let mut settled_at = None;
    while sim.now() <= deadline {
        if !sim.step() {
            break;
        }
        if sim.events_processed().is_multiple_of(LOG_MATCHING_EVERY) {
            sim.check_log_matching();
        }
        if sim.faults_stopped_at.is_some() && sim.clients_done() {
            let t = *settled_at.get_or_insert(sim.now() + SETTLE_US);
            if sim.now() >= t && converged(&sim) {
                break;
            }
        }
    }
    sim.check_log_matching();
    check_liveness(&mut sim);

    let (verdict, stats) = linearizability::check(sim.history(), cfg.lin_budget);
    match verdict {
        Verdict::Linearizable => {}
        Verdict::NotLinearizable { key, explanation } => sim.fail(
            "linearizability",
            format!("key {:?}:\n{}", String::from_utf8_lossy(&key), explanation),
        ),
        Verdict::Timeout { key, steps } => sim.fail(
            "linearizability (search budget exhausted, not a pass)",
            format!(
                "key {:?} after {steps} steps",
                String::from_utf8_lossy(&key)
            ),
        ),
    }

    if let Some(bad) =
        super::workload::check_serializable_reads(sim.history(), sim.serializable_reads())
    {
        sim.fail("serializable reads", bad);
    }

    let ops_completed = sim
        .history()
        .iter()
        .filter(|o| o.complete.is_some())
        .count();
    RunReport {
        config: cfg.clone(),
        violations: sim.checker().violations().to_vec(),
        events: sim.events_processed(),
        messages: sim.messages_sent(),
        end_time_us: sim.now(),
        ops_completed,
        ops_indeterminate: sim.history().len() - ops_completed,
        max_term: sim.checker().leaders().keys().last().copied().unwrap_or(0),
        lin_steps: stats.steps,
        trace: sim.trace().to_vec(),
        hostile: sim.hostile_stats().cloned(),
    }
}

/// All members up (of the leader's configuration: removed nodes are left behind), one leader,
/// and every member applied exactly the leader's commit index with identical state.
fn converged(sim: &Simulator) -> bool {
    let Some(leader) = sim.leader() else {
        return false;
    };
    let Some(ls) = sim.nodes()[&leader].server.as_ref() else {
        return false;
    };
    let commit = ls.raft().commit_index();
    let members = ls.membership();
    sim.nodes()
        .values()
        .filter(|n| members.contains(n.id))
        .all(|n| {
            n.server
                .as_ref()
                .is_some_and(|s| s.raft().applied_index() == commit && s.kv() == ls.kv())
        })
}

fn check_liveness(sim: &mut Simulator) {
    if sim.faults_stopped_at.is_none() {
        return;
    }
    if !sim.clients_done() {
        let stuck: Vec<String> = sim
            .clients()
            .filter(|c| !c.is_done())
            .map(|c| format!("c{}", c.id))
            .collect();
        sim.fail(
            "liveness",
            format!("clients {stuck:?} still pending long after faults stopped"),
        );
    }
    if sim.leader().is_none() {
        sim.fail("liveness", "no leader long after faults stopped".into());
    } else if !converged(sim) {
        let state: Vec<String> = sim
            .nodes()
            .values()
            .map(|n| match &n.server {
                Some(s) => format!(
                    "n{} {} t{} commit={} applied={}",
                    n.id,
                    s.raft().role(),
                    s.raft().term(),
                    s.raft().commit_index(),
                    s.raft().applied_index()
                ),
                None => format!("n{} down", n.id),
            })
            .collect();
        sim.fail(
            "liveness",
            format!("replicas did not converge: {}", state.join(", ")),
        );
    }
}
