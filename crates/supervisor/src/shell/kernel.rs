//! The one binding of the machine's actions to the real kernel: signals by pidfd or to the
//! child's group, cgroup.kill, the sweep after exit, the reap. Nothing else touches the child.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use racelab_cgroup::{ErrorKind as CgErrorKind, Leaf, Mounts};
use racelab_hooks::point;

use crate::machine::Tree;
use crate::proc;
use crate::report::{Survivor, Target};
use crate::{ErrorKind, SupervisorError};

/// How long the sweep after a normal exit may wait for the cgroup to empty before warning.
const SWEEP_WAIT: Duration = Duration::from_secs(1);

/// A cgroup v2 leaf for the child's tree, with the directory fd `CLONE_INTO_CGROUP` wants.
pub(super) struct CgroupLeaf {
    leaf: Leaf,
    pub(super) dir_fd: OwnedFd,
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
        Ok(CgroupLeaf { leaf, dir_fd })
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
        let kill = sig == Signal::SIGKILL;
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
        } else {
            point!(signal.forwarded);
        }
    }

    pub(super) fn kill_tree(&mut self) {
        if let Some(cg) = &self.cgroup
            && let Err(e) = cg.kill(Instant::now() + SWEEP_WAIT)
        {
            self.warnings.push(format!("cgroup.kill: {e}"));
        }
    }

    /// After the main child exited (still unreaped): kill what is left of its tree.
    pub(super) fn sweep(&mut self) {
        match self.tree {
            Tree::Group => self.signal(Target::Group, Signal::SIGKILL),
            Tree::Cgroup => {
                let deadline = Instant::now() + SWEEP_WAIT;
                if let Some(cg) = &self.cgroup {
                    let r = cg.kill(deadline).and_then(|()| cg.leaf.remove(deadline));
                    if let Err(e) = r {
                        self.warnings.push(format!("cgroup sweep: {e}"));
                    }
                }
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
}
