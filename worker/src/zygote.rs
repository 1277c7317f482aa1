//! The zygote: a small, single-threaded process the broker starts once and asks to fork
//! workers, so a new session costs a fork (≈ 0.2 ms) instead of an exec of the whole
//! executable (an exec walks the broker's whole fd table: see ARCHITECTURE.md, "Processes").
//!
//! It reads [`BrokerToZygote`] requests on stdin and writes [`ZygoteToBroker`] answers and
//! reports on stdout, framed like the worker socket (`protocol::zygote` has the rules): every
//! `Fork` is answered `Forked` or `Refused` under its request id; `Kill` signals a child only
//! while it is unreaped (the zygote alone reaps its children, through [`Children`], so the pid
//! cannot have been reused); every child that ends is reported as `Exited`. A forked child
//! connects and authenticates exactly like an exec'd worker.
//!
//! The zygote has no threads (no runtime, nothing spawned), which is what makes `fork` sound
//! here. It dies with the broker (parent-death signal; EOF on stdin), and its children die with
//! it (each arms its own parent-death signal after the fork).

use std::io::Write;
use std::os::fd::AsFd;
use std::process::ExitCode;

use bytes::BytesMut;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::{fork, ForkResult};
use protocol::codec::FrameCodec;
use protocol::launch::{
    Token, ENV_PARENT, ENV_SOCKET, ENV_ZYGOTE_APP_DIR, ENV_ZYGOTE_CONFINE_DIR, ENV_ZYGOTE_SECCOMP,
};
use protocol::zygote::{BrokerToZygote, RequestId, ZygoteToBroker};
use tokio_util::codec::{Decoder, Encoder};

use crate::process::{die_with_parent, run_with};
use crate::reap::Children;

type Codec = FrameCodec<BrokerToZygote, ZygoteToBroker>;

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
    crate::os_limits::lower_priority();
    crate::confine::inherited::close_all_but(&crate::confine::namespaces::inherited_fds());
    // Before anything could start a thread or change the mappings (see `anon_text`).
    match crate::anon_text::copy_code_for_forks() {
        Ok(bytes) => tracing::debug!(bytes, "zygote: code and constants copied for its forks"),
        Err(e) => tracing::warn!("zygote: code and constants stay file-backed: {e}"),
    }
    if let (Some(app), Some(confine)) = (
        std::env::var_os(ENV_ZYGOTE_APP_DIR),
        std::env::var_os(ENV_ZYGOTE_CONFINE_DIR),
    ) {
        match crate::api::ahead::compile_for_forks(app.as_ref(), confine.as_ref()) {
            Ok(files) => tracing::info!("zygote: {files} app files compiled for every worker"),
            Err(e) => tracing::warn!("zygote: workers will compile the app themselves: {e}"),
        }
    }
    crate::hash_seed::look_up_getrandom();
    let fixed = [(crate::budget::GUARD_NAME, crate::budget::GUARD)];
    if let Err(e) = crate::api::ahead::compile_fixed_for_forks(&fixed) {
        tracing::warn!("zygote: workers will compile the budget's chunk themselves: {e}");
    }
    let seccomp_layer = std::env::var_os(ENV_ZYGOTE_SECCOMP).is_some();
    if let Err(e) = crate::confine::zygote(seccomp_layer) {
        tracing::error!("zygote: {e}");
        return ExitCode::from(2);
    }
    match serve(&socket) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("zygote: {e}");
            ExitCode::from(3)
        }
    }
}

/// What the zygote remembers between requests.
#[derive(Default)]
struct Zygote {
    children: Children<()>,
    /// The last fork request id answered; ids must increase.
    last_request: Option<RequestId>,
}

/// What to do with one fork request.
#[derive(Debug, PartialEq)]
enum Verdict {
    Fork(Token),
    Refuse(String),
}

impl Zygote {
    /// Checks a fork request before forking (and records its id as answered).
    fn judge(&mut self, request: RequestId, token: Token) -> Verdict {
        if let Some(last) = self.last_request {
            if request <= last {
                return Verdict::Refuse(format!(
                    "request id {request} is not after the last one ({last})"
                ));
            }
        }
        self.last_request = Some(request);
        Verdict::Fork(token)
    }
}

fn serve(socket: &str) -> std::io::Result<()> {
    // Child exits arrive as readable data on a signalfd, next to the broker's requests.
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    chld.thread_block().map_err(std::io::Error::from)?;
    let exits =
        SignalFd::with_flags(&chld, SfdFlags::SFD_NONBLOCK).map_err(std::io::Error::from)?;
    // Read straight from the fd: std's buffered stdin could hold bytes that poll cannot see.
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    let mut codec = Codec::default();
    let mut inbox = BytesMut::new();
    let mut outbox = BytesMut::new();
    let mut chunk = [0u8; 4096];
    let mut zygote = Zygote::default();
    loop {
        let (request_ready, exit_ready) = {
            let mut fds = [
                PollFd::new(stdin.as_fd(), PollFlags::POLLIN),
                PollFd::new(exits.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };
        if exit_ready {
            while let Ok(Some(_)) = exits.read_signal() {}
            let mut ended = Vec::new();
            zygote
                .children
                .reap(|pid, _, status| ended.push(ZygoteToBroker::Exited { pid, status }));
            for report in ended {
                codec.encode(report, &mut outbox).map_err(to_io)?;
            }
        }
        if request_ready {
            let n = loop {
                match nix::unistd::read(stdin.as_fd(), &mut chunk) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    read => break read?,
                }
            };
            if n == 0 {
                return Ok(()); // the broker is gone
            }
            inbox.extend_from_slice(&chunk[..n]);
            // A frame we cannot decode means the stream is out of step: stop (see protocol).
            while let Some(request) = codec.decode(&mut inbox).map_err(to_io)? {
                match request {
                    BrokerToZygote::Fork { request, token } => {
                        let answer = match zygote.judge(request, token) {
                            Verdict::Refuse(reason) => ZygoteToBroker::Refused { request, reason },
                            // SAFETY: this process has exactly one thread (nothing here starts
                            // one), so the child is a complete copy and may run any code.
                            Verdict::Fork(token) => match unsafe { fork() } {
                                Ok(ForkResult::Child) => {
                                    drop(exits);
                                    let code = become_worker(socket, token, &chld);
                                    std::process::exit(i32::from(code));
                                }
                                Ok(ForkResult::Parent { child }) => {
                                    zygote.children.insert(child.as_raw(), ());
                                    ZygoteToBroker::Forked {
                                        request,
                                        pid: child.as_raw(),
                                    }
                                }
                                Err(e) => ZygoteToBroker::Refused {
                                    request,
                                    reason: format!("fork failed: {e}"),
                                },
                            },
                        };
                        codec.encode(answer, &mut outbox).map_err(to_io)?;
                    }
                    BrokerToZygote::Kill { pid, signal } => {
                        if let Ok(sig) = Signal::try_from(signal) {
                            zygote.children.signal(pid, sig);
                        }
                    }
                }
            }
        }
        if !outbox.is_empty() {
            out.write_all(&outbox)?;
            out.flush()?;
            outbox.clear();
        }
    }
}

fn to_io(e: protocol::codec::CodecError) -> std::io::Error {
    match e {
        protocol::codec::CodecError::Io(e) => e,
        e => std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
    }
}

/// In the forked child: shed the zygote's plumbing, then live as an ordinary worker.
fn become_worker(socket: &str, token: Token, chld: &SigSet) -> u8 {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_must_increase() {
        let mut z = Zygote::default();
        assert_eq!(z.judge(1, [1; 32]), Verdict::Fork([1; 32]));
        assert!(
            matches!(z.judge(1, [2; 32]), Verdict::Refuse(_)),
            "a duplicate"
        );
        assert!(
            matches!(z.judge(0, [2; 32]), Verdict::Refuse(_)),
            "an older one"
        );
        // A refusal does not move the mark: the next good id is still judged on its own.
        assert_eq!(z.judge(2, [3; 32]), Verdict::Fork([3; 32]));
    }
}
