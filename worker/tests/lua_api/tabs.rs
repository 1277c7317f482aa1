//! A whole session as its tabs see it: a [`LuaSession`] over an app directory in a temporary
//! folder (so viewdefs, prototypes and `require` are all real), `main.lua` run, and helpers
//! that send a tab's messages and pick apart what comes back.

use std::path::PathBuf;

use luabroker_worker::LuaSession;
use mlua::FromLuaMulti;
use protocol::browser::{ClientMessage, ServerMessage};
use protocol::ipc::{LuaLimits, PrepareVm, StartSession, TabBatch, TabId};
use protocol::{ErrorCode, Value};
use tempfile::TempDir;

use crate::harness::{write_file, SESSION_ID, VENDED_ID};

pub struct Session {
    /// The app directory.
    root: PathBuf,
    /// Holds the app directory when the test wrote it.
    _dir: Option<TempDir>,
    pub session: LuaSession,
}

impl Session {
    /// The app made of `files`, `main.lua` run, tabs 1 and 2 open.
    pub fn new(files: &[(&str, &str)]) -> Session {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            write_file(&dir.path().join(path), text);
        }
        let root = dir.path().to_path_buf();
        Session::start(root, Some(dir))
    }

    /// The app in `root` (not written by the test, so not to be changed by it).
    pub fn at(root: PathBuf) -> Session {
        Session::start(root, None)
    }

    fn start(root: PathBuf, dir: Option<TempDir>) -> Session {
        let vm = PrepareVm {
            app_dir: root.display().to_string(),
            viewdefs_dir: String::new(),
            confine_dir: String::new(),
            limits: LuaLimits {
                memory_bytes: 64 * 1024 * 1024,
                turn_time_ms: 2000,
            },
            sandbox: Default::default(),
        };
        let start = StartSession {
            vended_id: VENDED_ID,
            session_id: SESSION_ID.into(),
            ahead: false,
        };
        let mut session = LuaSession::new(&vm, &start).unwrap();
        session.load_main().unwrap();
        session.tab_opened(1);
        session.tab_opened(2);
        Session {
            root,
            _dir: dir,
            session,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Writes (or rewrites) an app file.
    pub fn write(&self, rel: &str, text: &str) {
        write_file(&self.path(rel), text);
    }

    pub fn open(&mut self, tab: TabId) {
        self.session.tab_opened(tab);
    }

    /// One frame from `tab`, as the worker loop runs it (one turn); every tab's batch.
    pub fn frame(&mut self, tab: TabId, messages: Vec<ClientMessage>) -> Vec<TabBatch> {
        self.session.handle_frame(tab, messages)
    }

    /// One frame from `tab`; what `tab` gets back.
    pub fn send(&mut self, tab: TabId, messages: Vec<ClientMessage>) -> Vec<ServerMessage> {
        for_tab(&self.frame(tab, messages), tab)
    }

    /// Lua code run as a timer callback (`setImmediate`), as the worker loop runs one: one
    /// turn with its change detection; every tab's batch.
    pub fn run(&mut self, code: &str) -> Vec<TabBatch> {
        let lua = self.session.lua();
        let callback = lua.load(code).set_name("=timer").into_function().unwrap();
        let session: mlua::Table = lua.globals().get("session").unwrap();
        let set: mlua::Function = session.get("setImmediate").unwrap();
        set.call::<()>((session, callback)).unwrap();
        self.session
            .run_timer(std::time::Instant::now())
            .expect("the callback is due")
    }

    pub fn close(&mut self, tab: TabId) -> Vec<TabBatch> {
        self.session.tab_closed(tab)
    }

    /// `--hotload` reported these app-relative files as changed.
    pub fn reload(&mut self, files: &[&str]) -> Vec<TabBatch> {
        let files: Vec<String> = files.iter().map(|f| f.to_string()).collect();
        self.session.reload(&files)
    }

    pub fn eval<T: FromLuaMulti>(&self, code: &str) -> T {
        self.session
            .lua()
            .load(code)
            .set_name("=test")
            .eval()
            .unwrap_or_else(|e| panic!("{code}: {e}"))
    }
}

pub fn for_tab(batches: &[TabBatch], tab: TabId) -> Vec<ServerMessage> {
    batches
        .iter()
        .filter(|b| b.tab == tab)
        .flat_map(|b| b.messages.clone())
        .collect()
}

// --- a tab's messages ------------------------------------------------------------------------

pub fn props(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn watch(var_id: i64) -> ClientMessage {
    ClientMessage::Watch { var_id }
}

pub fn unwatch(var_id: i64) -> ClientMessage {
    ClientMessage::Unwatch { var_id }
}

pub fn destroy(var_id: i64) -> ClientMessage {
    ClientMessage::Destroy { var_id }
}

/// A variable bound to `path` under `parent`, with extra properties.
pub fn bind(id: i64, parent: i64, path: &str, extra: &[(&str, &str)]) -> ClientMessage {
    let mut properties = props(&[("path", path)]);
    properties.extend(props(extra));
    ClientMessage::Create {
        id,
        parent_id: Some(parent),
        value: None,
        properties,
        nowatch: false,
        unbound: false,
    }
}

/// A root variable of the tab (no parent) with a value and properties.
pub fn root(id: i64, value: Option<Value>, properties: &[(&str, &str)]) -> ClientMessage {
    ClientMessage::Create {
        id,
        parent_id: None,
        value,
        properties: props(properties),
        nowatch: false,
        unbound: false,
    }
}

/// An action variable (nowatch) and the write that triggers it.
pub fn action(id: i64, parent: i64, path: &str) -> [ClientMessage; 2] {
    [
        ClientMessage::Create {
            id,
            parent_id: Some(parent),
            value: None,
            properties: props(&[("path", path), ("access", "action")]),
            nowatch: true,
            unbound: false,
        },
        ClientMessage::Update {
            var_id: id,
            value: Some(Value::Null),
            properties: vec![],
        },
    ]
}

pub fn s(text: &str) -> Value {
    Value::String(text.into())
}

// --- what comes back -------------------------------------------------------------------------

/// The viewdefs a message carries (the `viewdefs` property of variable 1), decoded from its
/// JSON string into (key, template) pairs in the order sent; `None` for any other message.
pub fn viewdefs_in(msg: &ServerMessage) -> Option<Vec<(String, String)>> {
    let ServerMessage::Update {
        var_id: 1,
        value: None,
        properties,
    } = msg
    else {
        return None;
    };
    let [(name, json)] = properties.as_slice() else {
        return None;
    };
    if name != "viewdefs" {
        return None;
    }
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).expect("viewdefs is a JSON-encoded object");
    Some(
        map.into_iter()
            .map(|(k, v)| (k, v.as_str().expect("templates are strings").to_string()))
            .collect(),
    )
}

/// The keys of the viewdefs a message carries, sorted.
pub fn viewdef_keys(msg: &ServerMessage) -> Vec<String> {
    let mut keys: Vec<String> = viewdefs_in(msg)
        .unwrap_or_else(|| panic!("expected viewdefs, got {msg:?}"))
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    keys.sort();
    keys
}

/// The value an update of `var_id` carries, if it is one and carries a value.
pub fn value_of(msg: &ServerMessage, var_id: i64) -> Option<Value> {
    match msg {
        ServerMessage::Update {
            var_id: id,
            value: Some(v),
            ..
        } if *id == var_id => Some(v.clone()),
        _ => None,
    }
}

/// A property of an update of `var_id`.
pub fn property_of(msg: &ServerMessage, var_id: i64, name: &str) -> Option<String> {
    match msg {
        ServerMessage::Update {
            var_id: id,
            properties,
            ..
        } if *id == var_id => properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone()),
        _ => None,
    }
}

/// The last value `var_id` was sent among `msgs`.
pub fn last_value(msgs: &[ServerMessage], var_id: i64) -> Option<Value> {
    msgs.iter().rev().find_map(|m| value_of(m, var_id))
}

#[track_caller]
pub fn assert_error(msg: &ServerMessage, var_id: i64, code: ErrorCode, contains: &str) {
    match msg {
        ServerMessage::Error {
            var_id: v,
            code: c,
            description,
        } => {
            assert_eq!((*v, *c), (Some(var_id), code), "{description}");
            assert!(
                description.contains(contains),
                "{description:?} lacks {contains:?}"
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }
}
