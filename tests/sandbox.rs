//! Workers that cannot hurt the host (issue 9): what `/proc` says about a serving worker, a
//! forbidden system call ending only its own session as `sandbox-violation` naming the call,
//! no network from inside a worker, and the start-up refusals. The forbidden calls are made by
//! `__luabroker_test`, which exists only in the executable cargo builds for these tests (the
//! worker's `test-hooks` feature); a `cargo build` has no such function.

mod common;

use common::*;
use serde_json::{json, Value as Json};

/// An app whose actions make the calls a test names.
const APP: &str = r#"
local App = {}
App.__index = App
function App:forbidden() __luabroker_test.syscall(self.call) end
function App:connect() self.result = __luabroker_test.connect(self.port) end
app = setmetatable({call = 'ptrace', port = 0, result = '', count = 0}, App)
session:createAppVariable(app)
"#;

fn frame(messages: Vec<Json>) -> Json {
    json!({"userEvent": true, "messages": messages})
}

fn create(id: i64, properties: Json) -> Json {
    msg(
        "create",
        json!({"id": id, "parentId": 1, "properties": properties}),
    )
}

fn write(id: i64, value: Json) -> Json {
    msg("update", json!({"varId": id, "value": value}))
}

/// `/proc/<pid>/status` field `name`, trimmed.
fn status(pid: i32, name: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Opens a tab, makes sure the worker serves it, and sets the app's `field` to `value`.
async fn tab(broker: &Broker, id: &str) -> Ws {
    let mut ws = connect(broker, id).await;
    send(&mut ws, msg("get", json!({"varIds": [1]}))).await;
    recv_until(&mut ws, |m| m["type"] == "get").await;
    ws
}

/// Calls the app's method `name` (an action) with `field` set to `value` first.
async fn call(ws: &mut Ws, field: &str, value: Json, method: &str) {
    send(
        ws,
        frame(vec![
            create(2, json!({"path": field, "access": "rw"})),
            write(2, value),
            create(
                3,
                json!({"path": format!("{method}()"), "access": "action"}),
            ),
            write(3, Json::Null),
        ]),
    )
    .await;
}

/// The `session-crashed` description a tab gets before its socket closes.
async fn crash_cause(ws: &mut Ws) -> String {
    let (code, _, before) = recv_close(ws).await;
    assert_eq!(code, 1011, "{before:?}");
    let crash = before
        .iter()
        .find(|m| m["type"] == "error" && m["data"]["code"] == "session-crashed")
        .unwrap_or_else(|| panic!("no session-crashed before the close: {before:?}"));
    crash["data"]["description"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_serving_worker_has_no_privileges_and_a_seccomp_filter() {
    let broker = Broker::with_app(&[("main.lua", APP)], &[]);
    let id = broker.create_session().await;
    let _ws = tab(&broker, &id).await;
    let pid = broker.workers()[0];
    assert_eq!(status(pid, "NoNewPrivs"), "1");
    assert_eq!(status(pid, "Seccomp"), "2");
    assert_eq!(status(pid, "CapEff"), "0000000000000000");
    assert_eq!(status(pid, "CapPrm"), "0000000000000000");
    assert_eq!(status(pid, "CapBnd"), "0000000000000000");
    if running_as_root() {
        let uid = status(pid, "Uid");
        assert!(
            uid.split_whitespace().all(|u| u != "0"),
            "a root broker's worker runs as another user: Uid {uid}"
        );
        // Its own network and mount namespaces.
        for ns in ["net", "mnt", "ipc"] {
            let mine = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
            let its = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
            assert_ne!(mine, its, "the worker has a {ns} namespace of its own");
        }
    }
    let (_, metrics) = broker.get("/metrics").await;
    assert!(
        metrics.contains("luabroker_sandbox_layer{layer=\"seccomp\"} 1"),
        "{metrics}"
    );
    assert!(broker.log().contains("worker sandbox:"), "{}", broker.log());
}

#[tokio::test]
async fn a_forbidden_call_ends_only_its_session_as_a_sandbox_violation_naming_the_call() {
    let broker = Broker::with_app(&[("main.lua", APP)], &[]);
    let other = broker.create_session().await;
    let mut other_ws = tab(&broker, &other).await;
    let id = broker.create_session().await;
    let mut ws = tab(&broker, &id).await;

    call(&mut ws, "call", json!("ptrace"), "forbidden").await;
    let cause = crash_cause(&mut ws).await;
    assert!(cause.contains("sandbox-violation: ptrace"), "{cause}");
    assert!(cause.contains("SIGSYS"), "{cause}");
    broker.wait_log("sandbox-violation: ptrace");

    // The other session goes on.
    send(&mut other_ws, msg("get", json!({"varIds": [1]}))).await;
    let reply = recv_until(&mut other_ws, |m| m["type"] == "get").await;
    assert_eq!(reply["data"]["variables"][0]["id"], 1);
    let (_, metrics) = broker.get("/metrics").await;
    assert!(
        metrics.contains("luabroker_sandbox_violations_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("luabroker_worker_exits_total{cause=\"sandbox_violation\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_worker_cannot_connect_to_the_brokers_port() {
    let broker = Broker::with_app(&[("main.lua", APP)], &[]);
    let port: u16 = broker.url("").rsplit(':').next().unwrap().parse().unwrap();
    let id = broker.create_session().await;
    let mut ws = tab(&broker, &id).await;
    call(&mut ws, "port", json!(port), "connect").await;
    // Making the socket is already forbidden.
    let cause = crash_cause(&mut ws).await;
    assert!(cause.contains("sandbox-violation: socket"), "{cause}");
}

#[tokio::test]
async fn root_workers_are_refused_unless_allowed() {
    if !running_as_root() {
        return; // the rule is about a broker that runs as root
    }
    let out = std::process::Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--worker-user", "root"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--allow-root-workers"), "{err}");

    let broker = Broker::with_app(
        &[("main.lua", APP)],
        &["--worker-user", "root", "--allow-root-workers"],
    );
    let id = broker.create_session().await;
    let _ws = tab(&broker, &id).await;
    let pid = broker.workers()[0];
    assert!(status(pid, "Uid").starts_with('0'));
    assert_eq!(
        status(pid, "CapEff"),
        "0000000000000000",
        "root, but no capabilities"
    );
    assert_eq!(status(pid, "Seccomp"), "2");
}
