//! Unattended: the sessions no tab is connected to, in the order their time runs out.
//!
//! The adoption window and the idle timeout used to be found by a scan of every live session
//! (each one's lock taken) four times a second: O(live sessions) per tick, under the session
//! table's lock. Instead each session without a tab sits in one of two queues ordered by when
//! it became unattended (one queue per timeout, so that one timeout's long wait never hides
//! the other's): [`Unattended::due`] pops only the sessions whose deadline has passed, and
//! each popped one is checked against its own state by `Session::check_expiry` (a tab may
//! have arrived, or SIGHUP lengthened a timeout, since it was queued). A session is in at most
//! one queue, at most once: it records its own place (`Place`), and leaves when a tab
//! attaches, when it starts ending, and when the manager removes it.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Which deadline a session without tabs is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Never adopted: `--adoption-timeout` after it was created (or last crashed).
    Adoption,
    /// Its last tab left: `--idle-timeout` after that.
    Idle,
}

/// A session's entry: which queue, since when, and its vended id (unique, so two sessions
/// unattended since the same instant are both kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub wait: Wait,
    pub since: Instant,
    pub vended_id: u64,
}

type Queue<S> = BTreeMap<(Instant, u64), Weak<S>>;

/// The queues, of sessions `S` (`Session`; generic so that this file needs nothing of it).
pub struct Unattended<S> {
    queues: Mutex<(Queue<S>, Queue<S>)>,
}

impl<S> Unattended<S> {
    pub fn new() -> Arc<Unattended<S>> {
        Arc::new(Unattended {
            queues: Mutex::new((BTreeMap::new(), BTreeMap::new())),
        })
    }

    pub fn insert(&self, place: Place, session: Weak<S>) {
        let mut q = self.queues.lock();
        queue(&mut q, place.wait).insert((place.since, place.vended_id), session);
    }

    pub fn remove(&self, place: Place) {
        let mut q = self.queues.lock();
        queue(&mut q, place.wait).remove(&(place.since, place.vended_id));
    }

    /// Takes out every session whose deadline (`adoption` or `idle` after it became
    /// unattended; `None` = never) is at or before `now`, oldest first.
    pub fn due(
        &self,
        adoption: Option<Duration>,
        idle: Option<Duration>,
        now: Instant,
    ) -> Vec<Arc<S>> {
        let mut q = self.queues.lock();
        let mut due = Vec::new();
        for (wait, limit) in [(Wait::Adoption, adoption), (Wait::Idle, idle)] {
            let Some(limit) = limit else { continue };
            let queue = queue(&mut q, wait);
            while let Some(entry) = queue.first_entry() {
                if entry.key().0 + limit > now {
                    break;
                }
                // A session already dropped has nothing left to end.
                if let Some(session) = entry.remove().upgrade() {
                    due.push(session);
                }
            }
        }
        due
    }

    /// Sessions queued, per wait.
    #[cfg(test)]
    pub fn len(&self) -> (usize, usize) {
        let q = self.queues.lock();
        (q.0.len(), q.1.len())
    }
}

fn queue<S>(q: &mut (Queue<S>, Queue<S>), wait: Wait) -> &mut Queue<S> {
    match wait {
        Wait::Adoption => &mut q.0,
        Wait::Idle => &mut q.1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stands in for a session: its vended id.
    struct Session {
        vended_id: u64,
    }

    impl Session {
        fn new(_id: String, vended_id: u64, _q: Arc<Unattended<Session>>) -> Arc<Session> {
            Arc::new(Session { vended_id })
        }
    }

    fn place(wait: Wait, since: Instant, vended_id: u64) -> Place {
        Place {
            wait,
            since,
            vended_id,
        }
    }

    #[test]
    fn with_many_sessions_each_deadline_fires_at_its_time_and_not_before() {
        let t0 = Instant::now();
        let q = Unattended::new();
        let sessions: Vec<Arc<Session>> = (0..10_000u64)
            .map(|i| Session::new(format!("{i:032x}"), i, q.clone()))
            .collect();
        // Unattended one millisecond apart; the odd ones were adopted once (idle).
        for (i, s) in sessions.iter().enumerate() {
            let wait = if i % 2 == 0 {
                Wait::Adoption
            } else {
                Wait::Idle
            };
            let since = t0 + Duration::from_millis(i as u64);
            q.insert(place(wait, since, i as u64), Arc::downgrade(s));
        }
        let adoption = Some(Duration::from_secs(60));
        let idle = Some(Duration::from_secs(3600));
        let at = |ms: u64| t0 + Duration::from_millis(ms);

        assert!(q.due(adoption, idle, at(59_999)).is_empty());
        let first = q.due(adoption, idle, at(60_000));
        assert_eq!(first.len(), 1, "only session 0's window has closed");
        assert_eq!(first[0].vended_id, 0);
        // Ten seconds later: every even session created by then, no idle one.
        let next = q.due(adoption, idle, at(70_000));
        assert_eq!(next.len(), 5_000 - 1);
        assert!(next.iter().all(|s| s.vended_id % 2 == 0));
        assert!(
            next.windows(2).all(|w| w[0].vended_id < w[1].vended_id),
            "oldest first"
        );
        assert_eq!(q.len(), (0, 5_000));
        // The idle ones, at their own deadline.
        assert!(q.due(adoption, idle, at(3_600_000)).is_empty());
        assert_eq!(q.due(adoption, idle, at(3_600_001)).len(), 1);
        assert_eq!(q.due(adoption, None, at(9_999_999)).len(), 0, "never");
        assert_eq!(q.due(adoption, idle, at(9_999_999)).len(), 4_999);
    }

    #[test]
    fn a_removed_or_dropped_session_is_never_due() {
        let t0 = Instant::now();
        let q = Unattended::new();
        let kept = Session::new("a".repeat(32), 1, q.clone());
        let left = Session::new("b".repeat(32), 2, q.clone());
        let dropped = Session::new("c".repeat(32), 3, q.clone());
        for (s, id) in [(&kept, 1), (&left, 2), (&dropped, 3)] {
            q.insert(place(Wait::Adoption, t0, id), Arc::downgrade(s));
        }
        q.remove(place(Wait::Adoption, t0, 2));
        drop(dropped);
        let due = q.due(Some(Duration::ZERO), None, t0);
        assert_eq!(due.len(), 1);
        assert!(Arc::ptr_eq(&due[0], &kept));
        assert_eq!(q.len(), (0, 0));
    }
}
