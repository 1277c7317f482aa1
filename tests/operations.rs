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

async fn get_json(url: &str) -> serde_json::Value {
    let (status, body) = get_url(url).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
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
    let broker = Broker::start(&["--max-sessions", "1", "--idle-timeout", "300ms"]);
    assert_eq!(broker.get("/readyz").await.0, 200);
    let id = broker.create_session().await;
    // Opened, so the cap refuses (a never-opened session would be evicted for a newcomer).
    let tab = open_tab(&broker, &id).await;

    let (status, body) = broker.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("at the session cap"), "{body}");
    assert!(body.contains("--max-sessions 1"), "{body}");
    assert_eq!(broker.get("/healthz").await.0, 200);
    assert_eq!(broker.get("/").await.0, 503);

    // Its tab goes; once the session has idled out the server is ready again.
    drop(tab);
    wait_for_body(&broker.url("/readyz"), "readyz 200", |s, _| s == 200).await;
    let metrics = broker.get("/metrics").await.1;
    assert_eq!(
        value(&metrics, "luabroker_refusals_total{reason=\"session_cap\"}"),
        1.0
    );
    assert_eq!(value(&metrics, "luabroker_sessions_refused_total"), 1.0);
    assert_eq!(
        value(&metrics, "luabroker_sessions_ended_total{cause=\"idle\"}"),
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
    // The zygote names itself once it runs, which may be just after the broker is listening.
    let zygote = || {
        broker
            .children()
            .into_iter()
            .find(|p| comm(*p).as_deref() == Some("lb-zygote"))
    };
    wait_until("the zygote to run", || zygote().is_some()).await;
    let zygote = zygote().unwrap();
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

// --- Configuration ---

/// Runs the executable to completion (it is expected to exit by itself).
fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .output()
        .expect("run luabroker");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(f.path(), text).unwrap();
    f
}

/// The `key = value  # source` line of `--print-config` output.
fn printed_line<'a>(printed: &'a str, key: &str) -> &'a str {
    printed
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in:\n{printed}"))
}

#[tokio::test]
async fn config_precedence_is_flag_then_environment_then_file_then_default() {
    let file = config_file(
        "max_sessions = 500\nmax_crashes = 9\nidle_timeout = \"2h\"\nspare_workers = 2\n",
    );
    let path = file.path().to_str().unwrap();
    let (code, printed, stderr) = run_to_exit(
        &["--config", path, "--max-sessions", "7", "--print-config"],
        &[
            ("LUABROKER_MAX_SESSIONS", "8"),
            ("LUABROKER_MAX_CRASHES", "3"),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        printed_line(&printed, "max_sessions"),
        "max_sessions = 7  # flag"
    );
    assert_eq!(
        printed_line(&printed, "max_crashes"),
        "max_crashes = 3  # environment LUABROKER_MAX_CRASHES"
    );
    assert_eq!(
        printed_line(&printed, "idle_timeout"),
        format!("idle_timeout = \"2h\"  # file {path}")
    );
    assert_eq!(
        printed_line(&printed, "listen"),
        "listen = \"127.0.0.1:8080\"  # default"
    );

    // The printed configuration is itself a valid file, and the server runs with it.
    let again = config_file(&printed);
    let broker = Broker::start(&["--config", again.path().to_str().unwrap()]);
    let spares = broker.get("/metrics").await.1;
    assert!(sample(&spares, "luabroker_spare_workers").is_some());
    // The file's max_sessions = 7 holds: 7 sessions (opened, so none is evicted), then 503.
    let mut tabs = Vec::new();
    for _ in 0..7 {
        let id = broker.create_session().await;
        tabs.push(open_tab(&broker, &id).await);
    }
    assert_eq!(broker.get("/").await.0, 503);
}

#[test]
fn config_errors_name_the_key_and_the_file() {
    let cases = [
        ("max_sesions = 5\n", "unknown key `max_sesions`"),
        (
            "idle_timeout = \"soon\"\n",
            "key `idle_timeout`: invalid value \"soon\"",
        ),
        (
            "max_sessions = \"many\"\n",
            "key `max_sessions`: invalid value \"many\"",
        ),
        (
            "max_sessions = -1\n",
            "key `max_sessions`: invalid value \"-1\"",
        ),
        (
            "listen = \"nowhere\"\n",
            "key `listen`: invalid value \"nowhere\"",
        ),
        (
            "debug_pages = \"yes\"\n",
            "key `debug_pages`: expected true or false",
        ),
        (
            "log_format = \"xml\"\n",
            "key `log_format`: invalid value \"xml\"",
        ),
        ("allow_origin = true\n", "key `allow_origin`"),
        ("max_sessions = \n", "TOML parse error at line 1"),
    ];
    for (text, expect) in cases {
        let file = config_file(text);
        let path = file.path().to_str().unwrap();
        let (code, _, stderr) = run_to_exit(&["--config", path], &[]);
        assert_eq!(code, 2, "{text:?} should fail: {stderr}");
        assert!(stderr.contains(&format!("config file {path}")), "{stderr}");
        assert!(stderr.contains(expect), "{text:?}: {stderr}");
    }
    let (code, _, stderr) = run_to_exit(&["--config", "/nonexistent/luabroker.toml"], &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("/nonexistent/luabroker.toml: cannot read it"),
        "{stderr}"
    );
    // A bad environment value is refused the same way a bad flag is.
    let (code, _, stderr) = run_to_exit(&[], &[("LUABROKER_MAX_SESSIONS", "lots")]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--max-sessions"), "{stderr}");
}

#[tokio::test]
async fn sighup_applies_new_limits_and_says_what_needs_a_restart() {
    let file = config_file("max_sessions = 1\n");
    let path = file.path().to_str().unwrap().to_string();
    let broker = Broker::start(&["--config", &path]);
    let id = broker.create_session().await;
    // Opened, so the cap refuses rather than evicting it.
    let _tab = open_tab(&broker, &id).await;
    assert_eq!(broker.get("/").await.0, 503);

    // A file that no longer loads changes nothing.
    std::fs::write(&path, "max_sessions = \"plenty\"\n").unwrap();
    broker.signal(Signal::SIGHUP);
    broker.wait_log("the configuration was not reloaded");
    assert_eq!(broker.get("/").await.0, 503);

    std::fs::write(
        &path,
        "max_sessions = 2\nspare_workers = 1\nlog_level = \"info,luabroker::ws=debug\"\n",
    )
    .unwrap();
    broker.signal(Signal::SIGHUP);
    broker.wait_log("the configuration was reloaded applied=2 need_restart=1");
    let log = broker.log();
    assert!(
        log.lines()
            .any(|l| l.contains("applied") && l.contains("key=max_sessions") && l.contains("to=2")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("needs a restart") && l.contains("key=spare_workers")),
        "{log}"
    );
    broker.create_session().await;
    // The new filter is in force: a tab's connect is a debug line of luabroker::ws.
    let mut ws = connect(&broker, &id).await;
    round_trip(&mut ws).await;
    broker.wait_log("tab connected");
}

// --- Logs ---

#[tokio::test]
async fn json_log_lines_parse_and_carry_the_session_ids() {
    let app = r#"
        ui.log("hello from lua")
        session:createAppVariable({ n = 0 })
    "#;
    let broker = Broker::with_app(
        &[("main.lua", app)],
        &["--log-format", "json", "--adoption-timeout", "200ms"],
    );
    let id = broker.create_session().await;
    broker.wait_log("\"session ended\"");
    let lines: Vec<serde_json::Value> = broker
        .log()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let find = |message: &str| {
        lines
            .iter()
            .find(|l| l["message"] == message && l["session"] == id.as_str())
            .unwrap_or_else(|| panic!("no {message:?} line for {id} in {lines:#?}"))
            .clone()
    };
    let started = find("session started");
    let vended = started["vended"].as_u64().expect("vended id");
    assert!(started["pid"].as_i64().is_some(), "{started}");
    let lua = find("hello from lua");
    assert_eq!(lua["vended"], vended, "{lua}");
    assert_eq!(lua["target"], "lua");
    let ended = find("session ended");
    assert_eq!(ended["vended"], vended);
    assert_eq!(ended["cause"], "unadopted", "{ended}");
    assert!(ended["lifetime_ms"].as_u64().unwrap() >= 200, "{ended}");
    for l in &lines {
        assert!(l["timestamp"].is_string() && l["level"].is_string(), "{l}");
    }
}

// --- The admin API ---

#[tokio::test]
async fn the_admin_api_lists_sessions_and_ends_one_whose_tab_is_told_why() {
    let broker = Broker::start(&["--admin-listen", "0"]);
    let admin = format!("http://{}", broker.printed("admin on http://"));
    assert!(admin.starts_with("http://127.0.0.1:"), "{admin}");
    // Not on the public address.
    assert_eq!(broker.get("/sessions").await.0, 404);

    let id = broker.create_session().await;
    let other = broker.create_session().await;
    let mut ws = connect(&broker, &id).await;
    round_trip(&mut ws).await;

    let listed = get_json(&format!("{admin}/sessions")).await;
    let list = listed.as_array().expect("a JSON list");
    assert_eq!(list.len(), 2, "{listed}");
    let mine = list
        .iter()
        .find(|s| s["id"] == id.as_str())
        .expect("listed");
    assert_eq!(mine["state"], "live");
    assert_eq!(mine["tabs"], 1);
    assert_eq!(mine["crashes"], 0);
    assert!(mine["vended_id"].as_u64().is_some());
    let pid = mine["worker_pid"].as_i64().unwrap() as i32;
    assert!(broker.workers().contains(&pid), "{mine}");
    assert!(mine["rss_bytes"].as_u64().unwrap() > 1_000_000, "{mine}");
    assert!(mine["cpu_seconds"].as_f64().unwrap() >= 0.0);
    assert!(mine["age_seconds"].as_f64().unwrap() >= 0.0);
    assert!(mine["last_activity_seconds_ago"].as_f64().is_some());

    let ended = client()
        .delete(format!("{admin}/sessions/{id}?reason=maintenance%20window"))
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status().as_u16(), 200);
    let (code, reason, _) = recv_close(&mut ws).await;
    assert_eq!((code, reason.as_str()), (1011, "maintenance window"));
    wait_until("the worker to be reaped", || !is_alive(pid)).await;

    let listed = get_json(&format!("{admin}/sessions")).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], other.as_str());
    let (status, page) = broker.get(&format!("/{id}")).await;
    assert_eq!(status, 404);
    assert!(page.contains("maintenance window"), "{page}");
    let again = client()
        .delete(format!("{admin}/sessions/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 404);
    let metrics = broker.get("/metrics").await.1;
    assert_eq!(
        value(&metrics, "luabroker_sessions_ended_total{cause=\"admin\"}"),
        1.0
    );
}

// --- Packaging ---

/// The repository's top directory.
fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `cargo install` into the build's target directory links `target/release/luabroker` again,
/// as a plain build: without the worker's `test-hooks` feature that `tests/sandbox.rs` needs.
/// This keeps the test build (a second hard link to it) and puts it back when dropped.
struct KeepTestBuild {
    kept: std::path::PathBuf,
}

impl KeepTestBuild {
    fn new() -> KeepTestBuild {
        let kept = std::path::Path::new(BIN).with_extension("test-build");
        let _ = std::fs::remove_file(&kept);
        std::fs::hard_link(BIN, &kept).expect("keep the test build");
        KeepTestBuild { kept }
    }
}

impl Drop for KeepTestBuild {
    fn drop(&mut self) {
        // A rename replaces the file at once; a broker still running keeps its own copy.
        let _ = std::fs::rename(&self.kept, BIN);
    }
}

#[tokio::test]
async fn cargo_install_gives_an_executable_that_runs_from_an_empty_directory() {
    let root = tempfile::tempdir().unwrap();
    let _keep = KeepTestBuild::new();
    // The same target directory as this test's build (…/target/release/luabroker), so only
    // the executable itself may need linking again, not the dependencies.
    let target = std::path::Path::new(BIN).ancestors().nth(2).unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["install", "--locked", "--offline", "--path"])
        .arg(repo().join("broker"))
        .arg("--root")
        .arg(root.path())
        .env("CARGO_TARGET_DIR", target)
        .output()
        .expect("run cargo install");
    assert!(
        out.status.success(),
        "cargo install failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let installed = root.path().join("bin/luabroker");
    let empty = tempfile::tempdir().unwrap();
    let broker = Broker::start_with(
        &[],
        Launch {
            dir: Some(empty.path()),
            bin: Some(&installed),
            ..Launch::default()
        },
    );
    // stderr is read on its own thread: wait for the line rather than race it.
    broker.wait_log("builtin=true");
    let id = broker.create_session().await;
    let page = broker.session_page(&id).await.text().await.unwrap();
    assert!(page.contains("<script"), "{page}");
    let mut ws = connect(&broker, &id).await;
    send(&mut ws, json!({"type": "get", "data": {"varIds": [1]}})).await;
    let reply = recv_until(&mut ws, |m| m["type"] == "get").await;
    assert_eq!(reply["data"]["variables"][0]["id"], 1, "{reply}");

    // The installed executable has none of the sandbox tests' hooks (forbidden calls from Lua):
    // only the build `cargo test` makes for tests/sandbox.rs does.
    let app = app(&[(
        "main.lua",
        "assert(__luabroker_test == nil, 'test hooks in an installed build')
         session:createAppVariable({})",
    )]);
    let broker = Broker::start_with(
        &["--lua-dir", app.path().to_str().unwrap()],
        Launch {
            bin: Some(&installed),
            ..Launch::default()
        },
    );
    broker.create_session().await;
}

/// The flags of a deploy file's command line, checked by the executable itself.
fn check_flags(what: &str, flags: &[&str]) {
    let mut args: Vec<&str> = flags.to_vec();
    if let Some(i) = args.iter().position(|a| *a == "--config") {
        args.drain(i..i + 2); // the operator's file, not here
    }
    args.push("--print-config");
    let (code, printed, stderr) = run_to_exit(&args, &[]);
    assert_eq!(code, 0, "{what}: {flags:?}: {stderr}");
    assert!(
        printed.contains("log_format = \"json\"  # flag"),
        "{printed}"
    );
}

#[test]
fn the_deploy_files_use_flags_the_executable_accepts_and_the_limits_10000_sessions_need() {
    let unit = std::fs::read_to_string(repo().join("deploy/luabroker.service")).unwrap();
    let setting = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in the unit"))
    };
    let exec: Vec<&str> = setting("ExecStart").split_whitespace().collect();
    assert_eq!(exec[0], "/usr/local/bin/luabroker");
    check_flags("ExecStart", &exec[1..]);
    // A socket and a WebSocket or two per session, plus pipes: well over 3 fds per session.
    assert!(setting("LimitNOFILE").parse::<u64>().unwrap() >= 40_000);
    // One process per session, plus spares, the zygote and threads.
    assert!(setting("TasksMax").parse::<u64>().unwrap() >= 11_000);
    assert_eq!(setting("KillMode"), "mixed");
    assert!(setting("ExecReload").contains("-HUP"));

    let containerfile = std::fs::read_to_string(repo().join("deploy/Containerfile")).unwrap();
    assert!(containerfile.contains("cargo install --path broker --locked"));
    let cmd = containerfile
        .lines()
        .find_map(|l| l.strip_prefix("CMD "))
        .expect("a CMD line");
    let cmd: Vec<String> = serde_json::from_str(cmd).expect("CMD in exec form");
    check_flags("CMD", &cmd.iter().map(String::as_str).collect::<Vec<_>>());
}
