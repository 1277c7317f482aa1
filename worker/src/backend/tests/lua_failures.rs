//! Lua failing under a tab's frame: errors, the time limit, failing paths reported once.

use super::*;

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
