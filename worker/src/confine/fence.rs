//! Landlock, the second fence on the filesystem: once enforced, the worker may read files and
//! list directories under the app directory and nothing else, whatever its user could reach.
//! Prepared before privileges drop (it opens the app directory), enforced after.

use std::path::Path;

use landlock::{
    path_beneath_rules, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr,
    RulesetStatus, ABI,
};

/// The newest Landlock ABI this code knows; older kernels enforce what they can of it.
const ABI_WANTED: ABI = ABI::V5;

pub struct Fence(RulesetCreated);

impl Fence {
    /// A ruleset that handles every filesystem access and grants reading under `app_dir`.
    pub fn prepare(app_dir: &Path) -> Result<Fence, landlock::RulesetError> {
        let ruleset = Ruleset::default()
            .handle_access(AccessFs::from_all(ABI_WANTED))?
            .create()?
            .add_rules(path_beneath_rules(
                [app_dir],
                AccessFs::from_read(ABI_WANTED),
            ))?;
        Ok(Fence(ruleset))
    }

    /// Enforces the ruleset on this process; an error when the kernel enforces none of it.
    pub fn enforce(self) -> Result<(), String> {
        let status = self.0.restrict_self().map_err(|e| e.to_string())?;
        match status.ruleset {
            RulesetStatus::NotEnforced => Err("the kernel does not enforce Landlock".into()),
            RulesetStatus::FullyEnforced | RulesetStatus::PartiallyEnforced => Ok(()),
        }
    }
}
