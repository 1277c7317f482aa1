//! Settling unchanged leaves in bulk, so that a change-detection pass costs what changed rather
//! than what is watched.
//!
//! Nearly every variable of a pass over a large app is a leaf (`f.N.v`) whose path, read with
//! raw lookups, still gives the scalar it gave last time, and that has nothing else to report.
//! For such a variable a full evaluation, `store` and `emit` do nothing. [`settle_unchanged`]
//! proves that for a run of them at the top of the pass's stack in one visit to the Lua stack:
//! the parent's value is pushed once, the first step every sibling shares (`f`) is looked up
//! once, field names are pushed once, and the result is compared in place, so no table on the
//! way gets an mlua reference. It stops at the first variable that needs more, and the pass
//! handles that one as usual. No Lua code runs here: a step that could run some (a method
//! call, a missing key in a table with a metatable, which may have `__index`) stops the run,
//! so the pass sees every side effect in the same order as without this.
//!
//! The Lua stack is reached through mlua's `exec_raw_lua`, which is public but undocumented:
//! the documented `exec_raw` runs its closure as a protected call, which costs about as much
//! as the walk it would protect, and nothing here can raise an error to protect against.
//! Variables are looked up a chunk at a time with prefetches (see [`Lookahead`]): the pass is
//! bound by cache misses, not by instructions.

use std::ffi::c_int;
use std::rc::Rc;

use mlua::{ffi, Lua, Value as LuaValue};

use super::path::{Path, Segment};
use super::state::State;
use super::value_json::is_scalar;
use super::variable::{Binding, VarKey, Variable};

/// A variable waiting in a pass, with its parent's value as computed in this pass.
pub type Pending = (VarKey, Option<Rc<LuaValue>>);

/// Field names kept on the Lua stack for the run (`v` in `f.N.v`).
const KEY_SLOTS: c_int = 6;

/// The longest path settled here; each step leaves its result on the stack until the
/// variable is done (cheaper than removing the container every step). Longer paths go the
/// pass's usual way.
const MAX_STEPS: usize = 8;

/// Pops every entry at the top of `stack` that is an unchanged, settled leaf.
pub fn settle_unchanged(st: &State, stack: &mut Vec<Pending>, lua: &Lua) {
    // Most pops in a small app are not candidates: find out before taking the Lua lock.
    match stack.last() {
        Some((key, Some(_))) if st.vars.get(key).is_some_and(|v| settled(v).is_some()) => {}
        _ => return,
    }
    lua.exec_raw_lua(|raw| {
        let state = raw.state();
        // SAFETY: the lock `exec_raw_lua` holds keeps `state` valid and ours until it
        // returns. The stack is grown first (`lua_checkstack` reports failure rather than
        // raising) and put back to `top` before returning. Nothing in between can raise or run
        // Lua code: raw gets and `lua_getmetatable` call no metamethods and allocate nothing,
        // `push_value` of a table or string only copies a reference from mlua's own thread,
        // and the rest moves values between slots.
        unsafe {
            // The fixed slots, then per variable: its steps, a key and a metatable.
            if ffi::lua_checkstack(state, 2 + KEY_SLOTS + MAX_STEPS as c_int + 3) == 0 {
                return;
            }
            let top = ffi::lua_gettop(state);
            for _ in 0..2 + KEY_SLOTS {
                ffi::lua_pushnil(state);
            }
            let push = |v: &LuaValue| raw.push_value(v).is_ok();
            let mut walk = Walk {
                state,
                push: &push,
                base_slot: top + 1,
                first_slot: top + 2,
                work: top + 2 + KEY_SLOTS,
                base: std::ptr::null(),
                base_type: ffi::LUA_TNIL,
                first: None,
                first_type: ffi::LUA_TNIL,
                keys: Vec::new(),
            };
            let mut ahead = Lookahead::default();
            'run: loop {
                ahead.gather(st, stack);
                for j in 0..ahead.len {
                    ahead.prefetch_path(j + 4);
                    ahead.prefetch_steps(j + 2);
                    // The top of the stack is entry `j` of the chunk: the ones before it popped.
                    let Some((_, Some(base))) = stack.last() else {
                        break 'run;
                    };
                    let Some(var) = ahead.vars[j] else {
                        break 'run; // the pass says why
                    };
                    if var.subtree_watched == 0 {
                        stack.pop(); // the pass would skip it too
                        continue;
                    }
                    let Some((path, old)) = settled(var) else {
                        break 'run;
                    };
                    // Compared by address: no `Rc` is made during a run, so a live one at the
                    // address last pushed is the same value.
                    if Rc::as_ptr(base) != walk.base {
                        if !push(base) {
                            break 'run;
                        }
                        ffi::lua_replace(state, walk.base_slot);
                        walk.base = Rc::as_ptr(base);
                        walk.base_type = ffi::lua_type(state, walk.base_slot);
                        walk.first = None;
                    }
                    if !walk.reads_same(path, old) {
                        break 'run;
                    }
                    stack.pop();
                }
                if ahead.len == 0 {
                    break;
                }
            }
            ffi::lua_settop(state, top);
        }
    })
}

/// The path and last value of a variable that may be settled without evaluating it: a leaf
/// bound to a path, readable, last reported as a scalar, with no error, no new watcher, no
/// property change, no wrapper and not inactive.
fn settled(var: &Variable) -> Option<(&Path, &LuaValue)> {
    let (Binding::Path(path), Some(old)) = (&var.binding, &var.current) else {
        return None;
    };
    // `current_is_value` with a `current` means the last computation succeeded (`store`
    // sets both and clears `error`; a failure clears `current`): a value was reported and
    // there is no error, so neither needs reading (they sit on another cache line).
    debug_assert!(!var.current_is_value || (var.value.is_some() && var.error.is_none()));
    let settled = var.children.is_empty()
        && var.access.readable()
        && var.current_is_value
        && var.fresh.is_empty()
        && !var.props.has_changes()
        && !var.props.wrapped()
        && !var.props.inactive()
        && is_scalar(old);
    settled.then_some((path.as_ref(), old))
}

/// The run's state on the Lua stack: the parent's value, the result of the first step from
/// it, and the field names pushed so far.
struct Walk<'p, 'r> {
    state: *mut ffi::lua_State,
    /// mlua's push of a value that is not on the stack yet (a reference copied over).
    push: &'r dyn Fn(&LuaValue) -> bool,
    base_slot: c_int,
    first_slot: c_int,
    /// The top of the fixed slots: each variable's steps go above it.
    work: c_int,
    /// The parent's value in `base_slot` (compared by address, as the pass shares it), and
    /// its Lua type.
    base: *const LuaValue,
    base_type: c_int,
    /// The first segment whose result sits in `first_slot`, and that result's type.
    first: Option<&'p Segment>,
    first_type: c_int,
    keys: Vec<(&'p str, c_int)>,
}

// Every `unsafe fn` below is called only inside `settle_unchanged`'s `exec_raw_lua`, after its
// `lua_checkstack`: `state` is valid, and the stack has room for the fixed slots plus one
// variable's steps (at most `MAX_STEPS`), a key and a metatable.
impl<'p> Walk<'p, '_> {
    /// Whether `path` read from the base gives `old` again, with raw lookups only. `false`
    /// also for "cannot tell here" (a call, a possible `__index`, a step through a non-table).
    unsafe fn reads_same(&mut self, path: &'p Path, old: &LuaValue) -> bool {
        let Some(steps) = path.steps_with_keys() else {
            return false; // the keys are made by the first full read
        };
        if path.segments().len() > MAX_STEPS {
            return false;
        }
        let state = self.state;
        let same = match self.walk(steps) {
            Some((at, ty)) => same_at(state, at, ty, old),
            None => false,
        };
        ffi::lua_settop(state, self.work);
        same
    }

    /// Follows the steps with raw gets, each reading from its container where it sits (a
    /// fixed slot or the previous step's result) and judging types by what the get returns:
    /// a few C API calls a step. Gives where the value is and its type.
    unsafe fn walk(
        &mut self,
        steps: impl Iterator<Item = (&'p Segment, &'p LuaValue)>,
    ) -> Option<(c_int, c_int)> {
        let state = self.state;
        let (mut at, mut ty) = (self.base_slot, self.base_type);
        let mut top = self.work;
        for (i, (segment, key)) in steps.enumerate() {
            if i == 0 && self.first.is_some_and(|first| same_segment(first, segment)) {
                (at, ty) = (self.first_slot, self.first_type);
                continue;
            }
            if ty != ffi::LUA_TTABLE {
                return None;
            }
            let found = match segment {
                Segment::Field(name) => {
                    self.push_key(name, key)?;
                    ffi::lua_rawget(state, at)
                }
                Segment::Index(n) => ffi::lua_rawgeti(state, at, *n),
                Segment::Call(_) | Segment::Setter(_) => return None,
            };
            // A missing entry in a table with a metatable may come from `__index`.
            if found == ffi::LUA_TNIL && ffi::lua_getmetatable(state, at) != 0 {
                return None;
            }
            top += 1;
            (at, ty) = (top, found);
            if i == 0 {
                ffi::lua_copy(state, at, self.first_slot);
                (self.first, self.first_type) = (Some(segment), ty);
            }
        }
        Some((at, ty))
    }

    /// Pushes a field name, from its slot when it has one.
    unsafe fn push_key(&mut self, name: &'p str, key: &LuaValue) -> Option<()> {
        let state = self.state;
        if let Some((_, slot)) = self.keys.iter().find(|(n, _)| same_name(n, name)) {
            ffi::lua_pushvalue(state, *slot);
            return Some(());
        }
        if !(self.push)(key) {
            return None;
        }
        let used = self.keys.len() as c_int;
        if used < KEY_SLOTS {
            let slot = self.first_slot + 1 + used;
            ffi::lua_copy(state, -1, slot);
            self.keys.push((name, slot));
        }
        Some(())
    }
}

fn same_segment(a: &Segment, b: &Segment) -> bool {
    match (a, b) {
        (Segment::Field(x), Segment::Field(y)) => same_name(x, y),
        (Segment::Index(x), Segment::Index(y)) => x == y,
        _ => false,
    }
}

/// `a == b` inline: names in paths are short, and a `memcmp` call per step was 13 % of a pass.
fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| x == y)
}

/// (Called like `Walk`'s methods.) Whether the value at `at`, of Lua type `ty`, is `old`, as
/// [`super::value_json::same_scalar`] would judge it once converted (an integer is never the
/// same as a float; NaN is itself).
unsafe fn same_at(state: *mut ffi::lua_State, at: c_int, ty: c_int, old: &LuaValue) -> bool {
    match old {
        LuaValue::Nil => ty == ffi::LUA_TNIL,
        LuaValue::Boolean(b) => {
            ty == ffi::LUA_TBOOLEAN && (ffi::lua_toboolean(state, at) != 0) == *b
        }
        LuaValue::Integer(i) => {
            ty == ffi::LUA_TNUMBER
                && ffi::lua_isinteger(state, at) != 0
                && ffi::lua_tointegerx(state, at, std::ptr::null_mut()) == *i
        }
        LuaValue::Number(n) => {
            if ty != ffi::LUA_TNUMBER || ffi::lua_isinteger(state, at) != 0 {
                return false;
            }
            let x = ffi::lua_tonumberx(state, at, std::ptr::null_mut());
            x.to_bits() == n.to_bits() || x == *n
        }
        LuaValue::String(s) => {
            if ty != ffi::LUA_TSTRING {
                return false;
            }
            let mut len = 0;
            let ptr = ffi::lua_tolstring(state, at, &mut len);
            !ptr.is_null() && std::slice::from_raw_parts(ptr.cast::<u8>(), len) == &*s.as_bytes()
        }
        _ => false,
    }
}

/// The variables of the next entries down the stack, looked up together: the lookups are
/// independent, so their cache misses overlap instead of coming one after another (they were
/// half of a pass), and each variable's first cache lines are requested while the run works
/// on the ones before it.
struct Lookahead<'s> {
    vars: [Option<&'s Variable>; CHUNK],
    len: usize,
}

const CHUNK: usize = 64;

impl Default for Lookahead<'_> {
    fn default() -> Self {
        Lookahead {
            vars: [None; CHUNK],
            len: 0,
        }
    }
}

impl<'s> Lookahead<'s> {
    fn gather(&mut self, st: &'s State, stack: &[Pending]) {
        self.len = stack.len().min(CHUNK);
        for (slot, (key, _)) in self.vars.iter_mut().zip(stack.iter().rev()) {
            *slot = st.vars.get(key).map(|v| &**v);
            if let Some(var) = slot {
                // The fields `settled` reads (see `Variable`'s layout).
                prefetch(*var as *const Variable, 3);
            }
        }
    }
}

impl Lookahead<'_> {
    /// Requests the path of entry `j`, whose variable was requested when the chunk was
    /// gathered (so reading its binding now no longer waits).
    fn prefetch_path(&self, j: usize) {
        if let Some(Some(var)) = self.vars.get(j) {
            if let Binding::Path(path) = &var.binding {
                prefetch(Rc::as_ptr(path), 2);
            }
        }
    }
}

impl Lookahead<'_> {
    /// Requests the segments and keys of entry `j`, whose path was requested before.
    fn prefetch_steps(&self, j: usize) {
        if let Some(Some(var)) = self.vars.get(j) {
            if let Binding::Path(path) = &var.binding {
                let (segments, keys) = path.step_addresses();
                prefetch(segments, 2);
                if let Some(keys) = keys {
                    prefetch(keys, 2);
                }
            }
        }
    }
}

fn prefetch<T>(at: *const T, lines: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint to the cache; it reads nothing and cannot fault.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = at.cast::<i8>();
        for line in 0..lines {
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64 * line));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (at, lines);
}
