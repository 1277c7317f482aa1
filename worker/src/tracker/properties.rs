//! A variable's properties and their priorities (ARCHITECTURE.md 3).
//!
//! A property name may end in `:high`, `:medium`/`:med` or `:low`: the suffix is stripped and
//! sets that property's priority (default medium). The `priority` property sets the priority of
//! the variable's value. The store remembers which properties changed since they were last
//! reported, and which were removed, so that change detection can send only those.

use protocol::browser::Properties;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Priority {
    High = 0,
    #[default]
    Medium = 1,
    Low = 2,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Medium, Priority::Low];

    /// A priority word; anything else is medium, the default.
    pub fn parse(word: &str) -> Priority {
        match word {
            "high" => Priority::High,
            "low" => Priority::Low,
            _ => Priority::Medium,
        }
    }
}

/// Splits `name:high` into `("name", Some(High))`; a name without a priority suffix is
/// returned whole.
pub fn split_priority(raw: &str) -> (&str, Option<Priority>) {
    if let Some((name, suffix)) = raw.rsplit_once(':') {
        let priority = match suffix {
            "high" => Some(Priority::High),
            "medium" | "med" => Some(Priority::Medium),
            "low" => Some(Priority::Low),
            _ => None,
        };
        if priority.is_some() && !name.is_empty() {
            return (name, priority);
        }
    }
    (raw, None)
}

#[derive(Debug, Clone)]
struct Prop {
    name: String,
    value: String,
    priority: Priority,
    /// Changed since last reported.
    dirty: bool,
}

/// One change to report: name, value (`""` = removed), priority.
pub type PropChange = (String, String, Priority);

// In C order, the flags a pass reads first (see `Variable`).
#[derive(Debug, Clone, Default)]
#[repr(C)]
pub struct PropertyStore {
    /// Cached from the `priority` property: read on every pass.
    value_priority: Priority,
    /// Cached from the `inactive` property: read on every pass.
    inactive: bool,
    /// Whether there is a `wrapper` property: read on every pass.
    wrapped: bool,
    /// Whether anything is dirty or removed: a pass asks this of every variable, so it is
    /// answered without walking the properties.
    changed: bool,
    props: Vec<Prop>,
    removed: Vec<(String, Priority)>,
}

impl PropertyStore {
    /// Sets a property from a raw (possibly suffixed) name; an empty value removes it.
    pub fn set(&mut self, raw_name: &str, value: &str) {
        let (name, priority) = split_priority(raw_name);
        self.put(name, value, priority);
    }

    /// Sets a property by its plain name at the given priority.
    pub fn set_with(&mut self, name: &str, value: &str, priority: Priority) {
        self.put(name, value, Some(priority));
    }

    /// Without an explicit priority a set is medium and a removal keeps the old priority.
    fn put(&mut self, name: &str, value: &str, priority: Option<Priority>) {
        match name {
            "priority" => self.value_priority = Priority::parse(value),
            "inactive" => self.inactive = !value.is_empty(),
            "wrapper" => self.wrapped = !value.is_empty(),
            _ => {}
        }
        let pos = self.props.iter().position(|p| p.name == name);
        if value.is_empty() {
            if let Some(i) = pos {
                let old = self.props.remove(i);
                self.removed
                    .push((old.name, priority.unwrap_or(old.priority)));
                self.changed = true;
            }
            return;
        }
        self.removed.retain(|(n, _)| n != name);
        let priority = priority.unwrap_or_default();
        match pos {
            Some(i) => {
                let p = &mut self.props[i];
                if p.value != value || p.priority != priority {
                    p.value = value.to_string();
                    p.priority = priority;
                    p.dirty = true;
                    self.changed = true;
                }
            }
            None => {
                self.props.push(Prop {
                    name: name.to_string(),
                    value: value.to_string(),
                    priority,
                    dirty: true,
                });
                self.changed = true;
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.props
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_str())
    }

    pub fn value_priority(&self) -> Priority {
        self.value_priority
    }

    pub fn inactive(&self) -> bool {
        self.inactive
    }

    pub fn wrapped(&self) -> bool {
        self.wrapped
    }

    /// Every property with its priority, in the order they were first set.
    pub fn all(&self) -> Vec<PropChange> {
        self.props
            .iter()
            .map(|p| (p.name.clone(), p.value.clone(), p.priority))
            .collect()
    }

    /// Every property as name/value pairs (get replies, debug pages).
    pub fn pairs(&self) -> Properties {
        self.props
            .iter()
            .map(|p| (p.name.clone(), p.value.clone()))
            .collect()
    }

    /// Whether [`Self::take_changes`] would return anything.
    pub fn has_changes(&self) -> bool {
        self.changed
    }

    /// What changed since the last call (removed ones as `""`), and forget it.
    pub fn take_changes(&mut self) -> Vec<PropChange> {
        self.changed = false;
        let mut out: Vec<PropChange> = Vec::new();
        for p in self.props.iter_mut().filter(|p| p.dirty) {
            p.dirty = false;
            out.push((p.name.clone(), p.value.clone(), p.priority));
        }
        out.extend(self.removed.drain(..).map(|(n, pr)| (n, String::new(), pr)));
        out
    }

    /// Forget pending changes without reporting them (nobody is watching).
    pub fn clear_changes(&mut self) {
        self.changed = false;
        for p in &mut self.props {
            p.dirty = false;
        }
        self.removed.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_set_priorities() {
        assert_eq!(split_priority("x:high"), ("x", Some(Priority::High)));
        assert_eq!(split_priority("x:med"), ("x", Some(Priority::Medium)));
        assert_eq!(split_priority("x:low"), ("x", Some(Priority::Low)));
        assert_eq!(split_priority("a:b"), ("a:b", None));
        assert_eq!(split_priority(":high"), (":high", None));
    }

    #[test]
    fn changes_are_reported_once_and_removals_as_empty() {
        let mut s = PropertyStore::default();
        s.set("a", "1");
        s.set("b:low", "2");
        s.set("priority", "high");
        assert_eq!(s.value_priority(), Priority::High);
        assert!(s.has_changes());
        assert_eq!(s.take_changes().len(), 3);
        assert!(!s.has_changes());
        assert!(s.take_changes().is_empty());
        s.set("a", "1"); // unchanged
        s.set("b", "");
        assert_eq!(
            s.take_changes(),
            vec![("b".into(), "".into(), Priority::Low)]
        );
        s.set("inactive", "1");
        assert!(s.inactive());
    }
}
