//! Seccomp user notification: the kernel mechanism behind the lab's "syscall points" in
//! UNMODIFIED programs (tini, dumb-init, GNU timeout, piano...). A thread of the target parks at
//! the ENTRY of a chosen syscall (say `kill` with `sig == SIGKILL`) until the lab lets it go.
//!
//! FACTS_PLACEHOLDER

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
