//! `session:prototype(name, init[, base])`, `session:create(proto[, instance])` and the `EMPTY`
//! marker: the app's classes, declared so that a hot reload can change a class while its live
//! instances keep their identity (the tracker's object ids and the browser's views of them).
//!
//! - The registry is keyed by `name` alone (dotted names welcome); globals are never consulted,
//!   so re-declaring finds the same prototype however the app stores it.
//! - First declaration: the prototype *is* `init` (or `{}`), with `type = name`,
//!   `__index = itself`, metatable `base` (without one: the prototype declared as `Object`, if
//!   any, as in ui-engine; else none) and a default `:new(inst)`
//!   (`session:create(self, inst)`) unless it has a `new`. A field whose init value is `EMPTY` is
//!   declared (remembered) but starts nil: it is removed from the prototype table.
//! - Re-declaration: the same table is updated in place (new defaults reach existing instances
//!   through `__index`); fields the previous declaration had and this one lacks are removed from
//!   it. If the declaration changed, a mutation is queued; [`Prototypes::run_pending_mutations`],
//!   called once the load or reload is over, calls `proto:mutate(instance)` (if it resolves to a
//!   function) on each live instance, in creation order, each under its own protection (a failure
//!   is logged and the others still run), then sets the removed fields to nil on every instance.
//!   Queued mutations run in the order the prototypes were re-declared; removed fields in name
//!   order (Lua does not keep the order of a table constructor).
//! - "Changed" compares the two `init` tables: same keys, equal values, tables compared by
//!   content. Two functions count as equal: methods are replaced in place on every declaration,
//!   and instances reach them through `__index`, so a new method body needs no instance migrated.
//! - Instances made by `session:create` are remembered in a weak-keyed table per prototype, so
//!   a mutation never keeps an instance alive nor visits one the collector took.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use mlua::{Function, Lua, Table, Value};

use super::modules::Tracking;

/// How deep `init` tables are compared for "changed": deeper (or cyclic) defaults count as
/// changed, which at worst runs `mutate` once more than needed.
const COMPARE_DEPTH: usize = 16;

/// The session's prototype registry; cheap to clone (a shared handle).
#[derive(Clone)]
pub struct Prototypes(Rc<RefCell<State>>);

struct State {
    /// The `EMPTY` marker.
    empty: Table,
    /// The `new` every prototype gets unless it has its own.
    default_new: Option<Function>,
    protos: HashMap<String, Entry>,
    /// `ui.registerWrapper` / `ui.registerPresenter`: classes by name that are not prototypes.
    registered: HashMap<String, Table>,
    pending: Vec<Mutation>,
    /// Creation number of the next instance: mutations visit instances in creation order.
    next_instance: i64,
    /// Notes which module declared or registered what (see [`super::modules`]).
    tracking: Tracking,
}

struct Entry {
    proto: Table,
    /// A copy of the `init` of the latest declaration (`EMPTY` values included): the declared
    /// fields, and what the next declaration is compared with.
    init: Table,
    /// Weak keys: instance → creation number.
    instances: Table,
}

struct Mutation {
    name: String,
    removed: Vec<Value>,
}

impl Prototypes {
    /// Sets the `EMPTY` global and `session.prototype` / `session.create`.
    pub fn install(lua: &Lua, session: &Table, tracking: Tracking) -> mlua::Result<Prototypes> {
        let empty = lua.create_table()?;
        let empty_mt = lua.create_table()?;
        empty_mt.raw_set(
            "__tostring",
            lua.create_function(|_, _: Value| Ok("EMPTY"))?,
        )?;
        empty_mt.raw_set(
            "__newindex",
            lua.create_function(|_, _: mlua::MultiValue| -> mlua::Result<()> {
                Err(mlua::Error::runtime(
                    "EMPTY is a marker and cannot hold fields",
                ))
            })?,
        )?;
        empty_mt.raw_set("__metatable", false)?;
        empty.set_metatable(Some(empty_mt))?;
        lua.globals().raw_set("EMPTY", &empty)?;

        let this = Prototypes(Rc::new(RefCell::new(State {
            empty,
            default_new: None,
            protos: HashMap::new(),
            registered: HashMap::new(),
            pending: Vec::new(),
            next_instance: 1,
            tracking,
        })));

        let me = this.clone();
        let default_new =
            lua.create_function(move |lua, (proto, inst): (Table, Option<Table>)| {
                me.create(lua, proto, inst)
            })?;
        this.0.borrow_mut().default_new = Some(default_new);

        let me = this.clone();
        session.raw_set(
            "prototype",
            lua.create_function(
                move |lua, (_, name, init, base): (Value, String, Option<Table>, Option<Table>)| {
                    me.declare(lua, name, init, base)
                },
            )?,
        )?;
        let me = this.clone();
        session.raw_set(
            "removePrototype",
            lua.create_function(
                move |_, (_, name, children): (Value, String, Option<bool>)| {
                    me.remove(&name, children.unwrap_or(false));
                    Ok(())
                },
            )?,
        )?;
        let me = this.clone();
        session.raw_set(
            "create",
            lua.create_function(
                move |lua, (_, proto, inst): (Value, Table, Option<Table>)| {
                    me.create(lua, proto, inst)
                },
            )?,
        )?;
        Ok(this)
    }

    /// The prototype declared as `name`, else the class registered under it with
    /// `ui.registerWrapper` / `ui.registerPresenter` (how `create=`, `wrapper=` and
    /// `itemWrapper=` find classes).
    pub fn get(&self, name: &str) -> Option<Table> {
        let state = self.0.borrow();
        state
            .protos
            .get(name)
            .map(|e| e.proto.clone())
            .or_else(|| state.registered.get(name).cloned())
    }

    /// `session:removePrototype(name[, children])` (ui-engine): forgets the prototype `name`
    /// and, with `children`, every `name.*`. Instances keep their metatables but get no more
    /// mutations; an unknown name is not an error.
    pub fn remove(&self, name: &str, children: bool) {
        let prefix = format!("{name}.");
        let mut state = self.0.borrow_mut();
        state
            .protos
            .retain(|k, _| k != name && !(children && k.starts_with(&prefix)));
        state
            .pending
            .retain(|m| m.name != name && !(children && m.name.starts_with(&prefix)));
    }

    /// Sets `ui.registerWrapper(name, class)` and `ui.registerPresenter(name, class)` on the
    /// `ui` table: both make `class` findable by `name` (ui-engine keeps two registries; the
    /// names share one here, since a class found by name is used the same way).
    pub fn install_registration(&self, lua: &Lua, ui: &Table) -> mlua::Result<()> {
        for method in ["registerWrapper", "registerPresenter"] {
            let me = self.clone();
            ui.raw_set(
                method,
                lua.create_function(move |_, (name, class): (String, Table)| {
                    let (known, tracking) = {
                        let mut state = me.0.borrow_mut();
                        let known = state.registered.insert(name.clone(), class).is_some();
                        (known, state.tracking.clone())
                    };
                    if !known {
                        tracking.note_class(&name);
                    }
                    Ok(())
                })?,
            )?;
        }
        Ok(())
    }

    /// Forgets the class registered as `name` with `ui.registerWrapper` / `registerPresenter`
    /// (`session:unloadModule`).
    pub fn unregister(&self, name: &str) {
        self.0.borrow_mut().registered.remove(name);
    }

    /// The fields the latest declaration of `name` declared (`EMPTY` ones included), sorted.
    pub fn declared_fields(&self, name: &str) -> Option<Vec<String>> {
        let init = self.0.borrow().protos.get(name)?.init.clone();
        let mut fields = Vec::new();
        init.for_each(|k: Value, _: Value| {
            if let Value::String(s) = k {
                fields.push(s.to_string_lossy());
            }
            Ok(())
        })
        .ok()?;
        fields.sort();
        Some(fields)
    }

    fn declare(
        &self,
        lua: &Lua,
        name: String,
        init: Option<Table>,
        base: Option<Table>,
    ) -> mlua::Result<Table> {
        let init = match init {
            Some(t) => t,
            None => lua.create_table()?,
        };
        let snapshot = shallow_copy(lua, &init)?;
        let (empty, default_new, existing, base, tracking) = {
            let state = self.0.borrow();
            let existing = state
                .protos
                .get(&name)
                .map(|e| (e.proto.clone(), e.init.clone()));
            // ui-engine: without a base, a declared `Object` prototype is the base.
            let base = base.or_else(|| {
                (name != "Object")
                    .then(|| state.protos.get("Object").map(|e| e.proto.clone()))
                    .flatten()
            });
            let tracking = state.tracking.clone();
            (
                state.empty.clone(),
                state.default_new.clone(),
                existing,
                base,
                tracking,
            )
        };

        let proto = match existing {
            None => {
                for key in keys_where(&init, |v| is_marker(v, &empty))? {
                    init.raw_set(key, Value::Nil)?;
                }
                let instances = lua.create_table()?;
                let weak = lua.create_table()?;
                weak.raw_set("__mode", "k")?;
                instances.set_metatable(Some(weak))?;
                self.0.borrow_mut().protos.insert(
                    name.clone(),
                    Entry {
                        proto: init.clone(),
                        init: snapshot,
                        instances,
                    },
                );
                tracking.note_prototype(&name);
                init
            }
            Some((proto, old)) => {
                let changed = !same_fields(&old, &snapshot, &empty, 0)?;
                let mut removed = Vec::new();
                old.for_each(|k: Value, _: Value| {
                    if snapshot.raw_get::<Value>(k.clone())?.is_nil() {
                        removed.push(k);
                    }
                    Ok(())
                })?;
                removed.sort_by_key(key_text);
                for key in &removed {
                    proto.raw_set(key.clone(), Value::Nil)?;
                }
                snapshot.for_each(|k: Value, v: Value| {
                    let v = if is_marker(&v, &empty) { Value::Nil } else { v };
                    proto.raw_set(k, v)
                })?;
                if changed {
                    self.queue(&name, removed, &snapshot)?;
                }
                if let Some(entry) = self.0.borrow_mut().protos.get_mut(&name) {
                    entry.init = snapshot;
                }
                proto
            }
        };

        proto.raw_set("type", name.as_str())?;
        proto.raw_set("__index", &proto)?;
        proto.set_metatable(base)?;
        if proto.raw_get::<Value>("new")?.is_nil() {
            proto.raw_set("new", default_new)?;
        }
        Ok(proto)
    }

    /// `session:create`: `instance` (or a new table) gets `proto` as its metatable and, if
    /// `proto` is a registered prototype, is remembered (weakly) as one of its instances.
    fn create(&self, lua: &Lua, proto: Table, instance: Option<Table>) -> mlua::Result<Table> {
        let instance = match instance {
            Some(t) => t,
            None => lua.create_table()?,
        };
        instance.set_metatable(Some(proto.clone()))?;
        if let Value::String(name) = proto.raw_get::<Value>("type")? {
            let name = name.to_str()?.to_string();
            let registered = {
                let mut guard = self.0.borrow_mut();
                let state = &mut *guard;
                match state.protos.get(&name) {
                    Some(entry) if entry.proto == proto => {
                        state.next_instance += 1;
                        Some((entry.instances.clone(), state.next_instance - 1))
                    }
                    _ => None,
                }
            };
            if let Some((instances, number)) = registered {
                instances.raw_set(&instance, number)?;
            }
        }
        Ok(instance)
    }

    /// Runs the mutations queued since the last call (see the module doc). Errors of `mutate`
    /// are logged, not returned; an error here means the VM itself failed (memory, for one).
    pub fn run_pending_mutations(&self) -> mlua::Result<()> {
        let pending = std::mem::take(&mut self.0.borrow_mut().pending);
        for mutation in pending {
            let Some((proto, instances)) = self
                .0
                .borrow()
                .protos
                .get(&mutation.name)
                .map(|e| (e.proto.clone(), e.instances.clone()))
            else {
                continue;
            };
            let mut live = Vec::new();
            instances.for_each(|inst: Table, number: i64| {
                live.push((number, inst));
                Ok(())
            })?;
            live.sort_by_key(|(number, _)| *number);

            match proto.get::<Value>("mutate") {
                Ok(Value::Function(mutate)) => {
                    for (_, inst) in &live {
                        if let Err(e) = mutate.call::<()>((&proto, inst)) {
                            tracing::warn!(
                                target: "lua",
                                "{}:mutate failed on an instance: {e}",
                                mutation.name
                            );
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(target: "lua", "{}.mutate: {e}", mutation.name),
            }
            for (_, inst) in &live {
                for key in &mutation.removed {
                    inst.raw_set(key.clone(), Value::Nil)?;
                }
            }
        }
        Ok(())
    }

    /// Queues a mutation of `name`, merging with one already queued in this load: the removed
    /// fields add up, minus those the latest declaration brings back.
    fn queue(&self, name: &str, removed: Vec<Value>, declared: &Table) -> mlua::Result<()> {
        let earlier = {
            let state = self.0.borrow();
            let queued = state.pending.iter().find(|m| m.name == name);
            queued.map(|m| m.removed.clone())
        };
        let Some(earlier) = earlier else {
            self.0.borrow_mut().pending.push(Mutation {
                name: name.to_string(),
                removed,
            });
            return Ok(());
        };
        let mut merged = Vec::new();
        for key in earlier.into_iter().chain(removed) {
            if !merged.contains(&key) && declared.raw_get::<Value>(key.clone())?.is_nil() {
                merged.push(key);
            }
        }
        merged.sort_by_key(key_text);
        if let Some(m) = self
            .0
            .borrow_mut()
            .pending
            .iter_mut()
            .find(|m| m.name == name)
        {
            m.removed = merged;
        }
        Ok(())
    }
}

fn shallow_copy(lua: &Lua, t: &Table) -> mlua::Result<Table> {
    let copy = lua.create_table()?;
    t.for_each(|k: Value, v: Value| copy.raw_set(k, v))?;
    Ok(copy)
}

fn keys_where(t: &Table, pred: impl Fn(&Value) -> bool) -> mlua::Result<Vec<Value>> {
    let mut keys = Vec::new();
    t.for_each(|k: Value, v: Value| {
        if pred(&v) {
            keys.push(k);
        }
        Ok(())
    })?;
    Ok(keys)
}

fn is_marker(v: &Value, empty: &Table) -> bool {
    matches!(v, Value::Table(t) if t == empty)
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.to_string_lossy(),
        other => format!("{other:?}"),
    }
}

/// Whether two declarations' tables hold the same keys with equivalent values.
fn same_fields(a: &Table, b: &Table, empty: &Table, depth: usize) -> mlua::Result<bool> {
    if depth > COMPARE_DEPTH {
        return Ok(false);
    }
    let mut same = a.raw_len() == b.raw_len();
    let mut count_a = 0usize;
    a.for_each(|k: Value, va: Value| {
        count_a += 1;
        if same {
            let vb: Value = b.raw_get(k)?;
            same = same_value(&va, &vb, empty, depth)?;
        }
        Ok(())
    })?;
    if !same {
        return Ok(false);
    }
    let mut count_b = 0usize;
    b.for_each(|_: Value, _: Value| {
        count_b += 1;
        Ok(())
    })?;
    Ok(count_a == count_b)
}

fn same_value(a: &Value, b: &Value, empty: &Table, depth: usize) -> mlua::Result<bool> {
    Ok(match (a, b) {
        (Value::Function(_), Value::Function(_)) => true,
        (Value::Table(x), Value::Table(y)) => {
            x == y
                || (x != empty
                    && y != empty
                    && x.metatable() == y.metatable()
                    && same_fields(x, y, empty, depth + 1)?)
        }
        _ => a == b,
    })
}
