//! The operating-system limits the broker lives within: at start-up the descriptor limit is
//! raised as far as this process may (soft up to hard; as root, hard too, within
//! `fs.nr_open`), so that a descriptor shortage is something admission sees coming rather than
//! an `accept` error.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// As root the hard limit is raised to this (or `fs.nr_open`, whichever is lower): room for
/// 10,000 sessions with several tabs each. Not higher: children inherit the limit, and
/// anything that walks every possible descriptor pays for it.
const ROOT_NOFILE_TARGET: u64 = 1 << 20;

/// Raises RLIMIT_NOFILE; returns the (soft, hard) limits now in force.
pub fn raise_fd_limit() -> Option<(u64, u64)> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    // Only root (CAP_SYS_RESOURCE) may raise the hard limit; for anyone else the attempt
    // fails harmlessly and the soft limit is raised to the hard one below.
    if let Some(nr_open) = nr_open {
        let target = ROOT_NOFILE_TARGET.min(nr_open);
        if hard < target && setrlimit(Resource::RLIMIT_NOFILE, target, target).is_ok() {
            return Some((target, target));
        }
    }
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some((hard, hard));
    }
    Some((soft, hard))
}

/// Says at start-up what the limits allow, and warns when that is less than `--max-sessions`.
pub fn report(budget: &crate::fd_budget::FdBudget, max_sessions: usize) {
    let (by_fds, by_processes) = budget.sessions_allowed();
    let allowed = by_fds.min(by_processes);
    tracing::info!(
        fd_limit = budget.limit(),
        sessions_by_descriptors = by_fds,
        sessions_by_processes = by_processes,
        "the OS limits allow about {allowed} sessions with one tab each; beyond that GET / and \
         new WebSockets answer 503"
    );
    if allowed < max_sessions as u64 {
        tracing::warn!(
            "--max-sessions is {max_sessions} but the limits allow about {allowed} sessions with \
             a tab (raise LimitNOFILE / ulimit -n, or kernel.pid_max; see README \"Running \
             10,000 sessions\")"
        );
    }
}
