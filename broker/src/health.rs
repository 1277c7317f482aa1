//! The load balancer's probes: `GET /healthz` (the process serves HTTP) and `GET /readyz` (it
//! would accept a new session now). Both read a few counters and never wait on a worker, a
//! spawn or a session lock held across an await, so a session stuck in a Lua loop or a slow
//! worker start cannot delay them.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::broker::Broker;

pub async fn healthz() -> Response {
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        "ok\n",
    )
        .into_response()
}

/// 200 `ready`, or 503 `not ready: <reason>`.
pub async fn readyz(State(broker): State<Arc<Broker>>) -> Response {
    match not_ready(&broker) {
        None => (
            StatusCode::OK,
            [(header::CACHE_CONTROL, "no-store")],
            "ready\n",
        )
            .into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CACHE_CONTROL, "no-store")],
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

/// Why `GET /` would not get a session now, if it would not.
pub fn not_ready(broker: &Broker) -> Option<String> {
    let manager = &broker.manager;
    if manager.is_closing() {
        return Some("the server is shutting down".into());
    }
    let (max_sessions, max_pending) = manager.caps();
    let (live, creating) = (manager.live(), manager.creating());
    if live + creating >= max_sessions {
        return Some(format!(
            "at the session cap: {live} live and {creating} being created of --max-sessions {max_sessions}"
        ));
    }
    if creating >= max_pending {
        return Some(format!(
            "at the creation cap: {creating} sessions being created (--max-pending-sessions {max_pending})"
        ));
    }
    if let Some(why) = crate::fd_budget::budget().not_ready() {
        return Some(why);
    }
    if !broker.config.no_zygote && !broker.server.zygote_up() {
        return Some("the zygote is down (workers are started by exec; restart the server)".into());
    }
    let (spares, coming) = broker.server.spares();
    if broker.config.spare_workers > 0 && spares == 0 && coming == 0 {
        return Some(
            "no spare worker is ready and none is starting (the last start failed)".into(),
        );
    }
    None
}
