//! Session-creation benchmark: `GET /` → `302` latency (1,000 sequential requests), the
//! creation rate with 8 concurrent clients, and the memory (PSS) of an idle worker.
//!
//! Run: `cargo bench -p luabroker --bench sessions` (release build, default app).
//! Prints medians and percentiles; asserts nothing.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn pss_kib(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find(|l| l.starts_with("Pss:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

async fn create(client: &reqwest::Client, url: &str) -> Duration {
    let start = Instant::now();
    let resp = client.get(url).send().await.expect("GET /");
    let took = start.elapsed();
    assert_eq!(resp.status().as_u16(), 302);
    took
}

#[tokio::main]
async fn main() {
    let sequential = 1_000;
    let broker = Broker::start(&["--max-sessions", "100000", "--max-pending-sessions", "64"]);
    let client = client();
    let url = broker.url("/");
    for _ in 0..20 {
        create(&client, &url).await; // warm-up: page cache, connection
    }
    let mut times = Vec::with_capacity(sequential);
    for _ in 0..sequential {
        times.push(create(&client, &url).await);
    }
    times.sort();
    println!(
        "GET / -> 302, {sequential} sequential: p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.9).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times.last().unwrap().as_secs_f64() * 1e3,
    );

    let clients = 8;
    let window = Duration::from_secs(3);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while started.elapsed() < window {
                    create(&client, &url).await;
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{clients} concurrent clients: {total} sessions in {secs:.2} s = {:.0} sessions/s",
        total as f64 / secs
    );

    let mut pss: Vec<u64> = broker
        .workers()
        .iter()
        .filter_map(|p| pss_kib(*p))
        .collect();
    pss.sort();
    if !pss.is_empty() {
        println!(
            "idle worker PSS over {} workers: median {} KiB, p90 {} KiB",
            pss.len(),
            pss[pss.len() / 2],
            pss[pss.len() * 9 / 10]
        );
    }
    if let Some(broker_pss) = pss_kib(broker.pid) {
        println!("broker PSS with {} sessions: {} KiB", pss.len(), broker_pss);
    }
}
