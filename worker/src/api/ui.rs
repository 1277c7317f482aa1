//! The global `ui` table: `ui.log([level,] msg)` (named levels, or ui-engine's numbers) and
//! JSON helpers for apps.
//!
//! `ui.log` writes a tracing event tagged with the session's ids, so a line in the worker's log
//! can be traced back to its session. The JSON helpers never raise: like `io.open`, they return
//! `nil, "error text"` so an app can handle bad input from a user or a file.
//!
//! Mapping between Lua and JSON:
//! - a table whose keys are exactly `1..n` (n ≥ 1) is an array; every other table, the empty one
//!   included, is an object (the rule value JSON uses too, [`crate::sequence`]); object keys are
//!   strings or numbers (written as their decimal text), emitted in sorted order so the same
//!   table always encodes to the same text;
//! - metatables are ignored (raw fields only); functions, userdata, NaN and infinities cannot be
//!   encoded; a table that contains itself is an error, a table merely shared twice is not;
//! - decoding turns JSON `null` into `nil` (so `[1, null, 3]` is a table with a hole), integers
//!   that fit into Lua integers, other numbers into floats.

use std::cell::RefCell;
use std::collections::HashSet;
use std::ffi::c_void;
use std::rc::Rc;

use mlua::{Lua, MultiValue, Table, Value};
use protocol::limits::MAX_VALUE_DEPTH;
use serde_json::{Map, Number, Value as Json};

use crate::sandbox::lua_to_display;
use crate::sequence::sequence;

/// Which session a log line belongs to.
#[derive(Debug, Clone)]
pub struct LogIds {
    /// The 32-hex session id (the one in URLs).
    pub session_id: String,
    /// The compact id Lua sees as `session._sessionID`.
    pub vended_id: u64,
}

/// Installs `ui`; its log lines carry whatever `ids` holds when they are written (a ready VM
/// gets its session's ids only when the session is assigned).
pub fn install(lua: &Lua, ids: Rc<RefCell<LogIds>>) -> mlua::Result<()> {
    let ui = lua.create_table()?;
    ui.raw_set(
        "log",
        lua.create_function(move |lua, args: MultiValue| {
            let ids = ids.borrow().clone();
            log(lua, &ids, args)
        })?,
    )?;
    ui.raw_set(
        "json_encode",
        lua.create_function(|lua, v: Value| {
            Ok(match encode(&v) {
                Ok(text) => (Value::String(lua.create_string(text)?), Value::Nil),
                Err(e) => (Value::Nil, Value::String(lua.create_string(e)?)),
            })
        })?,
    )?;
    ui.raw_set(
        "json_decode",
        lua.create_function(|lua, text: Value| {
            let decoded = match &text {
                Value::String(s) => serde_json::from_slice::<Json>(&s.as_bytes())
                    .map_err(|e| format!("invalid JSON: {e}"))
                    .and_then(|json| to_lua(lua, &json).map_err(|e| e.to_string())),
                other => Err(format!(
                    "cannot decode a {}: JSON is text",
                    other.type_name()
                )),
            };
            Ok(match decoded {
                Ok(v) => (v, Value::Nil),
                Err(e) => (Value::Nil, Value::String(lua.create_string(e)?)),
            })
        })?,
    )?;
    lua.globals().raw_set("ui", ui)
}

fn log(lua: &Lua, ids: &LogIds, args: MultiValue) -> mlua::Result<()> {
    let (level, msg) = match args.len() {
        0 => return Err(mlua::Error::runtime("ui.log needs a message")),
        1 => ("info".to_string(), &args[0]),
        _ => match &args[0] {
            Value::String(s) => (s.to_str()?.to_string(), &args[1]),
            Value::Integer(n) => (numeric_level(*n).to_string(), &args[1]),
            Value::Number(n) if n.fract() == 0.0 => {
                (numeric_level(*n as i64).to_string(), &args[1])
            }
            other => {
                return Err(mlua::Error::runtime(format!(
                    "ui.log: the level must be a name or a number, not {}",
                    other.type_name()
                )))
            }
        },
    };
    let msg = lua_to_display(lua, msg)?;
    let (sid, vid) = (ids.session_id.as_str(), ids.vended_id);
    match level.as_str() {
        "debug" => tracing::debug!(target: "lua", session = sid, vended = vid, "{msg}"),
        "info" => tracing::info!(target: "lua", session = sid, vended = vid, "{msg}"),
        "warn" => tracing::warn!(target: "lua", session = sid, vended = vid, "{msg}"),
        "error" => tracing::error!(target: "lua", session = sid, vended = vid, "{msg}"),
        "trace" => tracing::trace!(target: "lua", session = sid, vended = vid, "{msg}"),
        other => {
            return Err(mlua::Error::runtime(format!(
                "ui.log: unknown level '{other}' (use debug, info, warn, error, trace or a number)"
            )))
        }
    }
    Ok(())
}

/// ui-engine's numeric verbosity levels (`ui.log(level, msg)`: shown when the server's
/// verbosity is at least `level`): 0 and 1 are what a server shows by default, 2 is detail,
/// 3 and up are traces. Below 0 reads as an error.
fn numeric_level(n: i64) -> &'static str {
    match n {
        i64::MIN..=-1 => "error",
        0 | 1 => "info",
        2 => "debug",
        _ => "trace",
    }
}

/// `ui.json_encode`: the JSON text of `v`, or why it has none.
pub fn encode(v: &Value) -> Result<String, String> {
    let json = to_json(v, &mut HashSet::new())?;
    serde_json::to_string(&json).map_err(|e| e.to_string())
}

/// `path` holds the tables being encoded, outermost first: meeting one again is a cycle.
fn to_json(v: &Value, path: &mut HashSet<*const c_void>) -> Result<Json, String> {
    Ok(match v {
        Value::Nil => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Integer(i) => Json::from(*i),
        Value::Number(n) => Number::from_f64(*n)
            .map(Json::Number)
            .ok_or_else(|| format!("cannot encode the number {n} in JSON"))?,
        Value::String(s) => Json::String(
            s.to_str()
                .map_err(|_| "cannot encode a string that is not UTF-8".to_string())?
                .to_string(),
        ),
        Value::Table(t) => {
            // Past the ceiling the value is refused rather than risking the worker's stack
            // (decoding is bounded by serde_json's own 128 levels).
            if path.len() >= MAX_VALUE_DEPTH {
                return Err(format!(
                    "cannot encode tables nested over {MAX_VALUE_DEPTH} deep"
                ));
            }
            let ptr = t.to_pointer();
            if !path.insert(ptr) {
                return Err("cannot encode a table that contains itself".into());
            }
            let json = table_to_json(t, path);
            path.remove(&ptr);
            json?
        }
        other => return Err(format!("cannot encode a {} in JSON", other.type_name())),
    })
}

fn table_to_json(t: &Table, path: &mut HashSet<*const c_void>) -> Result<Json, String> {
    if let Some(items) = sequence(t) {
        return items
            .iter()
            .map(|v| to_json(v, path))
            .collect::<Result<Vec<_>, _>>()
            .map(Json::Array);
    }
    let mut pairs = Vec::new();
    t.for_each(|k: Value, v: Value| {
        pairs.push((k, v));
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    let mut fields = Vec::with_capacity(pairs.len());
    for (k, v) in &pairs {
        let key = match k {
            Value::String(s) => s
                .to_str()
                .map_err(|_| "cannot encode a key that is not UTF-8".to_string())?
                .to_string(),
            Value::Integer(i) => i.to_string(),
            Value::Number(n) => n.to_string(),
            other => return Err(format!("cannot encode a {} key in JSON", other.type_name())),
        };
        fields.push((key, to_json(v, path)?));
    }
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Json::Object(fields.into_iter().collect::<Map<_, _>>()))
}

fn to_lua(lua: &Lua, json: &Json) -> mlua::Result<Value> {
    Ok(match json {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::String(lua.create_string(s)?),
        Json::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, to_lua(lua, item)?)?;
            }
            Value::Table(t)
        }
        Json::Object(fields) => {
            let t = lua.create_table_with_capacity(0, fields.len())?;
            for (k, v) in fields {
                t.raw_set(k.as_str(), to_lua(lua, v)?)?;
            }
            Value::Table(t)
        }
    })
}
