//! Jepsen-style chaos tests of real `keyval` processes (see `tests/chaos/`).
//!
//! - `chaos_short` (in `make test`): three schedules of 20 s, over 3, 5 and 3 nodes, with fresh
//!   seeds each run (printed; `KEYVAL_CHAOS_SEED` pins the first).
//! - `chaos_long` (ignored; `make chaos DURATION=600`): schedules of `KEYVAL_CHAOS_SECS` (60)
//!   seconds, alternating 3 and 5 nodes, until `KEYVAL_CHAOS_DURATION` seconds have passed; with
//!   `KEYVAL_CHAOS_SEED` it replays exactly that one schedule (`make chaos SEED=.. NODES=..
//!   SECS=..`, the command a failure prints).
//!
//! Evidence of every run lands in `artifacts/chaos/<seed>/`: summary.txt, schedule.txt (drawn
//! and applied), history.jsonl and the node logs.

#[path = "chaos/mod.rs"]
mod chaos;
mod common;

use std::time::Duration;

use chaos::run::{run, RunConfig};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    chaos::rng::Rng::new(nanos ^ u64::from(std::process::id())).next_u64() % 1_000_000_000
}

/// Runs every schedule, prints each summary, and fails listing every problem with its replay
/// command.
fn run_all(configs: Vec<RunConfig>) {
    let mut failures = Vec::new();
    let (mut ops, mut faults, mut clean) = (0, 0, 0);
    for cfg in &configs {
        let report = run(cfg);
        println!("{}", report.summary);
        ops += report.ok + report.failed + report.unknown;
        faults += report.faults;
        if report.problems.is_empty() {
            clean += 1;
        } else {
            failures.push(format!(
                "{}\n  {}\n  artifacts: {}\n  replay: {}",
                report.summary,
                report.problems.join("\n  "),
                report.artifacts.display(),
                cfg.replay_command()
            ));
        }
    }
    let total = format!(
        "chaos total: {clean}/{} schedules clean, {ops} operations, {faults} faults",
        configs.len()
    );
    println!("{total}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The checks can fail: a stale read, a lost acknowledged write and a value nobody wrote are
/// each caught, while an unknown write may or may not show up.
#[test]
fn history_checks_catch_stale_reads_lost_writes_and_invented_values() {
    use chaos::check;
    use chaos::client::{Outcome, Record};
    use keyval_core::{KvOp, KvResult};
    use std::collections::BTreeMap;

    let rec = |process, op, invoke_us, complete_us, outcome| Record {
        process,
        node: 1,
        op,
        invoke_us,
        complete_us,
        outcome,
    };
    let put = |v: &str| KvOp::Put {
        key: b"k".to_vec(),
        value: v.as_bytes().to_vec(),
    };
    let get = KvOp::Get { key: b"k".to_vec() };
    let acked = rec(1, put("a"), 0, 10, Outcome::Ok(KvResult::Put));
    let maybe = rec(2, put("b"), 5, 15, Outcome::Unknown("timed out".into()));
    let fresh = rec(
        3,
        get.clone(),
        20,
        30,
        Outcome::Ok(KvResult::Get(Some(b"a".to_vec()))),
    );
    let stale = rec(3, get, 20, 30, Outcome::Ok(KvResult::Get(None)));

    assert!(check::linearizable(&[acked.clone(), maybe.clone(), fresh]).is_ok());
    let err = check::linearizable(&[acked.clone(), stale]).expect_err("stale read");
    assert!(err.contains("NOT linearizable"), "{err}");

    let finals =
        |v: Option<&str>| BTreeMap::from([(b"k".to_vec(), v.map(|v| v.as_bytes().to_vec()))]);
    let history = [acked, maybe];
    assert!(check::final_state(&history, &finals(Some("a"))).is_empty());
    assert!(check::final_state(&history, &finals(Some("b"))).is_empty());
    let lost = check::final_state(&history, &finals(None));
    assert!(lost.iter().any(|p| p.contains("is lost")), "{lost:?}");
    let invented = check::final_state(&history, &finals(Some("z")));
    assert!(
        invented.iter().any(|p| p.contains("never written")),
        "{invented:?}"
    );
}

/// The schedule is a pure function of the seed, and covers every kind of fault.
#[test]
fn schedules_replay_from_their_seed() {
    use chaos::nemesis::schedule;
    let a = schedule(42, 5, Duration::from_secs(60));
    let b = schedule(42, 5, Duration::from_secs(60));
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
    assert_ne!(
        format!("{a:?}"),
        format!("{:?}", schedule(43, 5, Duration::from_secs(60)))
    );
    let all: String = (0..20)
        .map(|s| format!("{:?}", schedule(s, 5, Duration::from_secs(60))))
        .collect();
    for kind in [
        "Kill(",
        "KillAll",
        "Pause(",
        "Halves",
        "IsolateLeader",
        "Bridge",
        "OneWay",
        "Slow",
    ] {
        assert!(all.contains(kind), "no {kind} in 20 schedules");
    }
}

/// A full disk (here: a file-size limit, so writes fail with EFBIG): the node stops accepting
/// writes and exits with one clear line naming the WAL file, and a restart with room again
/// has every write it acknowledged.
#[test]
fn a_full_disk_stops_the_node_and_loses_nothing_acknowledged() {
    use chaos::client::{Conn, Outcome};
    use chaos::cluster::ChaosCluster;
    use keyval_core::{ClientRequest, KvOp, KvResult};

    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = ChaosCluster::start(1, dir.path(), "disk-full", &[]);
    c.kill9(1);
    // 1 MiB: room for the cluster identity and a few dozen 20 KiB values in the WAL.
    c.restart_with_file_limit(1, 1024);
    assert!(
        c.wait_leader(Duration::from_secs(15)).is_some(),
        "no leader"
    );
    let mut conn = Conn::open(1, &c.addr(1), Duration::from_secs(2)).expect("connect");
    let session = match conn.open_session(7, Duration::from_secs(5)) {
        (Outcome::Ok(KvResult::Session { id }), _) => id,
        other => panic!("opening a session: {other:?}"),
    };
    let mut acked = Vec::new();
    let mut failed = None;
    for seq in 1..=200u64 {
        let key = format!("k{seq}").into_bytes();
        let value = vec![b'a' + (seq % 26) as u8; 20_000];
        let req = ClientRequest {
            client_id: session,
            seq,
            op: KvOp::Put {
                key: key.clone(),
                value: value.clone(),
            },
        };
        match conn.request(req, Duration::from_secs(5)) {
            (Outcome::Ok(_), _) => acked.push((key, value)),
            (other, _) => {
                failed = Some(other);
                break;
            }
        }
    }
    assert!(
        failed.is_some(),
        "200 puts of 20 KB fit in a 1 MiB file limit?"
    );
    assert!(
        acked.len() > 5,
        "only {} puts before the disk filled",
        acked.len()
    );
    assert!(
        common::wait_until(Duration::from_secs(10), || !c.is_running(1)),
        "the node kept running after its WAL write failed"
    );
    let log = std::fs::read_to_string(&c.log_paths()[0]).unwrap_or_default();
    let line = log
        .lines()
        .find(|l| l.starts_with("keyval: error:"))
        .unwrap_or_else(|| panic!("no error line; log:\n{log}"));
    assert!(
        line.contains("WAL") && line.contains("File too large"),
        "unclear exit message: {line}"
    );

    println!(
        "{} puts acknowledged before the disk filled; exit: {line}",
        acked.len()
    );
    c.restart(1);
    assert!(
        c.wait_leader(Duration::from_secs(15)).is_some(),
        "no leader after restart"
    );
    let mut conn = Conn::open(1, &c.addr(1), Duration::from_secs(2)).expect("connect");
    for (i, (key, value)) in acked.iter().enumerate() {
        let req = ClientRequest {
            client_id: 8,
            seq: i as u64 + 1,
            op: KvOp::Get { key: key.clone() },
        };
        match conn.request(req, Duration::from_secs(5)) {
            (Outcome::Ok(KvResult::Get(Some(v))), _) => assert!(&v == value, "key {i} changed"),
            other => panic!("acknowledged put {i} lost after the disk filled: {other:?}"),
        }
    }
}

#[test]
fn chaos_short() {
    let first = env_u64("KEYVAL_CHAOS_SEED").unwrap_or_else(fresh_seed);
    let secs = Duration::from_secs(20);
    run_all(vec![
        RunConfig::new(first, 3, secs),
        RunConfig::new(first + 1, 5, secs),
        RunConfig::new(first + 2, 3, secs),
    ]);
}

#[test]
#[ignore = "long: make chaos DURATION=600"]
fn chaos_long() {
    let secs = Duration::from_secs(env_u64("KEYVAL_CHAOS_SECS").unwrap_or(60));
    if let Some(seed) = env_u64("KEYVAL_CHAOS_SEED") {
        let nodes = env_u64("KEYVAL_CHAOS_NODES").unwrap_or(3) as usize;
        run_all(vec![RunConfig::new(seed, nodes, secs)]);
        return;
    }
    let total = env_u64("KEYVAL_CHAOS_DURATION").unwrap_or(600);
    let first = fresh_seed();
    let count = (total / secs.as_secs().max(1)).max(1);
    let configs = (0..count)
        .map(|i| RunConfig::new(first + i, if i % 2 == 0 { 3 } else { 5 }, secs))
        .collect();
    run_all(configs);
}

/// The soak's verdict: a leak-like ramp fails, a compaction sawtooth and noise pass.
#[test]
fn soak_flags_steady_growth_but_not_a_sawtooth() {
    use chaos::soak::steady_growth;
    let xs: Vec<f64> = (0..120).map(|i| i as f64 * 5.0).collect();
    let ramp: Vec<f64> = xs.iter().map(|x| 10_000.0 + 20.0 * x).collect();
    assert!(steady_growth(&xs, &ramp, 8192.0).is_some());
    let saw: Vec<f64> = (0..120)
        .map(|i| 100_000.0 + (i % 12) as f64 * 50_000.0)
        .collect();
    assert!(steady_growth(&xs, &saw, 8192.0).is_none());
    let noise: Vec<f64> = (0..120)
        .map(|i| 10_000.0 + ((i * 7919) % 13) as f64 * 300.0)
        .collect();
    assert!(steady_growth(&xs, &noise, 8192.0).is_none());
}

#[test]
#[ignore = "long: make soak DURATION=1800"]
fn soak() {
    let secs = env_u64("KEYVAL_SOAK_DURATION").unwrap_or(1800);
    let report = chaos::soak::run(Duration::from_secs(secs), &chaos::soak::artifacts_dir());
    println!("{}", report.summary);
    assert!(
        report.problems.is_empty(),
        "{}\n  {}",
        report.summary,
        report.problems.join("\n  ")
    );
}
