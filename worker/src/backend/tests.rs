//! Sessions as a tab sees them: a small Lua app, frames of browser messages, and the exact
//! messages each tab gets back.

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
        self.budget.begin_turn();
        let out = self.backend.handle_frame(tab, messages);
        self.budget.end_turn();
        out
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

// --- watching and creating ---------------------------------------------------------------

#[test]
fn watch_sends_the_current_value_and_properties() {
    let mut t = TestSession::new(APP);
    assert_eq!(
        t.send(1, vec![watch(1)]),
        [update(1, Some(Value::ObjRef(1)), &[("type", "App")])]
    );
    // Nothing changed: the next pass is silent.
    assert!(t.backend.detect_changes().is_empty());
}

#[test]
fn create_with_a_path_replies_with_the_value() {
    let mut t = TestSession::new(APP);
    assert_eq!(
        t.send(1, vec![create(2, 1, "qty"), create(3, 1, "child.name")]),
        [
            update(2, Some(Value::Int(3)), &[("path", "qty")]),
            update(3, Some(s("kid")), &[("path", "child.name")]),
        ]
    );
    // A child created under a variable created in the same frame follows its path.
    assert_eq!(
        t.send(1, vec![create(4, 1, "child"), create(5, 4, "age")]),
        [
            update(4, Some(Value::ObjRef(2)), &[("path", "child")]),
            update(5, Some(Value::Int(7)), &[("path", "age")]),
        ]
    );
}

#[test]
fn update_writes_the_field_and_a_computed_variable_follows() {
    let mut t = TestSession::new(APP);
    t.send(
        1,
        vec![
            create(2, 1, "qty"),
            create_with(3, 1, &[("path", "total()"), ("access", "r")]),
        ],
    );
    assert_eq!(
        t.send(1, vec![write(2, Value::Int(5))]),
        [value(2, Value::Int(5)), value(3, Value::Int(10))]
    );
    assert_eq!(t.eval::<i64>("return app.qty"), 5);
    // Lua changes are picked up by the next pass, too.
    let batches = t.run("app.price = 10");
    assert_eq!(only(1, batches), [value(3, Value::Int(50))]);
}

#[test]
fn action_calls_the_method_and_ignores_its_result() {
    let mut t = TestSession::new(APP);
    t.send(1, vec![create(2, 1, "qty"), create_action(3, "reset()")]);
    assert_eq!(
        t.send(1, vec![write(3, Value::Null)]),
        [value(2, Value::Int(0))]
    );
    assert_eq!(t.eval::<i64>("return app.resets"), 1);
    // Only a value triggers it: a properties-only update does not.
    t.send(1, vec![set_props(3, &[("note", "x")])]);
    assert_eq!(t.eval::<i64>("return app.resets"), 1);
}

#[test]
fn setter_path_receives_the_value() {
    let mut t = TestSession::new(APP);
    t.send(
        1,
        vec![
            create(2, 1, "name"),
            create_with(3, 1, &[("path", "setName(_)"), ("access", "w")]),
        ],
    );
    assert_eq!(
        t.send(1, vec![write(3, s("bob"))]),
        [value(2, s("BOB"))],
        "a w variable is never read, so only `name` reports"
    );
}

#[test]
fn index_paths_are_zero_based() {
    let mut t = TestSession::new(APP);
    assert_eq!(
        t.send(1, vec![create(2, 1, "items.1")]),
        [update(2, Some(s("b")), &[("path", "items.1")])]
    );
    t.send(1, vec![write(2, s("B"))]);
    assert_eq!(t.eval::<String>("return table.concat(app.items)"), "aBc");
}

#[test]
fn path_suffix_sets_properties() {
    let mut t = TestSession::new(APP);
    // The value is high priority, the properties medium: the variable appears twice.
    assert_eq!(
        t.send(1, vec![create(2, 1, "qty?priority=high&x=1")]),
        [
            value(2, Value::Int(3)),
            update(
                2,
                None,
                &[("path", "qty"), ("priority", "high"), ("x", "1")]
            ),
        ]
    );
    // `access` may come from the suffix too.
    let msgs = t.send(1, vec![create(3, 1, "name?access=r"), write(3, s("x"))]);
    assert_error(&msgs[0], Some(3), ErrorCode::BadAccess, "read-only");
}

// --- refusals ------------------------------------------------------------------------------

#[test]
fn access_violations_are_bad_access() {
    let mut t = TestSession::new(APP);
    let msgs = t.send(
        1,
        vec![
            create_with(2, 1, &[("path", "total()"), ("access", "w")]),
            create(3, 1, "setName(_)"),
            create_with(4, 1, &[("path", "qty"), ("access", "r")]),
            write(4, Value::Int(1)),
            create_with(5, 1, &[("path", "total()"), ("access", "r")]),
            set_props(5, &[("access", "w")]),
        ],
    );
    assert_error(&msgs[0], Some(2), ErrorCode::BadAccess, "()");
    assert_error(&msgs[1], Some(3), ErrorCode::BadAccess, "(_)");
    assert_error(&msgs[2], Some(4), ErrorCode::BadAccess, "read-only");
    assert_error(&msgs[3], Some(5), ErrorCode::BadAccess, "()");
    assert_eq!(t.eval::<i64>("return app.qty"), 3);
    assert_eq!(
        msgs[4..],
        [
            update(4, Some(Value::Int(3)), &[("path", "qty"), ("access", "r")]),
            update(
                5,
                Some(Value::Int(6)),
                &[("path", "total()"), ("access", "r")]
            ),
        ]
    );
}

#[test]
fn unknown_variables_are_not_found() {
    let mut t = TestSession::new(APP);
    let msgs = t.send(
        1,
        vec![
            watch(99),
            create(2, 99, "qty"),
            write(98, Value::Int(1)),
            destroy(97),
            unwatch(-5),
        ],
    );
    assert_eq!(msgs.len(), 5);
    for (msg, id) in msgs.iter().zip([99, 2, 98, 97, -5]) {
        assert_error(msg, Some(id), ErrorCode::NotFound, "no variable");
    }
}

#[test]
fn bad_creates_are_bad_requests() {
    let mut t = TestSession::new(APP);
    let msgs = t.send(
        1,
        vec![
            create(2, 1, "qty"),
            create(2, 1, "name"),
            create(1, 1, "qty"),
            create_with(3, 1, &[("label", "no path")]),
            create(4, 1, "a..b"),
            create_with(5, 1, &[("path", "qty"), ("access", "sometimes")]),
        ],
    );
    assert_error(&msgs[0], Some(2), ErrorCode::BadRequest, "already exists");
    assert_error(&msgs[1], Some(1), ErrorCode::BadRequest, "start at 2");
    assert_error(&msgs[2], Some(3), ErrorCode::BadRequest, "needs a path");
    assert_error(&msgs[3], Some(4), ErrorCode::BadRequest, "empty segment");
    assert_error(&msgs[4], Some(5), ErrorCode::BadRequest, "access");
    // The first create of id 2 stands, with its path.
    assert_eq!(msgs[5], update(2, Some(Value::Int(3)), &[("path", "qty")]));
}

// --- Lua failures ----------------------------------------------------------------------------

#[test]
fn lua_error_in_an_action_is_reported_and_the_frame_goes_on() {
    let mut t = TestSession::new(APP);
    let msgs = t.send(
        1,
        vec![
            create_action(2, "fail()"),
            write(2, Value::Null),
            create(3, 1, "qty"),
        ],
    );
    assert_error(&msgs[0], Some(2), ErrorCode::LuaError, "app:7: nope");
    assert!(!msgs[0].to_json().to_string().contains("traceback"));
    assert_eq!(
        msgs[1..],
        [update(3, Some(Value::Int(3)), &[("path", "qty")])]
    );
    // The session carries on.
    assert_eq!(
        t.send(1, vec![write(3, Value::Int(4))]),
        [value(3, Value::Int(4))]
    );
}

#[test]
fn runaway_action_hits_the_time_limit() {
    let mut t = TestSession::with_time_limit(APP, 50);
    let msgs = t.send(
        1,
        vec![create_action(2, "spin()"), write(2, Value::Null), watch(1)],
    );
    assert_error(&msgs[0], Some(2), ErrorCode::Limit, "time limit");
    assert_eq!(
        msgs[1..],
        [update(1, Some(Value::ObjRef(1)), &[("type", "App")])]
    );
    // The next turn has a fresh budget.
    assert_eq!(
        t.send(1, vec![create(3, 1, "qty")]),
        [update(3, Some(Value::Int(3)), &[("path", "qty")])]
    );
}

#[test]
fn failing_path_reports_once_per_error_text() {
    let mut t = TestSession::new(APP);
    let msgs = t.send(1, vec![create(2, 1, "missing.field")]);
    assert_eq!(msgs.len(), 2);
    assert_error(
        &msgs[0],
        Some(2),
        ErrorCode::PathFailure,
        "cannot read field field of a nil",
    );
    assert_eq!(msgs[1], update(2, None, &[("path", "missing.field")]));
    // Still failing the same way: silent.
    assert!(t.backend.detect_changes().is_empty());
    let debug = t.backend.debug_variables();
    let var = debug.iter().find(|v| v.id == 2).unwrap();
    assert_eq!(
        var.error.as_deref(),
        Some("cannot read field field of a nil")
    );
    // Failing differently: one new error. Working again: the value.
    let msgs = only(1, t.run("app.missing = 5"));
    assert_error(&msgs[0], Some(2), ErrorCode::PathFailure, "of a number");
    assert_eq!(
        only(1, t.run("app.missing = {field = 'ok'}")),
        [value(2, s("ok"))]
    );
}

// --- destroy -------------------------------------------------------------------------------

#[test]
fn destroy_removes_children_first() {
    let mut t = TestSession::new(APP);
    t.send(
        1,
        vec![
            create(2, 1, "child"),
            create(3, 2, "name"),
            create(4, 2, "age"),
            create(5, 1, "qty"),
        ],
    );
    assert_eq!(
        t.send(1, vec![destroy(2)]),
        [destroyed(3), destroyed(4), destroyed(2)]
    );
    let msgs = t.send(1, vec![watch(3), destroy(1)]);
    assert_error(&msgs[0], Some(3), ErrorCode::NotFound, "no variable 3");
    assert_error(
        &msgs[1],
        Some(1),
        ErrorCode::BadAccess,
        "belongs to the app",
    );
    let ids: Vec<i64> = t.backend.debug_variables().iter().map(|v| v.id).collect();
    assert_eq!(ids, [1, 5]);
}

// --- priorities and activity ----------------------------------------------------------------

#[test]
fn replies_are_ordered_by_priority() {
    let mut t = TestSession::new(APP);
    assert_eq!(
        t.send(
            1,
            vec![
                create_with(2, 1, &[("path", "qty"), ("priority", "low")]),
                create_with(3, 1, &[("path", "price"), ("priority", "high")]),
                create(4, 1, "name"),
                create_with(5, 1, &[("path", "total()"), ("priority", "high")]),
            ]
        ),
        [
            update(3, Some(Value::Int(2)), &[]),
            update(5, Some(Value::Int(6)), &[]),
            update(2, None, &[("path", "qty"), ("priority", "low")]),
            update(3, None, &[("path", "price"), ("priority", "high")]),
            update(4, Some(s("ann")), &[("path", "name")]),
            update(5, None, &[("path", "total()"), ("priority", "high")]),
            update(2, Some(Value::Int(3)), &[]),
        ]
    );
    // Value high, a property low: variable 5 appears in two updates.
    assert_eq!(
        t.send(
            1,
            vec![
                write(2, Value::Int(10)),
                set_props(5, &[("label:low", "L")])
            ]
        ),
        [
            value(5, Value::Int(20)),
            value(2, Value::Int(10)),
            update(5, None, &[("label", "L")]),
        ]
    );
}

#[test]
fn inactive_and_unwatched_subtrees_are_not_computed() {
    let mut t = TestSession::new(APP);
    assert_eq!(
        t.send(
            1,
            vec![
                create_with(2, 1, &[("path", "child"), ("inactive", "1")]),
                create(3, 2, "name"),
            ]
        ),
        [update(
            2,
            Some(Value::ObjRef(2)),
            &[("path", "child"), ("inactive", "1")]
        )],
        "the inactive variable's subtree is skipped"
    );
    assert!(t.run("app.child.name = 'grown'").is_empty());
    assert_eq!(
        t.send(1, vec![set_props(2, &[("inactive", "")])]),
        [
            update(2, None, &[("inactive", "")]),
            update(3, Some(s("grown")), &[("path", "name")]),
        ]
    );

    // Unwatched: computed once when created, then never again until watched.
    t.send(
        1,
        vec![ClientMessage::Create {
            id: 4,
            parent_id: Some(1),
            value: None,
            properties: props(&[("path", "costly()"), ("access", "r")]),
            nowatch: true,
            unbound: false,
        }],
    );
    assert_eq!(t.eval::<i64>("return app.calls"), 1);
    t.backend.detect_changes();
    t.backend.detect_changes();
    assert_eq!(t.eval::<i64>("return app.calls"), 1);
    assert_eq!(
        t.send(1, vec![watch(4)]),
        [update(
            4,
            Some(Value::Int(2)),
            &[("path", "costly()"), ("access", "r")]
        )]
    );
}

#[test]
fn watch_tallies_count_per_tab() {
    let mut t = TestSession::new(APP);
    t.send(1, vec![create(2, 1, "qty")]);
    // A second watch: the full state again.
    assert_eq!(
        t.send(1, vec![watch(2)]),
        [update(2, Some(Value::Int(3)), &[("path", "qty")])]
    );
    t.send(1, vec![unwatch(2)]);
    assert_eq!(only(1, t.run("app.qty = 4")), [value(2, Value::Int(4))]);
    t.send(1, vec![unwatch(2)]);
    assert!(t.run("app.qty = 5").is_empty());
}

// --- get, getObjects, value JSON --------------------------------------------------------------

#[test]
fn get_replies_with_value_and_properties() {
    let mut t = TestSession::new(APP);
    let msgs = t.send(
        1,
        vec![
            ClientMessage::Create {
                id: 2,
                parent_id: Some(1),
                value: None,
                properties: props(&[("path", "qty")]),
                nowatch: true,
                unbound: false,
            },
            ClientMessage::Get {
                var_ids: vec![2, 1, 99],
            },
        ],
    );
    assert_error(&msgs[0], Some(99), ErrorCode::NotFound, "no variable 99");
    assert_eq!(
        msgs[1],
        ServerMessage::Get {
            variables: vec![
                VariableSnapshot {
                    id: 2,
                    value: Value::Int(3),
                    properties: props(&[("path", "qty")]),
                },
                VariableSnapshot {
                    id: 1,
                    value: Value::ObjRef(1),
                    properties: props(&[("type", "App")]),
                },
            ]
        }
    );
    assert_eq!(msgs.len(), 2, "a nowatch variable gets no update");
}

#[test]
fn get_objects_lists_fields_and_methods_through_the_metatable_chain() {
    let mut t = TestSession::new(
        r#"
        local Base = {type = 'Base'} Base.__index = Base
        function Base:greet() end
        local Pet = setmetatable({type = 'Pet'}, Base) Pet.__index = Pet
        function Pet:speak() end
        function Pet:greet() end
        session:createAppVariable(setmetatable({name = 'rex', legs = 4, tags = {'a'}, owner = {}}, Pet))
        "#,
    );
    let msgs = t.send(
        1,
        vec![
            watch(1),
            ClientMessage::GetObjects {
                obj_ids: vec![1, 42],
            },
        ],
    );
    assert_error(&msgs[0], None, ErrorCode::NotFound, "no object 42");
    let ServerMessage::GetObjects { objects } = &msgs[1] else {
        panic!("{msgs:?}")
    };
    assert_eq!(
        objects,
        &[ObjectSnapshot {
            obj: 1,
            value: Value::Object(vec![
                ("legs".into(), Value::Int(4)),
                ("name".into(), s("rex")),
                ("owner".into(), Value::ObjRef(2)),
                ("tags".into(), Value::Array(vec![s("a")])),
            ]),
            methods: vec!["greet".into(), "speak".into()],
        }]
    );
    assert_eq!(
        msgs[2],
        update(1, Some(Value::ObjRef(1)), &[("type", "Pet")])
    );
}

#[test]
fn value_json_rules() {
    let mut t = TestSession::new(
        r#"
        app = {
            list = {1, 2.5, 'x', {true}},
            obj = {type = 'Thing'},
            mixed = {1, x = 2},
            fn = print,
        }
        app.cyc = {1}
        app.cyc[2] = app.cyc
        session:createAppVariable(app)
        "#,
    );
    let msgs = t.send(
        1,
        vec![
            create(2, 1, "list"),
            create(3, 1, "obj"),
            create(4, 1, "mixed"),
            create(5, 1, "fn"),
            create(6, 1, "cyc"),
        ],
    );
    assert_eq!(
        msgs[..4],
        [
            update(
                2,
                Some(Value::Array(vec![
                    Value::Int(1),
                    Value::Float(2.5),
                    s("x"),
                    Value::Array(vec![Value::Bool(true)])
                ])),
                &[("path", "list")]
            ),
            update(
                3,
                Some(Value::ObjRef(2)),
                &[("path", "obj"), ("type", "Thing")]
            ),
            update(4, Some(Value::ObjRef(3)), &[("path", "mixed")]),
            update(5, Some(Value::Null), &[("path", "fn")]),
        ]
    );
    assert_error(&msgs[4], Some(6), ErrorCode::PathFailure, "contain itself");
    // Ids are stable while the table lives, and a new table gets a new id.
    let msgs = t.send(1, vec![ClientMessage::Get { var_ids: vec![3] }]);
    assert!(
        matches!(&msgs[0], ServerMessage::Get { variables } if variables[0].value == Value::ObjRef(2))
    );
    assert_eq!(
        only(1, t.run("app.obj = {type = 'Other'}")),
        [update(3, Some(Value::ObjRef(4)), &[("type", "Other")])]
    );
    assert_eq!(
        only(1, t.run("app.obj = 7")),
        [update(3, Some(Value::Int(7)), &[("type", "")])],
        "a server-set type goes when the value has none"
    );
}

#[test]
fn browser_values_become_lua_values() {
    let mut t = TestSession::new(APP);
    t.send(1, vec![create(2, 1, "extra"), watch(1)]);
    let msgs = t.send(
        1,
        vec![
            write(
                2,
                Value::Object(vec![
                    (
                        "list".into(),
                        Value::Array(vec![Value::Int(1), Value::Int(2)]),
                    ),
                    ("app".into(), Value::ObjRef(1)),
                ]),
            ),
            write(2, Value::ObjRef(77)),
        ],
    );
    assert_error(&msgs[0], Some(2), ErrorCode::NotFound, "no object 77");
    assert!(t.eval::<bool>("return #app.extra.list == 2 and app.extra.app == app"));
    // `null` writes nil.
    t.send(1, vec![write(2, Value::Null)]);
    assert!(t.eval::<bool>("return app.extra == nil"));
}

#[test]
fn unbound_and_root_variables_hold_their_own_value() {
    let mut t = TestSession::new(APP);
    let own = |id, parent_id, value| ClientMessage::Create {
        id,
        parent_id,
        value: Some(value),
        properties: vec![],
        nowatch: false,
        unbound: true,
    };
    assert_eq!(
        t.send(
            1,
            vec![
                own(2, None, s("draft")),
                own(3, Some(1), Value::Object(vec![("n".into(), Value::Int(1))])),
                create(4, 3, "n"),
            ]
        ),
        [
            // Pass order: the app's subtree, then the tab's root.
            value(3, Value::ObjRef(2)),
            update(4, Some(Value::Int(1)), &[("path", "n")]),
            value(2, s("draft")),
        ]
    );
    // Writing replaces the held value; the app is untouched.
    assert_eq!(
        t.send(1, vec![write(2, Value::Int(5))]),
        [value(2, Value::Int(5))]
    );
    assert!(t.eval::<bool>("return app.draft == nil"));
    // A child writes into the table the unbound variable holds.
    assert_eq!(
        t.send(1, vec![write(4, Value::Int(2))]),
        [value(4, Value::Int(2))]
    );
}

// --- tabs ------------------------------------------------------------------------------------

#[test]
fn two_tabs_with_the_same_ids_are_kept_apart() {
    let mut t = TestSession::new(APP);
    assert_eq!(
        t.send(1, vec![create(2, 1, "qty")]),
        [update(2, Some(Value::Int(3)), &[("path", "qty")])]
    );
    assert_eq!(
        t.send(2, vec![create(2, 1, "name")]),
        [update(2, Some(s("ann")), &[("path", "name")])]
    );
    // Tab 1 writes its own variable 2; tab 2's variable 2 is untouched and silent.
    assert_eq!(
        t.send(1, vec![write(2, Value::Int(9))]),
        [value(2, Value::Int(9))]
    );
    assert_eq!(t.eval::<String>("return app.name"), "ann");
    // A shared variable reaches every watcher.
    t.send(1, vec![watch(1)]);
    t.send(2, vec![watch(1), create(3, 1, "qty")]);
    let batches = t.run("app.qty = 1");
    assert_eq!(for_tab(&batches, 1), [value(2, Value::Int(1))]);
    assert_eq!(for_tab(&batches, 2), [value(3, Value::Int(1))]);
}

#[test]
fn tab_closed_destroys_only_that_tabs_variables() {
    let mut t = TestSession::new(APP);
    t.send(
        1,
        vec![create(2, 1, "child"), create(3, 2, "name"), watch(1)],
    );
    t.send(2, vec![create(2, 1, "name")]);
    assert!(t.backend.tab_closed(1).is_empty());
    let vars: Vec<(i64, Option<TabId>)> = t
        .backend
        .debug_variables()
        .iter()
        .map(|v| (v.id, v.tab))
        .collect();
    assert_eq!(vars, [(1, None), (2, Some(2))]);
    // The app lives on and tab 2 still gets its updates.
    assert_eq!(only(2, t.run("app.name = 'zed'")), [value(2, s("zed"))]);
}

// --- the Lua side ----------------------------------------------------------------------------

#[test]
fn create_variable_uses_negative_ids_and_destroy_variable_removes_them() {
    let mut t = TestSession::new(&format!(
        "{APP}
        ids = {{
            session:createVariable(nil, {{x = 1}}),
            session:createVariable(1, nil, {{path = 'qty'}}),
            session:createVariable(app, nil, {{path = 'name', ['label:high'] = 'Name'}}),
        }}
        function app:drop() session:destroyVariable(-2) end
        "
    ));
    assert_eq!(t.eval::<Vec<i64>>("return ids"), [-1, -2, -3]);
    assert!(t.eval::<bool>("return session:getApp() == app"));
    assert_eq!(
        t.send(1, vec![watch(-2), watch(-3)]),
        [
            update(-3, None, &[("label", "Name")]),
            update(-2, Some(Value::Int(3)), &[("path", "qty")]),
            update(-3, Some(s("ann")), &[("path", "name")]),
        ]
    );
    let debug = t.backend.debug_variables();
    let root = debug.iter().find(|v| v.id == -1).unwrap();
    assert_eq!(
        (root.tab, root.parent_id, root.value.clone()),
        (None, None, Some(Value::ObjRef(2)))
    );
    assert_eq!(debug[0].child_ids, [-2, -3]);
    // An action that destroys a watched server variable: the watcher hears of it.
    assert_eq!(
        t.send(1, vec![create_action(2, "drop()"), write(2, Value::Null)]),
        [destroyed(-2)]
    );
    let msgs = t.send(1, vec![watch(-2)]);
    assert_error(&msgs[0], Some(-2), ErrorCode::NotFound, "no variable -2");
    // Unknown ids are a no-op; a second app variable is an error.
    t.run("session:destroyVariable(-99)");
    let err = t
        .lua
        .load("session:createAppVariable({})")
        .exec()
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
}

#[test]
fn create_variable_from_inside_an_action_and_a_getter() {
    let mut t = TestSession::new(&format!(
        "{APP}
        function app:addCounter() self.made = session:createVariable(self, nil, {{path = 'qty'}}) end
        function app:label()
            if not self.labelVar then
                self.labelVar = session:createVariable(1, nil, {{path = 'name'}})
            end
            return 'L' .. self.qty
        end
        "
    ));
    assert!(t
        .send(
            1,
            vec![create_action(2, "addCounter()"), write(2, Value::Null)]
        )
        .is_empty());
    assert_eq!(t.eval::<i64>("return app.made"), -1);
    assert_eq!(
        t.send(1, vec![watch(-1)]),
        [update(-1, Some(Value::Int(3)), &[("path", "qty")])]
    );
    // The getter runs during create and during change detection; it creates a variable.
    assert_eq!(
        t.send(
            1,
            vec![create_with(3, 1, &[("path", "label()"), ("access", "r")])]
        ),
        [update(
            3,
            Some(s("L3")),
            &[("path", "label()"), ("access", "r")]
        )]
    );
    assert_eq!(t.eval::<i64>("return app.labelVar"), -2);
    assert_eq!(
        t.send(1, vec![watch(-2)]),
        [update(-2, Some(s("ann")), &[("path", "name")])]
    );
}

#[test]
fn debug_variables_show_everything() {
    let mut t = TestSession::new(APP);
    t.send(
        1,
        vec![
            create_with(2, 1, &[("path", "qty"), ("access", "r")]),
            create(3, 1, "nothing.here"),
        ],
    );
    let debug = t.backend.debug_variables();
    assert_eq!(debug.len(), 3);
    assert_eq!(debug[0].id, 1);
    assert_eq!(debug[0].child_ids, [2, 3]);
    assert_eq!(debug[0].properties, props(&[("type", "App")]));
    let qty = &debug[1];
    assert_eq!(
        (
            qty.tab,
            qty.parent_id,
            qty.path.as_str(),
            qty.value.clone(),
            qty.access.as_str()
        ),
        (Some(1), Some(1), "qty", Some(Value::Int(3)), "r")
    );
    assert_eq!(
        debug[2].error.as_deref(),
        Some("cannot read field here of a nil")
    );
}

/// Rough timings, release build only:
/// `cargo test --release -p luabroker-worker perf -- --ignored --nocapture`.
#[test]
#[ignore]
fn perf_action_round_trip_and_write_throughput() {
    let mut t = TestSession::with_time_limit(
        &format!("{APP}\nfunction app:inc() self.qty = self.qty + 1 end"),
        5000,
    );
    t.send(
        1,
        vec![
            create(2, 1, "qty"),
            create(3, 1, "name"),
            create_with(4, 1, &[("path", "total()"), ("access", "r")]),
            create(5, 1, "items"),
            create(6, 1, "child"),
            create(7, 6, "name"),
            create_action(8, "inc()"),
        ],
    );
    let rounds = 20_000;
    let started = std::time::Instant::now();
    for _ in 0..rounds {
        let out = t.frame(1, vec![write(8, Value::Null)]);
        assert_eq!(out[0].messages.len(), 2);
    }
    let per = started.elapsed() / rounds;
    println!("action round trip (frame → Lua → change detection → batch): {per:?}");

    let frames = 2_000;
    let per_frame = 100;
    let started = std::time::Instant::now();
    for i in 0..frames {
        let msgs = (0..per_frame)
            .map(|j| write(3, s(&format!("n{i}-{j}"))))
            .collect();
        t.frame(1, msgs);
    }
    let elapsed = started.elapsed();
    let rate = (frames * per_frame) as f64 / elapsed.as_secs_f64();
    println!("writes handled: {rate:.0} msgs/s");
}
