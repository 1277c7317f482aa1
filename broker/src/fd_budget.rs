//! The descriptor and process budget: how much of the OS limits the broker has left, so that
//! admission refuses (a prompt `503` with `Retry-After`) *before* a limit is hit, instead of
//! `accept` failing, worker connections never arriving and requests hanging.
//!
//! The count comes from `stat("/proc/self/fd")`, whose size is the number of open descriptors
//! (Linux ≥ 6.2: a popcount of the descriptor table, microseconds however many are open). Older
//! kernels report 0 there, and then the count walks the directory, which costs a `readdir` entry
//! and a dentry per descriptor (tens of milliseconds at 20,000: O(live sessions) per count).
//! Either way a background task counts every [`RECOUNT_EVERY`], and between counts each
//! admission adds what it will cost ([`SESSION_COST`], [`TAB_COST`]): the estimate errs on the
//! side of refusing. A reserve stays free for what must still work at the limit (the refusing
//! `503`s themselves, `/healthz`, logs, spawning a worker for a session already admitted).
//! Processes are budgeted the same way against `kernel.pid_max` / `kernel.threads-max` (all
//! processes on the machine count, from `/proc/loadavg`).

use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use std::time::Duration;

/// Descriptors one new session costs the broker: its worker's socket and the tab to come.
pub const SESSION_COST: u64 = 2;
/// Descriptors one more tab costs: its TCP connection.
pub const TAB_COST: u64 = 1;
/// How often the real descriptor count replaces the estimate.
pub const RECOUNT_EVERY: Duration = Duration::from_millis(100);
/// Processes kept free on the machine (the broker's own threads, the operator's shell).
const PROCESS_RESERVE: u64 = 64;

/// What ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Short {
    Descriptors,
    Processes,
}

impl Short {
    /// The `reason` label of the refusal metric.
    pub fn reason(self) -> &'static str {
        match self {
            Short::Descriptors => "descriptors",
            Short::Processes => "processes",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Short::Descriptors => "the server is out of file descriptors for new connections",
            Short::Processes => "the machine is out of process slots for new sessions",
        }
    }
}

static BUDGET: OnceLock<Arc<FdBudget>> = OnceLock::new();

/// The broker's one budget, made on first use (start-up makes it right after raising the
/// limits, and starts its recount).
pub fn budget() -> &'static Arc<FdBudget> {
    BUDGET.get_or_init(FdBudget::new)
}

pub struct FdBudget {
    /// RLIMIT_NOFILE (soft) after start-up raised it.
    limit: u64,
    /// Descriptors never handed to admissions.
    reserve: u64,
    /// Open descriptors at the last count.
    counted: AtomicU64,
    /// Descriptors admitted since the last count.
    since: AtomicU64,
    /// Processes the machine may hold (pid_max / threads-max, the lower), minus the reserve.
    process_cap: u64,
    /// Processes on the machine at the last count.
    processes: AtomicU64,
    /// Sessions admitted since the last count (each one a process).
    processes_since: AtomicU64,
    /// Held open so that, at the very limit, one descriptor can be freed to accept a
    /// connection and answer it `503` (see [`crate::guarded_listener`]).
    spare: Mutex<Option<File>>,
}

impl FdBudget {
    /// Reads the limits now in force and counts once.
    pub fn new() -> Arc<FdBudget> {
        let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(1024);
        let process_cap = ["/proc/sys/kernel/pid_max", "/proc/sys/kernel/threads-max"]
            .iter()
            .filter_map(|p| read_u64(p))
            .min()
            .unwrap_or(u64::MAX)
            .saturating_sub(PROCESS_RESERVE);
        let budget = Arc::new(FdBudget {
            limit,
            reserve: reserve_for(limit),
            counted: AtomicU64::new(0),
            since: AtomicU64::new(0),
            process_cap,
            processes: AtomicU64::new(0),
            processes_since: AtomicU64::new(0),
            spare: Mutex::new(File::open("/dev/null").ok()),
        });
        budget.recount();
        budget
    }

    /// Counts again, every [`RECOUNT_EVERY`], forever (on a blocking thread, for the kernels
    /// where counting walks `/proc/self/fd`).
    pub fn keep_counting(self: &Arc<Self>) {
        let budget = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RECOUNT_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let b = budget.clone();
                let _ = tokio::task::spawn_blocking(move || b.recount()).await;
            }
        });
    }

    fn recount(&self) {
        if let Some(open) = open_descriptors() {
            self.counted.store(open, Ordering::Relaxed);
            self.since.store(0, Ordering::Relaxed);
        }
        if let Some(total) = machine_processes() {
            self.processes.store(total, Ordering::Relaxed);
            self.processes_since.store(0, Ordering::Relaxed);
        }
    }

    /// Descriptors left for admissions (0 when past the headroom).
    pub fn fds_left(&self) -> u64 {
        let used = self.counted.load(Ordering::Relaxed) + self.since.load(Ordering::Relaxed);
        self.limit.saturating_sub(self.reserve).saturating_sub(used)
    }

    fn processes_left(&self) -> u64 {
        let used =
            self.processes.load(Ordering::Relaxed) + self.processes_since.load(Ordering::Relaxed);
        self.process_cap.saturating_sub(used)
    }

    /// Admits a new session (descriptors and a process) or says what is short.
    pub fn admit_session(&self) -> Result<(), Short> {
        if self.fds_left() < SESSION_COST {
            return Err(Short::Descriptors);
        }
        if self.processes_left() < 1 {
            return Err(Short::Processes);
        }
        self.since.fetch_add(SESSION_COST, Ordering::Relaxed);
        self.processes_since.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Admits one more tab (a WebSocket upgrade).
    pub fn admit_tab(&self) -> Result<(), Short> {
        if self.fds_left() < TAB_COST {
            return Err(Short::Descriptors);
        }
        self.since.fetch_add(TAB_COST, Ordering::Relaxed);
        Ok(())
    }

    /// Why new sessions would be refused now, for `/readyz`.
    pub fn not_ready(&self) -> Option<String> {
        if self.fds_left() < SESSION_COST {
            return Some(format!(
                "out of file descriptors ({} of RLIMIT_NOFILE {} in use, {} kept in reserve)",
                self.limit - self.fds_left().min(self.limit) - self.reserve.min(self.limit),
                self.limit,
                self.reserve
            ));
        }
        if self.processes_left() < 1 {
            return Some("the machine is out of process slots (kernel.pid_max)".into());
        }
        None
    }

    /// How many sessions, each with one tab, the limits allow from now (the start-up line).
    pub fn sessions_allowed(&self) -> (u64, u64) {
        (self.fds_left() / SESSION_COST, self.processes_left())
    }

    /// The default `--max-connections`: three quarters of what the reserve leaves. The last
    /// quarter is what client connections can never take, however many a client opens: the
    /// worker sockets of the sessions admitted (connections beyond the cap shed idle ones
    /// instead, `edge/conn_table.rs`).
    pub fn connection_cap(&self) -> usize {
        let usable = self.limit.saturating_sub(self.reserve);
        usize::try_from(usable / 4 * 3)
            .unwrap_or(usize::MAX)
            .max(16)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Gives up the spare descriptor so one connection can be accepted at the limit; the
    /// caller hands it back with [`Self::restore_spare`].
    pub fn release_spare(&self) -> bool {
        self.spare.lock().take().is_some()
    }

    pub fn restore_spare(&self) {
        let mut spare = self.spare.lock();
        if spare.is_none() {
            *spare = File::open("/dev/null").ok();
        }
    }
}

/// The prompt answer past the headroom: `503` with `Retry-After`, counted by reason.
pub fn refusal(short: Short) -> axum::response::Response {
    use axum::response::IntoResponse;
    crate::metrics::metrics().refused(short.reason());
    (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        [(axum::http::header::RETRY_AFTER, "1")],
        format!("{}; try again shortly\n", short.message()),
    )
        .into_response()
}

/// Descriptors kept back: 5 % of the limit, at least 32 and at most 1,024.
fn reserve_for(limit: u64) -> u64 {
    (limit / 20).clamp(32, 1024)
}

/// Descriptors this process has open.
fn open_descriptors() -> Option<u64> {
    // Linux ≥ 6.2 reports the count as the directory's size; no descriptor is opened for it.
    match std::fs::metadata("/proc/self/fd").map(|m| m.len()) {
        Ok(n) if n > 0 => Some(n),
        _ => {
            let dir = std::fs::read_dir("/proc/self/fd").ok()?;
            // Less one: the directory handle itself.
            Some(dir.count().saturating_sub(1) as u64)
        }
    }
}

fn read_u64(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Processes (threads, as the kernel counts them for pid_max) on the whole machine: the
/// fourth field of `/proc/loadavg` is `running/total`.
fn machine_processes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace()
        .nth(3)?
        .split('/')
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: u64, open: u64) -> FdBudget {
        FdBudget {
            limit,
            reserve: reserve_for(limit),
            counted: AtomicU64::new(open),
            since: AtomicU64::new(0),
            process_cap: 1_000,
            processes: AtomicU64::new(10),
            processes_since: AtomicU64::new(0),
            spare: Mutex::new(None),
        }
    }

    #[test]
    fn admissions_stop_at_the_reserve_until_a_recount() {
        // 200 descriptors: 32 reserved, 40 open, so 128 left = 64 sessions.
        let b = budget(200, 40);
        assert_eq!(b.sessions_allowed().0, 64);
        for _ in 0..64 {
            assert_eq!(b.admit_session(), Ok(()));
        }
        assert_eq!(b.admit_session(), Err(Short::Descriptors));
        assert_eq!(b.admit_tab(), Err(Short::Descriptors));
        assert!(b.not_ready().is_some());
    }

    #[test]
    fn processes_are_budgeted_too() {
        let b = budget(100_000, 10);
        b.processes.store(1_000, Ordering::Relaxed);
        assert_eq!(b.admit_session(), Err(Short::Processes));
        assert_eq!(b.admit_tab(), Ok(()), "a tab needs no process");
    }

    #[test]
    fn the_count_follows_descriptors_opened_and_closed() {
        // Other test threads open files too, so compare with a margin rather than exactly.
        let before = open_descriptors().unwrap();
        let files: Vec<File> = (0..200).map(|_| File::open("/dev/null").unwrap()).collect();
        let during = open_descriptors().unwrap();
        assert!(
            during >= before + 150,
            "{before} before, {during} with 200 more open"
        );
        drop(files);
        let after = open_descriptors().unwrap();
        assert!(
            after + 150 <= during,
            "{during} with 200 open, {after} after"
        );
    }

    #[test]
    fn connections_leave_a_quarter_for_workers() {
        // 256 descriptors: 32 reserved, 224 usable, 168 for connections.
        assert_eq!(budget(256, 0).connection_cap(), 168);
        assert_eq!(budget(1 << 20, 0).connection_cap(), 785_664);
    }

    #[test]
    fn the_reserve_scales_with_the_limit() {
        assert_eq!(reserve_for(200), 32);
        assert_eq!(reserve_for(20_000), 1_000);
        assert_eq!(reserve_for(1 << 20), 1_024);
    }
}
