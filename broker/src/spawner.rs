//! Spawner: starts worker processes, each as a [`Child`], within [`SPAWN_TIMEOUT`].
//!
//! A worker is this same executable in worker mode (`protocol::launch` is the contract), so an
//! installed binary never needs a second one. Two ways, the first preferred:
//! - **fork from the zygote**: at start-up the broker execs one zygote process, small and
//!   single-threaded, and asks it to fork each worker ([`ZygoteClient`], which this spawner
//!   owns); the child connects and authenticates exactly like an exec'd worker. This skips an
//!   exec of the whole executable per session, whose cost grows with the broker's fd table.
//!   If the zygote dies, new workers are exec'd.
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
    token_to_hex, Token, ENV_PARENT, ENV_SOCKET, ENV_TOKEN, ENV_ZYGOTE_APP_DIR,
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
    zygote: Mutex<Option<Arc<ZygoteClient>>>,
}

impl Spawner {
    /// Starts the spawning thread. `socket` is the broker's private worker socket.
    pub fn start(socket: PathBuf, reaper: Reaper) -> io::Result<Spawner> {
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
            zygote: Mutex::new(None),
        })
    }

    /// Starts the zygote for workers that will serve `app`; from then on workers are forked
    /// from it.
    pub async fn start_zygote(&self, app: protocol::ipc::PrepareVm) -> io::Result<()> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::StartZygote { app, reply })
            .map_err(|_| io::Error::other("spawner thread is gone"))?;
        let mut started = answer
            .await
            .map_err(|_| io::Error::other("spawner thread is gone"))??;
        let process = self.reaper.adopt(started.id() as i32);
        let (Some(stdin), Some(stdout)) = (started.stdin.take(), started.stdout.take()) else {
            process.kill();
            return Err(io::Error::other("the zygote has no pipes"));
        };
        let zygote = ZygoteClient::start(
            process,
            OwnedFd::from(stdin),
            OwnedFd::from(stdout),
            self.reaper.clone(),
        )?;
        tracing::info!(
            pid = zygote.pid(),
            "zygote started: workers are forked from it"
        );
        *self.zygote.lock() = Some(zygote);
        Ok(())
    }

    /// Whether workers are forked from a live zygote.
    pub fn zygote_up(&self) -> bool {
        self.zygote.lock().as_ref().is_some_and(|z| z.is_open())
    }

    /// Shutdown: stops the zygote (its workers are gone by then), waiting up to `grace`.
    pub async fn stop_zygote(&self, grace: Duration) {
        let zygote = self.zygote.lock().take();
        if let Some(zygote) = zygote {
            zygote.stop(grace).await;
        }
    }

    /// Starts one worker that will present `token`; an error, never a hang, if it cannot.
    pub async fn spawn(&self, token: Token) -> Result<Child, SpawnError> {
        tokio::time::timeout(SPAWN_TIMEOUT, self.spawn_now(token))
            .await
            .unwrap_or(Err(SpawnError::Timeout(SPAWN_TIMEOUT)))
    }

    async fn spawn_now(&self, token: Token) -> Result<Child, SpawnError> {
        let zygote = self.zygote.lock().clone();
        if let Some(zygote) = zygote.filter(|z| z.is_open()) {
            match zygote.fork(token).await {
                Ok(child) => return Ok(child),
                Err(ForkError::Gone) => {} // exec instead
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
