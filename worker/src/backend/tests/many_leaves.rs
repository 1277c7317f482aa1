//! Change detection over many watched leaves (`f.N.v`): the pass settles unchanged ones in
//! bulk, so these check that every kind of change still reaches the tab, once, that Lua code a
//! pass runs is seen by the variables after it, and (a property test) that random edits give a
//! tab exactly what evaluating every variable in full gives.

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

mod same_as_full_evaluation {
    //! Random edits to an app with plain items, items that read through `__index`, nested
    //! tables and values of every scalar type: after each edit, a session whose passes may
    //! settle unchanged leaves in bulk sends exactly what a session that evaluates every
    //! variable in full sends (compute timing on, as the debug pages turn it on, disables the
    //! bulk path).

    use proptest::prelude::*;

    use super::*;

    const ITEMS: usize = 6;

    const APP: &str = r#"
        proto = {v = 'p'}
        local f = {}
        for i = 1, 6 do f[i] = {v = i, w = {x = i}} end
        f[3] = setmetatable({w = {x = 0}}, {__index = proto})
        app = {f = f, n = 0}
        session:createAppVariable(app)
    "#;

    fn scalar() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "0", "1", "2", "1.0", "0.5", "0/0", "'a'", "'b'", "'ab'", "'ba'", "true", "false",
            "nil",
        ])
    }

    /// One edit, as Lua code.
    fn edit() -> impl Strategy<Value = String> {
        let item = 1..=ITEMS;
        prop_oneof![
            (item.clone(), scalar()).prop_map(|(i, v)| format!("app.f[{i}].v = {v}")),
            (item.clone(), scalar()).prop_map(|(i, v)| format!("app.f[{i}].w.x = {v}")),
            (item.clone(), scalar()).prop_map(|(i, v)| format!("app.f[{i}] = {{v = {v}}}")),
            item.clone()
                .prop_map(|i| format!("app.f[{i}] = setmetatable({{}}, {{__index = proto}})")),
            item.clone()
                .prop_map(|i| format!("app.f[{i}].v = {{k = 1}}")),
            (item.clone(), scalar()).prop_map(|(i, v)| format!("app.f[{i}] = {v}")),
            scalar().prop_map(|v| format!("proto.v = {v}")),
            scalar().prop_map(|v| format!("app.n = {v}")),
            Just("app.f = {}".to_string()),
        ]
    }

    fn session(full: bool) -> TestSession {
        let mut t = TestSession::new(APP);
        if full {
            t.backend.tracker().set_debug(None);
        }
        let mut creates = vec![create(2, 1, "n")];
        for i in 0..ITEMS as i64 {
            creates.push(create(10 + i, 1, &format!("f.{i}.v")));
            creates.push(create(20 + i, 1, &format!("f.{i}.w.x")));
            creates.push(create(30 + i, 1, &format!("f.{i}")));
        }
        t.send(1, creates);
        t
    }

    /// Edits that fail (indexing a scalar item, say) are part of the program: both sessions
    /// see the same state either way.
    fn apply(t: &mut TestSession, code: &str) -> Vec<ServerMessage> {
        let _ = t.lua.load(code).exec();
        for_tab(&t.backend.detect_changes(), 1)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn bulk_settling_changes_nothing_a_tab_sees(edits in prop::collection::vec(edit(), 1..12)) {
            let mut quick = session(false);
            let mut full = session(true);
            for code in &edits {
                // Compared as text: a NaN value is not equal to itself.
                let got = format!("{:?}", apply(&mut quick, code));
                let want = format!("{:?}", apply(&mut full, code));
                prop_assert_eq!(got, want, "after {}", code);
            }
        }
    }
}
