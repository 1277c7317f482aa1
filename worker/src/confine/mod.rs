//! The worker's OS-level confinement, applied once its VM is built and before any app code runs
//! (after the zygote fork, in `process.rs`), so that a session that escapes Lua still cannot
//! open a file for writing, a socket, or another process. Layers, in the order they go on:
//! 1. [`namespaces`]: private network (nothing to connect to), mount (the app directory
//!    read-only) and IPC namespaces; needs root or `CAP_SYS_ADMIN`;
//! 2. [`fence`]: a Landlock ruleset prepared (it opens the app directory);
//! 3. [`privileges`]: the unprivileged user, every capability dropped, `PR_SET_NO_NEW_PRIVS`;
//! 4. the Landlock ruleset enforced: reading under the app directory is the only file access;
//! 5. [`seccomp`]: the syscall allowlist, with [`sigsys`] reporting a violation to the broker.
//!
//! Which layers a worker applies is the broker's [`SandboxPolicy`], decided once at start-up by
//! [`probe`] (what this kernel and this user allow) and `--sandbox` (ARCHITECTURE.md, "Sandbox").

pub mod fence;
pub mod namespaces;
pub mod privileges;
pub mod seccomp;
pub mod sigsys;
#[cfg(feature = "test-hooks")]
pub mod test_hooks;

use std::os::fd::RawFd;
use std::path::Path;

use protocol::sandbox::SandboxPolicy;

/// Applies `policy` to this process. `app_dir` is what the app may read. An error names the
/// layer that failed; the worker then reports `Failed` and exits rather than run app code less
/// confined than asked.
pub fn apply(policy: &SandboxPolicy, app_dir: &Path) -> Result<(), String> {
    // Found first: once the user changes, the process is not dumpable and /proc/self/fd is
    // no longer its own to read.
    let report_fd = broker_socket();
    privileges::no_core_dumps()?;
    if policy.namespaces {
        namespaces::enter(app_dir).map_err(|e| format!("namespaces: {e}"))?;
    }
    let fence = if policy.landlock {
        Some(fence::Fence::prepare(app_dir).map_err(|e| format!("landlock: {e}"))?)
    } else {
        None
    };
    privileges::drop_all(policy.user).map_err(|e| format!("privileges: {e}"))?;
    if let Some(fence) = fence {
        fence.enforce().map_err(|e| format!("landlock: {e}"))?;
    }
    if policy.seccomp {
        let report_fd = report_fd.ok_or("seccomp: no broker socket to report on")?;
        sigsys::arm(report_fd);
        seccomp::install().map_err(|e| format!("seccomp: {e}"))?;
    }
    Ok(())
}

/// The broker link: the worker's one socket beyond stdio (the runtime's other descriptors are
/// an epoll and an eventfd). Found by its kind rather than handed down, so the worker loop
/// need not expose its stream's descriptor; above 2, since stderr may be a socket (a journal).
fn broker_socket() -> Option<RawFd> {
    std::fs::read_dir("/proc/self/fd")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let fd: RawFd = entry.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(entry.path()).ok()?;
            (fd > 2 && target.to_str()?.starts_with("socket:")).then_some(fd)
        })
        .max()
}

/// Which layers this kernel and this user allow, as found by trying each in a throwaway
/// child process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Available {
    pub namespaces: bool,
    pub landlock: bool,
    pub user_switch: bool,
    pub seccomp: bool,
    /// The worker user could read the app's `main.lua` and list its directory.
    pub app_readable: bool,
}

/// Forks a child that tries every layer over `app_dir` (the temporary directory when the app
/// is not on disk yet) as a worker would, switching to `user`, and reports which took. Call it
/// while the process has one thread (before any runtime starts): the child runs ordinary code
/// after the fork.
pub fn probe(user: Option<protocol::sandbox::WorkerUser>, app_dir: Option<&Path>) -> Available {
    const NS: i32 = 1;
    const LANDLOCK: i32 = 2;
    const USER: i32 = 4;
    const SECCOMP: i32 = 8;
    const APP: i32 = 16;
    let dir = app_dir.map_or_else(std::env::temp_dir, Path::to_path_buf);
    // SAFETY: the caller guarantees this process has a single thread, so the child is a
    // complete copy of it and may allocate and run any code before it exits.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            let mut took = 0;
            if namespaces::enter(&dir).is_ok() {
                took |= NS;
            }
            let fence = fence::Fence::prepare(&dir).ok();
            if privileges::drop_all(user).is_ok() && user.is_some() {
                took |= USER;
            }
            let readable = std::fs::read_dir(&dir).is_ok()
                && std::fs::File::open(dir.join("main.lua")).is_ok();
            if app_dir.is_none() || readable {
                took |= APP;
            }
            if fence.is_some_and(|f| f.enforce().is_ok()) {
                took |= LANDLOCK;
            }
            if seccomp::install().is_ok() {
                took |= SECCOMP;
            }
            // SAFETY: `_exit` ends the child at once, running nothing of the parent's
            // (no atexit handlers, no buffered output flushed twice).
            unsafe { libc::_exit(took) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            let took = match nix::sys::wait::waitpid(child, None) {
                Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => code,
                _ => 0,
            };
            Available {
                namespaces: took & NS != 0,
                landlock: took & LANDLOCK != 0,
                user_switch: took & USER != 0,
                seccomp: took & SECCOMP != 0,
                app_readable: took & APP != 0,
            }
        }
        Err(_) => Available::default(),
    }
}
