//! The operating-system limits behind Lua's own (ARCHITECTURE.md 6 and 8). Lua's allocator ceiling
//! and the instruction hook stop ordinary overruns with a catchable error; these catch what
//! slips past them (native code, a C function that runs long, an allocation outside Lua) by
//! killing only this worker, which the broker then reports as a crash.

use std::time::Duration;

use nix::sys::resource::{getrlimit, getrusage, setrlimit, Resource, UsageWho};
use protocol::launch::ENV_NICE;

/// Address space beyond the Lua ceiling for the executable, the runtime and the stack.
const ADDRESS_SPACE_HEADROOM: u64 = 256 * 1024 * 1024;

/// `oom_score_adj` for workers: the kernel's OOM killer picks a worker before the broker.
const OOM_SCORE_ADJ: &str = "800";

/// Lowers this process's CPU priority to the nice value the broker passed in [`ENV_NICE`]
/// (the zygote and exec'd workers call it first thing; forked workers inherit it), so that when
/// the cores are short the broker's threads and the machine's other services run first. What
/// that buys and costs was measured (BENCHMARKS.md, tenth round): a spare being prepared is a
/// worker too, so it does not shorten `GET /`'s tail while sessions are busy.
pub fn lower_priority() {
    let Some(nice) = std::env::var(ENV_NICE).ok() else {
        return;
    };
    match nice.parse::<i32>() {
        Ok(n @ 1..=19) => {
            // Only ever a higher nice value: an unprivileged process may always lower its
            // own priority.
            // SAFETY: setpriority takes plain integers and touches no memory of ours; who = 0
            // is this process. (nix has no wrapper for it.)
            if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, n) } != 0 {
                let e = std::io::Error::last_os_error();
                tracing::warn!("cannot lower the CPU priority to nice {n}: {e}");
            }
        }
        _ => tracing::warn!("{ENV_NICE}={nice:?} is not a nice value from 1 to 19; ignored"),
    }
}

/// Applies the per-process limits once the session's Lua memory limit is known.
/// RLIMIT_AS counts every mapping, which is right for this single-threaded process.
pub fn apply(lua_memory_bytes: u64) {
    if lua_memory_bytes > 0 {
        let limit = lua_memory_bytes.saturating_add(ADDRESS_SPACE_HEADROOM);
        if let Err(e) = setrlimit(Resource::RLIMIT_AS, limit, limit) {
            tracing::warn!("cannot set RLIMIT_AS: {e}");
        }
    }
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", OOM_SCORE_ADJ) {
        tracing::warn!("cannot raise oom_score_adj: {e}");
    }
}

/// CPU seconds this process has used so far.
fn cpu_used() -> Option<Duration> {
    let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let t =
        |tv: nix::sys::time::TimeVal| Duration::new(tv.tv_sec() as u64, tv.tv_usec() as u32 * 1000);
    Some(t(usage.user_time()) + t(usage.system_time()))
}

/// RLIMIT_CPU counts a process's whole life, so it cannot be a per-turn budget by itself.
/// Instead its soft limit is kept a little ahead of what the current turn may use: at the
/// start of a turn it is moved to (CPU used so far + twice the turn budget + 1 s), so a turn
/// that escapes the Lua hook gets SIGXCPU well after the hook should have stopped it. Only the
/// soft limit moves (a lowered hard limit could never be raised again).
pub struct CpuBackstop {
    per_turn: Duration,
    /// The soft limit currently set, in whole seconds.
    soft: u64,
}

impl CpuBackstop {
    pub fn new(per_turn: Duration) -> CpuBackstop {
        CpuBackstop { per_turn, soft: 0 }
    }

    /// Makes sure the coming turn has its full budget before SIGXCPU. Cheap when nothing
    /// needs to move: one getrusage call.
    pub fn arm(&mut self) {
        let Some(used) = cpu_used() else { return };
        let needed = used + self.per_turn * 2 + Duration::from_secs(1);
        if self.soft > needed.as_secs() {
            return;
        }
        // Move it well ahead so most turns need no setrlimit.
        let soft = (needed + self.per_turn * 4 + Duration::from_secs(10)).as_secs();
        let hard = getrlimit(Resource::RLIMIT_CPU)
            .map(|(_, h)| h)
            .unwrap_or(u64::MAX);
        if setrlimit(Resource::RLIMIT_CPU, soft.min(hard), hard).is_ok() {
            self.soft = soft;
        }
    }
}
