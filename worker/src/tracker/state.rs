//! The variable tree itself: the variables by key, parent/child links, roots in creation
//! order, watch tallies with the per-subtree watched counts change detection relies on, and
//! removal of a subtree. Pure data: nothing here calls into Lua (a removed variable's wrapper
//! is queued for its `destroy()`, which the tracker calls once this borrow is released).

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use mlua::Value as LuaValue;
use protocol::browser::{ServerMessage, VarId};
use protocol::ipc::TabId;

use super::variable::{VarKey, Variable};
use super::Removed;

pub struct State {
    /// Boxed, so that the map itself stays small and the variables sit in memory in creation
    /// order, which is roughly the order a pass visits them: a pass over 10,000 variables is
    /// bound by cache misses, and this layout lets the hardware prefetch them. FxHash, not
    /// SipHash: ids are chosen by this session's own tabs, so colliding ids could only slow
    /// down the session that sent them.
    pub vars: FxHashMap<VarKey, Box<Variable>>,
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

impl Default for State {
    fn default() -> State {
        State {
            vars: FxHashMap::default(),
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
