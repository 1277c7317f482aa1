//! LuaBackend: the per-session backend of the seed. It owns the [`Tracker`], keeps the watch
//! tallies of every tab, answers each tab frame, and after every turn runs one change-detection
//! pass whose results become per-tab batches for the broker.
//!
//! TODO(helper): this file is the interface the worker loop relies on; the bodies come with the
//! tracker.

use mlua::{Lua, Table};
use protocol::browser::ClientMessage;
use protocol::ipc::{DebugVariable, TabBatch, TabId};
use protocol::Value;

pub struct LuaBackend {}

impl LuaBackend {
    /// Creates the tracker for `lua` and installs the tracker-backed methods on the `session`
    /// table (`createAppVariable`, `getApp`, `createVariable`, `destroyVariable`).
    pub fn new(_lua: &Lua, _session: &Table) -> mlua::Result<LuaBackend> {
        todo!()
    }

    /// Variable 1's value JSON, once `main.lua` has created it.
    pub fn app_value(&self) -> Option<Value> {
        todo!()
    }

    pub fn tab_opened(&mut self, _tab: TabId) {
        todo!()
    }

    /// Handles one frame of a tab, then runs change detection; returns what each tab receives.
    pub fn handle_frame(&mut self, _tab: TabId, _messages: Vec<ClientMessage>) -> Vec<TabBatch> {
        todo!()
    }

    /// Destroys the variables the tab created and forgets its watches.
    pub fn tab_closed(&mut self, _tab: TabId) -> Vec<TabBatch> {
        todo!()
    }

    /// One change-detection pass (after a timer callback, for instance).
    pub fn detect_changes(&mut self) -> Vec<TabBatch> {
        todo!()
    }

    pub fn debug_variables(&self) -> Vec<DebugVariable> {
        todo!()
    }
}
