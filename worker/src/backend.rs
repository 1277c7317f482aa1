//! LuaBackend: the per-session backend of the seed. It owns the [`Tracker`], answers each tab
//! frame message by message, and after every turn runs one change-detection pass whose results
//! become per-tab batches for the broker.
//!
//! A batch holds, in order: the templates (viewdefs) the rest of the batch needs, then replies
//! and errors (in message order, interleaved with any `destroy` the app's Lua code caused),
//! then change-detection updates high → medium → low.
//!
//! A tab's `create` with a `create=Type` property makes the variable hold `Type:new(value)`
//! (see [`crate::tracker::Tracker::instantiate`]); `wrapper=Type` is the tracker's business.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use mlua::{Lua, Table};
use protocol::browser::{ClientMessage, Properties, ServerMessage, VarId};
use protocol::ipc::{DebugListing, DebugVariable, TabBatch, TabId};
use protocol::Value;

use crate::api::Prototypes;
use crate::budget;
use crate::tracker::{self, split_priority, Failure, NewVariable, Tracker, VarKey};
use crate::viewdefs::Viewdefs;

pub struct LuaBackend {
    lua: Lua,
    tracker: Tracker,
    /// Open tabs; messages for any other tab are dropped.
    tabs: BTreeSet<TabId>,
    viewdefs: Viewdefs,
}

impl LuaBackend {
    /// Creates the tracker for `lua` and installs the tracker-backed methods on the `session`
    /// table (`createAppVariable`, `getApp`, `createVariable`, `destroyVariable`). Without
    /// [`LuaBackend::with_app`] there are no viewdefs, and `create`/`wrapper` find classes
    /// among global tables only.
    pub fn new(lua: &Lua, session: &Table) -> mlua::Result<LuaBackend> {
        let tracker = Tracker::new(lua)?;
        tracker::install_session_api(lua, session, &tracker)?;
        Ok(LuaBackend {
            lua: lua.clone(),
            tracker,
            tabs: BTreeSet::new(),
            viewdefs: Viewdefs::none(),
        })
    }

    /// The app's side: viewdefs come from `viewdefs_dir` (symlinks followed while they stay
    /// inside `confine`), and `create`/`wrapper` find classes in the `session:prototype`
    /// registry before global tables.
    pub fn with_app(
        self,
        prototypes: Prototypes,
        viewdefs_dir: &Path,
        confine: &Path,
    ) -> LuaBackend {
        self.tracker.set_prototypes(prototypes);
        LuaBackend {
            viewdefs: Viewdefs::at(viewdefs_dir, confine),
            ..self
        }
    }

    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// Variable 1's value JSON, once `main.lua` has created it.
    pub fn app_value(&self) -> Option<Value> {
        self.tracker.app_value()
    }

    pub fn tab_opened(&mut self, tab: TabId) {
        self.tabs.insert(tab);
    }

    /// Handles one frame of a tab, then runs change detection; returns what each tab receives.
    pub fn handle_frame(&mut self, tab: TabId, messages: Vec<ClientMessage>) -> Vec<TabBatch> {
        self.tabs.insert(tab);
        for msg in messages {
            self.handle_message(tab, msg);
        }
        self.detect_changes()
    }

    /// Destroys the variables the tab created and forgets its watches.
    pub fn tab_closed(&mut self, tab: TabId) -> Vec<TabBatch> {
        self.tabs.remove(&tab);
        self.viewdefs.forget_tab(tab);
        // Other tabs may have watched server-created variables below the tab's ones.
        for removed in self.tracker.forget_tab(tab) {
            for watcher in removed.watchers {
                if watcher != tab {
                    self.tracker.send(
                        watcher,
                        ServerMessage::Destroy {
                            var_id: removed.key.id,
                        },
                    );
                }
            }
        }
        self.collect(tracker::ChangeSet::default())
    }

    /// One change-detection pass (after a timer callback, for instance).
    pub fn detect_changes(&mut self) -> Vec<TabBatch> {
        let changes = self.tracker.detect_changes();
        self.collect(changes)
    }

    pub fn debug_variables(&self) -> Vec<DebugVariable> {
        self.tracker.debug_listing().variables
    }

    /// What the debug pages show; see [`crate::session::LuaSession::debug_listing`].
    pub fn debug_listing(&self) -> DebugListing {
        self.tracker.debug_listing()
    }

    /// The debug pages are looking (see `Tracker::set_debug`); true when a pass now would
    /// record more than the last one did.
    pub fn set_debug(&self, diag_level: Option<u8>) -> bool {
        self.tracker.set_debug(diag_level)
    }

    /// Hot reload of viewdefs: re-reads the changed `viewdefs/*.html` among `files` and
    /// returns, for each open tab that has been sent (or considered for) a changed type, the
    /// changed templates as a high-priority `viewdefs` update of variable 1. The caller runs
    /// change detection afterwards.
    pub fn reload_viewdefs(&mut self, files: &[String]) -> Vec<TabBatch> {
        self.viewdefs
            .reload(files)
            .into_iter()
            .filter(|(tab, _)| self.tabs.contains(tab))
            .map(|(tab, msg)| TabBatch {
                tab,
                messages: vec![msg],
            })
            .collect()
    }

    /// One `error` for every open tab, for a failure no tab caused (a timer callback, a
    /// reloaded file): `limit` or `lua-error` as the failure deserves.
    pub fn error_batches(&self, err: &mlua::Error) -> Vec<TabBatch> {
        error_batches(&self.tabs, err)
    }

    fn handle_message(&mut self, tab: TabId, msg: ClientMessage) {
        let scoped = |id: VarId| VarKey::scoped(tab, id);
        match msg {
            ClientMessage::Create {
                id,
                parent_id,
                value,
                properties,
                nowatch,
                unbound,
            } => {
                let result = self.create(tab, id, parent_id, value, properties, nowatch, unbound);
                self.reply_err(tab, id, result);
            }
            ClientMessage::Destroy { var_id } => {
                let result = self.destroy(tab, scoped(var_id));
                self.reply_err(tab, var_id, result);
            }
            ClientMessage::Update {
                var_id,
                value,
                properties,
            } => {
                let key = scoped(var_id);
                let mut result = Ok(());
                if !properties.is_empty() || value.is_none() {
                    result = self.tracker.set_properties(key, &properties);
                }
                if let (Ok(()), Some(value)) = (&result, value) {
                    result = self.tracker.write(&self.lua, key, &value);
                }
                self.reply_err(tab, var_id, result);
            }
            ClientMessage::Watch { var_id } => {
                let result = self.tracker.watch(scoped(var_id), tab);
                self.reply_err(tab, var_id, result);
            }
            ClientMessage::Unwatch { var_id } => {
                let result = self.tracker.unwatch(scoped(var_id), tab);
                self.reply_err(tab, var_id, result);
            }
            ClientMessage::Get { var_ids } => {
                let mut variables = Vec::with_capacity(var_ids.len());
                for id in var_ids {
                    match self.tracker.snapshot(scoped(id)) {
                        Ok(s) => variables.push(s),
                        Err(f) => self.tracker.send(tab, f.into_message(Some(id))),
                    }
                }
                self.tracker.send(tab, ServerMessage::Get { variables });
            }
            ClientMessage::GetObjects { obj_ids } => {
                let mut objects = Vec::with_capacity(obj_ids.len());
                for id in obj_ids {
                    match self.tracker.object_snapshot(id) {
                        Ok(o) => objects.push(o),
                        Err(f) => self.tracker.send(tab, f.into_message(None)),
                    }
                }
                self.tracker
                    .send(tab, ServerMessage::GetObjects { objects });
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        tab: TabId,
        id: VarId,
        parent_id: Option<VarId>,
        value: Option<Value>,
        properties: Vec<(String, String)>,
        nowatch: bool,
        unbound: bool,
    ) -> Result<(), Failure> {
        if id < 2 {
            return Err(Failure::bad_request(format!(
                "a tab's variable ids start at 2, not {id}"
            )));
        }
        let parent = parent_id.map(|p| VarKey::scoped(tab, p));
        let key = VarKey::scoped(tab, id);
        let mut properties = properties;
        let own = if let Some(type_name) = create_type(&properties)? {
            // `create=Type`: the variable holds a new instance, whatever its path says. The
            // constructor is app code: a create the tracker would refuse must not run it.
            self.tracker.check_new(key, parent)?;
            let v = value.unwrap_or(Value::Null);
            let arg = tracker::to_lua(&self.lua, self.tracker.objects(), &v)?;
            let obj = self.tracker.instantiate("create", &type_name, arg)?;
            let typed = obj.as_table().and_then(tracker::table_type).is_some();
            if !typed {
                // A plain class table has no `type` of its own: name it after the class.
                properties.push(("type".to_string(), type_name));
            }
            Some(obj)
        } else if parent.is_none() || unbound {
            let v = value.unwrap_or(Value::Null);
            Some(tracker::to_lua(&self.lua, self.tracker.objects(), &v)?)
        } else {
            None
        };
        self.tracker.create(NewVariable {
            key,
            parent,
            properties,
            own,
            watcher: (!nowatch).then_some(tab),
        })
    }

    /// A tab destroys one of its own variables and its descendants; shared ones belong to the
    /// app (destroying one could take other tabs' variables with it).
    fn destroy(&mut self, tab: TabId, key: VarKey) -> Result<(), Failure> {
        if !self.tracker.exists(key) {
            return Err(Failure::not_found(format!("no variable {}", key.id)));
        }
        if key.owner != Some(tab) {
            return Err(Failure::bad_access(format!(
                "variable {} belongs to the app; a tab destroys only its own variables",
                key.id
            )));
        }
        for removed in self.tracker.destroy(key)? {
            let id = removed.key.id;
            self.tracker
                .send(tab, ServerMessage::Destroy { var_id: id });
            for watcher in removed.watchers {
                if watcher != tab {
                    self.tracker
                        .send(watcher, ServerMessage::Destroy { var_id: id });
                }
            }
        }
        Ok(())
    }

    fn reply_err(&self, tab: TabId, var_id: VarId, result: Result<(), Failure>) {
        if let Err(f) = result {
            self.tracker.send(tab, f.into_message(Some(var_id)));
        }
    }

    /// Outbox first, then the pass's updates; one batch per open tab with something to say,
    /// headed by the viewdefs it needs.
    fn collect(&mut self, changes: tracker::ChangeSet) -> Vec<TabBatch> {
        let mut per_tab: BTreeMap<TabId, Vec<ServerMessage>> = BTreeMap::new();
        for (tab, msg) in self.tracker.take_outbox() {
            per_tab.entry(tab).or_default().push(msg);
        }
        for (tab, msgs) in changes.into_tabs() {
            per_tab.entry(tab).or_default().extend(msgs);
        }
        let mut out = Vec::with_capacity(per_tab.len());
        for (tab, mut messages) in per_tab {
            if !self.tabs.contains(&tab) || messages.is_empty() {
                continue;
            }
            if let Some(templates) = self.viewdefs.needed_by(tab, &messages) {
                messages.insert(0, templates);
            }
            out.push(TabBatch { tab, messages });
        }
        out
    }
}

/// The `create` property among a new variable's properties (its path's `?…` suffix
/// included); the last one wins, as it would when properties are set one after another.
fn create_type(properties: &Properties) -> Result<Option<String>, Failure> {
    let (expanded, _) = tracker::expand_properties(properties, false)?;
    Ok(expanded
        .into_iter()
        .rev()
        .find(|(name, _)| split_priority(name).0 == "create")
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty()))
}

/// One `error` message for each tab, with the code the failure deserves (`limit` or
/// `lua-error`).
pub fn error_batches(tabs: &BTreeSet<TabId>, err: &mlua::Error) -> Vec<TabBatch> {
    let error = ServerMessage::Error {
        var_id: None,
        code: budget::error_code(err),
        description: err.to_string(),
    };
    tabs.iter()
        .map(|&tab| TabBatch {
            tab,
            messages: vec![error.clone()],
        })
        .collect()
}

/// `first` then `then`, one batch per tab.
pub fn merge_batches(mut first: Vec<TabBatch>, then: Vec<TabBatch>) -> Vec<TabBatch> {
    for batch in then {
        match first.iter_mut().find(|b| b.tab == batch.tab) {
            Some(same_tab) => same_tab.messages.extend(batch.messages),
            None => first.push(batch),
        }
    }
    first
}

#[cfg(test)]
mod tests;
