//! The one binding of the machine's actions to the real kernel: signals by pidfd or to the
//! child's group, cgroup.kill, the sweep after exit, the reap, the removal of the leaf.
//! Nothing else touches the child.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::lab_points::point;
use nix::sys::signal::Signal;
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use racelab_cgroup::{ErrorKind as CgErrorKind, Events, Leaf, Mounts};

use crate::machine::Tree;
use crate::proc;
use crate::report::{Survivor, Target};
use crate::{ErrorKind, SupervisorError};

/// How long the end of a supervision may wait for the rest of the tree (the cgroup to empty,
/// its orphans to be reaped) before warning and leaving the leaf in place.
pub(super) const SWEEP_WAIT: Duration = Duration::from_secs(1);

/// A cgroup v2 leaf for the child's tree, with the directory fd `CLONE_INTO_CGROUP` wants and
/// its cgroup.events held open (read, never awaited: its notification is rate-limited).
pub(super) struct CgroupLeaf {
    leaf: Leaf,
    pub(super) dir_fd: OwnedFd,
    events: Events,
}

impl CgroupLeaf {
    /// Creates `<v2>/racelab/supervise.<owner>`.
    pub(super) fn create() -> Result<CgroupLeaf, SupervisorError> {
        let unavailable = |what: &str, e: racelab_cgroup::Error| {
            SupervisorError::new(ErrorKind::ContainmentUnavailable, what, std::io::Error::other(e))
        };
        let mounts = Mounts::probe().map_err(|e| unavailable("probe cgroup mounts", e))?;
        let base = mounts.v2_base().ok_or_else(|| {
            SupervisorError::new(
                ErrorKind::ContainmentUnavailable,
                "cgroup containment",
                std::io::Error::other("no cgroup v2 hierarchy is mounted"),
            )
        })?;
        let leaf =
            Leaf::create(&base, "supervise").map_err(|e| unavailable("create cgroup leaf", e))?;
        let dir_fd = leaf.dir_fd().map_err(|e| unavailable("open cgroup leaf", e))?;
        let events = leaf.events().map_err(|e| unavailable("open cgroup.events", e))?;
        Ok(CgroupLeaf { leaf, dir_fd, events })
    }

    /// `cgroup.procs` of the leaf opened for writing (the pre-exec fallback).
    pub(super) fn procs_fd(&self) -> std::io::Result<OwnedFd> {
        let path = self.leaf.path().join("cgroup.procs");
        Ok(std::fs::OpenOptions::new().write(true).open(path)?.into())
    }

    fn kill(&self, deadline: Instant) -> Result<(), racelab_cgroup::Error> {
        match self.leaf.kill() {
            Err(e) if e.kind() == CgErrorKind::NotSupported => {
                self.leaf.kill_by_walk(deadline).map(|_| ())
            }
            r => r,
        }
    }
}

/// The main child and its tree, as the shell holds them.
pub(super) struct Kernel {
    /// The child's pid, for display, /proc, and the group id (it leads its group).
    pub(super) pid: i32,
    /// The pidfd: the only handle through which the child itself is signalled.
    pub(super) pidfd: OwnedFd,
    /// True once `reap` collected the status: from then on `pid` may name someone else.
    pub(super) reaped: bool,
    /// Orphans reaped as PID 1 / subreaper.
    pub(super) orphans_reaped: u64,
    /// Problems met while executing actions (they never change the decision already made).
    pub(super) warnings: Vec<String>,
    cgroup: Option<CgroupLeaf>,
    tree: Tree,
}

impl Kernel {
    pub(super) fn new(pid: i32, pidfd: OwnedFd, cgroup: Option<CgroupLeaf>, tree: Tree) -> Kernel {
        Kernel { pid, pidfd, reaped: false, orphans_reaped: 0, warnings: Vec::new(), cgroup, tree }
    }

    pub(super) fn signal(&mut self, target: Target, sig: Signal) {
        // The escalation points mark the forced kill of the child, the step the stop reason
        // must follow (I2). A SIGKILL to the group is not that step: with the grace kill it
        // follows the child's own, and the sweep after the leader exited kills what is left of
        // a tree whose child ended by itself. Marking those too made the oracle read a sweep as
        // a forced kill: `racelab explore Q3 --design reference` found it with
        // `on duration.expired: exit(child)` (reported Duration, "SIGKILL was sent").
        let kill = sig == Signal::SIGKILL && target == Target::Child;
        if kill {
            point!(escalation.pid_loaded);
            point!(escalation.before_kill);
        }
        let Some(rsig) = rustix::process::Signal::from_named_raw(sig as i32) else { return };
        let result = match target {
            // Q1: by pidfd, never by number. Even if the child exited an instant ago, the pidfd
            // names that child (a zombie until we reap it), never a recycled PID.
            Target::Child => rustix::process::pidfd_send_signal(self.pidfd.as_fd(), rsig),
            // G1: the machine emits group signals only before `Reap`, so the leader is alive or
            // an unreaped zombie and its pid, hence the pgid, cannot have been reused.
            Target::Group => match rustix::process::Pid::from_raw(self.pid) {
                Some(pgid) if !self.reaped => rustix::process::kill_process_group(pgid, rsig),
                _ => Ok(()),
            },
            Target::Cgroup => Ok(()),
        };
        match result {
            Ok(()) | Err(rustix::io::Errno::SRCH) => {}
            Err(e) => self.warnings.push(format!("sending {} to {target:?}: {e}", sig.as_str())),
        }
        if kill {
            point!(escalation.kill_sent);
        } else if sig != Signal::SIGKILL {
            point!(signal.forwarded);
        }
    }

    pub(super) fn kill_tree(&mut self) {
        if let Some(cg) = &self.cgroup
            && let Err(e) = cg.kill(Instant::now() + SWEEP_WAIT)
        {
            self.warnings.push(format!("cgroup.kill: {e}; SIGKILL to the child by pidfd instead"));
            // A failed tree kill must not leave the child unsignalled (a SIGKILL stop in a
            // cgroup starts with this action alone): its end would then be reported as
            // unkillable when nothing was ever sent. By pidfd, so never to a recycled PID.
            if !self.reaped {
                let kill = rustix::process::Signal::KILL;
                let _ = rustix::process::pidfd_send_signal(self.pidfd.as_fd(), kill);
            }
        }
    }

    /// After the main child exited (still unreaped): kill what is left of its tree. It does not
    /// wait for the tree to die: the child is reaped right after, and the orphans are reaped
    /// while they die (`settle`, after the report), as a raw cgroup.kill + wait loop would.
    ///
    /// Its own points (`sweep.*`), not the escalation's: the child's end is already decided
    /// and reported as it happened, and the oracle reads `escalation.*` as a forced kill (I2).
    pub(super) fn sweep(&mut self) {
        match self.tree {
            Tree::Group => {
                point!(sweep.before_kill);
                // G1: the leader is an unreaped zombie, so its pid (the group id) is still ours.
                if let (Some(pgid), false) = (rustix::process::Pid::from_raw(self.pid), self.reaped)
                {
                    match rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL) {
                        Ok(()) | Err(rustix::io::Errno::SRCH) => {}
                        Err(e) => self.warnings.push(format!("sweep of the group: {e}")),
                    }
                }
                point!(sweep.kill_sent);
            }
            Tree::Cgroup => {
                point!(sweep.before_kill);
                if let Some(cg) = &self.cgroup
                    && let Err(e) = cg.kill(Instant::now() + SWEEP_WAIT)
                {
                    self.warnings.push(format!("cgroup sweep: {e}"));
                }
                point!(sweep.kill_sent);
            }
            // The kernel killed the namespace when its init (our child) exited.
            Tree::PidNamespace | Tree::ChildOnly => {}
        }
    }

    /// Collects the main child's status (it is a zombie: the machine saw the exit).
    pub(super) fn reap(&mut self) {
        // Bounded: the peek already saw the exit, so this returns at once.
        match waitid(Id::PIDFd(self.pidfd.as_fd()), WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG) {
            Ok(_) => {}
            Err(e) => self.warnings.push(format!("reaping the child: {e}")),
        }
        self.reaped = true;
        point!(main.reaped);
    }

    /// The processes of the tree still alive (for the unkillable report). The child is not
    /// reaped, so its pid and group id still name our processes.
    pub(super) fn survivors(&self) -> Vec<Survivor> {
        let root = Path::new("/proc");
        let mut pids: Vec<i32> = match (&self.cgroup, self.tree) {
            (Some(cg), _) => cg.leaf.procs().unwrap_or_default(),
            (None, Tree::Group) => {
                proc::scan(root, |s| s.pgrp == self.pid).into_iter().map(|s| s.pid).collect()
            }
            _ => Vec::new(),
        };
        if !pids.contains(&self.pid) {
            pids.insert(0, self.pid);
        }
        pids.iter().filter_map(|p| proc::stat(root, *p)).map(Survivor::from).collect()
    }

    /// Gives up on an unkillable tree without blocking: the cgroup leaf is left in place (its
    /// drop would wait for the tree) and named in a warning; `gc_stale` removes it later.
    pub(super) fn abandon(&mut self) {
        if let Some(cg) = self.cgroup.take() {
            self.warnings.push(format!("cgroup {} left in place", cg.leaf.path().display()));
            std::mem::forget(cg.leaf);
        }
    }

    /// After the main child was reaped: whether the rest of its tree is still there. `None`
    /// for a tree with nothing to wait for (no containment; a PID namespace, whose init does
    /// not finish exiting before every process in it is gone; an abandoned leaf).
    ///
    /// * cgroup: the leaf is populated, read from cgroup.events now (a process leaves its
    ///   cgroup as it exits, a moment before it is a zombie). Unreadable: a warning and `None`,
    ///   and the removal's bounded wait decides.
    /// * group: the group still has a member, `kill(-pgid, 0)`, which sends nothing. A member,
    ///   even a zombie, keeps the pgid's number allocated, so `ESRCH` means every member was
    ///   reaped. Once they are, a new process could take the number and lead a group of that
    ///   id: then this says "alive" for a stranger and only the caller's bound ends the wait;
    ///   no signal is ever sent on it.
    pub(super) fn tree_alive(&mut self) -> Option<bool> {
        if !self.reaped {
            // Given up on (unkillable): nothing more is waited for.
            return None;
        }
        match self.tree {
            Tree::Cgroup => match self.cgroup.as_ref()?.events.populated() {
                Ok(p) => Some(p),
                Err(e) => {
                    self.warnings.push(format!("cgroup sweep: {e}"));
                    None
                }
            },
            Tree::Group => {
                let pgid = rustix::process::Pid::from_raw(self.pid)?;
                Some(rustix::process::test_kill_process_group(pgid) != Err(rustix::io::Errno::SRCH))
            }
            Tree::ChildOnly | Tree::PidNamespace => None,
        }
    }

    /// Removes the leaf: at once when it is empty, else after waiting (by pidfd, until
    /// `deadline`) for what is inside to exit. A leaf that does not empty in time is left in
    /// place with a warning rather than waited for again on drop.
    pub(super) fn remove_leaf(&mut self, deadline: Instant) {
        let Some(cg) = self.cgroup.as_ref() else { return };
        if let Err(e) = cg.leaf.remove(deadline) {
            self.warnings.push(format!("cgroup sweep: {e}"));
            self.abandon();
        }
    }

    /// The handle is being dropped before the supervision ended: SIGKILL the child (by pidfd)
    /// and its tree (the group while the leader is unreaped, or cgroup.kill), then reap the
    /// child, waiting for its exit at most `bound`. The leaf's own drop removes it.
    pub(super) fn abort(&mut self, bound: Duration) {
        if self.reaped {
            return;
        }
        let kill = rustix::process::Signal::KILL;
        let _ = rustix::process::pidfd_send_signal(self.pidfd.as_fd(), kill);
        if self.tree == Tree::Group
            && let Some(pgid) = rustix::process::Pid::from_raw(self.pid)
        {
            let _ = rustix::process::kill_process_group(pgid, kill);
        }
        if let Some(cg) = &self.cgroup {
            let _ = cg.kill(Instant::now() + bound);
        }
        let mut fds = [rustix::event::PollFd::new(&self.pidfd, rustix::event::PollFlags::IN)];
        let timeout = rustix::time::Timespec::try_from(bound).unwrap_or_default();
        let _ = rustix::event::poll(&mut fds, Some(&timeout));
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG;
        if let Ok(status) = waitid(Id::PIDFd(self.pidfd.as_fd()), flags)
            && status != nix::sys::wait::WaitStatus::StillAlive
        {
            self.reaped = true;
        }
    }
}
