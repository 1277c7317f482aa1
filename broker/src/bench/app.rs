//! The Lua app the bench measures against: a counter with an action (the round-trip and relay
//! scenarios) and a list that can be grown to any size with one field `v` per item (the
//! change-detection scenario watches `f.N.v` for every item), and a click that burns 5 ms of
//! CPU (the busy scenario). `main.lua` itself is as small as
//! the default app's, so creating a session costs what it costs for a small app.

use std::path::Path;

/// Marks the app, so that the bench can tell whether a running server serves it.
pub const MARKER: &str = "luabroker-bench";

pub const MAIN_LUA: &str = r#"-- The app `luabroker bench` measures (written by `luabroker bench --write-app DIR`).
local App = {}
App.__index = App

-- One click: the round-trip scenario's action.
function App:increment() self.count = self.count + 1 end

-- grow(_): a list of n items {v = 0}; variables watch f.0.v … f.(n-1).v.
function App:grow(n)
  local f = {}
  for i = 1, n do f[i] = { v = 0 } end
  self.f = f
  self.next = 0
end

-- One change per click: the next item's v, round robin.
function App:bump()
  local i = self.next % #self.f + 1
  self.f[i].v = self.f[i].v + 1
  self.next = self.next + 1
end

-- A busy session's click: 5 ms of the worker's own CPU time (os.clock), however long the
-- machine takes to give it that much.
function App:spin()
  local done = os.clock() + 0.005
  while os.clock() < done do end
  self.spins = self.spins + 1
end

session:createAppVariable(setmetatable(
  { count = 0, bench = "luabroker-bench", f = {}, next = 0, spins = 0 }, App))
"#;

/// Writes the app into `dir` (created if missing).
pub fn write(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("main.lua"), MAIN_LUA)
}
