//! The broker's Prometheus series, kept by the Prometheus project's own Rust client
//! (`prometheus-client`) and served as OpenMetrics text at `GET /metrics` (or on
//! `--metrics-listen`, see `scrape`).
//!
//! There is one set of series per process, reachable from anywhere as [`metrics()`], so that
//! the place where something happens counts it without threading a handle through:
//! `metrics::metrics().sessions_created.inc()`.
//!
//! **Adding a series** takes two lines: a `pub` field on [`Metrics`] and one `register` call in
//! [`Metrics::new`] (name without `_total`: the client appends it to counters). Counters and
//! histograms are bumped where the event happens; a gauge that mirrors state the broker already
//! holds (live sessions, spare pool) is set in `scrape::sample` just before each scrape instead.
//! Labels come from fixed sets (`&'static str` pairs, see [`Labels`]); never label by session
//! id or anything else unbounded. List every new series in the README's metrics table.

use std::sync::LazyLock;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use protocol::browser::{ErrorCode, ServerMessage};

/// One label from a fixed set, e.g. `[("reason", "session_cap")]`.
pub type Labels = [(&'static str, &'static str); 1];

/// A counter per label value, e.g. `luabroker_refusals_total{reason="session_cap"}`.
pub type CounterBy = Family<Labels, Counter>;

/// The content type of what [`Metrics::render`] returns.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's series.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

pub struct Metrics {
    registry: Registry,

    // --- Counted where it happens ---
    /// Sessions whose main.lua ran and that answered 302.
    pub sessions_created: Counter,
    /// `GET /` answered 503 (any reason; the reasons are in `refusals`).
    pub sessions_refused: Counter,
    /// `GET /` answered 500 (main.lua error, worker failure).
    pub sessions_failed: Counter,
    /// Sessions removed for good, by cause: `idle`, `unadopted`, `crashes`, `shutdown`, `admin`.
    pub sessions_ended: CounterBy,
    /// Time from `GET /` to the session's main.lua having run (successful creations only).
    pub session_creation_seconds: Histogram,
    /// Requests refused, by reason: `session_cap`, `pending_cap`, `shutting_down`, ...
    pub refusals: CounterBy,
    /// Worker processes that ended unasked (the session crashed).
    pub worker_crashes: Counter,
    /// Worker processes that ended, by cause: `stopped` (asked to), `crash` (exit code),
    /// `signal`, `limit` (an OS limit's signal, e.g. SIGXCPU), `killed` (by the broker).
    pub worker_exits: CounterBy,
    /// Protocol messages relayed, by direction: `to_worker` (from tabs), `to_browser`.
    pub messages: CounterBy,
    /// Frame bytes relayed, by direction (as above).
    pub bytes: CounterBy,
    /// `lua-error` messages the workers sent to tabs.
    pub lua_errors: Counter,
    /// Limits hit, by limit: `lua` (a Lua time/memory limit reported to a tab),
    /// `tab_queue` (a tab dropped for not reading), `browser_frame` (a frame refused as too big).
    pub limit_hits: CounterBy,
    /// Workers ended by their seccomp filter (`sandbox-violation`; the call is in the log).
    pub sandbox_violations: Counter,
    /// Worker confinement layers, 1 in force or 0 not, by layer: `seccomp`, `namespaces`,
    /// `landlock`, `worker_user` (set once at start-up, see `sandbox`).
    pub sandbox_layers: Family<Labels, Gauge>,

    // --- Set from the broker's state at each scrape (see `scrape::sample`) ---
    pub sessions: Gauge,
    /// Sessions whose main.lua had run before their `GET /` (`--start-ahead`).
    pub sessions_started_ahead: Counter,
    pub tabs: Gauge,
    pub workers: Gauge,
    pub spare_workers: Gauge,
    pub spare_workers_target: Gauge,
    /// Zygote processes alive: the one forking and the retired ones with workers left.
    pub zygotes: Gauge,
    pub worker_rss_sum_bytes: Gauge,
    pub worker_rss_max_bytes: Gauge,
    /// Open client connections, HTTP and tabs (`edge/conn_table.rs`).
    pub connections: Gauge,
    /// Client addresses holding a creation rate-limit bucket (`edge/rate_limit.rs`).
    pub rate_limited_clients: Gauge,
}

impl Metrics {
    fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::default(),
            sessions_created: Counter::default(),
            sessions_refused: Counter::default(),
            sessions_failed: Counter::default(),
            sessions_ended: CounterBy::default(),
            // 1 ms .. ~16 s.
            session_creation_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            refusals: CounterBy::default(),
            worker_crashes: Counter::default(),
            worker_exits: CounterBy::default(),
            messages: CounterBy::default(),
            bytes: CounterBy::default(),
            lua_errors: Counter::default(),
            limit_hits: CounterBy::default(),
            sandbox_violations: Counter::default(),
            sandbox_layers: Family::default(),
            sessions: Gauge::default(),
            sessions_started_ahead: Counter::default(),
            tabs: Gauge::default(),
            workers: Gauge::default(),
            spare_workers: Gauge::default(),
            spare_workers_target: Gauge::default(),
            zygotes: Gauge::default(),
            worker_rss_sum_bytes: Gauge::default(),
            worker_rss_max_bytes: Gauge::default(),
            connections: Gauge::default(),
            rate_limited_clients: Gauge::default(),
        };
        let mut r = Registry::default();
        r.register(
            "luabroker_sessions_created",
            "Sessions created",
            m.sessions_created.clone(),
        );
        r.register(
            "luabroker_sessions_started_ahead",
            "Sessions whose main.lua had run before their GET / (--start-ahead)",
            m.sessions_started_ahead.clone(),
        );
        r.register(
            "luabroker_sessions_refused",
            "GET / answered 503",
            m.sessions_refused.clone(),
        );
        r.register(
            "luabroker_sessions_failed",
            "GET / answered 500",
            m.sessions_failed.clone(),
        );
        r.register(
            "luabroker_sessions_ended",
            "Sessions removed for good, by cause",
            m.sessions_ended.clone(),
        );
        r.register(
            "luabroker_session_creation_seconds",
            "Time from GET / to the session's main.lua having run",
            m.session_creation_seconds.clone(),
        );
        r.register(
            "luabroker_refusals",
            "Requests refused, by reason",
            m.refusals.clone(),
        );
        r.register(
            "luabroker_worker_crashes",
            "Workers that ended unasked",
            m.worker_crashes.clone(),
        );
        r.register(
            "luabroker_worker_exits",
            "Worker processes that ended, by cause",
            m.worker_exits.clone(),
        );
        r.register(
            "luabroker_messages",
            "Protocol messages relayed, by direction",
            m.messages.clone(),
        );
        r.register(
            "luabroker_bytes",
            "Frame bytes relayed, by direction",
            m.bytes.clone(),
        );
        r.register(
            "luabroker_lua_errors",
            "lua-error messages sent to tabs",
            m.lua_errors.clone(),
        );
        r.register(
            "luabroker_limit_hits",
            "Limits hit, by limit",
            m.limit_hits.clone(),
        );
        r.register(
            "luabroker_sandbox_violations",
            "Workers ended by a forbidden system call",
            m.sandbox_violations.clone(),
        );
        r.register(
            "luabroker_sandbox_layer",
            "Worker confinement layers in force (1) or not (0)",
            m.sandbox_layers.clone(),
        );
        r.register("luabroker_sessions", "Live sessions", m.sessions.clone());
        r.register("luabroker_tabs", "Connected tabs", m.tabs.clone());
        r.register(
            "luabroker_workers",
            "Live worker processes serving a session",
            m.workers.clone(),
        );
        r.register(
            "luabroker_spare_workers",
            "Workers started ahead of demand, ready for a session",
            m.spare_workers.clone(),
        );
        r.register(
            "luabroker_spare_workers_target",
            "Spare workers the pool aims at, from the session creation rate",
            m.spare_workers_target.clone(),
        );
        r.register(
            "luabroker_zygotes",
            "Zygote processes alive: the one workers are forked from, and retired ones whose workers still live",
            m.zygotes.clone(),
        );
        r.register(
            "luabroker_worker_rss_sum_bytes",
            "Resident memory of all session workers (sampled at scrape)",
            m.worker_rss_sum_bytes.clone(),
        );
        r.register(
            "luabroker_worker_rss_max_bytes",
            "Resident memory of the largest session worker (sampled at scrape)",
            m.worker_rss_max_bytes.clone(),
        );
        r.register(
            "luabroker_connections",
            "Open client connections (HTTP and WebSocket)",
            m.connections.clone(),
        );
        r.register(
            "luabroker_rate_limited_clients",
            "Client addresses with a session-creation rate-limit bucket",
            m.rate_limited_clients.clone(),
        );
        r.register(
            "luabroker_build",
            "The running executable",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION")),
                (
                    "profile",
                    if cfg!(debug_assertions) {
                        "debug"
                    } else {
                        "release"
                    },
                ),
            ]),
        );
        Metrics { registry: r, ..m }
    }

    /// Every series as OpenMetrics text (served with [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// Counts one refusal (a 503 of `GET /`, or any other request turned away).
    pub fn refused(&self, reason: &'static str) {
        self.refusals.get_or_create(&[("reason", reason)]).inc();
    }

    /// Counts a frame from a tab on its way to the worker.
    pub fn to_worker(&self, messages: usize, bytes: usize) {
        self.relayed("to_worker", messages, bytes);
    }

    /// Counts messages the worker sent to tabs (Lua errors and limit hits among them).
    pub fn to_browser(&self, messages: &[ServerMessage]) {
        for m in messages {
            if let ServerMessage::Error { code, .. } = m {
                match code {
                    ErrorCode::LuaError => {
                        self.lua_errors.inc();
                    }
                    ErrorCode::Limit => self.limit_hit("lua"),
                    _ => {}
                }
            }
        }
        self.relayed("to_browser", messages.len(), 0);
    }

    /// Counts the bytes of a frame queued for a tab.
    pub fn to_browser_bytes(&self, bytes: usize) {
        self.bytes
            .get_or_create(&[("direction", "to_browser")])
            .inc_by(bytes as u64);
    }

    pub fn limit_hit(&self, limit: &'static str) {
        self.limit_hits.get_or_create(&[("limit", limit)]).inc();
    }

    fn relayed(&self, direction: &'static str, messages: usize, bytes: usize) {
        self.messages
            .get_or_create(&[("direction", direction)])
            .inc_by(messages as u64);
        if bytes > 0 {
            self.bytes
                .get_or_create(&[("direction", direction)])
                .inc_by(bytes as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_keep_their_names_and_types() {
        let m = Metrics::new();
        m.sessions_created.inc();
        m.refused("session_cap");
        m.sessions_ended.get_or_create(&[("cause", "idle")]).inc();
        m.session_creation_seconds.observe(0.004);
        let text = m.render();
        for line in [
            "# TYPE luabroker_sessions_created counter",
            "luabroker_sessions_created_total 1",
            "luabroker_sessions_refused_total 0",
            "luabroker_refusals_total{reason=\"session_cap\"} 1",
            "luabroker_sessions_ended_total{cause=\"idle\"} 1",
            "luabroker_session_creation_seconds_count 1",
            "luabroker_session_creation_seconds_bucket{le=\"0.008\"} 1",
            "luabroker_worker_crashes_total 0",
            "# TYPE luabroker_sessions gauge",
            "luabroker_workers 0",
            "luabroker_build_info{version=\"",
            "# EOF",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
    }
}
