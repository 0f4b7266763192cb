//! A cgroup v2 leaf that racelab (the lab or the supervisor) owns: create, move processes in,
//! kill everything inside, remove.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::fsutil;
use crate::mounts::BASE_NAME;
use crate::owner::Owner;
use crate::walk::{self, Backoff};

/// How long [`Drop`] waits for the processes it killed to leave before giving up on rmdir.
const DROP_GRACE: Duration = Duration::from_secs(2);

/// A cgroup v2 directory created by this process, removed (after killing what is inside) on
/// drop.
///
/// Its directory name is `<name>.<pid>.<starttime>.<pidns>.<seq>`: the owner's identity, so that
/// [`gc_stale`] in a later run can remove leaves whose owner died without cleaning up.
///
/// A leaf may hold processes or child leaves, not both (the kernel's "no internal processes"
/// rule applies once controllers are enabled); nesting is supported by passing a leaf's
/// [`Leaf::path`] as the parent, and removal and kill-by-walk handle the whole subtree.
#[derive(Debug)]
pub struct Leaf {
    path: PathBuf,
    parent: PathBuf,
    /// The parent is racelab's shared base (`.../racelab`): remove it when it becomes empty.
    tidy_parent: bool,
    removed: AtomicBool,
}

impl Leaf {
    /// Creates `<parent>/<name>.<owner>` (and `parent` itself if absent, one level only).
    ///
    /// `parent` is a directory racelab owns in the v2 hierarchy, normally
    /// [`crate::Mounts::v2_base`]. Fails with `InvalidName` for a name that is not one short
    /// path component, and with `Io` (EACCES, EROFS, ...) when cgroups are not writable.
    pub fn create(parent: &Path, name: &str) -> Result<Leaf> {
        fsutil::check_name(name)?;
        let path = parent.join(Owner::current()?.dir_name(name));
        let mut attempts = 0;
        loop {
            fsutil::mkdir_if_absent(parent)?;
            match rustix::fs::mkdir(&path, Mode::from_raw_mode(0o755)) {
                Ok(()) => break,
                // Another leaf's removal may have just removed the shared empty base.
                Err(Errno::NOENT) if attempts < 3 => attempts += 1,
                Err(e) => return Err(Error::io("mkdir", &path, e.into())),
            }
        }
        Ok(Leaf::adopt(path, parent.to_path_buf()))
    }

    fn adopt(path: PathBuf, parent: PathBuf) -> Leaf {
        let tidy_parent = parent.file_name().is_some_and(|n| n == BASE_NAME);
        Leaf { path, parent, tidy_parent, removed: AtomicBool::new(false) }
    }

    /// The leaf's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves process `pid` (the whole thread group) into the leaf by writing cgroup.procs.
    /// `0` means the calling process.
    pub fn add(&self, pid: i32) -> Result<()> {
        fsutil::write(&self.path.join("cgroup.procs"), &pid.to_string(), "write cgroup.procs")
    }

    /// An `O_RDONLY | O_DIRECTORY | O_CLOEXEC` descriptor of the leaf, as `clone3`'s
    /// `CLONE_INTO_CGROUP` wants in `cgroup`.
    pub fn dir_fd(&self) -> Result<OwnedFd> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        rustix::fs::open(&self.path, flags, Mode::empty())
            .map_err(|e| Error::io("open O_DIRECTORY", &self.path, e.into()))
    }

    /// The processes (thread-group ids) directly in the leaf, from cgroup.procs. Processes that
    /// have exited are not listed even before they are reaped.
    pub fn procs(&self) -> Result<Vec<i32>> {
        fsutil::read_pids(&self.path.join("cgroup.procs"))
    }

    /// Whether the leaf or a descendant holds a live process ("populated 1" in cgroup.events).
    pub fn populated(&self) -> Result<bool> {
        let file = self.path.join("cgroup.events");
        let text = fsutil::read(&file)?;
        parse_populated(&file, &text)
    }

    /// The leaf's `cgroup.events`, opened once, for a caller that reads "populated" often
    /// (see [`Events`]).
    pub fn events(&self) -> Result<Events> {
        let path = self.path.join("cgroup.events");
        let flags = OFlags::RDONLY | OFlags::CLOEXEC;
        let fd = rustix::fs::open(&path, flags, Mode::empty())
            .map_err(|e| Error::io("open", &path, e.into()))?;
        Ok(Events { fd, path })
    }

    /// SIGKILLs every process in the leaf and its descendants at once by writing "1" to
    /// cgroup.kill (Linux 5.14+). Returns before they have exited: see [`Leaf::wait_empty`].
    /// `NotSupported` when the kernel has no cgroup.kill; use [`Leaf::kill_by_walk`] then.
    pub fn kill(&self) -> Result<()> {
        let file = self.path.join("cgroup.kill");
        match fsutil::write_raw(&file, "1") {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.path.is_dir() => {
                Err(Error::NotSupported {
                    op: "write",
                    path: file,
                    why: "no cgroup.kill (Linux < 5.14)",
                })
            }
            Err(e) => Err(Error::io("write cgroup.kill", file, e)),
        }
    }

    /// The fallback for kernels without cgroup.kill: reads cgroup.procs of the leaf and its
    /// descendants, SIGKILLs each process by pidfd, waits for them by pidfd, and repeats until
    /// nothing is left (a process may fork while being killed). Bounded by `deadline`
    /// (`Timeout` naming the pids left). Returns how many signals were sent.
    pub fn kill_by_walk(&self, deadline: Instant) -> Result<usize> {
        let mut sent = 0;
        for dir in subtree_postorder(&self.path)? {
            sent += walk::kill_by_walk(&dir, &dir.join("cgroup.procs"), deadline)?;
        }
        Ok(sent)
    }

    /// Waits (by pidfd, not by cgroup.events) until no process is left in the leaf or its
    /// descendants; `Busy` naming the pids still inside at the deadline.
    pub fn wait_empty(&self, deadline: Instant) -> Result<()> {
        for dir in subtree_postorder(&self.path)? {
            walk::wait_empty(&dir, &dir.join("cgroup.procs"), deadline)?;
        }
        Ok(())
    }

    /// Removes the leaf and its descendant leaves. rmdir fails with EBUSY while a process is
    /// inside: this waits for them to exit (it does not kill them) until `deadline`, then fails
    /// with `Busy` naming the pids. Removing an already removed leaf succeeds.
    pub fn remove(&self, deadline: Instant) -> Result<()> {
        if self.removed.load(Ordering::Acquire) {
            return Ok(());
        }
        // The common case, an empty leaf without child cgroups, is one rmdir; the walk of the
        // subtree (and the wait for processes to leave) only when that is refused.
        match rustix::fs::rmdir(&self.path) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(Errno::BUSY | Errno::NOTEMPTY) => {
                for dir in subtree_postorder(&self.path)? {
                    rmdir_when_empty(&dir, deadline)?;
                }
            }
            Err(e) => return Err(Error::io("rmdir", &self.path, e.into())),
        }
        self.removed.store(true, Ordering::Release);
        if self.tidy_parent {
            // Best effort: fails with EBUSY/ENOTEMPTY while other leaves live there, and a
            // concurrent create() retries if it loses the race.
            let _ = rustix::fs::rmdir(&self.parent);
        }
        Ok(())
    }

    /// Kills everything inside (cgroup.kill, or the walk where unsupported), then removes the
    /// leaf, all bounded by `deadline`. This is what drop does, with errors reported.
    pub fn kill_and_remove(&self, deadline: Instant) -> Result<()> {
        if self.removed.load(Ordering::Acquire) {
            return Ok(());
        }
        match self.kill() {
            Ok(()) => {}
            Err(e) if e.kind() == crate::ErrorKind::NotSupported => {
                self.kill_by_walk(deadline)?;
            }
            Err(e) => return Err(e),
        }
        self.remove(deadline)
    }
}

impl Drop for Leaf {
    /// Kills what is inside and removes the leaf, best effort: errors are ignored and the wait
    /// is bounded by two seconds (a task frozen in a v1 freezer cannot die until thawed).
    /// Never move the owning process itself into a leaf it will drop: it would kill itself.
    fn drop(&mut self) {
        let _ = self.kill_and_remove(Instant::now() + DROP_GRACE);
    }
}

/// An open `cgroup.events` file ([`Leaf::events`]): each [`Events::populated`] is one `pread`
/// at offset 0, which makes the kernel generate the file's text anew, so it reads the current
/// state without an open and a close per check.
///
/// Read it rather than waiting for its poll notification: the kernel rate-limits cgroup file
/// notifications (about 12 ms on a HZ=250 kernel), while the state itself changes the moment
/// the last process leaves (a process leaves its cgroup as it exits, before it is reaped).
#[derive(Debug)]
pub struct Events {
    fd: OwnedFd,
    path: PathBuf,
}

impl Events {
    /// Whether the leaf or a descendant holds a live process now ("populated 1").
    pub fn populated(&self) -> Result<bool> {
        let mut buf = [0u8; 256];
        let n = loop {
            match rustix::io::pread(&self.fd, &mut buf, 0) {
                Ok(n) => break n,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(Error::io("pread", &self.path, e.into())),
            }
        };
        parse_populated(&self.path, &String::from_utf8_lossy(&buf[..n]))
    }
}

/// The "populated" line of a cgroup.events text.
fn parse_populated(path: &Path, text: &str) -> Result<bool> {
    match text.lines().find_map(|l| l.strip_prefix("populated ")) {
        Some("1") => Ok(true),
        Some("0") => Ok(false),
        _ => Err(Error::Parse {
            path: path.to_path_buf(),
            detail: format!("no populated line in {text:?}"),
        }),
    }
}

/// The directory and every cgroup below it, children before parents.
fn subtree_postorder(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for child in fsutil::child_dirs(dir)? {
        out.extend(subtree_postorder(&child)?);
    }
    out.push(dir.to_path_buf());
    Ok(out)
}

/// rmdir, retrying on EBUSY: processes leave the cgroup as they exit (before being reaped),
/// but the leaf stays busy until the last one has.
fn rmdir_when_empty(dir: &Path, deadline: Instant) -> Result<()> {
    let mut backoff = Backoff::new();
    loop {
        match rustix::fs::rmdir(dir) {
            Ok(()) | Err(Errno::NOENT) => return Ok(()),
            Err(Errno::BUSY) => {
                walk::wait_empty(dir, &dir.join("cgroup.procs"), deadline)?;
                // Empty but still busy: the last exit's accounting is a moment behind.
                if !backoff.wait(deadline) {
                    let pids = fsutil::read_pids(&dir.join("cgroup.procs")).unwrap_or_default();
                    return Err(Error::Busy { path: dir.to_path_buf(), pids });
                }
            }
            Err(e) => return Err(Error::io("rmdir", dir, e.into())),
        }
    }
}

/// Kills and removes every leaf under `base` whose owner process is gone (dead, or its pid
/// recycled), as recorded in the leaf's name. Leaves of live owners, of owners in another pid
/// namespace, and directories racelab did not name are left alone. Returns how many were
/// removed; on failures, tries all and returns the first error.
pub fn gc_stale(base: &Path) -> Result<usize> {
    remove_leaves_where(base, Instant::now() + DROP_GRACE, |owner| owner.is_gone())
}

/// Kills and removes every leaf under `base` whose owner was a process of a pid namespace that
/// has ended or is ending (its init gone or dying): what a replay's processes left when their
/// namespace was killed before they could clean up (its init SIGKILLed by its parent's death).
/// [`gc_stale`] leaves them alone: it judges only owners of the caller's own namespace.
///
/// Call it only from a pid namespace that is an ancestor of every namespace whose processes
/// make leaves under `base` (the lab's front end, which starts the replays): a /proc shows only
/// its own namespace and those below, and from inside a replay a sibling replay's namespace
/// would look ended. Returns how many were removed; on failures, tries all and returns the
/// first error.
///
/// A caller in a nested pid namespace (a lab in a container, or under `unshare --pid`) judges
/// nothing and returns 0: another lab on the same machine may run in namespaces it cannot see,
/// whose live replays would look ended from here, and the leaves' directory is shared by every
/// lab that sees the same cgroup tree.
pub fn gc_ended_namespaces(base: &Path) -> Result<usize> {
    if !crate::owner::in_initial_pidns() {
        return Ok(0);
    }
    remove_leaves_where(base, Instant::now() + DROP_GRACE, |owner| {
        crate::owner::pidns_ended_or_ending(owner.pidns)
    })
}

/// Kills and removes every leaf under `base` created by a process of the pid namespace with
/// inode `pidns` (see [`crate::pidns_of`]), waiting until `deadline`. For a caller that has
/// just SIGKILLed that namespace's init; nothing checks that the namespace is ending.
pub fn remove_leaves_of_pidns(base: &Path, pidns: u64, deadline: Instant) -> Result<usize> {
    remove_leaves_where(base, deadline, |owner| owner.pidns == pidns)
}

/// Kills and removes the leaves under `base` whose owner `doomed` picks.
fn remove_leaves_where(
    base: &Path,
    deadline: Instant,
    doomed: impl Fn(&Owner) -> bool,
) -> Result<usize> {
    let mut removed = 0;
    let mut first_err = None;
    for dir in fsutil::child_dirs(base)? {
        let Some(name) = dir.file_name().and_then(|n| n.to_str()) else { continue };
        let Some(owner) = Owner::from_dir_name(name) else { continue };
        if !doomed(&owner) {
            continue;
        }
        let leaf = Leaf::adopt(dir.clone(), base.to_path_buf());
        match leaf.kill_and_remove(deadline) {
            Ok(()) => removed += 1,
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
        // Do not let drop try again: it would repeat the same bounded wait.
        leaf.removed.store(true, Ordering::Release);
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(removed),
    }
}
