//! One tab's WebSocket: `/ws/<id>`.
//!
//! Browser frames are parsed and validated here, once (`protocol::browser::parse_frame`); a bad
//! message is answered with an `error` message straight away and never reaches the worker, and
//! never costs the connection. Valid messages go to the session's worker as one typed `Frame`;
//! what the worker sends back for this tab arrives through the session's per-tab queue.

use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use protocol::browser::{encode_text, parse_frame, ErrorCode, MessageError};
use protocol::ipc::BrokerToWorker;
use protocol::limits::MAX_BROWSER_FRAME;
use tokio::sync::mpsc;

use crate::broker::Broker;
use crate::edge::tab_keepalive::{next_tick, ping_ticker, Liveness};
use crate::live_config;
use crate::metrics::metrics;
use crate::session::{close, Attached, Lifecycle, Session, TabOut};

/// Frames larger than the protocol limit are still read (up to this) so the tab gets a `limit`
/// error instead of a dropped connection; past this the transport closes with 1009.
const TRANSPORT_FRAME_LIMIT: usize = 4 * MAX_BROWSER_FRAME;

/// Bytes read from a tab's socket at a time. tungstenite's default (128 KiB) zero-fills that
/// much before every read: 128 KiB of resident memory per tab and a 128 KiB memset per
/// message. Larger frames still arrive whole (the buffer grows to the frame's length).
const READ_BUFFER: usize = 8 * 1024;

pub async fn upgrade(
    State(broker): State<Arc<Broker>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // The session is looked up before the upgrade is validated: an unknown id is a 404
    // whatever the request looks like.
    let Some(session) = broker.manager.get(&id) else {
        return (StatusCode::NOT_FOUND, "no such session\n").into_response();
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    if let Err(short) = crate::fd_budget::budget().admit_tab() {
        return crate::fd_budget::refusal(short);
    }
    if let Err(why) = check_origin(&headers, &broker.config.allow_origin) {
        tracing::warn!(session = %id, "refused WebSocket: {why}");
        return (StatusCode::FORBIDDEN, format!("{why}\n")).into_response();
    }
    ws.max_message_size(TRANSPORT_FRAME_LIMIT)
        .max_frame_size(TRANSPORT_FRAME_LIMIT)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| serve_tab(socket, broker, session))
}

/// Same-origin unless allowed: an `Origin` header whose host differs from `Host` is refused.
fn check_origin(headers: &HeaderMap, allowed: &[String]) -> Result<(), String> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(()); // not a browser, or a same-origin request from an old one
    };
    let origin = origin
        .to_str()
        .map_err(|_| "unreadable Origin header".to_string())?;
    if allowed.iter().any(|a| a.trim_end_matches('/') == origin) {
        return Ok(());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(origin)
        .trim_end_matches('/');
    if !host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(format!("origin {origin} is not allowed for host {host}"))
    }
}

async fn serve_tab(mut socket: WebSocket, broker: Arc<Broker>, session: Arc<Session>) {
    if let Err(why) = revive_in_time(&broker, &session).await {
        return refuse_tab(&mut socket, &why).await;
    }
    let Attached {
        tab,
        mut outbox,
        worker,
        kicked,
    } = match session.attach_tab(live_config::live(&broker.config).tab_queue_limit) {
        Ok(attached) => attached,
        Err(state) => {
            let why = match state {
                Lifecycle::Ending { why } => why,
                Lifecycle::Crashed { cause } => format!("the session's worker crashed ({cause})"),
                Lifecycle::Live => "the session's worker is not running".into(),
            };
            return refuse_tab(&mut socket, &why).await;
        }
    };
    worker.send(BrokerToWorker::TabOpened { tab }).await;
    tracing::debug!(session = %session.id, tab, "tab connected");

    let (mut sink, mut stream) = socket.split();
    // Browser → worker. Bad messages are answered here, through the tab's own queue.
    let replies = session.tab_sender(tab);
    let liveness = Liveness::default();
    let reader = async {
        while let Some(incoming) = stream.next().await {
            if incoming.is_ok() {
                liveness.heard();
            }
            let text = match incoming {
                Ok(Message::Text(text)) => text,
                Ok(Message::Binary(_)) => {
                    let e = error_text(None, ErrorCode::BadRequest, "frames must be text (JSON)");
                    queue_reply(&replies, e).await;
                    continue;
                }
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Ok(Message::Close(_)) => return ReaderEnd::TabLeft,
                Err(e) => {
                    tracing::debug!(session = %session.id, tab, "tab socket error: {e}");
                    return ReaderEnd::TabLeft;
                }
            };
            session.touch();
            let (refusals, frame) = match parse_frame(text.as_str()) {
                Err(e) if e.code == ErrorCode::Limit => {
                    metrics().limit_hit("browser_frame");
                    (vec![e.into_message()], None)
                }
                Ok(frame) => {
                    let mut refusals = Vec::new();
                    let mut messages = Vec::with_capacity(frame.messages.len());
                    for m in frame.messages {
                        match m {
                            Ok(m) => messages.push(m),
                            Err(e) => refusals.push(e.into_message()),
                        }
                    }
                    (refusals, Some((frame.user_event, messages)))
                }
                Err(e) => (vec![e.into_message()], None),
            };
            if !refusals.is_empty() {
                queue_reply(&replies, encode_text(&refusals)).await;
            }
            if let Some((user_event, messages)) = frame {
                metrics().to_worker(messages.len(), text.len());
                if !messages.is_empty()
                    && !worker
                        .send(BrokerToWorker::Frame {
                            tab,
                            user_event,
                            messages,
                        })
                        .await
                {
                    return ReaderEnd::WorkerGone;
                }
            }
        }
        ReaderEnd::TabLeft
    };
    // Worker (and broker) → browser.
    // Worker (and broker) → browser, and the keep-alive pings (edge/tab_keepalive.rs).
    let mut pings = ping_ticker(broker.config.ws_ping_interval);
    let writer = async {
        loop {
            let out = tokio::select! {
                out = outbox.recv() => out,
                () = next_tick(&mut pings) => {
                    if !liveness.answered() {
                        return WriterEnd::Unresponsive;
                    }
                    if sink.send(Message::Ping(Default::default())).await.is_err() {
                        return WriterEnd::Done;
                    }
                    continue;
                }
            };
            match out {
                None => return WriterEnd::Done,
                Some(TabOut::Text(text)) => {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        return WriterEnd::Done;
                    }
                }
                Some(TabOut::Close(code, reason)) => {
                    let _ = sink.send(close_message(code, &reason)).await;
                    return WriterEnd::Done;
                }
            }
        }
    };
    tokio::pin!(reader, writer);
    tokio::select! {
        end = &mut reader => {
            if end == ReaderEnd::WorkerGone {
                // The crash notice and close frame are on their way into the outbox.
                let _ = tokio::time::timeout(CRASH_NOTICE_WAIT, &mut writer).await;
            }
        }
        end = &mut writer => {
            if end == WriterEnd::Unresponsive {
                metrics().limit_hit("ws_ping");
                tracing::info!(session = %session.id, tab, "tab disconnected: it stopped answering pings");
            }
        }
        () = kicked.cancelled() => {
            // The tab stopped reading and its queue overflowed. Its socket may be blocked on
            // a full TCP buffer, so the connection is dropped rather than closed politely.
            tracing::warn!(session = %session.id, tab, "tab disconnected: it fell too far behind");
        }
    }
    session.detach_tab(tab);
    worker.send(BrokerToWorker::TabClosed { tab }).await;
    tracing::debug!(session = %session.id, tab, "tab disconnected");
}

/// A crashed session's tab coming back gets a fresh worker, within `--ws-handshake-timeout`.
/// The restart runs in its own task: past the timeout the tab is refused and the restart
/// finishes for the next one (a start cut short could leave a half-started process behind).
async fn revive_in_time(broker: &Arc<Broker>, session: &Arc<Session>) -> Result<(), String> {
    let reviving = {
        let (broker, session) = (broker.clone(), session.clone());
        tokio::spawn(async move { broker.revive(&session).await })
    };
    let revived = match crate::config::Config::opt(broker.config.ws_handshake_timeout) {
        Some(limit) => match tokio::time::timeout(limit, reviving).await {
            Ok(revived) => revived,
            Err(_) => {
                metrics().limit_hit("ws_handshake_timeout");
                tracing::warn!(session = %session.id, "tab refused: the session did not start within {limit:?}");
                return Err(format!(
                    "the session did not start within {limit:?}; reload to try again"
                ));
            }
        },
        None => reviving.await,
    };
    match revived {
        Ok(started) => started.map_err(|e| e.to_string()),
        Err(join) => Err(join.to_string()),
    }
}

/// Tells a tab why it cannot have its session (`session-crashed`) and closes it with 1011.
async fn refuse_tab(socket: &mut WebSocket, why: &str) {
    let text = error_text(None, ErrorCode::SessionCrashed, why);
    let _ = socket.send(Message::Text(text.into())).await;
    let _ = socket
        .send(close_message(close::SERVER_ERROR, "session unavailable"))
        .await;
}

#[derive(PartialEq)]
enum WriterEnd {
    Done,
    /// Nothing arrived from the tab between two pings.
    Unresponsive,
}

#[derive(PartialEq)]
enum ReaderEnd {
    TabLeft,
    WorkerGone,
}

/// How long a tab whose worker died waits for the crash notice before it is closed anyway.
const CRASH_NOTICE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Queues a broker-made reply (a refusal) behind whatever the worker already sent the tab.
async fn queue_reply(replies: &Option<mpsc::Sender<TabOut>>, text: String) {
    if let Some(tx) = replies {
        let _ = tx.send(TabOut::Text(text)).await;
    }
}

fn error_text(var_id: Option<i64>, code: ErrorCode, description: &str) -> String {
    encode_text(&[MessageError {
        var_id,
        code,
        description: description.to_string(),
    }
    .into_message()])
}

fn close_message(code: u16, reason: &str) -> Message {
    // Close reasons are capped at 123 bytes by the protocol.
    let mut reason = reason.to_string();
    while reason.len() > 123 {
        reason.pop();
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(reason),
    }))
}
