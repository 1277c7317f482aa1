//! The broker's worker socket: where newly started workers connect, and where they prove who
//! they are.
//!
//! Choice (ARCHITECTURE.md 4 and 8): a filesystem-path local socket (interprocess crate) inside a fresh
//! directory that only the broker's user can enter (mode 0700, removed when the broker exits).
//! An abstract-namespace name would have no permissions at all. On top of that every worker
//! must open with a [`Hello`] carrying the one-time token the broker handed to exactly that
//! worker at spawn, its protocol version, and its pid, which must match the socket's peer
//! credentials (SO_PEERCRED, checked by the kernel) and, by the caller, the pid it spawned.
//! Anything else (wrong token, garbage, an oversized length prefix, silence) is logged and
//! dropped without touching any session.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use interprocess::local_socket::tokio::{prelude::*, Listener, Stream};
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use parking_lot::{Mutex, MutexGuard};
use protocol::codec::FrameCodec;
use protocol::ipc::{BrokerToWorker, Hello, WorkerToBroker};
use protocol::launch::Token;
use protocol::limits::TOKEN_LEN;
use protocol::PROTOCOL_VERSION;
use tokio::sync::oneshot;
use tokio_util::codec::Framed;

use crate::worker_stream::WorkerStream;

/// The broker's end of one worker's socket.
pub type Link = Framed<WorkerStream, FrameCodec<WorkerToBroker, BrokerToWorker>>;

/// How long a connection may stay silent before its hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// An authenticated worker connection, with the pid the kernel vouches for.
pub struct Arrival {
    pub link: Link,
    pub pid: i32,
}

type Expected = Arc<Mutex<HashMap<Token, oneshot::Sender<Arrival>>>>;

pub struct WorkerSocket {
    // Removing the directory on drop takes the socket file with it.
    _dir: tempfile::TempDir,
    path: PathBuf,
    expected: Expected,
}

impl WorkerSocket {
    /// Creates the private directory and socket, and starts accepting.
    pub fn bind() -> io::Result<WorkerSocket> {
        let dir = tempfile::Builder::new().prefix("luabroker-").tempdir()?;
        // tempfile creates it 0700 already; say so explicitly since it is the security boundary.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )?;
        let path = dir.path().join("workers.sock");
        let name = path.as_path().to_fs_name::<GenericFilePath>()?;
        let listener = ListenerOptions::new().name(name).create_tokio()?;
        let expected: Expected = Arc::default();
        tokio::spawn(accept_loop(listener, expected.clone()));
        Ok(WorkerSocket {
            _dir: dir,
            path,
            expected,
        })
    }

    /// Removes the socket's directory now (the process may exit without dropping us).
    pub fn close(&self) {
        let _ = std::fs::remove_dir_all(self._dir.path());
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Registers a fresh one-time token; the receiver yields the worker that presents it.
    pub fn invite(&self) -> io::Result<(Token, oneshot::Receiver<Arrival>)> {
        let mut token = [0u8; TOKEN_LEN];
        getrandom::fill(&mut token).map_err(io::Error::other)?;
        let (tx, rx) = oneshot::channel();
        self.lock().insert(token, tx);
        Ok((token, rx))
    }

    /// Withdraws a token whose worker never came (it died, or timed out).
    pub fn withdraw(&self, token: &Token) {
        self.lock().remove(token);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Token, oneshot::Sender<Arrival>>> {
        self.expected.lock()
    }
}

async fn accept_loop(listener: Listener, expected: Expected) {
    let mut errors = crate::guarded_listener::BurstLog::new("worker socket accept");
    loop {
        match listener.accept().await {
            Ok(stream) => {
                errors.ok();
                tokio::spawn(admit(stream, expected.clone()));
            }
            Err(e) => {
                // Usually EMFILE: back off rather than spin; logged once per burst.
                errors.failed(&e);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Checks one connection's hello and hands the link to whoever expects its token.
async fn admit(stream: Stream, expected: Expected) {
    let peer_pid = match stream.peer_creds().map(|c| c.pid()) {
        Ok(Some(pid)) => pid,
        _ => {
            tracing::warn!("refused a worker connection: no peer credentials");
            return;
        }
    };
    let Stream::UdSocket(stream) = stream;
    let stream = match std::os::fd::OwnedFd::try_from(stream)
        .and_then(|fd| WorkerStream::new(std::os::unix::net::UnixStream::from(fd)))
    {
        Ok(stream) => stream,
        Err(e) => {
            tracing::warn!(peer_pid, "refused a worker connection: {e}");
            return;
        }
    };
    let mut link: Link = Framed::new(stream, FrameCodec::default());
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, link.next()).await {
        Ok(Some(Ok(WorkerToBroker::Hello(hello)))) => hello,
        Ok(Some(Ok(_))) => return refuse(peer_pid, "first message is not a hello"),
        Ok(Some(Err(e))) => return refuse(peer_pid, &e.to_string()),
        Ok(None) => return refuse(peer_pid, "closed before its hello"),
        Err(_) => return refuse(peer_pid, "no hello within 5s"),
    };
    if let Err(why) = check_hello(&hello, peer_pid) {
        return refuse(peer_pid, &why);
    }
    let waiter = expected.lock().remove(&hello.token);
    match waiter {
        Some(tx) => {
            let _ = tx.send(Arrival {
                link,
                pid: peer_pid,
            });
        }
        None => refuse(peer_pid, "unknown or already used token"),
    }
}

fn check_hello(hello: &Hello, peer_pid: i32) -> Result<(), String> {
    if hello.version != PROTOCOL_VERSION {
        return Err(format!(
            "worker speaks protocol version {}, this broker speaks {PROTOCOL_VERSION} \
             (a worker from another build?)",
            hello.version
        ));
    }
    if hello.pid as i32 != peer_pid {
        return Err(format!(
            "hello claims pid {} but the socket's peer is pid {peer_pid}",
            hello.pid
        ));
    }
    Ok(())
}

fn refuse(peer_pid: i32, why: &str) {
    tracing::warn!(peer_pid, "refused a worker connection: {why}");
}
