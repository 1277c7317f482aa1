//! `get`, `getObjects`, value JSON both ways, unbound and root variables.

use super::*;

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
