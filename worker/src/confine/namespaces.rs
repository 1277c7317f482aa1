//! Private namespaces for one worker: a new network namespace (only a loopback device that is
//! down, so there is nothing to connect to), a new IPC namespace, and a new mount namespace in
//! which the app directory is bind-mounted read-only over itself. A PID namespace is left out:
//! it would only apply to children the worker never has, and it would complicate the pidfds
//! and reaping the broker and zygote rely on.

use std::path::Path;

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// Enters the namespaces; needs `CAP_SYS_ADMIN` (root), so it runs before privileges drop.
pub fn enter(app_dir: &Path) -> nix::Result<()> {
    unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWIPC)?;
    // Nothing mounted here may reach the host's namespace.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )?;
    mount(
        Some(app_dir),
        app_dir,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )?;
    mount(
        None::<&str>,
        app_dir,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )
}
