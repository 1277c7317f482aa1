//! Reporting a seccomp violation. The filter answers a forbidden call with `SECCOMP_RET_TRAP`:
//! the kernel skips the call and raises SIGSYS with the call's number in `siginfo`, which the
//! handler here writes to the broker as a [`WorkerToBroker::SandboxViolation`] frame before
//! the worker dies of SIGSYS itself. The broker thus learns *which* call it was (a plain
//! `SECCOMP_RET_KILL_PROCESS` would tell it only "signal 31") and still sees the worker end by
//! SIGSYS, which it maps to `sandbox-violation` even if the report never arrived.
//!
//! A signal handler may only do async-signal-safe things: no allocation, no locks. So every
//! possible report is encoded beforehand ([`arm`]), and the handler only picks one and writes
//! it with raw `write`/`poll` calls, then restores SIGSYS's default action and re-raises it.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

use protocol::codec::encode_frame;
use protocol::ipc::WorkerToBroker;

/// Reports are prepared for call numbers below this (every architecture's table is smaller);
/// a larger number is reported as `u32::MAX`.
const NUMBERS: usize = 1024;

/// Longest report frame: length prefix, variant, and a varint `u32`.
const FRAME_MAX: usize = 16;

struct Reports {
    /// Index `n` holds the frame for call `n`; index `NUMBERS` the one for an unknown number.
    frames: Vec<([u8; FRAME_MAX], u8)>,
}

static REPORTS: OnceLock<Reports> = OnceLock::new();
static REPORT_FD: AtomicI32 = AtomicI32::new(-1);

fn prepare() -> Reports {
    let frame = |syscall: u32| {
        let bytes = encode_frame(&WorkerToBroker::SandboxViolation { syscall })
            .expect("a violation report always encodes");
        let mut out = [0u8; FRAME_MAX];
        out[..bytes.len()].copy_from_slice(&bytes);
        (out, bytes.len() as u8)
    };
    let mut frames: Vec<_> = (0..NUMBERS as u32).map(frame).collect();
    frames.push(frame(u32::MAX));
    Reports { frames }
}

/// Encodes every report (once per process; a forked worker inherits the zygote's).
pub fn prepare_reports() {
    REPORTS.get_or_init(prepare);
}

/// Prepares the reports and installs the SIGSYS handler; violations are then written to
/// `report_fd` (the broker socket). Call before the filter goes on.
pub fn arm(report_fd: RawFd) {
    prepare_reports();
    REPORT_FD.store(report_fd, Ordering::SeqCst);
    // SAFETY: `sigaction` with a zeroed struct plus the fields set here is the documented way
    // to install an SA_SIGINFO handler; the handler below only makes async-signal-safe calls.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigsys as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut());
    }
}

/// The kernel's `siginfo_t` for SIGSYS on a 64-bit target (`_sigsys` in `_sifields`, which
/// starts 8-byte aligned after the three leading ints).
#[cfg(target_pointer_width = "64")]
#[repr(C)]
struct SigsysInfo {
    signo: libc::c_int,
    errno: libc::c_int,
    code: libc::c_int,
    _pad: libc::c_int,
    call_addr: *mut libc::c_void,
    syscall: libc::c_int,
    arch: libc::c_uint,
}

extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler; for SIGSYS raised
    // by seccomp it has the `_sigsys` layout read here.
    let number = unsafe { (*(info as *const SigsysInfo)).syscall };
    let fd = REPORT_FD.load(Ordering::SeqCst);
    if let (Some(reports), true) = (REPORTS.get(), fd >= 0) {
        let index = usize::try_from(number).map_or(NUMBERS, |n| n.min(NUMBERS));
        let (frame, len) = &reports.frames[index];
        write_all(fd, &frame[..usize::from(*len)]);
    }
    // SAFETY: only async-signal-safe calls: reset SIGSYS to its default action, unblock it (it
    // is blocked while its handler runs) and raise it, so the worker dies of SIGSYS; `_exit`
    // is the fallback should it somehow survive.
    unsafe {
        libc::signal(libc::SIGSYS, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGSYS);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(libc::SIGSYS);
        libc::_exit(128 + libc::SIGSYS);
    }
}

/// Writes `bytes` to the socket without ever blocking in the write (the socket itself is
/// blocking: `link.rs`), waiting up to a second for room.
fn write_all(fd: RawFd, mut bytes: &[u8]) {
    let mut waits = 0;
    while !bytes.is_empty() {
        // SAFETY: `bytes` is valid for its length; `send` is async-signal-safe.
        let n = unsafe {
            libc::send(
                fd,
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n > 0 {
            bytes = &bytes[n as usize..];
            continue;
        }
        if waits == 10 {
            return;
        }
        waits += 1;
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd; `poll` is async-signal-safe.
        unsafe { libc::poll(&mut pfd, 1, 100) };
    }
}
