//! Spawner: starts worker processes, each as a [`Child`], within [`SPAWN_TIMEOUT`].
//!
//! A worker is this same executable in worker mode (`protocol::launch` is the contract), so an
//! installed binary never needs a second one. Two ways, the first preferred:
//! - **fork from the zygote**: at start-up the broker execs one zygote process, small and
//!   single-threaded, and asks it to fork each worker ([`ZygoteClient`], which this spawner
//!   owns); the child connects and authenticates exactly like an exec'd worker. This skips an
//!   exec of the whole executable per session, whose cost grows with the broker's fd table.
//!   If the zygote dies, new workers are exec'd. After `--zygote-forks` workers a fresh
//!   zygote takes over and the old one is retired: it keeps reaping its own workers and
//!   exits after the last ([`Zygotes`]).
//! - **exec** (`/proc/self/exe __worker`): `std::process::Command` without a `pre_exec` hook,
//!   which takes the posix_spawn path; the multi-threaded broker never forks and keeps running.
//!
//! Every exec happens on one dedicated thread that lives as long as the broker, because a
//! parent-death signal fires when the *thread* that created the child exits, not the process.

use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use parking_lot::Mutex;
use protocol::launch::{
    token_to_hex, Token, ENV_NICE, ENV_PARENT, ENV_SOCKET, ENV_TOKEN, ENV_ZYGOTE_APP_DIR,
    ENV_ZYGOTE_CONFINE_DIR, ENV_ZYGOTE_SECCOMP, WORKER_ARG, ZYGOTE_ARG,
};
use tokio::sync::oneshot;

use crate::child::Child;
use crate::reaper::Reaper;
use crate::zygote::{ForkError, ZygoteClient};

/// How long starting one worker process may take (fork or exec, not its connecting). Either
/// takes a millisecond or so; past this something is stuck, and the session start fails.
pub const SPAWN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot start a worker process: {0}")]
    Exec(io::Error),
    #[error("{0}")]
    Refused(ForkError),
    #[error("no worker process started within {0:?}")]
    Timeout(Duration),
}

enum Request {
    Exec {
        token: Token,
        reply: oneshot::Sender<io::Result<Child>>,
    },
    StartZygote {
        /// The app its workers will serve (the zygote compiles it once).
        app: protocol::ipc::PrepareVm,
        reply: oneshot::Sender<io::Result<std::process::Child>>,
    },
}

pub struct Spawner {
    requests: mpsc::Sender<Request>,
    reaper: Reaper,
    zygotes: Arc<Mutex<Zygotes>>,
    /// Workers forked from one zygote before a successor takes over; 0 = never.
    forks_per_zygote: u64,
}

/// The zygote workers are forked from, and the retired ones whose workers still live.
///
/// Why more than one: every process forked from a zygote shares its anonymous pages, and the
/// kernel's reverse map for those pages lists every such process. A walk of it (page
/// reclaim, DAMON's access checks) holds a lock that each new fork must also take, for as
/// long as it takes to visit every worker: with thousands of live sessions, forks queue
/// behind it. A fresh zygote starts a fresh reverse map, so the walk a fork can wait for is
/// at most `--zygote-forks` long.
#[derive(Default)]
struct Zygotes {
    current: Option<Arc<ZygoteClient>>,
    /// What the zygotes are started for (the successor is started for the same app).
    app: Option<protocol::ipc::PrepareVm>,
    /// The current zygote's forks at which a successor is started.
    due: u64,
    /// A successor is being started.
    succeeding: bool,
    retired: Vec<Arc<ZygoteClient>>,
    /// Shutdown has begun: no successor is installed.
    stopped: bool,
}

impl Spawner {
    /// Starts the spawning thread. `socket` is the broker's private worker socket.
    /// `nice` is the CPU priority every worker and zygote takes (`--worker-nice`, 0: ours).
    pub fn start(
        socket: PathBuf,
        reaper: Reaper,
        forks_per_zygote: u64,
        nice: u8,
    ) -> io::Result<Spawner> {
        let exe = std::env::current_exe()?;
        let parent = std::process::id().to_string();
        let (requests, inbox) = mpsc::channel::<Request>();
        let adopter = reaper.clone();
        std::thread::Builder::new()
            .name("spawner".into())
            .spawn(move || {
                for req in inbox {
                    let mut cmd = Command::new(&exe);
                    cmd.env(ENV_SOCKET, &socket)
                        .env(ENV_PARENT, &parent)
                        .stderr(Stdio::inherit());
                    if nice > 0 {
                        cmd.env(ENV_NICE, nice.to_string());
                    } else {
                        cmd.env_remove(ENV_NICE);
                    }
                    match req {
                        Request::Exec { token, reply } => {
                            let spawned = cmd
                                .arg(WORKER_ARG)
                                .env(ENV_TOKEN, token_to_hex(&token))
                                .stdin(Stdio::null())
                                .stdout(Stdio::null())
                                .spawn()
                                // Dropping a std Child neither waits nor kills: the reaper
                                // owns the exit.
                                .map(|child| adopter.adopt(child.id() as i32));
                            if let Err(Ok(unwanted)) = reply.send(spawned) {
                                unwanted.kill(); // its caller timed out
                            }
                        }
                        Request::StartZygote { app, reply } => {
                            if crate::sandbox::policy().seccomp {
                                cmd.env(ENV_ZYGOTE_SECCOMP, "1");
                            }
                            cmd.env(ENV_ZYGOTE_APP_DIR, &app.app_dir)
                                .env(ENV_ZYGOTE_CONFINE_DIR, app.readable_dir());
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
        Ok(Spawner {
            requests,
            reaper,
            zygotes: Arc::default(),
            forks_per_zygote,
        })
    }

    /// Starts the zygote for workers that will serve `app`; from then on workers are forked
    /// from it (and from its successors).
    pub async fn start_zygote(&self, app: protocol::ipc::PrepareVm) -> io::Result<()> {
        let zygote = launch_zygote(&self.requests, &self.reaper, app.clone()).await?;
        tracing::info!(
            pid = zygote.pid(),
            "zygote started: workers are forked from it"
        );
        let mut zygotes = self.zygotes.lock();
        zygotes.current = Some(zygote);
        zygotes.app = Some(app);
        zygotes.due = self.forks_per_zygote;
        Ok(())
    }

    /// Whether workers are forked from a live zygote.
    pub fn zygote_up(&self) -> bool {
        let zygotes = self.zygotes.lock();
        zygotes.current.as_ref().is_some_and(|z| z.is_open())
    }

    /// Zygote processes alive: the current one and the retired ones with workers left.
    pub fn zygotes_alive(&self) -> usize {
        let zygotes = self.zygotes.lock();
        let current = zygotes.current.iter().filter(|z| !z.has_exited()).count();
        current + zygotes.retired.iter().filter(|z| !z.has_exited()).count()
    }

    /// Shutdown: stops every zygote (their workers are gone by then), waiting up to `grace`.
    pub async fn stop_zygote(&self, grace: Duration) {
        let all: Vec<Arc<ZygoteClient>> = {
            let mut zygotes = self.zygotes.lock();
            zygotes.stopped = true;
            let retired = std::mem::take(&mut zygotes.retired);
            zygotes.current.take().into_iter().chain(retired).collect()
        };
        futures_util::future::join_all(all.iter().map(|z| z.stop(grace))).await;
    }

    /// After a fork from `zygote`: starts its successor in the background once it has
    /// forked its share, and makes it current when it is ready.
    fn succeed_if_due(&self, zygote: &Arc<ZygoteClient>) {
        let app = {
            let mut zygotes = self.zygotes.lock();
            let current = zygotes
                .current
                .as_ref()
                .is_some_and(|c| Arc::ptr_eq(c, zygote));
            if self.forks_per_zygote == 0
                || !current
                || zygotes.succeeding
                || zygotes.stopped
                || zygote.forks() < zygotes.due
            {
                return;
            }
            zygotes.succeeding = true;
            zygotes.app.clone()
        };
        let Some(app) = app else { return };
        let (requests, reaper, zygotes) = (
            self.requests.clone(),
            self.reaper.clone(),
            self.zygotes.clone(),
        );
        let forks_per_zygote = self.forks_per_zygote;
        tokio::spawn(async move {
            let started = launch_zygote(&requests, &reaper, app).await;
            let late = {
                let mut zygotes = zygotes.lock();
                zygotes.succeeding = false;
                match started {
                    Ok(next) if !zygotes.stopped => {
                        let pid = next.pid();
                        zygotes.due = forks_per_zygote;
                        if let Some(old) = zygotes.current.replace(next) {
                            tracing::info!(
                                pid,
                                retired = old.pid(),
                                forked = old.forks(),
                                "a fresh zygote forks the workers from now on"
                            );
                            old.retire();
                            zygotes.retired.push(old);
                        }
                        zygotes.retired.retain(|z| !z.has_exited());
                        None
                    }
                    Ok(next) => Some(next), // shut down meanwhile
                    Err(e) => {
                        // Try again after another share, not on every fork.
                        zygotes.due += forks_per_zygote;
                        tracing::warn!(
                            "cannot start a fresh zygote, forking from the current one: {e}"
                        );
                        None
                    }
                }
            };
            if let Some(next) = late {
                next.stop(Duration::from_secs(1)).await;
            }
        });
    }

    /// Starts one worker that will present `token`; an error, never a hang, if it cannot.
    pub async fn spawn(&self, token: Token) -> Result<Child, SpawnError> {
        tokio::time::timeout(SPAWN_TIMEOUT, self.spawn_now(token))
            .await
            .unwrap_or(Err(SpawnError::Timeout(SPAWN_TIMEOUT)))
    }

    async fn spawn_now(&self, token: Token) -> Result<Child, SpawnError> {
        // Twice at most: the zygote asked may have been retired and closed in between.
        for _ in 0..2 {
            let zygote = self.zygotes.lock().current.clone();
            let Some(zygote) = zygote.filter(|z| z.is_open()) else {
                break;
            };
            match zygote.fork(token).await {
                Ok(child) => {
                    self.succeed_if_due(&zygote);
                    return Ok(child);
                }
                Err(ForkError::Gone) => {} // a successor, else exec
                Err(refused) => return Err(SpawnError::Refused(refused)),
            }
        }
        let (reply, answer) = oneshot::channel();
        let gone = || SpawnError::Exec(io::Error::other("spawner thread is gone"));
        self.requests
            .send(Request::Exec { token, reply })
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?.map_err(SpawnError::Exec)
    }
}

/// Execs a zygote for workers that will serve `app`, on the spawning thread.
async fn launch_zygote(
    requests: &mpsc::Sender<Request>,
    reaper: &Reaper,
    app: protocol::ipc::PrepareVm,
) -> io::Result<Arc<ZygoteClient>> {
    let (reply, answer) = oneshot::channel();
    requests
        .send(Request::StartZygote { app, reply })
        .map_err(|_| io::Error::other("spawner thread is gone"))?;
    let mut started = answer
        .await
        .map_err(|_| io::Error::other("spawner thread is gone"))??;
    let process = reaper.adopt(started.id() as i32);
    let (Some(stdin), Some(stdout)) = (started.stdin.take(), started.stdout.take()) else {
        process.kill();
        return Err(io::Error::other("the zygote has no pipes"));
    };
    ZygoteClient::start(
        process,
        OwnedFd::from(stdin),
        OwnedFd::from(stdout),
        reaper.clone(),
    )
}
