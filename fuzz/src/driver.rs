//! A small mutation fuzzer for stable Rust: picks a seed, applies a few random edits (bit flips,
//! interesting integers, inserted, deleted, duplicated or spliced ranges), runs the target and
//! catches panics. It has no coverage feedback (that is what cargo-fuzz adds on nightly), so it
//! relies on seeds made by the real encoders to start deep inside each format.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use crate::Target;

/// Largest input the mutator produces.
pub const MAX_INPUT_BYTES: usize = 64 << 10;

/// How long a run goes on.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    Execs(u64),
    Time(Duration),
}

/// An input that made the target panic, and the panic message.
#[derive(Clone, Debug)]
pub struct Crash {
    pub input: Vec<u8>,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub execs: u64,
    pub elapsed: Duration,
    pub crashes: Vec<Crash>,
}

impl Report {
    pub fn execs_per_sec(&self) -> f64 {
        self.execs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// xorshift64*: deterministic per seed, so a reported run can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// Byte strings that break arithmetic when they land on an integer: postcard varints of 0,
/// 1, u32::MAX, u64::MAX and 2^62, and little-endian extremes.
const INTERESTING: &[&[u8]] = &[
    &[0x00],
    &[0x01],
    &[0x7f],
    &[0x80, 0x01],
    &[0xff, 0xff, 0xff, 0xff, 0x0f],
    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
    &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40],
    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80],
];

/// One mutated input from `corpus`.
pub fn mutate(corpus: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut data = if corpus.is_empty() || rng.below(16) == 0 {
        (0..rng.below(64)).map(|_| rng.next_u64() as u8).collect()
    } else {
        corpus[rng.below(corpus.len())].clone()
    };
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = rng.next_u64() as u8;
            }
            2 => {
                let at = rng.below(len + 1);
                let v = INTERESTING[rng.below(INTERESTING.len())];
                if rng.below(2) == 0 && at + v.len() <= len {
                    data[at..at + v.len()].copy_from_slice(v);
                } else {
                    data.splice(at..at, v.iter().copied());
                }
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(32));
                data.drain(at..at + n);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                let chunk: Vec<u8> = data[at..at + n].to_vec();
                let to = rng.below(len + 1);
                data.splice(to..to, chunk);
            }
            5 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                let from = rng.below(other.len() + 1);
                let at = rng.below(len + 1);
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
            6 if len > 0 => data.truncate(rng.below(len)),
            _ => {
                let at = rng.below(len + 1);
                let n = rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                data.splice(at..at, bytes);
            }
        }
    }
    data.truncate(MAX_INPUT_BYTES);
    data
}

thread_local! {
    /// Set while this thread runs a target: its panics are recorded, not printed.
    static CAPTURING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static CAPTURED: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// One process-wide panic hook, installed once: it records the panics of threads running a
/// target and passes every other panic to the hook that was there before. (Swapping the hook
/// per input raced between test threads: one thread restored another's hook, and panics went
/// unreported.)
fn install_hook() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CAPTURING.with(|c| c.get()) {
                return previous(info);
            }
            let loc = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let text = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            CAPTURED.with(|c| *c.borrow_mut() = Some(format!("{text}{loc}")));
        }));
    });
}

/// Runs `target` on one input; `Err(message)` if it panicked.
pub fn run_one(target: Target, input: &[u8]) -> Result<(), String> {
    install_hook();
    CAPTURED.with(|c| c.borrow_mut().take());
    CAPTURING.with(|c| c.set(true));
    let result = catch_unwind(AssertUnwindSafe(|| target(input)));
    CAPTURING.with(|c| c.set(false));
    result.map_err(|_| CAPTURED.with(|c| c.borrow_mut().take()).unwrap_or_default())
}

/// Runs every seed once, then mutations until the budget is spent. Distinct panic messages
/// are kept once each.
pub fn run(target: Target, seeds: &[Vec<u8>], budget: Budget, rng_seed: u64) -> Report {
    let start = Instant::now();
    let mut report = Report::default();
    let mut rng = Rng::new(rng_seed);
    let record = |input: &[u8], report: &mut Report| {
        report.execs += 1;
        if let Err(message) = run_one(target, input)
            && !report.crashes.iter().any(|c| c.message == message)
        {
            report.crashes.push(Crash {
                input: input.to_vec(),
                message,
            });
        }
    };
    for s in seeds {
        record(s, &mut report);
    }
    loop {
        let done = match budget {
            Budget::Execs(n) => report.execs >= n,
            // Checking the clock every exec would cost more than the fastest targets.
            Budget::Time(d) => report.execs % 64 == 0 && start.elapsed() >= d,
        };
        if done {
            break;
        }
        let input = mutate(seeds, &mut rng);
        record(&input, &mut report);
    }
    report.elapsed = start.elapsed();
    report
}
