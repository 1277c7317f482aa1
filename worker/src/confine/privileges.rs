//! No privileges: the worker user (when the broker is root), every capability dropped from
//! every set (bounding and ambient included, so none can come back), and `PR_SET_NO_NEW_PRIVS`
//! (no set-uid binary or file capability can raise them again, and seccomp needs it).

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
    // The bounding set can only shrink while CAP_SETPCAP is still held.
    for cap in caps::all() {
        if caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(|e| format!("cannot drop {cap} from the bounding set: {e}"))?;
        }
    }
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
