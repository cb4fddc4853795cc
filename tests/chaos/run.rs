//! One chaos run: start a proxied cluster, run clients and the nemesis for a while, heal, read
//! the final state, check everything, and leave the evidence in `artifacts/chaos/<seed>/`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use keyval_core::{ClientRequest, KvOp, KvResult};

use super::check;
use super::client::{Conn, Outcome, Record};
use super::cluster::ChaosCluster;
use super::nemesis::{self, Nemesis};
use super::workload::{self, Workload};

/// Small snapshots and segments, so compaction, segment removal and snapshot installs happen
/// under faults too, not only appends.
const NODE_ARGS: &[&str] = &[
    "--lease-reads",
    "--snapshot-threshold",
    "200",
    "--wal-segment-bytes",
    "65536",
];
/// How long a healed cluster gets to elect a leader and serve the final reads.
const RECOVERY: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub seed: u64,
    pub nodes: usize,
    pub duration: Duration,
    pub clients: u64,
    pub keys: usize,
}

impl RunConfig {
    pub fn new(seed: u64, nodes: usize, duration: Duration) -> RunConfig {
        RunConfig {
            seed,
            nodes,
            duration,
            clients: 4,
            keys: 4,
        }
    }

    /// The command that replays exactly this schedule.
    pub fn replay_command(&self) -> String {
        format!(
            "make chaos SEED={} NODES={} SECS={}",
            self.seed,
            self.nodes,
            self.duration.as_secs()
        )
    }
}

#[derive(Debug, Default)]
pub struct RunReport {
    pub ok: usize,
    pub failed: usize,
    pub unknown: usize,
    pub faults: usize,
    pub steps: usize,
    pub check_steps: u64,
    pub problems: Vec<String>,
    pub summary: String,
    pub artifacts: PathBuf,
}

pub fn artifacts_dir(seed: u64) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("artifacts/chaos")
        .join(seed.to_string())
}

pub fn run(cfg: &RunConfig) -> RunReport {
    let out = artifacts_dir(cfg.seed);
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out).expect("create artifacts dir");
    let data = tempfile::tempdir().expect("tempdir");
    let steps = nemesis::schedule(cfg.seed, cfg.nodes, cfg.duration);
    let mut schedule_text = format!(
        "seed {} nodes {} duration {} s\nreplay: {}\n",
        cfg.seed,
        cfg.nodes,
        cfg.duration.as_secs(),
        cfg.replay_command()
    );
    for s in &steps {
        let _ = writeln!(schedule_text, "{s}");
    }
    eprint!("{schedule_text}");
    fs::write(out.join("schedule.txt"), &schedule_text).expect("write schedule");

    let mut cluster = ChaosCluster::start(
        cfg.nodes,
        data.path(),
        &format!("chaos-{}", cfg.seed),
        NODE_ARGS,
    );
    let mut report = RunReport {
        steps: steps.len(),
        artifacts: out.clone(),
        ..RunReport::default()
    };
    let mut nemesis_log = Vec::new();
    let mut history = Vec::new();
    let mut finals = BTreeMap::new();
    if cluster.wait_leader(RECOVERY).is_none() {
        report
            .problems
            .push("no leader was elected before any fault".into());
    } else {
        for id in cluster.ids() {
            let cmd = cluster.command_line(id);
            let args: Vec<String> = cmd
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            let _ = writeln!(schedule_text, "node {id}: keyval {}", args.join(" "));
        }
        let start = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let load = Workload {
            addrs: cluster
                .ids()
                .into_iter()
                .map(|id| (id, cluster.addr(id)))
                .collect(),
            keys: cfg.keys,
            start,
            stop: stop.clone(),
        };
        let clients: Vec<_> = (0..cfg.clients)
            .map(|w| load.spawn(w + 1, cfg.seed))
            .collect();
        let mut nem = Nemesis {
            cluster: &mut cluster,
            log: Vec::new(),
            faults_applied: 0,
        };
        let at = |ms: u64| start + Duration::from_millis(ms);
        for step in &steps {
            sleep(at(step.at_ms).saturating_duration_since(Instant::now()));
            check_crashes(nem.cluster, &mut report.problems, start);
            let mut line = format!("{:>6} ms", start.elapsed().as_millis());
            for f in &step.faults {
                let _ = write!(line, " | {}", nem.apply(f));
            }
            nem.log.push(line);
            sleep(at(step.at_ms + step.hold_ms).saturating_duration_since(Instant::now()));
            check_crashes(nem.cluster, &mut report.problems, start);
            nem.heal();
            nem.log
                .push(format!("{:>6} ms | healed", start.elapsed().as_millis()));
        }
        sleep(at(cfg.duration.as_millis() as u64).saturating_duration_since(Instant::now()));
        report.faults = nem.faults_applied;
        nemesis_log = std::mem::take(&mut nem.log);
        stop.store(true, Ordering::SeqCst);
        for c in clients {
            history.extend(c.join().expect("client thread"));
        }
        check_crashes(&mut cluster, &mut report.problems, start);
        cluster.heal_all();
        match final_reads(&cluster, cfg.keys, start) {
            Ok((reads, values)) => {
                history.extend(reads);
                finals = values;
            }
            Err(e) => report.problems.push(e),
        }
    }
    history.sort_by_key(|r| r.invoke_us);
    for r in &history {
        match r.outcome {
            Outcome::Ok(_) => report.ok += 1,
            Outcome::Fail(_) => report.failed += 1,
            Outcome::Unknown(_) => report.unknown += 1,
        }
    }
    if report.ok == 0 {
        report.problems.push("no operation succeeded".into());
    }
    match check::linearizable(&history) {
        Ok(steps) => report.check_steps = steps,
        Err(e) => report.problems.push(e),
    }
    report
        .problems
        .extend(check::final_state(&history, &finals));

    report.summary = format!(
        "chaos seed {} nodes {} {} s: {} | {} ops ({} ok, {} fail, {} unknown), {} faults in {} steps, checker {} steps",
        cfg.seed,
        cfg.nodes,
        cfg.duration.as_secs(),
        if report.problems.is_empty() { "CLEAN" } else { "FAILED" },
        history.len(),
        report.ok,
        report.failed,
        report.unknown,
        report.faults,
        report.steps,
        report.check_steps,
    );
    let mut h = String::new();
    for r in &history {
        let _ = writeln!(h, "{}", r.to_json());
    }
    fs::write(out.join("history.jsonl"), h).expect("write history");
    let _ = writeln!(schedule_text, "\napplied:");
    for l in &nemesis_log {
        let _ = writeln!(schedule_text, "{l}");
    }
    fs::write(out.join("schedule.txt"), &schedule_text).expect("write schedule");
    let mut summary = format!("{}\n", report.summary);
    for p in &report.problems {
        let _ = writeln!(summary, "PROBLEM: {p}");
    }
    fs::write(out.join("summary.txt"), summary).expect("write summary");
    drop(cluster);
    for id in 1..=cfg.nodes {
        let from = data.path().join(format!("node{id}.log"));
        let _ = fs::copy(&from, out.join(format!("node{id}.log")));
    }
    report
}

/// A node that exited while the nemesis had not killed it is a finding (with its log tail).
/// One exception is the harness's own doing: a restarted node whose port was meanwhile taken
/// as the local port of some outgoing loopback connection cannot bind it; that is retried,
/// not reported.
fn check_crashes(cluster: &mut ChaosCluster, problems: &mut Vec<String>, start: Instant) {
    for (id, status) in cluster.crashed() {
        let log = fs::read_to_string(&cluster.log_paths()[(id - 1) as usize]).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        let port_taken = tail
            .first()
            .is_some_and(|l| l.contains("cannot listen on") && l.contains("in use"));
        if !port_taken {
            problems.push(format!(
                "node {id} exited on its own ({status}) at {} ms; log ends: {}",
                start.elapsed().as_millis(),
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            ));
        }
        // Restart it so the run goes on and the final check still means something.
        cluster.kill9(id);
        cluster.restart(id);
    }
}

type FinalReads = (Vec<Record>, BTreeMap<Vec<u8>, Option<Vec<u8>>>);

/// Reads every key through the leader of the healed cluster; the reads join the history.
fn final_reads(cluster: &ChaosCluster, keys: usize, start: Instant) -> Result<FinalReads, String> {
    let deadline = Instant::now() + RECOVERY;
    let process = u64::MAX - 1;
    let mut seq = 0;
    let mut records = Vec::new();
    let mut values = BTreeMap::new();
    for k in 0..keys {
        let key = workload::key(k);
        loop {
            if Instant::now() > deadline {
                return Err(format!(
                    "the healed cluster did not serve a read of {} within {} s",
                    String::from_utf8_lossy(&key),
                    RECOVERY.as_secs()
                ));
            }
            let Some(leader) = cluster.leader() else {
                sleep(Duration::from_millis(100));
                continue;
            };
            let Ok(mut conn) = Conn::open(leader, &cluster.addr(leader), Duration::from_secs(1))
            else {
                continue;
            };
            seq += 1;
            let op = KvOp::Get { key: key.clone() };
            let invoke_us = start.elapsed().as_micros() as u64;
            let (outcome, _) = conn.request(
                ClientRequest {
                    client_id: process,
                    seq,
                    op: op.clone(),
                },
                workload::OP_TIMEOUT,
            );
            let complete_us = start.elapsed().as_micros() as u64;
            let done = match &outcome {
                Outcome::Ok(KvResult::Get(v)) => {
                    values.insert(key.clone(), v.clone());
                    true
                }
                _ => false,
            };
            records.push(Record {
                process,
                node: leader,
                op,
                invoke_us,
                complete_us,
                outcome,
            });
            if done {
                break;
            }
            sleep(Duration::from_millis(100));
        }
    }
    Ok((records, values))
}
