//! Where one HTTP connection is in its life, and which timeout applies to it now.
//!
//! `Idle` (no request in progress, nothing of the next one received) ends at the idle
//! timeout; `Reading` (bytes of a request arrived, its headers are not complete) ends at the
//! header-read timeout, counted from the first byte; `Busy` (a request is being answered) has
//! no deadline of ours; `Done` means the connection ended or became a WebSocket tab, which
//! pings bound instead. The socket wrapper reports reads, the service reports requests.

use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::conn_table::Permit;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Idle { since: Instant },
    Reading { since: Instant },
    Busy,
    Done,
}

/// Which bound a deadline is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Idle,
    HeaderRead,
}

pub struct ConnState {
    inner: Mutex<Inner>,
    /// Cancelled when the connection table sheds this connection.
    pub shed: CancellationToken,
    /// Woken on every phase change, so the watchdog re-arms its timer.
    pub changed: Notify,
}

struct Inner {
    phase: Phase,
    in_flight: usize,
    /// Released when the last holder (the socket, possibly inside a tab) is dropped.
    permit: Permit,
}

impl ConnState {
    pub fn new(mut permit: Permit) -> ConnState {
        let shed = CancellationToken::new();
        permit.set_idle(&shed);
        ConnState {
            inner: Mutex::new(Inner {
                phase: Phase::Idle {
                    since: Instant::now(),
                },
                in_flight: 0,
                permit,
            }),
            shed,
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    pub fn phase(&self) -> Phase {
        self.lock().phase
    }

    /// The socket delivered bytes: an idle connection is now reading a request.
    pub fn on_read(&self) {
        let mut inner = self.lock();
        if let Phase::Idle { .. } = inner.phase {
            inner.phase = Phase::Reading {
                since: Instant::now(),
            };
            drop(inner);
            self.changed.notify_one();
        }
    }

    pub fn request_started(&self) {
        let mut inner = self.lock();
        inner.in_flight += 1;
        if inner.phase != Phase::Done {
            inner.phase = Phase::Busy;
            inner.permit.set_busy();
        }
        drop(inner);
        self.changed.notify_one();
    }

    /// The response has been written (its body dropped).
    pub fn request_finished(&self) {
        let mut inner = self.lock();
        inner.in_flight = inner.in_flight.saturating_sub(1);
        if inner.in_flight == 0 && inner.phase == Phase::Busy {
            inner.phase = Phase::Idle {
                since: Instant::now(),
            };
            inner.permit.set_idle(&self.shed);
        }
        drop(inner);
        self.changed.notify_one();
    }

    /// The HTTP connection is over: closed, or upgraded to a WebSocket (which keeps the
    /// descriptor, and so the permit, until the tab closes).
    pub fn finish(&self) {
        let mut inner = self.lock();
        inner.phase = Phase::Done;
        inner.permit.set_busy();
    }

    /// When the current phase ends, and as what; `None` while busy or done.
    pub fn deadline(
        &self,
        header_read: Duration,
        idle: Option<Duration>,
    ) -> Option<(Instant, Expiry)> {
        match self.phase() {
            Phase::Idle { since } => idle.map(|d| (since + d, Expiry::Idle)),
            Phase::Reading { since } => Some((since + header_read, Expiry::HeaderRead)),
            Phase::Busy | Phase::Done => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::conn_table::ConnTable;
    use super::*;

    #[tokio::test]
    async fn phases_follow_reads_and_requests() {
        let table = ConnTable::new(4, 4);
        let state = ConnState::new(table.admit(None).unwrap().permit);
        let (header, idle) = (Duration::from_secs(2), Some(Duration::from_secs(9)));
        assert_eq!(state.deadline(header, idle).unwrap().1, Expiry::Idle);
        state.on_read();
        assert_eq!(state.deadline(header, idle).unwrap().1, Expiry::HeaderRead);
        state.request_started();
        assert_eq!(state.deadline(header, idle), None);
        state.on_read(); // a request body: still busy
        assert_eq!(state.phase(), Phase::Busy);
        state.request_finished();
        assert_eq!(state.deadline(header, idle).unwrap().1, Expiry::Idle);
        assert_eq!(state.deadline(header, None), None);
        state.finish();
        assert_eq!(state.deadline(header, idle), None);
        assert_eq!(table.open(), 1);
        drop(state);
        assert_eq!(table.open(), 0);
    }
}
