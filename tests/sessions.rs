//! Session creation end to end, as a user and an operator see it: `GET /` starts a worker
//! process that runs main.lua, then 302; each session is its own process and its own VM; a
//! worker's death touches no other session; no worker outlives the broker; failures of main.lua
//! are reported; nothing but our own workers can talk on the worker socket.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::net::UnixStream;

use common::*;
use nix::sys::signal::Signal;
use serde_json::Value as Json;

/// An app whose VM-global counter would show sharing: every session must see count 1.
const COUNTER_APP: &str = r#"
loads = (loads or 0) + 1
session:createAppVariable({ count = loads, sid = session._sessionID })
"#;

/// The value of variable 1 as the debug view reports it.
async fn app_value(broker: &Broker, id: &str) -> Json {
    let vars = broker.variables(id).await;
    let app = vars
        .iter()
        .find(|v| v["id"] == 1)
        .unwrap_or_else(|| panic!("session {id} has no variable 1: {vars:?}"));
    app["value"].clone()
}

#[tokio::test]
async fn get_root_starts_a_worker_whose_main_lua_created_variable_1() {
    let broker = Broker::with_app(&[("main.lua", COUNTER_APP)], &["--debug-pages"]);
    assert!(broker.workers().is_empty());

    let id = broker.create_session().await;

    assert_eq!(
        broker.workers().len(),
        1,
        "one worker process for one session"
    );
    let app = app_value(&broker, &id).await;
    assert!(
        app.get("obj").is_some(),
        "variable 1 holds the app object: {app}"
    );

    // The session page answers with the cookie ui-engine's frontend reads.
    let page = broker.session_page(&id).await;
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    // Sub-paths of a session serve the same page.
    assert_eq!(broker.get(&format!("/{id}/some/view")).await.0, 200);
}

#[tokio::test]
async fn fifty_sessions_are_fifty_processes_with_fifty_separate_vms() {
    let broker = Broker::with_app(&[("main.lua", COUNTER_APP)], &["--debug-pages"]);
    let mut ids = HashSet::new();
    for _ in 0..50 {
        ids.insert(broker.create_session().await);
    }
    assert_eq!(ids.len(), 50, "50 distinct session ids");
    let workers: HashSet<i32> = broker.workers().into_iter().collect();
    assert_eq!(workers.len(), 50, "50 distinct worker pids");

    for id in &ids {
        assert!(
            app_value(&broker, id).await["obj"].is_i64(),
            "variable 1 of {id}"
        );
    }
    // Fields reach a tab only through child variables: read each session's counter and vended
    // id over its own socket. Each VM ran main.lua exactly once.
    let mut counts = HashSet::new();
    let mut sids = HashSet::new();
    for id in &ids {
        let mut ws = connect(&broker, id).await;
        send(
            &mut ws,
            serde_json::json!([
                msg(
                    "create",
                    serde_json::json!({"id": 2, "parentId": 1, "properties": {"path": "count"}})
                ),
                msg(
                    "create",
                    serde_json::json!({"id": 3, "parentId": 1, "properties": {"path": "sid"}})
                ),
            ]),
        )
        .await;
        let mut got = std::collections::HashMap::new();
        while got.len() < 2 {
            for m in recv(&mut ws).await {
                if m["type"] == "update" && m["data"].get("value").is_some() {
                    got.insert(
                        m["data"]["varId"].as_i64().unwrap(),
                        m["data"]["value"].clone(),
                    );
                }
            }
        }
        counts.insert(got[&2].clone());
        sids.insert(got[&3].clone());
    }
    assert_eq!(counts, HashSet::from([Json::from(1)]), "every VM is fresh");
    assert_eq!(sids.len(), 50, "every session has its own vended id");
}

#[tokio::test]
async fn killing_one_worker_leaves_the_others_serving_and_it_is_reaped() {
    let broker = Broker::with_app(&[("main.lua", COUNTER_APP)], &["--debug-pages"]);
    let a = broker.create_session().await;
    let before: HashSet<i32> = broker.workers().into_iter().collect();
    let b = broker.create_session().await;
    let after: HashSet<i32> = broker.workers().into_iter().collect();
    let b_pid = *after.difference(&before).next().expect("b's worker");
    let a_pid = *before.iter().next().unwrap();

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(b_pid), Signal::SIGKILL).unwrap();
    wait_until("the killed worker to be reaped", || {
        !is_alive(b_pid) && !is_zombie(b_pid) && proc_state(b_pid).is_none()
    })
    .await;
    broker.wait_log("session worker crashed");
    assert!(
        broker.log().contains("signal 9 (SIGKILL)"),
        "exit status logged"
    );

    assert!(is_alive(a_pid), "the other session's worker lives on");
    app_value(&broker, &a).await; // and answers
    let c = broker.create_session().await; // and the server still serves
    assert_ne!(c, b);
}

#[tokio::test]
async fn workers_die_within_a_second_of_the_broker_being_killed() {
    let mut broker = Broker::with_app(&[("main.lua", COUNTER_APP)], &["--lua-time-limit", "0"]);
    for _ in 0..5 {
        broker.create_session().await;
    }
    let workers = broker.workers();
    assert_eq!(workers.len(), 5);
    let socket = worker_socket_of(workers[0]).expect("worker socket in its environment");

    broker.signal(Signal::SIGKILL);
    broker.wait_exit();
    let killed_at = std::time::Instant::now();
    wait_until("every worker to die with its broker", || {
        workers_of_socket(&socket).is_empty()
    })
    .await;
    assert!(
        killed_at.elapsed() < std::time::Duration::from_secs(1),
        "workers outlived the broker by {:?}",
        killed_at.elapsed()
    );
}

#[tokio::test]
async fn main_lua_syntax_error_is_a_500_with_file_and_line() {
    let broker = Broker::with_app(&[("main.lua", "local x = = 1\n")], &[]);
    let resp = client().get(broker.url("/")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 500);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("main.lua:1:"),
        "file and line in the body: {body}"
    );
    broker.wait_log("main.lua:1:");
    wait_until("the failed worker to be reaped", || {
        broker.workers().is_empty()
    })
    .await;
    assert!(
        descendants(broker.pid).iter().all(|p| !is_zombie(*p)),
        "no zombie left"
    );
}

#[tokio::test]
async fn main_lua_runtime_error_is_a_500_and_the_server_keeps_serving() {
    let broker = Broker::with_app(
        &[(
            "main.lua",
            "local function boom() error('no database here') end\nboom()\n",
        )],
        &[],
    );
    for _ in 0..3 {
        let resp = client().get(broker.url("/")).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 500);
        let body = resp.text().await.unwrap();
        assert!(body.contains("main.lua:1: no database here"), "{body}");
    }
    wait_until("failed workers to be reaped", || {
        broker.workers().is_empty()
    })
    .await;
    assert!(descendants(broker.pid).iter().all(|p| !is_zombie(*p)));
    let metrics = client()
        .get(broker.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("luabroker_sessions_failed_total 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn main_lua_without_an_app_variable_is_a_500() {
    let broker = Broker::with_app(&[("main.lua", "local x = 1\n")], &[]);
    let resp = client().get(broker.url("/")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 500);
    assert!(resp.text().await.unwrap().contains("createAppVariable"));
}

#[tokio::test]
async fn unknown_session_is_a_404_page_linking_home() {
    let broker = Broker::start(&[]);
    for path in [
        "/0123456789abcdef0123456789abcdef",
        "/not-a-session",
        "/0123456789abcdef0123456789abcdef/deeper/path",
        "/..%2f..%2fetc%2fpasswd",
    ] {
        let resp = client().get(broker.url(path)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 404, "{path}");
        let body = resp.text().await.unwrap();
        assert!(
            body.contains("does not exist or has expired"),
            "{path}: {body}"
        );
        assert!(body.contains("href=\"/\""), "links to /");
    }
    let ws = client()
        .get(broker.url("/ws/0123456789abcdef0123456789abcdef"))
        .send()
        .await
        .unwrap();
    assert_eq!(ws.status().as_u16(), 404);
}

#[tokio::test]
async fn the_default_app_serves_without_any_flags() {
    let broker = Broker::start(&[]);
    let id = broker.create_session().await;
    broker.session_page(&id).await;
}

/// Someone on the machine connects to the worker socket: wrong token, garbage bytes, an
/// oversized length prefix. Each is refused; live sessions are not disturbed.
#[tokio::test]
async fn forged_clients_on_the_worker_socket_are_refused() {
    let broker = Broker::with_app(&[("main.lua", COUNTER_APP)], &["--debug-pages"]);
    let id = broker.create_session().await;
    let pid = broker.workers()[0];
    let socket = worker_socket_of(pid).unwrap();

    // The directory is private to the broker's user.
    let dir = std::path::Path::new(&socket).parent().unwrap();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700, "socket directory mode");

    // 1. A well-formed hello with a token nobody was given.
    let hello = protocol_hello([0xab; 32], std::process::id());
    assert_refused(&socket, &hello);
    broker.wait_log("unknown or already used token");
    // 2. A well-formed hello that lies about its pid.
    assert_refused(&socket, &protocol_hello([0xab; 32], 1));
    broker.wait_log("hello claims pid 1");
    // 3. Garbage.
    let mut garbage = 8u32.to_le_bytes().to_vec();
    garbage.extend_from_slice(&[0xff; 8]);
    assert_refused(&socket, &garbage);
    broker.wait_log("undecodable frame");
    // 4. A length prefix far over the limit.
    assert_refused(&socket, &u32::MAX.to_le_bytes());
    broker.wait_log("over the 16777216-byte limit");

    assert!(is_alive(pid), "the live session's worker is untouched");
    app_value(&broker, &id).await;
    broker.create_session().await;
}

/// A hello frame as a worker of this build would send it, built from the shared protocol crate.
fn protocol_hello(token: [u8; 32], pid: u32) -> Vec<u8> {
    protocol::codec::encode_frame(&protocol::ipc::WorkerToBroker::Hello(
        protocol::ipc::Hello {
            version: protocol::PROTOCOL_VERSION,
            token,
            pid,
        },
    ))
    .unwrap()
}

/// Writes `bytes` and expects the broker to hang up without a word.
fn assert_refused(socket: &str, bytes: &[u8]) {
    use std::io::Read;
    let mut s = UnixStream::connect(socket).expect("connect to the worker socket");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let _ = s.write_all(bytes);
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the broker answered a forged client");
}

fn parent_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn workers_are_forked_from_the_zygote_and_draw_their_own_random_numbers() {
    let app = "session:createAppVariable({ r = math.random(1, 1 << 40) })\n";
    let broker = Broker::with_app(&[("main.lua", app)], &["--debug-pages"]);
    let a = broker.create_session().await;
    let b = broker.create_session().await;
    for pid in broker.workers() {
        let zygote = parent_of(pid);
        assert_eq!(comm(zygote).as_deref(), Some("lb-zygote"));
        assert_eq!(parent_of(zygote), broker.pid);
    }
    let mut draws = HashSet::new();
    for id in [&a, &b] {
        let mut ws = connect(&broker, id).await;
        send(
            &mut ws,
            serde_json::json!(msg(
                "create",
                serde_json::json!(
            {"id": 2, "parentId": 1, "properties": {"path": "r"}})
            )),
        )
        .await;
        let m = recv_until(&mut ws, |m| m["data"]["varId"] == 2).await;
        draws.insert(m["data"]["value"].clone());
    }
    assert_eq!(draws.len(), 2, "forked workers share no random state");
}

#[tokio::test]
async fn without_the_zygote_workers_are_the_brokers_children() {
    let broker = Broker::with_app(&[("main.lua", COUNTER_APP)], &["--no-zygote"]);
    broker.create_session().await;
    let pid = broker.workers()[0];
    assert_eq!(parent_of(pid), broker.pid);
    assert!(broker
        .children()
        .iter()
        .all(|p| comm(*p).as_deref() != Some("lb-zygote")));
}

/// The zygote dies: the workers it forked die with it (their tabs are told), the broker reaps
/// them, and new sessions are started by exec.
#[tokio::test]
async fn a_dead_zygote_takes_its_workers_and_the_broker_carries_on_by_exec() {
    let broker = Broker::with_app(&[("main.lua", COUNTER_APP)], &[]);
    let id = broker.create_session().await;
    let mut ws = connect(&broker, &id).await;
    send(
        &mut ws,
        serde_json::json!(msg("get", serde_json::json!({"varIds": [1]}))),
    )
    .await;
    recv_until(&mut ws, |m| m["type"] == "get").await;
    let worker = broker.workers()[0];
    let zygote = parent_of(worker);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(zygote), Signal::SIGKILL).unwrap();

    let crash = recv_until(&mut ws, |m| m["type"] == "error").await;
    assert_eq!(crash["data"]["code"], "session-crashed");
    wait_until("the orphaned worker to be reaped", || {
        proc_state(worker).is_none()
    })
    .await;
    broker.wait_log("the zygote is gone");

    broker.create_session().await;
    let fresh = broker.workers();
    assert_eq!(fresh.len(), 1);
    assert_eq!(parent_of(fresh[0]), broker.pid, "exec'd by the broker now");
    assert!(descendants(broker.pid).iter().all(|p| !is_zombie(*p)));
}

/// The worker `GET /` just started (with no spare pool, the one new `lb-session`).
async fn create_with_worker(broker: &Broker) -> (String, i32) {
    let before = broker.workers();
    let id = broker.create_session().await;
    let started: Vec<i32> = broker
        .workers()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert_eq!(started.len(), 1, "one worker per GET /");
    (id, started[0])
}

/// A session's app variable, read over its WebSocket (a worker that answers).
async fn answers(broker: &Broker, id: &str) {
    let mut ws = connect(broker, id).await;
    send(
        &mut ws,
        serde_json::json!(msg("get", serde_json::json!({"varIds": [1]}))),
    )
    .await;
    recv_until(&mut ws, |m| m["type"] == "get").await;
}

async fn zygotes_metric(broker: &Broker) -> String {
    let metrics = broker.get("/metrics").await.1;
    metrics
        .lines()
        .find(|l| l.starts_with("luabroker_zygotes "))
        .unwrap_or_else(|| panic!("no luabroker_zygotes in {metrics}"))
        .to_string()
}

/// After `--zygote-forks` workers a fresh zygote forks the next ones. The retired one keeps
/// its workers, whose sessions go on; once the last of them has ended it exits and is reaped,
/// and every zygote and worker still dies with the broker.
#[tokio::test]
async fn a_zygote_past_its_forks_gives_way_and_exits_after_its_last_worker() {
    let mut broker = Broker::with_app(
        &[("main.lua", COUNTER_APP)],
        &["--zygote-forks", "2", "--spare-workers", "0"],
    );
    let (a, a_worker) = create_with_worker(&broker).await;
    let (_b, b_worker) = create_with_worker(&broker).await;
    let first = parent_of(a_worker);
    assert_eq!(
        parent_of(b_worker),
        first,
        "both forked by the first zygote"
    );
    broker.wait_log("a fresh zygote forks the workers from now on");

    let (c, c_worker) = create_with_worker(&broker).await;
    let second = parent_of(c_worker);
    assert_ne!(
        second, first,
        "the third worker comes from the fresh zygote"
    );
    assert_eq!(comm(second).as_deref(), Some("lb-zygote"));
    assert_eq!(parent_of(second), broker.pid);
    assert!(
        is_alive(first),
        "the retired zygote lives while its workers do"
    );
    assert_eq!(zygotes_metric(&broker).await, "luabroker_zygotes 2");
    answers(&broker, &a).await; // a session of the retired zygote goes on
    answers(&broker, &c).await;

    for worker in [a_worker, b_worker] {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(worker), Signal::SIGKILL).unwrap();
    }
    wait_until("the retired zygote to exit and be reaped", || {
        proc_state(first).is_none()
    })
    .await;
    assert_eq!(zygotes_metric(&broker).await, "luabroker_zygotes 1");
    answers(&broker, &c).await;
    assert!(descendants(broker.pid).iter().all(|p| !is_zombie(*p)));

    broker.signal(Signal::SIGKILL);
    broker.wait_exit();
    wait_until("the zygote and its worker to die with the broker", || {
        !is_alive(second) && !is_alive(c_worker)
    })
    .await;
}

/// `--worker-nice` lowers the CPU priority of every worker, forked from the zygote or exec'd,
/// and of the zygote, so the broker's own threads come first; the broker keeps its own
/// priority, and 0 (the default) leaves every process at it.
#[tokio::test]
async fn workers_run_at_the_nice_value_given_and_the_broker_at_its_own() {
    let own = nice(std::process::id() as i32).unwrap();
    for (args, zygote) in [
        (&["--worker-nice", "12"][..], true),
        (&["--worker-nice", "12", "--no-zygote"][..], false),
    ] {
        let mut all = vec!["--spare-workers", "1"];
        all.extend_from_slice(args);
        let broker = Broker::with_app(&[("main.lua", COUNTER_APP)], &all);
        let (id, worker) = create_with_worker(&broker).await;
        answers(&broker, &id).await;
        assert_eq!(nice(worker), Some(12), "{args:?}: a session's worker");
        wait_until("a spare to be ready", || {
            broker
                .children()
                .iter()
                .any(|p| comm(*p).as_deref() == Some("lb-spare"))
        })
        .await;
        let children = broker.children();
        for p in &children {
            assert_eq!(nice(*p), Some(12), "{args:?}: {:?} ({p})", comm(*p));
        }
        assert_eq!(
            children
                .iter()
                .any(|p| comm(*p).as_deref() == Some("lb-zygote")),
            zygote,
            "{args:?}"
        );
        assert_eq!(
            nice(broker.pid),
            Some(own),
            "{args:?}: the broker keeps its priority"
        );
    }
    let broker = Broker::with_app(&[("main.lua", COUNTER_APP)], &[]);
    let (id, worker) = create_with_worker(&broker).await;
    answers(&broker, &id).await;
    assert_eq!(
        nice(worker),
        Some(own),
        "by default workers run at the broker's priority"
    );
}

/// The zygote itself, driven over its pipes as the broker drives it: a refused request is
/// answered as refused, and the next request still gets its own, real, child.
#[test]
fn a_refused_fork_request_does_not_take_the_next_requests_pid() {
    use protocol::zygote::{BrokerToZygote, ExitStatus, ZygoteToBroker};
    use std::io::Read;
    use std::process::{Command, Stdio};
    use std::sync::mpsc;

    let dir = tempfile::tempdir().unwrap();
    // No broker listens there: each forked worker fails to connect and exits (SETUP, 2).
    let socket = dir.path().join("nobody.sock");
    let mut zygote = Command::new(env!("CARGO_BIN_EXE_luabroker"))
        .arg(protocol::launch::ZYGOTE_ARG)
        .env(protocol::launch::ENV_SOCKET, &socket)
        .env(protocol::launch::ENV_PARENT, std::process::id().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut requests = zygote.stdin.take().unwrap();
    let mut answers_pipe = zygote.stdout.take().unwrap();
    let (tx, answers) = mpsc::channel();
    std::thread::spawn(move || loop {
        let mut len = [0u8; 4];
        if answers_pipe.read_exact(&mut len).is_err() {
            return;
        }
        let mut payload = vec![0u8; u32::from_le_bytes(len) as usize];
        answers_pipe.read_exact(&mut payload).unwrap();
        let answer: ZygoteToBroker = protocol::codec::decode_payload(&payload).unwrap();
        if tx.send(answer).is_err() {
            return;
        }
    });
    let mut exits = Vec::new();
    let mut ask = |request: BrokerToZygote| -> ZygoteToBroker {
        requests
            .write_all(&protocol::codec::encode_frame(&request).unwrap())
            .unwrap();
        loop {
            match answers.recv_timeout(DEADLINE).expect("the zygote answers") {
                ZygoteToBroker::Exited { pid, status } => exits.push((pid, status)),
                answer => return answer,
            }
        }
    };

    let ZygoteToBroker::Forked { request: 1, pid: a } = ask(BrokerToZygote::Fork {
        request: 1,
        token: [1; 32],
    }) else {
        panic!("the first request was not forked");
    };
    let refused = ask(BrokerToZygote::Fork {
        request: 1,
        token: [2; 32],
    });
    assert!(
        matches!(&refused, ZygoteToBroker::Refused { request: 1, reason } if reason.contains("request id")),
        "a reused id is refused, under that id: {refused:?}"
    );
    let ZygoteToBroker::Forked { request: 2, pid: b } = ask(BrokerToZygote::Fork {
        request: 2,
        token: [3; 32],
    }) else {
        panic!("the request after a refusal was not forked");
    };
    assert_ne!(a, b, "each request has its own child");

    // Both are real children of the zygote: each is reaped and reported under its own pid.
    while exits.len() < 2 {
        match answers
            .recv_timeout(DEADLINE)
            .expect("both children are reported")
        {
            ZygoteToBroker::Exited { pid, status } => exits.push((pid, status)),
            other => panic!("unasked answer {other:?}"),
        }
    }
    exits.sort_by_key(|(pid, _)| *pid);
    let mut expected = vec![(a, ExitStatus::Code(2)), (b, ExitStatus::Code(2))];
    expected.sort_by_key(|(pid, _)| *pid);
    assert_eq!(exits, expected);

    drop(requests); // EOF: the zygote exits cleanly
    assert!(zygote.wait().unwrap().success());
}
