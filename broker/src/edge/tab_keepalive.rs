//! WebSocket keep-alive: a tab whose browser vanished (laptop closed, network gone) leaves a
//! TCP connection that nothing will ever close. The broker pings every tab each
//! `--ws-ping-interval`; a tab from which nothing at all (a pong or any frame) arrived since
//! the previous ping is dropped, so a dead tab goes within two intervals.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::{Interval, MissedTickBehavior};

/// What the tab's reader tells its writer: something arrived.
#[derive(Debug)]
pub struct Liveness {
    heard: AtomicBool,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            heard: AtomicBool::new(true),
        }
    }
}

impl Liveness {
    pub fn heard(&self) {
        self.heard.store(true, Ordering::Relaxed);
    }

    /// At a ping tick: whether the tab answered since the last one (and start over).
    pub fn answered(&self) -> bool {
        self.heard.swap(false, Ordering::Relaxed)
    }
}

/// The ping ticker, `None` when pings are off (`--ws-ping-interval 0`). Its first tick is one
/// interval from now.
pub fn ping_ticker(interval: Duration) -> Option<Interval> {
    (!interval.is_zero()).then(|| {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker
    })
}

/// Waits for the next tick, forever when there is no ticker.
pub async fn next_tick(ticker: &mut Option<Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tab_must_answer_between_two_ticks() {
        let l = Liveness::default();
        assert!(l.answered(), "a new tab has a full interval");
        assert!(!l.answered(), "nothing heard since");
        l.heard();
        assert!(l.answered());
    }
}
