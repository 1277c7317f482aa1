//! The Lua app API (ARCHITECTURE.md 5), exercised by small Lua apps: prototypes, `ui`, `require`,
//! timers and hot reload; and, through whole sessions as tabs see them, viewdefs and the
//! `create` / `wrapper` properties.

mod create_wrapper;
mod debug_listing;
mod harness;
mod modules;
mod prototype;
mod reload;
mod require;
mod sample_app;
mod tabs;
mod timers;
mod ui;
mod viewdefs;
mod viewlist;
