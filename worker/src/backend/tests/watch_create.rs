//! Watching and creating variables: replies, writes, actions, setters, paths and their `?…` suffixes.

use super::*;

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
