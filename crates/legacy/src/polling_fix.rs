//! `polling_fix`: piano's fixed lifecycle, one thread polling the child every 10 ms.
//!
//! Models rocketman-code/piano `src/main.rs` at `ecca3b9` (= 56702dc, head of PR #621, "fix(cli):
//! single-threaded process lifecycle, eliminate 3 race conditions"; released in 0.15.0; HEAD
//! c3e23f4 still has it). One global, `INTERRUPTED`, with one writer (the SIGINT handler, which
//! only stores it) and one reader (the loop). No PID global, no background thread: signals are
//! sent only by the thread that reaps, only when `try_wait` just said "not reaped" (Q1 gone),
//! the kill decision and the classification happen in one step (Q3 gone), and a SIGINT during
//! spawn is forwarded by the first iteration (Q4 gone).
//!
//! Residual race window, kept on purpose: with `--kill-timeout 0`, an interrupt leads to
//! `wait_or_kill` with grace 0, a blocking `wait()`; a SIGTERM-ignoring child keeps us there
//! forever, and a second SIGINT (SIG_DFL after SA_RESETHAND) kills us and orphans the child.
//! Also kept: the poll latency (up to 10 ms to notice an exit or an interrupt).
//!
//! A faithful replica must keep: handler installed before spawn with SA_RESETHAND after
//! resetting `INTERRUPTED`; the loop order (try_wait, duration, interrupt, escalation, sleep);
//! Duration taking precedence when the child exits after a duration SIGTERM; SIGTERM through the
//! unreaped child's PID; SIGKILL then wait on escalation. Dropped by the fix, so absent here:
//! the `--duration` < 1 ms clamp. Every kill goes through [`crate::os::kill`] (the lab's guard;
//! the original's `child.kill()` is the same SIGKILL to the same unreaped child).

use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{SaFlags, Signal};
use racelab_hooks::point;

use crate::error::LegacyError;
use crate::os;
use crate::piano::{ChildOutcome, RunOptions, StopReason};

/// Set by the SIGINT handler; read by the loop.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The loop's poll interval (the original's 10 ms).
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// The fixed `run_child`: one thread spawns, polls, signals, reaps and classifies.
pub fn run_child(opts: &RunOptions) -> Result<ChildOutcome, LegacyError> {
    os::in_sandbox(); // cache the guard's answer before any signal context needs it
    INTERRUPTED.store(false, SeqCst);
    let mut cmd = opts.command();
    // Still before spawn, still SA_RESETHAND; but the handler needs no PID, so an interrupt
    // during spawn is only remembered, and forwarded by the first iteration below.
    racelab_sys::sigaction::install_handler(Signal::SIGINT, sigint_handler, SaFlags::SA_RESETHAND)
        .map_err(LegacyError::signal("sigaction(SIGINT)"))?;
    point!(main.handler_installed);
    let mut child = cmd.spawn().map_err(|e| opts.spawn_error(e))?;
    point!(main.spawned);

    let start = Instant::now();
    let mut sigterm_sent_at: Option<Instant> = None;
    let (status, stop_reason) = loop {
        point!(poll.iteration);
        if let Some(status) = try_wait(&mut child)? {
            // Duration takes precedence: it is the root cause, it fired first.
            let reason = if sigterm_sent_at.is_some() {
                StopReason::Duration
            } else if INTERRUPTED.load(SeqCst) {
                StopReason::Interrupted
            } else {
                StopReason::Normal
            };
            break (status, reason);
        }
        if let Some(duration) = opts.duration
            && sigterm_sent_at.is_none()
            && start.elapsed() >= duration
        {
            terminate_child(&child);
            sigterm_sent_at = Some(Instant::now());
        }
        if INTERRUPTED.load(SeqCst) {
            terminate_child(&child);
            // Residual: grace 0 is a blocking wait with no bound (see the module docs).
            let (status, force_killed) = wait_or_kill(&mut child, opts.kill_timeout)?;
            let reason =
                if force_killed { StopReason::ForceKilled } else { StopReason::Interrupted };
            break (status, reason);
        }
        if let Some(sent) = sigterm_sent_at
            && !opts.kill_timeout.is_zero()
            && sent.elapsed() >= opts.kill_timeout
        {
            let status = kill_and_wait(&mut child)?;
            break (status, StopReason::ForceKilled);
        }
        thread::sleep(POLL_INTERVAL); // the design's poll interval
    };
    point!(main.reaped);
    point!(main.classified);

    racelab_sys::sigaction::restore_default(Signal::SIGINT)
        .map_err(LegacyError::signal("sigaction(SIGINT, SIG_DFL)"))?;
    Ok(ChildOutcome { status, stop_reason })
}

/// `piano run` (fixed) as a process; same options and exit codes as
/// [`crate::global_atomics::main_code`].
pub fn main_code(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    crate::piano::main_code("polling-fix", run_child, args)
}

extern "C" fn sigint_handler(_signal: std::os::raw::c_int) {
    point!(signal.handler_entered);
    INTERRUPTED.store(true, SeqCst);
}

/// SIGTERM via `child.id()`: the child is not reaped yet, so the PID is pinned (at worst a
/// zombie, and ESRCH is harmless).
fn terminate_child(child: &Child) {
    let _ = os::kill(child.id() as i32, Signal::SIGTERM);
}

/// grace 0: blocking wait, no escalation. Else poll every 10 ms; after `grace`, SIGKILL + wait.
fn wait_or_kill(child: &mut Child, grace: Duration) -> Result<(ExitStatus, bool), LegacyError> {
    if grace.is_zero() {
        return Ok((wait(child)?, false));
    }
    let start = Instant::now();
    loop {
        if let Some(status) = try_wait(child)? {
            return Ok((status, false));
        }
        if start.elapsed() >= grace {
            return Ok((kill_and_wait(child)?, true));
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// The original's `child.kill()` then `child.wait()`: SIGKILL to the unreaped child, reap.
fn kill_and_wait(child: &mut Child) -> Result<ExitStatus, LegacyError> {
    let _ = os::kill(child.id() as i32, Signal::SIGKILL);
    wait(child)
}

fn try_wait(child: &mut Child) -> Result<Option<ExitStatus>, LegacyError> {
    let pid = child.id();
    child.try_wait().map_err(|source| LegacyError::Wait { pid, source })
}

fn wait(child: &mut Child) -> Result<ExitStatus, LegacyError> {
    let pid = child.id();
    child.wait().map_err(|source| LegacyError::Wait { pid, source })
}
