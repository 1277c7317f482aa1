//! Tracker: the session's variables (ARCHITECTURE.md 3), the object registry, paths, value JSON and
//! change sets.
//!
//! [`Tracker`] is a cheap handle (an `Rc`) shared by the backend and the `session` methods Lua
//! calls. Its state sits in one `RefCell`, borrowed only briefly and never across a call into
//! Lua: operations that run Lua read what they need, release the borrow, call, and borrow
//! again (see [`compute`]). Borrows are taken with `try_borrow_mut`, so even a Lua finalizer
//! that calls back at an unlucky moment gets an error, never a panic.

mod changes;
mod compute;
mod debug;
mod failure;
mod lua_api;
mod objects;
mod path;
mod properties;
#[cfg(test)]
mod proptests;
mod settle;
mod state;
mod value_json;
mod variable;
mod viewlist;
mod wrapper;

use std::cell::{RefCell, RefMut};
use std::rc::Rc;

use mlua::{Lua, Table, Value as LuaValue, WeakLua};
use protocol::browser::{ObjectSnapshot, Properties, ServerMessage, VarId, VariableSnapshot};
use protocol::ipc::TabId;
use protocol::Value;

pub use changes::ChangeSet;
pub use failure::{lua_message, Failure};
pub use lua_api::install as install_session_api;
pub use objects::ObjectRegistry;
pub use path::{expand_properties, Path, Segment};
pub use properties::{split_priority, Priority};
pub use value_json::{table_type, to_json, to_lua};
pub use variable::{Access, VarKey};
pub use wrapper::VariableHandle;

use crate::api::Prototypes;
use compute::{plan, store, Plan};
use properties::PropertyStore;
pub(crate) use state::State;
use variable::{Binding, Variable};

/// What a new variable is.
#[derive(Debug, Clone)]
pub struct NewVariable {
    pub key: VarKey,
    pub parent: Option<VarKey>,
    /// Raw names (priority suffixes allowed); a bound variable's `path` is among them.
    pub properties: Properties,
    /// `Some`: the variable holds this value itself (the app, roots, `unbound` ones). `None`:
    /// it follows its `path` from the parent's value.
    pub own: Option<LuaValue>,
    /// The tab that watches it from the start.
    pub watcher: Option<TabId>,
}

/// A variable removed by a destroy, and who was watching it.
#[derive(Debug, Clone, PartialEq)]
pub struct Removed {
    pub key: VarKey,
    pub watchers: Vec<TabId>,
}

#[derive(Clone)]
pub struct Tracker {
    inner: Rc<Inner>,
}

struct Inner {
    state: RefCell<State>,
    objects: ObjectRegistry,
    /// Weak, so the tracker (which Lua closures hold) never keeps the VM alive.
    lua: WeakLua,
    /// Where `create` and `wrapper` look classes up first (see [`wrapper`]).
    prototypes: RefCell<Option<Prototypes>>,
    /// `lua.ViewList` and `lua.ViewListItem`, once loaded (see [`viewlist`]).
    builtins: RefCell<Option<Table>>,
    /// Compute times and diagnostics for the debug pages (see [`debug`]).
    debug: debug::DebugState,
}

impl Tracker {
    pub fn new(lua: &Lua) -> mlua::Result<Tracker> {
        Ok(Tracker {
            inner: Rc::new(Inner {
                state: RefCell::new(State::default()),
                objects: ObjectRegistry::new(lua)?,
                lua: lua.weak(),
                prototypes: RefCell::new(None),
                builtins: RefCell::new(None),
                debug: debug::DebugState::default(),
            }),
        })
    }

    fn state(&self) -> Result<RefMut<'_, State>, Failure> {
        self.inner
            .state
            .try_borrow_mut()
            .map_err(|_| Failure::internal("the tracker is busy (re-entrant call)"))
    }

    pub fn objects(&self) -> &ObjectRegistry {
        &self.inner.objects
    }

    pub fn exists(&self, key: VarKey) -> bool {
        self.state().is_ok_and(|st| st.vars.contains_key(&key))
    }

    /// Whether a variable `key` under `parent` may be created: the key is free and the parent
    /// exists. [`Tracker::create`] checks this; a caller about to run app code to build the
    /// variable's value (a `create=Type` constructor) checks it first.
    pub fn check_new(&self, key: VarKey, parent: Option<VarKey>) -> Result<(), Failure> {
        let st = self.state()?;
        check_new(&st, key, parent)
    }

    /// Creates a variable and computes its value once, so that children created right after
    /// it (in the same frame) have something to follow their paths from.
    pub fn create(&self, new: NewVariable) -> Result<(), Failure> {
        let key = new.key;
        {
            let mut st = self.state()?;
            check_new(&st, key, new.parent)?;
            let bound = new.own.is_none();
            let (props, path) = expand_properties(&new.properties, bound)?;
            let mut store = PropertyStore::default();
            for (name, value) in &props {
                store.set(name, value);
            }
            let access = Access::parse(store.get("access").unwrap_or(""))
                .ok_or_else(|| Failure::bad_request("access must be r, w, rw or action"))?;
            let (binding, path_text) = match (new.own, path) {
                (Some(v), _) => (Binding::Own(v), store.get("path").unwrap_or("").to_string()),
                (None, Some((path, text))) => {
                    path.check_access(access).map_err(Failure::bad_access)?;
                    (Binding::Path(Rc::new(path)), text)
                }
                (None, None) => {
                    return Err(Failure::bad_request(
                        "a variable with a parent needs a path",
                    ))
                }
            };
            let seq = st.next_seq;
            st.next_seq += 1;
            let mut var = Variable::new(key, new.parent, seq, binding);
            var.path_text = path_text;
            var.access = access;
            var.props = store;
            match new.parent.and_then(|p| st.vars.get_mut(&p)) {
                Some(parent) => parent.children.push(key),
                None => {
                    st.roots.insert(seq, key);
                }
            }
            st.vars.insert(key, Box::new(var));
            if let Some(tab) = new.watcher {
                st.add_watch(key, tab);
            }
        }
        self.refresh(key);
        Ok(())
    }

    /// Computes a variable's value now, without telling anyone (the next pass does).
    fn refresh(&self, key: VarKey) {
        let planned = match self.state() {
            Ok(st) => match st.vars.get(&key) {
                Some(var) => plan(&st, var),
                None => return,
            },
            Err(_) => return,
        };
        let Plan::Eval(job) = planned else { return };
        let result = self.evaluate(key, job);
        let mut dropped = None;
        if let Ok(mut st) = self.state() {
            if let Some(var) = st.vars.get_mut(&key) {
                dropped = store(var, result).dropped;
            }
        }
        if let Some(old) = dropped {
            wrapper::destroy_wrapper(&old);
        }
    }

    /// Sets properties (raw names; `""` removes). `path` and `access` are checked together
    /// before anything changes.
    pub fn set_properties(&self, key: VarKey, props: &Properties) -> Result<(), Failure> {
        let mut st = self.state()?;
        let var = st
            .vars
            .get_mut(&key)
            .ok_or_else(|| Failure::not_found(format!("no variable {}", key.id)))?;
        let bound = matches!(var.binding, Binding::Path(_));
        let (props, path) = expand_properties(props, bound)?;
        let mut access = var.access;
        for (raw, value) in &props {
            if split_priority(raw).0 == "access" {
                access = Access::parse(value)
                    .ok_or_else(|| Failure::bad_request("access must be r, w, rw or action"))?;
            }
        }
        let check = match (&path, &var.binding) {
            (Some((p, _)), _) => Some(p),
            (None, Binding::Path(p)) => Some(&**p),
            (None, Binding::Own(_)) => None,
        };
        if let Some(p) = check {
            p.check_access(access).map_err(Failure::bad_access)?;
        }
        for (name, value) in &props {
            var.props.set(name, value);
        }
        var.access = access;
        if let Some((p, text)) = path {
            var.binding = Binding::Path(Rc::new(p));
            var.path_text = text;
        } else if !bound {
            var.path_text = var.props.get("path").unwrap_or("").to_string();
        }
        Ok(())
    }

    /// Writes a browser value through the variable: into its path (field, element or setter
    /// method), into its own value, or, for an action, calls its method.
    pub fn write(&self, lua: &Lua, key: VarKey, value: &Value) -> Result<(), Failure> {
        enum Target {
            Own,
            Path(LuaValue, Rc<Path>, Access),
        }
        let target = {
            let st = self.state()?;
            let var = st
                .vars
                .get(&key)
                .ok_or_else(|| Failure::not_found(format!("no variable {}", key.id)))?;
            if !var.access.writable() {
                return Err(Failure::bad_access(format!(
                    "variable {} is read-only (access r)",
                    key.id
                )));
            }
            match &var.binding {
                Binding::Own(_) if var.access == Access::Action => {
                    return Err(Failure::bad_request(format!(
                        "action variable {} has no method path",
                        key.id
                    )))
                }
                Binding::Own(_) => Target::Own,
                Binding::Path(path) => {
                    let base = var
                        .parent
                        .and_then(|p| st.vars.get(&p))
                        .and_then(|p| p.current.clone())
                        .ok_or_else(|| {
                            Failure::path(format!("the parent of variable {} has no value", key.id))
                        })?;
                    Target::Path(base, path.clone(), var.access)
                }
            }
        };
        let new = value_json::to_lua(lua, self.objects(), value)?;
        match target {
            Target::Own => {
                let mut st = self.state()?;
                if let Some(var) = st.vars.get_mut(&key) {
                    var.binding = Binding::Own(new.clone());
                    var.current = Some(new);
                    var.current_is_value = false;
                }
                Ok(())
            }
            // The borrow is released: the write may run setters, actions, metamethods.
            Target::Path(base, path, access) => path.write(base, access, new),
        }
    }

    pub fn watch(&self, key: VarKey, tab: TabId) -> Result<(), Failure> {
        let mut st = self.state()?;
        if !st.vars.contains_key(&key) {
            return Err(Failure::not_found(format!("no variable {}", key.id)));
        }
        st.add_watch(key, tab);
        Ok(())
    }

    /// Takes back one watch of the tab; unwatching something not watched does nothing.
    pub fn unwatch(&self, key: VarKey, tab: TabId) -> Result<(), Failure> {
        let mut st = self.state()?;
        if !st.vars.contains_key(&key) {
            return Err(Failure::not_found(format!("no variable {}", key.id)));
        }
        st.remove_watch(key, tab, false);
        Ok(())
    }

    /// Destroys the variable and its descendants; returns them children first. Their
    /// wrappers' `destroy()` has run when this returns.
    pub fn destroy(&self, key: VarKey) -> Result<Vec<Removed>, Failure> {
        let removed = {
            let mut st = self.state()?;
            if !st.vars.contains_key(&key) {
                return Err(Failure::not_found(format!("no variable {}", key.id)));
            }
            st.destroy(key)
        };
        self.run_destroys();
        Ok(removed)
    }

    /// A destroy the app asked for: every tab that watched a removed variable, and its owner,
    /// hears of it.
    pub fn destroy_from_app(&self, key: VarKey) -> Result<(), Failure> {
        let mut st = self.state()?;
        if !st.vars.contains_key(&key) {
            return Ok(());
        }
        let removed = st.destroy(key);
        for removed in removed {
            let mut tabs = removed.watchers;
            if let Some(owner) = removed.key.owner {
                if !tabs.contains(&owner) {
                    tabs.push(owner);
                }
            }
            for tab in tabs {
                st.outbox.push((
                    tab,
                    ServerMessage::Destroy {
                        var_id: removed.key.id,
                    },
                ));
            }
        }
        drop(st);
        self.run_destroys();
        Ok(())
    }

    /// A tab is gone: destroy what it created and drop its watches. Returns what was removed
    /// (their wrappers' `destroy()` has run).
    pub fn forget_tab(&self, tab: TabId) -> Vec<Removed> {
        let removed = self.forget_tab_state(tab);
        self.run_destroys();
        removed
    }

    fn forget_tab_state(&self, tab: TabId) -> Vec<Removed> {
        let Ok(mut st) = self.state() else {
            return Vec::new();
        };
        let mut tops: Vec<(u64, VarKey)> = st
            .vars
            .values()
            .filter(|v| v.key.owner == Some(tab) && v.parent.is_none_or(|p| p.owner != Some(tab)))
            .map(|v| (v.seq, v.key))
            .collect();
        tops.sort_unstable();
        let mut removed = Vec::new();
        for (_, key) in tops {
            if st.vars.contains_key(&key) {
                removed.extend(st.destroy(key));
            }
        }
        let watched: Vec<VarKey> = st
            .vars
            .values()
            .filter(|v| v.watchers.iter().any(|(t, _)| *t == tab))
            .map(|v| v.key)
            .collect();
        for key in watched {
            st.remove_watch(key, tab, true);
        }
        st.outbox.retain(|(t, _)| *t != tab);
        removed
    }

    /// The variable's value computed now (not stored: watchers still hear of changes) and
    /// all its properties. A wrapped variable answers with its last computed value instead:
    /// computing it anew could run its wrapper's constructor behind change detection's back.
    pub fn snapshot(&self, key: VarKey) -> Result<VariableSnapshot, Failure> {
        let (planned, properties, last) = {
            let st = self.state()?;
            let var = st
                .vars
                .get(&key)
                .ok_or_else(|| Failure::not_found(format!("no variable {}", key.id)))?;
            let planned = if var.access.readable() {
                plan(&st, var)
            } else {
                Plan::Unreadable
            };
            // Only a wrapped variable answers from its last computation.
            let last = match &planned {
                Plan::Eval(job) if job.wrap.is_some() => {
                    Some(var.value.clone().ok_or_else(|| match &var.error {
                        Some((code, description)) => Failure::new(*code, description.clone()),
                        None => Failure::path(format!("variable {} has no value yet", key.id)),
                    }))
                }
                _ => None,
            };
            (planned, var.props.pairs(), last)
        };
        let value = match (planned, last) {
            (_, Some(last)) => last?,
            (Plan::Eval(job), None) => self.evaluate(key, job)?.into_json(),
            (Plan::Unreadable, None) => Value::Null,
            (Plan::NoBase, None) => {
                return Err(Failure::path(format!(
                    "the parent of variable {} has no value",
                    key.id
                )))
            }
        };
        Ok(VariableSnapshot {
            id: key.id,
            value,
            properties,
        })
    }

    /// `getObjects` for one object id.
    pub fn object_snapshot(&self, id: i64) -> Result<ObjectSnapshot, Failure> {
        let table = self
            .objects()
            .get(id)
            .ok_or_else(|| Failure::not_found(format!("no object {id}")))?;
        Ok(ObjectSnapshot {
            obj: id,
            value: value_json::object_fields(self.objects(), &table),
            methods: objects::method_names(&table),
        })
    }

    /// One change-detection pass.
    pub fn detect_changes(&self) -> ChangeSet {
        let started = std::time::Instant::now();
        let changes = changes::detect(self);
        self.pass_took(started.elapsed());
        changes
    }

    /// Queues a message for a tab, in order with everything else outside change detection.
    pub fn send(&self, tab: TabId, msg: ServerMessage) {
        if let Ok(mut st) = self.state() {
            st.outbox.push((tab, msg));
        }
    }

    pub fn take_outbox(&self) -> Vec<(TabId, ServerMessage)> {
        self.state()
            .map(|mut st| std::mem::take(&mut st.outbox))
            .unwrap_or_default()
    }

    /// The next id for `session:createVariable`: -1, -2, … never reused.
    pub fn next_server_id(&self) -> Result<VarId, Failure> {
        let mut st = self.state()?;
        let id = st.next_server_id;
        st.next_server_id -= 1;
        Ok(id)
    }

    /// The variable whose current value is this table: shared ones first, then the oldest.
    pub fn find_by_value(&self, table: &Table) -> Option<VarKey> {
        let st = self.state().ok()?;
        let ptr = table.to_pointer();
        st.vars
            .values()
            .filter(|v| matches!(&v.current, Some(LuaValue::Table(t)) if t.to_pointer() == ptr))
            .min_by_key(|v| (v.key.owner.is_some(), v.seq))
            .map(|v| v.key)
    }

    /// The app object (variable 1's own value).
    pub fn app_object(&self) -> Option<LuaValue> {
        let st = self.state().ok()?;
        match &st.vars.get(&VarKey::shared(1))?.binding {
            Binding::Own(v) => Some(v.clone()),
            Binding::Path(_) => None,
        }
    }

    /// Variable 1's value JSON, computed now.
    pub fn app_value(&self) -> Option<Value> {
        let app = self.app_object()?;
        value_json::to_json(self.objects(), &app).ok()
    }
}

fn check_new(st: &State, key: VarKey, parent: Option<VarKey>) -> Result<(), Failure> {
    if st.vars.contains_key(&key) {
        return Err(Failure::bad_request(format!(
            "variable {} already exists",
            key.id
        )));
    }
    match parent {
        Some(p) if !st.vars.contains_key(&p) => {
            Err(Failure::not_found(format!("no variable {}", p.id)))
        }
        _ => Ok(()),
    }
}
