//! The crate's one error type: every variant names the path and the operation that failed.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// What kind of failure an [`Error`] is, for callers that branch on it (skip, fall back, report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A system call on a cgroup file or directory failed (permissions, ESRCH, ...).
    Io,
    /// The kernel lacks the interface (e.g. `cgroup.kill` before Linux 5.14).
    NotSupported,
    /// No cgroup v2 (or v1 freezer) hierarchy is mounted.
    NotMounted,
    /// A cgroup still held processes when it had to be removed.
    Busy,
    /// A bounded wait reached its deadline.
    Timeout,
    /// A kernel file did not have the expected format.
    Parse,
    /// A cgroup name given by the caller is unusable.
    InvalidName,
}

/// An error of racelab-cgroup. Each variant names the path and the operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed.
    #[error("cgroup: {op} {}: {source}", path.display())]
    Io {
        /// The operation, e.g. "write cgroup.procs" or "rmdir".
        op: &'static str,
        /// The file or directory it was applied to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The kernel lacks the interface.
    #[error("cgroup: {op} {}: not supported by this kernel ({why})", path.display())]
    NotSupported {
        /// The operation that needed the interface.
        op: &'static str,
        /// The file that is missing.
        path: PathBuf,
        /// Why we think it is unsupported.
        why: &'static str,
    },
    /// No hierarchy of the wanted kind is mounted.
    #[error("cgroup: no {what} mount found in {}", path.display())]
    NotMounted {
        /// "cgroup2" or "cgroup v1 freezer".
        what: &'static str,
        /// The mount table that was read.
        path: PathBuf,
    },
    /// The cgroup still held processes at the deadline.
    #[error("cgroup: remove {}: still populated at the deadline by pids {pids:?}", path.display())]
    Busy {
        /// The cgroup directory.
        path: PathBuf,
        /// The processes still inside when we gave up (may be empty if they left meanwhile).
        pids: Vec<i32>,
    },
    /// A bounded wait reached its deadline.
    #[error("cgroup: {op} {}: not done after {waited:?} (last seen: {last})", path.display())]
    Timeout {
        /// What was being waited for.
        op: &'static str,
        /// The cgroup directory.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
        /// The last state observed.
        last: String,
    },
    /// A kernel file had an unexpected format.
    #[error("cgroup: parse {}: {detail}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// The caller's name cannot be a cgroup directory name.
    #[error("cgroup: invalid cgroup name {name:?}: {why}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Why it was refused.
        why: &'static str,
    },
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } => ErrorKind::Io,
            Error::NotSupported { .. } => ErrorKind::NotSupported,
            Error::NotMounted { .. } => ErrorKind::NotMounted,
            Error::Busy { .. } => ErrorKind::Busy,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Parse { .. } => ErrorKind::Parse,
            Error::InvalidName { .. } => ErrorKind::InvalidName,
        }
    }

    /// The OS error number behind an [`ErrorKind::Io`] error, if any.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io { op, path: path.into(), source }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
