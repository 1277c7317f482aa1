//! The worker's end of the broker socket: typed frames (`protocol::codec`) over a Unix stream,
//! read one message at a time with an optional deadline (the next Lua timer).
//!
//! Blocking on purpose, like the zygote's loop: a worker does one thing at a time (a turn, a
//! timer callback, a reply), so an async runtime only added its own start-up to every worker
//! (an I/O driver, a timer wheel, a signal pipe: ≈ 6 % of the CPU a session's creation costs,
//! and its heap) and an `epoll_wait` per message.
//!
//! Waiting is a `poll` for readability, then the read; never a read that blocks. A Unix stream
//! socket wakes every task sleeping on it whenever its peer consumes what it sent
//! (`unix_write_space`), and a task blocked in `recv` does not filter that wake-up by event as
//! `poll` does. So a worker that sent a reply and then blocked in `recv` was woken for nothing
//! as soon as the broker read the reply: a second context switch per message, and an
//! inter-processor interrupt on the broker's side of every round trip. The socket stays
//! blocking (after `poll` says readable, the read finds bytes or EOF); the SIGSYS handler's
//! report (`confine/sigsys.rs`) sends with `MSG_DONTWAIT`, so it can never block on a full buffer.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use bytes::BytesMut;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use protocol::codec::{CodecError, FrameCodec};
use protocol::ipc::{BrokerToWorker, WorkerToBroker};
use tokio_util::codec::{Decoder, Encoder};

/// Bytes read from the socket at a time (a frame may take several reads).
const READ_CHUNK: usize = 8 * 1024;

pub struct Link {
    stream: UnixStream,
    codec: FrameCodec<BrokerToWorker, WorkerToBroker>,
    inbox: BytesMut,
    outbox: BytesMut,
}

/// What [`Link::recv`] found.
#[derive(Debug)]
pub enum Recv {
    Message(BrokerToWorker),
    /// The deadline passed with no message waiting.
    Timeout,
    /// The broker closed the socket (or is gone).
    Closed,
    /// The stream carried something undecodable, or the socket failed.
    Broken(CodecError),
}

impl Link {
    /// Connects to the broker's worker socket (a filesystem path).
    pub fn connect(path: &str) -> std::io::Result<Link> {
        let stream = UnixStream::connect(path)?;
        Ok(Link {
            stream,
            codec: FrameCodec::default(),
            inbox: BytesMut::with_capacity(READ_CHUNK),
            outbox: BytesMut::new(),
        })
    }

    /// The socket's descriptor, where a sandbox violation is reported.
    pub fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// Sends one message (or an already [`protocol::codec::Encoded`] one), waiting for room.
    pub fn send<M>(&mut self, msg: M) -> Result<(), CodecError>
    where
        FrameCodec<BrokerToWorker, WorkerToBroker>: Encoder<M, Error = CodecError>,
    {
        self.outbox.clear();
        self.codec.encode(msg, &mut self.outbox)?;
        let mut sent = 0;
        while sent < self.outbox.len() {
            match self.stream.write(&self.outbox[sent..]) {
                Ok(0) => return Err(CodecError::Io(ErrorKind::WriteZero.into())),
                Ok(n) => sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.wait(PollFlags::POLLOUT, None)?;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The next message, or [`Recv::Timeout`] once `deadline` has passed with none waiting (a
    /// deadline already past still takes a message that is there). `None`: wait for ever.
    pub fn recv(&mut self, deadline: Option<Instant>) -> Recv {
        // `poll` waits (up to the deadline, if any) and the read that follows finds the bytes
        // there: see the module's comment for why the read itself never waits.
        loop {
            match self.codec.decode(&mut self.inbox) {
                Ok(Some(msg)) => return Recv::Message(msg),
                Ok(None) => {}
                Err(e) => return Recv::Broken(e),
            }
            match self.wait(PollFlags::POLLIN, deadline) {
                Ok(true) => {}
                Ok(false) => return Recv::Timeout,
                Err(e) => return Recv::Broken(e.into()),
            }
            self.inbox.reserve(READ_CHUNK);
            let start = self.inbox.len();
            // Read into zero-filled room (no unsafe), then keep only what was read.
            self.inbox.resize(start + READ_CHUNK, 0);
            let read = self.stream.read(&mut self.inbox[start..]);
            self.inbox.truncate(start + *read.as_ref().unwrap_or(&0));
            match read {
                Ok(0) => return Recv::Closed,
                Ok(_) => {}
                // Readiness that another read took, or a signal: wait again.
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return Recv::Closed,
                Err(e) => return Recv::Broken(e.into()),
            }
        }
    }

    /// Waits until the socket is ready for `flags`; false when `deadline` passed first.
    fn wait(&self, flags: PollFlags, deadline: Option<Instant>) -> std::io::Result<bool> {
        loop {
            let timeout = match deadline {
                None => PollTimeout::NONE,
                Some(d) => {
                    // Rounded up, so a wake-up is never early (as tokio's timer rounds).
                    let left = d.saturating_duration_since(Instant::now());
                    let ms = left.as_micros().div_ceil(1000);
                    PollTimeout::try_from(ms.min(i32::MAX as u128) as i32)
                        .unwrap_or(PollTimeout::MAX)
                }
            };
            let mut fds = [PollFd::new(self.stream.as_fd(), flags)];
            match poll(&mut fds, timeout) {
                Ok(0) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(false);
                    }
                }
                Ok(_) => return Ok(true),
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The worker's end as `Link::connect` leaves it (blocking), or non-blocking.
    fn pair(nonblocking: bool) -> (Link, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(nonblocking).unwrap();
        let link = Link {
            stream: ours,
            codec: FrameCodec::default(),
            inbox: BytesMut::new(),
            outbox: BytesMut::new(),
        };
        (link, theirs)
    }

    #[test]
    fn messages_arrive_whole_whatever_the_reads_and_a_deadline_ends_the_wait() {
        for nonblocking in [false, true] {
            messages_arrive_whole(nonblocking);
        }
    }

    fn messages_arrive_whole(nonblocking: bool) {
        let (mut link, mut broker) = pair(nonblocking);
        let mut frames = BytesMut::new();
        let mut codec = FrameCodec::<WorkerToBroker, BrokerToWorker>::default();
        codec
            .encode(BrokerToWorker::Ping { seq: 7 }, &mut frames)
            .unwrap();
        codec.encode(BrokerToWorker::Shutdown, &mut frames).unwrap();
        // Byte by byte: a frame split across reads still arrives as one message.
        let writer = std::thread::spawn(move || {
            for b in frames.iter() {
                broker.write_all(&[*b]).unwrap();
            }
            broker
        });
        assert!(matches!(
            link.recv(None),
            Recv::Message(BrokerToWorker::Ping { seq: 7 })
        ));
        assert!(matches!(
            link.recv(None),
            Recv::Message(BrokerToWorker::Shutdown)
        ));
        let broker = writer.join().unwrap();
        let soon = Instant::now() + Duration::from_millis(20);
        assert!(matches!(link.recv(Some(soon)), Recv::Timeout));
        assert!(Instant::now() >= soon, "the wait ended before its deadline");
        drop(broker);
        assert!(matches!(link.recv(None), Recv::Closed));
    }

    /// A field of `/proc/self/task/<tid>/status` (`State`'s letter, or a count).
    fn task_status(tid: i32, field: &str) -> String {
        let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        line[field.len()..].trim().to_string()
    }

    #[test]
    fn a_waiting_worker_is_not_woken_when_the_broker_reads_what_it_sent() {
        let (mut link, mut broker) = pair(false);
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let worker = std::thread::spawn(move || {
            tid_tx.send(nix::unistd::gettid().as_raw()).unwrap();
            link.send(WorkerToBroker::Pong { seq: 1 }).unwrap();
            matches!(
                link.recv(None),
                Recv::Message(BrokerToWorker::Ping { seq: 2 })
            )
        });
        let tid = tid_rx.recv().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        // The worker sent its reply and is asleep waiting for the next message.
        while !task_status(tid, "State:").starts_with('S') {
            assert!(Instant::now() < deadline, "the worker never went to sleep");
            std::thread::yield_now();
        }
        let asleep = task_status(tid, "voluntary_ctxt_switches:");
        let mut reply = [0u8; 64];
        assert!(broker.read(&mut reply).unwrap() > 0);
        // A wake-up for nothing would show within microseconds as one more voluntary switch
        // (it runs, finds nothing, sleeps again); nothing to wait for when all is well, so
        // the window is the detector's.
        let window = Instant::now() + Duration::from_millis(200);
        while Instant::now() < window {
            assert_eq!(
                task_status(tid, "voluntary_ctxt_switches:"),
                asleep,
                "the worker was woken when the broker read its reply"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut frames = BytesMut::new();
        FrameCodec::<WorkerToBroker, BrokerToWorker>::default()
            .encode(BrokerToWorker::Ping { seq: 2 }, &mut frames)
            .unwrap();
        broker.write_all(&frames).unwrap();
        assert!(
            worker.join().unwrap(),
            "the worker did not get the next message"
        );
    }

    #[test]
    fn what_the_worker_sends_the_broker_decodes() {
        let (mut link, mut broker) = pair(false);
        link.send(WorkerToBroker::Pong { seq: 3 }).unwrap();
        link.send(WorkerToBroker::Prepared).unwrap();
        drop(link);
        let mut bytes = Vec::new();
        broker.read_to_end(&mut bytes).unwrap();
        let mut inbox = BytesMut::from(&bytes[..]);
        let mut codec = FrameCodec::<WorkerToBroker, BrokerToWorker>::default();
        assert!(matches!(
            codec.decode(&mut inbox).unwrap(),
            Some(WorkerToBroker::Pong { seq: 3 })
        ));
        assert!(matches!(
            codec.decode(&mut inbox).unwrap(),
            Some(WorkerToBroker::Prepared)
        ));
    }
}
