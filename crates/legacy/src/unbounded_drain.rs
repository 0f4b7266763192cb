//! `unbounded_drain`: on timeout, SIGKILL the child, then read its captured output to the end of
//! file with no deadline.
//!
//! Models python/cpython `Lib/subprocess.py` `run()` before pull #14490 (bpo-37424, "Avoid a
//! hang in subprocess.run timeout output capture"): inside `with Popen(*popenargs, **kwargs) as
//! process:` it calls `process.communicate(input, timeout=timeout)`; on `TimeoutExpired` it calls
//! `process.kill()` (SIGKILL by pid, while the child is unreaped: `send_signal` only checks that
//! `returncode` is None) and then `process.communicate()` again, with no timeout, to collect the
//! rest of the output, and re-raises `TimeoutExpired` with it. `communicate` reads every captured
//! pipe to its end of file, then waits for the child. After the pull, POSIX `run()` only waits
//! for the killed child (the output read so far is in the exception). Go's `os/exec` has the
//! same shape: golang/go issue #23019 (ianlancetaylor: `Wait` waits for the goroutines that copy
//! the output, hence until every holder of the pipe has closed it; it lists earlier reports of
//! the same confusion), and #13155, the catalog's pointer; `Cmd.WaitDelay` (Go 1.20) bounds it.
//!
//! Race window (H1): the timeout fires while a grandchild holds the pipe. The SIGKILL reaches
//! the child only; a grandchild that inherited the captured stream (a shell's background job, a
//! daemonizing helper) keeps the write end open, the end of file never comes, and `run()` never
//! returns (invariant I4, counted from the child's death), while the grandchild lives on (I5).
//! Points: `duration.expired` (the lab holds it until the grandchild exists),
//! `escalation.before_kill`, `escalation.kill_sent`, `output.drain_started`, `output.eof`.
//!
//! A faithful replica must keep: the read with the timeout, SIGKILL to the child alone, then a
//! read to the end of file with no deadline before the wait. Here only standard error is
//! captured (`run(args, stderr=PIPE, timeout=...)`): the lab's workload reports on its stdout.
//! Not modelled: `input` (nothing is written to the child) and the wait's own timeout after the
//! end of file (`communicate` waits with what is left of the timeout; the lab's child holds its
//! pipe until it dies).

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use racelab_hooks::point;

use crate::cli::Args;
use crate::error::LegacyError;
use crate::os;

/// What `run()` returns or raises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The child's status.
    pub status: ExitStatus,
    /// `TimeoutExpired` was raised (the child was SIGKILLed).
    pub timed_out: bool,
    /// The captured standard error.
    pub stderr: Vec<u8>,
}

enum Read {
    Eof,
    Deadline,
}

/// Reads `fd` into `out` until its end of file, or until `deadline` when there is one.
fn read_until(
    fd: &OwnedFd,
    out: &mut Vec<u8>,
    deadline: Option<Instant>,
) -> Result<Read, LegacyError> {
    let mut buf = [0u8; 8192];
    loop {
        let ts = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(Read::Deadline);
                }
                Some(rustix::time::Timespec::try_from(left).unwrap_or_default())
            }
            None => None,
        };
        let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
        match rustix::event::poll(&mut fds, ts.as_ref()) {
            Ok(0) => continue, // the deadline check above decides
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(LegacyError::os("poll")(e)),
        }
        match rustix::io::read(fd, &mut buf) {
            Ok(0) => return Ok(Read::Eof),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
            Err(e) => return Err(LegacyError::os("read")(e)),
        }
    }
}

/// `subprocess.run([program, *args], stderr=PIPE, timeout=timeout)`.
pub fn run(program: &OsStr, args: &[OsString], timeout: Duration) -> Result<Outcome, LegacyError> {
    os::in_sandbox();
    let mut child =
        Command::new(program).args(args).stderr(Stdio::piped()).spawn().map_err(|source| {
            LegacyError::Spawn { program: program.to_string_lossy().into_owned(), source }
        })?;
    point!(main.spawned);
    let pid = child.id() as i32;
    let pipe = OwnedFd::from(child.stderr.take().ok_or_else(|| {
        LegacyError::os("stderr pipe")(std::io::Error::other("no pipe from Command"))
    })?);
    let mut stderr = Vec::new();
    let deadline = Instant::now() + timeout;
    // process.communicate(input, timeout=timeout)
    let timed_out = match read_until(&pipe, &mut stderr, Some(deadline))? {
        Read::Eof => false,
        Read::Deadline => {
            point!(duration.expired);
            // process.kill(): the child is unreaped, so its pid still names it.
            point!(escalation.before_kill);
            let _ = os::kill(pid, Signal::SIGKILL);
            point!(escalation.kill_sent);
            // process.communicate(): no timeout. H1: a grandchild holding the pipe keeps the
            // end of file away for as long as it lives.
            point!(output.drain_started);
            read_until(&pipe, &mut stderr, None)?;
            point!(output.eof);
            true
        }
    };
    let status = child.wait().map_err(|source| LegacyError::Wait { pid: pid as u32, source })?;
    point!(main.reaped);
    Ok(Outcome { status, timed_out, stderr })
}

/// `subprocess.run` as a process: `--timeout-ms N -- program args`; prints
/// `unbounded-drain: <status> (timed out: B, N bytes of stderr)` on stderr and exits with the
/// child's shell code.
pub fn main_code(args: impl IntoIterator<Item = OsString>) -> i32 {
    let run = |a: &Args, program: &OsStr, rest: &[OsString]| {
        run(program, rest, a.millis("timeout-ms")?.unwrap_or(Duration::from_secs(10)))
    };
    crate::cli::main_with("unbounded-drain", args, &["timeout-ms"], 1, run, |o| {
        let stderr = o.stderr.len();
        eprintln!(
            "unbounded-drain: {} (timed out: {}, {stderr} bytes of stderr)",
            o.status, o.timed_out
        );
        crate::cli::shell_code(o.status)
    })
}
