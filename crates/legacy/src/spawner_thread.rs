//! `spawner_thread`: the child is started on a short-lived thread and waited for on another,
//! while it ties its life to its parent with PR_SET_PDEATHSIG, whose "parent" is the thread.
//!
//! Models the program of golang/go issue #27505's report (virtuald, 2018-09-05): "started a new
//! program on one thread, and tried to wait for it on another thread, and the child process kept
//! dying", as Tencent-Hunyuan/UniRL had it at c1da41b (issue #275, fixed by PR #276): vLLM-Omni's
//! diffusion workers are started by temporary stage-initialization threads (`Process.start()`),
//! and the generic multiprocessing wrapper that c1da41b changed makes every worker call
//! `prctl(PR_SET_PDEATHSIG, SIGKILL)` itself as it starts. prctl(2), quoted in the Go issue: the
//! "parent" is the thread that created the process, and the signal is sent when that thread
//! terminates. Go's `SysProcAttr.Pdeathsig` has the same trap when the starting goroutine's
//! thread exits (moby/moby PR #44215, containerd/go-runc PR #86). UniRL's fix arms the signal
//! only when the starter is the process's main thread.
//!
//! Shape: a starter thread spawns the program and hands the child to the main thread over a
//! channel, then returns (the thread exits); the main thread keeps the child and waits for it.
//! The child arms its own PR_SET_PDEATHSIG(SIGKILL) as it starts (the lab's workload with
//! `--pdeathsig`). So that the replay ends when nothing kills the child, a timer thread stops it
//! with SIGTERM after the timeout (`threading.Timer(timeout, proc.terminate)`; UniRL's owner
//! stops its workers at shutdown instead).
//!
//! Race window (P2): between the child arming its PR_SET_PDEATHSIG and the starter thread's
//! exit. When the thread exits first, the child has been handed to the main thread (the kernel
//! gives a dead thread's children to a live thread of the same process) and arms its signal for
//! that one: no harm. When the child arms first, the starter's exit SIGKILLs it: a healthy child
//! of a live parent dies, nobody decided it, and the design reports the death as the child's own
//! end (invariant I2). Points: `spawner.exiting` (held until the child has armed),
//! `main.pid_stored`, `main.reaped`, `duration.expired`.
//!
//! A faithful replica must keep: the spawn on a thread that exits once the child is handed
//! over, the wait on another thread, and the child arming the signal itself after the spawn.
//! Its timer checks a flag before it signals, as Python's `send_signal` checks `returncode`;
//! both leave a check-then-kill window (Q1's cousin), not exercised here.

use std::ffi::{OsStr, OsString};
use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::thread;
use std::time::Duration;

use nix::sys::signal::Signal;
use racelab_hooks::point;

use crate::cli::Args;
use crate::error::LegacyError;
use crate::os;

/// What the design reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The child's status as the main thread's wait collected it.
    pub status: ExitStatus,
    /// The timer stopped the child (SIGTERM after the timeout).
    pub timed_out: bool,
}

/// Starts `program args` on a starter thread that exits once it handed the child over, waits
/// for it on this thread, and stops it with SIGTERM after `timeout`.
pub fn run(program: &OsStr, args: &[OsString], timeout: Duration) -> Result<Outcome, LegacyError> {
    os::in_sandbox();
    let (tx, rx) = std::sync::mpsc::channel::<std::io::Result<Child>>();
    let (prog, argv) = (program.to_os_string(), args.to_vec());
    // The stage-initialization thread: start the worker, hand it over, return. Detached.
    thread::spawn(move || {
        let _ = tx.send(Command::new(&prog).args(&argv).spawn());
        // P2: this thread ends right here. If the child has armed its PR_SET_PDEATHSIG by now,
        // the thread's exit is its "parent's death": the kernel sends it SIGKILL.
        point!(spawner.exiting);
    });
    let spawned = rx.recv().map_err(|_| LegacyError::Spawn {
        program: program.to_string_lossy().into_owned(),
        source: std::io::Error::other("the starter thread ended without a child"),
    })?;
    let mut child = spawned.map_err(|source| LegacyError::Spawn {
        program: program.to_string_lossy().into_owned(),
        source,
    })?;
    point!(main.pid_stored);

    let pid = child.id() as i32;
    let reaped = Arc::new(AtomicBool::new(false));
    let timed_out = Arc::new(AtomicBool::new(false));
    let (timer_reaped, timer_fired) = (Arc::clone(&reaped), Arc::clone(&timed_out));
    // `threading.Timer(timeout, proc.terminate)`: detached, never joined.
    thread::spawn(move || {
        thread::sleep(timeout); // the design's timer
        point!(duration.expired);
        if !timer_reaped.load(SeqCst) {
            timer_fired.store(true, SeqCst);
            let _ = os::kill(pid, Signal::SIGTERM);
        }
    });

    // "tried to wait for it on another thread": this one.
    let status = child.wait().map_err(|source| LegacyError::Wait { pid: pid as u32, source })?;
    reaped.store(true, SeqCst);
    point!(main.reaped);
    Ok(Outcome { status, timed_out: timed_out.load(SeqCst) })
}

/// The design as a process: `--timeout-ms N -- program args`; prints
/// `spawner-thread: <status> (timed out: B)` on stderr and exits with the child's shell code.
pub fn main_code(args: impl IntoIterator<Item = OsString>) -> i32 {
    let run = |a: &Args, program: &OsStr, rest: &[OsString]| {
        run(program, rest, a.millis("timeout-ms")?.unwrap_or(Duration::from_secs(10)))
    };
    crate::cli::main_with("spawner-thread", args, &["timeout-ms"], 1, run, |o| {
        eprintln!("spawner-thread: {} (timed out: {})", o.status, o.timed_out);
        crate::cli::shell_code(o.status)
    })
}
