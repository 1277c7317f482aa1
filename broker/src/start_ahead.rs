//! Sessions started ahead (`--start-ahead`): whether one that ran `main.lua` before its
//! `GET /` may still be handed out.
//!
//! A spare started ahead ran the app as it was on disk then. Its worker reports every file it
//! read to run ([`FileStamp`], taken from the open file before the read); at hand-out each is
//! looked at again, and one that changed (written, replaced, removed) means the session ran an
//! app that no longer exists: it is let go, and the user gets a session started now. A `stat`
//! per file is what this costs `GET /`.
//!
//! What it cannot see: a write that keeps a file's size and lands within the same tick of the
//! kernel's file-time clock (a few milliseconds) as the worker's read of it, and a file that did
//! not exist when `main.lua` ran (`pcall(require, "optional")`) and has appeared since.

use std::path::Path;

use protocol::ipc::FileStamp;

/// The first file of `read` that is no longer as it was read, if any.
pub fn changed_file(read: &[FileStamp]) -> Option<&str> {
    read.iter()
        .find(|stamp| {
            let path = Path::new(&stamp.path);
            match std::fs::metadata(path) {
                Ok(meta) => FileStamp::of(path, &meta) != **stamp,
                Err(_) => true,
            }
        })
        .map(|stamp| stamp.path.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(path: &Path) -> FileStamp {
        FileStamp::of(path, &std::fs::metadata(path).unwrap())
    }

    #[test]
    fn a_file_written_replaced_or_removed_since_it_was_read_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.lua"), dir.path().join("b.lua"));
        std::fs::write(&a, "return 1\n").unwrap();
        std::fs::write(&b, "return 2\n").unwrap();
        let read = vec![stamp(&a), stamp(&b)];
        assert_eq!(changed_file(&read), None, "nothing changed");
        assert_eq!(changed_file(&[]), None);

        // Replaced by a file of the same length (a new inode).
        let new = dir.path().join("b.new");
        std::fs::write(&new, "return 3\n").unwrap();
        std::fs::rename(&new, &b).unwrap();
        assert_eq!(changed_file(&read), Some(b.to_str().unwrap()));

        // Written in place, same length: its times change (once the file-time clock has
        // ticked past the read; see the module's comment).
        let read = vec![stamp(&a), stamp(&b)];
        let before = stamp(&a);
        while stamp(&a) == before {
            std::fs::write(&a, "return 4\n").unwrap();
        }
        assert_eq!(changed_file(&read), Some(a.to_str().unwrap()));

        let read = vec![stamp(&a)];
        std::fs::remove_file(&a).unwrap();
        assert_eq!(changed_file(&read), Some(a.to_str().unwrap()));
    }
}
