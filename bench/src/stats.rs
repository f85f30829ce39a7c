//! Repeats, min/median/max, and what the machine was doing meanwhile.

use std::time::Duration;

/// min, median and max of some figures.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Spread {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let median = match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        };
        Spread {
            min: v.first().copied().unwrap_or(f64::NAN),
            median,
            max: v.last().copied().unwrap_or(f64::NAN),
        }
    }

    /// `min / median / max`, each with `unit` formatting.
    pub fn show(&self, unit: impl Fn(f64) -> String) -> String {
        format!(
            "{} / {} / {}",
            unit(self.min),
            unit(self.median),
            unit(self.max)
        )
    }
}

/// A rate in rows (or lines) per second, short: `1.02M/s`, `88.4k/s`.
pub fn per_second(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{:.2}M/s", rate / 1e6)
    } else if rate >= 1e3 {
        format!("{:.1}k/s", rate / 1e3)
    } else {
        format!("{rate:.0}/s")
    }
}

/// Bytes per second in decimal megabytes: `812 MB/s`.
pub fn megabytes_per_second(rate: f64) -> String {
    format!("{:.0} MB/s", rate / 1e6)
}

pub fn ratio(r: f64) -> String {
    format!("{r:.2}x")
}

pub fn millis(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

pub fn rate(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// The 1-minute load average and the number of CPUs: printed beside every
/// figure, since a busy machine makes every ratio worse.
pub fn load() -> String {
    let avg = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("load {avg} on {cpus} CPUs")
}

/// The `p`-th percentile (0 to 100) of `values`, nearest rank.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_and_percentiles() {
        let s = Spread::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.min, s.median, s.max), (1.0, 2.0, 3.0));
        assert_eq!(Spread::of(&[1.0, 4.0]).median, 2.5);
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(per_second(1_020_000.0), "1.02M/s");
        assert_eq!(per_second(88_400.0), "88.4k/s");
    }
}
