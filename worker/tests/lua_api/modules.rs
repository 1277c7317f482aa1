//! Module tracking (ui-engine's `specs/module-tracking.md`): what each file registered,
//! `session:unloadModule` / `session:unloadDirectory`, what hot reload does with them, the
//! default `Object` base, and the older mutation-version calls.

use crate::harness::App;

/// An app whose modules count how often they ran and register a prototype and a class each.
fn app() -> App {
    App::new(&[
        (
            "main.lua",
            r#"
            runs = {}
            contacts = require("contacts")
            util = require("lib.util")
            extra = require("lib.extra")
            "#,
        ),
        (
            "contacts.lua",
            r#"
            runs.contacts = (runs.contacts or 0) + 1
            Contact = session:prototype("Contact", {name = ""})
            ui.registerPresenter("ContactRow", {kind = "row"})
            return {version = runs.contacts}
            "#,
        ),
        (
            "lib/util.lua",
            r#"
            runs.util = (runs.util or 0) + 1
            Util = session:prototype("Util", {})
            ui.registerWrapper("UtilWrapper", {kind = "wrapper"})
            return {version = runs.util}
            "#,
        ),
        (
            "lib/extra.lua",
            r#"
            runs.extra = (runs.extra or 0) + 1
            Extra = session:prototype("Extra", {})
            return {version = runs.extra}
            "#,
        ),
    ])
}

#[test]
fn each_module_owns_what_it_registered() {
    let app = app();
    app.run_main().unwrap();
    let tracking = app.api.tracking();
    assert_eq!(tracking.owned("contacts.lua").prototypes, ["Contact"]);
    assert_eq!(tracking.owned("contacts.lua").classes, ["ContactRow"]);
    assert_eq!(tracking.owned("lib/util.lua").prototypes, ["Util"]);
    assert_eq!(tracking.owned("lib/util.lua").classes, ["UtilWrapper"]);
    assert!(tracking.owned("main.lua").prototypes.is_empty());
}

#[test]
fn unload_module_forgets_it_so_the_next_require_runs_it_again() {
    let app = app();
    app.run_main().unwrap();
    let old: mlua::Table = app.eval("return Contact");
    app.check(
        r#"
        assert(session:unloadModule("contacts") == true, "by its require name")
        assert(package.loaded.contacts == nil)
        assert(session:unloadModule("contacts") == false, "already gone")
        "#,
    );
    assert!(
        app.api.prototypes().get("Contact").is_none(),
        "its prototype went"
    );
    assert!(
        app.api.prototypes().get("ContactRow").is_none(),
        "and its presenter"
    );
    assert!(
        app.api.prototypes().get("Util").is_some(),
        "other modules keep theirs"
    );
    assert!(!app.api.loaded_files().contains(&"contacts.lua".to_string()));

    app.check(
        r#"
        local again = require("contacts")
        assert(runs.contacts == 2 and again.version == 2, "the file ran again")
        "#,
    );
    let new: mlua::Table = app.eval("return Contact");
    assert_ne!(
        old, new,
        "a fresh prototype: the old one was removed, not updated"
    );
    assert!(app.api.prototypes().get("ContactRow").is_some());
}

#[test]
fn unload_module_takes_a_path_or_a_site_key_too() {
    let app = app();
    app.run_main().unwrap();
    app.check(
        r#"
        assert(session:unloadModule("lib/util.lua"), "the path in the app directory")
        assert(package.loaded["lib.util"] == nil)
        assert(session:unloadModule("nothing") == false)
        "#,
    );
    assert!(app.api.prototypes().get("UtilWrapper").is_none());

    // With a site (`--dir`), keys are relative to the site, as ui-engine's are.
    let app = self::app();
    app.api.confine_to(app.dir.path());
    app.run_main().unwrap();
    assert_eq!(
        app.api.tracking().owned("app/contacts.lua").prototypes,
        ["Contact"]
    );
    app.check(r#"assert(session:unloadModule("app/contacts.lua"))"#);
    assert!(app.api.prototypes().get("Contact").is_none());
}

#[test]
fn unload_directory_unloads_every_module_under_it_and_no_other() {
    let app = app();
    app.run_main().unwrap();
    app.check(
        r#"
        assert(session:unloadDirectory("lib") == 2)
        assert(package.loaded["lib.util"] == nil and package.loaded["lib.extra"] == nil)
        assert(package.loaded.contacts ~= nil, "outside lib/")
        assert(session:unloadDirectory("lib/") == 0, "nothing left there")
        require("lib.util") require("lib.extra")
        assert(runs.util == 2 and runs.extra == 2 and runs.contacts == 1)
        "#,
    );
    assert!(app.api.prototypes().get("Contact").is_some());
}

#[test]
fn hot_reload_reruns_a_loaded_module_and_tracks_what_the_new_version_declares() {
    let app = app();
    app.run_main().unwrap();
    app.write(
        "contacts.lua",
        r#"
        runs.contacts = (runs.contacts or 0) + 1
        Contact = session:prototype("Contact", {name = "", email = ""})
        Note = session:prototype("Note", {})
        return {version = runs.contacts}
        "#,
    );
    let before: mlua::Table = app.eval("return Contact");
    app.reload("contacts.lua").unwrap();
    let after: mlua::Table = app.eval("return Contact");
    assert_eq!(before, after, "a re-declared prototype is updated in place");
    app.check(r#"assert(runs.contacts == 2 and require("contacts").version == 2)"#);
    let owned = app.api.tracking().owned("contacts.lua");
    assert_eq!(owned.prototypes, ["Contact", "Note"]);
    assert!(
        app.api.prototypes().get("ContactRow").is_some(),
        "as in ui-engine, a reload removes nothing the new version no longer declares"
    );

    // Once unloaded, a module is not loaded, so hot reload leaves it alone.
    app.check(r#"assert(session:unloadModule("contacts"))"#);
    assert!(app.api.prototypes().get("Note").is_none());
    assert!(
        app.reload("contacts.lua").is_err(),
        "not loaded, so not reloaded"
    );
    app.check("assert(runs.contacts == 2)");
}

#[test]
fn a_declared_object_prototype_is_the_default_base() {
    let app = App::new(&[(
        "main.lua",
        r#"
        Object = session:prototype("Object", {})
        function Object:describe() return "a " .. self.type end
        Thing = session:prototype("Thing", {size = 1})
        Other = session:prototype("Other", {}, {})
        "#,
    )]);
    app.run_main().unwrap();
    app.check(
        r#"
        assert(getmetatable(Thing) == Object, "no base given: Object")
        assert(Thing:new():describe() == "a Thing")
        assert(getmetatable(Thing:new()) == Thing, "new still makes a Thing")
        assert(getmetatable(Object) == nil, "Object is not its own base")
        assert(getmetatable(Other) ~= Object, "an explicit base wins")
        "#,
    );
}

#[test]
fn mutation_versions_count_as_in_ui_engine() {
    let app = App::new(&[("main.lua", "obj = {}")]);
    app.run_main().unwrap();
    app.check(
        r#"
        assert(session:getVersion() == 0)
        assert(session:needsMutation(obj) == false)
        assert(session:newVersion() == 1 and session:getVersion() == 1)
        assert(session:needsMutation(obj) == true)
        obj._mutationVersion = 1
        assert(session:needsMutation(obj) == false)
        "#,
    );
}
