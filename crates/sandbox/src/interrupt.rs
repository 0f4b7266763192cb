//! Interrupts: a SIGINT, SIGTERM or SIGHUP to a lab ends every replay in flight, cleans up
//! what they made, and ends the lab, within [`INTERRUPT_BOUND`].
//!
//! The chain, top to bottom, and who does what:
//! - the **front end** (a test binary, `racelab replay`, `racelab explore`, ...: multi-threaded)
//!   calls [`install`] once. A handler forwards the signal to a pipe
//!   ([`racelab_sys::sigaction::forward_to_pipe`]); a thread of its own reads it, marks the
//!   process interrupted (no new runner starts: [`crate::Server::start`] and
//!   [`crate::run_command`] refuse), sends SIGTERM to every runner and runner server it started
//!   (by pidfd: only what it started), waits for them to end (bounded; the one that does not is
//!   SIGKILLed, and what it leaves is collected right after), reaps them, and then ends the
//!   process by the same signal, default disposition restored;
//! - a **runner** (exec'd, forked by a server, or a server that is its own runner) reads the
//!   signal from a signalfd ([`crate::stop`]) beside PID 1 and its pipes. It SIGKILLs PID 1
//!   (its namespace's init), thaws and removes every v1 freezer group and every v2 leaf the
//!   namespace's processes made (the owner names carry the namespace), waits for PID 1 to end
//!   (a frozen task would have kept it from ending) and reaps it, removes its own leaf, and exits
//!   `128 + signal`. A server between runs exits at once; one waiting for a forked runner passes
//!   the signal on to it first;
//! - **PID 1** and what it starts do nothing: the kernel ends the namespace with its init.
//!
//! A signal to the whole process group reaches every one of them at once: each runner stops on
//! its own, and the front end's SIGTERM comes on top (harmless). A signal to the front end only
//! reaches the runners through it. Either way nothing is left once the front end is gone.
//!
//! What no process can clean up: a SIGKILL. A lab SIGKILLed with a task frozen leaves that task
//! (in D state), its namespace's init stuck in its exit, and their cgroups; the next lab to
//! start collects them ([`crate::gc_stale_leaves`]; see the README, "Safety of the lab").

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rustix::process::{Pid, PidfdFlags, WaitId, WaitIdOptions};

use crate::error::SandboxError;
use crate::proc::poll_readable;
use crate::stop::STOP_SIGNALS;

/// From the signal to a front end that called [`install`] to the moment it is gone, with every
/// replay it ran ended, reaped, and its cgroups removed. Measured well under this (a few
/// milliseconds to tens, also with a task frozen). A runner ends its replay within
/// `RUNNER_ABORT_GRACE` (1.2 s); one that has not after `RUNNER_GRACE` (2 s) is SIGKILLed and
/// waited for 0.3 s more, and what it left is collected (each wait of that collection has its
/// own bound, so a runner that overran can stretch this one).
pub const INTERRUPT_BOUND: Duration = Duration::from_secs(3);

/// How long the front end waits for its runners to end their replays before SIGKILLing them.
/// A runner's own cleanup is bounded by [`RUNNER_ABORT_GRACE`], well within this.
const RUNNER_GRACE: Duration = Duration::from_secs(2);

/// How long a runner waits for an interrupted replay's namespace to end, and for its cgroups
/// to empty: its whole cleanup after an interrupt.
pub(crate) const RUNNER_ABORT_GRACE: Duration = Duration::from_millis(1200);

/// How long the front end waits for a runner it had to SIGKILL.
const KILLED_WAIT: Duration = Duration::from_millis(300);

/// The runners this process started and has not reaped, and whether it was interrupted.
#[derive(Debug, Default)]
struct Registry {
    next: u64,
    live: BTreeMap<u64, OwnedFd>,
    interrupted: Option<i32>,
}

static REGISTRY: Mutex<Registry> =
    Mutex::new(Registry { next: 0, live: BTreeMap::new(), interrupted: None });

static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();

/// Never notified: what [`refuse_if_interrupted`] waits on, bounded, while the process ends.
static ENDING: Condvar = Condvar::new();

/// Whether `sig` is ignored in this process now (SigIgn of /proc/self/status).
fn ignored_now(sig: nix::sys::signal::Signal) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .unwrap_or(0);
    mask & (1 << (sig as i32 - 1)) != 0
}

fn registry() -> MutexGuard<'static, Registry> {
    // The registry holds no invariant a panic elsewhere could break halfway.
    REGISTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Makes SIGINT, SIGTERM and SIGHUP end this process the lab's way (see the module docs): the
/// one call a front end makes, early in `main` (a library that starts replays for a harness
/// without a `main`, such as libtest, makes it on the first replay). Idempotent; the first
/// call's result is returned again.
///
/// It replaces SIGINT's and SIGTERM's dispositions, an inherited `SIG_IGN` included: a lab that
/// ignored SIGINT (a background job of a script) would be ended by the SIGKILL that usually
/// follows, and that can leave a task frozen. An inherited `SIG_IGN` of SIGHUP is kept: that is
/// `nohup`, asked for on purpose, and a logout must not end the lab.
pub fn install() -> Result<(), SandboxError> {
    INSTALLED
        .get_or_init(|| {
            let hup_ignored = ignored_now(nix::sys::signal::Signal::SIGHUP);
            let signals: Vec<_> = STOP_SIGNALS
                .iter()
                .copied()
                .filter(|s| !(hup_ignored && *s == nix::sys::signal::Signal::SIGHUP))
                .collect();
            let rd = racelab_sys::sigaction::forward_to_pipe(&signals)
                .map_err(|e| format!("forwarding SIGINT, SIGTERM and SIGHUP to a pipe: {e}"))?;
            std::thread::Builder::new()
                .name("racelab-interrupt".into())
                .spawn(move || watch(rd))
                .map(|_| ())
                .map_err(|e| format!("starting the interrupt thread: {e}"))
        })
        .clone()
        .map_err(|message| SandboxError::Setup { message, stderr: String::new() })
}

/// The signal that interrupted this process, if one did (after [`install`]).
pub fn interrupted() -> Option<i32> {
    registry().interrupted
}

/// A runner (or runner server) this process started, known to the interrupt thread until the
/// handle is dropped. Signal the runner through it, never by pid: once interrupted, the
/// interrupt thread reaps the runner, and its pid may then name another process.
#[derive(Debug)]
pub(crate) struct Tracked {
    id: Option<u64>,
    pidfd: Option<OwnedFd>,
}

impl Tracked {
    /// The runner's pidfd (`None`: none could be opened).
    pub(crate) fn pidfd(&self) -> Option<&OwnedFd> {
        self.pidfd.as_ref()
    }

    /// SIGKILLs the runner: by pidfd, or by `child` when there is none (then nothing else
    /// reaps it).
    pub(crate) fn kill(&self, child: &mut std::process::Child) {
        match &self.pidfd {
            Some(fd) => {
                let _ = rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL);
            }
            None => {
                let _ = child.kill();
            }
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            registry().live.remove(&id);
        }
    }
}

/// Tracks child `pid`, which the caller started and has not reaped (so the pid still names it
/// when its pidfd is opened here). When this process has already been interrupted, the child
/// gets its SIGTERM at once: it was started while the interrupt thread was signalling the
/// others. Untracked (a no-op handle) when no pidfd can be opened.
pub(crate) fn track(pid: u32) -> Tracked {
    let Some(pidfd) = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .and_then(|p| rustix::process::pidfd_open(p, PidfdFlags::empty()).ok())
    else {
        return Tracked { id: None, pidfd: None };
    };
    let mut reg = registry();
    if reg.interrupted.is_some() {
        let _ = rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::TERM);
    }
    let Ok(own) = pidfd.try_clone() else { return Tracked { id: None, pidfd: None } };
    let id = reg.next;
    reg.next += 1;
    reg.live.insert(id, pidfd);
    Tracked { id: Some(id), pidfd: Some(own) }
}

/// An error when this process was interrupted: no runner starts after that. It comes only
/// after [`INTERRUPT_BOUND`]: the interrupt thread ends the process first, and a caller that
/// got the error at once could end the process by returning from `main` before the runners
/// are cleaned up (and with status 0 where the signal was due).
pub(crate) fn refuse_if_interrupted() -> Result<(), SandboxError> {
    let mut reg = registry();
    let Some(signal) = reg.interrupted else { return Ok(()) };
    let until = Instant::now() + INTERRUPT_BOUND;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(SandboxError::Interrupted { signal });
        }
        reg = match ENDING.wait_timeout(reg, left) {
            Ok((guard, _)) => guard,
            Err(poisoned) => poisoned.into_inner().0,
        };
    }
}

/// The interrupt thread: waits for a signal's byte, then ends the runners and the process.
fn watch(rd: OwnedFd) {
    let mut byte = [0u8; 1];
    let signo = loop {
        match rustix::io::read(&rd, &mut byte) {
            Ok(1) => break i32::from(byte[0]),
            Err(rustix::io::Errno::INTR) => continue,
            // Unreachable (the write end is never closed, the read end is this thread's): but
            // were it reached, the signals must not be swallowed by a pipe nobody reads.
            _ => {
                for signal in STOP_SIGNALS {
                    let _ = racelab_sys::sigaction::restore_default(signal);
                }
                return;
            }
        }
    };
    let start = Instant::now();
    // Marked under the lock that `track` takes: a runner is either in this list or sees the
    // mark and is signalled by `track` itself.
    let runners: Vec<(u64, OwnedFd)> = {
        let mut reg = registry();
        reg.interrupted = Some(signo);
        reg.live.iter().filter_map(|(id, fd)| Some((*id, fd.try_clone().ok()?))).collect()
    };
    for (_, fd) in &runners {
        let _ = rustix::process::pidfd_send_signal(fd, rustix::process::Signal::TERM);
    }
    end_runners(&runners, start);
    // A runner spawned while the list above was taken (between its caller's refusal check and
    // its `track`) got its SIGTERM from `track`: it is waited for and reaped the same way, so
    // nothing of it outlives this process.
    let late: Vec<(u64, OwnedFd)> = {
        let reg = registry();
        let seen = |id: &u64| runners.iter().any(|(r, _)| r == id);
        reg.live
            .iter()
            .filter(|(id, _)| !seen(id))
            .filter_map(|(id, fd)| Some((*id, fd.try_clone().ok()?)))
            .collect()
    };
    end_runners(&late, start);
    // What a runner SIGKILLed above left (its init dying, perhaps with a task frozen), or one
    // that could not name its namespace: collected from here, which sees every namespace below.
    crate::leaf::gc_stale_leaves();
    end_by(signo)
}

/// Waits for `runners` (already sent SIGTERM) until `start + RUNNER_GRACE`, SIGKILLs those that
/// overran, and reaps them all.
fn end_runners(runners: &[(u64, OwnedFd)], start: Instant) {
    let mut overran = Vec::new();
    for (_, fd) in runners {
        let left = (start + RUNNER_GRACE).saturating_duration_since(Instant::now());
        if !poll_readable(fd.as_fd(), left).unwrap_or(false) {
            // Last resort: its PID 1 follows by pdeathsig, and what it leaves is collected later.
            let _ = rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL);
            overran.push(fd);
        }
    }
    let killed_by = Instant::now() + KILLED_WAIT;
    for fd in overran {
        let _ = poll_readable(fd.as_fd(), killed_by.saturating_duration_since(Instant::now()));
    }
    for (_, fd) in runners {
        // Reaped here: this process ends next, and an unreaped runner would stay a zombie until
        // its new parent collects it. The thread that started it may still wait for it: it
        // then gets ECHILD, which every caller turns into an error (the process is ending).
        let _ = rustix::process::waitid(
            WaitId::PidFd(fd.as_fd()),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
        );
    }
}

/// Ends this process by signal `signo`, as it would have ended without [`install`] (its parent
/// sees the signal in the wait status); `128 + signo` if that does not happen.
fn end_by(signo: i32) -> ! {
    if let Ok(signal) = Signal::try_from(signo) {
        let _ = racelab_sys::sigaction::restore_default(signal);
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), signal);
    }
    std::process::exit(crate::stop::exit_code(signo))
}
