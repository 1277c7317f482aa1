//! Crash isolation and the session lifecycle: every failure we can provoke, and what the
//! person in front of the session (or the operator) must see. One test per row of the README's
//! "What happens when things go wrong" table.

mod common;

use std::time::Duration;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;

const APP: &str = "session:createAppVariable({ count = 0 })\n";

fn sig(pid: i32, s: Signal) {
    kill(Pid::from_raw(pid), s).unwrap();
}

/// The only session worker of a broker that has one session.
fn only_worker(broker: &Broker) -> i32 {
    let w = broker.workers();
    assert_eq!(w.len(), 1, "expected one session worker, got {w:?}");
    w[0]
}

/// A round trip through the worker: once it returns, the tab is attached to the session.
async fn round_trip(ws: &mut Ws) {
    send(ws, json!({"type": "get", "data": {"varIds": [1]}})).await;
    let reply = recv_until(ws, |m| m["type"] == "get").await;
    assert_eq!(reply["data"]["variables"][0]["id"], 1);
}

async fn assert_crash_reported(broker: &Broker, signal: Signal, expect: &str) {
    let id = broker.create_session().await;
    let mut ws = connect(broker, &id).await;
    round_trip(&mut ws).await;
    let pid = only_worker(broker);
    sig(pid, signal);
    let (code, _, before) = recv_close(&mut ws).await;
    let crash = before
        .iter()
        .find(|m| m["type"] == "error")
        .unwrap_or_else(|| panic!("no error before the close: {before:?}"));
    assert_eq!(crash["data"]["code"], "session-crashed");
    let text = crash["data"]["description"].as_str().unwrap();
    assert!(text.contains(expect), "cause named: {text}");
    assert_eq!(code, 1011);
    wait_until("the crashed worker to be reaped", || {
        proc_state(pid).is_none()
    })
    .await;
}

#[tokio::test]
async fn a_killed_worker_is_reported_to_its_tabs_and_touches_no_other_session() {
    let broker = Broker::with_app(&[("main.lua", APP)], &["--debug-pages"]);
    let other = broker.create_session().await;
    let other_pid = only_worker(&broker);
    let mut other_ws = connect(&broker, &other).await;

    // Now a second session whose worker we kill (only_worker needs one: find it by difference).
    let id = broker.create_session().await;
    let pid = *broker.workers().iter().find(|p| **p != other_pid).unwrap();
    let mut ws = connect(&broker, &id).await;
    round_trip(&mut ws).await;
    sig(pid, Signal::SIGKILL);
    let (code, _, before) = recv_close(&mut ws).await;
    assert_eq!(code, 1011);
    let desc = before[0]["data"]["description"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(before[0]["data"]["code"], "session-crashed");
    assert!(desc.contains("signal 9 (SIGKILL)"), "{desc}");
    wait_until("the killed worker to be reaped", || {
        proc_state(pid).is_none()
    })
    .await;

    // The other session's worker and tab are untouched.
    assert!(is_alive(other_pid));
    round_trip(&mut other_ws).await;
}

#[tokio::test]
async fn a_segfaulting_worker_is_reported_with_its_signal() {
    let broker = Broker::with_app(&[("main.lua", APP)], &[]);
    assert_crash_reported(&broker, Signal::SIGSEGV, "signal 11 (SIGSEGV)").await;
}

#[tokio::test]
async fn a_runaway_main_lua_is_stopped_by_the_time_limit() {
    let broker = Broker::with_app(
        &[("main.lua", "while true do end\n")],
        &["--lua-time-limit", "200ms"],
    );
    let (status, body) = broker.get("/").await;
    assert_eq!(status, 500);
    assert!(body.contains("Lua time limit"), "{body}");
    wait_until("the worker to be reaped", || broker.workers().is_empty()).await;
}

#[tokio::test]
async fn lua_allocating_without_bound_hits_the_memory_limit_not_the_oom_killer() {
    let broker = Broker::with_app(
        &[(
            "main.lua",
            "local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 100) .. i end\n",
        )],
        &["--lua-memory-limit", "32MiB"],
    );
    let (status, body) = broker.get("/").await;
    assert_eq!(status, 500);
    assert!(body.contains("memory"), "{body}");
}

#[tokio::test]
async fn workers_are_the_oom_killers_first_choice() {
    let broker = Broker::with_app(&[("main.lua", APP)], &[]);
    broker.create_session().await;
    let pid = only_worker(&broker);
    let score = |p: i32| -> i32 {
        std::fs::read_to_string(format!("/proc/{p}/oom_score_adj"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    assert!(
        score(pid) > score(broker.pid),
        "worker {} broker {}",
        score(pid),
        score(broker.pid)
    );
    // An address-space limit sits behind Lua's own.
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))
        .unwrap();
    assert!(!line.contains("unlimited"), "{line}");
}

#[tokio::test]
async fn a_crashed_session_restarts_on_reconnect_and_closes_after_too_many_crashes() {
    let broker = Broker::with_app(&[("main.lua", APP)], &["--max-crashes", "2"]);
    let id = broker.create_session().await;
    let mut pids = vec![];
    for crash in 1..=3 {
        // Reconnecting (crash 2, 3) or the first connection brings up a worker.
        let mut ws = connect(&broker, &id).await;
        round_trip(&mut ws).await; // main.lua ran (again): variable 1 exists
        let pid = only_worker(&broker);
        assert!(
            !pids.contains(&pid),
            "crash {crash}: a fresh worker each time"
        );
        pids.push(pid);
        sig(pid, Signal::SIGKILL);
        let (code, _, _) = recv_close(&mut ws).await;
        assert_eq!(code, 1011);
        if crash < 3 {
            // A page reload also revives it.
            wait_until("crash to be recorded", || {
                broker.log().matches("session worker crashed").count() == crash
            })
            .await;
        }
    }
    wait_until("the session to be closed for good", || {
        broker.log().contains("crashed 3 times within a minute")
    })
    .await;
    let (status, body) = broker.get(&format!("/{id}")).await;
    assert_eq!(status, 404);
    assert!(body.contains("crashed 3 times within a minute"), "{body}");
}

#[tokio::test]
async fn a_page_reload_of_a_crashed_session_starts_a_fresh_worker() {
    let broker = Broker::with_app(&[("main.lua", APP)], &[]);
    let id = broker.create_session().await;
    let pid = only_worker(&broker);
    sig(pid, Signal::SIGKILL);
    broker.wait_log("session worker crashed");
    let (status, _) = broker.get(&format!("/{id}")).await;
    assert_eq!(status, 200);
    let fresh = only_worker(&broker);
    assert_ne!(fresh, pid);
}

#[tokio::test]
async fn sigterm_closes_tabs_with_1001_stops_workers_and_exits_0() {
    let mut broker = Broker::with_app(&[("main.lua", APP)], &["--shutdown-grace", "2s"]);
    let a = broker.create_session().await;
    let b = broker.create_session().await;
    let mut wa = connect(&broker, &a).await;
    let mut wb = connect(&broker, &b).await;
    let children = broker.children();
    assert!(children.len() >= 2);
    broker.signal(Signal::SIGTERM);
    for ws in [&mut wa, &mut wb] {
        let (code, _, _) = recv_close(ws).await;
        assert_eq!(code, 1001);
    }
    let status = broker.wait_exit();
    assert_eq!(status.code(), Some(0));
    for pid in children {
        assert!(proc_state(pid).is_none(), "child {pid} left behind");
    }
    let log = broker.log();
    assert!(
        log.contains("zygote stopped") && log.contains("stopped"),
        "{log}"
    );
    assert!(
        !log.contains(" ERROR "),
        "a clean shutdown logs no error:\n{log}"
    );
}

#[tokio::test]
async fn a_worker_that_ignores_shutdown_is_killed_at_the_end_of_the_grace_period() {
    let mut broker = Broker::with_app(&[("main.lua", APP)], &["--shutdown-grace", "1s"]);
    broker.create_session().await;
    let pid = only_worker(&broker);
    sig(pid, Signal::SIGSTOP); // deaf to the Shutdown message and to SIGTERM
    broker.signal(Signal::SIGINT);
    assert_eq!(broker.wait_exit().code(), Some(0));
    assert!(
        proc_state(pid).is_none(),
        "the stopped worker was killed and reaped"
    );
    let log = broker.log();
    assert!(
        log.contains("signal=SIGTERM") && log.contains("did not stop within 500ms"),
        "{log}"
    );
    assert!(
        log.contains("signal=SIGKILL") && log.contains("did not stop within 1s"),
        "{log}"
    );
}

#[tokio::test]
async fn broker_sigkill_takes_a_worker_stuck_in_lua_with_it() {
    let mut broker = Broker::with_app(
        &[("main.lua", "while true do end\n")],
        &["--lua-time-limit", "0"],
    );
    let url = broker.url("/");
    let pending = tokio::spawn(async move { client().get(url).send().await });
    wait_until("the stuck worker", || broker.workers().len() == 1).await;
    let pid = broker.workers()[0];
    broker.signal(Signal::SIGKILL);
    broker.wait_exit();
    let killed = std::time::Instant::now();
    wait_until("the stuck worker to die", || !is_alive(pid)).await;
    assert!(
        killed.elapsed() < Duration::from_secs(1),
        "{:?}",
        killed.elapsed()
    );
    assert!(pending.await.unwrap().is_err());
}

#[tokio::test]
async fn the_session_cap_answers_503_without_starting_a_worker() {
    let broker = Broker::with_app(&[("main.lua", APP)], &["--max-sessions", "2"]);
    // Both sessions opened in a tab: a never-opened one would make room at the cap instead
    // (tests/hostile.rs shows that eviction).
    let mut tabs = Vec::new();
    for _ in 0..2 {
        let id = broker.create_session().await;
        tabs.push(open_tab(&broker, &id).await);
    }
    let resp = client().get(broker.url("/")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(
        broker.workers().len(),
        2,
        "no worker was started for the refused session"
    );
    let metrics = broker.get("/metrics").await.1;
    assert!(
        metrics.contains("luabroker_sessions_refused_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn sessions_being_created_at_once_are_capped() {
    // main.lua takes a while, so two concurrent GET / overlap.
    let slow =
        "local t = os.clock() while os.clock() - t < 0.5 do end\nsession:createAppVariable({})\n";
    let broker = Broker::with_app(&[("main.lua", slow)], &["--max-pending-sessions", "1"]);
    let (a, b) = tokio::join!(
        client().get(broker.url("/")).send(),
        client().get(broker.url("/")).send()
    );
    let mut statuses = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [302, 503]);
}

#[tokio::test]
async fn a_session_never_connected_is_culled_after_the_adoption_window() {
    let broker = Broker::with_app(&[("main.lua", APP)], &["--adoption-timeout", "300ms"]);
    let id = broker.create_session().await;
    let pid = only_worker(&broker);
    broker.wait_log("no tab connected within 300ms");
    wait_until("the culled worker to be reaped", || {
        proc_state(pid).is_none()
    })
    .await;
    assert_eq!(broker.get(&format!("/{id}")).await.0, 404);
}

#[tokio::test]
async fn a_session_without_tabs_for_the_idle_timeout_is_destroyed() {
    let broker = Broker::with_app(
        &[("main.lua", APP)],
        &["--idle-timeout", "300ms", "--adoption-timeout", "0"],
    );
    let id = broker.create_session().await;
    let pid = only_worker(&broker);
    let ws = connect(&broker, &id).await;
    drop(ws);
    broker.wait_log("no tab connected for 300ms");
    wait_until("the idle worker to be reaped", || proc_state(pid).is_none()).await;
    let (status, body) = broker.get(&format!("/{id}")).await;
    assert_eq!(status, 404);
    assert!(body.contains("no tab connected for 300ms"), "{body}");
}

#[tokio::test]
async fn a_worker_that_stops_answering_pings_is_killed_and_reported() {
    let broker = Broker::with_app(&[("main.lua", APP)], &["--worker-ping-timeout", "300ms"]);
    let id = broker.create_session().await;
    let mut ws = connect(&broker, &id).await;
    round_trip(&mut ws).await;
    let pid = only_worker(&broker);
    sig(pid, Signal::SIGSTOP);
    let (code, _, before) = recv_close(&mut ws).await;
    assert_eq!(code, 1011);
    let text = before[0]["data"]["description"].as_str().unwrap();
    assert!(text.contains("liveness ping"), "{text}");
    wait_until("the hung worker to be reaped", || proc_state(pid).is_none()).await;
}

/// Makes a worker's own socket carry garbage: the test takes a duplicate of the worker's
/// socket fd (pidfd_getfd, allowed to root / ptrace-capable callers) and writes to it, so the
/// broker receives the bytes from the real worker connection.
#[tokio::test]
async fn a_worker_sending_garbage_is_killed_and_the_broker_carries_on() {
    let broker = Broker::with_app(&[("main.lua", APP)], &["--debug-pages"]);
    let id = broker.create_session().await;
    let mut ws = connect(&broker, &id).await;
    round_trip(&mut ws).await;
    let pid = only_worker(&broker);
    let mut garbage = 8u32.to_le_bytes().to_vec();
    garbage.extend_from_slice(&[0xff; 8]);
    write_to_link(pid, broker.pid, &garbage);
    let (code, _, before) = recv_close(&mut ws).await;
    assert_eq!(code, 1011);
    let text = before[0]["data"]["description"].as_str().unwrap();
    assert!(text.contains("bad frame"), "{text}");
    // The broker is untouched: a new session works.
    broker.create_session().await;

    // And an oversized length prefix.
    let before = broker.workers();
    let id = broker.create_session().await;
    let mut ws = connect(&broker, &id).await;
    round_trip(&mut ws).await;
    let pid = *broker
        .workers()
        .iter()
        .find(|p| !before.contains(p))
        .unwrap();
    write_to_link(pid, broker.pid, &u32::MAX.to_le_bytes());
    let (_, _, before) = recv_close(&mut ws).await;
    let text = before[0]["data"]["description"].as_str().unwrap();
    assert!(text.contains("over the 16777216-byte limit"), "{text}");
}

/// A duplicate of the worker's end of its broker link: of the worker's Unix sockets, the one
/// whose peer (SO_PEERCRED) is the broker. (Its runtime holds an internal socketpair too.)
fn worker_link(pid: i32, broker: i32) -> std::fs::File {
    use std::os::fd::{AsFd, FromRawFd};
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let entry = entry.unwrap();
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        if !target.to_string_lossy().starts_with("socket:") {
            continue;
        }
        let fd: i32 = entry.file_name().to_str().unwrap().parse().unwrap();
        // SAFETY: plain syscalls with integer arguments; each returned fd is checked and then
        // owned by exactly one File, which closes it.
        let file = unsafe {
            let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0);
            assert!(
                pidfd >= 0,
                "pidfd_open: {}",
                std::io::Error::last_os_error()
            );
            let dup = libc::syscall(libc::SYS_pidfd_getfd, pidfd as i32, fd, 0);
            assert!(dup >= 0, "pidfd_getfd: {}", std::io::Error::last_os_error());
            libc::close(pidfd as i32);
            std::fs::File::from_raw_fd(dup as i32)
        };
        let peer =
            nix::sys::socket::getsockopt(&file.as_fd(), nix::sys::socket::sockopt::PeerCredentials);
        if peer.is_ok_and(|c| c.pid() == broker) {
            return file;
        }
    }
    panic!("worker {pid} has no socket to the broker");
}

fn write_to_link(pid: i32, broker: i32, bytes: &[u8]) {
    use std::io::Write;
    worker_link(pid, broker).write_all(bytes).unwrap();
}

/// A broker (with `flags` after `--tab-queue-limit 4`) serving an app with one 256 KiB value.
fn big_value_broker(flags: &[&str]) -> Broker {
    let app = r#"session:createAppVariable({ big = string.rep("x", 256 * 1024), n = 1 })"#;
    let mut args = vec!["--tab-queue-limit", "4"];
    args.extend_from_slice(flags);
    Broker::with_app(&[("main.lua", app)], &args)
}

/// A tab on session `id` that watches the big value (variable 2) and reads nothing.
async fn slow_tab(broker: &Broker, id: &str) -> Ws {
    let mut slow = connect(broker, id).await;
    send(
        &mut slow,
        json!({"type": "create", "data": {"id": 2, "parentId": 1, "properties": {"path": "big"}}}),
    )
    .await;
    slow
}

/// Asks for the big value 300 times (far more than the socket buffers and the 4-frame queue
/// hold) and waits until the broker drops the tab for not reading.
async fn overflow(broker: &Broker, slow: &mut Ws) {
    let get = json!({"type": "get", "data": {"varIds": [2]}});
    for _ in 0..300 {
        send(slow, get.clone()).await;
    }
    broker.wait_log("tab is not reading; disconnecting it");
}

#[tokio::test]
async fn a_tab_that_never_reads_is_disconnected_and_the_session_keeps_running() {
    let broker = big_value_broker(&[]);
    let id = broker.create_session().await;
    let mut slow = slow_tab(&broker, &id).await;
    overflow(&broker, &mut slow).await;

    // The session is fine: another tab works.
    let mut other = connect(&broker, &id).await;
    round_trip(&mut other).await;

    // The slow tab, reading at last, finds its connection ended before all 300 replies.
    let mut replies = 0;
    loop {
        match tokio::time::timeout(DEADLINE, futures_util::StreamExt::next(&mut slow)).await {
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t)))) => {
                if t.as_str().contains("\"get\"") {
                    replies += 1;
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => break,
            Err(_) => panic!("the slow tab was never disconnected"),
        }
    }
    assert!(replies < 300, "the slow tab got all {replies} replies");
}

/// A session whose only tab is dropped for not reading is unattended from that moment: its
/// idle timeout runs from the drop, not from when the session was made.
#[tokio::test]
async fn a_session_whose_last_tab_is_dropped_for_not_reading_gets_its_full_idle_timeout() {
    let idle = Duration::from_secs(2);
    let broker = big_value_broker(&["--idle-timeout", "2s"]);
    let made = std::time::Instant::now();
    let id = broker.create_session().await;
    let mut slow = slow_tab(&broker, &id).await;
    // The tab stays attached for longer than the idle timeout: what is measured here is time.
    tokio::time::sleep_until((made + idle + Duration::from_millis(500)).into()).await;
    overflow(&broker, &mut slow).await;
    let dropped = std::time::Instant::now();
    broker.wait_log("no tab connected for 2s");
    let lasted = dropped.elapsed();
    assert!(
        lasted >= idle - Duration::from_millis(500),
        "the session ended {lasted:?} after its last tab was dropped, within its 2 s idle timeout"
    );
    drop(slow);
}

/// 200 sessions, each with a tab doing action round trips; 20 workers are killed mid-way.
/// Every other session finishes all its round trips with the right values, every killed one
/// is told `session-crashed`; afterwards no zombies, and the broker's fds and memory are back
/// where they started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_200_sessions_20_killed() {
    const SESSIONS: usize = 200;
    const KILLED: usize = 20;
    const ROUNDS: i64 = 20;
    let app = r#"
        local App = {}
        App.__index = App
        function App:increment() self.count = self.count + 1 end
        session:createAppVariable(setmetatable({ count = 0 }, App))
    "#;
    let broker = Broker::with_app(
        &[("main.lua", app)],
        &[
            "--spare-workers",
            "0",
            "--idle-timeout",
            "200ms",
            "--max-pending-sessions",
            "512",
        ],
    );
    let fds = |pid: i32| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    let rss_kib = |pid: i32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    // Baseline after one full session cycle (lazy allocations, thread pools warmed up).
    {
        let id = broker.create_session().await;
        let mut ws = connect(&broker, &id).await;
        round_trip(&mut ws).await;
    }
    wait_until("the warm-up session to end", || broker.workers().is_empty()).await;
    let (fd_base, rss_base) = (fds(broker.pid), rss_kib(broker.pid));

    let mut ids = Vec::new();
    for _ in 0..SESSIONS {
        ids.push(broker.create_session().await);
    }
    let ready = std::sync::Arc::new(tokio::sync::Barrier::new(SESSIONS + 1));
    let mut tasks = Vec::new();
    for id in ids {
        let ws_url = broker.ws_url(&id);
        let ready = ready.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
            send(&mut ws, json!([
                msg("create", json!({"id": 2, "parentId": 1, "properties": {"path": "count"}})),
                msg("create", json!({"id": 3, "parentId": 1, "properties": {"path": "increment()", "access": "action"}})),
            ])).await;
            recv_until(&mut ws, |m| m["data"]["varId"] == 2 && m["data"]["value"] == 0).await;
            ready.wait().await;
            for expect in 1..=ROUNDS {
                send(&mut ws, json!({"userEvent": true, "messages": [
                    msg("update", json!({"varId": 3, "value": null}))
                ]})).await;
                let got = recv_until(&mut ws, |m| {
                    m["type"] == "error" || (m["data"]["varId"] == 2 && m["data"].get("value").is_some())
                }).await;
                if got["type"] == "error" {
                    assert_eq!(got["data"]["code"], "session-crashed", "{got}");
                    return None; // killed
                }
                assert_eq!(got["data"]["value"], expect, "round trip {expect}");
            }
            Some(ROUNDS)
        }));
    }
    ready.wait().await;
    // Kill 20 workers while every tab is mid-way through its round trips.
    let workers = broker.workers();
    assert_eq!(workers.len(), SESSIONS);
    let step = SESSIONS / KILLED;
    let victims: Vec<i32> = workers.iter().step_by(step).take(KILLED).copied().collect();
    for pid in &victims {
        sig(*pid, Signal::SIGKILL);
    }
    let (mut completed, mut crashed) = (0, 0);
    for t in tasks {
        match t.await.expect("a tab task failed") {
            Some(_) => completed += 1,
            None => crashed += 1,
        }
    }
    // A victim may have finished all its rounds before the signal landed.
    assert!(
        crashed <= KILLED && crashed + completed == SESSIONS,
        "{crashed} crashed"
    );
    assert!(
        crashed >= KILLED / 2,
        "only {crashed} of {KILLED} kills were noticed"
    );

    // Every session ends (idle timeout) and everything is reaped.
    wait_until("all sessions to end", || broker.workers().is_empty()).await;
    wait_until("no zombies", || {
        descendants(broker.pid).iter().all(|p| !is_zombie(*p))
    })
    .await;
    wait_until("broker fds back to baseline", || fds(broker.pid) <= fd_base).await;
    let rss = rss_kib(broker.pid);
    assert!(
        rss < rss_base + 32 * 1024,
        "broker RSS {rss} KiB vs {rss_base} KiB before the 200 sessions"
    );
}

#[tokio::test]
async fn a_value_too_large_for_the_worker_link_is_refused_to_its_tab_only() {
    let app = r#"session:createAppVariable({ huge = string.rep("x", 17 * 1024 * 1024), n = 7 })"#;
    let broker = Broker::with_app(&[("main.lua", app)], &[]);
    let id = broker.create_session().await;
    let mut ws = connect(&broker, &id).await;
    send(
        &mut ws,
        json!({"type": "create", "data": {"id": 2, "parentId": 1, "properties": {"path": "huge"}}}),
    )
    .await;
    let err = recv_until(&mut ws, |m| m["type"] == "error").await;
    assert_eq!(err["data"]["code"], "limit", "{err}");
    // The session and the tab carry on.
    round_trip(&mut ws).await;
}

const RUNAWAY_APP: &str = r#"
    local App = {}
    App.__index = App
    function App:spin() while true do end end
    function App:hog() local t = {} for i = 1, 1e9 do t[i] = string.rep("y", 100) .. i end end
    function App:bump() self.n = self.n + 1 end
    session:createAppVariable(setmetatable({ n = 0 }, App))
"#;

/// Calls an action of variable 1 and returns the first `error` message.
async fn call_action_expecting_error(ws: &mut Ws, id: i64, method: &str) -> serde_json::Value {
    send(
        ws,
        json!({"userEvent": true, "messages": [
            msg("create", json!({"id": id, "parentId": 1, "nowatch": true,
                "properties": {"path": format!("{method}()"), "access": "action"}})),
            msg("update", json!({"varId": id, "value": null})),
        ]}),
    )
    .await;
    recv_until(ws, |m| m["type"] == "error").await
}

async fn bump_works(ws: &mut Ws) {
    send(
        ws,
        json!({"userEvent": true, "messages": [
            msg("create", json!({"id": 50, "parentId": 1, "properties": {"path": "n"}})),
            msg("create", json!({"id": 51, "parentId": 1, "nowatch": true,
                "properties": {"path": "bump()", "access": "action"}})),
            msg("update", json!({"varId": 51, "value": null})),
        ]}),
    )
    .await;
    recv_until(ws, |m| m["data"]["varId"] == 50 && m["data"]["value"] == 1).await;
}

#[tokio::test]
async fn a_runaway_action_is_interrupted_with_limit_and_the_session_keeps_working() {
    let broker = Broker::with_app(&[("main.lua", RUNAWAY_APP)], &["--lua-time-limit", "200ms"]);
    let id = broker.create_session().await;
    let mut ws = connect(&broker, &id).await;
    let err = call_action_expecting_error(&mut ws, 2, "spin").await;
    assert_eq!(err["data"]["code"], "limit", "{err}");
    assert!(
        err["data"]["description"]
            .as_str()
            .unwrap()
            .contains("time limit"),
        "{err}"
    );
    bump_works(&mut ws).await;
}

#[tokio::test]
async fn an_action_allocating_without_bound_gets_limit_and_the_session_keeps_working() {
    let broker = Broker::with_app(
        &[("main.lua", RUNAWAY_APP)],
        &["--lua-memory-limit", "64MiB"],
    );
    let id = broker.create_session().await;
    let mut ws = connect(&broker, &id).await;
    let pid = only_worker(&broker);
    let err = call_action_expecting_error(&mut ws, 2, "hog").await;
    assert_eq!(err["data"]["code"], "limit", "{err}");
    bump_works(&mut ws).await;
    assert_eq!(only_worker(&broker), pid, "the same worker carries on");
}

#[tokio::test]
async fn a_runaway_timer_is_interrupted_with_limit_and_the_timers_keep_working() {
    let app = r#"
        local app = { n = 0 }
        session:createAppVariable(app)
        session:setTimeout(function() while true do end end, 50)
        session:setInterval(function() app.n = app.n + 1 end, 20)
    "#;
    let broker = Broker::with_app(&[("main.lua", app)], &["--lua-time-limit", "200ms"]);
    let id = broker.create_session().await;
    let mut ws = connect(&broker, &id).await;
    send(
        &mut ws,
        json!({"type": "create", "data": {"id": 2, "parentId": 1, "properties": {"path": "n"}}}),
    )
    .await;
    let err = recv_until(&mut ws, |m| m["type"] == "error").await;
    assert_eq!(err["data"]["code"], "limit", "{err}");
    // Ticks continue after the runaway callback was stopped.
    let after = recv_until(&mut ws, |m| {
        m["data"]["varId"] == 2 && m["data"].get("value").is_some()
    })
    .await;
    assert!(after["data"]["value"].as_i64().unwrap() >= 1);
}
