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
//! and closes between two syscalls of one thread with no syscall inside needs ptrace: see
//! below.
//!
//! # ptrace points: held syscall exits and instructions
//!
//! Two kinds of points hold a thread where seccomp cannot, and only they make the lab trace a
//! program ([`Engine::needs_ptrace`]; a schedule without them never traces):
//! - `program.syscall.exit`: the syscall ran, the thread has not returned to user space. GNU
//!   timeout 9.1's early signal (`on timeout.clone.exit: terminate(target)`): the SIGTERM is
//!   handled on the way back from `clone`, before `monitored_pid = fork()` stores the PID, so
//!   timeout `_exit`s 143 and orphans its child. At the ENTRY that cannot happen: a signal
//!   pending when `clone` starts makes it fail with `ERESTARTNOINTR` and restart.
//! - `program@0x19319c` or `program@store(global, within)`: an instruction (see
//!   `racelab_hooks::code_point` and [`locate()`]). piano 0.14.0's Q3: its duration thread held at
//!   the `FORCE_KILLED` store while main reaps and classifies.
//!
//! How ([`Tracer`], wired into the [`Session`] with [`Session::traced`]): the launcher waits at
//! a gate (`racelab_sys::ptrace::gate`) before it installs the filter; init seizes it
//! (`PTRACE_SEIZE` with `TRACECLONE` (threads), `TRACEEXEC`, `TRACESYSGOOD` and `EXITKILL`: a
//! lab that dies takes the program with it), opens the gate, receives the listener as before.
//! At the program's `execve` stop the code points are located in its executable and armed
//! (`int3`); with `.exit` points the program's threads are resumed with `PTRACE_SYSCALL`. Every
//! stop comes as a SIGCHLD, read from a signalfd the caller polls next to the listener
//! ([`Session::trace_fd`]); the session then asks each tracee `waitid(WNOHANG)`. Forks are not
//! followed (no `TRACEFORK`/`TRACEVFORK`): a child is not traced and never sees a breakpoint.
//!
//! Which combination of seccomp and ptrace holds an exit, on Linux 6.18 (tests/ptrace.rs):
//! - WORKS: the thread in `PTRACE_SYSCALL` mode stops at the syscall's entry (before seccomp:
//!   the tracer lets it go), is notified by the filter if the schedule names the entry (held
//!   there as usual), and stops again at the exit, after the syscall did its work: that
//!   syscall-exit stop is the `.exit` point. A signal sent while it is held there stays pending
//!   and is delivered (signal-delivery-stop, re-injected) right after the release, before the
//!   next user instruction (`a_notified_entry_and_a_held_exit_of_the_same_syscall_combine`,
//!   `gnu_timeout_leaves_its_child_orphaned_at_every_replay`: 20/20).
//! - DOES NOT: asking for a stop while the thread is parked in the notification.
//!   `PTRACE_INTERRUPT` does not wake a notification received under `WAIT_KILLABLE_RECV`; once
//!   the notification is continued, the pending trap counts as a pending signal, so `clone`
//!   fails with `ERESTARTNOINTR` before creating a child, the thread stops for the interrupt
//!   and the `clone` restarts and is notified a second time
//!   (`an_interrupt_while_parked_restarts_the_clone`). A blocking syscall would likewise return
//!   early. `PTRACE_SYSCALL` cannot be issued then either: the thread is not in a ptrace stop.
//!   `SECCOMP_RET_TRACE` would give a seccomp stop to resume with `PTRACE_SYSCALL`, but an
//!   untraced descendant under the same filter would get `ENOSYS` for that syscall.
//!
//! What the program sees: nothing new when no point is hit. Each signal becomes a
//! signal-delivery-stop the tracer answers by re-injecting the same signal (real-time ones too);
//! a group-stop is left stopped with `PTRACE_LISTEN` until SIGCONT; a syscall stop resumes.
//! Pinned by `a_traced_program_with_no_hit_sees_its_signals_as_untraced` (handled signals,
//! SIGSTOP then SIGCONT, death by SIGRTMIN+3: same lines and status traced and untraced).
//!
//! Cost (tests/ptrace.rs `signal_latency_traced_vs_untraced`, 2 shared cores, medians): a
//! signal from `pidfd_send_signal` to the target's handler output takes about 3.5 µs untraced
//! and 8-10.5 µs traced (the stop, the lab's wake-up, the re-injection). A syscall costs the
//! same traced for code points only (67 ns for `getppid`: no syscall stop); with an `.exit`
//! point every syscall of the program stops twice and costs about 10 µs. Breakpoints cost
//! nothing until hit.
//!
//! Limits: code points are x86-64 only (the `int3` byte, `rip`, the decoder); a program that is
//! already traced (a debugger, `strace`) or traces itself cannot be seized (`EPERM`), and one
//! that calls `ptrace(PTRACE_TRACEME)` fails; a thread that passes a breakpoint's address while
//! another one is single-stepped over it (the `int3` lifted for that one instruction) is not
//! seen; a signal arriving during that step runs its handler before the instruction; a store
//! through a pointer is not located (name the address); a binary without symbols cannot be
//! searched; an untraced `CLONE_VM` child (a `vfork` child before its `execve`) shares the
//! armed code and would die of SIGTRAP if it ran a breakpoint (piano's `posix_spawn` child runs
//! only glibc code there). Unprivileged, tracing works inside a user namespace where the lab's
//! init is root and the program its descendant (the tests pass as uid 65534 under
//! `unshare -Ur --pid`).
//!
//! Where seccomp cannot hold a window and ptrace is not wanted (a program traced by a
//! debugger), the lab reports such cells as not applicable, with that reason.
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
mod image;
pub mod locate;
pub mod session;
pub mod trace;

pub use engine::{Arrival, Decision, Engine, EngineError, NotifId, Site};
pub use filter::{PROBES, filter_for};
pub use image::program_label;
pub use locate::{Executable, LocateError, Located, locate};
pub use session::{ActionRequest, PARKED, SentSignal, Session};
pub use trace::{TraceError, TraceEvent, Tracer};
