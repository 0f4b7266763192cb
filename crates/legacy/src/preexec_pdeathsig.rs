//! `preexec_pdeathsig`: PR_SET_PDEATHSIG set in a pre-exec hook, with no re-check of the parent.
//!
//! Models StackStorm/st2's sensor container: `st2common/st2common/util/shell.py`
//! `on_parent_exit(signame)` (based on gist evansd/2346614) returns a function for
//! `subprocess.Popen(preexec_fn=...)` that calls `prctl(PR_SET_PDEATHSIG, signum)` and raises
//! when the call fails, and nothing else; `st2reactor/st2reactor/container/process_container.py`
//! `ProcessSensorContainer._spawn_sensor_process` starts every sensor with
//! `subprocess.Popen(args=..., stdin=None, stdout=None, stderr=None,
//! preexec_fn=on_parent_exit('SIGTERM'))`, and `run()` then polls each sensor with
//! `process.poll()` every `poll_interval` (5 s), logging the exit code of a dead one. CPython's
//! `Popen` forks, runs `preexec_fn` in the child, then execs; the parent waits for the exec.
//!
//! Race window (P1): between the fork and the child's `prctl`. The prctl(2) man page: the
//! death signal is sent when the parent (thread) terminates; a parent that is already gone when
//! the child calls prctl is never noticed: the child has been reparented (to init or a
//! subreaper), and its new parent's death is what would fire the signal. Nothing re-checks
//! `getppid()` after the call, so a container killed in the window (OOM killer, `kill -9`, a
//! crash) leaves its sensor running forever with no one to stop it (invariant I5). Point:
//! `preexec.entered`, in the forked child, before the prctl.
//!
//! A faithful replica must keep: the prctl in the pre-exec hook of a fork-then-exec spawn,
//! SIGTERM as the death signal, no `getppid()` check after it, and the parent's poll loop.
//! Not modelled: respawning a sensor that exited non-zero (up to two respawns after 2.5 s,
//! `_respawn_sensor`) and the trigger dispatch around the spawn; neither touches the window.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus};
use std::thread;
use std::time::Duration;

use nix::sys::signal::Signal;
use racelab_hooks::point;

use crate::cli::Args;
use crate::error::LegacyError;
use crate::os;

/// The container's default `poll_interval` (5 s).
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// In the forked child, before `on_parent_exit('SIGTERM')`'s prctl.
fn before_prctl() {
    // P1: the parent may die right here. The prctl that follows succeeds anyway and ties the
    // signal to whoever adopted this child; the parent that just died will never send it.
    point!(preexec.entered);
}

/// Spawns `program args` as `_spawn_sensor_process` does, then polls it every `poll_interval`
/// as `run()` does, until it exits; returns its status.
pub fn run(
    program: &OsStr,
    args: &[OsString],
    poll_interval: Duration,
) -> Result<ExitStatus, LegacyError> {
    os::in_sandbox();
    let mut cmd = Command::new(program);
    cmd.args(args);
    // `preexec_fn=on_parent_exit('SIGTERM')`: the prctl, and no `getppid()` check after it.
    racelab_sys::sigaction::parent_death_signal_in_child(&mut cmd, Signal::SIGTERM, before_prctl);
    let mut child = cmd.spawn().map_err(|source| LegacyError::Spawn {
        program: program.to_string_lossy().into_owned(),
        source,
    })?;
    point!(main.spawned);
    loop {
        // `_poll_sensors_for_results`: `process.poll()` reaps a dead sensor.
        match child.try_wait() {
            Ok(Some(status)) => {
                point!(main.reaped);
                eprintln!(
                    "preexec-pdeathsig: process for sensor has exited with code {}",
                    status.code().unwrap_or_else(|| -status.signal().unwrap_or(0))
                );
                return Ok(status);
            }
            Ok(None) => {}
            Err(source) => return Err(LegacyError::Wait { pid: child.id(), source }),
        }
        thread::sleep(poll_interval); // `eventlet.sleep(self._poll_interval)`: the design's timer
    }
}

/// The container as a process: `[--poll-interval-ms N] -- program args`; exits with the
/// sensor's shell code.
pub fn main_code(args: impl IntoIterator<Item = OsString>) -> i32 {
    let run = |a: &Args, program: &OsStr, rest: &[OsString]| {
        run(program, rest, a.millis("poll-interval-ms")?.unwrap_or(POLL_INTERVAL))
    };
    crate::cli::main_with(
        "preexec-pdeathsig",
        args,
        &["poll-interval-ms"],
        1,
        run,
        crate::cli::shell_code,
    )
}
