//! WorkerHandle: the broker's typed channel to one live worker (the seed's luaTrackerAdapter).
//!
//! Three tasks serve each worker: a writer that drains a bounded queue into the socket, a reader
//! that hands the worker's batches to a [`BatchSink`] (the session, which routes them to its
//! tabs), and a supervisor that waits for the process to end (its [`Child`]) and reports how.
//! The handle itself is what the rest of the broker holds: send a message, ask for the debug
//! view, kill.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use nix::sys::signal::Signal;
use parking_lot::Mutex;
use protocol::codec::CodecError;
use protocol::ipc::{BrokerToWorker, DebugListing, TabBatch, WorkerToBroker};
use tokio::sync::{mpsc, oneshot};

use crate::child::{Child, Exit};
use crate::metrics::metrics;
use crate::worker_socket::Link;

/// Messages queued for one worker before senders wait (tabs feel the backpressure).
const WORKER_QUEUE: usize = 1024;

/// Where a worker's batches for tabs go.
pub trait BatchSink: Send + Sync {
    fn deliver(&self, batch: TabBatch);
}

pub struct WorkerHandle {
    pub started: Instant,
    child: Child,
    queue: mpsc::Sender<BrokerToWorker>,
    /// Why the broker killed it, when it did; reported instead of the bare signal.
    kill_reason: Mutex<Option<String>>,
    /// The system call its seccomp filter stopped, as the worker reported before dying.
    violation: Mutex<Option<u32>>,
    debug_requests: Mutex<HashMap<u64, oneshot::Sender<DebugListing>>>,
    next_request: AtomicU64,
    /// Sequence number of the last liveness ping queued for the worker (0: none yet).
    ping_sent: AtomicU64,
    /// Sequence number of the last ping answered.
    pong_seen: AtomicU64,
}

/// A worker's life is over: sent once per worker, on the server's events channel, after the
/// process has been reaped.
pub struct WorkerEnded {
    /// The session it served (`Session::vended_id`).
    pub vended_id: u64,
    pub worker: Arc<WorkerHandle>,
    pub exit: Exit,
    /// Set when the broker killed the worker on purpose (ping timeout, bad frame, shutdown).
    pub killed_because: Option<String>,
    /// Set when its sandbox ended it: `sandbox-violation: <call>` (see `sandbox::violation`).
    pub sandbox_violation: Option<String>,
}

impl WorkerHandle {
    /// Takes over an authenticated, started worker of session `vended_id`: spawns its writer,
    /// reader and supervisor. Its end is reported on `events`.
    pub fn start(
        vended_id: u64,
        child: Child,
        link: Link,
        batches: Arc<dyn BatchSink>,
        events: mpsc::UnboundedSender<WorkerEnded>,
    ) -> Arc<WorkerHandle> {
        let (queue, mut outbox) = mpsc::channel::<BrokerToWorker>(WORKER_QUEUE);
        let handle = Arc::new(WorkerHandle {
            started: Instant::now(),
            child,
            queue,
            kill_reason: Mutex::new(None),
            violation: Mutex::new(None),
            debug_requests: Mutex::default(),
            next_request: AtomicU64::new(1),
            ping_sent: AtomicU64::new(0),
            pong_seen: AtomicU64::new(0),
        });
        let (mut sink, mut stream) = link.split();

        tokio::spawn(async move {
            while let Some(msg) = outbox.recv().await {
                if sink.send(msg).await.is_err() {
                    break; // the worker is gone; the supervisor reports why
                }
            }
        });

        let reader = handle.clone();
        let reading = tokio::spawn(async move {
            while let Some(frame) = stream.next().await {
                match frame {
                    Ok(msg) => reader.route(msg, &*batches),
                    // The socket failing means the worker is gone; the supervisor says why.
                    Err(CodecError::Io(_)) => return,
                    Err(e) => {
                        reader.kill(format!("worker sent a bad frame: {e}"));
                        return;
                    }
                }
            }
        });

        let supervisor = handle.clone();
        tokio::spawn(async move {
            let exit = supervisor.child.exited().await;
            if exit == Exit::Signal(Signal::SIGSYS) {
                // Its last frame names the forbidden call: read it before reporting the end.
                let _ = tokio::time::timeout(Duration::from_secs(1), reading).await;
            }
            let sandbox_violation = crate::sandbox::violation(*supervisor.violation.lock(), &exit);
            let killed_because = supervisor.kill_reason.lock().take();
            // Nobody listening means the broker is exiting; there is no one left to tell.
            let _ = events.send(WorkerEnded {
                vended_id,
                worker: supervisor,
                exit,
                killed_because,
                sandbox_violation,
            });
        });
        handle
    }

    /// Queues a message, waiting while the worker is behind. False if the worker is gone.
    pub async fn send(&self, msg: BrokerToWorker) -> bool {
        self.queue.send(msg).await.is_ok()
    }

    /// Queues a message without waiting; false if the queue is full or the worker gone.
    pub fn try_send(&self, msg: BrokerToWorker) -> bool {
        self.queue.try_send(msg).is_ok()
    }

    pub fn pid(&self) -> i32 {
        self.child.pid()
    }

    /// Kills the worker with SIGKILL, recording why (the first reason wins).
    pub fn kill(&self, reason: String) {
        self.signal(Signal::SIGKILL, reason);
    }

    /// Sends `sig`, recording why (the first reason wins).
    pub fn signal(&self, sig: Signal, reason: String) {
        tracing::warn!(pid = self.pid(), signal = %sig.as_str(), "stopping worker: {reason}");
        self.kill_reason.lock().get_or_insert(reason);
        self.child.signal(sig);
    }

    /// Resolves once the process has been reaped.
    pub async fn wait_exit(&self) -> Exit {
        self.child.exited().await
    }

    /// Every variable of the session and the tracker's counters, for the debug pages;
    /// `diag_level` sets the diagnostic level first (`None` keeps it).
    pub async fn debug_listing(
        &self,
        diag_level: Option<u8>,
        timeout: Duration,
    ) -> Option<DebugListing> {
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.debug_requests.lock().insert(request, tx);
        let asked = BrokerToWorker::DebugVariables {
            request,
            diag_level,
        };
        if !self.send(asked).await {
            return None;
        }
        let answer = tokio::time::timeout(timeout, rx).await.ok()?.ok();
        self.debug_requests.lock().remove(&request);
        answer
    }

    /// One liveness round (every `--worker-ping-timeout`): false if the ping of the last
    /// round is still unanswered; otherwise queues ping `seq`, to be answered by the next
    /// round. No task and no timer per worker: a round is one pass over the workers. A ping
    /// that finds the worker's queue full is not sent (the worker is busy with what is
    /// queued, not hung) and so cannot be missed.
    pub fn ping_round(&self, seq: u64) -> bool {
        if self.ping_sent.load(Ordering::Acquire) > self.pong_seen.load(Ordering::Acquire) {
            return false;
        }
        if self.try_send(BrokerToWorker::Ping { seq }) {
            self.ping_sent.store(seq, Ordering::Release);
        }
        true
    }

    fn route(&self, msg: WorkerToBroker, sink: &dyn BatchSink) {
        match msg {
            WorkerToBroker::Send(batches) => {
                for batch in batches {
                    metrics().to_browser(&batch.messages);
                    sink.deliver(batch);
                }
            }
            WorkerToBroker::Pong { seq } => {
                self.pong_seen.fetch_max(seq, Ordering::AcqRel);
            }
            WorkerToBroker::DebugVariables { request, listing } => {
                let waiter = self.debug_requests.lock().remove(&request);
                if let Some(tx) = waiter {
                    let _ = tx.send(listing);
                }
            }
            WorkerToBroker::SandboxViolation { syscall } => {
                *self.violation.lock() = Some(syscall);
            }
            other => {
                self.kill(format!(
                    "worker sent an unexpected message: {}",
                    variant(&other)
                ));
            }
        }
    }
}

fn variant(msg: &WorkerToBroker) -> &'static str {
    match msg {
        WorkerToBroker::Hello(_) => "Hello",
        WorkerToBroker::Prepared => "Prepared",
        WorkerToBroker::Ready { .. } => "Ready",
        WorkerToBroker::Failed { .. } => "Failed",
        WorkerToBroker::Send(_) => "Send",
        WorkerToBroker::Pong { .. } => "Pong",
        WorkerToBroker::DebugVariables { .. } => "DebugVariables",
        WorkerToBroker::SandboxViolation { .. } => "SandboxViolation",
    }
}
