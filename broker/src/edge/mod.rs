//! What an unauthenticated peer may hold, and how its address is known.
//!
//! Every connection, a session creation and a tab cost the broker something (a descriptor, a
//! process, a Lua VM), and `GET /` is open to anyone. This module bounds all of it so that
//! hostile clients cannot starve real ones:
//! - [`listener`]: the HTTP server loop (instead of `axum::serve`): header-read and idle
//!   timeouts per connection, the connection caps of [`conn_table`], shedding of the oldest
//!   idle connection at the cap, PROXY protocol from a trusted proxy;
//! - [`client_addr`]: who the client is (the peer, or what a `--trusted-proxy` says);
//! - [`rate_limit`]: a token bucket per client address for session creation;
//! - [`tab_keepalive`]: WebSocket pings that drop tabs whose peer is gone.
//!
//! The session-cap eviction of never-adopted sessions lives with the broker (`eviction.rs`).
//! Every bound is a flag (see `config.rs`) and counts when it triggers: connections turned
//! away in `luabroker_refusals{reason=...}`, bounds that closed something in
//! `luabroker_limit_hits{limit=...}` (README, metrics table).

pub mod client_addr;
pub mod conn_io;
pub mod conn_state;
pub mod conn_table;
pub mod listener;
pub mod rate_limit;
pub mod tab_keepalive;

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use client_addr::TrustedProxies;
use conn_table::ConnTable;
use rate_limit::CreationLimiter;

/// The bounds of one broker, built from its flags.
pub struct Edge {
    pub conns: ConnTable,
    pub creation: CreationLimiter,
    pub trusted: TrustedProxies,
}

impl Edge {
    pub fn new(config: &Config) -> Edge {
        let max = match config.max_connections {
            // The descriptor budget owns the descriptor arithmetic (fd_budget.rs).
            0 => crate::fd_budget::budget().connection_cap(),
            n => n,
        };
        tracing::info!(
            max_connections = max,
            per_client = config.max_connections_per_client,
            "connection limits"
        );
        Edge {
            conns: ConnTable::new(max, config.max_connections_per_client),
            creation: CreationLimiter::new(
                config.create_rate_per_client,
                config.create_burst_per_client,
            ),
            trusted: TrustedProxies::new(config.trusted_proxy.clone()),
        }
    }
}

/// Forgets the creation buckets of addresses that have gone quiet, every minute, forever.
pub async fn housekeeping(edge: Arc<Edge>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(60));
    loop {
        ticker.tick().await;
        edge.creation.forget_idle();
    }
}
