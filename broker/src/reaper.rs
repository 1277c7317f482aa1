//! Reaps every child the broker starts and tells whoever waits on it how it ended.
//!
//! One task listens for SIGCHLD and collects every exited child with `waitpid(-1, WNOHANG)`.
//! That costs no file descriptor per child (tokio's child handle holds a pidfd each, and exec
//! cost grows with the broker's fd table, DESIGN.md 9) and no thread per child. A child that
//! exits before anyone asked about it is remembered until someone does.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(Signal),
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "signal {} ({})", *s as i32, s.as_str()),
        }
    }
}

enum Slot {
    Waiting(oneshot::Sender<Exit>),
    Exited(Exit),
}

#[derive(Clone, Default)]
pub struct Reaper {
    slots: Arc<Mutex<HashMap<i32, Slot>>>,
}

impl Reaper {
    /// Starts the SIGCHLD task. Call before the first child is spawned.
    pub fn start() -> std::io::Result<Reaper> {
        let reaper = Reaper::default();
        let mut sigchld = signal(SignalKind::child())?;
        let task = reaper.clone();
        tokio::spawn(async move {
            loop {
                task.reap_all();
                if sigchld.recv().await.is_none() {
                    return;
                }
            }
        });
        Ok(reaper)
    }

    /// Resolves when `pid` has ended (at once if it already has).
    pub fn wait(&self, pid: i32) -> oneshot::Receiver<Exit> {
        let (tx, rx) = oneshot::channel();
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        match slots.remove(&pid) {
            Some(Slot::Exited(exit)) => {
                let _ = tx.send(exit);
            }
            _ => {
                slots.insert(pid, Slot::Waiting(tx));
            }
        }
        rx
    }

    /// Sends `sig` to `pid` if it has not been reaped yet. The check and the signal happen
    /// under the same lock that reaping takes, so the pid cannot have been freed and reused by
    /// another process in between.
    pub fn kill(&self, pid: i32, sig: Signal) -> bool {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        // Only a pid someone waits on and that is not reaped yet is certainly still ours.
        if !matches!(slots.get(&pid), Some(Slot::Waiting(_))) {
            return false;
        }
        nix::sys::signal::kill(Pid::from_raw(pid), sig).is_ok()
    }

    /// Collects every child that has exited. SIGCHLD coalesces, so one signal may stand for many.
    fn reap_all(&self) {
        // Held across waitpid: see `kill`.
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let (pid, exit) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, Exit::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, Exit::Signal(sig)),
                Ok(WaitStatus::StillAlive) | Err(_) => return, // ECHILD: no children left
                Ok(_) => continue,                             // stopped/continued: not an end
            };
            match slots.remove(&pid.as_raw()) {
                Some(Slot::Waiting(tx)) => {
                    let _ = tx.send(exit);
                }
                _ => {
                    slots.insert(pid.as_raw(), Slot::Exited(exit));
                }
            }
        }
    }
}
