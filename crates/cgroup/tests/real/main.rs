//! racelab-cgroup on real processes, cgroups and signals. Root-only parts skip with a reason
//! (a failure under RACELAB_STRICT=1).

mod common;
/// The v1 freezer: a frozen task survives SIGKILL until thawed.
mod freezer;
/// Garbage collection of leaves whose owner died.
mod gc;
/// Leaves: moving processes in, cgroup.kill, kill by walk, removal, errors.
mod leaf;
