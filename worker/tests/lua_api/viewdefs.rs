//! Viewdefs: the app's `viewdefs/<Type>.<NAMESPACE>.html` templates reach each tab once, as the
//! high-priority `viewdefs` property of variable 1, ahead of the first update that names the type.

use protocol::browser::ServerMessage;
use protocol::Value;

use crate::tabs::*;

const APP: &str = r#"
Board = session:prototype("Board", {title = "Plans"})
Task = session:prototype("Task", {title = ""})
Note = session:prototype("Note", {text = ""})
Sticker = session:prototype("Sticker", {})
board = Board:new({
    tasks = {Task:new({title = "a"}), Task:new({title = "b"})},
    note = Note:new({text = "n"}),
})
session:createAppVariable(board)
"#;

const BOARD: &str = "<template><h1 ui-value=\"title\"></h1></template>";
const BOARD_COMPACT: &str = "<template><b ui-value=\"title\"></b></template>";
const TASK: &str = "<template><li ui-value=\"title\"></li></template>";

fn app() -> Session {
    Session::new(&[
        ("main.lua", APP),
        ("viewdefs/Board.DEFAULT.html", BOARD),
        ("viewdefs/Board.COMPACT.html", BOARD_COMPACT),
        ("viewdefs/Task.DEFAULT.html", TASK),
        (
            "viewdefs/Sticker.DEFAULT.html",
            "<template>sticker</template>",
        ),
        // Not viewdefs: ignored.
        ("viewdefs/notes.txt", "not a template"),
        ("viewdefs/Board.html", "<template>no namespace</template>"),
    ])
}

#[test]
fn viewdefs_come_once_per_tab_before_the_update_that_needs_them() {
    let mut t = app();
    // The first watch of the app: every namespace of Board, then the value and its type.
    let msgs = t.send(1, vec![watch(1)]);
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert_eq!(
        viewdefs_in(&msgs[0]).unwrap(),
        [
            ("Board.COMPACT".to_string(), BOARD_COMPACT.to_string()),
            ("Board.DEFAULT".to_string(), BOARD.to_string()),
        ]
    );
    assert_eq!(value_of(&msgs[1], 1), Some(Value::ObjRef(1)));
    assert_eq!(property_of(&msgs[1], 1, "type").as_deref(), Some("Board"));

    // A Task appears, bound at high priority next to a medium one: Task's templates still
    // come first, ahead of every update of the batch.
    let msgs = t.send(
        1,
        vec![
            bind(2, 1, "title", &[]),
            bind(3, 1, "tasks.0", &[("priority", "high")]),
        ],
    );
    assert_eq!(viewdef_keys(&msgs[0]), ["Task.DEFAULT"]);
    // Then the high-priority value and type of 3, then the medium rest (2, then 3's path).
    assert_eq!(property_of(&msgs[1], 3, "type").as_deref(), Some("Task"));
    assert_eq!(value_of(&msgs[2], 2), Some(s("Plans")));
    assert_eq!(msgs.len(), 4, "{msgs:?}");

    // Already sent: a second Task, or watching the app again, brings no templates.
    let msgs = t.send(1, vec![bind(4, 1, "tasks.1", &[]), unwatch(1), watch(1)]);
    assert!(msgs.iter().all(|m| viewdefs_in(m).is_none()), "{msgs:?}");
    assert!(msgs
        .iter()
        .any(|m| property_of(m, 4, "type").as_deref() == Some("Task")));

    // The app changes a value's type to one with templates: they precede the change, also
    // when the change comes from a timer rather than a tab.
    let msgs = for_tab(&t.run("board.tasks[2] = Sticker:new()"), 1);
    assert_eq!(viewdef_keys(&msgs[0]), ["Sticker.DEFAULT"]);
    assert_eq!(property_of(&msgs[1], 4, "type").as_deref(), Some("Sticker"));
}

#[test]
fn a_second_tab_and_a_reconnecting_one_get_them_again() {
    let mut t = app();
    assert_eq!(
        viewdef_keys(&t.send(1, vec![watch(1)])[0]),
        ["Board.COMPACT", "Board.DEFAULT"]
    );
    // Another tab of the same session has its own record.
    assert_eq!(
        viewdef_keys(&t.send(2, vec![watch(1)])[0]),
        ["Board.COMPACT", "Board.DEFAULT"]
    );
    // Both watch the app; a change reaches both, templates for neither.
    let batches = t.run("board.title = 'Later'; board.tasks[1] = Note:new()");
    assert!(batches
        .iter()
        .flat_map(|b| &b.messages)
        .all(|m| viewdefs_in(m).is_none()));

    // The browser reloads: tab 1 goes, and comes back as tab 3, which knows nothing yet.
    t.close(1);
    t.open(3);
    let msgs = t.send(3, vec![watch(1), bind(2, 1, "note", &[])]);
    assert_eq!(viewdef_keys(&msgs[0]), ["Board.COMPACT", "Board.DEFAULT"]);
    assert_eq!(msgs.len(), 3, "Note has no templates: {msgs:?}");
}

#[test]
fn a_type_without_viewdefs_sends_nothing() {
    let mut t = app();
    t.send(1, vec![watch(1)]);
    // Note has no templates: just the update.
    let msgs = t.send(1, vec![bind(2, 1, "note", &[])]);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(property_of(&msgs[0], 2, "type").as_deref(), Some("Note"));

    // An app without a viewdefs directory at all.
    let mut bare = Session::new(&[("main.lua", APP)]);
    let msgs = bare.send(1, vec![watch(1), bind(2, 1, "tasks.0", &[])]);
    assert!(msgs.iter().all(|m| viewdefs_in(m).is_none()), "{msgs:?}");
    assert_eq!(msgs.len(), 2);
}

#[test]
fn a_get_reply_that_names_a_type_brings_its_templates() {
    let mut t = app();
    let msgs = t.send(
        1,
        vec![protocol::browser::ClientMessage::Get { var_ids: vec![1] }],
    );
    assert_eq!(viewdef_keys(&msgs[0]), ["Board.COMPACT", "Board.DEFAULT"]);
    assert!(matches!(&msgs[1], ServerMessage::Get { .. }));
}

#[test]
fn a_reloaded_viewdef_goes_only_to_tabs_that_have_its_type() {
    let mut t = app();
    // Tab 1 has Board and Task; tab 2 only Board.
    t.send(
        1,
        vec![
            watch(1),
            bind(2, 1, "tasks.0", &[]),
            bind(3, 2, "title", &[]),
        ],
    );
    t.send(2, vec![watch(1)]);

    // The file changes while the app changes something tab 1 watches (no pass has run yet).
    let new_task = "<template><li class=\"v2\" ui-value=\"title\"></li></template>";
    t.write("viewdefs/Task.DEFAULT.html", new_task);
    t.eval::<()>("board.tasks[1].title = 'changed'");
    let batches = t.reload(&["viewdefs/Task.DEFAULT.html"]);
    let tab1 = for_tab(&batches, 1);
    assert_eq!(
        viewdefs_in(&tab1[0]).unwrap(),
        [("Task.DEFAULT".to_string(), new_task.to_string())],
        "just the changed entry"
    );
    assert_eq!(
        value_of(&tab1[1], 3),
        Some(s("changed")),
        "then change detection"
    );
    assert_eq!(tab1.len(), 2);
    assert!(for_tab(&batches, 2).is_empty(), "tab 2 never had a Task");

    // A new namespace of Board reaches both tabs; a deleted file and other files send nothing.
    t.write("viewdefs/Board.LIST.html", "<template>list</template>");
    std::fs::remove_file(t.path("viewdefs/Board.COMPACT.html")).unwrap();
    let batches = t.reload(&[
        "viewdefs/Board.COMPACT.html",
        "viewdefs/Board.LIST.html",
        "notes.md",
    ]);
    for tab in [1, 2] {
        let msgs = for_tab(&batches, tab);
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        assert_eq!(viewdef_keys(&msgs[0]), ["Board.LIST"]);
    }

    // A tab that arrives now gets the current set.
    t.open(3);
    let msgs = t.send(3, vec![watch(1)]);
    assert_eq!(viewdef_keys(&msgs[0]), ["Board.DEFAULT", "Board.LIST"]);

    // A type nobody has seen yet: reloading it sends nothing, and its first use sends the
    // new text.
    t.write(
        "viewdefs/Sticker.DEFAULT.html",
        "<template>sticker v2</template>",
    );
    assert!(t.reload(&["viewdefs/Sticker.DEFAULT.html"]).is_empty());
    let msgs = for_tab(&t.run("board.tasks[1] = Sticker:new()"), 1);
    assert_eq!(
        viewdefs_in(&msgs[0]).unwrap(),
        [(
            "Sticker.DEFAULT".to_string(),
            "<template>sticker v2</template>".to_string()
        )]
    );
}
