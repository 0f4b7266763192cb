//! The running part of a session: the machine with its kernel binding and timers, fed one
//! event at a time, its actions executed in order; the peek at the main child's exit that never
//! reaps it; and the drain of zombie children that routes the main child's status to the
//! machine and reaps orphans by exact pid. Its own file because it is where statuses are taken
//! from the kernel (the I7 and Z2 windows), apart from the loop that decides when to look.

use std::os::fd::AsFd;
use std::time::Instant;

use crate::lab_points::point;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};

use super::kernel::Kernel;
use super::timers::Timers;
use crate::machine::{Action, Event, Machine};
use crate::report::{ExitStatus, Report};

/// The running part of a session: the machine, the kernel binding, timers, the report once
/// the machine has finished.
pub(super) struct Run {
    pub(super) m: Machine,
    pub(super) k: Kernel,
    pub(super) t: Timers,
    pub(super) r: Option<Report>,
    pub(super) start: Instant,
}

/// What a drain of the zombie children left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Left {
    /// `ECHILD`: this process has no child at all any more.
    NoChild,
    /// Children remain, none of them (yet) a zombie we may reap here.
    Running,
}

impl Run {
    /// Feeds one event to the machine and executes its actions in order.
    pub(super) fn apply(&mut self, ev: Event) {
        for action in self.m.on(self.start.elapsed(), ev) {
            match action {
                Action::Signal { target, sig } => self.k.signal(target, sig),
                Action::KillTree => self.k.kill_tree(),
                Action::Arm { timer, after } => self.t.arm(timer, Instant::now() + after),
                Action::Cancel(timer) => self.t.cancel(timer),
                Action::Sweep => self.k.sweep(),
                Action::Reap => self.k.reap(),
                Action::Finish(report) => {
                    point!(main.classified);
                    self.r = Some(*report);
                }
            }
        }
    }

    /// Peeks at the main child's status without reaping it (`WNOWAIT`): the pid stays pinned
    /// as a zombie so the machine can still sweep its group safely before `Action::Reap`.
    pub(super) fn check_main_exit(&mut self) {
        if !self.m.child_alive() {
            return;
        }
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        if let Some(status) = to_status(waitid(Id::PIDFd(self.k.pidfd.as_fd()), flags)) {
            self.apply(Event::Exited(status));
        }
    }

    /// Reaps every zombie child (SIGCHLD coalesces: drain until none is left). While the main
    /// child is unreaped it is never reaped here: when the peek finds it, its status goes to
    /// the machine, which sweeps and reaps it by pidfd; orphans are reaped by their exact pid.
    /// Once the main child is reaped there is no status left to protect, and each orphan is
    /// reaped in one call.
    pub(super) fn drain(&mut self) -> Left {
        let peek = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        let reap = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG;
        loop {
            if self.k.reaped {
                match waitid(Id::All, reap) {
                    Ok(WaitStatus::Exited(..)) | Ok(WaitStatus::Signaled(..)) => {
                        self.k.orphans_reaped += 1;
                        point!(reaper.reaped);
                        continue;
                    }
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(nix::errno::Errno::ECHILD) => return Left::NoChild,
                    _ => return Left::Running,
                }
            }
            let pid = match waitid(Id::All, peek) {
                Ok(WaitStatus::Exited(pid, _)) | Ok(WaitStatus::Signaled(pid, _, _)) => {
                    pid.as_raw()
                }
                Err(nix::errno::Errno::ECHILD) => return Left::NoChild,
                _ => return Left::Running,
            };
            if pid == self.k.pid && !self.k.reaped {
                if self.m.child_alive() {
                    self.check_main_exit();
                } else {
                    // Unkillable path gave up on it earlier; nothing more will route it.
                    return Left::Running;
                }
                continue;
            }
            // A zombie we peeked is ours until we reap it: the pid cannot be reused in between.
            let _ = waitid(
                Id::Pid(nix::unistd::Pid::from_raw(pid)),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG,
            );
            self.k.orphans_reaped += 1;
            point!(reaper.reaped);
        }
    }
}

fn to_status(r: nix::Result<WaitStatus>) -> Option<ExitStatus> {
    match r {
        Ok(WaitStatus::Exited(_, code)) => Some(ExitStatus::Code(code)),
        Ok(WaitStatus::Signaled(_, sig, _)) => Some(ExitStatus::Signal(sig as i32)),
        _ => None,
    }
}
