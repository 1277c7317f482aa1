//! Where the Lua app comes from: `--lua-dir`, else `./lua` if it holds `main.lua`, else the
//! default app compiled into the executable (so an installed binary works anywhere), unpacked
//! into a private temporary directory for the broker's lifetime.

use std::path::{Path, PathBuf};

use include_dir::{include_dir, Dir};

static DEFAULT_APP: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../lua");

pub struct AppDir {
    path: PathBuf,
    /// Holds the unpacked default app; removed when dropped.
    _unpacked: Option<tempfile::TempDir>,
}

impl AppDir {
    pub fn resolve(flag: Option<&Path>) -> std::io::Result<AppDir> {
        if let Some(dir) = flag {
            let path = dir.canonicalize().map_err(|e| {
                std::io::Error::new(e.kind(), format!("--lua-dir {}: {e}", dir.display()))
            })?;
            if !path.join("main.lua").is_file() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("--lua-dir {}: no main.lua in it", path.display()),
                ));
            }
            return Ok(AppDir {
                path,
                _unpacked: None,
            });
        }
        let local = Path::new("lua");
        if local.join("main.lua").is_file() {
            return Ok(AppDir {
                path: local.canonicalize()?,
                _unpacked: None,
            });
        }
        let unpacked = tempfile::Builder::new()
            .prefix("luabroker-app-")
            .tempdir()?;
        DEFAULT_APP.extract(unpacked.path())?;
        // Workers run as another user when the broker is root: the built-in app is public,
        // so its directory is readable to every user (files are written 0644).
        std::fs::set_permissions(
            unpacked.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        Ok(AppDir {
            path: unpacked.path().to_path_buf(),
            _unpacked: Some(unpacked),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_builtin(&self) -> bool {
        self._unpacked.is_some()
    }
}
