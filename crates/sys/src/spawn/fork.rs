//! The fork style: `clone3` without `CLONE_VM` (then plain `fork` where `clone3` is refused),
//! for a child that must start in a cgroup (`CLONE_INTO_CGROUP`) or when the vfork style is
//! refused. Its own file because the child here has a copy-on-write copy of the parent and
//! reports its failure over a close-on-exec pipe instead of shared memory.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::child::{Parent, child_pre_exec, reap_failed};
use super::request::{SpawnError, SpawnRequest, Spawned};
use crate::clone3::{CLONE_PIDFD, CloneArgs};

const CLONE_NEWPID: u64 = 0x2000_0000;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Fork style: `clone3` without `CLONE_VM` (then `fork`), a close-on-exec pipe for failures.
pub(super) fn spawn_forked(
    req: &SpawnRequest<'_>,
    argv: &[*const libc::c_char],
    parent_pid: Parent,
) -> Result<Spawned, SpawnError> {
    let (rd, wr) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| SpawnError::Clone(e.into()))?;
    let mut pidfd: RawFd = -1;
    let mut flags = CLONE_PIDFD;
    if req.new_pid_namespace {
        flags |= CLONE_NEWPID;
    }
    if req.cgroup_dir.is_some() {
        flags |= CLONE_INTO_CGROUP;
    }
    let args = CloneArgs {
        flags,
        pidfd: &mut pidfd as *mut RawFd as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: req.cgroup_dir.map_or(0, |fd| fd.as_raw_fd() as u64),
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without CLONE_VM behaves like fork: the child gets a copy-on-write copy of
    // this address space (so `args`, `argv`, `req` stay valid in it) and returns here with 0.
    // The child only runs `child_after_fork`, which makes async-signal-safe syscalls and never
    // returns. `args` is a correctly sized clone_args that lives across the call.
    let ret = unsafe {
        libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>())
    };
    let pid = if ret == 0 {
        child_after_fork(req, argv, wr.as_raw_fd(), parent_pid)
    } else if ret > 0 {
        // SAFETY: CLONE_PIDFD made the kernel store a fresh pidfd (owned by nobody else) in
        // `pidfd` when clone3 succeeded.
        let fd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        Some((ret as i32, fd))
    } else {
        let err = io::Error::last_os_error();
        let unsupported = matches!(err.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM))
            && !req.new_pid_namespace
            && req.cgroup_dir.is_none();
        if !unsupported {
            return Err(SpawnError::Clone(err));
        }
        None
    };
    let (pid, pidfd) = match pid {
        Some(p) => p,
        None => fork_fallback(req, argv, wr.as_raw_fd(), parent_pid)?,
    };
    drop(wr);
    let mut buf = [0u8; 8];
    let mut got = 0;
    while got < buf.len() {
        match rustix::io::read(&rd, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(SpawnError::Clone(e.into())),
        }
    }
    if got == 0 {
        return Ok(Spawned { pid, pidfd });
    }
    let errno = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
    Err(reap_failed(&pidfd, buf[0], errno))
}

/// `fork` when `clone3` is unavailable (ENOSYS, or EPERM from a seccomp filter), then
/// `pidfd_open`.
fn fork_fallback(
    req: &SpawnRequest<'_>,
    argv: &[*const libc::c_char],
    err_fd: RawFd,
    parent_pid: Parent,
) -> Result<(i32, OwnedFd), SpawnError> {
    // SAFETY: the child branch only runs `child_after_fork` (async-signal-safe, never returns).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        child_after_fork(req, argv, err_fd, parent_pid);
    }
    if pid < 0 {
        return Err(SpawnError::Clone(io::Error::last_os_error()));
    }
    // Safe against PID reuse: the child is ours and is only reaped by a wait call of this
    // process; the supervisor's single thread has not waited yet, so `pid` still names our child
    // (at worst a zombie) here. An embedding program must not run waitpid(-1) on other threads.
    let pid_nz = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| SpawnError::Clone(io::Error::other("fork returned pid 0 in the parent")))?;
    let fd = rustix::process::pidfd_open(pid_nz, rustix::process::PidfdFlags::empty())
        .map_err(|e| SpawnError::Clone(e.into()))?;
    Ok((pid, fd))
}

/// The fork-style child: runs the pre-exec steps, reports a failure on `err_fd`. Never returns.
fn child_after_fork(
    req: &SpawnRequest<'_>,
    argv: &[*const libc::c_char],
    err_fd: RawFd,
    parent_pid: Parent,
) -> ! {
    let (step, errno) = child_pre_exec(req, argv, parent_pid, false);
    let mut msg = [0u8; 8];
    msg[0] = step;
    msg[4..].copy_from_slice(&errno.to_ne_bytes());
    // SAFETY: write(2) and _exit(2) are async-signal-safe; `msg` is a local buffer.
    unsafe {
        libc::write(err_fd, msg.as_ptr().cast(), msg.len());
        libc::_exit(127)
    }
}
