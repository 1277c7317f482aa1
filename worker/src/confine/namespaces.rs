//! Private namespaces for one worker: an empty network namespace (only a loopback device that
//! is down, so there is nothing to connect to), an empty IPC namespace, and a new mount
//! namespace in which the readable directory is bind-mounted read-only over itself. A PID
//! namespace is left out: it would only apply to children the worker never has, and it would
//! complicate the pidfds and reaping the broker and zygote rely on.
//!
//! Making a network namespace costs the kernel about half a millisecond (and as much again to
//! tear it down), an IPC namespace tens of microseconds, so the broker makes one empty
//! namespace of each at start-up ([`shared_namespaces`]) and every worker joins them: a
//! worker's network and IPC are then as empty, and a session's start is that much faster.
//! Workers sharing them could only reach each other through sockets, SysV IPC or message
//! queues, and the seccomp filter refuses every call that makes or opens one. Without a
//! shared one (its descriptor not inherited), each worker makes its own.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use protocol::launch::{ENV_IPCNS_FD, ENV_NETNS_FD};

/// The namespaces made once and shared: each kind with the variable naming its descriptor.
const SHARED: [(CloneFlags, &str, &str); 2] = [
    (CloneFlags::CLONE_NEWNET, ENV_NETNS_FD, "net"),
    (CloneFlags::CLONE_NEWIPC, ENV_IPCNS_FD, "ipc"),
];

/// Enters the namespaces; needs `CAP_SYS_ADMIN` (root), so it runs before privileges drop.
pub fn enter(readable: &Path) -> nix::Result<()> {
    let mut fresh = CloneFlags::CLONE_NEWNS;
    for (kind, env, _) in SHARED {
        match inherited_fd(env) {
            Some(fd) => {
                // SAFETY: the broker handed this descriptor down for this purpose and nothing
                // else in the worker owns it; taking ownership closes it once joined.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                setns(&fd, kind)?;
            }
            None => fresh |= kind,
        }
    }
    unshare(fresh)?;
    // Nothing mounted here may reach the host's namespace.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )?;
    mount(
        Some(readable),
        readable,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )?;
    mount(
        None::<&str>,
        readable,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )
}

fn inherited_fd(env: &str) -> Option<RawFd> {
    std::env::var(env).ok()?.parse().ok()
}

/// The descriptors a zygote or an exec'd worker is meant to inherit beyond stdio: the shared
/// namespaces', if any (see [`super::inherited`]).
pub fn inherited_fds() -> Vec<RawFd> {
    SHARED
        .iter()
        .filter_map(|(_, env, _)| inherited_fd(env))
        .collect()
}

/// Makes the empty network and IPC namespaces every worker joins, and hands them down to the
/// zygote and workers (inheritable descriptors named in [`ENV_NETNS_FD`] and [`ENV_IPCNS_FD`]).
/// The calling thread returns to its own namespaces. Call while the process has one thread (it
/// sets environment variables); needs `CAP_SYS_ADMIN`.
pub fn shared_namespaces() -> nix::Result<()> {
    for (kind, env, name) in SHARED {
        let path = format!("/proc/thread-self/ns/{name}");
        let own = OwnedFd::from(std::fs::File::open(&path).map_err(io)?);
        unshare(kind)?;
        let empty = std::fs::File::open(&path).map_err(io);
        setns(&own, kind)?;
        let empty = OwnedFd::from(empty?);
        // Inherited across exec by the zygote and exec'd workers (std opens it close-on-exec).
        // SAFETY: `empty` is a descriptor we own and keep open for the process's life.
        let fd = unsafe { BorrowedFd::borrow_raw(empty.as_raw_fd()) };
        nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )?;
        std::env::set_var(env, empty.into_raw_fd().to_string());
    }
    Ok(())
}

fn io(e: std::io::Error) -> nix::Error {
    e.raw_os_error()
        .map_or(nix::Error::EIO, nix::Error::from_raw)
}
