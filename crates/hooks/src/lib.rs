//! racelab-hooks: named barrier points, schedules, a controller and traces.
//!
//! (Tutorial to be written: the idea, marking points, writing a schedule, reading a stuck
//! report, limitations.)

pub mod points;
pub use points::Point;

/// True when this build was compiled with the `hooks` feature: points are live.
pub const ENABLED: bool = cfg!(feature = "hooks");

/// Marks a named point: `point!(escalation.pid_loaded)`.
///
/// With the `hooks` feature, the calling thread asks the armed controller whether to pass, park
/// or run a lab action first. Without it, the macro expands to nothing (the name is still checked
/// at compile time, in a `const` context that emits no code).
#[cfg(feature = "hooks")]
#[macro_export]
macro_rules! point {
    ($actor:ident . $window:ident) => {
        $crate::hit(&$crate::points::$actor::$window)
    };
}

/// Marks a named point: `point!(escalation.pid_loaded)`. This build has no `hooks` feature:
/// the point compiles to nothing.
#[cfg(not(feature = "hooks"))]
#[macro_export]
macro_rules! point {
    ($actor:ident . $window:ident) => {{
        const _: () = {
            let _ = &$crate::points::$actor::$window;
        };
    }};
}

/// Called by `point!` when hooks are enabled. (Stub: the controller fills this in.)
#[cfg(feature = "hooks")]
#[doc(hidden)]
pub fn hit(_point: &'static Point) {}
