//! What the bench prints: one row per measured figure (latency percentiles from an HDR
//! histogram, and/or a rate), as an aligned table or as JSON.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies in nanoseconds, 1 ns … 100 s at 3 significant digits.
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Latencies {
        Latencies(Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid bounds"))
    }
}

impl Latencies {
    pub fn record(&mut self, d: Duration) {
        self.0.saturating_record(d.as_nanos().max(1) as u64);
    }

    pub fn merge(&mut self, other: &Latencies) {
        let _ = self.0.add(&other.0);
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    fn micros(&self, q: f64) -> f64 {
        self.0.value_at_quantile(q) as f64 / 1e3
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Stable key for machines (e.g. `create.latency`).
    pub key: String,
    /// What a human reads.
    pub name: String,
    /// Samples behind the percentiles (or events behind the rate).
    pub n: u64,
    pub p50_us: Option<f64>,
    pub p90_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub max_us: Option<f64>,
    /// Events per second, when the figure is a rate.
    pub rate_per_s: Option<f64>,
    /// Conditions and anything that went wrong (refusals, failures, live sessions).
    pub note: String,
}

impl Row {
    pub fn latency(key: &str, name: &str, h: &Latencies, note: String) -> Row {
        let has = h.len() > 0;
        let q = |q| has.then(|| h.micros(q));
        Row {
            key: key.into(),
            name: name.into(),
            n: h.len(),
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            max_us: q(1.0),
            rate_per_s: None,
            note,
        }
    }

    pub fn rate(key: &str, name: &str, n: u64, elapsed: Duration, note: String) -> Row {
        Row {
            key: key.into(),
            name: name.into(),
            n,
            p50_us: None,
            p90_us: None,
            p99_us: None,
            max_us: None,
            rate_per_s: Some(n as f64 / elapsed.as_secs_f64().max(1e-9)),
            note,
        }
    }

    pub fn with_rate(mut self, n: u64, elapsed: Duration) -> Row {
        self.rate_per_s = Some(n as f64 / elapsed.as_secs_f64().max(1e-9));
        self
    }

    /// A scenario that could not run; the note says why.
    pub fn skipped(key: &str, name: &str, why: String) -> Row {
        Row {
            key: key.into(),
            name: name.into(),
            n: 0,
            p50_us: None,
            p90_us: None,
            p99_us: None,
            max_us: None,
            rate_per_s: None,
            note: why,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub date: String,
    pub cores: usize,
    pub kernel: String,
    pub command: String,
    pub target: String,
    pub rows: Vec<Row>,
}

fn time(us: Option<f64>) -> String {
    match us {
        None => "-".into(),
        Some(us) if us < 1_000.0 => format!("{us:.0} µs"),
        Some(us) if us < 1_000_000.0 => format!("{:.2} ms", us / 1e3),
        Some(us) => format!("{:.2} s", us / 1e6),
    }
}

fn rate(r: Option<f64>) -> String {
    match r {
        None => "-".into(),
        Some(r) if r >= 10_000.0 => format!("{:.0}k/s", r / 1e3),
        Some(r) => format!("{r:.0}/s"),
    }
}

impl Report {
    pub fn table(&self) -> String {
        let mut out = format!(
            "luabroker bench, {} ({} cores, Linux {}), against {}\n`{}`\n\n",
            self.date, self.cores, self.kernel, self.target, self.command
        );
        let width = self
            .rows
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(10);
        out.push_str(&format!(
            "{:width$}  {:>7}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  note\n",
            "figure", "n", "p50", "p90", "p99", "max", "rate"
        ));
        for r in &self.rows {
            out.push_str(&format!(
                "{:width$}  {:>7}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  {}\n",
                r.name,
                r.n,
                time(r.p50_us),
                time(r.p90_us),
                time(r.p99_us),
                time(r.max_us),
                rate(r.rate_per_s),
                r.note
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_samples() {
        let mut h = Latencies::default();
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us));
        }
        let row = Row::latency("k", "k", &h, String::new());
        assert_eq!(row.n, 100);
        let p50 = row.p50_us.unwrap();
        assert!((49.0..=51.0).contains(&p50), "{p50}");
        let max = row.max_us.unwrap();
        assert!((99.9..=100.1).contains(&max), "{max}");
        assert!(Row::latency("e", "e", &Latencies::default(), String::new())
            .p50_us
            .is_none());
    }

    #[test]
    fn table_formats_units() {
        assert_eq!(time(Some(250.0)), "250 µs");
        assert_eq!(time(Some(2_500.0)), "2.50 ms");
        assert_eq!(rate(Some(326_000.0)), "326k/s");
        assert_eq!(rate(Some(2_000.0)), "2000/s");
    }
}
