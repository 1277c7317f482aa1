//! The tracker-backed methods of the `session` table (ARCHITECTURE.md 5): `createAppVariable`,
//! `getApp`, `createVariable`, `destroyVariable`.
//!
//! They may run in the middle of a tracker operation (an action or a `name()` getter calls
//! them); the tracker never holds its state borrowed across such calls, and if it ever did the
//! call fails with a Lua error rather than a panic.

use mlua::{Lua, Table, Value as LuaValue};
use protocol::browser::Properties;

use super::{split_priority, Failure, NewVariable, Tracker, VarKey};

pub fn install(lua: &Lua, session: &Table, tracker: &Tracker) -> mlua::Result<()> {
    let t = tracker.clone();
    let create_app = lua.create_function(
        move |_, (_session, obj, props): (LuaValue, LuaValue, Option<Table>)| {
            let key = VarKey::shared(1);
            if t.exists(key) {
                return Err(mlua::Error::runtime(
                    "session:createAppVariable: the app variable already exists",
                ));
            }
            t.create(NewVariable {
                key,
                parent: None,
                properties: lua_properties(props)?,
                own: Some(obj),
                watcher: None,
            })
            .map_err(|f| lua_error("createAppVariable", f))?;
            Ok(1)
        },
    )?;
    session.raw_set("createAppVariable", create_app)?;

    let t = tracker.clone();
    let get_app = lua.create_function(move |_, _session: LuaValue| {
        Ok(t.app_object().unwrap_or(LuaValue::Nil))
    })?;
    session.raw_set("getApp", get_app)?;

    let t = tracker.clone();
    let create_variable = lua.create_function(
        move |_, (_session, parent, obj, props): (LuaValue, LuaValue, LuaValue, Option<Table>)| {
            let parent = match parent {
                LuaValue::Nil => None,
                LuaValue::Table(table) => Some(t.find_by_value(&table).ok_or_else(|| {
                    mlua::Error::runtime(
                        "session:createVariable: the parent table is not the value of any variable",
                    )
                })?),
                other => match as_id(&other) {
                    Some(0) => None,
                    Some(id) => Some(VarKey::shared(id)),
                    None => {
                        return Err(mlua::Error::runtime(format!(
                            "session:createVariable: the parent must be nil, 0, an id or a table, not a {}",
                            other.type_name()
                        )))
                    }
                },
            };
            let properties = lua_properties(props)?;
            // With a parent and a path the variable follows the path; otherwise it holds `obj`.
            let bound = parent.is_some()
                && properties
                    .iter()
                    .any(|(k, v)| split_priority(k).0 == "path" && !v.is_empty());
            let id = t
                .next_server_id()
                .map_err(|f| lua_error("createVariable", f))?;
            t.create(NewVariable {
                key: VarKey::shared(id),
                parent,
                properties,
                own: (!bound).then_some(obj),
                watcher: None,
            })
            .map_err(|f| lua_error("createVariable", f))?;
            Ok(id)
        },
    )?;
    session.raw_set("createVariable", create_variable)?;

    let t = tracker.clone();
    let destroy_variable =
        lua.create_function(move |_, (_session, target): (LuaValue, LuaValue)| {
            let key = match &target {
                LuaValue::Table(table) => t.find_by_value(table),
                other => as_id(other).map(VarKey::shared),
            };
            match key {
                Some(key) => t
                    .destroy_from_app(key)
                    .map_err(|f| lua_error("destroyVariable", f)),
                None => Ok(()),
            }
        })?;
    session.raw_set("destroyVariable", destroy_variable)?;
    Ok(())
}

fn as_id(v: &LuaValue) -> Option<i64> {
    match v {
        LuaValue::Integer(i) => Some(*i),
        LuaValue::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => Some(*n as i64),
        _ => None,
    }
}

fn lua_error(method: &str, f: Failure) -> mlua::Error {
    mlua::Error::runtime(format!("session:{method}: {}", f.description))
}

/// A Lua `{name = value}` table as properties: strings, numbers and booleans become text.
/// Sorted by name, since `pairs` has no order.
fn lua_properties(props: Option<Table>) -> mlua::Result<Properties> {
    let mut out = Vec::new();
    let Some(props) = props else {
        return Ok(out);
    };
    props.for_each::<LuaValue, LuaValue>(|k, v| {
        let LuaValue::String(name) = k else {
            return Err(mlua::Error::runtime("property names must be strings"));
        };
        let value = match v {
            LuaValue::String(s) => s.to_string_lossy(),
            LuaValue::Integer(i) => i.to_string(),
            LuaValue::Number(n) => n.to_string(),
            LuaValue::Boolean(b) => b.to_string(),
            other => {
                return Err(mlua::Error::runtime(format!(
                    "property {} must be a string, not a {}",
                    name.to_string_lossy(),
                    other.type_name()
                )))
            }
        };
        out.push((name.to_string_lossy(), value));
        Ok(())
    })?;
    out.sort();
    Ok(out)
}
