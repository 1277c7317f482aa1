//! The worker: everything that runs inside one session's process.
//!
//! The seed's roles, bottom up: [`tracker::Tracker`] holds the variables and turns Lua values
//! into value JSON; [`backend::LuaBackend`] owns the tracker and answers tab messages with
//! change-detection batches; [`session::LuaSession`] builds the sandboxed Lua VM with its
//! `session` global and runs `main.lua`, with the rest of the app API from [`api`] (prototypes,
//! `ui`, `require`, timers) and [`viewdefs`] (the app's HTML templates, sent to each tab once
//! per type); [`process`] is the worker process's loop that talks to
//! the broker over one socket; [`confine`] is the OS-level sandbox it puts itself in before
//! any app code runs; [`logging`] is the log set-up every mode of the executable uses. Single-threaded throughout: one thread owns the VM.

pub mod anon_text;
pub mod api;
pub mod backend;
pub mod budget;
pub mod confine;
pub mod hash_seed;
pub mod link;
pub mod logging;
pub mod os_limits;
pub mod process;
pub mod reap;
pub mod sandbox;
pub mod sequence;
pub mod session;
pub mod tracker;
pub mod viewdefs;
pub mod zygote;

pub use backend::LuaBackend;
pub use session::LuaSession;
