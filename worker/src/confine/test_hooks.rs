//! Test-only Lua functions that make the calls the sandbox must stop, compiled only with the
//! worker's `test-hooks` feature (which the broker's process-level tests turn on through a
//! dev-dependency; `cargo build`/`cargo run` never have it). Installed as the global
//! `__luabroker_test`:
//! - `syscall(name, ...)`: makes that raw system call with the integer arguments given (zero
//!   for the rest); returns its result;
//! - `pid()`: this process's pid;
//! - `connect(address)`: opens a TCP connection to `address` (`host:port`); returns
//!   `"connected"` or the error text;
//! - `read(path)`: reads a file by any path, past `require`'s own confinement (the OS fences
//!   must stop it); returns its text or the error text.

use mlua::Lua;

pub fn install(lua: &Lua) -> mlua::Result<()> {
    let hooks = lua.create_table()?;
    hooks.raw_set(
        "syscall",
        lua.create_function(|_, (name, args): (String, mlua::Variadic<i64>)| {
            let number = protocol::sandbox::syscall_number(&name)
                .ok_or_else(|| mlua::Error::runtime(format!("no system call named {name}")))?;
            let mut a = [0i64; 6];
            for (slot, arg) in a.iter_mut().zip(args.iter()) {
                *slot = *arg;
            }
            // SAFETY: a test asks for a call it expects the sandbox to stop, or for one that
            // takes no memory of ours (integer arguments only: no pointer but 0 is passed).
            let result = unsafe {
                libc::syscall(
                    libc::c_long::from(number),
                    a[0],
                    a[1],
                    a[2],
                    a[3],
                    a[4],
                    a[5],
                )
            };
            Ok(result)
        })?,
    )?;
    hooks.raw_set("pid", lua.create_function(|_, ()| Ok(std::process::id()))?)?;
    hooks.raw_set(
        "connect",
        lua.create_function(|_, address: String| {
            Ok(match std::net::TcpStream::connect(address.as_str()) {
                Ok(_) => "connected".to_string(),
                Err(e) => e.to_string(),
            })
        })?,
    )?;
    hooks.raw_set(
        "read",
        lua.create_function(|_, path: String| {
            Ok(std::fs::read_to_string(&path).unwrap_or_else(|e| e.to_string()))
        })?,
    )?;
    lua.globals().raw_set("__luabroker_test", hooks)
}
