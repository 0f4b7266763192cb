//! What the child runs between the clone and `execvp`, in both spawn styles: placement, the
//! parent-death signal and its P1 check, dispositions, mask, exec. Its own file because every
//! line here is async-signal-safe code running in a process that may share the parent's memory:
//! it reads the request, writes nothing but its own stack and `errno`, and reports a failed step
//! by index (and the parent turns it into an error, [`reap_failed`]).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::request::{Grouping, SpawnError, SpawnRequest};

pub(super) const STEPS: [&str; 8] =
    ["exec", "setpgid", "setsid", "cgroup", "sigmask", "pdeathsig", "stdout", "stderr"];

/// What the child knows of its parent, to catch a parent that died before the child's
/// `PR_SET_PDEATHSIG` (P1): its pid, and with a new PID namespace (where `getppid()` is 0, so
/// the pid cannot be compared) both ends of a close-on-exec "lifeline" pipe whose write end
/// only the parent keeps. The kernel closes a dying process's files before it reparents its
/// children and sends their death signals, so a child whose prctl came too late for the signal
/// finds the pipe hung up.
#[derive(Clone, Copy)]
pub(super) struct Parent {
    pub(super) pid: i32,
    /// Read end of the lifeline, or -1.
    pub(super) lifeline_read: RawFd,
    /// The child's copy of the write end (closed in the child before it looks), or -1.
    pub(super) lifeline_write: RawFd,
}

/// Reaps a child that reported a pre-exec failure (it `_exit`s right after reporting, so this
/// returns at once) and turns the report into an error.
pub(super) fn reap_failed(pidfd: &OwnedFd, step: u8, errno: i32) -> SpawnError {
    let _ = nix::sys::wait::waitid(
        nix::sys::wait::Id::PIDFd(std::os::fd::AsFd::as_fd(pidfd)),
        nix::sys::wait::WaitPidFlag::WEXITED,
    );
    let step = STEPS[usize::from(step).min(STEPS.len() - 1)];
    SpawnError::Exec { step, error: io::Error::from_raw_os_error(errno) }
}

/// Runs in the child between clone and exec: placement, dispositions, mask, `execvp`. Returns
/// only on failure, with the failed step (an index in [`STEPS`]) and errno. Async-signal-safe,
/// no allocation, writes nothing outside its own stack frame but `errno` (in a vfork child, the
/// suspended parent thread's slot).
///
/// `vforked`: the child runs on the parent's memory with every signal blocked (see
/// `spawn_vforked`), so every caught signal is reset to `SIG_DFL` before the mask opens: a
/// handler of the parent must not run here.
pub(super) fn child_pre_exec(
    req: &SpawnRequest<'_>,
    argv: &[*const libc::c_char],
    parent: Parent,
    vforked: bool,
) -> (u8, i32) {
    // SAFETY: `__errno_location` is the errno slot of the TLS the child runs on (its own after
    // fork; the suspended parent thread's in a vfork child), valid and readable.
    let errno = || unsafe { *libc::__errno_location() };
    if let Some(hook) = req.child_hook {
        hook();
    }
    // SAFETY: each call is a plain async-signal-safe syscall on values prepared by
    // the parent before clone; no allocation, no lock, no unwinding.
    unsafe {
        match req.grouping {
            Grouping::Inherit => {}
            Grouping::NewGroup => {
                if libc::setpgid(0, 0) != 0 {
                    return (1, errno());
                }
            }
            Grouping::NewSession => {
                if libc::setsid() < 0 {
                    return (2, errno());
                }
            }
        }
        // dup2 onto 1 and 2 clears close-on-exec there; the caller's pipe ends stay
        // close-on-exec, so only fds 1 and 2 reach the program.
        if let Some(out) = req.stdout
            && libc::dup2(out.as_raw_fd(), libc::STDOUT_FILENO) < 0
        {
            return (6, errno());
        }
        if let Some(err) = req.stderr
            && libc::dup2(err.as_raw_fd(), libc::STDERR_FILENO) < 0
        {
            return (7, errno());
        }
        if let Some(procs) = req.cgroup_procs {
            // Writing "0" to cgroup.procs moves the writer itself.
            if libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                return (3, errno());
            }
        }
        if req.die_with_parent {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return (5, errno());
            }
            // P1: the parent may have died before the prctl. In a new PID namespace getppid()
            // is 0 (the parent is outside): there the lifeline tells, once our own copy of its
            // write end is closed (this child's fd table is its own, even in the vfork style).
            let ppid = libc::getppid();
            if !req.new_pid_namespace && ppid != parent.pid {
                libc::_exit(127)
            }
            if parent.lifeline_read >= 0 {
                libc::close(parent.lifeline_write);
                let mut fds =
                    libc::pollfd { fd: parent.lifeline_read, events: libc::POLLIN, revents: 0 };
                if libc::poll(&mut fds, 1, 0) > 0 && fds.revents & libc::POLLHUP != 0 {
                    libc::_exit(127)
                }
            }
        }
        // Dispositions first, mask second: once unblocked, a signal must meet SIG_DFL. With
        // `reset_all_signals` the loop below resets these too: no second call for them.
        if !req.reset_all_signals {
            for sig in req.reset_signals {
                libc::signal(*sig as libc::c_int, libc::SIG_DFL);
            }
        }
        // Raw rt_sigaction: glibc's wrapper refuses its internal signals 32 and 33, which a
        // parent may have inherited as ignored. Kernel struct: handler, flags, restorer, mask
        // (all zero = SIG_DFL). SIGKILL and SIGSTOP are skipped: their disposition is always
        // SIG_DFL, and sigaction(2) refuses them (EINVAL).
        let dfl = [0u64; 4];
        for sig in (1..=64).filter(|&s| s != libc::SIGKILL && s != libc::SIGSTOP) {
            let mut old = [0u64; 4];
            let reset = if req.reset_all_signals {
                true
            } else if vforked {
                // Read first: only a handler (not SIG_DFL 0, not SIG_IGN 1) needs resetting.
                let got = libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    std::ptr::null::<u64>(),
                    old.as_mut_ptr(),
                    8usize,
                );
                got == 0 && old[0] > 1
            } else {
                false
            };
            if reset {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    dfl.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    8usize,
                );
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        if libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
            return (4, errno());
        }
        libc::execvp(req.program.as_ptr(), argv.as_ptr());
        (0, errno())
    }
}
