//! `greedy_reaper`: a PID 1 whose reaper task reaps with `waitpid(-1)` while the main path
//! waits for its own child by PID, and so can lose that child's status.
//!
//! Models dualeai/exec-sandbox `guest-agent/src/init.rs` `reap_zombies()` (added 7ca3069,
//! moved by 0f04caa): the guest agent is PID 1 of the microVM; a task awaits a SIGCHLD stream
//! (tokio: a handler that writes to a self-pipe, so notifications coalesce) and on each wakeup
//! drains `waitpid(-1, NULL, WNOHANG)` until 0 or ECHILD, discarding every status. The agent's
//! own command path spawns children and waits for them by PID; when the reaper got there first
//! that wait fails (ECHILD) and the agent reports `status.map(..).unwrap_or(-1)`: a made-up -1.
//!
//! Race window: between the main child's exit and the main path's `waitpid(pid)`, a reaper
//! woken by any SIGCHLD (the main child's own, or an orphan's) takes the status: park the main
//! path before its wait, or let the reaper run first (`reaper.woke` < `main.reaped`); invariant
//! I7. After the theft the PID is free while the agent still believes it owns it.
//!
//! A faithful replica must keep: the drain-until-empty reaper (this is the fixed reaper of
//! Z1, it reaps everything), statuses discarded, the main wait by PID through std `Child::wait`,
//! and -1 when that wait fails.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::sync::OnceLock;

use nix::sys::signal::{SaFlags, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use racelab_hooks::point;

use crate::cli::Args;
use crate::error::LegacyError;
use crate::os;

/// The self-pipe's write end, for the SIGCHLD handler (set once, before the handler exists).
static WAKE: OnceLock<OwnedFd> = OnceLock::new();

/// Runs `program args` as the agent would: reaper task first, then the command, waited for by
/// PID. Returns the reported exit code: the child's code, or -1 when its status was lost (or it
/// died by a signal, as `code()` is `None` then).
///
/// Process-wide: becomes a subreaper, installs a SIGCHLD handler, starts a reaper thread that
/// reaps every child of the process. Never call it in a test harness.
pub fn run(program: &OsStr, args: &[OsString]) -> Result<i32, LegacyError> {
    os::in_sandbox();
    os::become_init()?;
    let (read_end, write_end) = rustix::pipe::pipe_with(
        rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
    )
    .map_err(LegacyError::os("pipe2"))?;
    // Blocking reads on our end; the handler's end stays non-blocking so it never stalls.
    rustix::fs::fcntl_setfl(&read_end, rustix::fs::OFlags::empty())
        .map_err(LegacyError::os("fcntl(F_SETFL)"))?;
    let _ = WAKE.set(write_end);
    racelab_sys::sigaction::install_handler(Signal::SIGCHLD, on_sigchld, SaFlags::SA_RESTART)
        .map_err(LegacyError::signal("sigaction(SIGCHLD)"))?;
    std::thread::spawn(move || reap_zombies(std::fs::File::from(read_end)));

    let mut child = std::process::Command::new(program).args(args).spawn().map_err(|source| {
        LegacyError::Spawn { program: program.to_string_lossy().into_owned(), source }
    })?;
    point!(main.spawned);
    // The window: from here until the blocking wait below, the reaper's waitpid(-1) may take
    // the child's status first. The point lets the lab hold the main path here.
    point!(main.pid_stored);
    // waitpid(pid, 0): races the reaper's waitpid(-1) for this child's status.
    let status = child.wait();
    point!(main.reaped);
    if let Err(e) = &status {
        eprintln!("greedy-reaper: wait for {} failed: {e}", child.id());
    }
    Ok(status.ok().and_then(|s| s.code()).unwrap_or(-1))
}

/// The agent as a process: `-- program args`; prints `greedy-reaper: exit code N` on stderr
/// and exits with N (so -1 shows as 255).
pub fn main_code(args: impl IntoIterator<Item = OsString>) -> i32 {
    let run = |_: &Args, program: &OsStr, rest: &[OsString]| run(program, rest);
    crate::cli::main_with("greedy-reaper", args, &[], 125, run, |code| {
        eprintln!("greedy-reaper: exit code {code}");
        code
    })
}

/// tokio's signal driver in miniature: one byte per delivered SIGCHLD (deliveries coalesce).
extern "C" fn on_sigchld(_signal: std::os::raw::c_int) {
    if let Some(fd) = WAKE.get() {
        let _ = rustix::io::write(fd, &[1]);
    }
}

fn reap_zombies(mut wake: std::fs::File) {
    let mut buf = [0u8; 64];
    loop {
        // sigchld.recv().await: all pending wakeups are consumed at once.
        match wake.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        point!(reaper.woke);
        // The drain: reap until none is left, discarding every status, the main child's too.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => point!(reaper.reaped),
            }
        }
    }
}
