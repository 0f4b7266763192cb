//! Test helpers: the skip rule, child guards that always kill and reap, pidfd waits.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use racelab_cgroup::{Leaf, Mounts};
use rustix::event::{PollFd, PollFlags, poll};
use rustix::process::{Pid, PidfdFlags, WaitId, WaitIdOptions, pidfd_open, waitid};

/// racelab_sandbox::skip_unless, which this crate cannot depend on (the sandbox depends on us):
/// true = skip; a panic under RACELAB_STRICT=1.
pub fn skip_unless(available: bool, capability: &str, why: &str) -> bool {
    if available {
        return false;
    }
    assert!(std::env::var("RACELAB_STRICT").as_deref() != Ok("1"), "needs {capability}: {why}");
    println!("SKIP: needs {capability}: {why}");
    true
}

/// The v2 base directory, or None (after printing the skip) when leaves cannot be made here.
pub fn v2_base_or_skip() -> Option<PathBuf> {
    let writable = racelab_cgroup::v2_writable();
    if skip_unless(writable, "cgroup v2 writable", "creating a leaf under <v2>/racelab failed") {
        return None;
    }
    Mounts::probe().unwrap().v2_base()
}

/// A leaf under the v2 base, or None when skipped.
pub fn leaf_or_skip(name: &str) -> Option<Leaf> {
    let base = v2_base_or_skip()?;
    Some(Leaf::create(&base, name).unwrap())
}

pub fn pidfd(pid: i32) -> OwnedFd {
    pidfd_open(Pid::from_raw(pid).unwrap(), PidfdFlags::empty()).unwrap()
}

/// Whether the pidfd becomes readable (the process exited) within `timeout`.
pub fn exits_within(fd: &OwnedFd, timeout: Duration) -> bool {
    wait_readable(fd, timeout)
}

pub fn wait_readable(fd: &impl AsFd, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ts = rustix::time::Timespec::try_from(left).unwrap();
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => panic!("poll: {e}"),
        }
    }
}

/// Reaps a process that has become our child (a grandchild reparented to us as subreaper).
pub fn reap_pidfd(fd: &OwnedFd) {
    waitid(WaitId::PidFd(fd.as_fd()), WaitIdOptions::EXITED).unwrap();
}

/// Makes this test process the reaper of orphaned grandchildren, so tree tests can reap them.
pub fn become_subreaper() {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).unwrap();
}

/// A child process that is killed and reaped on drop (bounded: never hangs a failing test).
pub struct ChildGuard {
    pub child: Child,
    pub fd: OwnedFd,
}

impl ChildGuard {
    pub fn spawn(cmd: &mut Command) -> ChildGuard {
        let child = cmd.spawn().unwrap();
        let fd = pidfd(child.id() as i32);
        ChildGuard { child, fd }
    }

    /// `/bin/sleep 1000`: a blocked child.
    pub fn sleeper() -> ChildGuard {
        ChildGuard::spawn(Command::new("/bin/sleep").arg("1000"))
    }

    /// `sh` that waits for a line on stdin, then forks two sleepers and prints "ready": the
    /// caller moves it into a cgroup first, so the whole tree starts inside.
    pub fn tree() -> ChildGuard {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "read x; /bin/sleep 1000 & /bin/sleep 1000 & echo ready; wait"]);
        ChildGuard::spawn(cmd.stdin(Stdio::piped()).stdout(Stdio::piped()))
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// For `tree()`: lets it fork and waits (bounded) until it says it has.
    pub fn start_tree(&mut self) {
        self.child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
        let out = self.child.stdout.as_mut().unwrap();
        assert!(wait_readable(out, Duration::from_secs(5)), "the tree did not start");
        let mut buf = [0u8; 16];
        let n = out.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ready\n");
    }

    /// Waits (bounded) for the child to exit and reaps it.
    pub fn reap(&mut self, timeout: Duration) -> std::process::ExitStatus {
        assert!(exits_within(&self.fd, timeout), "child {} did not exit", self.pid());
        self.child.wait().unwrap()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // Our own unreaped child: its pid cannot have been recycled.
        let _ = self.child.kill();
        if exits_within(&self.fd, Duration::from_secs(2)) {
            let _ = self.child.wait();
        } else {
            eprintln!("child {} did not die within 2 s; left unreaped", self.pid());
        }
    }
}
