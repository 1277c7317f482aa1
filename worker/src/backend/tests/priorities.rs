//! Priorities, inactive and unwatched subtrees, watch tallies.

use super::*;

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
