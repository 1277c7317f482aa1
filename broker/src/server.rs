//! Server: starts, tracks and stops the worker processes (the seed's `Server`, whose
//! `luaSessions` map here holds each running session's [`WorkerHandle`] by vended id).
//! Every worker's end comes back as one [`WorkerEnded`] on the events channel [`Server::new`]
//! returns; the broker decides what it means.
//!
//! Starting a worker: register a one-time token, have the spawner exec the worker, and wait
//! for it to connect and authenticate (or die). Exec dominates session-creation latency, so a
//! few such *spare* workers are kept ready ahead of demand (`--spare-workers`): a spare has
//! connected and proved who it is, but has no Lua VM yet. Giving one a session sends `Start`
//! (the worker builds a fresh VM and runs `main.lua`) and waits for `Ready` or `Failed`; only
//! then does `GET /` answer. Every session still gets its own new process and VM; a spare is
//! used once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use parking_lot::{Mutex, MutexGuard};
use protocol::ipc::{BrokerToWorker, LuaLimits, StartSession, WorkerToBroker};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::child::{Child, Exit};
use crate::config::Config;
use crate::reaper::Reaper;
use crate::session::Session;
use crate::spawner::{SpawnError, Spawner};
use crate::worker_handle::{WorkerEnded, WorkerHandle};
use crate::worker_socket::{Link, WorkerSocket};

/// How long a spawned worker may take to connect and say hello.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Spawn(#[from] SpawnError),
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
    SessionClosing(String),
}

/// A started, authenticated worker waiting for its session.
struct Spare {
    child: Child,
    link: Link,
}

pub struct Server {
    config: Arc<Config>,
    app_dir: PathBuf,
    spawner: Spawner,
    socket: WorkerSocket,
    /// The seed's `luaSessions`: every session with a live worker, by vended id.
    lua_sessions: Mutex<HashMap<u64, Running>>,
    events: mpsc::UnboundedSender<WorkerEnded>,
    spares: Mutex<Vec<Spare>>,
    /// Spares being started right now (so refills do not overshoot).
    spares_coming: AtomicUsize,
    /// The refill tasks, so shutdown can wait for spares still on their way.
    refills: TaskTracker,
}

/// A session and the worker serving it.
struct Running {
    session: Arc<Session>,
    worker: Arc<WorkerHandle>,
}

/// Where every worker's end is reported, once each.
pub type WorkerEvents = mpsc::UnboundedReceiver<WorkerEnded>;

impl Server {
    pub fn new(
        config: Arc<Config>,
        app_dir: PathBuf,
        reaper: Reaper,
    ) -> std::io::Result<(Server, WorkerEvents)> {
        let socket = WorkerSocket::bind()?;
        let spawner = Spawner::start(socket.path().to_path_buf(), reaper)?;
        let (events, ended) = mpsc::unbounded_channel();
        let server = Server {
            config,
            app_dir,
            spawner,
            socket,
            lua_sessions: Mutex::default(),
            events,
            spares: Mutex::default(),
            spares_coming: AtomicUsize::new(0),
            refills: TaskTracker::new(),
        };
        Ok((server, ended))
    }

    /// Switches worker starts to forking from a zygote (see `spawner`).
    pub async fn start_zygote(&self) -> std::io::Result<()> {
        self.spawner.start_zygote().await
    }

    /// Shutdown: stops the zygote, waiting up to `grace` (see `spawner`).
    pub async fn stop_zygote(&self, grace: Duration) {
        self.spawner.stop_zygote(grace).await;
    }

    /// Removes the worker socket and its directory. Called at exit.
    pub fn close(&self) {
        self.socket.close();
    }

    /// Lets every spare worker go (each exits on EOF) and reaps it; one that lingers past
    /// `grace` is killed.
    pub async fn stop_spares(&self, grace: Duration) {
        self.refills.close();
        self.refills.wait().await;
        let spares: Vec<Spare> = std::mem::take(&mut *self.lock_spares());
        let stops = spares.into_iter().map(|Spare { child, link }| async move {
            drop(link);
            if tokio::time::timeout(grace, child.exited()).await.is_err() {
                child.kill_and_reap().await;
            }
        });
        futures_util::future::join_all(stops).await;
    }

    /// Every live worker that serves a session.
    pub fn workers(&self) -> Vec<Arc<WorkerHandle>> {
        self.lock().values().map(|r| r.worker.clone()).collect()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Running>> {
        self.lua_sessions.lock()
    }

    /// Takes an ended worker out of `luaSessions`; returns the session it served (`None` if
    /// that session has another worker by now).
    pub fn release(&self, ended: &WorkerEnded) -> Option<Arc<Session>> {
        let mut running = self.lock();
        match running.get(&ended.vended_id) {
            Some(r) if Arc::ptr_eq(&r.worker, &ended.worker) => {
                running.remove(&ended.vended_id).map(|r| r.session)
            }
            _ => None,
        }
    }

    fn lock_spares(&self) -> MutexGuard<'_, Vec<Spare>> {
        self.spares.lock()
    }

    /// (spares ready, spares being started), for readiness and metrics.
    pub fn spares(&self) -> (usize, usize) {
        let ready = self.lock_spares().len();
        (ready, self.spares_coming.load(Ordering::Acquire))
    }

    /// Whether workers are forked from a live zygote (false after it died, or with
    /// `--no-zygote`).
    pub fn zygote_up(&self) -> bool {
        self.spawner.zygote_up()
    }

    /// Tops the spare pool up to `--spare-workers`, in the background.
    pub fn refill_spares(self: &Arc<Self>) {
        let target = self.config.spare_workers;
        loop {
            if self.refills.is_closed() {
                return; // shutting down
            }
            let have = self.lock_spares().len() + self.spares_coming.load(Ordering::Acquire);
            if have >= target {
                return;
            }
            self.spares_coming.fetch_add(1, Ordering::AcqRel);
            let server = self.clone();
            self.refills.spawn(async move {
                let launched = server.launch().await;
                server.spares_coming.fetch_sub(1, Ordering::AcqRel);
                match launched {
                    Ok(spare) => server.lock_spares().push(spare),
                    Err(e) => tracing::error!("cannot start a spare worker: {e}"),
                }
            });
        }
    }

    /// A spare that is still alive, if any.
    fn take_spare(&self) -> Option<Spare> {
        let mut spares = self.lock_spares();
        while let Some(spare) = spares.pop() {
            if spare.child.exit().is_none() {
                return Some(spare);
            }
        }
        None
    }

    /// Spawns a worker and waits until it has connected and authenticated.
    async fn launch(&self) -> Result<Spare, StartError> {
        let (token, arrival) = self.socket.invite().map_err(SpawnError::Exec)?;
        let child = match self.spawner.spawn(token).await {
            Ok(child) => child,
            Err(e) => {
                self.socket.withdraw(&token);
                return Err(e.into());
            }
        };
        let arrived = tokio::select! {
            arrived = tokio::time::timeout(CONNECT_TIMEOUT, arrival) => match arrived {
                Ok(Ok(a)) => Ok(a),
                _ => Err(StartError::NoConnection(CONNECT_TIMEOUT)),
            },
            ended = child.exited() => Err(StartError::DiedEarly(ended)),
        };
        let failed = match arrived {
            Ok(a) if a.pid == child.pid() => {
                return Ok(Spare {
                    child,
                    link: a.link,
                })
            }
            Ok(a) => StartError::WrongPeer {
                peer: a.pid,
                spawned: child.pid(),
            },
            Err(e) => e,
        };
        self.socket.withdraw(&token);
        // Leave no process behind, and reap it before answering.
        child.kill_and_reap().await;
        Err(failed)
    }

    /// Gives `session` a worker: a spare if one is ready, else a freshly spawned one; runs its
    /// main.lua and installs it in the session. Its end will come as a [`WorkerEnded`].
    pub async fn create_lua_session(
        self: &Arc<Self>,
        session: &Arc<Session>,
    ) -> Result<(), StartError> {
        let started = Instant::now();
        // A spare may have died while it waited (its zygote died, say) before anyone noticed;
        // that is no fault of this session, so one such failure is retried on a fresh worker.
        let mut from_pool = true;
        let (child, link) = loop {
            let spare = match if from_pool { self.take_spare() } else { None } {
                Some(spare) => spare,
                None => {
                    from_pool = false;
                    self.launch().await?
                }
            };
            self.refill_spares();
            let Spare { child, mut link } = spare;
            match self.start_session(session, &mut link).await {
                Ok(()) => break (child, link),
                Err(e) => {
                    // Whatever went wrong, leave no process behind, and reap it first.
                    drop(link);
                    let how = child.kill_and_reap().await.to_string();
                    tracing::warn!(session = %session.id, vended = session.vended_id,
                        pid = child.pid(), "session start failed ({how}): {e}");
                    match e {
                        StartError::DiedInMain(_) if from_pool => from_pool = false,
                        StartError::DiedInMain(_) => return Err(StartError::DiedInMain(how)),
                        e => return Err(e),
                    }
                }
            }
        };
        let pid = child.pid();
        let handle = {
            // Under the lock, so its end (taken out under the same lock) cannot come first.
            let mut running = self.lock();
            let handle = WorkerHandle::start(
                session.vended_id,
                child,
                link,
                session.clone(),
                self.events.clone(),
            );
            running.insert(
                session.vended_id,
                Running {
                    session: session.clone(),
                    worker: handle.clone(),
                },
            );
            handle
        };
        if let Err(why) = session.set_worker(handle.clone()) {
            handle.kill(format!("session closed while starting: {why}"));
            return Err(StartError::SessionClosing(why));
        }
        tracing::info!(session = %session.id, vended = session.vended_id, pid,
            startup_us = started.elapsed().as_micros() as u64, "session started");
        Ok(())
    }

    /// Sends `Start` and waits for main.lua's outcome.
    async fn start_session(&self, session: &Session, link: &mut Link) -> Result<(), StartError> {
        // Limits for new sessions follow SIGHUP (see `reload`).
        let config = crate::live_config::live(&self.config);
        let start = StartSession {
            vended_id: session.vended_id,
            session_id: session.id.clone(),
            app_dir: self.app_dir.to_string_lossy().into_owned(),
            viewdefs_dir: self.config.dir.as_ref().map_or_else(String::new, |site| {
                site.join("viewdefs").to_string_lossy().into_owned()
            }),
            confine_dir: self
                .config
                .dir
                .as_ref()
                .map_or_else(String::new, |site| site.to_string_lossy().into_owned()),
            limits: LuaLimits {
                memory_bytes: config.lua_memory_limit,
                turn_time_ms: config.lua_time_limit.as_millis() as u64,
            },
            sandbox: crate::sandbox::policy(),
        };
        if link.send(BrokerToWorker::Start(start)).await.is_err() {
            return Err(StartError::DiedInMain("socket closed".into()));
        }
        // The worker enforces the Lua time limit itself; this is the backstop for a worker
        // that hangs outside Lua. A worker that dies closes its socket, which ends the wait.
        let limit = config.lua_time_limit + Duration::from_secs(5);
        match tokio::time::timeout(limit, link.next()).await {
            Ok(Some(Ok(WorkerToBroker::Ready { .. }))) => Ok(()),
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
