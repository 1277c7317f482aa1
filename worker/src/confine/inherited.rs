//! Descriptors a worker must not inherit. The broker's own start-up may leave descriptors open
//! without close-on-exec (a shell's, a supervisor's), and `exec` passes those on to the zygote
//! and exec'd workers, where app code could use them. Each of those processes closes every
//! descriptor it was not meant to get, first thing, so a forked worker starts with only its
//! stdio and the shared network namespace.

use std::os::fd::RawFd;

/// Closes every descriptor above stderr except `keep`.
pub fn close_all_but(keep: &[RawFd]) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let open: Vec<RawFd> = dir
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // The listing's own descriptor is closed by now; closing its number again is harmless,
    // since nothing was opened in between.
    for fd in open {
        if fd > 2 && !keep.contains(&fd) {
            let _ = nix::unistd::close(fd);
        }
    }
}
