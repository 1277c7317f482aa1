//! The executable's flags. Every flag is also an environment variable `LUABROKER_<NAME>`, and all
//! are listed by `--help`. Durations are written like `250ms`, `5s`, `24h` (`0` where a limit can
//! be switched off); sizes like `64MiB`. Every flag can also be set in the `--config` TOML file
//! (see `config_file`, which also says where each value came from).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "luabroker",
    version,
    about = "Serves one Lua app per browser session, each session in its own worker process.",
    after_help = "Benchmark: `luabroker bench --help` (measures a running server, or one it starts)."
)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port. Prints `listening on http://ADDR:PORT`.
    #[arg(long, env = "LUABROKER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Directory of the Lua app (holding main.lua). Default: ./lua if it holds main.lua, else
    /// the default app built into the executable.
    #[arg(long, env = "LUABROKER_LUA_DIR", conflicts_with = "dir")]
    pub lua_dir: Option<PathBuf>,

    /// A ui-engine site (as `ui-engine serve --dir`): DIR/html is the frontend (unless
    /// --static), DIR/lua the app, DIR/viewdefs its templates; symlinks inside DIR are followed,
    /// ones leading out of it refused.
    #[arg(long, env = "LUABROKER_DIR", value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Serve this directory's frontend (its index.html at /<id>) instead of the built-in page.
    #[arg(long = "static", env = "LUABROKER_STATIC", value_name = "DIR")]
    pub static_dir: Option<PathBuf>,

    /// Turn on /<id>/variables and /<id>/variables.json (every variable of a session).
    #[arg(long, env = "LUABROKER_DEBUG_PAGES")]
    pub debug_pages: bool,

    /// Extra allowed WebSocket origins (comma-separated, e.g. http://localhost:3000). The
    /// request's own host is always allowed.
    #[arg(long, env = "LUABROKER_ALLOW_ORIGIN", value_delimiter = ',')]
    pub allow_origin: Vec<String>,

    /// Wall-clock budget of one Lua turn (main.lua, one frame, one timer callback); 0 = none.
    #[arg(long, env = "LUABROKER_LUA_TIME_LIMIT", default_value = "5s", value_parser = parse_duration)]
    pub lua_time_limit: Duration,

    /// Lua memory per session, then a Lua memory error (an OS limit sits behind it); 0 = none.
    #[arg(long, env = "LUABROKER_LUA_MEMORY_LIMIT", default_value = "256MiB", value_parser = parse_size)]
    pub lua_memory_limit: u64,

    /// Live sessions; beyond it `GET /` answers 503 with Retry-After.
    #[arg(long, env = "LUABROKER_MAX_SESSIONS", default_value_t = 10_000)]
    pub max_sessions: usize,

    /// Sessions being created (worker starting, main.lua running) at once; beyond it 503.
    #[arg(long, env = "LUABROKER_MAX_PENDING_SESSIONS", default_value_t = 256)]
    pub max_pending_sessions: usize,

    /// A session no tab has connected to is culled after this long; 0 = never.
    #[arg(long, env = "LUABROKER_ADOPTION_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub adoption_timeout: Duration,

    /// A session with no tab connected for this long is destroyed; 0 = never.
    #[arg(long, env = "LUABROKER_IDLE_TIMEOUT", default_value = "24h", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// On SIGTERM/SIGINT: workers get SIGTERM at half of this, SIGKILL at its end.
    #[arg(long, env = "LUABROKER_SHUTDOWN_GRACE", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Crashes of one session's worker within a minute before the session is closed for good.
    #[arg(long, env = "LUABROKER_MAX_CRASHES", default_value_t = 5)]
    pub max_crashes: usize,

    /// A worker that does not answer a liveness ping within this long is killed; 0 = no pings.
    #[arg(long, env = "LUABROKER_WORKER_PING_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub worker_ping_timeout: Duration,

    /// Watch the app directory: a changed, already-loaded .lua file is re-executed in every
    /// live session (session.reloading = true), a changed viewdef re-sent to the tabs.
    #[arg(long, env = "LUABROKER_HOTLOAD")]
    pub hotload: bool,

    /// Start every worker by exec instead of forking it from the zygote process.
    #[arg(long, env = "LUABROKER_NO_ZYGOTE")]
    pub no_zygote: bool,

    /// Workers forked from one zygote before a fresh zygote takes over; the old one lives on
    /// until its last worker ends. Bounds how many processes share one zygote's pages, which
    /// the kernel's reverse-map walks (page reclaim, DAMON) and every fork's locks pay for in
    /// proportion. 0 = one zygote for the broker's whole life.
    #[arg(long, env = "LUABROKER_ZYGOTE_FORKS", default_value_t = 1000)]
    pub zygote_forks: u64,

    /// The nice value every worker and zygote runs at, below the broker's priority (and the
    /// machine's other services'). Sessions stay equal among themselves. Measured at 10:
    /// `GET /` back to back p50 30–50 % lower, p99 about 20 % higher, creations 2–6 % fewer;
    /// no shorter tails while sessions are busy, since a new session's spare is a worker too
    /// (BENCHMARKS.md, tenth round). 0 = the broker's own priority; at most 19 (lowering a
    /// priority needs no privilege).
    #[arg(long, env = "LUABROKER_WORKER_NICE", default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..=19))]
    pub worker_nice: u8,

    /// The fewest spare workers kept ready (started ahead of demand, each with its Lua VM
    /// built), so `GET /` only runs main.lua; the pool grows with the creation rate up to
    /// --max-spare-workers. 0 = no pool: every worker is started on demand.
    #[arg(long, env = "LUABROKER_SPARE_WORKERS", default_value_t = 4)]
    pub spare_workers: usize,

    /// The most spare workers kept ready when sessions are created fast (the pool aims at
    /// twice the spares that are on their way at the current rate).
    #[arg(long, env = "LUABROKER_MAX_SPARE_WORKERS", default_value_t = 64)]
    pub max_spare_workers: usize,

    /// Start each spare's session ahead of its `GET /`: as soon as a spare's VM is ready it
    /// runs main.lua under the ids its session will have, so `GET /` only hands the started
    /// session out. main.lua then runs before anyone asks for it (its clock and its log lines
    /// show it); a session is handed out only if every app file it ran is unchanged on disk.
    #[arg(long, env = "LUABROKER_START_AHEAD")]
    pub start_ahead: bool,

    /// Serve `/metrics` (and the probes) on this address instead of the main one, so that the
    /// public port does not expose them. Prints `metrics on http://ADDR:PORT`.
    #[arg(long, env = "LUABROKER_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    /// Outgoing frames queued for one tab; a tab that falls this far behind is disconnected.
    #[arg(long, env = "LUABROKER_TAB_QUEUE_LIMIT", default_value_t = 1024)]
    pub tab_queue_limit: usize,

    // ---- what an unauthenticated client may hold (broker/src/edge/) ----
    /// A request's headers must arrive within this long of its first byte; else the
    /// connection is closed.
    #[arg(long, env = "LUABROKER_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// A connection with no request in progress (before its first, or between keep-alive
    /// requests) is closed after this long; 0 = never.
    #[arg(long, env = "LUABROKER_CONNECTION_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub connection_idle_timeout: Duration,

    /// Open client connections (HTTP and tabs). At the cap the longest-idle connection is
    /// closed for a newcomer; with none idle the newcomer gets 503. 0 = three quarters of
    /// what the descriptor reserve leaves of the open-files limit (the last quarter stays for
    /// worker sockets; see fd_budget.rs).
    #[arg(long, env = "LUABROKER_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,

    /// Open connections from one client address; beyond it 503 and close.
    #[arg(
        long,
        env = "LUABROKER_MAX_CONNECTIONS_PER_CLIENT",
        default_value_t = 256
    )]
    pub max_connections_per_client: usize,

    /// Sessions one client address may create per minute, after its burst; beyond it 429
    /// with Retry-After. 0 = no limit.
    #[arg(long, env = "LUABROKER_CREATE_RATE_PER_CLIENT", default_value_t = 60)]
    pub create_rate_per_client: u32,

    /// Sessions one client address may create at once before the per-minute rate applies.
    #[arg(long, env = "LUABROKER_CREATE_BURST_PER_CLIENT", default_value_t = 60)]
    pub create_burst_per_client: u32,

    /// A WebSocket upgrade must become a working tab (a crashed session's worker restarted
    /// included) within this long; else the tab gets an error and is closed. 0 = no limit.
    #[arg(long, env = "LUABROKER_WS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub ws_handshake_timeout: Duration,

    /// Every tab is pinged this often; one that sent nothing since the previous ping is
    /// dropped (so a vanished browser goes within two intervals). 0 = no pings.
    #[arg(long, env = "LUABROKER_WS_PING_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub ws_ping_interval: Duration,

    /// Two lowercase hex digits that start every session id this node vends, so that a load
    /// balancer can send each session's requests to its node (deploy/haproxy.cfg).
    #[arg(long, env = "LUABROKER_NODE_ID", value_parser = crate::session_id::parse_node_id)]
    pub node_id: Option<String>,

    /// Load balancers whose word on the client address is taken (comma-separated addresses
    /// or networks, e.g. 10.0.0.0/8): a PROXY protocol v1/v2 header, else X-Forwarded-For.
    #[arg(long, env = "LUABROKER_TRUSTED_PROXY", value_delimiter = ',', value_parser = crate::edge::client_addr::parse_net)]
    pub trusted_proxy: Vec<ipnet::IpNet>,

    /// Serve the admin API (`GET /sessions`, `DELETE /sessions/<id>`) here: a bare port means
    /// 127.0.0.1:PORT. It has no authentication: keep it on loopback. Off unless set. Prints
    /// `admin on http://ADDR:PORT`.
    #[arg(long, env = "LUABROKER_ADMIN_LISTEN", value_name = "[ADDR:]PORT", value_parser = parse_admin_listen)]
    pub admin_listen: Option<SocketAddr>,

    /// Log filter: a level (`error`, `warn`, `info`, `debug`, `trace`) or tracing directives
    /// such as `info,luabroker::ws=debug`. When left at its default, `RUST_LOG` is honoured.
    #[arg(long, env = "LUABROKER_LOG_LEVEL", default_value = "info", value_parser = parse_log_level)]
    pub log_level: String,

    /// `text` (for people) or `json` (one object per line, for machines).
    #[arg(long, env = "LUABROKER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// A TOML file of settings: keys are the flag names with `_` (`max_sessions = 500`,
    /// `idle_timeout = "2h"`). A flag or environment variable overrides the file. SIGHUP
    /// re-reads it.
    #[arg(long, env = "LUABROKER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print the effective configuration as TOML, each value's source beside it, and exit.
    #[arg(long)]
    pub print_config: bool,

    /// Worker confinement (seccomp allowlist, namespaces, Landlock, no privileges): `auto`
    /// applies every layer the kernel allows and logs the missing ones; `strict` refuses to
    /// start when one is missing; `off` applies only NO_NEW_PRIVS and the capability drop.
    #[arg(long, env = "LUABROKER_SANDBOX", value_enum, default_value_t = SandboxMode::Auto)]
    pub sandbox: SandboxMode,

    /// The user workers run as when the broker runs as root (default: nobody).
    #[arg(long, env = "LUABROKER_WORKER_USER", value_name = "NAME")]
    pub worker_user: Option<String>,

    /// Let workers run as root (no --worker-user, or a root one); refused otherwise.
    #[arg(long, env = "LUABROKER_ALLOW_ROOT_WORKERS")]
    pub allow_root_workers: bool,
}

/// `--sandbox`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SandboxMode {
    Auto,
    Strict,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `9090` (meaning 127.0.0.1:9090) or `ADDR:PORT`.
pub fn parse_admin_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.trim().parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.trim()
        .parse()
        .map_err(|e| format!("{e} (write PORT or ADDR:PORT, e.g. 9091 or 127.0.0.1:9091)"))
}

/// A filter `tracing_subscriber::EnvFilter` accepts.
pub fn parse_log_level(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("{e} (write e.g. info, debug or info,luabroker::ws=debug)"))
}

/// `250ms`, `5s`, `24h`, `1h30m`; a bare `0` means zero (switched off).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 250ms, 5s, 24h)"))
}

/// `64MiB`, `1GiB`, `500kB`, or plain bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("{e} (write e.g. 64MiB)"))
}

impl Config {
    /// Zero means "never" for the timeouts that can be switched off.
    pub fn opt(d: Duration) -> Option<Duration> {
        (!d.is_zero()).then_some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_parse_like_the_docs_say() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_size("64MiB").unwrap(), 64 * 1024 * 1024);
        assert_eq!(parse_size("256MiB").unwrap(), 256 * 1024 * 1024);
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn defaults_match_the_design() {
        let c = Config::parse_from(["luabroker"]);
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.lua_time_limit, Duration::from_secs(5));
        assert_eq!(c.lua_memory_limit, 256 * 1024 * 1024);
        assert_eq!(c.max_sessions, 10_000);
        assert_eq!(c.idle_timeout, Duration::from_secs(86_400));
        assert_eq!(c.max_crashes, 5);
        assert_eq!(c.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.connection_idle_timeout, Duration::from_secs(60));
        assert_eq!(c.max_connections, 0);
        assert_eq!(c.max_connections_per_client, 256);
        assert_eq!(
            (c.create_rate_per_client, c.create_burst_per_client),
            (60, 60)
        );
        assert_eq!(c.ws_ping_interval, Duration::from_secs(30));
        assert!(c.trusted_proxy.is_empty());
    }
}
