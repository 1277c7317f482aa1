//! ui-engine's site layout (`--dir DIR`, as `ui-engine serve --dir DIR`): `DIR/html` is the
//! frontend, `DIR/lua` the app (its `main.lua`), `DIR/viewdefs` the templates. Files inside the
//! site may be symlinks to other files inside it; a symlink that leads outside the site is
//! refused, for the frontend's files as for Lua and viewdefs (the worker checks its side).
//!
//! Without `--dir`, the same confinement applies to `--static DIR` (its files stay inside it)
//! and to `--lua-dir` (the worker keeps Lua and viewdefs inside the app directory).

use std::path::{Component, Path, PathBuf};

use percent_encoding::percent_decode_str;

pub struct Site {
    /// The canonical site directory.
    pub root: PathBuf,
}

impl Site {
    /// The site at `dir`: it must exist and hold `lua/main.lua`.
    pub fn resolve(dir: &Path) -> std::io::Result<Site> {
        let root = dir
            .canonicalize()
            .map_err(|e| std::io::Error::new(e.kind(), format!("--dir {}: {e}", dir.display())))?;
        if !root.join("lua").join("main.lua").is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("--dir {}: no lua/main.lua in it", root.display()),
            ));
        }
        Ok(Site { root })
    }

    pub fn lua_dir(&self) -> PathBuf {
        self.root.join("lua")
    }

    pub fn viewdefs_dir(&self) -> PathBuf {
        self.root.join("viewdefs")
    }

    /// `DIR/html`, when the site has a frontend of its own.
    pub fn html_dir(&self) -> Option<PathBuf> {
        let html = self.root.join("html");
        html.is_dir().then_some(html)
    }
}

/// Whether the file a request path names under `dir` may be served: a path that does not exist
/// (or is not valid) is left to the file server, which answers 404; one that exists must, once
/// symlinks are resolved, lie inside `confine`.
pub fn may_serve(dir: &Path, confine: &Path, uri_path: &str) -> bool {
    let Ok(decoded) = percent_decode_str(uri_path).decode_utf8() else {
        return true;
    };
    let mut path = dir.to_path_buf();
    for part in Path::new(decoded.as_ref()).components() {
        match part {
            Component::Normal(p) => path.push(p),
            Component::RootDir | Component::CurDir => {}
            // The file server refuses `..` itself.
            Component::ParentDir | Component::Prefix(_) => return true,
        }
    }
    match (path.canonicalize(), confine.canonicalize()) {
        (Ok(real), Ok(confine)) => real.starts_with(confine),
        (Err(_), _) => true,
        (Ok(_), Err(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_are_served_only_while_they_stay_inside() {
        let top = tempfile::tempdir().unwrap();
        let site = top.path().join("site");
        std::fs::create_dir_all(site.join("html")).unwrap();
        std::fs::create_dir_all(site.join("shared")).unwrap();
        std::fs::write(site.join("shared/app.css"), "body{}").unwrap();
        std::fs::write(top.path().join("secret.txt"), "no").unwrap();
        std::os::unix::fs::symlink(site.join("shared/app.css"), site.join("html/app.css")).unwrap();
        std::os::unix::fs::symlink(top.path().join("secret.txt"), site.join("html/leak.txt"))
            .unwrap();
        let html = site.join("html");
        assert!(may_serve(&html, &site, "/app.css"), "inside the site");
        assert!(!may_serve(&html, &html, "/app.css"), "outside html alone");
        assert!(!may_serve(&html, &site, "/leak.txt"));
        assert!(!may_serve(&html, &site, "/le%61k.txt"), "percent-encoded");
        assert!(may_serve(&html, &site, "/missing.js"), "left to the 404");
    }
}
