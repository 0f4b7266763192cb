//! The black-box replay itself, as init drives it: the workload's lines, the program's
//! stderr, the seccomp notifications, the lab's actions, the case's own steps, and the ground
//! truth for the oracle. Above the launcher, which starts the program.

use super::launch::launch;
use crate::catalog::Race;
use crate::child_log::ChildLog;
use crate::conformance::{Case, Cell};
use crate::design_report::DesignReport;
use crate::lab::{
    ChildPipes, Lines, Notes, close_timeline, now, orphans_exited, readable, record_victim_fates,
};
use crate::programs::{self, Kind, Program, RunOptions};
use crate::truth::Truth;
use crate::verdict::{Invariant, Verdict};
use crate::{evidence, oracle};
use nix::sys::signal::Signal;
use racelab_blackbox::{ActionRequest, Engine, Session};
use racelab_hooks::{Action, Arg, Trace};
use racelab_sandbox::{Child, Init, Mechanism, Victim};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(super) struct Bb<'a> {
    init: &'a mut Init,
    race: &'static Race,
    case: &'static Case,
    program: &'static Program,
    t0: u64,
    /// How long the replay may take before the lab gives up on the program.
    replay_deadline: Duration,
    notes: Notes,
    /// What the child said.
    w: ChildLog,
    pipes: ChildPipes,
    err: Lines,
    stderr: String,
    child: Child,
    target: OwnedFd,
    target_pid: i32,
    session: Option<Session>,
    victims: Vec<Victim>,
    truth: Truth,
    started: bool,
    bound_checked: bool,
    zombies_counted: bool,
    /// Z1: consecutive looks at the reaper that found it quiet, and when the looking started.
    quiet: (u32, Option<u64>),
    /// F1: how many of the case's signals were sent.
    sent: usize,
    project: Option<PathBuf>,
    report: Option<racelab_hooks::RunReport>,
    /// Unforced control: actions to run once the child is ready.
    pub(super) late: Vec<Action>,
}

impl<'a> Bb<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start(
        case: &'static Case,
        cell: &'static Cell,
        program: &'static Program,
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
            flags: cell.flags.iter().map(|f| f.to_string()).collect(),
            pid1: case.pid1,
        };
        let (cwd, project) = if program.kind == Kind::Piano {
            let dir = PathBuf::from(format!("/tmp/racelab-{}-piano", init.host_pid()));
            programs::piano_project(&dir, runner).map_err(|e| format!("piano project: {e}"))?;
            (Some(dir.clone()), Some(dir))
        } else {
            (None, None)
        };
        let args = program.args(&opts, runner, &wargs);
        let l = launch(init, program, binary, args, cwd, case.pid1, case.launcher_blocks, engine)?;
        Ok(Bb {
            init,
            race,
            case,
            program,
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
            quiet: (0, None),
            sent: 0,
            project,
            report: None,
            late: Vec::new(),
        })
    }

    fn note(&mut self, actor: &str, subject: &str, detail: String) {
        self.notes.note(actor, subject, detail);
    }

    fn deadline(&self) -> u64 {
        self.t0 + self.replay_deadline.as_nanos() as u64
    }

    fn program_done(&self) -> bool {
        readable(self.child.pidfd(), Duration::ZERO)
    }

    /// Reads what arrived: the workload's lines, the program's stderr, the notifications.
    fn absorb(&mut self) {
        self.pipes.read(&mut self.w, &mut self.notes);
        self.err.fill();
        while let Some(line) = self.err.next_line() {
            self.stderr.push_str(&line);
            self.stderr.push('\n');
            self.note(self.program.label, "stderr", line);
        }
        if let Some(s) = self.session.as_mut() {
            s.receive(now());
            s.tick(now());
        }
    }

    /// Sleeps until something may have changed, at most until `until`.
    fn wait(&self, until: u64) {
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
        let ts = rustix::time::Timespec::try_from(timeout).ok();
        let _ = rustix::event::poll(&mut fds, ts.as_ref());
    }

    /// Serves events and the case's own steps (not actions) until `until` holds or
    /// `deadline` passes.
    fn pump(&mut self, until: &dyn Fn(&Bb<'_>) -> bool, deadline: u64) -> bool {
        loop {
            self.absorb();
            self.tick();
            if until(self) {
                return true;
            }
            if now() >= deadline {
                return false;
            }
            self.wait(deadline);
        }
    }

    fn write_child(&mut self, line: &str) -> Result<(), String> {
        self.pipes.write(line)
    }

    fn wait_ready(&mut self) -> Result<i32, String> {
        let deadline = (now() + 1_000_000_000).min(self.deadline());
        if !self.pump(&|b| b.w.pid.is_some(), deadline) {
            return Err("the child never said ready".into());
        }
        self.w.pid.ok_or_else(|| "no child pid".into())
    }

    /// Sends `sig` to the program through its pidfd.
    fn signal_program(&mut self, sig: Signal) {
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

    fn ppid(pid: i32) -> Option<i32> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        s.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
    }

    /// The child's PID is free: it was reaped (its pidfd says POLLHUP).
    fn child_reaped(&self) -> bool {
        let Some(fd) = &self.w.pidfd else { return false };
        let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::empty())];
        matches!(rustix::event::poll(&mut fds, Some(&rustix::time::Timespec { tv_sec: 0, tv_nsec: 0 })), Ok(n) if n > 0)
            && fds[0].revents().contains(rustix::event::PollFlags::HUP)
    }

    /// Carries out one lab action requested at a point.
    fn act(&mut self, action: &Action) -> Result<(), String> {
        let word = |i: usize| match action.args.get(i) {
            Some(Arg::Ident(s)) => Some(s.as_str()),
            _ => None,
        };
        self.note("lab", &action.name, format!("requested: {action}"));
        match action.name.as_str() {
            "ready" => self.wait_ready().map(|_| ()),
            "exit" => {
                let code = match action.args.get(1) {
                    Some(Arg::Int(c)) => *c,
                    _ => 0,
                };
                self.wait_ready()?;
                self.write_child(&format!("exit {code}"))?;
                let deadline = (now() + 1_000_000_000).min(self.deadline());
                if !self.pump(&|b| !b.w.alive(), deadline) {
                    return Err("the child did not exit within 1 s".into());
                }
                self.note("lab", "exit", format!("child exited with {code}"));
                Ok(())
            }
            "recycle" => {
                let pid = self.wait_ready()?;
                let parent = Self::ppid(pid);
                let deadline = (now() + 1_000_000_000).min(self.deadline());
                // Wait for the reap, unless no thread of the parent can reap it now: then the
                // PID stays pinned by design (a zombie is never recycled) and there is no
                // window to open.
                let reaped = self.pump(
                    &|b| {
                        b.child_reaped()
                            || parent.is_some_and(|p| {
                                b.session.as_ref().is_some_and(|s| s.all_threads_held(p))
                            })
                    },
                    deadline,
                );
                if !reaped {
                    return Err(format!("PID {pid} was not reaped within 1 s"));
                }
                if !self.child_reaped() {
                    self.note("lab", "recycle", format!("PID {pid} is pinned: the child is an unreaped zombie and every thread of its parent is parked"));
                    return Ok(());
                }
                let victim =
                    self.init.recycle(pid, Mechanism::NsLastPid).map_err(|e| e.to_string())?;
                self.note("lab", "recycle", format!("victim took PID {pid}"));
                self.victims.push(victim);
                Ok(())
            }
            "interrupt" | "terminate" | "signal" => {
                let who = word(0).unwrap_or("target");
                if !["target", "design", self.program.label].contains(&who) {
                    return Err(format!(
                        "{}: only the program (target) can be signalled here",
                        action.name
                    ));
                }
                let sig = match action.name.as_str() {
                    "interrupt" => Signal::SIGINT,
                    "terminate" => Signal::SIGTERM,
                    _ => word(1).and_then(|n| n.parse::<Signal>().ok()).ok_or_else(|| {
                        format!("{action}: name a signal, signal(target, SIGHUP)")
                    })?,
                };
                self.signal_program(sig);
                Ok(())
            }
            "orphans" => {
                let deadline = (now() + 1_000_000_000).min(self.deadline());
                if !self.pump(&|b| b.w.orphans_done, deadline) {
                    return Err("the child never finished its orphans".into());
                }
                orphans_exited(&self.w, &mut self.notes)
            }
            other => Err(format!(
                "unknown lab action {other:?} (known: ready, exit, recycle, interrupt, terminate, signal, orphans, await)"
            )),
        }
    }

    fn bound_deadline(&self) -> Option<u64> {
        self.truth.stop_requested_at.map(|t| t + self.race.setup.bound.as_nanos() as u64)
    }

    /// State- and time-driven steps of the case.
    fn tick(&mut self) {
        if !self.started && self.w.pid.is_some() {
            self.started = true;
            if let Some(cmd) = self.race.setup.child_start {
                let _ = self.write_child(cmd);
            }
            if self.case.interrupt_when_ready {
                self.signal_program(Signal::SIGINT);
            }
            for action in std::mem::take(&mut self.late) {
                if let Err(e) = self.act(&action) {
                    self.note("lab", &action.name, format!("failed: {e}"));
                }
            }
        }
        // F1: the case's signals one by one, each once the child saw the previous one.
        if self.started && self.sent < self.case.signals.len() {
            let prev_seen = self.sent == 0 || {
                let (at, sig) = self.truth.forwarded[self.sent - 1];
                self.w.saw_since(at, sig) || now() >= at + self.race.setup.bound.as_nanos() as u64
            };
            if prev_seen {
                let sig = self.case.signals[self.sent];
                let at = now();
                self.truth.forwarded.push((at, sig));
                if let Ok(s) = Signal::try_from(sig) {
                    self.signal_program(s);
                }
                self.sent += 1;
            }
        } else if self.started
            && !self.case.signals.is_empty()
            && self.sent == self.case.signals.len()
        {
            let (at, sig) = self.truth.forwarded[self.sent - 1];
            let seen = self.w.saw_since(at, sig);
            if seen || now() >= at + self.race.setup.bound.as_nanos() as u64 {
                self.sent += 1;
                let _ = self.write_child("exit 0");
            }
        }
        if self.w.orphans_done && !self.zombies_counted {
            self.count_zombies_when_quiet();
        }
        if let Some(at) = self.bound_deadline()
            && !self.bound_checked
            && now() >= at
        {
            self.bound_checked = true;
            if !self.program_done() {
                self.truth.overran_bound = Some(now() - self.truth.stop_requested_at.unwrap_or(at));
                self.note("lab", "bound", "the program did not return within its bound".into());
                if self.race.setup.second_interrupt {
                    self.signal_program(Signal::SIGINT);
                }
            }
        }
    }

    /// Z1: counts the zombies of the program once the burst is over and the program is quiet
    /// (every orphan exited, no SIGCHLD pending for it, all its threads asleep and none of them
    /// parked here: it has done what it will do about the notifications it got), two looks in
    /// a row. Looks are taken as the loop comes by (it wakes every millisecond meanwhile),
    /// never by sleeping: the program's wait calls are parked syscalls the loop must answer.
    fn count_zombies_when_quiet(&mut self) {
        let started = *self.quiet.1.get_or_insert_with(now);
        let reaper = self.target_pid;
        let exited = self.w.orphans.iter().all(|&p| evidence::exited(p));
        let held = self.session.as_ref().is_some_and(|s| s.holds_any_of(reaper));
        if exited && !held && evidence::quiet(reaper) {
            self.quiet.0 += 1;
        } else {
            self.quiet.0 = 0;
        }
        let result = if self.quiet.0 >= 2 {
            Ok(evidence::zombies_of(reaper))
        } else if now() > started + 1_000_000_000 {
            Err(format!("the reaper {reaper} never went quiet within 1 s"))
        } else {
            return;
        };
        self.zombies_counted = true;
        self.note("lab", "zombies", format!("{result:?}"));
        self.truth.zombies = Some(result);
        let _ = self.write_child("exit 0");
    }

    /// Runs until the program ends (or overran its bound with nothing more to do), then
    /// collects ground truth.
    pub(super) fn drive(&mut self) {
        let deadline = self.deadline();
        loop {
            self.absorb();
            while let Some(ActionRequest { id, action, .. }) =
                self.session.as_mut().and_then(Session::next_action)
            {
                let result = self.act(&action);
                if let Some(s) = self.session.as_mut() {
                    s.action_done(id, result, now());
                }
                self.absorb();
            }
            self.tick();
            let overran_and_done =
                self.truth.overran_bound.is_some() && !self.race.setup.second_interrupt;
            if self.program_done() || overran_and_done {
                break;
            }
            if now() >= deadline {
                self.truth.hung = true;
                self.note(
                    "lab",
                    "deadline",
                    format!("the program did not finish within {:?}", self.replay_deadline),
                );
                break;
            }
            self.wait(deadline);
        }
        // What the program wrote on its way out.
        if self.program_done() {
            let until = now() + 200_000_000;
            while !self.err.eof && now() < until {
                readable(self.err.fd.as_fd(), Duration::from_millis(20));
                self.absorb();
            }
        }
        self.absorb();
        self.truth.design_exit = self.child.fate(Duration::ZERO).ok();
        if self.race.invariants.contains(&Invariant::I5NoSurvivors) && self.program_done() {
            self.truth.survivors =
                evidence::survivors(self.init, &self.victims, Duration::from_millis(200));
        }
        record_victim_fates(&self.victims, &mut self.truth, &mut self.notes);
        self.cleanup();
    }

    fn cleanup(&mut self) {
        // The tree first (with SIGKILL nothing held can do anything), then the session: its
        // held syscalls are let go into dead threads.
        let _ = self.child.kill(Duration::from_millis(500));
        evidence::kill_the_rest(self.init, &self.victims);
        if let Some(s) = self.session.take() {
            let (report, sent) = s.finish(now());
            self.truth.sigkill_seen = Some(sent.iter().any(|s| s.signal == 9));
            // A stop signal to another process: a forward (the program signalling itself, or
            // its whole group with 0, is not the evidence asked for).
            self.truth.stop_signals_sent = sent
                .iter()
                .filter(|s| s.signal != 9 && s.target != 0 && s.target != i64::from(s.by_pid))
                .map(|s| s.time_ns)
                .collect();
            for s in &sent {
                let name = racelab_hooks::syscall_point::signal_name(s.signal).unwrap_or("?");
                self.note(&s.by_program, "sent", format!("{}({}, {name})", s.syscall, s.target));
            }
            self.report = Some(report);
        }
        for v in &self.victims {
            let _ = v.exit(0);
        }
        let _ = self.init.reap_all_nonblocking();
        if let Some(dir) = self.project.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    pub(super) fn judge(self) -> (Verdict, Trace, DesignReport) {
        let report = self.program.report(
            self.truth.design_exit,
            &self.stderr,
            self.race.setup.duration.is_some(),
        );
        let hooks = self.report.clone().unwrap_or_default();
        let program_done = self.program_done();
        let mut trace = self.notes.merged_with(Some(&hooks.trace));
        // The program's own status, not the launcher's, is what a black-box report is about;
        // a program that never ended reports nothing.
        let own = program_done.then_some(&report);
        let verdict = oracle::judge(
            self.race,
            self.program.kind == Kind::Piano,
            &self.truth,
            &self.w,
            own,
            Some(&hooks),
            &trace,
        );
        // A program that never reached a point the schedule acts at: say which.
        let never: Vec<&str> = hooks
            .unmet_edges
            .iter()
            .filter(|e| matches!(e.reason, racelab_hooks::UnmetReason::AfterNeverReached { .. }))
            .map(|e| e.edge.as_str())
            .collect();
        let verdict = match verdict {
            Verdict::NotForced { why } if !never.is_empty() => {
                Verdict::NotForced { why: format!("{why}; never reached: {}", never.join("; ")) }
            }
            v => v,
        };
        close_timeline(&mut trace, &verdict);
        (verdict, trace, report)
    }
}
