//! The live children of a process: reaping them, and signalling one without hitting a reused
//! pid. The two processes that have children share it: the zygote (the workers it forks) and
//! the broker's reaper (the zygote, exec'd workers, and workers orphaned by a dead zygote).
//!
//! The rule that keeps a signal from reaching a stranger lives here and nowhere else: a pid is
//! signalled only while it is in the table, and it leaves the table only in [`Children::reap`],
//! which takes `&mut self`. Whoever holds the table (behind a lock, or alone in a
//! single-threaded loop) therefore cannot reap, and so free the pid for reuse, between the
//! check and the signal.

use std::collections::HashMap;

use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use protocol::zygote::ExitStatus;

/// Unreaped children, each with what its owner wants handed back when it ends.
pub struct Children<T> {
    live: HashMap<i32, T>,
}

impl<T> Default for Children<T> {
    fn default() -> Self {
        Children {
            live: HashMap::new(),
        }
    }
}

impl<T> Children<T> {
    /// Records `pid`, a child of this process that has not been reaped yet.
    pub fn insert(&mut self, pid: i32, value: T) {
        self.live.insert(pid, value);
    }

    pub fn contains(&self, pid: i32) -> bool {
        self.live.contains_key(&pid)
    }

    /// Sends `sig` to `pid` if it is still an unreaped child in this table (see the module
    /// doc for why that makes it safe); false if it is not, or the signal failed.
    pub fn signal(&self, pid: i32, sig: Signal) -> bool {
        self.live.contains_key(&pid) && nix::sys::signal::kill(Pid::from_raw(pid), sig).is_ok()
    }

    /// Collects every child that has ended (`waitpid(-1, WNOHANG)` until none is left; one
    /// SIGCHLD may stand for many), handing each to `ended` with its value if it had one.
    pub fn reap(&mut self, mut ended: impl FnMut(i32, Option<T>, ExitStatus)) {
        loop {
            let (pid, status) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid.as_raw(), ExitStatus::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    (pid.as_raw(), ExitStatus::Signal(sig as i32))
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return, // ECHILD: no children left
                Ok(_) => continue,                             // stopped/continued: not an end
            };
            ended(pid, self.live.remove(&pid), status);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_that_is_not_a_live_child_is_never_signalled() {
        let children: Children<()> = Children::default();
        // Our own pid would be a disaster to SIGKILL; not being in the table protects it.
        assert!(!children.signal(std::process::id() as i32, Signal::SIGKILL));
    }

    #[test]
    fn a_reaped_child_leaves_the_table_with_its_value_and_status() {
        // No other test of this crate starts a process, so waitpid(-1) takes no one else's.
        // Reaped by the table, not by `wait`: that is what is under test.
        #[allow(clippy::zombie_processes)]
        let child = std::process::Command::new("sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let mut children = Children::default();
        children.insert(pid, "mine");
        assert!(children.contains(pid));
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while seen.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the child never ended"
            );
            children.reap(|p, v, s| seen.push((p, v, s)));
            std::thread::yield_now();
        }
        assert_eq!(seen, vec![(pid, Some("mine"), ExitStatus::Code(7))]);
        assert!(!children.contains(pid));
        assert!(
            !children.signal(pid, Signal::SIGKILL),
            "a reaped pid is not ours"
        );
    }
}
