//! This build has no hook code: a point only checks its name at compile time.
//!
//! The switch is this package's own `hooks` feature, not racelab-hooks' one: a workspace build
//! turns racelab-hooks' feature on for the lab's crates, and feature unification would otherwise
//! arm the points of every supervisor compiled in the same build, `supervise` included.

/// `point!(actor.window)`: checks that the point exists and emits no code.
macro_rules! point {
    ($actor:ident . $window:ident) => {{
        const _: () = {
            let _ = &racelab_hooks::points::$actor::$window;
        };
    }};
}
pub(crate) use point;

/// Nothing to bind: no controller is ever armed in this build.
pub(crate) fn bind_thread(_actors: &[&'static str]) {}

/// No hook in the spawned child: this build has no points.
pub(crate) const CHILD_HOOK: Option<fn()> = None;
