//! Change detection: one pass over the active variables, parents before children, that
//! recomputes each value, compares it with the last one, and collects what every watching tab
//! must be told, bucketed by priority.
//!
//! Active means: the variable or one of its descendants is watched, and no ancestor (nor the
//! variable itself) is `inactive`. An inactive variable still reports its own property changes,
//! but neither its value nor its subtree is computed. A variable whose value is unknown (its
//! path failed, or it is `w`/`action`) has its subtree skipped: the children have nothing to
//! follow their paths from.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Instant;

use protocol::browser::{Properties, ServerMessage};
use protocol::ipc::TabId;

use super::compute::{plan_from, store, Plan, Stored};
use super::properties::Priority;
use super::settle::{self, Pending};
use super::variable::Variable;
use super::Tracker;

/// Updates per tab, high → medium → low; within a priority, in pass order (parents first).
#[derive(Debug, Default)]
pub struct ChangeSet {
    tabs: BTreeMap<TabId, [Vec<ServerMessage>; 3]>,
}

impl ChangeSet {
    fn push(&mut self, tab: TabId, priority: Priority, msg: ServerMessage) {
        self.tabs.entry(tab).or_default()[priority as usize].push(msg);
    }

    pub fn is_empty(&self) -> bool {
        self.tabs.is_empty()
    }

    /// Each tab's messages in priority order.
    pub fn into_tabs(self) -> impl Iterator<Item = (TabId, Vec<ServerMessage>)> {
        self.tabs.into_iter().map(|(tab, [high, medium, low])| {
            let mut all = high;
            all.extend(medium);
            all.extend(low);
            (tab, all)
        })
    }
}

enum Step {
    Inactive,
    Plan(Plan),
}

/// One change-detection pass.
pub fn detect(tracker: &Tracker) -> ChangeSet {
    let mut out = ChangeSet::default();
    // Each entry carries its parent's value as computed in this pass, shared by the siblings.
    let mut stack: Vec<Pending> = match tracker.state() {
        Ok(st) => st.roots.values().rev().map(|k| (*k, None)).collect(),
        Err(_) => return out,
    };
    let timing = tracker.timing();
    // Without timing or diagnostics to record, unchanged leaves need no evaluation at all.
    let quick = match timing || tracker.diag_level() > 0 {
        true => None,
        false => tracker.lua().ok(),
    };
    let mut any_changed = false;
    loop {
        if let (Some(lua), Ok(st)) = (&quick, tracker.state()) {
            settle::settle_unchanged(&st, &mut stack, lua);
        }
        let Some((key, base)) = stack.pop() else {
            break;
        };
        let step = {
            let Ok(st) = tracker.state() else { break };
            let Some(var) = st.vars.get(&key) else {
                continue; // destroyed by Lua earlier in this pass
            };
            if var.subtree_watched == 0 {
                continue;
            }
            if var.props.inactive() {
                Step::Inactive
            } else {
                Step::Plan(plan_from(var, base.as_ref()))
            }
        };
        // No borrow held from here until `store`: the path may run any Lua code.
        let (result, follow_children, elapsed) = match step {
            Step::Plan(Plan::NoBase) => continue,
            Step::Plan(Plan::Eval(job)) => {
                let started = timing.then(Instant::now);
                let result = tracker.evaluate(key, job);
                (Some(result), true, started.map(|s| s.elapsed()))
            }
            Step::Plan(Plan::Unreadable) | Step::Inactive => (None, false, None),
        };
        let diags = result.as_ref().and_then(|_| tracker.take_diags());
        let Ok(mut st) = tracker.state() else { break };
        let Some(var) = st.vars.get_mut(&key) else {
            continue; // the path's Lua code destroyed it
        };
        let mut stored = match result {
            Some(r) => store(var, r),
            None => Stored::default(),
        };
        let dropped = stored.dropped.take();
        if elapsed.is_some() || diags.is_some() {
            var.stats.computed(elapsed, diags);
        }
        if stored.value_changed {
            var.stats.change_count += 1;
            any_changed = true;
        }
        emit(var, stored, &mut out);
        if follow_children && !var.children.is_empty() {
            if let Some(current) = &var.current {
                let base = Rc::new(current.clone());
                stack.extend(var.children.iter().rev().map(|c| (*c, Some(base.clone()))));
            }
        }
        drop(st);
        // A wrapper its constructor replaced: destroyed with no borrow held.
        if let Some(old) = dropped {
            super::wrapper::destroy_wrapper(&old);
        }
    }
    if any_changed {
        if let Ok(mut st) = tracker.state() {
            st.change_count += 1;
        }
    }
    out
}

/// Queues what each watcher of `var` must hear after this computation: the full state for
/// tabs that just watched it, otherwise the value if it changed and the properties that did.
fn emit(var: &mut Variable, stored: Stored, out: &mut ChangeSet) {
    // The common case of a pass: nothing about this variable is new.
    if !stored.value_changed
        && !stored.error_changed
        && var.fresh.is_empty()
        && !var.props.has_changes()
    {
        return;
    }
    if var.watchers.is_empty() {
        // Nobody to tell; a later watcher gets the full state anyway.
        var.props.clear_changes();
        var.fresh.clear();
        return;
    }
    let changes = var.props.take_changes();
    let readable = var.access.readable();
    let value_priority = var.props.value_priority();
    let mut all = None;
    for (tab, _) in &var.watchers {
        let full = var.fresh.contains(tab);
        if let Some((code, description)) = &var.error {
            if full || stored.error_changed {
                out.push(
                    *tab,
                    value_priority,
                    ServerMessage::Error {
                        var_id: Some(var.key.id),
                        code: *code,
                        description: description.clone(),
                    },
                );
            }
        }
        let mut value = if readable && (full || stored.value_changed) {
            var.value.clone()
        } else {
            None
        };
        let props = if full {
            all.get_or_insert_with(|| var.props.all())
        } else {
            &changes
        };
        for priority in Priority::ALL {
            let value = if priority == value_priority {
                value.take()
            } else {
                None
            };
            let properties: Properties = props
                .iter()
                .filter(|(_, _, p)| *p == priority)
                .map(|(name, v, _)| (name.clone(), v.clone()))
                .collect();
            if value.is_some() || !properties.is_empty() {
                out.push(
                    *tab,
                    priority,
                    ServerMessage::Update {
                        var_id: var.key.id,
                        value,
                        properties,
                    },
                );
            }
        }
    }
    var.fresh.clear();
}
