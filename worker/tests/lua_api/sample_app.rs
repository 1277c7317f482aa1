//! The sample app in `examples/tasks`, run as a session: its classes, its viewdefs, its
//! `OpenTasks` wrapper, and its actions.

use protocol::Value;

use crate::tabs::*;

fn sample() -> Session {
    Session::at(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/tasks"))
}

#[test]
fn the_task_board_runs_and_ships_templates_for_its_types() {
    let mut t = sample();
    let msgs = t.send(1, vec![watch(1)]);
    assert_eq!(viewdef_keys(&msgs[0]), ["Board.COMPACT", "Board.DEFAULT"]);
    assert_eq!(property_of(&msgs[1], 1, "type").as_deref(), Some("Board"));

    let msgs = t.send(
        1,
        vec![
            bind(2, 1, "columns.0", &[]),
            bind(3, 2, "tasks.0", &[]),
            bind(4, 3, "label()", &[("access", "r")]),
            bind(5, 1, "summary()", &[("access", "r")]),
            bind(6, 2, "tasks?wrapper=OpenTasks", &[]),
            bind(7, 6, "count()", &[("access", "r")]),
            bind(10, 6, "refreshes", &[]),
        ],
    );
    let keys: Vec<String> = msgs
        .iter()
        .filter_map(viewdefs_in)
        .flatten()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys,
        [
            "Column.DEFAULT",
            "Task.DEFAULT",
            "Task.list-item",
            "OpenTasks.DEFAULT"
        ],
        "once each, before the updates: {msgs:?}"
    );
    assert!(viewdefs_in(&msgs[0]).is_some());
    assert_eq!(last_value(&msgs, 4), Some(s("[ ] Write the README")));
    assert_eq!(last_value(&msgs, 5), Some(s("3 tasks, 0 done")));
    assert_eq!(last_value(&msgs, 7), Some(Value::Int(2)));
    assert_eq!(last_value(&msgs, 10), Some(Value::Int(1)));

    // Finish the first task and move it on: the open count follows, and the wrapper is not
    // made again (the array did not change).
    let [make, call] = action(8, 3, "toggle()");
    let msgs = t.send(1, vec![make, call]);
    assert_eq!(last_value(&msgs, 4), Some(s("[x] Write the README")));
    assert_eq!(last_value(&msgs, 7), Some(Value::Int(1)));
    assert_eq!(last_value(&msgs, 10), None);
    assert_eq!(
        t.eval::<i64>("return session:getApp().columns[1].tasks[1].done and 1 or 0"),
        1
    );
    let [make, call] = action(9, 1, "advance()");
    let msgs = t.send(1, vec![make, call]);
    assert_eq!(
        last_value(&msgs, 10),
        Some(Value::Int(2)),
        "the column's array changed: the wrapper was synced"
    );
    assert_eq!(
        t.eval::<i64>("return session:getApp().columns[2]:count()"),
        2
    );

    // The clock's timer is set; a tick is what it runs.
    assert!(t.session.timers().next_deadline().is_some());
    let before: i64 = t.eval("return session:getApp().ticks");
    t.run("session:getApp():tick()");
    assert_eq!(t.eval::<i64>("return session:getApp().ticks"), before + 1);
}
