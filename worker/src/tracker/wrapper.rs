//! The `create` and `wrapper` properties' Lua side: finding a class by name, calling its
//! `new`, the variable handle a wrapper constructor receives, and wrappers' `destroy()`.
//!
//! - A class name is looked up in the `session:prototype` registry first, then as a global
//!   table (`Name`, or `a.b.Name` walked through nested tables). Lookups are raw, so finding a
//!   class never runs app code.
//! - The built-in `lua.ViewList` and `lua.ViewListItem` come before everything else
//!   (see [`super::viewlist`]).
//! - `wrapper=Type`: `Type:new(variable)` gets a [`VariableHandle`] (userdata with `getValue()`,
//!   `getWrapper()`, `getProperty(name)`, `setProperty(name, value)` and `getId()`) once; the
//!   instance is then reused for the variable and re-synced when the value changes
//!   ([`Tracker::resync_wrapper`]). One handle per variable, made on first use, so a wrapper
//!   can compare it with one it kept.
//! - A wrapper's `destroy()` (if it has one) runs when its variable is destroyed (by the tab,
//!   by the app, or when the tab closes), and when its variable's `wrapper` property changes
//!   to another type. Errors in `destroy()` are logged: the variable is gone
//!   either way, and there may be nobody left to tell.
//!
//! Like everywhere in the tracker, no borrow of its state is held while Lua runs.

use std::rc::{Rc, Weak};

use mlua::{Lua, Table, UserData, UserDataMethods, Value as LuaValue};

use super::failure::Failure;
use super::variable::{VarKey, Variable};
use super::{Inner, Tracker};
use crate::api::Prototypes;

/// How many dots a class name may walk through nested global tables.
const MAX_NAME_DEPTH: usize = 16;

impl Tracker {
    /// Lets `create` and `wrapper` find classes declared with `session:prototype`.
    pub fn set_prototypes(&self, prototypes: Prototypes) {
        *self.inner.prototypes.borrow_mut() = Some(prototypes);
    }

    pub(crate) fn lua(&self) -> Result<Lua, Failure> {
        self.inner
            .lua
            .try_upgrade()
            .ok_or_else(|| Failure::internal("the Lua state is gone"))
    }

    /// The class named `name`: a registered prototype, else a global table (dotted names walk
    /// nested tables).
    pub fn resolve_class(&self, name: &str) -> Option<Table> {
        if let Some(builtin) = self.builtin_class(name) {
            return Some(builtin);
        }
        let registered = self.inner.prototypes.borrow().clone();
        if let Some(proto) = registered.and_then(|p| p.get(name)) {
            return Some(proto);
        }
        let globals = self.lua().ok()?.globals();
        if let Ok(LuaValue::Table(t)) = globals.raw_get::<LuaValue>(name) {
            return Some(t);
        }
        let mut current = globals;
        for (depth, part) in name.split('.').enumerate() {
            if depth >= MAX_NAME_DEPTH || part.is_empty() {
                return None;
            }
            current = match current.raw_get::<LuaValue>(part).ok()? {
                LuaValue::Table(t) => t,
                _ => return None,
            };
        }
        Some(current)
    }

    /// `Class:new(arg)` for the class named `name`; `role` (`create` or `wrapper`) names the
    /// property in errors. An unknown class is `not-found`.
    pub fn instantiate(&self, role: &str, name: &str, arg: LuaValue) -> Result<LuaValue, Failure> {
        let class = self.resolve_class(name).ok_or_else(|| {
            Failure::not_found(format!(
                "{role}={name}: no prototype or global table named {name}"
            ))
        })?;
        let new = match class.get::<LuaValue>("new").map_err(|e| Failure::lua(&e))? {
            LuaValue::Function(f) => f,
            _ => {
                return Err(Failure::bad_request(format!(
                    "{role}={name}: {name} has no new method"
                )))
            }
        };
        new.call::<LuaValue>((class, arg))
            .map_err(|e| Failure::lua(&e))
    }

    /// Runs the wrapper constructor for the variable `key`, whose underlying value is now
    /// `raw`. The handle sees `raw` through `getValue()` during the call.
    pub(crate) fn construct_wrapper(
        &self,
        key: VarKey,
        type_name: &str,
        raw: &LuaValue,
    ) -> Result<LuaValue, Failure> {
        let existing = {
            let mut st = self.state()?;
            let var = st
                .vars
                .get_mut(&key)
                .ok_or_else(|| Failure::not_found(format!("no variable {}", key.id)))?;
            var.raw = Some(raw.clone());
            var.handle.clone()
        };
        let handle = match existing {
            Some(h) => h,
            None => {
                let handle = self
                    .lua()?
                    .create_userdata(VariableHandle {
                        tracker: Rc::downgrade(&self.inner),
                        key,
                    })
                    .map_err(|e| Failure::lua(&e))?;
                if let Some(var) = self.state()?.vars.get_mut(&key) {
                    var.handle = Some(handle.clone());
                }
                handle
            }
        };
        self.instantiate("wrapper", type_name, LuaValue::UserData(handle))
    }

    /// Tells an existing wrapper that its variable's underlying value is now `raw`: sets
    /// `wrapper.value = raw` and calls `wrapper:sync()` if it has one, as ui-engine does. The
    /// handle's `getValue()` sees `raw` meanwhile. Errors are logged: the wrapper stays.
    pub(crate) fn resync_wrapper(&self, key: VarKey, wrapper: &LuaValue, raw: &LuaValue) {
        if let Ok(mut st) = self.state() {
            if let Some(var) = st.vars.get_mut(&key) {
                var.raw = Some(raw.clone());
            }
        }
        let LuaValue::Table(t) = wrapper else { return };
        let synced =
            t.set("value", raw.clone())
                .and_then(|()| match t.get::<LuaValue>("sync")? {
                    LuaValue::Function(f) => f.call::<()>(t.clone()),
                    _ => Ok(()),
                });
        if let Err(e) = synced {
            tracing::warn!(target: "lua", var = key.id, "wrapper sync failed: {}", super::lua_message(&e));
        }
    }

    /// Calls `destroy()` on the wrappers of destroyed variables, in the order they went
    /// (including any a `destroy()` itself causes).
    pub(crate) fn run_destroys(&self) {
        loop {
            let due = match self.state() {
                Ok(mut st) => std::mem::take(&mut st.dead_wrappers),
                Err(_) => return,
            };
            if due.is_empty() {
                return;
            }
            for wrapper in &due {
                destroy_wrapper(wrapper);
            }
        }
    }
}

/// `wrapper:destroy()`, if the wrapper has such a method.
pub(crate) fn destroy_wrapper(wrapper: &LuaValue) {
    let LuaValue::Table(t) = wrapper else { return };
    match t.get::<LuaValue>("destroy") {
        Ok(LuaValue::Function(f)) => {
            if let Err(e) = f.call::<()>(t.clone()) {
                tracing::warn!(target: "lua", "wrapper destroy() failed: {}", super::lua_message(&e));
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(target: "lua", "wrapper destroy lookup failed: {e}"),
    }
}

/// The Lua face of one variable, given to wrapper constructors. It names the variable by key
/// and holds the tracker weakly, so a wrapper that keeps it never keeps the session's tracker
/// alive, and a handle whose variable is gone answers nil.
pub struct VariableHandle {
    tracker: Weak<Inner>,
    key: VarKey,
}

impl VariableHandle {
    fn tracker(&self) -> mlua::Result<Tracker> {
        self.tracker
            .upgrade()
            .map(|inner| Tracker { inner })
            .ok_or_else(|| mlua::Error::runtime("the session is gone"))
    }

    /// Reads the variable; `None` when it is gone.
    fn read<T>(&self, f: impl FnOnce(&Variable) -> Option<T>) -> mlua::Result<Option<T>> {
        let tracker = self.tracker()?;
        let st = tracker
            .state()
            .map_err(|f| mlua::Error::runtime(f.description))?;
        Ok(st.vars.get(&self.key).and_then(|v| f(v)))
    }
}

impl UserData for VariableHandle {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("getValue", |_, this, ()| {
            this.read(|v| v.raw.clone().or_else(|| v.current.clone()))
        });
        methods.add_method("getWrapper", |_, this, ()| {
            this.read(|v| v.wrap.as_ref().map(|w| w.object.clone()))
        });
        methods.add_method("getProperty", |_, this, name: String| {
            this.read(|v| v.props.get(&name).map(str::to_string))
        });
        methods.add_method(
            "setProperty",
            |_, this, (name, value): (String, LuaValue)| {
                let text = match value {
                    LuaValue::Nil | LuaValue::Boolean(false) => String::new(),
                    LuaValue::String(s) => s.to_string_lossy(),
                    LuaValue::Integer(i) => i.to_string(),
                    LuaValue::Number(n) => n.to_string(),
                    LuaValue::Boolean(true) => "true".to_string(),
                    other => {
                        return Err(mlua::Error::runtime(format!(
                            "setProperty: {name} must be a string, number or boolean, not a {}",
                            other.type_name()
                        )))
                    }
                };
                this.tracker()?
                    .set_properties(this.key, &vec![(name, text)])
                    .map_err(|f| mlua::Error::runtime(format!("setProperty: {}", f.description)))
            },
        );
        methods.add_method("getId", |_, this, ()| Ok(this.key.id));
        methods.add_meta_method(mlua::MetaMethod::ToString, |_, this, ()| {
            Ok(format!("variable {}", this.key.id))
        });
    }
}
