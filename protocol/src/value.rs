//! [`Value`]: the variable protocol's "value JSON", as a type bincode can carry.
//!
//! bincode's serde path is not self-describing, so `serde_json::Value` cannot cross the socket
//! (ARCHITECTURE.md 8). This enum mirrors JSON, keeps Lua's integer/float split, and has a variant for
//! object references (`{"obj": N}`), which the tracker produces for every non-array table. The
//! broker converts browser JSON to it once, at its edge, and back when it writes to a tab.

use std::cell::Cell;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value as Json;

use crate::limits::MAX_VALUE_DEPTH;

/// Deserialized by hand (see the `Deserialize` impl below) so that nesting is bounded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Array(Vec<Value>),
    /// A JSON object, fields in order. Only browsers send these (the tracker sends tables as
    /// [`Value::ObjRef`]).
    Object(Vec<(String, Value)>),
    /// `{"obj": N}`: a reference to a Lua table registered in the session's object registry.
    ObjRef(i64),
}

/// Most nested values a decoded frame may hold: every value either side builds is at most
/// [`MAX_VALUE_DEPTH`] deep, so anything deeper is corrupt. Without the bound, a frame of
/// nested one-element arrays (two bytes a level) would overflow the decoding thread's stack.
const DECODE_DEPTH: usize = MAX_VALUE_DEPTH + 1;

thread_local! {
    /// How many [`Value`]s the current thread is deserializing inside each other.
    static DECODING: Cell<usize> = const { Cell::new(0) };
}

/// One level of [`DECODING`], given back however the level ends.
struct Level;

impl Level {
    fn enter() -> Option<Level> {
        DECODING.with(|d| {
            (d.get() < DECODE_DEPTH).then(|| {
                d.set(d.get() + 1);
                Level
            })
        })
    }
}

impl Drop for Level {
    fn drop(&mut self) {
        DECODING.with(|d| d.set(d.get() - 1));
    }
}

/// The wire shape of [`Value`]: the same name, variants and order, so the derived encoding of
/// `Value` and this decoding agree; only the recursion goes through the depth check.
#[derive(Deserialize)]
#[serde(rename = "Value")]
enum ValueRepr {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
    ObjRef(i64),
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        let Some(_level) = Level::enter() else {
            return Err(serde::de::Error::custom(format!(
                "value nested deeper than {DECODE_DEPTH} levels"
            )));
        };
        Ok(match ValueRepr::deserialize(deserializer)? {
            ValueRepr::Null => Value::Null,
            ValueRepr::Bool(b) => Value::Bool(b),
            ValueRepr::Int(i) => Value::Int(i),
            ValueRepr::Float(f) => Value::Float(f),
            ValueRepr::String(s) => Value::String(s),
            ValueRepr::Array(items) => Value::Array(items),
            ValueRepr::Object(fields) => Value::Object(fields),
            ValueRepr::ObjRef(id) => Value::ObjRef(id),
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ValueError {
    #[error("value nested deeper than {MAX_VALUE_DEPTH} levels")]
    TooDeep,
}

impl Value {
    /// Converts browser JSON. `{"obj": N}` (exactly that one key, an integer) becomes an
    /// [`Value::ObjRef`], so a tab can hand a reference back to the server.
    pub fn from_json(json: &Json) -> Result<Value, ValueError> {
        Self::from_json_at(json, 0)
    }

    fn from_json_at(json: &Json, depth: usize) -> Result<Value, ValueError> {
        if depth > MAX_VALUE_DEPTH {
            return Err(ValueError::TooDeep);
        }
        Ok(match json {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Json::String(s) => Value::String(s.clone()),
            Json::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| Self::from_json_at(v, depth + 1))
                    .collect::<Result<_, _>>()?,
            ),
            Json::Object(map) => {
                if map.len() == 1 {
                    if let Some(id) = map.get("obj").and_then(Json::as_i64) {
                        return Ok(Value::ObjRef(id));
                    }
                }
                Value::Object(
                    map.iter()
                        .map(|(k, v)| Ok((k.clone(), Self::from_json_at(v, depth + 1)?)))
                        .collect::<Result<_, _>>()?,
                )
            }
        })
    }

    /// Converts to JSON for a tab. Non-finite floats have no JSON form and become `null`.
    pub fn to_json(&self) -> Json {
        match self {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(i) => Json::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(Json::Number)
                .unwrap_or(Json::Null),
            Value::String(s) => Json::String(s.clone()),
            Value::Array(items) => Json::Array(items.iter().map(Value::to_json).collect()),
            Value::Object(fields) => Json::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
            Value::ObjRef(id) => serde_json::json!({ "obj": id }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trip_keeps_every_shape() {
        let j = json!({"a": [1, 2.5, "x", null, true], "b": {"c": -3}});
        let v = Value::from_json(&j).unwrap();
        assert_eq!(v.to_json(), j);
    }

    #[test]
    fn obj_key_alone_is_a_reference() {
        assert_eq!(
            Value::from_json(&json!({"obj": 7})).unwrap(),
            Value::ObjRef(7)
        );
        assert!(matches!(
            Value::from_json(&json!({"obj": 7, "x": 1})).unwrap(),
            Value::Object(_)
        ));
        assert_eq!(Value::ObjRef(7).to_json(), json!({"obj": 7}));
    }

    #[test]
    fn integers_and_floats_stay_apart() {
        assert_eq!(Value::from_json(&json!(3)).unwrap(), Value::Int(3));
        assert_eq!(Value::from_json(&json!(3.5)).unwrap(), Value::Float(3.5));
        assert_eq!(Value::Float(f64::NAN).to_json(), Json::Null);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut j = json!(1);
        for _ in 0..(MAX_VALUE_DEPTH + 2) {
            j = json!([j]);
        }
        assert_eq!(Value::from_json(&j), Err(ValueError::TooDeep));
    }
}
