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

async fn get_status(broker: &Broker, path: &str) -> (u16, String) {
    let resp = client().get(broker.url(path)).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
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
    });
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
    });

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
    let (status, body) = get_status(&broker, "/").await;
    assert_eq!(status, 500);
    assert!(body.contains("Lua time limit"), "{body}");
    wait_until("the worker to be reaped", || broker.workers().is_empty());
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
    let (status, body) = get_status(&broker, "/").await;
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
            });
        }
    }
    wait_until("the session to be closed for good", || {
        broker.log().contains("crashed 3 times within a minute")
    });
    let (status, body) = get_status(&broker, &format!("/{id}")).await;
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
    let (status, _) = get_status(&broker, &format!("/{id}")).await;
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
    assert!(broker.log().contains("stopped"));
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
    wait_until_async("the stuck worker", || broker.workers().len() == 1).await;
    let pid = broker.workers()[0];
    broker.signal(Signal::SIGKILL);
    broker.wait_exit();
    let killed = std::time::Instant::now();
    wait_until("the stuck worker to die", || !is_alive(pid));
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
    broker.create_session().await;
    broker.create_session().await;
    let resp = client().get(broker.url("/")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(
        broker.workers().len(),
        2,
        "no worker was started for the refused session"
    );
    let metrics = get_status(&broker, "/metrics").await.1;
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
    });
    assert_eq!(get_status(&broker, &format!("/{id}")).await.0, 404);
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
    wait_until("the idle worker to be reaped", || proc_state(pid).is_none());
    let (status, body) = get_status(&broker, &format!("/{id}")).await;
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
    wait_until("the hung worker to be reaped", || proc_state(pid).is_none());
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
