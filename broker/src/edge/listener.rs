//! The HTTP server loop, in place of `axum::serve`, so that every connection is bounded.
//!
//! Each accepted connection is admitted by the [`ConnTable`](super::conn_table) (or refused
//! with a one-line 503 and closed), reads a PROXY header if its peer is a trusted proxy, and is
//! then served by hyper's HTTP/1 connection (with upgrades, for tabs) under a watchdog that
//! applies the timeout of its current [`Phase`](super::conn_state::Phase): the idle timeout
//! while no request is in progress, the header-read timeout once a request's first byte has
//! arrived. Shed connections and expired ones are dropped. At shutdown the loop stops
//! accepting, asks every connection to finish its request and close, and waits for them.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::serve::Listener;
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::client_addr::{read_proxy_header, ConnInfo};
use super::conn_io::ConnIo;
use super::conn_state::{ConnState, Expiry, Phase};
use super::conn_table::{Permit, Refusal};
use super::Edge;
use crate::guarded_listener::GuardedListener;
use crate::metrics::metrics;

/// The per-connection timeouts (flags `--header-read-timeout`, `--connection-idle-timeout`).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header_read: Duration,
    /// `None`: an idle connection stays until the client closes it.
    pub idle: Option<Duration>,
}

/// Serves `router` on `listener` until `stop` resolves, then drains the connections.
pub async fn serve(
    mut listener: GuardedListener,
    router: Router,
    edge: Arc<Edge>,
    timeouts: Timeouts,
    stop: impl Future<Output = ()>,
) {
    let conns = TaskTracker::new();
    let closing = CancellationToken::new();
    tokio::pin!(stop);
    loop {
        // The guarded listener answers a connection it cannot take for lack of descriptors
        // itself (503, guarded_listener.rs), so what comes out here is a working connection.
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        // Admitted here, in accept order, so the cap refuses the newest connection.
        let peer_ip = peer.ip().to_canonical();
        let trusted = edge.trusted.contains(peer_ip);
        // A trusted proxy's connections count against the client its header names.
        let permit = match edge.conns.admit((!trusted).then_some(peer_ip)) {
            Ok(admitted) => {
                if admitted.shed {
                    metrics().limit_hit("connection_shed");
                }
                admitted.permit
            }
            Err(refusal) => {
                conns.spawn(refuse(stream, refusal));
                continue;
            }
        };
        conns.spawn(serve_conn(
            stream,
            peer,
            trusted,
            permit,
            router.clone(),
            edge.clone(),
            timeouts,
            closing.clone(),
        ));
    }
    drop(listener);
    closing.cancel();
    conns.close();
    conns.wait().await;
}

#[allow(clippy::too_many_arguments)]
async fn serve_conn(
    mut stream: TcpStream,
    peer: SocketAddr,
    trusted: bool,
    mut permit: Permit,
    router: Router,
    edge: Arc<Edge>,
    timeouts: Timeouts,
    closing: CancellationToken,
) {
    let (proxied, prefix) = if trusted {
        match read_proxy_header(&mut stream, timeouts.header_read).await {
            Ok((client, rest)) => {
                if let Some(ip) = client {
                    if let Err(refusal) = permit.set_client(ip) {
                        drop(permit);
                        return refuse(stream, refusal).await;
                    }
                }
                (client, rest)
            }
            Err(e) => {
                metrics().refused("bad_proxy_header");
                tracing::debug!(%peer, "closing a trusted-proxy connection: {e}");
                return;
            }
        }
    } else {
        (None, Bytes::new())
    };
    let _ = stream.set_nodelay(true);
    let state = Arc::new(ConnState::new(permit));
    let info = ConnInfo {
        peer,
        trusted,
        proxied,
    };
    let io = ConnIo::new(stream, prefix, state.clone());
    let service = {
        let state = state.clone();
        let edge = edge.clone();
        hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let client = info.client(&edge.trusted, req.headers());
            req.extensions_mut().insert(client);
            state.request_started();
            // Dropped with the response body, i.e. once the response is written (or lost).
            let finished = Finished(state.clone());
            let response = router.clone().oneshot(req);
            async move {
                let response = response.await?;
                Ok::<_, std::convert::Infallible>(response.map(move |body| {
                    Body::new(body.map_frame(move |frame| {
                        let _keep = &finished;
                        frame
                    }))
                }))
            }
        })
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    // Our watchdog applies the header-read timeout (from a request's first byte) and the idle
    // timeout; hyper's own timer would count the idle wait as header time.
    http.keep_alive(true).header_read_timeout(None);
    let conn = http
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        let deadline = state.deadline(timeouts.header_read, timeouts.idle);
        let changed = state.changed.notified();
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
                break;
            }
            () = changed => {}
            () = sleep_until(deadline.map(|d| d.0)) => {
                if state.deadline(timeouts.header_read, timeouts.idle) != deadline {
                    continue; // the phase moved on just now
                }
                metrics().limit_hit(match deadline.map(|d| d.1) {
                    Some(Expiry::HeaderRead) => "header_read_timeout",
                    _ => "connection_idle_timeout",
                });
                break;
            }
            () = state.shed.cancelled(), if !draining => {
                if state.phase() != Phase::Busy {
                    break;
                }
                // A request began as it was shed: let it finish, then close.
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
            () = closing.cancelled(), if !draining => {
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
    state.finish();
}

/// Marks the request finished when dropped.
struct Finished(Arc<ConnState>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Closes a connection that cannot be admitted, with a 503 saying why. The write gets a
/// second at most: a refused client gets no more of our time.
async fn refuse(mut stream: TcpStream, refusal: Refusal) {
    let (reason, why) = match refusal {
        Refusal::Full => ("connection_cap", "the server is at its connection limit"),
        Refusal::PerClient => (
            "client_connection_cap",
            "too many connections from your address",
        ),
    };
    metrics().refused(reason);
    let body = format!("{why}; try again shortly\n");
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}
