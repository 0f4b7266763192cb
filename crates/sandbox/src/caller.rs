//! The caller's side: start the runner executable (a fresh exec, so a multi-threaded caller
//! never forks), collect its one JSON document, and enforce the caller's own deadline.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::{Pid, PidfdFlags};
use serde_json::Value;

use crate::error::SandboxError;
use crate::modes::RUN_MODE;
use crate::proc::poll_readable;
use crate::spec::{Report, RunArgs, RunOutcome, Spec};

/// The command that runs `scenario` with `input` in a sandbox: `runner __run <json>`, stdin
/// null, stdout and stderr piped. [`run`] uses it; tests that watch the runner (kill it,
/// read its announcements) spawn it themselves.
pub fn command(runner: &Path, scenario: &str, input: &Value, spec: &Spec) -> Command {
    let args = RunArgs { scenario: scenario.to_owned(), input: input.clone(), spec: spec.clone() };
    // Serializing plain data (strings, numbers, a Value) cannot fail.
    let json = serde_json::to_string(&args).unwrap_or_default();
    let mut cmd = Command::new(runner);
    cmd.arg(RUN_MODE).arg(json).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// Runs `scenario` with `input` in a fresh sandbox through the runner executable `runner` (a
/// binary whose `main` calls [`crate::runner_main`]), and waits at most
/// `spec.deadline + spec.teardown`.
///
/// The runner enforces `spec.deadline` on PID 1 itself; the caller's bound covers a runner that
/// hangs: the caller then SIGKILLs it (PID 1 follows by `PR_SET_PDEATHSIG`, the namespace with
/// it), reaps it and reports [`RunOutcome::Overran`].
///
/// Errors: the runner cannot start ([`SandboxError::Spawn`]), reports a setup failure
/// ([`SandboxError::Setup`]), or prints something that is not its protocol.
pub fn run(
    runner: &Path,
    scenario: &str,
    input: &Value,
    spec: &Spec,
) -> Result<RunOutcome, SandboxError> {
    run_command(command(runner, scenario, input, spec), spec)
}

/// Like [`run`], for a command built by [`command`] and then adjusted by the caller (wrapped
/// in `setpriv` to drop privileges, given an environment, ...). `cmd` must end in the runner's
/// `__run <json>` arguments and keep stdout and stderr piped.
pub fn run_command(cmd: Command, spec: &Spec) -> Result<RunOutcome, SandboxError> {
    crate::interrupt::refuse_if_interrupted()?;
    let outcome = run_command_once(cmd, spec);
    // A run the interrupt ended is no outcome: the process is on its way out (see
    // crate::interrupt), and its caller must not report a crashed runner meanwhile.
    crate::interrupt::refuse_if_interrupted()?;
    outcome
}

fn run_command_once(mut cmd: Command, spec: &Spec) -> Result<RunOutcome, SandboxError> {
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|source| SandboxError::Spawn {
        runner: Path::new(cmd.get_program()).to_path_buf(),
        source,
    })?;
    // Known to the interrupt thread until reaped below (see crate::interrupt).
    let tracked = crate::interrupt::track(child.id());
    let deadline = start + spec.deadline + spec.teardown;
    let collected = collect(&mut child, deadline);
    let (stdout, stderr, status) = match collected {
        Ok(c) => c,
        Err(e) => {
            kill_and_reap(&mut child, &tracked);
            return Err(e);
        }
    };
    if status.is_none() {
        kill_and_reap(&mut child, &tracked);
    }
    interpret(stdout, stderr, status, start)
}

/// Turns what a runner left (its stdout, stderr and exit status; `None`: it overran and was
/// killed) into the run's outcome. Shared by [`run_command`] and [`crate::Server`].
pub(crate) fn interpret(
    stdout: String,
    stderr: String,
    status: Option<std::process::ExitStatus>,
    start: Instant,
) -> Result<RunOutcome, SandboxError> {
    let Some(status) = status else {
        // The runner could not clean up: remove its cgroup leaf, and thaw and remove a freezer
        // group its init left with a task frozen.
        crate::leaf::gc_stale_leaves();
        return Ok(RunOutcome::Overran { after: start.elapsed(), leftover: false, stderr });
    };
    let report: Report = match serde_json::from_str(stdout.trim()) {
        Ok(r) => r,
        Err(e) if status.success() => {
            return Err(SandboxError::Protocol {
                message: format!("runner stdout is not a report ({e}): {stdout:?}"),
                stderr,
            });
        }
        Err(_) => return Ok(RunOutcome::Crashed { status: format!("runner {status}"), stderr }),
    };
    Ok(match report {
        Report::Finished { output, wall_ns } => {
            RunOutcome::Finished { output, wall: Duration::from_nanos(wall_ns), stderr }
        }
        Report::Failed { error, wall_ns } => {
            RunOutcome::Failed { error, wall: Duration::from_nanos(wall_ns), stderr }
        }
        Report::Overran { after_ns, leftover } => {
            RunOutcome::Overran { after: Duration::from_nanos(after_ns), leftover, stderr }
        }
        Report::Crashed { status } => RunOutcome::Crashed { status, stderr },
        Report::SetupFailed { error } => {
            return Err(SandboxError::Setup { message: error, stderr });
        }
    })
}

type Collected = (String, String, Option<std::process::ExitStatus>);

/// Reads stdout and stderr to EOF and waits for the runner, all before `deadline`. The status
/// is `None` when the deadline passed first.
fn collect(child: &mut Child, deadline: Instant) -> Result<Collected, SandboxError> {
    let out = child.stdout.take().map(OwnedFd::from);
    let err = child.stderr.take().map(OwnedFd::from);
    let (stdout, stderr, complete) = read_to_eof(out, err, deadline, None)?;
    if !complete {
        return Ok((stdout, stderr, None));
    }
    let status = wait_until(child, deadline)?;
    Ok((stdout, stderr, status))
}

/// Reads two pipes (a runner's stdout and stderr) to EOF before `deadline`. `complete` is false
/// when the deadline passed first, or `stop` (a runner server's stop signals) became readable.
pub(crate) fn read_to_eof(
    mut out: Option<OwnedFd>,
    mut err: Option<OwnedFd>,
    deadline: Instant,
    stop: Option<BorrowedFd<'_>>,
) -> Result<(String, String, bool), SandboxError> {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut buf = [0u8; 8192];
    while out.is_some() || err.is_some() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok((lossy(&stdout), lossy(&stderr), false));
        }
        let ts = Timespec::try_from(left).unwrap_or(Timespec { tv_sec: 1, tv_nsec: 0 });
        let (o_ready, e_ready) = {
            let mut fds = Vec::with_capacity(3);
            if let Some(s) = &stop {
                fds.push(PollFd::new(s, PollFlags::IN));
            }
            if let Some(o) = &out {
                fds.push(PollFd::new(o, PollFlags::IN));
            }
            if let Some(e) = &err {
                fds.push(PollFd::new(e, PollFlags::IN));
            }
            match rustix::event::poll(&mut fds, Some(&ts)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(SandboxError::io("poll on the runner's output", e)),
            }
            let mut ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
            if stop.is_some() && ready.remove(0) {
                return Ok((lossy(&stdout), lossy(&stderr), false));
            }
            match (out.is_some(), err.is_some()) {
                (true, true) => (ready[0], ready[1]),
                (true, false) => (ready[0], false),
                _ => (false, ready[0]),
            }
        };
        for (ready, fd, into, what) in [
            (o_ready, &mut out, &mut stdout, "reading the runner's stdout"),
            (e_ready, &mut err, &mut stderr, "reading the runner's stderr"),
        ] {
            let Some(f) = fd.as_ref().filter(|_| ready) else { continue };
            match rustix::io::read(f, &mut buf) {
                Ok(0) => *fd = None,
                Ok(n) => into.extend_from_slice(&buf[..n]),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(SandboxError::io(what, e)),
            }
        }
    }
    Ok((lossy(&stdout), lossy(&stderr), true))
}

/// Waits for `child` until `deadline` through a pidfd; `None` if it still runs then.
pub(crate) fn wait_until(
    child: &mut Child,
    deadline: Instant,
) -> Result<Option<std::process::ExitStatus>, SandboxError> {
    let pid = Pid::from_raw(child.id() as i32)
        .ok_or_else(|| SandboxError::Invalid("child with pid 0".into()))?;
    // Safe against reuse: `child` is ours and unreaped until `wait` below.
    let pidfd = rustix::process::pidfd_open(pid, PidfdFlags::empty())
        .map_err(|e| SandboxError::io(format!("pidfd_open({pid:?})"), e))?;
    let left = deadline.saturating_duration_since(Instant::now());
    if !poll_readable(pidfd.as_fd(), left).map_err(|e| SandboxError::io("poll on runner", e))? {
        return Ok(None);
    }
    child.wait().map(Some).map_err(|e| SandboxError::io("waiting for the runner", e))
}

/// SIGKILLs and reaps a runner: its PID 1 dies by `PR_SET_PDEATHSIG`, and the namespace with it.
fn kill_and_reap(child: &mut Child, tracked: &crate::interrupt::Tracked) {
    tracked.kill(child);
    let _ = child.wait();
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
