//! `unbounded_poll`: on interrupt send SIGKILL, then poll the child's state every 100 ms with
//! no deadline.
//!
//! Models containers/buildah `run_common.go` at e8648c5e3 (the last change before issue #6786),
//! `runUsingRuntime` l.656-705, the reexec child that runs the OCI runtime: a goroutine turns
//! every SIGHUP/SIGINT/SIGTERM this process receives into `runtime kill <ctr> SIGKILL`; the
//! main goroutine polls `runtime state <ctr>` every 100 ms until the container is stopped, with
//! no deadline; afterwards `reaping.Wait()` waits for the container init's status, also with no
//! bound. Here the container is the child process: `runtime kill` is SIGKILL to it, `runtime
//! state` reads `/proc/<pid>/stat` (stopped = zombie or gone), the reap is `child.wait()`.
//!
//! Race window: after the SIGKILL, the loop's exit depends only on the child's death. A child
//! that SIGKILL cannot finish (frozen in a v1 freezer cgroup, uninterruptible sleep: QEMU in
//! the issue) keeps the loop at `poll.iteration` forever (invariant I4); more interrupts only
//! repeat the SIGKILL. The PR #6854 deadline (armed by stdio EOF) is not modelled: this is the
//! design the issue reports.
//!
//! A faithful replica must keep: signal handling set up after the child starts (a signal before
//! that kills this process by default, as Go's would before `signal.Notify`), SIGKILL for every
//! signal, the 100 ms period, no deadline, reap after the loop. Like `runtime kill` on a stopped
//! container, the forwarder does not signal once the loop saw the child stopped; since the
//! child is then a zombie until reaped, its PID cannot have been reused.

use std::ffi::{OsStr, OsString};
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};
use racelab_hooks::point;

use crate::cli::Args;
use crate::error::LegacyError;
use crate::os;

/// The state-polling period (buildah's 100 ms).
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The signals the design forwards (as SIGKILL).
pub const FORWARDED: [Signal; 3] = [Signal::SIGHUP, Signal::SIGINT, Signal::SIGTERM];

/// Spawns `program args`, forwards SIGHUP/SIGINT/SIGTERM as SIGKILL, polls until the child is
/// stopped (no deadline), reaps it and returns its status.
///
/// Process-wide: blocks the forwarded signals in the calling thread (the only thread, in a
/// wrapper process) so that the forwarder thread alone receives them. One call per process.
pub fn run(
    program: &std::ffi::OsStr,
    args: &[std::ffi::OsString],
) -> Result<ExitStatus, LegacyError> {
    os::in_sandbox();
    let mut child = std::process::Command::new(program).args(args).spawn().map_err(|source| {
        LegacyError::Spawn { program: program.to_string_lossy().into_owned(), source }
    })?;
    let pid = child.id() as i32;

    // signal.Notify(SIGHUP, SIGINT, SIGTERM), after the container started: block them here,
    // before the forwarder thread exists, so it inherits the mask and sigwaits for them.
    let mut set = SigSet::empty();
    for signal in FORWARDED {
        set.add(signal);
    }
    set.thread_block().map_err(LegacyError::signal("sigprocmask(SIG_BLOCK)"))?;
    let stopped = Arc::new(Mutex::new(false));
    let forwarder_stopped = Arc::clone(&stopped);
    thread::spawn(move || forward_as_sigkill(set, pid, &forwarder_stopped));
    // From here a SIGINT is forwarded instead of killing this process: the point O2's stop
    // waits for (`ready(design)`), since Ctrl-C lands on a buildah that is up.
    point!(main.handler_installed);

    loop {
        point!(poll.iteration);
        // `runtime state`: running, or stopped (zombie, or no such process any more).
        if matches!(os::proc_stat(pid), None | Some((b'Z', _))) {
            break;
        }
        // No deadline: this is the bug (buildah #6786).
        thread::sleep(POLL_INTERVAL);
    }
    // The container is stopped; `runtime kill` would now fail. The child is a zombie, so its
    // PID is still pinned while we take the flag.
    *stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
    let status = reap(&mut child)?;
    point!(main.reaped);
    Ok(status)
}

/// The buildah reexec child as a process: `-- program args`; exits with the child's shell code.
pub fn main_code(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    let run = |_: &Args, program: &OsStr, rest: &[OsString]| run(program, rest);
    crate::cli::main_with("unbounded-poll", args, &[], 1, run, crate::cli::shell_code)
}

fn forward_as_sigkill(set: SigSet, pid: i32, stopped: &Mutex<bool>) {
    while set.wait().is_ok() {
        let stopped = stopped.lock().unwrap_or_else(|e| e.into_inner());
        if !*stopped {
            // `runtime kill <ctr> SIGKILL`, whatever the signal was. Errors are only logged.
            if let Err(e) = os::kill(pid, Signal::SIGKILL) {
                eprintln!("{e} sending SIGKILL");
            }
        }
        drop(stopped);
        point!(signal.forwarded);
    }
}

/// `reaping.Wait()`: the container init's status, with no bound either.
fn reap(child: &mut Child) -> Result<ExitStatus, LegacyError> {
    let pid = child.id();
    child.wait().map_err(|source| LegacyError::Wait { pid, source })
}
