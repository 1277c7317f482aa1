//! The worker's OS-level confinement, applied once its VM is built and before any app code runs
//! (after the zygote fork, in `process.rs`), so that a session that escapes Lua still cannot
//! open a file for writing, a socket, or another process. Layers, in the order they go on:
//! 1. [`namespaces`]: private network (nothing to connect to), mount (the readable directory
//!    read-only) and IPC namespaces; needs root or `CAP_SYS_ADMIN`;
//! 2. [`fence`]: a Landlock ruleset prepared (it opens the readable directory);
//! 3. [`privileges`]: the unprivileged user, every capability dropped, `PR_SET_NO_NEW_PRIVS`;
//! 4. the Landlock ruleset enforced: reading under the readable directory is the only file
//!    access left;
//! 5. [`seccomp`]: the syscall allowlist, with [`sigsys`] reporting a violation to the broker.
//!
//! The readable directory is `StartSession::readable_dir`: the whole site with `--dir` (its
//! `lua/`, `viewdefs/` and whatever their symlinks lead to inside it), else the app directory.
//! `require`, viewdefs and hot reload read files there at run time, read-only, which all three
//! fences allow; nothing outside it is readable.
//!
//! Which layers a worker applies is the broker's [`SandboxPolicy`], decided once at start-up by
//! [`probe`] (what this kernel and this user allow) and `--sandbox` (ARCHITECTURE.md, "Sandbox").

pub mod fence;
pub mod inherited;
pub mod namespaces;
mod narrowing;
pub mod privileges;
pub mod seccomp;
pub mod sigsys;
#[cfg(feature = "test-hooks")]
pub mod test_hooks;

use std::os::fd::RawFd;
use std::path::Path;

use protocol::sandbox::SandboxPolicy;

/// Applies `policy` to this process. `readable` is the directory the app may read, `report_fd`
/// the broker socket (where a seccomp violation is reported). An error
/// names the layer that failed; the worker then reports `Failed` and exits rather than run app
/// code less confined than asked.
pub fn apply(policy: &SandboxPolicy, readable: &Path, report_fd: RawFd) -> Result<(), String> {
    let started = std::time::Instant::now();
    privileges::no_core_dumps()?;
    load_time_zone();
    if policy.namespaces {
        namespaces::enter(readable).map_err(|e| format!("namespaces: {e}"))?;
    }
    let fence = if policy.landlock {
        Some(fence::Fence::prepare(readable).map_err(|e| format!("landlock: {e}"))?)
    } else {
        None
    };
    privileges::drop_all(policy.user).map_err(|e| format!("privileges: {e}"))?;
    if let Some(fence) = fence {
        fence.enforce().map_err(|e| format!("landlock: {e}"))?;
    }
    if policy.seccomp {
        sigsys::arm(report_fd);
        seccomp::install().map_err(|e| format!("seccomp: {e}"))?;
    }
    tracing::debug!(us = started.elapsed().as_micros() as u64, "confined");
    Ok(())
}

/// Work every worker's [`apply`] would repeat, done once in the zygote before it forks: the
/// time zone loaded, the violation reports encoded, the bounding set emptied and, when workers
/// get the seccomp layer, the zygote's own filter installed (see [`seccomp`]); forked workers
/// inherit all of it. None of it widens what a worker may do: [`apply`] still applies every
/// layer in full.
pub fn zygote(seccomp_layer: bool) -> Result<(), String> {
    load_time_zone();
    sigsys::prepare_reports();
    privileges::no_core_dumps()?;
    privileges::drop_bounding_set()?;
    if seccomp_layer {
        seccomp::install_for_zygote().map_err(|e| format!("seccomp: {e}"))?;
        seccomp::prebuild().map_err(|e| format!("seccomp: {e}"))?;
    }
    Ok(())
}

/// Lua's `os.date` converts with `localtime_r`, which reads the time zone file the first time
/// it runs; that file is outside the readable directory, so it is read now, before the fence.
fn load_time_zone() {
    // SAFETY: `time(NULL)` only returns the time; `localtime_r` writes into the `tm` we own.
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&now, &mut tm);
    }
}

/// Which layers this kernel and this user allow, as found by trying each in a throwaway
/// child process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Available {
    /// The worker user, no capabilities and NO_NEW_PRIVS took (without them no worker starts).
    pub privileges: bool,
    pub namespaces: bool,
    pub landlock: bool,
    pub user_switch: bool,
    pub seccomp: bool,
    /// The worker user, fenced as a worker is, could read the app's `main.lua` and list the
    /// readable directory (and the viewdefs directory, when there is one).
    pub app_readable: bool,
}

/// What a worker reads, for [`probe`] to check it can.
pub struct AppFiles<'a> {
    /// The directory holding `main.lua`.
    pub app_dir: &'a Path,
    /// The viewdefs directory (it may not exist).
    pub viewdefs_dir: &'a Path,
    /// What the fences leave readable (see [`apply`]).
    pub readable: &'a Path,
}

/// How long the probe child may take; one that has not finished by then is killed and every
/// layer counts as missing (a clear start-up error under `--sandbox strict`).
const PROBE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Forks a child that applies every layer as a worker would (switching to `user`) and then
/// reads the app, and reports which layers took and whether the app was readable. Call it
/// while the process has one thread (before any runtime starts): the child runs ordinary code
/// after the fork. `None` when the probe itself failed (no fork, or the child timed out).
pub fn probe(user: Option<protocol::sandbox::WorkerUser>, app: &AppFiles) -> Option<Available> {
    const NS: i32 = 1;
    const LANDLOCK: i32 = 2;
    const USER: i32 = 4;
    const SECCOMP: i32 = 8;
    const APP: i32 = 16;
    const PRIVILEGES_FAILED: i32 = 32;
    // SAFETY: the caller guarantees this process has a single thread, so the child is a
    // complete copy of it and may allocate and run any code before it exits.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            let mut took = 0;
            if namespaces::enter(app.readable).is_ok() {
                took |= NS;
            }
            let fence = fence::Fence::prepare(app.readable).ok();
            match privileges::drop_all(user) {
                Ok(()) if user.is_some() => took |= USER,
                Ok(()) => {}
                Err(_) => took |= PRIVILEGES_FAILED,
            }
            if fence.is_some_and(|f| f.enforce().is_ok()) {
                took |= LANDLOCK;
            }
            if can_read(app) {
                took |= APP;
            }
            if seccomp::install().is_ok() {
                took |= SECCOMP;
            }
            // SAFETY: `_exit` ends the child at once, running nothing of the parent's
            // (no atexit handlers, no buffered output flushed twice).
            unsafe { libc::_exit(took) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            let took = wait_with_deadline(child, PROBE_DEADLINE)?;
            Some(Available {
                privileges: took & PRIVILEGES_FAILED == 0,
                namespaces: took & NS != 0,
                landlock: took & LANDLOCK != 0,
                user_switch: took & USER != 0,
                seccomp: took & SECCOMP != 0,
                app_readable: took & APP != 0,
            })
        }
        Err(_) => None,
    }
}

/// What a worker reads first: `main.lua`, and listings of the readable and viewdefs
/// directories.
fn can_read(app: &AppFiles) -> bool {
    let listable = |dir: &Path| std::fs::read_dir(dir).is_ok();
    std::fs::read(app.app_dir.join("main.lua")).is_ok()
        && listable(app.app_dir)
        && listable(app.readable)
        && (!app.viewdefs_dir.exists() || listable(app.viewdefs_dir))
}

/// The probe child's exit code, or `None` (the child killed and reaped) past `deadline`.
fn wait_with_deadline(child: nix::unistd::Pid, deadline: std::time::Duration) -> Option<i32> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let until = std::time::Instant::now() + deadline;
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Some(code),
            Ok(WaitStatus::StillAlive) if std::time::Instant::now() < until => {
                // Start-up only, once: a short poll is simpler than a pidfd for one child.
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Ok(WaitStatus::StillAlive) => {
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                let _ = waitpid(child, None);
                return None;
            }
            Ok(_) | Err(_) => return None,
        }
    }
}
