//! Test-only Lua functions that make the calls the sandbox must stop, compiled only with the
//! worker's `test-hooks` feature (which the broker's process-level tests turn on through a
//! dev-dependency; `cargo build`/`cargo run` never have it). Installed as the global
//! `__luabroker_test`:
//! - `syscall(name)`: makes that raw system call with zero arguments; returns its result;
//! - `connect(port)`: opens a TCP connection to 127.0.0.1:`port`; returns `"connected"` or the
//!   error text.

use mlua::Lua;

pub fn install(lua: &Lua) -> mlua::Result<()> {
    let hooks = lua.create_table()?;
    hooks.raw_set(
        "syscall",
        lua.create_function(|_, name: String| {
            let number = protocol::sandbox::syscall_number(&name)
                .ok_or_else(|| mlua::Error::runtime(format!("no system call named {name}")))?;
            // SAFETY: a test asks for a call it expects the sandbox to stop; with zero
            // arguments no memory of ours is handed to the kernel.
            let result = unsafe { libc::syscall(libc::c_long::from(number), 0, 0, 0, 0, 0, 0) };
            Ok(result)
        })?,
    )?;
    hooks.raw_set(
        "connect",
        lua.create_function(|_, port: u16| {
            Ok(match std::net::TcpStream::connect(("127.0.0.1", port)) {
                Ok(_) => "connected".to_string(),
                Err(e) => e.to_string(),
            })
        })?,
    )?;
    lua.globals().raw_set("__luabroker_test", hooks)
}
