//! What the broker asks of each worker's confinement (sent in [`crate::ipc::StartSession`]),
//! and how a worker's sandbox violation is named. The worker applies the layers in
//! `worker/src/confine/`; the broker decides them once at start-up (ARCHITECTURE.md, "Sandbox").

use serde::{Deserialize, Serialize};

/// The layers a worker applies once its VM is built, before any app code runs.
/// `PR_SET_NO_NEW_PRIVS` and dropping every capability are not optional: every worker gets them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxPolicy {
    /// Switch to this user (and its group, no supplementary groups) first; `None` keeps the
    /// broker's user (a broker that is not root, or `--allow-root-workers`).
    pub user: Option<WorkerUser>,
    /// Private network (none at all), mount (the app directory read-only) and IPC namespaces.
    pub namespaces: bool,
    /// A Landlock ruleset: reading under the app directory is the only file access left.
    pub landlock: bool,
    /// The seccomp-BPF allowlist; any other call ends the worker as a sandbox violation.
    pub seccomp: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerUser {
    pub uid: u32,
    pub gid: u32,
}

/// How reports name a system call: its name on this architecture (`socket`), or its number
/// when it has none.
pub fn syscall_name(number: u32) -> String {
    match syscalls::Sysno::new(number as usize) {
        Some(sysno) => sysno.name().to_string(),
        None => format!("syscall {number}"),
    }
}

/// The number of the system call named `name` on this architecture.
pub fn syscall_number(name: &str) -> Option<u32> {
    name.parse::<syscalls::Sysno>().ok().map(|s| s.id() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_named_on_this_architecture() {
        let socket = syscalls::Sysno::socket.id() as u32;
        assert_eq!(syscall_name(socket), "socket");
        assert_eq!(syscall_number("socket"), Some(socket));
        assert_eq!(syscall_number("no_such_call"), None);
        assert_eq!(syscall_name(100_000), "syscall 100000");
    }
}
