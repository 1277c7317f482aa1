//! ui-engine's older hot-reload migration counter, kept so that apps written for it still run:
//! `session:newVersion()` increments the session's mutation version and returns it,
//! `session:getVersion()` returns it (0 at first), and `session:needsMutation(obj)` is true when
//! `obj._mutationVersion` (0 when unset) is below it. ui-engine marks these deprecated in favour
//! of `session:prototype`'s automatic mutations, which luabroker has too.

use std::cell::Cell;
use std::rc::Rc;

use mlua::{Lua, Table, Value};

/// Sets `session:newVersion`, `session:getVersion` and `session:needsMutation`.
pub fn install(lua: &Lua, session: &Table) -> mlua::Result<()> {
    let version = Rc::new(Cell::new(0i64));
    let v = version.clone();
    session.raw_set(
        "newVersion",
        lua.create_function(move |_, _: Value| {
            v.set(v.get() + 1);
            Ok(v.get())
        })?,
    )?;
    let v = version.clone();
    session.raw_set(
        "getVersion",
        lua.create_function(move |_, _: Value| Ok(v.get()))?,
    )?;
    session.raw_set(
        "needsMutation",
        lua.create_function(move |_, (_, obj): (Value, Table)| {
            let seen = match obj.get::<Value>("_mutationVersion")? {
                Value::Integer(n) => n,
                Value::Number(n) => n as i64,
                _ => 0,
            };
            Ok(seen < version.get())
        })?,
    )?;
    Ok(())
}
