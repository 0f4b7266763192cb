//! Init's side of one black-box replay: its state (the program and its launcher, the
//! workload's pipes and log, the seccomp session, the victims, the truth so far) and its plain
//! moves (read what arrived, sleep until something may change, write to the child, signal the
//! program). The bottom of the replay's own code; the actions and steps, and the drive, build
//! on it.

use super::launch::launch;
use crate::catalog::Race;
use crate::child_log::ChildLog;
use crate::conformance::Case;
use crate::lab::{ChildPipes, Lines, Notes, now, readable};
use crate::programs::{Program, RunOptions};
use crate::truth::Truth;
use nix::sys::signal::Signal;
use racelab_blackbox::{Engine, Session};
use racelab_hooks::Action;
use racelab_sandbox::{Child, Init, Victim};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(super) struct Bb<'a> {
    pub(super) init: &'a mut Init,
    pub(super) race: &'static Race,
    pub(super) case: &'static Case,
    pub(super) program: &'a Program,
    /// The image label its syscall points use.
    pub(super) label: String,
    pub(super) t0: u64,
    /// How long the replay may take before the lab gives up on the program.
    pub(super) replay_deadline: Duration,
    pub(super) notes: Notes,
    /// What the child said.
    pub(super) w: ChildLog,
    pub(super) pipes: ChildPipes,
    pub(super) err: Lines,
    pub(super) stderr: String,
    pub(super) child: Child,
    pub(super) target: OwnedFd,
    pub(super) target_pid: i32,
    pub(super) session: Option<Session>,
    pub(super) victims: Vec<Victim>,
    pub(super) truth: Truth,
    pub(super) started: bool,
    pub(super) bound_checked: bool,
    pub(super) zombies_counted: bool,
    /// Z1: consecutive looks at the reaper that found it quiet, when the looking started, and
    /// its threads' context switches at the last quiet look.
    pub(super) quiet: (u32, Option<u64>, u64),
    /// F1: how many of the case's signals were sent.
    pub(super) sent: usize,
    pub(super) project: Option<PathBuf>,
    pub(super) report: Option<racelab_hooks::RunReport>,
    /// Unforced control: actions to run once the child is ready.
    pub(super) late: Vec<Action>,
}

impl<'a> Bb<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start(
        case: &'static Case,
        program: &'a Program,
        binary: &Path,
        runner: &Path,
        engine: Engine,
        init: &'a mut Init,
        t0: u64,
        replay_deadline: Duration,
    ) -> Result<Bb<'a>, String> {
        let race = case.race();
        let setup = race.setup;
        let wargs: Vec<String> = racelab_sandbox::Workload::new(runner)
            .ignore_term(setup.child_ignores_term)
            .args()
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let opts = RunOptions {
            duration: setup.duration,
            grace: setup.grace,
            flags: program.flags_for(case.race),
            pid1: case.pid1,
        };
        // A working directory of the replay's own, when the spec asks for files in it (piano
        // runs the newest executable of the Cargo project it is started in).
        let dir = PathBuf::from(format!("/tmp/racelab-{}-{}", init.host_pid(), program.name));
        let (cwd, project) = match program.make_workdir(&dir, runner) {
            Ok(true) => (Some(dir.clone()), Some(dir)),
            Ok(false) => (None, None),
            Err(e) => return Err(format!("{}'s working directory: {e}", program.name)),
        };
        let args = program.args(&opts, runner, &wargs);
        let l = launch(init, program, binary, args, cwd, case.pid1, case.launcher_blocks, engine)?;
        Ok(Bb {
            init,
            race,
            case,
            program,
            label: program.label(),
            t0,
            replay_deadline,
            notes: Notes::default(),
            w: ChildLog::default(),
            pipes: ChildPipes::new(l.w_in, l.w_out),
            err: Lines::new(l.err),
            stderr: String::new(),
            child: l.child,
            target: l.target,
            target_pid: l.target_pid,
            session: Some(l.session),
            victims: Vec::new(),
            truth: Truth { sigkill_seen: Some(false), ..Truth::default() },
            started: false,
            bound_checked: false,
            zombies_counted: false,
            quiet: (0, None, 0),
            sent: 0,
            project,
            report: None,
            late: Vec::new(),
        })
    }

    pub(super) fn note(&mut self, actor: &str, subject: &str, detail: String) {
        self.notes.note(actor, subject, detail);
    }

    pub(super) fn deadline(&self) -> u64 {
        self.t0 + self.replay_deadline.as_nanos() as u64
    }

    pub(super) fn bound_deadline(&self) -> Option<u64> {
        self.truth.stop_requested_at.map(|t| t + self.race.setup.bound.as_nanos() as u64)
    }

    pub(super) fn program_done(&self) -> bool {
        readable(self.child.pidfd(), Duration::ZERO)
    }

    /// Reads what arrived: the workload's lines, the program's stderr, the notifications.
    pub(super) fn absorb(&mut self) {
        self.pipes.read(&mut self.w, &mut self.notes);
        self.err.fill();
        while let Some(line) = self.err.next_line() {
            self.stderr.push_str(&line);
            self.stderr.push('\n');
            let label = self.label.clone();
            self.note(&label, "stderr", line);
        }
        if let Some(s) = self.session.as_mut() {
            s.receive(now());
            s.tick(now());
        }
    }

    /// Sleeps until something may have changed, at most until `until`.
    pub(super) fn wait(&self, until: u64) {
        let mut wake = until;
        if let Some(at) = self.bound_deadline()
            && !self.bound_checked
        {
            wake = wake.min(at);
        }
        // A thread's end, a stalled await and a quiet reaper show only in /proc.
        if self.session.as_ref().is_some_and(Session::awaits_returns) {
            wake = wake.min(now() + 2_000_000);
        }
        if self.w.orphans_done && !self.zombies_counted {
            wake = wake.min(now() + 1_000_000);
        }
        let timeout = Duration::from_nanos(wake.saturating_sub(now()).min(50_000_000));
        let child_fd = self.child.pidfd();
        // ptrace stops of a traced program come as SIGCHLD, read from the tracer's signalfd.
        let trace_fd = self.session.as_ref().and_then(Session::trace_fd);
        let mut fds = vec![
            rustix::event::PollFd::new(&child_fd, rustix::event::PollFlags::IN),
            rustix::event::PollFd::new(&self.target, rustix::event::PollFlags::IN),
        ];
        fds.extend(self.pipes.output.poll_entry());
        fds.extend(self.err.poll_entry());
        if let Some(s) = &self.session
            && !s.targets_gone()
        {
            fds.push(rustix::event::PollFd::new(s, rustix::event::PollFlags::IN));
        }
        if let Some(fd) = &self.w.pidfd {
            fds.push(rustix::event::PollFd::new(fd, rustix::event::PollFlags::empty()));
        }
        if let Some(fd) = &trace_fd {
            fds.push(rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN));
        }
        let ts = rustix::time::Timespec::try_from(timeout).ok();
        let _ = rustix::event::poll(&mut fds, ts.as_ref());
    }

    pub(super) fn write_child(&mut self, line: &str) -> Result<(), String> {
        self.pipes.write(line)
    }

    /// Sends `sig` to the program through its pidfd.
    pub(super) fn signal_program(&mut self, sig: Signal) {
        let alive = self.w.alive() || self.w.pid.is_none();
        let rsig = rustix::process::Signal::from_named_raw(sig as i32);
        let sent = rsig.map(|s| rustix::process::pidfd_send_signal(&self.target, s));
        let at = now();
        if matches!(sig, Signal::SIGINT | Signal::SIGTERM | Signal::SIGHUP)
            && self.case.signals.is_empty()
        {
            self.truth.interrupts.push((at, alive));
            if self.truth.stop_requested_at.is_none() {
                self.truth.stop_requested_at = Some(at);
            }
        }
        self.note(
            "lab",
            "signal",
            format!("{} to the program ({sent:?}; child alive: {alive})", sig.as_str()),
        );
    }

    pub(super) fn ppid(pid: i32) -> Option<i32> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        s.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
    }

    /// The child's PID is free: it was reaped (its pidfd says POLLHUP).
    pub(super) fn child_reaped(&self) -> bool {
        let Some(fd) = &self.w.pidfd else { return false };
        let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::empty())];
        matches!(rustix::event::poll(&mut fds, Some(&rustix::time::Timespec { tv_sec: 0, tv_nsec: 0 })), Ok(n) if n > 0)
            && fds[0].revents().contains(rustix::event::PollFlags::HUP)
    }
}
