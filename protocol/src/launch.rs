//! The launch contract: how the broker starts a worker or the zygote, and what the started
//! process reads to find its way back. Defined once here; the broker's spawner writes it and
//! the worker's `process` and `zygote` read it.
//!
//! A worker is the broker's own executable re-run with [`WORKER_ARG`] (or forked from the
//! zygote, itself started with [`ZYGOTE_ARG`]). Three environment variables carry the rest:
//! [`ENV_SOCKET`] (the broker's private worker socket), [`ENV_PARENT`] (the pid the process
//! must die with) and, for an exec'd worker, [`ENV_TOKEN`] (its one-time token, in the
//! [`token_to_hex`] encoding). A forked worker gets its token in the zygote's
//! [`crate::zygote::ZygoteRequest`] instead, as raw bytes.

use crate::limits::TOKEN_LEN;

/// First argument that puts the executable in worker mode.
pub const WORKER_ARG: &str = "__worker";

/// First argument that puts the executable in zygote mode.
pub const ZYGOTE_ARG: &str = "__zygote";

/// Path of the broker's worker socket.
pub const ENV_SOCKET: &str = "LUABROKER_WORKER_SOCKET";

/// The one-time token of an exec'd worker, as [`token_to_hex`] writes it.
pub const ENV_TOKEN: &str = "LUABROKER_WORKER_TOKEN";

/// The pid of the process that started this one; a worker or zygote exits if it is gone.
pub const ENV_PARENT: &str = "LUABROKER_WORKER_PARENT";

/// The descriptor (inherited, not close-on-exec) of the empty network namespace the broker
/// made once for every worker to join (`worker/src/confine/namespaces.rs`); unset: each worker
/// makes its own.
pub const ENV_NETNS_FD: &str = "LUABROKER_NETNS_FD";

/// The same for the empty IPC namespace every worker joins.
pub const ENV_IPCNS_FD: &str = "LUABROKER_IPCNS_FD";

/// The same for the mount namespace every worker joins, in which [`ENV_MNTNS_DIR`] is mounted
/// read-only over itself.
pub const ENV_MNTNS_FD: &str = "LUABROKER_MNTNS_FD";

/// The readable directory the shared mount namespace was made for, as `DEV:INODE:PATH`: a
/// worker whose readable directory is another one, or the same path now naming another
/// directory (replaced since start-up), makes a mount namespace of its own.
pub const ENV_MNTNS_DIR: &str = "LUABROKER_MNTNS_DIR";

/// Set (to `1`) for the zygote when workers get the seccomp layer: the zygote then installs
/// its own, wider filter before forking (`worker/src/confine/seccomp.rs` says why).
pub const ENV_ZYGOTE_SECCOMP: &str = "LUABROKER_ZYGOTE_SECCOMP";

/// Set for the zygote: the app directory whose Lua files it compiles once, at start-up, for
/// every worker it forks (`worker/src/api/ahead.rs`), and the directory those files'
/// symlinks must stay inside (`PrepareVm::readable_dir`).
pub const ENV_ZYGOTE_APP_DIR: &str = "LUABROKER_ZYGOTE_APP_DIR";
pub const ENV_ZYGOTE_CONFINE_DIR: &str = "LUABROKER_ZYGOTE_CONFINE_DIR";

/// Set by the operator (any value), read by the zygote: keep the executable's code and
/// constants file-backed instead of copying them to anonymous memory
/// (`worker/src/anon_text.rs`), so profilers can name the zygote's and workers' functions.
pub const ENV_FILE_TEXT: &str = "LUABROKER_FILE_TEXT";

/// The nice value (1–19) the zygote and exec'd workers take at start-up, so every worker runs
/// at a lower CPU priority than the broker (`--worker-nice`; forked workers inherit the
/// zygote's). Unset: the broker's own priority.
pub const ENV_NICE: &str = "LUABROKER_WORKER_NICE_VALUE";

/// A one-time token: what a worker presents in its [`crate::ipc::Hello`].
pub type Token = [u8; TOKEN_LEN];

/// A token as lowercase hex (how it travels in [`ENV_TOKEN`]).
pub fn token_to_hex(token: &Token) -> String {
    token.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a token written by [`token_to_hex`]; `None` unless it is exactly that shape.
pub fn token_from_hex(hex: &str) -> Option<Token> {
    // `from_str_radix` alone would take a leading `+`; only hex digits are a token.
    if hex.len() != TOKEN_LEN * 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut token = [0u8; TOKEN_LEN];
    for (i, byte) in token.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_through_hex() {
        let mut token = [0u8; TOKEN_LEN];
        for (i, b) in token.iter_mut().enumerate() {
            *b = (i * 37) as u8;
        }
        let hex = token_to_hex(&token);
        assert_eq!(hex.len(), 2 * TOKEN_LEN);
        assert!(hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(token_from_hex(&hex), Some(token));
    }

    #[test]
    fn malformed_hex_is_not_a_token() {
        let good = token_to_hex(&[0xab; TOKEN_LEN]);
        assert_eq!(token_from_hex(""), None);
        assert_eq!(token_from_hex(&good[1..]), None, "too short");
        assert_eq!(token_from_hex(&format!("{good}00")), None, "too long");
        assert_eq!(token_from_hex(&good.replace('a', "g")), None, "not hex");
        assert_eq!(token_from_hex(&format!("+{}", &good[1..])), None, "a sign");
        // Multi-byte characters must not be split mid-character (that would panic).
        assert_eq!(token_from_hex(&"é".repeat(TOKEN_LEN)), None);
        assert_eq!(
            token_from_hex(&good.to_uppercase()),
            Some([0xab; TOKEN_LEN])
        );
    }

    #[test]
    fn the_markers_and_names_are_distinct() {
        assert_ne!(WORKER_ARG, ZYGOTE_ARG);
        let names = [ENV_SOCKET, ENV_TOKEN, ENV_PARENT];
        for (i, a) in names.iter().enumerate() {
            assert!(a.starts_with("LUABROKER_"));
            for b in &names[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
