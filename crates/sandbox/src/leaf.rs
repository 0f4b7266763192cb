//! The cgroup v2 leaf of a sandbox run, and the removal of leaves whose runner died. Below both
//! the runner (which creates a run's leaf) and the caller (which collects stale ones).

/// Creates this run's cgroup v2 leaf `<v2>/racelab/run.<owner>`, after removing leaves whose
/// owner runner died (SIGKILLed runners cannot clean up).
pub(crate) fn create_leaf() -> Result<racelab_cgroup::Leaf, String> {
    let mounts = racelab_cgroup::Mounts::probe().map_err(|e| format!("cgroup mounts: {e}"))?;
    let base = mounts.v2_base().ok_or("cgroup requested but no cgroup v2 hierarchy is mounted")?;
    if base.exists() {
        let _ = racelab_cgroup::gc_stale(&base);
    }
    racelab_cgroup::Leaf::create(&base, "run").map_err(|e| format!("cgroup leaf: {e}"))
}

/// Removes what runners that died left in the cgroup hierarchies (best effort): their v2
/// leaves, the v1 freezer groups of replays whose init was SIGKILLed with a task frozen (that
/// task would stay in D state, and the init stuck in its exit, until thawed), and the v2 leaves
/// made by processes of a replay whose namespace has ended since (thawed first). Returns how
/// many were removed.
///
/// For a front end (the caller of [`crate::run`], [`crate::Server`]), whose /proc shows every
/// replay's namespace: never from inside a replay (see [`racelab_cgroup::gc_ended_namespaces`]).
pub fn gc_stale_leaves() -> usize {
    let freezers = racelab_cgroup::gc_stale_freezers().unwrap_or(0);
    let Some(base) = racelab_cgroup::Mounts::probe().ok().and_then(|m| m.v2_base()) else {
        return freezers;
    };
    if !base.exists() {
        return freezers;
    }
    freezers
        + racelab_cgroup::gc_stale(&base).unwrap_or(0)
        + racelab_cgroup::gc_ended_namespaces(&base).unwrap_or(0)
}
