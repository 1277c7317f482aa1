//! `--hotload`: watches the app directory and tells every live worker which files changed.
//!
//! Only events that can change a file's content count: creation, modification, removal,
//! renames, and a writer closing the file. Opening or reading a file does not: the watcher
//! (inotify) reports every open, and workers open app files all the time (each new session
//! reads `main.lua`; a reload re-reads what changed), so counting opens would make every
//! reload trigger the next one, forever. Metadata-only changes (`chmod`, atime) do not count
//! either.
//!
//! Events come in bursts (an editor writes, renames, touches), so they are debounced by
//! notify-debouncer-full: an event goes out once [`DEBOUNCE`] has passed since it happened,
//! together with whatever else is due, and each batch becomes one `Reload`. (The full debouncer,
//! not the mini one, because the filter above needs each event's kind.) What a change means is
//! the worker's business: it re-executes `.lua` files it has loaded (and not unloaded) and
//! re-sends viewdefs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::RecursiveMode;
use notify_debouncer_full::{new_debouncer, DebounceEventResult};
use protocol::ipc::BrokerToWorker;

use crate::broker::Broker;

/// How long after a change it is reported (with the changes that came meanwhile).
const DEBOUNCE: Duration = Duration::from_millis(100);

/// What to watch: the app directory, or with `--dir` the whole site (modules may live outside
/// `lua/`, e.g. `apps/…`, and a symlink inside the site may lead anywhere in it). A `Reload`
/// names files relative to it: the module keys the worker knows its loaded files by (it
/// resolves symlinks the same way), and `viewdefs/<file>` for templates.
pub fn root(app_dir: &Path, site: Option<&crate::site::Site>) -> PathBuf {
    match site {
        Some(site) => site.root.clone(),
        None => app_dir.to_path_buf(),
    }
}

/// Starts watching `root` (if it exists); runs until the broker exits.
pub fn watch(broker: Arc<Broker>, root: PathBuf) -> notify::Result<()> {
    let (tx, mut batches) = tokio::sync::mpsc::unbounded_channel::<Vec<PathBuf>>();
    let mut debouncer =
        new_debouncer(
            DEBOUNCE,
            None,
            move |result: DebounceEventResult| match result {
                Ok(events) => {
                    let paths: Vec<PathBuf> = events
                        .into_iter()
                        .filter(|e| changes_content(&e.kind))
                        .flat_map(|e| e.event.paths)
                        .collect();
                    if !paths.is_empty() {
                        let _ = tx.send(paths);
                    }
                }
                Err(errors) => {
                    for e in errors {
                        tracing::warn!("hotload watcher: {e}");
                    }
                }
            },
        )?;
    if root.is_dir() {
        debouncer.watch(&root, RecursiveMode::Recursive)?;
    }
    tokio::spawn(async move {
        let _keep_watching = debouncer;
        while let Some(paths) = batches.recv().await {
            let mut files: Vec<String> = paths
                .iter()
                .filter_map(|p| relative(&root, p))
                .filter(|name| wanted(name))
                .collect();
            files.sort();
            files.dedup();
            if files.is_empty() {
                continue;
            }
            tracing::info!(?files, "app files changed; reloading live sessions");
            for worker in broker.server.workers() {
                worker
                    .send(BrokerToWorker::Reload {
                        files: files.clone(),
                    })
                    .await;
            }
        }
    });
    Ok(())
}

/// Whether an event can have changed what a file holds (see the module doc).
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}

/// `path` relative to `root`, if it is below it.
fn relative(root: &Path, path: &Path) -> Option<String> {
    let canonical_root = root.canonicalize().ok()?;
    let rel = path
        .strip_prefix(root)
        .or_else(|_| path.strip_prefix(&canonical_root))
        .ok()?;
    rel.to_str().map(str::to_string)
}

/// A changed file we care about: Lua sources and viewdefs (app-relative names).
fn wanted(name: &str) -> bool {
    name.ends_with(".lua") || (name.starts_with("viewdefs/") && name.ends_with(".html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_or_reading_a_file_is_not_a_change() {
        use notify::event::{CreateKind, DataChange, MetadataKind, RemoveKind};
        assert!(changes_content(&EventKind::Create(CreateKind::File)));
        assert!(changes_content(&EventKind::Remove(RemoveKind::File)));
        assert!(changes_content(&EventKind::Modify(ModifyKind::Data(
            DataChange::Any
        ))));
        assert!(changes_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(!changes_content(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!changes_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(!changes_content(&EventKind::Modify(ModifyKind::Metadata(
            MetadataKind::Any
        ))));
    }

    #[test]
    fn only_lua_files_and_viewdefs_count() {
        let root = std::env::temp_dir();
        assert_eq!(
            relative(&root, &root.join("a/b.lua")),
            Some("a/b.lua".into())
        );
        assert_eq!(relative(&root, Path::new("/elsewhere/x.lua")), None);
        assert!(wanted("a/b.lua"));
        assert!(wanted("viewdefs/App.DEFAULT.html"));
        assert!(!wanted("notes.txt"));
        assert!(!wanted("App.DEFAULT.html"));
    }
}
