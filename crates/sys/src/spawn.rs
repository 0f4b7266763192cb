//! Spawning a child the way a supervisor needs it: `clone3` with `CLONE_PIDFD` (and optionally
//! `CLONE_INTO_CGROUP`, `CLONE_NEWPID`), a clean signal mask and dispositions in the child, its
//! own process group or session, then `execvp`.
//!
//! Why not `std::process::Command`: it passes the parent's blocked signal mask to the child (a
//! supervisor blocks the signals it forwards before spawn), it cannot place the child in a
//! cgroup or a new PID namespace atomically, and it gives no pidfd on stable Rust. Here the pidfd
//! comes from the same syscall that creates the child, so no one can reap (and recycle) the PID
//! between creation and the moment the caller holds a handle to it.
//!
//! Everything the child runs between `clone3` and `execvp` is async-signal-safe (the caller may
//! be multi-threaded): plain syscalls on memory prepared by the parent, no allocation, no lock.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::signal::Signal;

use crate::clone3::{CLONE_PIDFD, CloneArgs};
const CLONE_NEWPID: u64 = 0x2000_0000;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// How the child is placed before it execs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    /// Stay in the parent's process group and session.
    #[default]
    Inherit,
    /// `setpgid(0, 0)`: a new process group whose id is the child's pid.
    NewGroup,
    /// `setsid()`: a new session and group (no controlling terminal).
    NewSession,
}

/// What to spawn and how. Prepared in the parent: the child only reads it.
#[derive(Debug)]
pub struct SpawnRequest<'a> {
    /// The program, searched in `PATH` by `execvp` when it has no slash.
    pub program: &'a CStr,
    /// The full argument vector, `argv[0]` included.
    pub argv: &'a [CString],
    /// Process group or session placement.
    pub grouping: Grouping,
    /// A cgroup v2 directory fd: the child starts inside it (`CLONE_INTO_CGROUP`).
    pub cgroup_dir: Option<BorrowedFd<'a>>,
    /// A `cgroup.procs` fd opened for writing: the child writes itself into it before exec.
    /// The fallback when `CLONE_INTO_CGROUP` is refused (older kernels, seccomp).
    pub cgroup_procs: Option<BorrowedFd<'a>>,
    /// Make the child PID 1 of a new PID namespace (`CLONE_NEWPID`; needs `CAP_SYS_ADMIN`).
    pub new_pid_namespace: bool,
    /// Signals whose disposition the child resets to `SIG_DFL` before exec (an inherited
    /// `SIG_IGN` survives exec; handlers do not).
    pub reset_signals: &'a [Signal],
    /// Reset EVERY signal (1..=64, real-time and glibc-internal ones included) to `SIG_DFL` in
    /// the child, so it starts with no inherited `SIG_IGN` at all (`SigIgn: 0` in /proc).
    pub reset_all_signals: bool,
    /// `PR_SET_PDEATHSIG(SIGKILL)` in the child, re-checking the parent afterwards.
    pub die_with_parent: bool,
}

/// A running child: its pid (for display and /proc only) and the pidfd that names it for good.
#[derive(Debug)]
pub struct Spawned {
    /// The child's pid in the caller's PID namespace. Never signal by this number: use `pidfd`.
    pub pid: i32,
    /// A pidfd for the child, from `CLONE_PIDFD` (or `pidfd_open` in the fork fallback).
    pub pidfd: OwnedFd,
}

/// Why a spawn failed.
#[derive(Debug)]
pub enum SpawnError {
    /// `clone3`/`fork` or a parent-side preparation failed.
    Clone(io::Error),
    /// The child was created but `execvp` (or a pre-exec step) failed with this errno; the child
    /// has exited and was reaped.
    Exec {
        /// Which pre-exec step failed: "exec", "setpgid", "setsid", "cgroup", "sigmask".
        step: &'static str,
        /// The errno it failed with.
        error: io::Error,
    },
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpawnError::Clone(e) => write!(f, "cannot create the child process: {e}"),
            SpawnError::Exec { step, error } => write!(f, "child failed at {step}: {error}"),
        }
    }
}

impl std::error::Error for SpawnError {}

const STEPS: [&str; 6] = ["exec", "setpgid", "setsid", "cgroup", "sigmask", "pdeathsig"];

/// Spawns the child described by `req` and returns once it has exec'd (or failed to).
///
/// The child: places itself (group/session, cgroup fallback), resets `req.reset_signals` to
/// `SIG_DFL`, sets an EMPTY signal mask (the parent's blocked set must not leak: a child with
/// SIGTERM blocked cannot be stopped gracefully), then `execvp`. A close-on-exec pipe reports a
/// pre-exec failure back; EOF means exec succeeded, so when this returns `Ok` the child's
/// `setpgid` has happened and signalling its group is meaningful.
pub fn spawn(req: &SpawnRequest<'_>) -> Result<Spawned, SpawnError> {
    let mut argv: Vec<*const libc::c_char> = req.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let (rd, wr) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| SpawnError::Clone(e.into()))?;
    let parent_pid = rustix::process::getpid().as_raw_nonzero().get();

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
    // The child only runs `child_after_clone`, which makes async-signal-safe syscalls and never
    // returns. `args` is a correctly sized clone_args that lives across the call.
    let ret = unsafe {
        libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>())
    };
    let pid = if ret == 0 {
        child_after_clone(req, &argv, wr.as_raw_fd(), parent_pid)
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
        None => fork_fallback(req, &argv, wr.as_raw_fd(), parent_pid)?,
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
    let step = STEPS[usize::from(buf[0]).min(STEPS.len() - 1)];
    let errno = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
    // The child _exits right after writing: reap it so no zombie is left (bounded: it has
    // nothing left to do).
    let _ = nix::sys::wait::waitid(
        nix::sys::wait::Id::PIDFd(std::os::fd::AsFd::as_fd(&pidfd)),
        nix::sys::wait::WaitPidFlag::WEXITED,
    );
    Err(SpawnError::Exec { step, error: io::Error::from_raw_os_error(errno) })
}

/// `fork` when `clone3` is unavailable (ENOSYS, or EPERM from a seccomp filter), then
/// `pidfd_open`.
fn fork_fallback(
    req: &SpawnRequest<'_>,
    argv: &[*const libc::c_char],
    err_fd: RawFd,
    parent_pid: i32,
) -> Result<(i32, OwnedFd), SpawnError> {
    // SAFETY: the child branch only runs `child_after_clone` (async-signal-safe, never returns).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        child_after_clone(req, argv, err_fd, parent_pid);
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

/// Runs in the child between clone and exec. Async-signal-safe only; never returns.
fn child_after_clone(
    req: &SpawnRequest<'_>,
    argv: &[*const libc::c_char],
    err_fd: RawFd,
    parent_pid: i32,
) -> ! {
    let fail = |step: u8| -> ! {
        // SAFETY: `__errno_location` is the thread's errno slot, valid in the child.
        let errno = unsafe { *libc::__errno_location() };
        let mut msg = [0u8; 8];
        msg[0] = step;
        msg[4..].copy_from_slice(&errno.to_ne_bytes());
        // SAFETY: write(2) and _exit(2) are async-signal-safe; `msg` is a local buffer.
        unsafe {
            libc::write(err_fd, msg.as_ptr().cast(), msg.len());
            libc::_exit(127)
        }
    };
    // SAFETY: each call is a plain async-signal-safe syscall on values prepared by
    // the parent before clone; no allocation, no lock, no unwinding.
    unsafe {
        match req.grouping {
            Grouping::Inherit => {}
            Grouping::NewGroup => {
                if libc::setpgid(0, 0) != 0 {
                    fail(1)
                }
            }
            Grouping::NewSession => {
                if libc::setsid() < 0 {
                    fail(2)
                }
            }
        }
        if let Some(procs) = req.cgroup_procs {
            // Writing "0" to cgroup.procs moves the writer itself.
            if libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                fail(3)
            }
        }
        if req.die_with_parent {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                fail(5)
            }
            // P1: the parent may have died before the prctl; in a new PID namespace getppid()
            // is 0 (the parent is outside), so only check when it can be compared.
            let ppid = libc::getppid();
            if !req.new_pid_namespace && ppid != parent_pid {
                libc::_exit(127)
            }
        }
        // Dispositions first, mask second: once unblocked, a signal must meet SIG_DFL.
        for sig in req.reset_signals {
            libc::signal(*sig as libc::c_int, libc::SIG_DFL);
        }
        if req.reset_all_signals {
            // Raw rt_sigaction: glibc's wrapper refuses its internal signals 32 and 33, which a
            // parent may have inherited as ignored. Kernel struct: handler, flags, restorer, mask
            // (all zero = SIG_DFL). SIGKILL/SIGSTOP fail with EINVAL, harmlessly.
            let act = [0u64; 4];
            for sig in 1..=64 {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    act.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    8usize,
                );
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        if libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
            fail(4)
        }
        libc::execvp(req.program.as_ptr(), argv.as_ptr());
        fail(0)
    }
}

/// Sets `sig`'s disposition to `SIG_DFL` in this process (`sigaction(2)`).
///
/// The supervisor does this for SIGCHLD at start: an inherited `SIG_IGN` for SIGCHLD makes the
/// kernel reap children itself, so their status would be lost (Z2's cousin).
pub fn reset_to_default(sig: Signal) -> io::Result<()> {
    // SAFETY: installing SIG_DFL runs no user code in signal context; it only changes the
    // process-wide disposition, which the caller documents.
    let r = unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl) };
    r.map(|_| ()).map_err(io::Error::from)
}
