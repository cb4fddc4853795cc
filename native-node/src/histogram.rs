//! A Prometheus histogram with fixed bucket bounds: one atomic counter per bucket, so observing
//! takes no lock and rendering reads a consistent-enough snapshot for a scrape.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// etcd's disk latency buckets (`wal_fsync`, `backend_commit`): 1 ms doubling 14 times, to
/// 8.192 s (etcd server/storage/wal/metrics.go: `ExponentialBuckets(0.001, 2, 14)`).
pub const DISK_BUCKETS: [f64; 14] = exponential(0.001);

/// etcd's peer round-trip buckets: 0.1 ms doubling 16 times, to 3.2768 s (etcd
/// rafthttp/metrics.go: `ExponentialBuckets(0.0001, 2, 16)`).
pub const RTT_BUCKETS: [f64; 16] = exponential(0.0001);

const fn exponential<const N: usize>(start: f64) -> [f64; N] {
    let mut out = [0.0; N];
    let mut i = 0;
    let mut v = start;
    while i < N {
        out[i] = v;
        v *= 2.0;
        i += 1;
    }
    out
}

pub struct Histogram {
    bounds: &'static [f64],
    /// Per-bucket (not cumulative) counts; the last slot holds observations above every bound.
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    /// A disk-latency histogram ([`DISK_BUCKETS`]), the most common kind here.
    fn default() -> Self {
        Histogram::new(&DISK_BUCKETS)
    }
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        assert!(
            bounds.windows(2).all(|w| w[0] < w[1]),
            "histogram bounds must increase"
        );
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let slot = self
            .bounds
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(self.bounds.len());
        self.counts[slot].fetch_add(1, Relaxed);
        self.sum_nanos
            .fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// HELP, TYPE and one unlabelled series.
    pub fn render(&self, out: &mut String, name: &str, help: &str, labels: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        self.render_series(out, name, labels);
    }

    /// The `_bucket`, `_sum` and `_count` lines of one series; `labels` is `k="v",...` or empty.
    pub fn render_series(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(self.counts.iter()) {
            cumulative += count.load(Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.counts[self.bounds.len()].load(Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_nanos.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_etcds() {
        assert_eq!(DISK_BUCKETS[0], 0.001);
        assert_eq!(DISK_BUCKETS[13], 8.192);
        assert_eq!(RTT_BUCKETS[0], 0.0001);
        assert!((RTT_BUCKETS[15] - 3.2768).abs() < 1e-12);
    }

    #[test]
    fn buckets_are_cumulative_and_count_everything() {
        let h = Histogram::new(&DISK_BUCKETS);
        h.observe(Duration::from_micros(500)); // <= 1 ms
        h.observe(Duration::from_millis(3)); // <= 4 ms
        h.observe(Duration::from_secs(20)); // above every bound
        let mut out = String::new();
        h.render(&mut out, "x", "help", "");
        assert!(out.contains("x_bucket{le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.002\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.004\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"8.192\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
        assert!(out.contains("x_sum 20.0035\n"), "{out}");
        assert_eq!(h.count(), 3);
        let mut labelled = String::new();
        h.render_series(&mut labelled, "y", "To=\"2\"");
        assert!(labelled.contains("y_bucket{To=\"2\",le=\"+Inf\"} 3\n"));
        assert!(labelled.contains("y_count{To=\"2\"} 3\n"));
    }
}
