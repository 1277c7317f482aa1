//! Reaper: reaps every child of the broker process and hands each one's exit to its [`Child`].
//!
//! One task listens for SIGCHLD and collects every exited child (`worker::reap::Children`,
//! the same table the zygote keeps). That costs no file descriptor per child (tokio's child
//! handle holds a pidfd each, and exec cost grows with the broker's fd table: see
//! ARCHITECTURE.md, "Processes") and no thread per child. A child that exits before anyone
//! adopted it is remembered until someone does. The broker is also a child subreaper, so
//! workers orphaned by a dead zygote become its children; the zygote client hands their exits
//! over with [`Reaper::watch`]. This table knows only pids: who started them is not its business.

use std::collections::HashMap;
use std::sync::Arc;

use nix::sys::signal::Signal;
use nix::sys::wait::{waitid, Id, WaitPidFlag};
use nix::unistd::Pid;
use parking_lot::Mutex;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use worker::reap::Children;

use crate::child::{Child, Exit, ExitSender, Parent};

#[derive(Default)]
struct State {
    children: Children<ExitSender>,
    /// Children reaped before anyone adopted them.
    unclaimed: HashMap<i32, Exit>,
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

    /// Takes `pid`, a process this broker just started, as a [`Child`].
    pub fn adopt(&self, pid: i32) -> Child {
        let (tx, rx) = watch::channel(None);
        self.watch(pid, tx);
        Child::new(pid, Arc::new(self.clone()), rx)
    }

    /// Sends the exit of `pid` to `exit` once it is reaped (at once if it has been). A pid that
    /// is not (or no longer) a child of the broker gets [`Exit::UNKNOWN`] at once: it was
    /// reaped by a zygote that died before it could say how it ended.
    pub fn watch(&self, pid: i32, exit: ExitSender) {
        let mut state = self.state.lock();
        if let Some(ended) = state.unclaimed.remove(&pid) {
            exit.send_replace(Some(ended));
            return;
        }
        // Under the lock, so the reaper cannot collect it between this check and the insert.
        // WNOWAIT leaves an exited child for `reap_all`; ECHILD means it is not ours.
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        if waitid(Id::Pid(Pid::from_raw(pid)), flags).is_err() {
            exit.send_replace(Some(Exit::UNKNOWN));
            return;
        }
        state.children.insert(pid, exit);
    }

    /// Collects every child that has exited.
    fn reap_all(&self) {
        let mut state = self.state.lock();
        let State {
            children,
            unclaimed,
        } = &mut *state;
        children.reap(|pid, exit, status| match exit {
            Some(exit) => {
                exit.send_replace(Some(status.into()));
            }
            None => {
                unclaimed.insert(pid, status.into());
            }
        });
    }
}

impl Parent for Reaper {
    fn signal(&self, pid: i32, sig: Signal) -> bool {
        self.state.lock().children.signal(pid, sig)
    }
}
