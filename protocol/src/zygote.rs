//! Broker ↔ zygote messages, over the zygote's stdin (requests) and stdout (answers and
//! reports), framed by the same [`crate::codec::FrameCodec`] as the worker socket.
//!
//! Every [`BrokerToZygote::Fork`] carries a request id and is answered exactly once, by
//! [`ZygoteToBroker::Forked`] or [`ZygoteToBroker::Refused`] with that id, so an answer can
//! never be taken for another request's. Ids must increase: the zygote refuses one that does
//! not (a duplicate would make two answers ambiguous). [`BrokerToZygote::Kill`] is not
//! answered: the zygote signals the child only if it has not reaped it yet (it alone reaps its
//! children, so the pid cannot have been reused), and every child's end is reported once, as
//! [`ZygoteToBroker::Exited`]. A frame the zygote cannot decode ends the zygote: the stream is
//! out of step, and the broker, seeing it close, fails every request still waiting.

use serde::{Deserialize, Serialize};

use crate::launch::Token;

/// Numbers a fork request; the answer carries it back.
pub type RequestId = u64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BrokerToZygote {
    /// Fork a worker that will present `token` in its hello.
    Fork { request: RequestId, token: Token },
    /// Send signal number `signal` to child `pid`, if it is still the zygote's unreaped child.
    Kill { pid: i32, signal: i32 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ZygoteToBroker {
    /// The worker for `request` is running as `pid`.
    Forked { request: RequestId, pid: i32 },
    /// No worker was forked for `request`, and why.
    Refused { request: RequestId, reason: String },
    /// A child of the zygote ended and has been reaped.
    Exited { pid: i32, status: ExitStatus },
}

/// How a process ended, as `waitpid` tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal number.
    Signal(i32),
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use tokio_util::codec::{Decoder, Encoder};

    use super::*;
    use crate::codec::{encode_payload, CodecError, FrameCodec};
    use crate::limits::MAX_IPC_FRAME;

    type ZygoteSide = FrameCodec<BrokerToZygote, ZygoteToBroker>;
    type BrokerSide = FrameCodec<ZygoteToBroker, BrokerToZygote>;

    fn to_zygote(msg: BrokerToZygote) -> BrokerToZygote {
        let mut buf = BytesMut::new();
        BrokerSide::default().encode(msg, &mut buf).unwrap();
        let got = ZygoteSide::default().decode(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty());
        got
    }

    fn to_broker(msg: ZygoteToBroker) -> ZygoteToBroker {
        let mut buf = BytesMut::new();
        ZygoteSide::default().encode(msg, &mut buf).unwrap();
        let got = BrokerSide::default().decode(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty());
        got
    }

    #[test]
    fn every_request_round_trips() {
        for msg in [
            BrokerToZygote::Fork {
                request: 1,
                token: [0; 32],
            },
            BrokerToZygote::Fork {
                request: u64::MAX,
                token: [0xff; 32],
            },
            BrokerToZygote::Kill { pid: 42, signal: 9 },
            BrokerToZygote::Kill {
                pid: i32::MAX,
                signal: 15,
            },
        ] {
            assert_eq!(to_zygote(msg.clone()), msg);
        }
    }

    #[test]
    fn every_answer_and_report_round_trips() {
        for msg in [
            ZygoteToBroker::Forked {
                request: 7,
                pid: 1234,
            },
            ZygoteToBroker::Refused {
                request: 8,
                reason: "fork failed: EAGAIN".into(),
            },
            ZygoteToBroker::Exited {
                pid: 1234,
                status: ExitStatus::Code(0),
            },
            ZygoteToBroker::Exited {
                pid: 1235,
                status: ExitStatus::Signal(9),
            },
        ] {
            assert_eq!(to_broker(msg.clone()), msg);
        }
    }

    #[test]
    fn answers_queued_back_to_back_come_out_one_by_one_in_order() {
        let mut buf = BytesMut::new();
        let mut enc = ZygoteSide::default();
        let a = ZygoteToBroker::Refused {
            request: 1,
            reason: "no".into(),
        };
        let b = ZygoteToBroker::Forked {
            request: 2,
            pid: 77,
        };
        enc.encode(a.clone(), &mut buf).unwrap();
        enc.encode(b.clone(), &mut buf).unwrap();
        let mut dec = BrokerSide::default();
        assert_eq!(dec.decode(&mut buf).unwrap(), Some(a));
        assert_eq!(dec.decode(&mut buf).unwrap(), Some(b));
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
    }

    #[test]
    fn a_request_arriving_byte_by_byte_waits_for_its_last_byte() {
        let msg = BrokerToZygote::Fork {
            request: 3,
            token: [0x5a; 32],
        };
        let mut whole = BytesMut::new();
        BrokerSide::default()
            .encode(msg.clone(), &mut whole)
            .unwrap();
        let mut dec = ZygoteSide::default();
        let mut buf = BytesMut::new();
        for (i, byte) in whole.iter().enumerate() {
            buf.extend_from_slice(&[*byte]);
            let got = dec.decode(&mut buf).unwrap();
            if i + 1 < whole.len() {
                assert_eq!(got, None, "decoded early at byte {i}");
            } else {
                assert_eq!(got, Some(msg.clone()));
            }
        }
    }

    fn frame(payload: &[u8]) -> BytesMut {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(payload);
        buf
    }

    #[test]
    fn an_unknown_request_kind_is_undecodable() {
        // Variant index 2 does not exist in BrokerToZygote.
        let mut buf = frame(&[2, 1, 9]);
        assert!(matches!(
            ZygoteSide::default().decode(&mut buf),
            Err(CodecError::Undecodable(_))
        ));
    }

    #[test]
    fn a_truncated_token_is_undecodable() {
        let mut payload = encode_payload(&BrokerToZygote::Fork {
            request: 1,
            token: [1; 32],
        })
        .unwrap();
        payload.truncate(payload.len() - 1);
        assert!(matches!(
            ZygoteSide::default().decode(&mut frame(&payload)),
            Err(CodecError::Undecodable(_))
        ));
    }

    #[test]
    fn trailing_bytes_after_a_request_are_refused() {
        let mut payload = encode_payload(&BrokerToZygote::Kill { pid: 5, signal: 9 }).unwrap();
        payload.extend_from_slice(&[0, 0]);
        assert!(matches!(
            ZygoteSide::default().decode(&mut frame(&payload)),
            Err(CodecError::Trailing(2))
        ));
    }

    #[test]
    fn an_empty_frame_is_undecodable() {
        assert!(matches!(
            ZygoteSide::default().decode(&mut frame(&[])),
            Err(CodecError::Undecodable(_))
        ));
    }

    #[test]
    fn an_oversized_length_prefix_is_refused_before_buffering() {
        let mut buf = BytesMut::from(&((MAX_IPC_FRAME + 1) as u32).to_le_bytes()[..]);
        assert!(matches!(
            ZygoteSide::default().decode(&mut buf),
            Err(CodecError::TooLarge { .. })
        ));
    }

    #[test]
    fn an_unknown_exit_kind_is_undecodable() {
        // Exited { pid: 1, status: <variant 5> }
        let mut buf = frame(&[2, 2, 5, 0]);
        assert!(matches!(
            BrokerSide::default().decode(&mut buf),
            Err(CodecError::Undecodable(_))
        ));
    }

    #[test]
    fn a_reason_that_is_not_utf8_is_undecodable() {
        // Refused { request: 1, reason: <2 bytes, invalid UTF-8> }
        let mut buf = frame(&[1, 1, 2, 0xff, 0xfe]);
        assert!(matches!(
            BrokerSide::default().decode(&mut buf),
            Err(CodecError::Undecodable(_))
        ));
    }
}
