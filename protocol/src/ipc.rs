//! Broker ↔ worker messages (ARCHITECTURE.md 4). Plain structs and externally tagged enums only:
//! bincode's serde path is not self-describing (no `skip_serializing_if`, no untagged enums).
//!
//! A worker's life on the wire: it connects and sends [`WorkerToBroker::Hello`]; the broker
//! checks token, pid and version, then sends [`BrokerToWorker::Prepare`]; the worker builds its
//! Lua VM (no app code runs) and answers [`WorkerToBroker::Prepared`]: it is now a spare with a
//! ready VM. When a session needs it the broker sends [`BrokerToWorker::Start`]; the worker fills
//! in the session's ids, runs `main.lua` and answers [`WorkerToBroker::Ready`] or
//! [`WorkerToBroker::Failed`] (also the answer to a `Prepare` that failed). With
//! `--start-ahead` the broker sends `Start` as soon as the spare is prepared, under ids vended
//! ahead, and [`BrokerToWorker::Claimed`] once a `GET /` has taken the session. After that
//! tabs come and go ([`BrokerToWorker::TabOpened`] / [`BrokerToWorker::TabClosed`]), their
//! frames arrive as [`BrokerToWorker::Frame`], and the worker pushes [`WorkerToBroker::Send`]
//! batches whenever something a tab watches changes.

use serde::{Deserialize, Serialize};

use crate::browser::{ClientMessage, Properties, ServerMessage, VarId};
use crate::limits::TOKEN_LEN;
use crate::sandbox::SandboxPolicy;
use crate::value::Value;

/// The broker's number for one connected tab of a session; unique within the session.
pub type TabId = u32;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// Must equal [`crate::PROTOCOL_VERSION`].
    pub version: u32,
    /// The one-time token the broker gave this worker at spawn.
    pub token: [u8; TOKEN_LEN],
    /// The worker's own pid, checked against the socket's peer credentials.
    pub pid: u32,
}

/// Per-session Lua limits, sent in [`PrepareVm`] so one worker build serves any flags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LuaLimits {
    /// Lua allocator ceiling; past it allocations fail with a Lua memory error. 0 = none.
    pub memory_bytes: u64,
    /// Wall-clock budget of one Lua turn (`main.lua`, one frame, one timer callback). 0 = none.
    pub turn_time_ms: u64,
}

/// Everything a worker needs to build its VM before it has a session: the app (its chunks are
/// compiled ahead) and the limits the VM is built with. Sent once, right after the hello.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrepareVm {
    /// Directory holding the app's `main.lua`.
    pub app_dir: String,
    /// Directory holding the app's viewdefs; empty: `<app_dir>/viewdefs`. (`--dir DIR` puts
    /// them in `DIR/viewdefs`, beside `DIR/lua`.)
    pub viewdefs_dir: String,
    /// App files (Lua and viewdefs) reached through symlinks must stay inside this directory;
    /// empty: the app directory. (`--dir DIR`: the whole site, `DIR`.)
    pub confine_dir: String,
    pub limits: LuaLimits,
    /// The confinement to apply once the VM is built, before `main.lua` runs.
    pub sandbox: SandboxPolicy,
}

impl PrepareVm {
    /// Everything the worker may read at run time lies under this directory: `confine_dir`
    /// (the whole site, with `--dir`), else the app directory. It is what `require` and the
    /// viewdefs confine symlinks to, and what the OS sandbox leaves readable.
    pub fn readable_dir(&self) -> &str {
        match self.confine_dir.as_str() {
            "" => &self.app_dir,
            dir => dir,
        }
    }
}

/// The session a prepared worker is given: all that `GET /` still has to send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartSession {
    /// The compact id Lua sees as `session._sessionID`.
    pub vended_id: u64,
    /// The 32-hex session id, for log lines only.
    pub session_id: String,
    /// Started ahead of its `GET /` (`--start-ahead`): no user has it until `Claimed`.
    pub ahead: bool,
}

/// One app file as a worker read it: enough to tell, later and from outside, that the file on
/// disk is no longer the one that ran (a session started ahead is then not handed out).
/// Taken from the open file before its text is read, so any later write changes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    /// Absolute, symlinks resolved (the same path in the broker's mount namespace).
    pub path: String,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    /// Modification and status-change times, nanoseconds since the epoch.
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl FileStamp {
    /// The stamp of the file at `path` whose metadata is `meta`.
    pub fn of(path: &std::path::Path, meta: &std::fs::Metadata) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        let ns = |secs: i64, nsecs: i64| secs.saturating_mul(1_000_000_000).saturating_add(nsecs);
        FileStamp {
            path: path.to_string_lossy().into_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BrokerToWorker {
    /// Build the VM (first message after the hello; answered `Prepared` or `Failed`).
    Prepare(PrepareVm),
    /// Run the session's `main.lua` on the prepared VM (answered `Ready` or `Failed`).
    Start(StartSession),
    /// A session started ahead has been given to a `GET /` (not answered).
    Claimed,
    TabOpened {
        tab: TabId,
    },
    /// One browser frame, already validated.
    Frame {
        tab: TabId,
        user_event: bool,
        messages: Vec<ClientMessage>,
    },
    /// The tab is gone: the variables it created are destroyed.
    TabClosed {
        tab: TabId,
    },
    /// Liveness check; the worker answers [`WorkerToBroker::Pong`] with the same `seq`.
    Ping {
        seq: u64,
    },
    /// Ask for every variable of the session (the debug pages). `diag_level`: set the
    /// tracker's diagnostic level first (0 turns diagnostics off; `None` keeps it).
    DebugVariables {
        request: u64,
        diag_level: Option<u8>,
    },
    /// App files changed on disk (`--hotload`), as paths relative to the `--dir` site (the app
    /// directory without one), symlinks resolved: already-loaded `.lua` files are re-executed,
    /// changed viewdefs (`viewdefs/<file>`) re-sent.
    Reload {
        files: Vec<String>,
    },
    /// Finish the current turn and exit 0.
    Shutdown,
}

/// What one tab should receive, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TabBatch {
    pub tab: TabId,
    pub messages: Vec<ServerMessage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WorkerToBroker {
    Hello(Hello),
    /// The VM is built and waits for a session: the worker is a ready spare.
    Prepared,
    /// `main.lua` ran and created variable 1, whose value JSON this is; `read`: every app
    /// file that ran, as it was when it was read. (`app` last: the codec's depth test builds
    /// nested values at the end of this message's bytes.)
    Ready {
        read: Vec<FileStamp>,
        app: Value,
    },
    /// `main.lua` failed (or never created variable 1), or the VM could not be built; the
    /// worker exits after sending this.
    Failed {
        error: String,
    },
    /// Messages for tabs, produced by one turn.
    Send(Vec<TabBatch>),
    Pong {
        seq: u64,
    },
    DebugVariables {
        request: u64,
        listing: DebugListing,
    },
    /// The worker made a system call its seccomp filter forbids (its number on this
    /// architecture; [`crate::sandbox::syscall_name`] names it) and is dying of SIGSYS.
    /// Sent from a signal handler, so it is the last thing the worker says.
    SandboxViolation {
        syscall: u32,
    },
}

/// What the debug pages show of a session: every variable, and the tracker's counters.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DebugListing {
    /// Change-detection passes that found a changed value (ui-engine's `Tracker.ChangeCount`).
    pub change_count: u64,
    /// The diagnostic level in force (0: none are recorded).
    pub diag_level: u8,
    /// Change-detection passes run, and how long the most recent ones took (up to
    /// [`crate::limits::PASS_TIMES_KEPT`], oldest first, in nanoseconds). Always measured: two
    /// clock reads a pass.
    pub passes: u64,
    pub recent_pass_ns: Vec<u64>,
    /// Parents before children.
    pub variables: Vec<DebugVariable>,
}

/// One variable as the debug pages show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DebugVariable {
    pub id: VarId,
    /// The tab that created it; `None` for the app variable and server-created ones.
    pub tab: Option<TabId>,
    pub parent_id: Option<VarId>,
    pub path: String,
    pub value: Option<Value>,
    pub properties: Properties,
    pub child_ids: Vec<VarId>,
    pub error: Option<String>,
    pub access: String,
    /// How many times change detection found its value changed.
    pub change_count: u64,
    /// How long its most recent computation took (path, getters, wrapper), and the longest
    /// one, in nanoseconds; `None` until it is computed with timing on (the first debug
    /// request of a session turns timing on).
    pub compute_time_ns: Option<u64>,
    pub max_compute_time_ns: Option<u64>,
    /// Whether change detection computes it: it or a descendant is watched, and neither it
    /// nor an ancestor is `inactive`.
    pub active: bool,
    /// 0 for a variable without a parent.
    pub depth: u32,
    /// The Lua type of what it holds (`table`, `string`, …; the analogue of ui-engine's
    /// `goType`); empty when it holds nothing yet.
    pub lua_type: String,
    /// With a wrapper: the value JSON of the wrapped value (`value` is the wrapper's).
    pub base_value: Option<Value>,
    /// The tabs watching it.
    pub watchers: Vec<TabId>,
    /// Diagnostics of its most recent computation (only with a diagnostic level above 0).
    pub diags: Vec<String>,
}
