//! `require` confined to the app directory, the loading of app files (`main.lua` included), and
//! their re-execution for hot reload.
//!
//! - `require("a.b")` runs `a/b.lua` of the app directory, once: its result is cached in
//!   `package.loaded` (the only field of `package`), `true` when the module returns nothing.
//!   Module names are dot-separated words of letters, digits, `_` and `-`, so a name can hold
//!   neither `..` nor an absolute path; the file is then canonicalized and must still lie inside
//!   the (canonical) app directory, so a symlink cannot lead out of it either.
//! - Circular requires: while a module runs, a `require` of it returns what it has put in
//!   `package.loaded[name]` so far (Lua's idiom for a module that publishes its table early), or
//!   `true` when it has put nothing there. Stock Lua would recurse until the C stack overflows;
//!   we choose `true`, the value stock `require` gives a module that returns nothing.
//! - Chunks are named `@a/b.lua`, so errors read `a/b.lua:3: …`. A module whose chunk fails is
//!   not cached: the next `require` tries again. Like stock Lua, a module chunk receives its name
//!   and its file path as `...`. Files are loaded as text only: bytecode could corrupt the VM.
//! - With `--dir`, a module the app's `lua/` directory lacks is looked up in the site
//!   directory itself (`require("apps.x.app")` → `DIR/apps/x/app.lua`), as ui-engine does.
//! - Every file run is a module for [`super::modules`]: what it registers is noted as its own,
//!   under its key (its path relative to the site, symlinks resolved).
//! - A ready VM compiles the app's files before it has a session ([`Modules::precompile`]), so
//!   `main.lua`'s run does not parse them; a VM forked from the zygote loads the bytecode the
//!   zygote compiled once ([`super::ahead`]). A file is still read (and its path checked) when it
//!   is run, and the compiled chunk is used only if the file's text is still exactly what was
//!   compiled; otherwise it is compiled afresh (and a syntax error reported as before).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use mlua::chunk::ChunkMode;
use mlua::{Function, IntoLuaMulti, Lua, Table, Value};

use super::modules::Tracking;
use super::prototype::Prototypes;

/// The app's loaded files and module cache; cheap to clone (a shared handle).
#[derive(Clone)]
pub struct Modules(Rc<RefCell<State>>);

struct State {
    /// The canonical app directory.
    root: PathBuf,
    /// Files reached through symlinks must stay inside this (canonical) directory: the app
    /// directory, or the whole site with `--dir`.
    confine: PathBuf,
    session: Table,
    /// `package.loaded`: module name → value.
    loaded: Table,
    /// Modules whose chunk is running (for circular requires).
    loading: HashSet<String>,
    /// Files run so far, in the order they finished loading.
    files: Vec<LoadedFile>,
    /// Which running file registers what (see [`super::modules`]).
    tracking: Tracking,
    /// Chunks compiled ahead (by relative path), each with the text it was compiled from.
    precompiled: HashMap<String, (Vec<u8>, Function)>,
    /// Every file read to be run, as it was when read (a session started ahead reports them,
    /// so the broker can tell whether the app has changed since: `Ready`).
    read: Vec<protocol::ipc::FileStamp>,
}

/// What a ready VM compiles ahead: at most this many files, this many bytes of source in all,
/// this deep below the app directory. Files beyond are simply compiled when they are run.
const PRECOMPILE_FILES: usize = 64;
const PRECOMPILE_BYTES: usize = 1024 * 1024;
const PRECOMPILE_DEPTH: usize = 4;

struct LoadedFile {
    /// As it was found: relative to the app directory (or, for a module found only in the
    /// `--dir` site, relative to the site), `/`-separated.
    path: String,
    /// Its module key: relative to the site (the app directory without `--dir`), symlinks
    /// resolved; what hot reload names it by.
    key: String,
    /// The module name it was required as; `None` for `main.lua`.
    module: Option<String>,
}

impl Modules {
    /// Sets the `require` and `package` globals for the app in `app_dir`.
    pub fn install(
        lua: &Lua,
        session: &Table,
        app_dir: &Path,
        tracking: Tracking,
    ) -> mlua::Result<Modules> {
        // A missing app directory stays as given: every load then fails with "not found".
        let root = app_dir
            .canonicalize()
            .unwrap_or_else(|_| app_dir.to_path_buf());
        let loaded = lua.create_table()?;
        let package = lua.create_table()?;
        package.raw_set("loaded", &loaded)?;
        lua.globals().raw_set("package", package)?;
        let this = Modules(Rc::new(RefCell::new(State {
            confine: root.clone(),
            root,
            session: session.clone(),
            loaded,
            loading: HashSet::new(),
            files: Vec::new(),
            tracking,
            precompiled: HashMap::new(),
            read: Vec::new(),
        })));
        let me = this.clone();
        lua.globals().raw_set(
            "require",
            lua.create_function(move |lua, name: String| me.require(lua, name))?,
        )?;
        Ok(this)
    }

    /// Lets symlinked app files lead anywhere inside `dir` (which holds the app directory).
    pub fn confine_to(&self, dir: &Path) {
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        self.0.borrow_mut().confine = dir;
    }

    /// Compiles the app's files ([`app_sources`]) into this VM, running none of them; forked
    /// from a zygote that compiled them, loads its bytecode instead. A file that does not
    /// compile is left out: running it reports the error as always.
    pub fn precompile(&self, lua: &Lua) {
        let (root, confine) = {
            let state = self.0.borrow();
            (state.root.clone(), state.confine.clone())
        };
        // Forked from a zygote that compiled this app: its bytecode loads without reading or
        // parsing anything (see [`super::ahead`]).
        let compiled = match super::ahead::for_app(&root, &confine) {
            Some(files) => files
                .iter()
                .filter_map(|f| {
                    let chunk = lua
                        .load(&f.bytecode[..])
                        .set_name(format!("@{}", f.rel))
                        .set_mode(ChunkMode::Binary)
                        .into_function()
                        .ok()?;
                    Some((f.rel.clone(), (f.source.clone(), chunk)))
                })
                .collect(),
            None => app_sources(&root, &confine)
                .into_iter()
                .filter_map(|(rel, source)| {
                    let chunk = compile(lua, &rel, &source).ok()?;
                    Some((rel, (source, chunk)))
                })
                .collect(),
        };
        self.0.borrow_mut().precompiled = compiled;
    }

    /// Drops the chunks compiled ahead that have not been run (after `main.lua`: later loads
    /// compile the file as it is then).
    pub fn forget_precompiled(&self) {
        self.0.borrow_mut().precompiled.clear();
    }

    /// The app files run so far, relative to the app directory, in the order they finished
    /// loading (a module before the file that required it).
    pub fn loaded_files(&self) -> Vec<String> {
        self.0
            .borrow()
            .files
            .iter()
            .map(|f| f.path.clone())
            .collect()
    }

    /// Runs the app file `rel_path` (not as a module) and records it as loaded.
    pub fn load_file(&self, lua: &Lua, rel_path: &str) -> mlua::Result<Value> {
        let rel = normalize(rel_path).map_err(mlua::Error::runtime)?;
        let (value, key) = self.run(lua, &rel, ())?;
        self.record(rel, key, None);
        Ok(value)
    }

    /// The loaded file `name` names: its module key, its path, or its module name.
    fn find(files: &[LoadedFile], name: &str) -> Option<usize> {
        let path = normalize(name).ok();
        files.iter().position(|f| {
            f.key == name
                || Some(&f.path) == path.as_ref()
                || Some(&f.key) == path.as_ref()
                || f.module.as_deref() == Some(name)
        })
    }

    /// Whether `name` (a module key, path or module name) is a loaded file: what hot reload
    /// re-runs.
    pub fn is_loaded(&self, name: &str) -> bool {
        Modules::find(&self.0.borrow().files, name).is_some()
    }

    /// `session:unloadModule`'s part here: forgets the loaded file `name` names, and its
    /// `package.loaded` entry, so that the next `require` runs it again. Its key, if there
    /// was one.
    pub fn forget(&self, name: &str) -> mlua::Result<Option<String>> {
        let (file, loaded) = {
            let mut state = self.0.borrow_mut();
            let Some(i) = Modules::find(&state.files, name) else {
                return Ok(None);
            };
            (state.files.remove(i), state.loaded.clone())
        };
        if let Some(module) = &file.module {
            loaded.raw_set(module.as_str(), Value::Nil)?;
        }
        Ok(Some(file.key))
    }

    /// The keys of the loaded files under `dir` (a directory of the site or of the app
    /// directory; subdirectories included), in load order.
    pub fn keys_under(&self, dir: &str) -> Vec<String> {
        let dir = dir.trim_start_matches("./").trim_end_matches('/');
        let under = |p: &str| dir.is_empty() || dir == "." || p.starts_with(&format!("{dir}/"));
        self.0
            .borrow()
            .files
            .iter()
            .filter(|f| under(&f.key) || under(&f.path))
            .map(|f| f.key.clone())
            .collect()
    }

    fn require(&self, lua: &Lua, name: String) -> mlua::Result<Value> {
        let file = module_file(&name).map_err(mlua::Error::runtime)?;
        let (loaded, circular) = {
            let state = self.0.borrow();
            (state.loaded.clone(), state.loading.contains(&name))
        };
        let cached: Value = loaded.raw_get(name.as_str())?;
        if !cached.is_nil() {
            return Ok(cached);
        }
        if circular {
            return Ok(Value::Boolean(true));
        }
        self.0.borrow_mut().loading.insert(name.clone());
        let ran = self.run(lua, &file, (name.as_str(), file.as_str()));
        self.0.borrow_mut().loading.remove(&name);
        let (value, key) = match ran {
            Ok(ran) => ran,
            Err(e) => {
                loaded.raw_set(name.as_str(), Value::Nil)?;
                return Err(e);
            }
        };
        if !value.is_nil() {
            loaded.raw_set(name.as_str(), value)?;
        } else if loaded.raw_get::<Value>(name.as_str())?.is_nil() {
            loaded.raw_set(name.as_str(), true)?;
        }
        self.record(file, key, Some(name.clone()));
        loaded.raw_get(name.as_str())
    }

    /// Runs `rel` (already normalized) as a chunk named `@rel`, as the module whose
    /// registrations [`Tracking`] notes; its first result and its module key.
    fn run(&self, lua: &Lua, rel: &str, args: impl IntoLuaMulti) -> mlua::Result<(Value, String)> {
        let (root, confine, tracking) = {
            let state = self.0.borrow();
            (
                state.root.clone(),
                state.confine.clone(),
                state.tracking.clone(),
            )
        };
        let path = resolve(&root, &confine, rel).map_err(mlua::Error::runtime)?;
        let key = path
            .strip_prefix(&confine)
            .ok()
            .and_then(|p| p.to_str())
            .map(|p| p.replace(std::path::MAIN_SEPARATOR, "/"))
            .unwrap_or_else(|| rel.to_string());
        let source = self
            .read_stamped(&path)
            .map_err(|e| mlua::Error::runtime(format!("cannot read {rel}: {e}")))?;
        let ahead = self.0.borrow_mut().precompiled.remove(rel);
        let chunk = match ahead {
            Some((text, chunk)) if text == source => chunk,
            _ => compile(lua, rel, &source)?,
        };
        tracking.enter(&key);
        let ran = chunk.call(args);
        tracking.leave();
        Ok((ran?, key))
    }

    /// Reads `path`, noting its stamp first (taken from the open file, so a write after it
    /// changes the stamp the broker will compare).
    fn read_stamped(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        let mut file = std::fs::File::open(path)?;
        let meta = file.metadata()?;
        let stamp = protocol::ipc::FileStamp::of(path, &meta);
        let mut source = Vec::with_capacity(meta.len() as usize + 1);
        // Through `take`: `File::read_to_end` asks for the size and the position again (a
        // `statx` and an `lseek`) to size a buffer that is already sized.
        (&mut file).take(u64::MAX).read_to_end(&mut source)?;
        let mut state = self.0.borrow_mut();
        if !state.read.iter().any(|s| s.path == stamp.path) {
            state.read.push(stamp);
        }
        Ok(source)
    }

    /// The stamps of every file read to be run so far, each once (its first read).
    pub fn files_read(&self) -> Vec<protocol::ipc::FileStamp> {
        self.0.borrow().read.clone()
    }

    fn record(&self, path: String, key: String, module: Option<String>) {
        let mut state = self.0.borrow_mut();
        if !state.files.iter().any(|f| f.key == key) {
            state.files.push(LoadedFile { path, key, module });
        }
    }
}

/// Hot reload: re-executes the already-loaded app file `rel_path` with `session.reloading` set
/// to true (false again afterwards, whatever happens), then runs the prototype mutations the
/// file queued. A module that returns a value replaces its `package.loaded` entry, so later
/// `require`s see the new version. The caller owns the turn (budget) this runs in.
pub fn reload_file(
    lua: &Lua,
    modules: &Modules,
    prototypes: &Prototypes,
    rel_path: &str,
) -> mlua::Result<()> {
    normalize(rel_path).map_err(mlua::Error::runtime)?;
    let (session, loaded, rel, module) = {
        let state = modules.0.borrow();
        let Some(i) = Modules::find(&state.files, rel_path) else {
            return Err(mlua::Error::runtime(format!(
                "{rel_path} has not been loaded, so it cannot be reloaded"
            )));
        };
        let file = &state.files[i];
        (
            state.session.clone(),
            state.loaded.clone(),
            file.path.clone(),
            file.module.clone(),
        )
    };
    session.raw_set("reloading", true)?;
    let ran = match &module {
        Some(name) => modules.run(lua, &rel, (name.as_str(), rel.as_str())),
        None => modules.run(lua, &rel, ()),
    };
    session.raw_set("reloading", false)?;
    if let (Ok((value, _)), Some(name)) = (&ran, &module) {
        if !value.is_nil() {
            loaded.raw_set(name.as_str(), value)?;
        }
    }
    let mutated = prototypes.run_pending_mutations();
    ran?;
    mutated
}

/// What a ready VM compiles ahead, as (path relative to `root`, text): `main.lua` and the
/// app's other `.lua` files that `require` could name (within [`PRECOMPILE_FILES`],
/// [`PRECOMPILE_BYTES`], [`PRECOMPILE_DEPTH`]), each found as `require` would find it.
pub(super) fn app_sources(root: &Path, confine: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = vec!["main.lua".to_string()];
    lua_files_below(root, "", PRECOMPILE_DEPTH, &mut files);
    let mut bytes = 0;
    let mut sources: Vec<(String, Vec<u8>)> = Vec::new();
    for rel in files {
        if sources.len() >= PRECOMPILE_FILES || sources.iter().any(|(r, _)| *r == rel) {
            continue;
        }
        let Ok(path) = resolve(root, confine, &rel) else {
            continue;
        };
        let Ok(source) = std::fs::read(&path) else {
            continue;
        };
        bytes += source.len();
        if bytes > PRECOMPILE_BYTES {
            break;
        }
        sources.push((rel, source));
    }
    sources
}

/// Compiles the text of app file `rel`, named `@rel` so errors read `rel:line: …`.
pub(super) fn compile(lua: &Lua, rel: &str, source: &[u8]) -> mlua::Result<Function> {
    lua.load(source)
        .set_name(format!("@{rel}"))
        .set_mode(ChunkMode::Text)
        .into_function()
}

/// Adds the `.lua` files under `dir` (relative `prefix`) whose paths `require` could name,
/// `depth` directories down, in name order.
fn lua_files_below(dir: &Path, prefix: &str, depth: usize, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    // One word, as a part of a module name (`a.b` is `a/b.lua`, never `a.b.lua`).
    let word = |w: &str| !w.contains('.') && module_file(w).is_ok();
    for entry in entries {
        if out.len() >= PRECOMPILE_FILES {
            return;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let rel = format!("{prefix}{name}");
        if kind.is_dir() && depth > 0 && word(&name) {
            lua_files_below(&entry.path(), &format!("{rel}/"), depth - 1, out);
        } else if name.strip_suffix(".lua").is_some_and(word) {
            out.push(rel);
        }
    }
}

/// `a.b` → `a/b.lua`, refusing anything but dot-separated words.
fn module_file(name: &str) -> Result<String, String> {
    let word_ok = |w: &str| {
        !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if !name.split('.').all(word_ok) {
        return Err(format!(
            "invalid module name '{name}': use dot-separated words of letters, digits, '_' \
             and '-' (like 'lib.util'), which name a file inside the app directory"
        ));
    }
    Ok(format!("{}.lua", name.replace('.', "/")))
}

/// A relative path inside the app directory, `/`-separated, without `.` parts; refuses
/// absolute paths and `..`.
fn normalize(rel: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    for part in Path::new(rel).components() {
        match part {
            Component::Normal(p) => parts.push(
                p.to_str()
                    .ok_or_else(|| format!("{rel}: not a UTF-8 path"))?
                    .to_string(),
            ),
            Component::CurDir => {}
            _ => return Err(format!("{rel} is not a path inside the app directory")),
        }
    }
    if parts.is_empty() {
        return Err(format!("'{rel}' names no file"));
    }
    Ok(parts.join("/"))
}

/// The canonical file for `rel` (under `root`; with a site around the app directory, under
/// the site when `root` has no such file, as ui-engine's `require` looks in its lua directory
/// and then its base directory), which must exist and lie inside `confine` once symlinks are
/// resolved.
fn resolve(root: &Path, confine: &Path, rel: &str) -> Result<PathBuf, String> {
    // A file directly in the (canonical) app directory that is not a symlink is its own
    // canonical path: one `lstat`, where `canonicalize` reads every component as a link and
    // `is_file` stats the result (four system calls on `GET /`'s path for `main.lua`).
    if !rel.contains('/') {
        let path = root.join(rel);
        let plain_file = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file());
        if plain_file && path.starts_with(confine) {
            return Ok(path);
        }
    }
    let path = match root.join(rel).canonicalize() {
        Ok(path) => path,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && confine != root => confine
            .join(rel)
            .canonicalize()
            .map_err(|_| format!("cannot open {rel}: {e}"))?,
        Err(e) => return Err(format!("cannot open {rel}: {e}")),
    };
    if !path.starts_with(confine) {
        return Err(format!("{rel} leads outside the app directory"));
    }
    if !path.is_file() {
        return Err(format!("{rel} is not a file"));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::resolve;

    /// The app directory's files, as `require` and `main.lua` find them: a plain file is
    /// itself, a symlink is followed only while it stays inside the confining directory.
    #[test]
    fn files_resolve_inside_the_app_directory_and_symlinks_may_not_lead_out() {
        let top = tempfile::tempdir().unwrap();
        let top = top.path().canonicalize().unwrap();
        let app = top.join("app");
        std::fs::create_dir(&app).unwrap();
        std::fs::write(app.join("main.lua"), "return 1").unwrap();
        std::fs::write(app.join("real.lua"), "return 2").unwrap();
        std::fs::write(top.join("secret.lua"), "return 3").unwrap();
        std::os::unix::fs::symlink(app.join("real.lua"), app.join("inside.lua")).unwrap();
        std::os::unix::fs::symlink(top.join("secret.lua"), app.join("outside.lua")).unwrap();
        std::fs::create_dir(app.join("dir.lua")).unwrap();

        assert_eq!(resolve(&app, &app, "main.lua"), Ok(app.join("main.lua")));
        assert_eq!(resolve(&app, &app, "inside.lua"), Ok(app.join("real.lua")));
        let out = resolve(&app, &app, "outside.lua").unwrap_err();
        assert!(out.contains("leads outside the app directory"), "{out}");
        let dir = resolve(&app, &app, "dir.lua").unwrap_err();
        assert!(dir.contains("is not a file"), "{dir}");
        let missing = resolve(&app, &app, "missing.lua").unwrap_err();
        assert!(missing.contains("cannot open missing.lua"), "{missing}");
        // With the site around the app directory as the fence, the same link leads inside it.
        assert_eq!(
            resolve(&app, &top, "outside.lua"),
            Ok(top.join("secret.lua"))
        );
    }
}
