//! LuaSession: one session's Lua VM, its `session` global, and the loading of `main.lua`
//! (the seed's `CreateLuaSession` → `createSessionTable` → `setGlobal("session")` →
//! `loadMainLua`). It owns the [`LuaBackend`] that tracks the app's variables, the rest of the
//! app API ([`Api`]: prototypes, `ui`, `require`, timers), and the [`TurnBudget`].
//!
//! It also owns the *turn*: every entry point that runs Lua (`load_main`, `handle_frame`,
//! `tab_closed`, `run_timer`, `reload`) is one call of [`TurnBudget::turn`] around the work and
//! the change detection after it, so the worker loop never starts or ends a turn itself.

use std::path::{Path, PathBuf};
use std::time::Instant;

use mlua::{Lua, Table};
use protocol::browser::ClientMessage;
use protocol::ipc::{DebugListing, DebugVariable, PrepareVm, StartSession, TabBatch, TabId};
use protocol::Value;

use crate::api::{self, Api, LogIds, Timers};
use crate::backend::{merge_batches, LuaBackend};
use crate::budget::TurnBudget;
use crate::sandbox;

pub struct LuaSession {
    lua: Lua,
    /// The `session` global.
    session: Table,
    backend: LuaBackend,
    api: Api,
    budget: TurnBudget,
    app_dir: PathBuf,
}

impl LuaSession {
    /// A ready VM: the sandbox, the limits, the `session` global (its ids come with
    /// [`LuaSession::assign`]), the app API, the tracker, and the app's chunks compiled. No app
    /// code has run; a spare worker builds this while it waits for a session.
    pub fn prepare(vm: &PrepareVm) -> mlua::Result<LuaSession> {
        let lua = sandbox::new_vm()?;
        let budget = TurnBudget::install(&lua, vm.limits.turn_time_ms, vm.limits.memory_bytes)?;
        let app_dir = PathBuf::from(&vm.app_dir);
        let session: Table = lua.create_table()?;
        session.raw_set("reloading", false)?;
        let ids = LogIds {
            session_id: String::new(),
            vended_id: 0,
        };
        let api = api::install(&lua, &session, &app_dir, ids)?;
        // `--dir`'s site layout: viewdefs beside the Lua directory, symlinks anywhere in the site.
        let confine = PathBuf::from(vm.readable_dir());
        api.confine_to(&confine);
        let viewdefs_dir = match vm.viewdefs_dir.as_str() {
            "" => app_dir.join(crate::viewdefs::VIEWDEFS_DIR),
            dir => PathBuf::from(dir),
        };
        // The backend finds `create=`/`wrapper=` classes among the app's prototypes and reads
        // viewdefs from the app's viewdefs directory.
        let backend = LuaBackend::new(&lua, &session)?.with_app(
            api.prototypes().clone(),
            &viewdefs_dir,
            &confine,
        );
        lua.globals().raw_set("session", &session)?;
        #[cfg(feature = "test-hooks")]
        crate::confine::test_hooks::install(&lua)?;
        api.precompile(&lua);
        Ok(LuaSession {
            lua,
            session,
            backend,
            api,
            budget,
            app_dir,
        })
    }

    /// Gives the ready VM its session: `session._sessionID` (a string, as ui-engine gives it:
    /// its vended ids are decimal strings) and the ids on `ui.log` lines.
    pub fn assign(&mut self, start: &StartSession) -> mlua::Result<()> {
        self.session
            .raw_set("_sessionID", start.vended_id.to_string())?;
        self.api.set_log_ids(LogIds {
            session_id: start.session_id.clone(),
            vended_id: start.vended_id,
        });
        Ok(())
    }

    /// [`LuaSession::prepare`] and [`LuaSession::assign`] at once (tests and tools).
    pub fn new(vm: &PrepareVm, start: &StartSession) -> mlua::Result<LuaSession> {
        let mut session = LuaSession::prepare(vm)?;
        session.assign(start)?;
        Ok(session)
    }

    pub fn lua(&self) -> &Lua {
        &self.lua
    }

    pub fn app_dir(&self) -> &Path {
        &self.app_dir
    }

    /// The tracker side, read-only: every change goes through a turn of this session.
    pub fn backend(&self) -> &LuaBackend {
        &self.backend
    }

    /// Puts the OS CPU limit behind the turn budget (a real worker process only; see
    /// [`TurnBudget::enable_cpu_backstop`]).
    pub fn enable_cpu_backstop(&self) {
        self.budget.enable_cpu_backstop();
    }

    /// The session's timers; the worker loop asks them when to wake up.
    pub fn timers(&self) -> &Timers {
        self.api.timers()
    }

    /// How many turns this session has run.
    pub fn turns(&self) -> u64 {
        self.budget.turns()
    }

    /// The app files run so far (relative to the app directory): what hot reload may re-run.
    pub fn loaded_files(&self) -> Vec<String> {
        self.api.loaded_files()
    }

    /// Runs `main.lua` (and the prototype mutations it queued) as one turn. On success returns
    /// variable 1's value JSON; otherwise the error text a person needs (file and line for Lua
    /// errors).
    pub fn load_main(&mut self) -> Result<Value, String> {
        let ran = self.budget.turn(|| self.api.run_main(&self.lua));
        self.api.forget_precompiled();
        ran.map_err(|e| e.to_string())?;
        self.backend.app_value().ok_or_else(|| {
            "main.lua finished without calling session:createAppVariable".to_string()
        })
    }

    /// Every app file `main.lua`'s run (and anything since) read, as it was when read.
    pub fn files_read(&self) -> Vec<protocol::ipc::FileStamp> {
        self.api.files_read()
    }

    /// A tab connected: from now on it gets errors no tab caused (timers, reloads).
    pub fn tab_opened(&mut self, tab: TabId) {
        self.backend.tab_opened(tab);
    }

    /// One frame of a tab as one turn: its messages, then change detection. Returns what each
    /// tab receives.
    pub fn handle_frame(&mut self, tab: TabId, messages: Vec<ClientMessage>) -> Vec<TabBatch> {
        self.budget
            .turn(|| self.backend.handle_frame(tab, messages))
    }

    /// A tab went away: its variables are destroyed (which may run app code) in one turn.
    pub fn tab_closed(&mut self, tab: TabId) -> Vec<TabBatch> {
        self.budget.turn(|| self.backend.tab_closed(tab))
    }

    /// Runs one timer callback due at `now` and the change detection after it as one turn.
    /// `None` when nothing is due. A callback's error goes to every open tab, ahead of the
    /// changes.
    pub fn run_timer(&mut self, now: Instant) -> Option<Vec<TabBatch>> {
        let due = self.api.timers().take_due(now)?;
        let (ran, changes) = self
            .budget
            .turn(|| (due.run(), self.backend.detect_changes()));
        let errors = match ran {
            Ok(()) => Vec::new(),
            Err(e) => self.backend.error_batches(&e),
        };
        Some(merge_batches(errors, changes))
    }

    pub fn debug_variables(&self) -> Vec<DebugVariable> {
        self.backend.debug_variables()
    }

    /// The debug pages' listing. The first request of a session turns compute timing on, and
    /// `diag_level` sets the diagnostic level; when either changes what a pass records, one
    /// change-detection pass runs first (a turn, whose updates go to the tabs as any pass's
    /// do), so the listing already shows times and diagnostics.
    pub fn debug_listing(&mut self, diag_level: Option<u8>) -> (Vec<TabBatch>, DebugListing) {
        let batches = if self.backend.set_debug(diag_level) {
            self.budget.turn(|| self.backend.detect_changes())
        } else {
            Vec::new()
        };
        (batches, self.backend.debug_listing())
    }

    /// `--hotload` says `files` changed (relative to the site, or to the app directory without
    /// `--dir`: module keys): changed viewdefs are re-sent to the tabs that have their type,
    /// then the changed `.lua` files this session has loaded (and not unloaded) are re-executed (each a turn of its own, with `session.reloading` set), then one change
    /// detection pass (a turn of its own too). A file that fails is reported to every open tab
    /// as a timer's error is; the session keeps its previous definitions. Returns what each tab
    /// receives, in that order.
    pub fn reload(&mut self, files: &[String]) -> Vec<TabBatch> {
        let templates = self.backend.reload_viewdefs(files);
        let mut errors = Vec::new();
        for file in files.iter().filter(|f| self.api.is_loaded(f)) {
            tracing::info!(file, "reloading");
            if let Err(e) = self.budget.turn(|| self.api.reload_file(&self.lua, file)) {
                tracing::warn!(file, "reload failed: {e}");
                errors = merge_batches(errors, self.backend.error_batches(&e));
            }
        }
        let changes = self.budget.turn(|| self.backend.detect_changes());
        merge_batches(merge_batches(templates, errors), changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::browser::ServerMessage;
    use protocol::ipc::LuaLimits;
    use protocol::ErrorCode;

    /// A fresh app directory holding `main.lua`.
    fn app_dir(name: &str, main: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("luabroker-session-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("main.lua"), main).unwrap();
        dir
    }

    /// A session of the app in `dir`, built the way a worker builds one: a ready VM, then
    /// its session.
    fn session_of(dir: &Path) -> LuaSession {
        session_with_turn_limit(dir, 1000)
    }

    fn session_with_turn_limit(dir: &Path, turn_time_ms: u64) -> LuaSession {
        let vm = PrepareVm {
            app_dir: dir.display().to_string(),
            viewdefs_dir: String::new(),
            confine_dir: String::new(),
            limits: LuaLimits {
                memory_bytes: 64 * 1024 * 1024,
                turn_time_ms,
            },
            sandbox: Default::default(),
        };
        let start = StartSession {
            vended_id: 7,
            session_id: "0".repeat(32),
            ahead: false,
        };
        LuaSession::new(&vm, &start).unwrap()
    }

    #[test]
    fn load_main_returns_the_app_value() {
        let dir = app_dir(
            "ok",
            "assert(session._sessionID == '7')
             session:createAppVariable({'a', session._sessionID})",
        );
        let mut session = session_of(&dir);
        assert_eq!(
            session.load_main(),
            Ok(Value::Array(vec![
                Value::String("a".into()),
                Value::String("7".into())
            ]))
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn load_main_without_an_app_variable_fails() {
        let dir = app_dir("none", "local x = 1");
        let mut session = session_of(&dir);
        let err = session.load_main().unwrap_err();
        assert!(err.contains("createAppVariable"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Tab `tab` creates variable 2 watching `path` of the app.
    fn watch_path(session: &mut LuaSession, tab: TabId, path: &str) -> Vec<TabBatch> {
        session.handle_frame(
            tab,
            vec![ClientMessage::Create {
                id: 2,
                parent_id: Some(1),
                value: None,
                properties: vec![("path".into(), path.into())],
                nowatch: false,
                unbound: false,
            }],
        )
    }

    /// The `error` messages (code, description) in `batches`, per tab.
    fn errors(batches: &[TabBatch]) -> Vec<(TabId, ErrorCode, String)> {
        batches
            .iter()
            .flat_map(|b| {
                b.messages.iter().filter_map(move |m| match m {
                    ServerMessage::Error {
                        code, description, ..
                    } => Some((b.tab, *code, description.clone())),
                    _ => None,
                })
            })
            .collect()
    }

    #[test]
    fn a_timer_callback_and_its_change_detection_are_one_turn() {
        let dir = app_dir(
            "one-turn",
            "app = {n = 1}
             session:createAppVariable(app)
             session:setImmediate(function() app.n = 2 end)",
        );
        let mut session = session_of(&dir);
        session.load_main().unwrap();
        session.tab_opened(1);
        watch_path(&mut session, 1, "n");
        let before = session.turns();
        let batches = session
            .run_timer(Instant::now())
            .expect("an immediate is due");
        assert_eq!(
            session.turns(),
            before + 1,
            "callback and changes share a turn"
        );
        assert!(
            matches!(&batches[..], [b] if b.tab == 1 && matches!(
                &b.messages[..],
                [ServerMessage::Update { var_id: 2, value: Some(Value::Int(2)), .. }]
            )),
            "{batches:?}"
        );
        // Nothing due: no turn at all.
        assert!(session.run_timer(Instant::now()).is_none());
        assert_eq!(session.turns(), before + 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_turn_budget_covers_the_change_detection_and_resets_for_the_next_turn() {
        let dir = app_dir(
            "budget",
            "local App = {}
             App.__index = App
             function App:slow() while self.busy do end return self.n end
             app = setmetatable({n = 1, busy = false}, App)
             session:createAppVariable(app)
             -- 1: the getter this sets off never returns: the turn's deadline stops it.
             session:setImmediate(function() app.busy = true end)
             -- 2: the callback itself never returns.
             session:setImmediate(function() while true do end end)
             -- 3: enough instructions to meet the hook: a stale deadline would stop it.
             session:setImmediate(function()
               app.busy = false
               local x = 0 for i = 1, 1e6 do x = x + i end
               app.n = 3
             end)",
        );
        let mut session = session_with_turn_limit(&dir, 1000);
        session.load_main().unwrap();
        session.tab_opened(1);
        watch_path(&mut session, 1, "slow()");
        let limit = |batches: &[TabBatch]| -> Vec<(TabId, ErrorCode)> {
            errors(batches)
                .into_iter()
                .map(|(t, c, _)| (t, c))
                .collect()
        };
        let detection = session.run_timer(Instant::now()).unwrap();
        assert_eq!(limit(&detection), [(1, ErrorCode::Limit)], "{detection:?}");
        let callback = session.run_timer(Instant::now()).unwrap();
        assert_eq!(limit(&callback), [(1, ErrorCode::Limit)], "{callback:?}");
        // A fresh budget for the next turn, though the last deadlines have passed.
        let fine = session.run_timer(Instant::now()).unwrap();
        assert!(errors(&fine).is_empty(), "{fine:?}");
        assert!(
            fine[0].messages.iter().any(|m| matches!(
                m,
                ServerMessage::Update {
                    var_id: 2,
                    value: Some(Value::Int(3)),
                    ..
                }
            )),
            "{fine:?}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn timer_and_reload_errors_reach_the_same_open_tabs() {
        let dir = app_dir(
            "tabs",
            "session:createAppVariable({})
             if not session.reloading then
               session:setInterval(function() error('timer boom') end, 1)
             end",
        );
        let mut session = session_of(&dir);
        session.load_main().unwrap();
        for tab in [3, 5, 9] {
            session.tab_opened(tab);
        }
        session.tab_closed(5);
        let tabs_of = |batches: &[TabBatch], needle: &str| -> Vec<TabId> {
            errors(batches)
                .into_iter()
                .filter(|(_, code, d)| *code == ErrorCode::LuaError && d.contains(needle))
                .map(|(tab, ..)| tab)
                .collect()
        };
        let at = session.timers().next_deadline().unwrap();
        let timer = session.run_timer(at).unwrap();
        assert_eq!(tabs_of(&timer, "timer boom"), [3, 9]);

        std::fs::write(dir.join("main.lua"), "error('reload boom')").unwrap();
        let reload = session.reload(&["main.lua".to_string()]);
        assert_eq!(tabs_of(&reload, "reload boom"), [3, 9]);

        session.tab_closed(9);
        let at = session.timers().next_deadline().unwrap();
        assert_eq!(tabs_of(&session.run_timer(at).unwrap(), "timer boom"), [3]);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
