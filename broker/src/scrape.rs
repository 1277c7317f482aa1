//! `GET /metrics`: sets the gauges that mirror the broker's state (live sessions, tabs, spare
//! pool, worker memory), then renders every series. Served on the main address, or only on
//! `--metrics-listen` when that is set (with the probes beside it), so that a public port need
//! not expose them.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::broker::Broker;
use crate::health;
use crate::metrics::{self, metrics};
use crate::proc_stats;

pub async fn serve(State(broker): State<Arc<Broker>>) -> Response {
    sample(&broker).await;
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics().render(),
    )
        .into_response()
}

/// The router of `--metrics-listen`.
pub fn router(broker: Arc<Broker>) -> Router {
    Router::new()
        .route("/metrics", get(serve))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .with_state(broker)
}

/// Sets the state gauges. Worker memory is read from /proc for every session worker, off the
/// async threads (one small read per worker, so a scrape of 10,000 sessions costs ~10k reads).
async fn sample(broker: &Broker) {
    let m = metrics();
    let sessions = broker.manager.all();
    m.sessions.set(sessions.len() as i64);
    m.tabs
        .set(sessions.iter().map(|s| s.tab_count()).sum::<usize>() as i64);
    let pids: Vec<i32> = broker.server.workers().iter().map(|w| w.pid()).collect();
    m.workers.set(pids.len() as i64);
    m.spare_workers.set(broker.server.spares().0 as i64);
    m.spare_workers_target
        .set(broker.server.spare_target() as i64);
    m.zygotes.set(broker.server.zygotes_alive() as i64);
    m.connections.set(broker.edge.conns.open() as i64);
    m.rate_limited_clients
        .set(broker.edge.creation.tracked() as i64);
    let rss = tokio::task::spawn_blocking(move || {
        pids.iter()
            .filter_map(|&pid| proc_stats::sample(pid))
            .fold((0u64, 0u64), |(sum, max), s| {
                (sum + s.rss_bytes, max.max(s.rss_bytes))
            })
    })
    .await;
    if let Ok((sum, max)) = rss {
        m.worker_rss_sum_bytes.set(sum as i64);
        m.worker_rss_max_bytes.set(max as i64);
    }
}
