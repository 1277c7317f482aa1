//! Child: one started process, from fork to reaped exit: its pid, its signals, its exit.
//!
//! Whoever reaps a process is the only one who may signal it, because only the reaper knows
//! the pid has not been freed and reused (`worker::reap` has the rule). A [`Child`] therefore
//! signals through its [`Parent`]: the broker's `Reaper` for processes the broker started
//! itself, the zygote client for workers the zygote forked. Its exit arrives the same way, once.

use std::fmt;
use std::sync::Arc;

use nix::sys::signal::Signal;
use protocol::zygote::ExitStatus;
use tokio::sync::watch;

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(Signal),
}

impl Exit {
    /// What is reported for a process whose real end nobody saw (it died with its zygote
    /// before the zygote could say how, or the broker is exiting).
    pub const UNKNOWN: Exit = Exit::Signal(Signal::SIGKILL);
}

impl From<ExitStatus> for Exit {
    fn from(status: ExitStatus) -> Exit {
        match status {
            ExitStatus::Code(c) => Exit::Code(c),
            ExitStatus::Signal(n) => match Signal::try_from(n) {
                Ok(sig) => Exit::Signal(sig),
                Err(_) => Exit::Code(128 + n),
            },
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "signal {} ({})", *s as i32, s.as_str()),
        }
    }
}

/// The process that reaps a child, and so alone may signal it.
pub trait Parent: Send + Sync {
    /// Sends `sig` to `pid` unless it has been reaped already; false if it was not sent.
    fn signal(&self, pid: i32, sig: Signal) -> bool;
}

/// Where a [`Parent`] puts a child's exit once it has reaped it.
pub type ExitSender = watch::Sender<Option<Exit>>;

/// One started process. Dropping it neither waits nor kills: the parent still reaps it.
pub struct Child {
    pid: i32,
    parent: Arc<dyn Parent>,
    exit: watch::Receiver<Option<Exit>>,
}

impl Child {
    /// A child of `parent`, whose exit will be sent on the sender paired with `exit`.
    pub fn new(pid: i32, parent: Arc<dyn Parent>, exit: watch::Receiver<Option<Exit>>) -> Child {
        Child { pid, parent, exit }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends `sig` unless the process has been reaped; false if it was not sent.
    pub fn signal(&self, sig: Signal) -> bool {
        self.exit.borrow().is_none() && self.parent.signal(self.pid, sig)
    }

    /// SIGKILL, unless the process has been reaped.
    pub fn kill(&self) -> bool {
        self.signal(Signal::SIGKILL)
    }

    /// How it ended, if it has.
    pub fn exit(&self) -> Option<Exit> {
        *self.exit.borrow()
    }

    /// Resolves once the process has been reaped (at once if it has been).
    pub async fn exited(&self) -> Exit {
        let mut exit = self.exit.clone();
        let ended = match exit.wait_for(Option::is_some).await {
            Ok(ended) => *ended,
            Err(_) => None, // the parent is gone: the broker is exiting
        };
        ended.unwrap_or(Exit::UNKNOWN)
    }

    /// Kills the process and waits until it has been reaped.
    pub async fn kill_and_reap(&self) -> Exit {
        self.kill();
        self.exited().await
    }
}

#[cfg(test)]
mod tests {
    use parking_lot::Mutex;

    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(i32, Signal)>>);

    impl Parent for Recorder {
        fn signal(&self, pid: i32, sig: Signal) -> bool {
            self.0.lock().push((pid, sig));
            true
        }
    }

    #[tokio::test]
    async fn a_reaped_child_is_never_signalled_again() {
        let parent = Arc::new(Recorder::default());
        let (tx, rx) = watch::channel(None);
        let child = Child::new(41, parent.clone(), rx);
        assert!(child.signal(Signal::SIGTERM));
        tx.send_replace(Some(Exit::Code(0)));
        assert!(
            !child.kill(),
            "reaped: its pid may belong to someone else now"
        );
        assert_eq!(child.exited().await, Exit::Code(0));
        assert_eq!(*parent.0.lock(), vec![(41, Signal::SIGTERM)]);
    }

    #[tokio::test]
    async fn a_child_whose_parent_went_away_reads_as_killed() {
        let (tx, rx) = watch::channel(None);
        let child = Child::new(7, Arc::new(Recorder::default()), rx);
        drop(tx);
        assert_eq!(child.exited().await, Exit::UNKNOWN);
    }

    #[test]
    fn exit_statuses_read_like_the_shell_says_them() {
        assert_eq!(Exit::from(ExitStatus::Code(3)).to_string(), "exit code 3");
        assert_eq!(
            Exit::from(ExitStatus::Signal(9)).to_string(),
            "signal 9 (SIGKILL)"
        );
        assert_eq!(Exit::from(ExitStatus::Signal(250)), Exit::Code(378));
    }
}
