//! Running out of descriptors, at process level: the broker started with RLIMIT_NOFILE 256
//! keeps answering. Past its headroom `GET /` and new WebSocket upgrades get a prompt `503`
//! with `Retry-After` (never a hang, never a 500), `/healthz` still answers, the refusals are
//! counted in the metrics, and the start-up log says how many sessions the limit allows.

mod common;

use std::time::Duration;

use common::*;

/// Any one request must be answered within this (a hang is a failure).
const PROMPT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_descriptor_headroom_requests_get_503_promptly() {
    let broker = Broker::start_with(
        &["--spare-workers", "2"],
        Launch {
            fd_limit: Some(256),
            ..Launch::default()
        },
    );
    broker.wait_log("the OS limits allow about");
    let client = client();
    let mut tabs = Vec::new();
    // 256 descriptors allow far fewer than 200 sessions with a tab: a 503 must come.
    let body = fill_until_refused(&broker, &client, &mut tabs, 200).await;
    assert!(body.contains("file descriptors"), "{body}");
    assert!(!tabs.is_empty(), "some sessions fit before the limit");
    // Still serving: the health check, and further sessions are refused promptly again (the
    // budget's recount may find room for a few more first, more of them the slower the
    // machine, as each recount replaces an estimate with the count: those must still work).
    let (status, _) = broker.get("/healthz").await;
    assert_eq!(status, 200);
    let again = fill_until_refused(&broker, &client, &mut tabs, 60).await;
    assert!(again.contains("file descriptors"), "{again}");
    // `/readyz` says so while no session fits. A recount since the refusal may have found room
    // for one more (what a session was estimated to cost against what it holds): then that
    // one is created, and the question asked again.
    let mut not_ready = None;
    for _ in 0..5 {
        let (status, body) = broker.get("/readyz").await;
        if status == 503 {
            not_ready = Some(body);
            break;
        }
        fill_until_refused(&broker, &client, &mut tabs, 60).await;
    }
    let not_ready = not_ready.expect("/readyz kept answering ready with no session fitting");
    assert!(not_ready.contains("file descriptors"), "{not_ready}");
    let (_, metrics) = broker.get("/metrics").await;
    assert!(
        metrics.contains("reason=\"descriptors\""),
        "refusals counted by reason:\n{metrics}"
    );
    // Tabs closing give the room back.
    drop(tabs);
    wait_until("room for a session again", || {
        std::fs::read_dir(format!("/proc/{}/fd", broker.pid))
            .map(|d| d.count() < 128)
            .unwrap_or(false)
    })
    .await;
    assert!(!broker.log().contains("panicked"), "{}", broker.log());
}

/// Creates sessions, each with an open tab, until `GET /` (or a tab's upgrade) is refused with
/// `503` + `Retry-After: 1`; every answer must come promptly and be a 302 or a 503. Returns the
/// refusal's body; panics if `attempts` sessions all fit.
async fn fill_until_refused(
    broker: &Broker,
    client: &reqwest::Client,
    tabs: &mut Vec<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    >,
    attempts: usize,
) -> String {
    for _ in 0..attempts {
        let resp = tokio::time::timeout(PROMPT, client.get(broker.url("/")).send())
            .await
            .expect("GET / answered promptly")
            .expect("GET / got an answer");
        match resp.status().as_u16() {
            302 => {
                let id = resp.headers()["location"].to_str().unwrap()[1..].to_string();
                let ws = tokio::time::timeout(
                    PROMPT,
                    tokio_tungstenite::connect_async(broker.ws_url(&id)),
                )
                .await
                .expect("WebSocket answered promptly");
                match ws {
                    Ok((ws, _)) => tabs.push(ws),
                    Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                        assert_eq!(r.status().as_u16(), 503, "upgrade refused with 503");
                        assert_eq!(r.headers()["retry-after"], "1");
                    }
                    Err(e) => panic!("WebSocket failed instead of a 503: {e}"),
                }
            }
            503 => {
                assert_eq!(resp.headers()["retry-after"], "1");
                return resp.text().await.unwrap();
            }
            other => panic!(
                "GET / answered {other}: {:?}\nlog:\n{}",
                resp.text().await,
                broker.log()
            ),
        }
    }
    panic!("{attempts} sessions with a tab fitted: no 503 once the descriptors ran low");
}
