//! What a tab is refused, and with which code: access, unknown variables, bad creates.

use super::*;

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
