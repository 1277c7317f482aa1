//! The app's Lua files, and our own fixed chunks, compiled once in the zygote for every VM
//! forked from it.
//!
//! A ready VM compiles the app's files before it has a session (`Modules::precompile`). Done in
//! every spare, that meant listing the app directory, resolving, reading and parsing each file:
//! ≈ 80 µs of a spare's start for a one-file app. The zygote does it once at start-up
//! ([`compile_for_forks`]) and keeps each file's text and bytecode; a forked spare inherits
//! them with its memory and only loads the bytecode into its own VM. Nothing else changes: a
//! file is still read and checked when it runs, and the chunk prepared ahead is used only if
//! the file's text is still exactly what was compiled (so a file edited since the zygote
//! started is compiled when it runs, as it is then). Bytecode is loaded only from here, never
//! from app code (`load` is text-only).
//!
//! Our own fixed chunks (the turn budget's wrappers of `pcall` and friends) are compiled the
//! same way ([`compile_fixed_for_forks`], [`fixed_chunk`]): parsing that one chunk took ≈ 70 µs
//! of each spare's start.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use mlua::Lua;

/// One app file as the zygote compiled it.
pub struct AheadFile {
    /// Relative to the app directory, as `require` names it.
    pub rel: String,
    /// The text it was compiled from.
    pub source: Vec<u8>,
    /// `string.dump` of the compiled chunk, debug information kept (error lines, names).
    pub bytecode: Vec<u8>,
}

struct Ahead {
    /// The canonical app directory and confining directory the files were found with.
    root: PathBuf,
    confine: PathBuf,
    files: Vec<AheadFile>,
}

static AHEAD: OnceLock<Ahead> = OnceLock::new();

/// In the zygote, before it forks: compiles the app in `app_dir` (symlinks confined to
/// `confine_dir`) as a ready VM would, in a throwaway VM. Returns how many files compiled.
pub fn compile_for_forks(app_dir: &Path, confine_dir: &Path) -> mlua::Result<usize> {
    let canonical = |dir: &Path| dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let (root, confine) = (canonical(app_dir), canonical(confine_dir));
    let lua = Lua::new_with(mlua::StdLib::NONE, mlua::LuaOptions::default())?;
    let files: Vec<AheadFile> = super::require::app_sources(&root, &confine)
        .into_iter()
        .filter_map(|(rel, source)| {
            let bytecode = super::require::compile(&lua, &rel, &source)
                .ok()?
                .dump(false);
            Some(AheadFile {
                rel,
                source,
                bytecode,
            })
        })
        .collect();
    let compiled = files.len();
    let _ = AHEAD.set(Ahead {
        root,
        confine,
        files,
    });
    Ok(compiled)
}

/// Our fixed chunks the zygote compiled: (source, bytecode).
static FIXED: OnceLock<Vec<(&'static str, Vec<u8>)>> = OnceLock::new();

/// In the zygote, before it forks: compiles our fixed chunks, given as (name, source), the
/// name being what [`fixed_chunk`] is called with.
pub fn compile_fixed_for_forks(chunks: &[(&'static str, &'static str)]) -> mlua::Result<()> {
    let lua = Lua::new_with(mlua::StdLib::NONE, mlua::LuaOptions::default())?;
    let mut fixed = Vec::new();
    for &(name, source) in chunks {
        let function = lua.load(source).set_name(name).into_function()?;
        fixed.push((source, function.dump(false)));
    }
    let _ = FIXED.set(fixed);
    Ok(())
}

/// The fixed chunk `source` (named `name`, as in errors) as a function of `lua`: loaded from
/// the zygote's bytecode when this process was forked from it, else compiled now.
pub fn fixed_chunk(lua: &Lua, name: &str, source: &str) -> mlua::Result<mlua::Function> {
    let compiled = FIXED
        .get()
        .and_then(|fixed| fixed.iter().find(|(text, _)| *text == source));
    match compiled {
        Some((_, bytecode)) => lua
            .load(&bytecode[..])
            .set_name(name)
            .set_mode(mlua::chunk::ChunkMode::Binary)
            .into_function(),
        None => lua
            .load(source)
            .set_name(name)
            .set_mode(mlua::chunk::ChunkMode::Text)
            .into_function(),
    }
}

/// The files the zygote compiled, if this process was forked from it and the VM being built
/// has the same (canonical) app and confining directories.
pub fn for_app(root: &Path, confine: &Path) -> Option<&'static [AheadFile]> {
    AHEAD
        .get()
        .filter(|a| a.root == root && a.confine == confine)
        .map(|a| a.files.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bytecode_runs_in_another_vm_as_the_text_would_errors_and_lines_included() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("main.lua"),
            "local m = require('lib.m')\nreturn m.twice(21)\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("lib")).unwrap();
        std::fs::write(
            dir.path().join("lib/m.lua"),
            "local M = {}\nfunction M.twice(x) return 2 * x end\nfunction M.fail()\n  error('no')\nend\nreturn M\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("broken.lua"), "this is not lua").unwrap();
        assert_eq!(compile_for_forks(dir.path(), dir.path()).unwrap(), 2);
        let root = dir.path().canonicalize().unwrap();
        assert!(
            for_app(&root, &root.join("lib")).is_none(),
            "another confining directory"
        );
        let files = for_app(&root, &root).expect("compiled for this app");
        let rels: Vec<&str> = files.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(rels, ["main.lua", "lib/m.lua"]);
        let lua = Lua::new();
        let m = &files[1];
        assert_eq!(
            m.source,
            std::fs::read(dir.path().join("lib/m.lua")).unwrap()
        );
        let module: mlua::Table = lua
            .load(&m.bytecode[..])
            .set_mode(mlua::chunk::ChunkMode::Binary)
            .call(())
            .unwrap();
        let twice: mlua::Function = module.get("twice").unwrap();
        assert_eq!(twice.call::<i64>(21).unwrap(), 42);
        let fail: mlua::Function = module.get("fail").unwrap();
        let error = fail.call::<()>(()).unwrap_err().to_string();
        assert!(error.contains("lib/m.lua:4: no"), "{error}");
    }

    #[test]
    fn a_fixed_chunk_compiled_ahead_runs_as_its_text_and_others_are_compiled_when_asked() {
        const AHEAD: &str = "local x = ...\nreturn x * 2, name_check()\n";
        const LATER: &str = "return 'later'";
        compile_fixed_for_forks(&[("=ahead", AHEAD)]).unwrap();
        let lua = Lua::new();
        let twice = fixed_chunk(&lua, "=ahead", AHEAD).unwrap();
        // Its errors carry the chunk's name and line, as the text's would.
        let error = twice.call::<i64>(21).unwrap_err().to_string();
        assert!(error.contains("ahead:2:"), "{error}");
        let check = lua.create_function(|_, ()| Ok(0)).unwrap();
        lua.globals().set("name_check", check).unwrap();
        assert_eq!(twice.call::<i64>(21).unwrap(), 42);
        // What it loaded is the zygote's bytecode, which runs by itself.
        let (_, bytecode) = FIXED
            .get()
            .unwrap()
            .iter()
            .find(|(t, _)| *t == AHEAD)
            .unwrap();
        let loaded = lua
            .load(&bytecode[..])
            .set_mode(mlua::chunk::ChunkMode::Binary);
        assert_eq!(loaded.call::<i64>(4).unwrap(), 8);
        let later = fixed_chunk(&lua, "=later", LATER).unwrap();
        assert_eq!(later.call::<String>(()).unwrap(), "later");
    }
}
