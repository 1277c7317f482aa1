//! The operator's API, on its own address (`--admin-listen`, off unless set; no authentication,
//! so keep it on loopback): `GET /sessions` lists every session as JSON, `GET /sessions/<id>`
//! shows one, `DELETE /sessions/<id>[?reason=...]` ends one: its tabs are closed with the
//! reason, its worker stopped, and its URL's 404 page says why.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::broker::Broker;
use crate::proc_stats;
use crate::session::{EndCause, Lifecycle, Session};

/// A close reason must fit a WebSocket close frame (123 bytes) with room to spare.
const MAX_REASON: usize = 100;

pub fn router(broker: Arc<Broker>) -> Router {
    Router::new()
        .route("/sessions", get(list))
        .route("/sessions/{id}", get(show).delete(end))
        .with_state(broker)
}

/// One session as `GET /sessions` lists it.
#[derive(Serialize)]
struct SessionInfo {
    /// The 32-hex id in its URL.
    id: String,
    /// The compact id its worker and Lua see.
    vended_id: u64,
    /// `live`, `crashed` (a tab or page load restarts it) or `ending`.
    state: &'static str,
    worker_pid: Option<i32>,
    age_seconds: f64,
    /// Since a tab last sent a frame, connected or left (since creation if none ever did).
    last_activity_seconds_ago: f64,
    tabs: usize,
    rss_bytes: Option<u64>,
    cpu_seconds: Option<f64>,
    /// Worker crashes since the session was created.
    crashes: u64,
}

async fn list(State(broker): State<Arc<Broker>>) -> Response {
    let mut sessions = broker.manager.all();
    sessions.sort_by_key(|s| std::cmp::Reverse(s.created.elapsed()));
    Json(describe(sessions).await).into_response()
}

async fn show(State(broker): State<Arc<Broker>>, Path(id): Path<String>) -> Response {
    match broker.manager.get(&id) {
        Some(session) => Json(describe(vec![session]).await.pop()).into_response(),
        None => no_such_session(&id),
    }
}

async fn end(
    State(broker): State<Arc<Broker>>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(session) = broker.manager.get(&id) else {
        return no_such_session(&id);
    };
    let mut why = query
        .get("reason")
        .map(|r| r.trim())
        .filter(|r| !r.is_empty())
        .unwrap_or("ended by an operator")
        .to_string();
    while why.len() > MAX_REASON {
        why.pop();
    }
    tracing::info!(session = %session.id, vended = session.vended_id, reason = %why,
        "admin API: ending the session");
    broker
        .destroy_session(&session, EndCause::Admin, why.clone())
        .await;
    Json(serde_json::json!({ "ended": id, "reason": why })).into_response()
}

fn no_such_session(id: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "error": format!("no live session {id:?}") })),
    )
        .into_response()
}

/// Reads each worker's /proc entry off the async threads.
async fn describe(sessions: Vec<Arc<Session>>) -> Vec<SessionInfo> {
    tokio::task::spawn_blocking(move || sessions.iter().map(|s| info(s)).collect())
        .await
        .unwrap_or_default()
}

fn info(s: &Session) -> SessionInfo {
    let pid = s.worker().map(|w| w.pid());
    let stats = pid.and_then(proc_stats::sample);
    SessionInfo {
        id: s.id.clone(),
        vended_id: s.vended_id,
        state: match s.state() {
            Lifecycle::Live => "live",
            Lifecycle::Crashed { .. } => "crashed",
            Lifecycle::Ending { .. } => "ending",
        },
        worker_pid: pid,
        age_seconds: s.created.elapsed().as_secs_f64(),
        last_activity_seconds_ago: s.since_activity().as_secs_f64(),
        tabs: s.tab_count(),
        rss_bytes: stats.map(|p| p.rss_bytes),
        cpu_seconds: stats.map(|p| p.cpu_seconds),
        crashes: s.crashes(),
    }
}
