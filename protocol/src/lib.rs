//! The types that cross a luabroker process boundary, and nothing else.
//!
//! Like Chromium's `content/common`, this crate is shared by both sides:
//! - [`browser`]: the JSON variable protocol a tab speaks over its WebSocket, parsed and
//!   validated once at the broker's edge into typed messages;
//!   (`browser/json.rs` holds its fast paths: JSON text straight to and from typed messages);
//! - [`ipc`]: the typed messages the broker and a worker exchange over their local socket;
//! - [`zygote`]: the typed messages the broker and the zygote exchange over its pipes;
//! - [`launch`]: how a worker or the zygote is started (argv marker, environment, token);
//! - [`value`]: the JSON-like value both carry (bincode cannot carry `serde_json::Value`);
//! - [`codec`]: how an [`ipc`] or [`zygote`] message becomes a length-prefixed frame;
//! - [`limits`]: every size bound, in one place;
//! - [`sandbox`]: the confinement the broker asks of each worker, and violation names.

pub mod browser;
pub mod codec;
pub mod ipc;
pub mod launch;
pub mod limits;
pub mod sandbox;
pub mod value;
pub mod zygote;

pub use browser::{ClientMessage, ErrorCode, ServerMessage};
pub use value::Value;

/// Bumped whenever a type in [`ipc`], [`zygote`] or [`browser`] changes shape; checked in the worker's
/// [`ipc::Hello`] so a worker from another build is refused with a clear error.
pub const PROTOCOL_VERSION: u32 = 5;
