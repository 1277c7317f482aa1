//! Running it in production, as an operator sees it: the probes a load balancer polls, the
//! metrics a monitoring system scrapes. Every test starts the real executable.

mod common;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;

/// An app whose `spin()` action announces itself in the log, then never returns.
const BUSY_APP: &str = r#"
    local App = {}
    App.__index = App
    function App:spin() print("spinning now") while true do end end
    function App:fail() error("nope") end
    session:createAppVariable(setmetatable({ n = 0 }, App))
"#;

/// Calls an action of variable 1 (its reply, if any, is the caller's business).
async fn call(ws: &mut Ws, id: i64, method: &str) {
    send(
        ws,
        json!({"userEvent": true, "messages": [
            msg("create", json!({"id": id, "parentId": 1, "nowatch": true,
                "properties": {"path": format!("{method}()"), "access": "action"}})),
            msg("update", json!({"varId": id, "value": null})),
        ]}),
    )
    .await;
}

/// A round trip through the worker: once it returns, the tab is attached to the session.
async fn round_trip(ws: &mut Ws) {
    send(ws, json!({"type": "get", "data": {"varIds": [1]}})).await;
    recv_until(ws, |m| m["type"] == "get").await;
}

/// The value of one sample (`name{labels}` exactly as exposed), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.split(' ').next()?.parse().ok())
    })
}

fn value(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

async fn get_url(url: &str) -> (u16, String) {
    let resp = client().get(url).send().await.expect("GET");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

/// Polls `GET url` until `cond` holds for its body (or the deadline passes).
async fn wait_for_body(url: &str, what: &str, cond: impl Fn(u16, &str) -> bool) -> String {
    let start = std::time::Instant::now();
    loop {
        let (status, body) = get_url(url).await;
        if cond(status, &body) {
            return body;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for {what}; last {status}:\n{body}"
        );
        // Polling an observable state (the endpoint), not synchronising on time.
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn health_and_readiness_answer_while_a_session_is_busy_in_a_lua_loop() {
    let broker = Broker::with_app(&[("main.lua", BUSY_APP)], &["--lua-time-limit", "0"]);
    let id = broker.create_session().await;
    let mut ws = connect(&broker, &id).await;
    call(&mut ws, 2, "spin").await;
    broker.wait_log("spinning now");

    assert_eq!(broker.get("/healthz").await, (200, "ok\n".to_string()));
    assert_eq!(broker.get("/readyz").await, (200, "ready\n".to_string()));
    let (status, metrics) = broker.get("/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(value(&metrics, "luabroker_sessions"), 1.0, "{metrics}");
    // Nor does the busy session hold up anyone else's.
    broker.create_session().await;
}

#[tokio::test]
async fn readyz_turns_503_at_the_session_cap_and_200_again_when_a_session_ends() {
    let broker = Broker::start(&["--max-sessions", "1", "--adoption-timeout", "300ms"]);
    assert_eq!(broker.get("/readyz").await.0, 200);
    broker.create_session().await;

    let (status, body) = broker.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("at the session cap"), "{body}");
    assert!(body.contains("--max-sessions 1"), "{body}");
    assert_eq!(broker.get("/healthz").await.0, 200);
    assert_eq!(broker.get("/").await.0, 503);

    // The session is never adopted; once it is culled the server is ready again.
    wait_for_body(&broker.url("/readyz"), "readyz 200", |s, _| s == 200).await;
    let metrics = broker.get("/metrics").await.1;
    assert_eq!(
        value(&metrics, "luabroker_refusals_total{reason=\"session_cap\"}"),
        1.0
    );
    assert_eq!(value(&metrics, "luabroker_sessions_refused_total"), 1.0);
    assert_eq!(
        value(
            &metrics,
            "luabroker_sessions_ended_total{cause=\"unadopted\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn readyz_turns_503_during_shutdown_while_healthz_still_answers() {
    let mut broker = Broker::with_app(
        &[("main.lua", BUSY_APP)],
        &["--lua-time-limit", "0", "--shutdown-grace", "4s"],
    );
    let id = broker.create_session().await;
    let mut ws = connect(&broker, &id).await;
    call(&mut ws, 2, "spin").await;
    broker.wait_log("spinning now");

    // The busy worker ignores the polite stop, so the drain lasts until its SIGTERM.
    broker.signal(Signal::SIGTERM);
    broker.wait_log("shutting down");
    let (status, body) = broker.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body, "not ready: the server is shutting down\n");
    assert_eq!(broker.get("/healthz").await.0, 200);
    assert_eq!(
        broker.get("/").await.0,
        503,
        "no new sessions while draining"
    );
    assert!(broker.wait_exit().success());
}

#[tokio::test]
async fn readyz_turns_503_when_the_zygote_dies() {
    let broker = Broker::start(&[]);
    assert_eq!(broker.get("/readyz").await.0, 200);
    let zygote = broker
        .children()
        .into_iter()
        .find(|p| comm(*p).as_deref() == Some("lb-zygote"))
        .expect("a zygote process");
    kill(Pid::from_raw(zygote), Signal::SIGKILL).unwrap();
    let body = wait_for_body(&broker.url("/readyz"), "readyz 503", |s, _| s == 503).await;
    assert!(body.contains("zygote is down"), "{body}");
    // Sessions are still served (by exec), and the process is healthy.
    broker.create_session().await;
    assert_eq!(broker.get("/healthz").await.0, 200);
}

#[tokio::test]
async fn metrics_move_when_sessions_are_created_crash_and_end() {
    let broker = Broker::with_app(
        &[("main.lua", BUSY_APP)],
        &["--metrics-listen", "127.0.0.1:0", "--idle-timeout", "300ms"],
    );
    let metrics_url = format!("http://{}/metrics", broker.printed("metrics on http://"));
    // On their own address, the metrics are no longer on the public one.
    assert_eq!(broker.get("/metrics").await.0, 404);

    let url = &metrics_url;
    let scrape = || async move {
        let resp = client().get(url).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"));
        resp.text().await.unwrap()
    };
    let before = scrape().await;
    assert_eq!(value(&before, "luabroker_sessions_created_total"), 0.0);
    assert!(
        before.contains("luabroker_build_info{version=\""),
        "{before}"
    );

    let id = broker.create_session().await;
    let mut ws = connect(&broker, &id).await;
    round_trip(&mut ws).await;
    call(&mut ws, 2, "fail").await;
    let err = recv_until(&mut ws, |m| m["type"] == "error").await;
    assert_eq!(err["data"]["code"], "lua-error", "{err}");

    let live = scrape().await;
    assert_eq!(value(&live, "luabroker_sessions_created_total"), 1.0);
    assert_eq!(
        value(&live, "luabroker_session_creation_seconds_count"),
        1.0
    );
    assert_eq!(value(&live, "luabroker_sessions"), 1.0);
    assert_eq!(value(&live, "luabroker_tabs"), 1.0);
    assert_eq!(value(&live, "luabroker_workers"), 1.0);
    assert_eq!(value(&live, "luabroker_lua_errors_total"), 1.0);
    assert!(
        value(&live, "luabroker_worker_rss_sum_bytes") > 1e6,
        "{live}"
    );
    assert!(
        value(&live, "luabroker_worker_rss_max_bytes") > 1e6,
        "{live}"
    );
    assert!(value(&live, "luabroker_messages_total{direction=\"to_worker\"}") >= 3.0);
    assert!(value(&live, "luabroker_messages_total{direction=\"to_browser\"}") >= 2.0);
    assert!(value(&live, "luabroker_bytes_total{direction=\"to_worker\"}") > 50.0);
    assert!(value(&live, "luabroker_bytes_total{direction=\"to_browser\"}") > 20.0);

    // A crash: the worker is killed from outside.
    let worker = broker.workers()[0];
    kill(Pid::from_raw(worker), Signal::SIGKILL).unwrap();
    let (code, _, _) = recv_close(&mut ws).await;
    assert_eq!(code, 1011);
    // With its tab gone the crashed session idles out.
    let ended = wait_for_body(&metrics_url, "the session to end", |_, body| {
        sample(body, "luabroker_sessions_ended_total{cause=\"idle\"}") == Some(1.0)
    })
    .await;
    assert_eq!(value(&ended, "luabroker_worker_crashes_total"), 1.0);
    assert_eq!(
        value(&ended, "luabroker_worker_exits_total{cause=\"signal\"}"),
        1.0
    );
    let ended = scrape().await;
    assert_eq!(value(&ended, "luabroker_sessions"), 0.0);
    assert_eq!(value(&ended, "luabroker_workers"), 0.0);
    assert_eq!(value(&ended, "luabroker_tabs"), 0.0);
}
