//! Hot reload (`reload_file`), `session.reloading` and `session._sessionID`.

use crate::harness::{App, VENDED_ID};

fn app() -> App {
    App::new(&[
        (
            "main.lua",
            r#"
            seen = {}
            mod = require("mod")
            main_runs = (main_runs or 0) + 1
            if not session.reloading then
                created = (created or 0) + 1
            end
            "#,
        ),
        (
            "mod.lua",
            r#"
            seen[#seen + 1] = session.reloading
            return {version = 1}
            "#,
        ),
    ])
}

#[test]
fn reloading_is_true_only_while_a_file_is_reexecuted() {
    let app = app();
    app.run_main().unwrap();
    app.check("assert(#seen == 1 and seen[1] == false and session.reloading == false)");

    app.write(
        "mod.lua",
        "seen[#seen + 1] = session.reloading\nreturn {version = 2}",
    );
    app.reload("mod.lua").unwrap();
    app.check(
        r#"
        assert(#seen == 2 and seen[2] == true, "set while the file ran")
        assert(session.reloading == false, "reset afterwards")
        assert(require("mod").version == 2, "later requires see the reloaded module")
        assert(mod.version == 1, "old references keep the old value")
        "#,
    );

    app.reload("./main.lua").unwrap();
    app.check(
        r#"
        assert(main_runs == 2 and created == 1, "main.lua can tell a reload from a start")
        assert(session.reloading == false)
        "#,
    );
}

#[test]
fn a_failing_reload_still_resets_reloading_and_runs_mutations() {
    let app = App::new(&[
        ("main.lua", "require('model') p = P:new({old = 1})"),
        ("model.lua", "P = session:prototype('P', {old = 0})"),
    ]);
    app.run_main().unwrap();
    app.write(
        "model.lua",
        "P = session:prototype('P', {new = 0})\nerror('half way')",
    );
    let err = app.reload("model.lua").unwrap_err().to_string();
    assert!(err.contains("model.lua:2: half way"), "{err}");
    app.check(
        r#"
        assert(session.reloading == false)
        assert(rawget(p, "old") == nil, "the declaration that ran was applied")
        "#,
    );
}

#[test]
fn only_loaded_files_inside_the_app_can_be_reloaded() {
    let app = app();
    app.write("never.lua", "never_ran = true");
    app.run_main().unwrap();
    for (path, needle) in [
        ("never.lua", "has not been loaded"),
        ("../main.lua", "not a path inside the app directory"),
        ("/etc/passwd", "not a path inside the app directory"),
    ] {
        let err = app.reload(path).unwrap_err().to_string();
        assert!(err.contains(needle), "{path}: {err}");
    }
    assert!(app.eval::<Option<bool>>("return never_ran").is_none());
}

#[test]
fn the_session_id_is_visible_to_lua() {
    let app = App::new(&[("main.lua", "id = session._sessionID")]);
    app.run_main().unwrap();
    assert_eq!(app.eval::<u64>("return id"), VENDED_ID);
}
