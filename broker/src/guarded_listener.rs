//! The HTTP listener, made safe at the descriptor limit. axum's own loop answers `EMFILE` by
//! logging and sleeping a second per failure, during which every connection waits unanswered.
//! Here an accept that fails for lack of descriptors frees the spare one the [`FdBudget`]
//! holds, accepts the waiting connection, answers it `503` with `Retry-After` and closes it,
//! so a client at the limit is told at once; and the failures are logged once per burst.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::fd_budget::FdBudget;

/// What a connection accepted at the descriptor limit is told.
const AT_LIMIT: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 58\r\nConnection: close\r\n\r\n\
the server is out of file descriptors; try again shortly\r\n";

/// How long an answer to a connection accepted at the limit may take before it is dropped.
const AT_LIMIT_WRITE: Duration = Duration::from_millis(200);

pub struct GuardedListener {
    inner: TcpListener,
    budget: Arc<FdBudget>,
    errors: BurstLog,
}

impl GuardedListener {
    pub fn new(inner: TcpListener, budget: Arc<FdBudget>) -> GuardedListener {
        GuardedListener {
            inner,
            budget,
            errors: BurstLog::new("HTTP accept"),
        }
    }

    /// At the limit: one descriptor freed, one connection accepted and refused, the
    /// descriptor taken back.
    async fn shed_one(&mut self) {
        if !self.budget.release_spare() {
            // Nothing to free (it could not be reopened yet): wait for descriptors to come back.
            tokio::time::sleep(Duration::from_millis(10)).await;
            self.budget.restore_spare();
            return;
        }
        if let Ok((stream, _)) = self.inner.accept().await {
            crate::metrics::metrics().refused("descriptors");
            tokio::spawn(refuse(stream));
        }
        self.budget.restore_spare();
    }
}

async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(AT_LIMIT_WRITE, stream.write_all(AT_LIMIT)).await;
}

impl axum::serve::Listener for GuardedListener {
    type Io = TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (TcpStream, std::net::SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok(accepted) => {
                    self.errors.ok();
                    return accepted;
                }
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    self.errors.failed(&e);
                    if out_of_descriptors(&e) {
                        self.shed_one().await;
                    } else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.inner.local_addr()
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

pub fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == nix::libc::EMFILE || code == nix::libc::ENFILE)
}

/// Logs a run of failures once: the first as an error, then (when the run ends) how many
/// there were, instead of a line per attempt.
pub struct BurstLog {
    what: &'static str,
    failures: u64,
    started: Option<Instant>,
}

/// A burst ends after this long without a failure.
const BURST_QUIET: Duration = Duration::from_secs(1);

impl BurstLog {
    pub fn new(what: &'static str) -> BurstLog {
        BurstLog {
            what,
            failures: 0,
            started: None,
        }
    }

    pub fn failed(&mut self, e: &io::Error) {
        self.failures += 1;
        if self.started.is_none() {
            self.started = Some(Instant::now());
            tracing::error!(
                "{} failed: {e} (repeats are counted, not logged, until it recovers)",
                self.what
            );
        }
    }

    pub fn ok(&mut self) {
        if let Some(started) = self.started {
            if started.elapsed() >= BURST_QUIET || self.failures > 0 {
                tracing::warn!(
                    failures = self.failures,
                    lasted_ms = started.elapsed().as_millis() as u64,
                    "{} works again",
                    self.what
                );
            }
        }
        self.started = None;
        self.failures = 0;
    }
}
