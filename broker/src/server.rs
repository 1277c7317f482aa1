//! Server: starts, tracks and stops the worker processes (the seed's `Server`, whose
//! `luaSessions` map here holds each running session's [`WorkerHandle`] by vended id).
//! Every worker's end comes back as one [`WorkerEnded`] on the events channel [`Server::new`]
//! returns; the broker decides what it means.
//!
//! Starting a worker: register a one-time token, have the spawner fork (or exec) the worker,
//! wait for it to connect and authenticate (or die), then send `Prepare` and wait until it has
//! built its VM (`Prepared`). Such *spare* workers are kept ready ahead of demand, each with a
//! ready VM: sandboxed libraries open, the `session` global and app API installed, the app's
//! chunks compiled. Giving one a session costs one message (`Start`: the session's ids), the
//! run of `main.lua` and the `Ready` reply; only then does `GET /` answer. The pool is refilled
//! after the answer has gone ([`Server::refill_spares`], which `http.rs` calls once the 302 is
//! on its way) and sized from the creation rate ([`PoolSizer`], `--spare-workers` ..
//! `--max-spare-workers`). Every session still gets its own new process and VM; a spare is used
//! once, and one prepared with limits that SIGHUP has since changed is let go, not used.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use parking_lot::{Mutex, MutexGuard};
use protocol::ipc::{BrokerToWorker, LuaLimits, PrepareVm, StartSession, WorkerToBroker};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::child::{Child, Exit};
use crate::config::Config;
use crate::reaper::Reaper;
use crate::session::Session;
use crate::spare_pool::PoolSizer;
use crate::spawner::{SpawnError, Spawner};
use crate::worker_handle::{WorkerEnded, WorkerHandle};
use crate::worker_socket::{Link, WorkerSocket};

/// How long a spawned worker may take to connect and say hello.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connected worker may take to build its VM.
const PREPARE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a spare that is let go may take to exit before it is killed.
const RETIRE_GRACE: Duration = Duration::from_secs(5);
/// How often the pool is brought to its target (grown, or the spares past it let go).
const TEND_EVERY: Duration = Duration::from_millis(200);
/// Spares beyond `--spare-workers` never take the broker's last descriptors: the pool grows
/// past its minimum only while this many would remain.
const GROW_FD_MARGIN: u64 = 256;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error("the worker ended before it connected ({0})")]
    DiedEarly(Exit),
    #[error("the worker did not connect within {0:?}")]
    NoConnection(Duration),
    #[error("the worker could not build its Lua VM: {0}")]
    Prepare(String),
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

/// A started, authenticated worker with a ready VM, waiting for its session.
struct Spare {
    child: Child,
    link: Link,
    /// The limits its VM was built with.
    limits: LuaLimits,
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
    /// How many spares to keep, from the creation rate.
    pool: PoolSizer,
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
        // `--spare-workers 0`: no pool at all, every worker is started on demand.
        let max_spares = match config.spare_workers {
            0 => 0,
            _ => config.max_spare_workers,
        };
        let pool = PoolSizer::new(config.spare_workers, max_spares);
        let server = Server {
            pool,
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
        self.spawner.start_zygote(self.prepare_vm()).await
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
        let stops = spares
            .into_iter()
            .map(|Spare { child, link, .. }| async move {
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

    /// How many spares the pool aims at now (from the creation rate), for metrics.
    pub fn spare_target(&self) -> usize {
        self.pool.target(Instant::now())
    }

    /// Whether workers are forked from a live zygote (false after it died, or with
    /// `--no-zygote`).
    pub fn zygote_up(&self) -> bool {
        self.spawner.zygote_up()
    }

    /// Keeps the pool at its target for as long as the server runs: grows it, and lets the
    /// spares past the target go when creations slow down (the oldest first). Refills also
    /// follow every answered `GET /`; this catches up after failures and shrinks the pool.
    pub async fn tend_spares(self: Arc<Self>) {
        let mut tick = tokio::time::interval(TEND_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !self.refills.is_closed() {
            tick.tick().await;
            self.refill_spares();
            // One spare a tick at most: the pool shrinks gradually, and a target that wavers
            // by one costs little churn.
            let target = self.pool.target(Instant::now());
            let extra = {
                let mut spares = self.lock_spares();
                let coming = self.spares_coming.load(Ordering::Acquire);
                let over = spares.len() + coming > target && !spares.is_empty();
                over.then(|| spares.remove(0))
            };
            if let Some(spare) = extra {
                if self.refills.is_closed() {
                    self.lock_spares().push(spare); // shutdown stops it with the rest
                } else {
                    self.retire(spare);
                }
            }
        }
    }

    /// Tops the spare pool up to its target, in the background. Called after each answered
    /// `GET /` (so the fork never delays the answer), after a revival, and by
    /// [`Server::tend_spares`].
    pub fn refill_spares(self: &Arc<Self>) {
        let target = self.pool.target(Instant::now());
        loop {
            if self.refills.is_closed() {
                return; // shutting down
            }
            let have = self.lock_spares().len() + self.spares_coming.load(Ordering::Acquire);
            if have >= target {
                return;
            }
            if have >= self.config.spare_workers
                && crate::fd_budget::budget().fds_left() < GROW_FD_MARGIN
            {
                return;
            }
            self.spares_coming.fetch_add(1, Ordering::AcqRel);
            let server = self.clone();
            self.refills.spawn(async move {
                let asked = Instant::now();
                let launched = server.launch(server.prepare_vm()).await;
                server.spares_coming.fetch_sub(1, Ordering::AcqRel);
                match launched {
                    Ok(spare) => {
                        server.pool.refilled(asked.elapsed());
                        server.lock_spares().push(spare);
                    }
                    Err(e) => tracing::error!("cannot start a spare worker: {e}"),
                }
            });
        }
    }

    /// Lets a spare go: its socket closes, so it exits; reaped, or killed past a grace.
    fn retire(&self, spare: Spare) {
        let Spare { child, link, .. } = spare;
        drop(link);
        self.refills.spawn(async move {
            if tokio::time::timeout(RETIRE_GRACE, child.exited())
                .await
                .is_err()
            {
                child.kill_and_reap().await;
            }
        });
    }

    /// A spare that is still alive and whose VM was built with `limits`, if any; spares built
    /// with other limits (changed by SIGHUP since) are let go.
    fn take_spare(&self, limits: &LuaLimits) -> Option<Spare> {
        let mut stale = Vec::new();
        let found = {
            let mut spares = self.lock_spares();
            loop {
                match spares.pop() {
                    None => break None,
                    Some(spare) if spare.child.exit().is_some() => {}
                    Some(spare) if spare.limits != *limits => stale.push(spare),
                    Some(spare) => break Some(spare),
                }
            }
        };
        for spare in stale {
            self.retire(spare);
        }
        found
    }

    /// What a new worker's VM is built from: the app, and the Lua limits in force now (they
    /// follow SIGHUP: see `reload`).
    fn prepare_vm(&self) -> PrepareVm {
        PrepareVm {
            app_dir: self.app_dir.to_string_lossy().into_owned(),
            viewdefs_dir: self.config.dir.as_ref().map_or_else(String::new, |site| {
                site.join("viewdefs").to_string_lossy().into_owned()
            }),
            confine_dir: self
                .config
                .dir
                .as_ref()
                .map_or_else(String::new, |site| site.to_string_lossy().into_owned()),
            limits: self.live_limits(),
            sandbox: crate::sandbox::policy(),
        }
    }

    /// The Lua limits for new sessions now (they follow SIGHUP: see `reload`).
    fn live_limits(&self) -> LuaLimits {
        let config = crate::live_config::live(&self.config);
        LuaLimits {
            memory_bytes: config.lua_memory_limit,
            turn_time_ms: config.lua_time_limit.as_millis() as u64,
        }
    }

    /// Spawns a worker, waits until it has connected and authenticated, then until it has
    /// built its VM from `vm`.
    async fn launch(&self, vm: PrepareVm) -> Result<Spare, StartError> {
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
                let mut link = a.link;
                let limits = vm.limits.clone();
                match prepare(&mut link, vm).await {
                    Ok(()) => {
                        return Ok(Spare {
                            child,
                            link,
                            limits,
                        })
                    }
                    Err(e) => e,
                }
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
        self.pool.taken(started);
        let limits = self.live_limits();
        // A spare may have died while it waited (its zygote died, say) before anyone noticed;
        // that is no fault of this session, so one such failure is retried on a fresh worker.
        let mut from_pool = true;
        let (child, link) = loop {
            let spare = match if from_pool {
                self.take_spare(&limits)
            } else {
                None
            } {
                Some(spare) => spare,
                None => {
                    from_pool = false;
                    self.launch(self.prepare_vm()).await?
                }
            };
            let Spare {
                child, mut link, ..
            } = spare;
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

    /// Sends `Start` (the ready VM's session) and waits for main.lua's outcome.
    async fn start_session(&self, session: &Session, link: &mut Link) -> Result<(), StartError> {
        let start = StartSession {
            vended_id: session.vended_id,
            session_id: session.id.clone(),
        };
        if link.send(BrokerToWorker::Start(start)).await.is_err() {
            return Err(StartError::DiedInMain("socket closed".into()));
        }
        // The worker enforces the Lua time limit itself; this is the backstop for a worker
        // that hangs outside Lua. A worker that dies closes its socket, which ends the wait.
        let config = crate::live_config::live(&self.config);
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

/// Sends `Prepare` and waits until the worker's VM is built.
async fn prepare(link: &mut Link, vm: PrepareVm) -> Result<(), StartError> {
    if link.send(BrokerToWorker::Prepare(vm)).await.is_err() {
        return Err(StartError::Prepare("socket closed".into()));
    }
    match tokio::time::timeout(PREPARE_TIMEOUT, link.next()).await {
        Ok(Some(Ok(WorkerToBroker::Prepared))) => Ok(()),
        Ok(Some(Ok(WorkerToBroker::Failed { error }))) => Err(StartError::Prepare(error)),
        Ok(Some(Ok(other))) => Err(StartError::Prepare(format!("unexpected message {other:?}"))),
        Ok(Some(Err(e))) => Err(StartError::Prepare(e.to_string())),
        Ok(None) => Err(StartError::Prepare("socket closed".into())),
        Err(_) => Err(StartError::Prepare(format!(
            "no VM within {PREPARE_TIMEOUT:?}"
        ))),
    }
}
