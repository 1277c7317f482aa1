//! The HTTP surface (the seed's HTTPEndpoint): `GET /` creates a session, `/<id>` serves its
//! page, `/ws/<id>` its WebSocket, plus metrics, the optional debug pages and the optional
//! static frontend. Every path is untrusted: anything that is not a route or a live session id
//! is a 404 page (or a file under `--static`), never a panic.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Extension, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::broker::Broker;
use crate::edge::client_addr::ClientAddr;
use crate::health;
use crate::manager::CreateError;
use crate::page;
use crate::scrape;
use crate::server::StartError;
use crate::session::Session;
use crate::session_id::is_session_id;
use crate::variable_browser;
use crate::ws;

pub fn router(broker: Arc<Broker>) -> Router {
    let mut router = Router::new()
        .route("/", get(create_session))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz));
    if broker.config.metrics_listen.is_none() {
        router = router.route("/metrics", get(scrape::serve));
    }
    router
        .route("/ws/{id}", get(ws::upgrade))
        .route("/_luabroker/{file}", get(page_asset))
        .route("/{id}", get(session_page))
        .route("/{id}/{*rest}", get(session_subpath))
        .fallback(fallback)
        .with_state(broker)
}

async fn create_session(
    State(broker): State<Arc<Broker>>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
) -> Response {
    // The client's own bound first: a flood from one address spends its tokens, not the
    // descriptor budget everyone shares.
    if let Err(wait) = broker.edge.creation.check(client) {
        return crate::edge::rate_limit::refusal(wait);
    }
    if let Err(short) = crate::fd_budget::budget().admit_session() {
        return crate::fd_budget::refusal(short);
    }
    let created = broker.create_session().await;
    if created.is_err() {
        broker.server.refill_spares();
    }
    match created {
        // Built by hand: axum's Redirect helpers answer 303/307/308 (ARCHITECTURE.md 8). The
        // spare pool is refilled (and a session started ahead told it is claimed) once the
        // 302 is on its way (`after_reply`).
        Ok(created) => {
            let location = format!("/{}", created.session.id);
            let server = broker.server.clone();
            let refill = crate::after_reply::ThenRun::new(move || created.after_reply(&server));
            Response::builder()
                .status(StatusCode::FOUND)
                .header(header::LOCATION, location)
                .body(Body::new(refill))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
        Err(e @ (CreateError::Full(_) | CreateError::Busy(_) | CreateError::Closing)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            format!("{e}; try again shortly\n"),
        )
            .into_response(),
        Err(CreateError::Start(StartError::MainFailed(lua_error))) => {
            tracing::error!("main.lua failed: {lua_error}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("main.lua failed:\n{lua_error}\n"),
            )
                .into_response()
        }
        Err(CreateError::Start(e)) => {
            tracing::error!("session start failed: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the session could not be started: {e}\n"),
            )
                .into_response()
        }
    }
}

/// The built-in page's modules and stylesheet. `no-cache`: a browser revalidates them, so a
/// page served by a newer executable never runs an older script.
async fn page_asset(
    State(broker): State<Arc<Broker>>,
    Path(file): Path<String>,
    req: Request,
) -> Response {
    let Some((content_type, body)) = page::asset(&file) else {
        return fallback(State(broker), req).await;
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn session_page(
    State(broker): State<Arc<Broker>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    match broker.manager.get(&id) {
        Some(session) => serve_session_page(&broker, &session, req).await,
        None => fallback(State(broker), req).await,
    }
}

async fn session_subpath(
    State(broker): State<Arc<Broker>>,
    Path((id, rest)): Path<(String, String)>,
    req: Request,
) -> Response {
    let Some(session) = broker.manager.get(&id) else {
        return fallback(State(broker), req).await;
    };
    match rest.as_str() {
        "variables.json" | "variables" if broker.config.debug_pages => {
            debug_variables(&session, rest == "variables.json", req.uri().query()).await
        }
        // Off without the flag: a 404 rather than the session page, so that nobody mistakes
        // the page for the debug view (and a probe cannot tell the views exist).
        "variables.json" | "variables" => (
            StatusCode::NOT_FOUND,
            Html(page::error_page(
                "Not found",
                "The debug views are off; start the server with --debug-pages.",
            )),
        )
            .into_response(),
        _ => serve_session_page(&broker, &session, req).await,
    }
}

/// The page of a live session, with the cookie ui-engine's frontend reads. A crashed
/// session's page load starts a fresh worker first.
async fn serve_session_page(
    broker: &Arc<Broker>,
    session: &Arc<Session>,
    req: Request,
) -> Response {
    match broker.revive(session).await {
        Ok(()) => {}
        Err(StartError::SessionClosing(why)) => return not_found(&session.id, Some(&why)),
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html(page::error_page(
                    "The session could not be restarted",
                    &e.to_string(),
                )),
            )
                .into_response()
        }
    }
    let mut response = match &broker.config.static_dir {
        Some(dir) => ServeFile::new(dir.join("index.html"))
            .oneshot(req)
            .await
            .map(IntoResponse::into_response)
            .unwrap_or_else(|e| match e {}),
        None => Html(page::SESSION_PAGE).into_response(),
    };
    if let Ok(cookie) =
        HeaderValue::from_str(&format!("ui-session={}; Path=/; SameSite=Lax", session.id))
    {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// The debug variable browser (`crate::variable_browser`): the JSON listing (with the
/// tracker's change count in `X-Change-Count`, its pass count in `X-Passes`, and the median and
/// longest of the recent passes in `X-Pass-Median-Ns` and `X-Pass-Max-Ns`) or the page; `?diag=N` sets the diagnostic
/// level first.
async fn debug_variables(session: &Session, as_json: bool, query: Option<&str>) -> Response {
    let diag = match variable_browser::diag_level(query) {
        Ok(diag) => diag,
        Err(why) => return (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response(),
    };
    let Some(worker) = session.worker() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the session has no running worker\n",
        )
            .into_response();
    };
    let Some(listing) = worker.debug_listing(diag, Duration::from_secs(5)).await else {
        return (StatusCode::GATEWAY_TIMEOUT, "the worker did not answer\n").into_response();
    };
    let mut response = if as_json {
        axum::Json(variable_browser::to_json(&listing)).into_response()
    } else {
        Html(variable_browser::page(&session.id, &listing)).into_response()
    };
    let headers = response.headers_mut();
    headers.insert("x-change-count", HeaderValue::from(listing.change_count));
    headers.insert(
        "x-diag-level",
        HeaderValue::from(u16::from(listing.diag_level)),
    );
    headers.insert("x-passes", HeaderValue::from(listing.passes));
    if let Some((median, max)) = variable_browser::pass_times(&listing) {
        headers.insert("x-pass-median-ns", HeaderValue::from(median));
        headers.insert("x-pass-max-ns", HeaderValue::from(max));
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Not a route and not a session: a file of the static frontend, or the 404 page.
async fn fallback(State(broker): State<Arc<Broker>>, req: Request) -> Response {
    if let Some(dir) = &broker.config.static_dir {
        // ServeDir normalises the path and refuses `..`; a symlink must not lead out either.
        let confine = broker.config.dir.as_deref().unwrap_or(dir);
        if !crate::site::may_serve(dir, confine, req.uri().path()) {
            return not_found("", None);
        }
        let served = tower_http::services::ServeDir::new(dir)
            .oneshot(req)
            .await
            .map(IntoResponse::into_response)
            .unwrap_or_else(|e| match e {});
        if served.status() != StatusCode::NOT_FOUND {
            return served;
        }
        return not_found("", None);
    }
    let path = req.uri().path().trim_start_matches('/');
    let id = path.split('/').next().unwrap_or("");
    let why = if is_session_id(id) {
        broker.tombstone(id)
    } else {
        None
    };
    not_found(id, why.as_deref())
}

fn not_found(id: &str, why: Option<&str>) -> Response {
    (StatusCode::NOT_FOUND, Html(page::not_found_page(id, why))).into_response()
}
