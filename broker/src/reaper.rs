//! Reaps every child the broker starts and tells whoever waits on it how it ended.
//!
//! One task listens for SIGCHLD and collects every exited child with `waitpid(-1, WNOHANG)`.
//! That costs no file descriptor per child (tokio's child handle holds a pidfd each, and exec
//! cost grows with the broker's fd table, DESIGN.md 9) and no thread per child. A child that
//! exits before anyone asked about it is remembered until someone does. Workers forked by the
//! zygote are the zygote's children: their exits arrive through [`Reaper::report`], and
//! signals to them go through the zygote, which alone knows whether it has reaped them.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

use crate::spawner::Zygote;

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

#[derive(Default)]
struct State {
    slots: HashMap<i32, Slot>,
    /// Live workers forked by the zygote (not our children while it lives).
    forked: HashSet<i32>,
    zygote: Option<Arc<Zygote>>,
    zygote_exit: Option<oneshot::Receiver<Exit>>,
}

#[derive(Clone, Default)]
pub struct Reaper {
    state: Arc<Mutex<State>>,
}

impl Reaper {
    /// Starts the SIGCHLD task and makes the broker a child subreaper (so workers orphaned by
    /// a dead zygote are ours to reap). Call before the first child is spawned.
    pub fn start() -> std::io::Result<Reaper> {
        let reaper = Reaper::default();
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            tracing::warn!("cannot become a child subreaper: {e}");
        }
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

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves when `pid` has ended (at once if it already has).
    pub fn wait(&self, pid: i32) -> oneshot::Receiver<Exit> {
        let (tx, rx) = oneshot::channel();
        let mut state = self.lock();
        match state.slots.remove(&pid) {
            Some(Slot::Exited(exit)) => {
                let _ = tx.send(exit);
            }
            _ => {
                state.slots.insert(pid, Slot::Waiting(tx));
            }
        }
        rx
    }

    /// Sends `sig` to `pid` if it has not been reaped yet. The check and the signal happen
    /// under the same lock that reaping takes (or, for a forked worker, in the zygote, which
    /// alone reaps it), so the pid cannot have been freed and reused in between.
    pub fn kill(&self, pid: i32, sig: Signal) -> bool {
        let state = self.lock();
        // Only a pid someone waits on and that is not reaped yet is certainly still ours.
        if !matches!(state.slots.get(&pid), Some(Slot::Waiting(_))) {
            return false;
        }
        if state.forked.contains(&pid) {
            if let Some(zygote) = &state.zygote {
                return zygote.kill(pid, sig);
            }
        }
        nix::sys::signal::kill(Pid::from_raw(pid), sig).is_ok()
    }

    pub fn set_zygote(&self, zygote: Arc<Zygote>, exit: oneshot::Receiver<Exit>) {
        let mut state = self.lock();
        state.zygote = Some(zygote);
        state.zygote_exit = Some(exit);
    }

    pub fn zygote(&self) -> Option<Arc<Zygote>> {
        self.lock().zygote.clone()
    }

    /// `pid` was forked by the zygote.
    pub fn adopt_from_zygote(&self, pid: i32) {
        self.lock().forked.insert(pid);
    }

    /// The zygote's report that one of its children ended.
    pub fn report(&self, pid: i32, exit: Exit) {
        let mut state = self.lock();
        state.forked.remove(&pid);
        Self::record(&mut state, pid, exit);
    }

    /// The zygote is gone: its orphaned workers are now the broker's (subreaper) to reap.
    pub fn zygote_gone(&self) {
        let mut state = self.lock();
        state.zygote = None;
        state.forked.clear();
    }

    /// Shutdown: closes the zygote and waits (up to `grace`) for it to exit, then kills it.
    pub async fn stop_zygote(&self, grace: Duration) {
        let (zygote, exit) = {
            let mut state = self.lock();
            (state.zygote.take(), state.zygote_exit.take())
        };
        let (Some(zygote), Some(mut exit)) = (zygote, exit) else {
            return;
        };
        zygote.close();
        if tokio::time::timeout(grace, &mut exit).await.is_err() {
            let _ = nix::sys::signal::kill(Pid::from_raw(zygote.pid), Signal::SIGKILL);
            let _ = exit.await;
        }
    }

    fn record(state: &mut State, pid: i32, exit: Exit) {
        match state.slots.remove(&pid) {
            Some(Slot::Waiting(tx)) => {
                let _ = tx.send(exit);
            }
            _ => {
                state.slots.insert(pid, Slot::Exited(exit));
            }
        }
    }

    /// Collects every child that has exited. SIGCHLD coalesces, so one signal may stand for many.
    fn reap_all(&self) {
        // Held across waitpid: see `kill`.
        let mut state = self.lock();
        loop {
            let (pid, exit) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, Exit::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, Exit::Signal(sig)),
                Ok(WaitStatus::StillAlive) | Err(_) => return, // ECHILD: no children left
                Ok(_) => continue,                             // stopped/continued: not an end
            };
            state.forked.remove(&pid.as_raw());
            Self::record(&mut state, pid.as_raw(), exit);
        }
    }
}
