//! Private namespaces for workers: an empty network namespace (only a loopback device that
//! is down, so there is nothing to connect to), an empty IPC namespace, and a mount namespace
//! in which the readable directory is bind-mounted read-only over itself. A PID namespace is
//! left out: it would only apply to children the worker never has, and it would complicate the
//! pidfds and reaping the broker and zygote rely on.
//!
//! Making a network namespace costs the kernel about half a millisecond (and as much again to
//! tear it down), an IPC namespace tens of microseconds, and a mount namespace a copy of every
//! mount plus the three mounts (about 4 % of a session's creation, and its teardown at exit).
//! So the broker makes one of each at start-up ([`shared_namespaces`],
//! [`shared_mount_namespace`]) and every worker joins them: a worker's network and IPC are
//! then as empty and its view of the files as read-only, and a session's start is that much
//! faster. Workers sharing them could only reach each other through sockets, SysV IPC or
//! message queues, which the seccomp filter refuses to make or open, or by changing the
//! mounts, which needs `CAP_SYS_ADMIN` (dropped) and `mount` (refused). Without a shared one
//! (its descriptor not inherited, or made for another directory), each worker makes its own.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use protocol::launch::{ENV_IPCNS_FD, ENV_MNTNS_DIR, ENV_MNTNS_FD, ENV_NETNS_FD};

/// The namespaces made once and shared: each kind with the variable naming its descriptor.
const SHARED: [(CloneFlags, &str, &str); 2] = [
    (CloneFlags::CLONE_NEWNET, ENV_NETNS_FD, "net"),
    (CloneFlags::CLONE_NEWIPC, ENV_IPCNS_FD, "ipc"),
];

/// Enters the namespaces; needs `CAP_SYS_ADMIN` (root), so it runs before privileges drop.
pub fn enter(readable: &Path) -> nix::Result<()> {
    let mut fresh = CloneFlags::empty();
    for (kind, env, _) in SHARED {
        match take_inherited(env) {
            Some(fd) => setns(&fd, kind)?,
            None => fresh |= kind,
        }
    }
    let made_for = std::env::var_os(ENV_MNTNS_DIR);
    let shared_mounts = take_inherited(ENV_MNTNS_FD)
        .filter(|_| made_for.is_some_and(|made_for| Some(made_for) == identity(readable)));
    match shared_mounts {
        Some(mounts) => {
            if !fresh.is_empty() {
                unshare(fresh)?;
            }
            join_mounts(&mounts)
        }
        None => {
            unshare(fresh | CloneFlags::CLONE_NEWNS)?;
            mount_readable(readable)
        }
    }
}

/// `DEV:INODE:PATH` of a directory: the shared mount namespace shows it only while the path
/// still names the directory it was made for (an app directory replaced since start-up would
/// otherwise be seen as it was, through the bind mount).
fn identity(dir: &Path) -> Option<std::ffi::OsString> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).ok()?;
    let mut id = std::ffi::OsString::from(format!("{}:{}:", meta.dev(), meta.ino()));
    id.push(dir);
    Some(id)
}

/// The inherited namespace descriptor named in `env`, owned (closed once joined or dropped).
fn take_inherited(env: &str) -> Option<OwnedFd> {
    // SAFETY: the broker handed this descriptor down for this purpose and nothing else in the
    // worker owns it; only `enter` takes it, once (`inherited_fds` only keeps it open).
    inherited_fd(env).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Joins a mount namespace. That moves the root and working directory to its root, so the
/// working directory is found again by name, inside it.
fn join_mounts(ns: &OwnedFd) -> nix::Result<()> {
    let cwd = std::env::current_dir().ok();
    setns(ns, CloneFlags::CLONE_NEWNS)?;
    if let Some(cwd) = cwd {
        let _ = std::env::set_current_dir(cwd);
    }
    Ok(())
}

/// In a mount namespace of this process's own: `readable` bind-mounted read-only over itself,
/// and nothing mounted here reaching the namespace it was copied from.
fn mount_readable(readable: &Path) -> nix::Result<()> {
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
        .map(|(_, env, _)| *env)
        .chain([ENV_MNTNS_FD])
        .filter_map(inherited_fd)
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
        hand_down(OwnedFd::from(empty?), env)?;
    }
    Ok(())
}

/// Makes the mount namespace every worker whose readable directory is `readable` joins, and
/// hands it down ([`ENV_MNTNS_FD`], [`ENV_MNTNS_DIR`]). The process returns to its own mount
/// namespace and working directory. Same conditions as [`shared_namespaces`].
pub fn shared_mount_namespace(readable: &Path) -> nix::Result<()> {
    let path = "/proc/thread-self/ns/mnt";
    let made_for = identity(readable).ok_or(nix::Error::ENOENT)?;
    let own = OwnedFd::from(std::fs::File::open(path).map_err(io)?);
    unshare(CloneFlags::CLONE_NEWNS)?;
    let made = mount_readable(readable).and_then(|()| std::fs::File::open(path).map_err(io));
    join_mounts(&own)?;
    hand_down(OwnedFd::from(made?), ENV_MNTNS_FD)?;
    std::env::set_var(ENV_MNTNS_DIR, made_for);
    Ok(())
}

/// Keeps `ns` open for the process's life, inherited across exec by the zygote and exec'd
/// workers (std opens it close-on-exec), and names it in `env`.
fn hand_down(ns: OwnedFd, env: &str) -> nix::Result<()> {
    // SAFETY: `ns` is a descriptor we own and keep open for the process's life.
    let fd = unsafe { BorrowedFd::borrow_raw(ns.as_raw_fd()) };
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )?;
    std::env::set_var(env, ns.into_raw_fd().to_string());
    Ok(())
}

fn io(e: std::io::Error) -> nix::Error {
    e.raw_os_error()
        .map_or(nix::Error::EIO, nix::Error::from_raw)
}
