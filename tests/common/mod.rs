//! Test harness for process-level tests: starts the real `luabroker` executable, waits for its
//! `listening on` line, and offers what a test needs to act like a user (HTTP, WebSocket) and
//! to look at processes the way an operator would (`/proc`). Every wait has a deadline; nothing
//! sleeps to synchronise.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value as Json;
use tokio_tungstenite::tungstenite::Message;

pub const BIN: &str = env!("CARGO_BIN_EXE_luabroker");

/// How long any single expected event may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct Broker {
    child: Option<Child>,
    pub addr: String,
    pub pid: i32,
    log: Arc<Mutex<String>>,
    /// Everything the broker printed on stdout.
    out: Arc<Mutex<String>>,
    _app: Option<tempfile::TempDir>,
}

/// How to start the broker beyond its flags: extra environment, working directory.
#[derive(Default)]
pub struct Launch<'a> {
    pub env: &'a [(&'a str, &'a str)],
    pub dir: Option<&'a std::path::Path>,
    /// Run this executable instead of the one cargo built (e.g. an installed copy).
    pub bin: Option<&'a std::path::Path>,
    /// Start it with this RLIMIT_NOFILE (soft and hard), as `prlimit --nofile=N` would.
    pub fd_limit: Option<u64>,
    /// Start it as this (uid, gid) instead of the tests' user (the tests must be root).
    pub user: Option<(u32, u32)>,
}

/// What [`Broker`] adds unless a test sets the creation rate itself.
pub const NO_CREATION_LIMIT: &[&str] = &[
    "--create-rate-per-client",
    "1000000",
    "--create-burst-per-client",
    "1000000",
];

/// Appends every line `pipe` yields to `sink`, on a thread of its own, until it closes.
pub fn collect_lines(pipe: impl std::io::Read + Send + 'static, sink: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
}

/// Writes a Lua app (file name → source) into a fresh directory.
pub fn app(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    // Readable to the worker user (nobody, when the tests run as root), as an installed app's
    // files are, whatever the umask.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    for (name, source) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, source).unwrap();
    }
    dir
}

/// A copy of a directory of the repository (e.g. `examples/tasks`) that the worker user can
/// read. Workers run as `nobody` when the tests run as root, and a checkout may sit under a
/// directory only its owner can enter (`mktemp -d` makes such ones), which the broker rightly
/// refuses to serve; so a test serves a copy, as an installed app would be.
pub fn readable_copy(src: &std::path::Path) -> tempfile::TempDir {
    fn copy(from: &std::path::Path, to: &std::path::Path) {
        for entry in std::fs::read_dir(from).expect("read the directory to copy") {
            let path = entry.unwrap().path();
            let dest = to.join(path.file_name().unwrap());
            if path.is_dir() {
                std::fs::create_dir(&dest).unwrap();
                std::fs::set_permissions(
                    &dest,
                    std::os::unix::fs::PermissionsExt::from_mode(0o755),
                )
                .unwrap();
                copy(&path, &dest);
            } else {
                std::fs::copy(&path, &dest).unwrap();
                std::fs::set_permissions(
                    &dest,
                    std::os::unix::fs::PermissionsExt::from_mode(0o644),
                )
                .unwrap();
            }
        }
    }
    let dir = app(&[]);
    copy(src, dir.path());
    dir
}

impl Broker {
    /// Starts the broker with the default app and extra flags.
    pub fn start(args: &[&str]) -> Broker {
        Self::launch(None, args)
    }

    /// Starts the broker serving an app made of these files.
    pub fn with_app(files: &[(&str, &str)], args: &[&str]) -> Broker {
        Self::launch(Some(app(files)), args)
    }

    fn launch(app: Option<tempfile::TempDir>, args: &[&str]) -> Broker {
        Self::launch_with(app, args, Launch::default())
    }

    /// Starts the broker with the default app, extra flags and environment / directory.
    pub fn start_with(args: &[&str], how: Launch) -> Broker {
        Self::launch_with(None, args, how)
    }

    fn launch_with(app: Option<tempfile::TempDir>, args: &[&str], how: Launch) -> Broker {
        let mut cmd = Command::new(how.bin.map_or(BIN.as_ref(), |b| b.as_os_str()));
        cmd.envs(how.env.iter().copied());
        if let Some(dir) = how.dir {
            cmd.current_dir(dir);
        }
        if let Some(n) = how.fd_limit {
            use std::os::unix::process::CommandExt;
            // SAFETY: runs in the forked child before exec; setrlimit is async-signal-safe
            // and the closure touches nothing else.
            unsafe {
                cmd.pre_exec(move || {
                    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, n, n)
                        .map_err(std::io::Error::from)
                });
            }
        }
        if let Some((uid, gid)) = how.user {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
        cmd.arg("--listen").arg("127.0.0.1:0");
        if let Some(dir) = &app {
            cmd.arg("--lua-dir").arg(dir.path());
        }
        // GET / is rate-limited per client address, and every test client is 127.0.0.1: a
        // test that is not about that limit must not trip it (tests/hostile.rs is about it).
        if !args.iter().any(|a| a.starts_with("--create-")) {
            cmd.args(NO_CREATION_LIMIT);
        }
        cmd.args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start luabroker");
        let pid = child.id() as i32;
        let log = Arc::new(Mutex::new(String::new()));
        collect_lines(child.stderr.take().unwrap(), log.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        let printed = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                {
                    let mut out = printed.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
                if let Some(addr) = line.strip_prefix("listening on http://") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let addr = rx
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("no 'listening on' line; log:\n{}", log.lock().unwrap()));
        Broker {
            child: Some(child),
            addr,
            pid,
            log,
            out,
            _app: app,
        }
    }

    /// The rest of the first stdout line that starts with `prefix` (e.g. `metrics on http://`).
    /// The broker prints its other addresses before `listening on`, so no wait is needed.
    pub fn printed(&self, prefix: &str) -> String {
        let out = self.out.lock().unwrap();
        out.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no stdout line starting with {prefix:?} in:\n{out}"))
            .to_string()
    }

    /// The app directory the test wrote (`with_app`), if any.
    pub fn app_dir(&self) -> Option<&std::path::Path> {
        self._app.as_ref().map(|d| d.path())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self, id: &str) -> String {
        format!("ws://{}/ws/{}", self.addr, id)
    }

    /// Everything the broker (and its workers) logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for a log line containing {needle:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(5)); // polling the log for a line
        }
    }

    /// `GET path` → (status, body).
    pub async fn get(&self, path: &str) -> (u16, String) {
        let resp = client().get(self.url(path)).send().await.expect("GET");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("body"))
    }

    /// `GET /<id>` of a live session: asserts the 200 and the `ui-session` cookie ui-engine's
    /// frontend reads, and returns the response for further checks.
    pub async fn session_page(&self, id: &str) -> reqwest::Response {
        let page = client()
            .get(self.url(&format!("/{id}")))
            .send()
            .await
            .expect("GET /<id>");
        assert_eq!(page.status().as_u16(), 200);
        assert_eq!(
            page.headers()["set-cookie"].to_str().unwrap(),
            format!("ui-session={id}; Path=/; SameSite=Lax")
        );
        page
    }

    /// Every variable of a session, from `/<id>/variables.json` (needs `--debug-pages`).
    pub async fn variables(&self, id: &str) -> Vec<Json> {
        let (status, body) = self.get(&format!("/{id}/variables.json")).await;
        assert_eq!(status, 200, "{body}");
        match serde_json::from_str::<Json>(&body).expect("variables.json is JSON") {
            Json::Array(vars) => vars,
            other => panic!("variables.json is not a list: {other}"),
        }
    }

    /// `GET /` → the new session's id (asserting the 302 and its Location).
    pub async fn create_session(&self) -> String {
        let resp = client().get(self.url("/")).send().await.expect("GET /");
        assert_eq!(
            resp.status().as_u16(),
            302,
            "GET / body: {:?}",
            resp.text().await
        );
        let location = resp.headers()["location"].to_str().unwrap().to_string();
        let id = location
            .strip_prefix('/')
            .expect("Location starts with /")
            .to_string();
        assert!(is_session_id(&id), "Location {location} is not /<32 hex>");
        id
    }

    /// Worker processes serving a session (named `lb-session`; spares are `lb-spare`).
    pub fn workers(&self) -> Vec<i32> {
        descendants(self.pid)
            .into_iter()
            .filter(|p| is_alive(*p) && comm(*p).as_deref() == Some("lb-session"))
            .collect()
    }

    /// Every live child process of the broker, spares included.
    pub fn children(&self) -> Vec<i32> {
        descendants(self.pid)
            .into_iter()
            .filter(|p| is_alive(*p))
            .collect()
    }

    /// Sends a signal to the broker process.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), sig).unwrap();
    }

    /// Waits for the broker process to exit and returns its status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("broker already waited for");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "broker did not exit; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(5)); // polling an exit, not synchronising
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub fn is_session_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Polls `cond` until it holds or the deadline passes (then panics naming `what`). Async, so an
/// async test never blocks its runtime thread while it waits (the one helper for every test).
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---- /proc ----------------------------------------------------------------------------------

/// Fields of /proc/<pid>/stat after the command name: (state, ppid).
fn stat(pid: i32) -> Option<(char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 2..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// A process's nice value (field 19 of /proc/<pid>/stat).
pub fn nice(pid: i32) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    text[text.rfind(')')? + 2..]
        .split_whitespace()
        .nth(16)?
        .parse()
        .ok()
}

pub fn comm(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_string())
}

pub fn proc_state(pid: i32) -> Option<char> {
    stat(pid).map(|(s, _)| s)
}

pub fn is_alive(pid: i32) -> bool {
    proc_state(pid).is_some_and(|s| s != 'Z')
}

pub fn is_zombie(pid: i32) -> bool {
    proc_state(pid) == Some('Z')
}

pub fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Every process whose parent chain leads to `root`.
pub fn descendants(root: i32) -> Vec<i32> {
    let parents: Vec<(i32, i32)> = all_pids()
        .into_iter()
        .filter_map(|p| stat(p).map(|(_, pp)| (p, pp)))
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// Processes started from this executable in worker mode that name `socket_dir` in their
/// environment: how a test finds a broker's workers even after the broker is gone.
pub fn workers_of_socket(socket: &str) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|p| is_alive(*p))
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/environ"))
                .map(|env| {
                    env.split(|b| *b == 0)
                        .any(|kv| kv == format!("LUABROKER_WORKER_SOCKET={socket}").as_bytes())
                })
                .unwrap_or(false)
        })
        .collect()
}

/// The worker socket path a worker was given.
pub fn worker_socket_of(pid: i32) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|b| *b == 0).find_map(|kv| {
        std::str::from_utf8(kv)
            .ok()?
            .strip_prefix("LUABROKER_WORKER_SOCKET=")
            .map(str::to_string)
    })
}

// ---- WebSocket ------------------------------------------------------------------------------

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(broker: &Broker, id: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async_with_config(broker.ws_url(id), None, true)
        .await
        .expect("WebSocket connect");
    ws
}

/// Opens a tab on the session and waits until it is attached (a round trip through the
/// worker): from then on the session counts as adopted, so it is never evicted at the cap.
pub async fn open_tab(broker: &Broker, id: &str) -> Ws {
    let mut ws = connect(broker, id).await;
    send(&mut ws, msg("get", serde_json::json!({"varIds": [1]}))).await;
    recv_until(&mut ws, |m| m["type"] == "get").await;
    ws
}

pub async fn send(ws: &mut Ws, json: Json) {
    ws.send(Message::Text(json.to_string().into()))
        .await
        .expect("send");
}

/// The next server frame as a list of messages (a bare object counts as a list of one).
/// `None` when the server closed the socket (the close frame's code and reason are returned
/// through [`recv_close`]).
pub async fn recv(ws: &mut Ws) -> Vec<Json> {
    loop {
        let msg = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("timed out waiting for a server frame")
            .expect("socket ended")
            .expect("socket error");
        match msg {
            Message::Text(t) => {
                let json: Json = serde_json::from_str(t.as_str()).expect("server sent JSON");
                return match json {
                    Json::Array(items) => items,
                    one => vec![one],
                };
            }
            Message::Close(frame) => panic!("socket closed: {frame:?}"),
            _ => continue,
        }
    }
}

/// Reads frames until one of their messages satisfies `pred`; returns that message.
pub async fn recv_until(ws: &mut Ws, mut pred: impl FnMut(&Json) -> bool) -> Json {
    loop {
        for m in recv(ws).await {
            if pred(&m) {
                return m;
            }
        }
    }
}

/// Reads until the server's close frame; returns (code, reason) and every message before it.
pub async fn recv_close(ws: &mut Ws) -> (u16, String, Vec<Json>) {
    let mut before = Vec::new();
    loop {
        let msg = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("timed out waiting for the close frame");
        match msg {
            Some(Ok(Message::Text(t))) => match serde_json::from_str::<Json>(t.as_str()).unwrap() {
                Json::Array(items) => before.extend(items),
                one => before.push(one),
            },
            Some(Ok(Message::Close(Some(frame)))) => {
                return (frame.code.into(), frame.reason.to_string(), before)
            }
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => {
                return (0, String::new(), before)
            }
            Some(Ok(_)) => {}
        }
    }
}

/// Sends `frame`, then a `get` of nothing as a marker; returns every message up to its answer.
pub async fn exchange(ws: &mut Ws, frame: Json) -> Vec<Json> {
    send(ws, frame).await;
    send(ws, msg("get", serde_json::json!({"varIds": []}))).await;
    let mut got = Vec::new();
    loop {
        for m in recv(ws).await {
            if m["type"] == "get" && m["data"]["variables"] == serde_json::json!([]) {
                return got;
            }
            got.push(m);
        }
    }
}

pub fn msg(kind: &str, data: Json) -> Json {
    serde_json::json!({"type": kind, "data": data})
}
