//! The Lua side of the tracker: `createVariable`/`destroyVariable` from app code, debug listings.

use super::*;

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
