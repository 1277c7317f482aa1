//! Computing one variable's value in three steps, so that no borrow of the tracker's state is
//! held while Lua runs (a getter may call `session:createVariable`):
//! [`plan`] reads what is needed under the borrow, [`Tracker::evaluate`] runs Lua with no
//! borrow held, and [`store`] records the result under a fresh borrow.
//!
//! A variable with a `wrapper` property computes in two stages: the underlying value (its own
//! or its path's), then the wrapper that stands in for it (see [`super::wrapper`]). The first
//! time (or when the `wrapper` type changes) `Type:new(handle)` makes it; after that, whenever
//! the value's JSON differs from what the wrapper last saw, the same wrapper is re-synced
//! (`wrapper.value = value`, then `wrapper:sync()` if it has one). A constructor that fails or
//! returns nil means "no wrapper": the value stands for itself (logged), and the constructor is
//! tried again when the value changes.

use std::rc::Rc;

use mlua::Value as LuaValue;
use protocol::Value;

use super::failure::Failure;
use super::objects::ObjectRegistry;
use super::path::Path;
use super::value_json::{is_scalar, same, same_scalar, scalar_json, table_type, to_json};
use super::variable::{Binding, VarKey, Variable, WrapState};
use super::{State, Tracker};

/// What to evaluate: a held value, or a path from the parent's current value (shared by the
/// parent's children within one pass, so a pass clones it once per parent, not per child).
pub enum Source {
    Own(LuaValue),
    Path(Rc<LuaValue>, Rc<Path>),
}

/// One evaluation: where the value comes from and, for a wrapped variable, what wrapper it has.
pub struct Job {
    pub source: Source,
    pub wrap: Option<WrapJob>,
}

pub struct WrapJob {
    /// The `wrapper` property: the type whose `new` makes the wrapper.
    pub type_name: String,
    /// The wrapper made last time, if any.
    pub previous: Option<WrapState>,
}

pub enum Plan {
    Eval(Job),
    /// A `w` or `action` variable: never read.
    Unreadable,
    /// The parent's value is unknown (its own path failed, or it was never computed).
    NoBase,
}

/// What becomes of a variable's wrapper after an evaluation.
pub enum WrapUpdate {
    /// Not wrapped: any wrapper it had goes (its `wrapper` property was removed).
    Clear,
    /// The underlying value did not change: the wrapper stays.
    Keep,
    /// The constructor ran; this is the new state.
    Set(WrapState),
}

pub struct Computed {
    /// What children follow their paths from: the wrapper, or the value itself.
    pub lua: LuaValue,
    /// Value JSON; `None` for a scalar, whose JSON [`store`] builds only when it changed.
    pub json: Option<Value>,
    pub type_name: Option<String>,
    /// The underlying value of a wrapped variable.
    pub raw: Option<LuaValue>,
    pub wrap: WrapUpdate,
}

pub fn plan(state: &State, var: &Variable) -> Plan {
    let base = match &var.binding {
        Binding::Path(_) if var.access.readable() => var
            .parent
            .and_then(|k| state.vars.get(&k))
            .and_then(|p| p.current.clone())
            .map(Rc::new),
        _ => None,
    };
    plan_from(var, base.as_ref())
}

/// [`plan`] with the parent's current value already at hand (`None`: it has none).
pub fn plan_from(var: &Variable, base: Option<&Rc<LuaValue>>) -> Plan {
    let source = match &var.binding {
        Binding::Own(v) => Source::Own(v.clone()),
        Binding::Path(_) if !var.access.readable() => return Plan::Unreadable,
        Binding::Path(path) => match base {
            Some(base) => Source::Path(base.clone(), path.clone()),
            None => return Plan::NoBase,
        },
    };
    let wrap = var.props.get("wrapper").map(|t| WrapJob {
        type_name: t.to_string(),
        previous: var.wrap.clone(),
    });
    Plan::Eval(Job { source, wrap })
}

impl Computed {
    /// The value JSON, built now for a scalar.
    pub fn into_json(self) -> Value {
        match self.json {
            Some(json) => json,
            None => scalar_json(&self.lua).unwrap_or(Value::Null),
        }
    }
}

impl Tracker {
    /// Runs the path and, for a wrapped variable, the wrapper's constructor or re-sync (Lua code
    /// may run here; no borrow is held), then converts the result to value JSON.
    pub(crate) fn evaluate(&self, key: VarKey, job: Job) -> Result<Computed, Failure> {
        self.clear_diags();
        let result = self.evaluate_inner(key, job);
        match &result {
            Ok(c) => self.diag(1, || {
                let mut text = format!("value: {}", super::path::describe_value(&c.lua));
                if let Some(t) = &c.type_name {
                    text.push_str(&format!(" (type {t})"));
                }
                text
            }),
            Err(f) => self.diag(1, || format!("failed: {}", f.description)),
        }
        result
    }

    fn evaluate_inner(&self, key: VarKey, job: Job) -> Result<Computed, Failure> {
        let raw = match job.source {
            Source::Own(v) => {
                self.diag(2, || "own value (no path)".to_string());
                v
            }
            Source::Path(base, path) if self.diag_level() >= 2 => path
                .read_traced(&base, &mut |step| self.diag(2, || step))
                .map_err(Failure::as_path_failure)?,
            Source::Path(base, path) => path.read(&base).map_err(Failure::as_path_failure)?,
        };
        let Some(wrap) = job.wrap else {
            return finish(self.objects(), raw, None, WrapUpdate::Clear, None);
        };
        let raw_json = to_json(self.objects(), &raw)?;
        let previous = wrap
            .previous
            .filter(|prev| prev.type_name == wrap.type_name);
        if let Some(prev) = previous {
            let type_name = (!prev.object.is_nil()).then(|| prev.type_name.clone());
            if same(&prev.raw_json, &raw_json) {
                self.diag(1, || {
                    format!("wrapper {}: value unchanged, kept", prev.type_name)
                });
                let stand_in = stand_in(&prev.object, &raw);
                return finish(
                    self.objects(),
                    stand_in,
                    Some(raw),
                    WrapUpdate::Keep,
                    type_name,
                );
            }
            if !prev.object.is_nil() {
                // The same wrapper, told of the new value (ui-engine's reuse rule).
                self.diag(1, || {
                    format!("wrapper {}: value changed, re-synced", prev.type_name)
                });
                self.resync_wrapper(key, &prev.object, &raw);
                let stand_in = stand_in(&prev.object, &raw);
                let state = WrapState { raw_json, ..prev };
                return finish(
                    self.objects(),
                    stand_in,
                    Some(raw),
                    WrapUpdate::Set(state),
                    type_name,
                );
            }
            // No wrapper last time: the constructor is tried again for the new value.
        }
        let built = super::viewlist::presenter_already_built(&raw, &wrap.type_name);
        let made = if built {
            Ok(LuaValue::Nil)
        } else {
            self.construct_wrapper(key, &wrap.type_name, &raw)
        };
        let object = match made {
            Ok(object) if built => {
                self.diag(1, || {
                    format!(
                        "wrapper {}: the value is already one; no wrapper",
                        wrap.type_name
                    )
                });
                object
            }
            Ok(object) => {
                self.diag(1, || match object.is_nil() {
                    true => format!(
                        "wrapper {}: new returned nil; the value stands for itself",
                        wrap.type_name
                    ),
                    false => format!("wrapper {}: made by {}:new", wrap.type_name, wrap.type_name),
                });
                if object.is_nil() {
                    tracing::info!(target: "lua", var = key.id, "wrapper={}: new returned nil, so the value stands for itself", wrap.type_name);
                }
                object
            }
            Err(f) => {
                self.diag(1, || {
                    format!(
                        "wrapper {}: new failed ({}); the value stands for itself",
                        wrap.type_name, f.description
                    )
                });
                tracing::warn!(target: "lua", var = key.id, "wrapper={} failed, so the value stands for itself: {}", wrap.type_name, f.description);
                LuaValue::Nil
            }
        };
        let stand_in = stand_in(&object, &raw);
        let type_name = (!object.is_nil()).then(|| wrap.type_name.clone());
        let state = WrapState {
            type_name: wrap.type_name,
            raw_json,
            object,
        };
        finish(
            self.objects(),
            stand_in,
            Some(raw),
            WrapUpdate::Set(state),
            type_name,
        )
    }
}

/// The wrapper, or the value itself when there is none.
fn stand_in(object: &LuaValue, raw: &LuaValue) -> LuaValue {
    if object.is_nil() {
        raw.clone()
    } else {
        object.clone()
    }
}

/// `type_name`: the wrapper's name when a wrapper stands in (ui-engine sets `type` to it);
/// otherwise the value's own type.
fn finish(
    objects: &ObjectRegistry,
    lua: LuaValue,
    raw: Option<LuaValue>,
    wrap: WrapUpdate,
    type_name: Option<String>,
) -> Result<Computed, Failure> {
    let json = if is_scalar(&lua) {
        None
    } else {
        Some(to_json(objects, &lua)?)
    };
    let type_name = type_name.or_else(|| lua.as_table().and_then(table_type));
    Ok(Computed {
        lua,
        json,
        type_name,
        raw,
        wrap,
    })
}

/// What [`store`] found different from before.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    pub value_changed: bool,
    /// A new error text (a cleared error is not a change anyone is told about).
    pub error_changed: bool,
    /// A wrapper this computation replaced or dropped: the caller calls its `destroy()` once
    /// the borrow is released.
    pub dropped: Option<LuaValue>,
}

pub fn store(var: &mut Variable, result: Result<Computed, Failure>) -> Stored {
    match result {
        Ok(c) => {
            let value_changed = match c.json {
                Some(json) => {
                    let changed = !matches!(&var.value, Some(old) if same(old, &json));
                    if changed {
                        var.value = Some(json);
                    }
                    changed
                }
                // A scalar equal to the last one (and reported) is unchanged without any JSON.
                None if var.value.is_some()
                    && var.current_is_value
                    && var
                        .current
                        .as_ref()
                        .is_some_and(|old| same_scalar(old, &c.lua)) =>
                {
                    false
                }
                None => {
                    let json = scalar_json(&c.lua).unwrap_or(Value::Null);
                    let changed = !matches!(&var.value, Some(old) if same(old, &json));
                    if changed {
                        var.value = Some(json);
                    }
                    changed
                }
            };
            var.current = Some(c.lua);
            var.current_is_value = true;
            set_type(var, c.type_name);
            var.error = None;
            var.raw = c.raw;
            let dropped = match c.wrap {
                WrapUpdate::Keep => None,
                WrapUpdate::Clear => var.wrap.take().map(|w| w.object),
                WrapUpdate::Set(new) => {
                    let old = var.wrap.replace(new);
                    let kept = |o: &LuaValue| var.wrap.as_ref().is_some_and(|w| w.object == *o);
                    old.map(|w| w.object).filter(|o| !kept(o))
                }
            };
            Stored {
                value_changed,
                error_changed: false,
                dropped: dropped.filter(|o| !o.is_nil()),
            }
        }
        Err(f) => {
            var.current = None;
            // Forget the value so that it is sent again once the path works again.
            var.value = None;
            let error_changed = var.error.as_ref().map(|(_, d)| d) != Some(&f.description);
            var.error = Some((f.code, f.description));
            // The wrapper stays: the constructor is tried again on the next pass, and a
            // wrapper that keeps its state across a failure is what the app would want.
            Stored {
                value_changed: false,
                error_changed,
                dropped: None,
            }
        }
    }
}

/// The server owns `type` while the value has one; a type it set goes when the value's does.
fn set_type(var: &mut Variable, type_name: Option<String>) {
    let priority = var.props.value_priority();
    match type_name {
        Some(t) => {
            if var.props.get("type") != Some(t.as_str()) {
                var.props.set_with("type", &t, priority);
            }
            var.server_type = true;
        }
        None if var.server_type => {
            var.props.set_with("type", "", priority);
            var.server_type = false;
        }
        None => {}
    }
}
