//! What the debug pages (`--debug-pages`, ui-engine's variable browser) learn about the
//! variables: change counts, compute times, diagnostics, and the listing itself.
//!
//! - **Change counts** are always kept (an increment per change found): a variable's counts the
//!   passes that found its value changed, the tracker's the passes that found any change.
//! - **Compute times** cost two clock reads per computed variable, so they are measured only
//!   once the session's debug listing has been asked for ([`Tracker::set_debug`]): a session
//!   nobody inspects pays nothing.
//! - **Diagnostics** (ui-engine's `Tracker.Diag`): with a level above 0, every computation
//!   records what it did in the variable's `diags`, replacing the previous computation's.
//!   Level 1: the outcome (the Lua type and `type` it produced, or the failure) and what became
//!   of the wrapper; level 2 adds every step of the path.
//! - **Pass times** are always kept: two clock reads a pass, and the last
//!   [`PASS_TIMES_KEPT`] durations. Timing and diagnostics make passes slower (every variable
//!   is then evaluated in full), so the times kept before the first debug request are the ones
//!   that show what the session's users get.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::time::Duration;

use mlua::Value as LuaValue;
use protocol::ipc::{DebugListing, DebugVariable};
use protocol::limits::PASS_TIMES_KEPT;

use super::value_json::to_json;
use super::variable::VarKey;
use super::Tracker;

/// The most diagnostics one computation keeps (a long path at level 2 stays well below).
const MAX_DIAGS: usize = 64;

/// Per variable.
#[derive(Debug, Default, Clone)]
pub struct VarStats {
    pub change_count: u64,
    pub compute_time: Option<Duration>,
    pub max_compute_time: Option<Duration>,
    pub diags: Vec<String>,
}

impl VarStats {
    /// Records one computation that took `elapsed` (when timed) and left `diags`.
    pub fn computed(&mut self, elapsed: Option<Duration>, diags: Option<Vec<String>>) {
        if let Some(t) = elapsed {
            self.compute_time = Some(t);
            self.max_compute_time = Some(self.max_compute_time.map_or(t, |m| m.max(t)));
        }
        if let Some(d) = diags {
            self.diags = d;
        }
    }
}

/// Per tracker: whether compute times are measured, the diagnostic level, the diagnostics
/// of the computation under way, and how long the recent passes took.
#[derive(Debug, Default)]
pub struct DebugState {
    timing: Cell<bool>,
    level: Cell<u8>,
    diags: RefCell<Vec<String>>,
    passes: Cell<u64>,
    recent_passes: RefCell<VecDeque<u64>>,
}

impl Tracker {
    fn debug(&self) -> &DebugState {
        &self.inner.debug
    }

    /// Records that a pass took `elapsed`.
    pub(crate) fn pass_took(&self, elapsed: Duration) {
        let d = self.debug();
        d.passes.set(d.passes.get() + 1);
        if let Ok(mut recent) = d.recent_passes.try_borrow_mut() {
            if recent.len() == PASS_TIMES_KEPT {
                recent.pop_front();
            }
            recent.push_back(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
        }
    }

    /// Whether change detection measures compute times.
    pub(crate) fn timing(&self) -> bool {
        self.debug().timing.get()
    }

    pub(crate) fn diag_level(&self) -> u8 {
        self.debug().level.get()
    }

    /// The debug pages are looking: compute times are measured from now on, and the
    /// diagnostic level becomes `level` (unchanged for `None`). True when this changed what a
    /// pass records, so a pass now would show more.
    pub fn set_debug(&self, level: Option<u8>) -> bool {
        let d = self.debug();
        let mut changed = !d.timing.replace(true);
        if let Some(level) = level {
            changed |= d.level.replace(level) != level;
            if level == 0 {
                if let Ok(mut st) = self.state() {
                    for var in st.vars.values_mut() {
                        var.stats.diags.clear();
                    }
                }
            }
        }
        changed
    }

    /// Records a diagnostic of the computation under way, if the level asks for it.
    pub(crate) fn diag(&self, level: u8, message: impl FnOnce() -> String) {
        if self.diag_level() >= level {
            if let Ok(mut diags) = self.debug().diags.try_borrow_mut() {
                if diags.len() < MAX_DIAGS {
                    diags.push(message());
                }
            }
        }
    }

    /// Starts a computation's diagnostics afresh.
    pub(crate) fn clear_diags(&self) {
        if let Ok(mut diags) = self.debug().diags.try_borrow_mut() {
            diags.clear();
        }
    }

    /// The diagnostics of the computation just done (`None` with diagnostics off).
    pub(crate) fn take_diags(&self) -> Option<Vec<String>> {
        if self.diag_level() == 0 {
            return None;
        }
        self.debug()
            .diags
            .try_borrow_mut()
            .ok()
            .map(|mut d| std::mem::take(&mut *d))
    }

    /// Every variable, parents before children, with the tracker's counters.
    pub fn debug_listing(&self) -> DebugListing {
        let Ok(st) = self.state() else {
            return DebugListing::default();
        };
        let mut out = Vec::with_capacity(st.vars.len());
        // Wrapped values, turned into JSON once the borrow is released.
        let mut raws: Vec<(usize, LuaValue)> = Vec::new();
        // (variable, depth, whether its parent is computed by change detection)
        let mut stack: Vec<(VarKey, u32, bool)> =
            st.roots.values().rev().map(|k| (*k, 0, true)).collect();
        while let Some((key, depth, parent_active)) = stack.pop() {
            let Some(v) = st.vars.get(&key) else { continue };
            let active = parent_active && !v.props.inactive() && v.subtree_watched > 0;
            if let Some(raw) = &v.raw {
                raws.push((out.len(), raw.clone()));
            }
            out.push(DebugVariable {
                id: v.key.id,
                tab: v.key.owner,
                parent_id: v.parent.map(|p| p.id),
                path: v.path_text.clone(),
                value: v.value.clone(),
                properties: v.props.pairs(),
                child_ids: v.children.iter().map(|c| c.id).collect(),
                error: v.error.as_ref().map(|(_, d)| d.clone()),
                access: v.access.as_str().to_string(),
                change_count: v.stats.change_count,
                compute_time_ns: v.stats.compute_time.map(nanos),
                max_compute_time_ns: v.stats.max_compute_time.map(nanos),
                active,
                depth,
                lua_type: v
                    .current
                    .as_ref()
                    .map(|c| super::path::lua_type(c).to_string())
                    .unwrap_or_default(),
                base_value: None,
                watchers: v.watcher_tabs().collect(),
                diags: v.stats.diags.clone(),
            });
            // A pass computes children only below a variable it computed.
            stack.extend(v.children.iter().rev().map(|c| (*c, depth + 1, active)));
        }
        let listing = DebugListing {
            change_count: st.change_count,
            diag_level: self.diag_level(),
            passes: self.debug().passes.get(),
            recent_pass_ns: self
                .debug()
                .recent_passes
                .try_borrow()
                .map(|r| r.iter().copied().collect())
                .unwrap_or_default(),
            variables: out,
        };
        drop(st);
        let mut listing = listing;
        for (i, raw) in raws {
            listing.variables[i].base_value = to_json(self.objects(), &raw).ok();
        }
        listing
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
