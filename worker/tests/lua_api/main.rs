//! The Lua app API (DESIGN.md 6), exercised by small Lua apps: prototypes, `ui`, `require`,
//! timers and hot reload.

mod harness;
mod prototype;
mod reload;
mod require;
mod timers;
mod ui;
