//! Broker: the one object the HTTP layer talks to. It creates sessions (reserve a place in the
//! [`SessionManager`], have the [`Server`] start its Lua session, publish it), decides what a
//! worker's end means for its session (crash, restart budget, closed for good), and destroys
//! sessions (idle, never adopted, shutdown) in the order that loses nothing: close the tabs,
//! ask the worker to stop, signal it if it does not, reap.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use parking_lot::Mutex;
use protocol::ipc::BrokerToWorker;

use crate::child::Exit;
use crate::config::Config;
use crate::edge::Edge;
use crate::live_config;
use crate::manager::{CreateError, SessionManager};
use crate::metrics::metrics;
use crate::reaper::Reaper;
use crate::server::{Server, StartError, WorkerEvents};
use crate::session::{EndCause, Lifecycle, Session};
use crate::session_id::IdVendor;
use crate::worker_handle::{WorkerEnded, WorkerHandle};

/// Sessions closed for good that a URL can still explain; the oldest are forgotten past this.
const MAX_TOMBSTONES: usize = 10_000;

pub struct Broker {
    pub config: Arc<Config>,
    pub manager: SessionManager,
    pub server: Arc<Server>,
    /// Connection, creation-rate and tab bounds (`edge/`).
    pub edge: Arc<Edge>,
    /// Why a session that is gone for good went (shown on its 404 page).
    tombstones: Mutex<HashMap<String, String>>,
}

/// A session `GET /` created, and what is left to do once its answer has gone.
pub struct Created {
    pub session: Arc<Session>,
    /// The worker of a session started ahead: told it has its user (it renames itself),
    /// after the answer, so that the message's wake-up never delays the 302.
    claimed: Option<Arc<WorkerHandle>>,
}

impl Created {
    /// What follows the answer: the worker told, and the spare pool refilled.
    pub fn after_reply(self, server: &Arc<Server>) {
        if let Some(worker) = self.claimed {
            worker.try_send(BrokerToWorker::Claimed);
        }
        server.refill_spares();
    }
}

impl Broker {
    /// The broker, with the task that hears every worker's end (it lives as long as the
    /// process). Call inside the runtime.
    pub fn new(config: Config, app_dir: PathBuf, reaper: Reaper) -> std::io::Result<Arc<Broker>> {
        let config = Arc::new(config);
        live_config::publish(config.clone());
        let ids = Arc::new(IdVendor::new(config.node_id.clone()));
        let (server, events) = Server::new(config.clone(), app_dir, reaper, ids.clone())?;
        let broker = Arc::new(Broker {
            manager: SessionManager::new(config.max_sessions, config.max_pending_sessions)
                .with_ids(ids),
            edge: Arc::new(Edge::new(&config)),
            config,
            server: Arc::new(server),
            tombstones: Mutex::default(),
        });
        tokio::spawn(broker.clone().hear_worker_ends(events));
        Ok(broker)
    }

    /// `GET /`: a new session with a worker that ran main.lua, reachable by its id: one
    /// started ahead if there is one (`--start-ahead`), else one started now.
    pub async fn create_session(&self) -> Result<Created, CreateError> {
        if self.manager.is_full() {
            // Never-opened sessions give way before a new user is refused (eviction.rs).
            self.evict_unadopted();
        }
        let admitted = self.manager.admit()?;
        let ahead = self.server.next_started().await;
        let reservation = admitted.with_ids(ahead.as_ref().map(|a| a.ids.clone()));
        let started = match ahead {
            Some(ahead) => self.server.adopt(&reservation.session, ahead).map(Some),
            None => self
                .server
                .create_lua_session(&reservation.session)
                .await
                .map(|()| None),
        };
        let claimed = match started {
            Ok(claimed) => claimed,
            Err(e) => {
                metrics().sessions_failed.inc();
                return Err(e.into());
            }
        };
        let session = self.manager.publish(reservation)?;
        Ok(Created { session, claimed })
    }

    /// A crashed session gets a fresh worker (main.lua runs again) when a tab comes back.
    /// Restarts run one at a time per session: whoever comes second finds it live.
    pub async fn revive(&self, session: &Arc<Session>) -> Result<(), StartError> {
        let _one_restart = session.reviving.lock().await;
        match session.state() {
            Lifecycle::Crashed { .. } => {
                let revived = self.server.create_lua_session(session).await;
                self.server.refill_spares();
                revived
            }
            Lifecycle::Live => Ok(()),
            Lifecycle::Ending { why } => Err(StartError::SessionClosing(why)),
        }
    }

    async fn hear_worker_ends(self: Arc<Self>, mut events: WorkerEvents) {
        while let Some(ended) = events.recv().await {
            if let Some(session) = self.server.release(&ended) {
                self.worker_ended(&session, ended);
            }
        }
    }

    /// Why a session that no longer exists went, if we still remember.
    pub fn tombstone(&self, id: &str) -> Option<String> {
        self.tombstones.lock().get(id).cloned()
    }

    fn bury(&self, id: &str, why: String) {
        let mut stones = self.tombstones.lock();
        if stones.len() >= MAX_TOMBSTONES {
            if let Some(k) = stones.keys().next().cloned() {
                stones.remove(&k);
            }
        }
        stones.insert(id.to_string(), why);
    }

    fn worker_ended(&self, session: &Arc<Session>, ended: WorkerEnded) {
        let WorkerEnded {
            worker: handle,
            exit,
            killed_because,
            sandbox_violation,
            ..
        } = ended;
        let how = match (&sandbox_violation, &killed_because) {
            (Some(why), _) | (None, Some(why)) => format!("{why}; {exit}"),
            (None, None) => exit.to_string(),
        };
        let lifetime_ms = handle.started.elapsed().as_millis() as u64;
        let crashes = session.worker_ended(&handle, &how);
        let exit_cause = match (crashes, exit, &killed_because) {
            (0, _, _) => "stopped",
            _ if sandbox_violation.is_some() => "sandbox_violation",
            (_, _, Some(_)) => "killed",
            (_, Exit::Code(_), None) => "crash",
            (_, Exit::Signal(Signal::SIGXCPU | Signal::SIGXFSZ), None) => "limit",
            (_, Exit::Signal(_), None) => "signal",
        };
        metrics()
            .worker_exits
            .get_or_create(&[("cause", exit_cause)])
            .inc();
        if crashes == 0 {
            tracing::info!(session = %session.id, vended = session.vended_id, pid = handle.pid(),
                lifetime_ms, ended = %how, "session worker stopped");
            return;
        }
        metrics().worker_crashes.inc();
        tracing::warn!(session = %session.id, vended = session.vended_id, pid = handle.pid(),
            lifetime_ms, ended = %how, crashes_last_minute = crashes, "session worker crashed");
        if crashes > live_config::live(&self.config).max_crashes {
            let why = format!("its worker crashed {crashes} times within a minute (last: {how})");
            session.begin_ending(&why, EndCause::Crashes.close_code());
            self.forget(session, EndCause::Crashes, why);
        }
    }

    /// Removes a session for good and remembers why for its URL.
    fn forget(&self, session: &Session, cause: EndCause, why: String) {
        if self.manager.remove(&session.id).is_some() {
            metrics()
                .sessions_ended
                .get_or_create(&[("cause", cause.as_str())])
                .inc();
            tracing::info!(session = %session.id, vended = session.vended_id,
                lifetime_ms = session.created.elapsed().as_millis() as u64, cause = cause.as_str(),
                ended = %why, "session ended");
            self.bury(&session.id, why);
        }
    }

    /// Destroys a session: tabs closed with the cause's code and `why`, worker asked to stop,
    /// then SIGTERM at half of `grace`, SIGKILL at its end; returns once the worker is reaped
    /// (or was never there).
    pub async fn destroy_session(&self, session: &Arc<Session>, cause: EndCause, why: String) {
        if let Some(worker) = self.begin_destroy(session, cause, why) {
            stop_worker(&worker, self.config.shutdown_grace).await;
        }
    }

    /// The first, synchronous half of [`Self::destroy_session`]: on return the session is
    /// gone from the manager and its tabs are closing; the worker still to stop is returned.
    pub fn begin_destroy(
        &self,
        session: &Arc<Session>,
        cause: EndCause,
        why: String,
    ) -> Option<Arc<WorkerHandle>> {
        let worker = session.begin_ending(&why, cause.close_code());
        self.forget(session, cause, why);
        worker
    }

    /// Destroys sessions past their adoption window or idle timeout.
    pub async fn cull(&self) {
        let config = live_config::live(&self.config);
        let adoption = Config::opt(config.adoption_timeout);
        let idle = Config::opt(config.idle_timeout);
        for (session, cause, why) in self.manager.expired(adoption, idle) {
            self.destroy_session(&session, cause, why).await;
        }
    }

    /// One liveness round, every `timeout`: a worker that has not answered the previous
    /// round's ping is killed and reported as a crash; every other one gets a new ping.
    pub fn ping_all(&self, seq: u64, timeout: Duration) {
        for w in self.server.workers() {
            if !w.ping_round(seq) {
                w.kill(format!("no answer to a liveness ping within {timeout:?}"));
            }
        }
    }

    /// Shutdown: every session is destroyed at once, tabs closed with 1001; spares go too.
    pub async fn shutdown(&self) {
        self.manager.close();
        let spares = self.server.stop_spares(self.config.shutdown_grace);
        let sessions = self.manager.all();
        tracing::info!(sessions = sessions.len(), "shutting down");
        let ends = sessions.iter().map(|s| {
            self.destroy_session(s, EndCause::Shutdown, "the server is shutting down".into())
        });
        futures_util::future::join_all(ends).await;
        spares.await;
        // Workers still starting (GET / in flight) are not in a session yet; stop them too.
        let stragglers = self.server.workers();
        let stops = stragglers
            .iter()
            .map(|w| stop_worker(w, self.config.shutdown_grace));
        futures_util::future::join_all(stops).await;
        self.server.stop_zygote(self.config.shutdown_grace).await;
    }
}

/// Asks a worker to stop, then escalates: SIGTERM at grace/2, SIGKILL at grace. Returns once
/// it has been reaped.
pub async fn stop_worker(worker: &WorkerHandle, grace: Duration) {
    let exit = worker.wait_exit();
    tokio::pin!(exit);
    worker.try_send(BrokerToWorker::Shutdown);
    if tokio::time::timeout(grace / 2, &mut exit).await.is_ok() {
        return;
    }
    worker.signal(
        Signal::SIGTERM,
        format!("did not stop within {:?}", grace / 2),
    );
    if tokio::time::timeout(grace - grace / 2, &mut exit)
        .await
        .is_ok()
    {
        return;
    }
    worker.kill(format!("did not stop within {grace:?}"));
    exit.await;
}
