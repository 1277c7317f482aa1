//! WorkerStream: the broker's end of one worker's socket as an async byte stream that asks the
//! kernel about readability only.
//!
//! Why not tokio's `UnixStream`: it registers every socket for writability too, and a Unix
//! stream socket reports writability each time its peer reads from it (TCP does so only after a
//! writer found its buffer full). So every message a worker read woke a sleeping broker thread
//! for nothing, and the worker paid for that wake-up inside its `recv`, on the way to running
//! the message (BENCHMARKS.md, eleventh round). Here writes go straight to the socket. Only when
//! one finds it full does a second registration exist, for writability, on a duplicate of the
//! descriptor (epoll keeps one registration per descriptor), until a write gets through again.

use std::future::Future;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// Bytes read at a time. The frame decoder's buffer can have grown to a large frame's size;
/// reading into all of it would zero that much before every read.
const READ_AT_MOST: usize = 64 * 1024;

/// How long a write into a full socket waits before trying again when no descriptor is left
/// for the writability registration (the descriptor limit is reached).
const FULL_RETRY: Duration = Duration::from_millis(1);

pub struct WorkerStream {
    socket: AsyncFd<UnixStream>,
    /// While the socket is full: how the writer learns it has room again.
    room: Option<Room>,
}

enum Room {
    /// A duplicate of the socket's descriptor, registered for writability only.
    Registered(AsyncFd<OwnedFd>),
    /// No descriptor to spare: try again shortly.
    Retry(Pin<Box<tokio::time::Sleep>>),
}

impl WorkerStream {
    /// Takes over a connected, non-blocking socket (registers it with the current runtime).
    pub fn new(socket: UnixStream) -> io::Result<WorkerStream> {
        socket.set_nonblocking(true)?;
        // SAFETY: the socket owns its descriptor, which stays open and the same until the
        // `AsyncFd` (its only owner from here) is dropped.
        let socket = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE)? };
        Ok(WorkerStream { socket, room: None })
    }

    /// Resolves once a write into the full socket may succeed.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.room.is_none() {
            self.room = Some(match self.duplicate() {
                // SAFETY: as in `new`: the duplicate is owned by the `AsyncFd` alone.
                Ok(dup) => Room::Registered(unsafe {
                    AsyncFd::register_with_interest(dup, Interest::WRITABLE)?
                }),
                Err(e) if is_out_of_descriptors(&e) => {
                    Room::Retry(Box::pin(tokio::time::sleep(FULL_RETRY)))
                }
                Err(e) => return Poll::Ready(Err(e)),
            });
        }
        match self.room.as_mut() {
            Some(Room::Registered(dup)) => {
                // Registering reports the socket's current state, so room that appeared
                // between the failed write and the registration is not missed.
                let mut guard = ready!(dup.poll_write_ready(cx))?;
                guard.clear_ready();
            }
            Some(Room::Retry(sleep)) => {
                ready!(sleep.as_mut().poll(cx));
                self.room = None;
            }
            None => {}
        }
        Poll::Ready(Ok(()))
    }

    fn duplicate(&self) -> io::Result<OwnedFd> {
        self.socket.get_ref().as_fd().try_clone_to_owned()
    }
}

fn is_out_of_descriptors(e: &io::Error) -> bool {
    use nix::errno::Errno;
    const EMFILE: i32 = Errno::EMFILE as i32;
    const ENFILE: i32 = Errno::ENFILE as i32;
    matches!(e.raw_os_error(), Some(EMFILE | ENFILE))
}

impl AsyncRead for WorkerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let mut guard = ready!(this.socket.poll_read_ready(cx))?;
            let room = buf.remaining().min(READ_AT_MOST);
            let into = buf.initialize_unfilled_to(room);
            let asked = into.len();
            match guard.try_io(|socket| socket.get_ref().read(into)) {
                Ok(Ok(n)) => {
                    if n < asked {
                        // A short read emptied the socket: the next read would only find
                        // nothing, so wait for the next edge instead (as tokio's sockets do).
                        guard.clear_ready();
                    }
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                // Would block: readiness is cleared; wait for the next edge.
                Err(_) => {}
            }
        }
    }
}

impl AsyncWrite for WorkerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            match this.socket.get_ref().write(data) {
                Ok(n) => {
                    this.room = None;
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(this.poll_room(cx))?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(())) // nothing is buffered here
    }

    /// Like the socket it replaces, closing the writing half does nothing: a worker learns
    /// that the broker is done from `Shutdown`, or from the socket closing when it is dropped.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_go_both_ways_and_a_full_socket_waits_for_room() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let mut stream = WorkerStream::new(ours).unwrap();
        let sent: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        // Fill the socket while nobody reads it.
        let mut filled = 0;
        while let Ok(n) = stream.socket.get_ref().write(&sent[filled..]) {
            filled += n;
        }
        let first = std::future::poll_fn(|cx| {
            Poll::Ready(Pin::new(&mut stream).poll_write(cx, &sent[filled..]))
        })
        .await;
        assert!(first.is_pending(), "a full socket took more bytes");
        assert!(
            matches!(stream.room, Some(Room::Registered(_))),
            "a full socket is waited on through a writability registration"
        );
        let expected = sent.clone();
        let reader = std::thread::spawn(move || {
            let mut got = vec![0; expected.len()];
            theirs.read_exact(&mut got).unwrap();
            assert!(got == expected, "the bytes arrived changed");
            theirs.write_all(b"done").unwrap();
        });
        stream.write_all(&sent[filled..]).await.unwrap();
        assert!(
            stream.room.is_none(),
            "the registration outlived the full socket"
        );
        let mut answer = [0; 4];
        stream.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"done");
        reader.join().unwrap();
        let mut rest = Vec::new();
        assert_eq!(stream.read_to_end(&mut rest).await.unwrap(), 0);
    }
}
