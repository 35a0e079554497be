//! Summary statistics of measured samples, shared by the benchmarks and the NVMe scraper.

/// Nearest-rank percentile `p` (0..=100) of a sorted slice: the smallest sample with at least
/// `p` % of the samples at or below it; `T::default()` for an empty slice.
pub fn percentile<T: Copy + Default>(sorted: &[T], p: u32) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let n = sorted.len();
    let rank = (n * p as usize).div_ceil(100).clamp(1, n);
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&v, 50), Duration::from_micros(50));
        assert_eq!(percentile(&v, 99), Duration::from_micros(99));
        assert_eq!(percentile(&v, 100), Duration::from_micros(100));
        assert_eq!(percentile(&v[..1], 99), Duration::from_micros(1));
        assert_eq!(percentile::<Duration>(&[], 50), Duration::ZERO);
    }

    #[test]
    fn percentiles_of_other_sample_types() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!((percentile(&v, 50), percentile(&v, 99)), (500, 990));
        let f = [0.5f64, 1.5, 2.5];
        assert_eq!(percentile(&f, 50), 1.5);
        assert_eq!(percentile::<f64>(&[], 99), 0.0);
    }
}
