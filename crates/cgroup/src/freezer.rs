//! A cgroup v1 freezer group: the lab's way to make a child "unkillable for a while". A task
//! frozen here sits in D state even under SIGKILL until thawed (a v2 `cgroup.freeze` does not
//! protect from SIGKILL, which is why the v1 hierarchy is used).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::fsutil;
use crate::mounts::{BASE_NAME, Mounts};
use crate::owner::Owner;
use crate::walk::Backoff;

/// How long drop and [`Freezer::remove`] wait for the group to become removable.
const REMOVE_GRACE: Duration = Duration::from_secs(1);

/// The value of freezer.state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezerState {
    /// Tasks run normally.
    Thawed,
    /// FROZEN was requested and some tasks are not frozen yet.
    Freezing,
    /// Every task is frozen.
    Frozen,
}

/// A v1 freezer group `<freezer mount>/racelab/<name>.<owner>`, thawed and removed on drop.
#[derive(Debug)]
pub struct Freezer {
    path: PathBuf,
    /// The hierarchy's root, where remaining tasks are moved before rmdir.
    root: PathBuf,
    removed: AtomicBool,
}

impl Freezer {
    /// Creates a group under the v1 freezer mount found in /proc/self/mountinfo;
    /// `NotMounted` if there is none.
    pub fn create(name: &str) -> Result<Freezer> {
        let mounts = Mounts::probe()?;
        let root = mounts.freezer_v1.ok_or_else(|| Error::NotMounted {
            what: "cgroup v1 freezer",
            path: PathBuf::from("/proc/self/mountinfo"),
        })?;
        Freezer::create_at(&root, name)
    }

    /// Creates a group under the v1 freezer hierarchy mounted at `root`.
    pub fn create_at(root: &Path, name: &str) -> Result<Freezer> {
        fsutil::check_name(name)?;
        let base = root.join(BASE_NAME);
        let path = base.join(Owner::current()?.dir_name(name));
        let mut attempts = 0;
        loop {
            fsutil::mkdir_if_absent(&base)?;
            match rustix::fs::mkdir(&path, rustix::fs::Mode::from_raw_mode(0o755)) {
                Ok(()) => break,
                // Another group's removal may have just removed the shared empty base.
                Err(Errno::NOENT) if attempts < 3 => attempts += 1,
                Err(e) => return Err(Error::io("mkdir", &path, e.into())),
            }
        }
        Ok(Freezer { path, root: root.to_path_buf(), removed: AtomicBool::new(false) })
    }

    /// The group's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves process `pid` (all its threads) into the group via cgroup.procs.
    pub fn add(&self, pid: i32) -> Result<()> {
        fsutil::write(&self.path.join("cgroup.procs"), &pid.to_string(), "write cgroup.procs")
    }

    /// The processes in the group (cgroup.procs).
    pub fn procs(&self) -> Result<Vec<i32>> {
        fsutil::read_pids(&self.path.join("cgroup.procs"))
    }

    /// Reads freezer.state.
    pub fn state(&self) -> Result<FreezerState> {
        let file = self.path.join("freezer.state");
        let text = fsutil::read(&file)?;
        match text.trim() {
            "THAWED" => Ok(FreezerState::Thawed),
            "FREEZING" => Ok(FreezerState::Freezing),
            "FROZEN" => Ok(FreezerState::Frozen),
            other => Err(Error::Parse { path: file, detail: format!("unknown state {other:?}") }),
        }
    }

    /// Writes FROZEN and waits until freezer.state reads FROZEN. The group passes through
    /// FREEZING while tasks reach the refrigerator, and the kernel sends no notification for the
    /// transition, so this re-reads the state with a short backoff (50 us doubling to 2 ms),
    /// capped by `deadline`; `Timeout` (state left FREEZING) if it is not reached.
    pub fn freeze(&self, deadline: Instant) -> Result<()> {
        let started = Instant::now();
        fsutil::write(&self.path.join("freezer.state"), "FROZEN", "write freezer.state")?;
        let mut backoff = Backoff::new();
        loop {
            let state = self.state()?;
            if state == FreezerState::Frozen {
                return Ok(());
            }
            if !backoff.wait(deadline) {
                return Err(Error::Timeout {
                    op: "freeze",
                    path: self.path.clone(),
                    waited: started.elapsed(),
                    last: format!("{state:?}"),
                });
            }
        }
    }

    /// Writes THAWED: frozen tasks resume, and those with a pending SIGKILL die.
    pub fn thaw(&self) -> Result<()> {
        fsutil::write(&self.path.join("freezer.state"), "THAWED", "write freezer.state")
    }

    /// Thaws, moves any task still inside to the hierarchy's root, and removes the group (and
    /// the shared `racelab` base if it is left empty). Killing and reaping the tasks is the
    /// owner's job; this only makes sure none stays frozen or blocks the rmdir.
    pub fn remove(&self) -> Result<()> {
        if self.removed.load(Ordering::Acquire) {
            return Ok(());
        }
        self.thaw()?;
        let deadline = Instant::now() + REMOVE_GRACE;
        let mut backoff = Backoff::new();
        loop {
            // Threads one by one via "tasks": a v1 group can hold part of a thread group.
            for tid in fsutil::read_pids(&self.path.join("tasks"))? {
                match fsutil::write_raw(&self.root.join("tasks"), &tid.to_string()) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(Errno::SRCH.raw_os_error()) => {}
                    Err(e) => return Err(Error::io("write tasks", self.root.join("tasks"), e)),
                }
            }
            match rustix::fs::rmdir(&self.path) {
                Ok(()) | Err(Errno::NOENT) => break,
                // A task forked or was still exiting between the move and the rmdir.
                Err(Errno::BUSY) if backoff.wait(deadline) => {}
                Err(Errno::BUSY) => {
                    let pids = self.procs().unwrap_or_default();
                    return Err(Error::Busy { path: self.path.clone(), pids });
                }
                Err(e) => return Err(Error::io("rmdir", &self.path, e.into())),
            }
        }
        self.removed.store(true, Ordering::Release);
        let _ = rustix::fs::rmdir(self.root.join(BASE_NAME));
        Ok(())
    }
}

/// Thaws and removes every group under `<v1 freezer>/racelab` whose owner is gone or dying
/// ([`Owner::is_gone_or_dying`]): the groups of a lab that was SIGKILLed while a task was
/// frozen. Such a task stays in D state, and the init of its namespace stuck in its exit,
/// until someone thaws the group; once thawed it dies of the SIGKILL its namespace's end
/// queued for it. Groups of live owners and directories racelab did not name are left alone.
/// Returns how many were removed (0 when no v1 freezer is mounted); on failures, tries all and
/// returns the first error.
pub fn gc_stale_freezers() -> Result<usize> {
    let Some(root) = Mounts::probe()?.freezer_v1 else { return Ok(0) };
    remove_groups_where(&root, |owner| owner.is_gone_or_dying())
}

/// Thaws and removes every group under `<v1 freezer>/racelab` created by a process of the pid
/// namespace with inode `pidns` (see [`crate::pidns_of`]). For a caller that has just SIGKILLed
/// that namespace's init (so nothing in it can freeze a task again): its frozen tasks would
/// keep the init from exiting until thawed; thawed, they die of the SIGKILL the namespace's end
/// queues for them. Nothing checks that the namespace is ending: that is the caller's word.
/// `mounts`: as probed earlier (a caller whose /proc may since have become another namespace's
/// cannot probe now). Returns how many were removed; on failures, tries all and returns the
/// first error.
pub fn remove_freezers_of_pidns(mounts: &Mounts, pidns: u64) -> Result<usize> {
    let Some(root) = &mounts.freezer_v1 else { return Ok(0) };
    remove_groups_where(root, |owner| owner.pidns == pidns)
}

/// Thaws and removes the groups under `<root>/racelab` whose owner `doomed` picks.
fn remove_groups_where(root: &Path, doomed: impl Fn(&Owner) -> bool) -> Result<usize> {
    let base = root.join(BASE_NAME);
    if !base.exists() {
        return Ok(0);
    }
    let mut removed = 0;
    let mut first_err = None;
    for path in fsutil::child_dirs(&base)? {
        let Some(owner) = path.file_name().and_then(|n| n.to_str()).and_then(Owner::from_dir_name)
        else {
            continue;
        };
        if !doomed(&owner) {
            continue;
        }
        let group = Freezer { path, root: root.to_path_buf(), removed: AtomicBool::new(false) };
        match group.remove() {
            Ok(()) => removed += 1,
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
        // Drop must not wait again for a group that would not go (it still thaws nothing new).
        group.removed.store(true, Ordering::Release);
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(removed),
    }
}

impl Drop for Freezer {
    /// Thaws and removes, best effort (never panics): a frozen task must never outlive the
    /// handle, or it would stay unkillable.
    fn drop(&mut self) {
        if self.remove().is_err() {
            // At least never leave tasks frozen.
            let _ = self.thaw();
        }
    }
}
