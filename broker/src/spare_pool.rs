//! How many spare workers (each a process with a ready VM) to keep: sized from the observed
//! session-creation rate, between `--spare-workers` and `--max-spare-workers`.
//!
//! A spare takes `refill` to become ready (fork, connect, build the VM); while creations arrive
//! at `rate` per second, about `rate × refill` spares are always on their way, so the pool aims
//! at [`HEADROOM`] times that: enough that a `GET /` finds a ready spare instead of waiting for
//! a fork. The rate is the number of workers taken in the last [`WINDOW`]; `refill` a moving
//! average of measured refills. When creations stop the target falls back to the minimum within
//! one window, and the server lets the extra spares go (`Server::tend_spares`).

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The span over which the creation rate is counted.
pub const WINDOW: Duration = Duration::from_secs(1);
/// Buckets the window is counted in (it slides by one bucket at a time).
const BUCKETS: usize = 10;
/// Spares kept per spare on its way at the current rate.
pub const HEADROOM: f64 = 2.0;
/// What a refill is assumed to take before one has been measured.
const FIRST_REFILL: Duration = Duration::from_millis(2);

pub struct PoolSizer {
    min: usize,
    max: usize,
    state: Mutex<State>,
}

struct State {
    /// Workers taken per bucket, the current bucket last.
    taken: [u32; BUCKETS],
    /// When the current bucket began.
    bucket_start: Instant,
    /// Moving average of the time from asking for a spare to its VM being ready.
    refill: Duration,
}

impl State {
    /// Slides the window so its last bucket holds `now`.
    fn advance(&mut self, now: Instant) {
        let bucket = WINDOW / BUCKETS as u32;
        let mut passed =
            now.saturating_duration_since(self.bucket_start).as_nanos() / bucket.as_nanos().max(1);
        if passed == 0 {
            return;
        }
        if passed >= BUCKETS as u128 {
            self.taken = [0; BUCKETS];
            self.bucket_start = now;
            return;
        }
        while passed > 0 {
            self.taken.rotate_left(1);
            self.taken[BUCKETS - 1] = 0;
            self.bucket_start += bucket;
            passed -= 1;
        }
    }
}

impl PoolSizer {
    /// A pool of at least `min` and at most `max` spares (`max` below `min` counts as `min`).
    pub fn new(min: usize, max: usize) -> PoolSizer {
        PoolSizer {
            min,
            max: max.max(min),
            state: Mutex::new(State {
                taken: [0; BUCKETS],
                bucket_start: Instant::now(),
                refill: FIRST_REFILL,
            }),
        }
    }

    /// A session took a worker (a spare, or one started for it).
    pub fn taken(&self, now: Instant) {
        let mut state = self.state.lock();
        state.advance(now);
        state.taken[BUCKETS - 1] += 1;
    }

    /// A spare became ready `took` after it was asked for.
    pub fn refilled(&self, took: Duration) {
        let mut state = self.state.lock();
        // An average over the last few refills: one slow fork must not double the pool.
        state.refill = (state.refill * 7 + took) / 8;
    }

    /// How long a refill takes, on average (what starting a worker now would take).
    pub fn refill_time(&self) -> Duration {
        self.state.lock().refill
    }

    /// Workers taken per second over the last window.
    pub fn rate(&self, now: Instant) -> f64 {
        let mut state = self.state.lock();
        state.advance(now);
        f64::from(state.taken.iter().sum::<u32>()) / WINDOW.as_secs_f64()
    }

    /// How many spares (ready or on their way) to keep now.
    pub fn target(&self, now: Instant) -> usize {
        if self.max == 0 {
            return 0;
        }
        let refill = self.state.lock().refill;
        let on_their_way = self.rate(now) * refill.as_secs_f64();
        let wanted = (on_their_way * HEADROOM).ceil() as usize;
        wanted.clamp(self.min, self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_no_creations_the_pool_is_the_minimum() {
        let sizer = PoolSizer::new(4, 64);
        assert_eq!(sizer.target(Instant::now()), 4);
    }

    /// `sizer` after `n` creations spread evenly over the second from `start`, each refill
    /// having taken `refill`; the target at the end of that second.
    fn target_after(sizer: &PoolSizer, start: Instant, n: u32, refill: Duration) -> usize {
        for _ in 0..30 {
            sizer.refilled(refill);
        }
        for i in 0..n {
            sizer.taken(start + WINDOW * i / n);
        }
        sizer.target(start + WINDOW - Duration::from_millis(1))
    }

    #[test]
    fn the_pool_follows_the_creation_rate_within_its_bounds() {
        // 1,000/s with a 2 ms refill: 2 spares on their way, twice that kept.
        let start = Instant::now();
        let sizer = PoolSizer::new(2, 64);
        let t = target_after(&sizer, start, 1000, Duration::from_millis(2));
        assert!((3..=5).contains(&t), "{t}");
        // 10,000/s with a 10 ms refill would be 200: capped at the maximum.
        let start = Instant::now();
        let busy = PoolSizer::new(2, 64);
        assert_eq!(
            target_after(&busy, start, 10_000, Duration::from_millis(10)),
            64
        );
        // A window later with no creations, back to the minimum.
        assert_eq!(busy.target(start + WINDOW * 2 + WINDOW / 10), 2);
    }

    #[test]
    fn a_maximum_of_zero_means_no_pool() {
        let sizer = PoolSizer::new(0, 0);
        sizer.taken(Instant::now());
        assert_eq!(sizer.target(Instant::now()), 0);
    }
}
