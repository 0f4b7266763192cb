//! What a spawn is asked for and what it gives back: the request (program, placement,
//! dispositions, streams, the child hook), the spawned child (a pid and its pidfd), and the
//! error. The bottom of `spawn/`: plain data the parent prepares and the child only reads.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use nix::sys::signal::Signal;

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
