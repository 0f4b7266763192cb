//! The crate's error type.

use std::io;

use nix::errno::Errno;
use nix::sys::signal::Signal;

/// What went wrong in a replica's own machinery (not in the program it runs).
#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    /// The command line of a wrapper entry point was malformed.
    #[error("usage: {0}")]
    Usage(String),
    /// The program could not be spawned.
    #[error("cannot spawn {program}: {source}")]
    Spawn {
        /// The program's name as given.
        program: String,
        /// The OS error.
        source: io::Error,
    },
    /// Waiting for a child failed (ECHILD when someone else reaped it).
    #[error("cannot wait for pid {pid}: {source}")]
    Wait {
        /// The child's PID.
        pid: u32,
        /// The OS error.
        source: io::Error,
    },
    /// A signal-state syscall (sigaction, sigprocmask, sigwait, prctl) failed.
    #[error("{what} failed: {errno}")]
    Signal {
        /// Which call.
        what: &'static str,
        /// The errno.
        errno: nix::errno::Errno,
    },
    /// Another OS call (pipe, fcntl, prctl) failed.
    #[error("{what} failed: {source}")]
    Os {
        /// Which call.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A file operation on a wrapper's lockfile failed.
    #[error("lockfile {path}: {source}")]
    Lock {
        /// The lockfile path.
        path: String,
        /// The OS error.
        source: io::Error,
    },
    /// A kill was refused by the guard or failed.
    #[error(transparent)]
    Kill(#[from] KillError),
}

impl LegacyError {
    /// Wraps an errno of a signal-state syscall.
    pub(crate) fn signal(what: &'static str) -> impl FnOnce(nix::errno::Errno) -> Self {
        move |errno| Self::Signal { what, errno }
    }

    /// Wraps the error of another OS call.
    pub(crate) fn os<E: Into<io::Error>>(what: &'static str) -> impl FnOnce(E) -> Self {
        move |e| Self::Os { what, source: e.into() }
    }
}

/// Why [`crate::os::kill`] did not signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KillError {
    /// Outside a sandbox the target was not a live direct child of this process.
    #[error(
        "refused to send {signal} to pid {pid}: not inside a racelab sandbox and not a live child of this process"
    )]
    Refused {
        /// The target PID.
        pid: i32,
        /// The signal that was not sent.
        signal: Signal,
    },
    /// `kill(2)` failed (ESRCH: no such process, EPERM: not ours).
    #[error("kill({pid}, {signal}) failed: {errno}")]
    Os {
        /// The target PID.
        pid: i32,
        /// The signal.
        signal: Signal,
        /// The errno of kill(2).
        errno: Errno,
    },
}
