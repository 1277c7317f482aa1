//! The broker's side of worker confinement: which layers every worker gets, decided once at
//! start-up, and what a worker's sandbox violation means for its session.
//!
//! At start-up [`decide`] resolves the worker user (`--worker-user`, `nobody` when the broker
//! is root; root workers only with `--allow-root-workers`), lets a throwaway child try every
//! layer (`worker::confine::probe`, which also checks that the worker user can read the app),
//! logs once what is and is not in force, and with `--sandbox strict` refuses to start when a
//! layer is missing. The resulting [`SandboxPolicy`] goes to every worker in its `Start`; the
//! layers are on `/metrics` as `luabroker_sandbox_layer{layer=…}` (1 in force, 0 not).
//!
//! A worker that makes a forbidden call reports the call's number and dies of SIGSYS
//! (`worker/src/confine/sigsys.rs`); [`violation`] turns that into the cause its tabs see in
//! `session-crashed`: `sandbox-violation: socket`.

use std::sync::OnceLock;

use nix::sys::signal::Signal;
use protocol::sandbox::{syscall_name, SandboxPolicy, WorkerUser};
use worker::confine::AppFiles;

use crate::child::Exit;
use crate::config::{Config, SandboxMode};
use crate::metrics::metrics;

static POLICY: OnceLock<SandboxPolicy> = OnceLock::new();

/// The policy [`decide`] settled on (everything off before it ran, as in unit tests).
pub fn policy() -> SandboxPolicy {
    POLICY.get().cloned().unwrap_or_default()
}

/// Decides the workers' confinement for the app in `app`, logs it, and records it for
/// [`policy`] and `/metrics`. Must run while the broker has one thread (before the runtime
/// starts): it forks the probe.
pub fn decide(config: &Config, app: &AppFiles) -> Result<(), String> {
    let root = nix::unistd::geteuid().is_root();
    let user = worker_user(config, root)?;
    let switch_to = user.as_ref().map(|(_, u)| *u);
    let runs_as = user.as_ref().map_or_else(
        || format!("uid {}", nix::unistd::geteuid()),
        |(name, u)| format!("{name} (uid {})", u.uid),
    );
    let found = worker::confine::probe(switch_to, app)
        .ok_or("the sandbox probe (a child that tries every layer) did not finish")?;
    if !found.privileges {
        return Err(format!(
            "workers cannot drop their privileges here (switch to {runs_as}, clear every \
             capability, set NO_NEW_PRIVS), so none would start"
        ));
    }
    if let (Some((name, _)), false) = (&user, found.user_switch) {
        return Err(format!(
            "cannot run workers as {name} here, and workers run as root only with \
             --allow-root-workers"
        ));
    }
    if !found.app_readable {
        return Err(format!(
            "workers (running as {runs_as}) cannot read the app: {} and the directories under \
             {} must be readable to that user (e.g. chmod -R o+rX {}){}",
            app.app_dir.join("main.lua").display(),
            app.readable.display(),
            app.readable.display(),
            if user.is_some() {
                ", or choose another --worker-user"
            } else {
                ""
            }
        ));
    }
    // `worker_user`: workers do not run as root (another user, or a broker that is not root).
    // `--sandbox off` turns the three off; the worker user rule holds whatever the mode.
    let confining = config.sandbox != SandboxMode::Off;
    let layers = [
        ("seccomp", confining && found.seccomp),
        ("namespaces", confining && found.namespaces),
        ("landlock", confining && found.landlock),
        ("worker_user", user.is_some() || !root),
    ];
    for (layer, on) in layers {
        metrics()
            .sandbox_layers
            .get_or_create(&[("layer", layer)])
            .set(i64::from(on));
    }
    if config.sandbox == SandboxMode::Off {
        tracing::warn!(runs_as = %runs_as,
            "--sandbox off: workers get only NO_NEW_PRIVS and no capabilities (no seccomp, \
             namespaces or Landlock)");
        let _ = POLICY.set(SandboxPolicy {
            user: switch_to,
            ..SandboxPolicy::default()
        });
        return Ok(());
    }
    let names = |wanted: bool| -> Vec<&str> {
        layers
            .iter()
            .filter(|(_, on)| *on == wanted)
            .map(|(layer, _)| *layer)
            .collect()
    };
    let (active, missing) = (names(true), names(false));
    if !missing.is_empty() && config.sandbox == SandboxMode::Strict {
        return Err(format!(
            "--sandbox strict: not available here: {}",
            missing.join(", ")
        ));
    }
    if missing.is_empty() {
        tracing::info!(active = %active.join(","), runs_as = %runs_as,
            "worker sandbox: every layer in force (plus NO_NEW_PRIVS, no capabilities)");
    } else {
        tracing::warn!(active = %active.join(","), missing = %missing.join(","), runs_as = %runs_as,
            "worker sandbox: some layers are not available here; serving without them");
    }
    if found.namespaces {
        // One empty network namespace, one empty IPC namespace and one mount namespace with the
        // app read-only, for every worker (confine/namespaces.rs).
        if let Err(e) = worker::confine::namespaces::shared_namespaces() {
            tracing::warn!(
                "cannot make the workers' shared namespaces ({e}); each worker makes its own"
            );
        }
        if let Err(e) = worker::confine::namespaces::shared_mount_namespace(app.readable) {
            tracing::warn!(
                "cannot make the workers' shared mount namespace ({e}); each worker makes its own"
            );
        }
    }
    let _ = POLICY.set(SandboxPolicy {
        user: switch_to,
        namespaces: found.namespaces,
        landlock: found.landlock,
        seccomp: found.seccomp,
    });
    Ok(())
}

/// The user workers switch to: `--worker-user`, or `nobody` when the broker is root. `None`
/// keeps the broker's own user (not root, or root explicitly allowed).
fn worker_user(config: &Config, root: bool) -> Result<Option<(String, WorkerUser)>, String> {
    let name = match (&config.worker_user, root) {
        (Some(name), _) => name.clone(),
        (None, true) if config.allow_root_workers => return Ok(None),
        (None, true) => "nobody".to_string(),
        (None, false) => return Ok(None),
    };
    let user = nix::unistd::User::from_name(&name)
        .map_err(|e| format!("--worker-user {name}: {e}"))?
        .ok_or_else(|| format!("--worker-user {name}: no such user"))?;
    if user.uid.is_root() && !config.allow_root_workers {
        return Err(format!(
            "--worker-user {name} is root: workers run as root only with --allow-root-workers"
        ));
    }
    if !root && user.uid != nix::unistd::geteuid() {
        return Err(format!(
            "--worker-user {name} needs the broker to run as root (it runs as uid {})",
            nix::unistd::geteuid()
        ));
    }
    let switch = WorkerUser {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    };
    Ok((root && !user.uid.is_root()).then_some((name, switch)))
}

/// The cause a worker's end gets when the sandbox ended it: the call it reported, or SIGSYS
/// (the kernel's seccomp kill) without a report. `None` for any other end.
pub fn violation(reported: Option<u32>, exit: &Exit) -> Option<String> {
    let cause = match (reported, exit) {
        (Some(number), _) => format!("sandbox-violation: {}", syscall_name(number)),
        (None, Exit::Signal(Signal::SIGSYS)) => "sandbox-violation: unknown call".to_string(),
        _ => return None,
    };
    metrics().sandbox_violations.inc();
    Some(cause)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reported_call_is_named_and_a_bare_sigsys_still_counts() {
        let socket = protocol::sandbox::syscall_number("socket").unwrap();
        assert_eq!(
            violation(Some(socket), &Exit::Signal(Signal::SIGSYS)).as_deref(),
            Some("sandbox-violation: socket")
        );
        assert_eq!(
            violation(None, &Exit::Signal(Signal::SIGSYS)).as_deref(),
            Some("sandbox-violation: unknown call")
        );
        assert_eq!(violation(None, &Exit::Signal(Signal::SIGKILL)), None);
        assert_eq!(violation(None, &Exit::Code(0)), None);
    }

    #[test]
    fn root_workers_need_to_be_allowed() {
        use clap::Parser;
        let config = Config::parse_from(["luabroker", "--worker-user", "root"]);
        assert!(worker_user(&config, true)
            .unwrap_err()
            .contains("--allow-root-workers"));
        let allowed =
            Config::parse_from(["luabroker", "--worker-user", "root", "--allow-root-workers"]);
        assert_eq!(worker_user(&allowed, true).unwrap(), None);
        let default = Config::parse_from(["luabroker"]);
        let (name, user) = worker_user(&default, true).unwrap().expect("nobody");
        assert_eq!(name, "nobody");
        assert_ne!(user.uid, 0);
        assert_eq!(worker_user(&default, false).unwrap(), None);
    }
}
