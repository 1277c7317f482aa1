//! Value JSON (ARCHITECTURE.md 3): Lua values → [`protocol::Value`] for tabs, and browser values →
//! Lua values for writes.
//!
//! Lua → JSON: strings, numbers (integers stay integers), booleans and nil pass through; a
//! non-empty sequence without a type is an array, element-wise (so is an empty table whose
//! metatable has `__array = true`, as `lua.ViewList`'s `items` has); every other table is an object
//! reference; functions, userdata and threads have no JSON form and become null. Arrays nest,
//! so a self-containing array would recurse forever: nesting is cut at [`MAX_VALUE_DEPTH`] and
//! reported as an error instead.

use mlua::{Lua, Table, Value as LuaValue};
use protocol::limits::MAX_VALUE_DEPTH;
use protocol::Value;

use crate::sequence::sequence;

use super::failure::Failure;
use super::objects::ObjectRegistry;

/// The value JSON of a Lua value.
pub fn to_json(objects: &ObjectRegistry, value: &LuaValue) -> Result<Value, Failure> {
    to_json_at(objects, value, 0)
}

fn to_json_at(objects: &ObjectRegistry, value: &LuaValue, depth: usize) -> Result<Value, Failure> {
    Ok(match value {
        LuaValue::Nil => Value::Null,
        LuaValue::Boolean(b) => Value::Bool(*b),
        LuaValue::Integer(i) => Value::Int(*i),
        LuaValue::Number(n) => Value::Float(*n),
        LuaValue::String(s) => Value::String(s.to_string_lossy()),
        LuaValue::Table(t) => {
            if let Some(items) = array_items(t) {
                if depth >= MAX_VALUE_DEPTH {
                    return Err(Failure::path(format!(
                        "array nested deeper than {MAX_VALUE_DEPTH} levels (does it contain itself?)"
                    )));
                }
                let mut out = Vec::with_capacity(items.len());
                for item in &items {
                    out.push(to_json_at(objects, item, depth + 1)?);
                }
                Value::Array(out)
            } else {
                Value::ObjRef(objects.id_of(t).map_err(|e| Failure::lua(&e))?)
            }
        }
        _ => Value::Null,
    })
}

/// The elements of `t` when it is an array: a sequence (see [`crate::sequence`]) without a
/// type, or an empty table marked as an array; `None` for anything that is an object.
fn array_items(t: &Table) -> Option<Vec<LuaValue>> {
    if t.raw_len() == 0 {
        return marked_array(t).then(Vec::new);
    }
    // The sequence check first: it is cheap for the common object (no array part).
    let items = sequence(t)?;
    table_type(t).is_none().then_some(items)
}

/// Whether the table's metatable says it is an array even when empty (`__array = true`) and it
/// has no fields at all.
fn marked_array(t: &Table) -> bool {
    let marked = t.metatable().is_some_and(|mt| {
        matches!(
            mt.raw_get::<LuaValue>("__array"),
            Ok(LuaValue::Boolean(true))
        )
    });
    marked
        && t.for_each::<LuaValue, LuaValue>(|_, _| Err(mlua::Error::runtime("field")))
            .is_ok()
}

/// The table's type name: `getmetatable(t).type`, else `t.type`, when it is a string.
/// Raw access on the table itself, so reading a type never runs an `__index` function.
pub fn table_type(t: &Table) -> Option<String> {
    let from_class = t.metatable().and_then(|mt| mt.get::<LuaValue>("type").ok());
    let name = match from_class {
        Some(LuaValue::String(s)) => s,
        _ => match t.raw_get::<LuaValue>("type").ok()? {
            LuaValue::String(s) => s,
            _ => return None,
        },
    };
    Some(name.to_string_lossy())
}

/// A browser value as a Lua value for a write: `{"obj": N}` is the registered table N
/// (`not-found` when it is gone), arrays and objects become new tables.
pub fn to_lua(lua: &Lua, objects: &ObjectRegistry, value: &Value) -> Result<LuaValue, Failure> {
    to_lua_at(lua, objects, value, 0)
}

fn to_lua_at(
    lua: &Lua,
    objects: &ObjectRegistry,
    value: &Value,
    depth: usize,
) -> Result<LuaValue, Failure> {
    if depth > MAX_VALUE_DEPTH {
        return Err(Failure::bad_request(format!(
            "value nested deeper than {MAX_VALUE_DEPTH} levels"
        )));
    }
    let lua_err = |e: mlua::Error| Failure::lua(&e);
    Ok(match value {
        Value::Null => LuaValue::Nil,
        Value::Bool(b) => LuaValue::Boolean(*b),
        Value::Int(i) => LuaValue::Integer(*i),
        Value::Float(f) => LuaValue::Number(*f),
        Value::String(s) => LuaValue::String(lua.create_string(s).map_err(lua_err)?),
        Value::Array(items) => {
            let t = lua
                .create_table_with_capacity(items.len(), 0)
                .map_err(lua_err)?;
            for (i, item) in items.iter().enumerate() {
                let v = to_lua_at(lua, objects, item, depth + 1)?;
                t.raw_set(i as i64 + 1, v).map_err(lua_err)?;
            }
            LuaValue::Table(t)
        }
        Value::Object(fields) => {
            let t = lua
                .create_table_with_capacity(0, fields.len())
                .map_err(lua_err)?;
            for (k, item) in fields {
                let v = to_lua_at(lua, objects, item, depth + 1)?;
                t.raw_set(k.as_str(), v).map_err(lua_err)?;
            }
            LuaValue::Table(t)
        }
        Value::ObjRef(id) => LuaValue::Table(
            objects
                .get(*id)
                .ok_or_else(|| Failure::not_found(format!("no object {id}")))?,
        ),
    })
}

/// A table's fields as a JSON object for `getObjects`: string and integer keys, sorted;
/// functions are left out (they are listed as methods).
pub fn object_fields(objects: &ObjectRegistry, t: &Table) -> Value {
    let mut fields = Vec::new();
    let _ = t.for_each::<LuaValue, LuaValue>(|k, v| {
        let key = match &k {
            LuaValue::String(s) => s.to_string_lossy(),
            LuaValue::Integer(i) => i.to_string(),
            _ => return Ok(()),
        };
        if !matches!(v, LuaValue::Function(_)) {
            fields.push((key, to_json(objects, &v).unwrap_or(Value::Null)));
        }
        Ok(())
    });
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    Value::Object(fields)
}

/// The value JSON of a scalar (nil, boolean, number, string); `None` for anything else.
pub fn scalar_json(value: &LuaValue) -> Option<Value> {
    Some(match value {
        LuaValue::Nil => Value::Null,
        LuaValue::Boolean(b) => Value::Bool(*b),
        LuaValue::Integer(i) => Value::Int(*i),
        LuaValue::Number(n) => Value::Float(*n),
        LuaValue::String(s) => Value::String(s.to_string_lossy()),
        _ => return None,
    })
}

/// Change detection's equality on two Lua scalars, without building their JSON: the same
/// answer [`same`] gives on their value JSON (integers and floats differ, NaN equals NaN,
/// strings by their bytes). `false` when either is not a scalar.
/// Nil, a boolean, a number or a string: a value whose JSON is itself.
pub fn is_scalar(v: &LuaValue) -> bool {
    matches!(
        v,
        LuaValue::Nil
            | LuaValue::Boolean(_)
            | LuaValue::Integer(_)
            | LuaValue::Number(_)
            | LuaValue::String(_)
    )
}

pub fn same_scalar(a: &LuaValue, b: &LuaValue) -> bool {
    match (a, b) {
        (LuaValue::Nil, LuaValue::Nil) => true,
        (LuaValue::Boolean(x), LuaValue::Boolean(y)) => x == y,
        (LuaValue::Integer(x), LuaValue::Integer(y)) => x == y,
        (LuaValue::Number(x), LuaValue::Number(y)) => x.to_bits() == y.to_bits() || x == y,
        (LuaValue::String(x), LuaValue::String(y)) => x.as_bytes() == y.as_bytes(),
        _ => false,
    }
}

/// Equality for change detection: like `==` but NaN equals NaN, so a NaN value is not
/// reported as changed on every pass.
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits() || x == y,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, a), (kb, b))| ka == kb && same(a, b))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(lua: &Lua, reg: &ObjectRegistry, code: &str) -> Result<Value, Failure> {
        let v: LuaValue = lua.load(code).eval().unwrap();
        to_json(reg, &v)
    }

    #[test]
    fn scalars_arrays_and_objects() {
        let lua = Lua::new();
        let reg = ObjectRegistry::new(&lua).unwrap();
        assert_eq!(json(&lua, &reg, "return 3").unwrap(), Value::Int(3));
        assert_eq!(json(&lua, &reg, "return 3.5").unwrap(), Value::Float(3.5));
        assert_eq!(
            json(&lua, &reg, "return 'x'").unwrap(),
            Value::String("x".into())
        );
        assert_eq!(json(&lua, &reg, "return nil").unwrap(), Value::Null);
        assert_eq!(json(&lua, &reg, "return print").unwrap(), Value::Null);
        assert_eq!(
            json(&lua, &reg, "return {1, 'a', {true}}").unwrap(),
            Value::Array(vec![
                Value::Int(1),
                Value::String("a".into()),
                Value::Array(vec![Value::Bool(true)])
            ])
        );
        // Empty, holed, typed or keyed tables are objects.
        assert_eq!(json(&lua, &reg, "return {}").unwrap(), Value::ObjRef(1));
        assert_eq!(
            json(&lua, &reg, "return {1, nil, 3}").unwrap(),
            Value::ObjRef(2)
        );
        assert_eq!(
            json(&lua, &reg, "return {1, type = 'T'}").unwrap(),
            Value::ObjRef(3)
        );
        assert_eq!(
            json(&lua, &reg, "return {1, x = 2}").unwrap(),
            Value::ObjRef(4)
        );
    }

    #[test]
    fn scalars_compare_like_their_json() {
        let lua = Lua::new();
        let v = |code: &str| lua.load(code).eval::<LuaValue>().unwrap();
        let pairs = [
            ("return 1", "return 1"),
            ("return 1", "return 1.0"),
            ("return 0/0", "return 0/0"),
            ("return 'a'", "return 'a'"),
            ("return 'a'", "return 'b'"),
            ("return true", "return false"),
            ("return nil", "return false"),
            ("return 2.5", "return 2.5"),
        ];
        for (a, b) in pairs {
            let (a, b) = (v(a), v(b));
            let by_json = same(&scalar_json(&a).unwrap(), &scalar_json(&b).unwrap());
            assert_eq!(same_scalar(&a, &b), by_json, "{a:?} vs {b:?}");
        }
        // Tables are never "the same scalar": their JSON decides.
        let t = v("return {}");
        assert!(!same_scalar(&t, &t));
        assert!(scalar_json(&t).is_none());
    }

    #[test]
    fn self_containing_array_is_an_error_not_a_crash() {
        let lua = Lua::new();
        let reg = ObjectRegistry::new(&lua).unwrap();
        let err = json(&lua, &reg, "local a = {1} a[2] = a return a").unwrap_err();
        assert!(err.description.contains("contain itself"), "{err:?}");
    }

    #[test]
    fn type_from_metatable_or_field() {
        let lua = Lua::new();
        let t: Table = lua
            .load("return setmetatable({}, {type = 'Person'})")
            .eval()
            .unwrap();
        assert_eq!(table_type(&t).as_deref(), Some("Person"));
        let t: Table = lua.load("return {type = 'Item'}").eval().unwrap();
        assert_eq!(table_type(&t).as_deref(), Some("Item"));
        let t: Table = lua.load("return {type = 3}").eval().unwrap();
        assert_eq!(table_type(&t), None);
    }

    #[test]
    fn browser_values_become_lua_values() {
        let lua = Lua::new();
        let reg = ObjectRegistry::new(&lua).unwrap();
        let known = lua.create_table().unwrap();
        let id = reg.id_of(&known).unwrap();
        let v = to_lua(
            &lua,
            &reg,
            &Value::Object(vec![
                (
                    "list".into(),
                    Value::Array(vec![Value::Int(1), Value::Null]),
                ),
                ("ref".into(), Value::ObjRef(id)),
            ]),
        )
        .unwrap();
        lua.globals().set("v", v).unwrap();
        lua.globals().set("known", known).unwrap();
        assert!(lua
            .load("return v.list[1] == 1 and #v.list == 1 and v.ref == known")
            .eval::<bool>()
            .unwrap());
        let err = to_lua(&lua, &reg, &Value::ObjRef(99)).unwrap_err();
        assert_eq!(err.code, protocol::ErrorCode::NotFound);
    }
}
