//! Property tests of everything that parses untrusted bytes: the browser frame parser, value
//! conversion and the bincode frame codec. Whatever the input, the answer is a value or a typed
//! error, never a panic; and every value the protocol can express survives the trip through
//! its wire format unchanged.

use bytes::BytesMut;
use luabroker_protocol as protocol;
use proptest::prelude::*;
use protocol::browser::{
    encode_text, parse_frame, parse_frame_generally, ClientMessage, ErrorCode, ObjectSnapshot,
    ServerMessage, VariableSnapshot,
};
use protocol::codec::{decode_payload, encode_frame as encode_ipc_frame, CodecError, FrameCodec};
use protocol::ipc::{
    BrokerToWorker, DebugListing, DebugVariable, FileStamp, Hello, LuaLimits, PrepareVm,
    StartSession, TabBatch, WorkerToBroker,
};
use protocol::limits::MAX_VALUE_DEPTH;
use protocol::sandbox::{SandboxPolicy, WorkerUser};
use protocol::Value;
use serde_json::{json, Map, Value as Json};
use tokio_util::codec::{Decoder, Encoder};

type WorkerSide = FrameCodec<BrokerToWorker, WorkerToBroker>;
type BrokerSide = FrameCodec<WorkerToBroker, BrokerToWorker>;

// ---- strategies ------------------------------------------------------------------------

/// Keys of one JSON object: distinct (a JSON object cannot repeat a key), in generation order.
fn keys<T: std::fmt::Debug>(
    inner: impl Strategy<Value = T>,
    max: usize,
) -> impl Strategy<Value = Vec<(String, T)>> {
    prop::collection::vec((".{0,8}", inner), 0..max).prop_map(|pairs| {
        let mut seen = std::collections::HashSet::new();
        pairs
            .into_iter()
            .filter(|(k, _)| seen.insert(k.clone()))
            .collect()
    })
}

/// Any value the protocol can carry from a tab: finite floats only (JSON has no NaN), and no
/// object that is exactly `{"obj": <integer>}` (that is how a reference is written).
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::Float),
        ".{0,12}".prop_map(Value::String),
        any::<i64>().prop_map(Value::ObjRef),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            keys(inner, 6)
                .prop_filter("a lone integer obj key is a reference", |fields| {
                    !(fields.len() == 1
                        && fields[0].0 == "obj"
                        && matches!(fields[0].1, Value::Int(_)))
                })
                .prop_map(Value::Object),
        ]
    })
}

/// Any JSON at all, for the "never panics" properties.
fn json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(Json::from),
        any::<u64>().prop_map(Json::from),
        any::<f64>().prop_map(Json::from),
        ".{0,8}".prop_map(Json::String),
        prop::sample::select(vec![
            "type",
            "data",
            "id",
            "varId",
            "varIds",
            "objIds",
            "parentId",
            "value",
            "properties",
            "messages",
            "userEvent",
            "create",
            "update",
            "watch",
            "get",
            "getObjects",
            "obj"
        ])
        .prop_map(|s| Json::String(s.into())),
    ];
    leaf.prop_recursive(8, 128, 8, |inner| {
        let key = prop_oneof![
            prop::sample::select(WORDS.to_vec()).prop_map(String::from),
            ".{0,6}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Json::Array),
            prop::collection::vec((key, inner), 0..8)
                .prop_map(|pairs| Json::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Words the frame parser looks for, as keys and as `type`s.
const WORDS: [&str; 19] = [
    "type",
    "data",
    "id",
    "varId",
    "varIds",
    "objIds",
    "parentId",
    "value",
    "properties",
    "messages",
    "userEvent",
    "nowatch",
    "unbound",
    "obj",
    "create",
    "update",
    "watch",
    "get",
    "getObjects",
];

/// JSON text as a tab could write it: repeated keys, escapes, lone surrogates, integers
/// written as floats, numbers past i64 (what a `Json` value cannot even hold).
fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<u64>().prop_map(|u| u.to_string()),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(|f| Json::from(f).to_string()),
        prop::sample::select(vec!["1.0", "-0", "1e3", "-1.5e-7", "18446744073709551616"])
            .prop_map(String::from),
        ".{0,6}".prop_map(|s| Json::String(s).to_string()),
        prop::sample::select(vec![
            r#""\ud800""#,
            r#""cre\u0061te""#,
            r#""a\"b""#,
            r#""\n""#
        ])
        .prop_map(String::from),
        prop::sample::select(WORDS.to_vec()).prop_map(|w| format!("\"{w}\"")),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6)
                .prop_map(|items| format!("[{}]", items.join(","))),
            prop::collection::vec((json_key(), inner), 0..6).prop_map(|pairs| object_text(&pairs)),
        ]
    })
}

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(WORDS.to_vec()).prop_map(String::from),
        ".{0,4}",
    ]
}

fn object_text(pairs: &[(String, String)]) -> String {
    let fields: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}:{v}", Json::String(k.clone())))
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// A message as text: a known `type` and `data` fields a parser reads, each with any JSON,
/// sometimes twice; so that most of them are valid, or nearly.
fn message_text() -> impl Strategy<Value = String> {
    let string = || ".{0,4}".prop_map(|s| Json::String(s).to_string());
    let field = prop_oneof![
        (
            prop::sample::select(vec!["id", "varId", "parentId"]).prop_map(String::from),
            any::<i64>().prop_map(|i| i.to_string())
        ),
        (
            prop::sample::select(vec!["varIds", "objIds"]).prop_map(String::from),
            prop::collection::vec(any::<i64>(), 0..4).prop_map(|ids| format!("{ids:?}"))
        ),
        (
            Just("properties".to_string()),
            prop::collection::vec((json_key(), string()), 0..4)
                .prop_map(|pairs| object_text(&pairs))
        ),
        (json_key(), json_text()),
    ];
    (
        prop::sample::select(vec![
            "create",
            "update",
            "destroy",
            "watch",
            "unwatch",
            "get",
            "getObjects",
            "nope",
        ]),
        prop::collection::vec(field, 0..6),
    )
        .prop_map(|(kind, fields)| {
            format!(r#"{{"type":"{kind}","data":{}}}"#, object_text(&fields))
        })
}

fn properties() -> impl Strategy<Value = Vec<(String, String)>> {
    keys(".{0,10}", 5)
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    let id = any::<i64>();
    let ids = prop::collection::vec(any::<i64>(), 0..6);
    prop_oneof![
        (
            id,
            prop::option::of(any::<i64>()),
            prop::option::of(value()),
            properties(),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(id, parent_id, value, properties, nowatch, unbound)| {
                ClientMessage::Create {
                    id,
                    parent_id,
                    value,
                    properties,
                    nowatch,
                    unbound,
                }
            }),
        id.prop_map(|var_id| ClientMessage::Destroy { var_id }),
        (id, prop::option::of(value()), properties()).prop_map(|(var_id, value, properties)| {
            ClientMessage::Update {
                var_id,
                value,
                properties,
            }
        }),
        id.prop_map(|var_id| ClientMessage::Watch { var_id }),
        id.prop_map(|var_id| ClientMessage::Unwatch { var_id }),
        ids.clone()
            .prop_map(|var_ids| ClientMessage::Get { var_ids }),
        ids.prop_map(|obj_ids| ClientMessage::GetObjects { obj_ids }),
    ]
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop::sample::select(vec![
        ErrorCode::NotFound,
        ErrorCode::BadRequest,
        ErrorCode::PathFailure,
        ErrorCode::BadAccess,
        ErrorCode::LuaError,
        ErrorCode::Limit,
        ErrorCode::SessionCrashed,
        ErrorCode::Internal,
    ])
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    prop_oneof![
        (any::<i64>(), prop::option::of(value()), properties()).prop_map(
            |(var_id, value, properties)| ServerMessage::Update {
                var_id,
                value,
                properties
            }
        ),
        any::<i64>().prop_map(|var_id| ServerMessage::Destroy { var_id }),
        (prop::option::of(any::<i64>()), error_code(), ".{0,20}").prop_map(
            |(var_id, code, description)| ServerMessage::Error {
                var_id,
                code,
                description
            }
        ),
        prop::collection::vec(
            (any::<i64>(), value(), properties()).prop_map(|(id, value, properties)| {
                VariableSnapshot {
                    id,
                    value,
                    properties,
                }
            }),
            0..4
        )
        .prop_map(|variables| ServerMessage::Get { variables }),
        prop::collection::vec(
            (any::<i64>(), value(), prop::collection::vec(".{0,6}", 0..3)).prop_map(
                |(obj, value, methods)| ObjectSnapshot {
                    obj,
                    value,
                    methods
                }
            ),
            0..4
        )
        .prop_map(|objects| ServerMessage::GetObjects { objects }),
    ]
}

fn sandbox_policy() -> impl Strategy<Value = SandboxPolicy> {
    (
        prop::option::of((any::<u32>(), any::<u32>())),
        any::<[bool; 3]>(),
    )
        .prop_map(|(user, [namespaces, landlock, seccomp])| SandboxPolicy {
            user: user.map(|(uid, gid)| WorkerUser { uid, gid }),
            namespaces,
            landlock,
            seccomp,
        })
}

fn broker_to_worker() -> impl Strategy<Value = BrokerToWorker> {
    prop_oneof![
        (".{0,20}", any::<u64>(), any::<u64>(), sandbox_policy()).prop_map(
            |(app_dir, memory_bytes, turn_time_ms, sandbox)| {
                BrokerToWorker::Prepare(PrepareVm {
                    viewdefs_dir: format!("{app_dir}/viewdefs"),
                    confine_dir: app_dir.clone(),
                    app_dir,
                    limits: LuaLimits {
                        memory_bytes,
                        turn_time_ms,
                    },
                    sandbox,
                })
            }
        ),
        (any::<u64>(), ".{0,32}", any::<bool>()).prop_map(|(vended_id, session_id, ahead)| {
            BrokerToWorker::Start(StartSession {
                vended_id,
                session_id,
                ahead,
            })
        }),
        Just(BrokerToWorker::Claimed),
        any::<u32>().prop_map(|tab| BrokerToWorker::TabOpened { tab }),
        (
            any::<u32>(),
            any::<bool>(),
            prop::collection::vec(client_message(), 0..5)
        )
            .prop_map(|(tab, user_event, messages)| BrokerToWorker::Frame {
                tab,
                user_event,
                messages
            }),
        any::<u32>().prop_map(|tab| BrokerToWorker::TabClosed { tab }),
        any::<u64>().prop_map(|seq| BrokerToWorker::Ping { seq }),
        (any::<u64>(), prop::option::of(any::<u8>())).prop_map(|(request, diag_level)| {
            BrokerToWorker::DebugVariables {
                request,
                diag_level,
            }
        }),
        prop::collection::vec(".{0,12}", 0..4).prop_map(|files| BrokerToWorker::Reload { files }),
        Just(BrokerToWorker::Shutdown),
    ]
}

fn file_stamp() -> impl Strategy<Value = FileStamp> {
    (".{0,40}", any::<[u64; 3]>(), any::<[i64; 2]>()).prop_map(
        |(path, [dev, ino, size], [m, c])| FileStamp {
            path,
            dev,
            ino,
            size,
            mtime_ns: m,
            ctime_ns: c,
        },
    )
}

fn debug_variable() -> impl Strategy<Value = DebugVariable> {
    let shape = (
        any::<i64>(),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<i64>()),
        ".{0,12}",
        prop::option::of(value()),
        properties(),
        prop::collection::vec(any::<i64>(), 0..4),
        prop::option::of(".{0,12}"),
        ".{0,6}",
    );
    let stats = (
        any::<u64>(),
        prop::option::of(any::<u64>()),
        prop::option::of(any::<u64>()),
        any::<bool>(),
        any::<u32>(),
        ".{0,6}",
        prop::option::of(value()),
        prop::collection::vec(any::<u32>(), 0..3),
        prop::collection::vec(".{0,12}", 0..3),
    );
    (shape, stats).prop_map(
        |(
            (id, tab, parent_id, path, value, properties, child_ids, error, access),
            (change_count, compute, max_compute, active, depth, lua_type, base, watchers, diags),
        )| DebugVariable {
            id,
            tab,
            parent_id,
            path,
            value,
            properties,
            child_ids,
            error,
            access,
            change_count,
            compute_time_ns: compute,
            max_compute_time_ns: max_compute,
            active,
            depth,
            lua_type,
            base_value: base,
            watchers,
            diags,
        },
    )
}

/// Floats here may be anything, NaN included: bincode carries every bit pattern.
fn worker_to_broker() -> impl Strategy<Value = WorkerToBroker> {
    prop_oneof![
        (any::<u32>(), any::<[u8; 32]>(), any::<u32>()).prop_map(|(version, token, pid)| {
            WorkerToBroker::Hello(Hello {
                version,
                token,
                pid,
            })
        }),
        Just(WorkerToBroker::Prepared),
        (prop::collection::vec(file_stamp(), 0..3), value())
            .prop_map(|(read, app)| WorkerToBroker::Ready { read, app }),
        ".{0,40}".prop_map(|error| WorkerToBroker::Failed { error }),
        prop::collection::vec(
            (any::<u32>(), prop::collection::vec(server_message(), 0..4))
                .prop_map(|(tab, messages)| TabBatch { tab, messages }),
            0..3
        )
        .prop_map(WorkerToBroker::Send),
        any::<u64>().prop_map(|seq| WorkerToBroker::Pong { seq }),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u8>(),
            prop::collection::vec(debug_variable(), 0..3),
            any::<u64>(),
            prop::collection::vec(any::<u64>(), 0..5),
        )
            .prop_map(
                |(request, change_count, diag_level, variables, passes, recent_pass_ns)| {
                    WorkerToBroker::DebugVariables {
                        request,
                        listing: DebugListing {
                            change_count,
                            diag_level,
                            passes,
                            recent_pass_ns,
                            variables,
                        },
                    }
                },
            ),
        any::<u32>().prop_map(|syscall| WorkerToBroker::SandboxViolation { syscall }),
    ]
}

// ---- how a tab writes a message (ui-engine's wire format) -------------------------------

fn props_json(props: &[(String, String)]) -> Json {
    Json::Object(
        props
            .iter()
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect(),
    )
}

fn client_json(msg: &ClientMessage) -> Json {
    match msg {
        ClientMessage::Create {
            id,
            parent_id,
            value,
            properties,
            nowatch,
            unbound,
        } => {
            let mut data = Map::new();
            data.insert("id".into(), json!(id));
            if let Some(p) = parent_id {
                data.insert("parentId".into(), json!(p));
            }
            if let Some(v) = value {
                data.insert("value".into(), v.to_json());
            }
            data.insert("properties".into(), props_json(properties));
            data.insert("nowatch".into(), json!(nowatch));
            data.insert("unbound".into(), json!(unbound));
            json!({"type": "create", "data": data})
        }
        ClientMessage::Destroy { var_id } => json!({"type": "destroy", "data": {"varId": var_id}}),
        ClientMessage::Update {
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
        ClientMessage::Watch { var_id } => json!({"type": "watch", "data": {"varId": var_id}}),
        ClientMessage::Unwatch { var_id } => json!({"type": "unwatch", "data": {"varId": var_id}}),
        ClientMessage::Get { var_ids } => json!({"type": "get", "data": {"varIds": var_ids}}),
        ClientMessage::GetObjects { obj_ids } => {
            json!({"type": "getObjects", "data": {"objIds": obj_ids}})
        }
    }
}

/// Feeds `bytes` to a decoder in the given pieces and collects every message it yields.
fn decode_in_pieces<D: Decoder>(
    decoder: &mut D,
    bytes: &[u8],
    cuts: &[usize],
) -> Result<Vec<D::Item>, D::Error> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.push(bytes.len());
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut from = 0;
    for cut in cuts {
        buf.extend_from_slice(&bytes[from..cut]);
        from = cut;
        while let Some(item) = decoder.decode(&mut buf)? {
            out.push(item);
        }
    }
    Ok(out)
}

// ---- properties ------------------------------------------------------------------------

proptest! {
    // No regression files: a failure prints its minimal input, which becomes a unit test.
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any text at all: a frame, or a typed refusal.
    #[test]
    fn any_text_is_a_frame_or_a_refusal(text in ".{0,200}") {
        if let Err(e) = parse_frame(&text) {
            prop_assert!(matches!(e.code, ErrorCode::BadRequest | ErrorCode::Limit));
        }
    }

    /// Any JSON, including messages with every field of the wrong type: each message parses
    /// or is refused on its own, never with a panic.
    #[test]
    fn any_json_is_a_frame_or_a_refusal(j in json(), wrap in 0..3u8, user_event in json()) {
        let frame = match wrap {
            0 => j,
            1 => json!([j]),
            _ => json!({"userEvent": user_event, "messages": [j]}),
        };
        match parse_frame(&frame.to_string()) {
            Ok(f) => for m in f.messages {
                if let Err(e) = m {
                    prop_assert_eq!(e.code, ErrorCode::BadRequest);
                }
            },
            Err(e) => prop_assert!(matches!(e.code, ErrorCode::BadRequest | ErrorCode::Limit)),
        }
    }

    /// Every message a tab can send comes out of the parser as it went in, alone, in a bare
    /// array, or wrapped with its userEvent flag.
    #[test]
    fn every_client_message_round_trips(
        messages in prop::collection::vec(client_message(), 1..6),
        user_event in any::<bool>(),
    ) {
        let items: Vec<Json> = messages.iter().map(client_json).collect();
        let wrapped = json!({"userEvent": user_event, "messages": items}).to_string();
        let f = parse_frame(&wrapped).unwrap();
        prop_assert_eq!(f.user_event, user_event);
        let expected: Vec<Result<ClientMessage, _>> = messages.iter().cloned().map(Ok).collect();
        prop_assert_eq!(&f.messages, &expected);
        let bare = parse_frame(&Json::Array(items.clone()).to_string()).unwrap();
        prop_assert_eq!(&bare.messages, &expected);
        let single = parse_frame(&items[0].to_string()).unwrap();
        prop_assert_eq!(single.messages, vec![Ok(messages[0].clone())]);
    }

    /// A value survives JSON text both ways; floats keep every bit (a tab's number is the
    /// number the app sees).
    #[test]
    fn every_value_round_trips_through_json_text(v in value()) {
        let text = v.to_json().to_string();
        let back = Value::from_json(&serde_json::from_str(&text).unwrap()).unwrap();
        prop_assert_eq!(back, v);
    }

    /// Any JSON converts to a value or to "too deep", never a panic.
    #[test]
    fn any_json_converts_or_is_too_deep(j in json()) {
        let _ = Value::from_json(&j);
    }

    /// What the broker writes to a tab is always JSON, one object or an array of them.
    #[test]
    fn server_frames_are_always_json(messages in prop::collection::vec(server_message(), 1..4)) {
        let text = encode_text(&messages);
        let parsed: Json = serde_json::from_str(&text).unwrap();
        match parsed {
            Json::Object(o) => { prop_assert_eq!(messages.len(), 1); prop_assert!(o.contains_key("type")); }
            Json::Array(a) => prop_assert_eq!(a.len(), messages.len()),
            other => prop_assert!(false, "not a frame: {other}"),
        }
    }

    /// The fast frame reader and the general parser agree on any text: the same messages, the
    /// same refusals with the same words.
    #[test]
    fn the_fast_reader_agrees_with_the_general_parser(
        text in prop_oneof![
            json_text(),
            prop::collection::vec(message_text(), 0..4)
                .prop_map(|m| format!("[{}]", m.join(","))),
            (json_text(), prop::collection::vec(message_text(), 0..4)).prop_map(|(ue, m)| {
                format!(r#"{{"userEvent":{ue},"messages":[{}]}}"#, m.join(","))
            }),
            message_text(),
        ]
    ) {
        prop_assert_eq!(parse_frame(&text), parse_frame_generally(&text), "{}", text);
    }

    /// What the broker writes to a tab is the text of the messages' value JSON, written
    /// directly instead of through a `serde_json::Value`.
    #[test]
    fn server_frames_are_their_json_values(
        messages in prop::collection::vec(server_message(), 1..4),
    ) {
        let expected = match messages.as_slice() {
            [one] => one.to_json().to_string(),
            many => Json::Array(many.iter().map(ServerMessage::to_json).collect()).to_string(),
        };
        prop_assert_eq!(encode_text(&messages), expected);
    }

    /// Every broker→worker message survives the codec, however the socket cuts it up.
    #[test]
    fn every_broker_message_round_trips(
        messages in prop::collection::vec(broker_to_worker(), 1..4),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let mut bytes = BytesMut::new();
        let mut sender = BrokerSide::default();
        for m in &messages {
            sender.encode(m.clone(), &mut bytes).unwrap();
        }
        let got = decode_in_pieces(&mut WorkerSide::default(), &bytes, &cuts).unwrap();
        prop_assert_eq!(got, messages);
    }

    /// Every worker→broker message survives the codec, NaN floats and all.
    #[test]
    fn every_worker_message_round_trips(
        messages in prop::collection::vec(worker_to_broker(), 1..4),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let mut bytes = BytesMut::new();
        let mut sender = WorkerSide::default();
        for m in &messages {
            sender.encode(m.clone(), &mut bytes).unwrap();
        }
        let got = decode_in_pieces(&mut BrokerSide::default(), &bytes, &cuts).unwrap();
        prop_assert_eq!(format!("{got:?}"), format!("{messages:?}"));
    }

    /// Any bytes from a worker: messages, a wait for more, or a typed error; never a panic
    /// and never an allocation the frame limit does not allow.
    #[test]
    fn any_bytes_decode_or_fail_typed(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        cuts in prop::collection::vec(any::<usize>(), 0..4),
    ) {
        match decode_in_pieces(&mut BrokerSide::default(), &bytes, &cuts) {
            Ok(_) => {}
            Err(CodecError::TooLarge { len, max }) => prop_assert!(len > max),
            Err(CodecError::Undecodable(_) | CodecError::Trailing(_)) => {}
            Err(CodecError::Io(e)) => prop_assert!(false, "io error from a buffer: {e}"),
        }
    }

    /// A valid frame with its payload corrupted: decoded as something, or refused, typed.
    #[test]
    fn corrupted_payloads_fail_typed(
        msg in broker_to_worker(),
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let frame = encode_ipc_frame(&msg).unwrap();
        let mut payload = frame[4..].to_vec();
        for (at, byte) in flips {
            let at = at % payload.len();
            payload[at] ^= byte;
        }
        let _ = decode_payload::<BrokerToWorker>(&payload);
        let _ = decode_payload::<WorkerToBroker>(&payload);
    }
}

/// Deep nesting is the one value a tab can send that is refused: the bound holds at the edge.
#[test]
fn nesting_just_within_the_bound_round_trips() {
    let mut j = json!(1);
    for _ in 0..MAX_VALUE_DEPTH {
        j = json!([j]);
    }
    let v = Value::from_json(&j).unwrap();
    assert_eq!(v.to_json(), j);
}
