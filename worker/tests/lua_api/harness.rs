//! A worker-like harness: the sandboxed VM, a `session` table as `LuaSession::new` builds it,
//! and the app API installed on it, over an app directory in a temporary folder. The tracker
//! (`LuaBackend`) is left out: these tests are about the API alone.

use std::path::{Path, PathBuf};

use luabroker_worker::api::{self, Api, LogIds};
use luabroker_worker::budget::TurnBudget;
use luabroker_worker::sandbox;
use mlua::{FromLuaMulti, Lua};
use tempfile::TempDir;

pub const SESSION_ID: &str = "0123456789abcdef0123456789abcdef";
pub const VENDED_ID: u64 = 7;

pub struct App {
    /// Holds `app/` (the app directory) and room beside it for escape attempts.
    pub dir: TempDir,
    pub lua: Lua,
    pub api: Api,
    pub budget: TurnBudget,
}

impl App {
    /// An app made of `files` (path relative to the app directory, source), no turn limit.
    pub fn new(files: &[(&str, &str)]) -> App {
        App::with_turn_limit(files, 0)
    }

    pub fn with_turn_limit(files: &[(&str, &str)], turn_time_ms: u64) -> App {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("app")).unwrap();
        let lua = sandbox::new_vm().unwrap();
        let budget = TurnBudget::install(&lua, turn_time_ms, 0).unwrap();
        let session = lua.create_table().unwrap();
        session
            .raw_set("_sessionID", VENDED_ID.to_string())
            .unwrap();
        session.raw_set("reloading", false).unwrap();
        let ids = LogIds {
            session_id: SESSION_ID.into(),
            vended_id: VENDED_ID,
        };
        let app_dir = dir.path().join("app");
        let api = api::install(&lua, &session, &app_dir, ids).unwrap();
        lua.globals().raw_set("session", session).unwrap();
        let app = App {
            dir,
            lua,
            api,
            budget,
        };
        for (path, source) in files {
            app.write(path, source);
        }
        app
    }

    pub fn app_dir(&self) -> PathBuf {
        self.dir.path().join("app")
    }

    /// Writes (or rewrites) an app file.
    pub fn write(&self, rel: &str, source: &str) {
        write_file(&self.app_dir().join(rel), source);
    }

    /// Runs `main.lua` as the session does: one turn, then pending prototype mutations.
    pub fn run_main(&self) -> mlua::Result<()> {
        self.budget.turn(|| self.api.run_main(&self.lua))
    }

    /// Hot-reloads one file as the session does: one turn.
    pub fn reload(&self, rel: &str) -> mlua::Result<()> {
        self.budget.turn(|| self.api.reload_file(&self.lua, rel))
    }

    /// Runs one timer callback due at `now` as the session does: one turn. `None` when
    /// nothing is due.
    pub fn run_timer(&self, now: std::time::Instant) -> Option<mlua::Result<()>> {
        self.budget.turn(|| self.api.timers().run_next(now))
    }

    /// Evaluates a Lua expression or chunk in the app's VM (for assertions).
    pub fn eval<T: FromLuaMulti>(&self, code: &str) -> T {
        self.lua
            .load(code)
            .set_name("=test")
            .eval()
            .unwrap_or_else(|e| panic!("{code}: {e}"))
    }

    /// Runs a chunk that asserts in Lua; panics with Lua's message when an assertion fails.
    pub fn check(&self, code: &str) {
        self.lua
            .load(code)
            .set_name("=check")
            .exec()
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

pub fn write_file(path: &Path, source: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, source).unwrap();
}
