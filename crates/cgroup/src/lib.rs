//! racelab-cgroup: the cgroup pieces racelab needs to contain and kill process trees.
//!
//! What it is for:
//! - finding the hierarchies from /proc/self/mountinfo ([`Mounts`]): cgroup v2 (at
//!   /sys/fs/cgroup on most hosts, /sys/fs/cgroup/unified on hybrid ones) and the v1 freezer;
//! - a cgroup v2 [`Leaf`] owned by the lab or the supervisor: move processes in, hand its
//!   directory fd to `clone3(CLONE_INTO_CGROUP)`, kill the whole tree with `cgroup.kill` (or a
//!   pidfd-based walk on kernels without it), wait for it to empty by pidfd, remove it with a
//!   deadline; [`gc_stale`] removes leaves left by dead owners;
//! - a v1 [`Freezer`] group, which makes a task "unkillable for a while": frozen there, a task
//!   stays in D state under SIGKILL until thawed; [`gc_stale_freezers`] thaws and removes the
//!   groups of owners that died with a task frozen;
//! - capability probes ([`v2_writable`], [`cgroup_kill_supported`], [`freezer_v1_usable`]) for
//!   the sandbox's report of what this host allows.
//!
//! What it is not for: spawning (the supervisor owns `clone3`; this crate only provides the
//! fd), resource limits or controllers, cgroup v2 freezing (it does not protect from SIGKILL),
//! or delegation to unprivileged users. It contains no `unsafe`.
//!
//! Every error names the path and the operation that failed ([`Error`], [`ErrorKind`]).
//! Every wait is bounded by a caller's deadline; waits for processes use pidfds rather than
//! `cgroup.events`, whose notifications are rate-limited (about 12 ms).

#![forbid(unsafe_code)]

mod error;
mod freezer;
mod fsutil;
mod leaf;
mod mounts;
mod owner;
mod walk;

pub use error::{Error, ErrorKind, Result};
pub use freezer::{Freezer, FreezerState, gc_stale_freezers, remove_freezers_of_pidns};
pub use leaf::{Events, Leaf, gc_ended_namespaces, gc_stale, remove_leaves_of_pidns};
pub use mounts::{BASE_NAME, Mounts};
pub use owner::pidns_of;

use std::time::{Duration, Instant};

/// Whether this process can create and remove a leaf under `<v2>/racelab`.
pub fn v2_writable() -> bool {
    probe_leaf().is_some_and(|leaf| leaf.remove(Instant::now() + Duration::from_secs(1)).is_ok())
}

/// Whether the kernel has `cgroup.kill` (Linux 5.14+): looked for in a probe leaf, or else in
/// this process's own (non-root) v2 cgroup, because the root cgroup has no cgroup.kill.
pub fn cgroup_kill_supported() -> bool {
    if let Some(leaf) = probe_leaf() {
        return leaf.path().join("cgroup.kill").exists();
    }
    let Ok(mounts) = Mounts::probe() else { return false };
    match (mounts.own_v2_dir(), mounts.own_v2.as_deref()) {
        (Some(dir), Some(own)) if own != std::path::Path::new("/") => {
            dir.join("cgroup.kill").exists()
        }
        _ => false,
    }
}

/// Whether a v1 freezer group can be created, read and removed here.
pub fn freezer_v1_usable() -> bool {
    Freezer::create("probe").is_ok_and(|f| f.state().is_ok() && f.remove().is_ok())
}

/// Removes every cgroup the processes of the pid namespace `pidns` made: thaws and removes
/// its v1 freezer groups, then kills and removes its v2 leaves under `<v2>/racelab`, waiting
/// until `deadline`. For a caller that has just SIGKILLed that namespace's init. `mounts`: as
/// probed earlier (a runner whose PID 1 has mounted its own /proc over the runner's mount
/// namespace can no longer read /proc/self).
///
/// The freezer groups go first: a frozen task cannot leave its v2 leaf (nor die) until thawed.
/// Returns how many were removed; on failures, tries all and returns the first error.
pub fn remove_cgroups_of_pidns(mounts: &Mounts, pidns: u64, deadline: Instant) -> Result<usize> {
    let freezers = remove_freezers_of_pidns(mounts, pidns);
    let leaves = match mounts.v2_base() {
        Some(base) if base.exists() => remove_leaves_of_pidns(&base, pidns, deadline),
        _ => Ok(0),
    };
    Ok(freezers? + leaves?)
}

fn probe_leaf() -> Option<Leaf> {
    let base = Mounts::probe().ok()?.v2_base()?;
    Leaf::create(&base, "probe").ok()
}
