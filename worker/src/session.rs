//! LuaSession: one session's Lua VM, its `session` global, and the loading of `main.lua`
//! (the seed's `CreateLuaSession` → `createSessionTable` → `setGlobal("session")` →
//! `loadMainLua`). It owns the [`LuaBackend`] that tracks the app's variables, and the
//! [`TurnBudget`] that bounds every turn.

use std::path::{Path, PathBuf};

use mlua::{Lua, Table};
use protocol::ipc::StartSession;
use protocol::Value;

use crate::backend::LuaBackend;
use crate::budget::TurnBudget;
use crate::sandbox;

pub struct LuaSession {
    lua: Lua,
    backend: LuaBackend,
    budget: TurnBudget,
    app_dir: PathBuf,
}

impl LuaSession {
    /// A fresh VM with the sandbox, the limits and the `session` global installed.
    pub fn new(start: &StartSession) -> mlua::Result<LuaSession> {
        let lua = sandbox::new_vm()?;
        let budget =
            TurnBudget::install(&lua, start.limits.turn_time_ms, start.limits.memory_bytes)?;
        let session: Table = lua.create_table()?;
        session.raw_set("_sessionID", start.vended_id)?;
        session.raw_set("reloading", false)?;
        let backend = LuaBackend::new(&lua, &session)?;
        lua.globals().raw_set("session", session)?;
        Ok(LuaSession {
            lua,
            backend,
            budget,
            app_dir: PathBuf::from(&start.app_dir),
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

    /// Runs `main.lua` as one turn. On success returns variable 1's value JSON; otherwise the
    /// error text a person needs (file and line for Lua errors).
    pub fn load_main(&mut self) -> Result<Value, String> {
        let path = self.app_dir.join("main.lua");
        let code =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        self.budget.begin_turn();
        let ran = self.lua.load(code).set_name("@main.lua").exec();
        self.budget.end_turn();
        ran.map_err(|e| e.to_string())?;
        self.backend.app_value().ok_or_else(|| {
            "main.lua finished without calling session:createAppVariable".to_string()
        })
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
