//! `clone3(2)` with `set_tid`: create a child with an exact PID (the sandbox's second
//! PID-recycling mechanism). Neither rustix nor nix wraps `clone3`, so this is a raw
//! `libc::syscall`.
//!
//! `set_tid` (Linux 5.5+) asks for a specific PID in the caller's PID namespace; it needs
//! `CAP_SYS_ADMIN` in the user namespace that owns that PID namespace (true for root and for the
//! sandbox's PID 1 inside its own user namespace). A busy PID fails with `EEXIST`: the kernel
//! never silently hands out another one (unlike `ns_last_pid`).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use crate::ns::{Forked, child_body, ensure_single_threaded};

/// `struct clone_args` of `clone3(2)` (uapi `linux/sched.h`, `CLONE_ARGS_SIZE_VER2`, 88 bytes).
/// Shared by every clone3 caller of this crate ([`crate::spawn`] too).
#[repr(C)]
#[derive(Default)]
pub(crate) struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

pub(crate) const CLONE_PIDFD: u64 = 0x1000;

/// Like [`crate::ns::fork_run`], through `clone3(CLONE_PIDFD)` and, with `set_tid: Some(p)`,
/// with the child's PID forced to `p` (in the caller's PID namespace).
///
/// Errors: `EEXIST` when `p` is in use, `EPERM` without `CAP_SYS_ADMIN` over the PID namespace,
/// `EINVAL` when `p` is out of range, `ENOSYS` before Linux 5.3 (5.5 for `set_tid`). Refuses
/// (nothing created) when the process has more than one thread. The pidfd comes from the same
/// syscall that creates the child, so it can never name another process.
///
/// Note: glibc's `fork` also refreshes the child's cached thread id (`CLONE_CHILD_SETTID`), a
/// raw `clone3` cannot; Rust's std does not read that cache, and the closure should stay small
/// (read a pipe, `_exit`), as the sandbox's victims do.
pub fn clone3_run<F: FnOnce() -> i32>(set_tid: Option<i32>, f: F) -> io::Result<Forked> {
    clone3_run_inner(0, set_tid, f)
}

/// Like [`crate::ns::fork_run`], with the child in new namespaces: `namespaces` may hold only
/// `CLONE_NEWPID`, `CLONE_NEWNS`, `CLONE_NEWUTS`, `CLONE_NEWIPC` and `CLONE_NEWNET` (anything
/// else is `EINVAL`, nothing created). With `CLONE_NEWPID` the child is PID 1 of a fresh PID
/// namespace, and this can be called again and again from the same process: unlike
/// `unshare(CLONE_NEWPID)`, it does not change the caller's namespace for later children.
///
/// Needs `CAP_SYS_ADMIN` over the caller's user namespace. Refuses (nothing created) when the
/// process has more than one thread. Like [`clone3_run`], the child keeps glibc's cached
/// thread id of the caller (a raw `clone3` cannot refresh it): Rust's std does not read it, but
/// the closure must not rely on glibc features that do (robust or priority-inheriting mutexes,
/// `pthread_kill` of itself).
pub fn clone3_run_in<F: FnOnce() -> i32>(
    namespaces: nix::sched::CloneFlags,
    f: F,
) -> io::Result<Forked> {
    use nix::sched::CloneFlags as C;
    let allowed =
        C::CLONE_NEWPID | C::CLONE_NEWNS | C::CLONE_NEWUTS | C::CLONE_NEWIPC | C::CLONE_NEWNET;
    if !allowed.contains(namespaces) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    clone3_run_inner(namespaces.bits() as u32 as u64, None, f)
}

fn clone3_run_inner<F: FnOnce() -> i32>(
    extra_flags: u64,
    set_tid: Option<i32>,
    f: F,
) -> io::Result<Forked> {
    ensure_single_threaded("clone3")?;
    let tid: [libc::pid_t; 1] = [set_tid.unwrap_or(0)];
    let mut pidfd: RawFd = -1;
    let args = CloneArgs {
        flags: CLONE_PIDFD | extra_flags,
        pidfd: &mut pidfd as *mut RawFd as u64,
        exit_signal: libc::SIGCHLD as u64,
        set_tid: if set_tid.is_some() { tid.as_ptr() as u64 } else { 0 },
        set_tid_size: u64::from(set_tid.is_some()),
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without CLONE_VM behaves like fork: the child gets a copy-on-write copy of
    // this single-threaded process (checked above) and returns here with 0, then runs only
    // `child_body`, which never returns. `args`, `tid` and `pidfd` are live, correctly sized
    // and aligned for the whole call.
    let ret = unsafe {
        libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>())
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    if ret == 0 {
        child_body(f);
    }
    // SAFETY: CLONE_PIDFD made the kernel store a fresh pidfd, owned by nobody else, in `pidfd`
    // when clone3 succeeded.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok(Forked { pid: ret as i32, pidfd })
}
