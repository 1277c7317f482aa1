//! ui-engine apps, unmodified, over the real executable: the `--dir` site layout (frontend,
//! Lua and viewdefs from one directory, symlinks followed only inside it), and
//! `examples/contacts`, a contact manager written the way ui-engine's showcase is (domain
//! objects, a presenter per row through `itemWrapper`, a search field, add / edit / delete
//! through actions), driven over the WebSocket the way ui-engine's frontend drives it.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{json, Value as Json};

fn user(messages: Vec<Json>) -> Json {
    json!({"userEvent": true, "messages": messages})
}

fn path(id: i64, parent: i64, path: &str) -> Json {
    msg(
        "create",
        json!({"id": id, "parentId": parent, "properties": {"path": path}}),
    )
}

fn write(id: i64, value: Json) -> Json {
    msg("update", json!({"varId": id, "value": value}))
}

/// An action variable and the write that calls it.
fn act(id: i64, parent: i64, method: &str) -> [Json; 2] {
    [
        msg(
            "create",
            json!({"id": id, "parentId": parent, "nowatch": true,
                   "properties": {"path": method, "access": "action"}}),
        ),
        write(id, Json::Null),
    ]
}

/// The value last sent for `id`, if any.
fn last(msgs: &[Json], id: i64) -> Option<Json> {
    msgs.iter()
        .rev()
        .filter(|m| m["type"] == "update" && m["data"]["varId"] == id)
        .find_map(|m| m["data"].get("value").cloned())
}

fn refs(v: Option<Json>) -> Vec<i64> {
    match v {
        Some(Json::Array(items)) => items.iter().map(|i| i["obj"].as_i64().unwrap()).collect(),
        other => panic!("not an array of references: {other:?}"),
    }
}

/// The template keys that reached the tab.
fn viewdef_keys(msgs: &[Json]) -> Vec<String> {
    let mut keys: Vec<String> = msgs
        .iter()
        .filter(|m| m["data"]["varId"] == 1)
        .filter_map(|m| m["data"]["properties"]["viewdefs"].as_str())
        .flat_map(|text| {
            let map: serde_json::Map<String, Json> = serde_json::from_str(text).unwrap();
            map.keys().cloned().collect::<Vec<_>>()
        })
        .collect();
    keys.sort();
    keys
}

/// A readable copy of `examples/<name>` (see `common::readable_copy`).
fn example(name: &str) -> tempfile::TempDir {
    readable_copy(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples")
            .join(name),
    )
}

#[tokio::test]
async fn the_contact_manager_lists_searches_adds_edits_and_deletes() {
    let dir = example("contacts");
    let broker = Broker::start(&["--dir", dir.path().to_str().unwrap()]);
    let id = broker.create_session().await;
    let mut ws = connect(&broker, &id).await;

    // What ui-engine's frontend creates for
    // ui-view="visible()?wrapper=lua.ViewList&itemWrapper=ContactRow": the list, its items,
    // a view per row (the frontend copies itemWrapper onto it as `wrapper`) and the row's
    // fields under `item`.
    let msgs = exchange(
        &mut ws,
        user(vec![
            msg("watch", json!({"varId": 1})),
            path(
                2,
                1,
                "visible()?wrapper=lua.ViewList&itemWrapper=ContactRow&access=r",
            ),
            path(3, 2, "items?access=r"),
            path(4, 3, "0?wrapper=ContactRow"),
            path(5, 4, "item.name()?access=r"),
            path(6, 4, "item.noPhone()?access=r"),
            path(7, 3, "1?wrapper=ContactRow"),
            path(8, 7, "item.noPhone()?access=r"),
            path(9, 1, "count()?access=r"),
            path(10, 1, "search"),
            path(11, 4, "item?access=r"),
        ]),
    )
    .await;
    let keys = viewdef_keys(&msgs);
    for want in [
        "AddressBook.DEFAULT",
        "lua.ViewList.DEFAULT",
        "lua.ViewListItem.list-item",
        "ContactRow.list-item",
    ] {
        assert!(keys.iter().any(|k| k == want), "{want} not in {keys:?}");
    }
    let list = msgs
        .iter()
        .find(|m| {
            m["data"]["varId"] == 2 && m["data"]["properties"]["fallbackNamespace"].is_string()
        })
        .expect("fallbackNamespace");
    assert_eq!(list["data"]["properties"]["fallbackNamespace"], "list-item");
    let typed = msgs
        .iter()
        .find(|m| m["data"]["varId"] == 2 && m["data"]["properties"]["type"].is_string())
        .unwrap();
    assert_eq!(typed["data"]["properties"]["type"], "lua.ViewList");
    let type_of = |id: i64| {
        msgs.iter()
            .find_map(|m| {
                (m["data"]["varId"] == id).then(|| m["data"]["properties"]["type"].clone())
            })
            .filter(Json::is_string)
    };
    assert_eq!(type_of(4), Some(json!("lua.ViewListItem")));
    assert_eq!(
        type_of(11),
        Some(json!("ContactRow")),
        "the row's presenter"
    );
    let start = refs(last(&msgs, 3));
    assert_eq!(start.len(), 3);
    assert_eq!(last(&msgs, 5), Some(json!("Ada Lovelace")));
    assert_eq!(last(&msgs, 6), Some(json!(false)));
    assert_eq!(last(&msgs, 8), Some(json!(true)), "Grace has no phone");
    assert_eq!(last(&msgs, 9), Some(json!(3)));

    // Add a contact through the form's actions: a fourth item, the first three unchanged,
    // and its presenter's fields reach the tab.
    let mut frame = act(20, 1, "newContact()").to_vec();
    frame.extend([
        path(21, 1, "formFirst"),
        path(22, 1, "formLast"),
        path(23, 1, "formEmail"),
        write(21, json!("Edsger")),
        write(22, json!("Dijkstra")),
        write(23, json!("ewd@example.org")),
    ]);
    frame.extend(act(24, 1, "save()"));
    let msgs = exchange(&mut ws, user(frame)).await;
    let added = refs(last(&msgs, 3));
    assert_eq!(added.len(), 4);
    assert_eq!(added[..3], start[..]);
    assert_eq!(last(&msgs, 9), Some(json!(4)));
    let msgs = exchange(
        &mut ws,
        user(vec![
            path(30, 3, "3?wrapper=ContactRow"),
            path(31, 30, "item.name()?access=r"),
            path(32, 30, "item.email()?access=r"),
        ]),
    )
    .await;
    assert_eq!(last(&msgs, 31), Some(json!("Edsger Dijkstra")));
    assert_eq!(last(&msgs, 32), Some(json!("ewd@example.org")));

    // Search: the list shrinks to the matches, the first row now shows Alan.
    let msgs = exchange(&mut ws, user(vec![write(10, json!("TUR"))])).await;
    assert_eq!(refs(last(&msgs, 3)), start[..1]);
    assert_eq!(last(&msgs, 5), Some(json!("Alan Turing")));
    assert_eq!(last(&msgs, 9), Some(json!(1)));
    // The frontend destroys the views of rows that went; then the search is cleared.
    let mut frame = vec![
        msg("destroy", json!({"varId": 7})),
        msg("destroy", json!({"varId": 30})),
    ];
    frame.push(write(10, json!("")));
    let msgs = exchange(&mut ws, user(frame)).await;
    assert_eq!(refs(last(&msgs, 3)).len(), 4);
    assert_eq!(last(&msgs, 5), Some(json!("Ada Lovelace")));

    // Edit the first row through its presenter's action, then save: its name changes.
    let mut frame = act(40, 4, "item.edit()").to_vec();
    frame.extend([write(21, json!("Augusta Ada"))]);
    frame.extend(act(41, 1, "save()"));
    let msgs = exchange(&mut ws, user(frame)).await;
    assert_eq!(last(&msgs, 5), Some(json!("Augusta Ada Lovelace")));

    // Delete the first row through its presenter: one item fewer, the first row is Grace.
    let msgs = exchange(&mut ws, user(act(42, 4, "item.delete()").to_vec())).await;
    assert_eq!(refs(last(&msgs, 3)).len(), 3);
    assert_eq!(last(&msgs, 5), Some(json!("Grace Hopper")));
    assert_eq!(last(&msgs, 9), Some(json!(3)));
    assert!(
        !msgs.iter().any(|m| m["type"] == "error"),
        "no errors: {msgs:?}"
    );
}

/// A site as `ui-engine serve --dir` reads it, with symlinks inside and outside it.
fn site() -> tempfile::TempDir {
    let top = tempfile::tempdir().unwrap();
    let site = top.path().join("site");
    let write = |rel: &str, text: &str| {
        let p = site.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write(
        "lua/main.lua",
        "local shared = require('shared')
         local ok, err = pcall(require, 'outside')
         session:createAppVariable({type = 'Home', greeting = shared.greeting,
                                    outside = ok and 'loaded' or tostring(err)})",
    );
    write(
        "common/shared.lua",
        "return {greeting = 'hello from a symlink'}",
    );
    write(
        "viewdefs/Home.DEFAULT.html",
        "<template><p ui-value=\"greeting\"></p></template>",
    );
    write("html/index.html", "<p>site frontend</p>");
    write("assets/app.js", "console.log('site');");
    std::fs::write(top.path().join("secret.txt"), "TOP SECRET").unwrap();
    std::fs::write(top.path().join("outside.lua"), "return 'escaped'").unwrap();
    let link =
        |target: PathBuf, rel: &str| std::os::unix::fs::symlink(target, site.join(rel)).unwrap();
    link(site.join("common/shared.lua"), "lua/shared.lua");
    link(top.path().join("outside.lua"), "lua/outside.lua");
    link(site.join("assets/app.js"), "html/app.js");
    link(top.path().join("secret.txt"), "html/secret.txt");
    top
}

#[tokio::test]
async fn dir_serves_a_ui_engine_site_and_follows_symlinks_only_inside_it() {
    let top = site();
    let dir = top.path().join("site");
    let broker = Broker::start(&["--dir", dir.to_str().unwrap()]);
    let id = broker.create_session().await;

    // DIR/html is the frontend, and a symlink inside the site is followed.
    let page = broker.session_page(&id).await;
    assert_eq!(page.text().await.unwrap(), "<p>site frontend</p>");
    assert_eq!(
        broker.get("/app.js").await,
        (200, "console.log('site');".into())
    );
    let (status, body) = broker.get("/secret.txt").await;
    assert_eq!(status, 404, "a symlink out of the site is refused");
    assert!(!body.contains("TOP SECRET"));

    // DIR/lua is the app: a module symlinked from inside the site loads, one from outside
    // does not; DIR/viewdefs are its templates.
    let mut ws = connect(&broker, &id).await;
    let msgs = exchange(
        &mut ws,
        user(vec![
            msg("watch", json!({"varId": 1})),
            path(2, 1, "greeting"),
            path(3, 1, "outside"),
        ]),
    )
    .await;
    assert_eq!(last(&msgs, 2), Some(json!("hello from a symlink")));
    let outside = last(&msgs, 3).unwrap();
    assert!(
        outside
            .as_str()
            .unwrap()
            .contains("outside the app directory"),
        "{outside}"
    );
    assert_eq!(viewdef_keys(&msgs), ["Home.DEFAULT"]);

    // --dir and --lua-dir together are refused at start-up.
    let out = std::process::Command::new(BIN)
        .args([
            "--dir",
            dir.to_str().unwrap(),
            "--lua-dir",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--lua-dir"));
}

/// The listing's `X-Passes`, `X-Pass-Median-Ns` and `X-Pass-Max-Ns` headers.
async fn pass_times(broker: &Broker, id: &str) -> (u64, u64, u64) {
    let resp = client()
        .get(broker.url(&format!("/{id}/variables.json")))
        .send()
        .await
        .unwrap();
    let header = |name: &str| -> u64 {
        resp.headers()[name]
            .to_str()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("{name} is a number"))
    };
    (
        header("x-passes"),
        header("x-pass-median-ns"),
        header("x-pass-max-ns"),
    )
}

/// `variables.json` with its `X-Change-Count` header.
async fn listing(broker: &Broker, id: &str, query: &str) -> (u64, Vec<Json>) {
    let resp = client()
        .get(broker.url(&format!("/{id}/variables.json{query}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let count = resp.headers()["x-change-count"]
        .to_str()
        .unwrap()
        .parse()
        .expect("X-Change-Count is a number");
    let body = resp.text().await.unwrap();
    (
        count,
        serde_json::from_str(&body).expect("variables.json is JSON"),
    )
}

fn by_key<'a>(vars: &'a [Json], key: &str) -> &'a Json {
    vars.iter()
        .find(|v| v["key"] == key)
        .unwrap_or_else(|| panic!("no variable {key} in {vars:#?}"))
}

#[tokio::test]
async fn the_variable_browser_shows_types_change_counts_times_and_diagnostics() {
    let dir = example("contacts");
    let broker = Broker::start(&["--dir", dir.path().to_str().unwrap(), "--debug-pages"]);
    let id = broker.create_session().await;
    let mut ws = connect(&broker, &id).await;
    exchange(
        &mut ws,
        user(vec![
            msg("watch", json!({"varId": 1})),
            path(
                2,
                1,
                "visible()?wrapper=lua.ViewList&itemWrapper=ContactRow&access=r",
            ),
            path(3, 2, "items?access=r"),
            path(9, 1, "count()?access=r"),
            path(10, 1, "search"),
        ]),
    )
    .await;
    let (first_count, vars) = listing(&broker, &id, "").await;
    // This tab is tab 1 of the session: its variables are keyed "1:<id>".
    let tab = vars.iter().find(|v| v["id"] == 2).unwrap()["tab"].clone();
    let key = |n: i64| format!("{tab}:{n}");
    let list = by_key(&vars, &key(2));
    assert_eq!(list["type"], "lua.ViewList");
    assert_eq!(list["luaType"], "table");
    assert!(list["baseValue"].is_array(), "the wrapped array: {list}");
    assert_eq!(list["changeCount"], 0);
    assert_eq!(list["depth"], 1);
    assert_eq!(list["active"], true);
    assert!(
        list["computeTime"].is_string(),
        "the first listing turned timing on and ran a pass: {list}"
    );
    assert_eq!(by_key(&vars, &key(3))["parentKey"], key(2));
    assert_eq!(by_key(&vars, "1")["type"], "AddressBook");

    // Two searches: the list and the count change twice, and so does the tracker's count.
    for query in ["TUR", ""] {
        exchange(&mut ws, user(vec![write(10, json!(query))])).await;
    }
    let (count, vars) = listing(&broker, &id, "").await;
    // Every pass is counted and timed, one per turn at least: the two searches and the listing.
    let (passes, median, longest) = pass_times(&broker, &id).await;
    exchange(&mut ws, user(vec![write(10, json!("X"))])).await;
    let (later, _, _) = pass_times(&broker, &id).await;
    assert!(later > passes, "passes {passes} → {later}");
    assert!(
        0 < median && median <= longest,
        "median {median} ns, longest {longest} ns"
    );
    assert_eq!(by_key(&vars, &key(9))["changeCount"], 2);
    assert_eq!(by_key(&vars, &key(3))["changeCount"], 2);
    assert!(count >= first_count + 2, "{first_count} → {count}");
    assert!(
        vars.iter().all(|v| v.get("diags").is_none()),
        "diagnostics are off"
    );

    // ?diag=1: each variable tells what its last computation did.
    let (_, vars) = listing(&broker, &id, "?diag=1").await;
    let diags = by_key(&vars, &key(2))["diags"].as_array().unwrap().clone();
    assert!(
        diags
            .iter()
            .any(|d| d.as_str().unwrap().contains("wrapper lua.ViewList")),
        "{diags:?}"
    );
    let resp = client()
        .get(broker.url(&format!("/{id}/variables.json?diag=lots")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);

    // The page: ui-engine's browser (flat/tree, columns, polling), with the listing inside.
    let page = client()
        .get(broker.url(&format!("/{id}/variables")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.headers()["x-change-count"].to_str().is_ok());
    let html = page.text().await.unwrap();
    for want in [
        "Flat",
        "Tree",
        "Poll",
        "Columns",
        "variable_browser.js",
        "lua.ViewList",
    ] {
        assert!(html.contains(want), "{want} not in the page");
    }
    let (status, script) = broker.get("/_luabroker/variable_browser.js").await;
    assert_eq!(status, 200);
    assert!(script.contains("changeCount") && script.contains("variables.json"));
}

#[tokio::test]
async fn hot_reload_in_a_site_reruns_a_module_outside_lua_and_one_reached_by_a_symlink() {
    let top = tempfile::tempdir().unwrap();
    let site = top.path().join("site");
    let write = |rel: &str, text: &str| {
        let p = site.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    let greeter = |word: &str, mark: &str| {
        format!(
            "Greeter = session:prototype('Greeter', {{word = '{word}'}})
             function Greeter:text() return self.word .. '{mark}' end
             return Greeter"
        )
    };
    // `require("apps.greet.app")` finds DIR/apps/greet/app.lua (DIR/lua has no such file),
    // as ui-engine's require does; `lua/shout.lua` is a symlink to a file under common/.
    write(
        "lua/main.lua",
        "local Greeter = require('apps.greet.app')
         local app = Greeter:new({})
         -- Looked up on every call: a reload replaces the module in package.loaded.
         function app:loud() return require('shout').up(self:text()) end
         session:createAppVariable(app)",
    );
    write("apps/greet/app.lua", &greeter("hello", "!"));
    write(
        "common/shout.lua",
        "return {up = function(s) return s:upper() end}",
    );
    std::os::unix::fs::symlink(site.join("common/shout.lua"), site.join("lua/shout.lua")).unwrap();

    let broker = Broker::start(&["--dir", site.to_str().unwrap(), "--hotload"]);
    let id = broker.create_session().await;
    let mut ws = connect(&broker, &id).await;
    let msgs = exchange(
        &mut ws,
        user(vec![
            path(2, 1, "text()?access=r"),
            path(3, 1, "loud()?access=r"),
        ]),
    )
    .await;
    assert_eq!(last(&msgs, 2), Some(json!("hello!")));

    // The module under apps/ re-runs: the prototype changes in place, the instance follows.
    write("apps/greet/app.lua", &greeter("bonjour", "?"));
    let update = recv_until(&mut ws, |m| {
        m["type"] == "update" && m["data"]["varId"] == 2 && m["data"]["value"] == "bonjour?"
    })
    .await;
    assert_eq!(update["data"]["value"], "bonjour?");

    // Editing the symlink's target reloads the module that links to it.
    write(
        "common/shout.lua",
        "return {up = function(s) return '<' .. s:upper() .. '>' end}",
    );
    recv_until(&mut ws, |m| {
        m["type"] == "update" && m["data"]["varId"] == 3 && m["data"]["value"] == "<BONJOUR?>"
    })
    .await;
}
