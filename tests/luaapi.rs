//! The Lua app API seen from a tab: timers push changes without any message from the tab,
//! prototypes survive a hot reload with their instances, modules load from the app directory,
//! viewdefs arrive ahead of the values that need them (and again when `--hotload` sees them
//! change).

mod common;

use common::*;
use serde_json::{json, Value as Json};

/// Creates a child variable of variable 1 bound to `path`, and returns its first value.
async fn bind(ws: &mut Ws, id: i64, path: &str) -> Json {
    send(
        ws,
        json!({"type": "create", "data": {"id": id, "parentId": 1, "properties": {"path": path}}}),
    )
    .await;
    let m = recv_until(ws, |m| {
        m["type"] == "update" && m["data"]["varId"] == id && m["data"].get("value").is_some()
    })
    .await;
    m["data"]["value"].clone()
}

async fn next_value_of(ws: &mut Ws, id: i64) -> Json {
    recv_until(ws, |m| {
        m["type"] == "update" && m["data"]["varId"] == id && m["data"].get("value").is_some()
    })
    .await["data"]["value"]
        .clone()
}

#[tokio::test]
async fn a_ticking_clock_reaches_the_tab_without_any_message_from_it() {
    let broker = Broker::with_app(
        &[(
            "main.lua",
            r#"
            local app = { ticks = 0 }
            session:createAppVariable(app)
            session:setInterval(function() app.ticks = app.ticks + 1 end, 20)
            "#,
        )],
        &[],
    );
    let id = broker.create_session().await;
    let mut ws = connect(&broker, &id).await;
    let first = bind(&mut ws, 2, "ticks").await.as_i64().unwrap();
    // Three more ticks arrive on their own, each larger than the last.
    let mut last = first;
    for _ in 0..3 {
        let now = next_value_of(&mut ws, 2).await.as_i64().unwrap();
        assert!(now > last, "{now} after {last}");
        last = now;
    }
}

#[tokio::test]
async fn a_failing_timer_is_reported_and_the_timers_keep_running() {
    let broker = Broker::with_app(
        &[(
            "main.lua",
            r#"
            local app = { n = 0 }
            session:createAppVariable(app)
            session:setTimeout(function() error("timer exploded") end, 30)
            session:setInterval(function() app.n = app.n + 1 end, 20)
            "#,
        )],
        &[],
    );
    let id = broker.create_session().await;
    let mut ws = connect(&broker, &id).await;
    bind(&mut ws, 2, "n").await;
    let err = recv_until(&mut ws, |m| m["type"] == "error").await;
    assert_eq!(err["data"]["code"], "lua-error");
    assert!(err["data"]["description"]
        .as_str()
        .unwrap()
        .contains("timer exploded"));
    next_value_of(&mut ws, 2).await; // still ticking
}

#[tokio::test]
async fn hot_reload_updates_prototypes_in_place_and_pushes_the_change() {
    let counter_v1 = r#"
        Counter = session:prototype("Counter", { label = "v1", count = 0 })
        function Counter:describe() return self.label .. ":" .. self.count end
        return Counter
    "#;
    let counter_v2 = r#"
        Counter = session:prototype("Counter", { label = "v2", count = 0 })
        function Counter:describe() return "new " .. self.label .. ":" .. self.count end
        return Counter
    "#;
    let broker = Broker::with_app(
        &[
            ("counter.lua", counter_v1),
            (
                "main.lua",
                r#"
                local Counter = require("counter")
                local app = Counter:new({ count = 5 })
                session:createAppVariable(app)
                "#,
            ),
        ],
        &["--hotload"],
    );
    let id = broker.create_session().await;
    let mut ws = connect(&broker, &id).await;
    assert_eq!(bind(&mut ws, 2, "describe()").await, "v1:5");

    let dir = app_dir_of(&broker);
    std::fs::write(dir.join("counter.lua"), counter_v2).unwrap();
    // The instance keeps its own count; the prototype's default and method changed in place.
    assert_eq!(next_value_of(&mut ws, 2).await, "new v2:5");
    broker.wait_log("reloading");
}

/// The sample app shipped in `examples/tasks`.
const TASKS_APP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/tasks");

/// The templates a message carries (the `viewdefs` property of variable 1, a JSON string),
/// as (key, template) pairs; `None` for any other message.
fn viewdefs_of(m: &Json) -> Option<Vec<(String, String)>> {
    if m["type"] != "update" || m["data"]["varId"] != 1 {
        return None;
    }
    let text = m["data"]["properties"]["viewdefs"].as_str()?;
    let map: serde_json::Map<String, Json> =
        serde_json::from_str(text).expect("viewdefs is a JSON object encoded as a string");
    Some(
        map.into_iter()
            .map(|(k, v)| (k, v.as_str().expect("a template is a string").to_string()))
            .collect(),
    )
}

/// Every message up to and including the first one satisfying `pred`, in arrival order.
async fn recv_through(ws: &mut Ws, mut pred: impl FnMut(&Json) -> bool) -> Vec<Json> {
    let mut seen = Vec::new();
    loop {
        for m in recv(ws).await {
            let done = pred(&m);
            seen.push(m);
            if done {
                return seen;
            }
        }
    }
}

fn has_value_of(m: &Json, id: i64) -> bool {
    m["type"] == "update" && m["data"]["varId"] == id && m["data"].get("value").is_some()
}

#[tokio::test]
async fn viewdefs_arrive_once_and_before_the_values_that_need_them() {
    let app = readable_copy(std::path::Path::new(TASKS_APP));
    let broker = Broker::start(&["--lua-dir", app.path().to_str().unwrap()]);
    let id = broker.create_session().await;
    let mut ws = connect(&broker, &id).await;

    // The first watch of the app: Board's templates, then the board itself.
    send(&mut ws, msg("watch", json!({"varId": 1}))).await;
    let mut all = recv_through(&mut ws, |m| has_value_of(m, 1)).await;
    let first = all.iter().position(|m| viewdefs_of(m).is_some());
    let value = all.iter().position(|m| has_value_of(m, 1)).unwrap();
    assert!(
        first.is_some_and(|v| v < value),
        "viewdefs must come before the value: {all:?}"
    );
    assert_eq!(all[value]["data"]["properties"]["type"], "Board");
    let mut board: Vec<String> = viewdefs_of(&all[first.unwrap()])
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    board.sort();
    assert_eq!(board, ["Board.COMPACT", "Board.DEFAULT"]);

    // A column and two of its tasks: Column's and Task's templates come before them.
    send(
        &mut ws,
        json!({"userEvent": true, "messages": [
            msg("create", json!({"id": 2, "parentId": 1, "properties": {"path": "columns.0"}})),
            msg("create", json!({"id": 3, "parentId": 2, "properties": {"path": "tasks.0"}})),
            msg("create", json!({"id": 4, "parentId": 2, "properties": {"path": "tasks.1"}})),
        ]}),
    )
    .await;
    let batch = recv_through(&mut ws, |m| has_value_of(m, 4)).await;
    let task_defs = batch
        .iter()
        .position(|m| viewdefs_of(m).is_some_and(|d| d.iter().any(|(k, _)| k == "Task.DEFAULT")))
        .expect("Task's templates");
    let first_task = batch.iter().position(|m| has_value_of(m, 3)).unwrap();
    assert!(task_defs < first_task, "{batch:?}");
    all.extend(batch);

    // Watching again, and a `get`, name types this tab has: nothing more is sent. The get
    // reply closes the exchange, so everything before it has been seen.
    send(&mut ws, msg("unwatch", json!({"varId": 1}))).await;
    send(&mut ws, msg("watch", json!({"varId": 1}))).await;
    send(&mut ws, msg("get", json!({"varIds": [1, 3]}))).await;
    all.extend(recv_through(&mut ws, |m| m["type"] == "get").await);

    let mut keys: Vec<String> = all
        .iter()
        .filter_map(viewdefs_of)
        .flatten()
        .map(|(k, template)| {
            assert!(template.contains("<template>"), "{k}: {template}");
            k
        })
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "Board.COMPACT",
            "Board.DEFAULT",
            "Column.DEFAULT",
            "Task.DEFAULT",
            "Task.list-item"
        ],
        "each template exactly once"
    );
}

#[tokio::test]
async fn hotload_resends_a_changed_viewdef_to_the_tab() {
    let broker = Broker::with_app(
        &[
            (
                "main.lua",
                r#"
                Card = session:prototype("Card", { title = "hello" })
                session:createAppVariable(Card:new())
                "#,
            ),
            ("viewdefs/Card.DEFAULT.html", "<template>v1</template>"),
            ("viewdefs/Card.COMPACT.html", "<template>compact</template>"),
        ],
        &["--hotload"],
    );
    let id = broker.create_session().await;
    let mut ws = connect(&broker, &id).await;
    send(&mut ws, msg("watch", json!({"varId": 1}))).await;
    let first = recv_until(&mut ws, |m| viewdefs_of(m).is_some()).await;
    let mut defs = viewdefs_of(&first).unwrap();
    defs.sort();
    assert_eq!(
        defs,
        [
            (
                "Card.COMPACT".to_string(),
                "<template>compact</template>".to_string()
            ),
            (
                "Card.DEFAULT".to_string(),
                "<template>v1</template>".to_string()
            ),
        ]
    );

    let dir = app_dir_of(&broker);
    std::fs::write(
        dir.join("viewdefs/Card.DEFAULT.html"),
        "<template>v2</template>",
    )
    .unwrap();
    // Just the changed template, to the tab that has the type.
    let again = recv_until(&mut ws, |m| viewdefs_of(m).is_some()).await;
    assert_eq!(
        viewdefs_of(&again).unwrap(),
        [(
            "Card.DEFAULT".to_string(),
            "<template>v2</template>".to_string()
        )]
    );
}

/// The app directory a broker serves (it was given with --lua-dir).
fn app_dir_of(broker: &Broker) -> std::path::PathBuf {
    let log = broker.log();
    let line = log
        .lines()
        .find(|l| l.contains("serving Lua app"))
        .expect("app line");
    let path = line
        .split("app=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    std::path::PathBuf::from(path)
}

/// The counter of the README's "Writing an app", verbatim, does what the README says.
#[tokio::test]
async fn the_readme_counter_works_as_documented() {
    let readme = include_str!("../README.md");
    let start = readme.find("```lua\n-- main.lua").expect("README example") + "```lua\n".len();
    let source = &readme[start..start + readme[start..].find("```").unwrap()];
    let broker = Broker::with_app(&[("main.lua", source)], &[]);
    let id = broker.create_session().await;
    let mut ws = connect(&broker, &id).await;
    assert_eq!(bind(&mut ws, 2, "count").await, 0);
    assert_eq!(bind(&mut ws, 3, "double()").await, 0);
    send(
        &mut ws,
        json!({"userEvent": true, "messages": [
            {"type": "create", "data": {"id": 4, "parentId": 1, "nowatch": true,
                "properties": {"path": "increment()", "access": "action"}}},
            {"type": "update", "data": {"varId": 4, "value": null}},
            {"type": "update", "data": {"varId": 4, "value": null}},
        ]}),
    )
    .await;
    // Both changes arrive after the frame (in one batch); collect until both are seen.
    let mut seen = std::collections::HashMap::new();
    while seen.len() < 2 {
        for m in recv(&mut ws).await {
            if m["type"] == "update" && m["data"].get("value").is_some() {
                seen.insert(
                    m["data"]["varId"].as_i64().unwrap(),
                    m["data"]["value"].clone(),
                );
            }
        }
    }
    assert_eq!((seen[&2].clone(), seen[&3].clone()), (json!(2), json!(4)));
}
