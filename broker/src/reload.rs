//! SIGHUP: re-reads the configuration (the command line and environment the process started
//! with, the `--config` file as it is now) and applies what can change safely in a running
//! server: the caps and Lua limits for sessions created from now on, the culling timeouts, the
//! crash budget, the tab queue bound for tabs that connect from now on, and the log filter.
//! Everything else (addresses, the app, the zygote, ...) is logged as needing a restart and
//! keeps its running value. A file that no longer loads is logged and changes nothing.
//!
//! The values that can change are read through `live_config::live` by the code that uses them.

use std::ffi::OsString;
use std::sync::Arc;

use tracing_subscriber::EnvFilter;
use worker::logging::FilterHandle;

use crate::broker::Broker;
use crate::config::Config;
use crate::config_file::{self, Setting, Source};
use crate::live_config::{live, publish};

/// The keys SIGHUP applies.
pub const RELOADABLE: &[&str] = &[
    "max_sessions",
    "max_pending_sessions",
    "lua_time_limit",
    "lua_memory_limit",
    "adoption_timeout",
    "idle_timeout",
    "max_crashes",
    "tab_queue_limit",
    "log_level",
];

/// The log filter to use: `--log-level`, unless it was left at its default and `RUST_LOG` is
/// set (then `RUST_LOG`, as before there was a flag).
pub fn log_filter(config: &Config, settings: &[Setting]) -> String {
    let defaulted = settings
        .iter()
        .any(|s| s.key == "log_level" && s.source == Source::Default);
    match std::env::var("RUST_LOG") {
        Ok(env) if defaulted && EnvFilter::try_new(&env).is_ok() => env,
        _ => config.log_level.clone(),
    }
}

/// Re-reads the configuration on every SIGHUP, forever.
pub fn watch(
    broker: Arc<Broker>,
    args: Vec<OsString>,
    settings: Vec<Setting>,
    filter: Option<FilterHandle>,
) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        let mut settings = settings;
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP received: re-reading the configuration");
            reload(&broker, &args, &mut settings, filter.as_ref());
        }
    });
    Ok(())
}

fn reload(
    broker: &Broker,
    args: &[OsString],
    settings: &mut [Setting],
    filter: Option<&FilterHandle>,
) {
    let loaded = match config_file::load(args) {
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::error!("the configuration was not reloaded: {e}");
            return;
        }
    };
    let mut next = (*live(&broker.config)).clone();
    let (mut applied, mut restart) = (0, 0);
    for (old, new) in settings.iter_mut().zip(loaded.settings.iter()) {
        if old.values == new.values {
            continue;
        }
        let (from, to) = (old.values.join(","), new.values.join(","));
        if !RELOADABLE.contains(&old.key.as_str()) {
            tracing::warn!(key = %old.key, from = %from, to = %to, source = %new.source,
                "setting changed, but it needs a restart: keeping the running value");
            restart += 1;
            continue;
        }
        tracing::info!(key = %old.key, from = %from, to = %to, source = %new.source,
            "setting changed: applied");
        *old = new.clone();
        applied += 1;
    }
    tracing::info!(
        applied,
        need_restart = restart,
        "the configuration was reloaded"
    );
    if applied == 0 {
        return;
    }
    let c = &loaded.config;
    next.max_sessions = c.max_sessions;
    next.max_pending_sessions = c.max_pending_sessions;
    next.lua_time_limit = c.lua_time_limit;
    next.lua_memory_limit = c.lua_memory_limit;
    next.adoption_timeout = c.adoption_timeout;
    next.idle_timeout = c.idle_timeout;
    next.max_crashes = c.max_crashes;
    next.tab_queue_limit = c.tab_queue_limit;
    next.log_level = c.log_level.clone();
    broker
        .manager
        .set_caps(next.max_sessions, next.max_pending_sessions);
    if let Some(handle) = filter {
        let wanted = log_filter(&next, settings);
        if let Ok(f) = EnvFilter::try_new(&wanted) {
            if let Err(e) = handle.reload(f) {
                tracing::error!("cannot change the log filter: {e}");
            }
        }
    }
    publish(Arc::new(next));
}
