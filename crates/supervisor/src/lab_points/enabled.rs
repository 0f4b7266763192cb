//! This build arms the lab's named points (the package was built with its `hooks` feature:
//! `racelab-supervisor-lab`, the lab's copy of these sources).

pub(crate) use racelab_hooks::{bind_thread, point};

/// Called in the spawned child before its pre-exec steps (racelab-sys' `child_hook`): the
/// window of P1, where the supervisor may die before the child's PR_SET_PDEATHSIG.
pub(crate) const CHILD_HOOK: Option<fn()> = Some(preexec_entered);

fn preexec_entered() {
    point!(preexec.entered);
}
