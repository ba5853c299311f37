//! Latency percentiles (nearest rank) and medians over rounds.

use std::time::Duration;

/// The `p`-th percentile (0 < p ≤ 100) of `samples` by the nearest-rank method: the smallest
/// sample such that at least p % of the samples are no greater. `None` for no samples.
pub fn percentile(samples: &[Duration], p: f64) -> Option<Duration> {
    if samples.is_empty() || !(p > 0.0 && p <= 100.0) {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// The median of `values` (the mean of the two middle ones for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_unstable_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 { sorted[mid] } else { (sorted[mid - 1] + sorted[mid]) / 2.0 })
}

/// Milliseconds, for reports.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// p50 and p99 of one series, in milliseconds, with the throughput of running it sequentially.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
}

impl Summary {
    pub fn of(samples: &[Duration]) -> Option<Summary> {
        let total: Duration = samples.iter().sum();
        Some(Summary {
            p50_ms: ms(percentile(samples, 50.0)?),
            p99_ms: ms(percentile(samples, 99.0)?),
            mean_ms: ms(total) / samples.len() as f64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(values: impl IntoIterator<Item = u64>) -> Vec<Duration> {
        values.into_iter().map(Duration::from_millis).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let one_to_hundred = millis((1..=100).rev());
        assert_eq!(percentile(&one_to_hundred, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&one_to_hundred, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&one_to_hundred, 100.0), Some(Duration::from_millis(100)));
        // With ten samples, p99 is the largest: only it has 99 % of the samples at or below.
        let ten = millis([5, 1, 9, 3, 7, 2, 8, 4, 6, 10]);
        assert_eq!(percentile(&ten, 99.0), Some(Duration::from_millis(10)));
        assert_eq!(percentile(&ten, 50.0), Some(Duration::from_millis(5)));
        assert_eq!(percentile(&millis([42]), 1.0), Some(Duration::from_millis(42)));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&ten, 0.0), None);
        assert_eq!(percentile(&ten, 101.0), None);
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn summary_of_a_series() {
        let s = Summary::of(&millis(1..=100)).unwrap();
        assert_eq!((s.p50_ms, s.p99_ms, s.mean_ms), (50.0, 99.0, 50.5));
        assert_eq!(Summary::of(&[]), None);
    }
}
