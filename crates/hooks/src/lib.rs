//! racelab-hooks: named barrier points, schedules, a controller and traces — how the lab forces
//! one interleaving of a race, on purpose, every time.
//!
//! What it is for: making a racy window in real code (a supervisor, a legacy replica) open and
//! close in the order a test chooses, and recording what happened. What it is not for: finding
//! interleavings (loom and the lab's exploration do that), or synchronising production code —
//! without the `hooks` feature every point compiles to nothing.
//!
//! # The idea
//!
//! A race is two threads (or a thread and a signal handler, or two processes) reaching two
//! places in an order nobody controls. We name those places — *points* — and mark them in the
//! code. A *schedule* then says "the thread arriving at `main.reaped` waits until
//! `escalation.pid_loaded` has been passed", and "on `main.reaped`, recycle the child's PID".
//! The *controller* enforces the schedule while it is *armed*; the *trace* records who arrived,
//! parked, ran an action and passed where, in monotonic time.
//!
//! # Marking points
//!
//! Points are declared once, in [`points`] (one line each, with a doc saying where the window
//! is). Code marks a point with [`point!`]:
//!
//! ```
//! fn reap_child() {
//!     // ... waitpid returned ...
//!     racelab_hooks::point!(main.reaped);
//! }
//! # reap_child();
//! ```
//!
//! `point!(main.reaepd)` does not compile: the macro resolves the name to the constant
//! `points::main::reaepd`, which does not exist. Without the `hooks` feature the macro expands to
//! an empty block (the name is still checked, in a `const` item that emits no code) and
//! [`ENABLED`] is `false`; a point may then even sit in a `const fn`.
//!
//! Each point belongs to an *actor*: the part of its name before the dot. In a design with one
//! thread per actor nothing more is needed. A thread that plays several actors (an event loop)
//! says so with [`bind_thread`]; see "Limitations".
//!
//! # Writing a schedule
//!
//! A schedule is plain data ([`Schedule`]) with a text form a person can write. Items are
//! separated by `;` or newlines, `#` starts a comment:
//!
//! ```text
//! # Q1: the escalation kills a PID that main has already reaped and the kernel reused.
//! escalation.pid_loaded < main.reaped          # main reaps only after the PID was loaded
//! on main.reaped: recycle(child)               # the lab recycles the PID right there
//! main.reaped < escalation.before_kill         # and only then the escalation goes on
//! poll.iteration#3 < duration.expired          # the 3rd pass of a point (default #1)
//! main.spawned < main.pid_stored < main.reaped # a chain: two edges
//! on main.spawned: freeze(10ms), signal(child, SIGTERM)
//! ```
//!
//! `a < b` means: the thread arriving at (the first occurrence of) `b` waits until `a` has been
//! passed once. `a#2 < b#3`: the third arrival at `b` waits for the second pass of `a`; other
//! arrivals at `b` do not wait. `on a: act(arg, ...)`: the thread arriving at `a`, once `a`'s
//! edges are met, runs the caller's actions in the written order before `a` counts as passed;
//! arguments are identifiers, integers or durations (`7ns`, `500us`, `10ms`, `2s`). A `#`
//! directly after a point name is an occurrence, anywhere else a comment.
//!
//! Black-box programs have their own points (the lab's black-box runner enforces them, the
//! controller refuses them): syscall points `program.syscall(args)` at a syscall's entry,
//! `.exit` (held after the syscall ran) or `.returned` (waited for), see [`syscall_point`];
//! and code points `program@0x...` / `program@store(global, function)` at an instruction,
//! see [`code_point`].
//!
//! `Schedule::to_string()` prints the canonical form (items joined by `; `, `#1` omitted) and
//! `Schedule::parse(&s.to_string()) == Ok(s)`. A misspelt point is
//! [`HookError::UnknownPoint`], whose message lists every known point; a syntax error is a
//! [`ParseError`] with line, column, what was expected and what was found.
//!
//! ```
//! use racelab_hooks::{Schedule, HookError};
//! let s = Schedule::parse("escalation.pid_loaded < main.reaped; on main.reaped: recycle(child)")?;
//! assert_eq!(Schedule::parse(&s.to_string())?, s);
//! assert!(matches!(Schedule::parse("main.reaepd < main.spawned"), Err(HookError::UnknownPoint { .. })));
//! # Ok::<(), HookError>(())
//! ```
//!
//! # Arming the controller
//!
//! With the `hooks` feature, [`arm`] installs a schedule and the caller's [`Actions`] (anything
//! `Fn(&Action, &'static Point) -> Result<(), String>`), with [`ArmOptions`]: the deadline of
//! every wait and the trace capacity. One controller per process is armed at a time.
//! [`Armed::finish`] disarms, releases anyone still parked, and returns a [`RunReport`]: the
//! trace, a stuck report if any, the edges not enforced and the actions that failed.
//!
//! ```
//! # #[cfg(feature = "hooks")] fn main() {
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use racelab_hooks::{arm, point, ArmOptions, NoActions, Schedule};
//!
//! static FORCE_KILLED: AtomicBool = AtomicBool::new(false);
//! // Force "the classifier reads the flag before the escalation sets it".
//! let schedule = Schedule::parse("main.classified < escalation.before_force_flag").unwrap();
//! let armed = arm(schedule, Arc::new(NoActions), ArmOptions::default()).unwrap();
//! let escalation = std::thread::spawn(|| {
//!     point!(escalation.before_force_flag); // parks until main.classified passed
//!     FORCE_KILLED.store(true, Ordering::Relaxed);
//! });
//! let seen = FORCE_KILLED.load(Ordering::Relaxed);
//! point!(main.classified);
//! escalation.join().unwrap();
//! let report = armed.finish();
//! assert!(!seen && report.is_clean(), "{report}");
//! println!("{}", report.trace.to_mermaid());
//! # }
//! # #[cfg(not(feature = "hooks"))] fn main() {}
//! ```
//!
//! A thread arriving at a point while armed records `arrive`, waits (futex on one epoch word,
//! re-checking, never longer than the deadline) until every edge into this occurrence is met,
//! runs the point's actions, counts the pass, wakes the waiters and records `pass`. Unarmed, a
//! point costs one atomic load (see the crate README for measured figures). Parking uses only
//! atomics and the futex syscall — no allocation, no lock — so a point may sit in a signal
//! handler. [`Armed::wait_parked`] and [`Armed::wait_passed`] let a lab wait (with a timeout)
//! until a thread sits in a window. [`note`] adds the lab's own events to the trace, and
//! [`Trace::merge`] interleaves the (JSON-serialized) traces of several processes by time.
//!
//! # Reading a stuck report
//!
//! Every wait has the deadline of [`ArmOptions::deadline`]. When one passes, the run is
//! *stuck*: the controller snapshots who was parked where, abandons the schedule (every point
//! from then on passes at once and records `abandoned`) so the process can finish, and
//! `finish` returns a [`StuckReport`] in [`RunReport::stuck`]. Printed, it reads:
//!
//! ```text
//! STUCK: thread 4242 waited 200 ms at main.reaped and the schedule was not met
//! schedule: escalation.pid_loaded < main.reaped
//! parked threads:
//!   tid 4242 (main) at main.reaped waiting for: escalation.pid_loaded < main.reaped
//! unmet edges:
//!   escalation.pid_loaded < main.reaped
//! trace so far:
//!        0.000us     4240/4242    main         arrive        main.reaped
//!        1.250us     4240/4242    main         park          main.reaped  escalation.pid_loaded < main.reaped
//!   200081.113us     4240/4242    main         STUCK         main.reaped  deadline of 200 ms passed
//! ```
//!
//! Read it as: which thread (tid and actor) sits at which point, which edges it still waits
//! for, which edges of the schedule were never met (the schedule position), and what every
//! thread did before. Usually the earlier point was never reached: the design took another path,
//! or the point sits on the same thread (see below). Threads still parked when `finish` is
//! called also make a stuck report ([`StuckReason::FinishedWhileParked`]). An edge whose later
//! point was never reached parks nobody and is listed in [`RunReport::unmet_edges`] instead.
//!
//! # Limitations
//!
//! - One armed controller per process; points in another process obey that process's
//!   controller (the lab arms one in each and merges traces).
//! - A thread cannot wait for itself. When the earlier point of an edge belongs to an actor
//!   [`bind_thread`] bound to the very thread arriving at the later point, the edge is
//!   *unrealizable*: the thread passes at once, the trace says so and the report lists it in
//!   `unmet_edges` (deterministic, no timeout). Unbound actors always wait, with the deadline.
//! - `a#k` is met after `k` passes of `a` by any thread, counted in pass order.
//! - Actions run on the arriving thread and are ordinary code: an action attached to a point
//!   inside a signal handler must itself be async-signal-safe (the controller also takes a lock
//!   to find the actions of such a point). Points without actions never lock or allocate.
//! - At most [`MAX_EDGES`] edges per schedule and [`MAX_PARKED`] threads listed as parked; the
//!   trace keeps the newest `trace_capacity` records and counts the dropped ones.
//! - The controller's own synchronisation is checked by a loom model:
//!   `RUSTFLAGS="--cfg loom" cargo test -p racelab-hooks --features hooks --release --lib loom`.

pub mod code_point;
pub mod points;
pub use points::Point;

mod error;
mod parse;
mod report;
mod schedule;
pub mod syscall_point;
mod trace;

pub use code_point::{CodePoint, CodeSite};
pub use error::{HookError, ParseError};
pub use report::{
    ActionError, ParkedThread, RunReport, StuckReason, StuckReport, UnmetEdge, UnmetReason,
};
pub use schedule::{
    Action, Actions, Arg, At, Edge, MAX_EDGES, NoActions, PointRef, Schedule, Step,
};
pub use syscall_point::{ArgMatch, Moment, SyscallPoint, Sysno};
pub use trace::{Event, EventKind, Trace};

#[cfg(feature = "hooks")]
mod collect;
#[cfg(feature = "hooks")]
mod controller;
#[cfg(feature = "hooks")]
mod ring;
#[cfg(feature = "hooks")]
mod run;
#[cfg(feature = "hooks")]
mod state;
#[cfg(feature = "hooks")]
mod sync;
#[cfg(feature = "hooks")]
pub use controller::{ArmOptions, Armed, MAX_PARKED, MAX_TRACE, arm, bind_thread, hit, note};

#[cfg(not(feature = "hooks"))]
mod disabled;
#[cfg(not(feature = "hooks"))]
pub use disabled::{bind_thread, note};

#[cfg(all(test, loom, feature = "hooks"))]
mod loom_model;

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

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(not(feature = "hooks"))]
    fn without_the_feature_points_are_compiled_out() {
        const fn a_point_in_a_const_fn() {
            // Only an empty expansion can sit in a const fn: `hit` is not const.
            crate::point!(main.spawned);
        }
        a_point_in_a_const_fn();
        const { assert!(!crate::ENABLED) };
        crate::bind_thread(&["main"]);
        crate::note("lab", "ignored".into());
    }

    #[test]
    #[cfg(feature = "hooks")]
    fn with_the_feature_points_are_live() {
        const { assert!(crate::ENABLED) };
    }
}
