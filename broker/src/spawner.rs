//! Starts worker processes.
//!
//! A worker is this same executable in worker mode, so an installed binary never needs a
//! second one. Two ways, the first preferred:
//! - **fork from the zygote**: at start-up the broker execs one `__zygote` process, small and
//!   single-threaded, and asks it (a line on its stdin) to fork each worker; the child connects
//!   and authenticates exactly like an exec'd worker. This skips an exec of the whole
//!   executable per session (DESIGN.md 9). The zygote reaps its children and reports each exit
//!   (a line on its stdout), and signals them on the broker's behalf, so a recycled pid is never
//!   signalled. If the zygote dies, its workers die with it (parent-death signal), the broker
//!   (a child subreaper) reaps them and reports the crashes, and new workers are exec'd.
//! - **exec** (`/proc/self/exe __worker`): `std::process::Command` without a `pre_exec` hook,
//!   which takes the posix_spawn path; the multi-threaded broker never forks and keeps running.
//!
//! Every exec happens on one dedicated thread that lives as long as the broker, because a
//! parent-death signal fires when the *thread* that created the child exits, not the process.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};

use nix::sys::signal::Signal;
use tokio::sync::oneshot;
use worker::process::{ENV_PARENT, ENV_SOCKET, ENV_TOKEN};
use worker::zygote::ZYGOTE_ARG;

use crate::reaper::{Exit, Reaper};

/// First argument that puts the executable in worker mode.
pub const WORKER_ARG: &str = "__worker";

type PidReply = oneshot::Sender<io::Result<i32>>;

enum Request {
    Exec {
        token_hex: String,
        reply: PidReply,
    },
    StartZygote {
        reply: oneshot::Sender<io::Result<std::process::Child>>,
    },
}

/// The broker's end of the zygote's pipes.
pub struct Zygote {
    pub pid: i32,
    /// Requests go in under this lock together with their reply slot, so `forked` answers
    /// (which come back in request order) find the right waiter. `None` once closed.
    requests: Mutex<(Option<ChildStdin>, VecDeque<PidReply>)>,
}

impl Zygote {
    fn fork(&self, token_hex: &str) -> io::Result<oneshot::Receiver<io::Result<i32>>> {
        let mut guard = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let (stdin, waiting) = &mut *guard;
        let stdin = stdin
            .as_mut()
            .ok_or_else(|| io::Error::other("the zygote is closed"))?;
        writeln!(stdin, "fork {token_hex}")?;
        stdin.flush()?;
        let (tx, rx) = oneshot::channel();
        waiting.push_back(tx);
        Ok(rx)
    }

    /// Asks the zygote to signal one of its children (it ignores pids it has reaped).
    pub fn kill(&self, pid: i32, sig: Signal) -> bool {
        let mut guard = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        match guard.0.as_mut() {
            Some(stdin) => writeln!(stdin, "kill {pid} {}", sig as i32)
                .and_then(|()| stdin.flush())
                .is_ok(),
            None => false,
        }
    }

    /// Closes the zygote's stdin: it exits (its remaining children are already gone by then).
    pub fn close(&self) {
        let mut guard = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        guard.0 = None;
        for waiter in guard.1.drain(..) {
            let _ = waiter.send(Err(io::Error::other("the zygote is closed")));
        }
    }
}

#[derive(Clone)]
pub struct Spawner {
    requests: mpsc::Sender<Request>,
    reaper: Reaper,
}

impl Spawner {
    /// Starts the spawning thread. `socket` is the broker's private worker socket.
    pub fn start(socket: PathBuf, reaper: Reaper) -> io::Result<Spawner> {
        let exe = std::env::current_exe()?;
        let parent = std::process::id().to_string();
        let (requests, inbox) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("spawner".into())
            .spawn(move || {
                for req in inbox {
                    let mut cmd = Command::new(&exe);
                    cmd.env(ENV_SOCKET, &socket)
                        .env(ENV_PARENT, &parent)
                        .stderr(Stdio::inherit());
                    match req {
                        Request::Exec { token_hex, reply } => {
                            let spawned = cmd
                                .arg(WORKER_ARG)
                                .env(ENV_TOKEN, &token_hex)
                                .stdin(Stdio::null())
                                .stdout(Stdio::null())
                                .spawn()
                                // Dropping a std Child neither waits nor kills: the reaper
                                // owns the exit.
                                .map(|child| child.id() as i32);
                            let _ = reply.send(spawned);
                        }
                        Request::StartZygote { reply } => {
                            let started = cmd
                                .arg(ZYGOTE_ARG)
                                .stdin(Stdio::piped())
                                .stdout(Stdio::piped())
                                .spawn();
                            let _ = reply.send(started);
                        }
                    }
                }
            })?;
        Ok(Spawner { requests, reaper })
    }

    /// Starts the zygote and the thread that reads its reports; from then on workers are forked.
    pub async fn start_zygote(&self) -> io::Result<()> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::StartZygote { reply })
            .map_err(|_| io::Error::other("spawner thread is gone"))?;
        let mut child = answer
            .await
            .map_err(|_| io::Error::other("spawner thread is gone"))??;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(io::Error::other("the zygote has no pipes"));
        };
        let zygote = Arc::new(Zygote {
            pid: child.id() as i32,
            requests: Mutex::new((Some(stdin), VecDeque::new())),
        });
        let exit = self.reaper.wait(zygote.pid);
        self.reaper.set_zygote(zygote.clone(), exit);
        let reports = zygote.clone();
        let reaper = self.reaper.clone();
        std::thread::Builder::new()
            .name("zygote-reports".into())
            .spawn(move || read_reports(stdout, &reports, &reaper))?;
        tracing::info!(
            pid = zygote.pid,
            "zygote started: workers are forked from it"
        );
        Ok(())
    }

    /// Starts one worker that will present `token`; returns its pid.
    pub async fn spawn(&self, token_hex: String) -> io::Result<i32> {
        if let Some(zygote) = self.reaper.zygote() {
            if let Ok(forked) = zygote.fork(&token_hex) {
                if let Ok(Ok(pid)) = forked.await {
                    return Ok(pid);
                }
            }
            // The zygote is gone; fall through to exec.
        }
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Exec { token_hex, reply })
            .map_err(|_| io::Error::other("spawner thread is gone"))?;
        answer
            .await
            .map_err(|_| io::Error::other("spawner thread is gone"))?
    }
}

/// Reads the zygote's stdout until it closes: `forked` answers and `exit` reports.
fn read_reports(stdout: std::process::ChildStdout, zygote: &Zygote, reaper: &Reaper) {
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["forked", pid] => {
                let Ok(pid) = pid.parse::<i32>() else {
                    continue;
                };
                reaper.adopt_from_zygote(pid);
                let waiter = zygote
                    .requests
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .1
                    .pop_front();
                if let Some(tx) = waiter {
                    let _ = tx.send(Ok(pid));
                }
            }
            ["exit", pid, kind, n] => {
                let (Ok(pid), Ok(n)) = (pid.parse::<i32>(), n.parse::<i32>()) else {
                    continue;
                };
                let exit = match *kind {
                    "signal" => match Signal::try_from(n) {
                        Ok(sig) => Exit::Signal(sig),
                        Err(_) => Exit::Code(128 + n),
                    },
                    _ => Exit::Code(n),
                };
                reaper.report(pid, exit);
            }
            _ => tracing::warn!("zygote said {line:?}"),
        }
    }
    let closed_by_us = zygote
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .0
        .is_none();
    if closed_by_us {
        tracing::info!("zygote stopped");
    } else {
        tracing::error!("the zygote is gone; workers are exec'd from now on");
    }
    zygote.close();
    reaper.zygote_gone();
}
