//! The `create=Type` and `wrapper=Type` properties of a tab's variables: instances made by the
//! app's classes (prototypes or global tables), and wrapper objects that stand in for a value.

use protocol::browser::ServerMessage;
use protocol::{ErrorCode, Value};

use crate::tabs::*;

const CLASSES: &str = r#"
Task = session:prototype("Task", {title = "", done = false})
function Task:toggle() self.done = not self.done end

-- A plain Lua class in a global table: no `type` of its own.
Point = {}
Point.__index = Point
function Point:new(v) return setmetatable({x = v and v.x or 0, y = v and v.y or 0}, self) end
function Point:norm1() return math.abs(self.x) + math.abs(self.y) end

shapes = {Circle = {}}
function shapes.Circle:new(r) return {r = r, type = "Circle"} end

-- The registry is asked first: this global is not what `create=Widget` finds.
session:prototype("Widget", {kind = "prototype"})
Widget = {new = function() return {kind = "global table"} end}

Plain = {}
Broken = {}
function Broken:new() error("cannot build") end
"#;

fn obj(fields: &[(&str, Value)]) -> Value {
    Value::Object(
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}

fn classes_app() -> Session {
    Session::new(&[(
        "main.lua",
        &format!("{CLASSES}\nsession:createAppVariable({{}})"),
    )])
}

#[test]
fn create_makes_an_instance_of_a_prototype() {
    let mut t = classes_app();
    let msgs = t.send(
        1,
        vec![
            root(
                2,
                Some(obj(&[("title", s("Write"))])),
                &[("create", "Task")],
            ),
            bind(3, 2, "title", &[]),
            bind(4, 2, "done", &[]),
        ],
    );
    let Some(Value::ObjRef(_)) = value_of(&msgs[0], 2) else {
        panic!("{msgs:?}")
    };
    assert_eq!(property_of(&msgs[0], 2, "type").as_deref(), Some("Task"));
    assert_eq!(
        last_value(&msgs, 3),
        Some(s("Write")),
        "Task:new got the value"
    );
    assert_eq!(
        last_value(&msgs, 4),
        Some(Value::Bool(false)),
        "a prototype default"
    );

    // It is a real Task: its methods work through an action.
    let [create, call] = action(5, 2, "toggle()");
    let msgs = t.send(1, vec![create, call]);
    assert_eq!(last_value(&msgs, 4), Some(Value::Bool(true)));

    // On a bound variable (here through its path's `?create=`), the variable holds the new
    // instance; the path is not followed.
    let msgs = t.send(1, vec![bind(6, 1, "nothing.here?create=Task", &[])]);
    assert_eq!(property_of(&msgs[0], 6, "type").as_deref(), Some("Task"));
    assert!(
        !msgs
            .iter()
            .any(|m| matches!(m, ServerMessage::Error { .. })),
        "{msgs:?}"
    );
}

#[test]
fn create_uses_a_global_table_when_no_prototype_has_the_name() {
    let mut t = classes_app();
    let msgs = t.send(
        1,
        vec![
            root(
                2,
                Some(obj(&[("x", Value::Int(3)), ("y", Value::Int(-4))])),
                &[("create", "Point")],
            ),
            bind(3, 2, "norm1()", &[("access", "r")]),
        ],
    );
    assert_eq!(
        property_of(&msgs[0], 2, "type").as_deref(),
        Some("Point"),
        "a class without a type is named after the class"
    );
    assert_eq!(last_value(&msgs, 3), Some(Value::Int(7)));

    // Dotted names walk nested tables; an instance's own type wins.
    let msgs = t.send(
        1,
        vec![
            root(4, Some(Value::Int(2)), &[("create", "shapes.Circle")]),
            bind(5, 4, "r", &[]),
        ],
    );
    assert_eq!(property_of(&msgs[0], 4, "type").as_deref(), Some("Circle"));
    assert_eq!(last_value(&msgs, 5), Some(Value::Int(2)));

    // A prototype of the name beats a global table of the same name.
    let msgs = t.send(
        1,
        vec![
            root(6, None, &[("create", "Widget")]),
            bind(7, 6, "kind", &[]),
        ],
    );
    assert_eq!(last_value(&msgs, 7), Some(s("prototype")));
}

#[test]
fn create_with_an_unknown_type_is_not_found_and_creates_nothing() {
    let mut t = classes_app();
    let msgs = t.send(1, vec![root(2, None, &[("create", "Nope")]), watch(2)]);
    assert_error(&msgs[0], 2, ErrorCode::NotFound, "Nope");
    assert_error(&msgs[1], 2, ErrorCode::NotFound, "no variable 2");

    // A table without `new`, and a `new` that fails.
    let msgs = t.send(
        1,
        vec![
            root(3, None, &[("create", "Plain")]),
            root(4, None, &[("create", "Broken")]),
        ],
    );
    assert_error(
        &msgs[0],
        3,
        ErrorCode::BadRequest,
        "Plain has no new method",
    );
    assert_error(&msgs[1], 4, ErrorCode::LuaError, "cannot build");
}

/// Wrappers: `Summary` is made once and re-synced when the array changes; `Fresh` logs its
/// `destroy()`; `Nothing` declines to wrap; `Broken` fails.
const WRAPPERS: &str = r#"
constructed = 0
Summary = session:prototype("Summary", {total = 0, calls = 0})
function Summary:new(variable)
    constructed = constructed + 1
    local w = session:create(self, {value = variable:getValue()})
    w:sync()
    return w
end
function Summary:sync()
    self.calls = self.calls + 1
    local total = 0
    for _, n in ipairs(self.value) do total = total + n end
    self.total = total
end

log = {}
Fresh = {type = "Fresh"}
Fresh.__index = Fresh
function Fresh:new(variable)
    return setmetatable({n = #variable:getValue()}, self)
end
function Fresh:destroy() log[#log + 1] = "destroyed " .. self.n end

Nothing = {new = function() return nil end}
Broken = {new = function() error("cannot wrap") end}

Tagged = session:prototype("Tagged", {})
function Tagged:new(variable)
    local w = session:create(self, {})
    w.label = variable:getProperty("label")
    w.id = variable:getId()
    w.handle = variable
    lastHandle = variable
    variable:setProperty("seen", #variable:getValue())
    return w
end
function Tagged:sync()
    self.sameHandle = self.handle == lastHandle
    self.handle:setProperty("seen", #self.handle:getValue())
end

app = {numbers = {1, 2, 3}, other = 1}
session:createAppVariable(app)
"#;

fn wrapped_app() -> Session {
    Session::new(&[("main.lua", WRAPPERS)])
}

#[test]
fn a_wrapper_stands_in_for_the_value_and_can_keep_itself_when_it_changes() {
    let mut t = wrapped_app();
    let msgs = t.send(
        1,
        vec![
            bind(2, 1, "numbers", &[("wrapper", "Summary")]),
            bind(3, 2, "total", &[]),
            bind(4, 2, "calls", &[]),
        ],
    );
    // The variable's value is the wrapper (an object of type Summary), not the array, and
    // its children's paths start from it.
    let Some(wrapper @ Value::ObjRef(_)) = value_of(&msgs[0], 2) else {
        panic!("{msgs:?}")
    };
    assert_eq!(property_of(&msgs[0], 2, "type").as_deref(), Some("Summary"));
    assert_eq!(last_value(&msgs, 3), Some(Value::Int(6)));
    assert_eq!(last_value(&msgs, 4), Some(Value::Int(1)));

    // Something else changes: the constructor does not run.
    assert!(t.run("app.other = 2").is_empty());
    assert_eq!(t.eval::<i64>("return constructed"), 1);

    // The array changes in place, then is replaced: the same wrapper is given the new value
    // and synced, so the variable's value stays put while its children move.
    let msgs = for_tab(&t.run("table.insert(app.numbers, 4)"), 1);
    assert_eq!(last_value(&msgs, 3), Some(Value::Int(10)));
    assert_eq!(last_value(&msgs, 4), Some(Value::Int(2)));
    assert_eq!(last_value(&msgs, 2), None, "same wrapper, no new value");
    let msgs = for_tab(&t.run("app.numbers = {5}"), 1);
    assert_eq!(last_value(&msgs, 3), Some(Value::Int(5)));
    assert_eq!(last_value(&msgs, 4), Some(Value::Int(3)));
    assert_eq!(t.eval::<i64>("return constructed"), 1, "never rebuilt");

    // A `get` answers with the wrapper too.
    let msgs = t.send(
        1,
        vec![protocol::browser::ClientMessage::Get { var_ids: vec![2] }],
    );
    let ServerMessage::Get { variables } = &msgs[0] else {
        panic!("{msgs:?}")
    };
    assert_eq!(variables[0].value, wrapper);
}

#[test]
fn a_wrapper_is_reused_a_new_wrapper_type_replaces_it_and_nil_or_failure_means_none() {
    let mut t = wrapped_app();
    let msgs = t.send(
        1,
        vec![
            bind(2, 1, "numbers?wrapper=Fresh", &[]),
            bind(3, 2, "n", &[]),
            bind(4, 1, "numbers?wrapper=Nothing", &[]),
            bind(5, 1, "numbers?wrapper=Broken", &[]),
            bind(6, 1, "numbers?wrapper=Nope", &[]),
        ],
    );
    let first = value_of(&msgs[0], 2).unwrap();
    assert_eq!(property_of(&msgs[0], 2, "type").as_deref(), Some("Fresh"));
    assert_eq!(last_value(&msgs, 3), Some(Value::Int(3)));
    let raw = Some(Value::Array(vec![
        Value::Int(1),
        Value::Int(2),
        Value::Int(3),
    ]));
    // Returning nil, failing, or an unknown type: no wrapper, the value as it is, no error.
    assert_eq!(last_value(&msgs, 4), raw, "nil");
    assert_eq!(last_value(&msgs, 5), raw, "a failing constructor");
    assert_eq!(last_value(&msgs, 6), raw, "an unknown type");
    assert!(
        !msgs
            .iter()
            .any(|m| matches!(m, ServerMessage::Error { .. })),
        "{msgs:?}"
    );

    // The value changes: the same wrapper object (it has no sync(); its `value` is updated).
    let msgs = for_tab(&t.run("table.insert(app.numbers, 9)"), 1);
    assert_eq!(last_value(&msgs, 2), None, "the same wrapper");
    assert!(t.eval::<bool>("return #log == 0"));

    // The `wrapper` property names another type: a new wrapper, the old one destroyed.
    let msgs = t.send(
        1,
        vec![protocol::browser::ClientMessage::Update {
            var_id: 2,
            value: None,
            properties: vec![("wrapper".into(), "Summary".into())],
        }],
    );
    let second = last_value(&msgs, 2).unwrap();
    assert_ne!(first, second, "a new wrapper object");
    assert_eq!(
        msgs.iter()
            .find_map(|m| property_of(m, 2, "type"))
            .as_deref(),
        Some("Summary")
    );
    assert_eq!(t.eval::<Vec<String>>("return log"), ["destroyed 3"]);
}

#[test]
fn destroy_runs_when_the_variable_goes() {
    let mut t = wrapped_app();
    // The tab destroys its variable.
    t.send(1, vec![bind(2, 1, "numbers?wrapper=Fresh", &[])]);
    assert_eq!(
        t.send(1, vec![destroy(2)]),
        [ServerMessage::Destroy { var_id: 2 }]
    );
    assert_eq!(t.eval::<Vec<String>>("return log"), ["destroyed 3"]);

    // The tab closes: its wrapped variables go, children first, top variables in the order
    // they were made.
    t.eval::<()>("table.insert(app.numbers, 1)");
    t.send(
        2,
        vec![
            bind(2, 1, "numbers?wrapper=Fresh", &[]),
            bind(3, 2, "n", &[]),
            root(
                4,
                Some(Value::Array(vec![Value::Int(0)])),
                &[("wrapper", "Fresh")],
            ),
        ],
    );
    t.close(2);
    assert_eq!(
        t.eval::<Vec<String>>("return log"),
        ["destroyed 3", "destroyed 4", "destroyed 1"]
    );

    // The app destroys a variable it made.
    t.eval::<()>(
        "made = session:createVariable(1, nil, {path = 'numbers', wrapper = 'Fresh'})
         session:destroyVariable(made)",
    );
    assert_eq!(
        t.eval::<Vec<String>>("return log"),
        ["destroyed 3", "destroyed 4", "destroyed 1", "destroyed 4"]
    );
}

#[test]
fn the_variable_handle_reads_and_sets_the_variable() {
    let mut t = wrapped_app();
    let msgs = t.send(
        1,
        vec![
            bind(2, 1, "numbers", &[("wrapper", "Tagged"), ("label", "Nums")]),
            bind(3, 2, "label", &[]),
            bind(4, 2, "id", &[]),
        ],
    );
    assert_eq!(
        property_of(&msgs[0], 2, "seen").as_deref(),
        Some("3"),
        "setProperty"
    );
    assert_eq!(last_value(&msgs, 3), Some(s("Nums")), "getProperty");
    assert_eq!(last_value(&msgs, 4), Some(Value::Int(2)), "getId");

    let msgs = for_tab(&t.run("table.insert(app.numbers, 1)"), 1);
    assert_eq!(
        msgs.iter()
            .find_map(|m| property_of(m, 2, "seen"))
            .as_deref(),
        Some("4"),
        "a property set by the wrapper reaches the tab as a change"
    );
    assert!(t.eval::<bool>("return lastHandle:getValue() == app.numbers"));

    // Once the variable is gone the handle answers nil, and its id stays.
    t.send(1, vec![destroy(2)]);
    assert!(t.eval::<bool>(
        "return lastHandle:getValue() == nil and lastHandle:getWrapper() == nil
            and lastHandle:getId() == 2 and tostring(lastHandle) == 'variable 2'"
    ));
}
