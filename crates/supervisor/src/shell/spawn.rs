//! Starting the child: the argument vector as C strings, the spawn with its fallback when
//! `CLONE_INTO_CGROUP` is refused, and a spawn that failed turned into the machine's event (a
//! program not found or not executable is a report, not an error) or into a typed error.

use std::ffi::{CString, OsStr};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::time::Instant;

use racelab_sys::spawn::{SpawnError, SpawnRequest, spawn};

use super::kernel;
use crate::machine::{Action, Event, Machine, SpawnFailure};
use crate::report::Report;
use crate::{Config, Containment, ErrorKind, SupervisorError};

pub(super) fn cstring(s: &OsStr) -> Result<CString, SupervisorError> {
    CString::new(s.as_bytes()).map_err(|e| {
        SupervisorError::new(
            ErrorKind::InvalidArgument,
            format!("argument {s:?} contains NUL"),
            std::io::Error::other(e),
        )
    })
}

pub(super) fn spawn_with_fallback(
    req: &SpawnRequest<'_>,
    cgroup: Option<&kernel::CgroupLeaf>,
) -> Result<racelab_sys::spawn::Spawned, SpawnError> {
    match (spawn(req), cgroup) {
        // CLONE_INTO_CGROUP refused (old kernel, seccomp): the child joins by writing
        // cgroup.procs itself before exec, so it is inside before it can fork.
        (Err(SpawnError::Clone(e)), Some(cg)) if refused(&e) => {
            let procs = cg.procs_fd().map_err(SpawnError::Clone)?;
            let retry =
                SpawnRequest { cgroup_dir: None, cgroup_procs: Some(procs.as_fd()), ..*req };
            spawn(&retry)
        }
        (r, _) => r,
    }
}

fn refused(e: &std::io::Error) -> bool {
    use nix::errno::Errno;
    [Errno::ENOSYS, Errno::EINVAL, Errno::EPERM, Errno::EOPNOTSUPP]
        .iter()
        .any(|n| e.raw_os_error() == Some(*n as i32))
}

pub(super) fn spawn_failed(
    machine: &mut Machine,
    start: Instant,
    e: SpawnError,
    config: &Config,
) -> Result<Report, SupervisorError> {
    let failure = match e {
        SpawnError::Exec { step: "exec", error } => {
            let msg = error.to_string();
            match error.raw_os_error() {
                Some(n) if n == nix::errno::Errno::ENOENT as i32 => SpawnFailure::NotFound(msg),
                _ => SpawnFailure::CannotExecute(msg),
            }
        }
        SpawnError::Exec { step: "cgroup", error } => {
            return Err(SupervisorError::new(
                ErrorKind::ContainmentUnavailable,
                "join the cgroup before exec",
                error,
            ));
        }
        SpawnError::Exec { step, error } => {
            return Err(SupervisorError::new(
                ErrorKind::Spawn,
                format!("child setup ({step})"),
                error,
            ));
        }
        SpawnError::Clone(error) => {
            let kind = match (config.containment, error.raw_os_error()) {
                (Containment::PidNamespace | Containment::Cgroup, Some(_)) => {
                    ErrorKind::ContainmentUnavailable
                }
                _ => ErrorKind::Spawn,
            };
            return Err(SupervisorError::new(
                kind,
                format!("spawn with containment {:?}", config.containment),
                error,
            ));
        }
    };
    let actions = machine.on(start.elapsed(), Event::SpawnFailed(failure));
    actions
        .into_iter()
        .find_map(|a| match a {
            Action::Finish(r) => Some(*r),
            _ => None,
        })
        .ok_or_else(|| {
            SupervisorError::new(
                ErrorKind::Spawn,
                "spawn failed",
                std::io::Error::other("no report"),
            )
        })
}
