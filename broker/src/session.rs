//! Session: one user session as the broker sees it: its ids, its connected tabs, its current
//! worker, and where it is in its life.
//!
//! One mutex guards the lifecycle state and the tab table together, so that a session marked as
//! ending can never receive a new tab or message (a tab attaches only while the state says
//! `Live`, under the same lock that ending takes).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};
use protocol::browser::{encode_text, ErrorCode, ServerMessage};
use protocol::ipc::{TabBatch, TabId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::metrics;
use crate::unattended::{Place, Unattended, Wait};
use crate::worker_handle::{BatchSink, WorkerHandle};

/// What the broker sends down one tab's WebSocket.
#[derive(Debug)]
pub enum TabOut {
    Text(String),
    /// Send a close frame with this code and reason, then stop.
    Close(u16, String),
}

/// WebSocket close codes the broker uses.
pub mod close {
    /// The broker is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// The session's worker crashed or the session was closed.
    pub const SERVER_ERROR: u16 = 1011;
}

/// Why a session was removed for good (the `cause` label of `luabroker_sessions_ended_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndCause {
    /// No tab for `--idle-timeout`.
    Idle,
    /// No tab ever connected within `--adoption-timeout`.
    Unadopted,
    /// Its worker crashed more than `--max-crashes` times within a minute.
    Crashes,
    /// The server is shutting down.
    Shutdown,
    /// An operator ended it through the admin API.
    Admin,
    /// Never opened, and destroyed at `--max-sessions` to admit a new one (eviction.rs).
    Evicted,
}

impl EndCause {
    pub fn as_str(self) -> &'static str {
        match self {
            EndCause::Idle => "idle",
            EndCause::Unadopted => "unadopted",
            EndCause::Crashes => "crashes",
            EndCause::Shutdown => "shutdown",
            EndCause::Admin => "admin",
            EndCause::Evicted => "evicted",
        }
    }

    /// The WebSocket close code its tabs get.
    pub fn close_code(self) -> u16 {
        match self {
            EndCause::Idle | EndCause::Unadopted | EndCause::Shutdown | EndCause::Evicted => {
                close::GOING_AWAY
            }
            EndCause::Crashes | EndCause::Admin => close::SERVER_ERROR,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Lifecycle {
    /// A worker is running (or being started for a crashed session).
    Live,
    /// The worker died; the next tab or page load starts a fresh one.
    Crashed { cause: String },
    /// Being destroyed (idle, culled, shutdown, too many crashes); nothing new gets in.
    Ending { why: String },
}

struct Inner {
    state: Lifecycle,
    worker: Option<Arc<WorkerHandle>>,
    tabs: HashMap<TabId, Tab>,
    next_tab: TabId,
    /// Has any tab ever connected (the adoption window applies until one does).
    adopted: bool,
    /// When the last tab left (or the session was created), for the idle timeout.
    unattended_since: Instant,
    /// Where the session waits in the unattended queues, while it has no tab.
    waiting: Option<Place>,
    crashes: VecDeque<Instant>,
}

pub struct Session {
    /// The 32-hex id in URLs.
    pub id: String,
    /// The compact id the worker and Lua see.
    pub vended_id: u64,
    pub created: Instant,
    /// Milliseconds after `created` of the last tab frame, connect or disconnect (admin API).
    last_activity_ms: AtomicU64,
    /// Worker crashes since the session was created.
    crashes_total: AtomicU64,
    /// The manager's queues of sessions without tabs.
    unattended: Arc<Unattended<Session>>,
    /// This session, for its entry in `unattended`.
    me: Weak<Session>,
    inner: Mutex<Inner>,
    /// Held while a crashed session's worker is restarted (`Broker::revive`), so that tabs
    /// and page loads arriving together start one worker, not one each.
    pub reviving: tokio::sync::Mutex<()>,
}

/// One connected tab: its bounded outgoing queue, and the switch that drops it when it falls
/// too far behind.
struct Tab {
    queue: mpsc::Sender<TabOut>,
    kick: CancellationToken,
}

/// A tab's place in its session.
pub struct Attached {
    pub tab: TabId,
    pub outbox: mpsc::Receiver<TabOut>,
    pub worker: Arc<WorkerHandle>,
    /// Cancelled when the session drops the tab for not reading.
    pub kicked: CancellationToken,
}

impl Session {
    /// A session not yet waiting for anything: [`Session::start_waiting`] queues it once it
    /// is published.
    pub fn new(id: String, vended_id: u64, unattended: Arc<Unattended<Session>>) -> Arc<Session> {
        Arc::new_cyclic(|me| Session {
            id,
            vended_id,
            created: Instant::now(),
            last_activity_ms: AtomicU64::new(0),
            crashes_total: AtomicU64::new(0),
            unattended,
            me: me.clone(),
            inner: Mutex::new(Inner {
                state: Lifecycle::Live,
                worker: None,
                tabs: HashMap::new(),
                next_tab: 1,
                adopted: false,
                unattended_since: Instant::now(),
                waiting: None,
                crashes: VecDeque::new(),
            }),
            reviving: tokio::sync::Mutex::new(()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    /// Puts the session in the unattended queue its state calls for (none while it has a tab
    /// or is ending), at the place its `unattended_since` says. Under the session's lock, so
    /// that its place always matches its state.
    fn queue(&self, inner: &mut Inner) {
        let want = (inner.tabs.is_empty() && !matches!(inner.state, Lifecycle::Ending { .. }))
            .then_some(Place {
                wait: if inner.adopted {
                    Wait::Idle
                } else {
                    Wait::Adoption
                },
                since: inner.unattended_since,
                vended_id: self.vended_id,
            });
        if inner.waiting == want {
            return;
        }
        if let Some(old) = inner.waiting.take() {
            self.unattended.remove(old);
        }
        if let Some(place) = want {
            self.unattended.insert(place, self.me.clone());
            inner.waiting = Some(place);
        }
    }

    /// The session is reachable: from now on, while no tab is connected, it waits for its
    /// adoption window or idle timeout.
    pub fn start_waiting(&self) {
        let mut inner = self.lock();
        self.queue(&mut inner);
    }

    /// The session is gone from the manager: it waits for nothing any more.
    pub fn stop_waiting(&self) {
        let mut inner = self.lock();
        if let Some(old) = inner.waiting.take() {
            self.unattended.remove(old);
        }
    }

    pub fn state(&self) -> Lifecycle {
        self.lock().state.clone()
    }

    /// Whether a tab has ever connected (an unadopted session may be evicted at the cap).
    pub fn is_adopted(&self) -> bool {
        self.lock().adopted
    }

    pub fn worker(&self) -> Option<Arc<WorkerHandle>> {
        self.lock().worker.clone()
    }

    /// Installs a freshly started worker (first start or restart after a crash).
    pub fn set_worker(&self, worker: Arc<WorkerHandle>) -> Result<(), String> {
        let mut inner = self.lock();
        if let Lifecycle::Ending { why } = &inner.state {
            return Err(why.clone());
        }
        inner.state = Lifecycle::Live;
        inner.worker = Some(worker);
        Ok(())
    }

    /// Adds a tab; fails when the session is ending or has no live worker.
    pub fn attach_tab(&self, queue_limit: usize) -> Result<Attached, Lifecycle> {
        let mut inner = self.lock();
        let worker = match (&inner.state, &inner.worker) {
            (Lifecycle::Live, Some(w)) => w.clone(),
            (state, _) => return Err(state.clone()),
        };
        let tab = inner.next_tab;
        inner.next_tab = inner.next_tab.wrapping_add(1).max(1);
        let (queue, outbox) = mpsc::channel(queue_limit.max(1));
        let kicked = CancellationToken::new();
        inner.tabs.insert(
            tab,
            Tab {
                queue,
                kick: kicked.clone(),
            },
        );
        inner.adopted = true;
        self.queue(&mut inner);
        self.touch();
        Ok(Attached {
            tab,
            outbox,
            worker,
            kicked,
        })
    }

    /// The tab's queue, for replies the broker makes itself.
    pub fn tab_sender(&self, tab: TabId) -> Option<mpsc::Sender<TabOut>> {
        self.lock().tabs.get(&tab).map(|t| t.queue.clone())
    }

    /// Notes tab activity (a frame, a connect, a disconnect).
    pub fn touch(&self) {
        let ms = self.created.elapsed().as_millis() as u64;
        self.last_activity_ms.store(ms, Ordering::Relaxed);
    }

    /// How long ago a tab last did anything (since creation if none ever did).
    pub fn since_activity(&self) -> Duration {
        let at = Duration::from_millis(self.last_activity_ms.load(Ordering::Relaxed));
        self.created.elapsed().saturating_sub(at)
    }

    /// Worker crashes since the session was created.
    pub fn crashes(&self) -> u64 {
        self.crashes_total.load(Ordering::Relaxed)
    }

    /// Tabs connected right now.
    pub fn tab_count(&self) -> usize {
        self.lock().tabs.len()
    }

    pub fn detach_tab(&self, tab: TabId) {
        self.touch();
        let mut inner = self.lock();
        self.remove_tab(&mut inner, tab);
    }

    /// Takes `tab` off the session; when it was the last one, the session is unattended from
    /// now (whichever way the tab went: it left, or it was dropped for not reading).
    fn remove_tab(&self, inner: &mut Inner, tab: TabId) {
        if inner.tabs.remove(&tab).is_some() && inner.tabs.is_empty() {
            inner.unattended_since = Instant::now();
        }
        self.queue(inner);
    }

    /// Queues messages for one tab. A tab whose queue is full is too slow: it is told so and
    /// dropped (its socket task sees the closed queue), and the session carries on.
    pub fn deliver(&self, tab: TabId, messages: &[ServerMessage]) {
        if messages.is_empty() {
            return;
        }
        let mut inner = self.lock();
        let Some(t) = inner.tabs.get(&tab) else {
            return; // the tab left while the worker was answering it
        };
        let text = encode_text(messages);
        let bytes = text.len();
        match t.queue.try_send(TabOut::Text(text)) {
            Ok(()) => metrics().to_browser_bytes(bytes),
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics().limit_hit("tab_queue");
                tracing::warn!(session = %self.id, tab, "tab is not reading; disconnecting it");
                t.kick.cancel();
                self.remove_tab(&mut inner, tab);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => self.remove_tab(&mut inner, tab),
        }
    }

    /// The worker ended. Unless the session was already ending, that is a crash: every tab gets
    /// `session-crashed` with the cause, then a close. Returns how many crashes the session has
    /// had within the last minute, including this one (0 when it was not a crash).
    pub fn worker_ended(&self, worker: &Arc<WorkerHandle>, cause: &str) -> usize {
        let mut inner = self.lock();
        if !inner
            .worker
            .as_ref()
            .is_some_and(|w| Arc::ptr_eq(w, worker))
        {
            return 0; // an older worker of this session; already replaced
        }
        inner.worker = None;
        let tabs: Vec<_> = inner.tabs.drain().collect();
        inner.unattended_since = Instant::now();
        self.queue(&mut inner);
        if let Lifecycle::Ending { why } = &inner.state {
            let why = why.clone();
            for (_, t) in tabs {
                let _ = t
                    .queue
                    .try_send(TabOut::Close(close::GOING_AWAY, why.clone()));
            }
            return 0;
        }
        let crashed = ServerMessage::Error {
            var_id: None,
            code: ErrorCode::SessionCrashed,
            description: format!(
                "the session's worker crashed ({cause}); reload to start it again (its state is lost)"
            ),
        };
        let text = encode_text(&[crashed]);
        for (_, t) in tabs {
            let _ = t.queue.try_send(TabOut::Text(text.clone()));
            let _ = t
                .queue
                .try_send(TabOut::Close(close::SERVER_ERROR, "session crashed".into()));
        }
        inner.state = Lifecycle::Crashed {
            cause: cause.to_string(),
        };
        let now = Instant::now();
        self.crashes_total.fetch_add(1, Ordering::Relaxed);
        inner.crashes.push_back(now);
        while inner
            .crashes
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            inner.crashes.pop_front();
        }
        inner.crashes.len()
    }

    /// Marks the session as ending and closes its tabs with `code`. Returns the worker to stop.
    pub fn begin_ending(&self, why: &str, code: u16) -> Option<Arc<WorkerHandle>> {
        let mut inner = self.lock();
        if !matches!(inner.state, Lifecycle::Ending { .. }) {
            inner.state = Lifecycle::Ending {
                why: why.to_string(),
            };
        }
        for (_, t) in inner.tabs.drain() {
            let _ = t.queue.try_send(TabOut::Close(code, why.to_string()));
        }
        self.queue(&mut inner);
        inner.worker.clone()
    }

    /// The unattended queue handed this session out as due: whether it has gone unattended
    /// past a deadline (never adopted within `adoption`, or without tabs for `idle`), with
    /// the reason. If not (a tab came, a timeout grew), it takes its place in the queue again.
    pub fn check_expiry(
        &self,
        adoption: Option<Duration>,
        idle: Option<Duration>,
        now: Instant,
    ) -> Option<(EndCause, String)> {
        let mut inner = self.lock();
        // The queue no longer holds the entry it handed out.
        inner.waiting = None;
        let expired = Self::expired(&inner, adoption, idle, now);
        if expired.is_none() {
            self.queue(&mut inner);
        }
        expired
    }

    fn expired(
        inner: &Inner,
        adoption: Option<Duration>,
        idle: Option<Duration>,
        now: Instant,
    ) -> Option<(EndCause, String)> {
        if !inner.tabs.is_empty() || matches!(inner.state, Lifecycle::Ending { .. }) {
            return None;
        }
        let unattended = now.saturating_duration_since(inner.unattended_since);
        if !inner.adopted {
            if let Some(limit) = adoption {
                if unattended >= limit {
                    let why = format!("no tab connected within {limit:?}");
                    return Some((EndCause::Unadopted, why));
                }
            }
        } else if let Some(limit) = idle {
            if unattended >= limit {
                return Some((EndCause::Idle, format!("no tab connected for {limit:?}")));
            }
        }
        None
    }
}

impl BatchSink for Session {
    fn deliver(&self, batch: TabBatch) {
        Session::deliver(self, batch.tab, &batch.messages);
    }
}
