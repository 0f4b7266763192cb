//! Process-level helpers on a pid list file: wait until every listed process has exited (by
//! pidfd, no polling of cgroup.events), and the kill-by-walk fallback for kernels without
//! cgroup.kill.

use std::collections::HashSet;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, poll};
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

use crate::error::{Error, Result};
use crate::fsutil;

/// A bounded exponential backoff for the few states the kernel gives no notification for
/// (a v1 freezer passing FREEZING -> FROZEN, an rmdir that races the last exit's accounting).
/// It never sleeps past the deadline.
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub fn new() -> Self {
        Backoff { next: Duration::from_micros(50) }
    }

    /// Sleeps a little (50 us doubling to 2 ms); false if the deadline has passed.
    pub fn wait(&mut self, deadline: Instant) -> bool {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(self.next.min(deadline - now));
        self.next = (self.next * 2).min(Duration::from_millis(2));
        true
    }
}

/// Opens a pidfd for each pid; pids that are already gone are skipped.
fn open_pidfds(pids: &[i32]) -> Vec<(i32, OwnedFd)> {
    pids.iter()
        .filter_map(|&p| Some((p, pidfd_open(Pid::from_raw(p)?, PidfdFlags::empty()).ok()?)))
        .collect()
}

/// Polls pidfds until every process has exited or the deadline passes. Returns how many are
/// still running.
fn wait_exits(mut fds: Vec<(i32, OwnedFd)>, deadline: Instant) -> Result<usize> {
    while !fds.is_empty() {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let timeout = rustix::time::Timespec::try_from(deadline - now).unwrap_or_default();
        let mut pfds: Vec<PollFd<'_>> =
            fds.iter().map(|(_, fd)| PollFd::new(fd, PollFlags::IN)).collect();
        match poll(&mut pfds, Some(&timeout)) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(Error::io("poll pidfds", "pidfd", e.into())),
        }
        let exited: Vec<bool> = pfds.iter().map(|p| !p.revents().is_empty()).collect();
        drop(pfds);
        let mut i = 0;
        fds.retain(|_| {
            i += 1;
            !exited[i - 1]
        });
    }
    Ok(fds.len())
}

/// Waits until the pid list file `procs` is empty, by pidfd; `Busy` naming the pids left at the
/// deadline.
pub(crate) fn wait_empty(dir: &Path, procs: &Path, deadline: Instant) -> Result<()> {
    let mut backoff = Backoff::new();
    loop {
        let pids = fsutil::read_pids(procs)?;
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Busy { path: dir.to_path_buf(), pids });
        }
        let fds = open_pidfds(&pids);
        let n = fds.len();
        let started = Instant::now();
        wait_exits(fds, deadline)?;
        // Listed but already exited (pidfds readable at once): the list lags the exit by a
        // moment; back off instead of spinning.
        if n == 0 || started.elapsed() < Duration::from_micros(20) {
            backoff.wait(deadline);
        }
    }
}

/// SIGKILLs every process listed in `procs` until the list is empty, re-reading it after each
/// round because a process may fork while being killed. Returns how many signals were sent.
pub(crate) fn kill_by_walk(dir: &Path, procs: &Path, deadline: Instant) -> Result<usize> {
    let started = Instant::now();
    let mut sent = 0;
    loop {
        let pids = fsutil::read_pids(procs)?;
        if pids.is_empty() {
            return Ok(sent);
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                op: "kill by walking cgroup.procs",
                path: dir.to_path_buf(),
                waited: started.elapsed(),
                last: format!("pids {pids:?} still inside"),
            });
        }
        let fds = open_pidfds(&pids);
        // The pidfds pin the processes we just listed. A pid listed again now belongs to a
        // process inside the cgroup; if it is not the one our pidfd holds, that one has died and
        // the signal fails with ESRCH. So a pid recycled by a process outside the cgroup between
        // the two reads is never signalled.
        let still: HashSet<i32> = fsutil::read_pids(procs)?.into_iter().collect();
        let mut signalled = Vec::with_capacity(fds.len());
        for (pid, fd) in fds {
            if !still.contains(&pid) {
                continue;
            }
            match pidfd_send_signal(fd.as_fd(), Signal::KILL) {
                Ok(()) => {
                    sent += 1;
                    signalled.push((pid, fd));
                }
                Err(Errno::SRCH) => {}
                Err(e) => {
                    let path = PathBuf::from(format!("/proc/{pid}"));
                    return Err(Error::io("pidfd_send_signal SIGKILL", path, e.into()));
                }
            }
        }
        wait_exits(signalled, deadline)?;
    }
}
