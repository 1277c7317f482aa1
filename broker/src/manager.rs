//! SessionManager: creates and destroys sessions, vends ids, enforces the admission caps, and
//! culls sessions nobody uses.
//!
//! As in the seed, creating a session fires an `on_session_created` hook; the broker wires it to
//! [`crate::server::Server::create_lua_session`], so the manager knows nothing of processes.
//! A session is only published (reachable by its id) once that hook succeeded.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::metrics::metrics;
use crate::server::StartError;
use crate::session::{EndCause, Session};

pub type HookFuture = Pin<Box<dyn Future<Output = Result<(), StartError>> + Send>>;
pub type SessionHook = Box<dyn Fn(Arc<Session>) -> HookFuture + Send + Sync>;

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
    next_vended: AtomicU64,
    creating: AtomicUsize,
    closing: AtomicBool,
    max_sessions: usize,
    max_pending: usize,
    on_session_created: OnceLock<SessionHook>,
}

/// Undoes a "creating" reservation however creation ends.
struct Reservation<'a>(&'a AtomicUsize);

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SessionManager {
    pub fn new(max_sessions: usize, max_pending: usize) -> SessionManager {
        SessionManager {
            sessions: Mutex::default(),
            next_vended: AtomicU64::new(1),
            creating: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            max_sessions,
            max_pending,
            on_session_created: OnceLock::new(),
        }
    }

    /// Sets the hook that brings a new session to life (the seed's `SetOnSessionCreated`).
    pub fn set_on_session_created(&self, hook: SessionHook) {
        if self.on_session_created.set(hook).is_err() {
            tracing::error!("on_session_created set twice; keeping the first");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuses every later `create_session` (shutdown has begun).
    pub fn close(&self) {
        self.closing.store(true, Ordering::Release);
    }

    /// Creates a session and runs the hook; the session is reachable only if that succeeds.
    pub async fn create_session(&self) -> Result<Arc<Session>, CreateError> {
        let started = Instant::now();
        if self.closing.load(Ordering::Acquire) {
            metrics().sessions_refused.inc();
            metrics().refused("shutting_down");
            return Err(CreateError::Closing);
        }
        let creating = self.creating.fetch_add(1, Ordering::AcqRel) + 1;
        let _reservation = Reservation(&self.creating);
        if creating > self.max_pending {
            metrics().sessions_refused.inc();
            metrics().refused("pending_cap");
            return Err(CreateError::Busy(self.max_pending));
        }
        // Sessions being created count against the cap too, so a burst cannot overshoot it.
        if self.live() + creating > self.max_sessions {
            metrics().sessions_refused.inc();
            metrics().refused("session_cap");
            return Err(CreateError::Full(self.max_sessions));
        }
        let session = Arc::new(Session::new(
            new_session_id(),
            self.next_vended.fetch_add(1, Ordering::Relaxed),
        ));
        let hook = self
            .on_session_created
            .get()
            .expect("on_session_created is set at start-up");
        if let Err(e) = hook(session.clone()).await {
            metrics().sessions_failed.inc();
            return Err(e.into());
        }
        if self.closing.load(Ordering::Acquire) {
            // Shutdown began while main.lua ran; shutdown stops the worker.
            return Err(CreateError::Closing);
        }
        self.lock().insert(session.id.clone(), session.clone());
        metrics().sessions_created.inc();
        metrics()
            .session_creation_seconds
            .observe(started.elapsed().as_secs_f64());
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
        self.lock().remove(id)
    }

    pub fn live(&self) -> usize {
        self.lock().len()
    }

    /// Sessions being created right now (counted against both caps).
    pub fn creating(&self) -> usize {
        self.creating.load(Ordering::Acquire)
    }

    /// (`--max-sessions`, `--max-pending-sessions`).
    pub fn caps(&self) -> (usize, usize) {
        (self.max_sessions, self.max_pending)
    }

    /// Shutdown has begun: no new sessions.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    pub fn all(&self) -> Vec<Arc<Session>> {
        self.lock().values().cloned().collect()
    }

    /// Sessions past their adoption window or idle timeout, with the reason.
    pub fn expired(
        &self,
        adoption: Option<Duration>,
        idle: Option<Duration>,
    ) -> Vec<(Arc<Session>, EndCause, String)> {
        self.lock()
            .values()
            .filter_map(|s| {
                s.expired(adoption, idle)
                    .map(|(cause, why)| (s.clone(), cause, why))
            })
            .collect()
    }
}

/// 128 bits from the OS CSPRNG as 32 lowercase hex characters.
pub fn new_session_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    uuid::Uuid::from_bytes(bytes).simple().to_string()
}

pub fn is_session_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_lowercase_hex_and_distinct() {
        let a = new_session_id();
        let b = new_session_id();
        assert!(is_session_id(&a), "{a}");
        assert_ne!(a, b);
        assert!(!is_session_id("ABCDEF00000000000000000000000000"));
        assert!(!is_session_id("../etc/passwd"));
    }
}
