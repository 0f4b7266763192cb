//! The sandbox's error type: every variant names what was being done and what went wrong.

use std::path::PathBuf;
use std::time::Duration;

/// What kind of failure a [`SandboxError`] is, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The runner executable could not be started.
    Spawn,
    /// An OS call failed.
    Io,
    /// The runner could not build the sandbox (namespaces, mounts, cgroup).
    Setup,
    /// The runner's output did not follow the protocol.
    Protocol,
    /// A PID to recycle is held by a live process.
    PidBusy,
    /// PID forcing produced another PID than the one asked for.
    PidMismatch,
    /// A request that makes no sense (PID out of range, unknown mechanism, ...).
    Invalid,
    /// A bounded wait ran out.
    Deadline,
    /// The process was interrupted (SIGINT, SIGTERM, SIGHUP): no run starts any more.
    Interrupted,
}

/// Why a sandbox operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The runner executable could not be started.
    #[error("cannot start the sandbox runner {runner}: {source}")]
    Spawn {
        /// The runner path that was given.
        runner: PathBuf,
        /// The error from exec.
        source: std::io::Error,
    },
    /// An OS call failed.
    #[error("{what}: {source}")]
    Io {
        /// The operation, with the object it was applied to.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The runner reported that it could not build the sandbox.
    #[error("sandbox setup failed: {message}")]
    Setup {
        /// The runner's reason (e.g. "unshare(CLONE_NEWUSER): EPERM").
        message: String,
        /// The runner's stderr.
        stderr: String,
    },
    /// The runner's output did not follow the protocol.
    #[error("sandbox runner protocol error: {message}; stderr: {stderr}")]
    Protocol {
        /// What was wrong with the output.
        message: String,
        /// The runner's stderr.
        stderr: String,
    },
    /// The PID to recycle is in use: the kernel would silently hand out another one.
    #[error("pid {pid} is busy: held by {holder}")]
    PidBusy {
        /// The PID that was asked for.
        pid: i32,
        /// Who holds it, from /proc/PID/stat ("(comm) state S ppid N"), or "unknown".
        holder: String,
    },
    /// PID forcing kept producing another PID (another process raced for it).
    #[error("wanted pid {wanted}, got {got} after {attempts} attempts")]
    PidMismatch {
        /// The PID that was asked for.
        wanted: i32,
        /// The PID the last attempt produced.
        got: i32,
        /// How many attempts were made.
        attempts: u32,
    },
    /// A request that makes no sense.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A bounded wait ran out.
    #[error("{what} did not finish within {after:?}")]
    Deadline {
        /// What was waited for.
        what: String,
        /// The bound.
        after: Duration,
    },
    /// This process was interrupted ([`crate::interrupt`]): it ends its runs and starts none.
    #[error("interrupted by signal {signal}: no new sandbox run starts")]
    Interrupted {
        /// The signal's number.
        signal: i32,
    },
}

impl SandboxError {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SandboxError::Spawn { .. } => ErrorKind::Spawn,
            SandboxError::Io { .. } => ErrorKind::Io,
            SandboxError::Setup { .. } => ErrorKind::Setup,
            SandboxError::Protocol { .. } => ErrorKind::Protocol,
            SandboxError::PidBusy { .. } => ErrorKind::PidBusy,
            SandboxError::PidMismatch { .. } => ErrorKind::PidMismatch,
            SandboxError::Invalid(_) => ErrorKind::Invalid,
            SandboxError::Deadline { .. } => ErrorKind::Deadline,
            SandboxError::Interrupted { .. } => ErrorKind::Interrupted,
        }
    }

    /// An [`SandboxError::Io`] for `what`.
    pub(crate) fn io(what: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        SandboxError::Io { what: what.into(), source: source.into() }
    }
}
