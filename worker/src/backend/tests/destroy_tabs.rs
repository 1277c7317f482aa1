//! Destroying variables, tabs kept apart, and what a closed tab takes with it.

use super::*;

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
