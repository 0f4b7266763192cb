//! `reaping_handler`: a SIGCHLD handler reaps every child and keeps the status only of the pid
//! the main path stores after the fork returned.
//!
//! Models OpenRC `src/openrc-run/openrc-run.c` before bae9e685 (issue #895, "child sometimes not
//! reaped properly in openrc-run svc_exec(), signal_pipe never written to"; pull #898, "block
//! SIGCHLD during fork() to avoid race with reaping"). `handle_signal` is installed for SIGCHLD
//! by `signal_setup` (`sigaction` with no flags: no SA_RESTART); on SIGCHLD it loops
//! `waitpid(-1, &status, WNOHANG)` and writes `status` into `signal_pipe[1]` only when
//! `signal_pipe[1] > -1 && pid == service_pid`; every other status is dropped. `svc_exec` opens
//! `signal_pipe` (`pipe2(O_CLOEXEC)`), sets `service_pid = fork()` (the child execs
//! openrc-run.sh), then polls `signal_pipe[0]`: forever for a `notimeout` service, else warning
//! every 10 s (WARN_TIMEOUT) and giving up after 60 s (WAIT_TIMEOUT) with
//! `kill(service_pid, SIGKILL)`; it reads the status and returns `WEXITSTATUS(status)`, then,
//! with SIGCHLD blocked, closes the pipe (`signal_pipe[1] = -1` first) and sets
//! `service_pid = 0`. Yelp/dumb-init pull #104 ("Set the signal mask before forking") closed a
//! window of the same family: a child that exits before the parent is ready for its SIGCHLD.
//!
//! Race window (S1): from the child's creation until `service_pid` holds its pid. In the pull's
//! words, there is no guarantee that the main thread runs before the signal handler: a child
//! that exits at once (a failing script, a quick one) is reaped by the handler while
//! `service_pid` is still 0, its status is dropped, the pipe is never written, and the poll
//! waits (a minute, or forever with `notimeout`) for a status that will never come (invariant
//! I4, counted from the child's end). Points: `main.spawned` (the child exists, its pid not
//! stored), `reaper.woke` and `reaper.reaped` (in the handler), `main.pid_stored`.
//!
//! A faithful replica must keep: the handler reaping with `waitpid(-1, WNOHANG)` and writing only
//! for `service_pid`, no SA_RESTART, the store after the spawn returned, the poll on the pipe
//! with its 10 s warnings and 60 s give-up. The service script is the program run, spawned with
//! `std::process::Command` (fork and exec: the child exists before the store, as with `fork()`).
//! The pipe's write end stays open until the process exits (`signal_pipe[1] = -1` is a flag
//! here). Not modelled: the pty and the output prefixing.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::raw::c_int;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering::SeqCst};
use std::time::{Duration, Instant};

use nix::sys::signal::{SaFlags, SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use racelab_hooks::point;

use crate::cli::Args;
use crate::error::LegacyError;
use crate::os;

/// `service_pid`: 0 until the main path stores the child's pid (S1's window).
pub static SERVICE_PID: AtomicI32 = AtomicI32::new(0);
/// `signal_pipe[1] > -1`.
static PIPE_OPEN: AtomicBool = AtomicBool::new(false);
/// `signal_pipe[1]`, set once before the handler exists.
static PIPE_W: OnceLock<OwnedFd> = OnceLock::new();

/// WARN_TIMEOUT.
pub const WARN_TIMEOUT: Duration = Duration::from_secs(10);
/// WAIT_TIMEOUT.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(60);

/// The raw wait status the original writes into the pipe.
fn raw_status(status: WaitStatus) -> Option<(i32, c_int)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid.as_raw(), (code & 0xff) << 8)),
        WaitStatus::Signaled(pid, sig, core) => {
            Some((pid.as_raw(), sig as c_int | if core { 0x80 } else { 0 }))
        }
        _ => None,
    }
}

/// The original's `handle_signal`, SIGCHLD case (async-signal context, any thread).
extern "C" fn handle_signal(_signal: c_int) {
    let saved = nix::errno::Errno::last_raw();
    point!(reaper.woke);
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => break,
            Ok(status) => {
                let Some((pid, raw)) = raw_status(status) else { continue };
                point!(reaper.reaped);
                // S1: before the main path stored the pid, SERVICE_PID is 0: the status of the
                // service itself is dropped here, and nothing will ever write the pipe.
                if PIPE_OPEN.load(SeqCst)
                    && pid == SERVICE_PID.load(SeqCst)
                    && let Some(fd) = PIPE_W.get()
                {
                    let _ = rustix::io::write(fd, &raw.to_ne_bytes());
                }
            }
        }
    }
    nix::errno::Errno::set_raw(saved);
}

/// `svc_exec`: runs `program args` and returns `WEXITSTATUS` of the status the handler sent,
/// or -1 when it gave up after WAIT_TIMEOUT.
pub fn run(program: &OsStr, args: &[OsString]) -> Result<i32, LegacyError> {
    os::in_sandbox();
    // main(): signal_setup(SIGCHLD, handle_signal): no SA_RESTART.
    racelab_sys::sigaction::install_handler(Signal::SIGCHLD, handle_signal, SaFlags::empty())
        .map_err(LegacyError::signal("sigaction(SIGCHLD)"))?;
    let (rd, wr) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(LegacyError::os("pipe2"))?;
    let _ = PIPE_W.set(wr);
    PIPE_OPEN.store(true, SeqCst);
    let start = Instant::now();
    let (wait_deadline, mut warn_deadline) = (start + WAIT_TIMEOUT, start + WARN_TIMEOUT);

    let child = Command::new(program).args(args).spawn().map_err(|source| LegacyError::Spawn {
        program: program.to_string_lossy().into_owned(),
        source,
    })?;
    // The child exists; until the store below, the handler cannot recognise it (S1).
    point!(main.spawned);
    SERVICE_PID.store(child.id() as i32, SeqCst); // `service_pid = fork();` in the parent
    point!(main.pid_stored);

    let ret = loop {
        let left = warn_deadline.saturating_duration_since(Instant::now());
        let mut fds = [rustix::event::PollFd::new(&rd, rustix::event::PollFlags::IN)];
        let ts = rustix::time::Timespec::try_from(left).unwrap_or_default();
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(LegacyError::os("poll")(e)),
        }
        if !fds[0].revents().is_empty() {
            // signal_pipe receives service_pid's exit status
            let mut buf = [0u8; 4];
            let n = rustix::io::read(&rd, &mut buf).map_err(LegacyError::os("read"))?;
            if n != buf.len() {
                eprintln!("reaping-handler: receive failed: short read");
                break -1;
            }
            break (c_int::from_ne_bytes(buf) >> 8) & 0xff; // WEXITSTATUS
        }
        let now = Instant::now();
        if now >= wait_deadline {
            // The original's give-up: SIGKILL to service_pid, reaped long ago if S1 happened.
            let _ = os::kill(SERVICE_PID.load(SeqCst), Signal::SIGKILL);
            break -1;
        } else if now >= warn_deadline {
            eprintln!(
                "reaping-handler: waiting for service ({} seconds)",
                (wait_deadline - now).as_secs()
            );
            warn_deadline = (warn_deadline + WARN_TIMEOUT).min(wait_deadline);
        }
    };
    // Close the pipe with SIGCHLD blocked, then forget the pid.
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    let old = chld.thread_swap_mask(nix::sys::signal::SigmaskHow::SIG_BLOCK).ok();
    PIPE_OPEN.store(false, SeqCst);
    if let Some(old) = old {
        let _ = old.thread_set_mask();
    }
    SERVICE_PID.store(0, SeqCst);
    drop(child); // never waited for here: the handler reaps
    Ok(ret)
}

/// `openrc-run` running one service script: `-- program args`; prints
/// `reaping-handler: exit code N` on stderr and exits with N.
pub fn main_code(args: impl IntoIterator<Item = OsString>) -> i32 {
    let run = |_: &Args, program: &OsStr, rest: &[OsString]| run(program, rest);
    crate::cli::main_with("reaping-handler", args, &[], 1, run, |code| {
        eprintln!("reaping-handler: exit code {code}");
        code
    })
}
