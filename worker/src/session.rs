//! LuaSession: one session's Lua VM, its `session` global, and the loading of `main.lua`
//! (the seed's `CreateLuaSession` → `createSessionTable` → `setGlobal("session")` →
//! `loadMainLua`). It owns the [`LuaBackend`] that tracks the app's variables, the rest of the
//! app API ([`Api`]: prototypes, `ui`, `require`, timers), and the [`TurnBudget`] that bounds
//! every turn.

use std::path::{Path, PathBuf};

use mlua::{Lua, Table};
use protocol::ipc::StartSession;
use protocol::Value;

use crate::api::{self, Api, LogIds, Timers};
use crate::backend::LuaBackend;
use crate::budget::TurnBudget;
use crate::sandbox;

pub struct LuaSession {
    lua: Lua,
    backend: LuaBackend,
    api: Api,
    budget: TurnBudget,
    app_dir: PathBuf,
}

impl LuaSession {
    /// A fresh VM with the sandbox, the limits and the `session` global installed.
    pub fn new(start: &StartSession) -> mlua::Result<LuaSession> {
        let lua = sandbox::new_vm()?;
        let budget =
            TurnBudget::install(&lua, start.limits.turn_time_ms, start.limits.memory_bytes)?;
        let app_dir = PathBuf::from(&start.app_dir);
        let session: Table = lua.create_table()?;
        session.raw_set("_sessionID", start.vended_id)?;
        session.raw_set("reloading", false)?;
        let backend = LuaBackend::new(&lua, &session)?;
        let ids = LogIds {
            session_id: start.session_id.clone(),
            vended_id: start.vended_id,
        };
        let api = api::install(&lua, &session, &app_dir, &budget, ids)?;
        lua.globals().raw_set("session", session)?;
        Ok(LuaSession {
            lua,
            backend,
            api,
            budget,
            app_dir,
        })
    }

    pub fn lua(&self) -> &Lua {
        &self.lua
    }

    pub fn app_dir(&self) -> &Path {
        &self.app_dir
    }

    pub fn backend(&mut self) -> &mut LuaBackend {
        &mut self.backend
    }

    pub fn budget(&self) -> &TurnBudget {
        &self.budget
    }

    /// The session's timers; the worker loop runs their callbacks.
    pub fn timers(&self) -> &Timers {
        self.api.timers()
    }

    /// The app files run so far (relative to the app directory): what hot reload may re-run.
    pub fn loaded_files(&self) -> Vec<String> {
        self.api.loaded_files()
    }

    /// Runs `main.lua` (and the prototype mutations it queued) as one turn. On success returns
    /// variable 1's value JSON; otherwise the error text a person needs (file and line for Lua
    /// errors).
    pub fn load_main(&mut self) -> Result<Value, String> {
        self.budget.begin_turn();
        let ran = self.api.run_main(&self.lua);
        self.budget.end_turn();
        ran.map_err(|e| e.to_string())?;
        self.backend.app_value().ok_or_else(|| {
            "main.lua finished without calling session:createAppVariable".to_string()
        })
    }

    /// Hot reload of one already-loaded app file, as one turn (see [`api::require::reload_file`]).
    /// The caller runs change detection afterwards.
    pub fn reload_file(&mut self, rel_path: &str) -> mlua::Result<()> {
        self.budget.begin_turn();
        let ran = self.api.reload_file(&self.lua, rel_path);
        self.budget.end_turn();
        ran
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::ipc::LuaLimits;

    /// A fresh app directory holding `main.lua`.
    fn app_dir(name: &str, main: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("luabroker-session-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("main.lua"), main).unwrap();
        dir
    }

    fn start(dir: &Path) -> StartSession {
        StartSession {
            vended_id: 7,
            session_id: "0".repeat(32),
            app_dir: dir.display().to_string(),
            limits: LuaLimits {
                memory_bytes: 64 * 1024 * 1024,
                turn_time_ms: 1000,
            },
        }
    }

    #[test]
    fn load_main_returns_the_app_value() {
        let dir = app_dir(
            "ok",
            "assert(session._sessionID == 7)
             session:createAppVariable({'a', session._sessionID})",
        );
        let mut session = LuaSession::new(&start(&dir)).unwrap();
        assert_eq!(
            session.load_main(),
            Ok(Value::Array(vec![Value::String("a".into()), Value::Int(7)]))
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn load_main_without_an_app_variable_fails() {
        let dir = app_dir("none", "local x = 1");
        let mut session = LuaSession::new(&start(&dir)).unwrap();
        let err = session.load_main().unwrap_err();
        assert!(err.contains("createAppVariable"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
