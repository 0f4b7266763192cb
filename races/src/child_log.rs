//! The child's log: everything the workload said about itself over its report channel (its
//! `ready` line with the mask it inherited, the signals it received, the exit it announced, the
//! orphans and the tree it made), with the times the lab read it. One of the facts the oracle
//! judges: the child's own account, written before the design could interfere with it.

use racelab_sandbox::ReportLine;
use std::os::fd::OwnedFd;

/// Everything init knows about the workload W from its own lines.
#[derive(Debug, Default)]
pub struct ChildLog {
    /// Its pid in the lab's namespace (from its `ready` line).
    pub pid: Option<i32>,
    /// A pidfd for it, opened when it said ready.
    pub pidfd: Option<OwnedFd>,
    /// Its `ready` line (with the signal mask it inherited).
    pub ready_line: Option<String>,
    /// Signals it reported: (time, signal number).
    pub signals: Vec<(u64, i32)>,
    /// The exit code it announced.
    pub exiting: Option<i32>,
    /// Orphans it made.
    pub orphans: Vec<i32>,
    /// It finished making orphans.
    pub orphans_done: bool,
    /// It started its tree (`tree <pids>`).
    pub tree: Option<Vec<i32>>,
}

impl ChildLog {
    /// It is still running (its pidfd is not readable).
    pub fn alive(&self) -> bool {
        let Some(fd) = &self.pidfd else { return false };
        let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
        let now = rustix::time::Timespec { tv_sec: 0, tv_nsec: 0 };
        !matches!(rustix::event::poll(&mut fds, Some(&now)), Ok(n) if n > 0)
    }

    /// Takes in one line the workload wrote (see `racelab_sandbox::workload` for the
    /// protocol), seen at `now`. Lines it does not know (a program's own output on the same
    /// pipe) are left out.
    pub fn absorb(&mut self, line: &str, now: u64) {
        match ReportLine::parse(line) {
            Some(ReportLine::Ready { pid, .. }) => {
                self.pid = Some(pid);
                self.pidfd = rustix::process::Pid::from_raw(pid).and_then(|p| {
                    rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
                });
                self.ready_line = Some(line.to_string());
            }
            Some(ReportLine::Signal(s)) => self.signals.push((now, s)),
            Some(ReportLine::Exiting(code)) => self.exiting = Some(code),
            Some(ReportLine::Orphan(pid)) => self.orphans.push(pid),
            Some(ReportLine::OrphansDone) => self.orphans_done = true,
            Some(ReportLine::Tree(pids)) => self.tree = Some(pids),
            Some(ReportLine::Daemon(_) | ReportLine::Error(_)) | None => {}
        }
    }

    /// It saw `sig` at or after `at`.
    pub fn saw_since(&self, at: u64, sig: i32) -> bool {
        self.signals.iter().any(|&(t, s)| t >= at && s == sig)
    }

    /// The signal numbers it saw, in order.
    pub fn signal_numbers(&self) -> Vec<i32> {
        self.signals.iter().map(|(_, s)| *s).collect()
    }
}
