//! Server: starts, tracks and stops the worker processes (the seed's `Server`, whose
//! `luaSessions` map here holds a [`WorkerHandle`] per vended id).
//!
//! Starting a worker for a session: register a one-time token, have the spawner exec the
//! worker, wait for it to connect and authenticate (or die), send `Start`, and wait for `Ready`
//! (main.lua done, variable 1 created) or `Failed`. Only then does `GET /` answer.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use nix::sys::signal::Signal;
use protocol::ipc::{BrokerToWorker, LuaLimits, StartSession, WorkerToBroker};
use tokio::sync::oneshot;

use crate::config::Config;
use crate::reaper::{Exit, Reaper};
use crate::session::Session;
use crate::spawner::Spawner;
use crate::worker_handle::{Ending, WorkerHandle};
use crate::worker_socket::{token_hex, WorkerSocket};

/// How long a spawned worker may take to connect and say hello.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start a worker process: {0}")]
    Spawn(std::io::Error),
    #[error("the worker ended before it connected ({0})")]
    DiedEarly(Exit),
    #[error("the worker did not connect within {0:?}")]
    NoConnection(Duration),
    #[error("the worker's socket peer was pid {peer}, not the spawned pid {spawned}")]
    WrongPeer { peer: i32, spawned: i32 },
    #[error("{0}")]
    MainFailed(String),
    #[error("the worker ended while running main.lua ({0})")]
    DiedInMain(String),
    #[error("main.lua did not finish within {0:?}")]
    MainTimeout(Duration),
    #[error("the session is closing: {0}")]
    Ending(String),
}

pub struct Server {
    config: Arc<Config>,
    app_dir: PathBuf,
    spawner: Spawner,
    socket: WorkerSocket,
    reaper: Reaper,
    workers: Mutex<HashMap<u64, Arc<WorkerHandle>>>,
}

impl Server {
    pub fn new(config: Arc<Config>, app_dir: PathBuf, reaper: Reaper) -> std::io::Result<Server> {
        let socket = WorkerSocket::bind()?;
        let spawner = Spawner::start(socket.path().to_path_buf())?;
        Ok(Server {
            config,
            app_dir,
            spawner,
            socket,
            reaper,
            workers: Mutex::default(),
        })
    }

    /// Removes the worker socket and its directory (at exit).
    pub fn close(&self) {
        self.socket.close();
    }

    /// Every live worker.
    pub fn workers(&self) -> Vec<Arc<WorkerHandle>> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<WorkerHandle>>> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a worker for `session`, runs its main.lua, and installs it in the session.
    /// `on_end` is told how the worker's life ended.
    pub async fn create_lua_session(
        self: &Arc<Self>,
        session: &Arc<Session>,
        on_end: impl FnOnce(Arc<Session>, Arc<WorkerHandle>, Ending) + Send + 'static,
    ) -> Result<(), StartError> {
        let started = Instant::now();
        let (token, arrival) = self.socket.expect().map_err(StartError::Spawn)?;
        let pid = match self.spawner.spawn(token_hex(&token)).await {
            Ok(pid) => pid,
            Err(e) => {
                self.socket.forget(&token);
                return Err(StartError::Spawn(e));
            }
        };
        let mut exit = self.reaper.wait(pid);
        let result = self.start_worker(session, pid, arrival, &mut exit).await;
        let link = match result {
            Ok(link) => link,
            Err(e) => {
                self.socket.forget(&token);
                // Whatever went wrong, leave no process behind, and reap it before answering.
                self.reaper.kill(pid, Signal::SIGKILL);
                let how = (&mut exit).await.map(|e| e.to_string()).unwrap_or_default();
                tracing::warn!(session = %session.id, vended = session.vended_id, pid,
                    "session start failed ({how}): {e}");
                return Err(e);
            }
        };
        let server = self.clone();
        let owner = session.clone();
        let handle = WorkerHandle::start(
            pid,
            link,
            session.clone(),
            self.reaper.clone(),
            exit,
            move |handle, ending| {
                server.lock().remove(&owner.vended_id);
                on_end(owner, handle, ending);
            },
        );
        self.lock().insert(session.vended_id, handle.clone());
        if let Err(why) = session.set_worker(handle.clone()) {
            handle.kill(format!("session closed while starting: {why}"));
            return Err(StartError::Ending(why));
        }
        tracing::info!(session = %session.id, vended = session.vended_id, pid,
            startup_us = started.elapsed().as_micros() as u64, "session worker started");
        Ok(())
    }

    async fn start_worker(
        &self,
        session: &Session,
        pid: i32,
        arrival: oneshot::Receiver<crate::worker_socket::Arrival>,
        exit: &mut oneshot::Receiver<Exit>,
    ) -> Result<crate::worker_socket::Link, StartError> {
        let arrival = tokio::select! {
            arrived = tokio::time::timeout(CONNECT_TIMEOUT, arrival) => match arrived {
                Ok(Ok(a)) => a,
                _ => return Err(StartError::NoConnection(CONNECT_TIMEOUT)),
            },
            ended = &mut *exit => {
                return Err(StartError::DiedEarly(ended.unwrap_or(Exit::Signal(Signal::SIGKILL))))
            }
        };
        if arrival.pid != pid {
            return Err(StartError::WrongPeer {
                peer: arrival.pid,
                spawned: pid,
            });
        }
        let mut link = arrival.link;
        let start = StartSession {
            vended_id: session.vended_id,
            session_id: session.id.clone(),
            app_dir: self.app_dir.to_string_lossy().into_owned(),
            limits: LuaLimits {
                memory_bytes: self.config.lua_memory_limit,
                turn_time_ms: self.config.lua_time_limit.as_millis() as u64,
            },
        };
        if link.send(BrokerToWorker::Start(start)).await.is_err() {
            return Err(StartError::DiedInMain("socket closed".into()));
        }
        // The worker enforces the Lua time limit itself; this is the backstop for a worker
        // that hangs outside Lua.
        let limit = self.config.lua_time_limit + Duration::from_secs(5);
        match tokio::time::timeout(limit, link.next()).await {
            Ok(Some(Ok(WorkerToBroker::Ready { .. }))) => Ok(link),
            Ok(Some(Ok(WorkerToBroker::Failed { error }))) => Err(StartError::MainFailed(error)),
            Ok(Some(Ok(other))) => Err(StartError::DiedInMain(format!(
                "unexpected first message {other:?}"
            ))),
            Ok(Some(Err(e))) => Err(StartError::DiedInMain(e.to_string())),
            Ok(None) => Err(StartError::DiedInMain("socket closed".into())),
            Err(_) => Err(StartError::MainTimeout(limit)),
        }
    }
}
