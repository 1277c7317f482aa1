//! Frames on the broker↔worker socket: a `u32` little-endian length, then a bincode payload.
//!
//! Length framing is tokio-util's [`LengthDelimitedCodec`] (with the maximum frame size of
//! [`MAX_IPC_FRAME`]); this file adds the typed bincode layer on top. It is the only file that
//! names bincode, so replacing bincode (ARCHITECTURE.md 8) touches nothing else.

use std::io;
use std::marker::PhantomData;

use bytes::{Bytes, BytesMut};
use serde::{de::DeserializeOwned, Serialize};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

use crate::limits::MAX_IPC_FRAME;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("frame of {len} bytes is over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("undecodable frame: {0}")]
    Undecodable(String),
    #[error("frame has {0} trailing bytes after its message")]
    Trailing(usize),
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
}

/// The limit makes bincode refuse a string or byte length longer than a frame can hold before
/// it allocates for it (without it, a corrupt length is a capacity-overflow panic or an
/// allocation failure that aborts the process; found by `tests/properties.rs`).
fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_IPC_FRAME>()
}

/// Encodes one message as a frame payload (without the length prefix).
pub fn encode_payload<T: Serialize>(msg: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(msg, config()).map_err(|e| CodecError::Undecodable(e.to_string()))
}

/// Decodes one frame payload; the whole payload must be one message.
pub fn decode_payload<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (msg, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| CodecError::Undecodable(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - used));
    }
    Ok(msg)
}

/// Encodes one message as a complete frame, length prefix included.
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, CodecError> {
    let payload = encode_payload(msg)?;
    if payload.len() > MAX_IPC_FRAME {
        return Err(CodecError::TooLarge {
            len: payload.len(),
            max: MAX_IPC_FRAME,
        });
    }
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// A message already encoded as a frame payload, known to fit in a frame. Lets a sender learn
/// a message's size (and split what does not fit) without encoding it twice.
pub struct Encoded(Vec<u8>);

impl Encoded {
    /// Encodes `msg`; [`CodecError::TooLarge`] if it would not fit in one frame.
    pub fn new<T: Serialize>(msg: &T) -> Result<Encoded, CodecError> {
        let payload = encode_payload(msg)?;
        if payload.len() > MAX_IPC_FRAME {
            return Err(CodecError::TooLarge {
                len: payload.len(),
                max: MAX_IPC_FRAME,
            });
        }
        Ok(Encoded(payload))
    }
}

impl<In, Out> Encoder<Encoded> for FrameCodec<In, Out> {
    type Error = CodecError;

    fn encode(&mut self, msg: Encoded, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.frames.encode(Bytes::from(msg.0), dst)?;
        Ok(())
    }
}

/// A tokio-util codec that reads `In` and writes `Out` (each side names its own direction).
pub struct FrameCodec<In, Out> {
    frames: LengthDelimitedCodec,
    /// Whether the inner codec has consumed a frame's length and waits for its payload (then
    /// the buffer's first bytes are payload, not a length).
    in_payload: bool,
    _types: PhantomData<fn(Out) -> In>,
}

impl<In, Out> Default for FrameCodec<In, Out> {
    fn default() -> Self {
        FrameCodec {
            frames: LengthDelimitedCodec::builder()
                .little_endian()
                .length_field_length(4)
                .max_frame_length(MAX_IPC_FRAME)
                .new_codec(),
            in_payload: false,
            _types: PhantomData,
        }
    }
}

impl<In: DeserializeOwned, Out> Decoder for FrameCodec<In, Out> {
    type Item = In;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, CodecError> {
        // Read the announced length ourselves so an oversized frame is refused with its size
        // before any of it is buffered.
        if !self.in_payload && src.len() >= 4 {
            let len = u32::from_le_bytes([src[0], src[1], src[2], src[3]]) as usize;
            if len > MAX_IPC_FRAME {
                return Err(CodecError::TooLarge {
                    len,
                    max: MAX_IPC_FRAME,
                });
            }
        }
        let before = src.len();
        match self.frames.decode(src)? {
            Some(frame) => {
                self.in_payload = false;
                decode_payload(&frame).map(Some)
            }
            None => {
                // The inner codec consumes the length as soon as it has it.
                if src.len() < before {
                    self.in_payload = true;
                }
                Ok(None)
            }
        }
    }
}

impl<In, Out: Serialize> Encoder<Out> for FrameCodec<In, Out> {
    type Error = CodecError;

    fn encode(&mut self, msg: Out, dst: &mut BytesMut) -> Result<(), CodecError> {
        let payload = encode_payload(&msg)?;
        if payload.len() > MAX_IPC_FRAME {
            return Err(CodecError::TooLarge {
                len: payload.len(),
                max: MAX_IPC_FRAME,
            });
        }
        self.frames.encode(Bytes::from(payload), dst)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::browser::{ClientMessage, ErrorCode, ServerMessage};
    use crate::ipc::{BrokerToWorker, Hello, TabBatch, WorkerToBroker};
    use crate::value::Value;

    type WorkerSide = FrameCodec<BrokerToWorker, WorkerToBroker>;
    type BrokerSide = FrameCodec<WorkerToBroker, BrokerToWorker>;

    fn round_trip_to_worker(msg: BrokerToWorker) -> BrokerToWorker {
        let mut buf = BytesMut::new();
        BrokerSide::default().encode(msg, &mut buf).unwrap();
        WorkerSide::default().decode(&mut buf).unwrap().unwrap()
    }

    #[test]
    fn every_shape_round_trips() {
        let frame = BrokerToWorker::Frame {
            tab: 3,
            user_event: true,
            messages: vec![
                ClientMessage::Create {
                    id: 2,
                    parent_id: Some(1),
                    value: Some(Value::Object(vec![("a".into(), Value::Float(1.5))])),
                    properties: vec![("path".into(), "a.b".into())],
                    nowatch: false,
                    unbound: true,
                },
                ClientMessage::Update {
                    var_id: 2,
                    value: Some(Value::Null),
                    properties: vec![],
                },
                ClientMessage::GetObjects {
                    obj_ids: vec![1, 2],
                },
            ],
        };
        assert_eq!(round_trip_to_worker(frame.clone()), frame);

        let reply = WorkerToBroker::Send(vec![TabBatch {
            tab: 1,
            messages: vec![
                ServerMessage::Update {
                    var_id: 1,
                    value: Some(Value::Array(vec![
                        Value::ObjRef(4),
                        Value::String("é".into()),
                    ])),
                    properties: vec![("type".into(), "App".into())],
                },
                ServerMessage::Error {
                    var_id: None,
                    code: ErrorCode::LuaError,
                    description: "boom".into(),
                },
            ],
        }]);
        let mut buf = BytesMut::new();
        WorkerSide::default()
            .encode(reply.clone(), &mut buf)
            .unwrap();
        assert_eq!(BrokerSide::default().decode(&mut buf).unwrap(), Some(reply));
    }

    #[test]
    fn frame_is_length_prefixed_little_endian() {
        let hello = WorkerToBroker::Hello(Hello {
            version: 1,
            token: [7; 32],
            pid: 42,
        });
        let bytes = encode_frame(&hello).unwrap();
        let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        assert_eq!(len, bytes.len() - 4);
        assert_eq!(
            decode_payload::<WorkerToBroker>(&bytes[4..]).unwrap(),
            hello
        );
    }

    #[test]
    fn partial_frame_waits_for_more_bytes() {
        let bytes = encode_frame(&BrokerToWorker::Ping { seq: 9 }).unwrap();
        let mut codec = WorkerSide::default();
        let mut buf = BytesMut::from(&bytes[..bytes.len() - 1]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&bytes[bytes.len() - 1..]);
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(BrokerToWorker::Ping { seq: 9 })
        );
    }

    #[test]
    fn a_frame_arriving_in_pieces_is_not_mistaken_for_its_length() {
        // A payload whose first bytes, read as a length, would be far over the limit.
        let msg = BrokerToWorker::Frame {
            tab: u32::MAX,
            user_event: true,
            messages: vec![ClientMessage::Watch { var_id: i64::MAX }],
        };
        let bytes = encode_frame(&msg).unwrap();
        let mut codec = WorkerSide::default();
        let mut buf = BytesMut::from(&bytes[..6]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&bytes[6..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(msg));
    }

    #[test]
    fn oversized_length_prefix_is_refused_before_buffering() {
        let mut buf = BytesMut::from(&u32::MAX.to_le_bytes()[..]);
        match WorkerSide::default().decode(&mut buf) {
            Err(CodecError::TooLarge { len, .. }) => assert_eq!(len, u32::MAX as usize),
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn garbage_payload_is_undecodable() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&4u32.to_le_bytes());
        buf.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            WorkerSide::default().decode(&mut buf),
            Err(CodecError::Undecodable(_))
        ));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut payload = encode_payload(&BrokerToWorker::Shutdown).unwrap();
        payload.push(0);
        assert!(matches!(
            decode_payload::<BrokerToWorker>(&payload),
            Err(CodecError::Trailing(1))
        ));
    }

    #[test]
    fn empty_frame_is_undecodable() {
        let mut buf = BytesMut::from(&0u32.to_le_bytes()[..]);
        assert!(matches!(
            WorkerSide::default().decode(&mut buf),
            Err(CodecError::Undecodable(_))
        ));
    }

    /// `levels` one-element arrays inside each other, as a payload of `Ready`, built from the
    /// bytes bincode writes for one level (so a corrupt worker's frame needs no encoder).
    fn nested_ready(levels: usize) -> Vec<u8> {
        let null = encode_payload(&WorkerToBroker::Ready {
            read: Vec::new(),
            app: Value::Null,
        })
        .unwrap();
        let one = encode_payload(&Value::Array(vec![Value::Null])).unwrap();
        let (prefix, leaf) = null.split_at(null.len() - 1);
        let level = &one[..one.len() - leaf.len()];
        let mut bytes = prefix.to_vec();
        for _ in 0..levels {
            bytes.extend_from_slice(level);
        }
        bytes.extend_from_slice(leaf);
        bytes
    }

    #[test]
    fn nesting_from_a_worker_is_bounded_not_a_stack_overflow() {
        use crate::limits::MAX_VALUE_DEPTH;
        // The deepest value either side builds decodes...
        let ok = decode_payload::<WorkerToBroker>(&nested_ready(MAX_VALUE_DEPTH)).unwrap();
        assert!(matches!(ok, WorkerToBroker::Ready { .. }));
        // ...and a frame of a million levels (2 MB) is refused with an error.
        let deep = nested_ready(1_000_000);
        assert!(deep.len() < MAX_IPC_FRAME);
        match decode_payload::<WorkerToBroker>(&deep) {
            Err(CodecError::Undecodable(e)) => assert!(e.contains("nested deeper"), "{e}"),
            other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
        }
        // The depth count is per decode: the next frame decodes normally.
        assert!(decode_payload::<WorkerToBroker>(&nested_ready(3)).is_ok());
    }

    #[test]
    fn a_corrupt_string_length_is_refused_before_allocating() {
        // `Failed { error }` whose string claims u64::MAX bytes.
        let mut bytes = encode_payload(&WorkerToBroker::Failed {
            error: String::new(),
        })
        .unwrap();
        bytes.pop(); // the empty string's length
        bytes.push(255); // bincode varint: u64 follows
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            decode_payload::<WorkerToBroker>(&bytes),
            Err(CodecError::Undecodable(_))
        ));
    }

    #[test]
    fn oversized_message_is_not_sent() {
        let huge = BrokerToWorker::Frame {
            tab: 1,
            user_event: false,
            messages: vec![ClientMessage::Update {
                var_id: 2,
                value: Some(Value::String("x".repeat(MAX_IPC_FRAME + 1))),
                properties: vec![],
            }],
        };
        let mut buf = BytesMut::new();
        assert!(matches!(
            BrokerSide::default().encode(huge, &mut buf),
            Err(CodecError::TooLarge { .. })
        ));
    }
}
