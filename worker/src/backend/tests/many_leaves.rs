//! Change detection over many watched leaves (`f.N.v`): the pass settles unchanged ones in
//! bulk, so these check that every kind of change still reaches the tab, once, and that Lua
//! code a pass runs is seen by the variables after it.

use super::*;

const LEAVES: i64 = 200;

/// An app with `LEAVES` items `{v = 0}` in `app.f`, and tab 1 watching `f.N.v` for each (ids
/// 10…); the initial updates are consumed.
fn many_leaves(extra: &str) -> TestSession {
    let app = format!(
        r#"
        local f = {{}}
        for i = 1, {LEAVES} do f[i] = {{v = 0}} end
        app = {{f = f, n = 0}}
        {extra}
        session:createAppVariable(app)
        "#
    );
    let mut t = TestSession::new(&app);
    let creates = (0..LEAVES).map(|i| create(10 + i, 1, &format!("f.{i}.v")));
    let first = t.send(1, creates.collect());
    assert_eq!(first.len(), LEAVES as usize, "one full update per leaf");
    t
}

#[test]
fn each_kind_of_change_among_many_unchanged_leaves_is_reported_once() {
    let mut t = many_leaves("");
    assert!(t.run("").is_empty(), "nothing changed, nothing sent");
    let batches = t.run(
        r#"
        app.f[3].v = 1            -- an integer
        app.f[50].v = 0.5         -- a float
        app.f[51].v = 'ab'        -- a string
        app.f[120] = {v = 7}      -- a new table on the way
        app.f[199].v = nil        -- gone
        "#,
    );
    assert_eq!(
        for_tab(&batches, 1),
        vec![
            value(12, Value::Int(1)),
            value(59, Value::Float(0.5)),
            value(60, s("ab")),
            value(129, Value::Int(7)),
            value(208, Value::Null),
        ]
    );
    // Same-length strings, an integer that becomes the same number as a float.
    let batches = t.run("app.f[51].v = 'ba'; app.f[3].v = 1.0");
    assert_eq!(
        for_tab(&batches, 1),
        vec![value(12, Value::Float(1.0)), value(60, s("ba"))]
    );
    assert!(t.run("").is_empty(), "and then nothing again");
}

#[test]
fn a_leaf_that_comes_from_index_follows_its_source() {
    // Item 7 has no `v` of its own: it reads its prototype's through `__index`, nil at first,
    // as a raw read of the item would be every time.
    let mut t = many_leaves("proto = {}; f[7] = setmetatable({}, {__index = proto})");
    let batches = t.run("proto.v = 'set'");
    assert_eq!(for_tab(&batches, 1), vec![value(16, s("set"))]);
    let batches = t.run("proto.v = nil");
    assert_eq!(for_tab(&batches, 1), vec![value(16, Value::Null)]);
}

#[test]
fn lua_code_a_pass_runs_is_seen_by_the_variables_after_it() {
    // `tick()` bumps `n` each time it is computed; `n` is watched after it, among leaves.
    let mut t = many_leaves("function app:tick() self.n = self.n + 1; return self.n end");
    t.send(1, vec![create(2, 1, "tick()"), create(3, 1, "n")]);
    let n: i64 = t.eval("return app.n");
    for k in n + 1..n + 4 {
        let batches = t.run("");
        assert_eq!(
            for_tab(&batches, 1),
            vec![value(2, Value::Int(k)), value(3, Value::Int(k))],
            "the pass that computed tick() reports the n it left"
        );
    }
}

#[test]
fn long_paths_and_method_calls_among_leaves_still_report_changes() {
    // Nine steps (longer than a bulk-settled path may be), and a getter on the way.
    let mut t = many_leaves(
        "app.deep = {a = {b = {c = {d = {e = {f = {g = {h = {i = 1}}}}}}}}}
         function app:item() return self.f[2] end",
    );
    t.send(
        1,
        vec![
            create(2, 1, "deep.a.b.c.d.e.f.g.h.i"),
            create(3, 1, "item().v"),
        ],
    );
    let batches = t.run("app.deep.a.b.c.d.e.f.g.h.i = 2; app.f[2].v = 'x'");
    assert_eq!(
        for_tab(&batches, 1),
        vec![value(11, s("x")), value(2, Value::Int(2)), value(3, s("x"))]
    );
}
