//! Soak: a 3-node cluster under steady client load with a fault every 30 s, sampled every few
//! seconds for resident memory, open file descriptors, threads and WAL/snapshot bytes per
//! node. A resource that keeps growing (least-squares slope over the run after a warm-up,
//! projected over the sampled window, well beyond the noise of a sawtooth) fails the soak.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::check;
use super::cluster::ChaosCluster;
use super::nemesis::{Fault, Nemesis, Target};
use super::proxy::Cut;
use super::workload::Workload;

const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const FAULT_EVERY: Duration = Duration::from_secs(30);
const FAULT_HOLD: Duration = Duration::from_secs(5);
const NODE_ARGS: &[&str] = &[
    "--lease-reads",
    "--snapshot-threshold",
    "2000",
    "--wal-segment-bytes",
    "1048576",
];

/// The resources sampled per node.
const METRICS: [&str; 5] = ["rss_kib", "fds", "threads", "wal_bytes", "snapshot_bytes"];

#[derive(Clone, Debug)]
struct Sample {
    t_s: f64,
    node: u64,
    values: [f64; 5],
}

pub struct SoakReport {
    pub summary: String,
    pub problems: Vec<String>,
}

fn proc_field(pid: u32, field: &str) -> Option<f64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn dir_bytes(dir: &Path) -> f64 {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len() as f64)
                .sum()
        })
        .unwrap_or(0.0)
}

fn sample(cluster: &mut ChaosCluster, data: &Path, t_s: f64) -> Vec<Sample> {
    let mut out = Vec::new();
    for id in cluster.ids() {
        let Some(pid) = cluster.pid(id) else { continue };
        let (Some(rss), Some(threads)) = (proc_field(pid, "VmRSS:"), proc_field(pid, "Threads:"))
        else {
            continue;
        };
        let fds = fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count()) as f64;
        let dir = data.join(format!("node{id}"));
        out.push(Sample {
            t_s,
            node: id,
            values: [
                rss,
                fds,
                threads,
                dir_bytes(&dir.join("wal")),
                dir_bytes(&dir.join("snapshots")),
            ],
        });
    }
    out
}

/// Least-squares slope of `ys` over `xs`.
fn slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let cov: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let var: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    if var == 0.0 {
        0.0
    } else {
        cov / var
    }
}

/// Steady growth of `ys` over `xs`: the least-squares growth over the whole window, if it
/// exceeds a quarter of the mean and `floor` (for tiny values such as thread counts). A
/// sawtooth (WAL between compactions) or noise fits a flat line and passes.
pub fn steady_growth(xs: &[f64], ys: &[f64], floor: f64) -> Option<f64> {
    if xs.len() < 8 || xs.len() != ys.len() {
        return None;
    }
    let window = xs[xs.len() - 1] - xs[0];
    let growth = slope(xs, ys) * window;
    let mean = ys.iter().sum::<f64>() / ys.len() as f64;
    (growth > (mean * 0.25).max(floor)).then_some(growth)
}

fn growth_problem(node: u64, metric: usize, samples: &[&Sample]) -> Option<String> {
    let xs: Vec<f64> = samples.iter().map(|s| s.t_s).collect();
    let ys: Vec<f64> = samples.iter().map(|s| s.values[metric]).collect();
    let floor = [8192.0, 8.0, 4.0, 4.0 * 1048576.0, 1048576.0][metric];
    let growth = steady_growth(&xs, &ys, floor)?;
    let window = xs[xs.len() - 1] - xs[0];
    Some(format!(
        "node {node} {}: grows {growth:.0} over {window:.0} s (slope {:.2}/s)",
        METRICS[metric],
        growth / window
    ))
}

pub fn run(duration: Duration, out: &Path) -> SoakReport {
    let _ = fs::remove_dir_all(out);
    fs::create_dir_all(out).expect("create soak artifacts dir");
    let data = tempfile::tempdir().expect("tempdir");
    let mut cluster = ChaosCluster::start(3, data.path(), "soak", NODE_ARGS);
    let mut problems = Vec::new();
    if cluster.wait_leader(Duration::from_secs(30)).is_none() {
        problems.push("no leader elected".into());
    }
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let load = Workload {
        addrs: cluster
            .ids()
            .into_iter()
            .map(|id| (id, cluster.addr(id)))
            .collect(),
        keys: 64,
        start,
        stop: stop.clone(),
    };
    let clients: Vec<_> = (1..=4).map(|w| load.spawn(w, 1)).collect();
    let faults = [
        Fault::Kill(Target::Node(2)),
        Fault::IsolateLeader { cut: Cut::Reset },
        Fault::Pause(Target::Leader),
        Fault::Kill(Target::Leader),
        Fault::Halves {
            side: vec![3],
            cut: Cut::Stall,
        },
    ];
    let mut samples = Vec::new();
    let mut log = Vec::new();
    let mut next_fault = start + FAULT_EVERY;
    let mut fault_ix = 0;
    while start.elapsed() < duration {
        samples.extend(sample(
            &mut cluster,
            data.path(),
            start.elapsed().as_secs_f64(),
        ));
        if Instant::now() >= next_fault {
            let mut nem = Nemesis {
                cluster: &mut cluster,
                log: Vec::new(),
                faults_applied: 0,
            };
            let what = nem.apply(&faults[fault_ix % faults.len()]);
            log.push(format!("{:>6} s {what}", start.elapsed().as_secs()));
            sleep(FAULT_HOLD);
            nem.heal();
            fault_ix += 1;
            next_fault += FAULT_EVERY;
        }
        for (id, status) in cluster.crashed() {
            problems.push(format!("node {id} exited on its own: {status}"));
            cluster.kill9(id);
            cluster.restart(id);
        }
        sleep(SAMPLE_EVERY);
    }
    stop.store(true, Ordering::SeqCst);
    let mut history = Vec::new();
    for c in clients {
        history.extend(c.join().expect("client thread"));
    }
    history.sort_by_key(|r| r.invoke_us);
    let ok = history
        .iter()
        .filter(|r| matches!(r.outcome, super::client::Outcome::Ok(_)))
        .count();
    if let Err(e) = check::linearizable(&history) {
        problems.push(e);
    }

    // Growth is judged after a warm-up of a fifth of the run (caches, first snapshot).
    let warm = duration.as_secs_f64() / 5.0;
    for id in cluster.ids() {
        let mine: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.node == id && s.t_s >= warm)
            .collect();
        for m in 0..METRICS.len() {
            problems.extend(growth_problem(id, m, &mine));
        }
    }
    let mut csv = format!("t_s,node,{}\n", METRICS.join(","));
    for s in &samples {
        let vals: Vec<String> = s.values.iter().map(|v| format!("{v:.0}")).collect();
        let _ = writeln!(csv, "{:.1},{},{}", s.t_s, s.node, vals.join(","));
    }
    fs::write(out.join("samples.csv"), csv).expect("write samples");
    fs::write(out.join("faults.txt"), log.join("\n")).expect("write faults");
    let last: Vec<String> = cluster
        .ids()
        .into_iter()
        .filter_map(|id| samples.iter().rev().find(|s| s.node == id))
        .map(|s| {
            format!(
                "node {}: rss {:.0} KiB, {:.0} fds, {:.0} threads, wal {:.0} KiB, snapshots {:.0} KiB",
                s.node,
                s.values[0],
                s.values[1],
                s.values[2],
                s.values[3] / 1024.0,
                s.values[4] / 1024.0
            )
        })
        .collect();
    let summary = format!(
        "soak {} s: {} | {} ops ({ok} ok), {fault_ix} faults, {} samples\n{}",
        duration.as_secs(),
        if problems.is_empty() {
            "CLEAN"
        } else {
            "FAILED"
        },
        history.len(),
        samples.len(),
        last.join("\n")
    );
    let mut text = format!("{summary}\n");
    for p in &problems {
        let _ = writeln!(text, "PROBLEM: {p}");
    }
    fs::write(out.join("summary.txt"), text).expect("write summary");
    drop(cluster);
    for id in 1..=3 {
        let _ = fs::copy(
            data.path().join(format!("node{id}.log")),
            out.join(format!("node{id}.log")),
        );
    }
    SoakReport { summary, problems }
}

pub fn artifacts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("artifacts/soak")
}
