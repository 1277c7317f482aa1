//! Sessions as a tab sees them: a small Lua app, frames of browser messages, and the exact
//! messages each tab gets back.
//!
//! The helpers (a `TestSession` and message builders) are here; the tests are by topic.

mod batches;
mod destroy_tabs;
mod lua_failures;
mod lua_side;
mod many_leaves;
mod priorities;
mod refusals;
mod values;
mod watch_create;

use mlua::{FromLuaMulti, Lua};
use protocol::browser::{ClientMessage, ObjectSnapshot, ServerMessage, VariableSnapshot};
use protocol::ipc::{TabBatch, TabId};
use protocol::{ErrorCode, Value};

use super::LuaBackend;
use crate::budget::TurnBudget;
use crate::sandbox;

/// The app most tests use: a class with a computed `total()`, an action, a setter, a failing
/// method, a runaway one and one that counts its calls.
const APP: &str = r#"
local App = {type = 'App'}
App.__index = App
function App:total() return self.price * self.qty end
function App:reset() self.qty = 0; self.resets = self.resets + 1 end
function App:setName(v) self.name = string.upper(v) end
function App:fail() error('nope') end
function App:spin() while true do end end
function App:costly() self.calls = self.calls + 1; return self.calls end
app = setmetatable({
    price = 2, qty = 3, name = 'ann', resets = 0, calls = 0,
    items = {'a', 'b', 'c'},
    child = {name = 'kid', age = 7},
}, App)
session:createAppVariable(app)
"#;

struct TestSession {
    lua: Lua,
    backend: LuaBackend,
    budget: TurnBudget,
}

impl TestSession {
    fn new(app: &str) -> TestSession {
        TestSession::with_time_limit(app, 0)
    }

    /// A sandboxed VM with the `session` global, the app run, and tabs 1 and 2 open.
    fn with_time_limit(app: &str, turn_time_ms: u64) -> TestSession {
        let lua = sandbox::new_vm().unwrap();
        let budget = TurnBudget::install(&lua, turn_time_ms, 0).unwrap();
        let session = lua.create_table().unwrap();
        let mut backend = LuaBackend::new(&lua, &session).unwrap();
        lua.globals().set("session", session).unwrap();
        lua.load(app).set_name("=app").exec().unwrap();
        backend.tab_opened(1);
        backend.tab_opened(2);
        TestSession {
            lua,
            backend,
            budget,
        }
    }

    /// One frame from `tab`, as the worker loop runs it: one timed turn.
    fn frame(&mut self, tab: TabId, messages: Vec<ClientMessage>) -> Vec<TabBatch> {
        self.budget
            .turn(|| self.backend.handle_frame(tab, messages))
    }

    /// One frame from `tab`; only `tab` may get anything back, and this returns it.
    fn send(&mut self, tab: TabId, messages: Vec<ClientMessage>) -> Vec<ServerMessage> {
        let batches = self.frame(tab, messages);
        only(tab, batches)
    }

    /// Lua code run outside a frame (as a timer would), then a change-detection pass.
    fn run(&mut self, code: &str) -> Vec<TabBatch> {
        self.lua.load(code).exec().unwrap();
        self.backend.detect_changes()
    }

    fn eval<T: FromLuaMulti>(&self, code: &str) -> T {
        self.lua.load(code).eval().unwrap()
    }
}

fn only(tab: TabId, batches: Vec<TabBatch>) -> Vec<ServerMessage> {
    match batches.as_slice() {
        [] => Vec::new(),
        [b] if b.tab == tab => b.messages.clone(),
        other => panic!("expected messages for tab {tab} only, got {other:?}"),
    }
}

fn for_tab(batches: &[TabBatch], tab: TabId) -> Vec<ServerMessage> {
    batches
        .iter()
        .filter(|b| b.tab == tab)
        .flat_map(|b| b.messages.clone())
        .collect()
}

// --- browser messages -------------------------------------------------------------------

fn props(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn create(id: i64, parent: i64, path: &str) -> ClientMessage {
    create_with(id, parent, &[("path", path)])
}

fn create_with(id: i64, parent: i64, properties: &[(&str, &str)]) -> ClientMessage {
    ClientMessage::Create {
        id,
        parent_id: Some(parent),
        value: None,
        properties: props(properties),
        nowatch: false,
        unbound: false,
    }
}

/// An action (or other write-only) variable nobody needs to watch.
fn create_action(id: i64, path: &str) -> ClientMessage {
    ClientMessage::Create {
        id,
        parent_id: Some(1),
        value: None,
        properties: props(&[("path", path), ("access", "action")]),
        nowatch: true,
        unbound: false,
    }
}

fn write(var_id: i64, value: Value) -> ClientMessage {
    ClientMessage::Update {
        var_id,
        value: Some(value),
        properties: vec![],
    }
}

fn set_props(var_id: i64, properties: &[(&str, &str)]) -> ClientMessage {
    ClientMessage::Update {
        var_id,
        value: None,
        properties: props(properties),
    }
}

fn watch(var_id: i64) -> ClientMessage {
    ClientMessage::Watch { var_id }
}

fn unwatch(var_id: i64) -> ClientMessage {
    ClientMessage::Unwatch { var_id }
}

fn destroy(var_id: i64) -> ClientMessage {
    ClientMessage::Destroy { var_id }
}

// --- server messages --------------------------------------------------------------------

fn update(var_id: i64, value: Option<Value>, properties: &[(&str, &str)]) -> ServerMessage {
    ServerMessage::Update {
        var_id,
        value,
        properties: props(properties),
    }
}

fn value(var_id: i64, v: Value) -> ServerMessage {
    update(var_id, Some(v), &[])
}

fn destroyed(var_id: i64) -> ServerMessage {
    ServerMessage::Destroy { var_id }
}

fn s(text: &str) -> Value {
    Value::String(text.to_string())
}

/// Checks an error message: its variable, code, and a piece of its description.
#[track_caller]
fn assert_error(msg: &ServerMessage, var_id: Option<i64>, code: ErrorCode, contains: &str) {
    match msg {
        ServerMessage::Error {
            var_id: v,
            code: c,
            description,
        } => {
            assert_eq!((*v, *c), (var_id, code), "{description}");
            assert!(
                description.contains(contains),
                "{description:?} lacks {contains:?}"
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }
}
