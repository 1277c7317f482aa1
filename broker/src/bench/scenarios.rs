//! The scenarios. Each one drives the server the way browsers would (real HTTP requests, real
//! WebSockets) and returns the rows it measured; a scenario never asserts a speed, it only
//! fails when the server answered wrongly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use indicatif::ProgressBar;
use serde_json::{json, Value as Json};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use super::http_client::{Created, HttpClient};
use super::report::{Latencies, Row};
use super::target::{descendants_named, pss_kib};
use super::ws_client::{is_value_of, msg, Tab};

/// Requests sent before a latency scenario starts measuring (connection, page cache, spares).
const WARM_UP: usize = 20;

/// Sequential `GET /` → `302` on one keep-alive connection, `gap` apart.
pub async fn create_latency(
    addr: &str,
    requests: usize,
    gap: Duration,
    key: &str,
    name: &str,
    pb: &ProgressBar,
) -> Result<Row, String> {
    let mut client = HttpClient::new(addr);
    for _ in 0..WARM_UP {
        let _ = client.create().await;
    }
    pb.set_length(requests as u64);
    let mut h = Latencies::default();
    let mut tally = Tally::default();
    for _ in 0..requests {
        if !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
        match client.create().await {
            Ok((_, took)) => h.record(took),
            Err(e) => tally.add(e),
        }
        pb.inc(1);
    }
    Ok(Row::latency(key, name, &h, tally.note(String::new())))
}

/// `GET /` that made no session: refusals (503, an answer) and failures (anything else).
#[derive(Default)]
struct Tally {
    refused: u64,
    failed: u64,
    first_failure: Option<String>,
}

impl Tally {
    fn add(&mut self, e: Created) {
        match e {
            Created::Refused => self.refused += 1,
            Created::Failed(e) => {
                self.failed += 1;
                self.first_failure.get_or_insert(e);
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        self.refused += other.refused;
        self.failed += other.failed;
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
    }

    fn note(&self, mut note: String) -> String {
        let mut add = |s: String| {
            if !note.is_empty() {
                note.push_str("; ");
            }
            note.push_str(&s);
        };
        if self.refused > 0 {
            add(format!("{} answered 503", self.refused));
        }
        if let Some(e) = &self.first_failure {
            add(format!("{} FAILED (first: {e})", self.failed));
        }
        note
    }
}

/// `clients` connections creating sessions as fast as they are answered until `sessions`
/// were created: the rate, and the latency each client saw.
///
/// With `server_pid` (a spawned server), the note also gives the CPU time all of the server's
/// processes spent per session created, the figure that bounds the rate on a given machine.
pub async fn create_rate(
    addr: &str,
    clients: usize,
    sessions: usize,
    key: &str,
    name: &str,
    server_pid: Option<i32>,
    pb: &ProgressBar,
) -> Result<Row, String> {
    pb.set_length(sessions as u64);
    let usage_before = server_pid.map(super::target::tree_usage);
    let started = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let (addr, started, pb) = (addr.to_string(), started.clone(), pb.clone());
        tasks.spawn(async move {
            let mut client = HttpClient::new(&addr);
            let mut h = Latencies::default();
            let mut tally = Tally::default();
            while started.fetch_add(1, Ordering::Relaxed) < sessions as u64 {
                match client.create().await {
                    Ok((_, took)) => h.record(took),
                    Err(e) => tally.add(e),
                }
                pb.inc(1);
            }
            (h, tally)
        });
    }
    let mut all = Latencies::default();
    let mut tally = Tally::default();
    while let Some(done) = tasks.join_next().await {
        let (h, t) = done.map_err(|e| e.to_string())?;
        all.merge(&h);
        tally.merge(t);
    }
    let elapsed = start.elapsed();
    let created = all.len();
    let mut note = format!("{clients} clients");
    if let (Some(pid), Some(before), true) = (server_pid, usage_before, created > 0) {
        note.push_str(&super::target::tree_usage(pid).note_since(before, created, "session"));
    }
    let note = tally.note(note);
    Ok(Row::latency(key, name, &all, note).with_rate(created, elapsed))
}

/// Sessions held open, each with one tab; dropping it closes every tab.
pub struct LiveSessions {
    pub tabs: JoinSet<()>,
    pub open: usize,
    pub refused: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
}

/// Opens `n` sessions with one WebSocket each (`clients` at a time). Each tab is read until
/// it closes, so the server's pings are answered as a browser would.
pub async fn open_live(addr: &str, n: usize, clients: usize, pb: &ProgressBar) -> LiveSessions {
    pb.set_length(n as u64);
    let claimed = Arc::new(AtomicU64::new(0));
    let tabs = Arc::new(Mutex::new(JoinSet::new()));
    let refused = Arc::new(AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let start = Instant::now();
    let mut openers = JoinSet::new();
    for _ in 0..clients.max(1) {
        let (addr, claimed, tabs, refused, first_error, pb) = (
            addr.to_string(),
            claimed.clone(),
            tabs.clone(),
            refused.clone(),
            first_error.clone(),
            pb.clone(),
        );
        openers.spawn(async move {
            let mut client = HttpClient::new(&addr);
            let mut opened = 0usize;
            while claimed.fetch_add(1, Ordering::Relaxed) < n as u64 {
                let outcome = match client.create().await {
                    Ok((id, _)) => Tab::connect(&addr, &id).await.map(Some),
                    Err(Created::Refused) => Ok(None),
                    Err(Created::Failed(e)) => Err(e),
                };
                match outcome {
                    Ok(Some(tab)) => {
                        opened += 1;
                        let mut ws = tab.ws;
                        tabs.lock()
                            .spawn(async move { while let Some(Ok(_)) = ws.next().await {} });
                    }
                    Ok(None) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        first_error.lock().get_or_insert(e);
                    }
                }
                pb.inc(1);
            }
            opened
        });
    }
    let mut open = 0;
    while let Some(done) = openers.join_next().await {
        open += done.unwrap_or(0);
    }
    let elapsed = start.elapsed();
    let tabs = std::mem::take(&mut *tabs.lock());
    let first_error = first_error.lock().take();
    LiveSessions {
        tabs,
        open,
        refused: refused.load(Ordering::Relaxed),
        first_error,
        elapsed,
    }
}

/// A health-style request (`/healthz` where the server has one, else `/metrics`) while
/// whatever else is going on goes on.
pub async fn health(addr: &str, requests: usize, key: &str, name: &str) -> Result<Row, String> {
    let mut client = HttpClient::new(addr);
    let path = match client.get("/healthz").await {
        Ok(a) if a.status == 200 => "/healthz",
        _ => "/metrics",
    };
    let mut h = Latencies::default();
    let mut bad = 0;
    for _ in 0..requests {
        let a = client.get(path).await?;
        if a.status == 200 {
            h.record(a.took);
        } else {
            bad += 1;
        }
    }
    let note = match bad {
        0 => format!("GET {path}"),
        n => format!("GET {path}; {n} not 200"),
    };
    Ok(Row::latency(key, name, &h, note))
}

/// Memory of idle session workers (median PSS over up to `sample` of them).
pub fn idle_pss(broker_pid: i32, sample: usize) -> Option<Row> {
    let workers = descendants_named(broker_pid, "lb-session");
    let mut pss: Vec<u64> = workers
        .iter()
        .take(sample)
        .filter_map(|p| pss_kib(*p))
        .collect();
    if pss.is_empty() {
        return None;
    }
    pss.sort_unstable();
    let median = pss[pss.len() / 2];
    let broker = pss_kib(broker_pid)
        .map(|k| format!("; broker {k} KiB"))
        .unwrap_or_default();
    Some(Row::skipped(
        "memory.idle_session_pss",
        "PSS per idle session (KiB)",
        format!("median {median} KiB over {} workers{broker}", pss.len()),
    ))
}

/// A new session of the bench app with one tab open on it: its id and the tab. Fails clearly
/// when the server serves another app.
async fn bench_session(addr: &str) -> Result<(String, Tab), String> {
    let mut client = HttpClient::new(addr);
    let (id, _) = client.create().await.map_err(|e| match e {
        Created::Refused => "GET / answered 503".to_string(),
        Created::Failed(e) => e,
    })?;
    let mut tab = Tab::connect(addr, &id).await?;
    tab.send(json!([msg(
        "create",
        json!({"id": 2, "parentId": 1, "properties": {"path": "bench"}})
    )]))
    .await?;
    let got = tab.recv_until(|m| is_value_of(m, 2)).await?;
    if got["data"]["value"] != super::app::MARKER {
        return Err(
            "the server does not serve the bench app (start it with --lua-dir DIR \
             after `luabroker bench --write-app DIR`, or use --spawn)"
                .into(),
        );
    }
    Ok((id, tab))
}

pub(super) fn click(var_id: i64) -> String {
    json!({"userEvent": true, "messages": [msg("update", json!({"varId": var_id, "value": null}))]})
        .to_string()
}

/// A new bench session's tab watching `watched` (variable 3) with the action `method`
/// (variable 4, a click: [`click`]`(4)`), once the watched value has arrived.
pub(super) async fn tab_with_action(
    addr: &str,
    watched: &str,
    method: &str,
) -> Result<Tab, String> {
    let (_, mut tab) = bench_session(addr).await?;
    tab.send(json!([
        msg(
            "create",
            json!({"id": 3, "parentId": 1, "properties": {"path": watched}})
        ),
        msg(
            "create",
            json!({"id": 4, "parentId": 1, "nowatch": true,
            "properties": {"path": method, "access": "action"}})
        ),
    ]))
    .await?;
    tab.recv_until(|m| is_value_of(m, 3)).await?;
    Ok(tab)
}

/// The action round trip: click → Lua method → change detection → the update back.
///
/// With `server_pid` (a server on this host), the note also gives the CPU time and the thread
/// runs (wake-ups) all of the server's processes spent per round trip.
pub async fn action(
    addr: &str,
    iterations: usize,
    server_pid: Option<i32>,
    pb: &ProgressBar,
) -> Result<Row, String> {
    let mut tab = tab_with_action(addr, "count", "increment()").await?;
    let click = click(4);
    pb.set_length(iterations as u64);
    let usage_before = server_pid.map(super::target::tree_usage);
    let mut h = Latencies::default();
    for i in 1..=iterations as i64 {
        let start = Instant::now();
        tab.send_text(click.clone()).await?;
        let got = tab.recv_until(|m| is_value_of(m, 3)).await?;
        h.record(start.elapsed());
        if got["data"]["value"] != i {
            return Err(format!("click {i}: count is {}", got["data"]["value"]));
        }
        pb.inc(1);
    }
    let mut note = String::from("one WebSocket");
    if let (Some(pid), Some(before)) = (server_pid, usage_before) {
        let usage = super::target::tree_usage(pid);
        note.push_str(&usage.note_since(before, iterations as u64, "round trip"));
    }
    Ok(Row::latency(
        "action.round_trip",
        "action round trip, 1 watched variable",
        &h,
        note,
    ))
}

/// Relayed messages per second for one session: frames of 100 `get`s, pipelined, every one
/// answered by the worker.
pub async fn relay(addr: &str, messages: usize, pb: &ProgressBar) -> Result<Row, String> {
    let (_, tab) = bench_session(addr).await?;
    let per_frame = 100;
    let frames = messages.div_ceil(per_frame);
    let frame = Json::Array(
        (0..per_frame)
            .map(|_| msg("get", json!({"varIds": [2]})))
            .collect(),
    )
    .to_string();
    pb.set_length((frames * per_frame) as u64);
    let (mut sink, mut stream) = tab.ws.split();
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        for _ in 0..frames {
            if sink
                .send(Message::Text(frame.clone().into()))
                .await
                .is_err()
            {
                break;
            }
        }
        sink
    });
    let mut answered = 0;
    while answered < per_frame * frames {
        let next = tokio::time::timeout(super::ws_client::FRAME_TIMEOUT, stream.next())
            .await
            .map_err(|_| format!("relay: stalled after {answered} answers"))?;
        match next {
            Some(Ok(Message::Text(t))) => {
                let n = t.as_str().matches("\"type\":\"get\"").count();
                answered += n;
                pb.inc(n as u64);
            }
            Some(Ok(_)) => continue,
            other => return Err(format!("relay: socket ended: {other:?}")),
        }
    }
    let elapsed = start.elapsed();
    let _ = writer.await;
    Ok(Row::rate(
        "relay.messages",
        "relayed messages, 1 session (each way)",
        answered as u64,
        elapsed,
        format!("frames of {per_frame} get, pipelined"),
    ))
}

/// Change detection on a large app: `watched` variables `f.N.v`, one of them changed per
/// click; the round trip is dominated by the pass over all of them. A second row gives the
/// pass itself as the worker timed it, from the debug listing's headers when the server has
/// `--debug-pages` (spawned servers do).
pub async fn changes(
    addr: &str,
    watched: usize,
    iterations: usize,
    pb: &ProgressBar,
) -> Result<Vec<Row>, String> {
    const GROW: i64 = 3;
    const BUMP: i64 = 4;
    const FIRST: i64 = 10;
    let (id, mut tab) = bench_session(addr).await?;
    tab.send(json!([
        msg(
            "create",
            json!({"id": GROW, "parentId": 1, "nowatch": true,
            "properties": {"path": "grow(_)", "access": "w"}})
        ),
        msg("update", json!({"varId": GROW, "value": watched})),
        msg(
            "create",
            json!({"id": BUMP, "parentId": 1, "nowatch": true,
            "properties": {"path": "bump()", "access": "action"}})
        ),
    ]))
    .await?;
    // Frames well under the per-frame message cap.
    for chunk in (0..watched).collect::<Vec<_>>().chunks(5_000) {
        let creates: Vec<Json> = chunk
            .iter()
            .map(|i| {
                msg(
                    "create",
                    json!({"id": FIRST + *i as i64, "parentId": 1,
                    "properties": {"path": format!("f.{i}.v")}}),
                )
            })
            .collect();
        tab.send(Json::Array(creates)).await?;
    }
    let mut seen = 0;
    while seen < watched {
        for m in tab.recv().await? {
            if m["type"] == "error" {
                return Err(format!("the server answered an error: {m}"));
            }
            if m["type"] == "update" && m["data"]["value"] == 0 {
                seen += 1;
            }
        }
    }
    let click = click(BUMP);
    pb.set_length(iterations as u64);
    let mut h = Latencies::default();
    for i in 0..iterations {
        let var = FIRST + (i % watched) as i64;
        let expect = (i / watched) as i64 + 1;
        let start = Instant::now();
        tab.send_text(click.clone()).await?;
        let got = tab.recv_until(|m| is_value_of(m, var)).await?;
        h.record(start.elapsed());
        if got["data"]["value"] != expect {
            return Err(format!(
                "click {i}: f.{}.v is {}",
                i % watched,
                got["data"]["value"]
            ));
        }
        pb.inc(1);
    }
    let round_trip = Row::latency(
        "changes.round_trip",
        &format!("action round trip, {watched} watched variables"),
        &h,
        "paths f.N.v, one changed per click".into(),
    );
    Ok(vec![round_trip, worker_pass_times(addr, &id).await?])
}

/// The median and longest of the session's recent passes, as its worker timed them.
async fn worker_pass_times(addr: &str, id: &str) -> Result<Row, String> {
    const KEY: &str = "changes.pass";
    const NAME: &str = "change detection pass, timed in the worker";
    let answer = HttpClient::new(addr)
        .get(&format!("/{id}/variables.json"))
        .await?;
    let header =
        |name: &str| -> Option<u64> { answer.headers.get(name)?.to_str().ok()?.parse().ok() };
    let (Some(median), Some(max), Some(passes)) = (
        header("x-pass-median-ns"),
        header("x-pass-max-ns"),
        header("x-passes"),
    ) else {
        return Ok(Row::skipped(
            KEY,
            NAME,
            "the server has no --debug-pages (a spawned one has)".into(),
        ));
    };
    let kept = passes.min(protocol::limits::PASS_TIMES_KEPT as u64);
    let mut row = Row::skipped(
        KEY,
        NAME,
        format!("median and longest of the last {kept} of {passes} passes"),
    );
    row.n = kept;
    row.p50_us = Some(median as f64 / 1e3);
    row.max_us = Some(max as f64 / 1e3);
    Ok(row)
}
