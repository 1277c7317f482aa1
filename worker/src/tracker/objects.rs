//! The object registry: the number `N` of every `{"obj": N}` a tab sees, keyed by table
//! identity.
//!
//! Lifetime: both directions live in Lua weak tables (table → id with weak keys, id → table with
//! weak values), so the registry never keeps a table alive and a collected table's entry goes
//! away with it; nothing needs sweeping. Ids come from a counter that only counts up, so an id
//! is never reused for another table, even after its table is gone. A tab holding the id of a
//! collected table gets `not-found` for it.
//!
//! A table a tab can see is kept alive anyway by the variable whose value refers to it (each
//! variable holds its last Lua value), so ids stay valid for as long as they are on screen.

use std::cell::Cell;
use std::collections::HashSet;

use mlua::{Lua, Table, Value as LuaValue};

/// How many `__index` tables deep [`method_names`] looks before it stops.
const MAX_CLASS_DEPTH: usize = 32;

pub struct ObjectRegistry {
    /// table → id; weak keys.
    ids: Table,
    /// id → table; weak values.
    tables: Table,
    next: Cell<i64>,
}

impl ObjectRegistry {
    pub fn new(lua: &Lua) -> mlua::Result<ObjectRegistry> {
        let weak = |mode: &str| -> mlua::Result<Table> {
            let t = lua.create_table()?;
            let mt = lua.create_table()?;
            mt.raw_set("__mode", mode)?;
            t.set_metatable(Some(mt))?;
            Ok(t)
        };
        Ok(ObjectRegistry {
            ids: weak("k")?,
            tables: weak("v")?,
            next: Cell::new(1),
        })
    }

    /// The table's id, registering it on first sight.
    pub fn id_of(&self, table: &Table) -> mlua::Result<i64> {
        if let Some(id) = self.ids.raw_get::<Option<i64>>(table)? {
            return Ok(id);
        }
        let id = self.next.get();
        self.next.set(id + 1);
        self.ids.raw_set(table, id)?;
        self.tables.raw_set(id, table)?;
        Ok(id)
    }

    /// The live table registered as `id`, if it still exists.
    pub fn get(&self, id: i64) -> Option<Table> {
        self.tables.raw_get::<Option<Table>>(id).ok().flatten()
    }
}

/// Names `obj:name()` can call: the table's own function fields and every function in the
/// `__index` tables of its metatable chain, sorted, without duplicates and metamethods.
pub fn method_names(obj: &Table) -> Vec<String> {
    let mut names = Vec::new();
    collect_functions(obj, &mut names);
    let mut seen = HashSet::new();
    let mut class = index_table(obj);
    let mut depth = 0;
    while let Some(c) = class {
        if depth >= MAX_CLASS_DEPTH || !seen.insert(c.to_pointer()) {
            break;
        }
        collect_functions(&c, &mut names);
        class = index_table(&c);
        depth += 1;
    }
    names.retain(|n| !n.starts_with("__"));
    names.sort_unstable();
    names.dedup();
    names
}

/// `getmetatable(t).__index` when it is a table (a function `__index` has no names to list).
fn index_table(t: &Table) -> Option<Table> {
    match t.metatable()?.raw_get::<LuaValue>("__index").ok()? {
        LuaValue::Table(next) => Some(next),
        _ => None,
    }
}

fn collect_functions(t: &Table, names: &mut Vec<String>) {
    let _ = t.for_each::<LuaValue, LuaValue>(|k, v| {
        if let (LuaValue::String(name), LuaValue::Function(_)) = (&k, &v) {
            names.push(name.to_string_lossy());
        }
        Ok(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_never_reused() {
        let lua = Lua::new();
        let reg = ObjectRegistry::new(&lua).unwrap();
        let a = lua.create_table().unwrap();
        let b = lua.create_table().unwrap();
        assert_eq!(reg.id_of(&a).unwrap(), 1);
        assert_eq!(reg.id_of(&b).unwrap(), 2);
        assert_eq!(reg.id_of(&a).unwrap(), 1);
        assert_eq!(reg.get(2).unwrap().to_pointer(), b.to_pointer());
        drop(b);
        lua.gc_collect().unwrap();
        lua.gc_collect().unwrap();
        assert!(
            reg.get(2).is_none(),
            "a collected table leaves the registry"
        );
        let c = lua.create_table().unwrap();
        assert_eq!(reg.id_of(&c).unwrap(), 3);
    }

    #[test]
    fn methods_come_from_the_metatable_chain() {
        let lua = Lua::new();
        let obj: Table = lua
            .load(
                "local Base = {} Base.__index = Base
                 function Base:hello() end
                 function Base:shared() end
                 local Sub = setmetatable({}, Base) Sub.__index = Sub
                 function Sub:shared() end
                 function Sub:extra() end
                 Sub.__tostring = function() return 'x' end
                 local o = setmetatable({n = 1}, Sub)
                 o.own = function() end
                 return o",
            )
            .eval()
            .unwrap();
        assert_eq!(method_names(&obj), ["extra", "hello", "own", "shared"]);
    }
}
