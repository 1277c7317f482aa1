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
    let mut refused = None;
    // 256 descriptors allow far fewer than 200 sessions with a tab: a 503 must come.
    for _ in 0..200 {
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
                refused = Some(resp.text().await.unwrap());
                break;
            }
            other => panic!(
                "GET / answered {other}: {:?}\nlog:\n{}",
                resp.text().await,
                broker.log()
            ),
        }
    }
    let body = refused.expect("a 503 once the descriptors ran low");
    assert!(body.contains("file descriptors"), "{body}");
    assert!(!tabs.is_empty(), "some sessions fit before the limit");
    // Still serving: the health check, and a further GET / is refused promptly again.
    let (status, _) = broker.get("/healthz").await;
    assert_eq!(status, 200);
    let again = tokio::time::timeout(PROMPT, client.get(broker.url("/")).send())
        .await
        .expect("prompt")
        .unwrap();
    assert_eq!(again.status().as_u16(), 503);
    let (status, ready) = broker.get("/readyz").await;
    assert_eq!(status, 503, "{ready}");
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
