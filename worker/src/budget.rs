//! Per-turn limits on Lua: a wall-clock deadline checked by an instruction-count hook, and the
//! allocator ceiling. A "turn" is one unit of work the worker hands to Lua together with the
//! change detection that follows it: running `main.lua`, one tab frame, one closed tab, one
//! timer callback, one hot-reloaded file. [`TurnBudget::turn`] is the only way to run one, and
//! [`crate::session::LuaSession`] is the only caller in a worker (ARCHITECTURE.md, "Limits").

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use mlua::{HookTriggers, Lua, VmState};
use protocol::ErrorCode;

use crate::os_limits::CpuBackstop;

/// How often (in VM instructions) the hook looks at the clock: often enough that a runaway
/// loop overshoots its budget by microseconds, rarely enough to cost nothing measurable.
const CHECK_EVERY: u32 = 10_000;

/// Start of every message the time-limit hook raises; [`error_code`] recognises it.
pub const TIME_LIMIT_MARKER: &str = "luabroker: Lua time limit";

/// The wrappers of [`TurnBudget::guard_protected_calls`], as a chunk. It is one of our fixed
/// chunks the zygote compiles once for every worker it forks (`api::ahead::fixed_chunk`).
pub const GUARD_NAME: &str = "=luabroker.budget";
pub const GUARD: &str = r#"
local expired, pcall, xpcall, resume, error = ...
local function check(ok, ...)
  if not ok and expired() then error((...), 0) end
  return ok, ...
end
_G.pcall = function(...) return check(pcall(...)) end
_G.xpcall = function(...) return check(xpcall(...)) end
if coroutine then
  coroutine.resume = function(...) return check(resume(...)) end
end
"#;

/// The deadline of the turn in progress, shared with the hook.
#[derive(Clone)]
pub struct TurnBudget {
    per_turn: Option<Duration>,
    deadline: Rc<Cell<Option<Instant>>>,
    /// The OS CPU limit behind the hook; only in a real worker process (see `os_limits`).
    backstop: Rc<RefCell<Option<CpuBackstop>>>,
    /// Turns begun so far.
    turns: Rc<Cell<u64>>,
}

impl TurnBudget {
    /// Installs the hook (and the memory ceiling) on `lua`. `turn_time_ms` or `memory_bytes`
    /// of 0 means no limit.
    pub fn install(lua: &Lua, turn_time_ms: u64, memory_bytes: u64) -> mlua::Result<TurnBudget> {
        if memory_bytes > 0 {
            lua.set_memory_limit(memory_bytes as usize)?;
        }
        let budget = TurnBudget {
            per_turn: (turn_time_ms > 0).then(|| Duration::from_millis(turn_time_ms)),
            deadline: Rc::new(Cell::new(None)),
            backstop: Rc::default(),
            turns: Rc::default(),
        };
        if let Some(per_turn) = budget.per_turn {
            let deadline = budget.deadline.clone();
            lua.set_global_hook(
                HookTriggers::new().every_nth_instruction(CHECK_EVERY),
                move |_, _| match deadline.get() {
                    Some(d) if Instant::now() >= d => Err(mlua::Error::RuntimeError(format!(
                        "{TIME_LIMIT_MARKER} of {per_turn:?} exceeded"
                    ))),
                    _ => Ok(VmState::Continue),
                },
            )?;
            budget.guard_protected_calls(lua)?;
        }
        Ok(budget)
    }

    /// `pcall`, `xpcall` and `coroutine.resume` catch errors, so a loop around one of them
    /// could catch the deadline's error forever (the sparse hook keeps landing in the inner
    /// function). After the deadline they re-raise instead of returning. The wrappers are Lua
    /// functions, so yielding across them keeps working.
    fn guard_protected_calls(&self, lua: &Lua) -> mlua::Result<()> {
        let deadline = self.deadline.clone();
        let expired = lua.create_function(move |_, ()| {
            Ok(deadline.get().is_some_and(|d| Instant::now() >= d))
        })?;
        crate::api::ahead::fixed_chunk(lua, GUARD_NAME, GUARD)?.call::<()>((
            expired,
            lua.globals().get::<mlua::Value>("pcall")?,
            lua.globals().get::<mlua::Value>("xpcall")?,
            lua.globals()
                .get::<Option<mlua::Table>>("coroutine")?
                .map(|c| c.get::<mlua::Value>("resume"))
                .transpose()?,
            lua.globals().get::<mlua::Value>("error")?,
        ))
    }

    /// Puts RLIMIT_CPU behind the hook. Process-wide, so only the worker process does this
    /// (never a test binary that hosts many VMs). Armed here already, while the VM is built:
    /// a spare that waits less than the backstop's margin starts its session's first turn
    /// with no system call for it (`CpuBackstop::arm`).
    pub fn enable_cpu_backstop(&self) {
        if let Some(per_turn) = self.per_turn {
            let mut backstop = CpuBackstop::new(per_turn);
            backstop.arm();
            *self.backstop.borrow_mut() = Some(backstop);
        }
    }

    /// Runs `work` as one turn: the clock starts now and stops when `work` returns (or
    /// unwinds), so Lua run outside a turn (finalizers at exit) is not timed. Turns do not nest:
    /// `work` must not start another.
    pub fn turn<R>(&self, work: impl FnOnce() -> R) -> R {
        /// Ends the turn even if `work` panics.
        struct EndTurn<'a>(&'a Cell<Option<Instant>>);
        impl Drop for EndTurn<'_> {
            fn drop(&mut self) {
                self.0.set(None);
            }
        }
        if let Some(backstop) = self.backstop.borrow_mut().as_mut() {
            backstop.arm();
        }
        self.turns.set(self.turns.get() + 1);
        self.deadline
            .set(self.per_turn.map(|per_turn| Instant::now() + per_turn));
        let _end = EndTurn(&self.deadline);
        work()
    }

    /// How many turns have begun (for tests and diagnostics).
    pub fn turns(&self) -> u64 {
        self.turns.get()
    }
}

/// The `error` code for a failed Lua call: `limit` when a budget stopped it, else `lua-error`.
pub fn error_code(err: &mlua::Error) -> ErrorCode {
    if is_limit(err) {
        ErrorCode::Limit
    } else {
        ErrorCode::LuaError
    }
}

/// Whether the error (or what caused it, through callbacks) is a memory or time limit.
pub fn is_limit(err: &mlua::Error) -> bool {
    match err {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::RuntimeError(msg) => msg.contains(TIME_LIMIT_MARKER),
        mlua::Error::CallbackError { cause, .. } => is_limit(cause),
        mlua::Error::WithContext { cause, .. } => is_limit(cause),
        other => other.to_string().contains(TIME_LIMIT_MARKER),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runaway_loop_is_stopped_with_a_limit_error() {
        let lua = Lua::new();
        let budget = TurnBudget::install(&lua, 50, 0).unwrap();
        let started = Instant::now();
        let err = budget
            .turn(|| lua.load("while true do end").exec())
            .unwrap_err();
        assert!(is_limit(&err), "{err}");
        assert_eq!(error_code(&err), ErrorCode::Limit);
        assert!(started.elapsed() < Duration::from_secs(2));
        // The next turn gets a fresh budget.
        budget
            .turn(|| {
                lua.load("local x = 0 for i = 1, 1000 do x = x + i end")
                    .exec()
            })
            .unwrap();
        assert_eq!(budget.turns(), 2);
    }

    #[test]
    fn pcall_cannot_swallow_the_deadline_forever() {
        let lua = Lua::new();
        let budget = TurnBudget::install(&lua, 50, 0).unwrap();
        let err = budget
            .turn(|| {
                lua.load("while true do pcall(function() while true do end end) end")
                    .exec()
            })
            .unwrap_err();
        assert!(is_limit(&err), "{err}");
    }

    #[test]
    fn coroutines_cannot_hide_from_the_deadline() {
        let lua = Lua::new();
        let budget = TurnBudget::install(&lua, 50, 0).unwrap();
        let err = budget
            .turn(|| lua
                .load("while true do coroutine.resume(coroutine.create(function() while true do end end)) end")
                .exec())
            .unwrap_err();
        assert!(is_limit(&err), "{err}");
        let err = budget
            .turn(|| lua
                .load("coroutine.wrap(function() while true do pcall(function() while true do end end) end end)()")
                .exec())
            .unwrap_err();
        assert!(is_limit(&err), "{err}");
    }

    #[test]
    fn protected_calls_still_work_inside_the_budget() {
        let lua = Lua::new();
        let budget = TurnBudget::install(&lua, 5000, 0).unwrap();
        let ok: bool = budget
            .turn(|| lua.load(
                r#"
                local ok, err = pcall(error, "boom")
                assert(not ok and err:find("boom"))
                local ok2, v = xpcall(function() return 7 end, debug and debug.traceback or print)
                assert(ok2 and v == 7)
                local co = coroutine.create(function(a) local b = coroutine.yield(a + 1) return b * 2 end)
                local _, x = coroutine.resume(co, 1)
                local _, y = coroutine.resume(co, 10)
                -- yielding across pcall inside a coroutine still works
                local co2 = coroutine.wrap(function() pcall(function() coroutine.yield(5) end) return 6 end)
                return x == 2 and y == 20 and co2() == 5 and co2() == 6
                "#,
            )
            .eval())
            .unwrap();
        assert!(ok);
    }

    #[test]
    fn allocation_past_the_ceiling_is_a_limit_error() {
        let lua = Lua::new();
        let budget = TurnBudget::install(&lua, 0, 8 * 1024 * 1024).unwrap();
        let err = budget
            .turn(|| {
                lua.load("local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 64) .. i end")
                    .exec()
            })
            .unwrap_err();
        assert!(is_limit(&err), "{err}");
        // The VM is still usable afterwards.
        lua.load("collectgarbage()").exec().unwrap();
        assert_eq!(lua.load("return 1 + 1").eval::<i64>().unwrap(), 2);
    }

    #[test]
    fn a_turn_ends_even_when_its_work_panics() {
        let lua = Lua::new();
        let budget = TurnBudget::install(&lua, 50, 0).unwrap();
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            budget.turn::<()>(|| panic!("boom"))
        }));
        assert!(unwound.is_err());
        // Outside a turn nothing is timed: this loop runs 100 ms of wall time, past the 50 ms
        // budget, without a limit error. (Wall time from Rust: os.clock() is the process's CPU
        // time, which other test threads advance too.)
        let started = Instant::now();
        let wall = lua
            .create_function(move |_, ()| Ok(started.elapsed().as_secs_f64()))
            .unwrap();
        lua.globals().set("wall", wall).unwrap();
        lua.load("while wall() < 0.1 do end").exec().unwrap();
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn ordinary_errors_are_lua_errors() {
        let lua = Lua::new();
        let err = lua.load("error('boom')").exec().unwrap_err();
        assert_eq!(error_code(&err), ErrorCode::LuaError);
    }
}
