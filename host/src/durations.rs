//! How long invocations take: a small histogram per agent, for the p50, p95 and max the
//! summary, `status` and `/metrics` report.
//!
//! A run may make millions of calls, so their times are not kept one by one: each is
//! counted in a bucket a quarter of an octave wide (exact below 8 µs), which bounds a
//! quantile's error at 19% of its value while a histogram up to days takes at most 160
//! counters (and only up to its largest bucket). The maximum and the sum are exact.
//! The histogram lives in the run's record, so a resumed run goes on counting.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Buckets below this many microseconds are one microsecond wide.
const EXACT: u64 = 8;

/// A histogram of durations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Durations {
    counts: Vec<u64>,
    count: u64,
    total_us: u64,
    max_us: u64,
}

/// The bucket of a duration of `us` microseconds.
fn bucket(us: u64) -> usize {
    if us < EXACT {
        return us as usize;
    }
    let octave = 63 - u64::from(us.leading_zeros()); // 3 or more
    let quarter = (us >> (octave - 2)) & 3;
    (EXACT + (octave - 3) * 4 + quarter) as usize
}

/// The smallest duration (µs) bucket `b` holds.
fn lower(b: usize) -> u64 {
    let b = b as u64;
    if b < EXACT {
        return b;
    }
    let octave = 3 + (b - EXACT) / 4;
    let quarter = (b - EXACT) % 4;
    (4 + quarter) << (octave - 2)
}

impl Durations {
    /// Count one duration.
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let b = bucket(us);
        if self.counts.len() <= b {
            self.counts.resize(b + 1, 0);
        }
        self.counts[b] += 1;
        self.count += 1;
        self.total_us = self.total_us.saturating_add(us);
        self.max_us = self.max_us.max(us);
    }

    /// How many were counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The longest.
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max_us)
    }

    /// All of them together.
    pub fn total(&self) -> Duration {
        Duration::from_micros(self.total_us)
    }

    /// The duration `q` (0 to 1) of them took at most: the upper edge of the bucket the
    /// quantile falls in, never more than the maximum. Zero if none was counted.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let upper = lower(b + 1).saturating_sub(1);
                return Duration::from_micros(upper.min(self.max_us));
            }
        }
        self.max()
    }

    /// How many took at most `limit` (counting whole buckets below it): for cumulative
    /// histogram buckets such as Prometheus' `le`.
    pub fn at_most(&self, limit: Duration) -> u64 {
        let limit = u64::try_from(limit.as_micros()).unwrap_or(u64::MAX);
        self.counts
            .iter()
            .enumerate()
            .take_while(|(b, _)| lower(b + 1).saturating_sub(1) <= limit)
            .map(|(_, n)| n)
            .sum()
    }

    /// Add `other`'s counts to these.
    pub fn merge(&mut self, other: &Durations) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.count += other.count;
        self.total_us = self.total_us.saturating_add(other.total_us);
        self.max_us = self.max_us.max(other.max_us);
    }
}

/// As stored: the non-empty buckets as `[bucket, count]` pairs.
#[derive(Serialize, Deserialize)]
struct Wire {
    count: u64,
    total_us: u64,
    max_us: u64,
    buckets: Vec<(u32, u64)>,
}

impl Serialize for Durations {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Wire {
            count: self.count,
            total_us: self.total_us,
            max_us: self.max_us,
            buckets: self
                .counts
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(b, n)| (b as u32, *n))
                .collect(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Durations {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(deserializer)?;
        let mut counts = Vec::new();
        for (b, n) in w.buckets {
            // A bucket past any duration a u64 of microseconds can hold is damage.
            let b = b as usize;
            if b > bucket(u64::MAX) {
                return Err(serde::de::Error::custom(format!("no duration bucket {b}")));
            }
            if counts.len() <= b {
                counts.resize(b + 1, 0);
            }
            counts[b] += n;
        }
        Ok(Self {
            counts,
            count: w.count,
            total_us: w.total_us,
            max_us: w.max_us,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_duration_falls_in_the_bucket_whose_edges_hold_it() {
        for us in (0..5000).chain([1 << 20, (1 << 20) + 1, 3_600_000_000, u64::MAX / 2]) {
            let b = bucket(us);
            assert!(lower(b) <= us && us < lower(b + 1), "{us} in bucket {b}");
        }
        assert!(bucket(u64::MAX) < 256);
    }

    #[test]
    fn quantiles_are_within_a_fifth_of_the_exact_ones_and_the_max_is_exact() {
        let mut d = Durations::default();
        for ms in 1..=1000u64 {
            d.record(Duration::from_millis(ms));
        }
        for (q, exact) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0)] {
            let got = d.quantile(q).as_secs_f64() * 1000.0;
            assert!(
                got >= exact && got <= exact * 1.2,
                "p{q}: {got} ms, exact {exact}"
            );
        }
        assert_eq!(d.max(), Duration::from_millis(1000));
        assert_eq!(d.count(), 1000);
        assert_eq!(d.total(), Duration::from_millis(500_500));
        assert_eq!(Durations::default().quantile(0.5), Duration::ZERO);
        assert_eq!(d.at_most(Duration::from_secs(2)), 1000);
        assert!(d.at_most(Duration::from_millis(100)) <= 100);
    }

    #[test]
    fn a_histogram_reads_back_as_written_and_merges_by_adding() {
        let mut a = Durations::default();
        let mut b = Durations::default();
        for us in [3, 70, 900, 12_000] {
            a.record(Duration::from_micros(us));
            b.record(Duration::from_micros(us * 10));
        }
        let back: Durations =
            serde_json::from_str(&serde_json::to_string(&a).expect("json")).expect("read");
        assert_eq!(back, a);
        let mut both = a.clone();
        both.merge(&b);
        assert_eq!(both.count(), 8);
        assert_eq!(both.max(), Duration::from_micros(120_000));
        assert!(
            serde_json::from_str::<Durations>(
                r#"{"count":1,"total_us":1,"max_us":1,"buckets":[[100000,1]]}"#
            )
            .is_err()
        );
    }
}
