//! What the kernel says about one worker process: resident memory and CPU time, read from
//! `/proc/<pid>/stat`. Used by the metrics scrape (RSS sum and max) and the admin API (per
//! session). One small read per process; a process that is gone reads as `None`.

use std::sync::LazyLock;

use nix::unistd::{sysconf, SysconfVar};

/// A sample of one process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcStats {
    pub rss_bytes: u64,
    /// User + system CPU time.
    pub cpu_seconds: f64,
}

/// (page size, clock ticks per second), asked of the OS once.
static UNITS: LazyLock<(u64, f64)> = LazyLock::new(|| {
    let page = sysconf(SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096);
    let ticks = sysconf(SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100);
    (page.max(1) as u64, ticks.max(1) as f64)
});

pub fn sample(pid: i32) -> Option<ProcStats> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat, UNITS.0, UNITS.1)
}

/// `pid (comm) state ppid ...`: the command name may hold spaces and parentheses, so the
/// fields are counted from the last `)`. utime, stime and rss are fields 14, 15 and 24.
fn parse_stat(stat: &str, page_size: u64, ticks: f64) -> Option<ProcStats> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let cpu_ticks = field(14)? + field(15)?;
    Some(ProcStats {
        rss_bytes: field(24)? * page_size,
        cpu_seconds: cpu_ticks as f64 / ticks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_a_tricky_name() {
        let line = "4242 (lb (se) ss) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 \
                    1000 10000000 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
        let s = parse_stat(line, 4096, 100.0).unwrap();
        assert_eq!(s.rss_bytes, 300 * 4096);
        assert!((s.cpu_seconds - 3.0).abs() < 1e-9);
        assert_eq!(parse_stat("garbage", 4096, 100.0), None);
    }

    #[test]
    fn samples_this_process() {
        let me = sample(std::process::id() as i32).expect("own /proc entry");
        assert!(me.rss_bytes > 0);
    }
}
