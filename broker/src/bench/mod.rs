//! `luabroker bench`: measures a server the way users load it and prints one table (or JSON).
//!
//! It points at a running server (`--url`) or starts one from this executable (`--spawn`, a
//! fresh server per scenario, serving the bench app in [`app`]). The scenarios are the figures
//! of BENCHMARKS.md: `GET /` latency with one client, the creation rate with N clients, the
//! action round trip and relay throughput over one WebSocket, change detection with 10,000
//! watched variables, and N live sessions with a tab each (how fast they open, and the health,
//! creation latency and creation rate while they are live, plus memory per idle session).
//! Nothing here asserts a speed: the bench fails only when the server answers wrongly.

mod app;
mod busy;
mod floor;
mod http_client;
mod report;
mod scenarios;
mod target;
mod ws_client;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use report::{Report, Row};
use target::Server;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// The host's own round trip over loopback TCP, direct and relayed (no server).
    Floor,
    /// `GET /` → `302`, one client, sequential.
    Create,
    /// Sessions created per second by `--clients` clients.
    Rate,
    /// Click → Lua → change detection → update, one WebSocket.
    Action,
    /// Relayed messages per second, one session.
    Relay,
    /// Round trip with `--watched` watched variables (change detection at scale).
    Changes,
    /// `--live` sessions with a tab each, and the figures while they are live.
    Live,
    /// `--busy` sessions keeping their workers' CPU busy, and health, `GET /` and a quiet
    /// session's round trip meanwhile.
    Busy,
}

#[derive(Debug, Parser)]
#[command(
    name = "luabroker bench",
    about = "Measures a luabroker server: session creation, round trips, relay, change \
             detection, live sessions. Prints a table (or --json); asserts nothing.",
    after_help = "Reproduce BENCHMARKS.md: `luabroker bench --spawn` (release build)."
)]
pub struct BenchArgs {
    /// The server to measure (it must serve the bench app: see --write-app).
    #[arg(long, conflicts_with = "spawn", required_unless_present_any = ["spawn", "write_app"])]
    pub url: Option<String>,
    /// Start a fresh server from this executable for each scenario, serving the bench app.
    #[arg(long)]
    pub spawn: bool,
    /// Write the bench app into DIR (for `luabroker --lua-dir DIR`) and exit.
    #[arg(long, value_name = "DIR")]
    pub write_app: Option<PathBuf>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Which scenarios to run, in this order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "floor,create,rate,action,relay,changes,live,busy"
    )]
    pub scenarios: Vec<Scenario>,
    /// Sequential `GET /` measured by `create` (and again with the sessions of `live` open).
    #[arg(long, default_value_t = 2_000)]
    pub requests: usize,
    /// Pause between the requests of `create`, in milliseconds (0: back to back). A few
    /// milliseconds let the spare pool refill before each request, so the figure is what a
    /// server that is not busy answers in, without the refills a request starts competing
    /// with the next one for the CPU.
    #[arg(long, default_value_t = 0)]
    pub create_gap_ms: u64,
    /// Concurrent clients of `rate` and of opening the `live` sessions.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Sessions `rate` creates.
    #[arg(long, default_value_t = 4_000)]
    pub rate_sessions: usize,
    /// Sessions with a tab open in `live`.
    #[arg(long, default_value_t = 10_000)]
    pub live: usize,
    /// Clicks in `action` (and round trips of each kind in `floor`).
    #[arg(long, default_value_t = 10_000)]
    pub iterations: usize,
    /// Messages relayed in `relay`.
    #[arg(long, default_value_t = 200_000)]
    pub relay_messages: usize,
    /// Watched variables in `changes`.
    #[arg(long, default_value_t = 10_000)]
    pub watched: usize,
    /// Clicks in `changes` (1,000: the worker's record of recent passes then holds clicks only).
    #[arg(long, default_value_t = 1_000)]
    pub change_iterations: usize,
    /// Sessions of `busy` clicking a 5 ms CPU-bound action without pause.
    #[arg(long, default_value_t = 8)]
    pub busy: usize,
    /// Flags for each spawned server, after `--` (e.g. `-- --spare-workers 8`).
    #[arg(last = true)]
    pub server_args: Vec<String>,
}

/// Entry point from `main` (argv[1] is `bench`).
pub fn main() -> ExitCode {
    let args = BenchArgs::parse_from(std::env::args_os().skip(1));
    if let Some(dir) = &args.write_app {
        return match app::write(dir) {
            Ok(()) => {
                println!(
                    "wrote {}; serve it with luabroker --lua-dir {}",
                    dir.join("main.lua").display(),
                    dir.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("luabroker bench: cannot write {}: {e}", dir.display());
                ExitCode::FAILURE
            }
        };
    }
    crate::limits::raise_fd_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("luabroker bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The scenarios run in a task on a runtime thread, not in `block_on` on this one: a future
    // polled there is woken by whichever runtime thread took the socket's event, one more
    // thread wake-up inside every round trip the bench times.
    let json = args.json;
    let outcome = runtime.block_on(async move {
        match tokio::spawn(async move { run(&args).await }).await {
            Ok(outcome) => outcome,
            Err(e) => Err(format!("the bench's task ended: {e}")),
        }
    });
    match outcome {
        Ok(report) => {
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(e) => eprintln!("luabroker bench: {e}"),
                }
            } else {
                print!("{}", report.table());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("luabroker bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where the scenarios run: one server the user runs, or fresh ones the bench starts.
struct Targets {
    url: Option<String>,
    app: Option<tempfile::TempDir>,
    server_args: Vec<String>,
}

impl Targets {
    fn next(&self) -> Result<Server, String> {
        match (&self.url, &self.app) {
            (Some(url), _) => Server::running(url),
            (None, Some(app)) => Server::spawn(app.path(), &self.server_args),
            (None, None) => Err("neither --url nor --spawn".into()),
        }
    }
}

fn progress(name: &str) -> ProgressBar {
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template("{msg:44} [{bar:30}] {pos}/{len} ({per_sec}, {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(name.to_string());
    pb
}

async fn run(args: &BenchArgs) -> Result<Report, String> {
    let app = if args.spawn {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        app::write(dir.path()).map_err(|e| format!("cannot write the bench app: {e}"))?;
        Some(dir)
    } else {
        None
    };
    let targets = Targets {
        url: args.url.clone(),
        app,
        server_args: args.server_args.clone(),
    };
    let mut rows: Vec<Row> = Vec::new();
    for scenario in &args.scenarios {
        if *scenario == Scenario::Floor {
            // No server: one starting up would only add noise to the host's own figure.
            rows.extend(host_floor(args.iterations).await?);
            continue;
        }
        let server = targets.next()?;
        let addr = server.addr.clone();
        let outcome = run_one(*scenario, args, &server, &addr, &mut rows).await;
        if let Err(e) = outcome {
            let log = server.log_tail();
            return Err(if log.is_empty() {
                e
            } else {
                format!("{e}\nserver log (last lines):\n{log}")
            });
        }
    }
    // Differences of two p50s of this run, each its own row (0 when the first came in under
    // the second):
    // - the pass itself: the large app's round trip minus the small app's (same server build,
    //   so the difference is change detection's share);
    // - the server's own share of a round trip: the action's figure above the host's relayed
    //   floor (under it where busy vCPUs never halt); only for a server on this host, the one
    //   the floor was measured on.
    let p50 = |key: &str| rows.iter().find(|r| r.key == key).and_then(|r| r.p50_us);
    let on_this_host = args.url.as_deref().is_none_or(is_loopback_url);
    let derived: Vec<Row> = [
        (
            "changes.pass_estimate",
            "change detection pass (estimate)",
            "p50 difference of the two round trips above",
            "changes.round_trip",
            "action.round_trip",
        ),
        (
            "action.above_floor",
            "action round trip above the host floor",
            "p50 of action minus p50 of the relayed floor",
            "action.round_trip",
            "floor.relayed",
        ),
    ]
    .into_iter()
    .filter(|(key, ..)| on_this_host || *key != "action.above_floor")
    .filter_map(|(key, name, note, minuend, subtrahend)| {
        let difference = p50(minuend)? - p50(subtrahend)?;
        let mut row = Row::skipped(key, name, note.into());
        row.p50_us = Some(difference.max(0.0));
        Some(row)
    })
    .collect();
    rows.extend(derived);
    Ok(Report {
        date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        target: match &args.url {
            Some(url) => url.clone(),
            None => "a fresh spawned server per scenario (bench app)".into(),
        },
        rows,
    })
}

/// Whether `--url` names a server on this host (where `floor` measured the kernel's share).
fn is_loopback_url(url: &str) -> bool {
    let host = url.trim_start_matches("http://");
    ["127.", "localhost:", "localhost/", "[::1]"]
        .iter()
        .any(|p| host.starts_with(p))
        || host == "localhost"
}

/// The `floor` rows, measured on blocking threads (the runtime's threads stay free).
async fn host_floor(round_trips: usize) -> Result<Vec<Row>, String> {
    let pb = progress("host floor");
    let rows = tokio::task::spawn_blocking(move || floor::floor(round_trips))
        .await
        .map_err(|e| format!("floor: {e}"))?;
    pb.finish_and_clear();
    rows
}

async fn run_one(
    scenario: Scenario,
    args: &BenchArgs,
    server: &Server,
    addr: &str,
    rows: &mut Vec<Row>,
) -> Result<(), String> {
    match scenario {
        Scenario::Floor => rows.extend(host_floor(args.iterations).await?),
        Scenario::Create => {
            let name = match args.create_gap_ms {
                0 => "GET / -> 302, 1 client".to_string(),
                ms => format!("GET / -> 302, 1 client, {ms} ms apart"),
            };
            let pb = progress(&name);
            let gap = Duration::from_millis(args.create_gap_ms);
            rows.push(
                scenarios::create_latency(addr, args.requests, gap, "create.latency", &name, &pb)
                    .await?,
            );
            pb.finish_and_clear();
        }
        Scenario::Rate => {
            let pb = progress("creations/s");
            let name = format!("creations, {} clients", args.clients);
            rows.push(
                scenarios::create_rate(
                    addr,
                    args.clients,
                    args.rate_sessions,
                    "create.rate",
                    &name,
                    server.pid,
                    &pb,
                )
                .await?,
            );
            pb.finish_and_clear();
        }
        Scenario::Action => {
            let pb = progress("action round trip");
            rows.push(scenarios::action(addr, args.iterations, server.pid, &pb).await?);
            pb.finish_and_clear();
        }
        Scenario::Relay => {
            let pb = progress("relay");
            rows.push(scenarios::relay(addr, args.relay_messages, &pb).await?);
            pb.finish_and_clear();
        }
        Scenario::Changes => {
            let pb = progress("change detection");
            rows.extend(scenarios::changes(addr, args.watched, args.change_iterations, &pb).await?);
            pb.finish_and_clear();
        }
        Scenario::Live => live(args, server, addr, rows).await?,
        Scenario::Busy => {
            let pb = progress(&format!("{} sessions busy", args.busy));
            let (requests, clicks) = (args.requests.min(1_000), args.iterations.min(2_000));
            rows.extend(busy::busy(addr, args.busy, requests, clicks, &pb).await?);
            pb.finish_and_clear();
        }
    }
    Ok(())
}

async fn live(
    args: &BenchArgs,
    server: &Server,
    addr: &str,
    rows: &mut Vec<Row>,
) -> Result<(), String> {
    let n = args.live;
    let pb = progress(&format!("{n} sessions with a tab"));
    let live = scenarios::open_live(addr, n, args.clients, &pb).await;
    pb.finish_and_clear();
    let mut note = format!("{} of {n} open", live.open);
    if live.refused > 0 {
        note.push_str(&format!("; {} answered 503", live.refused));
    }
    if let Some(e) = &live.first_error {
        note.push_str(&format!("; first failure: {e}"));
    }
    rows.push(Row::rate(
        "live.open",
        &format!("sessions opened with a tab, {} clients", args.clients),
        live.open as u64,
        live.elapsed,
        note,
    ));
    let at = format!("{} live", live.open);
    rows.push(
        scenarios::health(addr, 1_000, "live.health", &format!("health request, {at}")).await?,
    );
    let pb = progress(&format!("GET /, {at}"));
    rows.push(
        scenarios::create_latency(
            addr,
            args.requests,
            Duration::ZERO,
            "live.create.latency",
            &format!("GET / -> 302, 1 client, {at}"),
            &pb,
        )
        .await?,
    );
    pb.finish_and_clear();
    let pb = progress(&format!("creations/s, {at}"));
    rows.push(
        scenarios::create_rate(
            addr,
            args.clients,
            args.rate_sessions,
            "live.create.rate",
            &format!("creations, {} clients, {at}", args.clients),
            server.pid,
            &pb,
        )
        .await?,
    );
    pb.finish_and_clear();
    if let Some(pid) = server.pid {
        rows.extend(scenarios::idle_pss(pid, 200));
    }
    drop(live.tabs);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_loopback_url;

    #[test]
    fn the_floor_is_compared_only_with_a_server_on_this_host() {
        for url in [
            "http://127.0.0.1:8080",
            "http://localhost:8080/",
            "http://[::1]:80",
        ] {
            assert!(is_loopback_url(url), "{url}");
        }
        for url in [
            "http://10.0.0.7:8080",
            "http://example.com",
            "http://localhost.example.com:80",
        ] {
            assert!(!is_loopback_url(url), "{url}");
        }
    }
}
