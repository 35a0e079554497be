//! A lock-free log-linear latency histogram.
//!
//! Values (nanoseconds) below 16 get a bucket each; above, every power of two is split into 16
//! equal sub-buckets, so a reported percentile is at most 1/16 (6.25 %) above the true value —
//! percentiles report the upper edge of their bucket, never an optimistic figure. Recording is
//! one relaxed atomic add per value, safe from any number of threads; readers take a
//! [`Snapshot`] at any time.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = ((64 - SUB_BITS as usize) + 1) * SUB as usize;

fn index(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= SUB_BITS
    let shift = exp - SUB_BITS;
    let sub = (v >> shift) - SUB; // 0..SUB
    ((exp - SUB_BITS + 1) as u64 * SUB + sub) as usize
}

/// The largest value that falls into bucket `i`.
fn upper(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let group = i / SUB; // >= 1
    let sub = i % SUB;
    let shift = group - 1;
    let lo = (SUB + sub) << shift;
    lo.saturating_add((1u64 << shift) - 1)
}

/// A concurrent histogram of nanosecond values.
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count.load(Ordering::Relaxed))
            .finish()
    }
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }

    /// Records one value.
    #[inline]
    pub fn record(&self, v: u64) {
        self.record_n(v, 1);
    }

    /// Records `n` occurrences of one value.
    #[inline]
    pub fn record_n(&self, v: u64, n: u64) {
        self.buckets[index(v)].fetch_add(n, Ordering::Relaxed);
        self.count.fetch_add(n, Ordering::Relaxed);
        self.sum.fetch_add(v.saturating_mul(n), Ordering::Relaxed);
        if v > self.max.load(Ordering::Relaxed) {
            self.max.fetch_max(v, Ordering::Relaxed);
        }
    }

    /// Forgets everything recorded so far.
    pub fn reset(&self) {
        for b in self.buckets.iter() {
            b.store(0, Ordering::Relaxed);
        }
        self.count.store(0, Ordering::Relaxed);
        self.sum.store(0, Ordering::Relaxed);
        self.max.store(0, Ordering::Relaxed);
    }

    /// A consistent-enough copy for reporting (concurrent records may land on either side).
    pub fn snapshot(&self) -> Snapshot {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        Snapshot {
            count: counts.iter().sum(),
            sum: self.sum.load(Ordering::Relaxed),
            max: self.max.load(Ordering::Relaxed),
            counts,
        }
    }
}

/// A point-in-time copy of a [`Histogram`].
#[derive(Clone, Debug)]
pub struct Snapshot {
    counts: Vec<u64>,
    pub count: u64,
    pub sum: u64,
    pub max: u64,
}

impl Snapshot {
    /// The value below or at which a fraction `q` (0..=1) of the records lie (bucket upper edge,
    /// capped at the recorded maximum). 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper(i).min(self.max);
            }
        }
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// Cumulative counts at the given upper bounds (nanoseconds), for a Prometheus histogram.
    /// A bucket is counted under a bound when its whole range lies at or below the bound.
    pub fn cumulative(&self, bounds_ns: &[u64]) -> Vec<u64> {
        bounds_ns
            .iter()
            .map(|&b| {
                self.counts
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| upper(*i) <= b)
                    .map(|(_, c)| c)
                    .sum()
            })
            .collect()
    }

    /// The usual summary, in milliseconds.
    pub fn summary_ms(&self) -> LatencySummary {
        let ms = |ns: u64| ns as f64 / 1e6;
        LatencySummary {
            count: self.count,
            mean_ms: self.mean() / 1e6,
            p50_ms: ms(self.quantile(0.50)),
            p90_ms: ms(self.quantile(0.90)),
            p99_ms: ms(self.quantile(0.99)),
            p999_ms: ms(self.quantile(0.999)),
            max_ms: ms(self.max),
        }
    }
}

/// Percentiles in milliseconds.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_upper_are_consistent() {
        for v in (0..5000u64).chain([1 << 20, (1 << 20) + 12345, u64::MAX / 3, u64::MAX]) {
            let i = index(v);
            assert!(i < BUCKETS);
            assert!(upper(i) >= v, "v={v} i={i} upper={}", upper(i));
            if i > 0 {
                assert!(upper(i - 1) < v, "v={v} falls in an earlier bucket");
            }
            // relative error bound
            assert!((upper(i) - v) as f64 <= (v as f64 / SUB as f64).max(0.0) + 1e-9);
        }
    }

    #[test]
    fn quantiles_of_a_uniform_range() {
        let h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        let s = h.snapshot();
        assert_eq!(s.count, 100_000);
        let p50 = s.quantile(0.5) as f64;
        let p99 = s.quantile(0.99) as f64;
        assert!((50e6..=50e6 * 1.0625).contains(&p50), "p50={p50}");
        assert!((99e6..=99e6 * 1.0625).contains(&p99), "p99={p99}");
        assert_eq!(s.quantile(1.0), 100_000_000);
        assert_eq!(s.max, 100_000_000);
        assert!((s.mean() - 50_000_500.0).abs() < 1.0);
    }

    #[test]
    fn cumulative_buckets_and_reset() {
        let h = Histogram::new();
        h.record_n(500, 3);
        h.record(2_000_000);
        let s = h.snapshot();
        assert_eq!(s.cumulative(&[1_000, 1_000_000, 10_000_000]), vec![3, 3, 4]);
        h.reset();
        assert_eq!(h.snapshot().count, 0);
        assert_eq!(h.snapshot().quantile(0.99), 0);
    }

    #[test]
    fn concurrent_recording_counts_everything() {
        let h = std::sync::Arc::new(Histogram::new());
        let ts: Vec<_> = (0..4)
            .map(|t| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        h.record(i * (t + 1));
                    }
                })
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(h.snapshot().count, 40_000);
    }
}
