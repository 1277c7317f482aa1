//! Relay benchmark: the `update` on an action → Lua → change detection → `update` back round
//! trip over one WebSocket (p50/p99 over 10,000 iterations), and relayed messages per second
//! for one session (frames of 100 `get` messages, pipelined, each answered by the worker).
//!
//! Run: `cargo bench -p luabroker --bench relay` (release build). Prints figures; asserts
//! only that every answer arrived.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const APP: &str = r#"
local App = {}
App.__index = App
function App:increment() self.count = self.count + 1 end
session:createAppVariable(setmetatable({ count = 0, label = "bench" }, App))
"#;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let broker = Broker::with_app(&[("main.lua", APP)], &[]);
    let id = broker.create_session().await;
    let mut ws = connect(&broker, &id).await;
    send(
        &mut ws,
        json!([
            msg(
                "create",
                json!({"id": 2, "parentId": 1, "properties": {"path": "count"}})
            ),
            msg(
                "create",
                json!({"id": 3, "parentId": 1, "nowatch": true,
                "properties": {"path": "increment()", "access": "action"}})
            ),
        ]),
    )
    .await;
    recv_until(&mut ws, |m| {
        m["data"]["varId"] == 2 && m["data"]["value"] == 0
    })
    .await;

    let click = json!({"userEvent": true, "messages": [
        {"type": "update", "data": {"varId": 3, "value": null}}
    ]})
    .to_string();
    let iterations = 10_000;
    let mut times = Vec::with_capacity(iterations);
    for i in 1..=iterations as i64 {
        let start = Instant::now();
        ws.send(Message::Text(click.clone().into())).await.unwrap();
        let got = recv_until(&mut ws, |m| m["data"]["varId"] == 2).await;
        times.push(start.elapsed());
        assert_eq!(got["data"]["value"], i);
    }
    times.sort();
    println!(
        "action round trip, {iterations} iterations: p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs",
        percentile(&times, 0.5).as_secs_f64() * 1e6,
        percentile(&times, 0.9).as_secs_f64() * 1e6,
        percentile(&times, 0.99).as_secs_f64() * 1e6,
    );

    // Throughput: 1,000 frames × 100 `get` messages, pipelined; every get is answered.
    let per_frame = 100;
    let frames = 1_000;
    let frame = serde_json::Value::Array(
        (0..per_frame)
            .map(|_| msg("get", json!({"varIds": [2]})))
            .collect(),
    )
    .to_string();
    let (mut sink, mut stream) = ws.split();
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        for _ in 0..frames {
            sink.send(Message::Text(frame.clone().into()))
                .await
                .unwrap();
        }
        sink
    });
    let mut answered = 0;
    while answered < per_frame * frames {
        match stream.next().await.unwrap().unwrap() {
            Message::Text(t) => answered += t.as_str().matches("\"type\":\"get\"").count(),
            _ => continue,
        }
    }
    let secs = start.elapsed().as_secs_f64();
    drop(writer.await.unwrap());
    println!(
        "relay, one session: {} messages in and {answered} out in {secs:.2} s = {:.0} messages/s each way",
        per_frame * frames,
        answered as f64 / secs
    );
}
