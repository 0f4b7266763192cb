//! The runner's side of an interrupt: SIGINT, SIGTERM and SIGHUP, blocked and read from a
//! signalfd that the runner polls beside PID 1 and its pipes (see [`crate::interrupt`] for the
//! whole chain).
//!
//! Why a signalfd and not a handler: the runner forks PID 1, and a handler would be inherited
//! by it; a namespace's init that has a handler receives the signal from the ancestor
//! namespaces too (without one it is immune), so a Ctrl-C to the process group would reach
//! into the lab's own PID 1. Blocked signals are also never discarded as ignored (an inherited
//! `SIG_IGN`, as a non-interactive shell gives `cmd &`, would otherwise swallow SIGINT), so the
//! signalfd sees them whatever the disposition. PID 1 unblocks everything first thing
//! ([`unblock_all`]): nothing of the runner's mask reaches the replay.

use std::os::fd::{AsFd, BorrowedFd};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// The signals that end a run early (the process exits `128 + signal` once it cleaned up).
pub(crate) const STOP_SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// The stop signals as a set.
fn stop_set() -> SigSet {
    let mut set = SigSet::empty();
    for s in STOP_SIGNALS {
        set.add(s);
    }
    set
}

/// A runner's stop signals: blocked, pending ones read from a nonblocking signalfd.
#[derive(Debug)]
pub(crate) struct Stop {
    fd: SignalFd,
}

impl Stop {
    /// Blocks the stop signals (exactly them: a caller's other blocked signals are unblocked)
    /// and opens the signalfd that reads them. A stop signal sent earlier and still pending is
    /// read too.
    pub(crate) fn new() -> Result<Stop, String> {
        let set = stop_set();
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&set), None)
            .map_err(|e| format!("sigprocmask: {e}"))?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| format!("signalfd: {e}"))?;
        Ok(Stop { fd })
    }

    /// The fd to poll: readable while a stop signal is pending.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The number of a pending stop signal, consumed; `None` when none is pending.
    pub(crate) fn pending(&self) -> Option<i32> {
        match self.fd.read_signal() {
            Ok(Some(info)) => i32::try_from(info.ssi_signo).ok(),
            _ => None,
        }
    }
}

/// The exit code of a process that ended because of signal `signo` (the shells' convention).
pub(crate) fn exit_code(signo: i32) -> i32 {
    128 + signo
}

/// Unblocks every signal: the first step of PID 1, which starts with the runner's mask.
pub(crate) fn unblock_all() -> Result<(), String> {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|e| format!("sigprocmask: {e}"))
}
