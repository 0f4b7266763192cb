//! Handles on processes the sandbox's PID 1 created: [`Child`] (any forked closure) and
//! [`Fate`], what the kernel says became of one.
//!
//! A child is observed through its pidfd: `poll` says it ended, `waitid(P_PIDFD)` collects the
//! status. Never by pid: a pid is only a name until the child is reaped, and this lab exists
//! to recycle pids.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::{WaitId, WaitIdOptions, WaitIdStatus};
use serde::{Deserialize, Serialize};

use crate::error::SandboxError;

/// How long a [`Child`]'s drop waits for a SIGKILLed child to end before giving up.
pub(crate) const DROP_GRACE: Duration = Duration::from_secs(2);

/// The pids PID 1 holds a handle on: the reaper of last resort leaves them alone, so their
/// owners can still collect their status by pidfd.
pub(crate) type Owned = Rc<RefCell<BTreeSet<i32>>>;

/// What became of a process, from the kernel's wait status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fate", rename_all = "snake_case")]
pub enum Fate {
    /// Still running (or stopped) when last looked at.
    Alive,
    /// Exited with this code.
    Exited {
        /// The exit code (0-255).
        code: i32,
    },
    /// Killed by this signal.
    Killed {
        /// The signal number.
        signal: i32,
    },
}

impl Fate {
    fn from_status(status: &WaitIdStatus) -> Fate {
        match (status.exit_status(), status.terminating_signal()) {
            (Some(code), _) => Fate::Exited { code },
            (None, Some(signal)) => Fate::Killed { signal },
            // Neither: a stop/continue notice, which WEXITED alone never returns.
            (None, None) => Fate::Alive,
        }
    }
}

/// Waits until `fd` is readable or `timeout` passes; true when readable.
pub(crate) fn poll_readable(fd: BorrowedFd<'_>, timeout: Duration) -> std::io::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ts = Timespec::try_from(left).unwrap_or(Timespec { tv_sec: i64::MAX, tv_nsec: 0 });
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Collects the exit status behind `pidfd` without blocking; `Ok(None)` while it runs.
pub(crate) fn try_reap(pidfd: BorrowedFd<'_>) -> std::io::Result<Option<Fate>> {
    let opts = WaitIdOptions::EXITED | WaitIdOptions::NOHANG;
    match rustix::process::waitid(WaitId::PidFd(pidfd), opts)? {
        Some(status) => Ok(Some(Fate::from_status(&status))),
        None => Ok(None),
    }
}

/// Converts a nix signal to rustix's, for `pidfd_send_signal`.
pub(crate) fn rustix_signal(sig: Signal) -> rustix::process::Signal {
    rustix::process::Signal::from_named_raw(sig as i32).unwrap_or(rustix::process::Signal::KILL)
}

/// A process forked by PID 1 ([`crate::Init::fork`]). Dropping it SIGKILLs and reaps it
/// (bounded by two seconds) unless its end was already collected.
#[derive(Debug)]
pub struct Child {
    pid: i32,
    pidfd: OwnedFd,
    fate: Cell<Option<Fate>>,
    owned: Owned,
}

impl Child {
    pub(crate) fn new(pid: i32, pidfd: OwnedFd, owned: Owned) -> Child {
        owned.borrow_mut().insert(pid);
        Child { pid, pidfd, fate: Cell::new(None), owned }
    }

    /// The child's pid in the sandbox's namespace (a name only until it is reaped).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The pidfd that names this child for good.
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Waits up to `timeout` for the child to end and collects its status (reaps it).
    /// Returns [`Fate::Alive`] if it still runs then. Once collected, the fate is remembered
    /// and returned again without waiting.
    pub fn fate(&self, timeout: Duration) -> Result<Fate, SandboxError> {
        if let Some(f) = self.fate.get() {
            return Ok(f);
        }
        let what = || format!("waiting for child {}", self.pid);
        if !poll_readable(self.pidfd.as_fd(), timeout).map_err(|e| SandboxError::io(what(), e))? {
            return Ok(Fate::Alive);
        }
        match try_reap(self.pidfd.as_fd()).map_err(|e| SandboxError::io(what(), e))? {
            Some(f) => {
                self.fate.set(Some(f));
                self.owned.borrow_mut().remove(&self.pid);
                Ok(f)
            }
            None => Ok(Fate::Alive),
        }
    }

    /// Whether the child's end has been collected.
    pub fn is_reaped(&self) -> bool {
        self.fate.get().is_some()
    }

    /// Sends `sig` through the pidfd (`pidfd_send_signal`: never reaches a recycled pid).
    pub fn signal(&self, sig: Signal) -> Result<(), SandboxError> {
        if self.is_reaped() {
            return Err(SandboxError::Invalid(format!("child {} was already reaped", self.pid)));
        }
        rustix::process::pidfd_send_signal(&self.pidfd, rustix_signal(sig))
            .map_err(|e| SandboxError::io(format!("pidfd_send_signal({sig}) to {}", self.pid), e))
    }

    /// SIGKILLs the child and reaps it, waiting up to `timeout`.
    pub fn kill(&self, timeout: Duration) -> Result<Fate, SandboxError> {
        if let Some(f) = self.fate.get() {
            return Ok(f);
        }
        self.signal(Signal::SIGKILL)?;
        match self.fate(timeout)? {
            Fate::Alive => Err(SandboxError::Deadline {
                what: format!("SIGKILLed child {}", self.pid),
                after: timeout,
            }),
            f => Ok(f),
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.fate.get().is_none() {
            let _ = self.kill(DROP_GRACE);
        }
        self.owned.borrow_mut().remove(&self.pid);
    }
}
