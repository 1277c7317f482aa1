//! luabroker: one executable that is the broker (HTTP server, session manager, supervisor)
//! or, when re-executed by itself with `__worker`, one session's worker.

mod admin;
mod after_reply;
mod app_dir;
mod bench;
mod broker;
mod child;
mod config;
mod config_file;
mod edge;
mod eviction;
mod fd_budget;
mod guarded_listener;
mod health;
mod hotload;
mod http;
mod limits;
mod live_config;
mod manager;
mod metrics;
mod page;
mod proc_stats;
mod reaper;
mod reload;
mod sandbox;
mod scrape;
mod server;
mod session;
mod session_id;
mod shutdown;
mod site;
mod spare_pool;
mod spawner;
mod start_ahead;
mod unattended;
mod variable_browser;
mod worker_handle;
mod worker_socket;
mod worker_stream;
mod ws;
mod zygote;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use worker::logging::FilterHandle;

use crate::app_dir::AppDir;
use crate::broker::Broker;
use crate::config::{Config, LogFormat};
use crate::config_file::{LoadError, Loaded};
use crate::reaper::Reaper;
use crate::site::Site;

/// What `run` needs besides the configuration: what SIGHUP re-reads and re-applies.
struct Startup {
    args: Vec<OsString>,
    loaded: Loaded,
    filter: Option<FilterHandle>,
    /// The configuration with `--dir`'s site resolved into its Lua and static directories.
    config: Config,
    site: Option<Site>,
    app: AppDir,
}

fn main() -> ExitCode {
    // Worker mode is decided before any flag parsing: a worker inherits the broker's
    // LUABROKER_* environment and must not interpret it.
    match std::env::args_os().nth(1) {
        Some(a) if a == protocol::launch::WORKER_ARG => return worker::process::run(),
        Some(a) if a == protocol::launch::ZYGOTE_ARG => return worker::zygote::run(),
        Some(a) if a == "bench" => return bench::main(),
        _ => {}
    }
    let args: Vec<OsString> = std::env::args_os().collect();
    let loaded = match config_file::load(&args) {
        Ok(loaded) => loaded,
        Err(LoadError::Args(e)) => e.exit(),
        Err(e) => {
            eprintln!("luabroker: {e}");
            return ExitCode::from(2);
        }
    };
    if loaded.config.print_config {
        print!("{}", config_file::to_toml(&loaded.settings));
        return ExitCode::SUCCESS;
    }
    let filter = reload::log_filter(&loaded.config, &loaded.settings);
    let json = loaded.config.log_format == LogFormat::Json;
    // The zygote and workers log the same way. Sound: no other thread exists yet.
    std::env::set_var(
        worker::logging::ENV_FORMAT,
        if json { "json" } else { "text" },
    );
    std::env::set_var(worker::logging::ENV_FILTER, &filter);
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .ok()
        .and_then(|f| worker::logging::install(f, json));
    limits::raise_fd_limit();
    let (config, site, app) = match find_app(loaded.config.clone()) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("luabroker: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Forks a probe child: before the runtime starts any thread.
    let viewdefs_dir = site.as_ref().map_or_else(
        || app.path().join(worker::viewdefs::VIEWDEFS_DIR),
        Site::viewdefs_dir,
    );
    let files = worker::confine::AppFiles {
        app_dir: app.path(),
        viewdefs_dir: &viewdefs_dir,
        readable: site.as_ref().map_or(app.path(), |s| s.root.as_path()),
    };
    if let Err(e) = sandbox::decide(&config, &files) {
        eprintln!("luabroker: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("luabroker: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let startup = Startup {
        args,
        loaded,
        filter,
        config,
        site,
        app,
    };
    match runtime.block_on(run(startup)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("luabroker: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where the app is: `--dir`'s site (its Lua and static directories filled in), and the Lua
/// app directory (`--lua-dir`, `./lua`, or the built-in app unpacked).
fn find_app(mut config: Config) -> std::io::Result<(Config, Option<Site>, AppDir)> {
    let site = config.dir.as_deref().map(Site::resolve).transpose()?;
    if let Some(site) = &site {
        config.dir = Some(site.root.clone());
        config.lua_dir = Some(site.lua_dir());
        if config.static_dir.is_none() {
            config.static_dir = site.html_dir();
        }
        tracing::info!(site = %site.root.display(), "serving a ui-engine site (--dir)");
    }
    let app = AppDir::resolve(config.lua_dir.as_deref())?;
    tracing::info!(app = %app.path().display(), builtin = app.is_builtin(), "serving Lua app");
    Ok((config, site, app))
}

async fn run(startup: Startup) -> std::io::Result<()> {
    let Startup {
        args,
        loaded,
        filter,
        config,
        site,
        app,
    } = startup;
    // Before the first child exists, so no exit is missed.
    let reaper = Reaper::start()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot listen on {}: {e}", config.listen))
        })?;
    let addr = listener.local_addr()?;
    let metrics_listener = match config.metrics_listen {
        Some(at) => Some(bind(at, "--metrics-listen").await?),
        None => None,
    };
    let admin_listener = match config.admin_listen {
        Some(at) => Some(bind(at, "--admin-listen").await?),
        None => None,
    };
    let broker = Broker::new(config, app.path().to_path_buf(), reaper)?;

    if !broker.config.no_zygote {
        if let Err(e) = broker.server.start_zygote().await {
            tracing::error!("cannot start the zygote ({e}); workers will be exec'd");
        }
    }
    // The first spares are on their way before the server answers anything (`/readyz`).
    broker.server.refill_spares();
    tokio::spawn(broker.server.clone().tend_spares());
    let budget = fd_budget::budget();
    budget.keep_counting();
    limits::report(budget, broker.config.max_sessions);
    if broker.config.hotload {
        if app.is_builtin() {
            tracing::warn!(
                "--hotload watches nothing: the built-in app is not on disk (use --lua-dir)"
            );
        } else if let Err(e) =
            hotload::watch(broker.clone(), hotload::root(app.path(), site.as_ref()))
        {
            tracing::error!("--hotload: cannot watch {}: {e}", app.path().display());
        }
    }
    let maintenance = tokio::spawn(maintain(broker.clone()));
    let (stop_accepting, accepting_stopped) = tokio::sync::oneshot::channel::<()>();
    // `http`, not `server`: `broker.server` is the worker Server (the seed's name).
    // Our own server loop (edge/listener.rs) rather than `axum::serve`: per-connection
    // timeouts and caps. It accepts through the guarded listener (503 at the very limit).
    let listener = guarded_listener::GuardedListener::new(listener, budget.clone());
    let timeouts = edge::listener::Timeouts {
        header_read: broker.config.header_read_timeout,
        idle: Config::opt(broker.config.connection_idle_timeout),
    };
    let http = edge::listener::serve(
        listener,
        http::router(broker.clone()),
        broker.edge.clone(),
        timeouts,
        async {
            let _ = accepting_stopped.await;
        },
    );
    let http = tokio::spawn(http);
    let housekeeping = tokio::spawn(edge::housekeeping(broker.edge.clone()));

    if let Some(listener) = metrics_listener {
        let at = listener.local_addr()?;
        let router = scrape::router(broker.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        println!("metrics on http://{at}");
    }
    if let Some(listener) = admin_listener {
        let at = listener.local_addr()?;
        if !at.ip().is_loopback() {
            tracing::warn!(%at, "the admin API has no authentication and listens beyond loopback");
        }
        let router = admin::router(broker.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        println!("admin on http://{at}");
    }
    reload::watch(broker.clone(), args, loaded.settings, filter)?;
    println!("listening on http://{addr}");
    std::io::stdout().flush()?;

    let signal = shutdown::signalled().await;
    tracing::info!("{signal} received: stopping");
    // HTTP is still served while sessions drain, so that /readyz can say "shutting down" and
    // a load balancer stops sending new users here; GET / meanwhile answers 503.
    broker.shutdown().await;
    let _ = stop_accepting.send(());
    maintenance.abort();
    housekeeping.abort();
    // Plain HTTP requests still in flight get a moment to finish; tabs are already closed.
    let _ = tokio::time::timeout(Duration::from_secs(2), http).await;
    broker.server.close();
    tracing::info!("stopped");
    Ok(())
}

async fn bind(at: std::net::SocketAddr, what: &str) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(at)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("{what}: cannot listen on {at}: {e}")))
}

/// Culls unattended sessions and pings workers, forever.
async fn maintain(broker: Arc<Broker>) {
    let config = broker.config.clone();
    let shortest = [config.adoption_timeout, config.idle_timeout]
        .into_iter()
        .filter(|d| !d.is_zero())
        .min()
        .unwrap_or(Duration::from_secs(60));
    let tick = (shortest.min(Duration::from_secs(1)) / 4).max(Duration::from_millis(10));
    let ping_every = Config::opt(config.worker_ping_timeout);
    let mut last_ping = tokio::time::Instant::now();
    let mut seq = 0u64;
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let culling = broker.clone();
        tokio::spawn(async move { culling.cull().await });
        if let Some(timeout) = ping_every {
            if last_ping.elapsed() >= timeout {
                last_ping = tokio::time::Instant::now();
                seq += 1;
                broker.ping_all(seq, timeout);
            }
        }
    }
}
