//! Two nodes behind a load balancer, the way `deploy/haproxy.cfg` and `deploy/nginx.conf` ship:
//! HAProxy or nginx (Debian's; `./test.sh` installs them when missing) in front of two
//! luabroker processes on loopback, with the shipped config's addresses replaced by this test's
//! ports. Sessions are created through the proxy; each session's page and WebSocket land on
//! the node that owns it and work end to end; the client address reaches the nodes; then one
//! node is killed: its sessions get the "session not found / expired" page, the other node's
//! sessions keep working, and `GET /` goes to the survivor.

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

const HAPROXY_CFG: &str = include_str!("../deploy/haproxy.cfg");
const NGINX_CONF: &str = include_str!("../deploy/nginx.conf");

/// The load balancer in the foreground, killed and reaped on drop.
struct Proxy {
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Debian package's binary in /usr/sbin (not on every user's PATH), else from PATH.
fn sbin(name: &str) -> String {
    for dir in ["/usr/sbin", "/usr/local/sbin"] {
        let candidate = format!("{dir}/{name}");
        if std::path::Path::new(&candidate).exists() {
            return candidate;
        }
    }
    name.into() // ./test.sh installs it
}

/// A shipped config with its example addresses replaced by ours.
fn config_for(shipped: &str, file: &str, listen: (&str, String), nodes: [&str; 2]) -> String {
    for needle in [listen.0, "127.0.0.1:8081", "127.0.0.1:8082"] {
        assert!(
            shipped.contains(needle),
            "{file} no longer has {needle:?}; update this test with it"
        );
    }
    shipped
        .replace(listen.0, &listen.1)
        .replace("127.0.0.1:8081", nodes[0])
        .replace("127.0.0.1:8082", nodes[1])
}

/// A free port for the proxy to bind (released just before it starts).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// nginx's own `nginx.conf` around the shipped file (which belongs in the `http` block): one
/// process in the foreground (so killing it leaves no worker process behind), everything
/// written inside `dir`, errors on stderr, and no response buffered to a file.
fn nginx_main_conf(dir: &std::path::Path) -> String {
    let d = dir.display();
    format!(
        "master_process off;\npid {d}/nginx.pid;\nerror_log stderr;\nevents {{ }}\n\
         http {{\n  access_log off;\n  \
         proxy_max_temp_file_size 0;\n  \
         client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  \
         scgi_temp_path {d}/scgi;\n  include {d}/luabroker.conf;\n}}\n"
    )
}

impl Proxy {
    fn spawn(mut cmd: Command, dir: tempfile::TempDir, port: u16) -> Proxy {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the proxy (./test.sh installs it with apt-get)");
        let log = Arc::new(Mutex::new(String::new()));
        collect_lines(child.stdout.take().unwrap(), log.clone());
        collect_lines(child.stderr.take().unwrap(), log.clone());
        Proxy {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn haproxy(node_01: &Broker, node_02: &Broker) -> Proxy {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("haproxy.cfg");
        let listen = ("bind :80", format!("bind 127.0.0.1:{port}"));
        let nodes = [node_01.addr.as_str(), node_02.addr.as_str()];
        let text = config_for(HAPROXY_CFG, "deploy/haproxy.cfg", listen, nodes);
        std::fs::write(&cfg, text).unwrap();
        let mut cmd = Command::new(sbin("haproxy"));
        cmd.arg("-db").arg("-f").arg(&cfg); // foreground, logs to stderr
        Proxy::spawn(cmd, dir, port)
    }

    fn nginx(node_01: &Broker, node_02: &Broker) -> Proxy {
        Proxy::nginx_with(node_01, node_02, |conf| conf)
    }

    /// nginx with the shipped file, changed by `edit` after the addresses.
    fn nginx_with(node_01: &Broker, node_02: &Broker, edit: fn(String) -> String) -> Proxy {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let listen = ("listen 80;", format!("listen 127.0.0.1:{port};"));
        let nodes = [node_01.addr.as_str(), node_02.addr.as_str()];
        let text = edit(config_for(NGINX_CONF, "deploy/nginx.conf", listen, nodes));
        std::fs::write(dir.path().join("luabroker.conf"), text).unwrap();
        let main = dir.path().join("nginx.conf");
        std::fs::write(&main, nginx_main_conf(dir.path())).unwrap();
        let mut cmd = Command::new(sbin("nginx"));
        cmd.arg("-p").arg(dir.path()).arg("-e").arg("stderr");
        cmd.arg("-c").arg(&main).args(["-g", "daemon off;"]);
        Proxy::spawn(cmd, dir, port)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

/// A client whose connections to the proxy come from 127.0.0.`n`.
fn user(n: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
        .build()
        .unwrap()
}

/// Polls `GET url` until it answers `status` (HAProxy's health checks take a moment to see a
/// node come or go, nginx's first failed request to it); returns the body.
async fn until_status(proxy: &Proxy, client: &reqwest::Client, path: &str, status: u16) -> String {
    let start = Instant::now();
    loop {
        if let Ok(resp) = client.get(proxy.url(path)).send().await {
            if resp.status().as_u16() == status {
                return resp.text().await.unwrap();
            }
        }
        assert!(
            start.elapsed() < DEADLINE,
            "GET {path} never answered {status}; proxy log:\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await; // polling an observable state
    }
}

/// The status of the session's page through the proxy.
async fn page_status(proxy: &Proxy, id: &str) -> u16 {
    let page = user(1).get(proxy.url(&format!("/{id}"))).send().await;
    page.unwrap().status().as_u16()
}

/// `GET /` through the proxy → the new session's id.
async fn create(proxy: &Proxy, client: &reqwest::Client) -> String {
    let resp = client.get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 302, "{:?}", resp.text().await);
    let id = resp.headers()["location"].to_str().unwrap()[1..].to_string();
    assert!(is_session_id(&id), "{id}");
    id
}

/// Opens the session's tab through the proxy and sees the app variable.
async fn open_tab(proxy: &Proxy, id: &str) -> Ws {
    let ws = connect_from(proxy, id, 1).await;
    watching(ws.expect("WebSocket through the proxy")).await
}

/// A WebSocket to `/ws/<id>` through the proxy, from 127.0.0.`n`.
async fn connect_from(
    proxy: &Proxy,
    id: &str,
    n: u8,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind((Ipv4Addr::new(127, 0, 0, n), 0).into())
        .unwrap();
    let stream = socket
        .connect((Ipv4Addr::LOCALHOST, proxy.port).into())
        .await
        .unwrap();
    let url = format!("ws://127.0.0.1:{}/ws/{id}", proxy.port);
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (ws, _) = tokio_tungstenite::client_async(url, stream).await?;
    Ok(ws)
}

/// The tab, once it has seen the app variable.
async fn watching(mut ws: Ws) -> Ws {
    send(&mut ws, msg("watch", json!({"varId": 1}))).await;
    recv_until(&mut ws, |m| {
        m["type"] == "update" && m["data"]["varId"] == 1
    })
    .await;
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_behind_haproxy_route_by_session_and_survive_the_loss_of_one() {
    two_nodes_behind(Proxy::haproxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_behind_nginx_route_by_session_and_survive_the_loss_of_one() {
    two_nodes_behind(Proxy::nginx).await;
}

/// Behind nginx the nodes cannot tell one client's connections apart, so the shipped file caps
/// them in nginx (`limit_conn`, here at 2 instead of the shipped 256): a third tab from one
/// address gets 503, another address is not affected, and a closed tab frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_one_client_holds_at_most_its_connection_cap() {
    let flags = |node| ["--node-id", node, "--trusted-proxy", "127.0.0.1"];
    let node_01 = Broker::start(&flags("01"));
    let node_02 = Broker::start(&flags("02"));
    let proxy = Proxy::nginx_with(&node_01, &node_02, |conf| {
        let shipped = "limit_conn luabroker_per_client 256;";
        assert!(conf.contains(shipped), "deploy/nginx.conf lost {shipped:?}");
        conf.replace(shipped, "limit_conn luabroker_per_client 2;")
    });
    until_status(&proxy, &user(1), "/healthz", 200).await;
    let mut ids = Vec::new();
    for n in 91..94u8 {
        ids.push(create(&proxy, &user(n)).await);
    }
    let first = watching(connect_from(&proxy, &ids[0], 90).await.unwrap()).await;
    let _second = watching(connect_from(&proxy, &ids[1], 90).await.unwrap()).await;
    match connect_from(&proxy, &ids[2], 90).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 503)
        }
        other => panic!("a third tab from one client: {:?}", other.map(|_| ())),
    }
    let _other = watching(connect_from(&proxy, &ids[2], 91).await.unwrap()).await;

    drop(first);
    let start = Instant::now();
    loop {
        match connect_from(&proxy, &ids[2], 90).await {
            Ok(ws) => {
                watching(ws).await;
                break;
            }
            Err(e) => assert!(
                start.elapsed() < DEADLINE,
                "a closed tab never freed its place: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await; // polling an observable state
    }
}

/// The whole story, through whichever proxy `start` starts in front of the two nodes.
async fn two_nodes_behind(start: fn(&Broker, &Broker) -> Proxy) {
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
    let proxy = start(&node_01, &node_02);
    until_status(&proxy, &user(1), "/healthz", 200).await;

    // Sessions created through the proxy, by different users, spread over both nodes.
    let mut ids = Vec::new();
    for n in 10..40u8 {
        ids.push(create(&proxy, &user(n)).await);
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
        assert_eq!(page_status(&proxy, id).await, 200, "page of {id}");
        let sub = user(1)
            .get(proxy.url(&format!("/{id}/a/view")))
            .send()
            .await
            .unwrap();
        assert_eq!(sub.status().as_u16(), 200, "sub-path of {id}");
        tabs.push((id.clone(), open_tab(&proxy, id).await));
    }
    // The owner is the node named in the id: it, and only it, has the session.
    let (owner, other) = (&node_01, &node_02);
    assert_eq!(owner.get(&format!("/{}", on_01[0])).await.0, 200);
    assert_eq!(other.get(&format!("/{}", on_01[0])).await.0, 404);

    // The nodes see the real client (PROXY protocol, X-Forwarded-For): one user's creation flood is limited
    // per node, another user is not affected.
    let flooder = user(77);
    let mut answers = Vec::new();
    for _ in 0..12 {
        answers.push(
            flooder
                .get(proxy.url("/"))
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
    create(&proxy, &user(78)).await;

    // Node 01 dies.
    node_01.signal(Signal::SIGKILL);
    node_01.wait_exit();
    let gone = &on_01[0];
    let page = until_status(&proxy, &user(1), &format!("/{gone}"), 404).await;
    assert!(
        page.contains("does not exist or has expired") && page.contains("Start a new session"),
        "{page}"
    );
    let ws_url = format!("ws://127.0.0.1:{}/ws/{gone}", proxy.port);
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
        assert_eq!(page_status(&proxy, id).await, 200, "page of {id}");
        open_tab(&proxy, id).await;
    }

    // New sessions go to the survivor.
    for n in 50..54u8 {
        let id = create(&proxy, &user(n)).await;
        assert!(id.starts_with("02"), "GET / went to the dead node: {id}");
    }
    drop(tabs);
    drop(proxy);
}

/// Runs a config check and says what it printed when it failed.
fn check(cmd: &mut Command) {
    let out = cmd.output().expect("run the proxy's config check");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_shipped_config_is_valid_haproxy() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg, HAPROXY_CFG).unwrap();
    check(Command::new(sbin("haproxy")).arg("-c").arg("-f").arg(&cfg));
}

/// The file as shipped, unchanged, inside an `http` block.
#[test]
fn the_shipped_config_is_valid_nginx() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("luabroker.conf"), NGINX_CONF).unwrap();
    let main = dir.path().join("nginx.conf");
    std::fs::write(&main, nginx_main_conf(dir.path())).unwrap();
    check(
        Command::new(sbin("nginx"))
            .arg("-t")
            .arg("-p")
            .arg(dir.path())
            .args(["-e", "stderr", "-c"])
            .arg(&main),
    );
}
