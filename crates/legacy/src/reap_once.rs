//! `reap_once`: a PID 1 (or child subreaper) that reaps one child per SIGCHLD notification.
//!
//! Models openSUSE/catatonit before 0.1.5 (issue #4, "catatonit could hang if pid1 died and
//! the death signal was coalesced"), the reap-one-per-SIGCHLD shape also discussed for the
//! exec-sandbox guest-agent (whose `reap_zombies` drains with `waitpid(-1, WNOHANG)` in a loop,
//! the fix). The init blocks its signals, spawns the main child with them unblocked, then
//! waits for signals one notification at a time (catatonit reads a signalfd; `sigwait` has the
//! same semantics) and calls `waitpid(-1, WNOHANG)` once per SIGCHLD.
//!
//! Race window: standard signals coalesce. Several children that exit before the init dequeues
//! SIGCHLD leave one pending SIGCHLD, so one wakeup reaps one of them and the rest stay zombies
//! (invariant I6) until some later SIGCHLD; when the main child's exit is coalesced with an
//! orphan's, the init may reap the orphan and wait forever with its main child a zombie (the
//! catatonit hang). Hold it open at `reaper.woke`: park there while more children exit.
//!
//! A faithful replica must keep: exactly one `waitpid` per notification, the signals blocked
//! before the main child is spawned (and unblocked in the child), and exiting with the main
//! child's status once that status is reaped. Not modelled: catatonit's forwarding of other
//! signals to its child (it does not touch the reaping bug).

use std::ffi::{OsStr, OsString};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use racelab_hooks::point;

use crate::cli::Args;
use crate::error::LegacyError;
use crate::os;

/// Spawns `program args` under this process as init (subreaper unless it is PID 1) and reaps
/// one child per SIGCHLD until the main child's status is reaped. Returns the main child's
/// shell code. Every reap is logged on stderr as `reap-once: reaped PID (CODE)`.
///
/// Process-wide: becomes a subreaper and blocks SIGCHLD in the calling thread; call it from a
/// single-threaded process made for it (the wrapper binary), never from a test harness.
pub fn run(program: &OsStr, args: &[OsString]) -> Result<i32, LegacyError> {
    os::in_sandbox();
    os::become_init()?;
    let mut sigchld = SigSet::empty();
    sigchld.add(Signal::SIGCHLD);
    // Blocked before the child exists, so its SIGCHLD cannot be lost; unblocked in the child.
    sigchld.thread_block().map_err(LegacyError::signal("sigprocmask(SIG_BLOCK, SIGCHLD)"))?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    racelab_sys::sigaction::unblock_all_in_child(&mut cmd);
    let child = cmd.spawn().map_err(|source| LegacyError::Spawn {
        program: program.to_string_lossy().into_owned(),
        source,
    })?;
    let main_pid = child.id() as i32;
    loop {
        // One dequeued SIGCHLD stands for any number of exits (coalescing).
        sigchld.wait().map_err(LegacyError::signal("sigwait(SIGCHLD)"))?;
        point!(reaper.woke);
        // The bug: one reap per notification. The fix loops here until 0 or ECHILD.
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => continue,
            Ok(status) => {
                let Some((pid, code)) = os::pid_and_code(status) else {
                    continue;
                };
                point!(reaper.reaped);
                eprintln!("reap-once: reaped {pid} ({code})");
                if pid == main_pid {
                    point!(main.reaped);
                    return Ok(code);
                }
            }
            Err(errno) => {
                return Err(LegacyError::Signal { what: "waitpid(-1, WNOHANG)", errno });
            }
        }
    }
}

/// The init as a process: `-- program args`; exits with the main child's code.
pub fn main_code(args: impl IntoIterator<Item = OsString>) -> i32 {
    let run = |_: &Args, program: &OsStr, rest: &[OsString]| run(program, rest);
    crate::cli::main_with("reap-once", args, &[], 125, run, |code| code)
}
