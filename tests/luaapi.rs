//! The Lua app API seen from a tab: timers push changes without any message from the tab,
//! prototypes survive a hot reload with their instances, modules load from the app directory.

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
