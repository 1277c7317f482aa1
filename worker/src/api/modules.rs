//! Module tracking and unloading (ui-engine's `specs/module-tracking.md`): which app file
//! registered which prototypes and classes, and `session:unloadModule(name)` /
//! `session:unloadDirectory(dir)`, which forget a module and everything it registered.
//!
//! - A *module* is an app file run by the session: `main.lua`, a `require`d file, or either
//!   re-run by hot reload. Its *key* is its path relative to the site (the `--dir` directory;
//!   the app directory without one), symlinks resolved: `lua/contacts.lua`, `apps/x/app.lua`,
//!   as ui-engine's tracking keys are. While a file runs, the prototypes it declares
//!   (`session:prototype`) and the classes it registers (`ui.registerWrapper` /
//!   `registerPresenter`) are noted as its own, reloads included (ui-engine tracks only the
//!   first load).
//! - `session:unloadModule(name)` takes the key, the path relative to the app directory
//!   (`contacts.lua`), or the name it was required as (`contacts`). It removes the module's
//!   prototypes (as `session:removePrototype` does: instances keep their metatables) and
//!   classes, and forgets the module: `package.loaded` loses it, so the next `require` runs the
//!   file again, and hot reload no longer re-runs it (it re-runs only loaded files). Returns
//!   whether there was such a module.
//! - `session:unloadDirectory(dir)` unloads every module whose key lies under `dir`
//!   (`apps/contacts`, subdirectories included; ui-engine matches the directory exactly) and
//!   returns how many it unloaded.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use mlua::{Lua, Table, Value};

use super::prototype::Prototypes;
use super::require::Modules;

/// Which module owns which registration; cheap to clone (a shared handle).
#[derive(Clone, Default)]
pub struct Tracking(Rc<RefCell<State>>);

#[derive(Default)]
struct State {
    /// Keys of the files running now, innermost last (a `require` inside a module nests).
    running: Vec<String>,
    owned: HashMap<String, Owned>,
}

/// What one module registered, in the order it did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Owned {
    pub prototypes: Vec<String>,
    pub classes: Vec<String>,
}

impl Tracking {
    /// `key` starts running (its registrations are its own until [`Tracking::leave`]).
    pub fn enter(&self, key: &str) {
        self.0.borrow_mut().running.push(key.to_string());
    }

    pub fn leave(&self) {
        self.0.borrow_mut().running.pop();
    }

    /// The running module declared prototype `name`.
    pub fn note_prototype(&self, name: &str) {
        self.note(name, |o| &mut o.prototypes);
    }

    /// The running module registered class `name` (`ui.registerWrapper` / `registerPresenter`).
    pub fn note_class(&self, name: &str) {
        self.note(name, |o| &mut o.classes);
    }

    fn note(&self, name: &str, list: impl FnOnce(&mut Owned) -> &mut Vec<String>) {
        let mut state = self.0.borrow_mut();
        let Some(key) = state.running.last().cloned() else {
            return; // registered by a timer or an action: no module owns it
        };
        let names = list(state.owned.entry(key).or_default());
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }

    /// What module `key` registered.
    pub fn owned(&self, key: &str) -> Owned {
        self.0.borrow().owned.get(key).cloned().unwrap_or_default()
    }

    fn take(&self, key: &str) -> Owned {
        self.0.borrow_mut().owned.remove(key).unwrap_or_default()
    }
}

/// `session:unloadModule(name)`: see the module doc. True when a module was unloaded.
pub fn unload_module(
    modules: &Modules,
    prototypes: &Prototypes,
    tracking: &Tracking,
    name: &str,
) -> mlua::Result<bool> {
    let Some(key) = modules.forget(name)? else {
        return Ok(false);
    };
    let owned = tracking.take(&key);
    for proto in &owned.prototypes {
        prototypes.remove(proto, false);
    }
    for class in &owned.classes {
        prototypes.unregister(class);
    }
    tracing::info!(target: "lua", module = key, "unloaded");
    Ok(true)
}

/// `session:unloadDirectory(dir)`: every module under `dir`; how many were unloaded.
pub fn unload_directory(
    modules: &Modules,
    prototypes: &Prototypes,
    tracking: &Tracking,
    dir: &str,
) -> mlua::Result<usize> {
    let mut unloaded = 0;
    for key in modules.keys_under(dir) {
        if unload_module(modules, prototypes, tracking, &key)? {
            unloaded += 1;
        }
    }
    Ok(unloaded)
}

/// Sets `session:unloadModule` and `session:unloadDirectory`.
pub fn install(
    lua: &Lua,
    session: &Table,
    modules: &Modules,
    prototypes: &Prototypes,
    tracking: &Tracking,
) -> mlua::Result<()> {
    let (m, p, t) = (modules.clone(), prototypes.clone(), tracking.clone());
    session.raw_set(
        "unloadModule",
        lua.create_function(move |_, (_, name): (Value, String)| unload_module(&m, &p, &t, &name))?,
    )?;
    let (m, p, t) = (modules.clone(), prototypes.clone(), tracking.clone());
    session.raw_set(
        "unloadDirectory",
        lua.create_function(move |_, (_, dir): (Value, String)| {
            unload_directory(&m, &p, &t, &dir)
        })?,
    )?;
    Ok(())
}
