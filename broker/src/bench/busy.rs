//! The busy scenario: what everyone else sees while some sessions keep their workers' CPU
//! busy. `--busy` sessions each click an action that burns 5 ms of Lua CPU, again as soon as
//! it is answered, so the machine's cores are all wanted; meanwhile the broker is asked for
//! `/healthz`, for new sessions (`GET /`), and for a quiet session's action round trip: what
//! an overloaded server still gives everyone else (BENCHMARKS.md, tenth round, judges
//! `--worker-nice` by it).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use tokio::task::JoinSet;

use super::report::Row;
use super::scenarios::{self, click, tab_with_action};
use super::ws_client::{is_value_of, Tab};

/// Clicks `spin()` until `stop`, counting the answered clicks.
async fn keep_busy(
    mut tab: Tab,
    stop: Arc<AtomicBool>,
    spins: Arc<AtomicU64>,
) -> Result<(), String> {
    let click = click(4);
    while !stop.load(Ordering::Relaxed) {
        tab.send_text(click.clone()).await?;
        tab.recv_until(|m| is_value_of(m, 3)).await?;
        spins.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Opens `sessions` busy tabs, measures health, `GET /` (`requests` of each) and a quiet
/// session's round trip (`iterations` clicks) while they spin, then stops them.
pub async fn busy(
    addr: &str,
    sessions: usize,
    requests: usize,
    iterations: usize,
    pb: &ProgressBar,
) -> Result<Vec<Row>, String> {
    let mut tabs = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        // It watches `spins` (variable 3) and clicks `spin()` (variable 4).
        tabs.push(tab_with_action(addr, "spins", "spin()").await?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let spins = Arc::new(AtomicU64::new(0));
    let mut spinning = JoinSet::new();
    for tab in tabs {
        spinning.spawn(keep_busy(tab, stop.clone(), spins.clone()));
    }
    let started = Instant::now();
    let at = format!("{sessions} sessions busy");
    let measured = async {
        let mut rows = vec![
            scenarios::health(
                addr,
                requests,
                "busy.health",
                &format!("health request, {at}"),
            )
            .await?,
        ];
        rows.push(
            scenarios::create_latency(
                addr,
                requests,
                Duration::ZERO,
                "busy.create.latency",
                &format!("GET / -> 302, 1 client, {at}"),
                pb,
            )
            .await?,
        );
        let mut action = scenarios::action(addr, iterations, None, pb).await?;
        action.key = "busy.action.round_trip".into();
        action.name = format!("action round trip of a quiet session, {at}");
        rows.push(action);
        Ok::<_, String>(rows)
    }
    .await;
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    while let Some(done) = spinning.join_next().await {
        done.map_err(|e| format!("a busy tab's task: {e}"))??;
    }
    let mut rows = measured?;
    rows.push(Row::rate(
        "busy.spins",
        &format!("busy clicks answered (5 ms of Lua CPU each), {at}"),
        spins.load(Ordering::Relaxed),
        elapsed,
        "all busy sessions together".into(),
    ));
    Ok(rows)
}
