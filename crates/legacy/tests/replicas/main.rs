//! Happy-path behaviour of every legacy replica on real processes, each run in its own
//! wrapper process (replicas own process-wide state). No schedule is armed here.

mod common;

/// rvos' qemu-lock.sh, before and after d32fae6.
mod exec_under_lock;
/// piano before the fix (global atomics, three threads, a SIGINT handler).
mod global_atomics;
/// The next five: st2's pre-exec pdeathsig, a spawner thread, bazel's group kill, OpenRC's
/// reaping handler, CPython's unbounded drain (happy paths outside their windows).
mod next_five;
/// What both piano replicas do alike, run from `global_atomics` and `polling_fix`.
mod piano;
/// piano after the fix (single-threaded 10 ms polling loop).
mod polling_fix;
/// The PID 1 reapers: one reap per SIGCHLD, and waitpid(-1) beside a waiter.
mod reapers;
/// buildah's SIGKILL-then-poll loop.
mod unbounded_poll;
/// Race windows held open by a schedule armed in the wrapper (needs the `hooks` feature).
#[cfg(feature = "hooks")]
mod windows;
