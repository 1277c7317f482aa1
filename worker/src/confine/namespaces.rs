//! Private namespaces for one worker: an empty network namespace (only a loopback device that
//! is down, so there is nothing to connect to), a new IPC namespace, and a new mount namespace
//! in which the readable directory is bind-mounted read-only over itself. A PID namespace is
//! left out: it would only apply to children the worker never has, and it would complicate the
//! pidfds and reaping the broker and zygote rely on.
//!
//! Making a network namespace costs the kernel about half a millisecond (and as much again to
//! tear it down), so the broker makes one empty namespace at start-up ([`shared_network`]) and
//! every worker joins it: a worker's network is then as empty, and a session's start is that
//! much faster. Workers sharing it could only reach each other through sockets, which the
//! seccomp filter refuses to create. Without the shared one (its descriptor not inherited),
//! each worker makes its own.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use protocol::launch::ENV_NETNS_FD;

/// Enters the namespaces; needs `CAP_SYS_ADMIN` (root), so it runs before privileges drop.
pub fn enter(readable: &Path) -> nix::Result<()> {
    let mut fresh = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWIPC;
    match shared_network_fd() {
        Some(fd) => {
            // SAFETY: the broker handed this descriptor down for this purpose and nothing else
            // in the worker owns it; taking ownership closes it once joined.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            setns(&fd, CloneFlags::CLONE_NEWNET)?;
        }
        None => fresh |= CloneFlags::CLONE_NEWNET,
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

fn shared_network_fd() -> Option<RawFd> {
    std::env::var(ENV_NETNS_FD).ok()?.parse().ok()
}

/// The descriptors a zygote or an exec'd worker is meant to inherit beyond stdio: the shared
/// network namespace's, if any (see [`super::inherited`]).
pub fn inherited_fds() -> Vec<RawFd> {
    shared_network_fd().into_iter().collect()
}

/// Makes the empty network namespace every worker joins, and hands it down to the zygote and
/// workers (an inheritable descriptor named in [`ENV_NETNS_FD`]). The calling thread returns
/// to its own namespace. Call while the process has one thread (it sets an environment
/// variable); needs `CAP_SYS_ADMIN`.
pub fn shared_network() -> nix::Result<()> {
    let own = OwnedFd::from(std::fs::File::open("/proc/thread-self/ns/net").map_err(io)?);
    unshare(CloneFlags::CLONE_NEWNET)?;
    let empty = std::fs::File::open("/proc/thread-self/ns/net").map_err(io);
    setns(&own, CloneFlags::CLONE_NEWNET)?;
    let empty = OwnedFd::from(empty?);
    // Inherited across exec by the zygote and exec'd workers (std opens it close-on-exec).
    // SAFETY: `empty` is a descriptor we own and keep open for the process's life.
    let fd = unsafe { BorrowedFd::borrow_raw(empty.as_raw_fd()) };
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )?;
    std::env::set_var(ENV_NETNS_FD, empty.into_raw_fd().to_string());
    Ok(())
}

fn io(e: std::io::Error) -> nix::Error {
    e.raw_os_error()
        .map_or(nix::Error::EIO, nix::Error::from_raw)
}
