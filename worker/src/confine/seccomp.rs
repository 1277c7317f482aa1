//! The seccomp-BPF allowlist: the system calls a serving worker makes, and nothing else. Any
//! other call is trapped ([`super::sigsys`] reports it and the worker dies of SIGSYS).
//!
//! What is allowed, and why:
//! - reading and writing already-open descriptors (the broker socket, stderr for logs) and
//!   waiting on them (poll);
//! - opening files **read-only** (require, viewdefs, hot reload read the app directory at run
//!   time; Landlock and the read-only mount confine where), plus stat, seek, list, close;
//! - memory management, but never a mapping that is executable;
//! - clocks, sleeping, futexes, random bytes, resource usage and limits (the CPU backstop);
//! - the signal calls the handlers need, signalling only this process, and exit;
//! - naming this thread (`prctl(PR_SET_NAME)`): a spare, confined while it waits, becomes
//!   `lb-session` when it is given its session.
//!
//! Not allowed, among everything else: creating sockets or connecting, fork/clone/exec,
//! ptrace, mount, changing credentials, opening for writing, creating or removing files.
//!
//! Why the zygote has a filter of its own ([`install_for_zygote`]): the kernel prepares, for
//! every new filter, a cache of the call numbers it allows outright, by running the filter once
//! per number still allowed by the filters already on. For the allowlist alone that is every
//! number of two architectures, ≈ 0.2 ms per worker, spent with the process's signal lock held.
//! The zygote's wider allowlist (this one plus [`SETUP_ONLY`]: what the zygote and a forked
//! worker do before it is confined) is prepared once; a forked worker inherits it, and adds
//! only the short filter that refuses what the zygote's allows beyond the allowlist
//! ([`super::narrowing`], which says why not the allowlist itself). What a confined worker may
//! call is unchanged: both filters apply, and together they allow exactly this allowlist (the
//! unit tests run all three on every call number); an exec'd worker installs the allowlist.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// Calls allowed whatever their arguments.
const ALLOWED: &[libc::c_long] = &[
    // descriptors already open
    libc::SYS_read,
    libc::SYS_readv,
    libc::SYS_pread64,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_recvfrom,
    libc::SYS_recvmsg,
    libc::SYS_sendto,
    libc::SYS_sendmsg,
    libc::SYS_close,
    libc::SYS_fcntl,
    libc::SYS_lseek,
    libc::SYS_poll,
    libc::SYS_ppoll,
    // reading the app directory (opening is below, read-only)
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_getdents64,
    libc::SYS_readlink,
    libc::SYS_readlinkat,
    libc::SYS_getcwd,
    // memory (mmap and mprotect are below: never executable)
    libc::SYS_brk,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_madvise,
    // time, waiting, randomness, limits
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_gettimeofday,
    libc::SYS_time,
    libc::SYS_nanosleep,
    libc::SYS_clock_nanosleep,
    libc::SYS_futex,
    libc::SYS_sched_yield,
    libc::SYS_getrandom,
    libc::SYS_getrusage,
    libc::SYS_getrlimit,
    libc::SYS_setrlimit,
    // signals and exit
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigaction,
    libc::SYS_sigaltstack,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_restart_syscall,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// Calls the zygote makes (forking, reaping, signalling its children) and a forked worker makes
/// before its own filter goes on (connecting to the broker, building its VM, entering the
/// namespaces, Landlock, dropping privileges, installing the filter); never allowed to a
/// confined worker. Found with `strace -f` on the zygote (ARCHITECTURE.md, "Sandbox").
pub const SETUP_ONLY: &[libc::c_long] = &[
    libc::SYS_clone,
    libc::SYS_clone3,
    libc::SYS_wait4,
    libc::SYS_waitid,
    libc::SYS_signalfd4,
    libc::SYS_socket,
    libc::SYS_connect,
    libc::SYS_dup2,
    libc::SYS_dup3,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_mount,
    // back to the working directory after joining the shared mount namespace
    libc::SYS_chdir,
    libc::SYS_landlock_create_ruleset,
    libc::SYS_landlock_add_rule,
    libc::SYS_landlock_restrict_self,
    libc::SYS_setgroups,
    libc::SYS_setresuid,
    libc::SYS_setresgid,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_capget,
    libc::SYS_capset,
    libc::SYS_seccomp,
    libc::SYS_getppid,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_sched_getaffinity,
    libc::SYS_uname,
    // allowed to a worker with conditions on their arguments (see `program`)
    libc::SYS_openat,
    libc::SYS_mmap,
    libc::SYS_mprotect,
    libc::SYS_prlimit64,
    libc::SYS_prctl,
    libc::SYS_tgkill,
    libc::SYS_kill,
];

fn when(arg: u8, op: SeccompCmpOp, value: u64) -> SeccompCondition {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value)
        .expect("argument index is below 6")
}

fn rule(conditions: Vec<SeccompCondition>) -> Vec<SeccompRule> {
    vec![SeccompRule::new(conditions).expect("a rule has conditions")]
}

/// The allowlist compiled for this architecture.
pub fn program() -> Result<BpfProgram, seccompiler::Error> {
    program_for(std::process::id())
}

/// Stands for the worker's pid in the filter the zygote builds before it forks
/// ([`prebuild`]). No pid is this large (`pid_max` is at most 2^22), and the unit tests check
/// that no other value in the program equals it.
const PID_PLACEHOLDER: u32 = 0x7A11_D0D0;

/// The filter a worker forked from this zygote installs: the narrowing one
/// ([`super::narrowing`]), built once, set only once the zygote's own filter is on.
static PREBUILT: OnceLock<BpfProgram> = OnceLock::new();

/// Builds, once in the zygote after [`install_for_zygote`], the filter its forked workers
/// install on top of the zygote's: a forked worker then only writes its pid into a copy.
/// (Building the allowlist cost each worker ≈ 48 µs; the narrowing filter saves the kernel
/// ≈ 100 µs more, see [`super::narrowing`].)
pub fn prebuild() -> Result<(), seccompiler::Error> {
    let allowlist = program_for(PID_PLACEHOLDER)?;
    let arch_check = &allowlist[..3];
    let _ = PREBUILT.set(super::narrowing::program(PID_PLACEHOLDER, arch_check));
    Ok(())
}

/// `program` with the placeholder replaced by `pid`.
fn with_pid(mut program: BpfProgram, pid: u32) -> BpfProgram {
    for instruction in &mut program {
        if instruction.k == PID_PLACEHOLDER {
            instruction.k = pid;
        }
    }
    program
}

/// A condition on one argument of a call, on which the allowlist lets it through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Condition {
    /// None of these bits is set in the argument.
    Clear { arg: u8, bits: u64 },
    /// The argument (all 64 bits) is this value.
    Is { arg: u8, value: u64 },
}

/// The calls the allowlist lets through only on a condition on their arguments, for the
/// process `pid`.
pub(super) fn conditional(pid: u32) -> [(libc::c_long, Condition); 7] {
    // Opening read-only: no access mode but O_RDONLY, no creating, truncating or appending.
    // (O_TMPFILE needs a writable access mode, so the mode check refuses it; its bits include
    // O_DIRECTORY, so it must not be in the mask.)
    let writing = (libc::O_ACCMODE | libc::O_CREAT | libc::O_TRUNC | libc::O_APPEND) as u64;
    // Memory, but never executable.
    let exec = libc::PROT_EXEC as u64;
    let pid = u64::from(pid);
    [
        (
            libc::SYS_openat,
            Condition::Clear {
                arg: 2,
                bits: writing,
            },
        ),
        (libc::SYS_mmap, Condition::Clear { arg: 2, bits: exec }),
        (libc::SYS_mprotect, Condition::Clear { arg: 2, bits: exec }),
        // Limits of this process only (pid 0), as the CPU backstop sets them.
        (libc::SYS_prlimit64, Condition::Is { arg: 0, value: 0 }),
        // Its own name only: a spare waits confined and is renamed `lb-session` on `Start`.
        (
            libc::SYS_prctl,
            Condition::Is {
                arg: 0,
                value: libc::PR_SET_NAME as u64,
            },
        ),
        // Signals to this process only (raising SIGSYS after a report; `abort`).
        (libc::SYS_tgkill, Condition::Is { arg: 0, value: pid }),
        (libc::SYS_kill, Condition::Is { arg: 0, value: pid }),
    ]
}

/// The allowlist for the process `pid` (only signals to it are allowed).
pub(super) fn program_for(pid: u32) -> Result<BpfProgram, seccompiler::Error> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALLOWED.iter().map(|&nr| (nr, Vec::new())).collect();
    for (nr, condition) in conditional(pid) {
        let when = match condition {
            Condition::Clear { arg, bits } => when(arg, SeccompCmpOp::MaskedEq(bits), 0),
            Condition::Is { arg, value } => when(arg, SeccompCmpOp::Eq, value),
        };
        rules.insert(nr, rule(vec![when]));
    }
    compile(rules)
}

/// An allowlist: the calls in `rules` (on their conditions) go through, anything else traps.
fn compile(rules: BTreeMap<i64, Vec<SeccompRule>>) -> Result<BpfProgram, seccompiler::Error> {
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Trap,
        SeccompAction::Allow,
        std::env::consts::ARCH.try_into()?,
    )?;
    Ok(filter.try_into()?)
}

/// Installs the allowlist on every thread of this process (sets `PR_SET_NO_NEW_PRIVS` too,
/// which the kernel requires of an unprivileged filter): in a worker forked from a zygote
/// with its filter on, the narrowing filter that leaves the two together allowing exactly the
/// allowlist; anywhere else, the allowlist itself.
pub fn install() -> Result<(), seccompiler::Error> {
    let program = match PREBUILT.get() {
        Some(prebuilt) => with_pid(prebuilt.clone(), std::process::id()),
        None => program()?,
    };
    seccompiler::apply_filter_all_threads(&program)
}

/// The zygote's filter: the allowlist and [`SETUP_ONLY`], whatever the arguments.
pub fn zygote_program() -> Result<BpfProgram, seccompiler::Error> {
    let rules: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED
        .iter()
        .chain(SETUP_ONLY)
        .map(|&nr| (nr, Vec::new()))
        .collect();
    compile(rules)
}

/// Installs [`zygote_program`] on the (single-threaded) zygote, before it forks any worker.
pub fn install_for_zygote() -> Result<(), seccompiler::Error> {
    seccompiler::apply_filter(&zygote_program()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zygote_allows_every_call_a_worker_may_make_and_setup_calls_are_not_in_the_allowlist() {
        for nr in SETUP_ONLY {
            assert!(!ALLOWED.contains(nr), "call {nr} is in both lists");
        }
        let worker = program().expect("the allowlist compiles");
        let zygote = zygote_program().expect("the zygote's filter compiles");
        assert!(!worker.is_empty() && !zygote.is_empty());
    }

    /// The zygote's prebuilt filter, given a worker's pid, is the filter built for it (as is
    /// the allowlist): the placeholder stands for the pid and for nothing else.
    #[test]
    fn the_prebuilt_filter_with_a_pid_is_the_filter_built_for_that_pid() {
        let arch_check = program_for(PID_PLACEHOLDER).unwrap()[..3].to_vec();
        let narrowing = |pid| super::super::narrowing::program(pid, &arch_check);
        let builds: [&dyn Fn(u32) -> BpfProgram; 2] =
            [&|pid| program_for(pid).unwrap(), &narrowing];
        for build in builds {
            let prebuilt = build(PID_PLACEHOLDER);
            let placed = prebuilt.iter().filter(|i| i.k == PID_PLACEHOLDER).count();
            assert_eq!(placed, 2, "the pid is tested by kill and tgkill");
            for pid in [1, 2, 300, 65_534, 4_194_304, std::process::id()] {
                assert_eq!(with_pid(prebuilt.clone(), pid), build(pid));
                assert_ne!(build(pid), prebuilt, "pid {pid} is in the program");
            }
        }
    }
}
