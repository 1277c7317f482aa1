//! The variable tree itself: the variables by key, parent/child links, roots in creation
//! order, watch tallies with the per-subtree watched counts change detection relies on, and
//! removal of a subtree. Pure data: nothing here calls into Lua (a removed variable's wrapper
//! is queued for its `destroy()`, which the tracker calls once this borrow is released).

use std::collections::BTreeMap;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use mlua::Value as LuaValue;
use protocol::browser::{ServerMessage, VarId};
use protocol::ipc::TabId;

use super::variable::{VarKey, Variable};
use super::Removed;

pub struct State {
    /// Boxed, so that the map itself stays small and the variables sit in memory in creation
    /// order, which is roughly the order a pass visits them: a pass over 10,000 variables is
    /// bound by cache misses, and this layout lets the hardware prefetch them. The hash keeps
    /// the same order among the map's own entries (see [`KeyHasher`]).
    pub vars: HashMap<VarKey, Box<Variable>, BuildHasherDefault<KeyHasher>>,
    /// Variables without a parent, by creation order.
    pub roots: BTreeMap<u64, VarKey>,
    pub next_seq: u64,
    /// The next `session:createVariable` id: -1, -2, …
    pub next_server_id: VarId,
    /// Messages produced outside change detection (replies, destroys), in order.
    pub outbox: Vec<(TabId, ServerMessage)>,
    /// Wrappers of destroyed variables whose `destroy()` has yet to run (it runs once the
    /// borrow that removed them is released).
    pub dead_wrappers: Vec<LuaValue>,
    /// Change-detection passes that found a changed value (ui-engine's `Tracker.ChangeCount`).
    pub change_count: u64,
}

/// The hash of a [`VarKey`]: its low bits follow the id, so a tab's consecutive ids (as a
/// list's rows get) sit in consecutive buckets and a pass reads the map's entries as a stream
/// rather than one cache miss each; the top seven bits, which the map compares before any key,
/// are mixed. Not SipHash: ids are chosen by the session's own tabs, so ids chosen to collide
/// could only slow down the session that sent them.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl KeyHasher {
    fn add(&mut self, n: u64) {
        // An odd multiplier keeps every earlier part (the owner) in the low bits too.
        self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3).wrapping_add(n);
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.add(u64::from(*b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_i64(&mut self, n: i64) {
        self.add(n as u64);
    }

    fn write_isize(&mut self, n: isize) {
        self.add(n as u64);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        const LOW: u64 = (1 << 57) - 1;
        let mixed = self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (self.0 & LOW) | (mixed & !LOW)
    }
}

impl Default for State {
    fn default() -> State {
        State {
            vars: HashMap::default(),
            roots: BTreeMap::new(),
            next_seq: 0,
            next_server_id: -1,
            outbox: Vec::new(),
            dead_wrappers: Vec::new(),
            change_count: 0,
        }
    }
}

impl State {
    pub fn add_watch(&mut self, key: VarKey, tab: TabId) {
        let Some(var) = self.vars.get_mut(&key) else {
            return;
        };
        if !var.fresh.contains(&tab) {
            var.fresh.push(tab);
        }
        if let Some((_, n)) = var.watchers.iter_mut().find(|(t, _)| *t == tab) {
            *n += 1;
            return;
        }
        var.watchers.push((tab, 1));
        if var.watchers.len() == 1 {
            self.add_watched(key, 1);
        }
    }

    /// One watch less (`all`: every watch) of `tab` on the variable.
    pub fn remove_watch(&mut self, key: VarKey, tab: TabId, all: bool) {
        let Some(var) = self.vars.get_mut(&key) else {
            return;
        };
        let Some(i) = var.watchers.iter().position(|(t, _)| *t == tab) else {
            return;
        };
        var.watchers[i].1 -= 1;
        if !all && var.watchers[i].1 > 0 {
            return;
        }
        var.watchers.remove(i);
        var.fresh.retain(|t| *t != tab);
        if var.watchers.is_empty() {
            self.add_watched(key, -1);
        }
    }

    /// Adjusts `subtree_watched` of the variable and its ancestors.
    pub fn add_watched(&mut self, key: VarKey, delta: i64) {
        let mut next = Some(key);
        while let Some(k) = next {
            let Some(v) = self.vars.get_mut(&k) else {
                break;
            };
            v.subtree_watched = (i64::from(v.subtree_watched) + delta).max(0) as u32;
            next = v.parent;
        }
    }

    /// Removes the subtree at `key`, children first.
    pub fn destroy(&mut self, key: VarKey) -> Vec<Removed> {
        let mut order = Vec::new();
        let mut stack = vec![(key, false)];
        while let Some((k, expanded)) = stack.pop() {
            if expanded {
                order.push(k);
                continue;
            }
            stack.push((k, true));
            if let Some(v) = self.vars.get(&k) {
                stack.extend(v.children.iter().rev().map(|c| (*c, false)));
            }
        }
        let Some(root) = self.vars.get(&key) else {
            return Vec::new();
        };
        let (parent, seq, watched) = (root.parent, root.seq, root.subtree_watched);
        match parent {
            Some(p) => {
                if watched > 0 {
                    self.add_watched(p, -i64::from(watched));
                }
                if let Some(pv) = self.vars.get_mut(&p) {
                    pv.children.retain(|c| *c != key);
                }
            }
            None => {
                self.roots.remove(&seq);
            }
        }
        let mut removed = Vec::with_capacity(order.len());
        for var in order.into_iter().filter_map(|k| self.vars.remove(&k)) {
            if let Some(wrap) = &var.wrap {
                if !wrap.object.is_nil() {
                    self.dead_wrappers.push(wrap.object.clone());
                }
            }
            removed.push(Removed {
                key: var.key,
                watchers: var.watcher_tabs().collect(),
            });
        }
        removed
    }
}
