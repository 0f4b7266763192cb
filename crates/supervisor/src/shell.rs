//! The OS shell around the state machine: one thread, one `poll` over the child's pidfd and a
//! signalfd, timers as poll deadlines. It turns kernel facts into [`Event`]s and executes the
//! machine's [`Action`](crate::machine::Action)s through [`Kernel`], the only place that
//! touches the child.
//!
//! The files, bottom to top: `timers.rs` (the machine's timers as deadlines), `kernel.rs` (the
//! only code that touches the child and its tree), `output.rs` (captured streams), `run.rs`
//! (the machine fed and its actions executed; statuses taken), `settle.rs` (the tree's rest
//! after the report), `spawn.rs` (starting the child), and this file: the session and its loop.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::lab_points::point;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use racelab_sys::spawn::{Grouping, SpawnRequest};
use rustix::event::{PollFd, PollFlags, poll};

use crate::machine::{Event, Machine, Policy, Timer, Tree};
use crate::report::Report;
use crate::{Config, Containment, ErrorKind, SupervisorError};

mod kernel;
mod output;
mod run;
mod settle;
mod spawn;
mod timers;
use kernel::Kernel;
use output::Output;
use run::Run;
use settle::settle;
use spawn::{cstring, spawn_failed, spawn_with_fallback};
use timers::{Timers, timespec};

/// Restores the calling thread's signal mask when `run` returns, whatever the path.
struct MaskGuard(SigSet);

impl Drop for MaskGuard {
    fn drop(&mut self) {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.0), None);
    }
}

/// One supervision: from `start` (signals blocked, child spawned) to `wait`'s report. Lives on
/// the thread that started it (the mask guard restores that thread's mask).
pub(crate) struct Session {
    /// The child and its machine; `None` when the program could not be started.
    run: Option<Run>,
    /// The report of a program that could not be started (`ExecFailed`, `NotFound`).
    early: Option<Report>,
    sigfd: SignalFd,
    reap_orphans: bool,
    kill_wait: Duration,
    /// The captured streams (none unless the config asks for them), and how long they are
    /// read after the child's end.
    output: Output,
    output_wait: Duration,
    /// `wait` returned its report: nothing is left for `Drop` to clean up.
    finished: bool,
    /// Last field: the mask is restored after the child and its tree were dealt with.
    _mask: MaskGuard,
}

impl Session {
    pub(crate) fn start(
        config: &Config,
        program: &OsStr,
        args: &[OsString],
    ) -> Result<Session, SupervisorError> {
        // Single-threaded: the lab must never park this thread waiting for another of our actors.
        crate::lab_points::bind_thread(&[
            "main",
            "escalation",
            "duration",
            "signal",
            "reaper",
            "poll",
        ]);
        let start = Instant::now();
        let prog = cstring(program)?;
        let mut argv = vec![prog.clone()];
        for a in args {
            argv.push(cstring(a)?);
        }

        // An inherited SIG_IGN for SIGCHLD would make the kernel auto-reap: statuses lost (I7).
        racelab_sys::spawn::reset_to_default(Signal::SIGCHLD)
            .map_err(|e| SupervisorError::new(ErrorKind::Signals, "reset SIGCHLD to SIG_DFL", e))?;
        let mut set = SigSet::empty();
        for s in &config.forward {
            set.add(*s);
        }
        set.add(Signal::SIGCHLD);
        let mut old = SigSet::empty();
        // Q4: block BEFORE spawn. A signal that arrives from here on, spawn included, stays
        // pending and is read from the signalfd by the loop in `wait`, once the pidfd is held.
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))
            .map_err(|e| SupervisorError::new(ErrorKind::Signals, "block forwarded signals", e))?;
        let mask = MaskGuard(old);
        let flags = SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC;
        let sigfd = SignalFd::with_flags(&set, flags)
            .map_err(|e| SupervisorError::new(ErrorKind::Signals, "signalfd", e))?;
        point!(main.handler_installed);

        let is_init = rustix::process::getpid().as_raw_nonzero().get() == 1;
        let reap_orphans = is_init || config.subreaper;
        if config.subreaper && !is_init {
            rustix::process::set_child_subreaper(Some(rustix::process::getpid())).map_err(|e| {
                SupervisorError::new(ErrorKind::Signals, "PR_SET_CHILD_SUBREAPER", e)
            })?;
        }

        let cgroup = match config.containment {
            Containment::Cgroup => Some(kernel::CgroupLeaf::create()?),
            _ => None,
        };
        let tree = match config.containment {
            Containment::None => Tree::ChildOnly,
            Containment::Group => Tree::Group,
            Containment::Cgroup => Tree::Cgroup,
            Containment::PidNamespace => Tree::PidNamespace,
        };
        // The write ends live until the spawn returned: then only the child's tree holds them.
        let (output, child_ends) = Output::create(config.capture_stdout, config.capture_stderr)?;
        let mut reset: Vec<Signal> = config.forward.clone();
        reset.extend([Signal::SIGCHLD, Signal::SIGPIPE]);
        let dir_fd = cgroup.as_ref().map(|c| c.dir_fd.as_fd());
        let req = SpawnRequest {
            program: &prog,
            argv: &argv,
            grouping: if tree == Tree::Group { Grouping::NewGroup } else { Grouping::Inherit },
            cgroup_dir: dir_fd,
            cgroup_procs: None,
            new_pid_namespace: config.containment == Containment::PidNamespace,
            reset_signals: &reset,
            reset_all_signals: true,
            die_with_parent: config.die_with_supervisor,
            stdout: child_ends.stdout.as_ref().map(|f| f.as_fd()),
            stderr: child_ends.stderr.as_ref().map(|f| f.as_fd()),
            // P1: the lab's point between the clone and PR_SET_PDEATHSIG (none outside the lab).
            child_hook: crate::lab_points::CHILD_HOOK,
        };
        let mut machine = Machine::new(Policy {
            timeout: config.timeout,
            grace: config.grace,
            kill_wait: config.kill_wait,
            stop_signal: config.stop_signal,
            tree,
        });
        let mut session = Session {
            run: None,
            early: None,
            sigfd,
            reap_orphans,
            kill_wait: config.kill_wait,
            output,
            output_wait: config.output_wait,
            finished: false,
            _mask: mask,
        };
        // The pidfd comes from clone3(CLONE_PIDFD), created atomically with the child: there is
        // no instant at which the child exists and we do not hold a handle that pins its
        // identity.
        let spawned = spawn_with_fallback(&req, cgroup.as_ref());
        // The child has its copies of the write ends now (or failed): ours must go, or the
        // captured streams could never reach their end of file.
        drop(child_ends);
        let spawned = match spawned {
            Ok(s) => s,
            Err(e) => {
                session.early = Some(spawn_failed(&mut machine, start, e, config)?);
                return Ok(session);
            }
        };
        point!(main.spawned);
        point!(main.pid_stored);
        let k = Kernel::new(spawned.pid, spawned.pidfd, cgroup, tree);
        let mut run = Run { m: machine, k, t: Timers::default(), r: None, start };
        run.apply(Event::Spawned { pid: spawned.pid });
        session.run = Some(run);
        Ok(session)
    }

    /// The main child's pid (for display: it may be reused once the child is reaped).
    pub(crate) fn pid(&self) -> Option<i32> {
        self.run.as_ref().map(|r| r.k.pid)
    }

    /// A stop request from the supervising thread, executed at once.
    pub(crate) fn stop(&mut self) {
        let Some(run) = self.run.as_mut() else { return };
        // The truth first, as in the loop: a child that already exited is reported as exited,
        // not as stopped by this request.
        run.check_main_exit();
        run.apply(Event::Stop);
    }

    /// The event loop, to the end: the report, once the child is reaped and its tree is gone.
    pub(crate) fn wait(&mut self) -> Result<Report, SupervisorError> {
        let Some(run) = self.run.as_mut() else {
            self.finished = true;
            let mut report =
                self.early.take().unwrap_or_else(|| unreachable_report(Instant::now()));
            report.captured = self.output.drain(self.output_wait, &mut report.warnings);
            return Ok(report);
        };
        while run.r.is_none() {
            wait_for_events(&run.k.pidfd, &self.sigfd, &self.output.open_fds(), run.t.next())?;
            // Output first, so that a child writing much never blocks on a full pipe.
            self.output.read_available();
            // 1. The truth first: an exit seen in this round beats a timer due in this round
            // (Q3: a child that exits right at the deadline is not killed and not called forced).
            run.check_main_exit();
            // 2. Signals, SIGCHLD included (it coalesces: one read may stand for many exits).
            while run.r.is_none() {
                let info = match self.sigfd.read_signal() {
                    Ok(Some(info)) => info,
                    Ok(None) => break,
                    Err(e) => {
                        return Err(SupervisorError::new(ErrorKind::Wait, "read signalfd", e));
                    }
                };
                let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else { continue };
                if sig == Signal::SIGCHLD {
                    point!(reaper.woke);
                    if self.reap_orphans {
                        run.drain();
                    } else {
                        run.check_main_exit();
                    }
                    continue;
                }
                point!(signal.handler_entered);
                run.apply(Event::Signal(sig));
            }
            // 3. Timers that are due.
            while run.r.is_none() {
                let Some(t) = run.t.take_due(Instant::now()) else { break };
                if t == Timer::Duration {
                    point!(duration.expired);
                }
                run.apply(Event::Timer(t));
            }
        }
        let mut report = run.r.take().unwrap_or_else(|| unreachable_report(run.start));
        let unkillable = report.reason == crate::StopReason::Unkillable;
        if unkillable {
            report.survivors = run.k.survivors();
            run.k.abandon();
        }
        settle(run, self.reap_orphans);
        report.orphans_reaped = run.k.orphans_reaped;
        report.warnings.append(&mut run.k.warnings);
        // H1: the tree is swept (and, as a reaper, its orphans reaped); what is left holding the
        // pipe is outside the containment, so the read to the end of file is bounded.
        report.captured = self.output.drain(self.output_wait, &mut report.warnings);
        if unkillable {
            let names: Vec<String> = report
                .survivors
                .iter()
                .map(|s| format!("{} ({}) state {}", s.pid, s.name, s.state))
                .collect();
            report.warnings.push(format!("unkillable: {}", names.join(", ")));
        }
        self.finished = true;
        Ok(report)
    }
}

impl Drop for Session {
    /// A session dropped before `wait` returned (an early return or a panic in the embedding
    /// program, or a failed poll): the tree is SIGKILLed and the child reaped, bounded by
    /// `kill_wait`, so nothing outlives the supervisor's handle.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Some(run) = self.run.as_mut() {
            run.k.abort(self.kill_wait);
        }
    }
}

fn unreachable_report(start: Instant) -> Report {
    Report {
        reason: crate::StopReason::Unkillable,
        status: None,
        pid: None,
        signals: Vec::new(),
        swept: false,
        survivors: Vec::new(),
        warnings: vec!["internal: loop ended without a report".into()],
        orphans_reaped: 0,
        elapsed_ns: start.elapsed().as_nanos() as u64,
        exec_error: None,
        captured: None,
    }
}

/// poll over the pidfd, the signalfd and the captured output, until `deadline` (or forever when
/// no timer is armed: then the machine is Running with no timeout, and only the child or a
/// signal can end it).
fn wait_for_events(
    pidfd: &OwnedFd,
    sigfd: &SignalFd,
    output: &[std::os::fd::BorrowedFd<'_>],
    deadline: Option<Instant>,
) -> Result<(), SupervisorError> {
    let mut fds = vec![PollFd::new(pidfd, PollFlags::IN), PollFd::new(sigfd, PollFlags::IN)];
    fds.extend(output.iter().map(|fd| PollFd::new(fd, PollFlags::IN)));
    let timeout = deadline.map(|d| timespec(d.saturating_duration_since(Instant::now())));
    match poll(&mut fds, timeout.as_ref()) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(SupervisorError::new(ErrorKind::Wait, "poll pidfd and signalfd", e)),
    }
}
