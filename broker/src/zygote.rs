//! The broker's end of the zygote: asks it to fork workers, signals them through it, and
//! receives their exits. Owned by the [`crate::spawner::Spawner`]; the protocol is
//! `protocol::zygote` (typed frames over the zygote's stdin and stdout).
//!
//! Each fork request waits under its own id, so a refusal answers exactly the request it
//! refuses. Workers forked here are the zygote's children, not the broker's: the zygote reaps
//! them, so their signals go through it ([`Parent`]). When the zygote is gone its workers die
//! with it (parent-death signal) and, the broker being a child subreaper, become the broker's
//! to reap: their exits are handed to the [`Reaper`], and so are their signals.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use nix::sys::signal::Signal;
use parking_lot::Mutex;
use protocol::codec::FrameCodec;
use protocol::launch::Token;
use protocol::zygote::{BrokerToZygote, RequestId, ZygoteToBroker};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::child::{Child, ExitSender, Parent};
use crate::reaper::Reaper;

#[derive(Debug, thiserror::Error)]
pub enum ForkError {
    /// The zygote is closed or has died: start the worker another way.
    #[error("the zygote is gone")]
    Gone,
    #[error("the zygote refused to fork a worker: {0}")]
    Refused(String),
}

type ForkReply = oneshot::Sender<Result<Child, ForkError>>;

#[derive(Default)]
struct State {
    /// Where requests go; `None` once the zygote is closed or gone.
    requests: Option<mpsc::UnboundedSender<BrokerToZygote>>,
    /// Whether we closed it (a deliberate stop is not an error).
    closed_by_us: bool,
    next_request: RequestId,
    waiting: HashMap<RequestId, ForkReply>,
    /// Forked workers the zygote has not reported as ended.
    children: HashMap<i32, ExitSender>,
    /// Workers forked so far.
    forks: u64,
    /// A successor forks new workers: this one closes once its last worker has ended.
    retired: bool,
}

impl State {
    /// Closes the zygote's stdin (it exits) if it is retired and nothing of it is left.
    fn close_if_done(&mut self) {
        if self.retired && self.children.is_empty() && self.waiting.is_empty() {
            self.closed_by_us = true;
            self.requests = None;
        }
    }
}

pub struct ZygoteClient {
    /// The zygote process itself, a child of the broker.
    process: Child,
    reaper: Reaper,
    state: Mutex<State>,
}

impl ZygoteClient {
    /// Takes over a started zygote through its stdin and stdout pipes.
    pub fn start(
        process: Child,
        stdin: OwnedFd,
        stdout: OwnedFd,
        reaper: Reaper,
    ) -> std::io::Result<Arc<Self>> {
        let stdin = tokio::net::unix::pipe::Sender::from_owned_fd(stdin)?;
        let stdout = tokio::net::unix::pipe::Receiver::from_owned_fd(stdout)?;
        Ok(Self::over(process, stdin, stdout, reaper))
    }

    /// The client over any byte streams (tests speak for the zygote through memory pipes).
    fn over(
        process: Child,
        to_zygote: impl AsyncWrite + Send + Unpin + 'static,
        from_zygote: impl AsyncRead + Send + Unpin + 'static,
        reaper: Reaper,
    ) -> Arc<Self> {
        let (requests, mut outbox) = mpsc::unbounded_channel();
        let client = Arc::new(ZygoteClient {
            process,
            reaper,
            state: Mutex::new(State {
                requests: Some(requests),
                next_request: 1,
                ..State::default()
            }),
        });
        let mut sink = FramedWrite::new(
            to_zygote,
            FrameCodec::<ZygoteToBroker, BrokerToZygote>::default(),
        );
        tokio::spawn(async move {
            while let Some(msg) = outbox.recv().await {
                if sink.send(msg).await.is_err() {
                    break; // the reader sees the zygote go and says why
                }
            }
            // Dropping the sink closes the zygote's stdin: it exits.
        });
        let reader = client.clone();
        tokio::spawn(async move {
            let mut answers = FramedRead::new(
                from_zygote,
                FrameCodec::<ZygoteToBroker, BrokerToZygote>::default(),
            );
            while let Some(answer) = answers.next().await {
                match answer {
                    Ok(answer) => reader.handle(answer),
                    Err(e) => {
                        tracing::error!("the zygote sent a bad frame: {e}");
                        break;
                    }
                }
            }
            reader.gone().await;
        });
        client
    }

    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    /// Forks a worker that will present `token`. Resolves when the zygote answers; a caller
    /// that stops waiting leaves no worker behind (a late one is killed).
    pub async fn fork(self: &Arc<Self>, token: Token) -> Result<Child, ForkError> {
        let answer = {
            let mut state = self.state.lock();
            let request = state.next_request;
            state.next_request += 1;
            let Some(requests) = &state.requests else {
                return Err(ForkError::Gone);
            };
            if requests
                .send(BrokerToZygote::Fork { request, token })
                .is_err()
            {
                return Err(ForkError::Gone);
            }
            let (tx, rx) = oneshot::channel();
            state.waiting.insert(request, tx);
            rx
        };
        answer.await.unwrap_or(Err(ForkError::Gone))
    }

    fn handle(self: &Arc<Self>, answer: ZygoteToBroker) {
        match answer {
            ZygoteToBroker::Forked { request, pid } => {
                let (exit, exit_rx) = watch::channel(None);
                let child = Child::new(pid, self.clone(), exit_rx);
                let waiter = {
                    let mut state = self.state.lock();
                    state.children.insert(pid, exit);
                    state.forks += 1;
                    state.waiting.remove(&request)
                };
                let unwanted = match waiter {
                    Some(waiter) => waiter.send(Ok(child)).err(),
                    None => Some(Ok(child)),
                };
                if let Some(Ok(child)) = unwanted {
                    tracing::warn!(pid, request, "a worker forked for nobody; killing it");
                    child.kill();
                }
            }
            ZygoteToBroker::Refused { request, reason } => {
                tracing::warn!(request, "the zygote refused a fork: {reason}");
                let mut state = self.state.lock();
                if let Some(waiter) = state.waiting.remove(&request) {
                    let _ = waiter.send(Err(ForkError::Refused(reason)));
                }
                state.close_if_done();
            }
            ZygoteToBroker::Exited { pid, status } => {
                let mut state = self.state.lock();
                if let Some(exit) = state.children.remove(&pid) {
                    exit.send_replace(Some(status.into()));
                }
                state.close_if_done();
            }
        }
    }

    /// The zygote's stdout closed: fail what waits, and hand its workers to the reaper once
    /// the zygote has exited (only then are its orphans reparented to the broker).
    async fn gone(&self) {
        let (waiting, closed_by_us) = {
            let mut state = self.state.lock();
            state.requests = None;
            (std::mem::take(&mut state.waiting), state.closed_by_us)
        };
        drop(waiting); // each waiter reads Gone
        if closed_by_us {
            tracing::info!(pid = self.pid(), "zygote stopped");
        } else if self.is_retired() {
            tracing::error!(
                pid = self.pid(),
                "a retired zygote is gone; its workers go with it"
            );
        } else {
            tracing::error!("the zygote is gone; workers are exec'd from now on");
        }
        self.process.exited().await;
        let orphans = std::mem::take(&mut self.state.lock().children);
        for (pid, exit) in orphans {
            self.reaper.watch(pid, exit);
        }
    }

    /// Whether new forks can still be asked for.
    pub fn is_open(&self) -> bool {
        self.state.lock().requests.is_some()
    }

    /// Workers forked from it so far.
    pub fn forks(&self) -> u64 {
        self.state.lock().forks
    }

    /// Its successor forks from now on: it keeps reaping (and signalling) its own workers,
    /// and closes once the last of them has ended.
    pub fn retire(&self) {
        let mut state = self.state.lock();
        state.retired = true;
        state.close_if_done();
    }

    fn is_retired(&self) -> bool {
        self.state.lock().retired
    }

    /// Whether its process has ended (and been reaped).
    pub fn has_exited(&self) -> bool {
        self.process.exit().is_some()
    }

    /// Closes the zygote's stdin, so it exits; waits (up to `grace`) for it, then kills it.
    pub async fn stop(&self, grace: std::time::Duration) {
        {
            let mut state = self.state.lock();
            state.closed_by_us = true;
            state.requests = None;
        }
        if tokio::time::timeout(grace, self.process.exited())
            .await
            .is_err()
        {
            self.process.kill_and_reap().await;
        }
    }
}

impl Parent for ZygoteClient {
    fn signal(&self, pid: i32, sig: Signal) -> bool {
        let state = self.state.lock();
        if state.children.contains_key(&pid) {
            // The zygote checks it has not reaped `pid` before signalling it.
            return match &state.requests {
                Some(requests) => requests
                    .send(BrokerToZygote::Kill {
                        pid,
                        signal: sig as i32,
                    })
                    .is_ok(),
                // Gone, not yet handed over: its workers are dying with it anyway.
                None => false,
            };
        }
        drop(state);
        // Handed over to the reaper (the zygote died), or ended.
        self.reaper.signal(pid, sig)
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use protocol::zygote::ExitStatus;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio_util::codec::{Decoder, Encoder};

    use super::*;
    use crate::child::Exit;

    type ZygoteSide = FrameCodec<BrokerToZygote, ZygoteToBroker>;

    /// Plays the zygote's part over memory pipes.
    struct FakeZygote {
        requests: DuplexStream,
        answers: DuplexStream,
        codec: ZygoteSide,
        inbox: BytesMut,
    }

    impl FakeZygote {
        async fn next_request(&mut self) -> BrokerToZygote {
            loop {
                if let Some(req) = self.codec.decode(&mut self.inbox).unwrap() {
                    return req;
                }
                let mut chunk = [0u8; 256];
                let n = self.requests.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the client closed the zygote's stdin");
                self.inbox.extend_from_slice(&chunk[..n]);
            }
        }

        async fn answer(&mut self, msg: ZygoteToBroker) {
            let mut buf = BytesMut::new();
            self.codec.encode(msg, &mut buf).unwrap();
            self.answers.write_all(&buf).await.unwrap();
        }
    }

    fn client() -> (Arc<ZygoteClient>, FakeZygote, ExitSender) {
        let (to_zygote, requests) = tokio::io::duplex(4096);
        let (answers, from_zygote) = tokio::io::duplex(4096);
        let reaper = Reaper::default();
        // The zygote process itself: a stand-in pid whose exit the test controls.
        let (zygote_exit, rx) = watch::channel(None);
        let process = Child::new(-1, Arc::new(reaper.clone()), rx);
        let client = ZygoteClient::over(process, to_zygote, from_zygote, reaper);
        let fake = FakeZygote {
            requests,
            answers,
            codec: ZygoteSide::default(),
            inbox: BytesMut::new(),
        };
        (client, fake, zygote_exit)
    }

    #[tokio::test]
    async fn a_refused_request_does_not_take_the_next_requests_pid() {
        let (client, mut zygote, _exit) = client();
        let first = tokio::spawn({
            let client = client.clone();
            async move { client.fork([1; 32]).await }
        });
        let BrokerToZygote::Fork { request: r1, token } = zygote.next_request().await else {
            panic!("expected a fork");
        };
        assert_eq!(token, [1; 32]);
        let second = tokio::spawn({
            let client = client.clone();
            async move { client.fork([2; 32]).await }
        });
        let BrokerToZygote::Fork { request: r2, .. } = zygote.next_request().await else {
            panic!("expected a fork");
        };
        assert_ne!(r1, r2);
        // Answered out of order: the second first, then the first refused.
        zygote
            .answer(ZygoteToBroker::Forked {
                request: r2,
                pid: 4242,
            })
            .await;
        zygote
            .answer(ZygoteToBroker::Refused {
                request: r1,
                reason: "no".into(),
            })
            .await;
        assert!(matches!(first.await.unwrap(), Err(ForkError::Refused(r)) if r == "no"));
        let child = second.await.unwrap().unwrap();
        assert_eq!(child.pid(), 4242);

        // Its signals go through the zygote, and its exit comes back from it.
        assert!(child.signal(Signal::SIGTERM));
        assert_eq!(
            zygote.next_request().await,
            BrokerToZygote::Kill {
                pid: 4242,
                signal: Signal::SIGTERM as i32
            }
        );
        zygote
            .answer(ZygoteToBroker::Exited {
                pid: 4242,
                status: ExitStatus::Signal(15),
            })
            .await;
        assert_eq!(child.exited().await, Exit::Signal(Signal::SIGTERM));
        assert!(!child.kill(), "a reaped worker is not signalled");
    }

    #[tokio::test]
    async fn a_dead_zygote_fails_every_waiting_request() {
        let (client, mut zygote, zygote_exit) = client();
        let waiting = tokio::spawn({
            let client = client.clone();
            async move { client.fork([3; 32]).await }
        });
        zygote.next_request().await;
        drop(zygote); // its stdout closes
        zygote_exit.send_replace(Some(Exit::Signal(Signal::SIGKILL)));
        assert!(matches!(waiting.await.unwrap(), Err(ForkError::Gone)));
        assert!(matches!(client.fork([4; 32]).await, Err(ForkError::Gone)));
        assert!(!client.is_open());
    }

    #[tokio::test]
    async fn a_worker_forked_after_its_caller_gave_up_is_killed() {
        let (client, mut zygote, _exit) = client();
        let gave_up = tokio::spawn({
            let client = client.clone();
            async move { client.fork([5; 32]).await }
        });
        let BrokerToZygote::Fork { request, .. } = zygote.next_request().await else {
            panic!("expected a fork");
        };
        gave_up.abort();
        let _ = gave_up.await;
        zygote
            .answer(ZygoteToBroker::Forked { request, pid: 99 })
            .await;
        assert_eq!(
            zygote.next_request().await,
            BrokerToZygote::Kill {
                pid: 99,
                signal: Signal::SIGKILL as i32
            }
        );
    }
}
