//! The operating-system limits behind Lua's own (ARCHITECTURE.md 6 and 8). Lua's allocator ceiling
//! and the instruction hook stop ordinary overruns with a catchable error; these catch what
//! slips past them (native code, a C function that runs long, an allocation outside Lua) by
//! killing only this worker, which the broker then reports as a crash.

use std::time::{Duration, Instant};

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
    /// The CPU time read last, and when. This process has one thread, so it cannot have used
    /// more CPU since then than the wall time that has passed: a turn whose budget fits under
    /// the soft limit even so needs no reading (a `getrusage` per turn was 5 % of a worker's
    /// CPU in the action round trip, BENCHMARKS.md, eleventh round).
    last_read: Option<(Duration, Instant)>,
    /// The hard limit, read once: this process never changes it, and it cannot be raised.
    hard: u64,
}

impl CpuBackstop {
    pub fn new(per_turn: Duration) -> CpuBackstop {
        CpuBackstop {
            per_turn,
            soft: 0,
            last_read: None,
            hard: getrlimit(Resource::RLIMIT_CPU)
                .map(|(_, h)| h)
                .unwrap_or(u64::MAX),
        }
    }

    /// Makes sure the coming turn has its full budget before SIGXCPU. Usually no system call:
    /// once every few seconds, a getrusage (and rarely a setrlimit).
    pub fn arm(&mut self) {
        if !self.may_be_short(Instant::now()) {
            return;
        }
        let Some(used) = cpu_used() else { return };
        self.last_read = Some((used, Instant::now()));
        let needed = used + self.margin();
        if self.soft > needed.as_secs() {
            return;
        }
        // Move it well ahead so most turns need no setrlimit.
        let soft = (needed + self.per_turn * 4 + Duration::from_secs(10)).as_secs();
        let hard = self.hard;
        if setrlimit(Resource::RLIMIT_CPU, soft.min(hard), hard).is_ok() {
            self.soft = soft;
        }
    }

    /// What a turn may use before SIGXCPU, beyond the CPU used when it starts.
    fn margin(&self) -> Duration {
        self.per_turn * 2 + Duration::from_secs(1)
    }

    /// Whether the soft limit may be closer than the coming turn's margin, as far as can be
    /// told without reading the CPU time.
    fn may_be_short(&self, now: Instant) -> bool {
        let Some((used, at)) = self.last_read else {
            return true;
        };
        let at_most = used + now.saturating_duration_since(at) + self.margin();
        self.soft <= at_most.as_secs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_time_is_read_again_only_when_the_soft_limit_may_be_near() {
        let t0 = Instant::now();
        let mut backstop = CpuBackstop::new(Duration::from_secs(1));
        assert!(backstop.may_be_short(t0), "never read: it must read");
        // Read 5 s used at t0, soft limit 17 s: a turn needs 5 + 2 + 1 s at most at t0.
        backstop.last_read = Some((Duration::from_secs(5), t0));
        backstop.soft = 17;
        assert!(!backstop.may_be_short(t0));
        assert!(!backstop.may_be_short(t0 + Duration::from_secs(8)));
        // 9 s later it may have used 14 s: 14 + 3 reaches the soft limit.
        assert!(backstop.may_be_short(t0 + Duration::from_secs(9)));
    }
}
