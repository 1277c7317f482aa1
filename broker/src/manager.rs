//! SessionManager: the table of live sessions: vends ids, enforces the admission caps, and
//! finds sessions nobody uses.
//!
//! Creating a session is three steps the broker takes in order (the seed's `CreateSession`
//! and its `SetOnSessionCreated` hook, laid out flat): [`SessionManager::admit`] admits it
//! and [`Admission::with_ids`] gives it its ids (vended now, or those of a session started
//! ahead), `Server::create_lua_session` (or `Server::adopt`) gives it a worker that ran
//! main.lua, and
//! [`SessionManager::publish`] makes it reachable by its id. The manager knows nothing of
//! processes; a session whose start failed is never published.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

use crate::metrics::metrics;
use crate::server::StartError;
use crate::session::{EndCause, Session};
use crate::session_id::{is_session_id, IdVendor, SessionIds};
use crate::unattended::Unattended;

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("the server is at its limit of {0} live sessions")]
    Full(usize),
    #[error("{0} sessions are already being created")]
    Busy(usize),
    #[error("the server is shutting down")]
    Closing,
    #[error(transparent)]
    Start(#[from] StartError),
}

pub struct SessionManager {
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Published sessions without a tab, by deadline (what culling looks at).
    unattended: Arc<Unattended<Session>>,
    /// Vends each session's ids (shared with the server, which vends them for sessions started
    /// ahead).
    ids: Arc<IdVendor>,
    creating: AtomicUsize,
    closing: AtomicBool,
    /// The caps; SIGHUP may change them (see `reload`).
    max_sessions: AtomicUsize,
    max_pending: AtomicUsize,
}

/// A session being created: it counts against both caps until it is published or dropped.
pub struct Reservation<'a> {
    _pending: Pending<'a>,
    pub session: Arc<Session>,
    started: Instant,
}

/// A session admitted but not yet given its ids ([`Admission::with_ids`]); it counts against
/// both caps like a reservation.
pub struct Admission<'a> {
    manager: &'a SessionManager,
    pending: Pending<'a>,
    started: Instant,
}

impl<'a> Admission<'a> {
    /// The admitted session, under `ids` (a session started ahead) or new ones.
    pub fn with_ids(self, ids: Option<SessionIds>) -> Reservation<'a> {
        let manager = self.manager;
        let ids = ids.unwrap_or_else(|| manager.ids.vend());
        Reservation {
            _pending: self.pending,
            session: Session::new(ids.id, ids.vended, manager.unattended.clone()),
            started: self.started,
        }
    }
}

/// One count of "sessions being created", given back however creation ends.
struct Pending<'a>(&'a AtomicUsize);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SessionManager {
    pub fn new(max_sessions: usize, max_pending: usize) -> SessionManager {
        SessionManager {
            sessions: Mutex::default(),
            unattended: Unattended::new(),
            ids: Arc::new(IdVendor::new(None)),
            creating: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            max_sessions: AtomicUsize::new(max_sessions),
            max_pending: AtomicUsize::new(max_pending),
        }
    }

    /// Vends ids from `ids` (which names this node, `--node-id`).
    pub fn with_ids(mut self, ids: Arc<IdVendor>) -> SessionManager {
        self.ids = ids;
        self
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.lock()
    }

    /// Refuses every later [`SessionManager::admit`] (shutdown has begun).
    pub fn close(&self) {
        self.closing.store(true, Ordering::Release);
    }

    /// Admits a new session (or says why not) and vends its ids; it is not reachable yet.
    #[cfg(test)]
    pub fn reserve(&self) -> Result<Reservation<'_>, CreateError> {
        Ok(self.admit()?.with_ids(None))
    }

    /// Admits a new session (or says why not); its ids come next ([`Admission::with_ids`]).
    pub fn admit(&self) -> Result<Admission<'_>, CreateError> {
        let started = Instant::now();
        if self.closing.load(Ordering::Acquire) {
            metrics().sessions_refused.inc();
            metrics().refused("shutting_down");
            return Err(CreateError::Closing);
        }
        let creating = self.creating.fetch_add(1, Ordering::AcqRel) + 1;
        let pending = Pending(&self.creating);
        let (max_sessions, max_pending) = self.caps();
        if creating > max_pending {
            metrics().sessions_refused.inc();
            metrics().refused("pending_cap");
            return Err(CreateError::Busy(max_pending));
        }
        // Sessions being created count against the cap too, so a burst cannot overshoot it.
        if self.live() + creating > max_sessions {
            metrics().sessions_refused.inc();
            metrics().refused("session_cap");
            return Err(CreateError::Full(max_sessions));
        }
        Ok(Admission {
            manager: self,
            pending,
            started,
        })
    }

    /// Makes a reserved session, its worker started, reachable by its id.
    pub fn publish(&self, reservation: Reservation<'_>) -> Result<Arc<Session>, CreateError> {
        if self.closing.load(Ordering::Acquire) {
            // Shutdown began while main.lua ran; shutdown stops the worker.
            return Err(CreateError::Closing);
        }
        let session = reservation.session.clone();
        self.lock().insert(session.id.clone(), session.clone());
        session.start_waiting();
        metrics().sessions_created.inc();
        metrics()
            .session_creation_seconds
            .observe(reservation.started.elapsed().as_secs_f64());
        Ok(session)
    }

    /// A live session by its URL id; anything that is not 32 lowercase hex is not one.
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        if !is_session_id(id) {
            return None;
        }
        self.lock().get(id).cloned()
    }

    pub fn remove(&self, id: &str) -> Option<Arc<Session>> {
        let session = self.lock().remove(id);
        if let Some(s) = &session {
            s.stop_waiting();
        }
        session
    }

    pub fn live(&self) -> usize {
        self.lock().len()
    }

    /// Whether a new session would be refused at `--max-sessions` right now.
    pub fn is_full(&self) -> bool {
        self.live() + self.creating() >= self.caps().0
    }

    /// Sessions being created right now (counted against both caps).
    pub fn creating(&self) -> usize {
        self.creating.load(Ordering::Acquire)
    }

    /// (`--max-sessions`, `--max-pending-sessions`).
    pub fn caps(&self) -> (usize, usize) {
        (
            self.max_sessions.load(Ordering::Acquire),
            self.max_pending.load(Ordering::Acquire),
        )
    }

    /// New caps, for sessions created from now on (live ones are never evicted).
    pub fn set_caps(&self, max_sessions: usize, max_pending: usize) {
        self.max_sessions.store(max_sessions, Ordering::Release);
        self.max_pending.store(max_pending, Ordering::Release);
    }

    /// Shutdown has begun: no new sessions.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    pub fn all(&self) -> Vec<Arc<Session>> {
        self.lock().values().cloned().collect()
    }

    /// Sessions past their adoption window or idle timeout, with the reason. Costs what is
    /// due, not what is live (see `unattended`).
    pub fn expired(
        &self,
        adoption: Option<Duration>,
        idle: Option<Duration>,
    ) -> Vec<(Arc<Session>, EndCause, String)> {
        self.expired_at(adoption, idle, Instant::now())
    }

    fn expired_at(
        &self,
        adoption: Option<Duration>,
        idle: Option<Duration>,
        now: Instant,
    ) -> Vec<(Arc<Session>, EndCause, String)> {
        self.unattended
            .due(adoption, idle, now)
            .into_iter()
            .filter_map(|s| {
                let (cause, why) = s.check_expiry(adoption, idle, now)?;
                Some((s, cause, why))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_holds_a_place_until_published_or_dropped() {
        let manager = SessionManager::new(2, 1);
        let first = manager.reserve().unwrap();
        assert!(
            matches!(manager.reserve(), Err(CreateError::Busy(1))),
            "one creation at a time"
        );
        let id = first.session.id.clone();
        assert!(
            manager.get(&id).is_none(),
            "not reachable before it is published"
        );
        let session = manager.publish(first).unwrap();
        assert!(Arc::ptr_eq(&manager.get(&id).unwrap(), &session));
        assert_eq!(manager.creating(), 0);

        drop(manager.reserve().unwrap()); // a failed start gives its place back
        let second = manager.reserve().unwrap();
        assert_ne!(second.session.vended_id, session.vended_id);
        manager.publish(second).unwrap();
        assert!(matches!(manager.reserve(), Err(CreateError::Full(2))));
        manager.close();
        assert!(matches!(manager.reserve(), Err(CreateError::Closing)));
    }

    #[test]
    fn with_10_000_sessions_each_expires_at_its_deadline_and_only_then() {
        let manager = SessionManager::new(20_000, 1);
        let t0 = Instant::now();
        let mut ids = Vec::new();
        for _ in 0..10_000 {
            let session = manager.publish(manager.reserve().unwrap()).unwrap();
            ids.push(session.id.clone());
        }
        let t1 = Instant::now();
        let minute = Some(Duration::from_secs(60));
        let before = t0 + Duration::from_secs(60) - Duration::from_millis(1);
        assert!(manager.expired_at(minute, minute, before).is_empty());
        // A longer window (SIGHUP) leaves them waiting, in their places.
        let after = t1 + Duration::from_secs(60);
        let two = Some(Duration::from_secs(120));
        assert!(manager.expired_at(two, two, after).is_empty());
        assert!(manager.expired_at(None, minute, after).is_empty(), "never");
        // One ends some other way first (admin, crashes): it is not culled again.
        let gone = manager.remove(&ids[17]).unwrap();
        gone.begin_ending("admin", 1011);
        let expired = manager.expired_at(minute, minute, after);
        assert_eq!(expired.len(), 9_999);
        assert!(expired
            .iter()
            .all(|(s, cause, _)| *cause == EndCause::Unadopted && s.id != ids[17]));
        assert!(manager.expired_at(minute, minute, after).is_empty(), "once");
    }
}
