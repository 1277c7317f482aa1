//! The zygote: a small, single-threaded process the broker starts once and asks to fork
//! workers, so a new session costs a fork (≈ 0.2 ms) instead of an exec of the whole
//! executable (DESIGN.md 3 and 9).
//!
//! It speaks a line protocol on its stdin/stdout pipes with the broker:
//! - `fork <token-hex>` → the child becomes a worker (it connects and authenticates like an
//!   exec'd one) and the zygote answers `forked <pid>`;
//! - `kill <pid> <signal>` → signals that child if it has not been reaped yet (the zygote is
//!   the only one that reaps its children, so the pid cannot have been reused);
//! - every child that ends is reported as `exit <pid> code <n>` or `exit <pid> signal <n>`.
//!
//! The zygote has no threads (no runtime, nothing spawned), which is what makes `fork` sound
//! here. It dies with the broker (parent-death signal; EOF on stdin), and its children die with
//! it (each arms its own parent-death signal after the fork).

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::process::{die_with_parent, parse_token, run_with, ENV_PARENT, ENV_SOCKET};

/// First argument that puts the executable in zygote mode.
pub const ZYGOTE_ARG: &str = "__zygote";

pub fn run() -> ExitCode {
    crate::logging::init();
    let (Ok(socket), Some(parent)) = (
        std::env::var(ENV_SOCKET),
        std::env::var(ENV_PARENT)
            .ok()
            .and_then(|p| p.parse::<i32>().ok()),
    ) else {
        tracing::error!("zygote started wrongly: {ENV_SOCKET} or {ENV_PARENT} missing");
        return ExitCode::from(2);
    };
    if let Err(e) = die_with_parent(parent) {
        tracing::error!("zygote: {e}");
        return ExitCode::from(2);
    }
    let _ = nix::sys::prctl::set_name(c"lb-zygote");
    match serve(&socket) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("zygote: {e}");
            ExitCode::from(3)
        }
    }
}

fn serve(socket: &str) -> std::io::Result<()> {
    // Child exits arrive as readable data on a signalfd, next to the broker's requests.
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    chld.thread_block().map_err(std::io::Error::from)?;
    let exits =
        SignalFd::with_flags(&chld, SfdFlags::SFD_NONBLOCK).map_err(std::io::Error::from)?;
    let stdin = std::io::stdin();
    let stdin_fd = std::io::stdin();
    let mut requests = BufReader::new(stdin.lock());
    let mut out = std::io::stdout().lock();
    let mut live: HashSet<i32> = HashSet::new();
    let mut line = String::new();
    loop {
        let (request_ready, exit_ready) = {
            let mut fds = [
                PollFd::new(stdin_fd.as_fd(), PollFlags::POLLIN),
                PollFd::new(exits.as_fd(), PollFlags::POLLIN),
            ];
            // Lines already buffered need no poll.
            if requests.buffer().is_empty() {
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            (
                !requests.buffer().is_empty() || ready(&fds[0]),
                ready(&fds[1]),
            )
        };
        if exit_ready {
            while let Ok(Some(_)) = exits.read_signal() {}
            reap(&mut live, &mut out)?;
        }
        if request_ready {
            line.clear();
            if requests.read_line(&mut line)? == 0 {
                return Ok(()); // the broker is gone
            }
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("fork"), Some(token), None) => {
                    let Some(token) = parse_token(token) else {
                        writeln!(out, "error bad token")?;
                        out.flush()?;
                        continue;
                    };
                    // SAFETY: this process has exactly one thread (nothing here starts one),
                    // so the child is a complete copy and may run any code.
                    match unsafe { fork() }.map_err(std::io::Error::from)? {
                        ForkResult::Child => {
                            drop(exits);
                            let code = become_worker(socket, token, &chld);
                            std::process::exit(i32::from(code));
                        }
                        ForkResult::Parent { child } => {
                            live.insert(child.as_raw());
                            writeln!(out, "forked {child}")?;
                            out.flush()?;
                        }
                    }
                }
                (Some("kill"), Some(pid), Some(sig)) => {
                    let (Ok(pid), Ok(sig)) = (pid.parse::<i32>(), sig.parse::<i32>()) else {
                        continue;
                    };
                    if live.contains(&pid) {
                        if let Ok(sig) = Signal::try_from(sig) {
                            let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
                        }
                    }
                }
                _ => tracing::warn!("zygote: unknown request {line:?}"),
            }
        }
    }
}

/// Reports every child that has ended.
fn reap(live: &mut HashSet<i32>, out: &mut impl Write) -> std::io::Result<()> {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => {
                live.remove(&pid.as_raw());
                writeln!(out, "exit {pid} code {code}")?;
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) => {
                live.remove(&pid.as_raw());
                writeln!(out, "exit {pid} signal {}", sig as i32)?;
            }
            Ok(WaitStatus::StillAlive) | Err(_) => break,
            Ok(_) => continue,
        }
    }
    out.flush()
}

/// In the forked child: shed the zygote's plumbing, then live as an ordinary worker.
fn become_worker(socket: &str, token: [u8; 32], chld: &SigSet) -> u8 {
    // The pipes to the broker belong to the zygote; the worker's stdio is /dev/null.
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(chld), None);
    let zygote = nix::unistd::getppid().as_raw();
    run_with(socket.to_string(), token, zygote)
}
