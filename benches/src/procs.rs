//! Processes for the benches: the helper child (`racelab-bench-child`), the shared timestamp it
//! writes, readiness pipes, reaping every child, and the /proc walk.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::wait::{Id, WaitPidFlag, waitid};
use racelab_sys::bench::{SharedStamp, monotonic_ns};
use racelab_sys::spawn::{Grouping, SpawnRequest, Spawned, spawn};
use rustix::event::{PollFd, PollFlags, poll};

/// How long any setup wait (a tree getting ready) may take before the bench fails loudly.
pub const SETUP_DEADLINE: Duration = Duration::from_secs(30);

/// The helper executable (`racelab-bench-child`). Modes:
/// `stamp-exit FD DELAY_US`: sleep, store CLOCK_MONOTONIC into the memfd FD, `_exit(0)`;
/// `tree N FD`: fork N-1 children that each write a byte to FD and block in pause(2), write its
/// own byte, then block too.
#[derive(Debug, Clone)]
pub struct Helper {
    /// Path of the executable.
    pub path: PathBuf,
}

impl Helper {
    /// The helper at `path` (benches pass `env!("CARGO_BIN_EXE_racelab-bench-child")`).
    pub fn new(path: impl Into<PathBuf>) -> Helper {
        Helper { path: path.into() }
    }

    /// Spawns the helper with `args` (see [`spawn_program`]).
    pub fn spawn(
        &self,
        args: &[String],
        grouping: Grouping,
        cgroup_dir: Option<BorrowedFd<'_>>,
    ) -> io::Result<Spawned> {
        spawn_program(&self.path, args, grouping, cgroup_dir)
    }

    /// The helper's path as the `program` argument of `racelab_supervisor::run`.
    pub fn program(&self) -> &Path {
        &self.path
    }
}

/// Spawns `path` with `args` by `clone3` + exec (racelab-sys `spawn`), in its own process group
/// or not, optionally straight into a cgroup (`CLONE_INTO_CGROUP`). Returns once it has exec'd.
pub fn spawn_program(
    path: &Path,
    args: &[String],
    grouping: Grouping,
    cgroup_dir: Option<BorrowedFd<'_>>,
) -> io::Result<Spawned> {
    let program = cstring(path.as_os_str().as_bytes())?;
    let mut argv = vec![program.clone()];
    for a in args {
        argv.push(cstring(a.as_bytes())?);
    }
    let req = SpawnRequest {
        program: &program,
        argv: &argv,
        grouping,
        cgroup_dir,
        cgroup_procs: None,
        new_pid_namespace: false,
        reset_signals: &[],
        reset_all_signals: false,
        // The helper dies with the bench if the bench dies (its own children are killed by
        // the strategies; a failed iteration kills them through `TreeGuard`).
        die_with_parent: true,
        stdout: None,
        stderr: None,
        child_hook: None,
    };
    spawn(&req).map_err(|e| io::Error::other(e.to_string()))
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// A timestamp slot in a memfd: inherited by the helper across exec (the fd is not
/// close-on-exec), mapped shared by both sides.
#[derive(Debug)]
pub struct Stamp {
    fd: OwnedFd,
    map: SharedStamp,
}

impl Stamp {
    /// Creates the memfd and maps it.
    pub fn new() -> io::Result<Stamp> {
        // No MFD_CLOEXEC: the helper finds the slot by this fd number after exec.
        let fd = rustix::fs::memfd_create("racelab-bench-stamp", rustix::fs::MemfdFlags::empty())?;
        rustix::fs::ftruncate(&fd, 4096)?;
        let map = SharedStamp::from_fd(fd.as_fd())?;
        Ok(Stamp { fd, map })
    }

    /// The fd number to pass to the helper.
    pub fn fd_arg(&self) -> String {
        self.fd.as_raw_fd().to_string()
    }

    /// Clears the slot before an iteration.
    pub fn clear(&self) {
        self.map.clear();
    }

    /// The latency from the child's stamp to `now_ns`; an error if the child wrote no stamp.
    pub fn latency_to(&self, now_ns: u64) -> io::Result<Duration> {
        let t = self.map.load();
        if t == 0 || t > now_ns {
            return Err(io::Error::other(format!("no valid stamp (stamp {t}, now {now_ns})")));
        }
        Ok(Duration::from_nanos(now_ns - t))
    }
}

/// A pipe the tree's processes write one byte each into once they are about to block.
#[derive(Debug)]
pub struct ReadyPipe {
    /// Read end (close-on-exec).
    pub read: OwnedFd,
    write: Option<OwnedFd>,
}

impl ReadyPipe {
    /// A pipe whose write end is inherited by spawned children.
    pub fn new() -> io::Result<ReadyPipe> {
        let (read, write) = rustix::pipe::pipe()?;
        rustix::io::fcntl_setfd(&read, rustix::io::FdFlags::CLOEXEC)?;
        Ok(ReadyPipe { read, write: Some(write) })
    }

    /// The write end's fd number, for the helper's command line.
    pub fn write_arg(&self) -> String {
        self.write.as_ref().map_or(-1, |w| w.as_raw_fd()).to_string()
    }

    /// Closes the parent's copy of the write end (after the child has it).
    pub fn close_write(&mut self) {
        self.write = None;
    }
}

/// Reads exactly `n` bytes from `fd`, each wait bounded by `SETUP_DEADLINE` overall.
pub fn wait_ready(fd: BorrowedFd<'_>, n: usize) -> io::Result<()> {
    let deadline = Instant::now() + SETUP_DEADLINE;
    let mut got = 0;
    let mut buf = [0u8; 4096];
    while got < n {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("tree not ready: {got} of {n} processes after {SETUP_DEADLINE:?}"),
            ));
        }
        let ts = rustix::time::Timespec::try_from(left).unwrap_or_default();
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        let want = (n - got).min(buf.len());
        match rustix::io::read(fd, &mut buf[..want]) {
            Ok(0) => return Err(io::Error::other(format!("ready pipe closed at {got} of {n}"))),
            Ok(k) => got += k,
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reaps every child of this process, blocking, until `ECHILD`: "every process reaped". The
/// bench process is a child subreaper in the kill benches, so a killed tree's orphans come here.
/// Returns how many were reaped.
pub fn reap_all() -> io::Result<usize> {
    let mut n = 0;
    loop {
        match waitid(Id::All, WaitPidFlag::WEXITED) {
            Ok(_) => n += 1,
            Err(nix::errno::Errno::ECHILD) => return Ok(n),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `root` and all its descendants, by a walk of every `/proc/<pid>/stat` (the parent links),
/// root first, breadth first.
pub fn descendants_via_proc(root: i32) -> io::Result<Vec<i32>> {
    let mut links: Vec<(i32, i32)> = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        // A process may vanish between readdir and open: skip it.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        if let Some(ppid) = parse_ppid(&stat) {
            links.push((pid, ppid));
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(links.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    Ok(out)
}

/// The ppid field of a `/proc/<pid>/stat` line (the comm may contain spaces and parentheses:
/// parse after the LAST `)`).
fn parse_ppid(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Kills a tree's process group and reaps everything when dropped while armed: a failed
/// iteration leaves nothing behind.
#[derive(Debug)]
pub struct TreeGuard {
    pgid: Option<i32>,
}

impl TreeGuard {
    /// Guards the group `pgid` (the helper leads its own group).
    pub fn new(pgid: i32) -> TreeGuard {
        TreeGuard { pgid: Some(pgid) }
    }

    /// The iteration succeeded: nothing to clean.
    pub fn disarm(mut self) {
        self.pgid = None;
    }
}

impl Drop for TreeGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid.and_then(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
            let _ = reap_all();
        }
    }
}

/// `CLOCK_MONOTONIC` now, in nanoseconds (the clock of every stamp).
pub fn now_ns() -> u64 {
    monotonic_ns()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppid_is_parsed_after_a_comm_with_spaces_and_parentheses() {
        assert_eq!(parse_ppid("42 (a) b (c)) S 7 42 42 0"), Some(7));
        assert_eq!(parse_ppid("garbage"), None);
    }

    #[test]
    fn the_proc_walk_finds_this_process_first() {
        let me = rustix::process::getpid().as_raw_nonzero().get();
        assert_eq!(descendants_via_proc(me).expect("walk")[0], me);
    }
}
