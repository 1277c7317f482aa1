//! The variable protocol (ARCHITECTURE.md 3) over a real WebSocket against the real executable, with
//! an app written for these tests: every message type and error code, the three frame shapes,
//! priorities, tabs and sessions kept apart, and the HTTP edges around the socket (the Origin
//! check, `--static`, `--debug-pages`).
//!
//! Replies are collected with a sync marker: after a frame, the test sends `get` with no ids;
//! the worker handles a tab's frames in order, so everything the first frame caused arrives
//! before that `get`'s (empty) answer. No test sleeps.

mod common;

use std::collections::HashSet;

use common::*;
use serde_json::{json, Value as Json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A shop-like app: plain fields, a nested object, an array, a computed method, an action, a
/// setter, a method that fails.
const APP: &str = r#"
local Shop = { type = "Shop" }
Shop.__index = Shop

function Shop:total() return self.qty * self.price end
function Shop:bump() self.qty = self.qty + 1; self.bumps = self.bumps + 1; return "ignored" end
function Shop:setName(v) self.name = string.upper(v) end
function Shop:fail() error("boom in fail") end

local app = setmetatable({
  qty = 3, price = 2, name = "ann", bumps = 0,
  child = { name = "kid", age = 7 },
  items = { "a", "b", "c" },
}, Shop)
session:createAppVariable(app)
"#;

// ---- helpers --------------------------------------------------------------------------------

async fn start(args: &[&str]) -> (Broker, String, Ws) {
    let broker = Broker::with_app(&[("main.lua", APP)], args);
    let id = broker.create_session().await;
    let ws = connect(&broker, &id).await;
    (broker, id, ws)
}

fn user(messages: Vec<Json>) -> Json {
    json!({"userEvent": true, "messages": messages})
}

fn create(id: i64, parent: i64, properties: Json) -> Json {
    msg(
        "create",
        json!({"id": id, "parentId": parent, "properties": properties}),
    )
}

fn path(id: i64, parent: i64, path: &str) -> Json {
    create(id, parent, json!({ "path": path }))
}

fn write(id: i64, value: Json) -> Json {
    msg("update", json!({"varId": id, "value": value}))
}

/// Sends the sync marker and returns every message up to (and around) its answer.
async fn sync(ws: &mut Ws) -> Vec<Json> {
    send(ws, msg("get", json!({"varIds": []}))).await;
    let mut got = Vec::new();
    loop {
        let frame = recv(ws).await;
        let marker = frame
            .iter()
            .position(|m| m["type"] == "get" && m["data"]["variables"] == json!([]));
        match marker {
            Some(at) => {
                // Whatever shared the marker's batch belongs to "everything so far" too.
                got.extend(frame[..at].iter().cloned());
                got.extend(frame[at + 1..].iter().cloned());
                return got;
            }
            None => got.extend(frame),
        }
    }
}

/// Sends a frame and returns what it caused.
async fn exchange(ws: &mut Ws, frame: Json) -> Vec<Json> {
    send(ws, frame).await;
    sync(ws).await
}

/// The `update`s that carry a value, as (varId, value), in order.
fn values(msgs: &[Json]) -> Vec<(i64, Json)> {
    msgs.iter()
        .filter(|m| m["type"] == "update" && m["data"].get("value").is_some())
        .map(|m| {
            (
                m["data"]["varId"].as_i64().unwrap(),
                m["data"]["value"].clone(),
            )
        })
        .collect()
}

/// The value last sent for `id`.
fn value_of(msgs: &[Json], id: i64) -> Json {
    values(msgs)
        .into_iter()
        .rev()
        .find(|(v, _)| *v == id)
        .map(|(_, value)| value)
        .unwrap_or_else(|| panic!("no value for variable {id} in {msgs:?}"))
}

/// The `error`s, as (varId, code, description).
fn errors(msgs: &[Json]) -> Vec<(Option<i64>, String, String)> {
    msgs.iter()
        .filter(|m| m["type"] == "error")
        .map(|m| {
            (
                m["data"]["varId"].as_i64(),
                m["data"]["code"].as_str().unwrap().to_string(),
                m["data"]["description"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Exactly one error, with this variable and code; returns its description.
fn the_error(msgs: &[Json], var_id: Option<i64>, code: &str) -> String {
    let errs = errors(msgs);
    assert_eq!(errs.len(), 1, "one error expected: {msgs:?}");
    let (v, c, description) = errs.into_iter().next().unwrap();
    assert_eq!(
        (v, c.as_str()),
        (var_id, code),
        "error variable and code: {description}"
    );
    description
}

fn destroys(msgs: &[Json]) -> Vec<i64> {
    msgs.iter()
        .filter(|m| m["type"] == "destroy")
        .map(|m| m["data"]["varId"].as_i64().unwrap())
        .collect()
}

/// A GET written by hand, so that `..` reaches the server as typed (HTTP clients normalise it).
async fn raw_get(addr: &str, target: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut buf))
        .await
        .expect("timed out reading the response")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, text)
}

// ---- messages -------------------------------------------------------------------------------

#[tokio::test]
async fn watch_replies_with_the_current_value_and_every_property() {
    let (_broker, _id, mut ws) = start(&[]).await;
    let msgs = exchange(&mut ws, user(vec![msg("watch", json!({"varId": 1}))])).await;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0]["type"], "update");
    assert_eq!(msgs[0]["data"]["varId"], 1);
    assert!(msgs[0]["data"]["value"]["obj"].is_i64(), "{msgs:?}");
    assert_eq!(msgs[0]["data"]["properties"]["type"], "Shop");
    // Watching again changes nothing; unwatch is accepted silently.
    let msgs = exchange(&mut ws, msg("unwatch", json!({"varId": 1}))).await;
    assert!(errors(&msgs).is_empty(), "{msgs:?}");
}

#[tokio::test]
async fn create_with_a_path_replies_with_the_value() {
    let (_broker, _id, mut ws) = start(&[]).await;
    let msgs = exchange(
        &mut ws,
        user(vec![
            path(2, 1, "qty"),
            path(3, 1, "child.name"),
            path(4, 1, "child"),
            path(5, 4, "age"),
            path(6, 1, "items.1"),
            path(7, 1, "items"),
        ]),
    )
    .await;
    assert!(errors(&msgs).is_empty(), "{msgs:?}");
    assert_eq!(value_of(&msgs, 2), 3);
    assert_eq!(value_of(&msgs, 3), "kid");
    assert!(value_of(&msgs, 4)["obj"].is_i64());
    assert_eq!(value_of(&msgs, 5), 7, "a child of a child follows its path");
    assert_eq!(value_of(&msgs, 6), "b", "indexes are 0-based");
    assert_eq!(value_of(&msgs, 7), json!(["a", "b", "c"]));
    let created = msgs
        .iter()
        .find(|m| m["data"]["varId"] == 2 && m["data"].get("properties").is_some())
        .expect("the create reply carries the properties");
    assert_eq!(created["data"]["properties"]["path"], "qty");
}

#[tokio::test]
async fn update_writes_through_and_a_computed_variable_follows() {
    let (_broker, _id, mut ws) = start(&[]).await;
    let msgs = exchange(
        &mut ws,
        user(vec![
            path(2, 1, "qty"),
            create(3, 1, json!({"path": "total()", "access": "r"})),
        ]),
    )
    .await;
    assert_eq!(value_of(&msgs, 3), 6);

    let msgs = exchange(&mut ws, user(vec![write(2, json!(5))])).await;
    assert!(errors(&msgs).is_empty(), "{msgs:?}");
    assert_eq!(
        value_of(&msgs, 3),
        10,
        "total() = qty * price after the write"
    );

    // Lua holds the new value: a variable created now reads it back.
    let msgs = exchange(&mut ws, path(4, 1, "qty")).await;
    assert_eq!(value_of(&msgs, 4), 5);
    // Writing through an index path changes the Lua array element.
    let msgs = exchange(
        &mut ws,
        user(vec![
            path(5, 1, "items.2"),
            write(5, json!("C")),
            path(6, 1, "items"),
        ]),
    )
    .await;
    assert_eq!(value_of(&msgs, 6), json!(["a", "b", "C"]));
}

#[tokio::test]
async fn an_action_calls_the_method() {
    let (_broker, _id, mut ws) = start(&[]).await;
    exchange(
        &mut ws,
        user(vec![
            path(2, 1, "qty"),
            path(3, 1, "bumps"),
            create(4, 1, json!({"path": "bump()", "access": "action"})),
        ]),
    )
    .await;
    let msgs = exchange(&mut ws, user(vec![write(4, Json::Null)])).await;
    assert!(errors(&msgs).is_empty(), "{msgs:?}");
    assert_eq!(value_of(&msgs, 2), 4);
    assert_eq!(value_of(&msgs, 3), 1);
    assert!(
        !values(&msgs).iter().any(|(id, _)| *id == 4),
        "an action's result is thrown away: {msgs:?}"
    );
    let msgs = exchange(&mut ws, user(vec![write(4, Json::Null)])).await;
    assert_eq!(value_of(&msgs, 3), 2, "each update calls it once");
}

#[tokio::test]
async fn a_setter_path_gets_the_value() {
    let (_broker, _id, mut ws) = start(&[]).await;
    exchange(
        &mut ws,
        user(vec![
            path(2, 1, "name"),
            create(3, 1, json!({"path": "setName(_)", "access": "w"})),
        ]),
    )
    .await;
    let msgs = exchange(&mut ws, user(vec![write(3, json!("bob"))])).await;
    assert!(errors(&msgs).is_empty(), "{msgs:?}");
    assert_eq!(value_of(&msgs, 2), "BOB", "setName ran with the value");
}

#[tokio::test]
async fn destroy_answers_once_per_removed_variable_children_first() {
    let (_broker, _id, mut ws) = start(&[]).await;
    exchange(
        &mut ws,
        user(vec![
            path(2, 1, "child"),
            path(3, 2, "name"),
            path(4, 2, "age"),
            path(5, 1, "qty"),
        ]),
    )
    .await;
    let msgs = exchange(&mut ws, msg("destroy", json!({"varId": 2}))).await;
    let ids = destroys(&msgs);
    assert_eq!(ids.len(), 3, "{msgs:?}");
    assert_eq!(ids[2], 2, "the parent goes last: {ids:?}");
    assert_eq!(
        ids[..2].iter().copied().collect::<HashSet<_>>(),
        [3, 4].into()
    );
    // They are gone; the sibling is not.
    let msgs = exchange(&mut ws, msg("watch", json!({"varId": 3}))).await;
    the_error(&msgs, Some(3), "not-found");
    let msgs = exchange(&mut ws, msg("get", json!({"varIds": [5]}))).await;
    let got = msgs.iter().find(|m| m["type"] == "get").unwrap();
    assert_eq!(got["data"]["variables"][0]["value"], 3);
}

#[tokio::test]
async fn replies_are_ordered_high_medium_low() {
    let (_broker, _id, mut ws) = start(&[]).await;
    let msgs = exchange(
        &mut ws,
        user(vec![
            create(2, 1, json!({"path": "qty", "priority": "low"})),
            create(3, 1, json!({"path": "price", "priority": "high"})),
            path(4, 1, "name"),
            create(
                5,
                1,
                json!({"path": "total()", "access": "r", "priority": "high"}),
            ),
        ]),
    )
    .await;
    let order: Vec<i64> = values(&msgs).into_iter().map(|(id, _)| id).collect();
    assert_eq!(order.len(), 4, "{msgs:?}");
    let rank = |id: i64| match id {
        3 | 5 => 0,
        4 => 1,
        _ => 2,
    };
    assert!(
        order.windows(2).all(|w| rank(w[0]) <= rank(w[1])),
        "values high → medium → low: {order:?}"
    );
    // A property suffix sets that property's own priority: the low label comes after the
    // medium value of `name`, in a second update of variable 4.
    let msgs = exchange(
        &mut ws,
        user(vec![
            msg(
                "update",
                json!({"varId": 4, "properties": {"label:low": "Name"}}),
            ),
            write(4, json!("zed")),
        ]),
    )
    .await;
    let value_at = msgs
        .iter()
        .position(|m| m["data"]["varId"] == 4 && m["data"].get("value").is_some())
        .expect("the value of 4");
    let label_at = msgs
        .iter()
        .position(|m| m["data"]["varId"] == 4 && m["data"]["properties"]["label"] == "Name")
        .expect("the label of 4");
    assert!(value_at < label_at, "{msgs:?}");
}

#[tokio::test]
async fn get_and_get_objects_answer_snapshots() {
    let (_broker, _id, mut ws) = start(&[]).await;
    exchange(&mut ws, path(2, 1, "qty")).await;
    let msgs = exchange(&mut ws, msg("get", json!({"varIds": [1, 2]}))).await;
    let vars = &msgs.iter().find(|m| m["type"] == "get").unwrap()["data"]["variables"];
    assert_eq!(vars[0]["id"], 1);
    assert_eq!(vars[0]["properties"]["type"], "Shop");
    assert_eq!(vars[1]["id"], 2);
    assert_eq!(vars[1]["value"], 3);
    let obj = vars[0]["value"]["obj"].as_i64().unwrap();

    let msgs = exchange(&mut ws, msg("getObjects", json!({"objIds": [obj]}))).await;
    let o = &msgs.iter().find(|m| m["type"] == "getObjects").unwrap()["data"]["objects"][0];
    assert_eq!(o["obj"], obj);
    assert_eq!(o["value"]["qty"], 3);
    assert_eq!(o["value"]["name"], "ann");
    assert!(
        o["value"]["child"]["obj"].is_i64(),
        "nested tables are references"
    );
    assert_eq!(o["value"]["items"], json!(["a", "b", "c"]));
    let methods: Vec<&str> = o["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    for m in ["bump", "fail", "setName", "total"] {
        assert!(methods.contains(&m), "method {m} in {methods:?}");
    }
    // An object nobody has seen: not-found.
    let msgs = exchange(&mut ws, msg("getObjects", json!({"objIds": [987654]}))).await;
    assert_eq!(errors(&msgs)[0].1, "not-found", "{msgs:?}");
}

// ---- frames ---------------------------------------------------------------------------------

#[tokio::test]
async fn all_three_frame_shapes_are_accepted() {
    let (_broker, _id, mut ws) = start(&[]).await;
    // {"userEvent", "messages"}
    let msgs = exchange(&mut ws, user(vec![path(2, 1, "qty")])).await;
    assert_eq!(value_of(&msgs, 2), 3);
    // A bare array.
    let msgs = exchange(&mut ws, json!([path(3, 1, "price"), path(4, 1, "name")])).await;
    assert_eq!(
        (value_of(&msgs, 3), value_of(&msgs, 4)),
        (json!(2), json!("ann"))
    );
    // One message object.
    let msgs = exchange(&mut ws, path(5, 1, "bumps")).await;
    assert_eq!(value_of(&msgs, 5), 0);
    // userEvent false is answered as well (possibly debounced).
    let msgs = exchange(
        &mut ws,
        json!({"userEvent": false, "messages": [path(6, 1, "child.age")]}),
    )
    .await;
    assert_eq!(value_of(&msgs, 6), 7);
}

#[tokio::test]
async fn malformed_json_is_a_bad_request_and_the_socket_stays_usable() {
    let (_broker, _id, mut ws) = start(&[]).await;
    for bad in [
        "{nope",
        "42",
        r#"{"messages": 5}"#,
        r#"{"userEvent": "yes", "messages": []}"#,
    ] {
        ws_send_text(&mut ws, bad).await;
        let msgs = sync(&mut ws).await;
        let description = the_error(&msgs, None, "bad-request");
        assert!(!description.is_empty());
    }
    let msgs = exchange(&mut ws, path(2, 1, "qty")).await;
    assert_eq!(value_of(&msgs, 2), 3);
}

#[tokio::test]
async fn an_unknown_message_type_is_refused_alone() {
    let (_broker, _id, mut ws) = start(&[]).await;
    let msgs = exchange(
        &mut ws,
        user(vec![
            msg("frobnicate", json!({"varId": 7})),
            msg("watch", json!({})),
            path(2, 1, "qty"),
        ]),
    )
    .await;
    let errs = errors(&msgs);
    assert_eq!(errs.len(), 2, "{msgs:?}");
    assert_eq!((errs[0].0, errs[0].1.as_str()), (Some(7), "bad-request"));
    assert!(errs[0].2.contains("frobnicate"), "{}", errs[0].2);
    assert_eq!(errs[1].1, "bad-request", "watch without varId");
    assert_eq!(value_of(&msgs, 2), 3, "the rest of the frame is handled");
}

#[tokio::test]
async fn a_2_mib_frame_is_a_limit_error_and_the_socket_stays_usable() {
    let (_broker, _id, mut ws) = start(&[]).await;
    let big = json!([msg(
        "update",
        json!({"varId": 1, "value": "x".repeat(2 * 1024 * 1024)})
    )]);
    send(&mut ws, big).await;
    let msgs = sync(&mut ws).await;
    let description = the_error(&msgs, None, "limit");
    assert!(description.contains("limit"), "{description}");
    let msgs = exchange(&mut ws, path(2, 1, "qty")).await;
    assert_eq!(value_of(&msgs, 2), 3);
}

async fn ws_send_text(ws: &mut Ws, text: &str) {
    use futures_util::SinkExt;
    ws.send(tungstenite::Message::Text(text.to_string().into()))
        .await
        .unwrap();
}

// ---- error codes ----------------------------------------------------------------------------

#[tokio::test]
async fn unknown_variables_are_not_found() {
    let (_broker, _id, mut ws) = start(&[]).await;
    for (m, id) in [
        (msg("watch", json!({"varId": 99})), 99),
        (write(98, json!(1)), 98),
        (msg("destroy", json!({"varId": 97})), 97),
        (path(2, 96, "qty"), 2),
    ] {
        let msgs = exchange(&mut ws, m).await;
        the_error(&msgs, Some(id), "not-found");
    }
}

#[tokio::test]
async fn a_path_that_cannot_be_followed_is_a_path_failure() {
    let (_broker, _id, mut ws) = start(&[]).await;
    let msgs = exchange(&mut ws, path(2, 1, "missing.field")).await;
    let description = the_error(&msgs, Some(2), "path-failure");
    assert!(description.contains("nil"), "{description}");
    let msgs = exchange(&mut ws, path(3, 1, "nosuchmethod()")).await;
    the_error(&msgs, Some(3), "path-failure");
}

#[tokio::test]
async fn access_violations_are_bad_access() {
    let (_broker, _id, mut ws) = start(&[]).await;
    let msgs = exchange(
        &mut ws,
        user(vec![
            create(2, 1, json!({"path": "qty", "access": "r"})),
            write(2, json!(9)),
        ]),
    )
    .await;
    the_error(&msgs, Some(2), "bad-access");
    let msgs = exchange(
        &mut ws,
        create(3, 1, json!({"path": "total()", "access": "w"})),
    )
    .await;
    the_error(&msgs, Some(3), "bad-access");
    let msgs = exchange(
        &mut ws,
        create(4, 1, json!({"path": "setName(_)", "access": "r"})),
    )
    .await;
    the_error(&msgs, Some(4), "bad-access");
    // Variable 1 is the app's, not the tab's.
    let msgs = exchange(&mut ws, msg("destroy", json!({"varId": 1}))).await;
    the_error(&msgs, Some(1), "bad-access");
    // Nothing was written.
    let msgs = exchange(&mut ws, path(5, 1, "qty")).await;
    assert_eq!(value_of(&msgs, 5), 3);
}

#[tokio::test]
async fn a_lua_error_in_an_action_is_reported_and_the_frame_goes_on() {
    let (_broker, _id, mut ws) = start(&[]).await;
    let msgs = exchange(
        &mut ws,
        user(vec![
            create(2, 1, json!({"path": "fail()", "access": "action"})),
            write(2, Json::Null),
            path(3, 1, "qty"),
        ]),
    )
    .await;
    let description = the_error(&msgs, Some(2), "lua-error");
    assert!(description.contains("boom in fail"), "{description}");
    assert_eq!(value_of(&msgs, 3), 3, "the rest of the frame was handled");
    // The session carries on.
    let msgs = exchange(&mut ws, write(3, json!(8))).await;
    assert_eq!(value_of(&msgs, 3), 8);
}

// ---- tabs and sessions ----------------------------------------------------------------------

#[tokio::test]
async fn two_tabs_of_one_session_keep_their_variables_apart() {
    let (broker, id, mut a) = start(&["--debug-pages"]).await;
    let mut b = connect(&broker, &id).await;
    // The same ids in both tabs name different variables.
    let msgs = exchange(
        &mut a,
        user(vec![
            path(2, 1, "qty"),
            create(3, 1, json!({"path": "bump()", "access": "action"})),
        ]),
    )
    .await;
    assert_eq!(value_of(&msgs, 2), 3);
    let msgs = exchange(
        &mut b,
        user(vec![
            path(2, 1, "name"),
            path(3, 1, "qty"),
            create(4, 1, json!({"path": "bump()", "access": "action"})),
        ]),
    )
    .await;
    assert_eq!(value_of(&msgs, 2), "ann");

    // A's destroy of its 2 is A's alone.
    let msgs = exchange(&mut a, msg("destroy", json!({"varId": 2}))).await;
    assert_eq!(destroys(&msgs), [2]);
    assert!(
        sync(&mut b).await.is_empty(),
        "B hears nothing of A's destroy"
    );
    let msgs = exchange(&mut b, msg("get", json!({"varIds": [2]}))).await;
    let got = msgs.iter().find(|m| m["type"] == "get").unwrap();
    assert_eq!(got["data"]["variables"][0]["value"], "ann");

    // A calls bump: B, which watches qty, is told.
    exchange(&mut a, user(vec![write(3, Json::Null)])).await;
    let msgs = sync(&mut b).await;
    assert_eq!(value_of(&msgs, 3), 4);

    // A disconnects: its variables go, B's stay and keep updating.
    let vars = broker.variables(&id).await;
    let tab_of = |path: &str| {
        vars.iter()
            .find(|v| v["path"] == path)
            .unwrap_or_else(|| panic!("no variable with path {path}: {vars:?}"))["tab"]
            .clone()
    };
    let tab_b = tab_of("name");
    assert!(tab_b.is_u64());
    drop(a);
    let start = std::time::Instant::now();
    loop {
        let vars = broker.variables(&id).await;
        let foreign: Vec<&Json> = vars
            .iter()
            .filter(|v| !v["tab"].is_null() && v["tab"] != tab_b)
            .collect();
        if foreign.is_empty() {
            assert_eq!(
                vars.iter().filter(|v| v["tab"] == tab_b).count(),
                3,
                "B keeps its three variables: {vars:?}"
            );
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "A's variables outlived A: {foreign:?}"
        );
        // Polling an observable state (the debug view), not synchronising on time.
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let msgs = exchange(&mut b, user(vec![write(4, Json::Null)])).await;
    assert_eq!(value_of(&msgs, 3), 5);
}

#[tokio::test]
async fn two_sessions_side_by_side_do_not_meet() {
    let broker = Broker::with_app(&[("main.lua", APP)], &[]);
    let x_id = broker.create_session().await;
    let y_id = broker.create_session().await;
    let mut x = connect(&broker, &x_id).await;
    let mut y = connect(&broker, &y_id).await;
    for ws in [&mut x, &mut y] {
        let msgs = exchange(
            ws,
            user(vec![
                path(2, 1, "qty"),
                create(3, 1, json!({"path": "bump()", "access": "action"})),
            ]),
        )
        .await;
        assert_eq!(value_of(&msgs, 2), 3);
    }
    let msgs = exchange(&mut x, user(vec![write(3, Json::Null)])).await;
    assert_eq!(value_of(&msgs, 2), 4);
    assert!(sync(&mut y).await.is_empty(), "Y's app did not change");
    // X destroys its 2 and leaves; Y's 2 is untouched and still live.
    let msgs = exchange(&mut x, msg("destroy", json!({"varId": 2}))).await;
    assert_eq!(destroys(&msgs), [2]);
    drop(x);
    let msgs = exchange(&mut y, user(vec![write(3, Json::Null)])).await;
    assert_eq!(value_of(&msgs, 2), 4, "Y counts from its own 3");
}

// ---- HTTP around the socket -------------------------------------------------------------------

async fn upgrade_status(broker: &Broker, id: &str, origin: Option<&str>) -> u16 {
    let mut req = broker.ws_url(id).into_client_request().unwrap();
    if let Some(origin) = origin {
        req.headers_mut()
            .insert("Origin", origin.parse().expect("header value"));
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((_, resp)) => resp.status().as_u16(),
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("WebSocket connect failed without an HTTP answer: {e}"),
    }
}

#[tokio::test]
async fn a_foreign_origin_is_refused_unless_allowed() {
    let broker = Broker::with_app(&[("main.lua", APP)], &[]);
    let id = broker.create_session().await;
    let own = format!("http://{}", broker.addr);
    assert_eq!(upgrade_status(&broker, &id, Some(&own)).await, 101);
    assert_eq!(upgrade_status(&broker, &id, None).await, 101);
    assert_eq!(
        upgrade_status(&broker, &id, Some("http://example.test")).await,
        403
    );
    assert_eq!(
        upgrade_status(&broker, &"0".repeat(32), Some(&own)).await,
        404
    );

    let broker = Broker::with_app(
        &[("main.lua", APP)],
        &["--allow-origin", "http://example.test"],
    );
    let id = broker.create_session().await;
    assert_eq!(
        upgrade_status(&broker, &id, Some("http://example.test")).await,
        101
    );
    assert_eq!(
        upgrade_status(&broker, &id, Some("http://other.test")).await,
        403
    );
}

#[tokio::test]
async fn static_dir_serves_the_frontend_and_nothing_outside_it() {
    let root = tempfile::tempdir().unwrap();
    let site = root.path().join("site");
    std::fs::create_dir(&site).unwrap();
    std::fs::write(site.join("index.html"), "<p>custom frontend</p>").unwrap();
    std::fs::write(site.join("app.js"), "console.log('frontend');").unwrap();
    std::fs::write(root.path().join("secret"), "TOP SECRET").unwrap();
    let broker = Broker::with_app(&[("main.lua", APP)], &["--static", site.to_str().unwrap()]);
    let id = broker.create_session().await;

    let page = broker.session_page(&id).await;
    assert_eq!(page.text().await.unwrap(), "<p>custom frontend</p>");

    let js = client().get(broker.url("/app.js")).send().await.unwrap();
    assert_eq!(js.status().as_u16(), 200);
    let content_type = js.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.contains("javascript"), "{content_type}");
    assert_eq!(js.text().await.unwrap(), "console.log('frontend');");

    for target in [
        "/../secret",
        "/%2e%2e/secret",
        "/%2E%2E/secret",
        "/app.js/../../secret",
        "/..%2fsecret",
    ] {
        let (status, body) = raw_get(&broker.addr, target).await;
        assert_ne!(status, 200, "{target} answered 200: {body}");
        assert!(!body.contains("TOP SECRET"), "{target} leaked the file");
    }
    let missing = client().get(broker.url("/nope.js")).send().await.unwrap();
    assert_eq!(missing.status().as_u16(), 404);
}

#[tokio::test]
async fn debug_pages_list_variables_only_when_enabled() {
    let (broker, id, mut ws) = start(&["--debug-pages"]).await;
    exchange(&mut ws, user(vec![path(2, 1, "child"), path(3, 2, "name")])).await;
    let vars = broker.variables(&id).await;
    let by_id = |want: i64| {
        vars.iter()
            .find(|v| v["id"] == want)
            .unwrap_or_else(|| panic!("no variable {want}: {vars:?}"))
            .clone()
    };
    let app = by_id(1);
    assert!(app["value"]["obj"].is_i64());
    assert!(app["parentId"].is_null());
    assert_eq!(app["properties"]["type"], "Shop");
    assert!(app["childIds"].as_array().unwrap().contains(&json!(2)));
    let child = by_id(2);
    assert_eq!(child["parentId"], 1);
    assert_eq!(child["path"], "child");
    assert_eq!(child["properties"]["path"], "child");
    assert_eq!(child["childIds"], json!([3]));
    let name = by_id(3);
    assert_eq!(
        (name["parentId"].clone(), name["value"].clone()),
        (json!(2), json!("kid"))
    );

    let html = client()
        .get(broker.url(&format!("/{id}/variables")))
        .send()
        .await
        .unwrap();
    assert_eq!(html.status().as_u16(), 200);
    assert!(html.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let text = html.text().await.unwrap();
    assert!(text.contains("child") && text.contains("kid"), "{text}");

    // Without the flag both are 404.
    let (plain, plain_id, _ws) = start(&[]).await;
    for sub in ["variables", "variables.json"] {
        let resp = client()
            .get(plain.url(&format!("/{plain_id}/{sub}")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status().as_u16(),
            404,
            "/{{id}}/{sub} without --debug-pages"
        );
    }
}
