//! The worker process: connect to the broker, prove who we are, build a ready VM and wait as a
//! spare, then, given a session, run `main.lua` and serve the session's tabs until the broker
//! says stop or goes away.
//!
//! The broker starts us by re-executing itself with three environment variables (the launch
//! contract in `protocol::launch`): the path of its private worker socket, a one-time token,
//! and its pid. We die with the broker twice over: a
//! parent-death signal (armed first thing, then `getppid()` re-checked in case the broker died
//! before it was armed), and EOF on the socket.

use std::process::ExitCode;
use std::time::Instant;

use std::os::fd::RawFd;

use protocol::browser::ServerMessage;
use protocol::codec::{CodecError, Encoded};
use protocol::ipc::{BrokerToWorker, Hello, TabBatch, WorkerToBroker};
use protocol::launch::{token_from_hex, Token, ENV_PARENT, ENV_SOCKET, ENV_TOKEN};
use protocol::PROTOCOL_VERSION;

use crate::link::{Link, Recv};
use crate::session::LuaSession;

/// Exit codes the broker reports when a worker ends (anything else is unexpected).
pub mod exit {
    /// Shut down on request, or the broker went away.
    pub const OK: u8 = 0;
    /// Started wrongly (missing environment, broker already gone).
    pub const SETUP: u8 = 2;
    /// The socket failed or carried something undecodable.
    pub const PROTOCOL: u8 = 3;
    /// `main.lua` failed; the error was reported as `Failed`.
    pub const MAIN_FAILED: u8 = 4;
}

/// Entry point of worker mode. Never returns to the broker's code: the caller exits with it.
pub fn run() -> ExitCode {
    crate::logging::init();
    crate::os_limits::lower_priority();
    crate::confine::inherited::close_all_but(&crate::confine::namespaces::inherited_fds());
    let (socket, token, parent) = match read_env() {
        Ok(v) => v,
        Err(e) => {
            tracing::error!("worker started wrongly: {e}");
            return ExitCode::from(exit::SETUP);
        }
    };
    ExitCode::from(run_with(socket, token, parent))
}

/// A worker's life once it knows its socket, token and parent (the broker, or the zygote it
/// was forked from).
pub fn run_with(socket: String, token: Token, parent: i32) -> u8 {
    if let Err(e) = die_with_parent(parent) {
        tracing::error!("{e}");
        return exit::SETUP;
    }
    let _ = nix::sys::prctl::set_name(c"lb-spare");
    default_fault_signals();
    serve(socket, token)
}

fn read_env() -> Result<(String, Token, i32), String> {
    let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
    let socket = var(ENV_SOCKET)?;
    let token = token_from_hex(&var(ENV_TOKEN)?).ok_or(format!("{ENV_TOKEN} is not a token"))?;
    let parent = var(ENV_PARENT)?
        .parse()
        .map_err(|_| format!("{ENV_PARENT} is not a pid"))?;
    Ok((socket, token, parent))
}

/// Arms the parent-death signal, then checks the broker did not die before it was armed.
pub(crate) fn die_with_parent(parent: i32) -> Result<(), String> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| format!("cannot arm parent-death signal: {e}"))?;
    if nix::unistd::getppid().as_raw() != parent {
        return Err("the broker is already gone".into());
    }
    Ok(())
}

/// Rust's runtime catches SIGSEGV/SIGBUS to report stack overflows, and a signal it did not
/// cause (sent by `kill`) is then swallowed once. A worker dies of a fault either way, so it
/// takes the default action at once and the broker reports the signal that ended it.
fn default_fault_signals() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    for sig in [Signal::SIGSEGV, Signal::SIGBUS] {
        // SAFETY: installing the default disposition runs no handler code of ours, so there
        // is nothing that could be unsound in signal context.
        let _ = unsafe { signal(sig, SigHandler::SigDfl) };
    }
}

fn serve(socket: String, token: Token) -> u8 {
    // The broker listens on a filesystem socket (interprocess's `GenericFilePath`), which a
    // plain Unix stream reaches; its descriptor is where a sandbox violation is reported.
    let mut link = match Link::connect(&socket) {
        Ok(link) => link,
        Err(e) => {
            tracing::error!("cannot connect to the broker at {socket}: {e}");
            return exit::SETUP;
        }
    };
    let report_fd = link.fd();
    let hello = Hello {
        version: PROTOCOL_VERSION,
        token,
        pid: std::process::id(),
    };
    if link.send(WorkerToBroker::Hello(hello)).is_err() {
        return exit::OK; // the broker is gone
    }
    let mut session = match prepare(&mut link, report_fd) {
        Ok(session) => session,
        Err(code) => return code,
    };
    warm_session_span();
    if link.send(WorkerToBroker::Prepared).is_err() {
        return exit::OK;
    }
    let start = match link.recv(None) {
        Recv::Message(BrokerToWorker::Start(start)) => start,
        other => return unexpected(other, "Start"),
    };
    // `ps` and /proc tell spares ("lb-spare") from workers serving a session ("lb-session");
    // a session started ahead that no `GET /` has taken yet is "lb-ahead" until `Claimed`.
    let _ = nix::sys::prctl::set_name(if start.ahead {
        c"lb-ahead"
    } else {
        c"lb-session"
    });
    let span = tracing::info_span!("session", id = %start.session_id, vended = start.vended_id);
    let _enter = span.enter();
    if let Err(e) = session.assign(&start) {
        let error = format!("cannot give the VM its session: {e}");
        let _ = link.send(WorkerToBroker::Failed { error });
        return exit::MAIN_FAILED;
    }
    match session.load_main() {
        Ok(app) => {
            let read = session.files_read();
            if link.send(WorkerToBroker::Ready { read, app }).is_err() {
                return exit::OK;
            }
        }
        Err(error) => {
            tracing::warn!("main.lua failed: {error}");
            let _ = link.send(WorkerToBroker::Failed { error });
            return exit::MAIN_FAILED;
        }
    }
    run_loop(&mut session, &mut link)
}

/// Creates and drops a span shaped like the session's. The first span a process makes
/// allocates the subscriber's span storage (page faults): about 40 µs that would otherwise be
/// spent after `Start`, on `GET /`'s critical path.
fn warm_session_span() {
    let span = tracing::info_span!("session", id = %"", vended = 0u64);
    let _enter = span.enter();
}

/// Waits for `Prepare` and builds the ready VM it describes, with the process limits behind
/// it, then confines the process; `Err` is the exit code (having told the broker why, when it
/// can be told).
fn prepare(link: &mut Link, report_fd: RawFd) -> Result<LuaSession, u8> {
    let vm = match link.recv(None) {
        Recv::Message(BrokerToWorker::Prepare(vm)) => vm,
        other => return Err(unexpected(other, "Prepare")),
    };
    crate::os_limits::apply(vm.limits.memory_bytes);
    let session = match LuaSession::prepare(&vm) {
        Ok(session) => {
            session.enable_cpu_backstop();
            session
        }
        Err(e) => {
            let error = format!("cannot build the Lua VM: {e}");
            let _ = link.send(WorkerToBroker::Failed { error });
            return Err(exit::MAIN_FAILED);
        }
    };
    // The VM is ready and no app code has run: the one point between the two, where the
    // process is confined (once, off the critical path: a spare waits confined).
    let readable = std::path::Path::new(vm.readable_dir());
    if let Err(e) = crate::confine::apply(&vm.sandbox, readable, report_fd) {
        let error = format!("cannot confine the worker: {e}");
        tracing::error!("{error}");
        let _ = link.send(WorkerToBroker::Failed { error });
        return Err(exit::SETUP);
    }
    Ok(session)
}

/// The exit code for a message other than the `expected` one: a stop (`Shutdown`, the broker
/// gone) is a clean exit, anything else a protocol error.
fn unexpected(got: Recv, expected: &str) -> u8 {
    match got {
        Recv::Message(BrokerToWorker::Shutdown) | Recv::Closed => exit::OK,
        Recv::Message(other) => {
            tracing::error!("expected {expected}, got {other:?}");
            exit::PROTOCOL
        }
        Recv::Broken(e) => {
            tracing::error!("broker link: {e}");
            exit::PROTOCOL
        }
        Recv::Timeout => unreachable!("a wait without a deadline"),
    }
}

/// The session's steady state: one broker message or one due timer callback at a time, each
/// one turn of the session (the session starts and ends it). A due timer runs before the next
/// message is taken, and only one per round, so neither can starve the other: a busy timer
/// chain still lets every waiting message through, and a stream of messages every due timer.
fn run_loop(session: &mut LuaSession, link: &mut Link) -> u8 {
    loop {
        let deadline = session.timers().next_deadline();
        if deadline.is_some_and(|d| d <= Instant::now()) {
            let reply = session.run_timer(Instant::now()).and_then(send_batches);
            if let Some(reply) = reply {
                if !send(link, reply) {
                    return exit::OK;
                }
            }
        }
        let msg = match link.recv(session.timers().next_deadline()) {
            Recv::Message(msg) => msg,
            Recv::Timeout => continue,
            Recv::Closed => return exit::OK,
            Recv::Broken(e) => {
                tracing::error!("broker link: {e}");
                return exit::PROTOCOL;
            }
        };
        let reply = match msg {
            BrokerToWorker::Frame { tab, messages, .. } => {
                send_batches(session.handle_frame(tab, messages))
            }
            BrokerToWorker::TabOpened { tab } => {
                session.tab_opened(tab);
                None
            }
            BrokerToWorker::TabClosed { tab } => send_batches(session.tab_closed(tab)),
            BrokerToWorker::Claimed => {
                let _ = nix::sys::prctl::set_name(c"lb-session");
                tracing::debug!("claimed by a GET /");
                None
            }
            BrokerToWorker::Ping { seq } => Some(WorkerToBroker::Pong { seq }),
            BrokerToWorker::DebugVariables {
                request,
                diag_level,
            } => {
                let (batches, listing) = session.debug_listing(diag_level);
                if let Some(changes) = send_batches(batches) {
                    if !send(link, changes) {
                        return exit::OK;
                    }
                }
                Some(WorkerToBroker::DebugVariables { request, listing })
            }
            BrokerToWorker::Reload { files } => send_batches(session.reload(&files)),
            BrokerToWorker::Shutdown => return exit::OK,
            BrokerToWorker::Prepare(_) | BrokerToWorker::Start(_) => {
                tracing::error!("Prepare or Start sent twice");
                return exit::PROTOCOL;
            }
        };
        if let Some(reply) = reply {
            if !send(link, reply) {
                return exit::OK;
            }
        }
    }
}

/// Sends a message to the broker; false if the broker is gone. A batch too large for one
/// frame is split (tab by tab, then message by message, order kept); a single message that is
/// still too large is replaced by a `limit` error for its tab, so one huge value costs the
/// tab that value, not the session.
fn send(link: &mut Link, msg: WorkerToBroker) -> bool {
    let mut pending = vec![msg];
    while let Some(msg) = pending.pop() {
        match Encoded::new(&msg) {
            Ok(encoded) => {
                if link.send(encoded).is_err() {
                    return false;
                }
            }
            Err(CodecError::TooLarge { len, .. }) => match msg {
                WorkerToBroker::Send(mut batches) if batches.len() > 1 => {
                    let second = batches.split_off(batches.len() / 2);
                    pending.push(WorkerToBroker::Send(second));
                    pending.push(WorkerToBroker::Send(batches));
                }
                WorkerToBroker::Send(mut batches) if batches[0].messages.len() > 1 => {
                    let tab = batches[0].tab;
                    let first = &mut batches[0].messages;
                    let second = first.split_off(first.len() / 2);
                    pending.push(WorkerToBroker::Send(vec![TabBatch {
                        tab,
                        messages: second,
                    }]));
                    pending.push(WorkerToBroker::Send(batches));
                }
                WorkerToBroker::Send(batches) => {
                    let tab = batches[0].tab;
                    tracing::warn!(tab, len, "a message is too large to send; refused");
                    pending.push(WorkerToBroker::Send(vec![TabBatch {
                        tab,
                        messages: vec![ServerMessage::Error {
                            var_id: var_id_of(&batches[0].messages[0]),
                            code: protocol::ErrorCode::Limit,
                            description: format!(
                                "a message of {len} bytes is over the {}-byte limit",
                                protocol::limits::MAX_IPC_FRAME
                            ),
                        }],
                    }]));
                }
                _ => {
                    // Only a debug listing can get here; the broker's request times out.
                    tracing::error!(len, "a reply is too large to send; dropped");
                }
            },
            Err(e) => tracing::error!("cannot encode a message for the broker: {e}; dropped"),
        }
    }
    true
}

fn var_id_of(msg: &ServerMessage) -> Option<i64> {
    match msg {
        ServerMessage::Update { var_id, .. } | ServerMessage::Destroy { var_id } => Some(*var_id),
        ServerMessage::Error { var_id, .. } => *var_id,
        ServerMessage::Get { .. } | ServerMessage::GetObjects { .. } => None,
    }
}

fn send_batches(batches: Vec<TabBatch>) -> Option<WorkerToBroker> {
    (!batches.is_empty()).then_some(WorkerToBroker::Send(batches))
}
