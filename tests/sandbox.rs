//! Workers that cannot hurt the host (issue 9): what `/proc` says about a serving worker, a
//! forbidden system call ending only its own session as `sandbox-violation` naming the call
//! (the calls only the zygote and a worker being confined may make included, and the calls
//! allowed only on their arguments made with others),
//! no network from inside a worker, a filesystem fence around the site (symlinks inside it
//! followed, nothing outside it readable), `--sandbox strict|off`, and the start-up refusals
//! (root workers, an app the worker user cannot read). The forbidden calls are made by
//! `__luabroker_test`, which exists only in the executable cargo builds for these tests (the
//! worker's `test-hooks` feature); a `cargo build` or `cargo install` has no such function
//! (`tests/operations.rs` checks the installed one).

mod common;

use common::*;
use serde_json::{json, Value as Json};

/// An app whose actions make the calls a test names.
const APP: &str = r#"
assert(__luabroker_test, 'this executable has no test hooks: build it with cargo test')
local App = {}
App.__index = App
function App:forbidden() __luabroker_test.syscall(self.call) end
-- `call` is a call's name and integer arguments (`self` stands for this process's pid).
function App:raw()
  local words = {}
  for w in self.call:gmatch('%S+') do words[#words + 1] = w end
  local name = table.remove(words, 1)
  local args = {}
  for i, w in ipairs(words) do
    args[i] = w == 'self' and __luabroker_test.pid() or math.tointeger(tonumber(w))
  end
  self.result = tostring(__luabroker_test.syscall(name, table.unpack(args)))
end
function App:connect() self.result = __luabroker_test.connect(self.address) end
app = setmetatable({call = 'ptrace', address = '', result = '', count = 0}, App)
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
    if running_as_root() {
        // Shrinking the bounding set needs CAP_SETPCAP: only a root broker's workers can.
        assert_eq!(status(pid, "CapBnd"), "0000000000000000");
        let uid = status(pid, "Uid");
        assert!(
            uid.split_whitespace().all(|u| u != "0"),
            "a root broker's worker runs as another user: Uid {uid}"
        );
        // Nothing inherited beyond stdio: its descriptors are its broker link and its runtime's
        // (epoll, eventfd, a socket pair), whatever the broker itself was started with.
        for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
            let entry = entry.unwrap();
            let fd: i32 = entry.file_name().to_str().unwrap().parse().unwrap();
            let target = std::fs::read_link(entry.path()).unwrap();
            let target = target.to_string_lossy();
            assert!(
                fd <= 2 || target.starts_with("socket:") || target.starts_with("anon_inode:"),
                "the worker holds fd {fd}: {target}"
            );
        }
        // Its own network and mount namespaces.
        for ns in ["net", "mnt", "ipc"] {
            let mine = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
            let its = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
            assert_ne!(mine, its, "the worker has a {ns} namespace of its own");
        }
        // In it the app is mounted read-only over itself; the broker's own view is unchanged.
        let app = broker.app_dir().unwrap();
        let options = app_mount_options(pid, app).expect("the app is mounted in the worker");
        assert!(options.starts_with("ro"), "the app is mounted {options}");
        assert_eq!(
            app_mount_options("self", app),
            None,
            "the broker's namespace is not changed"
        );
        // Every worker joins the one empty network and IPC namespaces and the one mount
        // namespace the broker made at start-up.
        let other = broker.create_session().await;
        let _other_ws = tab(&broker, &other).await;
        for (ns, shared) in [("net", true), ("ipc", true), ("mnt", true)] {
            let of_each: Vec<_> = broker
                .workers()
                .iter()
                .map(|w| std::fs::read_link(format!("/proc/{w}/ns/{ns}")).unwrap())
                .collect();
            assert_eq!(of_each.len(), 2);
            assert_eq!(
                of_each[0] == of_each[1],
                shared,
                "workers share their {ns} namespace: {shared}"
            );
        }
        // Its network namespace has a loopback device and nothing else.
        let devices = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap();
        let names: Vec<&str> = devices
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .map(str::trim)
            .collect();
        assert_eq!(names, ["lo"], "{devices}");
    }
    let (_, metrics) = broker.get("/metrics").await;
    // As root every layer is in force; a broker that is not root has no namespaces (see
    // `strict_refuses_to_start_when_a_layer_is_missing_and_auto_serves_without_it`).
    let namespaces = u8::from(running_as_root());
    for (layer, on) in [
        ("seccomp", 1),
        ("landlock", 1),
        ("namespaces", namespaces),
        ("worker_user", 1),
    ] {
        let line = format!("luabroker_sandbox_layer{{layer=\"{layer}\"}} {on}");
        assert!(metrics.contains(&line), "{line}: {metrics}");
    }
    if running_as_root() {
        broker.wait_log("worker sandbox: every layer in force");
        broker.wait_log("active=seccomp,namespaces,landlock,worker_user");
    } else {
        broker.wait_log("active=seccomp,landlock,worker_user missing=namespaces");
    }
}

/// Workers share the mount namespace made at start-up, in which the app directory is mounted
/// read-only over itself. Removing that directory takes the mount away there too; an app
/// directory replaced since (removed and made again at the same path) is still served as it is
/// now, and still read-only.
#[tokio::test]
async fn an_app_directory_replaced_while_serving_is_served_as_it_is_now_and_read_only() {
    let broker = Broker::with_app(
        &[("main.lua", &main_with("before"))],
        &["--spare-workers", "0"],
    );
    let first = broker.create_session().await;
    assert_eq!(app_value(&broker, &first, "version").await, "before");
    let dir = broker.app_dir().unwrap().to_path_buf();
    let old = dir.with_extension("old");
    std::fs::rename(&dir, &old).unwrap();
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("main.lua"), main_with("after")).unwrap();
    std::fs::remove_dir_all(&old).unwrap();
    let second = broker.create_session().await;
    assert_eq!(app_value(&broker, &second, "version").await, "after");
    if running_as_root() {
        let worker = *broker.workers().last().unwrap();
        let options = app_mount_options(worker, &dir);
        assert_eq!(
            options.as_deref().map(|o| &o[..2]),
            Some("ro"),
            "the new worker sees the app read-only: {options:?}"
        );
    }
}

/// The options of the last mount at `dir` in the mount namespace of `pid` (`self`: ours).
fn app_mount_options(pid: impl std::fmt::Display, dir: &std::path::Path) -> Option<String> {
    let dir = dir.canonicalize().unwrap();
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4) == dir.to_str())
        .map(|l| l.split(' ').nth(5).unwrap().to_string())
        .next_back()
}

fn main_with(version: &str) -> String {
    format!("session:createAppVariable({{version = '{version}'}})\n")
}

/// A field of the app variable, as a tab watching it sees it.
async fn app_value(broker: &Broker, id: &str, field: &str) -> String {
    let mut ws = tab(broker, id).await;
    send(&mut ws, frame(vec![create(2, json!({"path": field}))])).await;
    let update = recv_until(&mut ws, |m| {
        m["type"] == "update" && m["data"]["varId"] == 2
    })
    .await;
    update["data"]["value"]
        .as_str()
        .unwrap_or_default()
        .to_string()
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

/// The zygote's own filter lets it fork, and a forked worker connect and confine itself, before
/// the worker's filter goes on; none of those calls is left to a serving worker. Nor are the
/// IPC calls: workers share one IPC namespace, which none of them can use.
#[tokio::test]
async fn what_the_zygote_and_a_worker_being_confined_may_call_a_serving_worker_may_not() {
    let broker = Broker::with_app(&[("main.lua", APP)], &[]);
    let setup = [
        "clone",
        "wait4",
        "unshare",
        "setns",
        "mount",
        "socketpair",
        "setresuid",
    ];
    let ipc = ["shmget", "msgget", "semget", "mq_open"];
    for call_name in setup.into_iter().chain(ipc) {
        let id = broker.create_session().await;
        let mut ws = tab(&broker, &id).await;
        call(&mut ws, "call", json!(call_name), "forbidden").await;
        let cause = crash_cause(&mut ws).await;
        assert!(
            cause.contains(&format!("sandbox-violation: {call_name}")),
            "{call_name}: {cause}"
        );
    }
}

/// The calls a serving worker may make only with some arguments (checked by the filter a
/// forked worker adds to the zygote's): with others they are violations, with those they run.
#[tokio::test]
async fn calls_allowed_on_their_arguments_are_violations_with_any_others() {
    let broker = Broker::with_app(&[("main.lua", APP)], &[]);
    let o = |flags: i32| flags.to_string();
    let refused = [
        // openat(AT_FDCWD, NULL, O_WRONLY | O_CREAT): the filter refuses before the path is read
        format!("openat -100 0 {}", o(libc::O_WRONLY | libc::O_CREAT)),
        format!("openat -100 0 {}", o(libc::O_RDONLY | libc::O_TRUNC)),
        format!(
            "mmap 0 4096 {} {} -1 0",
            o(libc::PROT_READ | libc::PROT_EXEC),
            o(libc::MAP_PRIVATE | libc::MAP_ANONYMOUS)
        ),
        format!("mprotect 0 4096 {}", o(libc::PROT_EXEC)),
        "kill 1 0".to_string(),
        "prlimit64 1 0 0 0".to_string(),
        format!("prctl {} 0", o(libc::PR_SET_DUMPABLE)),
    ];
    for spec in &refused {
        let id = broker.create_session().await;
        let mut ws = tab(&broker, &id).await;
        call(&mut ws, "call", json!(spec), "raw").await;
        let cause = crash_cause(&mut ws).await;
        let name = spec.split(' ').next().unwrap();
        assert!(
            cause.contains(&format!("sandbox-violation: {name}")),
            "{spec}: {cause}"
        );
    }
    // With the arguments the allowlist names, the same calls run (and answer as the kernel
    // does): signal 0 to itself, its own limits, a mapping that is not executable.
    for spec in [
        "kill self 0".to_string(),
        "prlimit64 0 0 0 0".to_string(),
        format!(
            "mmap 0 4096 {} {} -1 0",
            o(libc::PROT_READ),
            o(libc::MAP_PRIVATE | libc::MAP_ANONYMOUS)
        ),
    ] {
        let id = broker.create_session().await;
        let mut ws = tab(&broker, &id).await;
        call(&mut ws, "call", json!(spec), "raw").await;
        send(&mut ws, frame(vec![create(4, json!({"path": "result"}))])).await;
        let update = recv_until(&mut ws, |m| {
            m["type"] == "update" && m["data"]["varId"] == 4
        })
        .await;
        let answer = update["data"]["value"].as_str().unwrap_or_default();
        let result: i64 = answer.parse().unwrap_or(-1);
        assert!(result >= 0, "{spec} answered {answer:?}");
    }
}

#[tokio::test]
async fn a_worker_cannot_connect_to_the_brokers_port_or_any_address() {
    let broker = Broker::with_app(&[("main.lua", APP)], &[]);
    for address in [broker.addr.clone(), "192.0.2.1:80".to_string()] {
        let id = broker.create_session().await;
        let mut ws = tab(&broker, &id).await;
        call(&mut ws, "address", json!(address), "connect").await;
        // Making the socket is already forbidden (and its network namespace has no route).
        let cause = crash_cause(&mut ws).await;
        assert!(
            cause.contains("sandbox-violation: socket"),
            "{address}: {cause}"
        );
    }
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

// --- The filesystem fence ---

fn user_frame(messages: Vec<Json>) -> Json {
    json!({"userEvent": true, "messages": messages})
}

fn path(id: i64, path: &str) -> Json {
    msg(
        "create",
        json!({"id": id, "parentId": 1, "properties": {"path": path}}),
    )
}

/// The value last sent for `id`, as text.
fn last(msgs: &[Json], id: i64) -> String {
    msgs.iter()
        .rev()
        .filter(|m| m["type"] == "update" && m["data"]["varId"] == id)
        .find_map(|m| m["data"]["value"].as_str())
        .unwrap_or_else(|| panic!("no value for {id}: {msgs:?}"))
        .to_string()
}

#[tokio::test]
async fn a_site_is_readable_through_its_symlinks_and_nothing_outside_it_is() {
    // top/site is a ui-engine site whose lua/ and viewdefs/ reach other parts of the site
    // through symlinks; top/secret.txt is outside it, readable to every user by its mode.
    let top = app(&[
        ("secret.txt", "TOP SECRET"),
        (
            "site/common/shared.lua",
            "return {greeting = 'hello from common/'}",
        ),
        (
            "site/templates/home.html",
            "<template><p>from templates/</p></template>",
        ),
        ("site/html/index.html", "<p>site frontend</p>"),
    ]);
    let site = top.path().join("site");
    let link = |target: &str, at: &str| {
        std::fs::create_dir_all(site.join(at).parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, site.join(at)).unwrap();
    };
    link("../common/shared.lua", "lua/shared.lua");
    link("../templates/home.html", "viewdefs/Home.DEFAULT.html");
    link("../../secret.txt", "lua/secret.txt");
    let main = format!(
        r#"
        assert(__luabroker_test, 'this executable has no test hooks: build it with cargo test')
        local read = __luabroker_test.read
        session:createAppVariable({{type = 'Home', greeting = require('shared').greeting,
            html = read('{site}/html/index.html'),
            etc = read('/etc/passwd'),
            linked = read('{site}/lua/secret.txt')}})
        "#,
        site = site.display()
    );
    std::fs::write(site.join("lua/main.lua"), main).unwrap();
    let broker = Broker::start(&["--dir", site.to_str().unwrap()]);
    let id = broker.create_session().await;
    let mut ws = connect(&broker, &id).await;
    let msgs = exchange(
        &mut ws,
        user_frame(vec![
            msg("watch", json!({"varId": 1})),
            path(2, "greeting"),
            path(3, "html"),
            path(4, "etc"),
            path(5, "linked"),
        ]),
    )
    .await;
    // Inside the site: a module and a template reached through symlinks, a frontend file.
    assert_eq!(last(&msgs, 2), "hello from common/");
    assert_eq!(last(&msgs, 3), "<p>site frontend</p>");
    let viewdefs = msgs
        .iter()
        .filter_map(|m| m["data"]["properties"]["viewdefs"].as_str())
        .collect::<String>();
    assert!(viewdefs.contains("from templates/"), "{msgs:?}");
    // Outside it, nothing: not a system file, not a file a symlink in the site leads to.
    for id in [4, 5] {
        let got = last(&msgs, id);
        assert!(got.contains("Permission denied"), "{id}: {got}");
    }
}

// --- Start-up: modes, users, readability ---

/// Starts the executable expecting it to refuse to start, as `user` (uid, gid) if given;
/// returns its stderr. Fails, never hangs, if it is still running after the deadline.
fn refuses_to_start(args: &[&str], user: Option<(u32, u32)>) -> String {
    use std::os::unix::process::CommandExt;
    let copy = user.map(|_| runnable_copy());
    let bin = copy
        .as_ref()
        .map_or(std::path::Path::new(BIN), |(_, bin)| bin);
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    let mut child = cmd.spawn().unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("luabroker {args:?} was still running after {DEADLINE:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(5)); // polling an exit, not synchronising
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "luabroker {args:?} started: {err}");
    err
}

/// The executable, copied where any user may run it: a broker started as `nobody` could not
/// run the one cargo built if the checkout sits under a directory only its owner can enter
/// (`mktemp -d` makes such ones).
fn runnable_copy() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = app(&[]);
    let bin = dir.path().join("luabroker");
    std::fs::copy(BIN, &bin).unwrap();
    (dir, bin)
}

/// A broker that is not root: `nobody` when the tests run as root, else the tests' own user.
fn not_root() -> Option<(u32, u32)> {
    running_as_root().then(|| {
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        (nobody.uid.as_raw(), nobody.gid.as_raw())
    })
}

#[tokio::test]
async fn strict_refuses_to_start_when_a_layer_is_missing_and_auto_serves_without_it() {
    // Namespaces need CAP_SYS_ADMIN, which a broker that is not root lacks.
    let dir = app(&[("main.lua", APP)]);
    let lua_dir = dir.path().to_str().unwrap();
    let err = refuses_to_start(&["--sandbox", "strict", "--lua-dir", lua_dir], not_root());
    assert!(
        err.contains("--sandbox strict: not available here: namespaces"),
        "{err}"
    );

    // The same broker under `auto` (the default) says what is missing and serves, its
    // workers still filtered and fenced.
    let copy = not_root().map(|_| runnable_copy());
    let broker = Broker::start_with(
        &["--lua-dir", lua_dir],
        Launch {
            user: not_root(),
            bin: copy.as_ref().map(|(_, bin)| bin.as_path()),
            ..Launch::default()
        },
    );
    broker.wait_log("missing=namespaces");
    let id = broker.create_session().await;
    let _ws = tab(&broker, &id).await;
    let pid = broker.workers()[0];
    assert_eq!(status(pid, "Seccomp"), "2");
    assert_eq!(status(pid, "NoNewPrivs"), "1");
    assert_eq!(status(pid, "CapEff"), "0000000000000000");
    let (_, metrics) = broker.get("/metrics").await;
    assert!(
        metrics.contains("luabroker_sandbox_layer{layer=\"namespaces\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("luabroker_sandbox_layer{layer=\"landlock\"} 1"),
        "{metrics}"
    );

    // Root workers are a missing layer too.
    if running_as_root() {
        let err = refuses_to_start(
            &[
                "--sandbox",
                "strict",
                "--worker-user",
                "root",
                "--allow-root-workers",
            ],
            None,
        );
        assert!(err.contains("not available here: worker_user"), "{err}");
    }
}

#[tokio::test]
async fn sandbox_off_keeps_only_no_new_privs_no_capabilities_and_the_worker_user() {
    let broker = Broker::with_app(&[("main.lua", APP)], &["--sandbox", "off"]);
    broker.wait_log("--sandbox off");
    let id = broker.create_session().await;
    let _ws = tab(&broker, &id).await;
    let pid = broker.workers()[0];
    assert_eq!(status(pid, "Seccomp"), "0");
    assert_eq!(status(pid, "NoNewPrivs"), "1");
    assert_eq!(status(pid, "CapEff"), "0000000000000000");
    if running_as_root() {
        assert!(!status(pid, "Uid").starts_with('0'));
    }
    let (_, metrics) = broker.get("/metrics").await;
    assert!(
        metrics.contains("luabroker_sandbox_layer{layer=\"seccomp\"} 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_app_the_workers_cannot_read_is_refused_at_start_up_and_a_module_fails_its_session() {
    use std::os::unix::fs::PermissionsExt;
    // Mode 000: unreadable to nobody (the workers of a root broker), and to a non-root owner.
    let unreadable = |path: &std::path::Path| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o000)).unwrap();
    };
    let dir = app(&[("main.lua", APP)]);
    unreadable(&dir.path().join("main.lua"));
    let err = refuses_to_start(&["--lua-dir", dir.path().to_str().unwrap()], None);
    assert!(err.contains("cannot read the app"), "{err}");
    assert!(err.contains("main.lua"), "{err}");

    // A module that becomes unreadable is that session's error, named, with the reason.
    let dir = app(&[
        (
            "main.lua",
            "require('private') session:createAppVariable({})",
        ),
        ("private.lua", "return {}"),
    ]);
    unreadable(&dir.path().join("private.lua"));
    let broker = Broker::start(&["--lua-dir", dir.path().to_str().unwrap()]);
    let (status, body) = broker.get("/").await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("cannot read private.lua: Permission denied"),
        "{body}"
    );
}
