//! No privileges: the worker user (when the broker is root), every capability dropped from
//! every set (bounding and ambient included, so none can come back; the bounding set only when
//! there is a capability to drop it with), and `PR_SET_NO_NEW_PRIVS`
//! (no set-uid binary or file capability can raise them again, and seccomp needs it).

use std::sync::atomic::{AtomicBool, Ordering};

use caps::CapSet;
use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
use protocol::sandbox::WorkerUser;

/// A crash must not leave a core file of a session's memory behind; a violation (SIGSYS)
/// would otherwise dump one.
pub fn no_core_dumps() -> Result<(), String> {
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)
        .map_err(|e| format!("cannot disable core dumps: {e}"))
}

/// Switches to `user` (if any), then drops every capability and sets `PR_SET_NO_NEW_PRIVS`.
/// Changing user clears the parent-death signal, so it is armed again here.
pub fn drop_all(user: Option<WorkerUser>) -> Result<(), String> {
    drop_bounding_set()?;
    if let Some(WorkerUser { uid, gid }) = user {
        let parent = nix::unistd::getppid();
        let (uid, gid) = (Uid::from_raw(uid), Gid::from_raw(gid));
        setgroups(&[gid]).map_err(|e| format!("setgroups: {e}"))?;
        setresgid(gid, gid, gid).map_err(|e| format!("setresgid: {e}"))?;
        setresuid(uid, uid, uid).map_err(|e| format!("setresuid: {e}"))?;
        crate::process::die_with_parent(parent.as_raw())?;
    }
    for set in [
        CapSet::Ambient,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        caps::clear(None, set).map_err(|e| format!("cannot clear {set:?} capabilities: {e}"))?;
    }
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("PR_SET_NO_NEW_PRIVS: {e}"))
}

/// Empties the bounding set (which only limits what an exec could grant). The bounding set can
/// only shrink while CAP_SETPCAP is held (root). A process without it (a broker that is not
/// root) has no capabilities to lose, and NO_NEW_PRIVS keeps an exec from granting any, so its
/// bounding set is left as it is. The zygote empties its own once, so that forked workers find
/// it empty (each drop commits new credentials: ≈ 40 of them per worker otherwise), and they do
/// not read it again: [`EMPTIED`] comes with the memory a fork copies, and a bounding set can
/// never grow back (reading it is one call per capability, about 1 % of a session's creation).
pub fn drop_bounding_set() -> Result<(), String> {
    if EMPTIED.load(Ordering::Relaxed) {
        return Ok(());
    }
    let can_shrink =
        caps::has_cap(None, CapSet::Effective, caps::Capability::CAP_SETPCAP).unwrap_or(false);
    if !can_shrink {
        return Ok(());
    }
    let bounding = caps::read(None, CapSet::Bounding)
        .map_err(|e| format!("cannot read the bounding set: {e}"))?;
    for cap in bounding {
        caps::drop(None, CapSet::Bounding, cap)
            .map_err(|e| format!("cannot drop {cap} from the bounding set: {e}"))?;
    }
    EMPTIED.store(true, Ordering::Relaxed);
    Ok(())
}

/// Set once this process's bounding set is empty; a process forked after that inherits both.
static EMPTIED: AtomicBool = AtomicBool::new(false);
