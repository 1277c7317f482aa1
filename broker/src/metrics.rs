//! Counters the broker exposes at `GET /metrics` (Prometheus text format).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    /// Sessions whose main.lua ran and that answered 302.
    pub created: AtomicU64,
    /// `GET /` refused with 503 (session cap or creation cap).
    pub refused: AtomicU64,
    /// `GET /` that failed with 500 (main.lua error, worker failure).
    pub failed: AtomicU64,
    /// Worker crashes (any end the broker did not ask for).
    pub crashes: AtomicU64,
    /// Sessions destroyed (idle, never adopted, too many crashes, shutdown).
    pub ended: AtomicU64,
}

impl Metrics {
    pub fn render(&self, live_sessions: usize, live_workers: usize) -> String {
        let mut out = String::new();
        let counters = [
            (
                "luabroker_sessions_created_total",
                "Sessions created.",
                &self.created,
            ),
            (
                "luabroker_sessions_refused_total",
                "GET / answered 503.",
                &self.refused,
            ),
            (
                "luabroker_sessions_failed_total",
                "GET / answered 500.",
                &self.failed,
            ),
            (
                "luabroker_worker_crashes_total",
                "Workers that ended unasked.",
                &self.crashes,
            ),
            (
                "luabroker_sessions_ended_total",
                "Sessions destroyed.",
                &self.ended,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP luabroker_sessions Live sessions.\n# TYPE luabroker_sessions gauge\nluabroker_sessions {live_sessions}"
        );
        let _ = writeln!(
            out,
            "# HELP luabroker_workers Live worker processes.\n# TYPE luabroker_workers gauge\nluabroker_workers {live_workers}"
        );
        out
    }
}
