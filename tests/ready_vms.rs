//! Sessions built from ready VMs (issue 10): a spare worker builds its Lua VM before it has a
//! session, and `GET /` only gives it the session's ids and runs `main.lua`. What a user and
//! an operator must still see: every session its own process, globals, random numbers and
//! string-hash seed; `main.lua` run exactly once, under the session's own ids; limits and
//! crashes reported as before; spares gone with the broker; the pool refilled. With
//! `--start-ahead` a spare runs `main.lua` before any `GET /` asks for it: still once per
//! session and under its own ids, never after the app changed, and its failures reported by
//! `GET /` as before.

mod common;

use std::collections::HashSet;

use common::*;
use nix::sys::signal::Signal;
use serde_json::{json, Value as Json};

/// Records what a fresh VM looks like when `main.lua` starts, and offers an action that
/// leaves a global behind.
const APP: &str = r#"
local App = {}
App.__index = App
function App:leak() leaked = "by session " .. session._sessionID end

runs = (runs or 0) + 1
ui.log("main.lua ran, run " .. runs)
-- The order `pairs` visits string keys follows the VM's string-hash seed. Long keys, so
-- that every bit of the seed counts (worker/tests/hash_seed.rs says why).
local t = {}
for i = 1, 64 do t["a much longer key, number " .. i] = i end
local order = {}
for _, v in pairs(t) do order[#order + 1] = v end
session:createAppVariable(setmetatable({
  runs = runs,
  sawLeak = leaked ~= nil,
  id = session._sessionID,
  r = math.random(1, 1 << 40),
  order = table.concat(order, ","),
}, App))
"#;

/// Fields of the session's app object that `main.lua` recorded, read through a tab.
const FIELDS: [&str; 5] = ["runs", "sawLeak", "id", "r", "order"];

/// The app object's [`FIELDS`] (or those of another app), by name, as a tab watching them sees them.
async fn app_of(broker: &Broker, id: &str) -> Json {
    fields_of(broker, id, &FIELDS).await
}

async fn fields_of(broker: &Broker, id: &str, fields: &[&str]) -> Json {
    let mut ws = connect(broker, id).await;
    let creates: Vec<Json> = fields
        .iter()
        .enumerate()
        .map(|(i, path)| {
            msg(
                "create",
                json!({"id": i + 2, "parentId": 1, "properties": {"path": path}}),
            )
        })
        .collect();
    send(&mut ws, Json::Array(creates)).await;
    let mut values = serde_json::Map::new();
    while values.len() < fields.len() {
        for m in recv(&mut ws).await {
            let var = m["data"]["varId"].as_u64().unwrap_or(0) as usize;
            if m["type"] == "update" && (2..fields.len() + 2).contains(&var) {
                values.insert(fields[var - 2].to_string(), m["data"]["value"].clone());
            }
        }
    }
    Json::Object(values)
}

/// Spare workers among the broker's descendants: waiting for a session (`lb-spare`), or with
/// a session started ahead that no `GET /` has taken yet (`lb-ahead`).
fn spares(broker: &Broker) -> Vec<i32> {
    descendants(broker.pid)
        .into_iter()
        .filter(|&p| matches!(comm(p).as_deref(), Some("lb-spare" | "lb-ahead")))
        .collect()
}

const AHEAD: &str = "--start-ahead";
const POOL: &str = "--spare-workers";
const MAX_POOL: &str = "--max-spare-workers";

/// Workers whose session was started ahead and not taken yet (`lb-ahead`).
fn started_ahead(broker: &Broker) -> Vec<i32> {
    descendants(broker.pid)
        .into_iter()
        .filter(|&p| comm(p).as_deref() == Some("lb-ahead"))
        .collect()
}

/// The `main.lua ran` lines of the log.
fn main_runs(broker: &Broker) -> Vec<String> {
    broker
        .log()
        .lines()
        .filter(|l| l.contains("main.lua ran"))
        .map(str::to_string)
        .collect()
}

/// A `luabroker_…` sample from `/metrics`.
async fn metric(broker: &Broker, name: &str) -> f64 {
    let (_, text) = broker.get("/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// Waits until the pool holds at least `n` spares whose VMs are built (only those count).
async fn wait_for_ready_spares(broker: &Broker, n: usize) {
    let start = std::time::Instant::now();
    while metric(broker, "luabroker_spare_workers").await < n as f64 {
        assert!(start.elapsed() < DEADLINE, "fewer than {n} ready spares");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_session_runs_main_lua_once_on_a_spare_whose_vm_was_ready() {
    let broker = Broker::with_app(&[("main.lua", APP)], &[]);
    wait_for_ready_spares(&broker, 2).await;
    let waiting = spares(&broker);
    let id = broker.create_session().await;
    let worker = broker.workers()[0];
    assert!(
        waiting.contains(&worker),
        "the session's worker {worker} was one of the ready spares {waiting:?}"
    );
    let app = app_of(&broker, &id).await;
    assert_eq!(app["runs"], 1, "main.lua ran once in this VM: {app}");
    // The ids were filled in when the session was given to the ready VM.
    let vended = app["id"].as_str().expect("session._sessionID is a string");
    assert!(vended.parse::<u64>().is_ok(), "{app}");
    broker.wait_log("main.lua ran, run 1");
    let log = broker.log();
    let ran: Vec<&str> = log.lines().filter(|l| l.contains("main.lua ran")).collect();
    assert_eq!(ran.len(), 1, "main.lua ran once in all: {ran:?}");
    assert!(
        ran[0].contains(&id),
        "ui.log carries the session's id: {}",
        ran[0]
    );
}

#[tokio::test]
async fn sessions_from_ready_vms_share_no_globals_random_numbers_or_string_hash_seed() {
    share_nothing(&[]).await;
}

#[tokio::test]
async fn sessions_started_ahead_share_no_globals_random_numbers_or_string_hash_seed() {
    share_nothing(&["--start-ahead"]).await;
}

/// Five sessions of a server started with `flags`, the first having left a global behind: no
/// other sees it, and each has its own random sequence, string-hash seed and process.
async fn share_nothing(flags: &[&str]) {
    let broker = Broker::with_app(&[("main.lua", APP)], flags);
    let first = broker.create_session().await;
    // The first session leaves a global behind...
    let mut ws = connect(&broker, &first).await;
    send(
        &mut ws,
        msg(
            "create",
            json!({"id": 2, "parentId": 1, "properties": {"path": "leak()", "access": "action"}}),
        ),
    )
    .await;
    send(&mut ws, msg("update", json!({"varId": 2, "value": null}))).await;
    send(&mut ws, msg("get", json!({"varIds": [1]}))).await;
    recv_until(&mut ws, |m| m["type"] == "get").await;
    // ... and the sessions after it, built from VMs that were waiting meanwhile, never see it.
    let mut ids = vec![first];
    for _ in 0..4 {
        ids.push(broker.create_session().await);
    }
    let mut draws = HashSet::new();
    let mut orders = HashSet::new();
    for id in &ids {
        let app = app_of(&broker, id).await;
        assert_eq!(app["runs"], 1, "{app}");
        if id != &ids[0] {
            assert_eq!(
                app["sawLeak"], false,
                "another session's global is visible: {app}"
            );
        }
        draws.insert(app["r"].to_string());
        orders.insert(app["order"].to_string());
    }
    assert_eq!(draws.len(), ids.len(), "each VM its own random sequence");
    assert_eq!(
        orders.len(),
        ids.len(),
        "each VM its own string-hash seed (pairs order): {orders:?}"
    );
    // Every session is a process of its own.
    let workers: HashSet<i32> = broker.workers().into_iter().collect();
    assert_eq!(workers.len(), ids.len());
}

#[tokio::test]
async fn limits_and_errors_in_main_lua_are_reported_from_a_ready_vm_as_before() {
    let runaway = "while true do end\n";
    let broker = Broker::with_app(&[("main.lua", runaway)], &["--lua-time-limit", "200ms"]);
    wait_for_ready_spares(&broker, 1).await;
    let (status, body) = broker.get("/").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("Lua time limit of 200ms exceeded"), "{body}");

    let hog = "local t = {} for i = 1, 1e9 do t[i] = ('x'):rep(1024) .. i end\n";
    let broker = Broker::with_app(&[("main.lua", hog)], &["--lua-memory-limit", "16MiB"]);
    wait_for_ready_spares(&broker, 1).await;
    let (status, body) = broker.get("/").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("memory"), "{body}");

    // A syntax error is found when the file is run, with its file and line, although the
    // ready VM had tried to compile it ahead.
    let broken = "session:createAppVariable({})\nlocal = 1\n";
    let broker = Broker::with_app(&[("main.lua", broken)], &[]);
    wait_for_ready_spares(&broker, 1).await;
    let (status, body) = broker.get("/").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("main.lua:2:"), "{body}");
}

/// The zygote compiles the app once for every worker it forks (a spare loads the bytecode);
/// a session runs it, and a file changed since runs as it is now.
#[tokio::test]
async fn a_file_changed_after_the_zygote_and_the_vm_compiled_it_runs_as_it_is_now() {
    let broker = Broker::with_app(
        &[
            (
                "main.lua",
                "session:createAppVariable({ v = require('lib').v })\n",
            ),
            ("lib.lua", "return { v = 'old' }\n"),
        ],
        &[],
    );
    broker.wait_log("2 app files compiled for every worker");
    let id = broker.create_session().await;
    assert_eq!(fields_of(&broker, &id, &["v"]).await["v"], "old");
    wait_for_ready_spares(&broker, 2).await;
    let dir = broker.app_dir().expect("an app directory");
    std::fs::write(dir.join("lib.lua"), "return { v = 'new' }\n").unwrap();
    let id = broker.create_session().await;
    assert_eq!(fields_of(&broker, &id, &["v"]).await["v"], "new");
}

#[tokio::test]
async fn spares_with_limits_changed_by_sighup_are_not_used() {
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "lua_time_limit = \"5s\"\n").unwrap();
    let broker = Broker::with_app(
        &[("main.lua", "while true do end\n")],
        &["--config", config.path().to_str().unwrap()],
    );
    wait_for_ready_spares(&broker, 2).await;
    std::fs::write(config.path(), "lua_time_limit = \"150ms\"\n").unwrap();
    broker.signal(Signal::SIGHUP);
    broker.wait_log("the configuration was reloaded");
    // The spares built under the 5 s limit are let go; the session runs under the new one.
    let (status, body) = broker.get("/").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("Lua time limit of 150ms exceeded"), "{body}");
}

#[tokio::test]
async fn the_pool_is_refilled_after_sessions_take_its_spares() {
    let broker = Broker::with_app(
        &[("main.lua", APP)],
        &["--spare-workers", "3", "--max-spare-workers", "3"],
    );
    wait_for_ready_spares(&broker, 3).await;
    for _ in 0..6 {
        broker.create_session().await;
    }
    wait_for_ready_spares(&broker, 3).await;
    assert_eq!(broker.workers().len(), 6);
    wait_until("the pool to hold exactly its maximum", || {
        spares(&broker).len() == 3
    })
    .await;
}

#[tokio::test]
async fn without_a_pool_each_session_builds_its_vm_on_demand() {
    let broker = Broker::with_app(&[("main.lua", APP)], &["--spare-workers", "0"]);
    let id = broker.create_session().await;
    assert_eq!(app_of(&broker, &id).await["runs"], 1);
    assert!(spares(&broker).is_empty());
    assert_eq!(metric(&broker, "luabroker_spare_workers_target").await, 0.0);
}

#[tokio::test]
async fn spares_and_sessions_die_with_the_broker() {
    let mut broker = Broker::with_app(&[("main.lua", APP)], &[]);
    wait_for_ready_spares(&broker, 2).await;
    broker.create_session().await;
    let mut processes = spares(&broker);
    processes.extend(broker.workers());
    assert!(processes.len() >= 3, "{processes:?}");
    broker.signal(Signal::SIGKILL);
    broker.wait_exit();
    wait_until("every spare and worker to be gone", || {
        processes.iter().all(|&p| !is_alive(p))
    })
    .await;
}

/// Executable mappings of `pid` as (start, file), the file empty for anonymous memory.
fn code_mappings(pid: i32) -> Vec<(String, String)> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let executable = fields.get(1)?.as_bytes().get(2) == Some(&b'x');
            let start = fields[0].split('-').next()?.to_string();
            executable.then(|| (start, fields.get(5).copied().unwrap_or("").to_string()))
        })
        .collect()
}

/// The zygote copies the executable's code to anonymous memory before it forks, so a forked
/// worker starts with it mapped; the session still runs as ever. With `LUABROKER_FILE_TEXT`
/// the code stays file-backed (for profilers).
#[tokio::test]
async fn workers_run_the_zygotes_anonymous_copy_of_the_code_unless_told_to_keep_the_file() {
    let exe = std::fs::canonicalize(BIN).unwrap();
    let exe = exe.to_string_lossy().to_string();
    for (env, file_backed) in [
        (&[][..], false),
        (&[("LUABROKER_FILE_TEXT", "1")][..], true),
    ] {
        let broker = Broker::start_with(
            &[],
            Launch {
                env,
                ..Launch::default()
            },
        );
        let id = broker.create_session().await;
        let mut ws = open_tab(&broker, &id).await;
        send(
            &mut ws,
            msg(
                "create",
                json!({"id": 2, "parentId": 1, "properties": {"path": "count"}}),
            ),
        )
        .await;
        recv_until(&mut ws, |m| m["data"]["varId"] == 2).await;
        let worker = broker.workers()[0];
        let code = code_mappings(worker);
        let from_file = code.iter().any(|(_, file)| *file == exe);
        assert_eq!(
            from_file, file_backed,
            "worker {worker}'s code mappings: {code:?}"
        );
        // The libraries' code: the system's files, or the zygote's own copies (memfds, which
        // a fork maps without copying page-table entries).
        let libc = code.iter().any(|(_, file)| file.contains("/libc.so"));
        let copies = code
            .iter()
            .any(|(_, file)| file.starts_with("/memfd:lb-library"));
        assert_eq!(
            (libc, copies),
            (file_backed, !file_backed),
            "worker {worker}'s code mappings: {code:?}"
        );
        // The broker itself is never changed.
        assert!(code_mappings(broker.pid)
            .iter()
            .any(|(_, file)| *file == exe));
    }
}

#[tokio::test]
async fn with_start_ahead_get_hands_out_a_session_whose_main_lua_already_ran_once() {
    // A pool of exactly two, so the session handed out is one of those seen waiting.
    let broker = Broker::with_app(&[("main.lua", APP)], &[AHEAD, POOL, "2", MAX_POOL, "2"]);
    wait_for_ready_spares(&broker, 2).await;
    wait_until("main.lua's two runs in the log", || {
        main_runs(&broker).len() == 2
    })
    .await;
    let waiting = started_ahead(&broker);
    assert_eq!(waiting.len(), 2, "{waiting:?}");
    let before = main_runs(&broker);
    let id = broker.create_session().await;
    assert_eq!(
        metric(&broker, "luabroker_sessions_started_ahead_total").await,
        1.0
    );
    // Its worker was one of those waiting, and knows now that it has its user.
    wait_until("the session's worker to be named lb-session", || {
        broker.workers().len() == 1
    })
    .await;
    let worker = broker.workers()[0];
    assert!(waiting.contains(&worker), "{worker} not in {waiting:?}");
    // main.lua ran once for this session, under its ids, before the GET /: not again after.
    let app = app_of(&broker, &id).await;
    assert_eq!(app["runs"], 1, "{app}");
    let mine: Vec<String> = main_runs(&broker)
        .into_iter()
        .filter(|l| l.contains(&id))
        .collect();
    assert_eq!(mine.len(), 1, "main.lua ran once for {id}: {mine:?}");
    assert!(before.contains(&mine[0]), "it ran before GET /: {mine:?}");
    // Every run names a session of its own.
    let runs = main_runs(&broker);
    let sessions: HashSet<&str> = runs
        .iter()
        .filter_map(|l| l.split("session{id=").nth(1)?.split(' ').next())
        .collect();
    assert_eq!(sessions.len(), runs.len(), "{runs:?}");
}

#[tokio::test]
async fn a_session_started_ahead_is_not_handed_out_once_a_file_it_ran_has_changed() {
    let broker = Broker::with_app(
        &[
            (
                "main.lua",
                "session:createAppVariable({ v = require('lib').v })\n",
            ),
            ("lib.lua", "return { v = 'old' }\n"),
        ],
        &[AHEAD, POOL, "2", MAX_POOL, "2"],
    );
    // Both have run main.lua (and read lib.lua) before it changes.
    wait_for_ready_spares(&broker, 2).await;
    let dir = broker.app_dir().expect("an app directory");
    std::fs::write(dir.join("lib.lua"), "return { v = 'new' }\n").unwrap();
    let id = broker.create_session().await;
    assert_eq!(fields_of(&broker, &id, &["v"]).await["v"], "new");
    broker.wait_log("the file changed since its main.lua read it");
    // The spares started since ran the app as it is now, and are handed out again (one
    // started while the file was being written may be let go too).
    for attempt in 0.. {
        wait_until("a session started ahead", || {
            !started_ahead(&broker).is_empty()
        })
        .await;
        let id = broker.create_session().await;
        assert_eq!(fields_of(&broker, &id, &["v"]).await["v"], "new");
        if metric(&broker, "luabroker_sessions_started_ahead_total").await >= 1.0 {
            break;
        }
        assert!(
            attempt < 10,
            "no session started ahead was handed out again"
        );
    }
}

#[tokio::test]
async fn a_main_lua_that_fails_ahead_is_reported_by_get_as_before_until_it_is_fixed() {
    let broken = "session:createAppVariable({})\nlocal = 1\n";
    // A pool of one: once its main.lua has failed ahead, no other is being started ahead.
    let broker = Broker::with_app(&[("main.lua", broken)], &[AHEAD, POOL, "1", MAX_POOL, "1"]);
    broker.wait_log("a session started ahead failed");
    wait_for_ready_spares(&broker, 1).await;
    let (status, body) = broker.get("/").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("main.lua:2:"), "{body}");
    assert!(
        started_ahead(&broker).is_empty(),
        "after a failure ahead, spares wait for GET /"
    );
    // Fixed: the next GET / runs it and succeeds, and from then on sessions are started ahead
    // again (the spare that waited unstarted too).
    let dir = broker.app_dir().expect("an app directory");
    std::fs::write(dir.join("main.lua"), APP).unwrap();
    let id = broker.create_session().await;
    assert_eq!(app_of(&broker, &id).await["runs"], 1);
    wait_until("a session started ahead again", || {
        !started_ahead(&broker).is_empty()
    })
    .await;
    wait_for_ready_spares(&broker, 1).await;
    let id = broker.create_session().await;
    assert_eq!(app_of(&broker, &id).await["runs"], 1);
    assert_eq!(
        metric(&broker, "luabroker_sessions_started_ahead_total").await,
        1.0
    );
}

#[tokio::test]
async fn sessions_started_ahead_die_with_the_broker() {
    let mut broker = Broker::with_app(&[("main.lua", APP)], &["--start-ahead"]);
    wait_until("two sessions started ahead", || {
        started_ahead(&broker).len() >= 2
    })
    .await;
    broker.create_session().await;
    let mut processes = started_ahead(&broker);
    processes.extend(broker.workers());
    broker.signal(Signal::SIGKILL);
    broker.wait_exit();
    wait_until("every worker to be gone", || {
        processes.iter().all(|&p| !is_alive(p))
    })
    .await;
}
