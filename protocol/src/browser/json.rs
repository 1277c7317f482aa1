//! The browser wire's fast paths: server messages written straight to JSON text, and client
//! frames read straight into typed messages, without a `serde_json::Value` tree in between.
//!
//! Every relayed message crosses the broker's edge twice, so building a `Value` tree (an
//! allocation per field, an ordered map per object) and dropping it again was most of the
//! broker's work on the relay path. [`encode_text`](super::encode_text) writes through
//! [`Frame`]; [`parse_frame`](super::parse_frame) tries [`frame`] first. The fast reader accepts only input whose meaning is unambiguous (no
//! duplicate keys, properties that are strings, ids that are integers, ...): anything else falls
//! back to the general parser in `browser.rs`, which owns every refusal and its wording, so both
//! paths give the same answer for every input (the property tests check that).

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use super::{ClientMessage, ObjectSnapshot, Properties, ServerMessage, VariableSnapshot};
use crate::limits::{MAX_MESSAGES_PER_FRAME, MAX_VALUE_DEPTH};
use crate::value::Value;

// ---- writing ----------------------------------------------------------------------------

/// One tab frame: one message as a bare object, two or more as an array.
pub struct Frame<'a>(pub &'a [ServerMessage]);

impl Serialize for Frame<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            [one] => Message(one).serialize(s),
            many => {
                let mut seq = s.serialize_seq(Some(many.len()))?;
                for m in many {
                    seq.serialize_element(&Message(m))?;
                }
                seq.end()
            }
        }
    }
}

/// `{"type": T, "data": {...}}`, keys in the order ui-engine writes them.
struct Message<'a>(&'a ServerMessage);

impl Serialize for Message<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        let kind = match self.0 {
            ServerMessage::Update { .. } => "update",
            ServerMessage::Destroy { .. } => "destroy",
            ServerMessage::Error { .. } => "error",
            ServerMessage::Get { .. } => "get",
            ServerMessage::GetObjects { .. } => "getObjects",
        };
        map.serialize_entry("type", kind)?;
        map.serialize_entry("data", &Data(self.0))?;
        map.end()
    }
}

struct Data<'a>(&'a ServerMessage);

impl Serialize for Data<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            ServerMessage::Update {
                var_id,
                value,
                properties,
            } => {
                let mut map = s.serialize_map(None)?;
                map.serialize_entry("varId", var_id)?;
                if let Some(v) = value {
                    map.serialize_entry("value", &Json(v))?;
                }
                if !properties.is_empty() {
                    map.serialize_entry("properties", &Props(properties))?;
                }
                map.end()
            }
            ServerMessage::Destroy { var_id } => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("varId", var_id)?;
                map.end()
            }
            ServerMessage::Error {
                var_id,
                code,
                description,
            } => {
                let mut map = s.serialize_map(None)?;
                if let Some(id) = var_id {
                    map.serialize_entry("varId", id)?;
                }
                map.serialize_entry("code", code.as_str())?;
                map.serialize_entry("description", description)?;
                map.end()
            }
            ServerMessage::Get { variables } => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("variables", &Variables(variables))?;
                map.end()
            }
            ServerMessage::GetObjects { objects } => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("objects", &Objects(objects))?;
                map.end()
            }
        }
    }
}

/// `get`'s answer: `[{"id", "value", "properties"}, ...]`.
struct Variables<'a>(&'a [VariableSnapshot]);

impl Serialize for Variables<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for v in self.0 {
            seq.serialize_element(&Variable(v))?;
        }
        seq.end()
    }
}

struct Variable<'a>(&'a VariableSnapshot);

impl Serialize for Variable<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(3))?;
        map.serialize_entry("id", &self.0.id)?;
        map.serialize_entry("value", &Json(&self.0.value))?;
        map.serialize_entry("properties", &Props(&self.0.properties))?;
        map.end()
    }
}

/// `getObjects`' answer: `[{"obj", "value", "methods"}, ...]`.
struct Objects<'a>(&'a [ObjectSnapshot]);

impl Serialize for Objects<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for o in self.0 {
            seq.serialize_element(&Object(o))?;
        }
        seq.end()
    }
}

struct Object<'a>(&'a ObjectSnapshot);

impl Serialize for Object<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(3))?;
        map.serialize_entry("obj", &self.0.obj)?;
        map.serialize_entry("value", &Json(&self.0.value))?;
        map.serialize_entry("methods", &self.0.methods)?;
        map.end()
    }
}

/// Properties as a JSON object. A JSON object has each key once: a key given twice keeps its
/// first position and its last value (what an ordered map makes of the pairs).
struct Props<'a>(&'a Properties);

impl Serialize for Props<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in Unique::new(self.0) {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Value JSON. Non-finite floats have no JSON form and are written `null` (serde_json does).
struct Json<'a>(&'a Value);

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) => s.serialize_f64(*f),
            Value::String(v) => s.serialize_str(v),
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    seq.serialize_element(&Json(v))?;
                }
                seq.end()
            }
            Value::Object(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in Unique::new(fields) {
                    map.serialize_entry(k, &Json(v))?;
                }
                map.end()
            }
            Value::ObjRef(id) => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("obj", id)?;
                map.end()
            }
        }
    }
}

/// The pairs of a list as a JSON object sees them: each key once, at its first position,
/// with its last value. Lists without a repeated key (all the tracker makes) pass as they are.
struct Unique<'a, V> {
    pairs: &'a [(String, V)],
    /// Set only when some key repeats.
    last: Option<std::collections::HashMap<&'a str, usize>>,
    at: usize,
    seen: HashSet<&'a str>,
}

impl<'a, V> Unique<'a, V> {
    fn new(pairs: &'a [(String, V)]) -> Self {
        let last = has_repeats(pairs).then(|| {
            pairs
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (k.as_str(), i))
                .collect()
        });
        Unique {
            pairs,
            last,
            at: 0,
            seen: HashSet::new(),
        }
    }
}

impl<'a, V> Iterator for Unique<'a, V> {
    type Item = (&'a str, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (k, v) = self.pairs.get(self.at)?;
            self.at += 1;
            let Some(last) = &self.last else {
                return Some((k, v));
            };
            if self.seen.insert(k) {
                return Some((k, &self.pairs[last[k.as_str()]].1));
            }
        }
    }
}

// ---- reading ----------------------------------------------------------------------------
//
// One pass of serde_json's parser over the frame, into typed messages. Unknown fields are
// still parsed in full ([`Skip`]), never skipped unchecked: serde_json's skipping accepts some
// text its parser refuses (a lone surrogate escape, a number out of range), and a frame the
// general parser calls malformed must not get through here. Any error at all (including
// "this is valid, but not for the fast path") sends the whole frame to the general parser.

/// A frame read on the fast path.
pub struct FastFrame {
    pub user_event: bool,
    pub messages: Vec<ClientMessage>,
}

/// Reads a frame straight into typed messages; `None` where only the general parser can say
/// what the frame is (or why it is refused).
pub fn frame(text: &str) -> Option<FastFrame> {
    let mut de = serde_json::Deserializer::from_str(text);
    let top = Top::deserialize(&mut de).ok()?;
    de.end().ok()?;
    match top {
        Top::Messages(messages) => Some(FastFrame {
            user_event: false,
            messages,
        }),
        Top::Object(o) => match (o.messages, o.kind, o.data) {
            (Some(messages), _, _) => Some(FastFrame {
                user_event: o.user_event.flatten().unwrap_or(false),
                messages,
            }),
            (None, Some(kind), Some(data)) => Some(FastFrame {
                user_event: false,
                messages: vec![build(kind, data)?],
            }),
            _ => None,
        },
    }
}

/// The one error this reader has: "not for the fast path".
fn no<E: de::Error>() -> E {
    E::custom("for the general parser")
}

/// A frame's top level: a bare array of messages, or an object that is either a wrapped frame
/// or one message (which one is known only once every key has been read).
enum Top {
    Messages(Vec<ClientMessage>),
    Object(Box<TopObject>),
}

#[derive(Default)]
struct TopObject {
    user_event: Option<Option<bool>>,
    messages: Option<Vec<ClientMessage>>,
    kind: Option<Kind>,
    data: Option<DataIn>,
}

impl<'de> Deserialize<'de> for Top {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Top, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a frame")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Top, A::Error> {
                Ok(Top::Messages(Messages::visit(seq)?))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
                let mut o = TopObject::default();
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::UserEvent => once(&mut o.user_event, map.next_value()?)?,
                        Key::Messages => once(&mut o.messages, map.next_value::<Messages>()?.0)?,
                        Key::Type => once(&mut o.kind, map.next_value()?)?,
                        Key::DataIn => once(&mut o.data, map.next_value()?)?,
                        _ => map.next_value::<Skip>().map(drop)?,
                    }
                }
                Ok(Top::Object(Box::new(o)))
            }
        }
        d.deserialize_any(V)
    }
}

/// Sets a field read once; a key given twice is the general parser's to resolve.
fn once<T, E: de::Error>(slot: &mut Option<T>, value: T) -> Result<(), E> {
    if slot.is_some() {
        return Err(no());
    }
    *slot = Some(value);
    Ok(())
}

/// An array of messages, each one fully typed.
struct Messages(Vec<ClientMessage>);

impl Messages {
    fn visit<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Vec<ClientMessage>, A::Error> {
        let mut messages = Vec::new();
        while let Some(m) = seq.next_element::<Envelope>()? {
            if messages.len() == MAX_MESSAGES_PER_FRAME {
                return Err(no()); // the general parser words the refusal
            }
            messages.push(m.0);
        }
        Ok(messages)
    }
}

impl<'de> Deserialize<'de> for Messages {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Messages, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Messages;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of messages")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Messages, A::Error> {
                Ok(Messages(Messages::visit(seq)?))
            }
        }
        d.deserialize_seq(V)
    }
}

/// `{"type": T, "data": {...}}` as a typed message.
struct Envelope(ClientMessage);

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Envelope, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Envelope;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a message")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope, A::Error> {
                let (mut kind, mut data) = (None, None);
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Type => once(&mut kind, map.next_value()?)?,
                        Key::DataIn => once(&mut data, map.next_value()?)?,
                        _ => map.next_value::<Skip>().map(drop)?,
                    }
                }
                match (kind, data) {
                    (Some(kind), Some(data)) => build(kind, data).map(Envelope).ok_or_else(no),
                    _ => Err(no()),
                }
            }
        }
        d.deserialize_map(V)
    }
}

/// The message types.
#[derive(Clone, Copy)]
enum Kind {
    Create,
    Update,
    Destroy,
    Watch,
    Unwatch,
    Get,
    GetObjects,
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Kind, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Kind;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a message type")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Kind, E> {
                Ok(match s {
                    "create" => Kind::Create,
                    "update" => Kind::Update,
                    "destroy" => Kind::Destroy,
                    "watch" => Kind::Watch,
                    "unwatch" => Kind::Unwatch,
                    "get" => Kind::Get,
                    "getObjects" => Kind::GetObjects,
                    _ => return Err(no()),
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// Every key the frame and message readers know; any other is [`Key::Other`].
enum Key {
    Type,
    DataIn,
    UserEvent,
    Messages,
    Id,
    VarId,
    ParentId,
    Value,
    Properties,
    Nowatch,
    Unbound,
    VarIds,
    ObjIds,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key, E> {
                Ok(match s {
                    "type" => Key::Type,
                    "data" => Key::DataIn,
                    "userEvent" => Key::UserEvent,
                    "messages" => Key::Messages,
                    "id" => Key::Id,
                    "varId" => Key::VarId,
                    "parentId" => Key::ParentId,
                    "value" => Key::Value,
                    "properties" => Key::Properties,
                    "nowatch" => Key::Nowatch,
                    "unbound" => Key::Unbound,
                    "varIds" => Key::VarIds,
                    "objIds" => Key::ObjIds,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

/// A message's `data`, every field the general parser reads, read strictly (an `id` that is
/// not an integer sends the frame to the general parser, whatever the type needs).
#[derive(Default)]
struct DataIn {
    id: Option<i64>,
    var_id: Option<i64>,
    parent_id: Option<Option<i64>>,
    /// `Some(Value::Null)` for `null`: present, meaning "write nil".
    value: Option<Value>,
    properties: Option<Option<PropsIn>>,
    nowatch: Option<Value>,
    unbound: Option<Value>,
    var_ids: Option<Vec<i64>>,
    obj_ids: Option<Vec<i64>>,
}

impl<'de> Deserialize<'de> for DataIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<DataIn, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DataIn;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a message's data")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DataIn, A::Error> {
                let mut d = DataIn::default();
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Id => once(&mut d.id, map.next_value()?)?,
                        Key::VarId => once(&mut d.var_id, map.next_value()?)?,
                        Key::ParentId => once(&mut d.parent_id, map.next_value()?)?,
                        Key::Value => once(&mut d.value, map.next_value_seed(ValueSeed(0))?)?,
                        Key::Properties => once(&mut d.properties, map.next_value()?)?,
                        Key::Nowatch => once(&mut d.nowatch, map.next_value_seed(ValueSeed(0))?)?,
                        Key::Unbound => once(&mut d.unbound, map.next_value_seed(ValueSeed(0))?)?,
                        Key::VarIds => once(&mut d.var_ids, map.next_value()?)?,
                        Key::ObjIds => once(&mut d.obj_ids, map.next_value()?)?,
                        _ => map.next_value::<Skip>().map(drop)?,
                    }
                }
                Ok(d)
            }
        }
        d.deserialize_map(V)
    }
}

/// The typed message, or `None` when a field it needs is missing.
fn build(kind: Kind, d: DataIn) -> Option<ClientMessage> {
    // A flag is true only when it is the JSON `true`, as in the general parser.
    let flag = |v: Option<Value>| matches!(v, Some(Value::Bool(true)));
    let props = |p: Option<Option<PropsIn>>| p.flatten().map_or_else(Vec::new, |p| p.0);
    Some(match kind {
        Kind::Create => ClientMessage::Create {
            id: d.id?,
            parent_id: d.parent_id.flatten(),
            value: d.value,
            properties: props(d.properties),
            nowatch: flag(d.nowatch),
            unbound: flag(d.unbound),
        },
        Kind::Update => ClientMessage::Update {
            var_id: d.var_id?,
            value: d.value,
            properties: props(d.properties),
        },
        Kind::Destroy => ClientMessage::Destroy { var_id: d.var_id? },
        Kind::Watch => ClientMessage::Watch { var_id: d.var_id? },
        Kind::Unwatch => ClientMessage::Unwatch { var_id: d.var_id? },
        Kind::Get => ClientMessage::Get {
            var_ids: d.var_ids?,
        },
        Kind::GetObjects => ClientMessage::GetObjects {
            obj_ids: d.obj_ids?,
        },
    })
}

/// A properties object whose values are strings (or `null`, meaning remove: `""`), keys
/// distinct. Anything else is the general parser's to read.
struct PropsIn(Properties);

impl<'de> Deserialize<'de> for PropsIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PropsIn;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PropsIn, A::Error> {
                let mut props: Properties = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    let v = map.next_value::<Option<String>>()?.unwrap_or_default();
                    props.push((k, v));
                }
                if has_repeats(&props) {
                    return Err(no());
                }
                Ok(PropsIn(props))
            }
        }
        d.deserialize_map(V)
    }
}

/// Any JSON, parsed in full and dropped.
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Skip, D::Error> {
        d.deserialize_any(Skip)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = Skip;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_key::<Skip>()?.is_some() {
            map.next_value::<Skip>()?;
        }
        Ok(Skip)
    }
}

/// Whether some key occurs twice.
fn has_repeats<V>(pairs: &[(String, V)]) -> bool {
    if pairs.len() <= 8 {
        return pairs
            .iter()
            .enumerate()
            .any(|(i, (k, _))| pairs[..i].iter().any(|(j, _)| j == k));
    }
    let mut keys = HashSet::with_capacity(pairs.len());
    !pairs.iter().all(|(k, _)| keys.insert(k.as_str()))
}

/// Reads browser JSON into a [`Value`] as `Value::from_json` would, at nesting `.0`.
struct ValueSeed(usize);

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.0 > MAX_VALUE_DEPTH {
            return Err(no());
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Int(i))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Value, E> {
        // As `Json::as_i64`: an integer past i64 is a float.
        Ok(match i64::try_from(u) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Float(u as f64),
        })
    }
    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Float(f))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(ValueSeed(self.0 + 1))? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields: Vec<(String, Value)> = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value_seed(ValueSeed(self.0 + 1))?;
            fields.push((k, v));
        }
        if has_repeats(&fields) {
            return Err(no());
        }
        if let [(k, Value::Int(id))] = fields.as_slice() {
            if k == "obj" {
                return Ok(Value::ObjRef(*id));
            }
        }
        Ok(Value::Object(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frames tabs really send take the fast path (the property tests check that both
    /// paths agree; this checks that the fast one is taken).
    #[test]
    fn what_tabs_send_is_read_on_the_fast_path() {
        for text in [
            r#"{"userEvent":true,"messages":[{"type":"update","data":{"varId":4,"value":null}}]}"#,
            r#"[{"type":"get","data":{"varIds":[2]}},{"type":"watch","data":{"varId":2}}]"#,
            r#"{"type":"create","data":{"id":2,"parentId":1,"value":{"obj":3},
                "properties":{"path":"a.b","access":"rw"},"nowatch":true,"extra":[1e3,"x"]}}"#,
            r#"{"messages":[{"data":{"varId":3,"value":[1,2.5,"é",{"k":false}]},"type":"update"}]}"#,
        ] {
            let f = frame(text).unwrap_or_else(|| panic!("not on the fast path: {text}"));
            assert_eq!(f.messages.len().min(1), 1);
        }
        assert!(matches!(
            frame(r#"{"type":"create","data":{"id":2,"value":{"obj":3}}}"#)
                .unwrap()
                .messages[0],
            ClientMessage::Create {
                value: Some(Value::ObjRef(3)),
                ..
            }
        ));
    }

    /// What only the general parser may answer: refusals, repeated keys, escapes it rejects.
    #[test]
    fn anything_unusual_goes_to_the_general_parser() {
        for text in [
            r#"{"type":"watch","data":{"varId":1,"varId":2}}"#,
            r#"{"type":"watch","data":{"varId":1,"x":"\ud800"}}"#,
            r#"{"type":"watch","data":{"varId":1,"x":1e400}}"#,
            r#"{"type":"create","data":{"id":1,"properties":{"n":3}}}"#,
            r#"{"type":"watch","data":{"varId":1.0}}"#,
            r#"{"type":"nope","data":{}}"#,
            r#"{"messages":null}"#,
            r#"[1]"#,
        ] {
            assert!(frame(text).is_none(), "{text}");
        }
    }
}
