//! `--hotload`: watches the app directory and tells every live worker which files changed.
//!
//! File events come in bursts (an editor writes, renames, touches), so they are debounced
//! (notify-debouncer-mini, 100 ms) and sent as one `Reload` per burst. What a change means is
//! the worker's business: it re-executes `.lua` files it has loaded and re-sends viewdefs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_mini::{new_debouncer, notify::RecursiveMode, DebounceEventResult};
use protocol::ipc::BrokerToWorker;

use crate::broker::Broker;

const DEBOUNCE: Duration = Duration::from_millis(100);

/// Starts watching `app_dir`; runs until the broker exits.
pub fn watch(broker: Arc<Broker>, app_dir: PathBuf) -> notify::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<String>>();
    let root = app_dir.clone();
    let mut debouncer = new_debouncer(DEBOUNCE, move |events: DebounceEventResult| match events {
        Ok(events) => {
            let mut files: Vec<String> = events
                .iter()
                .filter_map(|e| relative(&root, &e.path))
                .collect();
            files.sort();
            files.dedup();
            if !files.is_empty() {
                let _ = tx.send(files);
            }
        }
        Err(e) => tracing::warn!("hotload watcher: {e}"),
    })?;
    debouncer
        .watcher()
        .watch(&app_dir, RecursiveMode::Recursive)?;
    tokio::spawn(async move {
        let _keep_watching = debouncer;
        while let Some(files) = rx.recv().await {
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

/// The app-relative path of a changed file we care about (Lua sources and viewdefs).
fn relative(root: &Path, path: &Path) -> Option<String> {
    let canonical_root = root.canonicalize().ok()?;
    let rel = path
        .strip_prefix(root)
        .or_else(|_| path.strip_prefix(&canonical_root))
        .ok()?;
    let name = rel.to_str()?;
    let wanted =
        name.ends_with(".lua") || (name.starts_with("viewdefs/") && name.ends_with(".html"));
    wanted.then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lua_files_and_viewdefs_count() {
        let root = std::env::temp_dir();
        assert_eq!(
            relative(&root, &root.join("a/b.lua")),
            Some("a/b.lua".into())
        );
        assert_eq!(
            relative(&root, &root.join("viewdefs/App.DEFAULT.html")),
            Some("viewdefs/App.DEFAULT.html".into())
        );
        assert_eq!(relative(&root, &root.join("notes.txt")), None);
        assert_eq!(relative(&root, Path::new("/elsewhere/x.lua")), None);
    }
}
