//! Summaries of raw samples: nearest-rank percentiles for latencies, median
//! and range for a few repeated runs.

use std::time::Duration;

use serde::Serialize;

/// The `p`-th percentile (0 < p ≤ 100) of `sorted` by the nearest-rank
/// method: the smallest sample such that at least `p`% of the samples are at
/// or below it, i.e. `sorted[ceil(p/100 · n) - 1]`. No interpolation, so the
/// result is always a value that was measured. `None` for no samples.
///
/// `sorted` must be sorted ascending.
pub fn nearest_rank(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() || !(p > 0.0 && p <= 100.0) {
        return None;
    }
    let n = sorted.len();
    // The rank is computed in integer hundredths-of-a-percent so that, e.g.,
    // p = 99 and n = 100 gives rank 99 exactly (99/100·100 in floating point
    // can land a hair above 99 and round up to 100).
    let p_bp = (p * 100.0).round() as u128;
    let rank = (p_bp * n as u128).div_ceil(10_000).clamp(1, n as u128) as usize;
    Some(sorted[rank - 1])
}

/// p50, p99, mean, min and max of one operation's samples, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Number of samples.
    pub samples: usize,
    /// Median (nearest rank).
    pub p50_ms: f64,
    /// 99th percentile (nearest rank).
    pub p99_ms: f64,
    /// Arithmetic mean.
    pub mean_ms: f64,
    /// Fastest sample.
    pub min_ms: f64,
    /// Slowest sample.
    pub max_ms: f64,
}

impl Summary {
    /// Summarises `samples`; `None` when there are none.
    pub fn of(samples: &[Duration]) -> Option<Summary> {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        Some(Summary {
            samples: ms.len(),
            p50_ms: round3(nearest_rank(&ms, 50.0)?),
            p99_ms: round3(nearest_rank(&ms, 99.0)?),
            mean_ms: round3(ms.iter().sum::<f64>() / ms.len() as f64),
            min_ms: round3(*ms.first()?),
            max_ms: round3(*ms.last()?),
        })
    }
}

/// Median, min and max of a few repeated measurements (throughput runs,
/// lab bring-ups), in the samples' own unit. The median is the nearest-rank
/// one, so it is always a run that happened: with an even count, the lower
/// of the two middle runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    /// Number of samples.
    pub runs: usize,
    /// Median (nearest rank).
    pub median: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
}

impl Spread {
    /// Summarises `samples`, rounded to 3 decimals; `None` when there are
    /// none or one is not a number.
    pub fn of(samples: &[f64]) -> Option<Spread> {
        if samples.iter().any(|x| x.is_nan()) {
            return None;
        }
        let mut xs = samples.to_vec();
        xs.sort_by(f64::total_cmp);
        Some(Spread {
            runs: xs.len(),
            median: round3(nearest_rank(&xs, 50.0)?),
            min: round3(*xs.first()?),
            max: round3(*xs.last()?),
        })
    }
}

/// `num / den` rounded to 3 decimals; `None` when `den` is not positive.
pub fn ratio(num: f64, den: f64) -> Option<f64> {
    (den > 0.0 && num.is_finite()).then(|| round3(num / den))
}

/// Rounds to microseconds when expressed in milliseconds: finer digits are
/// noise at process-spawn timescales and only clutter the JSON.
pub fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_to(n: usize) -> Vec<f64> {
        (1..=n).map(|i| i as f64).collect()
    }

    #[test]
    fn nearest_rank_picks_measured_values() {
        let xs = one_to(100);
        assert_eq!(nearest_rank(&xs, 50.0), Some(50.0));
        assert_eq!(nearest_rank(&xs, 99.0), Some(99.0));
        assert_eq!(nearest_rank(&xs, 100.0), Some(100.0));
        assert_eq!(nearest_rank(&xs, 1.0), Some(1.0));
        assert_eq!(nearest_rank(&xs, 0.5), Some(1.0));
    }

    #[test]
    fn nearest_rank_rounds_the_rank_up() {
        // n = 10: p50 → rank 5, p99 → rank ceil(9.9) = 10, p11 → rank ceil(1.1) = 2.
        let xs = one_to(10);
        assert_eq!(nearest_rank(&xs, 50.0), Some(5.0));
        assert_eq!(nearest_rank(&xs, 99.0), Some(10.0));
        assert_eq!(nearest_rank(&xs, 11.0), Some(2.0));
        // n = 200: p99 → rank 198.
        assert_eq!(nearest_rank(&one_to(200), 99.0), Some(198.0));
        // Odd n: the median is the middle sample.
        assert_eq!(nearest_rank(&[1.0, 2.0, 7.0], 50.0), Some(2.0));
    }

    #[test]
    fn nearest_rank_edge_cases() {
        assert_eq!(nearest_rank(&[], 50.0), None);
        assert_eq!(nearest_rank(&[3.0], 0.0), None);
        assert_eq!(nearest_rank(&[3.0], 101.0), None);
        assert_eq!(nearest_rank(&[3.0], f64::NAN), None);
        assert_eq!(nearest_rank(&[3.0], 50.0), Some(3.0));
        assert_eq!(nearest_rank(&[3.0], 99.0), Some(3.0));
    }

    #[test]
    fn summary_sorts_and_converts_to_ms() {
        let samples: Vec<Duration> = [5u64, 1, 3, 2, 4]
            .iter()
            .map(|&ms| Duration::from_millis(ms))
            .collect();
        let s = Summary::of(&samples).unwrap();
        assert_eq!(s.samples, 5);
        assert_eq!(s.p50_ms, 3.0);
        assert_eq!(s.p99_ms, 5.0);
        assert_eq!(s.mean_ms, 3.0);
        assert_eq!(s.min_ms, 1.0);
        assert_eq!(s.max_ms, 5.0);
        assert_eq!(Summary::of(&[]), None);
    }

    #[test]
    fn spread_takes_the_middle_run() {
        let s = Spread::of(&[9.1234, 7.0, 8.5]).unwrap();
        assert_eq!((s.runs, s.median, s.min, s.max), (3, 8.5, 7.0, 9.123));
        // Even count: the lower middle run, not an average nobody measured.
        assert_eq!(Spread::of(&[4.0, 1.0, 3.0, 2.0]).unwrap().median, 2.0);
        assert_eq!(Spread::of(&[5.0]).unwrap().median, 5.0);
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(Spread::of(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn ratio_needs_a_positive_denominator() {
        assert_eq!(ratio(9.5, 10.0), Some(0.95));
        assert_eq!(ratio(2.0, 3.0), Some(0.667));
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
    }
}
