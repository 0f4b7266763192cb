//! Spawning a child the way a supervisor needs it: a pidfd from the same syscall that creates
//! the child (`CLONE_PIDFD`; optionally `CLONE_INTO_CGROUP`, `CLONE_NEWPID`), a clean signal mask
//! and dispositions in the child, its own process group or session, then `execvp`.
//!
//! Why not `std::process::Command`: it passes the parent's blocked signal mask to the child (a
//! supervisor blocks the signals it forwards before spawn), it cannot place the child in a
//! cgroup or a new PID namespace atomically, and it gives no pidfd on stable Rust. Here the pidfd
//! comes from the same syscall that creates the child, so no one can reap (and recycle) the PID
//! between creation and the moment the caller holds a handle to it.
//!
//! Two ways to create the child:
//! - vfork style (`clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)`, as glibc's `posix_spawn`), the
//!   default: the child borrows the parent's memory on a stack of its own until it execs, so no
//!   page table is copied and neither side takes copy-on-write faults. On this project's VMs a
//!   page fault costs microseconds, and a fork-style spawn from a large process costs hundreds.
//! - fork style (`clone3` without `CLONE_VM`), when the child must start in a cgroup
//!   (`CLONE_INTO_CGROUP` exists only in `clone3`, and `clone3` with `CLONE_VM` needs a stack
//!   switch that only assembly can do), or when the vfork style is refused.
//!
//! Everything the child runs between the clone and `execvp` is async-signal-safe (the caller may
//! be multi-threaded): plain syscalls on memory prepared by the parent, no allocation, no lock.
//! In the vfork style the child shares the parent's memory, so it also writes nothing but its
//! own stack, the failure record the parent reads after the child is gone or has exec'd, and
//! `errno` (the parent thread's TLS slot: harmless, the parent is suspended until then and
//! reads nothing from it).

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
    /// The child's standard output: this fd is `dup2`'d onto fd 1 before exec (a pipe the
    /// caller reads, for a supervisor that captures output). `None`: inherited.
    pub stdout: Option<BorrowedFd<'a>>,
    /// The child's standard error, like `stdout`, onto fd 2.
    pub stderr: Option<BorrowedFd<'a>>,
    /// Called in the child first, right after the clone, before any pre-exec step: an
    /// instrumentation hook (the lab's named point where a parent may die before the child's
    /// `PR_SET_PDEATHSIG`). It runs on the child's stack with every signal blocked and, in the
    /// vfork style, on the parent's memory while the parent thread is suspended: it must be
    /// async-signal-safe unless the caller is single-threaded.
    pub child_hook: Option<fn()>,
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

const STEPS: [&str; 8] =
    ["exec", "setpgid", "setsid", "cgroup", "sigmask", "pdeathsig", "stdout", "stderr"];

/// What the child knows of its parent, to catch a parent that died before the child's
/// `PR_SET_PDEATHSIG` (P1): its pid, and with a new PID namespace (where `getppid()` is 0, so
/// the pid cannot be compared) both ends of a close-on-exec "lifeline" pipe whose write end
/// only the parent keeps. The kernel closes a dying process's files before it reparents its
/// children and sends their death signals, so a child whose prctl came too late for the signal
/// finds the pipe hung up.
#[derive(Clone, Copy)]
struct Parent {
    pid: i32,
    /// Read end of the lifeline, or -1.
    lifeline_read: RawFd,
    /// The child's copy of the write end (closed in the child before it looks), or -1.
    lifeline_write: RawFd,
}

/// Spawns the child described by `req` and returns once it has exec'd (or failed to).
///
/// The child: places itself (group/session, cgroup fallback), resets `req.reset_signals` to
/// `SIG_DFL`, sets an EMPTY signal mask (the parent's blocked set must not leak: a child with
/// SIGTERM blocked cannot be stopped gracefully), then `execvp`. A pre-exec failure comes back
/// as [`SpawnError::Exec`]; when this returns `Ok` the child has exec'd, so its `setpgid` has
/// happened and signalling its group is meaningful.
///
/// Vfork style unless `req.cgroup_dir` is set (see the module doc); a kernel or seccomp filter
/// that refuses it (ENOSYS, EPERM, EINVAL) gets the fork style instead.
pub fn spawn(req: &SpawnRequest<'_>) -> Result<Spawned, SpawnError> {
    let mut argv: Vec<*const libc::c_char> = req.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let pid = rustix::process::getpid().as_raw_nonzero().get();
    // Found by `racelab explore O1 --design reference`: with a new PID namespace the parent
    // could die between the clone and the child's prctl and leave the child (and its tree)
    // running. Held until the child exec'd or failed: then its check is over.
    let lifeline = if req.die_with_parent && req.new_pid_namespace {
        Some(
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| SpawnError::Clone(e.into()))?,
        )
    } else {
        None
    };
    let parent_pid = Parent {
        pid,
        lifeline_read: lifeline.as_ref().map_or(-1, |(r, _)| r.as_raw_fd()),
        lifeline_write: lifeline.as_ref().map_or(-1, |(_, w)| w.as_raw_fd()),
    };
    if req.cgroup_dir.is_none() {
        match spawn_vforked(req, &argv, parent_pid) {
            Err(SpawnError::Clone(e))
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOSYS) | Some(libc::EPERM) | Some(libc::EINVAL)
                ) => {}
            done => return done,
        }
    }
    spawn_forked(req, &argv, parent_pid)
}

/// What the vfork-style child shares with its parent: its inputs, and where it leaves the
/// failed step and errno. The parent reads `failed` only after `clone` returned, which with
/// `CLONE_VFORK` is after the child exec'd or exited.
#[repr(C)]
struct VforkShared<'a, 'r> {
    req: &'a SpawnRequest<'r>,
    argv: *const *const libc::c_char,
    parent_pid: Parent,
    /// `NO_FAILURE`, or the index in [`STEPS`] of the step that failed.
    failed: u8,
    errno: i32,
}

const NO_FAILURE: u8 = u8::MAX;

/// Stack for the vfork-style child: what `child_pre_exec` and `execvp` need (`execvp` copies
/// PATH entries and, for a script, argv onto the stack), with a wide margin.
fn vfork_stack_size(argc: usize, hook: bool) -> usize {
    let path = std::env::var_os("PATH").map_or(0, |p| p.len());
    // A child hook is ordinary code (the lab's points, which may talk to the lab): room for it.
    let hook_room = if hook { 256 * 1024 } else { 0 };
    let want = 64 * 1024 + 2 * path + 16 * (argc + 2) + hook_room;
    want.next_multiple_of(4096)
}

/// Vfork style: `clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)` on a private stack.
fn spawn_vforked(
    req: &SpawnRequest<'_>,
    argv: &[*const libc::c_char],
    parent_pid: Parent,
) -> Result<Spawned, SpawnError> {
    let size = vfork_stack_size(argv.len(), req.child_hook.is_some());
    let guard = 4096;
    // SAFETY: a fresh anonymous private mapping at an address of the kernel's choosing; nothing
    // aliases it. The lowest page stays PROT_NONE as a guard against a stack overflow.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size + guard,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(SpawnError::Clone(io::Error::last_os_error()));
    }
    let unmap = |base: *mut libc::c_void| {
        // SAFETY: `base` is the mapping made above, of this length, no longer used by anyone
        // (the child has exec'd or exited: CLONE_VFORK returned).
        unsafe { libc::munmap(base, size + guard) };
    };
    // SAFETY: `base + guard .. base + guard + size` lies inside the mapping made above.
    let stack_ok = unsafe {
        libc::mprotect(
            base.cast::<u8>().add(guard).cast(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
        )
    } == 0;
    if !stack_ok {
        let e = io::Error::last_os_error();
        unmap(base);
        return Err(SpawnError::Clone(e));
    }
    // SAFETY: one past the end of the mapping: the initial stack pointer (stacks grow down);
    // the mapping's length is a multiple of the page size, so the top is 16-byte aligned.
    let top = unsafe { base.cast::<u8>().add(guard + size) };

    let mut shared =
        VforkShared { req, argv: argv.as_ptr(), parent_pid, failed: NO_FAILURE, errno: 0 };
    let mut flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD;
    if req.new_pid_namespace {
        flags |= libc::CLONE_NEWPID;
    }
    let mut pidfd: libc::c_int = -1;

    // Every signal blocked across the clone: the child runs on our memory, and a handler of
    // ours must never run in it. The child resets handlers to SIG_DFL before it unblocks. Raw
    // rt_sigprocmask, as glibc's posix_spawn does: glibc's pthread_sigmask would leave its
    // internal signals 32 and 33 open.
    let all: u64 = !0;
    let mut old_mask: u64 = 0;
    // SAFETY: rt_sigprocmask with 8-byte kernel sigsets, both local and live for the call.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &all as *const u64,
            &mut old_mask as *mut u64,
            8usize,
        )
    };
    // SAFETY: `vfork_child` runs on the fresh stack `top` with `shared` as its argument and never
    // returns (exec or _exit). CLONE_VFORK suspends this thread until then, so `shared`, `req`,
    // `argv` and the stack outlive the child's use of them. With CLONE_PIDFD the kernel stores
    // the pidfd in `pidfd` (glibc passes it as the parent_tid argument).
    let ret = unsafe {
        libc::clone(
            vfork_child,
            top.cast(),
            flags,
            (&mut shared as *mut VforkShared<'_, '_>).cast(),
            &mut pidfd as *mut libc::c_int,
        )
    };
    let clone_err = (ret < 0).then(io::Error::last_os_error);
    // SAFETY: restores the mask saved above (same raw call, same sizes).
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &old_mask as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        )
    };
    unmap(base);
    if let Some(e) = clone_err {
        return Err(SpawnError::Clone(e));
    }
    // SAFETY: CLONE_PIDFD made the kernel store a fresh pidfd, owned by nobody else, in `pidfd`.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    // SAFETY: the child is done with `shared` (exec'd or exited); volatile because the writes
    // came from another task the compiler cannot see.
    let (failed, errno) = unsafe {
        (std::ptr::read_volatile(&shared.failed), std::ptr::read_volatile(&shared.errno))
    };
    if failed == NO_FAILURE {
        return Ok(Spawned { pid: ret, pidfd });
    }
    Err(reap_failed(&pidfd, failed, errno))
}

/// The vfork-style child. Never returns.
extern "C" fn vfork_child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `VforkShared`, alive and untouched by the suspended parent
    // until this task execs or exits.
    let shared = unsafe { &mut *arg.cast::<VforkShared<'_, '_>>() };
    // SAFETY: `argv` points to the parent's NUL-terminated pointer array (see `spawn`).
    let argv = unsafe { std::slice::from_raw_parts(shared.argv, shared.req.argv.len() + 1) };
    let (step, errno) = child_pre_exec(shared.req, argv, shared.parent_pid, true);
    // SAFETY: plain stores into the shared record, then _exit (async-signal-safe, no return).
    unsafe {
        std::ptr::write_volatile(&mut shared.errno, errno);
        std::ptr::write_volatile(&mut shared.failed, step);
        libc::_exit(127)
    }
}

/// Reaps a child that reported a pre-exec failure (it `_exit`s right after reporting, so this
/// returns at once) and turns the report into an error.
fn reap_failed(pidfd: &OwnedFd, step: u8, errno: i32) -> SpawnError {
    let _ = nix::sys::wait::waitid(
        nix::sys::wait::Id::PIDFd(std::os::fd::AsFd::as_fd(pidfd)),
        nix::sys::wait::WaitPidFlag::WEXITED,
    );
    let step = STEPS[usize::from(step).min(STEPS.len() - 1)];
    SpawnError::Exec { step, error: io::Error::from_raw_os_error(errno) }
}

/// Fork style: `clone3` without `CLONE_VM` (then `fork`), a close-on-exec pipe for failures.
fn spawn_forked(
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

/// Runs in the child between clone and exec: placement, dispositions, mask, `execvp`. Returns
/// only on failure, with the failed step (an index in [`STEPS`]) and errno. Async-signal-safe,
/// no allocation, writes nothing outside its own stack frame but `errno` (in a vfork child, the
/// suspended parent thread's slot).
///
/// `vforked`: the child runs on the parent's memory with every signal blocked (see
/// `spawn_vforked`), so every caught signal is reset to `SIG_DFL` before the mask opens: a
/// handler of the parent must not run here.
fn child_pre_exec(
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
        // Dispositions first, mask second: once unblocked, a signal must meet SIG_DFL.
        for sig in req.reset_signals {
            libc::signal(*sig as libc::c_int, libc::SIG_DFL);
        }
        // Raw rt_sigaction: glibc's wrapper refuses its internal signals 32 and 33, which a
        // parent may have inherited as ignored. Kernel struct: handler, flags, restorer, mask
        // (all zero = SIG_DFL). SIGKILL/SIGSTOP fail with EINVAL, harmlessly.
        let dfl = [0u64; 4];
        for sig in 1..=64 {
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

/// Makes `cmd`'s child a session leader (`setsid(2)` between fork and exec): a new session
/// and a new process group, both with the child's pid as id (what bazel's process-wrapper does
/// in its child). std's `Command` offers `process_group` but not a session.
pub fn setsid_in_child(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure only calls setsid(2), which is async-signal-safe, and allocates
    // nothing.
    unsafe { cmd.pre_exec(|| rustix::process::setsid().map(|_| ()).map_err(io::Error::from)) };
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn cstrings(args: &[&str]) -> Vec<CString> {
        args.iter().map(|a| CString::new(*a).unwrap()).collect()
    }

    fn request<'a>(argv: &'a [CString], reset: &'a [Signal]) -> SpawnRequest<'a> {
        SpawnRequest {
            program: &argv[0],
            argv,
            grouping: Grouping::NewGroup,
            cgroup_dir: None,
            cgroup_procs: None,
            new_pid_namespace: false,
            reset_signals: reset,
            reset_all_signals: false,
            die_with_parent: false,
            stdout: None,
            stderr: None,
            child_hook: None,
        }
    }

    fn exit_code(s: &Spawned) -> i32 {
        let st = nix::sys::wait::waitid(
            nix::sys::wait::Id::PIDFd(s.pidfd.as_fd()),
            nix::sys::wait::WaitPidFlag::WEXITED,
        );
        match st {
            Ok(nix::sys::wait::WaitStatus::Exited(_, c)) => c,
            other => panic!("unexpected status {other:?}"),
        }
    }

    /// The child's blocked-signal mask, read from its own /proc status after exec.
    fn child_sigblk(vforked: bool) -> String {
        let out =
            std::env::temp_dir().join(format!("racelab-spawn-{}-{vforked}", std::process::id()));
        let script = format!("grep SigBlk /proc/self/status > {}", out.display());
        let argv = cstrings(&["/bin/sh", "-c", &script]);
        let req = request(&argv, &[]);
        let pid = rustix::process::getpid().as_raw_nonzero().get();
        let parent = Parent { pid, lifeline_read: -1, lifeline_write: -1 };
        let mut argp: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argp.push(std::ptr::null());
        // SIGTERM blocked in this thread: it must not leak into the child.
        let mut term = nix::sys::signal::SigSet::empty();
        term.add(Signal::SIGTERM);
        let mut old = nix::sys::signal::SigSet::empty();
        nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_BLOCK,
            Some(&term),
            Some(&mut old),
        )
        .unwrap();
        let spawned = if vforked {
            spawn_vforked(&req, &argp, parent)
        } else {
            spawn_forked(&req, &argp, parent)
        };
        nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_SETMASK,
            Some(&old),
            None,
        )
        .unwrap();
        let spawned = spawned.unwrap();
        assert_eq!(exit_code(&spawned), 0);
        let text = std::fs::read_to_string(&out).unwrap();
        let _ = std::fs::remove_file(&out);
        text.trim().to_string()
    }

    #[test]
    fn both_spawn_styles_start_the_child_with_an_empty_signal_mask() {
        for vforked in [true, false] {
            assert_eq!(child_sigblk(vforked), "SigBlk:\t0000000000000000", "vforked: {vforked}");
        }
    }

    #[test]
    fn an_exec_failure_comes_back_as_its_step_and_errno_and_the_child_is_reaped() {
        let argv = cstrings(&["/nonexistent/racelab-program"]);
        let req = request(&argv, &[]);
        match spawn(&req) {
            Err(SpawnError::Exec { step: "exec", error }) => {
                assert_eq!(error.raw_os_error(), Some(libc::ENOENT))
            }
            other => panic!("expected an exec failure, got {other:?}"),
        }
    }

    /// Reads `fd` to EOF (the child and every copy of the write end are gone).
    fn read_all(fd: &OwnedFd) -> String {
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            match rustix::io::read(fd, &mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => panic!("read: {e}"),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn both_spawn_styles_redirect_stdout_and_stderr_onto_the_given_fds() {
        for vforked in [true, false] {
            let (out_r, out_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
            let (err_r, err_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
            let argv = cstrings(&["/bin/sh", "-c", "echo out; echo err >&2"]);
            let mut req = request(&argv, &[]);
            req.stdout = Some(out_w.as_fd());
            req.stderr = Some(err_w.as_fd());
            let parent = Parent {
                pid: rustix::process::getpid().as_raw_nonzero().get(),
                lifeline_read: -1,
                lifeline_write: -1,
            };
            let mut argp: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
            argp.push(std::ptr::null());
            let spawned = if vforked {
                spawn_vforked(&req, &argp, parent)
            } else {
                spawn_forked(&req, &argp, parent)
            }
            .unwrap();
            drop((out_w, err_w));
            assert_eq!(read_all(&out_r), "out\n", "vforked: {vforked}");
            assert_eq!(read_all(&err_r), "err\n", "vforked: {vforked}");
            assert_eq!(exit_code(&spawned), 0);
        }
    }

    static HOOK_RAN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    #[test]
    fn the_child_hook_runs_in_the_vfork_child_on_the_parents_memory() {
        fn hook() {
            // The vfork child shares our memory: the store is visible here afterwards.
            HOOK_RAN.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let argv = cstrings(&["/bin/true"]);
        let mut req = request(&argv, &[]);
        req.child_hook = Some(hook);
        let spawned = spawn(&req).unwrap();
        assert_eq!(exit_code(&spawned), 0);
        assert!(HOOK_RAN.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[test]
    fn a_vfork_spawn_has_exec_d_in_its_own_group_when_it_returns() {
        // The child stops itself and never exits on its own; we kill it by pidfd.
        let argv = cstrings(&["/bin/sh", "-c", "kill -STOP $$"]);
        let spawned = spawn(&request(&argv, &[Signal::SIGPIPE])).unwrap();
        // `spawn` returns after exec, so setpgid(0, 0) has happened: pgrp (field 5) == pid.
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", spawned.pid)).unwrap();
        let after_comm = stat.rsplit_once(')').unwrap().1;
        let pgrp: i32 = after_comm.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert_eq!(pgrp, spawned.pid);
        assert!(stat.contains("(sh)"), "not exec'd yet: {stat}");
        rustix::process::pidfd_send_signal(spawned.pidfd.as_fd(), rustix::process::Signal::KILL)
            .unwrap();
        let st = nix::sys::wait::waitid(
            nix::sys::wait::Id::PIDFd(spawned.pidfd.as_fd()),
            nix::sys::wait::WaitPidFlag::WEXITED,
        );
        assert!(matches!(st, Ok(nix::sys::wait::WaitStatus::Signaled(_, Signal::SIGKILL, _))));
    }
}
