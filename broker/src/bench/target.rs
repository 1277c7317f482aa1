//! The server under test: one already running (`--url`), or one the bench starts from this
//! same executable (`--spawn`) serving the bench app, a fresh one per scenario so that no
//! scenario measures the sessions an earlier one left behind.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long a spawned server may take to print its `listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of a spawned server's log kept for error messages.
const LOG_TAIL: usize = 40;

pub struct Server {
    /// `host:port`.
    pub addr: String,
    /// The broker's pid, when the bench started it (for memory figures).
    pub pid: Option<i32>,
    child: Option<Child>,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Server {
    pub fn running(url: &str) -> Result<Server, String> {
        let addr = url
            .trim_end_matches('/')
            .strip_prefix("http://")
            .ok_or_else(|| format!("--url must look like http://HOST:PORT, not {url}"))?;
        Ok(Server {
            addr: addr.to_string(),
            pid: None,
            child: None,
            log: Arc::default(),
        })
    }

    /// Starts `luabroker --listen 127.0.0.1:0 --lua-dir APP …extra` and waits for it to listen.
    pub fn spawn(app_dir: &std::path::Path, extra: &[String]) -> Result<Server, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
        let mut child = Command::new(exe)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--lua-dir")
            .arg(app_dir)
            // Room for every scenario's sessions, and no per-client bounds: every session and
            // tab comes from this one address. A user's own flags come later and win.
            .args(["--max-sessions", "100000", "--max-pending-sessions", "512"])
            .args(["--create-rate-per-client", "0"])
            .args(["--max-connections-per-client", "1000000"])
            // For the worker's own pass times (`changes`); a session nobody asks about pays nothing.
            .args((!extra.iter().any(|a| a == "--debug-pages")).then_some("--debug-pages"))
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the server: {e}"))?;
        let log: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let stderr = child.stderr.take().expect("piped");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock();
                if log.len() == LOG_TAIL {
                    log.pop_front();
                }
                log.push_back(line);
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on http://") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let pid = child.id() as i32;
        let mut server = Server {
            addr: String::new(),
            pid: Some(pid),
            child: Some(child),
            log,
        };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => {
                server.addr = addr;
                Ok(server)
            }
            Err(_) => Err(format!(
                "the server did not start listening; its log:\n{}",
                server.log_tail()
            )),
        }
    }

    pub fn log_tail(&self) -> String {
        let log = self.log.lock();
        log.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Stops a spawned server the way an operator would (SIGTERM), SIGKILL if it lingers.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20)); // polling an exit
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Proportional set size of a process, in KiB.
pub fn pss_kib(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find(|l| l.starts_with("Pss:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `root` and its descendant processes, each with its name.
fn family(root: i32) -> Vec<(i32, String)> {
    let stats: Vec<(i32, i32, String)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let name = text.get(text.find('(')? + 1..text.rfind(')')?)?.to_string();
            let ppid = text
                .get(text.rfind(')')? + 2..)?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid, name))
        })
        .collect();
    let mut family = vec![root];
    let mut i = 0;
    let mut children: std::collections::HashMap<i32, Vec<i32>> = Default::default();
    for s in &stats {
        children.entry(s.1).or_default().push(s.0);
    }
    while i < family.len() {
        family.extend(children.get(&family[i]).into_iter().flatten().copied());
        i += 1;
    }
    let family: std::collections::HashSet<i32> = family.into_iter().collect();
    stats
        .into_iter()
        .filter(|s| family.contains(&s.0))
        .map(|(pid, _, name)| (pid, name))
        .collect()
}

/// Descendant processes of `root` whose name is `comm`.
pub fn descendants_named(root: i32, comm: &str) -> Vec<i32> {
    family(root)
        .into_iter()
        .filter(|(pid, name)| *pid != root && name == comm)
        .map(|(pid, _)| pid)
        .collect()
}

/// What a process tree has run: CPU time, and how many times a thread was put on a CPU (each
/// wake-up is one, so the count is what cross-process hand-offs cost, whatever the machine's
/// speed).
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub cpu: Duration,
    pub runs: u64,
}

impl Usage {
    /// The note's clause for the usage since `before`, per one of `n` `unit`s (sessions,
    /// round trips).
    pub fn note_since(self, before: Usage, n: u64, unit: &str) -> String {
        let n = n.max(1) as f64;
        let cpu = self.cpu.saturating_sub(before.cpu).as_secs_f64() * 1e6 / n;
        let runs = self.runs.saturating_sub(before.runs) as f64 / n;
        format!(", server CPU {cpu:.0} µs and {runs:.1} thread runs per {unit}")
    }
}

/// What `root` and its live descendants have run so far, every thread of each, from
/// `/proc/PID/task/TID/schedstat` (CPU in nanoseconds: `/proc/PID/stat` counts in 10 ms ticks,
/// which a worker's millisecond would round away; then the number of runs). Processes that
/// already ended are not counted.
pub fn tree_usage(root: i32) -> Usage {
    let (nanos, runs) = family(root)
        .iter()
        .flat_map(|(pid, _)| {
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .into_iter()
                .flatten()
                .filter_map(|t| {
                    let text = std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok()?;
                    let mut fields = text.split_whitespace();
                    let nanos = fields.next()?.parse::<u64>().ok()?;
                    let runs = fields.nth(1)?.parse::<u64>().ok()?;
                    Some((nanos, runs))
                })
        })
        .fold((0, 0), |(n, r), (tn, tr)| (n + tn, r + tr));
    Usage {
        cpu: Duration::from_nanos(nanos),
        runs,
    }
}
