//! Seccomp user notification: the kernel mechanism behind the lab's "syscall points" in
//! UNMODIFIED programs (tini, dumb-init, GNU timeout, piano...). A thread of the target parks at
//! the ENTRY of a chosen syscall (say `kill` with `sig == SIGKILL`) until the lab lets it go.
//!
//! What this module is not for: deciding which points to arm or when to release them (the
//! lab's schedule does that), and security: the filter allows everything it does not notify,
//! including other architectures' syscalls.
//!
//! # The pieces
//!
//! 1. The lab describes the points as a [`Filter`] of [`Rule`]s (a syscall, [`ArgCond`]s on
//!    its arguments, an [`Action`]) and compiles it to a [`Program`] BEFORE forking: compiling
//!    allocates.
//! 2. The launcher (a child forked by the lab, possibly from a multi-threaded process) installs
//!    it right before `execve(target)` with [`install_program`], which returns the
//!    [`Listener`], and hands the listener's fd to the lab over a Unix socket
//!    ([`crate::fdpass`]). [`notify_in_child`] does both for a `std::process::Command`.
//! 3. The lab polls the listener with a deadline ([`Listener::wait`], or its fd through
//!    [`AsFd`]), receives each [`Notification`] ([`Listener::recv`]) and answers it when its
//!    schedule says so: [`Listener::continue_syscall`], [`Listener::fail_syscall`] or
//!    [`Listener::return_value`].
//!
//! ```no_run
//! use racelab_sys::fdpass::recv_fd;
//! use racelab_sys::seccomp::{self, ArgCond, Filter, Listener, ListenerEvent, Rule, Sysno};
//! use rustix::net::{AddressFamily, SocketFlags, SocketType, socketpair};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let points = Filter::new().rule(Rule::notify(Sysno::kill).when(ArgCond::eq32(1, 9)));
//! let program = points.compile()?; // before fork: allocates
//! let (lab, launcher) =
//!     socketpair(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
//! let mut cmd = std::process::Command::new("tini");
//! cmd.args(["--", "sh", "-c", "sleep 1 & kill -9 $!"]);
//! seccomp::notify_in_child(&mut cmd, program, seccomp::ParkedSignals::Interrupt, launcher);
//! let mut child = cmd.spawn()?;
//! drop(cmd);
//! let listener = Listener::from_fd(recv_fd(&lab)?); // poll `lab` first for a deadline
//! while let ListenerEvent::Pending = listener.wait(Duration::from_secs(5))? {
//!     let n = listener.recv()?; // `kill(pid, SIGKILL)` by thread n.tid, parked
//!     // ... the schedule decides when ...
//!     listener.continue_syscall(n.id)?;
//! }
//! child.wait()?;
//! # Ok(())
//! # }
//! ```
//!
//! # Between fork and exec
//!
//! The launcher may be a fresh child of a multi-threaded process, where only async-signal-safe
//! code may run (another thread may have held the allocator's lock at fork time). Allowed
//! there: [`install_program`] (`prctl` and `seccomp`, two raw syscalls on the prebuilt
//! program), [`crate::fdpass::send_fd`] (`sendmsg` on a stack buffer), dropping the
//! [`Listener`] (`close`). Not allowed: [`Filter::compile`] and [`install_listener`] (they
//! allocate). Every syscall the launcher makes after the install already runs under the
//! filter: a rule that notifies `sendmsg` would park the launcher before the lab holds the
//! listener, for good.
//!
//! # What a notification says
//!
//! [`Notification::tid`] is the parked THREAD's id in the PID namespace of the thread that
//! called [`Listener::recv`] (0 if the target is invisible from there), whatever namespace the
//! target runs in. `/proc/<tid>/syscall` then shows the syscall and its arguments and
//! `/proc/<tid>/wchan` shows `seccomp_do_user_notification` (with a compiler suffix such as
//! `.isra.0`); the thread's state is `S` (`D` once received under
//! [`ParkedSignals::DeferUntilAnswered`]). A parked thread cannot be
//! reaped, so the tid names it for as long as [`Listener::id_valid`] holds: to get a pidfd for
//! it, `pidfd_open(tid)` first, then check `id_valid(id)`; if still valid, the pidfd names the
//! parked thread (the usual seccomp TOCTOU pattern). A tid that is not its process's pid needs
//! `PIDFD_THREAD` (Linux 6.9+).
//!
//! # Signals to a parked thread: [`ParkedSignals`]
//!
//! Observed on Linux 6.18, each pinned by a test of tests/seccomp.rs:
//! - [`ParkedSignals::Interrupt`] (the kernel default): a signal with a handler interrupts the
//!   wait at once: the notification is withdrawn (its id becomes invalid, answering it is
//!   [`NotifyError::Gone`]), the handler runs, and with `SA_RESTART` the syscall restarts and
//!   notifies AGAIN with a new id and the same tid; without `SA_RESTART` it fails with `EINTR`
//!   (even `kill`, which never does otherwise). `SIGSTOP` withdraws the notification too and
//!   stops the thread (`T`); `SIGCONT` restarts the syscall, which notifies again. So a signal
//!   the lab delivers to a parked target runs its handler before the parked syscall, and the
//!   lab sees the point twice.
//! - [`ParkedSignals::DeferUntilAnswered`] (`SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`): once
//!   the lab has RECEIVED the notification, a non-fatal signal stays pending (`ShdPnd` in
//!   `/proc/<pid>/status`, thread state `D`), the id stays valid, no handler runs; when the
//!   lab answers, the syscall completes and the handler runs on the way back to user space.
//!   `SIGSTOP` waits as well: the thread stops right after the answer, the syscall done.
//!   Before [`Listener::recv`] the wait is still interruptible, exactly as above. A fatal
//!   signal (SIGKILL, or one whose default action kills, such as an unhandled SIGTERM) ends
//!   the wait in both modes.
//!
//! Which one the lab wants depends on the race: `DeferUntilAnswered` keeps "thread parked at
//! `kill`" and "signal handled" as two separate steps the schedule orders; `Interrupt` is what
//! an unfiltered program would see if the signal came while it was blocked in the kernel.
//!
//! # Death of a target, end of all targets, end of the lab
//!
//! - A parked thread that dies withdraws its notification: every answer is then
//!   [`NotifyError::Gone`] and [`Listener::id_valid`] is false. Guaranteed once the death is
//!   observed (pidfd readable); an answer that races the death may still succeed, harmlessly.
//! - The listener reports `POLLHUP` ([`ListenerEvent::AllTargetsGone`]) when the last task
//!   running the filter EXITS: since Linux 6.11 the filter is released in `do_exit`, before
//!   the exit becomes visible on the pidfd, so the zombie is not waited for (before 6.11: when
//!   it was reaped). Pinned by a test.
//! - Dropping the [`Listener`] makes every parked syscall, and every later one the filter
//!   would notify, fail with `ENOSYS`: the targets run on, with errors.
//! - Installing fails with `EBUSY` when the thread already runs a filter with a listener (a
//!   lab nested under another seccomp supervisor).
//!
//! # Which syscall creates a process (Debian 12: glibc 2.36, Rust 1.95, x86-64)
//!
//! The lab's `spawn` points must match reality. Observed through a filter on `clone`,
//! `clone3`, `fork` and `vfork` (tests/seccomp.rs pins std's spawn, `posix_spawn`, `fork()`
//! and threads) and with strace (the rest):
//!
//! | caller | syscall |
//! | --- | --- |
//! | Rust `std::process::Command::spawn` | `clone3` (glibc `posix_spawn`) |
//! | glibc `posix_spawn`, `system` | `clone3(CLONE_VM \| CLONE_VFORK)` |
//! | glibc `fork()` (tini, dumb-init) | `clone(CLONE_CHILD_SETTID \| CLONE_CHILD_CLEARTID \| SIGCHLD)` |
//! | `pthread_create`, `std::thread::spawn` | `clone3` (with `CLONE_THREAD`) |
//! | glibc `vfork()` (dash runs commands this way) | `vfork` (strace) |
//!
//! `clone3` passes its flags in memory, out of a BPF filter's reach, so a rule cannot tell a
//! process from a thread there. The trick: `Rule::errno(Sysno::clone3, Errno::ENOSYS)` makes
//! glibc fall back to `clone` (it does so on `ENOSYS` for `posix_spawn` and `pthread_create`),
//! whose flags are a register: `Rule::notify(Sysno::clone).when(ArgCond::masked_eq(0,
//! CLONE_THREAD, 0))` then parks process creation only (`posix_spawn` and std's spawn arrive
//! as `clone(CLONE_VM | CLONE_VFORK | SIGCHLD)`), and threads start unparked. Pinned by a
//! test. A program that calls `clone3` itself with no fallback would fail to spawn under it.
//!
//! # Cost for syscalls without a rule
//!
//! None measurable: the kernel emulates the program for every syscall number at install time
//! (Linux 5.11+) and marks those whose path reads only `arch` and `nr`, which is every syscall
//! without a rule in the programs compiled here, as always-allowed: they skip the BPF run.
//! Measured (release build, `getppid` in a loop, the ignored test
//! `cost_of_a_syscall_without_rule_is_the_kernels_cache_lookup`): ~95 ns per call without a
//! filter and under a 10-rule filter alike, ~125 ns when a rule on `getppid`'s argument forces
//! the BPF run. A syscall with a rule runs the program (a few dozen instructions).
//!
//! # A pidfd reports the reap of a process that is not our child
//!
//! The lab needs to know when the target reaped ITS child (from then on the PID may be
//! recycled) without polling /proc. Observed on Linux 6.18 (tests/pidfd_reap.rs): a pidfd of
//! a grandchild reports `POLLIN` when it exits (a zombie), then `POLLIN | POLLHUP` once its
//! parent has reaped it, and the reap WAKES pollers: an epoll registered for `EPOLLHUP` alone
//! (or a `poll` with no requested events, which `POLLIN` does not wake) returns exactly at the
//! reap. The pidfd itself must be opened while the PID still names the process: for a target
//! parked at a point, while its notification id is valid (see above).

mod filter;
mod listener;

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

pub use filter::{Action, ArgCond, Filter, FilterError, NATIVE_AUDIT_ARCH, Program, Rule};
pub use listener::{
    InstallError, Listener, ListenerEvent, NotifId, Notification, NotifyError, ParkedSignals,
    install_listener, install_program,
};
pub use syscalls::Sysno;

/// Arms `cmd` so that its child, between `fork` and `execve`, installs `program` (see
/// [`install_program`]) and sends the listener over `socket` with [`crate::fdpass::send_fd`];
/// the lab receives it from the other end with [`crate::fdpass::recv_fd`]. The child's own copy
/// of the listener is closed before `execve`, so the target never holds it.
///
/// `socket` is the launcher's end of a `socketpair` (close-on-exec, so the target does not
/// inherit it either). Drop `cmd` after `spawn`: until then this process keeps that end open,
/// and a launcher that dies before sending would not show as end-of-stream to the lab.
///
/// Everything the child runs here is allocation-free and async-signal-safe, so the parent may
/// be multi-threaded. The child's remaining syscalls (`sendmsg`, `close`, then std's `execve`)
/// already run under the filter: a rule that notifies `sendmsg` would park the launcher before
/// the lab holds the listener, for good. A failure (`EBUSY`, `EINVAL`...) makes `spawn` fail
/// with that error.
pub fn notify_in_child(
    cmd: &mut Command,
    program: Program,
    signals: ParkedSignals,
    socket: OwnedFd,
) {
    let arm = move || -> std::io::Result<()> {
        let listener = install_program(&program, signals)?;
        crate::fdpass::send_fd(&socket, listener.as_fd())
        // `listener` is closed here, before std's execve.
    };
    // SAFETY: the closure makes only raw syscalls (prctl, seccomp, sendmsg, close) on memory
    // prepared before fork (`program`, `socket`), allocates nothing and takes no lock: it is
    // async-signal-safe, as required in the child of a possibly multi-threaded parent.
    unsafe { cmd.pre_exec(arm) };
}
