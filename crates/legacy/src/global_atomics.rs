//! `global_atomics`: four process-wide atomics, three threads and a SIGINT handler.
//!
//! Models rocketman-code/piano `src/main.rs` at `ecca3b9^` (blob a3dc236), `run_child`
//! (l.899-1040; atomics l.848-851), the design of issue #620 (races Q1, Q3, Q4), built up by
//! 8819177 (SIGINT handler, SA_RESETHAND) and 36fa486 (`--kill-timeout`, FORCE_KILLED, the
//! SIGINT-escalation thread). Fixed by ecca3b9 / PR #621, see [`crate::polling_fix`].
//!
//! Actors: the main thread ([`run_child`]), a detached duration thread, a detached
//! SIGINT-escalation thread, and the async SIGINT handler. They share only the four statics
//! below, every load and store `SeqCst`, exactly as the original.
//!
//! Race windows (see the comments at the lines):
//! - Q1 kill-recycled-pid: `child.wait()` reaps (l.1012) but `CHILD_PID` is cleared only after
//!   classification (l.1026); an escalation thread that loaded the PID before the reap SIGKILLs
//!   whatever process holds that number afterwards. Points: `escalation.pid_loaded` then
//!   `main.reaped`, then `escalation.kill_sent`.
//! - Q3 force-flag-after-classify: nothing orders the escalation thread's
//!   `FORCE_KILLED.store(true)` before main's classification load: `main.classified` <
//!   `escalation.before_force_flag` gives Duration/exit 0/no warning although SIGKILL was sent.
//! - Q4 signal-before-pid-store: the handler is installed (l.940) before the child exists and
//!   its PID is stored (l.948); a SIGINT in `main.handler_installed`..`main.pid_stored` (the
//!   whole `spawn()`) finds `CHILD_PID == 0`, forwards nothing, and SA_RESETHAND has already
//!   reset SIGINT to SIG_DFL. Hold the window open at `main.spawned`.
//!
//! A faithful replica must keep: the statics (not a context struct), the handler installed
//! before spawn with SA_RESETHAND, the store after spawn, detached never-joined threads, the
//! load-then-check-then-store-then-kill sequence of both escalation paths, the blocking
//! `child.wait()` that reaps, classification before `CHILD_PID = 0`, `CHILD_PID` not reset on
//! entry, and the sleeps: they are the design's timers, not test synchronisation.
//! The only deviation: every kill goes through [`crate::os::kill`] (the lab's safety guard).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::thread;
use std::time::Duration;

use nix::sys::signal::{SaFlags, Signal};
use racelab_hooks::point;

use crate::error::LegacyError;
use crate::os;
use crate::piano::{ChildOutcome, RunOptions, StopReason};

/// The child's PID, 0 when there is none (or not yet: Q4). Never reset at entry.
pub static CHILD_PID: AtomicU32 = AtomicU32::new(0);
/// Set by the duration thread when `--duration` expires.
pub static DURATION_EXPIRED: AtomicBool = AtomicBool::new(false);
/// Set by the SIGINT handler.
pub static SIGINT_RECEIVED: AtomicBool = AtomicBool::new(false);
/// Set by an escalation path just before it sends SIGKILL.
pub static FORCE_KILLED: AtomicBool = AtomicBool::new(false);

/// How often the SIGINT-escalation thread polls `SIGINT_RECEIVED` (the original's 50 ms).
pub const SIGINT_POLL: Duration = Duration::from_millis(50);

/// The original's `run_child`: run `opts` to completion and classify how it stopped.
///
/// Process-wide: one call per process (the statics, the SIGINT disposition and the detached
/// threads outlive the call, as in the original).
pub fn run_child(opts: &RunOptions) -> Result<ChildOutcome, LegacyError> {
    os::in_sandbox(); // cache the guard's answer before any signal context needs it

    // l.907-910: reset the flags "from any previous invocation". CHILD_PID is not reset.
    DURATION_EXPIRED.store(false, SeqCst);
    SIGINT_RECEIVED.store(false, SeqCst);
    FORCE_KILLED.store(false, SeqCst);

    let mut cmd = opts.command();

    // l.940: "Installed before spawn so no Ctrl-C gap can orphan the child. The handler guards
    // `pid == 0` so it is safe before the child exists." Q4 refutes this: from here until the
    // CHILD_PID store below, a SIGINT is consumed by a handler that forwards nothing, and
    // SA_RESETHAND leaves SIG_DFL behind, so a second SIGINT kills us and orphans the child.
    racelab_sys::sigaction::install_handler(Signal::SIGINT, sigint_handler, SaFlags::SA_RESETHAND)
        .map_err(LegacyError::signal("sigaction(SIGINT)"))?;
    point!(main.handler_installed);

    // l.944-946. The Q4 window spans the whole spawn (fork, exec, the exec-error pipe).
    let mut child = cmd.spawn().map_err(|e| opts.spawn_error(e))?;
    // The child exists but no other actor can see it yet: the lab holds Q4 open here.
    point!(main.spawned);
    CHILD_PID.store(child.id(), SeqCst); // l.948: Q4's window closes.
    point!(main.pid_stored);

    if let Some(duration) = opts.duration {
        let duration = if duration < Duration::from_millis(1) {
            eprintln!("warning: --duration below 1ms, using 1ms");
            Duration::from_millis(1)
        } else {
            duration
        };
        eprintln!("will stop after {}s", duration.as_secs_f64());
        let kill_timeout = opts.kill_timeout;
        // l.961: detached, never joined. It may outlive this call.
        thread::spawn(move || duration_thread(duration, kill_timeout));
    }
    if !opts.kill_timeout.is_zero() {
        let kill_timeout = opts.kill_timeout;
        // l.989: detached, never joined.
        thread::spawn(move || sigint_escalation_thread(kill_timeout));
    }

    // l.1012: this REAPS the child. From here its PID is free for reuse, but CHILD_PID still
    // holds it until l.1026 (Q1): any escalation path that loaded it may signal a stranger.
    let status = child.wait().map_err(|source| LegacyError::Wait { pid: child.id(), source })?;
    point!(main.reaped);

    // l.1016-1024. Q3: an escalation thread past its pid check has not stored FORCE_KILLED
    // yet; nothing makes it wait for us, so we may classify Duration and it SIGKILLs after.
    let stop_reason = if FORCE_KILLED.load(SeqCst) {
        StopReason::ForceKilled
    } else if DURATION_EXPIRED.load(SeqCst) {
        StopReason::Duration
    } else if SIGINT_RECEIVED.load(SeqCst) {
        StopReason::Interrupted
    } else {
        StopReason::Normal
    };
    point!(main.classified);

    CHILD_PID.store(0, SeqCst); // l.1026: too late to protect the reaped PID (Q1).

    // l.1030-1034.
    racelab_sys::sigaction::restore_default(Signal::SIGINT)
        .map_err(LegacyError::signal("sigaction(SIGINT, SIG_DFL)"))?;
    Ok(ChildOutcome { status, stop_reason })
}

/// `piano run` as a process: parse `[--duration-ms N] [--kill-timeout-ms N] -- program args`,
/// run, print the warning when force-killed, exit with the mapped code.
pub fn main_code(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    crate::piano::main_code("global-atomics", run_child, args)
}

/// The original's `sigint_handler` (async-signal context, any thread).
extern "C" fn sigint_handler(_signal: std::os::raw::c_int) {
    point!(signal.handler_entered);
    SIGINT_RECEIVED.store(true, SeqCst);
    let pid = CHILD_PID.load(SeqCst);
    // Q4: before l.948 this is 0 and the interrupt is dropped on the floor. Q1's sibling:
    // between reap and clear this is a reaped PID.
    if pid != 0 {
        let _ = os::kill(pid as i32, Signal::SIGTERM); // the original's kill_child(pid)
    }
    point!(signal.forwarded);
}

fn duration_thread(duration: Duration, kill_timeout: Duration) {
    thread::sleep(duration); // the design's duration timer
    DURATION_EXPIRED.store(true, SeqCst);
    point!(duration.expired);
    let pid = CHILD_PID.load(SeqCst);
    if pid != 0 {
        // kill_child(pid): SIGTERM. Same hazard as Q1 if main reaped but has not cleared.
        let _ = os::kill(pid as i32, Signal::SIGTERM);
    }
    if !kill_timeout.is_zero() {
        thread::sleep(kill_timeout); // the design's grace timer
        escalate();
    }
}

fn sigint_escalation_thread(kill_timeout: Duration) {
    loop {
        if SIGINT_RECEIVED.load(SeqCst) {
            break;
        }
        if CHILD_PID.load(SeqCst) == 0 {
            return;
        }
        thread::sleep(SIGINT_POLL); // the design's 50 ms poll
    }
    // Q4 with grace > 0: a SIGINT swallowed before l.948 still lands here, so the child that
    // never saw SIGTERM is SIGKILLed after the grace, without a chance to flush.
    thread::sleep(kill_timeout); // the design's grace timer
    escalate();
}

/// The final step both escalation threads share: load, check, flag, SIGKILL.
fn escalate() {
    let pid = CHILD_PID.load(SeqCst);
    point!(escalation.pid_loaded);
    if pid != 0 {
        // Q1/Q3 window: main may reap the child (and the PID be reused) and classify, between
        // the load above and the two steps below; nothing orders them.
        point!(escalation.before_force_flag);
        FORCE_KILLED.store(true, SeqCst);
        point!(escalation.before_kill);
        let _ = os::kill(pid as i32, Signal::SIGKILL);
        point!(escalation.kill_sent);
    }
}
