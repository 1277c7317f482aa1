//! One tracked variable: where its value comes from, what was last seen of it, who watches it.

use std::rc::Rc;

use mlua::{AnyUserData, Value as LuaValue};
use protocol::browser::VarId;
use protocol::ipc::TabId;
use protocol::{ErrorCode, Value};

use super::path::Path;
use super::properties::PropertyStore;

/// Tabs number their own variables from 2, so a variable is named by its owner and its id:
/// `owner` is the tab for browser-created ids and `None` for the app variable (1) and
/// server-created ones (negative), which every tab of the session shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VarKey {
    pub owner: Option<TabId>,
    pub id: VarId,
}

impl VarKey {
    pub fn shared(id: VarId) -> VarKey {
        VarKey { owner: None, id }
    }

    /// The variable a tab means by `id`: its own for ids ≥ 2, a shared one otherwise. A tab
    /// can therefore never name another tab's variable.
    pub fn scoped(tab: TabId, id: VarId) -> VarKey {
        if id >= 2 {
            VarKey {
                owner: Some(tab),
                id,
            }
        } else {
            VarKey::shared(id)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Access {
    R,
    W,
    #[default]
    RW,
    Action,
}

impl Access {
    /// An `access` property value; empty means the default, `rw`.
    pub fn parse(text: &str) -> Option<Access> {
        match text {
            "r" => Some(Access::R),
            "w" => Some(Access::W),
            "rw" | "" => Some(Access::RW),
            "action" => Some(Access::Action),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Access::R => "r",
            Access::W => "w",
            Access::RW => "rw",
            Access::Action => "action",
        }
    }

    /// Change detection reads only these; `w` and `action` are never read.
    pub fn readable(self) -> bool {
        matches!(self, Access::R | Access::RW)
    }

    pub fn writable(self) -> bool {
        !matches!(self, Access::R)
    }
}

/// A variable's wrapper (the `wrapper` property) as last constructed.
#[derive(Debug, Clone)]
pub struct WrapState {
    /// The type whose `new` made it: a different `wrapper` property means a new one.
    pub type_name: String,
    /// Value JSON of the underlying value it was made for: the constructor runs again when
    /// this changes, by the same rule change detection uses for values.
    pub raw_json: Value,
    /// What the constructor returned; nil means "no wrapper", and the value stands for itself.
    pub object: LuaValue,
}

/// Where a variable's value comes from.
#[derive(Debug, Clone)]
pub enum Binding {
    /// The variable holds its own value: the app variable, roots, `unbound` ones, and
    /// server-created ones without a path.
    Own(LuaValue),
    /// The value is `path` followed from the parent's value.
    Path(Rc<Path>),
}

// In C order, with the fields a pass reads of every variable first: a pass over a large app is
// bound by cache misses, and these then share three cache lines instead of seven (see `settle`).
#[derive(Debug)]
#[repr(C)]
pub struct Variable {
    /// How many variables of this subtree (itself included) have a watcher: change
    /// detection skips subtrees where this is 0.
    pub subtree_watched: u32,
    /// Whether `current` is what `value` was computed from (a write to an own value replaces
    /// `current` ahead of the pass): only then may a pass compare scalars without JSON.
    pub current_is_value: bool,
    pub access: Access,
    /// Whether `type` was set by the server from the value (and so may be removed by it).
    pub server_type: bool,
    /// In creation order.
    pub children: Vec<VarKey>,
    /// Tabs whose next update carries the full state (they just watched or created it).
    pub fresh: Vec<TabId>,
    pub binding: Binding,
    /// The Lua value of the last successful computation; children follow their paths from
    /// it. `None` when unknown (never computed, failed, or not readable).
    pub current: Option<LuaValue>,
    pub props: PropertyStore,
    /// Value JSON last reported (or computed); `None` when unknown.
    pub value: Option<Value>,
    /// The last failure of the path, reported once per distinct text.
    pub error: Option<(ErrorCode, String)>,
    pub key: VarKey,
    pub parent: Option<VarKey>,
    /// Creation order, for ordering roots.
    pub seq: u64,
    /// The path as given, without its `?…` suffix ("" for own-valued variables).
    pub path_text: String,
    /// With a `wrapper` property: the underlying value (what the handle's `getValue()`
    /// returns), while `current` holds the wrapper that stands in for it. `None` otherwise.
    pub raw: Option<LuaValue>,
    /// The wrapper made for this variable, once its constructor has run.
    pub wrap: Option<WrapState>,
    /// The Lua handle wrapper constructors receive; made on first use and then reused, so a
    /// constructor sees the same handle every time.
    pub handle: Option<AnyUserData>,
    /// Watch tallies: a tab may watch twice and must unwatch twice.
    pub watchers: Vec<(TabId, u32)>,
    /// The debug pages' view of it (see [`super::debug`]).
    pub stats: super::debug::VarStats,
}

impl Variable {
    pub fn new(key: VarKey, parent: Option<VarKey>, seq: u64, binding: Binding) -> Variable {
        Variable {
            key,
            parent,
            children: Vec::new(),
            seq,
            binding,
            path_text: String::new(),
            access: Access::RW,
            current: None,
            value: None,
            current_is_value: false,
            error: None,
            props: PropertyStore::default(),
            server_type: false,
            raw: None,
            wrap: None,
            handle: None,
            watchers: Vec::new(),
            fresh: Vec::new(),
            subtree_watched: 0,
            stats: Default::default(),
        }
    }

    pub fn watcher_tabs(&self) -> impl Iterator<Item = TabId> + '_ {
        self.watchers.iter().map(|(tab, _)| *tab)
    }
}
