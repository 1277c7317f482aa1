//! The built-in `lua.ViewList` / `lua.ViewListItem`, driven the way ui-engine's frontend drives
//! them: a variable `people?wrapper=lua.ViewList&itemWrapper=Row`, its child `items`, and under
//! that one child per index.

use protocol::browser::ServerMessage;
use protocol::Value;

use crate::tabs::*;

const PEOPLE: &str = r#"
Person = session:prototype("Person", {name = ""})
function Person:new(name) return session:create(Person, {name = name}) end

-- A presenter per row: it records what the ViewListItem told it.
built, destroyed = {}, {}
Row = session:prototype("Row", {viewItem = EMPTY, person = EMPTY, seenIndex = -1})
function Row:new(viewItem)
    local row = session:create(Row, {viewItem = viewItem, person = viewItem.baseItem,
                                     seenIndex = viewItem.index})
    row.sameList = viewItem.list.items[viewItem.index + 1] == viewItem
    built[#built + 1] = viewItem.baseItem.name
    return row
end
function Row:caption() return self.person.name .. " #" .. self.viewItem.index end
function Row:destroy() destroyed[#destroyed + 1] = self.person.name end

app = {people = {Person:new("ann"), Person:new("bob")}, query = ""}
ann, bob = app.people[1], app.people[2]
function app:visible()
    local out = {}
    for _, p in ipairs(self.people) do
        if p.name:find(self.query, 1, true) then out[#out + 1] = p end
    end
    return out
end
session:createAppVariable(app)
"#;

fn people() -> Session {
    Session::new(&[("main.lua", PEOPLE)])
}

fn refs(v: &Option<Value>) -> Vec<i64> {
    match v {
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::ObjRef(n) => *n,
                other => panic!("not a reference: {other:?}"),
            })
            .collect(),
        other => panic!("not an array: {other:?}"),
    }
}

#[test]
fn the_list_variable_is_a_viewlist_object_with_items() {
    let mut t = people();
    let msgs = t.send(
        1,
        vec![
            bind(2, 1, "people?wrapper=lua.ViewList", &[]),
            bind(3, 2, "items", &[]),
            bind(4, 3, "0", &[]),
            bind(5, 4, "item.name", &[]),
            bind(6, 4, "index", &[]),
        ],
    );
    // The viewdefs of lua.ViewList come first, then `fallbackNamespace` at high priority,
    // then the value (an object) with `type`.
    let first_update = msgs
        .iter()
        .position(|m| property_of(m, 2, "fallbackNamespace").is_some())
        .expect("fallbackNamespace sent");
    assert_eq!(
        property_of(&msgs[first_update], 2, "fallbackNamespace").as_deref(),
        Some("list-item")
    );
    let value_at = msgs.iter().position(|m| value_of(m, 2).is_some()).unwrap();
    assert!(first_update < value_at, "high priority first: {msgs:?}");
    assert!(matches!(
        value_of(&msgs[value_at], 2),
        Some(Value::ObjRef(_))
    ));
    assert_eq!(
        property_of(&msgs[value_at], 2, "type").as_deref(),
        Some("lua.ViewList")
    );
    assert_eq!(refs(&last_value(&msgs, 3)).len(), 2);
    let item = msgs.iter().find(|m| value_of(m, 4).is_some()).unwrap();
    assert_eq!(
        property_of(item, 4, "type").as_deref(),
        Some("lua.ViewListItem")
    );
    assert_eq!(last_value(&msgs, 5), Some(s("ann")));
    assert_eq!(last_value(&msgs, 6), Some(Value::Int(0)), "0-based");
}

#[test]
fn grow_shrink_and_reorder_keep_each_positions_item() {
    let mut t = people();
    let msgs = t.send(
        1,
        vec![
            bind(2, 1, "people?wrapper=lua.ViewList", &[]),
            bind(3, 2, "items", &[]),
            bind(4, 3, "1.baseItem.name", &[]),
        ],
    );
    let before = refs(&last_value(&msgs, 3));
    assert_eq!(last_value(&msgs, 4), Some(s("bob")));

    // Grow: a third item, the first two references unchanged.
    let msgs = for_tab(&t.run("table.insert(app.people, Person:new('cy'))"), 1);
    let grown = refs(&last_value(&msgs, 3));
    assert_eq!(grown.len(), 3);
    assert_eq!(grown[..2], before[..]);

    // Reorder: same length, same items, new base items in them.
    let msgs = for_tab(
        &t.run("app.people[1], app.people[2] = app.people[2], app.people[1]"),
        1,
    );
    assert_eq!(last_value(&msgs, 3), None, "the items array did not change");
    assert_eq!(last_value(&msgs, 4), Some(s("ann")));

    // Shrink from the front: positions 0 and 1 keep their items and get new base items.
    let msgs = for_tab(&t.run("table.remove(app.people, 1)"), 1);
    assert_eq!(refs(&last_value(&msgs, 3)), before);
    assert_eq!(last_value(&msgs, 4), Some(s("cy")));

    // Empty: an empty array, not an object.
    let msgs = for_tab(&t.run("app.people = {}"), 1);
    assert_eq!(last_value(&msgs, 3), Some(Value::Array(vec![])));
}

#[test]
fn presenters_see_base_item_index_and_list_and_are_destroyed_on_shrink() {
    let mut t = people();
    let msgs = t.send(
        1,
        vec![
            bind(2, 1, "people?wrapper=lua.ViewList&itemWrapper=Row", &[]),
            bind(3, 2, "items", &[]),
            bind(4, 3, "0.item.caption()", &[]),
            bind(5, 3, "1.item.seenIndex", &[]),
            bind(6, 3, "1.item.sameList", &[]),
            bind(7, 3, "1.item", &[]),
        ],
    );
    assert_eq!(last_value(&msgs, 4), Some(s("ann #0")));
    assert_eq!(last_value(&msgs, 5), Some(Value::Int(1)));
    assert_eq!(last_value(&msgs, 6), Some(Value::Bool(true)));
    let row = msgs.iter().find(|m| value_of(m, 7).is_some()).unwrap();
    assert_eq!(property_of(row, 7, "type").as_deref(), Some("Row"));
    assert_eq!(t.eval::<Vec<String>>("return built"), ["ann", "bob"]);

    // Growing builds one presenter, for the new row only.
    t.run("table.insert(app.people, Person:new('cy'))");
    assert_eq!(t.eval::<Vec<String>>("return built"), ["ann", "bob", "cy"]);

    // Shrinking destroys the presenters past the end; a position whose base item changed gets
    // a new presenter (the old one destroyed).
    let msgs = for_tab(&t.run("table.remove(app.people, 1)"), 1);
    assert_eq!(last_value(&msgs, 4), Some(s("bob #0")));
    let mut gone = t.eval::<Vec<String>>("return destroyed");
    gone.sort();
    assert_eq!(gone, ["ann", "bob", "cy"]);
    assert_eq!(
        t.eval::<Vec<String>>("return built"),
        ["ann", "bob", "cy", "bob", "cy"]
    );

    // Destroying the variable destroys the rest.
    t.send(1, vec![destroy(2)]);
    assert_eq!(t.eval::<i64>("return #destroyed"), 5);
}

#[test]
fn the_selection_index_follows_select_and_shrinks() {
    let mut t = people();
    let msgs = t.send(
        1,
        vec![
            bind(2, 1, "people?wrapper=lua.ViewList", &[]),
            bind(3, 2, "selectionIndex", &[]),
            bind(4, 2, "items", &[]),
            bind(5, 4, "1.isSelected()", &[]),
        ],
    );
    assert_eq!(last_value(&msgs, 3), Some(Value::Int(-1)), "no selection");
    let msgs = t.send(1, action(6, 4, "1.select()").to_vec());
    assert_eq!(last_value(&msgs, 3), Some(Value::Int(1)));
    assert_eq!(last_value(&msgs, 5), Some(Value::Bool(true)));
    // Writing the field works too (access rw).
    let msgs = t.send(
        1,
        vec![protocol::browser::ClientMessage::Update {
            var_id: 3,
            value: Some(Value::Int(0)),
            properties: vec![],
        }],
    );
    assert_eq!(last_value(&msgs, 5), Some(Value::Bool(false)));
    let msgs = t.send(1, action(7, 4, "1.select()").to_vec());
    assert_eq!(last_value(&msgs, 3), Some(Value::Int(1)));
    // The selected row goes: no selection.
    let msgs = for_tab(&t.run("table.remove(app.people)"), 1);
    assert_eq!(last_value(&msgs, 3), Some(Value::Int(-1)));
}

#[test]
fn a_list_of_a_methods_result_is_recomputed_on_change() {
    let mut t = people();
    let msgs = t.send(
        1,
        vec![
            bind(2, 1, "visible()?wrapper=lua.ViewList&itemWrapper=Row", &[]),
            bind(3, 2, "items", &[]),
            bind(4, 3, "0.item.caption()", &[]),
        ],
    );
    let all = refs(&last_value(&msgs, 3));
    assert_eq!(all.len(), 2);
    // A search that matches only bob: one item, which is the first one, now bob's.
    let msgs = for_tab(&t.run("app.query = 'b'"), 1);
    assert_eq!(refs(&last_value(&msgs, 3)), all[..1]);
    assert_eq!(last_value(&msgs, 4), Some(s("bob #0")));
    // A fresh table every pass with the same elements is no change at all.
    assert!(for_tab(&t.run("local _ = 1"), 1).is_empty());
    // Back to both: the first item stays, the second is a new one (the old one was destroyed).
    let msgs = for_tab(&t.run("app.query = ''"), 1);
    let again = refs(&last_value(&msgs, 3));
    assert_eq!(again[0], all[0]);
    assert_ne!(again[1], all[1]);
    assert_eq!(last_value(&msgs, 4), Some(s("ann #0")));
}

#[test]
fn nested_lists_each_keep_their_own_items() {
    let mut t = Session::new(&[(
        "main.lua",
        r#"
        app = {groups = {
            {type = "Group", name = "a", members = {"a1", "a2"}},
            {type = "Group", name = "b", members = {"b1"}},
        }}
        session:createAppVariable(app)
        "#,
    )]);
    let msgs = t.send(
        1,
        vec![
            bind(2, 1, "groups?wrapper=lua.ViewList", &[]),
            bind(3, 2, "items", &[]),
            bind(4, 3, "0.item.members?wrapper=lua.ViewList", &[]),
            bind(5, 4, "items", &[]),
            bind(6, 5, "1.item", &[]),
            bind(7, 3, "1.item.members?wrapper=lua.ViewList", &[]),
            bind(8, 7, "items", &[]),
        ],
    );
    assert_eq!(refs(&last_value(&msgs, 3)).len(), 2);
    assert_eq!(refs(&last_value(&msgs, 5)).len(), 2);
    assert_eq!(last_value(&msgs, 6), Some(s("a2")));
    let b = refs(&last_value(&msgs, 8));
    assert_eq!(b.len(), 1);
    let msgs = for_tab(&t.run("table.insert(app.groups[2].members, 'b2')"), 1);
    let grown = refs(&last_value(&msgs, 8));
    assert_eq!((grown.len(), grown[0]), (2, b[0]));
    assert_eq!(last_value(&msgs, 5), None, "the other list did not change");
    let msgs = for_tab(&t.run("app.groups[1].members[2] = 'A2'"), 1);
    assert_eq!(last_value(&msgs, 6), Some(s("A2")));
}

#[test]
fn the_frontends_per_row_wrapper_leaves_the_item_and_its_presenter() {
    // ui-engine's frontend copies `itemWrapper` onto each row variable as `wrapper`: the row
    // stays the ViewListItem (no second presenter, no error), and its `item` is the presenter
    // the list built.
    let mut t = people();
    let msgs = t.send(
        1,
        vec![
            bind(2, 1, "people?wrapper=lua.ViewList&itemWrapper=Row", &[]),
            bind(3, 2, "items", &[]),
            bind(4, 3, "0", &[("wrapper", "Row")]),
            bind(5, 4, "item.caption()", &[]),
        ],
    );
    assert!(
        !msgs.iter().any(|m| matches!(
            m,
            ServerMessage::Error {
                var_id: Some(4),
                ..
            }
        )),
        "{msgs:?}"
    );
    let row = msgs.iter().find(|m| value_of(m, 4).is_some()).unwrap();
    assert_eq!(
        property_of(row, 4, "type").as_deref(),
        Some("lua.ViewListItem")
    );
    assert_eq!(last_value(&msgs, 5), Some(s("ann #0")));
}

#[test]
fn the_default_templates_are_built_in_and_an_apps_own_files_win() {
    let bind_list = |t: &mut Session| {
        t.send(
            1,
            vec![
                bind(2, 1, "people?wrapper=lua.ViewList", &[]),
                bind(3, 2, "items", &[]),
                bind(4, 3, "0", &[]),
            ],
        )
    };
    let mut t = people();
    let msgs = bind_list(&mut t);
    let sent: Vec<(String, String)> = msgs.iter().filter_map(viewdefs_in).flatten().collect();
    let keys: Vec<&str> = sent.iter().map(|(k, _)| k.as_str()).collect();
    assert!(keys.contains(&"lua.ViewList.DEFAULT"), "{keys:?}");
    assert!(keys.contains(&"lua.ViewListItem.list-item"), "{keys:?}");
    assert!(sent.iter().all(|(_, v)| v.starts_with("<template>")));

    let mut t = Session::new(&[
        ("main.lua", PEOPLE),
        (
            "viewdefs/lua.ViewList.DEFAULT.html",
            "<template><ul ui-viewlist=\"items\"><li></li></ul></template>",
        ),
    ]);
    let msgs = bind_list(&mut t);
    let sent: Vec<(String, String)> = msgs.iter().filter_map(viewdefs_in).flatten().collect();
    let list = sent
        .iter()
        .find(|(k, _)| k == "lua.ViewList.DEFAULT")
        .unwrap();
    assert!(list.1.contains("<ul"), "the app's file: {}", list.1);
    assert!(sent.iter().any(|(k, _)| k == "lua.ViewListItem.list-item"));
}

#[test]
fn registered_presenters_and_removed_prototypes() {
    let mut t = Session::new(&[(
        "main.lua",
        r#"
        local Shout = {}
        Shout.__index = Shout
        function Shout:new(item) return setmetatable({text = item.baseItem:upper()}, self) end
        ui.registerPresenter("Shout", Shout)
        Gone = session:prototype("Gone", {})
        session:prototype("Gone.Child", {})
        session:removePrototype("Gone", true)
        session:removePrototype("Never", false)
        app = {words = {"hi"}}
        assert(type(session._sessionID) == "string")
        session:createAppVariable(app)
        "#,
    )]);
    let msgs = t.send(
        1,
        vec![
            bind(2, 1, "words?wrapper=lua.ViewList&itemWrapper=Shout", &[]),
            bind(3, 2, "items.0.item.text", &[]),
            root(4, None, &[("create", "Gone.Child")]),
        ],
    );
    assert_eq!(last_value(&msgs, 3), Some(s("HI")));
    assert!(
        msgs.iter().any(|m| matches!(
            m,
            ServerMessage::Error {
                var_id: Some(4),
                code: protocol::ErrorCode::NotFound,
                ..
            }
        )),
        "a removed prototype is not found: {msgs:?}"
    );
}
