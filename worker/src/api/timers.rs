//! `session:setTimeout(fn, ms)`, `setInterval(fn, ms)`, `setImmediate(fn)` and
//! `clearTimeout` / `clearInterval` / `clearImmediate(handle)`.
//!
//! Setting a timer never blocks or runs anything: it records the callback in a queue here, and
//! the worker loop asks [`Timers::next_deadline`] when to wake up and [`Timers::run_next`] to run
//! one due callback. The caller runs it inside a turn ([`crate::session::LuaSession::run_timer`]:
//! the callback and the change detection after it are one turn of the budget). Rules:
//! - immediates run before any timed callback, in the order they were set; timed callbacks run
//!   by deadline, ties in the order they were set;
//! - delays are milliseconds; nil, negative or NaN mean 0, and anything over 2^31 − 1 ms
//!   (about 24.8 days, the browsers' ceiling) is cut to that instead of overflowing;
//! - an interval is re-armed one period after its previous deadline, or one period from now if
//!   that is already past (a late worker skips beats rather than bursting); its period is at
//!   least 1 ms so that it cannot spin the worker;
//! - handles are integers, unique within the session and shared by all kinds: any `clear…`
//!   cancels any timer (as browsers treat `clearTimeout` and `clearInterval`); an unknown or
//!   finished handle is ignored; an interval may clear itself from its own callback;
//! - a session has at most [`MAX_TIMERS`] live timers (intervals count until cleared); setting
//!   one more is a Lua error, so a runaway loop of `setTimeout` cannot exhaust the worker;
//! - a callback's error is logged and returned to the loop (which reports it to the tabs);
//!   timers, including the failing interval, keep running;
//! - timers live in the session's worker and die with it.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use mlua::{Function, Lua, Table, Value};

/// The most timers one session may have set and not yet finished or cleared.
pub const MAX_TIMERS: usize = 10_000;

/// Longest delay, in ms (2^31 − 1, as in browsers).
const MAX_DELAY_MS: f64 = 2_147_483_647.0;

/// Shortest interval period.
const MIN_PERIOD: Duration = Duration::from_millis(1);

/// The session's timer queue; cheap to clone (a shared handle).
#[derive(Clone)]
pub struct Timers {
    state: Rc<RefCell<State>>,
}

#[derive(Default)]
struct State {
    next_handle: i64,
    next_seq: u64,
    live: HashMap<i64, Timer>,
    queue: BTreeMap<Slot, i64>,
}

struct Timer {
    callback: Function,
    period: Option<Duration>,
    /// Where it waits in the queue; `None` while an interval's callback runs.
    slot: Option<Slot>,
}

/// Queue order: immediates (kind 0) before timed callbacks (kind 1), then deadline, then the
/// order they were set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Slot {
    kind: u8,
    at: Instant,
    seq: u64,
}

const IMMEDIATE: u8 = 0;
const TIMED: u8 = 1;

impl Timers {
    /// Sets the timer methods on `session`.
    pub fn install(lua: &Lua, session: &Table) -> mlua::Result<Timers> {
        let this = Timers {
            state: Rc::new(RefCell::new(State::default())),
        };
        let me = this.clone();
        session.raw_set(
            "setTimeout",
            lua.create_function(move |_, (_, f, ms): (Value, Value, Option<f64>)| {
                me.add(callback("setTimeout", f)?, delay(ms), None)
            })?,
        )?;
        let me = this.clone();
        session.raw_set(
            "setInterval",
            lua.create_function(move |_, (_, f, ms): (Value, Value, Option<f64>)| {
                let period = delay(ms).max(MIN_PERIOD);
                me.add(callback("setInterval", f)?, period, Some(period))
            })?,
        )?;
        let me = this.clone();
        session.raw_set(
            "setImmediate",
            lua.create_function(move |_, (_, f): (Value, Value)| {
                me.add_slot(
                    callback("setImmediate", f)?,
                    IMMEDIATE,
                    Instant::now(),
                    None,
                )
            })?,
        )?;
        for name in ["clearTimeout", "clearInterval", "clearImmediate"] {
            let me = this.clone();
            session.raw_set(
                name,
                lua.create_function(move |_, (_, handle): (Value, Value)| {
                    if let Some(handle) = as_handle(&handle) {
                        me.clear(handle);
                    }
                    Ok(())
                })?,
            )?;
        }
        Ok(this)
    }

    /// When the next callback is due: now or earlier when one can run at once, `None` when no
    /// timer is set.
    pub fn next_deadline(&self) -> Option<Instant> {
        let state = self.state.borrow();
        state.queue.keys().next().map(|slot| slot.at)
    }

    /// How many timers are set and not yet finished or cleared.
    pub fn live(&self) -> usize {
        self.state.borrow().live.len()
    }

    /// Runs one callback due at `now` (an immediate if any); the caller owns the turn it runs
    /// in. `None` when nothing is due; otherwise the callback's result, an error already logged.
    pub fn run_next(&self, now: Instant) -> Option<mlua::Result<()>> {
        Some(self.take_due(now)?.run())
    }

    /// Takes the callback due at `now` (an immediate if any) off the queue, to be run (in a
    /// turn) with [`DueTimer::run`]; `None` when nothing is due, so no turn is started for
    /// nothing.
    pub fn take_due(&self, now: Instant) -> Option<DueTimer> {
        let mut state = self.state.borrow_mut();
        let (&slot, &handle) = state.queue.first_key_value()?;
        if slot.kind == TIMED && slot.at > now {
            return None;
        }
        state.queue.remove(&slot);
        let timer = state.live.get_mut(&handle)?;
        let callback = timer.callback.clone();
        if timer.period.is_some() {
            timer.slot = None;
        } else {
            state.live.remove(&handle);
        }
        Some(DueTimer {
            timers: self.clone(),
            handle,
            slot,
            now,
            callback,
        })
    }

    fn add(
        &self,
        callback: Function,
        delay: Duration,
        period: Option<Duration>,
    ) -> mlua::Result<i64> {
        let now = Instant::now();
        let at = now.checked_add(delay).unwrap_or(now);
        self.add_slot(callback, TIMED, at, period)
    }

    fn add_slot(
        &self,
        callback: Function,
        kind: u8,
        at: Instant,
        period: Option<Duration>,
    ) -> mlua::Result<i64> {
        let mut state = self.state.borrow_mut();
        if state.live.len() >= MAX_TIMERS {
            return Err(mlua::Error::runtime(format!(
                "too many timers: a session may have at most {MAX_TIMERS} set at once"
            )));
        }
        state.next_handle += 1;
        let handle = state.next_handle;
        let slot = Slot {
            kind,
            at,
            seq: state.next_seq,
        };
        state.next_seq += 1;
        state.queue.insert(slot, handle);
        state.live.insert(
            handle,
            Timer {
                callback,
                period,
                slot: Some(slot),
            },
        );
        Ok(handle)
    }

    fn clear(&self, handle: i64) {
        let mut state = self.state.borrow_mut();
        if let Some(Timer {
            slot: Some(slot), ..
        }) = state.live.remove(&handle)
        {
            state.queue.remove(&slot);
        }
    }
}

/// A callback taken off the queue by [`Timers::take_due`], not run yet.
pub struct DueTimer {
    timers: Timers,
    handle: i64,
    slot: Slot,
    now: Instant,
    callback: Function,
}

impl DueTimer {
    /// Runs the callback, then re-arms it if it is an interval still set. An error is logged
    /// and returned.
    pub fn run(self) -> mlua::Result<()> {
        let result = self.callback.call::<()>(());
        {
            let mut state = self.timers.state.borrow_mut();
            let seq = state.next_seq;
            // Still live (not cleared by its own callback) and waiting for re-arming.
            if let Some(timer) = state.live.get_mut(&self.handle) {
                if let (Some(period), None) = (timer.period, timer.slot) {
                    let mut at = self.slot.at + period;
                    if at <= self.now {
                        at = self.now + period;
                    }
                    let next = Slot {
                        kind: TIMED,
                        at,
                        seq,
                    };
                    timer.slot = Some(next);
                    state.queue.insert(next, self.handle);
                    state.next_seq += 1;
                }
            }
        }
        if let Err(e) = &result {
            tracing::warn!(target: "lua", "timer callback failed: {e}");
        }
        result
    }
}

fn callback(what: &str, f: Value) -> mlua::Result<Function> {
    match f {
        Value::Function(f) => Ok(f),
        other => Err(mlua::Error::runtime(format!(
            "session:{what} expects a function, got {}",
            other.type_name()
        ))),
    }
}

fn delay(ms: Option<f64>) -> Duration {
    match ms {
        Some(ms) if ms > 0.0 => Duration::from_secs_f64(ms.min(MAX_DELAY_MS) / 1000.0),
        _ => Duration::ZERO,
    }
}

fn as_handle(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        Value::Number(n) if n.fract() == 0.0 => Some(*n as i64),
        _ => None,
    }
}
