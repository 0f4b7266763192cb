//! `exec_under_lock_fixed`: the same lock, the program as a background child, traps after.
//!
//! Models rvos `scripts/qemu-lock.sh` at d32fae6 (fix part 1 of bug 0017, before 25e10de):
//! `"$@" &`, `QEMU_PID=$!`, `cleanup() { kill $QEMU_PID; wait $QEMU_PID; }`, then
//! `trap 'cleanup; exit 130' INT`, `... 143' TERM`, `... 129' HUP`, `trap cleanup EXIT`, and
//! `wait $QEMU_PID || true`, all under `set -euo pipefail`. The lock descriptor is inherited by
//! the program, so the lock is free only when both are gone.
//!
//! Race windows:
//! - Traps are installed after the launch (`wrapper.launched`..`wrapper.traps_installed`): a
//!   SIGTERM or SIGHUP there kills the wrapper by default, untrapped; the program is orphaned
//!   and keeps the lock (the O1 shape again, piano's Q4 shape in time).
//! - The EXIT trap always runs `kill $QEMU_PID`: after a normal `wait` that PID is reaped (and
//!   after an INT/TERM/HUP trap's own cleanup too), so the SIGTERM goes to whatever holds the
//!   number now (piano's Q1 shape). Under `set -e` the failing `kill` of a gone PID makes the
//!   script exit 1 on every path; a kill that "succeeds" (a recycled PID) is followed by a
//!   `wait` for a stranger: status 127.
//!
//! A faithful replica must keep: bash's semantics for `cmd &` without job control (stdin from
//! /dev/null, SIGINT and SIGQUIT ignored in the program), the lock inherited by the program,
//! traps only after the launch, cleanup = SIGTERM then an unbounded wait, the EXIT trap's
//! second cleanup, and `set -e`'s exit statuses. Traps are modelled by blocking the trapped
//! signals (plus SIGCHLD) and `sigwait`ing for them where bash sits in `wait`.

use std::ffi::OsString;
use std::process::{Child, Command, ExitStatus, Stdio};

use nix::sys::signal::{SigSet, Signal};
use racelab_hooks::point;

use crate::cli::shell_code;
use crate::error::LegacyError;
use crate::exec_under_lock::{LockOptions, take_lock};
use crate::os;

/// The signals the fixed script traps, with the status each trap's `exit` asks for.
pub const TRAPS: [(Signal, i32); 3] =
    [(Signal::SIGINT, 130), (Signal::SIGTERM, 143), (Signal::SIGHUP, 129)];

/// The fixed script as a process. Exits with the script's real status (see the module docs).
pub fn main_code(args: impl IntoIterator<Item = OsString>) -> i32 {
    let opts = LockOptions::from_args(args)
        .unwrap_or_else(|e| crate::cli::die("exec-under-lock-fixed", &e, 2));
    match run(&opts) {
        Ok(code) => code,
        Err(e) => crate::cli::report("exec-under-lock-fixed", &e, 1),
    }
}

/// Takes the lock, runs the program in the background, traps, waits; returns the exit status
/// the script would have. Process-wide: blocks signals in the calling thread; one per process.
pub fn run(opts: &LockOptions) -> Result<i32, LegacyError> {
    os::in_sandbox();
    let _lock = take_lock(opts);
    let mut cmd = Command::new(&opts.program);
    cmd.args(&opts.args).stdin(Stdio::null());
    // Non-interactive bash, `cmd &`: the job ignores SIGINT and SIGQUIT.
    racelab_sys::sigaction::ignore_in_child(&mut cmd, vec![Signal::SIGINT, Signal::SIGQUIT]);
    let mut child = cmd.spawn().map_err(|source| LegacyError::Spawn {
        program: opts.program.to_string_lossy().into_owned(),
        source,
    })?;
    point!(wrapper.launched);
    // Window: until the traps below exist, SIGTERM/SIGHUP/SIGINT kill us with the default
    // action; the program survives us, orphaned, still holding the lock.
    let mut trapped = SigSet::empty();
    for (signal, _) in TRAPS {
        trapped.add(signal);
    }
    trapped.add(Signal::SIGCHLD);
    trapped.thread_block().map_err(LegacyError::signal("sigprocmask(SIG_BLOCK)"))?;
    point!(wrapper.traps_installed);

    let mut reaped: Option<ExitStatus> = None;
    // `wait $QEMU_PID || true`, interrupted by trapped signals as bash's `wait` is.
    let mut status = loop {
        if let Some(done) = try_wait(&mut child)? {
            reaped = Some(done);
            break 0; // `|| true`
        }
        let signal = trapped.wait().map_err(LegacyError::signal("sigwait"))?;
        if let Some(&(_, code)) = TRAPS.iter().find(|(s, _)| *s == signal) {
            // `cleanup; exit N`: under set -e a failing cleanup exits with its status instead.
            let cleaned = cleanup(&mut child, &mut reaped)?;
            break if cleaned != 0 { cleaned } else { code };
        }
        // SIGCHLD: loop and look again.
    };
    // The EXIT trap: `cleanup` once more, on a PID that is reaped by now (Q1 shape).
    let cleaned = cleanup(&mut child, &mut reaped)?;
    if cleaned != 0 {
        status = cleaned;
    }
    Ok(status)
}

/// `cleanup() { kill $QEMU_PID 2>/dev/null; wait $QEMU_PID 2>/dev/null; }` and its `$?`.
fn cleanup(child: &mut Child, reaped: &mut Option<ExitStatus>) -> Result<i32, LegacyError> {
    // `kill $QEMU_PID`: SIGTERM by number, whether or not that PID is still ours.
    if os::kill(child.id() as i32, Signal::SIGTERM).is_err() {
        return Ok(1);
    }
    if reaped.is_some() {
        return Ok(127); // `wait`: "pid is not a child of this shell"
    }
    // No bound: a child that ignores SIGTERM keeps us here.
    let pid = child.id();
    let status = child.wait().map_err(|source| LegacyError::Wait { pid, source })?;
    *reaped = Some(status);
    Ok(shell_code(status))
}

fn try_wait(child: &mut Child) -> Result<Option<ExitStatus>, LegacyError> {
    let pid = child.id();
    child.try_wait().map_err(|source| LegacyError::Wait { pid, source })
}
