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
//!
//! With `--start-ahead` a spare goes one step further before it waits: it is sent `Start`
//! under ids vended ahead and runs `main.lua`, so `GET /` only hands that session out
//! ([`Server::next_started`], then [`Server::adopt`]): no worker round trip on its path. One
//! whose app files changed since is let go (`start_ahead`). A `main.lua` that fails ahead is
//! not retried ahead: spares wait unstarted, and `GET /` runs `main.lua` and reports its
//! error as always, until a session starts there again (then the spares that waited unstarted
//! are started ahead too, one per tend tick).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use parking_lot::{Mutex, MutexGuard};
use protocol::ipc::{
    BrokerToWorker, FileStamp, LuaLimits, PrepareVm, StartSession, WorkerToBroker,
};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::child::{Child, Exit};
use crate::config::Config;
use crate::metrics::metrics;
use crate::reaper::Reaper;
use crate::session::Session;
use crate::session_id::{IdVendor, SessionIds};
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
    /// Its session, when it was started ahead (`--start-ahead`): main.lua has run.
    ahead: Option<Ahead>,
}

/// The session a spare was started ahead with.
struct Ahead {
    ids: SessionIds,
    /// The app files its main.lua read, as they were read.
    read: Vec<FileStamp>,
}

/// A session started ahead, taken from the pool for one `GET /` ([`Server::take_started`]).
pub struct StartedAhead {
    spare: Spare,
    /// The ids its main.lua ran under: the session must be reserved with them.
    pub ids: SessionIds,
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
    /// Vends the ids of sessions started ahead (the same vendor as the manager's).
    ids: Arc<IdVendor>,
    /// Whether new spares are started ahead: `--start-ahead`, and no main.lua has failed
    /// ahead since the last session that started.
    ahead_ok: AtomicBool,
    /// Woken whenever a spare joins the pool (for a `GET /` waiting for one started ahead).
    spare_ready: tokio::sync::Notify,
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
        ids: Arc<IdVendor>,
    ) -> std::io::Result<(Server, WorkerEvents)> {
        let socket = WorkerSocket::bind()?;
        let spawner = Spawner::start(
            socket.path().to_path_buf(),
            reaper,
            config.zygote_forks,
            config.worker_nice,
        )?;
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
            ids,
            ahead_ok: AtomicBool::new(true),
            spare_ready: tokio::sync::Notify::new(),
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

    /// Zygote processes alive (`--zygote-forks`).
    pub fn zygotes_alive(&self) -> usize {
        self.spawner.zygotes_alive()
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
            self.start_waiting_spare_ahead();
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
                let launched = match server.launch(server.prepare_vm()).await {
                    Ok(spare) if server.starts_ahead() => Ok(server.start_ahead(spare).await),
                    launched => launched.map(Some),
                };
                if let Ok(Some(_)) = launched {
                    server.pool.refilled(asked.elapsed());
                }
                match launched {
                    Ok(spare) => server.arrived(spare),
                    Err(e) => {
                        server.spares_coming.fetch_sub(1, Ordering::AcqRel);
                        tracing::error!("cannot start a spare worker: {e}");
                    }
                }
            });
        }
    }

    /// A spare on its way has arrived (`None`: it was being started ahead and failed, so one
    /// that waits unstarted replaces it).
    fn arrived(self: &Arc<Self>, spare: Option<Spare>) {
        match spare {
            Some(spare) => {
                self.lock_spares().push(spare);
                self.spares_coming.fetch_sub(1, Ordering::AcqRel);
                self.spare_ready.notify_waiters();
            }
            None => {
                self.spares_coming.fetch_sub(1, Ordering::AcqRel);
                self.refill_spares();
            }
        }
    }

    /// Once sessions may be started ahead again (after a failure ahead, a session started), a
    /// spare that waits unstarted is started ahead, one a tick.
    fn start_waiting_spare_ahead(self: &Arc<Self>) {
        if !self.starts_ahead() || self.refills.is_closed() {
            return;
        }
        let Some(spare) = self.take_spare(&self.live_limits(), false) else {
            return;
        };
        self.spares_coming.fetch_add(1, Ordering::AcqRel);
        let server = self.clone();
        self.refills.spawn(async move {
            let started = server.start_ahead(spare).await;
            server.arrived(started);
        });
    }

    /// Whether a new spare is to be started ahead now.
    fn starts_ahead(&self) -> bool {
        self.config.start_ahead && self.ahead_ok.load(Ordering::Acquire)
    }

    /// Starts `spare`'s session ahead: ids vended now, `Start`, main.lua's outcome. `None`
    /// when main.lua failed (the worker is gone, and spares are no longer started ahead).
    async fn start_ahead(&self, spare: Spare) -> Option<Spare> {
        let Spare {
            child,
            mut link,
            limits,
            ..
        } = spare;
        let ids = self.ids.vend();
        let start = StartSession {
            vended_id: ids.vended,
            session_id: ids.id.clone(),
            ahead: true,
        };
        match self.start(&mut link, start).await {
            Ok(read) => Some(Spare {
                child,
                link,
                limits,
                ahead: Some(Ahead { ids, read }),
            }),
            Err(e) => {
                drop(link);
                let how = child.kill_and_reap().await;
                self.ahead_ok.store(false, Ordering::Release);
                tracing::warn!(session = %ids.id, vended = ids.vended, pid = child.pid(),
                    "a session started ahead failed ({how}): {e}; spares now wait for GET / \
                     to run main.lua, until a session starts");
                None
            }
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

    /// A spare that is still alive, whose VM was built with `limits` and whose session was
    /// started ahead (`ahead`) or not, if any; spares built with other limits (changed by
    /// SIGHUP since) are let go.
    fn take_spare(&self, limits: &LuaLimits, ahead: bool) -> Option<Spare> {
        let mut stale = Vec::new();
        let found = {
            let mut spares = self.lock_spares();
            let mut at = spares.len();
            loop {
                if at == 0 {
                    break None;
                }
                at -= 1;
                if spares[at].child.exit().is_some() {
                    spares.remove(at);
                } else if spares[at].limits != *limits {
                    stale.push(spares.remove(at));
                } else if spares[at].ahead.is_some() == ahead {
                    break Some(spares.remove(at));
                }
            }
        };
        for spare in stale {
            self.retire(spare);
        }
        found
    }

    /// A session started ahead for a `GET /` to hand out ([`Server::take_started`]). With
    /// none ready but some on their way, waits for one up to the average refill time: about
    /// what starting a worker now would take, so waiting is never the slower choice, and the
    /// session that comes is not a worker started twice. `None`: start one now.
    pub async fn next_started(&self) -> Option<StartedAhead> {
        if !self.config.start_ahead {
            return None;
        }
        let deadline = tokio::time::Instant::now() + self.pool.refill_time();
        loop {
            // Registered before looking, so a spare that arrives in between still wakes us.
            let arrived = self.spare_ready.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(started) = self.take_started() {
                return Some(started);
            }
            if !self.starts_ahead() || self.spares_coming.load(Ordering::Acquire) == 0 {
                return None;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return None;
            }
        }
    }

    /// A session started ahead whose app files are all as its main.lua read them, for a
    /// `GET /` to hand out ([`Server::adopt`]); any found changed are let go.
    fn take_started(&self) -> Option<StartedAhead> {
        if !self.config.start_ahead {
            return None;
        }
        let limits = self.live_limits();
        loop {
            let mut spare = self.take_spare(&limits, true)?;
            let Some(Ahead { ids, read }) = spare.ahead.take() else {
                continue; // not reached: take_spare(.., true) finds started ones only
            };
            match crate::start_ahead::changed_file(&read) {
                None => return Some(StartedAhead { spare, ids }),
                Some(file) => {
                    tracing::info!(file, "a session started ahead was let go: the file changed since its main.lua read it");
                    self.retire(spare);
                }
            }
        }
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
                            ahead: None,
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
                self.take_spare(&limits, false)
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
            let start = StartSession {
                vended_id: session.vended_id,
                session_id: session.id.clone(),
                ahead: false,
            };
            match self.start(&mut link, start).await {
                Ok(_) => break (child, link),
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
        // main.lua runs here: sessions may be started ahead again (if asked for).
        self.ahead_ok.store(true, Ordering::Release);
        self.install(session, child, link, started, false)?;
        Ok(())
    }

    /// Gives `session` (reserved under its ids) the worker that was started ahead for it; the
    /// caller sends it `Claimed` once the answer has gone. Its end will come as a
    /// [`WorkerEnded`].
    pub fn adopt(
        self: &Arc<Self>,
        session: &Arc<Session>,
        started: StartedAhead,
    ) -> Result<Arc<WorkerHandle>, StartError> {
        let now = Instant::now();
        self.pool.taken(now);
        let Spare { child, link, .. } = started.spare;
        let handle = self.install(session, child, link, now, true)?;
        metrics().sessions_started_ahead.inc();
        Ok(handle)
    }

    /// Makes `child` (whose main.lua ran for `session`) the session's worker.
    fn install(
        &self,
        session: &Arc<Session>,
        child: Child,
        link: Link,
        started: Instant,
        ahead: bool,
    ) -> Result<Arc<WorkerHandle>, StartError> {
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
        tracing::info!(session = %session.id, vended = session.vended_id, pid, ahead,
            startup_us = started.elapsed().as_micros() as u64, "session started");
        Ok(handle)
    }

    /// Sends `Start` (the ready VM's session) and waits for main.lua's outcome: the files it
    /// read.
    async fn start(
        &self,
        link: &mut Link,
        start: StartSession,
    ) -> Result<Vec<FileStamp>, StartError> {
        if link.send(BrokerToWorker::Start(start)).await.is_err() {
            return Err(StartError::DiedInMain("socket closed".into()));
        }
        // The worker enforces the Lua time limit itself; this is the backstop for a worker
        // that hangs outside Lua. A worker that dies closes its socket, which ends the wait.
        let config = crate::live_config::live(&self.config);
        let limit = config.lua_time_limit + Duration::from_secs(5);
        match tokio::time::timeout(limit, link.next()).await {
            Ok(Some(Ok(WorkerToBroker::Ready { read, .. }))) => Ok(read),
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
