//! Viewdefs (ARCHITECTURE.md 5): the app's HTML templates, one file per type and namespace,
//! `viewdefs/<Type>.<NAMESPACE>.html` in the app directory, sent to each tab the first time it
//! is told of a variable of that type.
//!
//! - **Naming.** The file name minus `.html` splits at its *last* dot: `lua.ViewList.DEFAULT`
//!   is type `lua.ViewList`, namespace `DEFAULT`; `Task.list-item` is type `Task`, namespace
//!   `list-item`. Other files, and subdirectories, are ignored.
//! - **Delivery.** After each turn the backend looks at what each tab is about to receive; a
//!   `type` property naming a type the tab has not been considered for yet makes it send all of
//!   that type's templates first, as the `viewdefs` property of variable 1, at high priority, the
//!   value a JSON *string* of `{"Type.NAMESPACE": "<template>…", …}`. Each type is considered
//!   once per tab (a type without templates too, so looking it up is never repeated); a new tab
//!   id, such as a reconnecting browser, starts afresh.
//! - **Loading.** Lazily, because most of a worker's life needs none and every session pays
//!   for what its worker reads: the directory is listed on first need, and a type's files are
//!   read the first time a tab needs that type, then kept for the other tabs.
//! - **Bound.** At most [`MAX_VIEWDEF_BYTES`] (4 MiB) of templates are held per session; a file
//!   that would go past it is skipped, with a warning in the log, and so is any single file
//!   larger than that. A file that is not UTF-8, or leads outside the app directory through a
//!   symlink, is skipped too.
//! - **Built-in templates.** `lua.ViewList.DEFAULT` and `lua.ViewListItem.list-item` (what the
//!   frontend renders the built-in list with) are part of every app's viewdefs unless the app
//!   has a file of the same name, which then wins; they do not count against the bound.
//! - **Hot reload.** [`Viewdefs::reload`] re-reads changed files and returns, per tab that has
//!   been considered for the type, just the changed entries. A deleted file is dropped from the
//!   cache; tabs keep what they have (there is no "remove a template" message).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use protocol::browser::ServerMessage;
use protocol::ipc::TabId;

/// The most template text one session holds (and therefore reads).
pub const MAX_VIEWDEF_BYTES: usize = 4 * 1024 * 1024;

/// The directory below the app directory that holds viewdefs.
pub const VIEWDEFS_DIR: &str = "viewdefs";

/// The property of variable 1 that carries templates.
pub const VIEWDEFS_PROPERTY: &str = "viewdefs";

/// Templates every app has unless it ships its own file of the same name.
const BUILTIN: [(&str, &str, &str); 2] = [
    (
        "lua.ViewList",
        "DEFAULT",
        include_str!("builtin_viewdefs/lua.ViewList.DEFAULT.html"),
    ),
    (
        "lua.ViewListItem",
        "list-item",
        include_str!("builtin_viewdefs/lua.ViewListItem.list-item.html"),
    ),
];

fn builtin(type_name: &str, namespace: &str) -> Option<Template> {
    BUILTIN
        .iter()
        .find(|(t, n, _)| *t == type_name && *n == namespace)
        .map(|(_, _, text)| Template {
            text: Some(text.to_string()),
            builtin: true,
        })
}

/// One session's viewdefs: the cache of template files and what each tab has been sent.
#[derive(Debug, Default)]
pub struct Viewdefs {
    /// The canonical viewdefs directory; `None`: the app has no viewdefs at all.
    root: Option<PathBuf>,
    /// Templates reached through symlinks must stay inside this (canonical) directory.
    confine: PathBuf,
    /// type → namespace → template; `None` until the directory is listed.
    index: Option<BTreeMap<String, BTreeMap<String, Template>>>,
    /// Template bytes held, against [`MAX_VIEWDEF_BYTES`].
    held: usize,
    /// Per tab, the types already considered (sent, or found to have no templates).
    seen: HashMap<TabId, HashSet<String>>,
}

#[derive(Debug, Default)]
struct Template {
    /// `None` until read (or when it could not be read).
    text: Option<String>,
    /// One of [`BUILTIN`]: not read from a file, not counted in `held`.
    builtin: bool,
}

impl Viewdefs {
    /// Viewdefs of the app in `app_dir` (whether or not it has a `viewdefs` directory yet:
    /// one may appear with `--hotload`).
    pub fn new(app_dir: &Path) -> Viewdefs {
        Viewdefs::at(&app_dir.join(VIEWDEFS_DIR), app_dir)
    }

    /// Viewdefs in `dir`, following symlinks only while they stay inside `confine`.
    pub fn at(dir: &Path, confine: &Path) -> Viewdefs {
        let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        Viewdefs {
            root: Some(canonical(dir)),
            confine: canonical(confine),
            ..Viewdefs::default()
        }
    }

    /// No viewdefs: every lookup finds nothing.
    pub fn none() -> Viewdefs {
        Viewdefs::default()
    }

    /// Template bytes held now.
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    pub fn forget_tab(&mut self, tab: TabId) {
        self.seen.remove(&tab);
    }

    /// What `tab` must receive before `messages`: the templates of the types those messages
    /// name (`type` properties of updates and `get` replies) that the tab has not been
    /// considered for. `None` when there is nothing new.
    pub fn needed_by(&mut self, tab: TabId, messages: &[ServerMessage]) -> Option<ServerMessage> {
        self.root.as_ref()?;
        let mut new_types: Vec<String> = Vec::new();
        {
            let seen = self.seen.entry(tab).or_default();
            let mut note = |props: &[(String, String)]| {
                for (name, value) in props {
                    if name == "type" && !value.is_empty() && !seen.contains(value.as_str()) {
                        seen.insert(value.clone());
                        new_types.push(value.clone());
                    }
                }
            };
            for msg in messages {
                match msg {
                    ServerMessage::Update { properties, .. } => note(properties),
                    ServerMessage::Get { variables } => {
                        for v in variables {
                            note(&v.properties);
                        }
                    }
                    _ => {}
                }
            }
        }
        if new_types.is_empty() {
            return None;
        }
        let mut entries = serde_json::Map::new();
        for type_name in &new_types {
            for (namespace, text) in self.templates(type_name) {
                entries.insert(
                    format!("{type_name}.{namespace}"),
                    serde_json::Value::String(text),
                );
            }
        }
        message(entries)
    }

    /// Hot reload: `files` changed (app-relative paths; only `viewdefs/*.html` concern us).
    /// Re-reads them and returns, for each tab considered for a changed type, the changed
    /// entries that still exist, as that tab's `viewdefs` message.
    pub fn reload(&mut self, files: &[String]) -> Vec<(TabId, ServerMessage)> {
        let Some(index) = self.index.as_mut() else {
            // Nothing listed yet, so nothing sent: the first listing will see the new files.
            return Vec::new();
        };
        let mut changed: Vec<(String, String)> = Vec::new();
        for file in files {
            let Some((type_name, namespace)) = file
                .strip_prefix(VIEWDEFS_DIR)
                .and_then(|f| f.strip_prefix('/'))
                .and_then(parse_name)
            else {
                continue;
            };
            // Forget the old text; it is read again below if some tab needs it.
            let namespaces = index.entry(type_name.clone()).or_default();
            if let Some(old) = namespaces.remove(&namespace) {
                if !old.builtin {
                    self.held -= old.text.map_or(0, |t| t.len());
                }
            }
            namespaces.insert(namespace.clone(), Template::default());
            changed.push((type_name, namespace));
        }
        let mut out = Vec::new();
        let mut tabs: Vec<TabId> = self.seen.keys().copied().collect();
        tabs.sort_unstable();
        for tab in tabs {
            let mut entries = serde_json::Map::new();
            for (type_name, namespace) in &changed {
                if !self.seen[&tab].contains(type_name) {
                    continue;
                }
                if let Some(text) = self.template(type_name, namespace) {
                    entries.insert(
                        format!("{type_name}.{namespace}"),
                        serde_json::Value::String(text),
                    );
                }
            }
            if let Some(msg) = message(entries) {
                out.push((tab, msg));
            }
        }
        // Entries whose file is gone were never read back: drop them from the index.
        if let Some(index) = self.index.as_mut() {
            for (type_name, namespace) in &changed {
                let gone = !template_path(self.root.as_deref(), type_name, namespace)
                    .is_some_and(|p| p.is_file());
                if gone {
                    if let Some(namespaces) = index.get_mut(type_name) {
                        namespaces.remove(namespace);
                        // A deleted override brings the built-in back (for the next tab).
                        if let Some(b) = builtin(type_name, namespace) {
                            namespaces.insert(namespace.clone(), b);
                        }
                    }
                }
            }
        }
        out
    }

    /// Every template of `type_name` as (namespace, text), reading what is not cached yet.
    fn templates(&mut self, type_name: &str) -> Vec<(String, String)> {
        let namespaces: Vec<String> = self
            .index()
            .get(type_name)
            .map(|n| n.keys().cloned().collect())
            .unwrap_or_default();
        namespaces
            .into_iter()
            .filter_map(|ns| self.template(type_name, &ns).map(|t| (ns, t)))
            .collect()
    }

    /// One template's text, read on first use.
    fn template(&mut self, type_name: &str, namespace: &str) -> Option<String> {
        let root = self.root.clone();
        let held = self.held;
        let index = self.index.as_mut()?;
        let entry = index.get_mut(type_name)?.get_mut(namespace)?;
        if let Some(text) = &entry.text {
            return Some(text.clone());
        }
        let text = read_template(root.as_deref()?, &self.confine, type_name, namespace, held)?;
        self.held += text.len();
        entry.text = Some(text.clone());
        Some(text)
    }

    /// The listing of the viewdefs directory, made on first use.
    fn index(&mut self) -> &BTreeMap<String, BTreeMap<String, Template>> {
        let root = self.root.clone();
        self.index.get_or_insert_with(|| list(root.as_deref()))
    }
}

/// The `update` of variable 1 that carries `entries`; `None` when there are none.
fn message(entries: serde_json::Map<String, serde_json::Value>) -> Option<ServerMessage> {
    if entries.is_empty() {
        return None;
    }
    let json = serde_json::Value::Object(entries).to_string();
    Some(ServerMessage::Update {
        var_id: 1,
        value: None,
        properties: vec![(VIEWDEFS_PROPERTY.to_string(), json)],
    })
}

/// `Type.NAMESPACE.html` → (`Type`, `NAMESPACE`); the type may itself contain dots.
fn parse_name(file: &str) -> Option<(String, String)> {
    if file.contains('/') {
        return None;
    }
    let stem = file.strip_suffix(".html")?;
    let (type_name, namespace) = stem.rsplit_once('.')?;
    (!type_name.is_empty() && !namespace.is_empty())
        .then(|| (type_name.to_string(), namespace.to_string()))
}

fn template_path(root: Option<&Path>, type_name: &str, namespace: &str) -> Option<PathBuf> {
    Some(root?.join(format!("{type_name}.{namespace}.html")))
}

/// Lists the viewdefs directory: every well-named file, unread, and the built-ins it does not
/// override. A missing directory lists just the built-ins.
fn list(root: Option<&Path>) -> BTreeMap<String, BTreeMap<String, Template>> {
    let mut index: BTreeMap<String, BTreeMap<String, Template>> = BTreeMap::new();
    let Some(root) = root else { return index };
    for (type_name, namespace, _) in BUILTIN {
        if let Some(b) = builtin(type_name, namespace) {
            index
                .entry(type_name.to_string())
                .or_default()
                .insert(namespace.to_string(), b);
        }
    }
    let Ok(entries) = std::fs::read_dir(root) else {
        return index;
    };
    for entry in entries.flatten() {
        let Some((type_name, namespace)) = entry.file_name().to_str().and_then(parse_name) else {
            continue;
        };
        index
            .entry(type_name)
            .or_default()
            .insert(namespace, Template::default());
    }
    index
}

/// Reads one template, if it is a UTF-8 file inside `confine` and fits in what is left of the
/// budget (`held` bytes are taken already).
fn read_template(
    root: &Path,
    confine: &Path,
    type_name: &str,
    namespace: &str,
    held: usize,
) -> Option<String> {
    let path = template_path(Some(root), type_name, namespace)?;
    let name = format!("{VIEWDEFS_DIR}/{type_name}.{namespace}.html");
    let real = path.canonicalize().ok()?;
    if !real.starts_with(confine) || !real.is_file() {
        tracing::warn!(
            file = name,
            "viewdef skipped: not a file inside the app directory"
        );
        return None;
    }
    let size = real.metadata().ok()?.len();
    if size > (MAX_VIEWDEF_BYTES - held) as u64 {
        tracing::warn!(
            file = name,
            size,
            "viewdef skipped: the session's viewdefs would exceed {MAX_VIEWDEF_BYTES} bytes"
        );
        return None;
    }
    match std::fs::read(&real) {
        // Checked again after reading: the file may have grown in between.
        Ok(bytes) if bytes.len() <= MAX_VIEWDEF_BYTES - held => match String::from_utf8(bytes) {
            Ok(text) => Some(text),
            Err(_) => {
                tracing::warn!(file = name, "viewdef skipped: not UTF-8");
                None
            }
        },
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(file = name, "viewdef unreadable: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_at_the_last_dot() {
        assert_eq!(
            parse_name("Task.DEFAULT.html"),
            Some(("Task".into(), "DEFAULT".into()))
        );
        assert_eq!(
            parse_name("lua.ViewList.list-item.html"),
            Some(("lua.ViewList".into(), "list-item".into()))
        );
        for bad in [
            "Task.html",
            ".DEFAULT.html",
            "Task..html",
            "Task.DEFAULT.htm",
            "a/b.C.html",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_byte_budget_skips_what_does_not_fit() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(VIEWDEFS_DIR)).unwrap();
        let big = "x".repeat(MAX_VIEWDEF_BYTES - 10);
        std::fs::write(dir.path().join("viewdefs/Big.A.html"), &big).unwrap();
        std::fs::write(dir.path().join("viewdefs/Big.B.html"), "0123456789AB").unwrap();
        std::fs::write(dir.path().join("viewdefs/Small.A.html"), "tiny").unwrap();
        let mut v = Viewdefs::new(dir.path());
        let got = v.templates("Big");
        assert_eq!(got.len(), 1, "B no longer fits after A");
        assert_eq!(got[0].0, "A");
        assert_eq!(v.templates("Small"), [("A".into(), "tiny".into())]);
        assert_eq!(v.held_bytes(), MAX_VIEWDEF_BYTES - 10 + 4);
    }
}
