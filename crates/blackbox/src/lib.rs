//! racelab-blackbox: points at syscall boundaries of programs the lab did not build.
//!
//! What it is for: replaying a race schedule against an unmodified binary (the published
//! `piano`, tini, dumb-init, catatonit, GNU timeout, `supervise`). A schedule names syscall
//! points (`piano.kill(SIGKILL)`, `tini.setpgid`, `piano.kill(SIGKILL).returned < piano.exit_group`,
//! see `racelab_hooks::syscall_point`); the lab's launcher installs a seccomp filter that
//! notifies exactly those syscalls (plus, when the schedule waits for a return, the probes that
//! show a thread came back) right before `execve`, and hands the listener to the lab. Every
//! notification goes through the [`Engine`], which decides when the parked thread may go on and
//! which lab actions run meanwhile; the [`Session`] does the I/O.
//!
//! Why seccomp user notification and not ptrace: a seccomp filter costs nothing for the
//! syscalls it does not name (the kernel caches "always allow" per syscall number), it needs no
//! privilege (`PR_SET_NO_NEW_PRIVS` is enough), it does not change how signals reach the target
//! (ptrace turns every signal into a stop the tracer must re-inject) and it is not exclusive (a
//! target may still be debugged). Its limit: it sees only syscall ENTRIES. A window that opens
//! and closes between two syscalls of one thread with no syscall inside (piano's Q3: a load and
//! a store; GNU timeout 9.1's store of the forked PID) needs a breakpoint or a syscall-exit stop,
//! which is ptrace's domain; the lab reports such cells as not applicable, with that reason.
//!
//! Signals and parked threads: the filter is installed with `WAIT_KILLABLE_RECV`
//! (`ParkedSignals::DeferUntilAnswered`): once the lab holds a notification, a signal it sends
//! to the target stays pending until the syscall is let go, then is handled on the way back to
//! user space, exactly as a signal that arrived while the thread was in the kernel. Without it,
//! a handler would interrupt the park and restart (or fail with EINTR) a syscall that never
//! fails that way natively.
//!
//! What it is not for: security. The filter allows everything it does not notify.

#![forbid(unsafe_code)]

pub mod engine;
pub mod filter;
pub mod locate;
pub mod session;
pub mod trace;

pub use engine::{Arrival, Decision, Engine, EngineError, NotifId, Site};
pub use filter::{PROBES, filter_for};
pub use locate::{Executable, LocateError, Located, locate};
pub use session::{ActionRequest, PARKED, SentSignal, Session, program_label};
pub use trace::{TraceError, TraceEvent, Tracer};
