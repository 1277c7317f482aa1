//! Size bounds shared by the broker and the worker. Runtime-tunable limits (Lua memory and time,
//! session caps) are flags of the executable; these are the fixed ceilings of the wire formats.

/// Largest WebSocket text frame the broker accepts from a tab (ARCHITECTURE.md 6).
pub const MAX_BROWSER_FRAME: usize = 1024 * 1024;

/// Largest broker↔worker frame, either direction (ARCHITECTURE.md 6). A worker that sends a larger
/// one is killed; the broker never sends one (a tab frame is at most 1 MiB of JSON).
pub const MAX_IPC_FRAME: usize = 16 * 1024 * 1024;

/// Most messages one browser frame may carry; the rest of a frame is refused with `limit`.
pub const MAX_MESSAGES_PER_FRAME: usize = 10_000;

/// Deepest nesting of a browser value (arrays/objects inside each other).
pub const MAX_VALUE_DEPTH: usize = 64;

/// Length of the one-time token a worker presents in its hello.
pub const TOKEN_LEN: usize = 32;

/// Change-detection pass times a worker keeps for the debug pages (8 KiB).
pub const PASS_TIMES_KEPT: usize = 1_000;
