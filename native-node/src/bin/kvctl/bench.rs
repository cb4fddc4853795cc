//! `kvctl bench`: a closed-loop load generator. Each of `--clients` workers has its own client
//! id and connection and sends its next request only when the previous one is answered, so the
//! measured latency is what a client sees and throughput is what the cluster sustains at that
//! concurrency.
//!
//! With `--conns N` the clients share N connections to the leader instead (each client still
//! has its own session and one request in flight), which is how etcd's benchmark loads etcd
//! (`--conns 1 --conn-mode leader`): compare like with like.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use keyval_core::KvOp;
use keyval_core::kv::{MAX_KEY_BYTES, MAX_VALUE_BYTES};
use serde_json::json;
use tokio::time::Instant;

use crate::client::{Client, Failure};
use crate::mux::{self, Mux};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Concurrent closed-loop clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Run for this many seconds [default: 10 unless --total is given].
    #[arg(long, conflicts_with = "total")]
    duration: Option<f64>,
    /// Stop after this many operations in total.
    #[arg(long)]
    total: Option<u64>,
    #[arg(long, default_value_t = 16)]
    key_size: usize,
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Distinct keys the workers pick from (for get, they are written first).
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    #[arg(long, value_enum, default_value_t = BenchOp::Put)]
    op: BenchOp,
    /// Read path of `--op get` (each worker keeps one session for its writes and reads
    /// without one).
    #[arg(long, value_enum, default_value_t = crate::Consistency::Linearizable)]
    consistency: crate::Consistency,
    /// Also report throughput per interval of this many milliseconds (a multiple of 100), to
    /// see a dip during a membership change or a failover; JSON gains `started_unix_ms` and
    /// `intervals` (ops per second in each interval).
    #[arg(long)]
    interval_ms: Option<u64>,
    /// Share this many connections to the leader among the clients (multiplexed; at most
    /// 1000 clients per connection) instead of one connection per client. A client whose
    /// shared connection fails goes on over its own.
    #[arg(long)]
    conns: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BenchOp {
    Put,
    Get,
}

pub enum BenchError {
    Usage(String),
    Failed(Failure),
}

fn key(i: u64, size: usize) -> Vec<u8> {
    let mut k = format!("bench-{i:010}").into_bytes();
    k.resize(size, b'.');
    k
}

struct Shared {
    issued: AtomicU64,
    done: AtomicU64,
    errors: AtomicU64,
    /// Clients that left their shared connection for their own.
    fallbacks: AtomicU64,
    stop: AtomicBool,
}

/// One client's path to the cluster: a shared connection while it works, else its own.
struct Worker {
    own: Client,
    shared: Option<SharedPath>,
    consistency: keyval_core::ReadConsistency,
    timeout: Duration,
}

/// A client's session and sequence on a shared connection.
struct SharedPath {
    mux: Mux,
    nonce: u64,
    session: Option<u64>,
    seq: u64,
}

impl Worker {
    async fn run(&mut self, op: KvOp, shared: &Shared) -> Result<(), Failure> {
        if let Some(path) = &mut self.shared {
            let deadline = Instant::now() + self.timeout;
            match path.run(op.clone(), self.consistency, deadline).await {
                Ok(()) => return Ok(()),
                Err(_) => {
                    self.shared = None;
                    shared.fallbacks.fetch_add(1, Relaxed);
                }
            }
        }
        match op {
            KvOp::Get { key } => self.own.read(key, self.consistency).await.map(drop),
            op => self.own.execute(op).await.map(drop),
        }
    }
}

impl SharedPath {
    /// One request and its answer; any failure (a refusal, a redirect, a lost connection)
    /// is an error for the caller to retry on its own connection.
    async fn run(
        &mut self,
        op: KvOp,
        consistency: keyval_core::ReadConsistency,
        deadline: Instant,
    ) -> Result<(), String> {
        use native_node::wire::{ClientFrame, ServerFrame};
        let ask = |reply: Result<ServerFrame, String>| match reply? {
            ServerFrame::Reply { reply, .. } => reply.outcome.map_err(|e| e.to_string()),
            _ => Err("unexpected answer".to_string()),
        };
        self.seq += 1;
        if let KvOp::Get { key } = op {
            let frame = ClientFrame::Read {
                client_id: self.nonce,
                seq: self.seq,
                key,
                consistency,
            };
            let tag = (self.nonce, self.seq);
            return ask(self.mux.call(tag, &frame, deadline).await).map(drop);
        }
        let session = match self.session {
            Some(s) => s,
            None => {
                let frame = ClientFrame::Request(keyval_core::ClientRequest {
                    client_id: self.nonce,
                    seq: 0,
                    op: KvOp::OpenSession,
                });
                let tag = (self.nonce, 0);
                match ask(self.mux.call(tag, &frame, deadline).await)? {
                    keyval_core::KvResult::Session { id } => *self.session.insert(id),
                    other => return Err(format!("unexpected answer {other:?}")),
                }
            }
        };
        let frame = ClientFrame::Request(keyval_core::ClientRequest {
            client_id: session,
            seq: self.seq,
            op,
        });
        ask(self.mux.call((session, self.seq), &frame, deadline).await).map(drop)
    }
}

pub async fn run(
    args: BenchArgs,
    endpoints: Vec<String>,
    timeout: Duration,
    json_out: bool,
) -> Result<String, BenchError> {
    if args.clients == 0 || args.clients > 10_000 {
        return Err(BenchError::Usage("--clients must be in 1..=10000".into()));
    }
    if args.key_size < 16 || args.key_size > MAX_KEY_BYTES {
        return Err(BenchError::Usage(format!(
            "--key-size must be in 16..={MAX_KEY_BYTES}"
        )));
    }
    if args.value_size > MAX_VALUE_BYTES {
        return Err(BenchError::Usage(format!(
            "--value-size must be at most {MAX_VALUE_BYTES}"
        )));
    }
    if args.keys == 0 {
        return Err(BenchError::Usage("--keys must be at least 1".into()));
    }
    let duration = match (args.duration, args.total) {
        (Some(d), _) if !(d > 0.0 && d <= 86_400.0) => {
            return Err(BenchError::Usage(
                "--duration must be in (0, 86400] seconds".into(),
            ));
        }
        (Some(d), _) => Some(Duration::from_secs_f64(d)),
        (None, Some(0)) => return Err(BenchError::Usage("--total must be at least 1".into())),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(10)),
    };
    let interval = match args.interval_ms {
        Some(ms) if ms == 0 || ms % 100 != 0 || ms > 3_600_000 => {
            return Err(BenchError::Usage(
                "--interval-ms must be a positive multiple of 100, at most 3600000".into(),
            ));
        }
        other => other.map(Duration::from_millis),
    };
    if let Some(c) = args.conns
        && (c == 0 || c > args.clients || args.clients.div_ceil(c) > mux::MAX_IN_FLIGHT)
    {
        return Err(BenchError::Usage(format!(
            "--conns must be in 1..=--clients, with at most {} clients per connection",
            mux::MAX_IN_FLIGHT
        )));
    }
    let value = vec![b'v'; args.value_size];

    if args.op == BenchOp::Get {
        // Reads of absent keys cost the same, but a realistic read returns a value.
        let mut c = Client::new(endpoints.clone(), timeout);
        let fill: Vec<u64> = (0..args.keys.min(10_000)).collect();
        for chunk in fill.chunks(1000) {
            let mut tasks = Vec::new();
            for part in chunk.chunks(chunk.len().div_ceil(args.clients.min(64))) {
                let mut c = Client::new(endpoints.clone(), timeout);
                let part = part.to_vec();
                let ks = args.key_size;
                let v = value.clone();
                tasks.push(tokio::spawn(async move {
                    for i in part {
                        c.execute(KvOp::Put {
                            key: key(i, ks),
                            value: v.clone(),
                        })
                        .await?;
                    }
                    Ok::<(), Failure>(())
                }));
            }
            for t in tasks {
                match t.await {
                    Ok(Ok(())) => {}
                    Ok(Err(f)) => return Err(BenchError::Failed(f)),
                    Err(e) => {
                        return Err(BenchError::Failed(Failure {
                            message: format!("fill task failed: {e}"),
                            definite: false,
                        }));
                    }
                }
            }
        }
        drop(
            c.execute(KvOp::Get {
                key: key(0, args.key_size),
            })
            .await,
        );
    }

    let muxes = match args.conns {
        None => Vec::new(),
        Some(n) => {
            let mut probe = Client::new(endpoints.clone(), timeout);
            let leader = probe.find_leader().await.map_err(BenchError::Failed)?;
            let mut muxes = Vec::with_capacity(n);
            for _ in 0..n {
                let deadline = Instant::now() + timeout;
                muxes.push(Mux::connect(&leader, deadline).await.map_err(|message| {
                    BenchError::Failed(Failure {
                        message,
                        definite: true,
                    })
                })?);
            }
            probe.close().await;
            muxes
        }
    };
    let shared = Arc::new(Shared {
        issued: AtomicU64::new(0),
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        fallbacks: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let bar = std::io::stderr().is_terminal().then(|| {
        let pb = match (duration, args.total) {
            (Some(d), _) => indicatif::ProgressBar::new(d.as_millis() as u64),
            (None, Some(t)) => indicatif::ProgressBar::new(t),
            (None, None) => indicatif::ProgressBar::new(0),
        };
        pb.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb
    });

    let started = Instant::now();
    let started_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    // (time, completed operations) at the end of each whole interval, as first seen.
    let mut marks: Vec<(Duration, u64)> = Vec::new();
    let mut workers = Vec::new();
    for w in 0..args.clients {
        let shared = shared.clone();
        let consistency: keyval_core::ReadConsistency = args.consistency.into();
        let mut worker = Worker {
            own: Client::new(endpoints.clone(), timeout),
            shared: (!muxes.is_empty()).then(|| SharedPath {
                mux: muxes[w % muxes.len()].clone(),
                nonce: crate::client::random_u64(),
                session: None,
                seq: 0,
            }),
            consistency,
            timeout,
        };
        let value = value.clone();
        let op = args.op;
        let (keys, key_size, total) = (args.keys, args.key_size, args.total);
        workers.push(tokio::spawn(async move {
            // Microseconds from 1 µs to 60 s at 3 significant digits; constant, valid bounds.
            let Ok(mut hist) = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3) else {
                return None;
            };
            let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ ((w as u64 + 1) << 17);
            loop {
                if shared.stop.load(Relaxed) {
                    break;
                }
                if let Some(t) = total
                    && shared.issued.fetch_add(1, Relaxed) >= t
                {
                    break;
                }
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let k = key(rng % keys, key_size);
                let t0 = Instant::now();
                let op = match op {
                    BenchOp::Put => KvOp::Put {
                        key: k,
                        value: value.clone(),
                    },
                    BenchOp::Get => KvOp::Get { key: k },
                };
                let result = worker.run(op, &shared).await;
                match result {
                    Ok(_) => {
                        let _ = hist.record((t0.elapsed().as_micros() as u64).max(1));
                        shared.done.fetch_add(1, Relaxed);
                    }
                    Err(_) => {
                        shared.errors.fetch_add(1, Relaxed);
                    }
                }
            }
            worker.own.close().await;
            Some(hist)
        }));
    }

    // Drive the clock: stop after the duration, and move the progress bar.
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let elapsed = started.elapsed();
        if let Some(i) = interval
            && elapsed >= i * (marks.len() as u32 + 1)
        {
            marks.push((elapsed, shared.done.load(Relaxed)));
        }
        if let Some(pb) = &bar {
            match duration {
                Some(_) => pb.set_position(elapsed.as_millis() as u64),
                None => pb.set_position(shared.done.load(Relaxed)),
            }
            let secs = elapsed.as_secs_f64().max(1e-9);
            pb.set_message(format!(
                "{:.0} ops/s",
                shared.done.load(Relaxed) as f64 / secs
            ));
        }
        if duration.is_some_and(|d| elapsed >= d) {
            shared.stop.store(true, Relaxed);
            break;
        }
        if workers.iter().all(|w| w.is_finished()) {
            break;
        }
    }
    drop(muxes);
    let mut hist = Histogram::<u64>::new(3).map_err(|e| {
        BenchError::Failed(Failure {
            message: e.to_string(),
            definite: true,
        })
    })?;
    for w in workers {
        if let Ok(Some(h)) = w.await {
            let _ = hist.add(h);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    let ops = shared.done.load(Relaxed);
    let errors = shared.errors.load(Relaxed);
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let throughput = ops as f64 / elapsed.max(1e-9);
    let op_name = match args.op {
        BenchOp::Put => "put",
        BenchOp::Get => match keyval_core::ReadConsistency::from(args.consistency) {
            keyval_core::ReadConsistency::Linearizable => "get",
            keyval_core::ReadConsistency::Lease => "get-lease",
            keyval_core::ReadConsistency::Serializable => "get-serializable",
        },
    };
    let per_interval: Vec<f64> = std::iter::once((Duration::ZERO, 0))
        .chain(marks.iter().copied())
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| (w[1].1 - w[0].1) as f64 / (w[1].0 - w[0].0).as_secs_f64().max(1e-9))
        .collect();
    Ok(if json_out {
        let mut out = json!({
            "ok": true,
            "op": op_name,
            "clients": args.clients,
            "conns": args.conns,
            "fallbacks": shared.fallbacks.load(Relaxed),
            "key_size": args.key_size,
            "value_size": args.value_size,
            "ops": ops,
            "errors": errors,
            "duration_s": elapsed,
            "throughput_ops_s": throughput,
            "latency_ms": {
                "p50": ms(0.5),
                "p90": ms(0.9),
                "p99": ms(0.99),
                "p99_9": ms(0.999),
                "max": hist.max() as f64 / 1000.0,
            }
        });
        if interval.is_some() {
            out["started_unix_ms"] = json!(started_unix_ms);
            out["intervals"] = json!(per_interval);
        }
        out.to_string()
    } else {
        let intervals = if interval.is_some() {
            let list: Vec<String> = per_interval.iter().map(|r| format!("{r:.0}")).collect();
            format!("\nops/s per interval: {}", list.join(" "))
        } else {
            String::new()
        };
        format!(
            "op={op_name} clients={} key_size={} value_size={} ops={ops} errors={errors} duration={elapsed:.2}s\nthroughput: {throughput:.0} ops/s\nlatency ms: p50={:.2} p90={:.2} p99={:.2} p99.9={:.2} max={:.2}",
            args.clients,
            args.key_size,
            args.value_size,
            ms(0.5),
            ms(0.9),
            ms(0.99),
            ms(0.999),
            hist.max() as f64 / 1000.0
        ) + &intervals
    })
}
