//! `group_kill_after_reap`: wait for the child (which reaps it), then SIGKILL its process group
//! by the child's PID.
//!
//! Models bazelbuild/bazel `src/main/tools/process-wrapper-legacy.cc` (issue #11910,
//! "process-wrapper can kill random process group if PID is reused", open):
//! `LegacyProcessWrapper::SpawnChild` forks, and the child calls `setsid()` (a new session and
//! process group whose id is its pid), `ClearSignalMask()`, `umask(022)` and `execvp`;
//! `WaitForChild` calls `WaitChild(child_pid, ...)` (`src/main/tools/process-tools.cc`:
//! `waitpid(pid, &status, 0)` until it is not EINTR; this reaps), then, with a comment "The child
//! is done for, but may have grandchildren that we still have to kill", `kill(-child_pid,
//! SIGKILL)`, and finally exits with the child's code (or re-raises its signal).
//!
//! Race window (G1): between `WaitChild`'s reap and `kill(-child_pid, SIGKILL)`. Once the leader
//! is reaped and its group has no member left, the number is free again, as a pid and as a
//! group id: a new process can take it and, with `setpgid(0, 0)` (any job a shell starts, any
//! process that leads a group), lead a group of that id, which then gets the SIGKILL meant for
//! the old one (invariant I1). Points: `main.reaped` (the lab recycles the pid there, and the
//! victim makes itself a group leader), `sweep.before_kill`, `sweep.kill_sent`.
//!
//! A faithful replica must keep: the new session in the child, the reaping wait by pid, then the
//! group SIGKILL by the reaped child's pid, and the exit with the child's status. Not modelled:
//! the path taken when `PR_SET_CHILD_SUBREAPER` is available (`TerminateAndWaitForAll`, which
//! the issue quotes beside this one), the handlers that call `KillEverything(child_pid)` (the
//! same `kill(-pgrp)`) on SIGINT, SIGTERM and the SIGALRM timeout, and the resource statistics.

use std::ffi::{OsStr, OsString};
use std::process::{Command, ExitStatus};

use nix::sys::signal::Signal;
use racelab_hooks::point;

use crate::cli::Args;
use crate::error::LegacyError;
use crate::os;

/// `SpawnChild` then `WaitForChild`: returns the child's status once its group was killed.
pub fn run(program: &OsStr, args: &[OsString]) -> Result<ExitStatus, LegacyError> {
    os::in_sandbox();
    let mut cmd = Command::new(program);
    cmd.args(args);
    // In the child: setsid(), ClearSignalMask() (std's Command resets the dispositions).
    racelab_sys::spawn::setsid_in_child(&mut cmd);
    racelab_sys::sigaction::unblock_all_in_child(&mut cmd);
    let mut child = cmd.spawn().map_err(|source| LegacyError::Spawn {
        program: program.to_string_lossy().into_owned(),
        source,
    })?;
    let child_pid = child.id() as i32;
    point!(main.spawned);
    // WaitChild: this REAPS the child. From here `child_pid` names nothing of ours, as a pid or
    // as a group id, and may be taken by any new process.
    let status =
        child.wait().map_err(|source| LegacyError::Wait { pid: child_pid as u32, source })?;
    point!(main.reaped);
    // G1: the group id is the reaped leader's pid; if a new group leader took the number since,
    // this kills that group.
    point!(sweep.before_kill);
    // The original ignores kill's result; ESRCH (the group is gone) is the common case.
    let _ = os::kill_group(child_pid, Signal::SIGKILL);
    point!(sweep.kill_sent);
    Ok(status)
}

/// The wrapper as a process: `-- program args`; exits with the child's shell code.
pub fn main_code(args: impl IntoIterator<Item = OsString>) -> i32 {
    let run = |_: &Args, program: &OsStr, rest: &[OsString]| run(program, rest);
    crate::cli::main_with("group-kill-after-reap", args, &[], 1, run, crate::cli::shell_code)
}
