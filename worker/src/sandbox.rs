//! The Lua sandbox every session runs in (ARCHITECTURE.md 5).
//!
//! `Lua::new()` opens `io`, `os.execute`, `require` and binary `load` (ARCHITECTURE.md 8), so the VM is
//! built with only the libraries an app needs, and what remains reachable is trimmed: no file or
//! process access, no `debug`, no native modules, no binary chunks. `require` is added back by
//! the session, confined to the app directory.

use mlua::{Function, Lua, LuaOptions, MultiValue, StdLib, Table, Value};

/// The `os` functions apps keep: clocks and dates, nothing that touches the system.
const OS_KEPT: [&str; 4] = ["time", "clock", "date", "difftime"];

/// Builds a fresh, sandboxed Lua 5.4 state.
pub fn new_vm() -> mlua::Result<Lua> {
    let libs = StdLib::COROUTINE
        | StdLib::TABLE
        | StdLib::STRING
        | StdLib::UTF8
        | StdLib::MATH
        | StdLib::OS;
    // On a stack of its own, so this VM's string-hash seed is its own (see `hash_seed`).
    let lua = crate::hash_seed::with_own_seed(|| Lua::new_with(libs, LuaOptions::default()))
        .map_err(|e| mlua::Error::runtime(format!("cannot map a stack for the new VM: {e}")))??;
    let globals = lua.globals();

    // Base-library functions that read files.
    for name in ["dofile", "loadfile"] {
        globals.raw_set(name, Value::Nil)?;
    }

    // `load` keeps working for text chunks; precompiled bytecode can corrupt the VM.
    let load: Function = globals.get("load")?;
    let text_only = lua.create_function(
        move |_, (chunk, name, _mode, env): (Value, Value, Value, Value)| {
            load.call::<MultiValue>((chunk, name, "t", env))
        },
    )?;
    globals.raw_set("load", text_only)?;

    let os: Table = globals.get("os")?;
    let safe_os = lua.create_table()?;
    for name in OS_KEPT {
        safe_os.raw_set(name, os.get::<Value>(name)?)?;
    }
    globals.raw_set("os", safe_os)?;

    // A worker's stdout goes nowhere; `print` becomes a log line instead.
    let print = lua.create_function(|lua, args: MultiValue| {
        let mut line = String::new();
        for (i, v) in args.iter().enumerate() {
            if i > 0 {
                line.push('\t');
            }
            line.push_str(&lua_to_display(lua, v)?);
        }
        tracing::info!(target: "lua", "{line}");
        Ok(())
    })?;
    globals.raw_set("print", print)?;

    // Lua seeds math.random from the clock and addresses, which forked workers share: without
    // this, sessions started in the same second would draw the same "random" numbers.
    let mut seed = [0u8; 16];
    if getrandom::fill(&mut seed).is_ok() {
        let math: Table = globals.get("math")?;
        let randomseed: Function = math.get("randomseed")?;
        let (a, b) = seed.split_at(8);
        randomseed.call::<()>((
            i64::from_le_bytes(a.try_into().unwrap_or_default()),
            i64::from_le_bytes(b.try_into().unwrap_or_default()),
        ))?;
    }
    Ok(lua)
}

/// `tostring(v)`, as Lua's `print` would show it.
pub fn lua_to_display(lua: &Lua, v: &Value) -> mlua::Result<String> {
    let tostring: Function = lua.globals().get("tostring")?;
    tostring.call::<String>(v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval<T: mlua::FromLuaMulti>(lua: &Lua, code: &str) -> T {
        lua.load(code).eval().unwrap()
    }

    #[test]
    fn dangerous_globals_are_gone() {
        let lua = new_vm().unwrap();
        for name in [
            "io",
            "debug",
            "package",
            "require",
            "dofile",
            "loadfile",
            "os.execute",
            "os.exit",
            "os.remove",
            "os.rename",
            "os.getenv",
            "os.tmpname",
        ] {
            let code = format!("return {name} == nil");
            assert!(eval::<bool>(&lua, &code), "{name} is reachable");
        }
    }

    #[test]
    fn clocks_and_libraries_stay() {
        let lua = new_vm().unwrap();
        assert!(eval::<bool>(
            &lua,
            "return type(os.time()) == 'number' and type(os.clock()) == 'number' \
             and type(os.date('%Y')) == 'string' and string.format('%d', 3) == '3' \
             and math.max(1, 2) == 2 and table.concat({'a','b'}) == 'ab' and utf8.char(72) == 'H' \
             and coroutine.wrap(function() coroutine.yield(5) end)() == 5"
        ));
    }

    #[test]
    fn every_vm_draws_its_own_random_numbers() {
        let draw = |lua: &Lua| eval::<i64>(lua, "return math.random(1, 1 << 40)");
        assert_ne!(draw(&new_vm().unwrap()), draw(&new_vm().unwrap()));
    }

    #[test]
    fn load_accepts_text_and_refuses_bytecode() {
        let lua = new_vm().unwrap();
        assert_eq!(eval::<i64>(&lua, "return load('return 1 + 2')()"), 3);
        let refused: bool = eval(
            &lua,
            "local f, err = load(string.dump(function() return 1 end)) return f == nil and err ~= nil",
        );
        assert!(refused);
    }
}
