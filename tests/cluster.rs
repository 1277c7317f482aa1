//! Two nodes behind HAProxy, the way `deploy/haproxy.cfg` ships: HAProxy (Debian's; `./test.sh`
//! installs it when missing) in front of two luabroker processes on loopback, with the shipped
//! config's addresses replaced by this test's ports. Sessions are created through the proxy;
//! each session's page and WebSocket land on the node that owns it and work end to end; the
//! client address reaches the nodes; then one node is killed: its sessions get the "session
//! not found / expired" page, the other node's sessions keep working, and `GET /` goes to the
//! survivor.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use nix::sys::signal::Signal;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const SHIPPED: &str = include_str!("../deploy/haproxy.cfg");

/// HAProxy in the foreground, killed and reaped on drop.
struct Haproxy {
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn haproxy_binary() -> String {
    for candidate in ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"] {
        if std::path::Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    "haproxy".into() // from PATH; ./test.sh installs it
}

/// The shipped config with its example addresses replaced by ours.
fn config_for(port: u16, node_01: &str, node_02: &str) -> String {
    for needle in ["bind :80", "127.0.0.1:8081", "127.0.0.1:8082"] {
        assert!(
            SHIPPED.contains(needle),
            "deploy/haproxy.cfg no longer has {needle:?}; update this test with it"
        );
    }
    SHIPPED
        .replace("bind :80", &format!("bind 127.0.0.1:{port}"))
        .replace("127.0.0.1:8081", node_01)
        .replace("127.0.0.1:8082", node_02)
}

impl Haproxy {
    fn start(node_01: &Broker, node_02: &Broker) -> Haproxy {
        // A free port for HAProxy to bind (released just before it starts).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, config_for(port, &node_01.addr, &node_02.addr)).unwrap();
        let mut child = Command::new(haproxy_binary())
            .arg("-db") // foreground, logs to stderr
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start haproxy (./test.sh installs it: apt-get install haproxy)");
        let log = Arc::new(Mutex::new(String::new()));
        collect_lines(child.stdout.take().unwrap(), log.clone());
        collect_lines(child.stderr.take().unwrap(), log.clone());
        Haproxy {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

/// A client whose connections to HAProxy come from 127.0.0.`n`.
fn user(n: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
        .build()
        .unwrap()
}

/// Polls `GET url` until it answers `status` (HAProxy's health checks take a moment to see a
/// node come or go); returns the body.
async fn until_status(
    haproxy: &Haproxy,
    client: &reqwest::Client,
    path: &str,
    status: u16,
) -> String {
    let start = Instant::now();
    loop {
        if let Ok(resp) = client.get(haproxy.url(path)).send().await {
            if resp.status().as_u16() == status {
                return resp.text().await.unwrap();
            }
        }
        assert!(
            start.elapsed() < DEADLINE,
            "GET {path} never answered {status}; haproxy log:\n{}",
            haproxy.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await; // polling an observable state
    }
}

/// The status of the session's page through the proxy.
async fn page_status(haproxy: &Haproxy, id: &str) -> u16 {
    let page = user(1).get(haproxy.url(&format!("/{id}"))).send().await;
    page.unwrap().status().as_u16()
}

/// `GET /` through the proxy → the new session's id.
async fn create(haproxy: &Haproxy, client: &reqwest::Client) -> String {
    let resp = client.get(haproxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 302, "{:?}", resp.text().await);
    let id = resp.headers()["location"].to_str().unwrap()[1..].to_string();
    assert!(is_session_id(&id), "{id}");
    id
}

/// Opens the session's tab through the proxy and sees the app variable.
async fn open_tab(haproxy: &Haproxy, id: &str) -> Ws {
    let url = format!("ws://127.0.0.1:{}/ws/{id}", haproxy.port);
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("WebSocket through HAProxy");
    send(&mut ws, msg("watch", json!({"varId": 1}))).await;
    recv_until(&mut ws, |m| {
        m["type"] == "update" && m["data"]["varId"] == 1
    })
    .await;
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_behind_haproxy_route_by_session_and_survive_the_loss_of_one() {
    let flags = |node: &'static str| {
        [
            "--node-id",
            node,
            "--trusted-proxy",
            "127.0.0.1",
            "--create-rate-per-client",
            "1",
            "--create-burst-per-client",
            "3",
            "--spare-workers",
            "1",
        ]
    };
    let mut node_01 = Broker::start(&flags("01"));
    let node_02 = Broker::start(&flags("02"));
    let haproxy = Haproxy::start(&node_01, &node_02);
    until_status(&haproxy, &user(1), "/healthz", 200).await;

    // Sessions created through the proxy, by different users, spread over both nodes.
    let mut ids = Vec::new();
    for n in 10..40u8 {
        ids.push(create(&haproxy, &user(n)).await);
        let on = |node: &str| ids.iter().filter(|id| id.starts_with(node)).count();
        if on("01") >= 2 && on("02") >= 2 {
            break;
        }
    }
    assert!(
        ids.iter()
            .all(|id| id.starts_with("01") || id.starts_with("02")),
        "every id names its node: {ids:?}"
    );
    let of = |node: &str| -> Vec<String> {
        ids.iter()
            .filter(|id| id.starts_with(node))
            .cloned()
            .collect()
    };
    let (on_01, on_02) = (of("01"), of("02"));
    assert!(on_01.len() >= 2 && on_02.len() >= 2, "{ids:?}");

    // Every page and tab lands on its owner (the other node does not know the id: it would
    // answer 404) and works end to end.
    let mut tabs = Vec::new();
    for id in &ids {
        assert_eq!(page_status(&haproxy, id).await, 200, "page of {id}");
        let sub = user(1)
            .get(haproxy.url(&format!("/{id}/a/view")))
            .send()
            .await
            .unwrap();
        assert_eq!(sub.status().as_u16(), 200, "sub-path of {id}");
        tabs.push((id.clone(), open_tab(&haproxy, id).await));
    }
    // The owner is the node named in the id: it, and only it, has the session.
    let (owner, other) = (&node_01, &node_02);
    assert_eq!(owner.get(&format!("/{}", on_01[0])).await.0, 200);
    assert_eq!(other.get(&format!("/{}", on_01[0])).await.0, 404);

    // The nodes see the real client (PROXY protocol): one user's creation flood is limited
    // per node, another user is not affected.
    let flooder = user(77);
    let mut answers = Vec::new();
    for _ in 0..12 {
        answers.push(
            flooder
                .get(haproxy.url("/"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    let created = answers.iter().filter(|s| **s == 302).count();
    assert!(
        (3..=6).contains(&created),
        "3 per node at most: {answers:?}"
    );
    assert!(answers.contains(&429), "{answers:?}");
    create(&haproxy, &user(78)).await;

    // Node 01 dies.
    node_01.signal(Signal::SIGKILL);
    node_01.wait_exit();
    let gone = &on_01[0];
    let page = until_status(&haproxy, &user(1), &format!("/{gone}"), 404).await;
    assert!(
        page.contains("does not exist or has expired") && page.contains("Start a new session"),
        "{page}"
    );
    let ws_url = format!("ws://127.0.0.1:{}/ws/{gone}", haproxy.port);
    match tokio_tungstenite::connect_async(ws_url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 404)
        }
        other => panic!(
            "a dead node's tab must get 404, got {:?}",
            other.map(|_| ())
        ),
    }

    // Node 02's sessions keep working: their open tabs, their pages, new tabs.
    for (id, ws) in tabs.iter_mut().filter(|(id, _)| id.starts_with("02")) {
        let get = msg("get", json!({"varIds": [1]})).to_string();
        ws.send(Message::Text(get.into())).await.unwrap();
        let reply = tokio::time::timeout(DEADLINE, ws.next()).await;
        assert!(
            matches!(reply, Ok(Some(Ok(Message::Text(_))))),
            "tab of {id}: {reply:?}"
        );
    }
    for id in &on_02 {
        assert_eq!(page_status(&haproxy, id).await, 200, "page of {id}");
        open_tab(&haproxy, id).await;
    }

    // New sessions go to the survivor.
    for n in 50..54u8 {
        let id = create(&haproxy, &user(n)).await;
        assert!(id.starts_with("02"), "GET / went to the dead node: {id}");
    }
    drop(tabs);
    drop(haproxy);
}

#[test]
fn the_shipped_config_is_valid_haproxy() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg, SHIPPED).unwrap();
    let out = Command::new(haproxy_binary())
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .output()
        .expect("run haproxy -c");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
