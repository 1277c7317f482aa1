//! `session:prototype`, `session:create`, `EMPTY`, and prototype mutations on re-declaration.

use crate::harness::App;

#[test]
fn a_first_declaration_makes_init_the_prototype() {
    let app = App::new(&[(
        "main.lua",
        r#"
        local init = {name = "", count = 0, tag = EMPTY}
        Person = session:prototype("Person", init)
        assert(Person == init, "the prototype is init itself")
        assert(Person.type == "Person")
        assert(rawget(Person, "__index") == Person)
        assert(getmetatable(Person) == nil, "no base, no metatable")
        assert(type(Person.new) == "function", "a default new")
        assert(rawget(Person, "tag") == nil, "EMPTY fields start nil")

        local ann = Person:new({name = "Ann"})
        assert(getmetatable(ann) == Person)
        assert(ann.name == "Ann" and ann.count == 0 and ann.tag == nil and ann.type == "Person")
        local blank = Person:new()
        assert(getmetatable(blank) == Person and blank.name == "" and blank ~= ann)

        local made = session:prototype("Bare")
        assert(made.type == "Bare" and rawget(made, "__index") == made)
        "#,
    )]);
    app.run_main().unwrap();
    assert_eq!(
        app.api.prototypes().declared_fields("Person").unwrap(),
        ["count", "name", "tag"],
        "EMPTY fields are declared fields"
    );
    assert!(app.api.prototypes().declared_fields("Nobody").is_none());
}

#[test]
fn base_is_the_metatable_and_an_own_new_is_kept() {
    let app = App::new(&[(
        "main.lua",
        r#"
        Base = session:prototype("Base", {kind = "base"})
        function Base:hello() return "hello " .. self.kind end
        local function ownNew(self, inst)
            local o = session:create(self, inst)
            o.made = true
            return o
        end
        Derived = session:prototype("app.Derived", {extra = 1, new = ownNew}, Base)
        assert(getmetatable(Derived) == Base)
        assert(Derived.new == ownNew, "an own new is not replaced")
        assert(Derived.type == "app.Derived", "dotted names are plain registry keys")
        local d = Derived:new({})
        assert(d.made and d.extra == 1 and d:hello() == "hello base")
        assert(d.type == "app.Derived")
        "#,
    )]);
    app.run_main().unwrap();
}

#[test]
fn the_registry_never_consults_globals() {
    let app = App::new(&[(
        "main.lua",
        r#"
        Widget = {fake = true}
        local w = session:prototype("Widget", {size = 1})
        assert(w ~= Widget and w.fake == nil, "a global of the same name is not the prototype")
        Widget = nil
        local again = session:prototype("Widget", {size = 1})
        assert(again == w, "re-declaring finds the registered prototype")
        "#,
    )]);
    app.run_main().unwrap();
}

#[test]
fn create_sets_the_metatable_and_returns_the_instance() {
    let app = App::new(&[(
        "main.lua",
        r#"
        P = session:prototype("P", {v = 1})
        local raw = {own = true}
        local inst = session:create(P, raw)
        assert(inst == raw and getmetatable(inst) == P and inst.v == 1)
        local fresh = session:create(P)
        assert(getmetatable(fresh) == P)
        -- A plain table works as a metatable too; it is just not tracked.
        local plain = {__index = {x = 5}}
        assert(session:create(plain, {}).x == 5)
        assert(not pcall(session.create, session, nil), "a prototype is required")
        "#,
    )]);
    app.run_main().unwrap();
}

#[test]
fn empty_is_a_unique_inert_marker() {
    let app = App::new(&[(
        "main.lua",
        r#"
        assert(EMPTY ~= nil and EMPTY ~= false and type(EMPTY) == "table")
        assert(tostring(EMPTY) == "EMPTY")
        assert(EMPTY ~= {} and next(EMPTY) == nil)
        assert(not pcall(function() EMPTY.x = 1 end), "EMPTY holds no fields")
        assert(getmetatable(EMPTY) == false, "its metatable is locked")
        "#,
    )]);
    app.run_main().unwrap();
}

/// The model file of the reload tests; `{fields}` is the init table.
fn model(fields: &str) -> String {
    format!(
        r#"
        Item = session:prototype("Item", {fields})
        function Item:describe() return "item " .. tostring(self.name) end
        function Item:mutate(inst)
            mutations[#mutations + 1] = inst.name
            if inst.name == "bad" then error("cannot mutate bad") end
            inst.size = (inst.old or 0) * 2
        end
        "#
    )
}

const MAIN_WITH_ITEMS: &str = r#"
    mutations = {}
    require("model")
    original = Item
    items = {
        Item:new({name = "a", old = 1}),
        Item:new({name = "bad", old = 2}),
        Item:new({name = "c", old = 3}),
    }
    items[1].spare = "kept by a"
"#;

#[test]
fn redeclaring_updates_in_place_and_instances_inherit_new_defaults() {
    let app = App::new(&[
        ("main.lua", MAIN_WITH_ITEMS),
        (
            "model.lua",
            &model(r#"{name = "", old = 0, colour = "red", spare = EMPTY}"#),
        ),
    ]);
    app.run_main().unwrap();
    app.check(r#"assert(items[2].colour == "red" and #mutations == 0)"#);

    app.write(
        "model.lua",
        &model(r#"{name = "", colour = "blue", size = 0, extra = "new"}"#),
    );
    app.reload("model.lua").unwrap();
    app.check(
        r#"
        assert(Item == original, "the prototype keeps its identity")
        for _, it in ipairs(items) do
            assert(getmetatable(it) == Item)
            assert(it.colour == "blue" and it.extra == "new", "new defaults are inherited")
            assert(it:describe() == "item " .. it.name, "methods survive the reload")
        end
        assert(rawget(Item, "old") == nil, "a removed default leaves the prototype")
        assert(rawget(Item, "spare") == nil)
        "#,
    );
}

#[test]
fn mutate_runs_per_live_instance_despite_one_failure_then_removed_fields_go() {
    let app = App::new(&[
        ("main.lua", MAIN_WITH_ITEMS),
        (
            "model.lua",
            &model(r#"{name = "", old = 0, spare = EMPTY}"#),
        ),
    ]);
    app.run_main().unwrap();
    app.write("model.lua", &model(r#"{name = "", size = 0}"#));
    app.reload("model.lua").unwrap();
    app.check(
        r#"
        -- Every live instance, in creation order, the failing one included.
        assert(table.concat(mutations, ",") == "a,bad,c", table.concat(mutations, ","))
        -- mutate ran before the removed fields were niled (it read `old`).
        assert(items[1].size == 2 and items[3].size == 6)
        assert(rawget(items[2], "size") == nil, "the failed mutate changed nothing")
        for _, it in ipairs(items) do
            assert(rawget(it, "old") == nil, "removed fields are niled on every instance")
        end
        assert(rawget(items[1], "spare") == nil, "a removed EMPTY field is niled too")
        "#,
    );
}

#[test]
fn an_unchanged_declaration_queues_nothing() {
    let fields =
        r#"{name = "", old = 0, tags = {"x", "y"}, label = function() end, spare = EMPTY}"#;
    let app = App::new(&[("main.lua", MAIN_WITH_ITEMS), ("model.lua", &model(fields))]);
    app.run_main().unwrap();
    app.reload("model.lua").unwrap();
    app.check(
        r#"
        assert(#mutations == 0, "same fields, equal values: no mutation")
        assert(items[1].old == 1 and items[1].spare == "kept by a")
        "#,
    );
}

#[test]
fn redeclaring_twice_in_one_load_merges_the_removed_fields() {
    let app = App::new(&[(
        "main.lua",
        r#"
        P = session:prototype("P", {a = 1, b = 2, c = 3})
        mutated = 0
        function P:mutate() mutated = mutated + 1 end
        p = P:new({a = "A", b = "B", c = "C"})
        session:prototype("P", {a = 1, b = 2})
        session:prototype("P", {a = 1, c = 3})
        assert(mutated == 0, "mutations wait for the end of the load")
        "#,
    )]);
    app.run_main().unwrap();
    app.check(
        r#"
        assert(mutated == 1, "one mutation per prototype and load")
        assert(p.a == "A" and p.c == "C", "a field declared again is kept")
        assert(rawget(p, "b") == nil, "b was removed")
        "#,
    );
}

#[test]
fn collected_instances_are_skipped() {
    let app = App::new(&[(
        "main.lua",
        r#"
        P = session:prototype("P", {v = 1})
        seen = 0
        function P:mutate(inst) seen = seen + 1 end
        keep = P:new()
        for i = 1, 20 do P:new() end
        collectgarbage()
        collectgarbage()
        session:prototype("P", {v = 2})
        "#,
    )]);
    app.run_main().unwrap();
    assert_eq!(app.eval::<i64>("return seen"), 1, "only the live instance");
}
