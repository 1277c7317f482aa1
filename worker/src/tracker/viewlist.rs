//! The built-in classes `lua.ViewList` and `lua.ViewListItem` (ui-engine's list wrapper): what
//! `wrapper=lua.ViewList` finds before any of the app's classes.
//!
//! They are written in Lua (`viewlist.lua`, compiled into the worker) because everything they
//! hold (the items, the presenters, the source array) lives in the VM anyway, and change detection
//! then reads them like any app object: `items`, `0.item.caption()` and so on are ordinary paths.
//! The chunk is loaded the first time a variable asks for one of them, so a session that never
//! uses a list pays nothing for it. The chunk gets two functions from the tracker: `log` (the
//! worker's log, target `lua`) and `resolve` (the class lookup of `create=`/`wrapper=`, for
//! `itemWrapper=Type`).

use std::rc::Rc;

use mlua::{Table, Value as LuaValue};

use super::failure::Failure;
use super::Tracker;

/// The Lua source of the two classes.
const SOURCE: &str = include_str!("viewlist.lua");

/// The names the built-in classes answer to.
pub const VIEW_LIST: &str = "lua.ViewList";
pub const VIEW_LIST_ITEM: &str = "lua.ViewListItem";

/// Whether `raw` is a `lua.ViewListItem` whose list already builds `type_name` presenters for
/// its rows. ui-engine's frontend copies a list's `itemWrapper` onto each row's variable as
/// `wrapper`; the row's presenter is then already the item's `item`, so the row variable keeps
/// the ViewListItem (which its `lua.ViewListItem.list-item` template expects) instead of
/// wrapping it a second time.
pub fn presenter_already_built(raw: &LuaValue, type_name: &str) -> bool {
    let LuaValue::Table(item) = raw else {
        return false;
    };
    if super::value_json::table_type(item).as_deref() != Some(VIEW_LIST_ITEM) {
        return false;
    }
    let Ok(LuaValue::Table(list)) = item.raw_get::<LuaValue>("list") else {
        return false;
    };
    matches!(list.raw_get::<LuaValue>("itemWrapper"), Ok(LuaValue::String(s)) if s.as_bytes() == type_name.as_bytes())
}

impl Tracker {
    /// `lua.ViewList` or `lua.ViewListItem` when `name` is one of them (loading them on first
    /// use); `None` for every other name. A load failure is logged and reads as unknown.
    pub(crate) fn builtin_class(&self, name: &str) -> Option<Table> {
        let field = match name {
            VIEW_LIST => "ViewList",
            VIEW_LIST_ITEM => "ViewListItem",
            _ => return None,
        };
        let loaded = self.inner.builtins.borrow().clone();
        let classes = match loaded {
            Some(t) => t,
            None => match self.load_builtins() {
                Ok(t) => {
                    *self.inner.builtins.borrow_mut() = Some(t.clone());
                    t
                }
                Err(f) => {
                    tracing::error!(target: "lua", "loading {VIEW_LIST}: {}", f.description);
                    return None;
                }
            },
        };
        classes.raw_get::<Option<Table>>(field).ok().flatten()
    }

    fn load_builtins(&self) -> Result<Table, Failure> {
        let lua = self.lua()?;
        let err = |e: mlua::Error| Failure::lua(&e);
        let log = lua
            .create_function(|_, (level, msg): (String, String)| {
                match level.as_str() {
                    "warn" => tracing::warn!(target: "lua", "{msg}"),
                    "error" => tracing::error!(target: "lua", "{msg}"),
                    _ => tracing::info!(target: "lua", "{msg}"),
                }
                Ok(())
            })
            .map_err(err)?;
        let weak = Rc::downgrade(&self.inner);
        let resolve = lua
            .create_function(move |_, name: String| {
                let Some(inner) = weak.upgrade() else {
                    return Ok(LuaValue::Nil);
                };
                Ok(Tracker { inner }
                    .resolve_class(&name)
                    .map_or(LuaValue::Nil, LuaValue::Table))
            })
            .map_err(err)?;
        lua.load(SOURCE)
            .set_name("=lua.ViewList")
            .call::<Table>((log, resolve))
            .map_err(err)
    }
}
