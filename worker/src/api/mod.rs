//! The Lua app API beyond the tracker-backed `session` methods (ARCHITECTURE.md 5): prototypes and
//! instances, the `ui` table, `require` confined to the app directory, and timers.
//!
//! [`install`] puts every piece on a fresh sandboxed VM and returns the [`Api`] handle the
//! session keeps: it runs `main.lua`, re-runs files for hot reload, and owns the timer queue the
//! worker loop drives. Each piece keeps its state in Rust behind an `Rc<RefCell<…>>` shared with
//! its Lua closures; no borrow is ever held while Lua runs.

pub mod ahead;
pub mod modules;
pub mod prototype;
pub mod require;
pub mod timers;
pub mod ui;
pub mod versions;

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use mlua::{Lua, Table};

pub use modules::Tracking;
pub use prototype::Prototypes;
pub use require::Modules;
pub use timers::Timers;
pub use ui::LogIds;

/// What the session keeps of the API once it is installed.
pub struct Api {
    ids: Rc<RefCell<LogIds>>,
    prototypes: Prototypes,
    modules: Modules,
    timers: Timers,
    tracking: Tracking,
}

/// Installs `EMPTY`, `ui`, `require` (with `package.loaded`) and the `session` methods
/// `prototype`, `create`, `removePrototype`, `unloadModule`, `unloadDirectory`, `newVersion`,
/// `getVersion`, `needsMutation`, `setTimeout`, `setInterval`, `setImmediate` and their
/// `clear…` counterparts. `ui.log` lines carry `ids`. Nothing here starts a turn: the caller runs
/// `main.lua`, reloads and timer callbacks inside one.
pub fn install(lua: &Lua, session: &Table, app_dir: &Path, ids: LogIds) -> mlua::Result<Api> {
    let ids = Rc::new(RefCell::new(ids));
    ui::install(lua, ids.clone())?;
    let tracking = Tracking::default();
    let prototypes = Prototypes::install(lua, session, tracking.clone())?;
    let ui: Table = lua.globals().raw_get("ui")?;
    prototypes.install_registration(lua, &ui)?;
    let modules = Modules::install(lua, session, app_dir, tracking.clone())?;
    modules::install(lua, session, &modules, &prototypes, &tracking)?;
    versions::install(lua, session)?;
    let timers = Timers::install(lua, session)?;
    Ok(Api {
        ids,
        prototypes,
        modules,
        timers,
        tracking,
    })
}

impl Api {
    /// The ids `ui.log` lines carry from now on (a ready VM learns its session's on `Start`).
    pub fn set_log_ids(&self, ids: LogIds) {
        *self.ids.borrow_mut() = ids;
    }

    /// Compiles the app's Lua files ahead of `main.lua` (see [`Modules::precompile`]).
    pub fn precompile(&self, lua: &Lua) {
        self.modules.precompile(lua);
    }

    /// Drops the compiled chunks `main.lua` did not use.
    pub fn forget_precompiled(&self) {
        self.modules.forget_precompiled();
    }

    /// Runs `main.lua`, then the prototype mutations its declarations queued. The caller owns
    /// the turn (budget) this runs in.
    pub fn run_main(&self, lua: &Lua) -> mlua::Result<()> {
        self.modules.load_file(lua, "main.lua")?;
        self.prototypes.run_pending_mutations()
    }

    /// Hot reload: re-executes an already-loaded app file (relative to the app directory) with
    /// `session.reloading` set, then runs the prototype mutations it queued.
    pub fn reload_file(&self, lua: &Lua, rel_path: &str) -> mlua::Result<()> {
        require::reload_file(lua, &self.modules, &self.prototypes, rel_path)
    }

    /// Runs the mutations queued by prototype re-declarations since the last run.
    pub fn run_pending_mutations(&self) -> mlua::Result<()> {
        self.prototypes.run_pending_mutations()
    }

    /// The app files executed so far (`main.lua` and required modules), relative to the app
    /// directory, in the order they were first loaded: what hot reload may re-run.
    pub fn loaded_files(&self) -> Vec<String> {
        self.modules.loaded_files()
    }

    /// Every app file read to be run so far, as it was when read.
    pub fn files_read(&self) -> Vec<protocol::ipc::FileStamp> {
        self.modules.files_read()
    }

    /// Whether `name` (a module key, app path or module name) is a loaded file.
    pub fn is_loaded(&self, name: &str) -> bool {
        self.modules.is_loaded(name)
    }

    /// Which module registered what.
    pub fn tracking(&self) -> &Tracking {
        &self.tracking
    }

    /// Lets symlinked app files lead anywhere inside `dir` (see [`Modules::confine_to`]).
    pub fn confine_to(&self, dir: &std::path::Path) {
        self.modules.confine_to(dir);
    }

    pub fn prototypes(&self) -> &Prototypes {
        &self.prototypes
    }

    pub fn timers(&self) -> &Timers {
        &self.timers
    }
}
