//! The configuration as last (re)loaded. SIGHUP (see `reload`) publishes a new one; the code
//! that uses a setting SIGHUP may change (caps, Lua limits, timeouts, the crash budget, the tab
//! queue bound) reads it through [`live`] when it needs it, so the change applies from then on.

use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;

use crate::config::Config;

static LIVE: OnceLock<RwLock<Arc<Config>>> = OnceLock::new();

/// The configuration as last (re)loaded; `started` until the broker has published one (as
/// `Broker::new` does), so code that reads it works in any process.
pub fn live(started: &Arc<Config>) -> Arc<Config> {
    match LIVE.get() {
        Some(live) => live.read().clone(),
        None => started.clone(),
    }
}

/// Publishes a configuration (the one the broker starts with, then each reload).
pub fn publish(config: Arc<Config>) {
    let cell = LIVE.get_or_init(|| RwLock::new(config.clone()));
    *cell.write() = config;
}
