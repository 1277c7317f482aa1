//! `require` confined to the app directory.

use crate::harness::{write_file, App};

#[test]
fn nested_modules_load_once_with_their_name_and_path() {
    let app = App::new(&[
        (
            "main.lua",
            r#"
            loads = 0
            local util = require("lib.util")
            assert(util.double(21) == 42)
            assert(require("lib.util") == util, "the cached module is returned")
            assert(package.loaded["lib.util"] == util)
            assert(loads == 1, "a module runs once")
            assert(util.args[1] == "lib.util" and util.args[2] == "lib/util.lua")
            assert(require("lib.quiet") == true, "a module returning nothing is cached as true")
            assert(require("lib.quiet") == true and quiet_runs == 1)
            "#,
        ),
        (
            "lib/util.lua",
            r#"
            loads = loads + 1
            local helpers = require("lib.deeper.helpers")
            return {double = helpers.double, args = {...}}
            "#,
        ),
        (
            "lib/deeper/helpers.lua",
            "return {double = function(x) return 2 * x end}",
        ),
        ("lib/quiet.lua", "quiet_runs = (quiet_runs or 0) + 1"),
    ]);
    app.run_main().unwrap();
    assert_eq!(
        app.api.loaded_files(),
        [
            "lib/deeper/helpers.lua",
            "lib/util.lua",
            "lib/quiet.lua",
            "main.lua"
        ],
        "every file run, main.lua included, in the order they finished"
    );
}

#[test]
fn circular_requires_see_the_partial_module_or_true() {
    let app = App::new(&[
        (
            "main.lua",
            r#"
            local a = require("a")
            assert(a.name == "a" and a.b.a == a, "b saw the table a published early")
            local c = require("c")
            assert(c.d.c == true, "d saw true: c had published nothing yet")
            assert(require("c") == c, "once finished, c is its real value")
            "#,
        ),
        (
            "a.lua",
            r#"
            local M = {}
            package.loaded["a"] = M
            M.b = require("b")
            M.name = "a"
            return M
            "#,
        ),
        ("b.lua", r#"return {a = require("a")}"#),
        ("c.lua", r#"return {d = require("d")}"#),
        ("d.lua", r#"return {c = require("c")}"#),
    ]);
    app.run_main().unwrap();
}

#[test]
fn names_and_links_that_leave_the_app_directory_are_refused() {
    let app = App::new(&[
        (
            "main.lua",
            r#"
            local function refused(name, needle)
                local ok, err = pcall(require, name)
                assert(not ok, name .. " was loaded")
                assert(tostring(err):find(needle, 1, true), tostring(err))
            end
            for _, name in ipairs({"../secret", "..secret", "a..b", "/etc/passwd", ".hidden",
                                   "lib/util", "", "a.", "x y"}) do
                refused(name, "invalid module name")
            end
            refused("escape", "outside the app directory")
            refused("missing", "cannot open missing.lua")
            refused("folder", "not a file")
            assert(secret_ran == nil)
            assert(require("inside").ok, "a link that stays inside is fine")
            "#,
        ),
        ("real.lua", "return {ok = true}"),
        ("folder.lua/keep", ""),
    ]);
    write_file(
        &app.dir.path().join("secret.lua"),
        "secret_ran = true return {}",
    );
    std::os::unix::fs::symlink(
        app.dir.path().join("secret.lua"),
        app.app_dir().join("escape.lua"),
    )
    .unwrap();
    std::os::unix::fs::symlink("real.lua", app.app_dir().join("inside.lua")).unwrap();
    app.run_main().unwrap();
    assert!(!app.api.loaded_files().iter().any(|f| f.contains("escape")));
}

#[test]
fn errors_name_the_file_and_a_failed_module_is_not_cached() {
    let app = App::new(&[
        (
            "main.lua",
            r#"
            local function fails(name, needle)
                local ok, err = pcall(require, name)
                assert(not ok, name .. " loaded")
                assert(tostring(err):find(needle, 1, true), tostring(err))
            end
            fails("runtime", "runtime.lua:2:")
            fails("syntax", "syntax.lua:1:")
            fails("nested.inner", "nested/inner.lua:1: inner failure")
            assert(package.loaded["runtime"] == nil)
            "#,
        ),
        ("runtime.lua", "local x = 1\nreturn x + nil"),
        ("syntax.lua", "return {"),
        ("nested/inner.lua", "error('inner failure')"),
    ]);
    app.run_main().unwrap();
    // Fixed on disk, the module loads at the next require.
    app.write("runtime.lua", "return 'fixed'");
    assert_eq!(app.eval::<String>("return require('runtime')"), "fixed");
}

#[test]
fn main_lua_errors_name_main_lua() {
    let app = App::new(&[("main.lua", "\n\nerror('boom')")]);
    let err = app.run_main().unwrap_err().to_string();
    assert!(err.contains("main.lua:3: boom"), "{err}");

    let none = App::new(&[]);
    let err = none.run_main().unwrap_err().to_string();
    assert!(err.contains("main.lua"), "{err}");
}

#[test]
fn precompiled_chunks_are_refused() {
    let app = App::new(&[("main.lua", "return require('compiled')")]);
    let bytecode = app.lua.load("return 1").into_function().unwrap().dump(true);
    std::fs::write(app.app_dir().join("compiled.lua"), bytecode).unwrap();
    let err = app.run_main().unwrap_err().to_string();
    assert!(err.contains("binary chunk"), "{err}");
}
