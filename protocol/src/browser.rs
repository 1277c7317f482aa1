//! The variable protocol a tab speaks (ARCHITECTURE.md 3), wire-compatible with ui-engine.
//!
//! The broker parses every WebSocket frame here, once: [`parse_frame`] turns JSON text into
//! typed [`ClientMessage`]s (or a per-message [`MessageError`] that becomes an `error` reply),
//! and [`encode_text`] turns the worker's [`ServerMessage`]s back into JSON text. The worker
//! never sees browser bytes.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as Json};

use crate::limits::{MAX_BROWSER_FRAME, MAX_MESSAGES_PER_FRAME};

mod json;
use crate::value::Value;

/// Variable ids: 1 is the app variable, ≥ 2 are vended by a tab, negative ones by the server.
pub type VarId = i64;

/// Property maps keep their order; an empty value means "remove" in both directions.
pub type Properties = Vec<(String, String)>;

/// A message from a tab, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientMessage {
    Create {
        id: VarId,
        parent_id: Option<VarId>,
        value: Option<Value>,
        properties: Properties,
        nowatch: bool,
        unbound: bool,
    },
    Destroy {
        var_id: VarId,
    },
    /// `value: Some(Value::Null)` writes nil; `None` leaves the value alone.
    Update {
        var_id: VarId,
        value: Option<Value>,
        properties: Properties,
    },
    Watch {
        var_id: VarId,
    },
    Unwatch {
        var_id: VarId,
    },
    Get {
        var_ids: Vec<VarId>,
    },
    GetObjects {
        obj_ids: Vec<i64>,
    },
}

/// A message to a tab.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServerMessage {
    /// `value` only when it changed (or on the reply to `watch`); `properties` only those
    /// that changed, removed ones as `""`.
    Update {
        var_id: VarId,
        value: Option<Value>,
        properties: Properties,
    },
    Destroy {
        var_id: VarId,
    },
    Error {
        var_id: Option<VarId>,
        code: ErrorCode,
        description: String,
    },
    Get {
        variables: Vec<VariableSnapshot>,
    },
    GetObjects {
        objects: Vec<ObjectSnapshot>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariableSnapshot {
    pub id: VarId,
    pub value: Value,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectSnapshot {
    pub obj: i64,
    /// The object's fields as value JSON (a [`Value::Object`]).
    pub value: Value,
    /// Names of the functions reachable through the object's metatable chain.
    pub methods: Vec<String>,
}

/// The one-word `code` of an `error` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    NotFound,
    BadRequest,
    PathFailure,
    BadAccess,
    LuaError,
    Limit,
    SessionCrashed,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not-found",
            ErrorCode::BadRequest => "bad-request",
            ErrorCode::PathFailure => "path-failure",
            ErrorCode::BadAccess => "bad-access",
            ErrorCode::LuaError => "lua-error",
            ErrorCode::Limit => "limit",
            ErrorCode::SessionCrashed => "session-crashed",
            ErrorCode::Internal => "internal",
        }
    }
}

/// Why one message of a frame was refused; the broker answers it with an `error` message.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageError {
    pub var_id: Option<VarId>,
    pub code: ErrorCode,
    pub description: String,
}

impl MessageError {
    fn bad(var_id: Option<VarId>, description: impl Into<String>) -> Self {
        MessageError {
            var_id,
            code: ErrorCode::BadRequest,
            description: description.into(),
        }
    }

    pub fn into_message(self) -> ServerMessage {
        ServerMessage::Error {
            var_id: self.var_id,
            code: self.code,
            description: self.description,
        }
    }
}

/// A parsed browser frame: each message on its own, so one bad message never costs the others.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientFrame {
    pub user_event: bool,
    pub messages: Vec<Result<ClientMessage, MessageError>>,
}

/// Parses one WebSocket text frame: `{"userEvent": b, "messages": [...]}`, a bare array of
/// messages, or a single message object. A frame that is not one of those is refused whole.
///
/// Frames read straight into typed messages (`browser/json.rs`); one with anything unusual in it
/// (a refusal to word, a repeated key, a property that is not a string) is read again by the
/// general parser below, which gives every frame its meaning.
pub fn parse_frame(text: &str) -> Result<ClientFrame, MessageError> {
    if text.len() <= MAX_BROWSER_FRAME {
        if let Some(fast) = json::frame(text) {
            return Ok(ClientFrame {
                user_event: fast.user_event,
                messages: fast.messages.into_iter().map(Ok).collect(),
            });
        }
    }
    parse_frame_generally(text)
}

/// The general parser: a `serde_json::Value` tree, then each message on its own. Public so
/// that the property tests can hold [`parse_frame`] to it; use [`parse_frame`].
pub fn parse_frame_generally(text: &str) -> Result<ClientFrame, MessageError> {
    if text.len() > MAX_BROWSER_FRAME {
        return Err(MessageError {
            var_id: None,
            code: ErrorCode::Limit,
            description: format!(
                "frame of {} bytes is over the {MAX_BROWSER_FRAME}-byte limit",
                text.len()
            ),
        });
    }
    let json: Json = serde_json::from_str(text)
        .map_err(|e| MessageError::bad(None, format!("malformed JSON: {e}")))?;
    let (user_event, items) =
        match json {
            Json::Array(items) => (false, items),
            Json::Object(mut map) if map.contains_key("messages") => {
                let user_event = match map.get("userEvent") {
                    None | Some(Json::Null) => false,
                    Some(Json::Bool(b)) => *b,
                    Some(_) => return Err(MessageError::bad(None, "userEvent must be a boolean")),
                };
                match map.remove("messages") {
                    Some(Json::Array(items)) => (user_event, items),
                    _ => return Err(MessageError::bad(None, "messages must be an array")),
                }
            }
            Json::Object(map) if map.contains_key("type") => (false, vec![Json::Object(map)]),
            _ => return Err(MessageError::bad(
                None,
                "a frame is {\"userEvent\", \"messages\"}, an array of messages, or one message",
            )),
        };
    if items.len() > MAX_MESSAGES_PER_FRAME {
        return Err(MessageError {
            var_id: None,
            code: ErrorCode::Limit,
            description: format!(
                "{} messages in one frame; at most {MAX_MESSAGES_PER_FRAME}",
                items.len()
            ),
        });
    }
    Ok(ClientFrame {
        user_event,
        messages: items.iter().map(parse_message).collect(),
    })
}

/// Parses one `{"type": T, "data": {...}}` message. Unknown fields in `data` are ignored.
pub fn parse_message(json: &Json) -> Result<ClientMessage, MessageError> {
    let obj = json
        .as_object()
        .ok_or_else(|| MessageError::bad(None, "a message must be an object"))?;
    let kind = obj
        .get("type")
        .and_then(Json::as_str)
        .ok_or_else(|| MessageError::bad(None, "a message needs a string \"type\""))?;
    let empty = Map::new();
    let data = match obj.get("data") {
        None | Some(Json::Null) => &empty,
        Some(Json::Object(d)) => d,
        Some(_) => return Err(MessageError::bad(None, "\"data\" must be an object")),
    };
    // The id named by the message, if readable, so that an error can point at it.
    let var_id = data
        .get("varId")
        .or_else(|| data.get("id"))
        .and_then(Json::as_i64);
    let bad = |what: String| MessageError::bad(var_id, format!("{kind}: {what}"));

    let id_field = |name: &str| -> Result<VarId, MessageError> {
        match data.get(name) {
            Some(v) => v
                .as_i64()
                .ok_or_else(|| bad(format!("\"{name}\" must be an integer"))),
            None => Err(bad(format!("\"{name}\" is required"))),
        }
    };
    let value_field = || -> Result<Option<Value>, MessageError> {
        data.get("value")
            .map(Value::from_json)
            .transpose()
            .map_err(|e| bad(e.to_string()))
    };
    let props_field = || -> Result<Properties, MessageError> {
        match data.get("properties") {
            None | Some(Json::Null) => Ok(Vec::new()),
            Some(Json::Object(map)) => map
                .iter()
                .map(|(k, v)| match v {
                    Json::String(s) => Ok((k.clone(), s.clone())),
                    Json::Null => Ok((k.clone(), String::new())),
                    Json::Bool(_) | Json::Number(_) => Ok((k.clone(), v.to_string())),
                    _ => Err(bad(format!("property \"{k}\" must be a string"))),
                })
                .collect(),
            Some(_) => Err(bad("\"properties\" must be an object".into())),
        }
    };
    let flag = |name: &str| data.get(name).and_then(Json::as_bool).unwrap_or(false);
    let id_list = |name: &str| -> Result<Vec<i64>, MessageError> {
        match data.get(name) {
            Some(Json::Array(ids)) => ids
                .iter()
                .map(|v| {
                    v.as_i64()
                        .ok_or_else(|| bad(format!("\"{name}\" must hold integers")))
                })
                .collect(),
            _ => Err(bad(format!("\"{name}\" must be an array of integers"))),
        }
    };

    match kind {
        "create" => {
            let id = id_field("id")?;
            let parent_id = match data.get("parentId") {
                None | Some(Json::Null) => None,
                Some(v) => Some(
                    v.as_i64()
                        .ok_or_else(|| bad("\"parentId\" must be an integer".into()))?,
                ),
            };
            Ok(ClientMessage::Create {
                id,
                parent_id,
                value: value_field()?,
                properties: props_field()?,
                nowatch: flag("nowatch"),
                unbound: flag("unbound"),
            })
        }
        "destroy" => Ok(ClientMessage::Destroy {
            var_id: id_field("varId")?,
        }),
        "update" => Ok(ClientMessage::Update {
            var_id: id_field("varId")?,
            value: value_field()?,
            properties: props_field()?,
        }),
        "watch" => Ok(ClientMessage::Watch {
            var_id: id_field("varId")?,
        }),
        "unwatch" => Ok(ClientMessage::Unwatch {
            var_id: id_field("varId")?,
        }),
        "get" => Ok(ClientMessage::Get {
            var_ids: id_list("varIds")?,
        }),
        "getObjects" => Ok(ClientMessage::GetObjects {
            obj_ids: id_list("objIds")?,
        }),
        other => Err(MessageError::bad(
            var_id,
            format!("unknown message type \"{other}\""),
        )),
    }
}

fn props_json(props: &Properties) -> Json {
    Json::Object(
        props
            .iter()
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect(),
    )
}

impl ServerMessage {
    pub fn to_json(&self) -> Json {
        match self {
            ServerMessage::Update {
                var_id,
                value,
                properties,
            } => {
                let mut data = Map::new();
                data.insert("varId".into(), json!(var_id));
                if let Some(v) = value {
                    data.insert("value".into(), v.to_json());
                }
                if !properties.is_empty() {
                    data.insert("properties".into(), props_json(properties));
                }
                json!({"type": "update", "data": data})
            }
            ServerMessage::Destroy { var_id } => {
                json!({"type": "destroy", "data": {"varId": var_id}})
            }
            ServerMessage::Error {
                var_id,
                code,
                description,
            } => {
                let mut data = Map::new();
                if let Some(id) = var_id {
                    data.insert("varId".into(), json!(id));
                }
                data.insert("code".into(), json!(code.as_str()));
                data.insert("description".into(), json!(description));
                json!({"type": "error", "data": data})
            }
            ServerMessage::Get { variables } => {
                let vars: Vec<Json> = variables
                    .iter()
                    .map(|v| {
                        json!({"id": v.id, "value": v.value.to_json(),
                               "properties": props_json(&v.properties)})
                    })
                    .collect();
                json!({"type": "get", "data": {"variables": vars}})
            }
            ServerMessage::GetObjects { objects } => {
                let objs: Vec<Json> = objects
                    .iter()
                    .map(
                        |o| json!({"obj": o.obj, "value": o.value.to_json(), "methods": o.methods}),
                    )
                    .collect();
                json!({"type": "getObjects", "data": {"objects": objs}})
            }
        }
    }
}

/// Encodes messages for one tab as the text of one WebSocket frame: one message as a bare
/// object, two or more as an array; written straight to text, the same text as
/// [`ServerMessage::to_json`] gives. (`codec::encode_frame` is the other wire: bincode.)
pub fn encode_text(messages: &[ServerMessage]) -> String {
    // Writing JSON into a String fails only for map keys that are not strings; ours are.
    serde_json::to_string(&json::Frame(messages)).expect("server messages always encode")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_frame_shapes() {
        let wrapped =
            parse_frame(r#"{"userEvent":true,"messages":[{"type":"watch","data":{"varId":1}}]}"#)
                .unwrap();
        assert!(wrapped.user_event);
        assert_eq!(
            wrapped.messages,
            vec![Ok(ClientMessage::Watch { var_id: 1 })]
        );

        let bare = parse_frame(
            r#"[{"type":"watch","data":{"varId":1}},{"type":"unwatch","data":{"varId":1}}]"#,
        )
        .unwrap();
        assert!(!bare.user_event);
        assert_eq!(bare.messages.len(), 2);

        let single = parse_frame(r#"{"type":"get","data":{"varIds":[1,2]}}"#).unwrap();
        assert_eq!(
            single.messages,
            vec![Ok(ClientMessage::Get {
                var_ids: vec![1, 2]
            })]
        );
    }

    #[test]
    fn create_reads_every_field_and_ignores_unknown_ones() {
        let f = parse_frame(
            r#"{"type":"create","data":{"id":2,"parentId":1,"value":null,"extra":5,
                "properties":{"path":"count","access":"r","n":3},"nowatch":true}}"#,
        )
        .unwrap();
        assert_eq!(
            f.messages[0],
            Ok(ClientMessage::Create {
                id: 2,
                parent_id: Some(1),
                value: Some(Value::Null),
                properties: vec![
                    ("path".into(), "count".into()),
                    ("access".into(), "r".into()),
                    ("n".into(), "3".into())
                ],
                nowatch: true,
                unbound: false,
            })
        );
    }

    #[test]
    fn update_distinguishes_absent_value_from_null() {
        let f = parse_frame(r#"[{"type":"update","data":{"varId":3}},{"type":"update","data":{"varId":3,"value":null}}]"#).unwrap();
        assert!(matches!(
            f.messages[0],
            Ok(ClientMessage::Update { value: None, .. })
        ));
        assert!(matches!(
            f.messages[1],
            Ok(ClientMessage::Update {
                value: Some(Value::Null),
                ..
            })
        ));
    }

    #[test]
    fn bad_messages_fail_alone() {
        let f = parse_frame(
            r#"[{"type":"nope","data":{"varId":4}},{"type":"watch","data":{}},{"type":"watch","data":{"varId":1}}]"#,
        )
        .unwrap();
        let e = f.messages[0].clone().unwrap_err();
        assert_eq!((e.code, e.var_id), (ErrorCode::BadRequest, Some(4)));
        assert!(e.description.contains("unknown message type"));
        assert!(f.messages[1].is_err());
        assert_eq!(f.messages[2], Ok(ClientMessage::Watch { var_id: 1 }));
    }

    #[test]
    fn malformed_and_oversized_frames_are_refused() {
        assert_eq!(
            parse_frame("{nope").unwrap_err().code,
            ErrorCode::BadRequest
        );
        assert_eq!(parse_frame("42").unwrap_err().code, ErrorCode::BadRequest);
        let big = format!("[\"{}\"]", "x".repeat(MAX_BROWSER_FRAME));
        assert_eq!(parse_frame(&big).unwrap_err().code, ErrorCode::Limit);
    }

    #[test]
    fn one_message_is_an_object_two_are_an_array() {
        let d = ServerMessage::Destroy { var_id: 2 };
        assert_eq!(
            encode_text(std::slice::from_ref(&d)),
            r#"{"type":"destroy","data":{"varId":2}}"#
        );
        assert!(encode_text(&[d.clone(), d]).starts_with('['));
    }

    #[test]
    fn update_json_omits_absent_value_and_keeps_null() {
        let u = ServerMessage::Update {
            var_id: 1,
            value: None,
            properties: vec![("type".into(), "App".into())],
        };
        assert_eq!(
            u.to_json(),
            json!({"type":"update","data":{"varId":1,"properties":{"type":"App"}}})
        );
        let n = ServerMessage::Update {
            var_id: 1,
            value: Some(Value::Null),
            properties: vec![],
        };
        assert_eq!(
            n.to_json(),
            json!({"type":"update","data":{"varId":1,"value":null}})
        );
    }

    #[test]
    fn error_json_carries_code_word() {
        let e = ServerMessage::Error {
            var_id: Some(9),
            code: ErrorCode::PathFailure,
            description: "no field x".into(),
        };
        assert_eq!(
            e.to_json(),
            json!({"type":"error","data":{"varId":9,"code":"path-failure","description":"no field x"}})
        );
    }
}
