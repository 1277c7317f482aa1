//! Computing one variable's value in three steps, so that no borrow of the tracker's state is
//! held while Lua runs (a getter may call `session:createVariable`):
//! [`plan`] reads what is needed under the borrow, [`evaluate`] runs Lua with no borrow held,
//! and [`store`] records the result under a fresh borrow.

use std::rc::Rc;

use mlua::Value as LuaValue;
use protocol::Value;

use super::failure::Failure;
use super::objects::ObjectRegistry;
use super::path::Path;
use super::value_json::{same, table_type, to_json};
use super::variable::{Binding, Variable};
use super::State;

/// What to evaluate: a held value, or a path from the parent's current value.
pub enum Source {
    Own(LuaValue),
    Path(LuaValue, Rc<Path>),
}

pub enum Plan {
    Eval(Source),
    /// A `w` or `action` variable: never read.
    Unreadable,
    /// The parent's value is unknown (its own path failed, or it was never computed).
    NoBase,
}

pub struct Computed {
    pub lua: LuaValue,
    pub json: Value,
    pub type_name: Option<String>,
}

pub fn plan(state: &State, var: &Variable) -> Plan {
    match &var.binding {
        Binding::Own(v) => Plan::Eval(Source::Own(v.clone())),
        Binding::Path(_) if !var.access.readable() => Plan::Unreadable,
        Binding::Path(path) => match var
            .parent
            .and_then(|k| state.vars.get(&k))
            .and_then(|p| p.current.clone())
        {
            Some(base) => Plan::Eval(Source::Path(base, path.clone())),
            None => Plan::NoBase,
        },
    }
}

/// Runs the path (Lua code may run here) and converts the result to value JSON.
pub fn evaluate(objects: &ObjectRegistry, source: Source) -> Result<Computed, Failure> {
    let lua = match source {
        Source::Own(v) => v,
        Source::Path(base, path) => path.read(base).map_err(Failure::as_path_failure)?,
    };
    let json = to_json(objects, &lua)?;
    let type_name = lua.as_table().and_then(table_type);
    Ok(Computed {
        lua,
        json,
        type_name,
    })
}

/// What [`store`] found different from before.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stored {
    pub value_changed: bool,
    /// A new error text (a cleared error is not a change anyone is told about).
    pub error_changed: bool,
}

pub fn store(var: &mut Variable, result: Result<Computed, Failure>) -> Stored {
    match result {
        Ok(c) => {
            var.current = Some(c.lua);
            let value_changed = !matches!(&var.value, Some(old) if same(old, &c.json));
            if value_changed {
                var.value = Some(c.json);
            }
            set_type(var, c.type_name);
            var.error = None;
            Stored {
                value_changed,
                error_changed: false,
            }
        }
        Err(f) => {
            var.current = None;
            // Forget the value so that it is sent again once the path works again.
            var.value = None;
            let error_changed = var.error.as_ref().map(|(_, d)| d) != Some(&f.description);
            var.error = Some((f.code, f.description));
            Stored {
                value_changed: false,
                error_changed,
            }
        }
    }
}

/// The server owns `type` while the value has one; a type it set goes when the value's does.
fn set_type(var: &mut Variable, type_name: Option<String>) {
    let priority = var.props.value_priority();
    match type_name {
        Some(t) => {
            if var.props.get("type") != Some(t.as_str()) {
                var.props.set_with("type", &t, priority);
            }
            var.server_type = true;
        }
        None if var.server_type => {
            var.props.set_with("type", "", priority);
            var.server_type = false;
        }
        None => {}
    }
}
