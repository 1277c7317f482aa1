//! The worker's end of the broker socket: typed frames (`protocol::codec`) over a Unix stream,
//! read one message at a time with an optional deadline (the next Lua timer).
//!
//! Blocking on purpose, like the zygote's loop: a worker does one thing at a time (a turn, a
//! timer callback, a reply), so an async runtime only added its own start-up to every worker
//! (an I/O driver, a timer wheel, a signal pipe: ≈ 6 % of the CPU a session's creation costs,
//! and its heap) and an `epoll_wait` per message. The socket itself is blocking, so that waiting
//! for the next message with no deadline is the `recv` alone (one system call, not a `poll` and
//! then a `recv`); the SIGSYS handler's report (`confine/sigsys.rs`) sends with `MSG_DONTWAIT`,
//! so it can never block on a full buffer.

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
        // With no deadline the read itself waits; with one, `poll` waits (up to the deadline)
        // and the read that follows finds the bytes there. A socket that turns out to be
        // non-blocking (WouldBlock) is waited on with `poll` as well.
        let mut poll_first = deadline.is_some();
        loop {
            match self.codec.decode(&mut self.inbox) {
                Ok(Some(msg)) => return Recv::Message(msg),
                Ok(None) => {}
                Err(e) => return Recv::Broken(e),
            }
            if poll_first {
                match self.wait(PollFlags::POLLIN, deadline) {
                    Ok(true) => {}
                    Ok(false) => return Recv::Timeout,
                    Err(e) => return Recv::Broken(e.into()),
                }
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
                Err(e) if e.kind() == ErrorKind::WouldBlock => poll_first = true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
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
